//! Writes the seeds of the WebSocket targets (`ws_handshake`, `ws_frames`, `ws_deflate`)
//! into `fuzz/seeds/<target>/` (or under the directory given with `--out`).
//!
//! ```text
//! cd fuzz && cargo run --example gen_ws_seeds                 # the built seeds
//! sudo bash fuzz/seeds/regen_ws.sh                           # plus real traffic (root, TAP)
//! cargo run --example gen_ws_seeds -- --pcap ws.pcap --names names.txt
//! ```
//!
//! Built seeds (deterministic): upgrade requests and refusals, 101 responses for the
//! client's fixed key, URLs; frame streams written by `WsConn` in both roles (text, binary,
//! fragments with a ping between them, close, compressed messages) and broken ones (each
//! rule a receiver must fail on); compressed messages and zip bombs (runs of zeros far
//! larger than the 64 KiB inflate limit) for `ws_deflate`.
//!
//! Real seeds (`real_*`): with `--pcap`, a tcpdump capture of Python `websockets` clients
//! talking to `ws_echo` (see `seeds/regen_ws.sh`), `--names` mapping each conversation's
//! client port to its name. Each TCP connection is reassembled; the client's bytes become a
//! request seed (`ws_handshake`) and, after the request, a masked frame-stream seed read in
//! the server role (`ws_frames`); the server's bytes become a response seed and an unmasked
//! frame stream read in the client role, with the permessage-deflate parameters of the 101
//! encoded in the seed's header.
//!
//! The input formats are documented at the top of each target in `fuzz_targets/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ustack::smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
use ustack::ws::close::CloseCode;
use ustack::ws::conn::{Message, WsConfig, WsConn};
use ustack::ws::deflate::{Deflate, DeflateParams};
use ustack::ws::frame::{FrameHeader, Opcode, RSV1};
use ustack::ws::Role;

/// `ws_frames` cfg bits.
const CLIENT: u8 = 1;
const DEFLATE: u8 = 2;
const SLICE: u8 = 4;
/// `ws_frames` max_message_size index (bits 4-6): 1000 bytes, 64 KiB, 16 MiB.
const MAX_1000: u8 = 3 << 4;
const MAX_64K: u8 = 5 << 4;
const MAX_16M: u8 = 7 << 4;

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: superchat, chat\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    let path = dir.join(name);
    fs::write(&path, data).expect("write seed");
    println!("  {} ({} bytes)", path.display(), data.len());
}

fn seed(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = header.to_vec();
    v.extend_from_slice(body);
    v
}

/// The `dparams` byte of `ws_frames` / `ws_deflate` for `p`.
fn dparams(p: &DeflateParams) -> u8 {
    (p.server_max_window_bits.clamp(8, 15) - 8)
        | (p.client_max_window_bits.clamp(8, 15) - 8) << 3
        | u8::from(p.server_no_context_takeover) << 6
        | u8::from(p.client_no_context_takeover) << 7
}

const FULL: DeflateParams = DeflateParams {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

fn handshake_seeds(dir: &Path) {
    println!("ws_handshake:");
    let chunky = 0x0a; // chunks of 1..=3 bytes
    let big = 0x06; // chunks of up to 300 bytes
    write(dir, "server_rfc_sample", &seed(&[0, 0, big], REQUEST));
    write(
        dir,
        "server_rfc_sample_bytewise",
        &seed(&[0, 0, 0], REQUEST),
    );
    write(dir, "server_protocols", &seed(&[0, 1, chunky], REQUEST));
    let mut deflate = REQUEST[..REQUEST.len() - 2].to_vec();
    deflate.extend_from_slice(
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-webkit-deflate-frame\r\n\r\n",
    );
    write(dir, "server_deflate_offer", &seed(&[0, 2, big], &deflate));
    write(
        dir,
        "server_deflate_no_takeover",
        &seed(&[0, 3, chunky], &deflate),
    );
    write(dir, "server_small_out", &seed(&[0, 8 | 2, big], &deflate));
    let mut with_frames = REQUEST.to_vec();
    with_frames.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    write(
        dir,
        "server_request_then_frame",
        &seed(&[0, 0, big], &with_frames),
    );
    write(
        dir,
        "server_page",
        &seed(&[0, 4, big], b"GET /page HTTP/1.1\r\nHost: a\r\n\r\n"),
    );
    write(
        dir,
        "server_forbidden",
        &seed(&[0, 4, big], b"GET /forbidden HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
    );
    write(
        dir,
        "server_post",
        &seed(
            &[0, 0, big],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        ),
    );
    write(
        dir,
        "server_version_8",
        &seed(&[0, 0, big], b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"),
    );
    write(
        dir,
        "server_two_hosts",
        &seed(
            &[0, 0, big],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
    );
    let mut long = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..40 {
        long.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(i)).as_bytes());
    }
    long.extend_from_slice(b"\r\n");
    write(dir, "server_too_large", &seed(&[0, 4, big], &long));

    // Responses for the client's fixed key "the sample nonce" (accept s3pPLMBi...).
    let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
    write(
        dir,
        "client_101",
        &seed(&[1, 0, chunky], &[&ok[..], b"\r\n"].concat()),
    );
    write(
        dir,
        "client_101_protocol",
        &seed(
            &[1, 1, big],
            &[&ok[..], b"Sec-WebSocket-Protocol: chat\r\n\r\n"].concat(),
        ),
    );
    write(
        dir,
        "client_101_deflate",
        &seed(
            &[1, 2, big],
            &[
                &ok[..],
                b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n\r\n\x82\x02hi",
            ]
            .concat(),
        ),
    );
    write(
        dir,
        "client_403",
        &seed(
            &[1, 0, big],
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        ),
    );
    write(
        dir,
        "client_bad_accept",
        &seed(&[1, 0, big], b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"),
    );
    // Findings (see fuzz/README.md): a second, different Sec-WebSocket-Accept; a request
    // over a 256-byte max_request, malformed past byte 256 (431 chunked, 400 whole).
    write(
        dir,
        "finding_two_accepts",
        &seed(
            &[1, 0, big],
            &[
                &ok[..],
                b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            ]
            .concat(),
        ),
    );
    let mut over = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
    over.extend_from_slice(&[b'a'; 250]);
    over.extend_from_slice(b"\r\nBad Header: x\r\n\r\n");
    write(dir, "finding_431_or_400", &seed(&[0, 4, 0x07], &over));
    for (name, url) in [
        ("url_host_port_path", "ws://example.com:9001/chat?room=1"),
        ("url_ipv6", "ws://[::1]:9001/"),
        ("url_query_only", "ws://example.com?x"),
        ("url_wss", "wss://example.com/"),
    ] {
        write(dir, name, &seed(&[2, 0, 0], url.as_bytes()));
    }
}

/// A stream written by `role` (so read by the other role).
fn stream(
    role: Role,
    deflate: Option<DeflateParams>,
    build: impl FnOnce(&mut WsConn, &mut Vec<u8>),
) -> Vec<u8> {
    let mut c = WsConn::with_seed(role, WsConfig::default(), [3; 32]);
    if let Some(p) = deflate {
        c.set_deflate(p, 6);
    }
    let mut out = Vec::new();
    build(&mut c, &mut out);
    out
}

fn conversation(c: &mut WsConn, out: &mut Vec<u8>) {
    c.write_message(Message::Text("Hello, WebSocket"), out)
        .unwrap();
    c.write_message(Message::Binary(&[0, 1, 2, 3, 255]), out)
        .unwrap();
    let mut h = FrameHeader::new(Opcode::Text, 0);
    h.fin = false;
    c.write_frame(h, "fragmented \u{e9}".as_bytes()[..12].as_ref(), out)
        .unwrap();
    c.write_control(Opcode::Ping, b"between", out).unwrap();
    let mut h = FrameHeader::new(Opcode::Continuation, 0);
    h.fin = true;
    c.write_frame(h, "fragmented \u{e9}".as_bytes()[12..].as_ref(), out)
        .unwrap();
    c.write_control(Opcode::Pong, b"unsolicited", out).unwrap();
    let long = "abcdefgh".repeat(40);
    c.write_message(Message::Text(&long), out).unwrap();
    c.write_close(CloseCode::NORMAL, "bye", out).unwrap();
}

fn frames_seeds(dir: &Path) {
    println!("ws_frames:");
    let chunky = 0x1b; // chunks of 1..=7 bytes
    let big = 0x0e; // chunks of up to 300 bytes
    let from_client = stream(Role::Client, None, conversation);
    let from_server = stream(Role::Server, None, conversation);
    write(
        dir,
        "server_reads_conversation",
        &seed(&[MAX_16M, 0, big], &from_client),
    );
    write(
        dir,
        "server_reads_bytewise",
        &seed(&[MAX_1000, 0, 0x00], &from_client),
    );
    write(
        dir,
        "client_reads_conversation",
        &seed(&[MAX_16M | CLIENT, 0, chunky], &from_server),
    );
    write(
        dir,
        "server_slice_store",
        &seed(&[MAX_64K | SLICE, 0, big], &from_client),
    );

    for (name, p) in [
        ("deflate_takeover", FULL),
        (
            "deflate_no_takeover_small_windows",
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 9,
                client_max_window_bits: 10,
            },
        ),
    ] {
        let compressed = |c: &mut WsConn, out: &mut Vec<u8>| {
            for i in 0..3 {
                let text = format!(
                    "message {i}: {}",
                    "the same words again and again ".repeat(4)
                );
                c.write_message(Message::Text(&text), out).unwrap();
            }
            c.write_message(Message::Binary(&[7; 2000]), out).unwrap();
            c.write_message(Message::Text("short"), out).unwrap();
            c.write_close(CloseCode::GOING_AWAY, "", out).unwrap();
        };
        let d = dparams(&p);
        let s = stream(Role::Client, Some(p), compressed);
        write(
            dir,
            &format!("server_{name}"),
            &seed(&[MAX_64K | DEFLATE, d, big], &s),
        );
        let s = stream(Role::Server, Some(p), compressed);
        write(
            dir,
            &format!("client_{name}"),
            &seed(&[MAX_64K | DEFLATE | CLIENT, d, chunky], &s),
        );
    }
    // A fragmented compressed message (RSV1 on the first frame only).
    let mut d = Deflate::new(FULL, Role::Client, 6);
    let mut body = Vec::new();
    d.compress(
        "compressed and fragmented, compressed and fragmented".as_bytes(),
        &mut body,
    );
    let s = stream(Role::Client, Some(FULL), |c, out| {
        let (a, b) = body.split_at(body.len() / 2);
        let mut h = FrameHeader::new(Opcode::Text, 0);
        h.fin = false;
        h.rsv = RSV1;
        c.write_frame(h, a, out).unwrap();
        c.write_frame(FrameHeader::new(Opcode::Continuation, 0), b, out)
            .unwrap();
    });
    write(
        dir,
        "server_deflate_fragmented",
        &seed(&[MAX_64K | DEFLATE, dparams(&FULL), big], &s),
    );
    // A compressed zip bomb inside a frame, over a 64 KiB limit.
    let mut bomb = Vec::new();
    Deflate::new(FULL, Role::Client, 9).compress(&vec![0; 4 << 20], &mut bomb);
    let s = stream(Role::Client, None, |c, out| {
        let mut h = FrameHeader::new(Opcode::Binary, 0);
        h.rsv = RSV1;
        c.write_frame(h, &bomb, out).unwrap();
    });
    write(
        dir,
        "server_deflate_bomb",
        &seed(&[MAX_64K | DEFLATE, dparams(&FULL), big], &s),
    );

    // Each rule a receiver fails on, with the role that reads it.
    let bad: [(&str, Role, &[u8]); 10] = [
        (
            "bad_unmasked_from_client",
            Role::Server,
            &[0x81, 0x02, b'h', b'i'],
        ),
        (
            "bad_masked_from_server",
            Role::Client,
            &[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'],
        ),
        ("bad_reserved_opcode", Role::Client, &[0x83, 0x00]),
        ("bad_rsv2", Role::Client, &[0xa1, 0x00]),
        ("bad_fragmented_ping", Role::Client, &[0x09, 0x00]),
        ("bad_continuation_first", Role::Client, &[0x80, 0x00]),
        (
            "bad_utf8",
            Role::Client,
            &[0x81, 0x04, 0xce, 0xba, 0xe1, 0xbd, 0x81, 0x00],
        ),
        ("bad_close_code", Role::Client, &[0x88, 0x02, 0x03, 0xed]),
        (
            "bad_length_msb",
            Role::Client,
            &[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1],
        ),
        ("bad_long_ping", Role::Client, &[0x89, 0x7e, 0x00, 0x7e]),
    ];
    for (name, reader, frames) in bad {
        let cfg = MAX_1000 | if reader == Role::Client { CLIENT } else { 0 };
        write(dir, name, &seed(&[cfg, 0, big], frames));
    }
    // Finding: 1000 incompressible bytes compress to a frame over a 1000-byte limit.
    let mut x: u32 = 1;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let s = stream(Role::Client, Some(FULL), |c, out| {
        c.write_message(Message::Binary(&noise), out).unwrap();
    });
    write(
        dir,
        "finding_compressed_over_max",
        &seed(&[MAX_1000 | DEFLATE, dparams(&FULL), big], &s),
    );
    let too_big = stream(Role::Client, None, |c, out| {
        c.write_message(Message::Binary(&[1; 1001]), out).unwrap();
    });
    write(dir, "bad_too_big", &seed(&[MAX_1000, 0, big], &too_big));
}

fn deflate_seeds(dir: &Path) {
    println!("ws_deflate:");
    // [dparams, cfg (level 6, server sends, frames up to 300), limit (64 KiB), data]
    let cfg = 6 | 4 << 5;
    let mut d = Deflate::new(FULL, Role::Server, 6);
    let mut wire = Vec::new();
    d.compress(b"Hello, Hello, Hello, permessage-deflate", &mut wire);
    write(dir, "hello", &seed(&[dparams(&FULL), cfg, 0], &wire));
    let small = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: 8,
        client_max_window_bits: 12,
    };
    let text: Vec<u8> = (0..3000u32)
        .map(|i| b"abcdefghij"[(i * i % 10) as usize])
        .collect();
    let mut wire = Vec::new();
    Deflate::new(small, Role::Server, 9).compress(&text, &mut wire);
    write(
        dir,
        "small_window",
        &seed(&[dparams(&small), cfg | 9, 0], &wire),
    );
    write(
        dir,
        "plain_text",
        &seed(&[dparams(&small), 1 | 0x10, 3], &text[..600]),
    );
    // Zip bombs: runs of zeros 64 and 256 times the 64 KiB limit.
    for (name, n) in [
        ("bomb_4MiB_zeros", 4usize << 20),
        ("bomb_16MiB_zeros", 16 << 20),
    ] {
        let mut wire = Vec::new();
        Deflate::new(FULL, Role::Server, 9).compress(&vec![0; n], &mut wire);
        write(dir, name, &seed(&[dparams(&FULL), 9 | 7 << 5, 0], &wire));
    }
    // Stored block with a wrong NLEN; a final block followed by junk.
    write(
        dir,
        "bad_nlen",
        &seed(
            &[dparams(&FULL), cfg, 0],
            &[0x01, 0x03, 0x00, 0x00, 0x00, b'a', b'b', b'c'],
        ),
    );
    write(
        dir,
        "final_then_junk",
        &seed(
            &[dparams(&FULL), cfg, 2],
            &[0x01, 0x02, 0x00, 0xfd, 0xff, b'o', b'k', 0xde, 0xad],
        ),
    );
}

/// TCP payloads of one connection, per direction, in sequence order.
#[derive(Default)]
struct Conn {
    isn: [Option<u32>; 2],
    data: [BTreeMap<u32, Vec<u8>>; 2],
}

impl Conn {
    fn stream(&self, dir: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(isn) = self.isn[dir] else {
            return out;
        };
        for (&seq, bytes) in &self.data[dir] {
            let off = seq.wrapping_sub(isn.wrapping_add(1)) as usize;
            if off > out.len() {
                break; // a hole: the capture missed a segment
            }
            let end = off + bytes.len();
            if end > out.len() {
                out.extend_from_slice(&bytes[out.len() - off..]);
            }
        }
        out
    }
}

/// Reassembles every TCP connection to `port` in a pcap file (Ethernet, IPv4), keyed by
/// the client's port.
fn read_pcap(path: &Path, port: u16) -> BTreeMap<u16, Conn> {
    let mut conns: BTreeMap<u16, Conn> = BTreeMap::new();
    for (_, frame) in ustack_fuzz::seeds::pcap_frames(path) {
        let frame = &frame[..];
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
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
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            continue;
        };
        let (dir, client) = if tcp.dst_port() == port {
            (0, tcp.src_port())
        } else if tcp.src_port() == port {
            (1, tcp.dst_port())
        } else {
            continue;
        };
        let c = conns.entry(client).or_default();
        let seq = tcp.seq_number().0 as u32;
        if tcp.syn() {
            c.isn[dir] = Some(seq);
        }
        if !tcp.payload().is_empty() {
            c.data[dir].insert(seq, tcp.payload().to_vec());
        }
    }
    conns
}

/// The permessage-deflate parameters a 101 agreed, if any.
fn agreed(response: &[u8]) -> Option<DeflateParams> {
    let text = String::from_utf8_lossy(response).to_ascii_lowercase();
    let line = text
        .lines()
        .find(|l| l.starts_with("sec-websocket-extensions:"))?;
    let mut p = FULL;
    for param in line.split(';').skip(1).map(str::trim) {
        match param.split_once('=') {
            Some(("server_max_window_bits", v)) => {
                p.server_max_window_bits = v.trim_matches('"').parse().ok()?
            }
            Some(("client_max_window_bits", v)) => {
                p.client_max_window_bits = v.trim_matches('"').parse().ok()?
            }
            None if param == "server_no_context_takeover" => p.server_no_context_takeover = true,
            None if param == "client_no_context_takeover" => p.client_no_context_takeover = true,
            _ => {}
        }
    }
    Some(p)
}

fn head_len(stream: &[u8]) -> usize {
    stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(stream.len(), |i| i + 4)
}

fn real_seeds(root: &Path, pcap: &Path, names: &Path, port: u16) {
    println!("real traffic from {}:", pcap.display());
    let names = fs::read_to_string(names).expect("read names");
    let conns = read_pcap(pcap, port);
    for line in names.lines() {
        let Some((name, client_port)) = line.split_once(' ') else {
            continue;
        };
        let client_port: u16 = client_port.trim().parse().expect("port");
        let c = conns.get(&client_port).unwrap_or_else(|| {
            panic!("{name}: no connection from port {client_port} in the capture")
        });
        let (up, down) = (c.stream(0), c.stream(1));
        assert!(
            !up.is_empty() && !down.is_empty(),
            "{name}: empty conversation"
        );
        let (req, resp) = (head_len(&up), head_len(&down));
        let deflate = agreed(&down[..resp]);
        let (scfg, extra) = match deflate {
            Some(_) => (2, DEFLATE),
            None => (0, 0),
        };
        let d = deflate.as_ref().map_or(0, dparams);
        let hs = root.join("ws_handshake");
        write(
            &hs,
            &format!("real_{name}_request"),
            &seed(&[0, scfg, 0x0e], &up[..req]),
        );
        write(
            &hs,
            &format!("real_{name}_response"),
            &seed(&[1, scfg, 0x0e], &down[..resp]),
        );
        let fr = root.join("ws_frames");
        write(
            &fr,
            &format!("real_{name}_client_frames"),
            &seed(&[MAX_16M | extra, d, 0x0e], &up[req..]),
        );
        write(
            &fr,
            &format!("real_{name}_server_frames"),
            &seed(&[MAX_16M | extra | CLIENT, d, 0x1b], &down[resp..]),
        );
    }
}

fn main() {
    let mut root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let (mut pcap, mut names, mut port) = (None, None, 9001u16);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--out" => root = PathBuf::from(value),
            "--pcap" => pcap = Some(PathBuf::from(value)),
            "--names" => names = Some(PathBuf::from(value)),
            "--port" => port = value.parse().expect("--port N"),
            _ => panic!("usage: gen_ws_seeds [--out DIR] [--pcap FILE --names FILE [--port N]]"),
        }
    }
    handshake_seeds(&root.join("ws_handshake"));
    frames_seeds(&root.join("ws_frames"));
    deflate_seeds(&root.join("ws_deflate"));
    if let Some(pcap) = pcap {
        let names = names.expect("--pcap needs --names");
        real_seeds(&root, &pcap, &names, port);
    }
}
