//! Validation of every frame before smoltcp sees it.
//!
//! smoltcp drops bad frames silently; ustack must count them by reason, and must know about
//! SYNs and resets to run listener backlogs and to tell a reset from a timeout, about UDP
//! sources to filter connected sockets, and about ICMP errors, which smoltcp never delivers.
//! One pass over the headers does all of it, and verifies the checksums so smoltcp need not
//! do it a second time.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::IpEndpoint;
use smoltcp::wire::{
    ArpPacket, EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet,
    TcpPacket, UdpPacket,
};
#[cfg(feature = "ipv6")]
use smoltcp::wire::{Icmpv6Packet, Ipv6Packet};

mod icmp;

pub use icmp::{IcmpError, Unreachable};

pub use crate::stats::DropReason;

const ETHERNET_HEADER_LEN: usize = 14;
const IPV4_MIN_HEADER_LEN: usize = 20;
#[cfg(feature = "ipv6")]
const IPV6_HEADER_LEN: usize = 40;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const ICMP_MIN_LEN: usize = 4;
const ARP_MIN_LEN: usize = 8;

/// What a TCP segment means for socket bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Source address of the segment.
    pub src: IpAddress,
    /// Source port.
    pub src_port: u16,
    /// Destination port (ours).
    pub dst_port: u16,
    /// A connection request: SYN without ACK.
    pub syn: bool,
    /// A reset.
    pub rst: bool,
    /// The answer to a connection request: SYN with ACK.
    pub syn_ack: bool,
}

/// A UDP datagram's addressing, for connected-socket filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpInfo {
    /// The sender.
    pub src: IpEndpoint,
    /// Destination port (ours).
    pub dst_port: u16,
}

/// What a frame that passed means for ustack's own bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts {
    /// Nothing ustack tracks (ARP, ICMP echo, fragments, other protocols).
    Other,
    /// A TCP segment.
    Tcp(TcpInfo),
    /// A UDP datagram.
    Udp(UdpInfo),
    /// An ICMP destination-unreachable quoting a UDP datagram.
    IcmpError(IcmpError),
}

/// The verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the frame to smoltcp.
    Pass(Facts),
    /// An EtherType ustack does not handle; smoltcp ignores it.
    Unsupported,
    /// Drop the frame and count it.
    Drop(DropReason),
}

/// Classifies one Ethernet frame. `max_len` is the largest frame the device may deliver.
///
/// ```
/// use ustack::ingress::{classify, Verdict, DropReason};
/// assert_eq!(classify(&[0u8; 6], 1514), Verdict::Drop(DropReason::Truncated));
/// ```
pub fn classify(frame: &[u8], max_len: usize) -> Verdict {
    classify_with(frame, max_len, &ChecksumCapabilities::default())
}

/// [`classify`], verifying only the checksums that `checks` says the device did not verify.
pub fn classify_with(frame: &[u8], max_len: usize, checks: &ChecksumCapabilities) -> Verdict {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Verdict::Drop(DropReason::Truncated);
    }
    if frame.len() > max_len {
        return Verdict::Drop(DropReason::Oversize);
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    let payload = eth.payload();
    let result = match eth.ethertype() {
        EthernetProtocol::Ipv4 => ipv4(payload, checks),
        #[cfg(feature = "ipv6")]
        EthernetProtocol::Ipv6 => ipv6(payload, checks),
        EthernetProtocol::Arp => arp(payload),
        _ => return Verdict::Unsupported,
    };
    match result {
        Ok(facts) => Verdict::Pass(facts),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// The source port of an outgoing connection request (SYN without ACK), if `frame` is one.
///
/// ```
/// assert_eq!(ustack::ingress::outgoing_syn_port(&[0u8; 60]), None);
/// ```
pub fn outgoing_syn_port(frame: &[u8]) -> Option<u16> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let tcp = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            TcpPacket::new_checked(ip.payload()).ok()?.src_port_if_syn()
        }
        #[cfg(feature = "ipv6")]
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            TcpPacket::new_checked(ip.payload()).ok()?.src_port_if_syn()
        }
        _ => None,
    };
    tcp
}

trait SynPort {
    fn src_port_if_syn(&self) -> Option<u16>;
}

impl<T: AsRef<[u8]>> SynPort for TcpPacket<T> {
    fn src_port_if_syn(&self) -> Option<u16> {
        (self.syn() && !self.ack()).then(|| self.src_port())
    }
}

type Checked = Result<Facts, DropReason>;

fn arp(buf: &[u8]) -> Checked {
    if buf.len() < ARP_MIN_LEN {
        return Err(DropReason::Truncated);
    }
    ArpPacket::new_checked(buf).map_err(|_| DropReason::Truncated)?;
    Ok(Facts::Other)
}

fn ipv4(buf: &[u8], checks: &ChecksumCapabilities) -> Checked {
    if buf.len() < IPV4_MIN_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let declared = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let header = usize::from(buf[0] & 0x0f) * 4;
    if buf[0] >> 4 != 4 || header < IPV4_MIN_HEADER_LEN || declared < header {
        return Err(DropReason::Malformed);
    }
    if buf.len() < declared || buf.len() < header {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| DropReason::Malformed)?;
    if checks.ipv4.rx() && !ip.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        // Fragments are smoltcp's business (it drops them without reassembly support).
        return Ok(Facts::Other);
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => tcp(payload, src, dst, checks.tcp.rx()),
        IpProtocol::Udp => udp(payload, src, dst, checks.udp.rx()),
        IpProtocol::Icmp => {
            if payload.len() < ICMP_MIN_LEN {
                return Err(DropReason::Truncated);
            }
            let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::Truncated)?;
            if checks.icmpv4.rx() && !icmp.verify_checksum() {
                return Err(DropReason::BadChecksum);
            }
            Ok(icmp::v4(payload, dst).map_or(Facts::Other, Facts::IcmpError))
        }
        _ => Ok(Facts::Other),
    }
}

#[cfg(feature = "ipv6")]
fn ipv6(buf: &[u8], checks: &ChecksumCapabilities) -> Checked {
    if buf.len() < IPV6_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    if buf[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let ip = Ipv6Packet::new_checked(buf).map_err(|_| DropReason::Truncated)?;
    let (s6, d6) = (ip.src_addr(), ip.dst_addr());
    let (src, dst) = (IpAddress::Ipv6(s6), IpAddress::Ipv6(d6));
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Tcp => tcp(payload, src, dst, checks.tcp.rx()),
        IpProtocol::Udp => udp(payload, src, dst, checks.udp.rx()),
        IpProtocol::Icmpv6 => {
            if payload.len() < ICMP_MIN_LEN {
                return Err(DropReason::Truncated);
            }
            let icmp = Icmpv6Packet::new_checked(payload).map_err(|_| DropReason::Truncated)?;
            if checks.icmpv6.rx() && !icmp.verify_checksum(&s6, &d6) {
                return Err(DropReason::BadChecksum);
            }
            Ok(icmp::v6(payload, dst).map_or(Facts::Other, Facts::IcmpError))
        }
        // Extension headers: smoltcp parses those itself.
        _ => Ok(Facts::Other),
    }
}

fn tcp(buf: &[u8], src: IpAddress, dst: IpAddress, verify: bool) -> Checked {
    if buf.len() < TCP_MIN_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let header = usize::from(buf[12] >> 4) * 4;
    if header < TCP_MIN_HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    if buf.len() < header {
        return Err(DropReason::Truncated);
    }
    let seg = TcpPacket::new_checked(buf).map_err(|_| DropReason::Malformed)?;
    if verify && !seg.verify_checksum(&src, &dst) {
        return Err(DropReason::BadChecksum);
    }
    Ok(Facts::Tcp(TcpInfo {
        src,
        src_port: seg.src_port(),
        dst_port: seg.dst_port(),
        syn: seg.syn() && !seg.ack(),
        rst: seg.rst(),
        syn_ack: seg.syn() && seg.ack(),
    }))
}

fn udp(buf: &[u8], src: IpAddress, dst: IpAddress, verify: bool) -> Checked {
    if buf.len() < UDP_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let declared = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if declared < UDP_HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    if buf.len() < declared {
        return Err(DropReason::Truncated);
    }
    let dgram = UdpPacket::new_checked(buf).map_err(|_| DropReason::Malformed)?;
    // A zero checksum means "none" over IPv4; over IPv6 it is forbidden (RFC 8200 8.1), and
    // smoltcp's verify_checksum would wave it through.
    let unchecked = dgram.checksum() == 0 && matches!(src, IpAddress::Ipv4(_));
    if verify && dgram.checksum() == 0 && !unchecked {
        return Err(DropReason::BadChecksum);
    }
    if verify && !unchecked && !dgram.verify_checksum(&src, &dst) {
        return Err(DropReason::BadChecksum);
    }
    Ok(Facts::Udp(UdpInfo {
        src: IpEndpoint::new(src, dgram.src_port()),
        dst_port: dgram.dst_port(),
    }))
}

#[cfg(test)]
mod tests;
