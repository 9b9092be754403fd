//! Shared by the fuzz targets and the seed generator: an in-memory device, the input format
//! of `stack_ingress`, and the harness that drives a [`ustack::Stack`] with it. The
//! `udp_icmp` target's format, harness and model are in [`udp_icmp`], and the independent
//! reading of frame bytes both it and `ingress_classify` check against is in
//! [`reference`](mod@reference).
//!
//! The `stack_ingress` input is a sequence of records, each
//!
//! ```text
//! [len_hi, len_lo, ctl, frame bytes (len of them; fewer if the input ends first)]
//! ```
//!
//! `ctl` says what happens around the frame (see [`ctl`]): how far the clock advances before
//! the poll that follows it, whether to queue it without polling (so several frames arrive
//! in one poll), and which application actions run afterwards.
//!
//! Everything here is deterministic: the same input drives the same stack through the same
//! states, which is what lets `examples/gen_seeds.rs` record real handshakes as seeds.

use std::collections::VecDeque;

use ustack::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv6Address};
use ustack::{
    Config, Error, Stack, TcpHandle, TcpListener, TcpOptions, Token, UdpHandle, UdpOptions,
};

pub mod frames;
pub mod ingress;
pub mod reference;
pub mod seeds;
pub mod tcp_conversation;
pub mod udp_icmp;

/// Largest frame the device delivers or accepts (Ethernet header included).
pub const MTU: usize = 1514;
/// The stack's MAC.
pub const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
/// The peer's MAC, used by the seeds.
pub const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
/// The stack's IPv4 address (in 10.0.0.0/24).
pub const OUR_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
/// The peer `connect` goes to.
pub const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
/// The stack's IPv6 address (in fd00::/64).
pub const OUR_IP6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// An IPv6 peer, used by the seeds.
pub const PEER_IP6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The TCP listener's port and the UDP socket's port.
pub const PORT: u16 = 7;
/// Where the outgoing connection goes.
pub const CONNECT_PORT: u16 = 80;
/// Listener backlog.
pub const BACKLOG: usize = 4;
/// Streams (accepted plus connected) the harness keeps before aborting new ones.
pub const MAX_STREAMS: usize = 16;

/// The `ctl` byte of a record.
pub mod ctl {
    /// Low three bits: index into [`super::STEPS`], how far the clock moves before the poll.
    pub const STEP_MASK: u8 = 0x07;
    /// Queue the frame without polling, so the next poll sees several frames.
    pub const BATCH: u8 = 0x08;
    /// After the poll, write a chunk to every stream.
    pub const WRITE: u8 = 0x10;
    /// After the poll, close the oldest stream gracefully.
    pub const CLOSE: u8 = 0x20;
    /// After the poll, abort the oldest stream; with no stream, open a new connection.
    pub const ABORT: u8 = 0x40;
    /// After the poll, answer the last UDP sender with a datagram.
    pub const UDP_SEND: u8 = 0x80;
}

/// Clock steps selected by `ctl & STEP_MASK`, in milliseconds: from none to past every
/// TCP timer ustack configures (SYN hold 500 ms, retransmissions, TIME-WAIT).
pub const STEPS: [u64; 8] = [0, 1, 10, 100, 600, 1_500, 5_000, 65_000];

/// One record of a `stack_ingress` input.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// What to do around the frame.
    pub ctl: u8,
    /// The frame, as the device delivers it.
    pub frame: &'a [u8],
}

/// Splits a `stack_ingress` input into records. A short last record takes what is left.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        if data.len() < 3 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let ctl = data[2];
        let rest = &data[3..];
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        data = tail;
        Some(Record { ctl, frame })
    })
}

/// Appends one record to a `stack_ingress` input.
pub fn encode(out: &mut Vec<u8>, ctl: u8, frame: &[u8]) {
    let len = u16::try_from(frame.len()).expect("frame longer than 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.push(ctl);
    out.extend_from_slice(frame);
}

/// A device whose receive queue the harness fills and whose transmissions are discarded
/// (or, for the seed generator, kept in `sent`).
#[derive(Default)]
pub struct FuzzDevice {
    /// Frames waiting to be received.
    pub rx: VecDeque<Vec<u8>>,
    /// Keep transmitted frames in `sent` instead of discarding them.
    pub capture: bool,
    /// Transmitted frames, when `capture` is set.
    pub sent: Vec<Vec<u8>>,
    /// Frames transmitted so far.
    pub tx_frames: u64,
    scratch: Vec<u8>,
}

/// Receive token: owns the frame.
pub struct RxTok(Vec<u8>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Transmit token: a scratch buffer, and where to keep the frame if capturing.
pub struct TxTok<'a> {
    scratch: &'a mut Vec<u8>,
    sent: Option<&'a mut Vec<Vec<u8>>>,
    count: &'a mut u64,
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        assert!(
            len <= MTU,
            "smoltcp asked to transmit a {len}-byte frame over a {MTU}-byte MTU"
        );
        self.scratch.clear();
        self.scratch.resize(len, 0);
        let r = f(&mut self.scratch[..]);
        *self.count += 1;
        if let Some(sent) = self.sent {
            sent.push(self.scratch.clone());
        }
        r
    }
}

impl FuzzDevice {
    fn tx(&mut self) -> TxTok<'_> {
        TxTok {
            scratch: &mut self.scratch,
            sent: if self.capture {
                Some(&mut self.sent)
            } else {
                None
            },
            count: &mut self.tx_frames,
        }
    }
}

impl Device for FuzzDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(RxTok, TxTok<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxTok(frame), self.tx()))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<TxTok<'_>> {
        Some(self.tx())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// The configuration every run uses (fixed seed: runs are reproducible).
pub fn config() -> Config {
    let config = Config::new(OUR_MAC.0, "10.0.0.1/24".parse().expect("cidr"))
        .ipv6("fd00::1/64".parse().expect("cidr"))
        .seed(0x5eed_f022);
    let mut config = small_buffers(config);
    config.max_sockets = 64;
    config
}

/// 2 KiB TCP buffers and 4 small UDP datagram slots, so windows and queues fill up and the
/// fuzzers reach the zero-window and full-buffer paths.
pub fn small_buffers(mut config: Config) -> Config {
    config.tcp = TcpOptions {
        rx_buffer: 2048,
        tx_buffer: 2048,
        ..TcpOptions::default()
    };
    config.udp = UdpOptions {
        rx_packets: 4,
        rx_bytes: 2048,
        tx_packets: 4,
        tx_bytes: 2048,
    };
    config
}

/// A stack with a listener on [`PORT`], a UDP socket on [`PORT`] and a connection to
/// [`PEER_IP`]:[`CONNECT_PORT`] under way, fed one [`Record`] at a time.
pub struct Harness {
    /// The stack under test.
    pub stack: Stack<'static, FuzzDevice>,
    /// The stack's clock.
    pub now: Instant,
    listener: TcpListener,
    udp: UdpHandle,
    /// Accepted and connected streams, oldest first.
    pub streams: Vec<TcpHandle>,
    last_udp_peer: Option<IpEndpoint>,
    /// Bytes read from all streams.
    pub tcp_read: usize,
    /// Datagrams received.
    pub udp_read: usize,
    buf: Vec<u8>,
}

impl Harness {
    /// Builds the stack and runs its first poll.
    pub fn new(capture: bool) -> Harness {
        let now = Instant::from_millis(1_000);
        let device = FuzzDevice {
            capture,
            ..FuzzDevice::default()
        };
        let mut stack = Stack::new(config(), device, now).expect("stack");
        let listener = stack.listen(PORT, BACKLOG).expect("listen");
        let udp = stack.udp_bind(PORT).expect("udp_bind");
        let conn = stack
            .connect(IpEndpoint::new(IpAddress::Ipv4(PEER_IP), CONNECT_PORT))
            .expect("connect");
        let mut h = Harness {
            stack,
            now,
            listener,
            udp,
            streams: vec![conn],
            last_udp_peer: None,
            tcp_read: 0,
            udp_read: 0,
            buf: vec![0; 4096],
        };
        h.poll();
        h
    }

    /// Runs a whole `stack_ingress` input.
    pub fn run(&mut self, data: &[u8]) {
        for rec in records(data) {
            self.step(rec);
        }
        // Whatever was batched at the end still gets its poll.
        self.poll();
    }

    /// Delivers one record: queues the frame, advances the clock, polls, and acts like an
    /// application would on the events.
    pub fn step(&mut self, rec: Record<'_>) {
        self.stack.device_mut().rx.push_back(rec.frame.to_vec());
        if rec.ctl & ctl::BATCH != 0 {
            return;
        }
        self.now += Duration::from_millis(STEPS[usize::from(rec.ctl & ctl::STEP_MASK)]);
        self.poll();
        self.act(rec.ctl);
        // Send what the application queued, and let the stack see the closes.
        self.poll();
    }

    /// One poll, then every event handled.
    pub fn poll(&mut self) {
        self.stack.poll(self.now);
        let _ = self.stack.poll_delay(self.now);
        self.service();
    }

    fn service(&mut self) {
        // Bounded: each event is consumed, but be defensive against a stack that keeps
        // producing them (that would be a bug worth a hang report, not an endless loop).
        for _ in 0..1024 {
            let Some(ev) = self.stack.next_event() else {
                break;
            };
            match ev.token {
                Token::Listener(_) => self.accept_all(),
                Token::Tcp(_) => {}
                Token::Udp(_) => self.read_udp(),
            }
        }
        // Level-triggered in effect: try everything, whatever the events said.
        self.accept_all();
        self.read_streams();
        self.read_udp();
    }

    fn accept_all(&mut self) {
        for _ in 0..=ustack::MAX_BACKLOG {
            match self.stack.accept(self.listener) {
                Ok(h) if self.streams.len() < MAX_STREAMS => self.streams.push(h),
                Ok(h) => {
                    let _ = self.stack.tcp_abort(h);
                }
                Err(_) => break,
            }
        }
    }

    fn read_streams(&mut self) {
        let mut i = 0;
        while i < self.streams.len() {
            let h = self.streams[i];
            let mut done = false;
            for _ in 0..64 {
                match self.stack.tcp_read(h, &mut self.buf) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => {
                        assert!(n <= self.buf.len());
                        self.tcp_read += n;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            // Exercise the queries a real application makes.
            let _ = self.stack.tcp_state(h);
            let _ = self.stack.tcp_connected(h);
            let _ = self.stack.tcp_recv_queue(h);
            let _ = self.stack.tcp_send_queue(h);
            let _ = self.stack.tcp_peer_addr(h);
            let _ = self.stack.tcp_local_addr(h);
            if done {
                let _ = self.stack.tcp_close(h);
                self.streams.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn read_udp(&mut self) {
        for _ in 0..64 {
            match self.stack.udp_recv_from(self.udp, &mut self.buf) {
                Ok((n, meta)) => {
                    assert!(n <= self.buf.len());
                    self.udp_read += 1;
                    self.last_udp_peer = Some(meta.remote);
                }
                Err(Error::WouldBlock) => break,
                Err(_) => {}
            }
        }
    }

    fn act(&mut self, c: u8) {
        if c & ctl::WRITE != 0 {
            for &h in &self.streams {
                let _ = self
                    .stack
                    .tcp_write(h, b"ustack fuzz echo: the quick brown fox\r\n");
            }
        }
        if c & ctl::CLOSE != 0 && !self.streams.is_empty() {
            let h = self.streams.remove(0);
            let _ = self.stack.tcp_close(h);
        }
        if c & ctl::ABORT != 0 {
            if self.streams.is_empty() {
                let remote = IpEndpoint::new(IpAddress::Ipv4(PEER_IP), CONNECT_PORT);
                if let Ok(h) = self.stack.connect(remote) {
                    self.streams.push(h);
                }
            } else {
                let h = self.streams.remove(0);
                let _ = self.stack.tcp_abort(h);
            }
        }
        if c & ctl::UDP_SEND != 0 {
            if let Some(peer) = self.last_udp_peer {
                let _ = self.stack.udp_send_to(self.udp, b"ustack fuzz udp", peer);
            }
        }
    }
}
