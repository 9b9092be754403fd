//! Connected UDP and the dial check against the Linux kernel over a TAP link in a private
//! network namespace: ICMP errors reported as ECONNREFUSED / EHOSTUNREACH, the dial probe
//! dropped on both ends, foreign datagrams filtered, and the misuse errors of connected and
//! unconnected sockets.

mod support;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket as KernelUdp};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ustack::runtime::{PollMode, SharedStack, UdpSocket};
use ustack::smoltcp::time::Duration as StackDuration;
use ustack::smoltcp::wire::IpEndpoint;
use ustack::{Config, DialOptions, Error, Stack, Stats, DEFAULT_UDP_PROBE};
use ustack_drivers::TapDevice;
use ustack_tests::{privileged, TapLink, HOST_IP, HOST_IP6, STACK_IP};

/// Upper bound for anything that should happen at once; only there to avoid hangs.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a socket must stay silent to count as "nothing more arrived".
const QUIET: Duration = Duration::from_millis(300);
/// A UDP port nothing listens on in a fresh namespace.
const CLOSED_PORT: u16 = 9;
/// Tells the kernel echo thread to stop.
const BYE: &[u8] = b"bye";

/// A ustack on the link's device, polled by its own thread.
fn spawn_stack(config: Config, link: &mut TapLink) -> SharedStack<TapDevice> {
    let stack = Stack::new(config, link.take_device(), ustack::runtime::now()).expect("stack");
    SharedStack::spawn(stack, PollMode::Block).expect("poll thread")
}

fn stats(shared: &SharedStack<TapDevice>) -> Stats {
    shared.with(|s| s.stats())
}

/// The `ustack::Error` inside an `io::Error` that came from the blocking API.
fn inner(e: &std::io::Error) -> Option<Error> {
    e.get_ref()?.downcast_ref::<Error>().copied()
}

/// A kernel UDP socket bound to `addr` inside the link's namespace, with a read timeout.
fn kernel_socket(link: &TapLink, addr: SocketAddr) -> KernelUdp {
    let s = link
        .ns
        .run(|| KernelUdp::bind(addr))
        .expect("bind kernel socket");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Receives one datagram on a kernel socket, or panics after [`TIMEOUT`].
fn kernel_recv(s: &KernelUdp) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("kernel socket: datagram");
    (buf[..n].to_vec(), from)
}

/// Asserts that nothing more arrives on a kernel socket for [`QUIET`].
fn kernel_quiet(s: &KernelUdp) {
    s.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("kernel socket: expected silence, got {other:?}"),
    }
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
}

/// The ustack socket's address as the kernel sees it.
fn stack_addr(sock: &UdpSocket<TapDevice>) -> SocketAddr {
    SocketAddr::from((STACK_IP, sock.local_port().unwrap()))
}

/// What a kernel echo thread saw.
struct Echoed {
    /// Every datagram it echoed, in order, with its sender.
    datagrams: Vec<(Vec<u8>, SocketAddr)>,
}

/// A kernel thread that echoes every datagram on `sock` back to its sender until it gets
/// [`BYE`]. With a `gate`, it holds the first datagram's echo until the gate opens.
fn kernel_echo(sock: KernelUdp, gate: Option<mpsc::Receiver<()>>) -> JoinHandle<Echoed> {
    std::thread::spawn(move || {
        let mut datagrams = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = sock.recv_from(&mut buf).expect("echo thread: datagram");
            if &buf[..n] == BYE {
                return Echoed { datagrams };
            }
            if datagrams.is_empty() {
                if let Some(gate) = &gate {
                    gate.recv_timeout(TIMEOUT).expect("echo thread: gate opens");
                }
            }
            sock.send_to(&buf[..n], from).expect("echo thread: send");
            datagrams.push((buf[..n].to_vec(), from));
        }
    })
}

/// Datagram `seq` of the echo exchange: the sequence number and a filler that depends on
/// it, in one of a few sizes up to the largest unfragmented payload on a 1500-byte link.
fn payload(seq: u32) -> Vec<u8> {
    const SIZES: [usize; 6] = [4, 5, 64, 555, 1024, 1472];
    let len = SIZES[seq as usize % SIZES.len()];
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((4..len).map(|i| (seq as usize * 31 + i * 7) as u8));
    p
}

/// Sends `count` datagrams on a connected ustack socket with up to `window` in flight, and
/// asserts that the echoes come back byte-exact, in order and without the probe.
fn exchange(sock: &UdpSocket<TapDevice>, count: u32, window: u32) {
    let mut buf = [0u8; 2048];
    let (mut sent, mut received) = (0u32, 0u32);
    while received < count {
        while sent < count && sent - received < window {
            sock.send(&payload(sent)).expect("ustack send");
            sent += 1;
        }
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("echo {received} of {count}: {e}"));
        assert_ne!(
            &buf[..n],
            DEFAULT_UDP_PROBE,
            "the echoed probe was delivered"
        );
        assert!(
            buf[..n] == payload(received)[..],
            "echo {received} differs: got {} bytes starting {:?}",
            n,
            &buf[..n.min(8)]
        );
        received += 1;
    }
}

/// The core API says `WouldBlock` (nothing queued) for the socket.
fn assert_nothing_queued(shared: &SharedStack<TapDevice>, sock: &UdpSocket<TapDevice>) {
    let h = sock.handle();
    let mut buf = [0u8; 2048];
    assert_eq!(
        shared.with(|s| s.udp_recv(h, &mut buf)),
        Err(Error::WouldBlock)
    );
}

#[test]
fn dial_to_a_closed_kernel_port_is_refused() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let shared = spawn_stack(support::config(), &mut link);
    // A probe timeout far longer than the ICMP round trip: a dial that passes on silence
    // instead of failing on the ICMP error would show up as Ok.
    let err = UdpSocket::dial(&shared, SocketAddr::from((HOST_IP, CLOSED_PORT)), TIMEOUT)
        .err()
        .expect("nothing listens on the kernel's UDP 9");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(inner(&err), Some(Error::ConnectionRefused));
    let st = stats(&shared);
    assert_eq!(st.udp_icmp_errors, 1);
    assert_eq!(st.udp_probes_dropped, 0);
    shared.shutdown();
}

#[test]
fn dial_to_a_closed_kernel_port_over_ipv6_is_refused() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::with_ipv6();
    let shared = spawn_stack(support::config_v6(), &mut link);
    let err = UdpSocket::dial(&shared, SocketAddr::from((HOST_IP6, CLOSED_PORT)), TIMEOUT)
        .err()
        .expect("nothing listens on the kernel's UDP 9");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(inner(&err), Some(Error::ConnectionRefused));
    assert_eq!(stats(&shared).udp_icmp_errors, 1);
    shared.shutdown();
}

#[test]
fn dial_to_a_kernel_echo_drops_the_echoed_probe_and_exchanges_1000_datagrams() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let echo = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let echo_addr = echo.local_addr().unwrap();
    let echoing = kernel_echo(echo, None);
    let shared = spawn_stack(support::config(), &mut link);

    // The echo answers at once, so the dial passes on that reply long before its timeout,
    // and the reply it passed on is the echoed probe, already dropped.
    let mut sock = UdpSocket::dial(&shared, echo_addr, TIMEOUT).expect("dial the kernel echo");
    assert_eq!(
        stats(&shared).udp_probes_dropped,
        1,
        "the dial returned before the echoed probe arrived"
    );
    assert_eq!(sock.peer_addr().unwrap(), IpEndpoint::from(echo_addr));
    sock.set_timeout(Some(TIMEOUT));

    exchange(&sock, 1000, 8);
    assert_nothing_queued(&shared, &sock);
    sock.send(BYE).unwrap();
    let seen = echoing.join().expect("echo thread");

    // The kernel got the probe first, then every datagram once, all from the dialed port.
    assert_eq!(seen.datagrams.len(), 1001);
    assert_eq!(seen.datagrams[0].0, DEFAULT_UDP_PROBE);
    for (i, (d, _)) in seen.datagrams[1..].iter().enumerate() {
        assert!(*d == payload(i as u32), "kernel got datagram {i} wrong");
    }
    let from = stack_addr(&sock);
    assert!(seen.datagrams.iter().all(|(_, f)| *f == from));

    let st = stats(&shared);
    assert_eq!(st.udp_probes_dropped, 1);
    assert_eq!(st.udp_foreign_dropped, 0);
    assert_eq!(st.udp_icmp_errors, 0);
    drop(sock);
    shared.shutdown();
}

#[test]
fn probe_echoed_after_the_dial_returned_is_dropped_too() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let echo = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let echo_addr = echo.local_addr().unwrap();
    let (open, gate) = mpsc::channel();
    let echoing = kernel_echo(echo, Some(gate));
    let shared = spawn_stack(support::config(), &mut link);

    // The echo holds the probe, so the (non-strict) dial passes on silence.
    let opts = DialOptions {
        probe_timeout: StackDuration::from_millis(100),
        ..DialOptions::default()
    };
    let mut sock = shared
        .udp_dial(echo_addr, opts)
        .expect("dial passes on silence");
    assert_eq!(stats(&shared).udp_probes_dropped, 0);
    sock.set_timeout(Some(TIMEOUT));
    // Now the probe's echo arrives, ahead of every data echo; it must still not be read.
    open.send(()).unwrap();

    exchange(&sock, 200, 4);
    assert_nothing_queued(&shared, &sock);
    sock.send(BYE).unwrap();
    let seen = echoing.join().expect("echo thread");
    assert_eq!(seen.datagrams.len(), 201);
    assert_eq!(seen.datagrams[0].0, DEFAULT_UDP_PROBE);
    assert_eq!(stats(&shared).udp_probes_dropped, 1);
    drop(sock);
    shared.shutdown();
}

#[test]
fn connected_socket_takes_only_its_peers_datagrams() {
    if !privileged() {
        return;
    }
    const N: usize = 50;
    const M: usize = 30;
    let mut link = TapLink::new();
    let peer = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let stranger = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let peer_addr = peer.local_addr().unwrap();
    let shared = spawn_stack(support::config(), &mut link);

    let mut sock = shared.udp_bind(0).unwrap();
    sock.set_timeout(Some(TIMEOUT));
    sock.connect(peer_addr).unwrap();
    let us = stack_addr(&sock);
    // A hello first, so both sides know each other's MAC before the burst.
    sock.send(b"hello").unwrap();
    assert_eq!(kernel_recv(&peer), (b"hello".to_vec(), us));

    let sender = std::thread::spawn(move || {
        for i in 0..N {
            peer.send_to(format!("peer {i}").as_bytes(), us).unwrap();
            if i < M {
                stranger
                    .send_to(format!("stranger {i}").as_bytes(), us)
                    .unwrap();
            }
        }
        // Sent after every stranger datagram: once it is read, all of them have arrived.
        peer.send_to(b"end", us).unwrap();
    });

    let mut buf = [0u8; 2048];
    for i in 0..N {
        let (n, meta) = sock.recv_from(&mut buf).expect("peer datagram");
        assert_eq!(&buf[..n], format!("peer {i}").as_bytes());
        assert_eq!(meta.remote, IpEndpoint::from(peer_addr));
    }
    let (n, meta) = sock.recv_from(&mut buf).expect("end marker");
    assert_eq!((&buf[..n], meta.remote), (&b"end"[..], peer_addr.into()));
    sender.join().unwrap();

    assert_nothing_queued(&shared, &sock);
    sock.set_timeout(Some(QUIET));
    let err = sock.recv(&mut buf).expect_err("nothing more from the peer");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let st = stats(&shared);
    assert_eq!(st.udp_foreign_dropped, M as u64);
    assert_eq!(st.udp_probes_dropped, 0);
    drop(sock);
    shared.shutdown();
}

#[test]
fn misuse_of_connected_and_unconnected_sockets_is_reported() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let kernel = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let kaddr = kernel.local_addr().unwrap();
    let shared = spawn_stack(support::config(), &mut link);
    let sock = shared.udp_bind(0).unwrap();
    let h = sock.handle();
    let us = stack_addr(&sock);

    // send without a peer.
    assert_eq!(
        shared.with(|s| s.udp_send(h, b"nowhere")),
        Err(Error::DestinationAddressRequired)
    );
    let err = sock.send(b"nowhere").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert_eq!(inner(&err), Some(Error::DestinationAddressRequired));
    assert_eq!(
        shared.with(|s| s.udp_peer_addr(h)),
        Err(Error::NotConnected)
    );

    // Connecting to our own address and port.
    match shared.with(|s| s.udp_connect(h, us.into())) {
        Err(Error::InvalidInput(why)) => assert!(why.contains("self-connect"), "{why}"),
        other => panic!("self-connect: expected InvalidInput, got {other:?}"),
    }
    let err = sock.connect(us).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("self-connect"), "{err}");
    assert_eq!(
        shared.with(|s| s.udp_peer_addr(h)),
        Err(Error::NotConnected)
    );

    // send_to on a connected socket.
    sock.connect(kaddr).unwrap();
    assert_eq!(sock.peer_addr().unwrap(), IpEndpoint::from(kaddr));
    let e = shared.with(|s| s.udp_send_to(h, b"twice addressed", kaddr.into()));
    assert_eq!(e, Err(Error::AlreadyConnected));
    assert!(Error::AlreadyConnected
        .to_string()
        .contains("use of WriteTo with pre-connected connection"));
    let err = sock.send_to(b"twice addressed", kaddr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(inner(&err), Some(Error::AlreadyConnected));
    assert!(
        err.to_string()
            .contains("use of WriteTo with pre-connected connection"),
        "{err}"
    );

    // A failed self-connect leaves the peer as it was.
    let err = sock.connect(us).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(sock.peer_addr().unwrap(), IpEndpoint::from(kaddr));

    sock.send(b"connected send").unwrap();

    // Disconnected again: send fails, send_to works.
    sock.disconnect().unwrap();
    assert_eq!(
        sock.peer_addr().unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(
        sock.send(b"nowhere").unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(sock.send_to(b"after disconnect", kaddr).unwrap(), 16);

    // The kernel got exactly the two datagrams that were accepted, in order, from us: none
    // of the refused calls leaked one.
    assert_eq!(kernel_recv(&kernel), (b"connected send".to_vec(), us));
    assert_eq!(kernel_recv(&kernel), (b"after disconnect".to_vec(), us));
    kernel_quiet(&kernel);
    drop(sock);
    shared.shutdown();
}

#[test]
fn probes_from_a_kernel_are_dropped_only_by_sockets_that_ask() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let kernel = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let kaddr = kernel.local_addr().unwrap();
    let shared = spawn_stack(support::config(), &mut link);
    let mut dropping = shared.udp_bind(0).unwrap();
    let mut keeping = shared.udp_bind(0).unwrap();
    dropping.set_timeout(Some(TIMEOUT));
    keeping.set_timeout(Some(TIMEOUT));
    let h = dropping.handle();
    shared.with(|s| s.udp_drop_probes(h, true)).unwrap();

    let almost = b"connect-ping!";
    for d in [DEFAULT_UDP_PROBE, b"hello", DEFAULT_UDP_PROBE, almost] {
        kernel.send_to(d, stack_addr(&dropping)).unwrap();
    }
    for d in [DEFAULT_UDP_PROBE, b"hello"] {
        kernel.send_to(d, stack_addr(&keeping)).unwrap();
    }

    let mut buf = [0u8; 2048];
    let (n, meta) = dropping.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], meta.remote), (&b"hello"[..], kaddr.into()));
    assert_eq!(stats(&shared).udp_probes_dropped, 1);
    // Only an exact probe is dropped, not one that merely starts like it.
    let n = dropping.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], almost);
    assert_eq!(stats(&shared).udp_probes_dropped, 2);
    assert_nothing_queued(&shared, &dropping);

    // Dropping probes is opt-in: a plain socket gets them like any datagram.
    let (n, meta) = keeping.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], meta.remote), (DEFAULT_UDP_PROBE, kaddr.into()));
    let n = keeping.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_nothing_queued(&shared, &keeping);
    assert_eq!(stats(&shared).udp_probes_dropped, 2);
    drop((dropping, keeping));
    shared.shutdown();
}

#[test]
fn strict_dial_to_a_silent_kernel_socket_times_out_and_lax_dial_passes() {
    if !privileged() {
        return;
    }
    const PORT: u16 = 40_000;
    let mut link = TapLink::new();
    let silent = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let addr = silent.local_addr().unwrap();
    let shared = spawn_stack(support::config(), &mut link);
    let probe_timeout = Duration::from_millis(300);
    let mut opts = DialOptions {
        probe_timeout: probe_timeout.into(),
        strict: true,
        local_port: PORT,
    };

    let err = shared
        .udp_dial(addr, opts)
        .err()
        .expect("strict dial to a silent peer");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(inner(&err), Some(Error::TimedOut));

    // The failed dial closed its socket, so the same local port is free again.
    opts.strict = false;
    let start = Instant::now();
    let sock = shared
        .udp_dial(addr, opts)
        .expect("lax dial passes on silence");
    assert!(
        start.elapsed() >= probe_timeout,
        "passed after {:?}, before the probe timeout",
        start.elapsed()
    );
    assert_eq!(sock.peer_addr().unwrap(), IpEndpoint::from(addr));
    sock.send(b"after the dial").unwrap();

    let us = SocketAddr::from((STACK_IP, PORT));
    assert_eq!(kernel_recv(&silent), (DEFAULT_UDP_PROBE.to_vec(), us));
    assert_eq!(kernel_recv(&silent), (DEFAULT_UDP_PROBE.to_vec(), us));
    assert_eq!(kernel_recv(&silent), (b"after the dial".to_vec(), us));
    kernel_quiet(&silent);
    let st = stats(&shared);
    assert_eq!((st.udp_icmp_errors, st.udp_probes_dropped), (0, 0));
    drop(sock);
    shared.shutdown();
}

#[test]
fn dial_through_a_kernel_router_without_a_route_is_host_unreachable() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    // The namespace routes for ustack (forwarding on), but has an unreachable route for
    // 10.99.0.0/24: a datagram to it makes the kernel answer ICMP host unreachable.
    link.ns.run(|| {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable forwarding");
        let now = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        assert_eq!(now.trim(), "1");
    });
    let out = link
        .ns
        .exec("ip", &["route", "add", "unreachable", "10.99.0.0/24"]);
    assert!(
        out.status.success(),
        "ip route add unreachable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shared = spawn_stack(support::config().gateway(HOST_IP), &mut link);
    let err = UdpSocket::dial(&shared, "10.99.0.1:53".parse().unwrap(), TIMEOUT)
        .err()
        .expect("10.99.0.0/24 is unreachable");
    assert_eq!(err.kind(), ErrorKind::HostUnreachable, "{err}");
    assert_eq!(inner(&err), Some(Error::HostUnreachable));
    assert_eq!(stats(&shared).udp_icmp_errors, 1);
    shared.shutdown();
}

#[test]
fn icmp_port_unreachable_for_a_connected_send_is_reported_once() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let shared = spawn_stack(support::config(), &mut link);
    let mut sock = shared.udp_bind(0).unwrap();
    let h = sock.handle();
    sock.connect(SocketAddr::from((HOST_IP, CLOSED_PORT)))
        .unwrap();
    sock.set_timeout(Some(TIMEOUT));
    sock.send(b"anyone there?").unwrap();
    // The blocking recv wakes up for the ICMP error and reports it.
    let mut buf = [0u8; 64];
    let err = sock.recv(&mut buf).expect_err("the kernel refuses UDP 9");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(inner(&err), Some(Error::ConnectionRefused));
    // Once: the next recv finds nothing, and the socket stays connected and usable.
    assert_eq!(
        shared.with(|s| s.udp_recv(h, &mut buf)),
        Err(Error::WouldBlock)
    );
    assert_eq!(
        sock.peer_addr().unwrap(),
        IpEndpoint::from(SocketAddr::from((HOST_IP, CLOSED_PORT)))
    );
    assert_eq!(stats(&shared).udp_icmp_errors, 1);
    drop(sock);
    shared.shutdown();
}

#[test]
fn strangers_datagrams_queued_before_connect_are_not_delivered() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let peer = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let stranger = kernel_socket(&link, SocketAddr::from((HOST_IP, 0)));
    let peer_addr = peer.local_addr().unwrap();
    let shared = spawn_stack(support::config(), &mut link);
    let mut sock = shared.udp_bind(0).unwrap();
    let mut witness = shared.udp_bind(0).unwrap();
    sock.set_timeout(Some(TIMEOUT));
    witness.set_timeout(Some(TIMEOUT));

    // The stranger writes to the still unconnected socket, then to a witness socket: once
    // the witness has its datagram, the first one sits in the socket's queue.
    stranger.send_to(b"early", stack_addr(&sock)).unwrap();
    stranger.send_to(b"sync", stack_addr(&witness)).unwrap();
    let mut buf = [0u8; 64];
    let n = witness.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"sync");

    sock.connect(peer_addr).unwrap();
    peer.send_to(b"from the peer", stack_addr(&sock)).unwrap();
    let (n, meta) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], meta.remote),
        (&b"from the peer"[..], peer_addr.into())
    );
    assert_nothing_queued(&shared, &sock);
    assert_eq!(stats(&shared).udp_foreign_dropped, 1);
    drop((sock, witness));
    shared.shutdown();
}
