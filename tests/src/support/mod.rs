//! Helpers shared by the tests.

pub mod bpffs;
pub mod container;
pub mod fixture;
pub mod fleet;
pub mod lab;
pub mod packet;
pub mod schema;

use std::path::PathBuf;

/// Where sensord and sensorctl are (set by `cargo xtask test`).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("SENSOR_BIN_DIR")
        .map(PathBuf::from)
        .expect("SENSOR_BIN_DIR is not set: run the tests with `cargo xtask test`")
}

/// A name no other test (or earlier run) uses: `st<pid>-<tag>`.
pub fn unique_name(tag: &str) -> String {
    format!("st{}-{tag}", std::process::id())
}
