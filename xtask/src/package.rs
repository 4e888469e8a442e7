//! `cargo xtask package`: the Debian package. Builds the release (eBPF
//! program and binaries), lays out the installed tree (binaries, the
//! hardened systemd unit, the default configuration, logrotate rules,
//! manual pages, shell completions, documentation and licences) and packs
//! it with `dpkg-deb`, so a gateway installs sensor with `apt install
//! ./sensor_VERSION_amd64.deb`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use labnet::cmd;

use crate::build::{self, workspace_root};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Use the binaries already in target/release instead of building.
    #[arg(long)]
    pub no_build: bool,
}

/// The package's name.
pub const NAME: &str = "sensor";

/// Builds the package; its path.
pub fn run(options: &Options) -> Result<PathBuf> {
    if !options.no_build {
        build::run(&build::Options::default())?;
    }
    let root = workspace_root();
    let version = env!("CARGO_PKG_VERSION");
    let out = root.join("target/package");
    let stage = out.join(format!("{NAME}_{version}_amd64"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    println!("laying out the package in {}", stage.display());
    lay_out(&root, &stage)?;
    write_control(&root, &stage, version)?;
    let deb = out.join(format!("{NAME}_{version}_amd64.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )
    .context("dpkg-deb --build")?;
    println!("built {}", deb.display());
    Ok(deb)
}

/// Copies `from` to `stage`/`to` with `mode`.
fn install(from: &Path, stage: &Path, to: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = stage.join(to.trim_start_matches('/'));
    fs::create_dir_all(target.parent().expect("a path under the stage"))?;
    fs::copy(from, &target)
        .with_context(|| format!("copying {} to {}", from.display(), target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Installs every file of `from` into `to` (mode 0644).
fn install_dir(from: &Path, stage: &Path, to: &str) -> Result<()> {
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        install(&path, stage, &format!("{to}/{name}"), 0o644)?;
    }
    Ok(())
}

/// Runs a built binary to write what it generates about itself (manual
/// pages, completions).
fn generate(binary: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} {}: {}",
        binary.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn lay_out(root: &Path, stage: &Path) -> Result<()> {
    let bin = build::bin_dir();
    let (sensord, sensorctl) = (bin.join("sensord"), bin.join("sensorctl"));
    let packaging = root.join("packaging");
    install(&sensord, stage, "/usr/sbin/sensord", 0o755)?;
    install(&sensorctl, stage, "/usr/bin/sensorctl", 0o755)?;
    install(
        &packaging.join("sensord.service"),
        stage,
        "/lib/systemd/system/sensord.service",
        0o644,
    )?;
    install(
        &packaging.join("sensord.toml"),
        stage,
        "/etc/sensor/sensord.toml",
        0o640,
    )?;
    install(
        &packaging.join("sensord.logrotate"),
        stage,
        "/etc/logrotate.d/sensord",
        0o644,
    )?;
    // The monitoring pack: Prometheus rules (with their unit tests) and
    // the Grafana dashboard.
    install_dir(
        &packaging.join("monitoring"),
        stage,
        "/usr/share/sensor/monitoring",
    )?;
    // Manual pages, compressed as Debian keeps them.
    let pages = stage.join("tmp-man");
    generate(&sensord, &["--man", pages.to_str().expect("UTF-8 path")])?;
    generate(&sensorctl, &["man", pages.to_str().expect("UTF-8 path")])?;
    for page in fs::read_dir(&pages)? {
        let page = page?.path();
        let name = page
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let section = name.rsplit('.').next().unwrap_or("1");
        let dir = stage.join(format!("usr/share/man/man{section}"));
        fs::create_dir_all(&dir)?;
        let gz = dir.join(format!("{name}.gz"));
        let compressed = Command::new("gzip")
            .args(["-9n", "-c"])
            .arg(&page)
            .output()
            .context("gzip")?;
        anyhow::ensure!(compressed.status.success(), "gzip {}", page.display());
        fs::write(&gz, compressed.stdout)?;
    }
    fs::remove_dir_all(&pages)?;
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/sensorctl"),
        ("zsh", "usr/share/zsh/vendor-completions/_sensorctl"),
        ("fish", "usr/share/fish/vendor_completions.d/sensorctl.fish"),
    ] {
        let script = generate(&sensorctl, &["completions", shell])?;
        let target = stage.join(path);
        fs::create_dir_all(target.parent().expect("a directory"))?;
        fs::write(&target, script)?;
    }
    // Documentation and licences.
    let doc = "/usr/share/doc/sensor";
    install(
        &packaging.join("debian/copyright"),
        stage,
        &format!("{doc}/copyright"),
        0o644,
    )?;
    for file in ["LICENSE-MIT", "LICENSE-APACHE", "README.md"] {
        install(&root.join(file), stage, &format!("{doc}/{file}"), 0o644)?;
    }
    for entry in fs::read_dir(root.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md" || e == "json") {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            install(&path, stage, &format!("{doc}/{name}"), 0o644)?;
        }
    }
    install_dir(
        &root.join("docs/examples"),
        stage,
        &format!("{doc}/examples"),
    )?;
    Ok(())
}

/// DEBIAN/: control, conffiles, md5sums and the maintainer scripts.
fn write_control(root: &Path, stage: &Path, version: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    let size_kib = tree_size(stage)?.div_ceil(1024);
    // The binaries need glibc 2.34 and libgcc_s (objdump -T: GLIBC_2.34,
    // GCC_4.2.0 at most); sensord runs `ip` (iproute2) to learn address
    // bindings; logrotate is what rotates the alert files.
    let control = format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: The sensor contributors <sensor@localhost>\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6 (>= 2.34), libgcc-s1 (>= 4.2), iproute2, passwd\n\
         Recommends: logrotate\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP inline blocker with behavioural detection\n \
         sensord attaches an XDP program to a gateway's segment-facing ports,\n \
         enforces isolations, range blocks and the segment policy before the\n \
         kernel's stack, and finds attacks from behaviour (scans, lateral\n \
         movement, brute force, beacons, tunnels, exfiltration), isolating\n \
         the right host by policy. sensorctl is its command line.\n"
    );
    fs::write(debian.join("control"), control)?;
    fs::write(
        debian.join("conffiles"),
        "/etc/sensor/sensord.toml\n/etc/logrotate.d/sensord\n",
    )?;
    let mut sums = String::new();
    for file in files(stage)? {
        let relative = file.strip_prefix(stage)?;
        if relative.starts_with("DEBIAN") {
            continue;
        }
        let out = Command::new("md5sum").arg(&file).output()?;
        let sum = String::from_utf8_lossy(&out.stdout);
        let sum = sum.split_whitespace().next().unwrap_or_default();
        sums.push_str(&format!("{sum}  {}\n", relative.display()));
    }
    fs::write(debian.join("md5sums"), sums)?;
    for script in ["postinst", "prerm", "postrm"] {
        let target = debian.join(script);
        fs::copy(root.join("packaging/debian").join(script), &target)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Every regular file under `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn tree_size(dir: &Path) -> Result<u64> {
    files(dir)?.iter().map(|f| Ok(fs::metadata(f)?.len())).sum()
}
