//! Hostile frames injected into the device next to a live kernel connection.

mod support;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{echo_addr, EchoServer};
use ustack::frames::Link;
use ustack::smoltcp::phy::{self, Device, DeviceCapabilities};
use ustack::smoltcp::time::Instant;
use ustack::smoltcp::wire::{EthernetAddress, TcpControl, TcpRepr, TcpSeqNumber};
use ustack_drivers::TapDevice;
use ustack_tests::{privileged, random_bytes, SeededRng, TapLink, HOST_IP, STACK_IP, STACK_MAC};

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// A TAP device that first yields frames pushed into its queue from the test thread.
struct Inject {
    tap: TapDevice,
    queue: Queue,
}

enum Rx<T> {
    Injected(Vec<u8>),
    Tap(T),
}

impl<T: phy::RxToken> phy::RxToken for Rx<T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            Rx::Injected(frame) => f(&frame),
            Rx::Tap(t) => t.consume(f),
        }
    }
}

impl Device for Inject {
    type RxToken<'a> = Rx<<TapDevice as Device>::RxToken<'a>>;
    type TxToken<'a> = <TapDevice as Device>::TxToken<'a>;

    fn receive(&mut self, ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let injected = self.queue.lock().unwrap().pop_front();
        match injected {
            Some(frame) => Some((Rx::Injected(frame), self.tap.transmit(ts)?)),
            None => self.tap.receive(ts).map(|(rx, tx)| (Rx::Tap(rx), tx)),
        }
    }

    fn transmit(&mut self, ts: Instant) -> Option<Self::TxToken<'_>> {
        self.tap.transmit(ts)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.tap.capabilities()
    }
}

impl AsRawFd for Inject {
    fn as_raw_fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }
}

const HOST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);

/// An Ethernet + IPv4 + TCP frame from the host to ustack, with correct checksums.
fn tcp_frame(src_port: u16, payload: &[u8]) -> Vec<u8> {
    let link = Link {
        peer_mac: HOST_MAC,
        our_mac: EthernetAddress(STACK_MAC),
        peer4: HOST_IP,
        our4: STACK_IP,
        ..Link::default()
    };
    link.tcp4(&TcpRepr {
        src_port,
        dst_port: 7,
        control: TcpControl::Psh,
        seq_number: TcpSeqNumber(1000),
        ack_number: Some(TcpSeqNumber(1000)),
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    })
}

#[test]
fn hostile_frames_are_dropped_and_counted_while_a_connection_survives() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let queue: Queue = Arc::default();
    let device = Inject {
        tap: link.take_device(),
        queue: queue.clone(),
    };
    let server = EchoServer::start(device, 4);
    let mut conn = link
        .ns
        .run(|| TcpStream::connect_timeout(&echo_addr(), Duration::from_secs(10)).unwrap());
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let first = random_bytes(8, 100_000);
    conn.write_all(&first).unwrap();
    let mut got = vec![0u8; first.len()];
    conn.read_exact(&mut got).unwrap();
    assert!(got == first);

    let port = conn.local_addr().unwrap().port();
    let good = tcp_frame(port, b"EVIL");
    let mut bad_tcp_checksum = good.clone();
    let n = bad_tcp_checksum.len();
    bad_tcp_checksum[n - 1] ^= 0xff; // payload changed, checksum kept
    let mut bad_ip_checksum = good.clone();
    bad_ip_checksum[14 + 8] ^= 0x01; // TTL changed, header checksum kept
    let mut bad_version = good.clone();
    bad_version[14] = 0x75;
    let mut short_ip = good.clone();
    short_ip.truncate(14 + 20 + 10); // total length says more than is there
    let mut oversize = good.clone();
    oversize.resize(1514 + 100, 0);
    let tiny = vec![0xffu8; 10];
    let crafted = [
        bad_tcp_checksum,
        bad_ip_checksum,
        bad_version,
        short_ip,
        oversize,
        tiny,
    ];
    let mut rng = SeededRng::new(77);
    let mut garbage = Vec::new();
    for _ in 0..200 {
        let mut f = vec![0u8; 14 + rng.below(600) as usize];
        rng.fill(&mut f);
        f[..6].copy_from_slice(&STACK_MAC);
        garbage.push(f);
    }
    {
        let mut q = queue.lock().unwrap();
        q.extend(crafted.iter().cloned());
        q.extend(garbage.iter().cloned());
    }
    // The stack notices injected frames on its next wakeup: make one with more echo traffic.
    let second = random_bytes(9, 300_000);
    conn.write_all(&second).unwrap();
    let mut got = vec![0u8; second.len()];
    conn.read_exact(&mut got).unwrap();
    assert!(
        got == second,
        "the connection must be intact after the hostile frames"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        queue.lock().unwrap().is_empty(),
        "all injected frames were consumed"
    );
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "no injected byte may reach the echo stream"
    );
    let (stack, echo) = server.stop();
    let s = stack.stats();
    assert_eq!(echo.tcp_bytes, (first.len() + second.len()) as u64);
    // The pure classifier predicts each injected frame's fate; the live stack must agree exactly.
    let mut want = ustack::Stats::default();
    for f in crafted.iter().chain(garbage.iter()) {
        match ustack::ingress::classify(f, 1514) {
            ustack::ingress::Verdict::Drop(r) => match r {
                ustack::DropReason::Truncated => want.rx_truncated += 1,
                ustack::DropReason::Oversize => want.rx_oversize += 1,
                ustack::DropReason::BadChecksum => want.rx_bad_checksum += 1,
                ustack::DropReason::Malformed => want.rx_malformed += 1,
            },
            ustack::ingress::Verdict::Unsupported => want.rx_unsupported += 1,
            ustack::ingress::Verdict::Pass(_) => {}
        }
    }
    let got_counts = (
        s.rx_truncated,
        s.rx_oversize,
        s.rx_bad_checksum,
        s.rx_malformed,
        s.rx_unsupported,
    );
    let want_counts = (
        want.rx_truncated,
        want.rx_oversize,
        want.rx_bad_checksum,
        want.rx_malformed,
        want.rx_unsupported,
    );
    assert_eq!(
        got_counts, want_counts,
        "(truncated, oversize, bad checksum, malformed, unsupported)"
    );
    assert!(
        want.rx_bad_checksum >= 2
            && want.rx_truncated >= 2
            && want.rx_malformed >= 1
            && want.rx_oversize == 1
    );
}

#[test]
fn every_crafted_frame_lands_in_its_own_counter() {
    use ustack::ingress::{classify, Verdict};
    use ustack::DropReason::*;
    let good = tcp_frame(40000, b"x");
    assert!(matches!(
        classify(&good, 1514),
        Verdict::Pass(ustack::ingress::Facts::Tcp(_))
    ));
    let mut f = good.clone();
    let n = f.len();
    f[n - 1] ^= 0xff;
    assert_eq!(classify(&f, 1514), Verdict::Drop(BadChecksum));
    let mut f = good.clone();
    f[14 + 8] ^= 1;
    assert_eq!(classify(&f, 1514), Verdict::Drop(BadChecksum));
    let mut f = good.clone();
    f[14] = 0x75;
    assert_eq!(classify(&f, 1514), Verdict::Drop(Malformed));
    let mut f = good.clone();
    f.truncate(44);
    assert_eq!(classify(&f, 1514), Verdict::Drop(Truncated));
    assert_eq!(classify(&[0xff; 10], 1514), Verdict::Drop(Truncated));
    let mut f = good;
    f.resize(1614, 0);
    assert_eq!(classify(&f, 1514), Verdict::Drop(Oversize));
}
