//! AF_PACKET device tests against the kernel over a veth pair: frames in and out in every
//! I/O mode, the flush rule, and skipping our own outgoing frames. They need root; without
//! it they fail saying so, and they skip only when USTACK_SKIP_PRIVILEGED=1.

use std::net::UdpSocket;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::phy::{ChecksumCapabilities, Device, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use ustack_drivers::iproute::{in_netns, ip};
use ustack_drivers::veth::{VethBuilder, VethPair};
use ustack_drivers::{AfPacket, AfPacketBuilder, IoMode, RingConfig};

mod common;
use common::{privileged, unique};

const PEER_IP: [u8; 4] = [10, 9, 0, 1];
const STACK_IP: [u8; 4] = [10, 9, 0, 2];
const PORT: u16 = 9;

/// Two namespaces and a veth between them; dropped in field order (link, then namespaces).
struct Link {
    veth: VethPair,
    peer: String,
    user: String,
}

impl Link {
    fn new() -> Link {
        let (peer, user) = (unique("uafp"), unique("uafu"));
        for ns in [&peer, &user] {
            ip(None, &["netns", "add", ns]).unwrap();
        }
        let link = |veth| Link {
            veth,
            peer: peer.clone(),
            user: user.clone(),
        };
        let cidr = format!("{}/24", std::net::Ipv4Addr::from(PEER_IP));
        match VethBuilder::new((&unique("vp"), &peer), (&unique("vu"), &user))
            .addr_a(&cidr)
            .offloads_off_a()
            .create()
        {
            Ok(veth) => link(veth),
            Err(e) => {
                for ns in [&peer, &user] {
                    let _ = ip(None, &["netns", "del", ns]);
                }
                panic!("cannot create the veth link: {e}");
            }
        }
    }

    fn open(&self, mode: IoMode) -> AfPacket {
        self.open_with(|b| b.mode(mode))
    }

    /// Opens a device built by `build` in the user namespace; the peer learns its MAC.
    fn open_with(&self, build: impl FnOnce(AfPacketBuilder) -> AfPacketBuilder + Send) -> AfPacket {
        let name = self.veth.name_b().to_owned();
        let dev = in_netns(&self.user, || build(AfPacket::builder(&name)).open())
            .unwrap()
            .unwrap();
        // The peer learns our MAC without ARP, which these device-level tests do not answer.
        let mac = dev.mac().map(|b| format!("{b:02x}")).join(":");
        let stack = std::net::Ipv4Addr::from(STACK_IP).to_string();
        let dev_a = self.veth.name_a().to_owned();
        ip(
            Some(&self.peer),
            &["neigh", "add", &stack, "lladdr", &mac, "dev", &dev_a],
        )
        .unwrap();
        dev
    }

    fn peer_socket(&self) -> UdpSocket {
        let sock = in_netns(&self.peer, || {
            UdpSocket::bind((std::net::Ipv4Addr::from(PEER_IP), 0))
        })
        .unwrap()
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.peer, &self.user] {
            let _ = ip(None, &["netns", "del", ns]);
        }
    }
}

/// The UDP payloads addressed to our port, from frames read for up to 5 s, until `n`.
fn receive_udp(dev: &mut AfPacket, n: usize) -> Vec<Vec<u8>> {
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n && StdInstant::now() < deadline {
        while let Some((rx, _tx)) = dev.receive(Instant::ZERO) {
            if let Some(p) = rx.consume(udp_payload) {
                got.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

fn udp_payload(frame: &[u8]) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    (ip.next_header() == IpProtocol::Udp && udp.dst_port() == PORT).then(|| udp.payload().to_vec())
}

/// An Ethernet frame carrying one UDP datagram from the stack's address to the peer.
fn udp_frame(src_mac: [u8; 6], dst_port: u16, payload: &[u8], buf: &mut [u8]) {
    let udp = UdpRepr {
        src_port: PORT,
        dst_port,
    };
    let ip = Ipv4Repr {
        src_addr: Ipv4Address::from(STACK_IP),
        dst_addr: Ipv4Address::from(PEER_IP),
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        // Broadcast: the peer's MAC does not matter to these tests.
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Ipv4,
    };
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(buf);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    let mut dgram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(
        &mut dgram,
        &ip.src_addr.into(),
        &ip.dst_addr.into(),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &caps,
    );
}

const FRAME_OVERHEAD: usize = 14 + 20 + 8;

fn modes() -> [IoMode; 3] {
    [
        IoMode::PerFrame,
        IoMode::Batched { batch: 4 },
        IoMode::Ring(RingConfig::default()),
    ]
}

#[test]
fn frames_from_the_kernel_arrive_whole_and_in_order_in_every_mode() {
    if !privileged() {
        return;
    }
    for mode in modes() {
        let link = Link::new();
        let mut dev = link.open(mode);
        let sock = link.peer_socket();
        let sent: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; 1 + 100 * usize::from(i)])
            .collect();
        for p in &sent {
            sock.send_to(p, (std::net::Ipv4Addr::from(STACK_IP), PORT))
                .unwrap();
        }
        let got = receive_udp(&mut dev, sent.len());
        assert_eq!(got, sent, "{mode:?}");
        let s = dev.stats();
        assert!(s.rx_frames >= 10, "{mode:?}: {s:?}");
        assert_eq!(
            (s.rx_kernel_drops, s.rx_truncated, s.rx_errors),
            (0, 0, 0),
            "{mode:?}"
        );
        if let IoMode::Batched { .. } = mode {
            assert!(s.rx_syscalls < s.rx_frames + 10, "{mode:?}: {s:?}");
        }
    }
}

#[test]
fn queued_frames_leave_on_flush_in_one_call() {
    if !privileged() {
        return;
    }
    for mode in modes() {
        let link = Link::new();
        let mut dev = link.open(mode);
        let sock = link.peer_socket();
        let port = sock.local_addr().unwrap().port();
        let mac = dev.mac();
        for i in 0..3u8 {
            let payload = [i; 20];
            let tok = dev.transmit(Instant::ZERO).unwrap();
            tok.consume(FRAME_OVERHEAD + payload.len(), |buf| {
                udp_frame(mac, port, &payload, buf)
            });
        }
        let s = dev.stats();
        if mode == IoMode::PerFrame {
            assert_eq!((dev.queued(), s.tx_frames, s.tx_syscalls), (0, 3, 3));
        } else {
            assert_eq!(
                (dev.queued(), s.tx_frames, s.tx_syscalls),
                (3, 0, 0),
                "{mode:?}"
            );
            dev.flush();
            let s = dev.stats();
            assert_eq!(
                (dev.queued(), s.tx_frames, s.tx_syscalls),
                (0, 3, 1),
                "{mode:?}"
            );
        }
        let mut buf = [0u8; 64];
        for i in 0..3u8 {
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 20], "{mode:?}: datagram {i}");
        }
        assert_eq!(dev.stats().tx_dropped, 0);
    }
}

#[test]
fn a_full_queue_flushes_itself_and_a_forgotten_flush_is_caught_by_the_next_poll() {
    if !privileged() {
        return;
    }
    let link = Link::new();
    let mut dev = link.open(IoMode::Batched { batch: 4 });
    let sock = link.peer_socket();
    let port = sock.local_addr().unwrap().port();
    let mac = dev.mac();
    for i in 0..6u8 {
        let tok = dev.transmit(Instant::from_millis(1)).unwrap();
        tok.consume(FRAME_OVERHEAD + 1, |buf| udp_frame(mac, port, &[i], buf));
    }
    // The fifth frame found the queue full: the first four left in one call.
    assert_eq!((dev.stats().tx_frames, dev.queued()), (4, 2));
    // No flush, then the next poll at a later time: the device sends the two itself.
    let _ = dev.receive(Instant::from_millis(2));
    let s = dev.stats();
    assert_eq!((s.tx_frames, s.late_flushes, dev.queued()), (6, 1, 0));
    let mut buf = [0u8; 8];
    for i in 0..6u8 {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i]);
    }
}

#[test]
fn our_own_frames_are_not_read_back() {
    if !privileged() {
        return;
    }
    let link = Link::new();
    let mut dev = link.open(IoMode::Batched { batch: 8 });
    // A second socket on the same interface sees what the first one sends as outgoing.
    let name = link.veth.name_b().to_owned();
    let mut other = in_netns(&link.user, || AfPacket::builder(&name).open())
        .unwrap()
        .unwrap();
    let mac = dev.mac();
    let tok = dev.transmit(Instant::ZERO).unwrap();
    tok.consume(FRAME_OVERHEAD + 4, |buf| udp_frame(mac, PORT, b"ping", buf));
    dev.flush();
    std::thread::sleep(Duration::from_millis(50));
    while other.receive(Instant::ZERO).is_some() {}
    while dev.receive(Instant::ZERO).is_some() {}
    let (s, o) = (dev.stats(), other.stats());
    assert_eq!(s.rx_frames, 0, "{s:?}");
    assert_eq!(o.rx_frames, 0, "{o:?}");
}

#[test]
fn a_missing_interface_or_bad_ring_says_what_to_do() {
    if !privileged() {
        return;
    }
    let err = AfPacket::builder("no-such-if0").open().unwrap_err();
    assert!(err.to_string().contains("ip link"), "{err}");
    let link = Link::new();
    let name = link.veth.name_b().to_owned();
    let bad = RingConfig {
        block_size: 3000,
        ..RingConfig::default()
    };
    let err = in_netns(&link.user, || {
        AfPacket::builder(&name).mode(IoMode::Ring(bad)).open()
    })
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("power of two"), "{err}");
    let err = in_netns(&link.user, || {
        AfPacket::builder(&name)
            .mode(IoMode::Batched { batch: 0 })
            .open()
    })
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("batch size 0"), "{err}");
}

/// Sends one datagram from the peer to `to` with no neighbour entry, so the peer's kernel
/// first asks for our MAC (and repeats only after a second), then counts on each of two
/// fanout members the frames `is_query` picks.
fn neighbour_queries_seen(
    link: &Link,
    to: std::net::SocketAddr,
    is_query: fn(&[u8]) -> bool,
) -> [usize; 2] {
    let name = link.veth.name_b().to_owned();
    let open = || {
        in_netns(&link.user, || {
            AfPacket::builder(&name)
                .mode(IoMode::Batched { batch: 8 })
                .fanout(77)
                .open()
        })
        .unwrap()
        .unwrap()
    };
    let mut devs = [open(), open()];
    let sock = in_netns(&link.peer, || {
        UdpSocket::bind(if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })
    })
    .unwrap()
    .unwrap();
    sock.send_to(b"who", to).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    devs.each_mut().map(|dev| {
        let mut n = 0;
        for _ in 0..3 {
            while let Some((rx, _)) = dev.receive(Instant::ZERO) {
                n += usize::from(rx.consume(is_query));
            }
        }
        n
    })
}

#[test]
fn every_member_of_a_fanout_group_sees_every_arp_frame_once() {
    if !privileged() {
        return;
    }
    let link = Link::new();
    let to = (std::net::Ipv4Addr::from(STACK_IP), PORT).into();
    let arp = |f: &[u8]| f.get(12..14) == Some(&[0x08, 0x06][..]);
    assert_eq!(neighbour_queries_seen(&link, to, arp), [1, 1]);
}

#[test]
fn every_member_of_a_fanout_group_sees_every_neighbour_solicitation_once() {
    if !privileged() {
        return;
    }
    let link = Link::new();
    let dev_a = link.veth.name_a().to_owned();
    ip(
        Some(&link.peer),
        &["addr", "add", "fd00:9::1/64", "dev", &dev_a, "nodad"],
    )
    .unwrap();
    let to = ("fd00:9::2".parse::<std::net::Ipv6Addr>().unwrap(), PORT).into();
    // IPv6, ICMPv6 directly, type 135.
    let solicit = |f: &[u8]| {
        f.get(12..14) == Some(&[0x86, 0xdd][..])
            && f.get(20) == Some(&58)
            && f.get(54) == Some(&135)
    };
    assert_eq!(neighbour_queries_seen(&link, to, solicit), [1, 1]);
}

#[test]
fn a_poll_takes_at_most_the_receive_budget() {
    if !privileged() {
        return;
    }
    for mode in [IoMode::PerFrame, IoMode::Ring(RingConfig::default())] {
        let link = Link::new();
        let mut dev = link.open_with(|b| b.mode(mode).rx_budget(4));
        let sock = link.peer_socket();
        for i in 0..10u8 {
            sock.send_to(&[i], (std::net::Ipv4Addr::from(STACK_IP), PORT))
                .unwrap();
        }
        // Past the ring's 1 ms block timeout, so all ten wait in one block.
        std::thread::sleep(Duration::from_millis(100));
        let mut polls = Vec::new();
        for _ in 0..4 {
            let mut n = 0;
            while let Some((rx, _)) = dev.receive(Instant::ZERO) {
                n += usize::from(rx.consume(udp_payload).is_some());
            }
            polls.push(n);
        }
        assert_eq!(polls, [4, 4, 2, 0], "{mode:?}");
    }
}
