//! sensord's library: configuration, datapath control, enforcement state,
//! the control API and metrics. `sensord` and `sensorctl` are thin binaries
//! over it.

/// What `--version` prints after the program's name: the release, and the
/// commit it was built from when the build knew it (`cargo xtask build`
/// passes `SENSOR_BUILD_COMMIT`; build.rs).
pub const VERSION: &str = env!("SENSOR_VERSION");

pub mod alerts;
pub mod bindings;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod detect;
pub mod detection;
pub mod enforcer;
pub mod feeds;
pub mod fleet;
pub mod listen;
pub mod metrics;
pub mod nets;
pub mod offline;
pub mod paths;
pub mod response;
pub mod state;
pub mod store;
pub mod tap;
pub mod telemetry;
pub mod triage;
