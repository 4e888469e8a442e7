//! Loading the XDP program, pinning its maps and links, attaching it to the
//! gateway's interfaces, and adopting what an earlier run left pinned.

mod address_table;
mod batch;
mod maps;
mod objects;
mod prefix_map;
mod summary;

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use log::{error, info, warn};
use sensor_common::{
    map_names, IFACE_SLOT_GLOBAL, PROGRAM_NAME, TAP_PROGRAM_NAME, TELEMETRY_PROGRAM_NAME,
};

pub use address_table::AddressTable;
pub use maps::{Maps, UNATTACHED_SLOT};
pub use objects::{sensor_object, FLOOR_OBJECT, SENSOR_OBJECT};

use crate::{config::XdpModeSetting, paths::LINKS_SUBDIR};

/// `statfs` magic of a bpffs mount.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Every map the program pins, for clean-up.
pub const PINNED_MAPS: [&str; 20] = [
    map_names::ISOLATED_MACS,
    map_names::PORTS,
    map_names::BINDINGS_V4,
    map_names::BINDINGS_V6,
    map_names::TELEMETRY_PROG,
    map_names::PACKET_SCRATCH,
    map_names::VERDICT_SCRATCH,
    map_names::TELEMETRY,
    map_names::FLOWS,
    map_names::TELEMETRY_STATS,
    map_names::ADDRESSES_V4,
    map_names::ADDRESSES_V6,
    map_names::SUMMARY_V4,
    map_names::HOSTS_V4,
    map_names::EXEMPT_V4,
    map_names::EXEMPT_V6,
    map_names::SEGMENT_POLICY,
    map_names::SETTINGS,
    map_names::IFACE_COUNTERS,
    map_names::IFACE_NAMES,
];

/// One interface the program is attached to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// "native" or "generic".
    pub mode: &'static str,
    /// True when an earlier run's pinned link was taken over (and its
    /// program replaced atomically) rather than a new link made.
    pub adopted: bool,
}

/// The program and its maps. One program instance is loaded per interface
/// (each knows its counter slot as a constant), plus one that is never
/// attached, for BPF_PROG_TEST_RUN; all share the pinned maps.
pub struct Datapath {
    unattached: Ebpf,
    pub maps: Maps,
    pin_dir: PathBuf,
    object: &'static [u8],
    pub attachments: Vec<Attachment>,
    /// Kept so each attached instance stays loaded for the daemon's life.
    instances: Vec<Ebpf>,
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Makes sure `pin_dir` exists on a bpffs. If its parent is an empty mount
/// point that is not bpffs (as `/sys/fs/bpf` is on a system without systemd),
/// mounts one there.
pub fn ensure_pin_dir(pin_dir: &Path) -> Result<()> {
    if pin_dir.is_dir() && is_bpffs(pin_dir) {
        return Ok(());
    }
    let parent = pin_dir
        .parent()
        .with_context(|| format!("pin_dir {} has no parent", pin_dir.display()))?;
    if !is_bpffs(parent) {
        if parent == Path::new("/sys/fs/bpf") {
            let src = CString::new("bpf").unwrap();
            let target = CString::new("/sys/fs/bpf").unwrap();
            // SAFETY: valid C strings; mounting needs CAP_SYS_ADMIN.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    src.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                bail!(
                    "cannot mount bpffs on /sys/fs/bpf: {}",
                    std::io::Error::last_os_error()
                );
            }
            info!("mounted bpffs on /sys/fs/bpf");
        } else {
            bail!(
                "pin_dir {} is not on a bpffs; mount one first (mount -t bpf bpf {})",
                pin_dir.display(),
                parent.display()
            );
        }
    }
    fs::create_dir_all(pin_dir.join(LINKS_SUBDIR))
        .with_context(|| format!("cannot create {}", pin_dir.display()))?;
    Ok(())
}

impl Datapath {
    /// Loads the program and opens the maps pinned in `pin_dir`, creating and
    /// pinning them on the first run and reusing them after.
    pub fn load(pin_dir: &Path) -> Result<Datapath> {
        Self::load_object(pin_dir, sensor_object()?)
    }

    pub fn load_object(pin_dir: &Path, object: &'static [u8]) -> Result<Datapath> {
        ensure_pin_dir(pin_dir)?;
        let mut unattached = load_instance(pin_dir, object, UNATTACHED_SLOT)?;
        load_telemetry_program(&mut unattached)?;
        let maps = Maps::take_from(&mut unattached)?;
        Ok(Datapath {
            unattached,
            maps,
            pin_dir: pin_dir.to_owned(),
            object,
            attachments: Vec::new(),
            instances: Vec::new(),
        })
    }

    /// The telemetry maps (ring buffer, flow table, counters); once.
    pub fn take_telemetry(&mut self) -> Result<crate::telemetry::TelemetryMaps> {
        crate::telemetry::TelemetryMaps::take_from(&mut self.unattached)
    }

    /// A new instance of the mirror-port program (with its own socket map
    /// and counters), for one tap.
    pub fn load_tap_program(&self) -> Result<Ebpf> {
        load_program(
            &self.pin_dir,
            self.object,
            TAP_PROGRAM_NAME,
            UNATTACHED_SLOT,
        )
    }

    /// The instance that is never attached: for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &Xdp {
        program_of(&self.unattached)
    }

    fn link_pin(&self, interface: &str) -> PathBuf {
        self.pin_dir.join(LINKS_SUBDIR).join(interface)
    }

    /// Attaches to every interface; detaches pinned links of interfaces no
    /// longer listed.
    /// Attaches to every interface, or to none: when one fails, the links
    /// this call made are taken down again (links an earlier run left,
    /// whose program was replaced, stay: they were enforcing before).
    pub fn attach_all(&mut self, interfaces: &[String], mode: XdpModeSetting) -> Result<()> {
        for interface in interfaces {
            let attachment = match self.attach(interface, mode) {
                Ok(a) => a,
                Err(e) => {
                    for made in self.attachments.iter().filter(|a| !a.adopted) {
                        warn!("{}: detached again (the start failed)", made.interface);
                        unpin_link(&self.link_pin(&made.interface));
                    }
                    self.attachments.clear();
                    return Err(e.context(format!("{interface}: cannot attach")));
                }
            };
            info!(
                "{}: XDP attached in {} mode{}",
                attachment.interface,
                attachment.mode,
                if attachment.adopted {
                    " (replaced the running program)"
                } else {
                    ""
                }
            );
            self.attachments.push(attachment);
        }
        self.detach_unlisted(interfaces)
    }

    fn attach(&mut self, interface: &str, mode: XdpModeSetting) -> Result<Attachment> {
        let ifindex = if_index(interface)?;
        let slot = self.maps.interface_slot(interface)?;
        let mut instance = load_instance(&self.pin_dir, self.object, slot)?;
        let program = program_mut_of(&mut instance);
        let attachment =
            attach_instance(program, &self.link_pin(interface), interface, ifindex, mode)?;
        self.instances.push(instance);
        Ok(attachment)
    }

    /// Attaches again where a link's pin has gone (removed by hand or by a
    /// stray clean-up: the pin holds the link, so its removal detached the
    /// program). Returns the interfaces re-attached.
    pub fn repin_lost(&mut self, mode: XdpModeSetting) -> Vec<String> {
        let lost: Vec<String> = self
            .attachments
            .iter()
            .filter(|a| !self.link_pin(&a.interface).exists())
            .map(|a| a.interface.clone())
            .collect();
        let mut done = Vec::new();
        for interface in lost {
            warn!("{interface}: the XDP link's pin is gone (the program was detached); attaching again");
            match self.attach(&interface, mode) {
                Ok(attachment) => {
                    self.attachments.retain(|a| a.interface != interface);
                    self.attachments.push(attachment);
                    done.push(interface);
                }
                Err(e) => error!("{interface}: attaching again failed: {e:#}"),
            }
        }
        done
    }

    fn detach_unlisted(&mut self, interfaces: &[String]) -> Result<()> {
        let dir = self.pin_dir.join(LINKS_SUBDIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !interfaces.contains(&name) {
                info!("{name}: no longer configured; detaching XDP");
                unpin_link(&entry.path());
                self.maps.release_interface_slot(&name)?;
            }
        }
        Ok(())
    }
}

/// Loads one instance of the program, with its counter slot, over the maps
/// pinned in `pin_dir` (creating and pinning them on the first load).
fn load_instance(pin_dir: &Path, object: &[u8], slot: u32) -> Result<Ebpf> {
    load_program(pin_dir, object, PROGRAM_NAME, slot)
}

/// Loads an instance of the object over the maps pinned in `pin_dir`, with
/// its program `name` loaded into the kernel.
fn load_program(pin_dir: &Path, object: &[u8], name: &str, slot: u32) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        // A refused program's error carries the verifier's whole trace of
        // the failing path, not its first line only.
        .verifier_log_level(aya::VerifierLogLevel::DEBUG | aya::VerifierLogLevel::STATS)
        .override_global(IFACE_SLOT_GLOBAL, &slot, true)
        .default_map_pin_directory(pin_dir)
        .load(object)
        .context("loading the eBPF object")?;
    xdp_program(&mut ebpf, name)?
        .load()
        .with_context(|| format!("the kernel refused the XDP program {name}"))?;
    Ok(ebpf)
}

/// The XDP program `name` of a loaded object.
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()?)
}

/// Loads the telemetry program and puts it in the (pinned) program array
/// the enforcement program tail-calls; it then serves every instance.
fn load_telemetry_program(ebpf: &mut Ebpf) -> Result<()> {
    let program = xdp_program(ebpf, TELEMETRY_PROGRAM_NAME)?;
    program
        .load()
        .context("the kernel refused the telemetry program")?;
    let fd = program.fd()?.try_clone()?;
    let map = ebpf
        .map_mut(map_names::TELEMETRY_PROG)
        .context("the eBPF object has no telemetry program array")?;
    let mut array = aya::maps::ProgramArray::try_from(map)?;
    array
        .set(0, &fd, 0)
        .context("installing the telemetry program")?;
    Ok(())
}

fn program_of(ebpf: &Ebpf) -> &Xdp {
    ebpf.program(PROGRAM_NAME)
        .expect("the object has the sensor program")
        .try_into()
        .expect("an XDP program")
}

fn program_mut_of(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .expect("the object has the sensor program")
        .try_into()
        .expect("an XDP program")
}

/// Attaches `program` to `interface`: replaces the program behind the link
/// pinned at `pin` if there is one, else makes and pins a new link.
fn attach_instance(
    program: &mut Xdp,
    pin: &Path,
    interface: &str,
    ifindex: u32,
    mode: XdpModeSetting,
) -> Result<Attachment> {
    if pin.exists() {
        match replace_pinned(program, pin) {
            Ok(()) => {
                return Ok(Attachment {
                    interface: interface.to_owned(),
                    ifindex,
                    mode: attached_mode(interface),
                    adopted: true,
                })
            }
            Err(e) => {
                // Typically the interface was deleted and made again, and
                // the old link died with it.
                warn!("{interface}: pinned link unusable ({e:#}); attaching anew");
                let _ = fs::remove_file(pin);
            }
        }
    }
    let (link_id, mode_name) = attach_in_mode(program, interface, mode)?;
    let link = program.take_link(link_id)?;
    let fd_link: FdLink = link
        .try_into()
        .context("the kernel gave a netlink attachment, which cannot be pinned")?;
    fd_link
        .pin(pin)
        .with_context(|| format!("pinning the link at {}", pin.display()))?;
    Ok(Attachment {
        interface: interface.to_owned(),
        ifindex,
        mode: mode_name,
        adopted: false,
    })
}

/// Attaches in the configured mode (auto: native, else generic with a
/// warning); returns the link and the mode's name.
pub fn attach_in_mode(
    program: &mut Xdp,
    interface: &str,
    mode: XdpModeSetting,
) -> Result<(aya::programs::xdp::XdpLinkId, &'static str)> {
    Ok(match mode {
        XdpModeSetting::Native => (attach_mode(program, interface, XdpMode::Driver)?, "native"),
        XdpModeSetting::Generic => (attach_mode(program, interface, XdpMode::Skb)?, "generic"),
        XdpModeSetting::Auto => match attach_mode(program, interface, XdpMode::Driver) {
            Ok(id) => (id, "native"),
            Err(e) => {
                warn!(
                    "{interface}: native XDP failed ({e:#}); falling back to generic mode, \
                     which is slower (set xdp_mode = \"generic\" to silence this)"
                );
                (attach_mode(program, interface, XdpMode::Skb)?, "generic")
            }
        },
    })
}

fn attach_mode(
    program: &mut Xdp,
    interface: &str,
    mode: XdpMode,
) -> Result<aya::programs::xdp::XdpLinkId> {
    program.attach(interface, mode).with_context(|| {
        format!(
            "attaching XDP to {interface} in {mode:?} mode (is another XDP program attached? \
             try xdp_mode = \"generic\")"
        )
    })
}

/// Swaps the program behind an existing pinned link, atomically: no packet
/// goes unfiltered during an upgrade or restart.
fn replace_pinned(program: &mut Xdp, pin: &Path) -> Result<()> {
    let pinned = PinnedLink::from_pin(pin).context("opening the pinned link")?;
    let link: aya::programs::xdp::XdpLink = FdLink::from(pinned).try_into()?;
    // Fails (ENOLINK) when the interface has gone since the link was made.
    program
        .attach_to_link(link)
        .context("replacing the program behind the pinned link")?;
    Ok(())
}

/// The XDP mode the kernel reports for `interface` (links do not say it).
fn attached_mode(interface: &str) -> &'static str {
    let out = std::process::Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", interface])
        .output();
    let mode = out
        .ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .and_then(|links| links[0]["xdp"]["mode"].as_u64());
    // XDP_ATTACHED_DRV = 1, XDP_ATTACHED_SKB = 2, XDP_ATTACHED_HW = 3.
    match mode {
        Some(1) => "native",
        Some(2) => "generic",
        Some(3) => "offload",
        _ => "unknown",
    }
}

pub fn if_index(interface: &str) -> Result<u32> {
    let c = CString::new(interface).context("interface name has a NUL byte")?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("interface {interface} does not exist");
    }
    Ok(index)
}

/// The interface name for an ifindex, or the number if it has none.
pub fn if_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let ptr = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if ptr.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

fn unpin_link(path: &Path) {
    match PinnedLink::from_pin(path) {
        // Unpinning and dropping the last fd detaches the program.
        Ok(link) => {
            if let Err(e) = link.unpin() {
                warn!("cannot unpin {}: {e}", path.display());
            }
        }
        Err(_) => {
            let _ = fs::remove_file(path);
        }
    }
}

/// Detaches every pinned link and removes every pinned map under `pin_dir`:
/// enforcement stops. Used by `on_exit = "remove"` and by clean-ups.
pub fn remove_pins(pin_dir: &Path) -> Result<()> {
    let links = pin_dir.join(LINKS_SUBDIR);
    if let Ok(entries) = fs::read_dir(&links) {
        for entry in entries.flatten() {
            unpin_link(&entry.path());
        }
    }
    let _ = fs::remove_dir(&links);
    for name in PINNED_MAPS {
        let path = pin_dir.join(name);
        if path.exists() {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let _ = fs::remove_dir(pin_dir);
    Ok(())
}
