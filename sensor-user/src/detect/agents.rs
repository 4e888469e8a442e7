//! Which inside hosts send which HTTP User-Agent: a census that tells a
//! rare one. RITA's "rare signature" threat modifier marks a user agent
//! that no other connection on the network used: a browser's or an update
//! agent's is shared by many hosts, an implant's hard-coded one by its
//! victims only. Rarity means something only among many hosts, so a
//! census of fewer than `MIN_POPULATION` hosts calls nothing rare (a
//! capture of one workstation, a sensor just started).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
};

use super::{
    event::{Nanos, SECOND},
    window::{cap_oldest, fit, TimedSet},
};

/// Hosts that must have sent a User-Agent within `MEMORY` before one used
/// by a single host is rare: the project's choice, a small office's
/// worth of workstations, enough that the common agents are all known.
pub const MIN_POPULATION: usize = 20;
/// How long a host's use of an agent is remembered: a day, the span RITA
/// judges over.
const MEMORY: Nanos = 24 * 3600 * SECOND;
/// Distinct agents remembered (hashed: an agent costs a few words,
/// whatever its length); hosts in the population.
const AGENTS: usize = 1 << 16;
const HOSTS: usize = 1 << 16;

#[derive(Default)]
pub struct UserAgentCensus {
    /// Hash of the agent -> the hosts that sent it (two are enough to know
    /// it is shared) and when each last did.
    agents: HashMap<u64, Vec<(IpAddr, Nanos)>>,
    /// Hosts that sent any agent.
    population: TimedSet<IpAddr>,
    /// Entries dropped to stay within the limits.
    pub evicted: u64,
}

impl UserAgentCensus {
    /// Counts `host` sending `agent` at `ts`; whether the agent is rare:
    /// no other host sent it within a day, among at least
    /// `MIN_POPULATION` hosts that sent one.
    pub fn rare(&mut self, host: IpAddr, agent: &str, ts: Nanos) -> bool {
        let mut h = DefaultHasher::new();
        agent.hash(&mut h);
        let key = h.finish();
        self.population.insert(host, ts);
        self.evicted += cap_oldest(&mut self.agents, AGENTS, |v| {
            v.iter().map(|u| u.1).max().unwrap_or(0)
        });
        let users = self.agents.entry(key).or_default();
        let since = ts.saturating_sub(MEMORY);
        users.retain(|(_, at)| *at >= since);
        if let Some(user) = users.iter_mut().find(|(user, _)| *user == host) {
            user.1 = ts;
        } else if users.len() < 2 {
            // Two users make an agent shared; a third changes nothing.
            users.push((host, ts));
        }
        let shared = users.iter().any(|(user, _)| *user != host);
        !shared && self.population.count_within(ts, MEMORY) >= MIN_POPULATION
    }

    /// Forgets uses older than a day.
    pub fn prune(&mut self, now: Nanos) {
        let since = now.saturating_sub(MEMORY);
        self.agents.retain(|_, users| {
            users.retain(|(_, at)| *at >= since);
            !users.is_empty()
        });
        fit(&mut self.agents);
        self.population.prune(since);
        if self.population.len() > HOSTS {
            // Past the limit the population is large whatever it loses.
            self.evicted += self.population.len() as u64;
            self.population = TimedSet::default();
        }
    }

    pub fn size(&self) -> usize {
        self.agents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0";

    fn host(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_agent_only_one_host_sends_is_rare_among_many_hosts_only() {
        let mut census = UserAgentCensus::default();
        // A small site: nothing is rare.
        for n in 1..=5 {
            assert!(!census.rare(host(n), CHROME, SECOND));
        }
        assert!(!census.rare(host(6), "Implant/1.0", 2 * SECOND));
        for n in 7..=30 {
            assert!(!census.rare(host(n), CHROME, 3 * SECOND));
        }
        // Among 30 hosts, an agent no other host sent is rare.
        assert!(census.rare(host(31), "Implant/2.0", 4 * SECOND));
        assert!(census.rare(host(31), "Implant/2.0", 5 * SECOND));
        // Host 6's agent, once another host sends it too, is shared.
        assert!(!census.rare(host(7), "Implant/1.0", 6 * SECOND));
        assert!(!census.rare(host(6), "Implant/1.0", 7 * SECOND));
        // A day on, everything is forgotten.
        census.prune(MEMORY + 8 * SECOND);
        assert_eq!(census.size(), 0);
    }
}
