//! The lab's Active Directory domain: a Samba domain controller provisioned
//! in its own namespace on the office segment, where a municipality's
//! government-WAN segment keeps its DC. Its accounts are what attack tools
//! and ordinary clients need: users, service accounts with SPNs
//! (Kerberoastable), one account without Kerberos pre-authentication
//! (AS-REP roastable), and the ADMIN$ and C$ shares a Windows server has.
//!
//! Everything lives under the lab's directory (`/run/PREFIX/samba`):
//! configuration, databases, sockets, pid files and logs, so removing the
//! lab removes the domain. One thing cannot move: smbd reaches winbindd
//! through the socket directory compiled into its client library
//! (`/run/samba/winbindd`), so one domain controller runs at a time on a
//! machine (the tests run one lab at a time).

use std::{
    fs,
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{cmd, LabHost};

/// The domain's Kerberos realm and DNS name, and its NetBIOS name.
pub const REALM: &str = "CITY.LAB";
pub const DNS_DOMAIN: &str = "city.lab";
pub const NETBIOS_DOMAIN: &str = "CITY";
/// The controller's host name (its FQDN is `dc1.city.lab`).
pub const DC_NAME: &str = "dc1";

/// The domain administrator's password (the lab is closed: no route out).
pub const ADMIN_PASSWORD: &str = "Lab-Admin-2026!";
/// Every office user's password.
pub const USER_PASSWORD: &str = "Office-Pass-2026!";
/// Office users: a dozen, so that a spray over "every account" is a spray.
pub const USERS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];
/// Service accounts and the SPN each runs under (Kerberoastable).
pub const SERVICE_ACCOUNTS: [(&str, &str); 4] = [
    ("svc_sql", "MSSQLSvc/db1.city.lab:1433"),
    ("svc_web", "HTTP/intranet.city.lab"),
    ("svc_backup", "backup/files1.city.lab"),
    ("svc_print", "printsvc/print1.city.lab"),
];
/// An old account that does not need Kerberos pre-authentication.
pub const NO_PREAUTH_USER: &str = "legacy";

/// [MS-ADTS 2.2.16] userAccountControl: NORMAL_ACCOUNT,
/// DONT_EXPIRE_PASSWORD and DONT_REQ_PREAUTH.
const UAC_NO_PREAUTH: u32 = 0x200 | 0x10000 | 0x40_0000;

/// Where `cargo xtask setup --tools` installs Impacket (a virtual
/// environment with its example scripts in `bin`).
pub const IMPACKET_VENV: &str = "/opt/sensor-lab/impacket";

/// winbindd's socket directory as smbd's client library has it compiled in.
const WINBINDD_SOCKETS: &str = "/run/samba/winbindd";

/// Where the domain's files are.
pub fn dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("samba")
}

/// The controller's smb.conf.
pub fn smb_conf(lab_dir: &Path) -> PathBuf {
    dir(lab_dir).join("etc").join("smb.conf")
}

/// A krb5.conf for the domain's clients (`KRB5_CONFIG`).
pub fn krb5_conf(lab_dir: &Path) -> PathBuf {
    dir(lab_dir).join("krb5.conf")
}

/// Provisions the domain and its accounts, then starts `samba` in the
/// controller's namespace. Returns once the controller serves Kerberos,
/// LDAP, SMB and the endpoint mapper.
pub fn start(lab_dir: &Path, dc: &LabHost) -> Result<std::process::Child> {
    let root = dir(lab_dir);
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    let root_s = root.to_string_lossy().into_owned();
    let ip = dc.ipv4.to_string();
    // Files of their own for every daemon, never the machine's /var.
    let options = [
        format!("interfaces={ip}"),
        "bind interfaces only=yes".into(),
        "dns forwarder=none".into(),
        "dns update command=/bin/true".into(),
        format!("pid directory={root_s}"),
        format!("log file={root_s}/log.%m"),
        format!("ncalrpc dir={root_s}/ncalrpc"),
    ];
    let mut provision = vec![
        "domain".to_string(),
        "provision".into(),
        format!("--targetdir={root_s}"),
        format!("--realm={REALM}"),
        format!("--domain={NETBIOS_DOMAIN}"),
        "--server-role=dc".into(),
        "--dns-backend=SAMBA_INTERNAL".into(),
        format!("--adminpass={ADMIN_PASSWORD}"),
        format!("--host-name={DC_NAME}"),
        format!("--host-ip={ip}"),
    ];
    provision.extend(options.iter().map(|o| format!("--option={o}")));
    samba_tool(dc, &provision)?;

    let conf = smb_conf(lab_dir);
    let conf_s = conf.to_string_lossy().into_owned();
    for user in USERS {
        samba_tool(dc, &["user", "create", user, USER_PASSWORD, "-s", &conf_s])?;
    }
    for (account, spn) in SERVICE_ACCOUNTS {
        let password = format!("Svc-{account}-2026!");
        samba_tool(dc, &["user", "create", account, &password, "-s", &conf_s])?;
        samba_tool(dc, &["spn", "add", spn, account, "-s", &conf_s])?;
    }
    samba_tool(
        dc,
        &[
            "user",
            "create",
            NO_PREAUTH_USER,
            USER_PASSWORD,
            "-s",
            &conf_s,
        ],
    )?;
    let ldif = root.join("no-preauth.ldif");
    let base = DNS_DOMAIN
        .split('.')
        .map(|part| format!("DC={part}"))
        .collect::<Vec<_>>()
        .join(",");
    fs::write(
        &ldif,
        format!(
            "dn: CN={NO_PREAUTH_USER},CN=Users,{base}\nchangetype: modify\n\
             replace: userAccountControl\nuserAccountControl: {UAC_NO_PREAUTH}\n"
        ),
    )?;
    let sam = root.join("private").join("sam.ldb");
    dc.netns.exec(
        "ldbmodify",
        &["-H", &sam.to_string_lossy(), &ldif.to_string_lossy()],
    )?;

    let text = fs::read_to_string(&conf).context("reading the provisioned smb.conf")?;
    // Settings provisioning does not keep, added to [global]:
    // - clients that bind to LDAP without signing or TLS (simple binds,
    //   NTLM over plain LDAP, as many tools and older appliances do) are
    //   served, as Windows controllers do unless hardened;
    // - no SMB3 encryption, as a Windows server with default settings
    //   serves clients that do not ask for it. Impacket encrypts whenever
    //   a server offers it, and nothing inside an encrypted session can be
    //   seen (docs/detection.md, limits).
    let mut text = text.replacen(
        "[global]\n",
        &format!(
            "[global]\n\tldap server require strong auth = no\n\tserver smb encrypt = off\n\
             \tntp signd socket directory = {root_s}/ntp_signd\n"
        ),
        1,
    );
    // The administrative shares every Windows server has, listed first as
    // Windows lists them, where the domain's administrators act as root
    // [smb.conf: admin users]; no printers (a controller serves none).
    let mut admin_shares = String::new();
    for (share, sub) in [("ADMIN$", "windows"), ("C$", "c")] {
        let path = root.join("shares").join(sub);
        fs::create_dir_all(&path)?;
        admin_shares.push_str(&format!(
            "[{share}]\n\tpath = {}\n\tread only = no\n\
             \tadmin users = @\"{NETBIOS_DOMAIN}\\Domain Admins\"\n\n",
            path.display()
        ));
    }
    let shares_at = text.find("[homes]").unwrap_or(text.len());
    text.insert_str(shares_at, &admin_shares);
    for unserved in ["[printers]", "[print$]"] {
        if let Some(start) = text.find(unserved) {
            let end = text[start + 1..]
                .find("\n[")
                .map_or(text.len(), |i| start + 2 + i);
            text.replace_range(start..end, "");
        }
    }
    fs::write(&conf, text)?;
    fs::write(
        krb5_conf(lab_dir),
        format!(
            "[libdefaults]\n\tdefault_realm = {REALM}\n\tdns_lookup_kdc = false\n\
             \tdns_lookup_realm = false\n\n[realms]\n\t{REALM} = {{\n\t\tkdc = {ip}\n\
             \t\tadmin_server = {ip}\n\t}}\n\n[domain_realm]\n\t.{DNS_DOMAIN} = {REALM}\n"
        ),
    )?;

    fs::create_dir_all(WINBINDD_SOCKETS)?;
    let log = lab_dir.join("logs").join("samba.log");
    let mut child = dc.netns.spawn(
        "samba",
        &[
            "-s",
            &conf_s,
            "--foreground",
            "--no-process-group",
            "--debug-stdout",
            "-d",
            "1",
        ],
        &log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = [":88", ":135", ":389", ":445"];
    loop {
        let listening = dc.netns.exec("ss", &["-Hlnt"]).unwrap_or_default();
        if wanted.iter().all(|port| {
            listening.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|a| a.ends_with(port))
            })
        }) {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "samba exited ({status}) before it served the domain; its log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "samba did not serve Kerberos, LDAP, SMB and RPC within 60 s; see {}",
                log.display()
            );
        }
        sleep(Duration::from_millis(200));
    }
}

fn samba_tool(dc: &LabHost, args: &[impl AsRef<str>]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    cmd::run(dc.netns.command("samba-tool").args(&args))
        .with_context(|| format!("provisioning the lab's domain ({})", args[..2].join(" ")))?;
    Ok(())
}
