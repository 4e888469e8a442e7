//! Embeds the eBPF objects that `cargo xtask build` compiled, so sensord is
//! one self-contained binary. Without them (a plain `cargo build` or `cargo
//! test`), empty objects are embedded and sensord says how to build properly.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let default_dir = manifest.join("../target/ebpf/bpfel-unknown-none/release");
    println!("cargo:rerun-if-env-changed=SENSOR_EBPF_DIR");
    println!("cargo:rerun-if-env-changed=SENSOR_BUILD_COMMIT");
    let release = env::var("CARGO_PKG_VERSION").unwrap();
    let version = match env::var("SENSOR_BUILD_COMMIT") {
        Ok(commit) if !commit.is_empty() => format!("{release} (commit {commit})"),
        _ => release,
    };
    println!("cargo:rustc-env=SENSOR_VERSION={version}");
    let dir = env::var_os("SENSOR_EBPF_DIR")
        .map(PathBuf::from)
        .unwrap_or(default_dir);
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for name in ["sensor", "floor"] {
        let src = dir.join(name);
        println!("cargo:rerun-if-changed={}", src.display());
        let bytes = fs::read(&src).unwrap_or_default();
        fs::write(out.join(format!("{name}.bpf.o")), bytes).unwrap();
    }
}
