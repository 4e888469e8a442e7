//! A Debian 12 system in a container (systemd-nspawn booting systemd),
//! with the package installed as a user installs it: the way to run
//! sensord under its own systemd unit, restrictions and all, on a test
//! machine whose init is not systemd. Its root is debootstrapped from the
//! machine's Debian mirror; it joins a lab's gateway network namespace and
//! sees the lab's bpffs as `/sys/fs/bpf`. Dropping it powers it off and
//! deletes its root.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use labnet::cmd::run;

pub struct Container {
    /// Holds `rootfs/` and the console log.
    dir: PathBuf,
    nspawn: Option<Child>,
    /// The container's init (systemd), for nsenter.
    init: Option<u32>,
}

/// The machine's Debian mirror (apt's deb822 sources), else Debian's.
fn mirror() -> String {
    fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("URIs:"))
                .and_then(|uris| uris.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

impl Container {
    /// A minimal Debian 12 with systemd, `deb` installed by apt.
    pub fn debian_with(name: &str, deb: &Path) -> Result<Container> {
        let dir = PathBuf::from("/var/tmp").join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let container = Container {
            dir,
            nspawn: None,
            init: None,
        };
        let root = container.root();
        run(Command::new("debootstrap")
            .args([
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus",
                "bookworm",
            ])
            .arg(&root)
            .arg(mirror()))
        .context("debootstrap")?;
        // As the documentation says: apt, which brings the dependencies.
        fs::copy(deb, root.join("tmp/sensor.deb"))?;
        run(Command::new("chroot")
            .arg(&root)
            .args(["apt-get", "-q", "update"]))
        .context("apt-get update")?;
        run(Command::new("chroot")
            .arg(&root)
            .args(["apt-get", "-q", "-y", "install", "/tmp/sensor.deb"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("installing the package")?;
        Ok(container)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Boots it in network namespace `netns`, `bpffs` bound on
    /// /sys/fs/bpf, with the capabilities and the system call sensord's
    /// unit keeps, which nspawn drops by default (a host's systemd has
    /// them all); waits for systemd.
    pub fn boot(&mut self, netns: &str, bpffs: &Path) -> Result<()> {
        let console = fs::File::create(self.dir.join("console.log"))?;
        let child = Command::new("systemd-nspawn")
            .arg("--quiet")
            .arg("--directory")
            .arg(self.root())
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                &format!("--network-namespace-path=/run/netns/{netns}"),
                "--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_IPC_LOCK",
                "--system-call-filter=bpf",
                &format!("--bind={}:/sys/fs/bpf", bpffs.display()),
            ])
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()
            .context("starting systemd-nspawn")?;
        let nspawn = child.id();
        self.nspawn = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.init.is_none() {
                self.init = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
                    .ok()
                    .and_then(|c| c.split_whitespace().next()?.parse().ok());
            }
            if let Some(init) = self.init {
                // It prints the state, and fails unless that is "running".
                let state = Command::new("nsenter")
                    .args([
                        "-t",
                        &init.to_string(),
                        "-a",
                        "systemctl",
                        "is-system-running",
                    ])
                    .output()?;
                let state = String::from_utf8_lossy(&state.stdout);
                if matches!(state.trim(), "running" | "degraded") {
                    return Ok(());
                }
            }
            sleep(Duration::from_millis(500));
        }
        bail!(
            "the container did not boot; its console:\n{}",
            fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
        )
    }

    /// Runs a command inside (every namespace of its init); its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let init = self.init.context("the container is not running")?;
        run(Command::new("nsenter")
            .args(["-t", &init.to_string(), "-a"])
            .args(args))
    }

    /// A file of its file system, read from outside.
    pub fn read(&self, path: &str) -> Result<String> {
        let file = self.root().join(path.trim_start_matches('/'));
        fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
    }

    /// Writes a file of its file system from outside.
    pub fn write(&self, path: &str, text: &str) -> Result<()> {
        let file = self.root().join(path.trim_start_matches('/'));
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut nspawn) = self.nspawn.take() {
            // nspawn powers the container off on SIGTERM.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(nspawn.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(200));
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
