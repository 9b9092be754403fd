//! ustack on an AF_PACKET socket against the Linux kernel over a veth pair between two
//! private network namespaces ([`topo::Link`]): TCP and UDP echo in each I/O mode, two stacks
//! sharing the link through `PACKET_FANOUT`, and a tiny receive ring overflowing into the
//! drop counters.

#[path = "afpacket/clients.rs"]
mod clients;
#[path = "afpacket/overflow.rs"]
mod overflow;
#[path = "afpacket/server.rs"]
mod server;
mod support;
#[path = "afpacket/topo.rs"]
mod topo;

use clients::{client_data, tcp_clients, udp_echo, TIMEOUT};
use server::{EchoThread, Served};
use support::echo_connect;
use topo::{config, echo_addr, Link};
use ustack_drivers::{AfPacketStats, IoMode, RingConfig};
use ustack_tests::{privileged, random_bytes};

const TCP_BYTES: usize = 4 * 1024 * 1024;
const UDP_DATAGRAMS: u32 = 10_000;
/// Unanswered UDP datagrams at most: well inside ustack's UDP queues (64 datagrams, 64 KiB)
/// and the kernel's socket buffers, so a correct stack loses none.
const UDP_WINDOW: u32 = 32;
const BATCHED: IoMode = IoMode::Batched { batch: 32 };

/// The default ring: 256 blocks, so a stall of up to 256 ms on a busy machine loses nothing
/// while these runs have at most 32 datagrams or two TCP windows in flight; no drop is the
/// only correct outcome.
fn ring() -> IoMode {
    IoMode::Ring(RingConfig::default())
}

/// A kernel client in the peer namespace sends [`TCP_BYTES`] random bytes to ustack's echo,
/// reads as many back, half-closes and reads ustack's FIN; everything must be byte-exact and
/// the close clean.
fn tcp_echo(mode: IoMode) -> AfPacketStats {
    let link = Link::new();
    let dev = link.open(mode, None);
    let config = config(&dev);
    let server = EchoThread::start(dev, config);
    let data = random_bytes(0xaf, TCP_BYTES);
    let echoed = link.peer.run(|| echo_connect(echo_addr(), &data, TIMEOUT));
    // read_to_end fails on a reset, so Ok means ustack closed with a FIN.
    let echoed = echoed.expect("TCP echo exchange (a reset fails here)");
    assert_eq!(echoed.len(), data.len(), "echoed length");
    assert!(echoed == data, "echoed bytes differ from what was sent");
    let Served { dev, stack, echo } = server.stop();
    // ustack counted the close when it read the kernel's FIN with nothing left to send,
    // before it sent its own FIN that ended the client's read.
    assert_eq!(
        (echo.accepted, echo.closed, echo.tcp_bytes),
        (1, 1, TCP_BYTES as u64)
    );
    assert_eq!(stack.tcp_accepted, 1);
    let segments = (TCP_BYTES / 1460) as u64;
    assert!(
        dev.rx_frames >= segments && dev.tx_frames >= segments,
        "{segments} full segments each way, device saw {dev:?}"
    );
    assert_eq!(stack.rx_frames, dev.rx_frames, "stack and device agree");
    // ustack's 64 KiB window keeps the kernel far from filling a 4 MiB socket buffer or ring.
    assert_eq!(
        (dev.rx_kernel_drops, dev.tx_dropped, dev.late_flushes),
        (0, 0, 0),
        "nothing dropped, every poll flushed: {dev:?}"
    );
    log::info!("{} TCP echo: {dev:?}", mode.name());
    dev
}

/// A kernel client in the peer namespace sends [`UDP_DATAGRAMS`] datagrams of 1..=1400 bytes
/// to ustack's UDP echo, [`UDP_WINDOW`] at a time, and gets every one back byte-exact.
fn udp_echo_all(mode: IoMode) -> AfPacketStats {
    let link = Link::new();
    let dev = link.open(mode, None);
    let config = config(&dev);
    let server = EchoThread::start(dev, config);
    let echoed = link.peer.run(|| udp_echo(UDP_DATAGRAMS, UDP_WINDOW));
    assert_eq!(echoed.expect("UDP echo"), UDP_DATAGRAMS, "datagrams echoed");
    let Served { dev, echo, .. } = server.stop();
    assert_eq!(echo.udp_datagrams, u64::from(UDP_DATAGRAMS));
    let n = u64::from(UDP_DATAGRAMS);
    assert!(
        dev.rx_frames >= n && dev.tx_frames >= n,
        "{n} datagrams each way, device saw {dev:?}"
    );
    assert_eq!(
        (dev.rx_kernel_drops, dev.tx_dropped, dev.late_flushes),
        (0, 0, 0),
        "nothing dropped with {UDP_WINDOW} in flight, every poll flushed: {dev:?}"
    );
    log::info!("{} UDP echo: {dev:?}", mode.name());
    dev
}

/// One `send` per frame, and (no `EAGAIN` on a veth) no retries.
fn assert_per_frame(dev: &AfPacketStats) {
    assert_eq!(dev.tx_retries, 0, "{dev:?}");
    assert_eq!(
        dev.tx_syscalls, dev.tx_frames,
        "one send per frame: {dev:?}"
    );
    assert!(
        dev.rx_syscalls >= dev.rx_frames,
        "one recv per frame: {dev:?}"
    );
}

/// Fewer syscalls (ring blocks, in ring mode) than frames each way: frames moved in
/// batches. Not a timing assertion: a batch holds more than one frame whenever frames
/// arrive while the stack is busy, which happens thousands of times in these runs (the
/// runs seen had 10 to 25 frames per receive call).
fn assert_batched(dev: &AfPacketStats) {
    assert!(dev.rx_syscalls < dev.rx_frames, "recvmmsg batches: {dev:?}");
    assert!(dev.tx_syscalls < dev.tx_frames, "sendmmsg batches: {dev:?}");
}

#[test]
fn per_frame_tcp_echo_4_mib() {
    if !privileged() {
        return;
    }
    assert_per_frame(&tcp_echo(IoMode::PerFrame));
}

#[test]
fn per_frame_udp_echo_10000_datagrams() {
    if !privileged() {
        return;
    }
    assert_per_frame(&udp_echo_all(IoMode::PerFrame));
}

#[test]
fn batched_tcp_echo_4_mib() {
    if !privileged() {
        return;
    }
    assert_batched(&tcp_echo(BATCHED));
}

#[test]
fn batched_udp_echo_10000_datagrams() {
    if !privileged() {
        return;
    }
    assert_batched(&udp_echo_all(BATCHED));
}

#[test]
fn ring_tcp_echo_4_mib() {
    if !privileged() {
        return;
    }
    // rx_syscalls counts ring blocks taken: several frames share a block.
    assert_batched(&tcp_echo(ring()));
}

#[test]
fn ring_udp_echo_10000_datagrams() {
    if !privileged() {
        return;
    }
    assert_batched(&udp_echo_all(ring()));
}

/// Two stacks, each on its own thread and packet socket in one fanout group, with the same
/// MAC and IP: 32 concurrent kernel connections are spread over them by flow hash, every one
/// echoes byte-exact, and each stack served a share.
#[test]
fn fanout_two_stacks_serve_32_connections() {
    if !privileged() {
        return;
    }
    const CLIENTS: usize = 32;
    const GROUP: u16 = 0xaf;
    let link = Link::new();
    let (a, b) = (
        link.open(BATCHED, Some(GROUP)),
        link.open(BATCHED, Some(GROUP)),
    );
    assert_eq!(a.mac(), b.mac(), "both sockets sit on the same interface");
    let servers = [a, b].map(|dev| {
        let config = config(&dev);
        EchoThread::start(dev, config)
    });
    let results = link.peer.run(|| tcp_clients(CLIENTS));
    let failed: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !matches!(r, Ok(true)))
        .collect();
    let served = servers.map(EchoThread::stop);
    assert!(
        failed.is_empty(),
        "clients that failed: {failed:?}; stacks: {served:#?}"
    );
    let accepted: Vec<u64> = served.iter().map(|s| s.echo.accepted).collect();
    assert!(
        accepted.iter().all(|&n| n > 0),
        "each stack takes a share of the connections: {accepted:?}"
    );
    assert_eq!(accepted.iter().sum::<u64>(), CLIENTS as u64, "{accepted:?}");
    for s in &served {
        assert_eq!(s.echo.closed, s.echo.accepted, "every connection closed");
        assert_eq!(s.stack.tcp_accepted, s.echo.accepted);
        assert!(s.dev.rx_frames > 0, "{:?}", s.dev);
    }
    log::info!("fanout: {served:#?}");
    let bytes: u64 = (0..CLIENTS).map(|i| client_data(i).len() as u64).sum();
    let echoed: u64 = served.iter().map(|s| s.echo.tcp_bytes).sum();
    assert_eq!(echoed, bytes, "bytes echoed by both stacks together");
}

#[test]
fn tiny_ring_overflow_is_counted() {
    if !privileged() {
        return;
    }
    overflow::run();
}
