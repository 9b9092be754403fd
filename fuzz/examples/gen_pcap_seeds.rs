//! Writes the `pcap_replay` seeds into `seeds/pcap_replay/`.
//!
//! ```sh
//! cd fuzz && cargo run --example gen_pcap_seeds                 # crafted + recorded (root)
//! cd fuzz && cargo run --example gen_pcap_seeds -- --crafted-only
//! ```
//!
//! Recorded seeds (`real_*.pcap`, needs root, iproute2, ping and python3): a ustack stack
//! with the fuzz configuration (10.0.0.1/24, MAC 02:00:00:00:00:01, TCP and UDP echo on
//! port 7) runs on a TAP whose host side (10.0.0.2/24) is in a fresh network namespace;
//! the kernel there pings it, sends UDP datagrams and holds a TCP conversation with it,
//! while `PcapRecorder` records both directions. Crafted seeds: an empty file, a header
//! only, a recording cut inside a record, a forged huge length, an over-MTU record, a
//! foreign link type, and a big-endian nanosecond file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ustack::smoltcp::phy::{Device, TxToken};
use ustack::smoltcp::time::Instant;
use ustack::{Error, Stack, TcpHandle};
use ustack_drivers::{PcapRecorder, PipeLink, TapBuilder};
use ustack_fuzz::{BACKLOG, PORT};

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

/// Runs `cmd` inside namespace `ns`.
fn in_ns(ns: &str, cmd: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .spawn()
        .expect("ip netns exec")
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

fn recorded(dir: &Path) {
    let ns = format!("ufzpc{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let scenarios: [(&str, Vec<&str>); 3] = [
        (
            "real_ping.pcap",
            vec!["ping", "-c", "3", "-i", "0.2", "10.0.0.1"],
        ),
        ("real_udp_echo.pcap", vec!["python3", "-c", UDP_CLIENT]),
        ("real_tcp_echo.pcap", vec!["python3", "-c", TCP_CLIENT]),
    ];
    for (i, (name, cmd)) in scenarios.iter().enumerate() {
        let tap = TapBuilder::new(&format!("ufzpc{i}"))
            .netns(&ns)
            .host_addr("10.0.0.2/24")
            .ipv6_autoconf(false)
            .create()
            .expect("TAP (run as root)");
        let rec = PcapRecorder::new(tap, Vec::new()).expect("recorder");
        let bytes = run_echo(rec, &ns, cmd);
        write(dir, name, &bytes);
    }
    ip(&["netns", "del", &ns]);
}

/// Runs an echo stack on `device` until `cmd` (in `ns`) exits, then returns the capture.
fn run_echo<D: Device>(device: PcapRecorder<D, Vec<u8>>, ns: &str, cmd: &[&str]) -> Vec<u8> {
    let start = StdInstant::now();
    let clock = || Instant::from_micros(start.elapsed().as_micros() as i64 + 1_000_000);
    let mut stack = Stack::new(ustack_fuzz::config(), device, clock()).expect("stack");
    let listener = stack.listen(PORT, BACKLOG).expect("listen");
    let udp = stack.udp_bind(PORT).expect("udp_bind");
    let mut streams: Vec<TcpHandle> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut child = in_ns(ns, cmd);
    let mut done_at = None;
    let deadline = StdInstant::now() + StdDuration::from_secs(10);
    while done_at.is_none_or(|t: StdInstant| t.elapsed() < StdDuration::from_millis(300)) {
        if StdInstant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish");
        }
        stack.poll(clock());
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
        stack.poll(clock());
        if done_at.is_none() {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "{cmd:?}: {status}");
                done_at = Some(StdInstant::now());
            }
        }
        std::thread::sleep(StdDuration::from_millis(1));
    }
    let _ = child.wait(); // already exited: reaps it
    stack.into_device().into_parts().1
}
