//! Writes the seed corpora into `fuzz/seeds/<target>/` (or the directory given as argument).
//!
//! ```text
//! cd fuzz && cargo run --example gen_seeds
//! ```
//!
//! `ingress_classify` seeds are single valid frames. `stack_ingress` seeds are whole
//! conversations recorded against the real harness: the generator sends a SYN, reads the
//! SYN-ACK the stack transmitted, and answers with the right acknowledgment number, so the
//! seeds reach established connections, data, FIN and timers. Because the harness is
//! deterministic, replaying a seed drives the stack through exactly the same states.
//!
//! `udp_icmp` seeds are op sequences (see `ustack_fuzz::udp_icmp`): ICMP errors that match
//! a connected socket (whole quote, RFC 792 minimum quote, host unreachable, IPv6) and ones
//! that must not (wrong port, unconnected socket, fragmentation needed, a later fragment),
//! plus sequences that reconnect, keep errors pending, or overflow one poll.

use std::fs;
use std::path::{Path, PathBuf};

use ustack::frames::Link;
use ustack::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv6Address, TcpControl};
use ustack_fuzz::frames::{self, parse_tcp, Seg, Sent, LINK};
use ustack_fuzz::udp_icmp::{
    self, Act, Addr, Body, Op, Quote, Take, PEER_PORT, PEER_PORT6, PORT_A, PORT_A6, PORT_B,
};
use ustack_fuzz::{ctl, encode, Harness, Record, CONNECT_PORT, PORT};

/// Records a `stack_ingress` input while running it.
struct Recorder {
    h: Harness,
    data: Vec<u8>,
}

impl Recorder {
    fn new() -> Recorder {
        let mut h = Harness::new(true);
        h.stack.device_mut().sent.clear();
        Recorder {
            h,
            data: Vec::new(),
        }
    }

    /// Delivers one frame and returns what the stack transmitted in response.
    fn send(&mut self, ctl: u8, frame: &[u8]) -> Vec<Vec<u8>> {
        encode(&mut self.data, ctl, frame);
        self.h.step(Record { ctl, frame });
        std::mem::take(&mut self.h.stack.device_mut().sent)
    }

    fn tcp_sent(out: &[Vec<u8>]) -> Vec<Sent> {
        out.iter().filter_map(|f| parse_tcp(f)).collect()
    }

    fn finish(mut self) -> Vec<u8> {
        self.h.poll();
        self.data
    }
}

fn seg(
    src_port: u16,
    dst_port: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Seg<'_> {
    Seg {
        src_port,
        dst_port,
        control,
        seq,
        ack,
        payload,
    }
}

/// SYN to port 7 from `port`, then ACK, data (echoed), FIN and a long wait.
fn passive_conversation(v6: bool) -> (Vec<u8>, usize) {
    let tcp = |s: Seg<'_>| if v6 { frames::tcp6(s) } else { frames::tcp4(s) };
    let mut r = Recorder::new();
    r.send(
        1,
        &if v6 {
            frames::ndisc_solicit()
        } else {
            frames::arp_request()
        },
    );
    let peer = 40000;
    let isn = 1_000_000;
    let out = r.send(1, &tcp(seg(peer, PORT, TcpControl::Syn, isn, None, &[])));
    let synack = Recorder::tcp_sent(&out)
        .into_iter()
        .find(|s| s.syn && s.ack && s.src_port == PORT && s.dst_port == peer);
    let Some(synack) = synack else {
        eprintln!(
            "  (no SYN-ACK over {}: {} frames sent)",
            if v6 { "IPv6" } else { "IPv4" },
            out.len()
        );
        return (r.finish(), 0);
    };
    let ours = synack.seq.wrapping_add(1);
    let mut seq = isn + 1;
    r.send(
        1,
        &tcp(seg(peer, PORT, TcpControl::None, seq, Some(ours), &[])),
    );
    let hello = b"hello, ustack\n";
    let out = r.send(
        1 | ctl::WRITE,
        &tcp(seg(peer, PORT, TcpControl::Psh, seq, Some(ours), hello)),
    );
    seq += hello.len() as u32;
    let echoed: usize = Recorder::tcp_sent(&out)
        .iter()
        .filter(|s| s.src_port == PORT)
        .map(|s| s.len)
        .sum();
    r.send(
        2,
        &tcp(seg(
            peer,
            PORT,
            TcpControl::Fin,
            seq,
            Some(ours.wrapping_add(echoed as u32)),
            &[],
        )),
    );
    r.send(
        7,
        &tcp(seg(
            peer,
            PORT,
            TcpControl::None,
            seq + 1,
            Some(ours.wrapping_add(echoed as u32 + 1)),
            &[],
        )),
    );
    let read = r.h.tcp_read;
    (r.finish(), read)
}

/// The harness's own `connect`: ARP reply, SYN-ACK, data, FIN.
fn active_conversation() -> (Vec<u8>, usize) {
    let mut r = Recorder::new();
    let out = r.send(1, &frames::arp_reply());
    let mut syn = Recorder::tcp_sent(&out)
        .into_iter()
        .find(|s| s.syn && !s.ack && s.dst_port == CONNECT_PORT);
    if syn.is_none() {
        // The SYN may wait for the next poll.
        let out = r.send(2, &frames::arp_reply());
        syn = Recorder::tcp_sent(&out)
            .into_iter()
            .find(|s| s.syn && !s.ack && s.dst_port == CONNECT_PORT);
    }
    let Some(syn) = syn else {
        eprintln!("  (the stack sent no SYN to port {CONNECT_PORT})");
        return (r.finish(), 0);
    };
    let local = syn.src_port;
    let ours = syn.seq.wrapping_add(1);
    let isn = 7_000_000;
    r.send(
        1,
        &frames::tcp4(seg(
            CONNECT_PORT,
            local,
            TcpControl::Syn,
            isn,
            Some(ours),
            &[],
        )),
    );
    let body = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let mut seq = isn + 1;
    r.send(
        1 | ctl::WRITE,
        &frames::tcp4(seg(
            CONNECT_PORT,
            local,
            TcpControl::Psh,
            seq,
            Some(ours),
            body,
        )),
    );
    seq += body.len() as u32;
    r.send(
        3,
        &frames::tcp4(seg(
            CONNECT_PORT,
            local,
            TcpControl::Fin,
            seq,
            Some(ours),
            &[],
        )),
    );
    r.send(
        7,
        &frames::tcp4(seg(
            CONNECT_PORT,
            local,
            TcpControl::Rst,
            seq + 1,
            None,
            &[],
        )),
    );
    let read = r.h.tcp_read;
    (r.finish(), read)
}

/// More SYNs than the backlog holds, in one poll; some handshakes completed, the rest held
/// and then reset when the hold expires.
fn syn_flood() -> (Vec<u8>, u64) {
    let mut r = Recorder::new();
    r.send(1, &frames::arp_request());
    let n = 7u16;
    let mut out = Vec::new();
    for i in 0..n {
        let s = frames::tcp4(seg(
            41000 + i,
            PORT,
            TcpControl::Syn,
            100 * u32::from(i),
            None,
            &[],
        ));
        // All but the last are batched: they reach the stack in a single poll.
        out = r.send(if i + 1 < n { ctl::BATCH } else { 1 }, &s);
    }
    let mut synacks: Vec<Sent> = Recorder::tcp_sent(&out)
        .into_iter()
        .filter(|s| s.syn && s.ack)
        .collect();
    // Complete two handshakes: accept frees backlog room and releases held SYNs.
    synacks.truncate(2);
    for s in synacks {
        let i = s.dst_port - 41000;
        let ack = frames::tcp4(seg(
            s.dst_port,
            PORT,
            TcpControl::None,
            100 * u32::from(i) + 1,
            Some(s.seq.wrapping_add(1)),
            &[],
        ));
        r.send(1, &ack);
    }
    // Past the SYN hold: what is still held is reset.
    r.send(4, &frames::udp4(5353, PORT, b"tick"));
    let stats = r.h.stack.stats();
    assert!(
        stats.tcp_accepted > 0,
        "no handshake of the SYN flood completed: {stats:?}"
    );
    (r.finish(), stats.tcp_syn_deferred)
}

/// The `udp_icmp` seeds: (name, ops). Names say what the test in `tests/seeds.rs` expects:
/// `match_*` seeds deliver at least one error, `nomatch_*` seeds none; `finding_*` seeds
/// only have to satisfy the model.
fn udp_icmp_seeds() -> Vec<(&'static str, Vec<Op>)> {
    let v4 = |code, sport, dport| Quote::new(false, code, Addr::Ours, sport, Addr::Peer, dport);
    let v6 = |code, sport, dport| Quote::new(true, code, Addr::Ours, sport, Addr::Peer, dport);
    let icmp = |q: Quote| Op::new(Body::Icmp(q));
    let act = |sock, act| Op::new(Body::Act { sock, act });
    let port_unreachable = v4(3, PORT_A, PEER_PORT);
    let rfc792 = Quote {
        keep: 20 + 8,
        ..port_unreachable.clone()
    };
    let later_fragment = Quote {
        frag: Some(0x2000 | 185),
        ..port_unreachable.clone()
    };
    let first_fragment = Quote {
        frag: Some(0x2000),
        ..port_unreachable.clone()
    };
    let with_options = Quote {
        options: Some(3),
        ..v4(1, PORT_A, PEER_PORT)
    };
    let from_router = Quote {
        router: true,
        ..v4(13, PORT_A, PEER_PORT)
    };
    let (frame, _) = port_unreachable.frame();
    let (quote, _) = rfc792.quote();
    let mut raw_msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
    raw_msg.extend_from_slice(&quote);
    let (frame6, _) = v6(4, PORT_A6, PEER_PORT6).frame();
    let raw_msg6 = frame6[14 + 40..].to_vec();
    // A matching error sent to another host (its MAC and address): see "Findings" in
    // fuzz/README.md. It must change nothing.
    let elsewhere = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);
    let to_other4 = Link {
        our4: Ipv4Address::new(10, 0, 0, 99),
        our_mac: elsewhere,
        ..LINK
    }
    .unreachable4(3, &LINK.sent_udp4(PORT_A, PEER_PORT, b"query"));
    let to_other6 = Link {
        our6: Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x99),
        our_mac: elsewhere,
        ..LINK
    }
    .unreachable6(4, &LINK.sent_udp6(PORT_A6, PEER_PORT6, b"query"));
    let keep = |o: Op| Op {
        take: Take::Keep,
        ..o
    };
    let batch = |o: Op| Op { batch: true, ..o };
    vec![
        (
            "match_v4_port_unreachable",
            vec![icmp(port_unreachable.clone())],
        ),
        (
            "match_v4_port_unreachable_rfc792",
            vec![icmp(rfc792.clone())],
        ),
        (
            "match_v4_host_unreachable",
            vec![icmp(v4(1, PORT_A, PEER_PORT))],
        ),
        ("match_v4_first_fragment", vec![icmp(first_fragment)]),
        ("match_v4_quote_with_options", vec![icmp(with_options)]),
        ("match_v4_from_router", vec![icmp(from_router)]),
        (
            "match_v6_port_unreachable",
            vec![icmp(v6(4, PORT_A6, PEER_PORT6))],
        ),
        (
            "match_v6_host_unreachable",
            vec![icmp(v6(3, PORT_A6, PEER_PORT6))],
        ),
        ("match_raw_frame", vec![Op::new(Body::RawFrame(frame))]),
        (
            "match_raw_icmp4",
            vec![Op::new(Body::RawIcmp {
                v6: false,
                msg: raw_msg,
            })],
        ),
        (
            "match_raw_icmp6",
            vec![Op::new(Body::RawIcmp {
                v6: true,
                msg: raw_msg6,
            })],
        ),
        (
            "match_taken_by_send",
            vec![Op {
                take: Take::Send,
                ..icmp(port_unreachable.clone())
            }],
        ),
        (
            // A datagram from the peer, an error kept pending, a second one overwriting it,
            // then one receive: the error first, then the datagram.
            "match_pending_then_data",
            vec![
                keep(act(0, Act::Datagram)),
                keep(icmp(v4(1, PORT_A, PEER_PORT))),
                keep(icmp(port_unreachable.clone())),
                act(2, Act::Datagram),
            ],
        ),
        (
            // Disconnected: ignored. Connected to another host: its quotes count.
            "match_after_reconnect",
            vec![
                act(0, Act::Disconnect),
                icmp(port_unreachable.clone()),
                act(0, Act::ConnectOther),
                icmp(port_unreachable.clone()),
                icmp(Quote::new(
                    false,
                    3,
                    Addr::Ours,
                    PORT_A,
                    Addr::Other,
                    PEER_PORT,
                )),
                act(0, Act::Connect),
                act(0, Act::Stranger),
                act(0, Act::Datagram),
            ],
        ),
        (
            // More matches in one poll than ustack keeps: the last 16 count.
            "match_batch_overflow",
            (0..20)
                .map(|i| {
                    let code = if i % 2 == 0 { 3 } else { 1 };
                    let q = if i % 3 == 0 {
                        v6(code + 1, PORT_A6, PEER_PORT6)
                    } else {
                        v4(code, PORT_A, PEER_PORT)
                    };
                    if i < 19 {
                        batch(icmp(q))
                    } else {
                        icmp(q)
                    }
                })
                .collect(),
        ),
        (
            "match_close_and_rebind",
            vec![
                act(0, Act::CloseOrBind),
                icmp(port_unreachable.clone()),
                act(0, Act::CloseOrBind),
                act(0, Act::Connect),
                act(0, Act::ProbesOn),
                act(0, Act::Probe),
                icmp(port_unreachable.clone()),
            ],
        ),
        (
            // B connected: its errors count; disconnected again: they do not.
            "match_b_connected_then_disconnected",
            vec![
                act(2, Act::Connect),
                icmp(v4(3, PORT_B, PEER_PORT)),
                act(2, Act::Disconnect),
                icmp(v4(3, PORT_B, PEER_PORT)),
            ],
        ),
        (
            "finding_outer_dst_v4",
            vec![Op::new(Body::RawFrame(to_other4))],
        ),
        (
            "finding_outer_dst_v6",
            vec![Op::new(Body::RawFrame(to_other6))],
        ),
        (
            "nomatch_v4_port_mismatch",
            vec![icmp(v4(3, PORT_A, PEER_PORT + 1))],
        ),
        (
            "nomatch_v4_frag_needed",
            vec![icmp(v4(4, PORT_A, PEER_PORT))],
        ),
        ("nomatch_v4_later_fragment", vec![icmp(later_fragment)]),
        (
            "nomatch_v4_short_quote",
            vec![icmp(Quote {
                keep: 20 + 3,
                ..port_unreachable.clone()
            })],
        ),
        (
            "nomatch_v4_tcp_quote",
            vec![icmp(Quote {
                proto: Some(6),
                ..port_unreachable.clone()
            })],
        ),
        (
            "nomatch_v4_not_ours",
            vec![icmp(Quote::new(
                false,
                3,
                Addr::Other,
                PORT_A,
                Addr::Peer,
                PEER_PORT,
            ))],
        ),
        ("nomatch_unconnected", vec![icmp(v4(3, PORT_B, PEER_PORT))]),
        (
            "nomatch_v6_mapped_source",
            vec![icmp(Quote::new(
                true,
                4,
                Addr::Special4,
                PORT_A,
                Addr::Special5,
                PEER_PORT,
            ))],
        ),
        (
            "nomatch_v6_extension_header",
            vec![icmp(Quote {
                options: Some(0),
                ..v6(4, PORT_A6, PEER_PORT6)
            })],
        ),
        (
            "nomatch_v6_wrong_family",
            vec![icmp(v6(4, PORT_A, PEER_PORT))],
        ),
    ]
}

fn single(ctl: u8, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, ctl, frame);
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    let path = dir.join(name);
    fs::write(&path, data).expect("write seed");
    println!("  {} ({} bytes)", path.display(), data.len());
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));

    let syn4 = frames::tcp4(seg(40000, PORT, TcpControl::Syn, 1, None, &[]));
    let syn6 = frames::tcp6(seg(40000, PORT, TcpControl::Syn, 1, None, &[]));
    let data4 = frames::tcp4(seg(40000, PORT, TcpControl::Psh, 2, Some(99), b"payload"));
    let rst4 = frames::tcp4(seg(40000, PORT, TcpControl::Rst, 2, Some(99), &[]));
    let udp4 = frames::udp4(40001, PORT, b"udp to port 7");
    let udp6 = frames::udp6(40001, PORT, b"udp6 to port 7");
    let arp = frames::arp_request();
    let ping4 = frames::ping4(b"ping");
    let ping6 = frames::ping6(b"ping6");
    let (unreachable4, _) = Quote::new(false, 3, Addr::Ours, PORT_A, Addr::Peer, PEER_PORT).frame();
    let (unreachable6, _) =
        Quote::new(true, 4, Addr::Ours, PORT_A6, Addr::Peer, PEER_PORT6).frame();

    let dir = root.join("ingress_classify");
    println!("ingress_classify:");
    for (name, f) in [
        ("arp_request", &arp),
        ("tcp4_syn_port7", &syn4),
        ("tcp4_data", &data4),
        ("tcp4_rst", &rst4),
        ("tcp6_syn_port7", &syn6),
        ("udp4_port7", &udp4),
        ("udp6_port7", &udp6),
        ("icmp4_echo", &ping4),
        ("icmp6_echo", &ping6),
        ("ndisc_solicit", &frames::ndisc_solicit()),
        ("icmp4_port_unreachable", &unreachable4),
        ("icmp6_port_unreachable", &unreachable6),
    ] {
        write(&dir, name, f);
    }

    let dir = root.join("stack_ingress");
    println!("stack_ingress:");
    write(&dir, "arp_request", &single(1, &arp));
    write(&dir, "tcp4_syn_port7", &single(1, &syn4));
    write(&dir, "tcp6_syn_port7", &single(1, &syn6));
    write(&dir, "udp4_port7", &single(1 | ctl::UDP_SEND, &udp4));
    write(&dir, "icmp4_echo", &single(1, &ping4));
    let ns = frames::ndisc_solicit();
    write(&dir, "ndisc_solicit", &single(1, &ns));
    let mut seed = single(1, &ns);
    encode(&mut seed, 1 | ctl::UDP_SEND, &udp6);
    write(&dir, "udp6_port7", &seed);
    let mut seed = single(1, &ns);
    encode(&mut seed, 1, &ping6);
    write(&dir, "icmp6_echo", &seed);

    let (seed, read) = passive_conversation(false);
    println!("  passive IPv4 conversation: {read} bytes read by the application");
    assert!(
        read > 0,
        "the IPv4 handshake seed did not reach the application"
    );
    write(&dir, "tcp4_passive_conversation", &seed);

    let (seed, read) = passive_conversation(true);
    println!("  passive IPv6 conversation: {read} bytes read by the application");
    assert!(
        read > 0,
        "the IPv6 handshake seed did not reach the application"
    );
    write(&dir, "tcp6_passive_conversation", &seed);

    let (seed, read) = active_conversation();
    println!("  active IPv4 conversation: {read} bytes read by the application");
    assert!(read > 0, "the connect seed did not reach the application");
    write(&dir, "tcp4_active_conversation", &seed);

    let (seed, deferred) = syn_flood();
    println!("  SYN flood: {deferred} SYNs deferred");
    write(&dir, "tcp4_syn_flood", &seed);

    let dir = root.join("udp_icmp");
    println!("udp_icmp:");
    for (name, ops) in udp_icmp_seeds() {
        let data = udp_icmp::encode(&ops);
        assert_eq!(
            udp_icmp::ops(&data),
            ops,
            "{name}: the encoding does not read back"
        );
        let report = udp_icmp::run(&data);
        println!("  {name}: {report:?}");
        write(&dir, name, &data);
    }
}
