//! `ustack::ingress::classify` on arbitrary bytes: it must never panic, and its verdicts must
//! be consistent with the frame it was given.
//!
//! The whole input is classified against a 1514-byte MTU; the input minus its first two
//! bytes is classified again against the MTU those two bytes name (so tiny and huge limits
//! get exercised too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack::ingress::{classify, classify_with, DropReason, TcpInfo, Verdict};
use ustack::smoltcp::phy::ChecksumCapabilities;

const ETH: usize = 14;

fn check(frame: &[u8], max_len: usize) {
    let strict = classify(frame, max_len);
    let lax = classify_with(frame, max_len, &ChecksumCapabilities::ignored());

    for v in [strict, lax] {
        if let Verdict::Pass { tcp } = v {
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
            if let Some(t) = tcp {
                check_tcp(frame, ethertype, &t);
            }
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
        (Verdict::Drop(DropReason::BadChecksum), Verdict::Pass { .. }) => {}
        (Verdict::Drop(DropReason::BadChecksum), Verdict::Drop(_)) => {}
        (a, b) => panic!("checksum-ignoring verdict {b:?} differs from the strict one {a:?}"),
    }
}

/// TCP facts must come from a TCP header inside the IP packet, at the right offsets.
fn check_tcp(frame: &[u8], ethertype: u16, t: &TcpInfo) {
    let ip = &frame[ETH..];
    let (l4, proto) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert!(ihl >= 20 && total >= ihl && total <= ip.len());
            (&ip[ihl..total], ip[9])
        }
        0x86dd => {
            let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert!(40 + len <= ip.len());
            (&ip[40..40 + len], ip[6])
        }
        _ => panic!("TCP facts for an ARP frame"),
    };
    assert_eq!(proto, 6, "TCP facts for IP protocol {proto}");
    assert!(l4.len() >= 20);
    let data_offset = usize::from(l4[12] >> 4) * 4;
    assert!(data_offset >= 20 && data_offset <= l4.len());
    assert_eq!(t.src_port, u16::from_be_bytes([l4[0], l4[1]]));
    assert_eq!(t.dst_port, u16::from_be_bytes([l4[2], l4[3]]));
    let flags = l4[13];
    let (syn, ack, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
    assert_eq!(t.syn, syn && !ack);
    assert_eq!(t.syn_ack, syn && ack);
    assert_eq!(t.rst, rst);
}

fuzz_target!(|data: &[u8]| {
    check(data, 1514);
    if data.len() >= 2 {
        let max_len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        check(&data[2..], max_len);
    }
});
