//! The checks: `ST`'s application reading and verifying every stream, the WebSocket and
//! counter checks, and the report of a run.

use ustack::smoltcp::time::Duration;
use ustack::smoltcp::wire::IpEndpoint;
use ustack::Error;

use super::setup::Harness;
use super::{pattern, AFTER_FIXES, MAX_EXTRA, PS_IP, PS_UDP};

/// Counters and outcomes of a run, for the tests.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Bytes `ST`'s application read from the established connection (all checked).
    pub est_read: u64,
    /// The established connection reached end of stream.
    pub est_eof: bool,
    /// The error that ended the established connection.
    pub est_error: Option<Error>,
    /// Bytes `PS` wrote.
    pub ps_written: u64,
    /// WebSocket messages `PS` sent.
    pub ws_sent: usize,
    /// WebSocket messages `ST` received (all checked).
    pub ws_received: usize,
    /// Messages `PS` got back (echoes, and `ST`'s own).
    pub ws_echoed: usize,
    /// The WebSocket session ended: `Some(peer close code)`.
    pub ws_closed: Option<Option<u16>>,
    /// Errors that ended it.
    pub ws_errors: Vec<String>,
    /// Datagrams on `ST`'s unconnected socket.
    pub udp_bound_rx: usize,
    /// Datagrams on `ST`'s connected socket.
    pub udp_conn_rx: usize,
    /// ICMP errors the connected socket reported.
    pub udp_conn_errors: usize,
    /// Datagrams `PS` received.
    pub ps_udp_rx: usize,
    /// Connections accepted beyond the established one.
    pub extra_accepted: usize,
    /// Bytes read from them.
    pub extra_read: u64,
    /// Frames injected into `ST`.
    pub injected: usize,
    /// Checks switched off by unpatched frames.
    pub tainted_tcp: bool,
    /// Bytes past a FIN were read on the established connection (see [`AFTER_FIXES`]);
    /// from this offset on they are checked one sequence number later.
    pub est_data_after_fin: Option<u64>,
    /// Same, WebSocket.
    pub tainted_ws: bool,
}

impl Harness<'_> {
    /// While [`AFTER_FIXES`] is pending: whether byte `b`, read at stream offset `off` where
    /// `pattern(off)` was due, is smoltcp's data past a FIN, and then the offset `k` of
    /// that FIN. It is if a FIN at `k <= off` reached `ST`, `b` is `pattern(off + 1)` and
    /// the bytes already read from `k` on fit a shift as well as they fit none (the
    /// pattern can repeat a byte).
    fn data_after_fin(&self, off: u32, b: u8) -> Option<u32> {
        if AFTER_FIXES || b != pattern(off.wrapping_add(1)) {
            return None;
        }
        let k = *self.est_fins.range(..=off).next_back()?;
        (k..off).all(|i| pattern(i) == pattern(i + 1)).then_some(k)
    }

    /// `ST`'s application: level-triggered, it tries everything.
    pub(super) fn serve_st(&mut self) {
        for _ in 0..=ustack::MAX_BACKLOG {
            match self.st.accept(self.listener) {
                Ok(h) if self.setup && self.est.is_none() => self.est = Some(h),
                Ok(h) if self.extra.len() < MAX_EXTRA => {
                    self.report.extra_accepted += 1;
                    self.extra.push(h);
                }
                Ok(h) => {
                    let _ = self.st.tcp_abort(h);
                }
                Err(_) => break,
            }
        }
        if let (Some(h), true) = (self.est, self.reading) {
            for _ in 0..16 {
                match self.st.tcp_read(h, &mut self.buf) {
                    Ok(0) => {
                        self.report.est_eof = true;
                        let _ = self.st.tcp_close(h);
                        self.est = None;
                        break;
                    }
                    Ok(n) => {
                        assert!(n <= self.buf.len());
                        if !self.report.tainted_tcp {
                            for (j, &b) in self.buf[..n].iter().enumerate() {
                                let off = self.report.est_read + j as u64;
                                let mut shift = self.report.est_data_after_fin.is_some();
                                if !shift && b != pattern(off as u32) {
                                    if let Some(k) = self.data_after_fin(off as u32, b) {
                                        self.report.est_data_after_fin = Some(u64::from(k));
                                        shift = true;
                                    }
                                }
                                assert_eq!(
                                    b,
                                    pattern((off as u32).wrapping_add(u32::from(shift))),
                                    "established stream byte {off} is not what the peer sent"
                                );
                            }
                        }
                        self.report.est_read += n as u64;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => {
                        self.report.est_error = Some(e);
                        let _ = self.st.tcp_close(h);
                        self.est = None;
                        break;
                    }
                }
            }
        }
        let mut i = 0;
        while i < self.extra.len() {
            let h = self.extra[i];
            let mut done = false;
            for _ in 0..8 {
                match self.st.tcp_read(h, &mut self.buf) {
                    Err(Error::WouldBlock) => break,
                    Ok(n) if n > 0 => self.report.extra_read += n as u64,
                    _ => {
                        done = true;
                        break;
                    }
                }
            }
            if done {
                let _ = self.st.tcp_close(h);
                self.extra.remove(i);
            } else {
                i += 1;
            }
        }
        for _ in 0..8 {
            match self.st.udp_recv_from(self.st_udp, &mut self.buf) {
                Ok((_, meta)) => {
                    self.report.udp_bound_rx += 1;
                    self.last_sender = Some(meta.remote);
                }
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("unconnected UDP socket returned {e:?}"),
            }
        }
        for _ in 0..8 {
            match self.st.udp_recv_from(self.st_udp_conn, &mut self.buf) {
                Ok((_, meta)) => {
                    self.report.udp_conn_rx += 1;
                    assert_eq!(
                        meta.remote,
                        IpEndpoint::new(PS_IP.into(), PS_UDP),
                        "connected UDP socket received from a stranger"
                    );
                }
                Err(Error::WouldBlock) => break,
                Err(e @ (Error::ConnectionRefused | Error::HostUnreachable)) => {
                    assert!(self.icmp_seen, "{e:?} with no ICMP error injected");
                    self.report.udp_conn_errors += 1;
                }
                Err(e) => panic!("connected UDP socket returned {e:?}"),
            }
        }
    }

    /// `PS`: reads and discards what `ST` sends it.
    pub(super) fn serve_ps(&mut self) {
        for _ in 0..16 {
            match self.ps.tcp_read(self.ps_tcp, &mut self.buf) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        for _ in 0..8 {
            match self.ps.udp_recv_from(self.ps_udp, &mut self.buf) {
                Ok(_) => self.report.ps_udp_rx += 1,
                Err(Error::WouldBlock) => break,
                Err(_) => {}
            }
        }
    }

    /// The messages `ST`'s server received are the first ones `PS` sent, in order.
    pub(super) fn check_ws(&mut self) {
        let log = self.ws_log.borrow();
        // Only the session set up with PS is checked (the client never reconnects, but
        // the input could in theory open another one with raw frames).
        if self.report.tainted_ws || log.opened > 1 {
            return;
        }
        assert!(
            log.msgs.len() <= self.ws_sent.len(),
            "ST received {} WebSocket messages, PS sent {}",
            log.msgs.len(),
            self.ws_sent.len()
        );
        for (k, (got, sent)) in log.msgs.iter().zip(&self.ws_sent).enumerate() {
            assert!(
                got == sent,
                "WebSocket message {k} differs from what PS sent"
            );
        }
    }

    /// `ST`'s counters agree with its device and its engine's with its sessions.
    pub(super) fn check_counters(&self) {
        let stats = self.st.stats();
        let dev = self.st.device().stats();
        assert_eq!(stats.rx_frames, dev.rx_frames, "{stats:?} {dev:?}");
        assert_eq!(
            stats.tx_frames,
            dev.tx_frames + dev.tx_dropped,
            "{stats:?} {dev:?}"
        );
        assert!(stats.rx_dropped() <= stats.rx_frames, "{stats:?}");
        let es = self.se.stats();
        assert!(es.closed <= es.opened + es.rejected, "{es:?}");
        assert!(self.se.session_count() <= 4, "{es:?}");
        assert!(
            self.se.held_bytes() <= 1 << 20,
            "engine holds {} bytes",
            self.se.held_bytes()
        );
    }

    /// Lets every timer run out, then fills in the report.
    pub(super) fn finish(&mut self) {
        for _ in 0..4 {
            self.now += Duration::from_millis(1_000);
            self.pump();
        }
        self.check_counters();
        let log = self.ws_log.borrow();
        self.report.ws_sent = self.ws_sent.len();
        self.report.ws_received = log.msgs.len();
        self.report.ws_closed = log.closed;
        self.report.ws_errors = log.errors.clone();
        self.report.ws_echoed = self.client_log.borrow().1;
    }
}
