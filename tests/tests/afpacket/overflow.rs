//! A receive ring overflowing: a ring of one 4 KiB block (the smallest `RingConfig` takes)
//! holds a few dozen small frames; the kernel floods thousands of datagrams at a stack that
//! is not polled meanwhile, and what the ring could not hold must show up in
//! `rx_kernel_drops`, not vanish.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ustack::runtime::{self, PollMode};
use ustack::{Error, Stack, UdpHandle};
use ustack_drivers::{AfPacket, IoMode, RingConfig};

use crate::clients::{flood, flood_datagram};
use crate::topo::{config, Link, USTACK_IP};

const FLOOD: u32 = 5_000;
const LEN: usize = 64;
const PORT: u16 = 9;
/// No frame for this long means the kernel has delivered everything it will.
const QUIET: Duration = Duration::from_millis(300);
/// Liveness bound for the warm-up datagram.
const LIVE: Duration = Duration::from_secs(10);

/// The smallest ring: one block of one page.
const TINY: RingConfig = RingConfig {
    block_size: 4096,
    block_count: 1,
    block_timeout_ms: 1,
    tx_batch: 64,
};

type UStack = Stack<'static, AfPacket>;

/// Polls until `done` says so (given the datagrams received so far) or, with `done` `None`,
/// until no frame arrived for [`QUIET`]. Returns the datagrams `udp` received.
fn poll(stack: &mut UStack, udp: UdpHandle, done: Option<usize>) -> Vec<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let fd = stack.device().as_raw_fd();
    let start = Instant::now();
    let (mut got, mut buf) = (Vec::new(), vec![0u8; 2048]);
    let (mut frames, mut last_frame) = (stack.device().stats().rx_frames, Instant::now());
    loop {
        stack.poll(runtime::now());
        loop {
            match stack.udp_recv_from(udp, &mut buf) {
                Ok((n, _)) => got.push(buf[..n].to_vec()),
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("udp_recv_from: {e}"),
            }
        }
        let now_frames = stack.device().stats().rx_frames;
        if now_frames != frames {
            (frames, last_frame) = (now_frames, Instant::now());
        }
        match done {
            Some(n) if got.len() >= n => return got,
            Some(_) => assert!(start.elapsed() < LIVE, "no datagram within {LIVE:?}"),
            None if last_frame.elapsed() >= QUIET => return got,
            None => {}
        }
        let wait = Some(ustack::smoltcp::time::Duration::from_millis(10));
        runtime::wait(fd, None, wait, PollMode::Block).expect("wait");
    }
}

pub fn run() {
    let link = Link::new();
    let dev = link.open(IoMode::Ring(TINY), None);
    let mut config = config(&dev);
    // Room for every datagram in ustack's socket: the device's counters, not the UDP
    // queue, decide what gets through.
    config.udp.rx_packets = FLOOD as usize + 1;
    config.udp.rx_bytes = (FLOOD as usize + 1) * LEN;
    let mut stack = Stack::new(config, dev, runtime::now()).expect("stack");
    stack.set_flush(AfPacket::flush);
    let udp = stack.udp_bind(PORT).expect("udp_bind");
    let to = SocketAddr::from((USTACK_IP, PORT));

    // One datagram first, polled until it arrives: the kernel has then resolved ustack's
    // MAC, and from here on only the flood crosses the link (no ARP, no IPv6 on it).
    let warm = link.peer.spawn(move || flood(to, FLOOD..FLOOD + 1, LEN));
    let got = poll(&mut stack, udp, Some(1));
    assert_eq!(warm.join().expect("warm-up sender").expect("warm-up"), 0);
    assert_eq!(
        got,
        vec![flood_datagram(FLOOD, LEN)],
        "the warm-up datagram"
    );
    poll(&mut stack, udp, None);

    let (dev0, user0, peer0) = (
        stack.device().stats(),
        link.user_counters(),
        link.peer_counters(),
    );
    // The stack is not polled while the kernel floods, nor for a while after (so that
    // the kernel's softirqs have surely run), so its one-block ring fills at once.
    let refused = link.peer.run(|| flood(to, 0..FLOOD, LEN)).expect("flood");
    std::thread::sleep(QUIET);
    let got = poll(&mut stack, udp, None);
    let (dev1, user1, peer1) = (
        stack.device().stats(),
        link.user_counters(),
        link.peer_counters(),
    );

    let frames = dev1.rx_frames - dev0.rx_frames;
    let drops = dev1.rx_kernel_drops - dev0.rx_kernel_drops;
    let entered = user1.rx_packets - user0.rx_packets;
    let veth_dropped = peer1.tx_dropped - peer0.tx_dropped;
    let freezes = dev1.rx_ring_freezes - dev0.rx_ring_freezes;
    let summary = format!(
        "sent {FLOOD} (refused {refused}), veth dropped {veth_dropped}, entered ustack's end \
         {entered}, ring took {frames}, ring dropped {drops} (froze {freezes} times), \
         datagrams received {}",
        got.len()
    );
    log::info!("{summary}");
    assert!(
        drops > 0,
        "the overflow shows in rx_kernel_drops: {summary}"
    );
    // The kernel found its only block still ours and froze the ring until it came back.
    assert!(freezes > 0, "the full ring froze: {summary}");
    // Exact: every frame that entered ustack's end of the veth reached the packet socket,
    // which either put it in the ring (the device counts it in rx_frames when it reads it)
    // or counted it in tp_drops (rx_kernel_drops). Nothing vanishes in between.
    assert_eq!(frames + drops, entered, "{summary}");
    // Exact on a quiet link: every frame the ring took was a flood datagram, and each
    // reached the application intact and once.
    let mut seen = HashSet::new();
    for d in &got {
        let seq = u32::from_be_bytes(d[..4].try_into().expect("4 bytes"));
        assert!(seq < FLOOD && seen.insert(seq), "datagram {seq}: {summary}");
        assert!(*d == flood_datagram(seq, LEN), "datagram {seq} differs");
    }
    assert_eq!(got.len() as u64, frames, "{summary}");
    // The kernel may also drop before the socket (a full backlog on the veth, counted as
    // the peer's tx_dropped, or a refused send): together with those, every datagram sent
    // is accounted for. The socket's counters alone only bound it: frames + drops <= FLOOD.
    assert_eq!(
        frames + drops + veth_dropped + u64::from(refused),
        u64::from(FLOOD),
        "{summary}"
    );
}
