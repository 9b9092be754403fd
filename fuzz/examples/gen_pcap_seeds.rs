//! Writes the `pcap_replay` seeds into `seeds/pcap_replay/`.
//!
//! ```sh
//! cd fuzz && cargo run --example gen_pcap_seeds                 # crafted + recorded (root)
//! cd fuzz && cargo run --example gen_pcap_seeds -- --crafted-only
//! ```
//!
//! Recorded seeds (`real_*.pcap`, needs root, iproute2, ping and python3): a ustack stack
//! with the fuzz configuration (10.0.0.1/24 and fd00::1/64, MAC 02:00:00:00:00:01) runs on a
//! TAP whose host side (10.0.0.2/24, fd00::2/64 where IPv6 is needed) is in a fresh network
//! namespace, while `PcapRecorder` records both directions:
//!
//! - `real_ping`, `real_udp_echo`, `real_tcp_echo`: TCP and UDP echo on port 7; the kernel
//!   pings it, sends UDP datagrams and holds a TCP conversation with it;
//! - `real_harness`: the stack of `stack_ingress`'s `Harness`, built the same way (listener
//!   on 7 with backlog 4, UDP on 7, a `connect` to 10.0.0.2:80, which the kernel resets) and
//!   with the same application (accept, read, close at end of stream, never write), so the
//!   kernel's acknowledgment numbers fit the harness's sequence numbers when its frames are
//!   replayed; TCP conversations over IPv4 and IPv6 and a UDP datagram answered with the
//!   harness's `UDP_SEND` reply;
//! - `real_session`: session `Engine`s (`Service::new(codec, echo)`) on ports 9000-9004
//!   (`LengthPrefixed` U16 BE, U16 LE, U32 BE, U32 LE, `Lines`), to which python3 writes
//!   packages in deliberately cut segments (`TCP_NODELAY`, a pause between writes);
//! - `real_udp_unreachable`: the stack sends UDP datagrams to closed ports over IPv4 and
//!   IPv6 (and TCP SYNs to a closed port), and the kernel answers with ICMP port unreachable
//!   (and RSTs).
//!
//! `examples/split_pcap_seeds.rs` (no root) turns these captures into the seeds of the
//! other targets. Crafted seeds: an empty file, a header only, a recording cut inside a
//! record, a forged huge length, an over-MTU record, a foreign link type, and a big-endian
//! nanosecond file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ustack::session::codec::{Codec, CodecError, LengthPrefixed, Lines};
use ustack::session::{Engine, EventListener, ServerOptions, Service, Session};
use ustack::smoltcp::phy::{Device, TxToken};
use ustack::smoltcp::time::Instant;
use ustack::smoltcp::wire::{IpAddress, IpEndpoint};
use ustack::{Error, Stack, TcpHandle, UdpHandle};
use ustack_drivers::{PcapRecorder, PipeLink, TapBuilder, TapDevice};
use ustack_fuzz::{BACKLOG, CONNECT_PORT, PEER_IP, PEER_IP6, PORT};

fn main() {
    let crafted_only = std::env::args().any(|a| a == "--crafted-only");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds/pcap_replay");
    std::fs::create_dir_all(&dir).expect("seed dir");
    crafted(&dir);
    if !crafted_only {
        recorded(&dir);
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
    println!("{name}: {} bytes", bytes.len());
}

/// A native-order pcap stream of `frames`, as `PcapRecorder` writes it.
fn record(frames: &[&[u8]]) -> Vec<u8> {
    let link = PipeLink::<8, 1514>::new();
    let (a, _b) = link.split();
    let mut rec = PcapRecorder::new(a, Vec::new()).expect("recorder");
    for (i, frame) in frames.iter().enumerate() {
        let tx = rec
            .transmit(Instant::from_millis(5 * i as i64))
            .expect("tx");
        tx.consume(frame.len(), |buf| buf.copy_from_slice(frame));
    }
    rec.into_parts().1
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 10, 0, 0, 2]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    f
}

fn crafted(dir: &Path) {
    let arp = arp_request();
    write(dir, "empty.pcap", b"");
    let header = record(&[]);
    write(dir, "header_only.pcap", &header);
    let two = record(&[&arp, &arp]);
    write(dir, "arp_twice.pcap", &two);
    write(dir, "truncated_in_record.pcap", &two[..two.len() - 10]);
    write(
        dir,
        "truncated_in_record_header.pcap",
        &two[..24 + 16 + arp.len() + 7],
    );
    let mut huge = record(&[&arp]);
    huge.extend_from_slice(&[0; 8]);
    huge.extend_from_slice(&u32::MAX.to_ne_bytes());
    huge.extend_from_slice(&u32::MAX.to_ne_bytes());
    huge.extend_from_slice(&arp);
    write(dir, "huge_length.pcap", &huge);
    let jumbo = vec![0x55; 2000];
    write(dir, "over_mtu.pcap", &record(&[&arp, &jumbo, &arp]));
    let mut raw_ip = two.clone();
    raw_ip[20..24].copy_from_slice(&101u32.to_ne_bytes());
    write(dir, "link_raw_ip.pcap", &raw_ip);
    // Big-endian, nanosecond resolution.
    let mut be = Vec::new();
    be.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
    be.extend_from_slice(&2u16.to_be_bytes());
    be.extend_from_slice(&4u16.to_be_bytes());
    be.extend_from_slice(&[0; 8]);
    be.extend_from_slice(&65535u32.to_be_bytes());
    be.extend_from_slice(&1u32.to_be_bytes());
    for (i, nanos) in [0u32, 999_999_999].into_iter().enumerate() {
        let len = arp.len() as u32;
        for field in [1_700_000_000 + i as u32, nanos, len, len] {
            be.extend_from_slice(&field.to_be_bytes());
        }
        be.extend_from_slice(&arp);
    }
    write(dir, "big_endian_nanos.pcap", &be);
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The temporary namespace, deleted when dropped: also when a recording panics, so a
/// failed run leaves no namespace behind (the TAPs delete themselves the same way).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A client running in the namespace; killed if still running when dropped.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `cmd` inside namespace `ns`.
fn in_ns(ns: &str, cmd: &[&str]) -> Client {
    Client(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .spawn()
            .expect("ip netns exec"),
    )
}

const UDP_CLIENT: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for msg in [b"hello", b"x" * 300, b""]:
    s.sendto(msg, ("10.0.0.1", 7))
    assert s.recvfrom(2048)[0] == msg
"#;

const TCP_CLIENT: &str = r#"
import socket
s = socket.create_connection(("10.0.0.1", 7), timeout=3)
for msg in [b"hello ustack\r\n", bytes(range(256)) * 4]:
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += s.recv(4096)
    assert got == msg
s.shutdown(socket.SHUT_WR)
assert s.recv(100) == b""
s.close()
"#;

/// Talks to the `stack_ingress` harness's application, which reads and never writes:
/// the client writes, closes its side and waits for the stack's FIN.
const HARNESS_CLIENT: &str = r#"
import socket, time
def talk(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((addr, 7))
    for msg in [b"hello ustack\r\n", b"GET / HTTP/1.1\r\nHost: ustack\r\n\r\n", bytes(range(256)) * 4]:
        s.sendall(msg)
        time.sleep(0.02)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(100) == b""
    s.close()
    time.sleep(0.1)
talk(socket.AF_INET, "10.0.0.1")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
u.sendto(b"hello ustack udp", ("10.0.0.1", 7))
assert u.recvfrom(100)[0] == b"ustack fuzz udp"
time.sleep(0.1)
talk(socket.AF_INET6, "fd00::1")
"#;

/// Writes packages to the session servers, cut into segments by `TCP_NODELAY` writes with
/// a pause between them: a header alone, a package split in two, several in one segment.
const SESSION_CLIENT: &str = r#"
import socket, struct, time
def lp(fmt):
    return lambda p: struct.pack(fmt, len(p)) + p
pkgs = [b"hello", b"", b"ustack session " * 20, bytes(range(256)), b'{"op":"ping","seq":1}', b"x" * 1500]
def conv(port, stream, cuts):
    s = socket.create_connection(("10.0.0.1", port), timeout=3)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    at = 0
    for n in cuts:
        s.sendall(stream[at:at + n])
        at += n
        time.sleep(0.02)
    s.sendall(stream[at:])
    time.sleep(0.05)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return got
cuts = [1, 2, 4, 30, 1, 310, 100]
for i, fmt in enumerate([">H", "<H", ">I", "<I"]):
    stream = b"".join(map(lp(fmt), pkgs))
    assert conv(9000 + i, stream, cuts[i % 2:]) == stream
lines = [b"hello\r\n", b"GET / HTTP/1.0\n", b"\r\n", b"ustack lines " * 30 + b"\r\n", b"PING :irc.example.net\r\n", b"a\rb\r\n"]
stream = b"".join(lines)
got = conv(9004, stream, [3, 4, 1, 20, 200])
assert got.count(b"\n") == len(lines), got
"#;

fn recorded(dir: &Path) {
    let ns = Netns::new(format!("ufzpc{}", std::process::id()));
    let v4 = ["10.0.0.2/24"];
    let v46 = ["10.0.0.2/24", "fd00::2/64"];
    let scenarios: [(&str, &[&str], Scenario); 6] = [
        (
            "real_ping.pcap",
            &v4,
            Scenario::Echo(vec!["ping", "-c", "3", "-i", "0.2", "10.0.0.1"]),
        ),
        (
            "real_udp_echo.pcap",
            &v4,
            Scenario::Echo(vec!["python3", "-c", UDP_CLIENT]),
        ),
        (
            "real_tcp_echo.pcap",
            &v4,
            Scenario::Echo(vec!["python3", "-c", TCP_CLIENT]),
        ),
        ("real_harness.pcap", &v46, Scenario::Harness),
        ("real_session.pcap", &v4, Scenario::Session),
        ("real_udp_unreachable.pcap", &v46, Scenario::Unreachable),
    ];
    for (i, (name, addrs, scenario)) in scenarios.into_iter().enumerate() {
        let mut tap = TapBuilder::new(&format!("ufzpc{i}"))
            .netns(&ns.0)
            .ipv6_autoconf(false);
        for a in addrs {
            tap = tap.host_addr(a);
        }
        let tap = tap.create().expect("TAP (run as root)");
        let rec = PcapRecorder::new(tap, Vec::new()).expect("recorder");
        let bytes = match scenario {
            Scenario::Echo(cmd) => run_echo(rec, &ns.0, &cmd),
            Scenario::Harness => run_harness(rec, &ns.0),
            Scenario::Session => run_session(rec, &ns.0),
            Scenario::Unreachable => run_unreachable(rec, &ns.0),
        };
        write(dir, name, &bytes);
    }
}

/// What runs on the stack side of one recording.
enum Scenario {
    /// Echo on TCP and UDP port 7, for the client command.
    Echo(Vec<&'static str>),
    /// The `stack_ingress` harness's stack and application, for [`HARNESS_CLIENT`].
    Harness,
    /// Session engines on ports 9000-9004, for [`SESSION_CLIENT`].
    Session,
    /// UDP to closed ports, no client.
    Unreachable,
}

type Rec = PcapRecorder<TapDevice, Vec<u8>>;

/// The recording stack's clock: real time since `start`, from 1 s (where the harnesses
/// start too).
fn clock(start: StdInstant) -> Instant {
    Instant::from_micros(start.elapsed().as_micros() as i64 + 1_000_000)
}

/// Calls `app` (which polls the stack and plays the application) every millisecond until
/// `cmd`, run in `ns`, has exited and 300 ms more have passed; returns the capture.
fn drive(
    mut stack: Stack<'_, Rec>,
    start: StdInstant,
    ns: &str,
    cmd: &[&str],
    mut app: impl FnMut(&mut Stack<'_, Rec>, Instant),
) -> Vec<u8> {
    let mut child = in_ns(ns, cmd);
    let mut done_at = None;
    let deadline = StdInstant::now() + StdDuration::from_secs(15);
    while done_at.is_none_or(|t: StdInstant| t.elapsed() < StdDuration::from_millis(300)) {
        assert!(StdInstant::now() < deadline, "{cmd:?} did not finish");
        app(&mut stack, clock(start));
        if done_at.is_none() {
            if let Some(status) = child.0.try_wait().expect("wait") {
                assert!(status.success(), "{cmd:?}: {status}");
                done_at = Some(StdInstant::now());
            }
        }
        std::thread::sleep(StdDuration::from_millis(1));
    }
    stack.into_device().into_parts().1
}

/// Runs an echo stack on `device` until `cmd` (in `ns`) exits, then returns the capture.
fn run_echo(device: Rec, ns: &str, cmd: &[&str]) -> Vec<u8> {
    let start = StdInstant::now();
    let mut stack = Stack::new(ustack_fuzz::config(), device, clock(start)).expect("stack");
    let listener = stack.listen(PORT, BACKLOG).expect("listen");
    let udp = stack.udp_bind(PORT).expect("udp_bind");
    let mut streams: Vec<TcpHandle> = Vec::new();
    let mut buf = vec![0u8; 4096];
    drive(stack, start, ns, cmd, |stack, now| {
        stack.poll(now);
        while stack.next_event().is_some() {}
        while let Ok(h) = stack.accept(listener) {
            streams.push(h);
        }
        streams.retain(|&h| loop {
            match stack.tcp_read(h, &mut buf) {
                Ok(0) => {
                    let _ = stack.tcp_close(h);
                    break false;
                }
                Ok(n) => {
                    let _ = stack.tcp_write(h, &buf[..n]);
                }
                Err(Error::WouldBlock) => break true,
                Err(_) => break false,
            }
        });
        while let Ok((n, meta)) = stack.udp_recv_from(udp, &mut buf) {
            let _ = stack.udp_send_to(udp, &buf[..n], meta.remote);
        }
        stack.poll(now);
    })
}

/// The `stack_ingress` harness (`ustack_fuzz::Harness`) on a real link: built in the same
/// order, so the same random draws give the same initial sequence numbers, and with the
/// same application, so the stack sends the same segments. The UDP datagram is answered
/// as the harness's `UDP_SEND` control answers it.
fn run_harness(device: Rec, ns: &str) -> Vec<u8> {
    let start = StdInstant::now();
    let mut stack = Stack::new(ustack_fuzz::config(), device, clock(start)).expect("stack");
    let listener = stack.listen(PORT, BACKLOG).expect("listen");
    let udp = stack.udp_bind(PORT).expect("udp_bind");
    let conn = stack
        .connect(IpEndpoint::new(IpAddress::Ipv4(PEER_IP), CONNECT_PORT))
        .expect("connect");
    let mut streams = vec![conn];
    let mut buf = vec![0u8; 4096];
    // Let the connect's ARP, SYN and the kernel's RST go by before the client starts.
    let settle = StdInstant::now() + StdDuration::from_millis(300);
    while StdInstant::now() < settle {
        harness_poll(
            &mut stack,
            clock(start),
            listener,
            udp,
            &mut streams,
            &mut buf,
        );
        std::thread::sleep(StdDuration::from_millis(1));
    }
    let cmd = ["python3", "-c", HARNESS_CLIENT];
    drive(stack, start, ns, &cmd, |stack, now| {
        harness_poll(stack, now, listener, udp, &mut streams, &mut buf)
    })
}

/// One `Harness::step` without a frame of its own: poll, accept, read every stream
/// (closing it at end of stream or error), read UDP (answering as `UDP_SEND` does), poll.
fn harness_poll(
    stack: &mut Stack<'_, Rec>,
    now: Instant,
    listener: ustack::TcpListener,
    udp: UdpHandle,
    streams: &mut Vec<TcpHandle>,
    buf: &mut [u8],
) {
    stack.poll(now);
    while stack.next_event().is_some() {}
    while let Ok(h) = stack.accept(listener) {
        streams.push(h);
    }
    streams.retain(|&h| loop {
        match stack.tcp_read(h, buf) {
            Ok(0) => {
                let _ = stack.tcp_close(h);
                break false;
            }
            Ok(_) => {}
            Err(Error::WouldBlock) => break true,
            Err(_) => {
                let _ = stack.tcp_close(h);
                break false;
            }
        }
    });
    let mut peer = None;
    while let Ok((_, meta)) = stack.udp_recv_from(udp, buf) {
        peer = Some(meta.remote);
    }
    if let Some(peer) = peer {
        let _ = stack.udp_send_to(udp, b"ustack fuzz udp", peer);
    }
    stack.poll(now);
}

/// Echoes every package, as `session_engine`'s listener does.
struct Echo;

impl<C> EventListener<C> for Echo
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    fn on_message(&mut self, s: &mut Session<'_, C>, pkg: &[u8]) {
        let _ = s.write_pkg(&pkg);
    }
}

/// Session engines with each shipped codec, on ports 9000 (U16 BE), 9001 (U16 LE), 9002
/// (U32 BE), 9003 (U32 LE) and 9004 (lines), for [`SESSION_CLIENT`].
fn run_session(device: Rec, ns: &str) -> Vec<u8> {
    let start = StdInstant::now();
    let mut stack = Stack::new(ustack_fuzz::config(), device, clock(start)).expect("stack");
    let mut engine = Engine::new(&stack, clock(start));
    // A small backlog: five listeners share the configuration's 64 sockets.
    let opts = || ServerOptions {
        backlog: 2,
        ..ServerOptions::default()
    };
    let mut serve = |port, proto: ustack::session::ProtocolRef<'static>| {
        engine
            .tcp_server(&mut stack, port, opts(), proto)
            .expect("tcp_server");
    };
    serve(9000, Service::new(LengthPrefixed::U16_BE, Echo).into());
    serve(9001, Service::new(LengthPrefixed::U16_LE, Echo).into());
    serve(9002, Service::new(LengthPrefixed::U32_BE, Echo).into());
    serve(9003, Service::new(LengthPrefixed::U32_LE, Echo).into());
    serve(9004, Service::new(Lines::new(), Echo).into());
    let cmd = ["python3", "-c", SESSION_CLIENT];
    drive(stack, start, ns, &cmd, |stack, now| {
        engine.poll(stack, now);
    })
}

/// UDP datagrams from ports 4123 and 4124 to closed ports of the namespace (IPv4 and
/// IPv6), and TCP connections to a closed port: the kernel answers with ICMP port
/// unreachable and RST.
fn run_unreachable(device: Rec, ns: &str) -> Vec<u8> {
    let start = StdInstant::now();
    let mut stack = Stack::new(ustack_fuzz::config(), device, clock(start)).expect("stack");
    let peers = [
        (4123, IpEndpoint::new(IpAddress::Ipv4(PEER_IP), 9999)),
        (4124, IpEndpoint::new(IpAddress::Ipv6(PEER_IP6), 9999)),
    ];
    let mut socks = Vec::new();
    for (port, to) in peers {
        let h = stack.udp_bind(port).expect("udp_bind");
        stack
            .udp_send_to(h, b"ustack datagram to a closed port", to)
            .expect("udp_send_to");
        let _ = stack.connect(to);
        socks.push(h);
    }
    let mut buf = vec![0u8; 2048];
    let cmd = ["sleep", "1"];
    drive(stack, start, ns, &cmd, |stack, now| {
        stack.poll(now);
        while stack.next_event().is_some() {}
        for &h in &socks {
            // The ICMP error comes out once, then nothing: bounded all the same.
            for _ in 0..16 {
                if let Err(Error::WouldBlock) = stack.udp_recv_from(h, &mut buf) {
                    break;
                }
            }
        }
        stack.poll(now);
    })
}
