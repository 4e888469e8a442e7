//! What the inside hosts are: domain controllers, configured or learned
//! from traffic, so that what only domain controllers do among themselves
//! (directory replication) is judged by who does it; mail servers,
//! configured, so that only they send mail out.
//!
//! A host is learned as a domain controller when it has served Kerberos
//! (88) or LDAP (389) to `learn_clients` distinct clients in connections
//! that completed (the client's data acknowledged: a forged address cannot
//! complete one). One compromised workstation that listens on 88 cannot
//! make itself a controller on its own: it would need that many other
//! hosts to talk to it. A controller is remembered for `LEARNED_FOR`.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    event::{Event, Kind, Nanos, PROTO_TCP, SECOND},
    window::{cap_oldest, TimedSet},
};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RolesConfig {
    /// Domain controllers (addresses or CIDRs), known whatever the traffic
    /// shows.
    #[serde(deserialize_with = "crate::config::nets")]
    pub domain_controllers: Vec<IpNet>,
    /// Mail servers (addresses or CIDRs): the hosts that send mail to
    /// outside servers themselves (`mail`).
    #[serde(deserialize_with = "crate::config::nets")]
    pub mail_servers: Vec<IpNet>,
    /// Learn domain controllers from the traffic (see the module). Default
    /// true.
    pub learn: bool,
    /// Distinct clients a host must serve Kerberos or LDAP to. Default 3.
    pub learn_clients: usize,
}

impl Default for RolesConfig {
    fn default() -> Self {
        RolesConfig {
            domain_controllers: Vec::new(),
            mail_servers: Vec::new(),
            learn: true,
            learn_clients: 3,
        }
    }
}

/// Kerberos and LDAP: what every domain controller serves [MS-ADTS 6.3].
const DC_PORTS: [u16; 2] = [88, 389];

/// How long a learned controller stays one after it last served a client.
pub const LEARNED_FOR: Nanos = 7 * 24 * 3600 * SECOND;

/// Hosts tracked as possible controllers at most (the clients each served
/// are a bounded set of `learn_clients`).
const CANDIDATES: usize = 1 << 14;

pub struct Roles {
    config: RolesConfig,
    /// Servers of Kerberos or LDAP, with the clients they served.
    servers: HashMap<IpAddr, TimedSet<IpAddr>>,
}

impl Roles {
    /// New settings from a reload: they apply from the next event, and
    /// what was learnt so far stays.
    pub fn reconfigure(&mut self, config: RolesConfig) {
        self.config = config;
    }

    pub fn new(config: RolesConfig) -> Roles {
        Roles {
            config,
            servers: HashMap::new(),
        }
    }

    /// Learns from a finished connection.
    pub fn observe(&mut self, e: &Event) {
        let Kind::FlowEnd(flow) = &e.kind else {
            return;
        };
        if !self.config.learn
            || e.protocol != PROTO_TCP
            || !flow.proven
            || !flow.resp_data
            || !DC_PORTS.contains(&e.dport)
        {
            return;
        }
        cap_oldest(&mut self.servers, CANDIDATES, |clients| clients.latest());
        let clients = self.servers.entry(e.dst).or_default();
        let known = clients.keys().any(|c| *c == e.src);
        if known || clients.len() < self.config.learn_clients {
            clients.insert(e.src, e.ts);
        }
    }

    pub fn is_domain_controller(&self, host: IpAddr, now: Nanos) -> bool {
        if self
            .config
            .domain_controllers
            .iter()
            .any(|n| n.contains(&host))
        {
            return true;
        }
        self.servers.get(&host).is_some_and(|clients| {
            clients.len() >= self.config.learn_clients.max(1)
                && now.saturating_sub(clients.latest()) <= LEARNED_FOR
        })
    }

    pub fn has_mail_servers(&self) -> bool {
        !self.config.mail_servers.is_empty()
    }

    pub fn is_mail_server(&self, host: IpAddr) -> bool {
        self.config.mail_servers.iter().any(|n| n.contains(&host))
    }

    pub fn prune(&mut self, now: Nanos) {
        self.servers
            .retain(|_, clients| now.saturating_sub(clients.latest()) <= LEARNED_FOR);
        super::window::fit(&mut self.servers);
    }

    /// Entries: hosts that served Kerberos or LDAP.
    pub fn size(&self) -> usize {
        self.servers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::FlowSummary;

    #[test]
    fn controllers_are_configured_as_addresses_or_ranges() {
        let config: RolesConfig =
            toml::from_str(r#"domain_controllers = ["10.10.0.10", "10.20.0.0/28", "fd00::5"]"#)
                .expect("addresses and CIDRs");
        let roles = Roles::new(config);
        for dc in ["10.10.0.10", "10.20.0.9", "fd00::5"] {
            assert!(
                roles.is_domain_controller(dc.parse().unwrap(), SECOND),
                "{dc}"
            );
        }
        assert!(!roles.is_domain_controller("10.10.0.11".parse().unwrap(), SECOND));
        let bad = toml::from_str::<RolesConfig>(r#"domain_controllers = ["dc1.city.lab"]"#);
        let message = bad.expect_err("a name is refused").to_string();
        assert!(message.contains("not an address or a CIDR"), "{message}");
    }

    fn served(client: &str, server: &str, port: u16, proven: bool) -> Event {
        Event {
            ts: SECOND,
            src: client.parse().unwrap(),
            dst: server.parse().unwrap(),
            sport: 50000,
            dport: port,
            protocol: PROTO_TCP,
            kind: Kind::FlowEnd(FlowSummary {
                proven,
                answered: true,
                orig_data: true,
                resp_data: true,
                ..Default::default()
            }),
            payload: vec![],
        }
    }

    #[test]
    fn a_host_serving_kerberos_and_ldap_to_three_clients_is_a_controller() {
        let mut roles = Roles::new(RolesConfig::default());
        let dc = "10.0.0.10".parse().unwrap();
        roles.observe(&served("10.0.0.21", "10.0.0.10", 88, true));
        roles.observe(&served("10.0.0.21", "10.0.0.10", 389, true));
        roles.observe(&served("10.0.0.22", "10.0.0.10", 389, true));
        assert!(!roles.is_domain_controller(dc, SECOND));
        roles.observe(&served("10.0.0.23", "10.0.0.10", 88, true));
        assert!(roles.is_domain_controller(dc, SECOND));
        assert!(!roles.is_domain_controller(dc, SECOND + LEARNED_FOR + SECOND));
        // Clients are not controllers; unproven connections teach nothing.
        assert!(!roles.is_domain_controller("10.0.0.21".parse().unwrap(), SECOND));
        let mut roles = Roles::new(RolesConfig::default());
        for c in 21..30 {
            roles.observe(&served(&format!("10.0.0.{c}"), "10.0.0.10", 88, false));
        }
        assert!(!roles.is_domain_controller(dc, SECOND));
    }

    #[test]
    fn configured_controllers_need_no_traffic_and_learning_can_be_off() {
        let config = RolesConfig {
            domain_controllers: vec!["10.0.0.10/32".parse().unwrap()],
            learn: false,
            ..Default::default()
        };
        let mut roles = Roles::new(config);
        assert!(roles.is_domain_controller("10.0.0.10".parse().unwrap(), 0));
        for c in 21..30 {
            roles.observe(&served(&format!("10.0.0.{c}"), "10.0.0.11", 88, true));
        }
        assert!(!roles.is_domain_controller("10.0.0.11".parse().unwrap(), SECOND));
    }
}
