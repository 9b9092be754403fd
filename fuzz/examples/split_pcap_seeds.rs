//! Splits the recorded captures into `real_*` seeds for the other targets. No root needed:
//! it reads `seeds/pcap_replay/real_*.pcap` (recorded by `gen_pcap_seeds`, see
//! `seeds/regen_pcap.sh`) and `seeds/ws_frames/real_*` (recorded by `seeds/regen_ws.sh`).
//!
//! ```sh
//! cd fuzz && cargo run --example split_pcap_seeds             # into seeds/
//! cd fuzz && cargo run --example split_pcap_seeds -- --out DIR
//! ```
//!
//! Frames whose source MAC is the stack's (02:00:00:00:00:01) are the stack's; every other
//! frame came from the kernel. What each target gets:
//!
//! - `ingress_classify`: one frame of each kind (protocol, TCP flags, ICMP type, direction)
//!   of all captures, first seen first, each passing `classify`;
//! - `stack_ingress`: the kernel's frames of `real_harness`, `real_ping` and `real_udp_echo`
//!   as records, each with the clock step (the largest of `ustack_fuzz::STEPS` not over the
//!   gap since the kernel's previous frame) and, for a datagram to port 7 in `real_harness`,
//!   `UDP_SEND` (the recording stack answered it as the harness does);
//! - `session_codec` and `session_engine`: the client's byte stream of each connection of
//!   `real_session` (reassembled by sequence number), with the TCP segments as the chunks;
//! - `udp_icmp`: the kernel's ICMPv4 and ICMPv6 port unreachable of `real_udp_unreachable`
//!   as raw-frame ops, once with the quoted ports rewritten to socket A's (4000 to 9000) and
//!   A6's (4006 to 9006), checksums filled in, so that they match (`real_match_*`), and once
//!   as recorded, from ports 4123 and 4124 to 9999, so that they do not (`real_nomatch_*`);
//! - `ws_deflate`: the compressed messages (RSV1, fragments joined, unmasked) of the
//!   permessage-deflate `ws_frames` real seeds, with their negotiated parameters: each one
//!   that inflates on its own (the first, or all without the sender's context takeover),
//!   and all of one direction joined by the `00 00 ff ff` each message's end dropped, which
//!   inflates as one message.
//!
//! Old `real_*` seeds of these targets are removed first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use ustack::ingress::{classify, Verdict};
use ustack::smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet, IpAddress, Ipv4Address,
    Ipv6Address, UdpPacket,
};
use ustack_fuzz::udp_icmp::{self, Body, Op, PEER_PORT, PEER_PORT6, PORT_A, PORT_A6};
use ustack_fuzz::{ctl, MTU, OUR_MAC, STEPS};

/// The session servers' first port; `port - SESSION_PORT` is the codec index of both
/// session targets (U16 BE, U16 LE, U32 BE, U32 LE, lines).
const SESSION_PORT: u16 = 9000;
const CODECS: [&str; 5] = ["u16_be", "u16_le", "u32_be", "u32_le", "lines"];
/// At most this many `ingress_classify` seeds.
const MAX_CLASSIFY: usize = 48;

/// One captured frame.
struct Pkt {
    /// Capture time, in microseconds.
    at: u64,
    frame: Vec<u8>,
    /// Sent by the stack (rather than by the kernel).
    ours: bool,
}

fn read_pcap(path: &Path) -> Vec<Pkt> {
    ustack_fuzz::seeds::pcap_frames(path)
        .into_iter()
        .map(|(at, frame)| Pkt {
            at,
            ours: frame.len() >= 12 && frame[6..12] == OUR_MAC.0,
            frame,
        })
        .collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::write(dir.join(name), data).expect("write seed");
    let target = dir.file_name().unwrap_or_default().to_string_lossy();
    println!("  {target}/{name} ({} bytes)", data.len());
}

/// Removes the `real_*` seeds of `dir`, so a regeneration leaves no stale ones.
fn clear(dir: &Path) {
    fs::create_dir_all(dir).expect("seed dir");
    for e in fs::read_dir(dir).expect("read seed dir") {
        let p = e.expect("dir entry").path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("real_"))
        {
            fs::remove_file(&p).expect("remove old seed");
        }
    }
}

/// The IP header (version-independent view) of an Ethernet frame: protocol, payload.
fn l4(frame: &[u8]) -> Option<(u8, bool, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = &frame[14..];
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            Some((*ip.get(9)?, false, ip.get(ihl..)?))
        }
        EthernetProtocol::Ipv6 => Some((*ip.get(6)?, true, ip.get(40..)?)),
        _ => None,
    }
}

/// What kind of frame this is, as a seed name: `arp_reply_in`, `tcp4_synack_out`, ...
fn kind(p: &Pkt) -> String {
    let dir = if p.ours { "out" } else { "in" };
    let f = &p.frame;
    if f.len() >= 22 && f[12..14] == [0x08, 0x06] {
        let op = if f[21] == 1 { "request" } else { "reply" };
        return format!("arp_{op}_{dir}");
    }
    let Some((proto, v6, body)) = l4(f) else {
        return format!("other_{dir}");
    };
    let v = if v6 { 6 } else { 4 };
    let what = match proto {
        6 if body.len() >= 20 => {
            let fl = body[13];
            let data = body.len() > usize::from(body[12] >> 4) * 4;
            let name = match (fl & 0x02 != 0, fl & 0x04 != 0, fl & 0x01 != 0) {
                (true, _, _) if fl & 0x10 != 0 => "synack",
                (true, _, _) => "syn",
                (_, true, _) => "rst",
                (_, _, true) => "fin",
                _ if data => "data",
                _ => "ack",
            };
            format!("tcp{v}_{name}")
        }
        17 => format!("udp{v}"),
        1 if !v6 => match body.first() {
            Some(0) => "icmp4_echo_reply".into(),
            Some(8) => "icmp4_echo_request".into(),
            Some(3) => "icmp4_unreachable".into(),
            t => format!("icmp4_type{}", t.copied().unwrap_or(0)),
        },
        58 => match body.first() {
            Some(1) => "icmp6_unreachable".into(),
            Some(128) => "icmp6_echo_request".into(),
            Some(129) => "icmp6_echo_reply".into(),
            Some(135) => "ndisc_solicit".into(),
            Some(136) => "ndisc_advert".into(),
            t => format!("icmp6_type{}", t.copied().unwrap_or(0)),
        },
        // Hop-by-hop options: the kernel's MLD reports.
        0 if v6 => "ip6_hop_by_hop".into(),
        p => format!("ip{v}_proto{p}"),
    };
    format!("{what}_{dir}")
}

/// `ingress_classify`: one frame of each kind, both directions, all captures.
fn classify_seeds(pcaps: &[(String, Vec<Pkt>)], dir: &Path) {
    println!("ingress_classify:");
    clear(dir);
    let (mut kinds, mut seen) = (BTreeSet::new(), BTreeSet::new());
    for (_, pkts) in pcaps {
        for p in pkts {
            if kinds.len() >= MAX_CLASSIFY || !seen.insert(p.frame.clone()) {
                continue;
            }
            if !matches!(classify(&p.frame, MTU), Verdict::Pass(_)) {
                continue;
            }
            let k = kind(p);
            if kinds.insert(k.clone()) {
                write(dir, &format!("real_{k}"), &p.frame);
            }
        }
    }
}

/// The `stack_ingress` records of a capture: the kernel's frames, each after the clock
/// step closest below the gap since the kernel's previous frame.
fn records(pkts: &[Pkt], udp_send: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = pkts.first().map_or(0, |p| p.at);
    for p in pkts.iter().filter(|p| !p.ours) {
        let gap_ms = p.at.saturating_sub(last) / 1000;
        last = p.at;
        let step = STEPS.iter().rposition(|&s| s <= gap_ms).unwrap_or(0) as u8;
        let to_udp7 = matches!(l4(&p.frame), Some((17, _, b)) if b.get(2..4) == Some(&[0, 7]));
        let c = step
            | if udp_send && to_udp7 {
                ctl::UDP_SEND
            } else {
                0
            };
        ustack_fuzz::encode(&mut out, c, &p.frame);
    }
    out
}

fn stack_seeds(pcaps: &[(String, Vec<Pkt>)], dir: &Path) {
    println!("stack_ingress:");
    clear(dir);
    for (pcap, name, udp_send) in [
        ("real_harness", "real_harness_passive_conversation", true),
        ("real_ping", "real_ping", false),
        ("real_udp_echo", "real_udp_datagrams", false),
    ] {
        if let Some((_, pkts)) = pcaps.iter().find(|(n, _)| n == pcap) {
            write(dir, name, &records(pkts, udp_send));
        }
    }
}

/// The client's side of one TCP connection: its stream and the segments' lengths.
#[derive(Default)]
struct Upstream {
    isn: Option<u32>,
    segs: BTreeMap<u32, Vec<u8>>,
    fin: bool,
}

impl Upstream {
    /// The stream in sequence order (retransmissions once) and the segment lengths.
    fn stream(&self) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut cuts) = (Vec::new(), Vec::new());
        let Some(isn) = self.isn else {
            return (out, cuts);
        };
        for (&seq, bytes) in &self.segs {
            let off = seq.wrapping_sub(isn.wrapping_add(1)) as usize;
            if off > out.len() {
                break; // a hole: the capture missed a segment
            }
            let new = &bytes[(out.len() - off).min(bytes.len())..];
            if !new.is_empty() {
                cuts.push(new.len());
                out.extend_from_slice(new);
            }
        }
        (out, cuts)
    }
}

/// The client streams of every connection to a session port, by server port.
fn upstreams(pkts: &[Pkt]) -> BTreeMap<u16, Upstream> {
    let mut conns: BTreeMap<u16, Upstream> = BTreeMap::new();
    for p in pkts.iter().filter(|p| !p.ours) {
        let Some((6, _, t)) = l4(&p.frame) else {
            continue;
        };
        if t.len() < 20 {
            continue;
        }
        let port = u16::from_be_bytes([t[2], t[3]]);
        if !(SESSION_PORT..SESSION_PORT + CODECS.len() as u16).contains(&port) {
            continue;
        }
        let c = conns.entry(port).or_default();
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        if t[13] & 0x02 != 0 {
            c.isn = Some(seq);
        }
        c.fin |= t[13] & 0x01 != 0;
        let payload = &t[usize::from(t[12] >> 4) * 4..];
        if !payload.is_empty() {
            c.segs.insert(seq, payload.to_vec());
        }
    }
    conns
}

/// `session_codec` cut bytes for segments of `lens` bytes (a cut is at most 255).
fn codec_cuts(lens: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for &l in lens {
        let mut l = l;
        while l > 0 {
            let n = l.min(255);
            out.push(n as u8);
            l -= n;
        }
    }
    out.truncate(255);
    out
}

/// `session_engine` chunk bytes for segments of `lens` bytes: below 128 the length itself,
/// otherwise multiples of 32 (`0x80 | (n / 32 - 1)`, at most 4096) and the rest.
fn engine_chunks(lens: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for &l in lens {
        let mut l = l;
        while l > 0 {
            if l < 128 {
                out.push(l as u8);
                l = 0;
            } else {
                let k = (l / 32).min(128);
                out.push(0x80 | (k - 1) as u8);
                l -= k * 32;
            }
        }
    }
    out.truncate(255);
    out
}

fn session_seeds(pkts: &[Pkt], codec_dir: &Path, engine_dir: &Path) {
    println!("session_codec and session_engine:");
    clear(codec_dir);
    clear(engine_dir);
    for (port, c) in upstreams(pkts) {
        let codec = (port - SESSION_PORT) as u8;
        let name = CODECS[usize::from(codec)];
        let (stream, lens) = c.stream();
        let cuts = codec_cuts(&lens);
        let mut s = vec![codec, cuts.len() as u8];
        s.extend_from_slice(&cuts);
        s.extend_from_slice(&stream);
        write(codec_dir, &format!("real_{name}"), &s);
        // max_msg_len 4096; the client wrote with TCP_NODELAY and closed its side.
        let chunks = engine_chunks(&lens);
        let flags = u8::from(c.fin) | 2;
        for (suffix, f) in [
            ("", flags),
            ("_small_buffer_slow_reader", flags | 1 << 2 | 1 << 4),
        ] {
            let mut s = vec![codec, 0x0f, 0xff, f, chunks.len() as u8];
            s.extend_from_slice(&chunks);
            s.extend_from_slice(&stream);
            write(engine_dir, &format!("real_{name}{suffix}"), &s);
        }
    }
}

/// The kernel's ICMP error of `pkts` of that IP version, with the quote's UDP ports
/// rewritten to `ports` (and the quote's UDP checksum and the ICMP checksum filled in).
fn unreachable(pkts: &[Pkt], v6: bool, ports: Option<(u16, u16)>) -> Option<Vec<u8>> {
    let p = pkts
        .iter()
        .filter(|p| !p.ours)
        .find(|p| match l4(&p.frame) {
            Some((1, false, b)) => !v6 && b.first() == Some(&3),
            Some((58, true, b)) => v6 && b.first() == Some(&1),
            _ => false,
        })?;
    let mut f = p.frame.clone();
    let Some((sport, dport)) = ports else {
        return Some(f);
    };
    let ip_len = if v6 {
        40
    } else {
        usize::from(f[14] & 0x0f) * 4
    };
    let icmp = 14 + ip_len;
    let quote = icmp + 8;
    let qlen = if v6 {
        40
    } else {
        usize::from(f[quote] & 0x0f) * 4
    };
    let udp = quote + qlen;
    f[udp..udp + 2].copy_from_slice(&sport.to_be_bytes());
    f[udp + 2..udp + 4].copy_from_slice(&dport.to_be_bytes());
    let (src, dst) = if v6 {
        let a = |at: usize| {
            IpAddress::Ipv6(Ipv6Address::from(
                <[u8; 16]>::try_from(&f[at..at + 16]).expect("16"),
            ))
        };
        (a(quote + 8), a(quote + 24))
    } else {
        let a = |at: usize| {
            IpAddress::Ipv4(Ipv4Address::from(
                <[u8; 4]>::try_from(&f[at..at + 4]).expect("4"),
            ))
        };
        (a(quote + 12), a(quote + 16))
    };
    // The whole datagram is quoted (it is small), so its checksum can be right again.
    let ulen = usize::from(u16::from_be_bytes([f[udp + 4], f[udp + 5]]));
    if f.len() >= udp + ulen {
        UdpPacket::new_unchecked(&mut f[udp..udp + ulen]).fill_checksum(&src, &dst);
    }
    if v6 {
        let (s, d) = (
            Ipv6Address::from(<[u8; 16]>::try_from(&f[22..38]).expect("16")),
            Ipv6Address::from(<[u8; 16]>::try_from(&f[38..54]).expect("16")),
        );
        let end = icmp + usize::from(u16::from_be_bytes([f[18], f[19]]));
        Icmpv6Packet::new_unchecked(&mut f[icmp..end]).fill_checksum(&s, &d);
    } else {
        let end = 14 + usize::from(u16::from_be_bytes([f[16], f[17]]));
        Icmpv4Packet::new_unchecked(&mut f[icmp..end]).fill_checksum();
    }
    Some(f)
}

fn udp_icmp_seeds(pkts: &[Pkt], dir: &Path) {
    println!("udp_icmp:");
    clear(dir);
    for (v6, ports, v) in [
        (false, (PORT_A, PEER_PORT), "v4"),
        (true, (PORT_A6, PEER_PORT6), "v6"),
    ] {
        for (name, ports) in [("match", Some(ports)), ("nomatch", None)] {
            let Some(f) = unreachable(pkts, v6, ports) else {
                println!("  (no ICMP{v} error in the capture)");
                continue;
            };
            let op = Op::new(Body::RawFrame(f));
            write(
                dir,
                &format!("real_{name}_{v}_port_unreachable"),
                &udp_icmp::encode(&[op]),
            );
        }
    }
}

/// The compressed messages (payloads joined, unmasked) of a frame stream.
fn compressed_messages(mut s: &[u8]) -> Vec<Vec<u8>> {
    let (mut out, mut cur): (Vec<Vec<u8>>, Option<Vec<u8>>) = (Vec::new(), None);
    while s.len() >= 2 {
        let (b0, b1) = (s[0], s[1]);
        let mut at = 2;
        let mut len = u64::from(b1 & 0x7f);
        if len == 126 {
            len = u64::from(u16::from_be_bytes([s[2], s[3]]));
            at = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(s[2..10].try_into().expect("8"));
            at = 10;
        }
        let mask = (b1 & 0x80 != 0).then(|| [s[at], s[at + 1], s[at + 2], s[at + 3]]);
        at += if mask.is_some() { 4 } else { 0 };
        let len = len as usize;
        if s.len() < at + len {
            break;
        }
        let mut payload = s[at..at + len].to_vec();
        if let Some(m) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        s = &s[at + len..];
        let (fin, rsv1, op) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0f);
        match op {
            1 | 2 if rsv1 => cur = Some(payload),
            1 | 2 => cur = None,
            0 => {
                if let Some(c) = cur.as_mut() {
                    c.extend_from_slice(&payload);
                }
            }
            _ => continue, // control frames
        }
        if fin {
            out.extend(cur.take());
        }
    }
    out
}

fn deflate_seeds(frames_dir: &Path, dir: &Path) {
    println!("ws_deflate:");
    clear(dir);
    let mut names: Vec<_> = fs::read_dir(frames_dir)
        .expect("read ws_frames seeds")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("real_"))
        })
        .collect();
    names.sort();
    for path in names {
        let seed = fs::read(&path).expect("read seed");
        let [cfg, dparams, _, stream @ ..] = &seed[..] else {
            continue;
        };
        if cfg & 2 == 0 {
            continue; // no permessage-deflate
        }
        // ws_frames cfg bit 0: the reader is the client, so the server sent these.
        let client_sends = cfg & 1 == 0;
        let no_takeover = if client_sends {
            dparams & 0x80 != 0
        } else {
            dparams & 0x40 != 0
        };
        // ws_deflate cfg: level 6, the sender's role in bit 4, frames of up to 4096 bytes.
        let dcfg = 6 | u8::from(client_sends) << 4 | 5 << 5;
        let base = path.file_name().expect("name").to_string_lossy();
        let base = base.trim_end_matches("_frames");
        let msgs = compressed_messages(stream);
        let mut all = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, m) in msgs.iter().enumerate() {
            if i > 0 {
                all.extend_from_slice(&[0, 0, 0xff, 0xff]);
            }
            all.extend_from_slice(m);
            if (i == 0 || no_takeover) && seen.insert(m.clone()) {
                let mut s = vec![*dparams, dcfg, 0];
                s.extend_from_slice(m);
                write(dir, &format!("{base}_msg{i}"), &s);
            }
        }
        if msgs.len() > 1 {
            let mut s = vec![*dparams, dcfg, 0];
            s.extend_from_slice(&all);
            write(dir, &format!("{base}_all"), &s);
        }
    }
}

fn main() {
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--out", Some(d)) => root = PathBuf::from(d),
            _ => panic!("usage: split_pcap_seeds [--out DIR]"),
        }
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut pcaps: Vec<(String, Vec<Pkt>)> = fs::read_dir(src.join("pcap_replay"))
        .expect("read pcap_replay seeds")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let stem = name.strip_suffix(".pcap")?.to_owned();
            stem.starts_with("real_").then(|| (stem, read_pcap(&p)))
        })
        .collect();
    pcaps.sort_by(|a, b| a.0.cmp(&b.0));
    let get = |n: &str| {
        pcaps
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, p)| &p[..])
            .unwrap_or_else(|| {
                panic!("no {n}.pcap: record it (sudo bash fuzz/seeds/regen_pcap.sh)")
            })
    };
    classify_seeds(&pcaps, &root.join("ingress_classify"));
    stack_seeds(&pcaps, &root.join("stack_ingress"));
    session_seeds(
        get("real_session"),
        &root.join("session_codec"),
        &root.join("session_engine"),
    );
    udp_icmp_seeds(get("real_udp_unreachable"), &root.join("udp_icmp"));
    deflate_seeds(&src.join("ws_frames"), &root.join("ws_deflate"));
}
