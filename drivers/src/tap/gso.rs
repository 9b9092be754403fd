//! Transmit segmentation offload for a TAP in offload mode: the TCP segments one poll sends
//! are merged into super-frames of up to 64 KiB, which the kernel cuts up again (or delivers
//! whole), so a bulk sender needs one `write` per 64 KiB instead of one per MSS.
//!
//! Only what the kernel's segmentation recreates exactly is merged: consecutive data
//! segments of one flow with contiguous sequence numbers, the same payload size (the last
//! may be shorter), flags ACK (PSH on the last only) and identical headers apart from the
//! fields segmentation rewrites (IP id, lengths, checksums; TCP sequence number, checksum).

use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};

use super::{vnet, ETH_HEADER, GSO_MAX_IP};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;

/// A TCP data segment that may take part in a merge, and where its parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    pub v6: bool,
    /// Offset of the TCP header in the frame.
    pub tcp: usize,
    /// Length of the Ethernet, IP and TCP headers (options included).
    pub hdr_len: usize,
    /// End of the IP packet in the frame (Ethernet padding excluded).
    pub end: usize,
    pub seq: u32,
    pub psh: bool,
}

impl Seg {
    fn payload(&self) -> usize {
        self.end - self.hdr_len
    }
}

/// Whether `frame` is a TCP data segment (IPv4 without options, or IPv6 without extension
/// headers; flags ACK or ACK|PSH; a payload) that may be merged; `None` for anything else.
pub(crate) fn classify(frame: &[u8]) -> Option<Seg> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (v6, tcp, end) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let plain = usize::from(ip.header_len()) == IPV4_HEADER
                && ip.next_header() == IpProtocol::Tcp
                && !ip.more_frags()
                && ip.frag_offset() == 0;
            if !plain {
                return None;
            }
            let end = ETH_HEADER + usize::from(ip.total_len());
            (false, ETH_HEADER + IPV4_HEADER, end)
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let end = ETH_HEADER + IPV6_HEADER + usize::from(ip.payload_len());
            (true, ETH_HEADER + IPV6_HEADER, end)
        }
        _ => return None,
    };
    let segment = TcpPacket::new_checked(frame.get(tcp..end)?).ok()?;
    let hdr_len = tcp + usize::from(segment.header_len());
    let flags = *frame.get(tcp + 13)?;
    if flags & !TCP_PSH != TCP_ACK || hdr_len >= end {
        return None;
    }
    Some(Seg {
        v6,
        tcp,
        hdr_len,
        end,
        seq: segment.seq_number().0 as u32,
        psh: flags & TCP_PSH != 0,
    })
}

/// The super-frame being built, in a buffer allocated once with room for the
/// `virtio_net_hdr` and 64 KiB of IP packet.
#[derive(Debug)]
pub(crate) struct Coalescer {
    buf: Vec<u8>,
    /// Bytes of frame after the virtio header; 0 when nothing is pending.
    len: usize,
    first: Seg,
    gso_size: usize,
    segs: u64,
    next_seq: u32,
    /// The last segment was short or carried PSH: nothing may follow it.
    closed: bool,
    /// Timestamp of the poll that queued the pending frame.
    since: Option<Instant>,
}

/// A finished frame, ready for one `write`: header and frame.
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub out: &'a [u8],
    /// Segments it carries (1 for a frame that was not merged).
    pub segs: u64,
    /// Whether the kernel was asked to fill in the TCP checksum.
    pub offloaded: bool,
}

impl Coalescer {
    /// A coalescer; `enabled` false allocates nothing (the device then never queues).
    pub(crate) fn new(enabled: bool) -> Coalescer {
        let cap = if enabled {
            vnet::LEN + ETH_HEADER + IPV6_HEADER + GSO_MAX_IP
        } else {
            0
        };
        Coalescer {
            buf: vec![0; cap],
            len: 0,
            first: Seg {
                v6: false,
                tcp: 0,
                hdr_len: 0,
                end: 0,
                seq: 0,
                psh: false,
            },
            gso_size: 0,
            segs: 0,
            next_seq: 0,
            closed: true,
            since: None,
        }
    }

    /// Timestamp of the poll whose frame is still pending, if any.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Takes one frame the stack sent, `out` being the virtio header's room followed by the
    /// frame: a TCP segment that continues the pending super-frame is merged into it, one
    /// that may start a new one is queued (after `write` got the pending frame), anything else
    /// goes to `write` at once, after the pending frame, so frame order is kept.
    pub(crate) fn push(
        &mut self,
        out: &mut [u8],
        now: Instant,
        mut write: impl FnMut(Finished<'_>),
    ) {
        let Some(frame) = out.get_mut(vnet::LEN..) else {
            return;
        };
        let seg = classify(frame);
        if let Some(seg) = seg {
            if self.append(frame, seg) {
                return;
            }
        }
        if let Some(done) = self.finish() {
            write(done);
        }
        if let Some(seg) = seg {
            if self.start(frame, seg, now) {
                return;
            }
        }
        let (hdr, offloaded) = vnet::on_transmit(frame);
        hdr.write(out);
        write(Finished {
            out,
            segs: 1,
            offloaded,
        });
    }

    /// Appends `seg` (parsed from `frame` by [`classify`]) to the pending super-frame if it
    /// continues it; `false` leaves everything unchanged.
    fn append(&mut self, frame: &[u8], seg: Seg) -> bool {
        let payload = seg.payload();
        // The IP packet (the frame without its Ethernet header) stays within 64 KiB.
        let fits = self.len + payload <= ETH_HEADER + GSO_MAX_IP;
        if self.len == 0
            || self.closed
            || !fits
            || payload > self.gso_size
            || seg.seq != self.next_seq
            || !self.same_flow(frame, &seg)
        {
            return false;
        }
        let at = vnet::LEN + self.len;
        self.buf[at..at + payload].copy_from_slice(&frame[seg.hdr_len..seg.end]);
        self.len += payload;
        self.segs += 1;
        self.next_seq = self.next_seq.wrapping_add(payload as u32);
        self.closed = payload < self.gso_size || seg.psh;
        if seg.psh {
            // Segmentation keeps PSH on the last segment only.
            self.buf[vnet::LEN + self.first.tcp + 13] |= TCP_PSH;
        }
        true
    }

    /// Starts a new pending super-frame with `frame`; `false` if it does not fit the buffer
    /// (it is then to be written on its own). The pending frame must have been finished.
    fn start(&mut self, frame: &[u8], seg: Seg, now: Instant) -> bool {
        debug_assert_eq!(self.len, 0, "finish the pending frame first");
        let Some(dst) = self.buf.get_mut(vnet::LEN..vnet::LEN + seg.end) else {
            return false;
        };
        dst.copy_from_slice(&frame[..seg.end]);
        self.len = seg.end;
        self.first = seg;
        self.gso_size = seg.payload();
        self.segs = 1;
        self.next_seq = seg.seq.wrapping_add(seg.payload() as u32);
        self.closed = seg.psh;
        self.since = Some(now);
        true
    }

    /// Same Ethernet, IP and TCP headers as the first segment, apart from what segmentation
    /// rewrites. Both were accepted by [`classify`].
    fn same_flow(&self, frame: &[u8], seg: &Seg) -> bool {
        let first = &self.buf[vnet::LEN..vnet::LEN + self.first.hdr_len];
        if seg.v6 != self.first.v6 || seg.hdr_len != self.first.hdr_len {
            return false;
        }
        let eq = |a: usize, b: usize| first[a..b] == frame[a..b];
        let ip = ETH_HEADER;
        let ip_same = if seg.v6 {
            // Version, traffic class, flow label; next header, hop limit, addresses.
            eq(ip, ip + 4) && eq(ip + 6, ip + IPV6_HEADER)
        } else {
            // Version, TOS; flags, fragment offset, TTL, protocol; addresses.
            eq(ip, ip + 2) && eq(ip + 6, ip + 10) && eq(ip + 12, ip + IPV4_HEADER)
        };
        let t = seg.tcp;
        // Ports; ack number and data offset; window; urgent pointer and options. The flags
        // are ACK or ACK|PSH on both (classify).
        eq(0, ETH_HEADER)
            && ip_same
            && eq(t, t + 4)
            && eq(t + 8, t + 13)
            && eq(t + 14, t + 16)
            && eq(t + 18, seg.hdr_len)
    }

    /// Takes the pending frame: lengths and IPv4 header checksum set for the merged size, the
    /// TCP checksum field holding the pseudo-header sum, and the virtio header written in
    /// front (GSO when it carries more than one segment). `None` if nothing is pending.
    pub(crate) fn finish(&mut self) -> Option<Finished<'_>> {
        if self.len == 0 {
            return None;
        }
        let total = vnet::LEN + self.len;
        self.len = 0;
        self.since = None;
        self.closed = true;
        let (head, frame) = self.buf[..total].split_at_mut(vnet::LEN);
        let ip_len = frame.len() - ETH_HEADER;
        let hdr = if self.segs > 1 {
            // `append` keeps the IP packet within 64 KiB, so the lengths fit 16 bits.
            if self.first.v6 {
                let mut ip = Ipv6Packet::new_unchecked(&mut frame[ETH_HEADER..]);
                ip.set_payload_len((ip_len - IPV6_HEADER) as u16);
            } else {
                let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
                ip.set_total_len(ip_len as u16);
                ip.fill_checksum();
            }
            vnet::on_transmit_gso(
                frame,
                self.first.v6,
                self.gso_size as u16,
                self.first.hdr_len as u16,
            )
        } else {
            None
        };
        let (hdr, offloaded) = match hdr {
            Some(h) => (h, true),
            None => vnet::on_transmit(frame),
        };
        hdr.write(head);
        Some(Finished {
            out: &self.buf[..total],
            segs: self.segs,
            offloaded,
        })
    }
}

#[cfg(test)]
#[path = "gso_tests.rs"]
mod tests;
