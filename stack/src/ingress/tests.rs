//! Verdicts of `classify` on real frames built with smoltcp's own emitters.

extern crate std;

use std::vec;
use std::vec::Vec;

use smoltcp::phy::{Checksum, ChecksumCapabilities};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    UdpPacket,
};

use super::*;
use crate::frames::Link;

const MAX: usize = 1514;
const ETH: usize = 14;
const IP4: usize = 20;
const IP6: usize = 40;

const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
const PEER4: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const OUR4: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const PEER6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const OUR6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

const PEER_PORT: u16 = 40000;
const OUR_PORT: u16 = 7;

fn pass(tcp: TcpInfo) -> Verdict {
    Verdict::Pass(Facts::Tcp(tcp))
}

fn other() -> Verdict {
    Verdict::Pass(Facts::Other)
}

fn udp_from(src: IpAddress) -> Verdict {
    Verdict::Pass(Facts::Udp(UdpInfo {
        src: IpEndpoint::new(src, PEER_PORT),
        dst_port: OUR_PORT,
    }))
}

fn dropped(reason: DropReason) -> Verdict {
    Verdict::Drop(reason)
}

// ---- frame builders -----------------------------------------------------------------------

const LINK: Link = Link {
    peer_mac: PEER_MAC,
    our_mac: OUR_MAC,
    peer4: PEER4,
    our4: OUR4,
    peer6: PEER6,
    our6: OUR6,
};

fn ethernet(ethertype: EthernetProtocol, payload_len: usize) -> Vec<u8> {
    LINK.ethernet(ethertype, OUR_MAC, payload_len)
}

/// An IPv4 frame from PEER4 to OUR4 whose transport payload `fill` writes.
fn ipv4_frame(
    proto: IpProtocol,
    l4_len: usize,
    fill: impl FnOnce(&mut [u8], IpAddress, IpAddress),
) -> Vec<u8> {
    LINK.ipv4(proto, l4_len, fill)
}

fn tcp_repr(control: TcpControl, ack: Option<i32>, payload: &[u8]) -> TcpRepr<'_> {
    TcpRepr {
        src_port: PEER_PORT,
        dst_port: OUR_PORT,
        control,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.map(TcpSeqNumber),
        window_len: 4096,
        window_scale: None,
        max_seg_size: if control == TcpControl::Syn {
            Some(1460)
        } else {
            None
        },
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

fn tcp4(control: TcpControl, ack: Option<i32>, payload: &[u8]) -> Vec<u8> {
    LINK.tcp4(&tcp_repr(control, ack, payload))
}

fn tcp6(control: TcpControl, ack: Option<i32>, payload: &[u8]) -> Vec<u8> {
    LINK.tcp6(&tcp_repr(control, ack, payload))
}

fn syn4() -> Vec<u8> {
    tcp4(TcpControl::Syn, None, &[])
}

fn udp4(payload: &[u8]) -> Vec<u8> {
    LINK.udp4(PEER_PORT, OUR_PORT, payload)
}

fn udp6(payload: &[u8]) -> Vec<u8> {
    LINK.udp6(PEER_PORT, OUR_PORT, payload)
}

fn icmp4_echo() -> Vec<u8> {
    LINK.ping4(0x1234, b"ping")
}

fn icmp6_echo() -> Vec<u8> {
    LINK.ping6(0x1234, b"ping")
}

fn arp_request() -> Vec<u8> {
    LINK.arp_request()
}

/// Recomputes the IPv4 header checksum after a test edited the header.
fn refill_ipv4_checksum(frame: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut frame[ETH..]).fill_checksum();
}

fn ustack_outgoing_syn(frame: &[u8]) -> Option<u16> {
    crate::ingress::outgoing_syn_port(frame)
}

fn tcp_info(src: IpAddress, syn: bool, rst: bool) -> TcpInfo {
    TcpInfo {
        src,
        src_port: PEER_PORT,
        dst_port: OUR_PORT,
        syn,
        rst,
        syn_ack: false,
    }
}

// ---- valid frames pass --------------------------------------------------------------------

#[test]
fn builders_emit_frames_smoltcp_accepts() {
    // Guard against a broken builder making every other test vacuous.
    let f = syn4();
    let ip = Ipv4Packet::new_checked(&f[ETH..]).unwrap();
    assert!(ip.verify_checksum());
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&IpAddress::Ipv4(PEER4), &IpAddress::Ipv4(OUR4)));
    assert!(tcp.syn() && !tcp.ack());
    assert_eq!(f.len(), ETH + IP4 + 24, "SYN carries the 4-byte MSS option");
}

#[test]
fn tcp_syn_passes_with_exact_info() {
    assert_eq!(
        classify(&syn4(), MAX),
        pass(tcp_info(IpAddress::Ipv4(PEER4), true, false))
    );
}

#[test]
fn tcp_syn_ack_is_not_a_connection_request() {
    let f = tcp4(TcpControl::Syn, Some(1), &[]);
    let info = TcpInfo {
        syn_ack: true,
        ..tcp_info(IpAddress::Ipv4(PEER4), false, false)
    };
    assert_eq!(classify(&f, MAX), pass(info));
    assert_eq!(ustack_outgoing_syn(&f), None);
    let syn = syn4();
    assert_eq!(ustack_outgoing_syn(&syn), Some(PEER_PORT));
}

#[test]
fn tcp_rst_is_flagged() {
    let f = tcp4(TcpControl::Rst, None, &[]);
    assert_eq!(
        classify(&f, MAX),
        pass(tcp_info(IpAddress::Ipv4(PEER4), false, true))
    );
    let f = tcp4(TcpControl::Rst, Some(5), &[]);
    assert_eq!(
        classify(&f, MAX),
        pass(tcp_info(IpAddress::Ipv4(PEER4), false, true))
    );
}

#[test]
fn tcp_data_segment_passes() {
    let f = tcp4(TcpControl::Psh, Some(1), b"hello, world");
    assert_eq!(
        classify(&f, MAX),
        pass(tcp_info(IpAddress::Ipv4(PEER4), false, false))
    );
}

#[test]
fn udp_passes() {
    assert_eq!(classify(&udp4(b"datagram"), MAX), udp_from(PEER4.into()));
    assert_eq!(classify(&udp4(&[]), MAX), udp_from(PEER4.into()));
}

#[test]
fn icmp_echo_passes() {
    assert_eq!(classify(&icmp4_echo(), MAX), other());
}

#[test]
fn arp_passes() {
    assert_eq!(classify(&arp_request(), MAX), other());
}

#[test]
fn ipv6_tcp_udp_icmp_pass() {
    let src = IpAddress::Ipv6(PEER6);
    assert_eq!(
        classify(&tcp6(TcpControl::Syn, None, &[]), MAX),
        pass(tcp_info(src, true, false))
    );
    assert_eq!(
        classify(&tcp6(TcpControl::Rst, None, &[]), MAX),
        pass(tcp_info(src, false, true))
    );
    assert_eq!(classify(&udp6(b"v6"), MAX), udp_from(PEER6.into()));
    assert_eq!(classify(&icmp6_echo(), MAX), other());
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_accepted() {
    // Short frames reach 60 bytes on the wire; the padding is not part of the IP packet.
    for mut f in [arp_request(), syn4(), udp4(b"x"), icmp4_echo()] {
        let want = classify(&f, MAX);
        assert!(matches!(want, Verdict::Pass(_)));
        f.resize(f.len().max(60) + 4, 0);
        assert_eq!(classify(&f, MAX), want);
    }
}

#[test]
fn unknown_ip_protocol_passes_without_tcp_info() {
    let f = ipv4_frame(IpProtocol::Unknown(253), 4, |b, _, _| {
        b.copy_from_slice(b"abcd")
    });
    assert_eq!(classify(&f, MAX), other());
}

#[test]
fn ipv4_fragments_are_left_to_smoltcp() {
    let mut f = syn4();
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH..]);
    ip.set_dont_frag(false);
    ip.set_more_frags(true);
    ip.fill_checksum();
    assert_eq!(classify(&f, MAX), other());
}

// ---- length checks ------------------------------------------------------------------------

#[test]
fn shorter_than_ethernet_header_is_truncated() {
    for n in 0..ETH {
        assert_eq!(
            classify(&syn4()[..n], MAX),
            dropped(DropReason::Truncated),
            "{n} bytes"
        );
    }
    // Exactly a header of an unknown type is not truncated.
    let f = ethernet(EthernetProtocol::Unknown(0x88b5), 0);
    assert_eq!(classify(&f, MAX), Verdict::Unsupported);
}

#[test]
fn ipv4_total_len_beyond_the_buffer_is_truncated() {
    let mut f = syn4();
    let total = (f.len() - ETH) as u16;
    Ipv4Packet::new_unchecked(&mut f[ETH..]).set_total_len(total + 1);
    refill_ipv4_checksum(&mut f);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Truncated));
}

#[test]
fn ipv4_total_len_shorter_than_its_header_is_malformed() {
    let mut f = syn4();
    Ipv4Packet::new_unchecked(&mut f[ETH..]).set_total_len(19);
    refill_ipv4_checksum(&mut f);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Malformed));
}

#[test]
fn ipv4_payload_too_short_for_a_tcp_header_is_truncated() {
    // The IP header is fine, but total_len leaves only 10 bytes of TCP.
    let mut f = syn4();
    Ipv4Packet::new_unchecked(&mut f[ETH..]).set_total_len((IP4 + 10) as u16);
    refill_ipv4_checksum(&mut f);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Truncated));
}

#[test]
fn udp_length_beyond_the_ip_payload_is_truncated() {
    let mut f = udp4(b"abcd");
    UdpPacket::new_unchecked(&mut f[ETH + IP4..]).set_len(8 + 5);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Truncated));
}

#[test]
fn udp_length_below_its_header_is_malformed() {
    let mut f = udp4(b"abcd");
    UdpPacket::new_unchecked(&mut f[ETH + IP4..]).set_len(7);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Malformed));
}

#[test]
fn ipv6_payload_len_beyond_the_buffer_is_truncated() {
    let mut f = udp6(b"abcd");
    let len = (f.len() - ETH - IP6) as u16;
    Ipv6Packet::new_unchecked(&mut f[ETH..]).set_payload_len(len + 1);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Truncated));
}

#[test]
fn short_arp_is_truncated() {
    let f = arp_request();
    assert_eq!(
        classify(&f[..ETH + 20], MAX),
        dropped(DropReason::Truncated)
    );
    assert_eq!(classify(&f[..ETH + 4], MAX), dropped(DropReason::Truncated));
}

#[test]
fn frame_longer_than_max_len_is_oversize() {
    let f = tcp4(TcpControl::Psh, Some(1), &[0x55; 100]);
    assert_eq!(classify(&f, f.len() - 1), dropped(DropReason::Oversize));
    assert!(matches!(
        classify(&f, f.len()),
        Verdict::Pass(Facts::Tcp(_))
    ));
    // Oversize is decided before anything else is looked at.
    let junk = vec![0xffu8; MAX + 1];
    assert_eq!(classify(&junk, MAX), dropped(DropReason::Oversize));
}

// ---- checksums ----------------------------------------------------------------------------

#[test]
fn ipv4_header_checksum_flipped_is_bad_checksum() {
    let mut f = syn4();
    f[ETH + 10] ^= 0x01;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
}

#[test]
fn tcp_checksum_flipped_is_bad_checksum() {
    let mut f = syn4();
    f[ETH + IP4 + 16] ^= 0x01;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
    let mut f = tcp6(TcpControl::Syn, None, &[]);
    f[ETH + IP6 + 16] ^= 0x80;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
}

#[test]
fn tcp_payload_corruption_is_bad_checksum() {
    let mut f = tcp4(TcpControl::Psh, Some(1), b"payload");
    let last = f.len() - 1;
    f[last] ^= 0x20;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
}

#[test]
fn udp_checksum_flipped_is_bad_checksum() {
    let mut f = udp4(b"datagram");
    f[ETH + IP4 + 6] ^= 0x01;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
    let mut f = udp6(b"datagram");
    f[ETH + IP6 + 6] ^= 0x01;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
}

#[test]
fn udp_zero_checksum_over_ipv4_means_none() {
    let mut f = udp4(b"datagram");
    UdpPacket::new_unchecked(&mut f[ETH + IP4..]).set_checksum(0);
    assert_eq!(classify(&f, MAX), udp_from(PEER4.into()));
}

/// RFC 8200 section 8.1: a zero UDP checksum over IPv6 must be discarded, although smoltcp's
/// `UdpPacket::verify_checksum` accepts a zero checksum whatever the IP version.
#[test]
fn udp_zero_checksum_over_ipv6_is_bad_checksum() {
    let mut f = udp6(b"datagram");
    UdpPacket::new_unchecked(&mut f[ETH + IP6..]).set_checksum(0);
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
}

#[test]
fn icmp_checksum_flipped_is_bad_checksum() {
    let mut f = icmp4_echo();
    f[ETH + IP4 + 2] ^= 0x01;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
    let mut f = icmp6_echo();
    f[ETH + IP6 + 2] ^= 0x01;
    assert_eq!(classify(&f, MAX), dropped(DropReason::BadChecksum));
}

#[test]
fn classify_with_ignored_checksums_passes_bad_checksums() {
    let ignored = ChecksumCapabilities::ignored();
    let mut ip = syn4();
    ip[ETH + 10] ^= 0x01;
    let mut tcp = syn4();
    tcp[ETH + IP4 + 16] ^= 0x01;
    let mut udp = udp4(b"x");
    udp[ETH + IP4 + 6] ^= 0x01;
    let mut icmp = icmp4_echo();
    icmp[ETH + IP4 + 2] ^= 0x01;
    let mut icmp6 = icmp6_echo();
    icmp6[ETH + IP6 + 2] ^= 0x01;
    for f in [&ip, &tcp, &udp, &icmp, &icmp6] {
        assert!(matches!(
            classify(f, MAX),
            Verdict::Drop(DropReason::BadChecksum)
        ));
        assert!(matches!(classify_with(f, MAX, &ignored), Verdict::Pass(_)));
    }
    assert_eq!(
        classify_with(&tcp, MAX, &ignored),
        pass(tcp_info(IpAddress::Ipv4(PEER4), true, false))
    );
}

#[test]
fn classify_with_checks_only_what_the_device_did_not() {
    // The device verified TCP (Tx only for us), but not the IPv4 header.
    let mut checks = ChecksumCapabilities::default();
    checks.tcp = Checksum::Tx;
    let mut tcp = syn4();
    tcp[ETH + IP4 + 16] ^= 0x01;
    assert!(matches!(
        classify_with(&tcp, MAX, &checks),
        Verdict::Pass(Facts::Tcp(_))
    ));
    let mut ip = syn4();
    ip[ETH + 10] ^= 0x01;
    assert_eq!(
        classify_with(&ip, MAX, &checks),
        dropped(DropReason::BadChecksum)
    );
}

// ---- malformed headers --------------------------------------------------------------------

#[test]
fn bad_ip_version_is_malformed() {
    let mut f = syn4();
    f[ETH] = (f[ETH] & 0x0f) | 0x60; // version 6 inside an IPv4 EtherType
    refill_ipv4_checksum(&mut f);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Malformed));
    let mut f = tcp6(TcpControl::Syn, None, &[]);
    f[ETH] = (f[ETH] & 0x0f) | 0x40; // version 4 inside an IPv6 EtherType
    assert_eq!(classify(&f, MAX), dropped(DropReason::Malformed));
}

#[test]
fn ipv4_ihl_below_five_is_malformed() {
    let mut f = syn4();
    f[ETH] = 0x44;
    assert_eq!(classify(&f, MAX), dropped(DropReason::Malformed));
}

#[test]
fn tcp_data_offset_below_five_is_malformed() {
    for offset in 0..5u8 {
        let mut f = syn4();
        f[ETH + IP4 + 12] = (offset << 4) | (f[ETH + IP4 + 12] & 0x0f);
        assert_eq!(
            classify(&f, MAX),
            dropped(DropReason::Malformed),
            "data offset {offset}"
        );
    }
}

#[test]
fn tcp_data_offset_beyond_the_segment_is_truncated() {
    let mut f = syn4(); // 24-byte TCP header
    TcpPacket::new_unchecked(&mut f[ETH + IP4..]).set_header_len(28);
    assert_eq!(classify(&f, MAX), dropped(DropReason::Truncated));
}

#[test]
fn unknown_ethertype_is_unsupported() {
    let mut f = syn4();
    EthernetFrame::new_unchecked(&mut f[..]).set_ethertype(EthernetProtocol::Unknown(0x88b5));
    assert_eq!(classify(&f, MAX), Verdict::Unsupported);
}

// ---- properties ---------------------------------------------------------------------------

#[test]
fn every_truncation_of_a_tcp_frame_is_refused() {
    let frames = [
        syn4(),
        tcp4(TcpControl::Psh, Some(7), b"some payload bytes"),
        tcp6(TcpControl::Syn, None, &[]),
    ];
    for f in &frames {
        let ip_end = match EthernetFrame::new_checked(&f[..]).unwrap().ethertype() {
            EthernetProtocol::Ipv4 => {
                ETH + usize::from(Ipv4Packet::new_checked(&f[ETH..]).unwrap().total_len())
            }
            _ => ETH + IP6 + usize::from(Ipv6Packet::new_checked(&f[ETH..]).unwrap().payload_len()),
        };
        assert_eq!(ip_end, f.len());
        assert!(matches!(classify(f, MAX), Verdict::Pass(Facts::Tcp(_))));
        for n in 0..f.len() {
            let prefix = &f[..n];
            for checks in [
                ChecksumCapabilities::default(),
                ChecksumCapabilities::ignored(),
            ] {
                let v = classify_with(prefix, MAX, &checks);
                assert!(
                    matches!(v, Verdict::Drop(_)),
                    "{n}-byte prefix of a {}-byte frame: {v:?}",
                    f.len()
                );
            }
            assert_eq!(
                classify(prefix, MAX),
                dropped(DropReason::Truncated),
                "{n}-byte prefix"
            );
        }
    }
}

#[test]
fn single_byte_corruptions_never_panic() {
    // Not exhaustive fuzzing (that is fuzz/), but cheap: every byte of every kind of frame,
    // set to a few interesting values.
    let frames = [
        syn4(),
        tcp6(TcpControl::Rst, None, &[]),
        udp4(b"abc"),
        udp6(b"abc"),
        icmp4_echo(),
        icmp6_echo(),
        arp_request(),
    ];
    for f in &frames {
        for i in 0..f.len() {
            for v in [0x00, 0x01, 0x0f, 0x45, 0x7f, 0x80, 0xf0, 0xff] {
                let mut g = f.clone();
                g[i] = v;
                let _ = classify(&g, MAX);
                let _ = classify_with(&g, MAX, &ChecksumCapabilities::ignored());
                let _ = classify(&g[..i], MAX);
            }
        }
    }
}
