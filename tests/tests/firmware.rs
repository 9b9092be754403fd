//! The bare-metal firmware (`examples/firmware`) on QEMU's `mps2-an385` (Cortex-M3, SMSC
//! LAN9118), reached from the Linux kernel over a TAP interface: TCP echo of 256 KiB, the
//! length-prefixed session echo, and the WebSocket echo from tungstenite, all byte-exact;
//! the kernel's ping; and, since the firmware is built without ustack's `udp` and `ipv6`
//! features, a UDP datagram refused with ICMP protocol unreachable. Afterwards the stack
//! high-water mark the firmware reports must lie inside the region it painted (the figure
//! BENCHMARKS.md states).
//!
//! The test builds the firmware (its own Cargo workspace, target `thumbv7m-none-eabi`),
//! creates a namespace holding the TAP and runs QEMU inside it, so the host side of the
//! link exists only there. QEMU is killed and the TAP removed even when the test fails.

#[path = "firmware/qemu.rs"]
mod qemu;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use ustack_tests::{privileged, random_bytes, NetNs, STACK_IP};

use qemu::Firmware;
use support::{echo_addr, echo_connect};

/// Every client read or write gives up after this; the whole test stays bounded.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&SocketAddr::from((STACK_IP, port)), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the firmware's port {port}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// 256 KiB through the echo on port 7, written while a second thread reads it back.
fn tcp_echo_256_kib() {
    let data = random_bytes(9, 256 * 1024);
    let got = echo_connect(echo_addr(), &data, IO_TIMEOUT).expect("the TCP echo");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the TCP echo differs");
}

/// Packages of 0 to 8,192 bytes, each a big-endian u32 length and the body, echoed in order.
fn session_echo() {
    let mut s = connect(9000);
    for (i, len) in [0usize, 1, 100, 1460, 4000, 8192].into_iter().enumerate() {
        let body = random_bytes(100 + i as u64, len);
        let mut pkg = (len as u32).to_be_bytes().to_vec();
        pkg.extend_from_slice(&body);
        s.write_all(&pkg).unwrap();
        let mut back = vec![0u8; pkg.len()];
        s.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("package of {len} bytes: {e}"));
        assert!(back == pkg, "package of {len} bytes came back different");
    }
}

/// Text and binary messages through the WebSocket echo, with tungstenite as the client.
fn websocket_echo() {
    use tungstenite::Message;
    let stream = connect(8080);
    let url = format!("ws://{STACK_IP}:8080/");
    let (mut ws, resp) = tungstenite::client(url.as_str(), stream).expect("WebSocket upgrade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello, firmware")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello, firmware"));
    for (i, len) in [1usize, 125, 126, 1000, 8000].into_iter().enumerate() {
        let m = random_bytes(200 + i as u64, len);
        ws.send(Message::binary(m.clone())).unwrap();
        assert_eq!(
            ws.read().unwrap(),
            Message::binary(m),
            "message of {len} bytes"
        );
    }
    ws.close(None).unwrap();
    match ws.read() {
        Ok(Message::Close(frame)) => {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
        }
        other => panic!("expected the close echo, got {other:?}"),
    }
}

/// The kernel's ping gets its replies (smoltcp's automatic ICMP echo reply).
fn kernel_ping() {
    let out = std::process::Command::new("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5", &STACK_IP.to_string()])
        .output()
        .expect("ping is missing; install it: apt-get install iputils-ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3 received"),
        "ping 10.7.0.2:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Without the `udp` feature there is no UDP in the firmware at all: smoltcp answers a
/// datagram with ICMP protocol unreachable, which Linux reports on a connected socket as
/// ENOPROTOOPT (not ECONNREFUSED, which would mean port unreachable).
fn udp_is_refused_by_the_tcp_only_build() {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect((STACK_IP, 9000)).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.send(b"anyone there?").unwrap();
    let err = s
        .recv(&mut [0u8; 64])
        .expect_err("a TCP-only firmware answered a UDP datagram");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOPROTOOPT),
        "expected ICMP protocol unreachable, got {err}"
    );
}

/// The largest `stack: N bytes used` the firmware printed.
fn stack_high_water(log: &str) -> usize {
    log.lines()
        .filter_map(|l| l.strip_prefix("stack: ")?.strip_suffix(" bytes used"))
        .map(|n| n.parse::<usize>().expect("a stack report's byte count"))
        .max()
        .unwrap_or_else(|| panic!("no stack report in the firmware's output:\n{log}"))
}

#[test]
fn firmware_on_qemu_serves_tcp_session_and_websocket_echo_and_refuses_udp_over_tap() {
    if !privileged() {
        return;
    }
    let elf = qemu::build();
    let ns = NetNs::new();
    let mut fw = Firmware::boot(&ns, &elf);
    ns.run(|| {
        tcp_echo_256_kib();
        session_echo();
        websocket_echo();
        kernel_ping();
        udp_is_refused_by_the_tcp_only_build();
    });
    // Two of the firmware's stack checks (every 250 ms) after the traffic.
    fw.read_for(Duration::from_millis(600));
    let log = fw.stop();
    assert!(log.contains("echo: #1 from 10.7.0.1"), "{log}");
    let stack = stack_high_water(&log);
    // Below the 64 KiB the firmware paints, or the measurement ran off its end.
    assert!(
        stack > 0 && stack < 64 * 1024,
        "stack high-water {stack}:\n{log}"
    );
    eprintln!("firmware stack high-water after the traffic: {stack} bytes");
    assert!(log.contains("ws: open from 10.7.0.1"), "{log}");
    assert!(
        !log.contains("PANIC") && !log.contains("HARDFAULT"),
        "{log}"
    );
}
