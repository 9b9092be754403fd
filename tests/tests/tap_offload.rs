//! The faster TAP paths against the Linux kernel in a private namespace: checksum and TCP
//! segmentation offload (`TapBuilder::offload`, a `virtio_net_hdr` on every frame) and a
//! jumbo MTU (`TapBuilder::mtu`). Each test checks the bytes and that the fast path was
//! really taken (its counters), so a silent fallback to plain frames fails.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use support::{echo_addr, echo_connect, EchoServer};
use ustack::runtime::{PollMode, SharedStack};
use ustack::smoltcp::phy::{Checksum, Device};
use ustack::smoltcp::wire::Ipv6Cidr;
use ustack::{Config, Stack, TcpOptions};
use ustack_drivers::veth::VethBuilder;
use ustack_drivers::{TapBuilder, TapDevice, TapStats};
use ustack_tests::{
    privileged, random_bytes, unique_name, NetNs, HOST_CIDR, HOST_CIDR6, HOST_IP, HOST_IP6,
    PREFIX_LEN6, STACK_IP, STACK_IP6,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Port of the ustack sink.
const SINK_PORT: u16 = 5001;
/// Big buffers, as the docs of `TapBuilder` ask for: the window must hold several 64 KiB
/// segments.
const TCP_BUFFER: usize = 2 * 1024 * 1024;
/// Largest frame of the default 1500-byte MTU.
const PLAIN_FRAME: u64 = 1514;

/// ustack's configuration with large TCP buffers, accepting the largest frame `device`
/// may deliver (64 KiB segments with offload).
fn big_config(device: &TapDevice) -> Config {
    let mut config = support::config().max_rx_frame(device.rx_frame_limit());
    config.tcp = TcpOptions {
        rx_buffer: TCP_BUFFER,
        tx_buffer: TCP_BUFFER,
        ..TcpOptions::default()
    };
    config
}

/// A TAP with its host side at `HOST_CIDR` in a fresh namespace, built with `configure`.
fn tap(configure: impl FnOnce(TapBuilder) -> TapBuilder) -> (NetNs, TapDevice) {
    let ns = NetNs::new();
    let builder = TapBuilder::new(&unique_name("utof"))
        .netns(ns.name())
        .host_addr(HOST_CIDR)
        .ipv6_autoconf(false);
    let device = configure(builder)
        .create()
        .unwrap_or_else(|e| panic!("cannot create TAP: {e}"));
    (ns, device)
}

fn stats(shared: &SharedStack<TapDevice>) -> TapStats {
    shared.with(|s| s.device().stats())
}

#[test]
fn kernel_sends_64_mib_over_an_offload_tap_as_super_segments() {
    if !privileged() {
        return;
    }
    let (ns, device) = tap(|b| b.offload(true));
    assert!(device.offload());
    let caps = device.capabilities();
    // Verified on receive, left to the kernel on transmit.
    for cs in [caps.checksum.tcp, caps.checksum.udp] {
        assert!(matches!(cs, Checksum::Rx), "{cs:?}");
    }
    assert_eq!(
        caps.max_transmission_unit, 1514,
        "the link's MTU is what may be sent"
    );
    assert_eq!(
        device.rx_frame_limit(),
        65_535 + 14,
        "room for 64 KiB segments"
    );

    let (tap, ingress) = kernel_sends(&ns, big_config(&device), device, STACK_IP.into(), 64, 64);
    assert!(
        tap.rx_gso_frames > 0,
        "no TCP super-segment arrived: the offload path was not used ({tap:?})"
    );
    assert!(
        tap.rx_csum_completed > 0,
        "no partial checksum was completed ({tap:?})"
    );
    assert!(tap.rx_largest_frame > PLAIN_FRAME, "{tap:?}");
    assert_eq!(tap.rx_malformed, 0, "{tap:?}");
    assert_eq!(
        ingress.rx_dropped(),
        0,
        "ustack's ingress check dropped frames: {ingress:?}"
    );
}

/// A kernel client in `ns` sends `mib` MiB of `random_bytes(seed)` to a ustack sink at
/// `stack_ip` (over `device`, with `config`), half-closes and waits for ustack's FIN; the
/// bytes must arrive exactly. Returns the device's and the stack's counters.
fn kernel_sends(
    ns: &NetNs,
    config: Config,
    device: TapDevice,
    stack_ip: IpAddr,
    seed: u64,
    mib: usize,
) -> (TapStats, ustack::Stats) {
    let stack = Stack::new(config, device, ustack::runtime::now()).unwrap();
    let shared = SharedStack::spawn(stack, PollMode::Block).unwrap();
    let listener = shared.listen(SINK_PORT, 1).unwrap();
    let data = random_bytes(seed, mib * 1024 * 1024);
    let sent = data.clone();
    let writer = ns.spawn(move || -> std::io::Result<()> {
        let addr = SocketAddr::from((stack_ip, SINK_PORT));
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(&sent)?;
        s.shutdown(Shutdown::Write)?;
        // Wait for ustack's FIN so the connection closes cleanly before the link goes.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        assert!(rest.is_empty(), "the sink sends nothing");
        Ok(())
    });
    let mut conn = listener.accept_timeout(TIMEOUT).expect("kernel connects");
    conn.set_read_timeout(Some(TIMEOUT));
    let mut got = Vec::with_capacity(data.len());
    conn.read_to_end(&mut got)
        .expect("read until the kernel's FIN");
    drop(conn);
    writer
        .join()
        .expect("writer thread")
        .expect("kernel writer");
    assert_eq!(got.len(), data.len());
    assert!(
        got == data,
        "received bytes differ from what the kernel sent"
    );
    let tap = stats(&shared);
    let ingress = shared.with(|s| s.stats());
    shared.shutdown();
    eprintln!("{tap:?}");
    (tap, ingress)
}

#[test]
fn kernel_sends_8_mib_over_ipv6_as_tcpv6_super_segments() {
    if !privileged() {
        return;
    }
    let (ns, device) = tap(|b| b.host_addr(HOST_CIDR6).offload(true));
    let config = big_config(&device).ipv6(Ipv6Cidr::new(STACK_IP6, PREFIX_LEN6));
    let (tap, ingress) = kernel_sends(&ns, config, device, STACK_IP6.into(), 6, 8);
    assert!(tap.rx_gso_frames > 0, "no TCPv6 super-segment ({tap:?})");
    assert!(tap.rx_largest_frame > PLAIN_FRAME, "{tap:?}");
    assert_eq!(tap.rx_malformed, 0, "{tap:?}");
    assert_eq!(ingress.rx_dropped(), 0, "{ingress:?}");
}

/// A kernel TCP listener on `bind` in `ns`, and a thread that reads one connection to its end.
fn kernel_reader(ns: &NetNs, bind: IpAddr) -> (u16, JoinHandle<std::io::Result<Vec<u8>>>) {
    let listener = ns.run(|| TcpListener::bind((bind, 0)).expect("kernel listener"));
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got)
    });
    (port, reader)
}

/// ustack connects to `to`, sends 8 MiB of `random_bytes(seed)`, half-closes, waits for
/// the last ACK, and checks that `reader` got exactly those bytes.
fn send_8_mib(
    shared: &SharedStack<TapDevice>,
    to: SocketAddr,
    seed: u64,
    reader: JoinHandle<std::io::Result<Vec<u8>>>,
) {
    let mut conn = shared.connect(to).expect("ustack connects");
    conn.set_write_timeout(Some(TIMEOUT));
    let data = random_bytes(seed, 8 * 1024 * 1024);
    conn.write_all(&data).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    conn.flush_acked()
        .expect("the kernel acknowledges everything");
    let got = reader
        .join()
        .expect("reader thread")
        .expect("kernel reader");
    drop(conn);
    assert_eq!(got.len(), data.len());
    // The kernel takes a frame with a partial checksum as verified and finishes the sum only
    // when it forwards it, so the bytes prove the frames (and the super-frames the kernel
    // accepted and took apart) were well-formed, the counters that the offloads were used,
    // and the unit tests that the sums the kernel would finish are the ones smoltcp computes.
    assert!(got == data, "bytes received by the kernel differ");
}

/// ustack sends 8 MiB to a kernel listener over an offload TAP (IPv6 when `v6`), with the
/// device's flush registered when `flush` so each poll's segments leave as super-frames;
/// returns the device's counters after checking the bytes.
fn ustack_sends_8_mib_to_the_kernel(v6: bool, flush: bool) -> TapStats {
    // `tap` gives the host side HOST_CIDR already.
    let (ns, device) = tap(|b| if v6 { b.host_addr(HOST_CIDR6) } else { b }.offload(true));
    let bind: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        HOST_IP.into()
    };
    let (port, reader) = kernel_reader(&ns, bind);
    let mut config = big_config(&device);
    if v6 {
        config = config.ipv6(Ipv6Cidr::new(STACK_IP6, PREFIX_LEN6));
    }
    let mut stack = Stack::new(config, device, ustack::runtime::now()).unwrap();
    if flush {
        stack.set_flush(TapDevice::flush);
    }
    let shared = SharedStack::spawn(stack, PollMode::Block).unwrap();
    let peer: IpAddr = if v6 { HOST_IP6.into() } else { HOST_IP.into() };
    send_8_mib(
        &shared,
        SocketAddr::from((peer, port)),
        if v6 { 86 } else { 8 },
        reader,
    );
    let tap = stats(&shared);
    shared.shutdown();
    eprintln!("{tap:?}");
    assert!(
        tap.tx_csum_offloaded > 1000,
        "TCP frames left without checksum offload ({tap:?})"
    );
    assert!(
        tap.tx_gso_frames > 0,
        "no TCP super-frame was written: segments were not merged ({tap:?})"
    );
    assert!(tap.tx_segments_merged >= 2 * tap.tx_gso_frames, "{tap:?}");
    assert!(tap.tx_largest_frame > PLAIN_FRAME, "{tap:?}");
    assert_eq!(tap.tx_dropped, 0, "{tap:?}");
    if flush {
        assert_eq!(tap.late_flushes, 0, "the flush ends every poll ({tap:?})");
    }
    tap
}

#[test]
fn ustack_sends_8_mib_to_the_kernel_as_super_frames_with_checksums_left_to_the_kernel() {
    if !privileged() {
        return;
    }
    ustack_sends_8_mib_to_the_kernel(false, true);
}

#[test]
fn ustack_sends_8_mib_to_the_kernel_over_ipv6_as_tcpv6_super_frames() {
    if !privileged() {
        return;
    }
    ustack_sends_8_mib_to_the_kernel(true, true);
}

#[test]
fn without_a_registered_flush_queued_frames_leave_when_the_next_poll_begins() {
    if !privileged() {
        return;
    }
    let tap = ustack_sends_8_mib_to_the_kernel(false, false);
    assert!(tap.late_flushes > 0, "{tap:?}");
}

#[test]
fn jumbo_mtu_65521_echoes_8_mib_in_frames_above_1514_bytes() {
    if !privileged() {
        return;
    }
    let (ns, device) = tap(|b| b.mtu(65_521));
    assert_eq!(device.mtu(), 65_521);
    assert_eq!(device.capabilities().max_transmission_unit, 65_535);
    let out = ns.exec("ip", &["link", "show", device.name()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mtu 65521"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let server = EchoServer::start_with(big_config(&device), device, 1);
    let data = random_bytes(9000, 8 * 1024 * 1024);
    let echoed = ns.run(|| echo_connect(echo_addr(), &data, TIMEOUT));
    let echoed = echoed.expect("echo exchange");
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echoed bytes differ from what was sent");
    let (stack, echo) = server.stop();
    assert_eq!(echo.tcp_bytes, data.len() as u64);
    let tap = stack.device().stats();
    eprintln!("{tap:?}");
    assert!(
        tap.rx_largest_frame > PLAIN_FRAME,
        "kernel sent no jumbo frame ({tap:?})"
    );
    assert!(
        tap.tx_largest_frame > PLAIN_FRAME,
        "ustack sent no jumbo frame ({tap:?})"
    );
    assert!(tap.rx_largest_frame <= 65_535 && tap.tx_largest_frame <= 65_535);
    assert_eq!(stack.stats().rx_dropped(), 0);
}

#[test]
fn an_mtu_above_65521_is_refused_with_the_limit() {
    let err = TapBuilder::new(&unique_name("utof"))
        .mtu(65_522)
        .create()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("65521"), "{err}");
}

/// The kernel must really cut ustack's super-frames into valid segments: here it forwards
/// them from the TAP's namespace over a veth with segmentation and checksum offloads off, so
/// it segments them in software and fills in each segment's checksum, and the receiving
/// namespace (receive checksum offload off too) verifies every checksum. A super-frame the
/// kernel rejected or a wrong checksum would stall the transfer instead of delivering it.
#[test]
fn super_frames_forwarded_by_the_kernel_arrive_as_valid_segments() {
    if !privileged() {
        return;
    }
    const FAR_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 8, 0, 2);
    let (router, device) = tap(|b| b.offload(true));
    let far = NetNs::new();
    let _veth = VethBuilder::new(
        (&unique_name("utfa"), router.name()),
        (&unique_name("utfb"), far.name()),
    )
    .addr_a("10.8.0.1/24")
    .addr_b("10.8.0.2/24")
    .offloads_off_a()
    .offloads_off_b()
    .create()
    .expect("veth pair between the namespaces");
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(router.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]));
    ok(far.exec("ip", &["route", "add", "10.7.0.0/24", "via", "10.8.0.1"]));
    let (port, reader) = kernel_reader(&far, FAR_IP.into());
    let config = big_config(&device).gateway(HOST_IP);
    let mut stack = Stack::new(config, device, ustack::runtime::now()).unwrap();
    stack.set_flush(TapDevice::flush);
    let shared = SharedStack::spawn(stack, PollMode::Block).unwrap();
    send_8_mib(&shared, SocketAddr::from((FAR_IP, port)), 88, reader);
    let tap = stats(&shared);
    shared.shutdown();
    eprintln!("{tap:?}");
    assert!(tap.tx_gso_frames > 0, "{tap:?}");
    assert_eq!(tap.tx_dropped, 0, "{tap:?}");
    let snmp = far.exec("cat", &["/proc/net/snmp"]);
    let snmp = String::from_utf8_lossy(&snmp.stdout);
    let tcp: Vec<Vec<&str>> = snmp
        .lines()
        .filter(|l| l.starts_with("Tcp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let field = |name: &str| {
        let at = tcp[0].iter().position(|f| *f == name).unwrap();
        tcp[1][at].parse::<u64>().unwrap()
    };
    assert_eq!(field("InCsumErrors"), 0, "{snmp}");
    assert!(
        field("InSegs") > (8 * 1024 * 1024 / 1500) as u64,
        "the far kernel got MSS-sized segments, not super-frames: {snmp}"
    );
}
