//! Benchmark helpers, not part of the sensor: the floor (an XDP program that
//! passes every packet and does nothing else, measured side by side with the
//! sensor's) and a traffic generator (BPF_PROG_TEST_RUN in live-frames mode
//! with a program that sends each frame out of one interface, as
//! xdp-trafficgen does).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_prandom_u32, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
};

#[xdp]
pub fn floor_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The interface `generate_redirect` sends to, set at load time.
#[no_mangle]
static REDIRECT_IFINDEX: u32 = 0;

/// Source ports the generated UDP frames spread over (0 or 1: the
/// template's own), set at load time.
#[no_mangle]
static SOURCE_PORTS: u32 = 0;

/// Length of the generated frame, and its bytes, set at load time.
pub const FRAME_LEN: usize = 60;
#[no_mangle]
static FRAME_TEMPLATE: [u8; FRAME_LEN] = [0; FRAME_LEN];

/// Rewrites the frame from the template (a receiver that forwards it
/// rewrites its headers in place, and live-frames mode recycles the pages
/// without restoring them), then sends it out of `REDIRECT_IFINDEX`.
#[xdp]
pub fn generate_redirect(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + FRAME_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: FRAME_LEN bytes from `start` are inside the packet (checked
    // above); the template is a read-only global of that size.
    unsafe {
        let template = core::ptr::read_volatile(&FRAME_TEMPLATE);
        core::ptr::copy_nonoverlapping(template.as_ptr(), start as *mut u8, FRAME_LEN);
    }
    // SAFETY: read-only globals; volatile so the loader's values count.
    let (ifindex, flows) = unsafe {
        (
            core::ptr::read_volatile(&REDIRECT_IFINDEX),
            core::ptr::read_volatile(&SOURCE_PORTS),
        )
    };
    if flows > 1 {
        // A UDP frame's source port (Ethernet 14 + IPv4 20 bytes in),
        // spread over `flows` values: that many flows at once.
        // SAFETY: bytes 34..36 are inside the FRAME_LEN checked above; the
        // helper takes no arguments.
        unsafe {
            let port = 40000 + (bpf_get_prandom_u32() % flows) as u16;
            core::ptr::write_unaligned((start + 34) as *mut [u8; 2], port.to_be_bytes());
        }
    }
    // SAFETY: a helper call with plain integer arguments.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
