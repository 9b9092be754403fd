//! The conversation: the stack, the scripted peer's state, the handshake, and each op.

use std::collections::VecDeque;

use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint};
use ustack::{Stack, TcpHandle, TcpListener};

use crate::frames::{arp_request, ndisc_solicit};
use crate::{config, FuzzDevice, CONNECT_PORT, PEER_IP, PEER_IP6, PORT, STEPS};

use super::checks::Report;
use super::script::{AckChoice, Delivery, Handshake, Op, Opts, Seg, SeqChoice, Setup};
use super::wire::{option_bytes, parse_out, seq_max, Parsed, Pkt};
use super::{
    flag, peer_byte, AFTER_FIXES, BACKLOG, MAX_HELD, MAX_OPS, MAX_PAYLOAD, PEER_PORT, READ_BUF,
};

/// The peer, the stack and the reference.
pub struct Conversation {
    /// The stack under test.
    pub stack: Stack<'static, FuzzDevice>,
    pub(super) now: Instant,
    pub(super) ipv6: bool,
    pub(super) active: bool,
    pub(super) auto_read: bool,
    pub(super) listener: Option<TcpListener>,
    pub(super) conn: Option<TcpHandle>,
    pub(super) ever_conn: bool,
    pub(super) our_port: u16,
    pub(super) peer_port: u16,
    /// Peer side: the end of everything it sent, the last ACK it sent.
    pub(super) peer_next: u32,
    pub(super) peer_last_ack: Option<u32>,
    /// Acks the peer sent (distinct), for the send-queue check.
    pub(super) peer_acks: Vec<u32>,
    /// Stack side, as the peer sees it.
    pub(super) stack_syns: Vec<u32>,
    pub(super) stack_next: Option<u32>,
    pub(super) stack_ack: Option<u32>,
    pub(super) stack_tsval: u32,
    /// Starts of data segments the stack sent, for counting retransmissions.
    pub(super) stack_data_starts: Vec<u32>,
    /// Reference for the stream the peer sends: SYN sequence numbers (candidate IRS, alive
    /// while consistent with what was read) and FIN positions.
    pub(super) irs: Vec<(u32, bool)>,
    pub(super) fins: Vec<u32>,
    /// Where the data of each FIN segment in `fins` starts.
    pub(super) fin_starts: Vec<u32>,
    /// For each FIN in `fins`, the end of the furthest data delivered to the stack before
    /// it was sent (bytes past the FIN that may already sit out of order in the stack).
    pub(super) fin_highs: Vec<u32>,
    /// The end of the furthest data delivered to the stack.
    pub(super) delivered_end: Option<u32>,
    pub(super) peer_rst: bool,
    /// Application side.
    pub(super) shut: bool,
    /// The application shut down its side while the stack was still in SYN-SENT.
    pub(super) shut_connecting: bool,
    /// The application closed its side while the stack was in SYN-RECEIVED.
    pub(super) shut_unsynced: bool,
    pub(super) held: Vec<Pkt>,
    pub(super) history: VecDeque<Pkt>,
    pub(super) buf: Vec<u8>,
    /// The peer sends no bytes at or past a FIN it sent (the default while a finding is
    /// pending, see [`AFTER_FIXES`]).
    pub trim_after_fin: bool,
    /// What happened.
    pub report: Report,
}

impl Conversation {
    /// Builds the stack, lets it learn the peer's link address and runs the handshake.
    pub fn new(setup: &Setup) -> Conversation {
        let now = Instant::from_millis(1_000);
        let device = FuzzDevice {
            capture: true,
            ..FuzzDevice::default()
        };
        let stack = Stack::new(config(), device, now).expect("stack");
        let mut c = Conversation {
            stack,
            now,
            ipv6: setup.ipv6,
            active: setup.active,
            auto_read: setup.auto_read,
            listener: None,
            conn: None,
            ever_conn: false,
            our_port: PORT,
            peer_port: PEER_PORT,
            peer_next: setup.isn.wrapping_add(1),
            peer_last_ack: None,
            peer_acks: Vec::new(),
            stack_syns: Vec::new(),
            stack_next: None,
            stack_ack: None,
            stack_tsval: 0,
            stack_data_starts: Vec::new(),
            irs: Vec::new(),
            fins: Vec::new(),
            fin_starts: Vec::new(),
            fin_highs: Vec::new(),
            delivered_end: None,
            peer_rst: false,
            shut: false,
            shut_connecting: false,
            shut_unsynced: false,
            held: Vec::new(),
            history: VecDeque::new(),
            buf: vec![0; READ_BUF],
            trim_after_fin: !AFTER_FIXES,
            report: Report::default(),
        };
        // The stack answers nothing until it knows where the peer is.
        let resolve = if c.ipv6 {
            ndisc_solicit()
        } else {
            arp_request()
        };
        c.stack.device_mut().rx.push_back(resolve);
        c.settle();
        if c.active {
            let addr = if c.ipv6 {
                IpAddress::Ipv6(PEER_IP6)
            } else {
                IpAddress::Ipv4(PEER_IP)
            };
            let h = c
                .stack
                .connect(IpEndpoint::new(addr, CONNECT_PORT))
                .expect("connect");
            c.conn = Some(h);
            c.ever_conn = true;
            c.peer_port = CONNECT_PORT;
            c.our_port = c.stack.tcp_local_addr(h).map_or(0, |e| e.port);
            c.settle();
        } else {
            c.listener = Some(c.stack.listen(PORT, BACKLOG).expect("listen"));
        }
        let syn = |flags: u8| Seg {
            seq: SeqChoice::Raw(setup.isn),
            len: 0,
            flags,
            ack: AckChoice::Latest,
            window: setup.window,
            opts: setup.opts,
            delivery: Delivery::Now,
        };
        match (setup.handshake, setup.active) {
            (Handshake::Skip, _) => {}
            (Handshake::Half, true) => c.send(&syn(flag::SYN)),
            (Handshake::Full, true) => c.send(&syn(flag::SYN | flag::ACK)),
            (hs, false) => {
                c.send(&syn(flag::SYN));
                if hs == Handshake::Full {
                    let mut ack = syn(flag::ACK);
                    ack.seq = SeqChoice::Next;
                    // Keep the timestamps going, but the other options belong to the SYN.
                    ack.opts = Opts {
                        ts: setup.opts.ts,
                        ..Opts::default()
                    };
                    c.send(&ack);
                }
            }
        }
        c
    }

    /// Runs the ops of a script.
    pub fn run(&mut self, ops: &[Op]) {
        for op in ops.iter().take(MAX_OPS) {
            self.op(op);
        }
        self.finish();
    }

    /// Runs one op, then polls and checks.
    pub fn op(&mut self, op: &Op) {
        match *op {
            Op::Send(ref s) => self.send(s),
            Op::Release(n) => {
                if !self.held.is_empty() {
                    if n == 255 {
                        while let Some(f) = self.held.pop() {
                            self.deliver(f);
                        }
                    } else {
                        let f = self.held.remove(usize::from(n) % self.held.len());
                        self.deliver(f);
                    }
                    self.settle();
                }
            }
            Op::Replay(n) => {
                if !self.history.is_empty() {
                    let i = self.history.len() - 1 - usize::from(n) % self.history.len();
                    let f = self.history[i].clone();
                    self.deliver(f);
                    self.settle();
                }
            }
            Op::Advance(n) => {
                self.now += Duration::from_millis(STEPS[usize::from(n & 7)]);
                self.settle();
            }
            Op::AdvanceMs(n) => {
                self.now += Duration::from_millis(u64::from(n));
                self.settle();
            }
            Op::Read(n) => {
                self.read(if n == 0 { usize::MAX } else { usize::from(n) });
                self.settle();
            }
            Op::Write(n) => {
                self.write(usize::from(n));
                self.settle();
            }
            Op::Shutdown => {
                if let Some(h) = self.conn {
                    self.note_close(h);
                    if self.stack.tcp_shutdown_write(h).is_ok() {
                        self.shut = true;
                    }
                    self.settle();
                }
            }
            Op::Close => {
                if let Some(h) = self.conn.take() {
                    // The stack finishes the close: FIN after what was written.
                    self.note_close(h);
                    self.sync_acked(h);
                    if self.stack.tcp_close(h).is_ok() {
                        self.shut = true;
                    }
                    self.settle();
                }
            }
            Op::Abort => {
                if let Some(h) = self.conn.take() {
                    self.sync_acked(h);
                    let _ = self.stack.tcp_abort(h);
                    self.settle();
                }
            }
        }
    }

    /// The last checks of a run.
    pub fn finish(&mut self) {
        self.settle();
        self.report.state = self.conn.and_then(|h| self.stack.tcp_state(h).ok());
    }

    /// Builds the segment, remembers what it says, and delivers or holds it.
    fn send(&mut self, s: &Seg) {
        let syn = s.flags & flag::SYN != 0;
        let seq = match s.seq {
            SeqChoice::Next => self.peer_next,
            SeqChoice::Back(n) => self.peer_next.wrapping_sub(u32::from(n)),
            SeqChoice::Ahead(n) => self.peer_next.wrapping_add(u32::from(n)),
            SeqChoice::Acked => self.stack_ack.unwrap_or(self.peer_next),
            SeqChoice::Raw(n) => n,
        };
        let latest = self.stack_next.unwrap_or(0);
        let ack = (s.flags & flag::ACK != 0).then(|| match s.ack {
            AckChoice::Latest => latest,
            AckChoice::Una => self.peer_last_ack.unwrap_or(latest),
            AckChoice::Back(n) => latest.wrapping_sub(u32::from(n)),
            AckChoice::Ahead(n) => latest.wrapping_add(u32::from(n)),
            AckChoice::Raw(n) => n,
        });
        let mut len = usize::from(s.len).min(MAX_PAYLOAD);
        let data_start = seq.wrapping_add(u32::from(syn));
        if self.trim_after_fin {
            len = self.before_fin(data_start, len as u32) as usize;
        }
        let payload: Vec<u8> = (0..len as u32)
            .map(|k| peer_byte(data_start.wrapping_add(k)))
            .collect();
        let tsval = self.now.total_millis() as u32;
        let sack_base = self.peer_last_ack.unwrap_or(latest);
        let opts = option_bytes(&s.opts, tsval, self.stack_tsval, sack_base);
        let frame = self.frame(seq, ack, s.flags, s.window, &opts, &payload);
        let pkt = Pkt {
            frame,
            start: data_start,
            len: len as u32,
        };

        // The reference learns only from what is sent, whether or not the stack takes it.
        let end = data_start.wrapping_add(len as u32);
        if syn && !self.irs.iter().any(|&(c, _)| c == seq) {
            // A SYN after reading began cannot be the one the reader's connection started
            // with.
            let alive = self.report.read == 0;
            self.irs.push((seq, alive));
        }
        if s.flags & flag::FIN != 0 && !self.fins.contains(&end) && self.fins.len() < 4096 {
            self.fins.push(end);
            self.fin_starts.push(data_start);
            self.fin_highs
                .push(self.delivered_end.map_or(end, |h| seq_max(h, end)));
        }
        if s.flags & flag::RST != 0 {
            self.peer_rst = true;
        } else {
            let fin = u32::from(s.flags & flag::FIN != 0);
            self.peer_next = seq_max(self.peer_next, end.wrapping_add(fin));
        }
        if let Some(a) = ack {
            self.peer_last_ack = Some(a);
            if !self.peer_acks.contains(&a) && self.peer_acks.len() < 1024 {
                self.peer_acks.push(a);
            }
        }
        match s.delivery {
            Delivery::Hold if self.held.len() < MAX_HELD => self.held.push(pkt),
            Delivery::Twice => {
                self.deliver(pkt.clone());
                self.deliver(pkt);
                self.settle();
            }
            _ => {
                self.deliver(pkt);
                self.settle();
            }
        }
    }

    /// Polls until the stack is quiet (bounded), learning from and checking what it sends,
    /// answering its address resolution, accepting, and reading if `auto_read`.
    pub(super) fn settle(&mut self) {
        for _ in 0..4 {
            self.stack.poll(self.now);
            let _ = self.stack.poll_delay(self.now);
            for _ in 0..1024 {
                if self.stack.next_event().is_none() {
                    break;
                }
            }
            let sent = std::mem::take(&mut self.stack.device_mut().sent);
            let mut resolve = None;
            for f in &sent {
                match parse_out(f) {
                    Parsed::Tcp(o) => self.observe(&o),
                    Parsed::Resolve(v6) => resolve = Some(v6),
                    Parsed::Other => {}
                }
            }
            self.accept();
            if self.auto_read {
                self.read(usize::MAX);
            }
            self.check_queues();
            match resolve {
                Some(v6) => {
                    let f = if v6 { ndisc_solicit() } else { arp_request() };
                    self.stack.device_mut().rx.push_back(f);
                }
                None if self.stack.device().rx.is_empty() => break,
                None => {}
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = self.listener else { return };
        if self.ever_conn {
            return;
        }
        if let Ok(h) = self.stack.accept(l) {
            self.conn = Some(h);
            self.ever_conn = true;
            self.report.established = true;
        }
    }
}
