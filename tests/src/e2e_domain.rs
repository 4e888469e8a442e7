//! A real Active Directory domain in the lab: the Samba domain controller
//! dc1 on the office segment, attacked from the office hosts with
//! Impacket's tools, Kerberos and LDAP clients. The office is switched, so
//! sensord sees these east-west attacks on its tap (the mirror port); an
//! attack from the records segment crosses the gateway and is seen inline.
//! Ordinary domain use comes first and must raise nothing.

use labnet::domain::{
    ADMIN_PASSWORD, DNS_DOMAIN, IMPACKET_VENV, NO_PREAUTH_USER, REALM, USERS, USER_PASSWORD,
};

use crate::support::lab::{
    self, assert_isolated_within, detectors, http, incidents_of, run, wait_for,
};

const DC: &str = "10.10.0.10";

/// A first web request: data acknowledged, so sensord knows the address is
/// really the host's (the anti-spoofing rule).
fn browse(lab: &labnet::Lab, host: &str) {
    assert!(http(lab, host, "http://203.0.113.80/"), "{host} browses");
}

/// The shell environment of a domain client: the lab's krb5.conf and a
/// credential cache of the host's own.
fn kerberos_env(lab: &labnet::Lab, host: &str) -> String {
    format!(
        "export KRB5_CONFIG={} KRB5CCNAME=FILE:{}/krb5cc-{host};",
        labnet::domain::krb5_conf(&lab.dir).display(),
        lab.dir.display()
    )
}

/// An Impacket example script run from `host`; returns its output. It
/// gets 30 s: a host isolated halfway through waits on a dead connection.
/// It runs in the lab's directory, where secretsdump leaves its resume file.
fn impacket(lab: &labnet::Lab, host: &str, script: &str, args: &str) -> String {
    let out = run(
        lab,
        host,
        &format!(
            "cd {} && timeout 30 {IMPACKET_VENV}/bin/python {IMPACKET_VENV}/bin/{script} {args} 2>&1",
            lab.dir.display()
        ),
    );
    println!("{script} from {host}:\n{out}");
    out
}

fn admin() -> String {
    format!("'{DNS_DOMAIN}/Administrator:{ADMIN_PASSWORD}'")
}

fn user() -> String {
    format!("'{DNS_DOMAIN}/alice:{USER_PASSWORD}'")
}

/// Waits up to 15 s for `detector` among `host`'s incidents.
fn assert_detected(lab: &labnet::Lab, host: &str, detector: &str, what: &str) {
    let seen = wait_for(15, || detectors(lab, host).iter().any(|d| d == detector));
    assert!(
        seen.is_some(),
        "{what}: no {detector} for {host}; its incidents: {:?}; sensord log:\n{}",
        incidents_of(lab, host),
        std::fs::read_to_string(lab.sensord_log()).unwrap_or_default()
    );
}

/// Ordinary use of the domain: a Kerberos logon, group-policy-style reads
/// of SYSVOL over SMB, the user's own record read over LDAP.
fn ordinary_domain_use(lab: &labnet::Lab, host: &str) {
    let env = kerberos_env(lab, host);
    let logon = run(
        lab,
        host,
        &format!("{env} echo '{USER_PASSWORD}' | kinit alice@{REALM} >/dev/null && klist"),
    );
    assert!(logon.contains("krbtgt/"), "kinit from {host}: {logon}");
    let policies = run(
        lab,
        host,
        &format!(
            "smbclient //{DC}/sysvol -U 'CITY\\alice%{USER_PASSWORD}' \
             -c 'ls {DNS_DOMAIN}\\Policies\\*' 2>&1"
        ),
    );
    assert!(
        policies.contains("blocks of size"),
        "SYSVOL from {host}: {policies}"
    );
    let own = run(
        lab,
        host,
        &format!(
            "ldapsearch -x -LLL -H ldap://{DC} -D alice@{DNS_DOMAIN} -w '{USER_PASSWORD}' \
             -b DC=city,DC=lab '(sAMAccountName=alice)' memberOf 2>&1"
        ),
    );
    assert!(own.contains("dn: CN=alice"), "LDAP from {host}: {own}");
}

#[test]
fn remote_execution_and_dcsync_against_the_domain_controller_isolate_the_host() {
    let lab = lab::start_with_domain("domexec", lab::ISOLATE_POLICY);
    for host in ["office1", "office2", "office3"] {
        browse(&lab, host);
    }
    ordinary_domain_use(&lab, "office2");
    ordinary_domain_use(&lab, "office3");
    std::thread::sleep(std::time::Duration::from_secs(3));
    for host in ["10.10.0.12", "10.10.0.13", "10.10.0.11"] {
        assert!(
            incidents_of(&lab, host).is_empty(),
            "ordinary domain use raised {:?}",
            incidents_of(&lab, host)
        );
    }

    // DCSync: secretsdump asks the controller to replicate the secrets.
    impacket(
        &lab,
        "office1",
        "secretsdump.py",
        &format!("-just-dc {}@{DC}", admin()),
    );
    assert_isolated_within(&lab, "10.10.0.11", 15, "secretsdump -just-dc");
    assert!(detectors(&lab, "10.10.0.11").contains(&"credential.dcsync".into()));

    // psexec: its program copied to ADMIN$, a service created through
    // svcctl over SMB (Samba refuses it: the request is what counts).
    impacket(
        &lab,
        "office2",
        "psexec.py",
        &format!("{}@{DC} whoami", admin()),
    );
    assert_isolated_within(&lab, "10.10.0.12", 15, "psexec");
    let found = detectors(&lab, "10.10.0.12");
    for detector in ["lateral.admin_share_write", "lateral.remote_service"] {
        assert!(found.contains(&detector.into()), "psexec: {found:?}");
    }

    // smbexec from the records segment: across the gateway, seen inline.
    // (records1 serves the office: its answers prove its address.)
    assert!(
        http(&lab, "office3", "http://10.20.0.21/"),
        "records1 serves"
    );
    impacket(&lab, "records1", "smbexec.py", &format!("{}@{DC}", admin()));
    assert_isolated_within(&lab, "10.20.0.21", 15, "smbexec from records1");
    assert!(detectors(&lab, "10.20.0.21").contains(&"lateral.remote_service".into()));

    // The host that only used the domain is left alone...
    assert!(incidents_of(&lab, "10.10.0.13").is_empty());

    // ...until it sprays one password at every account over SMB (NTLM):
    // the controller refuses each session setup.
    let users = USERS.join(" ");
    let spray = run(
        &lab,
        "office3",
        &format!(
            "for u in {users}; do timeout 10 smbclient --use-kerberos=disabled \
             -W CITY -U \"$u%Winter2026!\" //{DC}/IPC$ -c exit; done 2>&1"
        ),
    );
    assert!(
        spray.contains("NT_STATUS_LOGON_FAILURE"),
        "the spray: {spray}"
    );
    assert_isolated_within(&lab, "10.10.0.13", 15, "an SMB password spray");
    let found = detectors(&lab, "10.10.0.13");
    assert!(found.contains(&"bruteforce.refused".into()), "{found:?}");
    // Read as spraying: the refusals named many accounts.
    let incidents = incidents_of(&lab, "10.10.0.13");
    let spraying = incidents.iter().any(|i| {
        i["techniques"]
            .as_array()
            .is_some_and(|t| t.contains(&"T1110.003".into()))
    });
    assert!(spraying, "{incidents:?}");
}

#[test]
fn kerberos_abuse_and_domain_reconnaissance_raise_their_incidents() {
    // Alerts only: each host's incident gathers what it did.
    let lab = lab::start_with_domain("domrecon", "");
    for host in ["office1", "office2", "office3"] {
        browse(&lab, host);
    }

    // Kerberoasting and AS-REP roasting.
    impacket(
        &lab,
        "office1",
        "GetUserSPNs.py",
        &format!("-dc-ip {DC} -request {}", user()),
    );
    assert_detected(
        &lab,
        "10.10.0.11",
        "credential.kerberoast",
        "GetUserSPNs -request",
    );
    let found = impacket(
        &lab,
        "office2",
        "GetNPUsers.py",
        &format!("-dc-ip {DC} -request {}", user()),
    );
    assert!(
        found.contains(NO_PREAUTH_USER),
        "GetNPUsers found no roastable account"
    );
    assert_detected(
        &lab,
        "10.10.0.12",
        "credential.asrep_roast",
        "GetNPUsers -request",
    );

    // A password spray over Kerberos: one wrong password, every account.
    let env = kerberos_env(&lab, "office3");
    let users = USERS.join(" ");
    run(
        &lab,
        "office3",
        &format!("{env} for u in {users}; do echo 'Winter2026!' | kinit $u@{REALM}; done 2>&1"),
    );
    assert_detected(&lab, "10.10.0.13", "bruteforce.spray", "a Kerberos spray");

    // Accounts by RID (lsarpc), account by account (samr), the endpoint
    // mapper's list; then remote execution Samba cannot serve, whose
    // first steps still show.
    let steps = [
        (
            "office3",
            "lookupsid.py",
            format!("{}@{DC}", user()),
            "recon.sid_lookup",
        ),
        (
            "office3",
            "samrdump.py",
            format!("{}@{DC}", user()),
            "recon.accounts",
        ),
        (
            "office3",
            "rpcdump.py",
            DC.to_string(),
            "recon.rpc_endpoints",
        ),
        (
            "office2",
            "atexec.py",
            format!("{}@{DC} whoami", admin()),
            "lateral.scheduled_task",
        ),
        (
            "office1",
            "wmiexec.py",
            format!("{}@{DC} whoami", admin()),
            "lateral.dcom",
        ),
        (
            "office3",
            "dcomexec.py",
            format!("-object MMC20 {}@{DC} whoami", admin()),
            "lateral.dcom",
        ),
    ];
    for (host, script, args, detector) in steps {
        impacket(&lab, host, script, &args);
        assert_detected(
            &lab,
            lab.host(host).ipv4.to_string().as_str(),
            detector,
            script,
        );
    }
    // Every user over LDAP.
    run(
        &lab,
        "office3",
        &format!(
            "ldapsearch -x -LLL -H ldap://{DC} -D alice@{DNS_DOMAIN} -w '{USER_PASSWORD}' \
             -b DC=city,DC=lab '(objectClass=user)' sAMAccountName >/dev/null"
        ),
    );
    assert_detected(&lab, "10.10.0.13", "recon.directory", "a bulk LDAP query");
}
