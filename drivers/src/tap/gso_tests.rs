//! The merge rules of [`Coalescer`], with frames built by `smoltcp::wire`.

use super::*;
use crate::csum;
use crate::tap::vnet::Header;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetRepr, IpAddress, Ipv4Address, Ipv4Repr, Ipv6Address, Ipv6Repr,
    TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

const MSS: usize = 1448;
const SRC4: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);
const DST4: Ipv4Address = Ipv4Address::new(10, 7, 0, 1);
const SRC6: Ipv6Address = Ipv6Address::new(0xfd00, 7, 0, 0, 0, 0, 0, 2);
const DST6: Ipv6Address = Ipv6Address::new(0xfd00, 7, 0, 0, 0, 0, 0, 1);

/// What a segment looks like; `Default` is a full-sized data segment with timestamps.
#[derive(Clone, Copy)]
struct Spec {
    v6: bool,
    seq: u32,
    len: usize,
    control: TcpControl,
    ack: bool,
    src_port: u16,
    tsval: u32,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            v6: false,
            seq: 1000,
            len: MSS,
            control: TcpControl::None,
            ack: true,
            src_port: 49_152,
            tsval: 7,
        }
    }
}

fn payload_byte(seq: u32) -> u8 {
    (seq % 251) as u8
}

/// An Ethernet frame with a TCP segment as smoltcp emits it, checksums filled in.
fn tcp(s: Spec) -> Vec<u8> {
    let payload: Vec<u8> = (0..s.len as u32).map(|i| payload_byte(s.seq + i)).collect();
    let repr = TcpRepr {
        src_port: s.src_port,
        dst_port: 5001,
        control: s.control,
        seq_number: TcpSeqNumber(s.seq as i32),
        ack_number: s.ack.then_some(TcpSeqNumber(99)),
        window_len: 4096,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(s.tsval, 3)),
        payload: &payload,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        ethertype: if s.v6 {
            EthernetProtocol::Ipv6
        } else {
            EthernetProtocol::Ipv4
        },
    };
    let caps = ChecksumCapabilities::default();
    let ip_header = if s.v6 { IPV6_HEADER } else { IPV4_HEADER };
    let mut f = vec![0u8; ETH_HEADER + ip_header + repr.buffer_len()];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    let (src, dst) = if s.v6 {
        let ip = Ipv6Repr {
            src_addr: SRC6,
            dst_addr: DST6,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[ETH_HEADER..]));
        (IpAddress::Ipv6(SRC6), IpAddress::Ipv6(DST6))
    } else {
        let ip = Ipv4Repr {
            src_addr: SRC4,
            dst_addr: DST4,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[ETH_HEADER..]), &caps);
        (IpAddress::Ipv4(SRC4), IpAddress::Ipv4(DST4))
    };
    let at = ETH_HEADER + ip_header;
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut f[at..]),
        &src,
        &dst,
        &caps,
    );
    f
}

fn arp() -> Vec<u8> {
    let mut f = vec![0xffu8; 42];
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f
}

/// One written frame: its virtio header, the frame, and how many segments it carries.
struct Out {
    hdr: Header,
    frame: Vec<u8>,
    segs: u64,
}

/// Pushes `frames` through a coalescer as the device does, then flushes; returns what was
/// written, in order.
fn run(frames: &[Vec<u8>]) -> Vec<Out> {
    let mut co = Coalescer::new(true);
    let mut written = Vec::new();
    let mut record = |done: Finished<'_>| {
        written.push(Out {
            hdr: Header::parse(done.out).unwrap(),
            frame: done.out[vnet::LEN..].to_vec(),
            segs: done.segs,
        })
    };
    for f in frames {
        let mut out = vec![0u8; vnet::LEN];
        out.extend_from_slice(f);
        co.push(&mut out, Instant::ZERO, &mut record);
    }
    if let Some(done) = co.finish() {
        record(done);
    }
    assert!(co.finish().is_none(), "finish empties the coalescer");
    written
}

/// The TCP sequence number of any TCP frame, `u32::MAX` for other frames.
fn seq_of(frame: &[u8]) -> u32 {
    csum::locate_l4(frame)
        .and_then(|l4| TcpPacket::new_checked(&frame[l4.start..]).ok())
        .map_or(u32::MAX, |t| t.seq_number().0 as u32)
}

fn full_run(v6: bool, count: usize, last: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = if i + 1 == count { last } else { MSS };
            tcp(Spec {
                v6,
                seq: 1000 + (i * MSS) as u32,
                len,
                control: if i + 1 == count {
                    TcpControl::Psh
                } else {
                    TcpControl::None
                },
                ..Spec::default()
            })
        })
        .collect()
}

#[test]
fn consecutive_segments_become_one_gso_frame_the_kernel_accepts() {
    for v6 in [false, true] {
        let frames = full_run(v6, 6, 300);
        let out = run(&frames);
        assert_eq!(out.len(), 1, "v6 {v6}");
        let o = &out[0];
        let ip_header = if v6 { IPV6_HEADER } else { IPV4_HEADER };
        let hdr_len = ETH_HEADER + ip_header + 32; // TCP with the timestamp option
        assert_eq!(o.segs, 6);
        assert_eq!(
            o.hdr,
            Header {
                flags: 1,
                gso_type: if v6 { 4 } else { 1 },
                hdr_len: hdr_len as u16,
                gso_size: MSS as u16,
                csum_start: (ETH_HEADER + ip_header) as u16,
                csum_offset: 16,
            }
        );
        assert_eq!(o.frame.len(), hdr_len + 5 * MSS + 300);
        // The payload is the segments' payloads back to back.
        let want: Vec<u8> = (0..(5 * MSS + 300) as u32)
            .map(|i| payload_byte(1000 + i))
            .collect();
        assert_eq!(&o.frame[hdr_len..], &want[..]);
        let seg = classify(&o.frame).expect("the merged frame is a valid TCP segment");
        assert_eq!((seg.seq, seg.psh, seg.end), (1000, true, o.frame.len()));
        if !v6 {
            let ip = Ipv4Packet::new_checked(&o.frame[ETH_HEADER..]).unwrap();
            assert!(
                ip.verify_checksum(),
                "IPv4 header checksum for the merged length"
            );
        }
        // The field holds the pseudo-header sum for the merged length: completing it the way
        // the kernel does gives the checksum of the whole segment.
        let l4 = csum::locate_l4(&o.frame).unwrap();
        let at = l4.start + l4.csum_offset;
        assert_eq!(
            u16::from_be_bytes([o.frame[at], o.frame[at + 1]]),
            l4.pseudo
        );
        let mut done = o.frame.clone();
        assert!(csum::complete_at(&mut done, l4.start, l4.csum_offset));
        let (src, dst) = if v6 {
            (IpAddress::Ipv6(SRC6), IpAddress::Ipv6(DST6))
        } else {
            (IpAddress::Ipv4(SRC4), IpAddress::Ipv4(DST4))
        };
        assert!(TcpPacket::new_checked(&done[l4.start..])
            .unwrap()
            .verify_checksum(&src, &dst));
    }
}

#[test]
fn a_lone_segment_leaves_as_a_plain_frame_with_checksum_offload() {
    let f = tcp(Spec::default());
    let out = run(std::slice::from_ref(&f));
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].hdr.gso_type, out[0].hdr.flags, out[0].segs),
        (0, 1, 1)
    );
    assert_eq!(out[0].frame.len(), f.len());
}

#[test]
fn tiny_segments_merge_too() {
    for v6 in [false, true] {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                tcp(Spec {
                    v6,
                    seq: 1000 + i,
                    len: 1,
                    ..Spec::default()
                })
            })
            .collect();
        let out = run(&frames[..1]);
        assert_eq!((out.len(), out[0].segs, out[0].hdr.gso_type), (1, 1, 0));
        let out = run(&frames);
        assert_eq!((out.len(), out[0].segs, out[0].hdr.gso_size), (1, 3, 1));
    }
}

#[test]
fn super_frames_stay_within_64_kib() {
    let frames = full_run(false, 60, MSS);
    let out = run(&frames);
    // 45 segments of 1448 bytes and 52 bytes of IP and TCP header fill 65,212 bytes.
    let segs: Vec<u64> = out.iter().map(|o| o.segs).collect();
    assert_eq!(segs, [45, 15]);
    for o in &out {
        assert!(o.frame.len() - ETH_HEADER <= GSO_MAX_IP);
    }
    assert_eq!(seq_of(&out[1].frame), 1000 + (45 * MSS) as u32);
}

#[test]
fn what_does_not_continue_the_flow_is_not_merged_and_order_is_kept() {
    let base = Spec::default();
    let next = |n: usize| 1000 + (n * MSS) as u32;
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "sequence gap",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1) + 1,
                    ..base
                }),
            ],
        ),
        (
            "other flow",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1),
                    src_port: 1,
                    ..base
                }),
            ],
        ),
        (
            "other options",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1),
                    tsval: 8,
                    ..base
                }),
            ],
        ),
        (
            "other IP version",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1),
                    v6: true,
                    ..base
                }),
            ],
        ),
        (
            "larger after a short one",
            vec![
                tcp(Spec { len: 100, ..base }),
                tcp(Spec { seq: 1100, ..base }),
            ],
        ),
        (
            "after PSH",
            vec![
                tcp(Spec {
                    control: TcpControl::Psh,
                    ..base
                }),
                tcp(Spec {
                    seq: next(1),
                    ..base
                }),
            ],
        ),
        (
            "FIN",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1),
                    control: TcpControl::Fin,
                    ..base
                }),
            ],
        ),
        (
            "SYN",
            vec![
                tcp(Spec {
                    control: TcpControl::Syn,
                    len: 0,
                    ..base
                }),
                tcp(Spec { seq: 1001, ..base }),
            ],
        ),
        (
            "no ACK",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1),
                    ack: false,
                    ..base
                }),
            ],
        ),
        (
            "pure ACK",
            vec![
                tcp(base),
                tcp(Spec {
                    seq: next(1),
                    len: 0,
                    ..base
                }),
            ],
        ),
        (
            "ARP in between",
            vec![
                tcp(base),
                arp(),
                tcp(Spec {
                    seq: next(1),
                    ..base
                }),
            ],
        ),
    ];
    for (what, frames) in cases {
        let out = run(&frames);
        assert_eq!(out.len(), frames.len(), "{what}: nothing merged");
        for (o, f) in out.iter().zip(&frames) {
            assert_eq!(o.segs, 1, "{what}");
            assert_eq!(o.hdr.gso_type, 0, "{what}");
            // Same frame, in the same place, apart from the partial checksum.
            assert_eq!(o.frame.len(), f.len(), "{what}");
            assert_eq!(seq_of(&o.frame), seq_of(f), "{what}: order");
        }
    }
}

#[test]
fn mixed_traffic_keeps_its_order_around_merged_runs() {
    let mut frames = full_run(false, 3, MSS);
    frames.push(arp());
    frames.extend(full_run(true, 4, 10));
    frames.push(tcp(Spec {
        seq: 5,
        len: 0,
        ..Spec::default()
    }));
    let out = run(&frames);
    let kinds: Vec<(u64, u8, u32)> = out
        .iter()
        .map(|o| (o.segs, o.hdr.gso_type, seq_of(&o.frame)))
        .collect();
    assert_eq!(
        kinds,
        [(3, 1, 1000), (1, 0, u32::MAX), (4, 4, 1000), (1, 0, 5)]
    );
}

#[test]
fn broken_and_random_frames_never_panic_and_are_passed_on() {
    let good = tcp(Spec::default());
    let mut frames: Vec<Vec<u8>> = (0..good.len().min(90))
        .map(|n| good[..n].to_vec())
        .collect();
    let mut rng = 0x9e37_79b9_u64;
    for _ in 0..500 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut f = good.clone();
        let at = (rng as usize) % f.len();
        f[at] = (rng >> 32) as u8;
        frames.push(f);
    }
    let out = run(&frames);
    let segs: u64 = out.iter().map(|o| o.segs).sum();
    assert_eq!(
        segs,
        frames.len() as u64,
        "every frame leaves, merged or not"
    );
}

#[test]
fn a_disabled_coalescer_allocates_nothing() {
    assert_eq!(Coalescer::new(false).buf.capacity(), 0);
    assert!(Coalescer::new(false).since().is_none());
}
