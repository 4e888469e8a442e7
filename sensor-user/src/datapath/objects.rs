//! The eBPF objects embedded at build time (see build.rs).

/// The sensor's XDP program and its maps.
pub static SENSOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// The floor: an XDP program that only passes, for side-by-side benchmarks.
pub static FLOOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor.bpf.o"));

/// The sensor object, or an error that says how to get one.
pub fn sensor_object() -> anyhow::Result<&'static [u8]> {
    if SENSOR_OBJECT.is_empty() {
        anyhow::bail!(
            "this binary was built without the eBPF program; build it with `cargo xtask build`"
        );
    }
    Ok(SENSOR_OBJECT)
}
