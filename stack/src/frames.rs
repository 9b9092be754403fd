//! Builders for well-formed frames from a peer, with correct checksums: for tests, seed
//! corpora and fuzz harnesses (feature `frames`).
//!
//! ```
//! use ustack::frames::Link;
//! use ustack::ingress::{classify, Facts, Verdict};
//! let link = Link::default();
//! let frame = link.ping4(1, b"hello");
//! assert_eq!(classify(&frame, 1514), Verdict::Pass(Facts::Other));
//! ```

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, NdiscRepr,
    RawHardwareAddress, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

const ETH: usize = 14;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
/// Type, code, checksum and 4 unused bytes before an ICMP error's quote.
const ICMP_ERROR_HEADER: usize = 8;
const ICMPV4_DST_UNREACHABLE: u8 = 3;
const ICMPV6_DST_UNREACHABLE: u8 = 1;

/// The two ends of a link: frames are built from `peer_*` to `our_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The sender's MAC.
    pub peer_mac: EthernetAddress,
    /// The receiver's MAC.
    pub our_mac: EthernetAddress,
    /// The sender's IPv4 address.
    pub peer4: Ipv4Address,
    /// The receiver's IPv4 address.
    pub our4: Ipv4Address,
    /// The sender's IPv6 address.
    pub peer6: Ipv6Address,
    /// The receiver's IPv6 address.
    pub our6: Ipv6Address,
}

impl Default for Link {
    /// 10.0.0.2 / fd00::2 (02:00:00:00:00:02) to 10.0.0.1 / fd00::1 (02:00:00:00:00:01).
    fn default() -> Self {
        Link {
            peer_mac: EthernetAddress([0x02, 0, 0, 0, 0, 2]),
            our_mac: EthernetAddress([0x02, 0, 0, 0, 0, 1]),
            peer4: Ipv4Address::new(10, 0, 0, 2),
            our4: Ipv4Address::new(10, 0, 0, 1),
            peer6: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            our6: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        }
    }
}

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

impl Link {
    /// An Ethernet frame to `dst` with `payload_len` zero bytes after the header.
    pub fn ethernet(
        &self,
        ethertype: EthernetProtocol,
        dst: EthernetAddress,
        payload_len: usize,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; ETH + payload_len];
        let repr = EthernetRepr {
            src_addr: self.peer_mac,
            dst_addr: dst,
            ethertype,
        };
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        buf
    }

    /// An IPv4 frame whose `l4_len`-byte transport payload `fill` writes, given the addresses.
    pub fn ipv4(
        &self,
        proto: IpProtocol,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8], IpAddress, IpAddress),
    ) -> Vec<u8> {
        let mut buf = self.ethernet(EthernetProtocol::Ipv4, self.our_mac, IPV4_HEADER + l4_len);
        let repr = Ipv4Repr {
            src_addr: self.peer4,
            dst_addr: self.our4,
            next_header: proto,
            payload_len: l4_len,
            hop_limit: 64,
        };
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH..]);
        repr.emit(&mut ip, &caps());
        fill(ip.payload_mut(), self.peer4.into(), self.our4.into());
        buf
    }

    /// An IPv6 frame with `hop_limit`, whose transport payload `fill` writes.
    pub fn ipv6(
        &self,
        proto: IpProtocol,
        hop_limit: u8,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8], IpAddress, IpAddress),
    ) -> Vec<u8> {
        let mut buf = self.ethernet(EthernetProtocol::Ipv6, self.our_mac, IPV6_HEADER + l4_len);
        let repr = Ipv6Repr {
            src_addr: self.peer6,
            dst_addr: self.our6,
            next_header: proto,
            payload_len: l4_len,
            hop_limit,
        };
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[ETH..]);
        repr.emit(&mut ip);
        fill(ip.payload_mut(), self.peer6.into(), self.our6.into());
        buf
    }

    /// A TCP segment over IPv4.
    pub fn tcp4(&self, repr: &TcpRepr<'_>) -> Vec<u8> {
        self.ipv4(IpProtocol::Tcp, repr.buffer_len(), emit_tcp(repr))
    }

    /// A TCP segment over IPv6.
    pub fn tcp6(&self, repr: &TcpRepr<'_>) -> Vec<u8> {
        self.ipv6(IpProtocol::Tcp, 64, repr.buffer_len(), emit_tcp(repr))
    }

    /// A UDP datagram over IPv4.
    pub fn udp4(&self, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        self.ipv4(
            IpProtocol::Udp,
            UDP_HEADER + payload.len(),
            emit_udp(src_port, dst_port, payload),
        )
    }

    /// A UDP datagram over IPv6.
    pub fn udp6(&self, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        self.ipv6(
            IpProtocol::Udp,
            64,
            UDP_HEADER + payload.len(),
            emit_udp(src_port, dst_port, payload),
        )
    }

    /// An ICMPv4 echo request.
    pub fn ping4(&self, ident: u16, data: &[u8]) -> Vec<u8> {
        let repr = Icmpv4Repr::EchoRequest {
            ident,
            seq_no: 1,
            data,
        };
        self.ipv4(IpProtocol::Icmp, repr.buffer_len(), |b, _, _| {
            repr.emit(&mut Icmpv4Packet::new_unchecked(b), &caps())
        })
    }

    /// An ICMPv6 echo request.
    pub fn ping6(&self, ident: u16, data: &[u8]) -> Vec<u8> {
        self.icmp6(
            64,
            &Icmpv6Repr::EchoRequest {
                ident,
                seq_no: 1,
                data,
            },
        )
    }

    /// A neighbor solicitation for our IPv6 address, carrying the peer's MAC.
    pub fn ndisc_solicit(&self) -> Vec<u8> {
        let lladdr = Some(RawHardwareAddress::from(self.peer_mac));
        self.icmp6(
            255,
            &Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                target_addr: self.our6,
                lladdr,
            }),
        )
    }

    fn icmp6(&self, hop_limit: u8, repr: &Icmpv6Repr<'_>) -> Vec<u8> {
        let (src, dst) = (self.peer6, self.our6);
        self.ipv6(
            IpProtocol::Icmpv6,
            hop_limit,
            repr.buffer_len(),
            |b, _, _| repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(b), &caps()),
        )
    }

    /// The IPv4 packet of a UDP datagram sent from us to the peer: what an ICMP error quotes.
    pub fn sent_udp4(&self, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        self.mirrored().udp4(src_port, dst_port, payload)[ETH..].to_vec()
    }

    /// The IPv6 packet of a UDP datagram sent from us to the peer.
    pub fn sent_udp6(&self, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        self.mirrored().udp6(src_port, dst_port, payload)[ETH..].to_vec()
    }

    /// An ICMPv4 destination-unreachable with `code`, quoting `quote` (RFC 792 promises the
    /// IP header plus 8 bytes; pass a truncated [`sent_udp4`](Self::sent_udp4) for that).
    pub fn unreachable4(&self, code: u8, quote: &[u8]) -> Vec<u8> {
        self.ipv4(
            IpProtocol::Icmp,
            ICMP_ERROR_HEADER + quote.len(),
            |b, _, _| {
                b[0] = ICMPV4_DST_UNREACHABLE;
                b[1] = code;
                b[ICMP_ERROR_HEADER..].copy_from_slice(quote);
                Icmpv4Packet::new_unchecked(b).fill_checksum();
            },
        )
    }

    /// An ICMPv6 destination-unreachable with `code`, quoting `quote`.
    pub fn unreachable6(&self, code: u8, quote: &[u8]) -> Vec<u8> {
        let (src, dst) = (self.peer6, self.our6);
        let len = ICMP_ERROR_HEADER + quote.len();
        self.ipv6(IpProtocol::Icmpv6, 64, len, |b, _, _| {
            b[0] = ICMPV6_DST_UNREACHABLE;
            b[1] = code;
            b[ICMP_ERROR_HEADER..].copy_from_slice(quote);
            Icmpv6Packet::new_unchecked(b).fill_checksum(&src, &dst);
        })
    }

    /// The same link seen from the other end.
    fn mirrored(&self) -> Link {
        Link {
            peer_mac: self.our_mac,
            our_mac: self.peer_mac,
            peer4: self.our4,
            our4: self.peer4,
            peer6: self.our6,
            our6: self.peer6,
        }
    }

    /// An ARP packet about our IPv4 address, sent to `dst`.
    pub fn arp(
        &self,
        operation: ArpOperation,
        dst: EthernetAddress,
        target_mac: EthernetAddress,
    ) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: self.peer_mac,
            source_protocol_addr: self.peer4,
            target_hardware_addr: target_mac,
            target_protocol_addr: self.our4,
        };
        let mut buf = self.ethernet(EthernetProtocol::Arp, dst, repr.buffer_len());
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH..]));
        buf
    }

    /// A broadcast ARP request for our IPv4 address.
    pub fn arp_request(&self) -> Vec<u8> {
        self.arp(
            ArpOperation::Request,
            EthernetAddress::BROADCAST,
            EthernetAddress([0; 6]),
        )
    }
}

fn emit_tcp<'a>(repr: &'a TcpRepr<'a>) -> impl FnOnce(&mut [u8], IpAddress, IpAddress) + 'a {
    move |b, src, dst| repr.emit(&mut TcpPacket::new_unchecked(b), &src, &dst, &caps())
}

fn emit_udp(
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> impl FnOnce(&mut [u8], IpAddress, IpAddress) + '_ {
    move |b, src, dst| {
        UdpRepr { src_port, dst_port }.emit(
            &mut UdpPacket::new_unchecked(b),
            &src,
            &dst,
            payload.len(),
            |p| p.copy_from_slice(payload),
            &caps(),
        )
    }
}
