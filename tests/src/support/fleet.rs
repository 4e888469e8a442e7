//! A fleet for the tests: `labnet::fleet::FleetLab` (a three-node NATS
//! JetStream cluster, one lab per site), named for the test, and a NATS
//! client of the tests' own.

pub use labnet::fleet::{FleetLab as Fleet, SiteSpec};

use super::{bin_dir, unique_name};

/// Builds a fleet named for the test `tag`.
pub fn start(tag: &str, specs: &[SiteSpec], extra: &str) -> Fleet {
    Fleet::create(&unique_name(tag), specs, extra, &bin_dir())
        .unwrap_or_else(|e| panic!("building the fleet failed: {e:#}"))
}

/// `start`, with each site's own addition to its configuration.
pub fn start_with(tag: &str, specs: &[SiteSpec], extra: impl Fn(&SiteSpec) -> String) -> Fleet {
    Fleet::create_with(&unique_name(tag), specs, extra, &bin_dir())
        .unwrap_or_else(|e| panic!("building the fleet failed: {e:#}"))
}

/// A client's `[fleet]` settings as `user` (the SOC, or a forger holding a
/// site's credentials).
pub fn client(fleet: &Fleet, user: &str, site: &str) -> sensor_user::fleet::FleetConfig {
    sensor_user::fleet::FleetConfig {
        servers: fleet.cloud.servers(),
        site: site.into(),
        user: Some(user.into()),
        password_file: Some(fleet.password_file(user)),
        tls_ca_file: Some(fleet.cloud.ca_file()),
        ..Default::default()
    }
}
