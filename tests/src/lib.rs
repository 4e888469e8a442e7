//! Datapath and end-to-end tests. They need root, a built eBPF object and
//! the release binaries: run them with `cargo xtask test`, which also runs
//! them one at a time (they share the kernel's state).

pub mod bench;
pub mod support;

#[cfg(test)]
mod datapath_robustness;
#[cfg(test)]
mod datapath_verdicts;
#[cfg(test)]
mod e2e_alerts;
#[cfg(test)]
mod e2e_cli;
#[cfg(test)]
mod e2e_detection;
#[cfg(test)]
mod e2e_domain;
#[cfg(test)]
mod e2e_enforcement;
#[cfg(test)]
mod e2e_feeds;
#[cfg(test)]
mod e2e_fleet;
#[cfg(test)]
mod e2e_lifecycle;
#[cfg(test)]
mod e2e_robustness;
#[cfg(test)]
mod e2e_spoofing;
#[cfg(test)]
mod e2e_tap;
#[cfg(test)]
mod e2e_triage;
#[cfg(test)]
mod monitoring;
#[cfg(test)]
mod package;
#[cfg(test)]
mod telemetry_parity;
