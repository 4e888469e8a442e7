//! Installs what the project needs on a Debian machine, skipping what is
//! already there: the eBPF toolchain (see shared toolchain notes in
//! docs/architecture.md) and the tools the lab and the tests drive.

use std::process::Command;

use anyhow::{bail, Result};
use labnet::cmd;

#[derive(clap::Args, Default)]
pub struct Options {
    /// Also install the traffic tools the tests and the lab use.
    #[arg(long)]
    pub tools: bool,
}

/// How the eBPF crate gets built on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EbpfToolchain {
    /// rustup nightly with rust-src, and a bpf-linker on PATH.
    Nightly,
    /// Debian's rustc-web + rust-web-src, linked into rustup as `debian`,
    /// with RUSTC_BOOTSTRAP=1 for the -Z flags.
    Debian,
}

impl EbpfToolchain {
    pub fn rustup_name(self) -> &'static str {
        match self {
            EbpfToolchain::Nightly => "nightly",
            EbpfToolchain::Debian => "debian",
        }
    }
}

/// Debian packages for the Debian eBPF route.
const TOOLCHAIN_PACKAGES: &[&str] = &[
    "rustc-web",
    "rust-web-src",
    "cargo-web",
    "llvm-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// Programs the lab and the tests run.
const TOOL_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "curl",
    "dnsmasq",
    "python3",
    "ncat",
    "socat",
    "iperf3",
    "nmap",
    "hping3",
    "tcpreplay",
    "python3-scapy",
    "netsniff-ng",
    "xdp-tools",
    "bpftool",
    "nftables",
    "iptables",
    "dnsutils",
    "procps",
    "openssh-server",
    "openssh-client",
    "sshpass",
    "openssl",
    // Mail sent out (the outside host's SMTP server is Python's smtpd),
    // an ICMP tunnel, a DNS tunnel, and an FTP server to upload to.
    "swaks",
    "ptunnel-ng",
    "iodine",
    // A syslog collector for the alerts' syslog output (UDP, TCP, TLS).
    "rsyslog",
    "rsyslog-openssl",
    // Reads the example Filebeat configuration and the Prometheus rules in
    // the tests.
    "python3-yaml",
    // The monitoring pack's test: a real Prometheus server, and promtool.
    "prometheus",
    // Fleet mode: a three-node NATS JetStream cluster for the fleet tests
    // and the fleet lab.
    "nats-server",
    // The package: built with dpkg-deb, installed in a Debian 12
    // container (debootstrap, systemd-nspawn), its unit rated by
    // systemd-analyze.
    "dpkg-dev",
    "debootstrap",
    "systemd-container",
    "systemd",
    "python3-pyftpdlib",
    // The lab's Active Directory domain controller and its clients.
    "samba",
    "samba-ad-dc",
    "samba-ad-provision",
    "winbind",
    "smbclient",
    "krb5-user",
    "ldap-utils",
    "ldb-tools",
];

/// Impacket, the attack tools the domain tests run, from PyPI into a
/// virtual environment of its own (0.13 binds to LDAP as Samba expects).
const IMPACKET_VENV: &str = labnet::domain::IMPACKET_VENV;
const IMPACKET: &str = "impacket==0.13.1";

fn have(program: &str, arg: &str) -> bool {
    cmd::succeeds(Command::new(program).arg(arg))
}

fn missing_packages(packages: &[&str]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing Debian packages: {}", missing.join(" "));
    cmd::sh("apt-get", &["update", "-q"])?;
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    let status = c.status()?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

fn nightly_has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("rust-src"))
        })
        .unwrap_or(false)
}

/// Makes sure an eBPF toolchain is there and says which.
pub fn ebpf_toolchain() -> Result<EbpfToolchain> {
    if nightly_has_rust_src() && have("bpf-linker", "--version") {
        return Ok(EbpfToolchain::Nightly);
    }
    apt_install(TOOLCHAIN_PACKAGES)?;
    if !have("bpf-linker", "--version") {
        println!("installing bpf-linker (LLVM 22) from crates.io; this takes a few minutes");
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let status = Command::new("cargo")
            .env("PATH", path)
            .args([
                "install",
                "--locked",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .status()?;
        if !status.success() {
            bail!("cargo install bpf-linker failed");
        }
    }
    let toolchains = cmd::sh("rustup", &["toolchain", "list"])?;
    if !toolchains.lines().any(|l| l.starts_with("debian")) {
        cmd::sh("rustup", &["toolchain", "link", "debian", "/usr"])?;
    }
    Ok(EbpfToolchain::Debian)
}

pub fn tools() -> Result<()> {
    apt_install(TOOL_PACKAGES)?;
    impacket()
}

fn impacket() -> Result<()> {
    let python = format!("{IMPACKET_VENV}/bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import impacket.version as v; print(v.version)"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && IMPACKET.ends_with(String::from_utf8_lossy(&o.stdout).trim())
        });
    if installed {
        return Ok(());
    }
    println!("installing {IMPACKET} from PyPI into {IMPACKET_VENV}");
    let _ = std::fs::remove_dir_all(IMPACKET_VENV);
    cmd::sh("python3", &["-m", "venv", IMPACKET_VENV])?;
    cmd::sh(
        &format!("{IMPACKET_VENV}/bin/pip"),
        &["install", "-q", IMPACKET],
    )?;
    Ok(())
}

pub fn run(options: &Options) -> Result<()> {
    let toolchain = ebpf_toolchain()?;
    println!("eBPF toolchain: {}", toolchain.rustup_name());
    if options.tools {
        tools()?;
    }
    Ok(())
}
