//! The checks against the reference, on what the stack sends and what the application
//! reads and writes, and the report of a run.

use ustack::smoltcp::socket::tcp::State;
use ustack::{Error, TcpHandle};

use super::harness::Conversation;
use super::wire::{diff, seq_max, Out};
use super::{app_byte, peer_byte, AFTER_FIXES, READ_BUF, SHUTDOWN_FIXED};

/// What a run saw, for the seed tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Bytes the application read.
    pub read: u64,
    /// The application read end of stream.
    pub eof: bool,
    /// The first hard error a read or write returned.
    pub error: Option<Error>,
    /// Bytes the application wrote (queued into the stack).
    pub written: u64,
    /// Highest offset of the application's stream the stack sent (end of the segment).
    pub sent: u64,
    /// Bytes of the application's stream the stack dequeued as acknowledged.
    pub acked: u64,
    /// The stack sent a FIN / RST on the conversation.
    pub stack_fin: bool,
    /// The stack sent an RST.
    pub stack_rst: bool,
    /// Data segments the stack sent again (same start as an earlier one).
    pub retransmits: u64,
    /// The connection's last state the application saw (`None`: no handle).
    pub state: Option<State>,
    /// The application's connection got past the handshake (accepted, or connected).
    pub established: bool,
    /// Zero-window advertisements the stack sent.
    pub zero_windows: u64,
    /// The stack sent a FIN with its SYN's sequence number (pending finding).
    pub fin_on_syn: bool,
    /// The stream ended inside a FIN segment's data (pending finding).
    pub fin_cut: bool,
    /// The stream ended past a FIN, after bytes the peer had sent out of order beyond it
    /// before the FIN (pending finding).
    pub fin_late: bool,
}

impl Conversation {
    /// Learns from and checks one segment the stack sent.
    pub(super) fn observe(&mut self, o: &Out) {
        if o.src_port != self.our_port || o.dst_port != self.peer_port {
            return;
        }
        if let Some(ts) = o.tsval {
            self.stack_tsval = ts;
        }
        if o.rst {
            self.report.stack_rst = true;
            return;
        }
        if o.syn {
            if !self.stack_syns.contains(&o.seq) && self.stack_syns.len() < 4096 {
                // The first SYN, or a new connection (another listener member): the peer
                // acknowledges from there on.
                self.stack_syns.push(o.seq);
                self.stack_next = Some(o.seq.wrapping_add(1));
            }
            assert!(
                o.payload.is_empty() && !o.fin,
                "the stack sent a SYN with data or FIN: {o:?}"
            );
        }
        if let Some(a) = o.ack {
            self.stack_ack = Some(a);
        }
        if o.window == 0 {
            self.report.zero_windows += 1;
        }
        let start = o.seq.wrapping_add(u32::from(o.syn));
        let end = start.wrapping_add(o.payload.len() as u32);
        self.stack_next = Some(match self.stack_next {
            Some(n) => seq_max(n, end.wrapping_add(u32::from(o.fin))),
            None => end.wrapping_add(u32::from(o.fin)),
        });
        let written = self.report.written;
        if !o.payload.is_empty() {
            // Some SYN the stack sent must place these bytes right in the written stream.
            let ok = self.stack_syns.iter().any(|&iss| {
                let off = u64::from(start.wrapping_sub(iss.wrapping_add(1)));
                off + o.payload.len() as u64 <= written
                    && o.payload
                        .iter()
                        .enumerate()
                        .all(|(k, &b)| b == app_byte(off + k as u64))
            });
            assert!(
                ok,
                "the stack sent bytes the application did not write there: seq {start}, {} bytes, \
                 {written} written, stack SYNs {:?}",
                o.payload.len(),
                self.stack_syns
            );
            if self.stack_data_starts.contains(&start) {
                self.report.retransmits += 1;
            } else if self.stack_data_starts.len() < 4096 {
                self.stack_data_starts.push(start);
            }
            let top = self
                .stack_syns
                .iter()
                .map(|&iss| u64::from(end.wrapping_sub(iss.wrapping_add(1))))
                .filter(|&e| e <= written)
                .max()
                .unwrap_or(0);
            self.report.sent = self.report.sent.max(top);
        }
        if o.fin {
            self.report.stack_fin = true;
            assert!(
                self.shut,
                "the stack sent a FIN the application never asked for: {o:?}"
            );
            // Fixed finding: after a close in SYN-RECEIVED the FIN reused the SYN's number.
            let known = !SHUTDOWN_FIXED && self.shut_unsynced && written == 0;
            let ok = self.stack_syns.iter().any(|&iss| {
                u64::from(end.wrapping_sub(iss.wrapping_add(1))) == written || known && end == iss
            });
            if known && self.stack_syns.contains(&end) {
                self.report.fin_on_syn = true;
            }
            assert!(
                ok,
                "the stack's FIN at {end} is not right after the {written} bytes written \
                 (stack SYNs {:?})",
                self.stack_syns
            );
        }
    }

    /// Reads up to `max` bytes (bounded), checking them against the reference.
    pub(super) fn read(&mut self, max: usize) {
        let Some(h) = self.conn else { return };
        let mut left = max;
        for _ in 0..64 {
            if left == 0 {
                break;
            }
            let want = left.min(READ_BUF);
            let r = self.stack.tcp_read(h, &mut self.buf[..want]);
            match r {
                Ok(0) => {
                    self.check_eof();
                    break;
                }
                Ok(n) => {
                    assert!(n <= want);
                    assert!(!self.report.eof, "{n} bytes read after end of stream");
                    assert!(
                        self.report.error.is_none(),
                        "{n} bytes read after {:?}",
                        self.report.error
                    );
                    self.check_data(n);
                    left -= n;
                }
                Err(Error::WouldBlock) => {
                    assert!(!self.report.eof, "WouldBlock after end of stream");
                    break;
                }
                Err(e) => {
                    self.hard_error(e);
                    break;
                }
            }
        }
    }

    fn check_data(&mut self, n: usize) {
        let at = self.report.read as u32;
        let data = &self.buf[..n];
        for (c, alive) in &mut self.irs {
            if *alive {
                let base = c.wrapping_add(1).wrapping_add(at);
                *alive = data
                    .iter()
                    .enumerate()
                    .all(|(k, &b)| b == peer_byte(base.wrapping_add(k as u32)));
            }
        }
        assert!(
            self.irs.iter().any(|&(_, a)| a),
            "the application read {n} bytes at offset {at} that are not the peer's stream \
             after any SYN it sent ({:?}): {:02x?}",
            self.irs,
            &data[..n.min(32)]
        );
        self.report.read += n as u64;
    }

    fn check_eof(&mut self) {
        assert!(
            self.report.error.is_none(),
            "end of stream after {:?}",
            self.report.error
        );
        if !self.report.eof {
            let at = self.report.read as u32;
            let mut ok = self.irs.iter().any(|&(c, alive)| {
                alive && self.fins.contains(&c.wrapping_add(1).wrapping_add(at))
            });
            if !ok && !AFTER_FIXES {
                // Pending finding: a FIN segment cut at the window still ends the stream.
                let cut = self.irs.iter().any(|&(c, alive)| {
                    let pos = c.wrapping_add(1).wrapping_add(at);
                    alive
                        && self
                            .fin_starts
                            .iter()
                            .zip(&self.fins)
                            .any(|(&s, &f)| diff(pos, s) >= 0 && diff(f, pos) > 0)
                });
                self.report.fin_cut = cut;
                ok = cut;
            }
            if !ok && !AFTER_FIXES {
                // Pending finding: bytes past the FIN's position that reached the stack out
                // of order before the FIN are read, and the stream ends after them.
                let late = self.irs.iter().any(|&(c, alive)| {
                    let pos = c.wrapping_add(1).wrapping_add(at);
                    alive
                        && self
                            .fins
                            .iter()
                            .zip(&self.fin_highs)
                            .any(|(&f, &h)| diff(pos, f) > 0 && diff(h, pos) >= 0)
                });
                self.report.fin_late = late;
                ok = late;
            }
            assert!(
                ok,
                "end of stream after {at} bytes, but the peer sent no FIN there (FINs at {:?}, \
                 SYNs {:?})",
                self.fins, self.irs
            );
        }
        self.report.eof = true;
    }

    fn hard_error(&mut self, e: Error) {
        match e {
            Error::ConnectionReset | Error::ConnectionRefused => {
                assert!(self.peer_rst, "{e:?} though the peer never sent an RST")
            }
            Error::NotConnected => {}
            Error::TimedOut => assert!(
                !SHUTDOWN_FIXED && self.shut_connecting,
                "TimedOut without a timeout configured"
            ),
            e => panic!("unexpected error {e:?}"),
        }
        if e == Error::ConnectionRefused {
            assert!(self.active, "ConnectionRefused on an accepted connection");
        }
        if let Some(prev) = self.report.error {
            assert_eq!(prev, e, "the error changed");
        }
        self.report.error = Some(e);
    }

    pub(super) fn write(&mut self, n: usize) {
        let Some(h) = self.conn else { return };
        let from = self.report.written;
        let data: Vec<u8> = (0..n as u64).map(|k| app_byte(from + k)).collect();
        match self.stack.tcp_write(h, &data) {
            Ok(k) => {
                assert!(k <= n);
                self.report.written += k as u64;
            }
            Err(Error::WouldBlock) => {}
            Err(e) => self.hard_error_write(e),
        }
    }

    fn hard_error_write(&mut self, e: Error) {
        match e {
            Error::ConnectionReset | Error::ConnectionRefused => assert!(
                self.peer_rst,
                "write: {e:?} though the peer never sent an RST"
            ),
            Error::NotConnected => {}
            Error::TimedOut => assert!(
                !SHUTDOWN_FIXED && self.shut_connecting,
                "write: TimedOut without a timeout"
            ),
            e => panic!("write: unexpected error {e:?}"),
        }
    }

    /// Notes closes in the states of the fixed findings (see [`SHUTDOWN_FIXED`]).
    pub(super) fn note_close(&mut self, h: TcpHandle) {
        match self.stack.tcp_state(h) {
            Ok(State::SynSent) => self.shut_connecting = true,
            Ok(State::SynReceived) => self.shut_unsynced = true,
            _ => {}
        }
    }

    /// Records what the stack dequeued before the handle goes away.
    pub(super) fn sync_acked(&mut self, h: TcpHandle) {
        if let Ok(q) = self.stack.tcp_send_queue(h) {
            self.report.acked = self.report.written.saturating_sub(q as u64);
        }
    }

    /// The stack's queues and state answers agree with each other and with the peer.
    pub(super) fn check_queues(&mut self) {
        let Some(h) = self.conn else { return };
        let Ok(state) = self.stack.tcp_state(h) else {
            return;
        };
        self.report.state = Some(state);
        let connected = self.stack.tcp_connected(h);
        match state {
            State::SynSent | State::SynReceived => assert_eq!(connected, Ok(false)),
            State::Closed => assert!(connected.is_err(), "{connected:?} in {state}"),
            _ => {
                assert_eq!(connected, Ok(true), "in {state}");
                self.report.established = true;
            }
        }
        if let Ok(q) = self.stack.tcp_recv_queue(h) {
            assert!(q <= 2048, "receive queue {q} over the buffer");
        }
        let Ok(q) = self.stack.tcp_send_queue(h) else {
            return;
        };
        let q = q as u64;
        let written = self.report.written;
        assert!(q <= written.min(2048), "send queue {q}, {written} written");
        let acked = written - q;
        if acked > 0 && self.peer_acks.len() < 1024 {
            // Only an ACK from the peer lets the stack forget bytes it sent.
            let ok = self.stack_syns.iter().any(|&iss| {
                self.peer_acks.iter().any(|&a| {
                    let off = u64::from(a.wrapping_sub(iss.wrapping_add(1)));
                    off >= acked && off <= written + 1
                })
            });
            assert!(
                ok,
                "the stack dropped {acked} bytes from its send queue that the peer never acked"
            );
        }
        self.report.acked = acked;
    }
}
