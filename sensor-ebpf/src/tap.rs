//! Mirror-port mode: a tap interface receives copies of other hosts'
//! frames. Every frame goes to the AF_XDP socket bound to its receive
//! queue, where the daemon reads it without a copy through the stack;
//! none goes up the stack (a tap has no business there).

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{PerCpuArray, XskMap},
    programs::XdpContext,
};
use sensor_common::{TapCounters, MAX_TAP_QUEUES};

/// The daemon's socket per receive queue. Not pinned: sockets die with the
/// daemon, and each tap has its own program instance and map.
#[map]
static TAP_SOCKETS: XskMap = XskMap::with_max_entries(MAX_TAP_QUEUES, 0);

/// Frames seen and frames with no socket, per queue and CPU.
#[map]
static TAP_COUNTERS: PerCpuArray<TapCounters> = PerCpuArray::with_max_entries(MAX_TAP_QUEUES, 0);

#[xdp]
pub fn sensor_tap(ctx: XdpContext) -> u32 {
    let queue = ctx.rx_queue_index();
    let counters = TAP_COUNTERS.get_ptr_mut(queue);
    if let Some(c) = counters {
        // SAFETY: a per-CPU value: only this CPU writes it.
        unsafe { (*c).frames += 1 };
    }
    // On a lookup miss the helper returns its flags' action: drop.
    match TAP_SOCKETS.redirect(queue, xdp_action::XDP_DROP as u64) {
        Ok(action) => action,
        Err(_) => {
            if let Some(c) = counters {
                // SAFETY: as above.
                unsafe { (*c).no_socket += 1 };
            }
            xdp_action::XDP_DROP
        }
    }
}
