//! ICMP destination-unreachable messages, read for the UDP datagram they quote.
//!
//! smoltcp drops these. ustack reads them so a connected UDP socket learns, as on Linux, that
//! its peer refused a datagram. RFC 792 only promises the quoted IP header plus 8 bytes, so
//! the quote is read field by field and never validated as a whole datagram: its length and
//! checksum describe bytes that were cut off.

#[cfg(feature = "ipv6")]
use smoltcp::wire::Ipv6Address;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// ICMP type, code, checksum and the 4 unused bytes before the quote (both versions).
const ICMP_HEADER_LEN: usize = 8;
const ICMPV4_DST_UNREACHABLE: u8 = 3;
const ICMPV4_FRAG_NEEDED: u8 = 4;
const ICMPV4_PORT_UNREACHABLE: u8 = 3;
#[cfg(feature = "ipv6")]
const ICMPV6_DST_UNREACHABLE: u8 = 1;
#[cfg(feature = "ipv6")]
const ICMPV6_PORT_UNREACHABLE: u8 = 4;

const UDP: u8 = 17;
/// The part of the quoted UDP header that is read: source and destination ports.
const UDP_PORTS_LEN: usize = 4;

mod quoted_v4 {
    use core::ops::Range;
    pub const MIN_HEADER_LEN: usize = 20;
    pub const FRAG: Range<usize> = 6..8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    /// Fragment offset bits of the flags-and-offset field.
    pub const OFFSET_MASK: u16 = 0x1fff;
}

#[cfg(feature = "ipv6")]
mod quoted_v6 {
    use core::ops::Range;
    pub const HEADER_LEN: usize = 40;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// What the ICMP error says about the quoted datagram's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Nothing listens on the port (ICMPv4 code 3, ICMPv6 code 4): Linux `ECONNREFUSED`.
    Port,
    /// The host, network or protocol cannot be reached (every other code): `EHOSTUNREACH`.
    Host,
}

/// An ICMP destination-unreachable that quotes a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// Where the ICMP message itself is addressed: it concerns us only if this is ours.
    pub to: IpAddress,
    /// The quoted datagram's source: one of our sockets, if the error is genuine.
    pub local: IpEndpoint,
    /// The quoted datagram's destination: the peer that could not be reached.
    pub remote: IpEndpoint,
    /// Which kind of unreachable.
    pub kind: Unreachable,
}

/// Reads an ICMPv4 message (from its type byte on). `None` unless it is a
/// destination-unreachable quoting the first fragment of a UDP datagram.
pub(super) fn v4(msg: &[u8], to: IpAddress) -> Option<IcmpError> {
    let (&ty, &code) = (msg.first()?, msg.get(1)?);
    // Fragmentation-needed is path-MTU advice, not a verdict on the peer.
    if ty != ICMPV4_DST_UNREACHABLE || code == ICMPV4_FRAG_NEEDED {
        return None;
    }
    let q = msg.get(ICMP_HEADER_LEN..)?;
    let ihl = usize::from(q.first()? & 0x0f) * 4;
    if q[0] >> 4 != 4 || ihl < quoted_v4::MIN_HEADER_LEN || *q.get(quoted_v4::PROTOCOL)? != UDP {
        return None;
    }
    let frag = u16::from_be_bytes(octets::<2>(q, quoted_v4::FRAG)?);
    if frag & quoted_v4::OFFSET_MASK != 0 {
        return None; // a later fragment quotes no UDP header
    }
    let src = Ipv4Address::from(octets::<4>(q, quoted_v4::SRC)?);
    let dst = Ipv4Address::from(octets::<4>(q, quoted_v4::DST)?);
    let kind = if code == ICMPV4_PORT_UNREACHABLE {
        Unreachable::Port
    } else {
        Unreachable::Host
    };
    quoted(q.get(ihl..)?, src.into(), dst.into(), kind, to)
}

/// Reads an ICMPv6 message (from its type byte on), like [`v4`]. A quote whose IPv6 header is
/// followed by extension headers is not followed to the UDP header.
#[cfg(feature = "ipv6")]
pub(super) fn v6(msg: &[u8], to: IpAddress) -> Option<IcmpError> {
    let (&ty, &code) = (msg.first()?, msg.get(1)?);
    if ty != ICMPV6_DST_UNREACHABLE {
        return None;
    }
    let q = msg.get(ICMP_HEADER_LEN..)?;
    if q.first()? >> 4 != 6 || *q.get(quoted_v6::NEXT_HEADER)? != UDP {
        return None;
    }
    let src = Ipv6Address::from(octets::<16>(q, quoted_v6::SRC)?);
    let dst = Ipv6Address::from(octets::<16>(q, quoted_v6::DST)?);
    let kind = if code == ICMPV6_PORT_UNREACHABLE {
        Unreachable::Port
    } else {
        Unreachable::Host
    };
    quoted(
        q.get(quoted_v6::HEADER_LEN..)?,
        src.into(),
        dst.into(),
        kind,
        to,
    )
}

fn octets<const N: usize>(buf: &[u8], at: core::ops::Range<usize>) -> Option<[u8; N]> {
    buf.get(at)?.try_into().ok()
}

fn quoted(
    udp: &[u8],
    src: IpAddress,
    dst: IpAddress,
    kind: Unreachable,
    to: IpAddress,
) -> Option<IcmpError> {
    let ports = udp.get(..UDP_PORTS_LEN)?;
    let src_port = u16::from_be_bytes([ports[0], ports[1]]);
    let dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    Some(IcmpError {
        to,
        local: IpEndpoint::new(src, src_port),
        remote: IpEndpoint::new(dst, dst_port),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::Link;

    const ETH_IP4: usize = 14 + 20;
    const ETH_IP6: usize = 14 + 40;

    fn expect(local: u16, remote: u16, link: &Link, v6: bool, kind: Unreachable) -> IcmpError {
        let (ours, peer): (IpAddress, IpAddress) = if v6 {
            (link.our6.into(), link.peer6.into())
        } else {
            (link.our4.into(), link.peer4.into())
        };
        IcmpError {
            to: ours,
            local: IpEndpoint::new(ours, local),
            remote: IpEndpoint::new(peer, remote),
            kind,
        }
    }

    #[test]
    fn v4_quotes_with_options_and_minimal_length_are_read() {
        let l = Link::default();
        let mut sent = l.sent_udp4(40000, 53, b"payload");
        // IHL 6: four bytes of options shift the UDP header.
        sent.splice(20..20, [1u8, 1, 1, 1]);
        sent[0] = 0x46;
        let f = l.unreachable4(ICMPV4_PORT_UNREACHABLE, &sent[..24 + 4]);
        let want = expect(40000, 53, &l, false, Unreachable::Port);
        assert_eq!(v4(&f[ETH_IP4..], l.our4.into()), Some(want));
        let f = l.unreachable4(13, &l.sent_udp4(40000, 53, b"")[..28]);
        let want = expect(40000, 53, &l, false, Unreachable::Host);
        assert_eq!(v4(&f[ETH_IP4..], l.our4.into()), Some(want));
    }

    #[test]
    fn v4_quotes_without_a_udp_header_are_ignored() {
        let l = Link::default();
        let sent = l.sent_udp4(40000, 53, b"payload");
        let mut later_fragment = sent.clone();
        later_fragment[7] = 1; // fragment offset 8 bytes
        let mut tcp = sent.clone();
        tcp[9] = 6;
        for quote in [&later_fragment[..], &tcp[..], &sent[..23], &sent[..19]] {
            let f = l.unreachable4(ICMPV4_PORT_UNREACHABLE, quote);
            assert_eq!(v4(&f[ETH_IP4..], l.our4.into()), None);
        }
        let f = l.unreachable4(ICMPV4_FRAG_NEEDED, &sent);
        assert_eq!(v4(&f[ETH_IP4..], l.our4.into()), None);
    }

    #[test]
    fn v6_quotes_are_read_unless_an_extension_header_comes_first() {
        let l = Link::default();
        let sent = l.sent_udp6(40000, 53, b"payload");
        let f = l.unreachable6(ICMPV6_PORT_UNREACHABLE, &sent[..48]);
        let want = expect(40000, 53, &l, true, Unreachable::Port);
        assert_eq!(v6(&f[ETH_IP6..], l.our6.into()), Some(want));
        let f = l.unreachable6(0, &sent);
        assert_eq!(
            v6(&f[ETH_IP6..], l.our6.into()).map(|e| e.kind),
            Some(Unreachable::Host)
        );
        let mut hop_by_hop = sent.clone();
        hop_by_hop[6] = 0;
        let f = l.unreachable6(ICMPV6_PORT_UNREACHABLE, &hop_by_hop);
        assert_eq!(v6(&f[ETH_IP6..], l.our6.into()), None);
        let f = l.unreachable6(ICMPV6_PORT_UNREACHABLE, &sent[..43]);
        assert_eq!(v6(&f[ETH_IP6..], l.our6.into()), None);
    }
}
