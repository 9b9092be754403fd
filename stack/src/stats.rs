//! Counters the stack keeps about the frames it moved and the ones it refused.

/// Why an incoming frame was dropped before smoltcp saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than the headers it claims to carry.
    Truncated,
    /// Longer than the device MTU allows.
    Oversize,
    /// An IPv4 header, TCP, UDP or ICMP checksum did not verify.
    BadChecksum,
    /// Headers that do not parse (bad version, bad lengths, garbage).
    Malformed,
}

/// Counters since the stack was created. All of them only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames read from the device.
    pub rx_frames: u64,
    /// Bytes read from the device.
    pub rx_bytes: u64,
    /// Frames handed to the device.
    pub tx_frames: u64,
    /// Bytes handed to the device.
    pub tx_bytes: u64,
    /// Frames dropped as [`DropReason::Truncated`].
    pub rx_truncated: u64,
    /// Frames dropped as [`DropReason::Oversize`].
    pub rx_oversize: u64,
    /// Frames dropped as [`DropReason::BadChecksum`].
    pub rx_bad_checksum: u64,
    /// Frames dropped as [`DropReason::Malformed`].
    pub rx_malformed: u64,
    /// Frames of an EtherType ustack does not speak (passed on, ignored by smoltcp).
    pub rx_unsupported: u64,
    /// SYNs held back because the listener's backlog was full at that moment.
    pub tcp_syn_deferred: u64,
    /// SYNs answered with a reset because the backlog stayed full.
    pub tcp_syn_backlog_full: u64,
    /// SYNs and SYN-ACKs dropped because they reached a connecting socket before its own SYN
    /// left (spoofed, or racing ARP resolution).
    pub tcp_syn_before_connect: u64,
    /// Connections handed out by `accept`.
    pub tcp_accepted: u64,
    /// Connections opened by `connect`.
    pub tcp_connects: u64,
    /// Datagrams to a connected UDP socket from someone other than its peer, dropped.
    pub udp_foreign_dropped: u64,
    /// Dial probes discarded by sockets that drop them.
    pub udp_probes_dropped: u64,
    /// ICMP destination-unreachable messages delivered to a connected UDP socket.
    pub udp_icmp_errors: u64,
}

impl Stats {
    /// All frames dropped by ingress validation.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_truncated + self.rx_oversize + self.rx_bad_checksum + self.rx_malformed
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Truncated => &mut self.rx_truncated,
            DropReason::Oversize => &mut self.rx_oversize,
            DropReason::BadChecksum => &mut self.rx_bad_checksum,
            DropReason::Malformed => &mut self.rx_malformed,
        };
        *c += 1;
    }
}
