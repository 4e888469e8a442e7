//! The built-in lab: a gateway namespace with one bridge per segment, and a
//! namespace per host. The internet and records hosts are wired straight to
//! their bridge's ports on the gateway; the office hosts sit behind an
//! access switch (a bridge in a namespace of its own) whose uplink is the
//! gateway's office port, and whose SPAN port mirrors every frame it
//! receives to the gateway's tap. East-west office traffic never reaches
//! the gateway: only the tap sees it. docs/lab.md draws it.
//!
//! ```text
//!  internet (DMZ)            office (government WAN)       records (resident IDs)
//!  dns 203.0.113.53          office1 10.10.0.11            records1 10.20.0.21
//!  web 203.0.113.80          office2 10.10.0.12
//!  c2  203.0.113.66          office3 10.10.0.13
//!        |                    [access switch]--span               |
//!        |                         | uplink       |               |
//!   [br-internet]             [br-office]     tap-office     [br-records]
//!        +------- gateway (sensord: XDP inline on every port, AF_XDP tap) ---+
//! ```

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{cmd, netns, Netns};

/// A segment of the lab.
pub struct SegmentSpec {
    pub name: &'static str,
    /// The gateway's address on the segment (also the hosts' default route).
    pub gateway_v4: &'static str,
    pub gateway_v6: &'static str,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// What sensord's configuration assigns to this segment.
    pub sensor_cidrs: &'static [&'static str],
}

/// The segment whose hosts hang off an access switch (with a SPAN port to
/// the gateway's tap) rather than off the gateway's own bridge.
pub const SWITCHED_SEGMENT: &str = "office";
/// The gateway's port to that switch, and its tap.
pub const OFFICE_UPLINK: &str = "office";
pub const OFFICE_TAP: &str = "tap-office";

/// What a host runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// dnsmasq answering for the lab's names.
    Resolver,
    /// A web server on port 80.
    Web,
    /// A stand-in command-and-control server: a web server on port 8080.
    CommandAndControl,
    /// A workstation: runs nothing, makes requests.
    Client,
    /// The Active Directory domain controller (Samba; `domain.rs`).
    DomainController,
}

pub struct HostSpec {
    pub name: &'static str,
    pub segment: &'static str,
    pub ipv4: &'static str,
    pub ipv6: &'static str,
    pub role: Role,
}

pub const SEGMENTS: [SegmentSpec; 3] = [
    SegmentSpec {
        name: "internet",
        gateway_v4: "203.0.113.1",
        gateway_v6: "2001:db8:113::1",
        prefix_v4: 24,
        prefix_v6: 64,
        // Everything that is not an internal segment is "the internet".
        sensor_cidrs: &["0.0.0.0/0", "::/0"],
    },
    SegmentSpec {
        name: "office",
        gateway_v4: "10.10.0.1",
        gateway_v6: "fd00:10::1",
        prefix_v4: 24,
        prefix_v6: 64,
        sensor_cidrs: &["10.10.0.0/24", "fd00:10::/64"],
    },
    SegmentSpec {
        name: "records",
        gateway_v4: "10.20.0.1",
        gateway_v6: "fd00:20::1",
        prefix_v4: 24,
        prefix_v6: 64,
        sensor_cidrs: &["10.20.0.0/24", "fd00:20::/64"],
    },
];

pub const HOSTS: [HostSpec; 7] = [
    HostSpec {
        name: "dns",
        segment: "internet",
        ipv4: "203.0.113.53",
        ipv6: "2001:db8:113::53",
        role: Role::Resolver,
    },
    HostSpec {
        name: "web",
        segment: "internet",
        ipv4: "203.0.113.80",
        ipv6: "2001:db8:113::80",
        role: Role::Web,
    },
    HostSpec {
        name: "c2",
        segment: "internet",
        ipv4: "203.0.113.66",
        ipv6: "2001:db8:113::66",
        role: Role::CommandAndControl,
    },
    HostSpec {
        name: "office1",
        segment: "office",
        ipv4: "10.10.0.11",
        ipv6: "fd00:10::11",
        role: Role::Client,
    },
    HostSpec {
        name: "office2",
        segment: "office",
        ipv4: "10.10.0.12",
        ipv6: "fd00:10::12",
        role: Role::Client,
    },
    HostSpec {
        name: "office3",
        segment: "office",
        ipv4: "10.10.0.13",
        ipv6: "fd00:10::13",
        role: Role::Client,
    },
    HostSpec {
        name: "records1",
        segment: "records",
        ipv4: "10.20.0.21",
        ipv6: "fd00:20::21",
        role: Role::Web,
    },
];

/// The domain controller, on the office segment (with `LabOptions::domain`).
pub const DOMAIN_CONTROLLER: HostSpec = HostSpec {
    name: "dc1",
    segment: "office",
    ipv4: "10.10.0.10",
    ipv6: "fd00:10::10",
    role: Role::DomainController,
};

/// Segment pairs the lab's policy allows (both ways); all others are separated.
pub const ALLOWED_PAIRS: [(&str, &str); 2] = [("office", "internet"), ("office", "records")];

pub struct LabOptions {
    /// Prefix of every namespace name, and the name of the lab's directory
    /// under /run. Unique per test.
    pub prefix: String,
    /// Extra lines appended to sensord's configuration.
    pub extra_config: String,
    /// Where sensord and sensorctl are.
    pub bin_dir: PathBuf,
    /// Also run an Active Directory domain controller (`DOMAIN_CONTROLLER`).
    pub domain: bool,
}

pub struct LabHost {
    pub name: String,
    pub netns: Netns,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub segment: String,
    pub role: Role,
    /// The switch port for this host: an interface in the gateway's netns,
    /// or in the access switch's for a host behind one.
    pub port: String,
}

pub struct Lab {
    pub prefix: String,
    /// /run/PREFIX: configuration, state file, control socket, logs, bpffs.
    pub dir: PathBuf,
    pub gateway: Netns,
    /// The office segment's access switch.
    pub switch: Netns,
    pub hosts: Vec<LabHost>,
    pub bin_dir: PathBuf,
    pub metrics_address: String,
    keep: bool,
}

impl Lab {
    /// Builds the namespaces and links, and starts the hosts' services.
    pub fn create(options: &LabOptions) -> Result<Lab> {
        let prefix = &options.prefix;
        destroy(prefix); // leftovers of an earlier run with the same name
        let dir = PathBuf::from("/run").join(prefix);
        fs::create_dir_all(dir.join("logs"))?;
        mount_bpffs(&dir.join("bpf"))?;

        let gateway = Netns::create(&format!("{prefix}-gw"))?;
        gateway.sysctl("net.ipv4.ip_forward", "1")?;
        gateway.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for seg in &SEGMENTS {
            let bridge = format!("br-{}", seg.name);
            gateway.ip(&["link", "add", &bridge, "type", "bridge"])?;
            gateway.ip(&[
                "addr",
                "add",
                &format!("{}/{}", seg.gateway_v4, seg.prefix_v4),
                "dev",
                &bridge,
            ])?;
            gateway.ip(&[
                "addr",
                "add",
                &format!("{}/{}", seg.gateway_v6, seg.prefix_v6),
                "dev",
                &bridge,
                "nodad",
            ])?;
            gateway.ip(&["link", "set", &bridge, "up"])?;
        }
        let switch = Netns::create(&format!("{prefix}-switch"))?;
        access_switch(&gateway, &switch)?;
        let mut lab = Lab {
            prefix: prefix.clone(),
            dir,
            gateway,
            switch,
            hosts: Vec::new(),
            bin_dir: options.bin_dir.clone(),
            metrics_address: "127.0.0.1:9464".into(),
            keep: false,
        };
        let domain = options.domain.then_some(&DOMAIN_CONTROLLER);
        for spec in HOSTS.iter().chain(domain) {
            let host = lab.add_host(spec)?;
            lab.hosts.push(host);
        }
        lab.start_services()?;
        let config = lab.sensord_config(&options.extra_config);
        fs::write(lab.config_path(), config)?;
        Ok(lab)
    }

    fn add_host(&self, spec: &HostSpec) -> Result<LabHost> {
        let seg = SEGMENTS
            .iter()
            .find(|s| s.name == spec.segment)
            .expect("known segment");
        let ns = Netns::create(&format!("{}-{}", self.prefix, spec.name))?;
        let port = spec.name.to_string();
        let switched = seg.name == SWITCHED_SEGMENT;
        let (bridge_ns, bridge) = if switched {
            (&self.switch, "br-access")
        } else {
            (&self.gateway, &*format!("br-{}", seg.name))
        };
        // Both ends are made inside the lab's namespaces, never in the root one.
        bridge_ns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ])?;
        bridge_ns.ip(&["link", "set", &port, "master", bridge])?;
        bridge_ns.ip(&["link", "set", &port, "up"])?;
        if switched {
            mirror_to_span(bridge_ns, &port)?;
        }
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/{}", spec.ipv4, seg.prefix_v4),
            "dev",
            "eth0",
        ])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/{}", spec.ipv6, seg.prefix_v6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "via", seg.gateway_v4])?;
        ns.ip(&["-6", "route", "add", "default", "via", seg.gateway_v6])?;
        Ok(LabHost {
            name: spec.name.into(),
            netns: ns,
            ipv4: spec.ipv4.parse()?,
            ipv6: spec.ipv6.parse()?,
            segment: spec.segment.into(),
            role: spec.role,
            port,
        })
    }

    fn start_services(&self) -> Result<()> {
        let www = self.dir.join("www");
        fs::create_dir_all(&www)?;
        fs::write(www.join("index.html"), "lab web server\n")?;
        // A large file for bulk transfers.
        fs::write(www.join("big.bin"), vec![0x5a; 4 << 20])?;
        let www_s = www.to_string_lossy().into_owned();
        for host in &self.hosts {
            let log = self.dir.join("logs").join(format!("{}.log", host.name));
            match host.role {
                Role::Client => continue,
                Role::DomainController => {
                    crate::domain::start(&self.dir, host)?;
                }
                Role::Web | Role::CommandAndControl => {
                    let port = if host.role == Role::Web { "80" } else { "8080" };
                    // Bound to "::" to serve IPv4 and IPv6 alike.
                    let args = [
                        "-m",
                        "http.server",
                        port,
                        "--bind",
                        "::",
                        "--directory",
                        &www_s,
                    ];
                    host.netns.spawn("python3", &args, &log)?;
                }
                Role::Resolver => {
                    let mut args = vec![
                        "--keep-in-foreground".to_string(),
                        "--no-resolv".into(),
                        "--no-hosts".into(),
                        "--bind-interfaces".into(),
                        "--user=root".into(),
                        "--pid-file".into(),
                        format!("--listen-address={}", host.ipv4),
                        "--log-facility=-".into(),
                    ];
                    for h in &self.hosts {
                        args.push(format!("--address=/{}.lab/{}", h.name, h.ipv4));
                    }
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    host.netns.spawn("dnsmasq", &args, &log)?;
                }
            }
        }
        // Wait until every server answers, so the story starts on a working network.
        let deadline = Instant::now() + Duration::from_secs(15);
        let servers = [Role::Resolver, Role::Web, Role::CommandAndControl];
        for host in self.hosts.iter().filter(|h| servers.contains(&h.role)) {
            let port = match host.role {
                Role::Resolver => 53,
                Role::CommandAndControl => 8080,
                _ => 80,
            };
            let proto = if host.role == Role::Resolver {
                "udp"
            } else {
                "tcp"
            };
            loop {
                let listening = host
                    .netns
                    .exec(
                        "ss",
                        &[
                            "-Hln",
                            if proto == "udp" { "-u" } else { "-t" },
                            "sport",
                            "=",
                            &format!(":{port}"),
                        ],
                    )
                    .map(|out| !out.trim().is_empty())
                    .unwrap_or(false);
                if listening {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} did not start listening on {proto}/{port}; see its log in {}",
                        host.name,
                        self.dir.join("logs").display()
                    );
                }
                sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("sensord.toml")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.dir.join("bpf").join("sensor")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn sensord_log(&self) -> PathBuf {
        self.dir.join("logs").join("sensord.log")
    }

    /// sensord's configuration for this lab: every gateway port, the three
    /// segments, the resolver exempt from isolation.
    pub fn sensord_config(&self, extra: &str) -> String {
        let ports: Vec<String> = self
            .inline_ports()
            .iter()
            .map(|p| format!("{p:?}"))
            .collect();
        let resolver = self.host("dns");
        let mut text = format!(
            "# Generated by the lab ({prefix}).\n\
             interfaces = [{ports}]\n\
             taps = [{tap:?}]\n\
             metrics_address = {metrics:?}\n\
             control_socket = {socket:?}\n\
             state_file = {state:?}\n\
             pin_dir = {pins:?}\n\
             exempt = [\"{resolver}/32\"]\n",
            prefix = self.prefix,
            ports = ports.join(", "),
            tap = OFFICE_TAP,
            metrics = self.metrics_address,
            socket = self.control_socket(),
            state = self.state_file(),
            pins = self.pin_dir(),
            resolver = resolver.ipv4,
        );
        text.push_str(extra);
        text.push('\n');
        if let Some(dc) = self.hosts.iter().find(|h| h.role == Role::DomainController) {
            // What an operator with a domain writes: its controllers.
            text.push_str(&format!(
                "\n[detection.roles]\ndomain_controllers = [\"{}\"]\n",
                dc.ipv4
            ));
        }
        for seg in &SEGMENTS {
            let cidrs: Vec<String> = seg.sensor_cidrs.iter().map(|c| format!("{c:?}")).collect();
            let ports: Vec<String> = self
                .segment_ports(seg.name)
                .iter()
                .map(|p| format!("{p:?}"))
                .collect();
            // The internal segments' hosts are on the gateway's link or
            // behind the access switch: their frames carry their own MACs.
            let switched = seg.name != "internet";
            text.push_str(&format!(
                "\n[[segment]]\nname = {:?}\ncidrs = [{}]\nports = [{}]\nswitched = {switched}\n",
                seg.name,
                cidrs.join(", "),
                ports.join(", ")
            ));
        }
        let pairs: Vec<String> = ALLOWED_PAIRS
            .iter()
            .map(|(a, b)| format!("[{a:?}, {b:?}]"))
            .collect();
        text.push_str(&format!(
            "\n[policy]\ndefault = \"deny\"\nallow = [{}]\n",
            pairs.join(", ")
        ));
        text
    }

    /// The gateway's ports a segment's hosts come in on.
    pub fn segment_ports(&self, segment: &str) -> Vec<String> {
        if segment == SWITCHED_SEGMENT {
            return vec![OFFICE_UPLINK.to_string()];
        }
        self.hosts
            .iter()
            .filter(|h| h.segment == segment)
            .map(|h| h.port.clone())
            .collect()
    }

    /// The gateway's ports sensord enforces on: one per host wired to the
    /// gateway, and the office switch's uplink.
    pub fn inline_ports(&self) -> Vec<String> {
        let direct = self.hosts.iter().filter(|h| h.segment != SWITCHED_SEGMENT);
        direct
            .map(|h| h.port.clone())
            .chain([OFFICE_UPLINK.to_string()])
            .collect()
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("the lab has no host {name}"))
    }

    /// Starts sensord in the gateway namespace and waits until its control
    /// socket answers.
    pub fn start_sensord(&self) -> Result<()> {
        let sensord = self.bin_dir.join("sensord");
        let config = self.config_path();
        let mut child = self.gateway.spawn(
            &sensord,
            &["--config", &config.to_string_lossy()],
            &self.sensord_log(),
        )?;
        fs::write(self.dir.join("sensord.pid"), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.sensorctl(&["status"]).is_ok() {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let _ = fs::remove_file(self.dir.join("sensord.pid"));
                bail!(
                    "sensord exited ({status}) before it was ready; its log:\n{}",
                    fs::read_to_string(self.sensord_log()).unwrap_or_default()
                );
            }
            sleep(Duration::from_millis(100));
        }
        bail!(
            "sensord did not become ready; its log:\n{}",
            fs::read_to_string(self.sensord_log()).unwrap_or_default()
        )
    }

    /// Stops sensord with SIGTERM (or SIGKILL, to simulate a crash) and
    /// waits for it to exit.
    pub fn stop_sensord(&self, signal: i32) -> Result<()> {
        let pid_file = self.dir.join("sensord.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid: i32 = text.trim().parse().context("sensord.pid")?;
        // `ip netns exec` execs sensord, so the pid is sensord's own.
        // SAFETY: kill(2) on the pid we started.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Path::new(&format!("/proc/{pid}")).exists() {
            // Reap it if it is our child (a zombie still has a /proc entry).
            // SAFETY: waitpid with WNOHANG on a pid; harmless if not our child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if Instant::now() > deadline {
                bail!("sensord (pid {pid}) did not exit");
            }
            sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_file(pid_file);
        Ok(())
    }

    /// Runs sensorctl against this lab's daemon; returns stdout.
    pub fn sensorctl(&self, args: &[&str]) -> Result<String> {
        let mut c = std::process::Command::new(self.bin_dir.join("sensorctl"));
        c.arg("--socket").arg(self.control_socket()).args(args);
        cmd::run(&mut c)
    }

    /// Scrapes sensord's metrics from inside the gateway namespace.
    pub fn metrics(&self) -> Result<String> {
        self.gateway.exec(
            "curl",
            &[
                "-sS",
                "-m",
                "5",
                &format!("http://{}/metrics", self.metrics_address),
            ],
        )
    }

    /// `lab status --json`.
    pub fn status_json(&self) -> Value {
        json!({
            "gateway": {
                "netns": self.gateway.name(),
                "control_socket": self.control_socket(),
                "metrics_url": format!("http://{}/metrics", self.metrics_address),
                "config": self.config_path(),
                "interfaces": self.inline_ports(),
                "taps": [OFFICE_TAP],
            },
            "switch": { "netns": self.switch.name(), "span_to": OFFICE_TAP },
            "hosts": self.hosts.iter().map(|h| json!({
                "name": h.name,
                "netns": h.netns.name(),
                "ip": h.ipv4.to_string(),
                "ipv6": h.ipv6.to_string(),
                "segment": h.segment,
                "role": format!("{:?}", h.role).to_lowercase(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Leaves everything running when this value is dropped (`lab up`).
    pub fn keep(mut self) {
        self.keep = true;
        self.gateway.disown();
        self.switch.disown();
        for h in &mut self.hosts {
            h.netns.disown();
        }
        fs::write(
            self.dir.join("status.json"),
            serde_json::to_vec_pretty(&self.status_json()).unwrap(),
        )
        .expect("writing the lab's status");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            destroy(&self.prefix);
        }
    }
}

/// The office access switch: a bridge with an uplink to the gateway's
/// office bridge, and a SPAN port wired to the gateway's tap interface.
fn access_switch(gateway: &Netns, switch: &Netns) -> Result<()> {
    switch.ip(&["link", "set", "lo", "up"])?;
    switch.ip(&["link", "add", "br-access", "type", "bridge"])?;
    switch.ip(&["link", "set", "br-access", "up"])?;
    gateway.ip(&[
        "link",
        "add",
        OFFICE_UPLINK,
        "type",
        "veth",
        "peer",
        "name",
        "uplink",
        "netns",
        switch.name(),
    ])?;
    gateway.ip(&[
        "link",
        "set",
        OFFICE_UPLINK,
        "master",
        &format!("br-{SWITCHED_SEGMENT}"),
    ])?;
    gateway.ip(&["link", "set", OFFICE_UPLINK, "up"])?;
    switch.ip(&["link", "set", "uplink", "master", "br-access"])?;
    switch.ip(&["link", "set", "uplink", "up"])?;
    // The SPAN link: the switch sends copies out of "span"; they arrive on
    // the gateway's tap, which has no address and sends nothing.
    gateway.ip(&[
        "link",
        "add",
        OFFICE_TAP,
        "type",
        "veth",
        "peer",
        "name",
        "span",
        "netns",
        switch.name(),
    ])?;
    for (ns, dev) in [(gateway, OFFICE_TAP), (switch, "span")] {
        ns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6"), "1")?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    mirror_to_span(switch, "uplink")
}

/// Copies every frame the switch receives on `port` to its SPAN port
/// (u32 matching anything: this kernel has no matchall classifier).
fn mirror_to_span(switch: &Netns, port: &str) -> Result<()> {
    switch.exec("tc", &["qdisc", "add", "dev", port, "clsact"])?;
    switch.exec(
        "tc",
        &[
            "filter", "add", "dev", port, "ingress", "protocol", "all", "u32", "match", "u32", "0",
            "0", "action", "mirred", "egress", "mirror", "dev", "span",
        ],
    )?;
    Ok(())
}

fn mount_bpffs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    cmd::sh("mount", &["-t", "bpf", "bpf", &dir.to_string_lossy()])?;
    Ok(())
}

/// Removes every namespace, process, pinned object and file of the lab
/// named `prefix`. Safe to call when nothing is there.
pub fn destroy(prefix: &str) {
    for name in netns::list_with_prefix(&format!("{prefix}-")) {
        netns::delete(&name);
    }
    let dir = PathBuf::from("/run").join(prefix);
    let bpf = dir.join("bpf");
    // Unmounting the lab's own bpffs drops every pin in it: maps and links.
    while cmd::sh("umount", &[&bpf.to_string_lossy()]).is_ok() {}
    let _ = fs::remove_dir_all(&dir);
}

/// The status of a lab left running by `lab up`, read back from its directory.
pub fn saved_status(prefix: &str) -> Result<Value> {
    let path = PathBuf::from("/run").join(prefix).join("status.json");
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "no lab is running ({} is missing); start one with `cargo xtask lab up`",
            path.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}
