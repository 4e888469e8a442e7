//! sensord's library: configuration, datapath control, enforcement state,
//! the control API and metrics. `sensord` and `sensorctl` are thin binaries
//! over it.

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
pub mod listen;
pub mod metrics;
pub mod offline;
pub mod paths;
pub mod response;
pub mod state;
pub mod tap;
pub mod telemetry;
