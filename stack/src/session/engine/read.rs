//! Moving bytes: decode passes over a socket's receive queue, assembly of packages larger
//! than it, datagrams, and handing queued output to the socket.

use smoltcp::phy::Device;
use smoltcp::time::Instant;

use super::super::bufs::{Area, BufPool, Held};
use super::super::listener::{Input, Next};
use super::super::state::{Assembly, Phase, Sock};
use super::super::SessionError;
use super::Engine;
use crate::{Error, Stack};

/// The longest package decoded in place from a receive buffer of `cap` bytes; longer ones
/// (declared, or of unknown length and already longer) are assembled in a pool buffer. Not
/// all of `cap`: window scaling rounds the advertised window down, and a sender avoiding
/// silly windows will not fill the last segment's worth.
fn peekable(cap: usize) -> usize {
    cap / 2
}

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

impl Engine<'_> {
    /// The decode scratch, at least `want` bytes when the heap allows.
    fn rx_area(&mut self, want: usize) -> &mut [u8] {
        match &mut self.rx {
            #[cfg(feature = "alloc")]
            Area::Heap(v) => {
                if v.len() < want {
                    v.resize(want, 0);
                }
            }
            Area::Slice(_) => {
                let _ = want;
            }
        }
        self.rx.bytes()
    }

    /// Decodes what the socket holds, pass after pass, until it holds no whole package.
    ///
    /// Bytes are peeked, not read: whatever the codec does not consume stays in the socket,
    /// so an unfinished package costs no session memory and its sender is slowed by the
    /// receive window. Only a package longer than half the receive buffer is assembled in
    /// a pool buffer (see [`peekable`]).
    pub(super) fn read_tcp<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        let Sock::Tcp(h) = self.slots[i].sock else {
            return;
        };
        loop {
            if self.backed_up(i) {
                // Output that does not drain stops input: the peer must read to be heard.
                return;
            }
            let st = &self.slots[i];
            if st.phase != Phase::Open || st.closing.is_some() {
                return;
            }
            if st.paused && !self.unpause(i) {
                return;
            }
            let st = &self.slots[i];
            if let Some(a) = st.asm {
                if !self.assemble(stack, i, a, now) {
                    return;
                }
                continue;
            }
            let want = st.want;
            let (queued, cap) = match (stack.tcp_recv_queue(h), stack.tcp_recv_capacity(h)) {
                (Ok(q), Ok(c)) => (q, c),
                (Err(e), _) | (_, Err(e)) => return self.end(stack, i, Some(e.into()), now),
            };
            if queued == 0 || queued < want {
                match stack.tcp_peer_closed(h) {
                    Ok(false) => {}
                    Ok(true) if queued == 0 && self.in_flight(i) => {
                        // Replies to what the peer sent are still being made: wait for them.
                        let st = &mut self.slots[i];
                        if st.linger_until.is_none() {
                            st.linger_until = Some(now + super::DEFAULT_DRAIN_TIMEOUT);
                            self.waiting += 1;
                        }
                    }
                    Ok(true) => {
                        let err = (queued > 0)
                            .then_some(SessionError::UnexpectedEof { buffered: queued });
                        self.end(stack, i, err, now);
                    }
                    Err(e) => self.end(stack, i, Some(e.into()), now),
                }
                return;
            }
            let area = self.rx_area(queued.min(cap));
            let n = queued.min(area.len());
            let got = match stack.tcp_peek(h, &mut area[..n]) {
                Ok(k) => k,
                Err(e) => return self.end(stack, i, Some(e.into()), now),
            };
            // The scratch area is moved out while the protocol borrows the session.
            let mut rx = core::mem::replace(&mut self.rx, Area::Slice(&mut []));
            let r = self.with_ctx(stack, i, now, |p, s| p.input(s, &mut rx.bytes()[..got]));
            self.rx = rx;
            let Input { used, next } = match r {
                Ok(x) => x,
                Err(e) => return self.end(stack, i, Some(e), now),
            };
            let _ = stack.tcp_discard(h, used);
            let st = &mut self.slots[i];
            st.info.stats.bytes_in += used as u64;
            let left = queued - used;
            if used > 0 {
                st.info.stats.last_active = now;
                if !st.mid {
                    st.partial_since = None;
                }
            }
            if (left > 0 || st.mid) && st.partial_since.is_none() {
                st.partial_since = Some(now);
            }
            st.want = 0;
            match next {
                Next::Pause => {
                    self.pause(i);
                    self.after_callback(stack, i, now);
                    return;
                }
                Next::NeedMore => {
                    st.want = left + 1;
                    // The window may never open enough to hold it: assemble it here.
                    if left > peekable(cap) && !self.start_assembly(i, None) {
                        return;
                    }
                }
                Next::Known(total) => {
                    st.want = total;
                    let big = total > peekable(cap) || total > self.rx_area(total).len();
                    let max = self.assembly.per_buffer();
                    if big && total > max {
                        // No buffer of the pool can ever hold it: waiting would stall the
                        // session for good, so it ends with the reason.
                        let e = SessionError::MessageTooLarge { len: total, max };
                        self.end(stack, i, Some(e), now);
                        return;
                    }
                    if big && !self.start_assembly(i, Some(total)) {
                        return;
                    }
                }
            }
            // Go round even without progress: `want` now exceeds what is queued, so the
            // next turn only checks whether the peer has finished (its FIN may have come
            // with these bytes, and no further event will say so).
            self.after_callback(stack, i, now);
        }
    }

    /// Whether queued output is past its high-water mark, half of what the session may
    /// queue: input then waits, so a peer that does not read cannot make us buffer more.
    fn backed_up(&mut self, i: usize) -> bool {
        let st = &self.slots[i];
        let Some(p) = st.pending else {
            return false;
        };
        let queued = self.pending.get(p.buf).len() - p.sent;
        let cap = st
            .info
            .limits
            .max_write_queue
            .min(self.pending.per_buffer());
        queued * 2 >= cap
    }

    /// Clears a pause if the protocol can take work again (and, for a pause waiting on the
    /// assembly pool, always: the next pass asks the pool again).
    fn unpause(&mut self, i: usize) -> bool {
        let st = &mut self.slots[i];
        let proto = self.endpoints[usize::from(st.endpoint)].proto.get_ref();
        if proto.busy(Some(st.info.id)) {
            return false;
        }
        st.paused = false;
        self.waiting -= 1;
        true
    }

    /// Stops reading session `i` until its protocol (or the pool) has room again.
    fn pause(&mut self, i: usize) {
        let st = &mut self.slots[i];
        if !st.paused && st.closing.is_none() {
            st.paused = true;
            self.waiting += 1;
            self.stats.paused += 1;
        }
    }

    /// Whether handlers still owe session `i` work (a pool's queued messages).
    fn in_flight(&self, i: usize) -> bool {
        let ep = usize::from(self.slots[i].endpoint);
        self.endpoints[ep].proto.get_ref().in_flight(i)
    }

    /// Moves bytes of a package too long to decode in place into the session's assembly
    /// buffer, and decodes there. Bytes that follow the package are decoded from the buffer
    /// too, and the session goes back to decoding in place once it is empty. Returns whether
    /// to go on reading.
    fn assemble<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        a: Assembly,
        now: Instant,
    ) -> bool {
        let Sock::Tcp(h) = self.slots[i].sock else {
            return false;
        };
        let max = self.slots[i].info.limits.max_msg_len;
        let have = self.assembly.get(a.buf).len();
        // Up to the declared end, or (length unknown) one byte past the limit, so that a
        // package that will not fit is recognised.
        let need = match a.total {
            Some(t) => t.saturating_sub(have),
            None => (max + 1).saturating_sub(have),
        };
        if need > 0 {
            let area = self.rx_area(need.min(MAX_DATAGRAM));
            let k = need.min(area.len());
            let n = match stack.tcp_read(h, &mut area[..k]) {
                Ok(0) => {
                    let e = SessionError::UnexpectedEof { buffered: have };
                    self.end(stack, i, Some(e), now);
                    return false;
                }
                Ok(n) => n,
                Err(Error::WouldBlock) => return false,
                Err(e) => {
                    self.end(stack, i, Some(e.into()), now);
                    return false;
                }
            };
            if !self.assembly.extend(a.buf, &self.rx.bytes()[..n]) {
                let max = self.assembly.per_buffer();
                let e = SessionError::MessageTooLarge { len: have + n, max };
                self.end(stack, i, Some(e), now);
                return false;
            }
            let st = &mut self.slots[i];
            st.info.stats.bytes_in += n as u64;
            st.info.stats.last_active = now;
            if a.total.is_some_and(|t| have + n < t) {
                return true;
            }
        }
        // The buffer leaves the pool for the decode, so that the session can write.
        let mut pool = core::mem::replace(&mut self.assembly, BufPool::chunks(&mut [], 1));
        let r = self.with_ctx(stack, i, now, |p, s| p.input(s, pool.get(a.buf)));
        self.assembly = pool;
        let Input { used, next } = match r {
            Ok(x) => x,
            Err(e) => {
                self.end(stack, i, Some(e), now);
                return false;
            }
        };
        if used == 0 && need == 0 && next != Next::Pause {
            let e = SessionError::Codec(
                "the codec did not decode the package whose length it declared",
            );
            self.end(stack, i, Some(e), now);
            return false;
        }
        self.assembly.consume(a.buf, used);
        let left = self.assembly.get(a.buf).len();
        let st = &mut self.slots[i];
        if used > 0 {
            st.partial_since = match (st.mid, left > 0) {
                (true, _) => st.partial_since.or(Some(now)),
                (false, true) => Some(now),
                (false, false) => None,
            };
        }
        if left == 0 {
            self.assembly.give(a.buf);
            st.asm = None;
            st.want = 0;
        } else {
            let total = match next {
                Next::Known(t) => Some(t),
                _ => None,
            };
            st.asm = Some(Assembly { buf: a.buf, total });
        }
        if next == Next::Pause {
            self.pause(i);
            self.after_callback(stack, i, now);
            return false;
        }
        self.after_callback(stack, i, now);
        // Nothing decoded and nothing more to read for now: wait for the next segment.
        used > 0 || need > 0
    }

    /// Starts assembling the unfinished package of session `i` (`total` bytes, if known),
    /// or pauses when the pool has no room for it (retried on the next poll). Returns
    /// whether it started.
    fn start_assembly(&mut self, i: usize, total: Option<usize>) -> bool {
        let fits = self.assembly.can_hold(None, total.unwrap_or(0));
        match self.assembly.take(0) {
            Some(buf) if fits => {
                self.slots[i].asm = Some(Assembly { buf, total });
                true
            }
            other => {
                if let Some(buf) = other {
                    self.assembly.give(buf);
                }
                #[cfg(feature = "log")]
                log::debug!(
                    "session {}: no pool room to assemble a package; pausing",
                    self.slots[i].info.id.0
                );
                self.pause(i);
                false
            }
        }
    }

    /// Hands queued output to the socket; a draining session closes once it is all out.
    pub(super) fn flush<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        let st = &mut self.slots[i];
        let (Some(p), Sock::Tcp(h)) = (st.pending, st.sock) else {
            return;
        };
        let data = &self.pending.get(p.buf)[p.sent..];
        let len = data.len();
        let n = match stack.tcp_write(h, data) {
            Ok(n) => n,
            Err(Error::WouldBlock) => 0,
            Err(e) => {
                match st.phase {
                    Phase::Draining => self.abandon(stack, i),
                    _ => self.end(stack, i, Some(e.into()), now),
                }
                return;
            }
        };
        if n > 0 {
            st.tx_progress = now;
        }
        if n < len {
            st.pending = Some(super::super::state::Pending {
                buf: p.buf,
                sent: p.sent + n,
            });
            if st.phase == Phase::Open {
                self.read_tcp(stack, i, now);
            }
            return;
        }
        st.pending = None;
        self.pending.give(p.buf);
        if st.phase == Phase::Draining {
            let _ = stack.tcp_close(h);
            self.free(i);
        } else {
            self.read_tcp(stack, i, now);
        }
    }

    /// Takes datagrams one by one; each is one input pass with the sender as the peer.
    #[cfg(feature = "udp")]
    pub(super) fn read_udp<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        let Sock::Udp { h, connected } = self.slots[i].sock else {
            return;
        };
        loop {
            let st = &self.slots[i];
            if st.phase != Phase::Open || st.closing.is_some() {
                return;
            }
            if st.paused && !self.unpause(i) {
                return;
            }
            let st = &self.slots[i];
            if self.endpoints[usize::from(st.endpoint)]
                .proto
                .get_ref()
                .busy(Some(st.info.id))
            {
                // Leave datagrams in the socket rather than take one that cannot be handled.
                self.pause(i);
                return;
            }
            let area = self.rx_area(MAX_DATAGRAM);
            let (n, meta) = match stack.udp_recv_from(h, area) {
                Ok(x) => x,
                Err(Error::WouldBlock) => return,
                Err(e) => return self.end(stack, i, Some(e.into()), now),
            };
            let st = &mut self.slots[i];
            if !connected {
                st.info.peer = meta.remote;
            }
            st.info.stats.bytes_in += n as u64;
            st.info.stats.last_active = now;
            let mut rx = core::mem::replace(&mut self.rx, Area::Slice(&mut []));
            let r = self.with_ctx(stack, i, now, |p, s| p.input(s, &mut rx.bytes()[..n]));
            self.rx = rx;
            match r {
                Ok(Input { used, .. }) if used == n => {}
                // A datagram is one unit: what the codec leaves of it is lost.
                Ok(_) | Err(_) if !connected => {
                    self.stats.udp_dropped += 1;
                    #[cfg(feature = "log")]
                    log::debug!(
                        "UDP session {}: dropped a datagram of {n} bytes from {} ({r:?})",
                        self.slots[i].info.id.0,
                        meta.remote
                    );
                }
                Ok(_) => {
                    let e = SessionError::Codec("a datagram held an unfinished package");
                    return self.end(stack, i, Some(e), now);
                }
                Err(e) => return self.end(stack, i, Some(e), now),
            }
            self.after_callback(stack, i, now);
        }
    }

    /// Sessions paused on a full handler queue or pool try again; lingering sessions close
    /// once their handlers are done (or the drain timeout passes).
    pub(super) fn retry_waiting<D: Device>(&mut self, stack: &mut Stack<'_, D>, now: Instant) {
        for i in 0..self.slots.len() {
            let st = &self.slots[i];
            if st.phase != Phase::Open {
                continue;
            }
            if let Some(t) = st.linger_until {
                if now >= t || !self.in_flight(i) {
                    // Replies queued before the count reached zero go out before the FIN.
                    #[cfg(feature = "std")]
                    self.run_commands(stack, now);
                    self.end(stack, i, None, now);
                }
            } else if st.paused {
                match st.sock {
                    Sock::Tcp(_) => self.read_tcp(stack, i, now),
                    #[cfg(feature = "udp")]
                    Sock::Udp { .. } => self.read_udp(stack, i, now),
                }
                self.rearm(stack, i, now);
            }
        }
    }
}
