//! `ustack::ingress::classify` on arbitrary bytes: it must never panic, and its verdicts must
//! be consistent with the frame it was given.
//!
//! The whole input is classified against a 1514-byte MTU; the input minus its first two
//! bytes is classified again against the MTU those two bytes name (so tiny and huge limits
//! get exercised too).
//!
//! The facts of a passed frame are checked twice: field by field against the header bytes
//! here, and as a whole against `ustack_fuzz::reference::facts`, so a TCP, UDP or ICMP error
//! frame never passes as `Facts::Other` either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack::ingress::{
    classify, classify_with, DropReason, Facts, IcmpError, TcpInfo, UdpInfo, Unreachable, Verdict,
};
use ustack::smoltcp::phy::ChecksumCapabilities;
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv6Address};
use ustack_fuzz::reference;

const ETH: usize = 14;

fn check(frame: &[u8], max_len: usize) {
    let strict = classify(frame, max_len);
    let lax = classify_with(frame, max_len, &ChecksumCapabilities::ignored());

    for v in [strict, lax] {
        if let Verdict::Pass(facts) = v {
            assert!(frame.len() >= ETH, "Pass for a {}-byte frame", frame.len());
            assert!(
                frame.len() <= max_len,
                "Pass for a {}-byte frame over max_len {max_len}",
                frame.len()
            );
            let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
            assert!(
                matches!(ethertype, 0x0800 | 0x86dd | 0x0806),
                "Pass for EtherType {ethertype:#06x}"
            );
            match facts {
                Facts::Other => {}
                Facts::Tcp(t) => check_tcp(frame, ethertype, &t),
                Facts::Udp(u) => check_udp(frame, ethertype, &u),
                Facts::IcmpError(e) => check_icmp(frame, ethertype, &e),
            }
            assert_eq!(facts, reference::facts(frame), "facts of a passed frame");
        }
    }

    // Length limits do not depend on checksums.
    if frame.len() < ETH {
        assert_eq!(strict, Verdict::Drop(DropReason::Truncated));
    } else if frame.len() > max_len {
        assert_eq!(strict, Verdict::Drop(DropReason::Oversize));
    }

    // Checksum verification can only turn a Pass into a BadChecksum drop.
    match (strict, lax) {
        (a, b) if a == b => {}
        (Verdict::Drop(DropReason::BadChecksum), Verdict::Pass(_)) => {}
        (Verdict::Drop(DropReason::BadChecksum), Verdict::Drop(_)) => {}
        (a, b) => panic!("checksum-ignoring verdict {b:?} differs from the strict one {a:?}"),
    }
}

/// The transport payload of a passed IP frame, its protocol, and the source address.
fn l4(frame: &[u8], ethertype: u16) -> (&[u8], u8, IpAddress) {
    let ip = &frame[ETH..];
    match ethertype {
        0x0800 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert!(ihl >= 20 && total >= ihl && total <= ip.len());
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            assert_eq!(frag & 0x3fff, 0, "transport facts for an IPv4 fragment");
            let src = Ipv4Address::new(ip[12], ip[13], ip[14], ip[15]);
            (&ip[ihl..total], ip[9], IpAddress::Ipv4(src))
        }
        0x86dd => {
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert!(40 + len <= ip.len());
            let src: [u8; 16] = ip[8..24].try_into().unwrap();
            (
                &ip[40..40 + len],
                ip[6],
                IpAddress::Ipv6(Ipv6Address::from(src)),
            )
        }
        _ => panic!("transport facts for an ARP frame"),
    }
}

fn port(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// TCP facts must come from a TCP header inside the IP packet, at the right offsets.
fn check_tcp(frame: &[u8], ethertype: u16, t: &TcpInfo) {
    let (l4, proto, src) = l4(frame, ethertype);
    assert_eq!(proto, 6, "TCP facts for IP protocol {proto}");
    assert!(l4.len() >= 20);
    let data_offset = usize::from(l4[12] >> 4) * 4;
    assert!(data_offset >= 20 && data_offset <= l4.len());
    assert_eq!(t.src, src);
    assert_eq!(t.src_port, port(l4, 0));
    assert_eq!(t.dst_port, port(l4, 2));
    let flags = l4[13];
    let (syn, ack, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
    assert_eq!(t.syn, syn && !ack);
    assert_eq!(t.syn_ack, syn && ack);
    assert_eq!(t.rst, rst);
}

/// UDP facts only for protocol 17 with a whole UDP header, and its sender and ports.
fn check_udp(frame: &[u8], ethertype: u16, u: &UdpInfo) {
    let (l4, proto, src) = l4(frame, ethertype);
    assert_eq!(proto, 17, "UDP facts for IP protocol {proto}");
    assert!(l4.len() >= 8);
    let declared = usize::from(port(l4, 4));
    assert!(
        declared >= 8 && declared <= l4.len(),
        "UDP length {declared}"
    );
    assert_eq!(u.src, IpEndpoint::new(src, port(l4, 0)));
    assert_eq!(u.dst_port, port(l4, 2));
}

/// ICMP error facts only for a destination-unreachable (ICMPv4 type 3 but not code 4,
/// ICMPv6 type 1) quoting a UDP header, with the quote's addresses and ports.
fn check_icmp(frame: &[u8], ethertype: u16, e: &IcmpError) {
    let (msg, proto, _) = l4(frame, ethertype);
    assert!(msg.len() >= 8);
    let (ty, code) = (msg[0], msg[1]);
    let q = &msg[8..];
    let (local, remote, udp) = if ethertype == 0x0800 {
        assert_eq!(proto, 1, "ICMPv4 error facts for IP protocol {proto}");
        assert!(
            ty == 3 && code != 4,
            "ICMPv4 error facts for type {ty} code {code}"
        );
        assert_eq!(e.kind == Unreachable::Port, code == 3);
        assert!(q.len() >= 20 && q[0] >> 4 == 4 && q[9] == 17);
        assert_eq!(
            port(q, 6) & 0x1fff,
            0,
            "a later fragment quotes no UDP header"
        );
        let ihl = usize::from(q[0] & 0x0f) * 4;
        assert!(ihl >= 20 && q.len() >= ihl + 4);
        let a =
            |at: usize| IpAddress::Ipv4(Ipv4Address::new(q[at], q[at + 1], q[at + 2], q[at + 3]));
        (a(12), a(16), &q[ihl..])
    } else {
        assert_eq!(proto, 58, "ICMPv6 error facts for next header {proto}");
        assert_eq!(ty, 1, "ICMPv6 error facts for type {ty}");
        assert_eq!(e.kind == Unreachable::Port, code == 4);
        assert!(q.len() >= 44 && q[0] >> 4 == 6 && q[6] == 17);
        let a = |at: usize| {
            let o: [u8; 16] = q[at..at + 16].try_into().unwrap();
            IpAddress::Ipv6(Ipv6Address::from(o))
        };
        (a(8), a(24), &q[40..])
    };
    assert_eq!(e.local, IpEndpoint::new(local, port(udp, 0)));
    assert_eq!(e.remote, IpEndpoint::new(remote, port(udp, 2)));
}

fuzz_target!(|data: &[u8]| {
    check(data, 1514);
    if data.len() >= 2 {
        let max_len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        check(&data[2..], max_len);
    }
});
