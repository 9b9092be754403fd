//! UDP and ICMP against the Linux kernel over a TAP link in a private network namespace.

mod support;

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use support::{echo_addr, EchoServer};
use ustack::Config;
use ustack_tests::{privileged, TapLink, HOST_IP, HOST_IP6, STACK_IP, STACK_IP6};

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn kernel_udp_datagrams_are_echoed_in_order() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let server = EchoServer::start(link.take_device(), 4);
    let replies = link.ns.run(|| {
        let s = UdpSocket::bind((HOST_IP, 0)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.connect(echo_addr()).unwrap();
        let mut replies = Vec::new();
        for i in 0..20u8 {
            let msg = vec![i; 1 + usize::from(i) * 50];
            s.send(&msg).unwrap();
            let mut buf = [0u8; 2048];
            let n = s.recv(&mut buf).expect("echo reply");
            replies.push(buf[..n].to_vec());
        }
        replies
    });
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r, &vec![i as u8; 1 + i * 50]);
    }
    let (_, echo) = server.stop();
    assert_eq!(echo.udp_datagrams, 20);
}

/// A kernel socket connected to a closed ustack UDP port sends once; ustack answers with ICMP
/// port unreachable, which the kernel turns into ECONNREFUSED on the next `recv`.
fn kernel_send_to_a_closed_port_is_refused(
    mut link: TapLink,
    config: Config,
    host: IpAddr,
    stack: IpAddr,
) {
    let server = EchoServer::start_with(config, link.take_device(), 4);
    let err = link.ns.run(|| {
        let s = UdpSocket::bind((host, 0)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.connect(SocketAddr::from((stack, 9))).unwrap();
        s.send(b"anyone there?").unwrap();
        let mut buf = [0u8; 64];
        s.recv(&mut buf).expect_err("nothing listens on UDP 9")
    });
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    drop(server);
}

#[test]
fn kernel_connected_udp_to_a_closed_port_gets_econnrefused() {
    if !privileged() {
        return;
    }
    let (host, stack) = (HOST_IP.into(), STACK_IP.into());
    kernel_send_to_a_closed_port_is_refused(TapLink::new(), support::config(), host, stack);
}

#[test]
fn kernel_connected_udp_to_a_closed_port_over_ipv6_gets_econnrefused() {
    if !privileged() {
        return;
    }
    let (host, stack) = (HOST_IP6.into(), STACK_IP6.into());
    kernel_send_to_a_closed_port_is_refused(
        TapLink::with_ipv6(),
        support::config_v6(),
        host,
        stack,
    );
}

#[test]
fn kernel_ping_is_answered() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let server = EchoServer::start(link.take_device(), 4);
    let out = link.ns.exec(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", &STACK_IP.to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ping failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 packets transmitted, 3 received"), "{text}");
    let (stack, _) = server.stop();
    // ARP request + 3 echo requests at least.
    assert!(stack.stats().rx_frames >= 4);
    assert_eq!(stack.stats().rx_dropped(), 0);
}
