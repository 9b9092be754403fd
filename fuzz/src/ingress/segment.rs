//! Reading the TCP segments that cross the wire, and the per-connection sequence numbers
//! the harness tracks from them.

use ustack::smoltcp::wire::{Ipv4Packet, TcpPacket};

/// One TCP connection from `PS` to `ST` as seen on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuple {
    /// `PS`'s port.
    pub ps_port: u16,
    /// `ST`'s port.
    pub st_port: u16,
    /// `PS`'s initial sequence number plus one: stream offset 0.
    pub base: u32,
    /// The last acknowledgement `ST` sent.
    pub st_ack: u32,
    /// The end of what `ST` has sent.
    pub st_nxt: u32,
    /// The end of what `PS` has sent (`ST` may not have acknowledged it yet).
    pub ps_nxt: u32,
    /// Seen `PS`'s SYN.
    pub known: bool,
}

impl Tuple {
    /// Where `ST` expects `PS`'s next byte: its last acknowledgement, or beyond it what
    /// `PS` has sent since (the acknowledgement may be delayed).
    pub fn rcv_nxt(&self) -> u32 {
        if wrapping_after(self.ps_nxt, self.st_ack) {
            self.ps_nxt
        } else {
            self.st_ack
        }
    }
}

/// The fields of an IPv4 TCP segment the harness needs (as smoltcp bounds them).
pub(super) struct Seg {
    pub(super) src: [u8; 4],
    pub(super) dst: [u8; 4],
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    /// Offset of the IP header in the frame.
    pub(super) ip: usize,
    /// Payload range in the frame.
    pub(super) data: core::ops::Range<usize>,
}

pub(super) fn seg4(f: &[u8]) -> Option<Seg> {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = 14;
    let hl = usize::from(f[ip] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[ip + 2], f[ip + 3]]));
    if f[ip] >> 4 != 4 || f[ip + 9] != 6 || hl < 20 || total < hl || ip + total > f.len() {
        return None;
    }
    let t = ip + hl;
    let end = ip + total;
    if end - t < 20 {
        return None;
    }
    let doff = usize::from(f[t + 12] >> 4) * 4;
    if doff < 20 || t + doff > end {
        return None;
    }
    let be32 = |i: usize| u32::from_be_bytes([f[i], f[i + 1], f[i + 2], f[i + 3]]);
    Some(Seg {
        src: f[ip + 12..ip + 16].try_into().ok()?,
        dst: f[ip + 16..ip + 20].try_into().ok()?,
        sport: u16::from_be_bytes([f[t], f[t + 1]]),
        dport: u16::from_be_bytes([f[t + 2], f[t + 3]]),
        seq: be32(t + 4),
        ack: be32(t + 8),
        flags: f[t + 13],
        ip,
        data: t + doff..end,
    })
}

/// Recomputes the IPv4 and TCP checksums of a frame the harness changed, so seeds replay in
/// normal builds too (under `cfg(fuzzing)` nobody checks them).
pub(super) fn fix_checksums(f: &mut [u8]) {
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut f[14..]) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
        tcp.fill_checksum(&src.into(), &dst.into());
    }
}

/// Whether an ICMP error could be in `f`: any IPv4 ICMP message or any IPv6 packet. An
/// error on the connected UDP socket needs one.
pub(super) fn may_be_icmp(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x00]) => f.get(23) == Some(&1),
        Some([0x86, 0xdd]) => true,
        _ => false,
    }
}

pub(super) const FIN: u8 = 0x01;
pub(super) const SYN: u8 = 0x02;
pub(super) const RST: u8 = 0x04;
pub(super) const ACK: u8 = 0x10;

pub(super) fn wrapping_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
