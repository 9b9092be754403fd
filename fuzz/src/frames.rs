//! Valid frames from the peer to the stack, built with smoltcp's emitters (correct checksums),
//! and a parser for what the stack sends back. Used by the seed generator.

use ustack::smoltcp::phy::ChecksumCapabilities;
use ustack::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscRepr, RawHardwareAddress, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use crate::{OUR_IP, OUR_IP6, OUR_MAC, PEER_IP, PEER_IP6, PEER_MAC};

const ETH: usize = 14;

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

fn ethernet(ethertype: EthernetProtocol, dst: EthernetAddress, payload_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; ETH + payload_len];
    EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    buf
}

fn ipv4(
    proto: IpProtocol,
    l4_len: usize,
    fill: impl FnOnce(&mut [u8], IpAddress, IpAddress),
) -> Vec<u8> {
    let mut buf = ethernet(EthernetProtocol::Ipv4, OUR_MAC, 20 + l4_len);
    let repr = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: OUR_IP,
        next_header: proto,
        payload_len: l4_len,
        hop_limit: 64,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH..]);
    repr.emit(&mut ip, &caps());
    fill(
        ip.payload_mut(),
        IpAddress::Ipv4(PEER_IP),
        IpAddress::Ipv4(OUR_IP),
    );
    buf
}

fn ipv6(
    proto: IpProtocol,
    l4_len: usize,
    fill: impl FnOnce(&mut [u8], IpAddress, IpAddress),
) -> Vec<u8> {
    ipv6_hops(proto, 64, l4_len, fill)
}

fn ipv6_hops(
    proto: IpProtocol,
    hop_limit: u8,
    l4_len: usize,
    fill: impl FnOnce(&mut [u8], IpAddress, IpAddress),
) -> Vec<u8> {
    let mut buf = ethernet(EthernetProtocol::Ipv6, OUR_MAC, 40 + l4_len);
    let repr = Ipv6Repr {
        src_addr: PEER_IP6,
        dst_addr: OUR_IP6,
        next_header: proto,
        payload_len: l4_len,
        hop_limit,
    };
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[ETH..]);
    repr.emit(&mut ip);
    fill(
        ip.payload_mut(),
        IpAddress::Ipv6(PEER_IP6),
        IpAddress::Ipv6(OUR_IP6),
    );
    buf
}

/// A TCP segment's header fields.
#[derive(Debug, Clone, Copy)]
pub struct Seg<'a> {
    /// Peer port.
    pub src_port: u16,
    /// Our port.
    pub dst_port: u16,
    /// SYN, FIN, RST, PSH or none.
    pub control: TcpControl,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number, if ACK is set.
    pub ack: Option<u32>,
    /// Payload.
    pub payload: &'a [u8],
}

fn tcp_repr<'a>(s: &Seg<'a>) -> TcpRepr<'a> {
    TcpRepr {
        src_port: s.src_port,
        dst_port: s.dst_port,
        control: s.control,
        seq_number: TcpSeqNumber(s.seq as i32),
        ack_number: s.ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 8192,
        window_scale: if s.control == TcpControl::Syn {
            Some(2)
        } else {
            None
        },
        max_seg_size: if s.control == TcpControl::Syn {
            Some(1460)
        } else {
            None
        },
        sack_permitted: s.control == TcpControl::Syn,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: s.payload,
    }
}

/// A TCP segment over IPv4 from the peer.
pub fn tcp4(s: Seg<'_>) -> Vec<u8> {
    let repr = tcp_repr(&s);
    ipv4(IpProtocol::Tcp, repr.buffer_len(), |b, src, dst| {
        repr.emit(&mut TcpPacket::new_unchecked(b), &src, &dst, &caps())
    })
}

/// A TCP segment over IPv6 from the peer.
pub fn tcp6(s: Seg<'_>) -> Vec<u8> {
    let repr = tcp_repr(&s);
    ipv6(IpProtocol::Tcp, repr.buffer_len(), |b, src, dst| {
        repr.emit(&mut TcpPacket::new_unchecked(b), &src, &dst, &caps())
    })
}

fn udp_fill(
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

/// A UDP datagram over IPv4 from the peer.
pub fn udp4(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(
        IpProtocol::Udp,
        8 + payload.len(),
        udp_fill(src_port, dst_port, payload),
    )
}

/// A UDP datagram over IPv6 from the peer.
pub fn udp6(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ipv6(
        IpProtocol::Udp,
        8 + payload.len(),
        udp_fill(src_port, dst_port, payload),
    )
}

/// An ICMPv4 echo request from the peer.
pub fn ping4(data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x7573,
        seq_no: 1,
        data,
    };
    ipv4(IpProtocol::Icmp, repr.buffer_len(), |b, _, _| {
        repr.emit(&mut Icmpv4Packet::new_unchecked(b), &caps())
    })
}

/// An ICMPv6 echo request from the peer.
pub fn ping6(data: &[u8]) -> Vec<u8> {
    let repr = Icmpv6Repr::EchoRequest {
        ident: 0x7573,
        seq_no: 1,
        data,
    };
    ipv6(IpProtocol::Icmpv6, repr.buffer_len(), |b, _, _| {
        repr.emit(
            &PEER_IP6,
            &OUR_IP6,
            &mut Icmpv6Packet::new_unchecked(b),
            &caps(),
        )
    })
}

/// A neighbor solicitation from the peer for our IPv6 address, carrying the peer's MAC:
/// the IPv6 counterpart of [`arp_request`] (without it the stack cannot answer over IPv6).
pub fn ndisc_solicit() -> Vec<u8> {
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: OUR_IP6,
        lladdr: Some(RawHardwareAddress::from(PEER_MAC)),
    });
    ipv6_hops(IpProtocol::Icmpv6, 255, repr.buffer_len(), |b, _, _| {
        repr.emit(
            &PEER_IP6,
            &OUR_IP6,
            &mut Icmpv6Packet::new_unchecked(b),
            &caps(),
        )
    })
}

fn arp(operation: ArpOperation, dst: EthernetAddress, target_mac: EthernetAddress) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: target_mac,
        target_protocol_addr: OUR_IP,
    };
    let mut buf = ethernet(EthernetProtocol::Arp, dst, repr.buffer_len());
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH..]));
    buf
}

/// A broadcast ARP request from the peer for our address.
pub fn arp_request() -> Vec<u8> {
    arp(
        ArpOperation::Request,
        EthernetAddress::BROADCAST,
        EthernetAddress([0; 6]),
    )
}

/// An ARP reply from the peer to us: tells the stack where [`PEER_IP`] is.
pub fn arp_reply() -> Vec<u8> {
    arp(ArpOperation::Reply, OUR_MAC, OUR_MAC)
}

/// The header facts of a TCP segment the stack sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Our port.
    pub src_port: u16,
    /// Peer port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful if `ack`).
    pub ack_number: u32,
    /// Flags.
    pub syn: bool,
    /// Flags.
    pub ack: bool,
    /// Flags.
    pub fin: bool,
    /// Flags.
    pub rst: bool,
    /// Payload bytes.
    pub len: usize,
}

/// Parses a TCP segment the stack transmitted (over IPv4 or IPv6).
pub fn parse_tcp(frame: &[u8]) -> Option<Sent> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l4: &[u8] = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            &eth.payload()[usize::from(ip.header_len())..usize::from(ip.total_len())]
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            &eth.payload()[40..40 + usize::from(ip.payload_len())]
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(l4).ok()?;
    Some(Sent {
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        ack_number: tcp.ack_number().0 as u32,
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        len: tcp.payload().len(),
    })
}
