//! Independent readings of frame bytes, written from the rules rather than from ustack's
//! code: what [`ustack::ingress::classify`] must report about a frame it passed, and what an
//! ICMP destination-unreachable quotes. Used as the oracle by `ingress_classify` and
//! `udp_icmp`.
//!
//! The rules for an ICMP error (both must hold for [`Facts::IcmpError`]):
//!
//! - ICMPv4 type 3 with any code but 4 (fragmentation needed), or ICMPv6 type 1 with any code.
//!   ICMPv4 code 3 and ICMPv6 code 4 are [`Unreachable::Port`], every other code
//!   [`Unreachable::Host`].
//! - After the 8-byte ICMP header, the quote is an IP header of the same version as the
//!   outer one whose protocol (IPv4) or next header (IPv6, no extension headers followed) is
//!   UDP, that is not a later IPv4 fragment (offset 0; more-fragments may be set), followed by
//!   at least the first 4 bytes of the UDP header (the two ports). Nothing else in the quote
//!   (lengths, checksums, payload) matters: RFC 792 only promises the header plus 8 bytes.

use ustack::ingress::{Facts, IcmpError, TcpInfo, UdpInfo, Unreachable};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv6Address};

/// Ethernet header length.
pub const ETH: usize = 14;
/// ICMP type, code, checksum and the 4 bytes before the quote.
pub const ICMP_HEADER: usize = 8;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn v4_at(b: &[u8], at: usize) -> IpAddress {
    IpAddress::Ipv4(Ipv4Address::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn v6_at(b: &[u8], at: usize) -> IpAddress {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    IpAddress::Ipv6(Ipv6Address::from(o))
}

/// What an ICMPv4 message (from its type byte on) says about a UDP datagram we sent.
pub fn icmp4_error(msg: &[u8], to: IpAddress) -> Option<IcmpError> {
    if msg.len() < ICMP_HEADER || msg[0] != 3 || msg[1] == 4 {
        return None;
    }
    let kind = if msg[1] == 3 {
        Unreachable::Port
    } else {
        Unreachable::Host
    };
    let q = &msg[ICMP_HEADER..];
    if q.len() < 20 || q[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(q[0] & 0x0f) * 4;
    let later_fragment = be16(q, 6) & 0x1fff != 0;
    if ihl < 20 || q[9] != 17 || later_fragment || q.len() < ihl + 4 {
        return None;
    }
    Some(IcmpError {
        to,
        local: IpEndpoint::new(v4_at(q, 12), be16(q, ihl)),
        remote: IpEndpoint::new(v4_at(q, 16), be16(q, ihl + 2)),
        kind,
    })
}

/// What an ICMPv6 message (from its type byte on) says about a UDP datagram we sent.
pub fn icmp6_error(msg: &[u8], to: IpAddress) -> Option<IcmpError> {
    if msg.len() < ICMP_HEADER || msg[0] != 1 {
        return None;
    }
    let kind = if msg[1] == 4 {
        Unreachable::Port
    } else {
        Unreachable::Host
    };
    let q = &msg[ICMP_HEADER..];
    if q.len() < 40 + 4 || q[0] >> 4 != 6 || q[6] != 17 {
        return None;
    }
    Some(IcmpError {
        to,
        local: IpEndpoint::new(v6_at(q, 8), be16(q, 40)),
        remote: IpEndpoint::new(v6_at(q, 24), be16(q, 42)),
        kind,
    })
}

/// The facts `classify` must report for `frame`, given that it passed the frame (so every
/// length field read here has been checked against the bytes).
pub fn facts(frame: &[u8]) -> Facts {
    let ip = &frame[ETH..];
    match be16(frame, 12) {
        0x0800 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(ip, 2));
            // More fragments, or a fragment offset: smoltcp's business.
            if be16(ip, 6) & 0x3fff != 0 {
                return Facts::Other;
            }
            transport(ip[9], &ip[ihl..total], v4_at(ip, 12), v4_at(ip, 16))
        }
        0x86dd => {
            let len = usize::from(be16(ip, 4));
            transport(ip[6], &ip[40..40 + len], v6_at(ip, 8), v6_at(ip, 24))
        }
        _ => Facts::Other,
    }
}

fn transport(proto: u8, l4: &[u8], src: IpAddress, dst: IpAddress) -> Facts {
    let v6 = matches!(dst, IpAddress::Ipv6(_));
    match proto {
        6 => {
            let flags = l4[13];
            let (syn, ack, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
            Facts::Tcp(TcpInfo {
                src,
                src_port: be16(l4, 0),
                dst_port: be16(l4, 2),
                syn: syn && !ack,
                rst,
                syn_ack: syn && ack,
            })
        }
        17 => Facts::Udp(UdpInfo {
            src: IpEndpoint::new(src, be16(l4, 0)),
            dst_port: be16(l4, 2),
        }),
        1 if !v6 => icmp4_error(l4, dst).map_or(Facts::Other, Facts::IcmpError),
        58 if v6 => icmp6_error(l4, dst).map_or(Facts::Other, Facts::IcmpError),
        _ => Facts::Other,
    }
}
