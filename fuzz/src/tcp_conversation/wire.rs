//! Frames on the wire: parsing what the stack sends, and building and delivering what the
//! peer sends.

use ustack::smoltcp::phy::ChecksumCapabilities;
use ustack::smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::frames::LINK;

use super::harness::Conversation;
use super::script::Opts;
use super::{flag, HISTORY};

/// A TCP segment the stack sent, as the peer reads it.
#[derive(Debug, Clone)]
pub(super) struct Out {
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    pub(super) seq: u32,
    pub(super) ack: Option<u32>,
    pub(super) syn: bool,
    pub(super) fin: bool,
    pub(super) rst: bool,
    pub(super) window: u16,
    pub(super) tsval: Option<u32>,
    pub(super) payload: Vec<u8>,
}

pub(super) enum Parsed {
    Tcp(Out),
    /// The stack asks for the peer's link address (ARP request or neighbor solicitation).
    Resolve(bool),
    Other,
}

pub(super) fn parse_out(frame: &[u8]) -> Parsed {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Parsed::Other;
    };
    let caps = ChecksumCapabilities::ignored();
    let (src, dst, l4): (IpAddress, IpAddress, &[u8]) = match eth.ethertype() {
        EthernetProtocol::Arp => {
            // Only a request asks for the peer; a reply answers the peer's own request.
            return match ArpPacket::new_checked(eth.payload()) {
                Ok(a) if a.operation() == ArpOperation::Request => Parsed::Resolve(false),
                _ => Parsed::Other,
            };
        }
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return Parsed::Other;
            };
            if ip.next_header() != IpProtocol::Tcp {
                return Parsed::Other;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                return Parsed::Other;
            };
            match ip.next_header() {
                IpProtocol::Tcp => {}
                // Type 135: neighbor solicitation.
                IpProtocol::Icmpv6 if ip.payload().first() == Some(&135) => {
                    return Parsed::Resolve(true)
                }
                _ => return Parsed::Other,
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        _ => return Parsed::Other,
    };
    let Ok(tcp) = TcpPacket::new_checked(l4) else {
        return Parsed::Other;
    };
    let Ok(repr) = TcpRepr::parse(&tcp, &src, &dst, &caps) else {
        return Parsed::Other;
    };
    Parsed::Tcp(Out {
        src_port: repr.src_port,
        dst_port: repr.dst_port,
        seq: repr.seq_number.0 as u32,
        ack: repr.ack_number.map(|a| a.0 as u32),
        syn: repr.control == TcpControl::Syn,
        fin: repr.control == TcpControl::Fin,
        rst: repr.control == TcpControl::Rst,
        window: repr.window_len,
        tsval: repr.timestamp.map(|t| t.tsval),
        payload: repr.payload.to_vec(),
    })
}

/// `a - b` as a signed distance in sequence space.
pub(super) fn diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// The later of two sequence numbers.
pub(super) fn seq_max(a: u32, b: u32) -> u32 {
    if diff(b, a) > 0 {
        b
    } else {
        a
    }
}

/// The option bytes of a segment, padded to a multiple of 4 (at most 40).
pub(super) fn option_bytes(o: &Opts, tsval: u32, tsecr: u32, sack_base: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    if let Some(j) = o.junk {
        v.extend_from_slice(&j);
    }
    if let Some(mss) = o.mss {
        v.extend_from_slice(&[2, 4]);
        v.extend_from_slice(&mss.to_be_bytes());
    }
    if let Some(ws) = o.wscale {
        v.extend_from_slice(&[3, 3, ws]);
    }
    if o.sack_perm {
        v.extend_from_slice(&[4, 2]);
    }
    if o.ts {
        v.extend_from_slice(&[8, 10]);
        v.extend_from_slice(&tsval.to_be_bytes());
        v.extend_from_slice(&tsecr.to_be_bytes());
    }
    if let Some((a, b)) = o.sack {
        let left = sack_base.wrapping_add(u32::from(a));
        v.extend_from_slice(&[5, 10]);
        v.extend_from_slice(&left.to_be_bytes());
        v.extend_from_slice(&left.wrapping_add(u32::from(b)).to_be_bytes());
    }
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// A segment the peer sent, with where its data lies.
#[derive(Debug, Clone)]
pub(super) struct Pkt {
    pub(super) frame: Vec<u8>,
    pub(super) start: u32,
    pub(super) len: u32,
}

impl Conversation {
    pub(super) fn frame(
        &self,
        seq: u32,
        ack: Option<u32>,
        flags: u8,
        window: u16,
        opts: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let (src_port, dst_port) = (self.peer_port, self.our_port);
        let header = 20 + opts.len();
        let fill = |buf: &mut [u8], src: IpAddress, dst: IpAddress| {
            let mut p = TcpPacket::new_unchecked(buf);
            p.set_src_port(src_port);
            p.set_dst_port(dst_port);
            p.set_seq_number(TcpSeqNumber(seq as i32));
            p.set_ack_number(TcpSeqNumber(ack.unwrap_or(0) as i32));
            p.set_header_len(header as u8);
            p.set_fin(flags & flag::FIN != 0);
            p.set_syn(flags & flag::SYN != 0);
            p.set_rst(flags & flag::RST != 0);
            p.set_psh(flags & flag::PSH != 0);
            p.set_ack(flags & flag::ACK != 0);
            p.set_urg(flags & flag::URG != 0);
            p.set_ece(flags & flag::ECE != 0);
            p.set_cwr(flags & flag::CWR != 0);
            p.set_window_len(window);
            p.set_urgent_at(if flags & flag::URG != 0 {
                payload.len() as u16
            } else {
                0
            });
            p.options_mut().copy_from_slice(opts);
            p.payload_mut().copy_from_slice(payload);
            p.fill_checksum(&src, &dst);
        };
        let l4 = header + payload.len();
        if self.ipv6 {
            LINK.ipv6(IpProtocol::Tcp, 64, l4, fill)
        } else {
            LINK.ipv4(IpProtocol::Tcp, l4, fill)
        }
    }

    pub(super) fn deliver(&mut self, pkt: Pkt) {
        // Pending finding: a held or replayed segment may carry bytes past a FIN sent since;
        // it is lost on the way instead.
        if self.trim_after_fin && self.before_fin(pkt.start, pkt.len) < pkt.len {
            return;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        if pkt.len > 0 {
            let end = pkt.start.wrapping_add(pkt.len);
            self.delivered_end = Some(self.delivered_end.map_or(end, |h| seq_max(h, end)));
        }
        self.history.push_back(pkt.clone());
        self.stack.device_mut().rx.push_back(pkt.frame);
    }

    /// How many of `len` bytes from `start` come before every FIN the peer sent (a FIN far
    /// behind, more than 1 MiB, does not count).
    pub(super) fn before_fin(&self, start: u32, len: u32) -> u32 {
        let mut len = len;
        for &f in &self.fins {
            let d = diff(f, start);
            if d <= 0 && d > -(1 << 20) {
                len = 0;
            } else if d > 0 && d < i64::from(len) {
                len = d as u32;
            }
        }
        len
    }
}
