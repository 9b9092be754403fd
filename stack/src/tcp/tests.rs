//! TCP against a peer played frame by frame: regressions the fuzzers found.

extern crate std;

use std::vec::Vec;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, EthernetFrame, EthernetProtocol, IpEndpoint, IpProtocol, Ipv4Packet, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::frames::Link;
use crate::test_wire::Wire;
use crate::{Config, Stack};

const PEER_PORT: u16 = 80;

fn stack(link: &Link) -> Stack<'static, Wire> {
    let config = Config::new(link.our_mac.0, "10.0.0.1/24".parse().unwrap());
    Stack::new(config, Wire::default(), Instant::ZERO).unwrap()
}

/// `(syn, ack flag, seq)` of every TCP segment the stack has sent so far.
fn sent_segments(wire: &Wire) -> Vec<(bool, bool, u32)> {
    let mut out = Vec::new();
    for frame in &wire.sent {
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            continue;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            continue;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            continue;
        };
        if ip.next_header() != IpProtocol::Tcp {
            continue;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        out.push((tcp.syn(), tcp.ack(), tcp.seq_number().0 as u32));
    }
    out
}

fn segment(local: u16, control: TcpControl, seq: u32, ack: Option<u32>) -> TcpRepr<'static> {
    TcpRepr {
        src_port: PEER_PORT,
        dst_port: local,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 8192,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    }
}

/// smoltcp 0.14 panics ("attempt to subtract sequence numbers with underflow") in
/// `poll_at` when a connecting socket whose SYN is still waiting for ARP accepts a SYN-ACK
/// or a SYN; `stack_ingress` found it. ustack drops such segments and counts them, and the
/// connection completes normally once ARP resolves.
#[test]
fn syn_or_synack_before_our_syn_left_is_dropped_and_the_connect_still_completes() {
    let link = Link::default();
    let mut s = stack(&link);
    let mut now = Instant::ZERO;
    let h = s
        .connect(IpEndpoint::new(link.peer4.into(), PEER_PORT))
        .unwrap();
    s.poll(now);
    assert!(
        sent_segments(s.device()).is_empty(),
        "the SYN waits for ARP"
    );
    let local = s.tcp_local_addr(h).unwrap().port;

    // A guessed SYN-ACK and a simultaneous-open SYN, both before our SYN exists on the wire.
    let early = [
        link.tcp4(&segment(local, TcpControl::Syn, 7_000, Some(12_345))),
        link.tcp4(&segment(local, TcpControl::Syn, 7_000, None)),
    ];
    s.device_mut().inbound.extend(early);
    now += Duration::from_millis(1);
    s.poll(now);
    let _ = s.poll_delay(now);
    assert_eq!(s.stats().tcp_syn_before_connect, 2);
    assert!(!s.tcp_connected(h).unwrap());

    // ARP resolves; our SYN leaves; the real SYN-ACK completes the handshake.
    let reply = link.arp(ArpOperation::Reply, link.our_mac, link.our_mac);
    s.device_mut().inbound.push_back(reply);
    now += Duration::from_millis(1);
    s.poll(now);
    let syns: Vec<_> = sent_segments(s.device())
        .into_iter()
        .filter(|&(syn, ack, _)| syn && !ack)
        .collect();
    assert_eq!(syns.len(), 1, "exactly one SYN after ARP: {syns:?}");
    let isn = syns[0].2;
    let synack = segment(local, TcpControl::Syn, 9_000, Some(isn.wrapping_add(1)));
    s.device_mut().inbound.push_back(link.tcp4(&synack));
    now += Duration::from_millis(1);
    s.poll(now);
    let _ = s.poll_delay(now);
    assert!(s.tcp_connected(h).unwrap());
    assert_eq!(s.stats().tcp_syn_before_connect, 2);
}
