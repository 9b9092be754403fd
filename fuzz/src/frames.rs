//! Valid frames from the peer to the stack, built with smoltcp's emitters (correct checksums),
//! and a parser for what the stack sends back. Used by the seed generator.

use ustack::frames::Link;
use ustack::smoltcp::wire::{
    ArpOperation, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::{OUR_IP, OUR_IP6, OUR_MAC, PEER_IP, PEER_IP6, PEER_MAC};

/// The link the seeds and harnesses use: from the peer ([`PEER_MAC`], [`PEER_IP`], [`PEER_IP6`]) to us.
pub const LINK: Link = Link {
    peer_mac: PEER_MAC,
    our_mac: OUR_MAC,
    peer4: PEER_IP,
    our4: OUR_IP,
    peer6: PEER_IP6,
    our6: OUR_IP6,
};

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
    LINK.tcp4(&tcp_repr(&s))
}

/// A TCP segment over IPv6 from the peer.
pub fn tcp6(s: Seg<'_>) -> Vec<u8> {
    LINK.tcp6(&tcp_repr(&s))
}

/// A UDP datagram over IPv4 from the peer.
pub fn udp4(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    LINK.udp4(src_port, dst_port, payload)
}

/// A UDP datagram over IPv6 from the peer.
pub fn udp6(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    LINK.udp6(src_port, dst_port, payload)
}

/// An ICMPv4 echo request from the peer.
pub fn ping4(data: &[u8]) -> Vec<u8> {
    LINK.ping4(0x7573, data)
}

/// An ICMPv6 echo request from the peer.
pub fn ping6(data: &[u8]) -> Vec<u8> {
    LINK.ping6(0x7573, data)
}

/// A neighbor solicitation from the peer for our IPv6 address, carrying the peer's MAC:
/// the IPv6 counterpart of [`arp_request`] (without it the stack cannot answer over IPv6).
pub fn ndisc_solicit() -> Vec<u8> {
    LINK.ndisc_solicit()
}

/// A broadcast ARP request from the peer for our address.
pub fn arp_request() -> Vec<u8> {
    LINK.arp_request()
}

/// An ARP reply from the peer to us: tells the stack where [`PEER_IP`] is.
pub fn arp_reply() -> Vec<u8> {
    LINK.arp(ArpOperation::Reply, OUR_MAC, OUR_MAC)
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
