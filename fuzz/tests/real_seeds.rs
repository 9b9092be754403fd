//! The seeds split from real traffic (`real_*`, written by `examples/split_pcap_seeds.rs`
//! from the captures of `seeds/regen_pcap.sh` and `seeds/regen_ws.sh`) do in their targets
//! what they were recorded for: frames classify, the harness conversation reaches the
//! application with the recorded sequence numbers, session streams decode into whole
//! packages along the recorded segments, the rewritten ICMP errors match and the recorded
//! ones do not, compressed messages inflate. Every seed directory stays under 1 MiB.

use std::fs;
use std::path::PathBuf;

use ustack::ingress::{classify, Verdict};
use ustack::session::codec::{Codec, CodecError, Decoded, LengthPrefixed, Lines};
use ustack::ws::deflate::Deflate;
use ustack::ws::Role;
use ustack::Error;
use ustack_fuzz::seeds::{self, deflate_params};
use ustack_fuzz::{reference, Harness, MTU, OUR_MAC};

fn seeds_dir() -> PathBuf {
    seeds::dir("")
}

/// The `real_*` seeds of `target`, by name; at least one.
fn real(target: &str) -> Vec<(String, Vec<u8>)> {
    let out: Vec<_> = seeds::all(target)
        .into_iter()
        .filter(|(name, _)| name.starts_with("real_"))
        .collect();
    assert!(!out.is_empty(), "no real_* seeds for {target}");
    out
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    fs::read(seeds_dir().join(target).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The frames of a `PcapRecorder` capture (native byte order, microseconds).
fn pcap_frames(name: &str) -> Vec<Vec<u8>> {
    let file = seed("pcap_replay", name);
    assert_eq!(file[..4], 0xa1b2_c3d4u32.to_ne_bytes(), "{name}");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let len = u32::from_ne_bytes(file[at + 8..at + 12].try_into().expect("4")) as usize;
        out.push(file[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    out
}

/// The TCP header of an IPv4 or IPv6 frame, if it carries TCP.
fn tcp(frame: &[u8]) -> Option<&[u8]> {
    match frame.get(12..14)? {
        [0x08, 0x00] if frame.get(23) == Some(&6) => {
            frame.get(14 + usize::from(frame[14] & 0x0f) * 4..)
        }
        [0x86, 0xdd] if frame.get(20) == Some(&6) => frame.get(54..),
        _ => None,
    }
}

/// The sequence numbers of the SYN-ACKs among `frames`.
fn synacks<'a>(frames: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u32> {
    frames
        .filter_map(|f| tcp(f))
        .filter(|t| t.len() >= 20 && t[13] & 0x12 == 0x12)
        .map(|t| u32::from_be_bytes([t[4], t[5], t[6], t[7]]))
        .collect()
}

#[test]
fn real_frames_classify_as_the_reference_reads_them() {
    let seeds = real("ingress_classify");
    assert!(seeds.len() >= 20, "only {} real frames", seeds.len());
    for (name, frame) in seeds {
        match classify(&frame, MTU) {
            Verdict::Pass(facts) => assert_eq!(facts, reference::facts(&frame), "{name}"),
            v => panic!("{name}: {v:?}"),
        }
        assert_eq!(
            frame[6..12] == OUR_MAC.0,
            name.ends_with("_out"),
            "{name}: direction"
        );
    }
}

/// The recording stack of `real_harness.pcap` was built like `Harness`, so it drew the
/// same initial sequence numbers: the kernel's acknowledgments fit, and every byte the
/// kernel sent reaches the harness's application.
#[test]
fn real_harness_conversation_replays_exactly() {
    let data = seed("stack_ingress", "real_harness_passive_conversation");
    let mut h = Harness::new(true);
    h.run(&data);
    let st = h.stack.stats();
    assert_eq!(st.rx_dropped(), 0, "{st:?}");
    let kernel: Vec<_> = pcap_frames("real_harness.pcap")
        .into_iter()
        .filter(|f| f[6..12] != OUR_MAC.0)
        .collect();
    assert_eq!(ustack_fuzz::records(&data).count(), kernel.len());
    let sent_data: usize = kernel
        .iter()
        .filter_map(|f| tcp(f))
        .filter(|t| t[2..4] == [0, 7])
        .map(|t| t.len() - usize::from(t[12] >> 4) * 4)
        .sum();
    assert!(sent_data > 0);
    assert_eq!(h.tcp_read, sent_data, "{st:?}");
    assert_eq!(st.tcp_accepted, 2, "{st:?}");
    assert_eq!(h.udp_read, 1, "{st:?}");
    // The same SYN-ACKs as on the real link, and no RST from the listener's connections.
    let recorded = pcap_frames("real_harness.pcap");
    let ours = recorded.iter().filter(|f| f[6..12] == OUR_MAC.0);
    let sent = &h.stack.device().sent;
    assert_eq!(synacks(sent.iter()), synacks(ours));
    assert!(
        !sent
            .iter()
            .filter_map(|f| tcp(f))
            .any(|t| t[..2] == [0, 7] && t[13] & 0x04 != 0),
        "the harness reset a recorded connection"
    );
}

#[test]
fn real_ping_and_datagrams_reach_the_harness() {
    let mut h = Harness::new(true);
    h.run(&seed("stack_ingress", "real_udp_datagrams"));
    assert_eq!(h.udp_read, 3);
    let mut h = Harness::new(true);
    h.run(&seed("stack_ingress", "real_ping"));
    let replies = h.stack.device().sent.iter();
    let replies =
        replies.filter(|f| f.len() > 34 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0);
    assert_eq!(replies.count(), 3, "echo replies");
    for (name, data) in real("stack_ingress") {
        let mut h = Harness::new(false);
        h.run(&data);
        assert_eq!(h.stack.stats().rx_dropped(), 0, "{name}");
    }
}

/// Decodes `chunks` one after the other; returns the packages and what is left.
fn decode<C>(mut codec: C, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, usize)
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for c in chunks {
        buf.extend_from_slice(c);
        while let Decoded::Packet(p, used) = codec.decode(&buf).expect("decode") {
            out.push(p.to_vec());
            buf.drain(..used);
        }
    }
    (out, buf.len())
}

fn decode_as(codec: u8, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, usize) {
    match codec % 5 {
        0 => decode(LengthPrefixed::U16_BE, chunks),
        1 => decode(LengthPrefixed::U16_LE, chunks),
        2 => decode(LengthPrefixed::U32_BE, chunks),
        3 => decode(LengthPrefixed::U32_LE, chunks),
        _ => decode(Lines::new(), chunks),
    }
}

/// Cuts `stream` into pieces of `lens` (repeated), as the session targets do.
fn cut<'a>(stream: &'a [u8], lens: &[usize]) -> Vec<&'a [u8]> {
    let (mut out, mut at) = (Vec::new(), 0);
    for &n in lens.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let n = n.min(stream.len() - at);
        out.push(&stream[at..at + n]);
        at += n;
    }
    out
}

#[test]
fn real_session_codec_streams_decode_into_whole_packages() {
    let seeds = real("session_codec");
    assert_eq!(seeds.len(), 5, "one per codec");
    for (name, data) in seeds {
        let [codec, n, rest @ ..] = &data[..] else {
            panic!("{name}: short")
        };
        let (cuts, stream) = rest.split_at(usize::from(*n));
        let lens: Vec<usize> = cuts.iter().map(|&c| usize::from(c.max(1))).collect();
        assert!(lens.len() > 3, "{name}: {} segments", lens.len());
        let (whole, left) = decode_as(*codec, &[stream]);
        assert!(
            whole.len() >= 5 && left == 0,
            "{name}: {} packages, {left} left",
            whole.len()
        );
        assert_eq!(decode_as(*codec, &cut(stream, &lens)), (whole, 0), "{name}");
    }
}

#[test]
fn real_session_engine_streams_are_whole_packages_in_recorded_segments() {
    for (name, data) in real("session_engine") {
        let [codec, hi, lo, flags, n, rest @ ..] = &data[..] else {
            panic!("{name}: short")
        };
        let max = 1 + usize::from(u16::from_be_bytes([*hi, *lo])) % 4096;
        assert_eq!(max, 4096, "{name}");
        assert_eq!(flags & 1, 1, "{name}: the client closed its side");
        let (chunks, stream) = rest.split_at(usize::from(*n));
        assert!(
            stream.len() <= 8 * 1024,
            "{name}: the target cuts the stream"
        );
        let lens: Vec<usize> = chunks
            .iter()
            .map(|&c| match c {
                0 => 1,
                1..=0x7f => usize::from(c),
                _ => (usize::from(c & 0x7f) + 1) * 32,
            })
            .collect();
        // The chunks are the recorded segments, once through.
        assert_eq!(lens.iter().sum::<usize>(), stream.len(), "{name}");
        let (pkgs, left) = decode_as(*codec, &[stream]);
        assert!(
            pkgs.len() >= 5 && left == 0,
            "{name}: {} packages, {left} left",
            pkgs.len()
        );
        assert!(
            pkgs.iter().all(|p| p.len() <= max),
            "{name}: over max_msg_len"
        );
        assert_eq!(decode_as(*codec, &cut(stream, &lens)), (pkgs, 0), "{name}");
    }
}

#[test]
fn real_icmp_errors_match_only_when_rewritten() {
    let seeds = real("udp_icmp");
    assert_eq!(seeds.len(), 4, "v4 and v6, match and nomatch");
    for (name, data) in seeds {
        let report = ustack_fuzz::udp_icmp::run(&data);
        let socket = if name.contains("_v6_") { 1 } else { 0 };
        if name.starts_with("real_match_") {
            assert_eq!(report.delivered, 1, "{name}: {report:?}");
            assert_eq!(
                report.taken,
                vec![(socket, Error::ConnectionRefused)],
                "{name}"
            );
        } else {
            assert!(name.starts_with("real_nomatch_"), "{name}");
            assert_eq!((report.delivered, report.taken.len()), (0, 0), "{name}");
        }
    }
}

/// Inflates a `ws_deflate` seed's data as one message, as the target's receiver does.
fn inflate(name: &str, data: &[u8]) -> Vec<u8> {
    let [d, cfg, limit, msg @ ..] = data else {
        panic!("{name}: short")
    };
    assert_eq!(limit & 3, 0, "{name}: 64 KiB limit");
    let recv = if cfg & 0x10 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let mut out = Vec::new();
    Deflate::new(deflate_params(*d), recv, 6)
        .decompress(msg, true, &mut out, 64 << 10)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    out
}

#[test]
fn real_compressed_messages_inflate() {
    let seeds = real("ws_deflate");
    for (name, data) in &seeds {
        let out = inflate(name, data);
        if name.ends_with("_all") {
            // The joined messages inflate to the messages one after the other: check
            // against the single ones where all of them are seeds (no context takeover).
            let base = name.trim_end_matches("all");
            let singles: Vec<_> = seeds
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("{base}msg")))
                .collect();
            let mut want = Vec::new();
            for i in 0.. {
                let Some((n, d)) = singles.iter().find(|(n, _)| *n == format!("{base}msg{i}"))
                else {
                    break;
                };
                want.extend(inflate(n, d));
            }
            assert!(out.len() > want.len() || out == want, "{name}");
            if singles.len() > 1 {
                assert_eq!(out, want, "{name}");
            }
        }
    }
    assert!(seeds.iter().any(|(n, _)| n.ends_with("_all")));
}

#[test]
fn seed_directories_stay_under_one_mib() {
    for e in fs::read_dir(seeds_dir()).expect("seeds") {
        let dir = e.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let total: u64 = fs::read_dir(&dir)
            .expect("seed dir")
            .map(|f| f.expect("entry").metadata().expect("metadata").len())
            .sum();
        assert!(total < 1 << 20, "{}: {total} bytes", dir.display());
    }
}
