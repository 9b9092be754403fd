//! Counters of an [`AfPacket`](super::AfPacket).

use std::io;

/// Counters of an [`AfPacket`](super::AfPacket).
///
/// # Example
///
/// ```no_run
/// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
/// let s = dev.stats();
/// println!("{} frames in {} calls, {} lost in the kernel", s.rx_frames, s.rx_syscalls, s.rx_kernel_drops);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the kernel took from us.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Receive system calls (`recvfrom`/`recvmmsg`, empty ones included); ring blocks
    /// taken in ring mode.
    pub rx_syscalls: u64,
    /// Transmit system calls (`send`/`sendmmsg`).
    pub tx_syscalls: u64,
    /// Frames the kernel dropped because the socket buffer or ring was full
    /// (`PACKET_STATISTICS` `tp_drops`).
    pub rx_kernel_drops: u64,
    /// Times the ring was full and the kernel froze it (`tp_freeze_q_cnt`, ring mode).
    pub rx_ring_freezes: u64,
    /// Frames longer than the receive buffer (MTU + 18), skipped.
    pub rx_truncated: u64,
    /// Frames this host sent on the interface, seen by the socket and skipped.
    pub rx_outgoing: u64,
    /// Frames whose TCP/UDP checksum the kernel left unfilled, filled in (ring mode).
    pub rx_csum_filled: u64,
    /// Transmit calls the kernel refused for lack of room, retried.
    pub tx_retries: u64,
    /// Frames given up on: refused after retries, or rejected by the kernel.
    pub tx_dropped: u64,
    /// Flushes done by the device itself because a poll ended without
    /// [`AfPacket::flush`](super::AfPacket::flush); should stay 0.
    pub late_flushes: u64,
    /// Receive calls that failed with something other than "nothing ready".
    pub rx_errors: u64,
}

/// The device's own counters, plus a log-once flag.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) s: AfPacketStats,
    warned: bool,
}

impl std::ops::Deref for Counters {
    type Target = AfPacketStats;
    fn deref(&self) -> &AfPacketStats {
        &self.s
    }
}

impl std::ops::DerefMut for Counters {
    fn deref_mut(&mut self) -> &mut AfPacketStats {
        &mut self.s
    }
}

impl Counters {
    pub(super) fn warn(&mut self, name: &str, what: &str, e: &io::Error) {
        if std::mem::replace(&mut self.warned, true) {
            log::debug!("afpacket {name}: {what} failed: {e}");
        } else {
            log::warn!("afpacket {name}: {what} failed: {e}; is the interface still there and up? (further failures are logged at debug)");
        }
    }
}
