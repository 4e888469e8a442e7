//! Every default filesystem path and address, in one place.

/// bpffs directory where the maps (and the XDP links, under `links/`) are pinned.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sensor";
/// Isolations and blocks with their metadata, written atomically.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/sensor/state.json";
/// The control API's Unix socket (mode 0600, root only).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/sensor/control.sock";
/// The read-only control socket (mode 0660, group `readonly_group`).
pub const DEFAULT_READONLY_SOCKET: &str = "/run/sensor/readonly.sock";
/// Where Prometheus scrapes `/metrics`.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";
/// Where sensord looks for its configuration when not told.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/sensor/sensord.toml";
/// Sub-directory of the pin dir that holds one pinned XDP link per interface.
pub const LINKS_SUBDIR: &str = "links";
