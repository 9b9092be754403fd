//! TCP against the Linux kernel over a TAP link in a private network namespace.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::{assert_clean_close, echo_addr, echo_connect, EchoServer};
use ustack::runtime::{PollMode, SharedStack};
use ustack::Stack;
use ustack_drivers::PcapRecorder;
use ustack_tests::{privileged, random_bytes, TapLink, HOST_IP};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn kernel_client_echoes_8_mib_and_both_sides_close_with_fin() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let recorder = PcapRecorder::new(link.take_device(), Vec::new()).unwrap();
    let server = EchoServer::start(recorder, 8);
    let data = random_bytes(1, 8 * 1024 * 1024);
    let echoed = link.ns.run(|| echo_connect(echo_addr(), &data, TIMEOUT));
    let echoed = echoed.expect("echo exchange");
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echoed bytes differ from what was sent");
    // Give ustack time to see the final ACK of its FIN.
    std::thread::sleep(Duration::from_millis(200));
    let (stack, echo) = server.stop();
    assert_eq!(
        (echo.accepted, echo.closed, echo.tcp_bytes),
        (1, 1, data.len() as u64)
    );
    let (_, pcap) = Stack::into_device(stack).into_parts();
    assert_clean_close(&pcap[..]);
}

#[test]
fn sixty_four_concurrent_clients_with_backlog_eight_are_all_served() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let server = EchoServer::start(link.take_device(), 8);
    const CLIENTS: usize = 64;
    let results = link.ns.run(|| {
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let threads: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let data = random_bytes(100 + i as u64, 4096 + i);
                    barrier.wait();
                    let got = echo_connect(echo_addr(), &data, TIMEOUT)?;
                    Ok::<bool, std::io::Error>(got == data)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("client thread"))
            .collect::<Vec<_>>()
    });
    let failures: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !matches!(r, Ok(true)))
        .collect();
    assert!(failures.is_empty(), "clients that failed: {failures:?}");
    std::thread::sleep(Duration::from_millis(100));
    let (stack, echo) = server.stop();
    assert_eq!(echo.accepted, CLIENTS as u64);
    assert_eq!(stack.stats().tcp_accepted, CLIENTS as u64);
    assert_eq!(
        stack.stats().tcp_syn_backlog_full,
        0,
        "no SYN may be reset while the application accepts"
    );
}

#[test]
fn ustack_connects_to_a_kernel_listener_and_exchanges_1_mib() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let listener = link
        .ns
        .run(|| TcpListener::bind((HOST_IP, 0)).expect("kernel listener"));
    let port = listener.local_addr().unwrap().port();
    // The kernel side echoes whatever it gets, then closes.
    let kernel = std::thread::spawn(move || -> std::io::Result<(u64, SocketAddr)> {
        let (mut s, peer) = listener.accept()?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let mut r = s.try_clone()?;
        let n = std::io::copy(&mut r, &mut s)?;
        s.shutdown(std::net::Shutdown::Write)?;
        Ok((n, peer))
    });
    let stack = Stack::new(
        support::config(),
        link.take_device(),
        ustack::runtime::now(),
    )
    .unwrap();
    let shared = SharedStack::spawn(stack, PollMode::Block).unwrap();
    let mut conn = shared
        .connect(SocketAddr::from((HOST_IP, port)))
        .expect("ustack connect");
    conn.set_read_timeout(Some(TIMEOUT));
    let data = random_bytes(3, 1024 * 1024);
    let mut got = Vec::new();
    // Write and read in turns so neither side's buffers fill up.
    for chunk in data.chunks(64 * 1024) {
        conn.write_all(chunk).unwrap();
        let mut part = vec![0u8; chunk.len()];
        conn.read_exact(&mut part).unwrap();
        got.extend_from_slice(&part);
    }
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(got == data, "bytes echoed by the kernel differ");
    let (n, peer) = kernel.join().unwrap().unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(peer.ip(), std::net::IpAddr::from(ustack_tests::STACK_IP));
    assert!(
        peer.port() >= 49152,
        "ephemeral port {} outside 49152..",
        peer.port()
    );
    drop(conn);
    shared.shutdown();
}

#[test]
fn kernel_connect_to_a_closed_ustack_port_is_refused() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let server = EchoServer::start(link.take_device(), 4);
    let err = link.ns.run(|| {
        TcpStream::connect_timeout(&SocketAddr::from((ustack_tests::STACK_IP, 81)), TIMEOUT)
            .expect_err("port 81 is closed")
    });
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    drop(server);
}

#[test]
fn kernel_client_echoes_over_ipv6() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::with_ipv6();
    let server = EchoServer::start_with(support::config_v6(), link.take_device(), 4);
    let data = random_bytes(16, 256 * 1024);
    let addr = SocketAddr::from((ustack_tests::STACK_IP6, 7));
    let echoed = link.ns.run(|| echo_connect(addr, &data, TIMEOUT));
    assert!(echoed.unwrap() == data, "IPv6 echo differs");
    let (_, echo) = server.stop();
    assert_eq!(echo.tcp_bytes, data.len() as u64);
}
