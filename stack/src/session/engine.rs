//! The engine: runs every session of one stack from its readiness events and one timer
//! wheel. It reads and writes the stack's sockets but never a clock or a device, so it is as
//! sans-IO as the stack under it.

mod open;
mod read;
#[cfg(feature = "std")]
mod remote;

use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};

use super::bufs::{Area, BufPool};
use super::codec::SliceOut;
use super::ctx::{Ctx, Inner};
use super::endpoint::{Endpoint, EndpointId, EndpointStatus, Role, MAX_ENDPOINTS};
use super::state::{Phase, SessionSlot, Sock};
use super::timer::{TimerEntry, TimerWheel, DEFAULT_TICK};
use super::SessionError;
use crate::slot::Table;
use crate::{Error, Event, Ready, Stack, Token};

/// How long a closed session may take to hand over its queued output when it has no write
/// timeout of its own.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Default byte budget for buffers sessions hold across events (the heap engine).
pub const DEFAULT_POOL_BYTES: usize = 64 << 20;

/// Counters over all sessions of an engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sessions opened (`on_open` accepted).
    pub opened: u64,
    /// Sessions closed (`on_close` ran).
    pub closed: u64,
    /// Sessions `on_open` refused.
    pub rejected: u64,
    /// Connections reset because a server was full ([`WhenFull::Reset`](super::WhenFull)).
    pub refused_full: u64,
    /// Sessions ended by an error (`on_error` ran).
    pub errors: u64,
    /// Of those, by a message over the limit.
    pub too_large: u64,
    /// Of those, by the idle, read or write timeout.
    pub timeouts: u64,
    /// Datagrams an unconnected UDP endpoint dropped (undecodable or over the limit).
    pub udp_dropped: u64,
    /// Times a session's reading paused because its handler queue was full.
    pub paused: u64,
}

/// Caller-provided storage for an engine without a heap.
pub struct EngineStorage<'a> {
    /// One per stack socket slot (`Storage::slots.len()` of the stack).
    pub sessions: &'a mut [SessionSlot],
    /// As many as `sessions`.
    pub timers: &'a mut [TimerEntry],
    /// Decode scratch; as large as the largest socket receive buffer.
    pub rx: &'a mut [u8],
    /// Encode scratch; as large as the largest package written.
    pub tx: &'a mut [u8],
    /// Packages larger than a socket's receive buffer are assembled in chunks of this area.
    pub assembly: &'a mut [u8],
    /// Output a socket could not take waits in chunks of this area.
    pub pending: &'a mut [u8],
    /// Chunk size of `assembly` and `pending` (at most 64 chunks each).
    pub chunk: usize,
}

enum Encode<'a> {
    #[cfg(feature = "alloc")]
    Heap(alloc::vec::Vec<u8>),
    Slice(SliceOut<'a>),
}

/// Runs sessions over one [`Stack`]: endpoints open them, stack events feed them, one
/// [`TimerWheel`] times them all.
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use ustack::session::{codec::LengthPrefixed, Engine, EventListener, Service, Session, ServerOptions};
/// use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
/// use ustack::{Config, Stack};
///
/// struct Echo;
/// impl EventListener<LengthPrefixed> for Echo {
///     fn on_message(&mut self, s: &mut Session<'_, LengthPrefixed>, pkg: &[u8]) {
///         let _ = s.write_pkg(&pkg);
///     }
/// }
/// let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
/// let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
/// let mut engine = Engine::new(&stack, Instant::ZERO);
/// let server = Service::new(LengthPrefixed::U32_BE, Echo);
/// let id = engine.tcp_server(&mut stack, 9000, ServerOptions::default(), server).unwrap();
/// engine.poll(&mut stack, Instant::ZERO);
/// assert_eq!(engine.sessions(id), 0);
/// # }
/// ```
pub struct Engine<'a> {
    slots: Table<'a, SessionSlot>,
    timers: TimerWheel<'a>,
    rx: Area<'a>,
    encode: Encode<'a>,
    assembly: BufPool<'a>,
    pending: BufPool<'a>,
    endpoints: heapless::Vec<Endpoint<'a>, MAX_ENDPOINTS>,
    next_id: u64,
    /// Sessions paused or lingering: retried every poll.
    waiting: usize,
    stats: EngineStats,
    #[cfg(feature = "std")]
    remote: Option<alloc::sync::Arc<super::handle::Shared>>,
}

impl<'a> Engine<'a> {
    /// An engine for `stack` that allocates what it needs (scratch areas grow to the
    /// largest socket buffer; held buffers stay within [`DEFAULT_POOL_BYTES`] each for
    /// assembly and for pending output).
    #[cfg(feature = "alloc")]
    pub fn new<D: Device>(stack: &Stack<'_, D>, now: Instant) -> Self {
        let n = stack.slots.len();
        let slots = (0..n).map(|_| SessionSlot::EMPTY).collect();
        Self::build(
            Table::Owned(slots),
            TimerWheel::with_capacity(n, DEFAULT_TICK, now),
            Area::Heap(alloc::vec::Vec::new()),
            Encode::Heap(alloc::vec::Vec::new()),
            BufPool::heap(DEFAULT_POOL_BYTES),
            BufPool::heap(DEFAULT_POOL_BYTES),
        )
    }

    /// An engine over caller-provided storage: no heap.
    pub fn with_storage<D: Device>(
        stack: &Stack<'_, D>,
        storage: EngineStorage<'a>,
        now: Instant,
    ) -> Result<Self, Error> {
        let n = stack.slots.len();
        if storage.sessions.len() != n || storage.timers.len() != n {
            return Err(Error::InvalidInput(
                "engine storage needs one session slot and one timer entry per stack slot",
            ));
        }
        for s in storage.sessions.iter_mut() {
            *s = SessionSlot::EMPTY;
        }
        Ok(Self::build(
            Table::Borrowed(storage.sessions),
            TimerWheel::new(storage.timers, DEFAULT_TICK, now),
            Area::Slice(storage.rx),
            Encode::Slice(SliceOut::new(storage.tx)),
            BufPool::chunks(storage.assembly, storage.chunk),
            BufPool::chunks(storage.pending, storage.chunk),
        ))
    }

    fn build(
        slots: Table<'a, SessionSlot>,
        timers: TimerWheel<'a>,
        rx: Area<'a>,
        encode: Encode<'a>,
        assembly: BufPool<'a>,
        pending: BufPool<'a>,
    ) -> Self {
        Engine {
            slots,
            timers,
            rx,
            encode,
            assembly,
            pending,
            endpoints: heapless::Vec::new(),
            next_id: 1,
            waiting: 0,
            stats: EngineStats::default(),
            #[cfg(feature = "std")]
            remote: None,
        }
    }

    /// Bounds the heap buffers sessions hold across events (each of the two pools).
    #[cfg(feature = "alloc")]
    pub fn set_pool_limit(&mut self, bytes: usize) {
        for p in [&mut self.assembly, &mut self.pending] {
            if let BufPool::Heap { max, .. } = p {
                *max = bytes;
            }
        }
    }

    /// Session slots: one per stack socket slot, so session indexes are below this.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Open sessions of one endpoint.
    pub fn sessions(&self, id: EndpointId) -> usize {
        self.endpoints.get(usize::from(id.0)).map_or(0, |e| e.open)
    }

    /// Open sessions of all endpoints.
    pub fn session_count(&self) -> usize {
        self.endpoints.iter().map(|e| e.open).sum()
    }

    /// Bytes of buffers sessions hold right now (assembly plus pending output).
    pub fn held_bytes(&self) -> usize {
        self.assembly.in_use() + self.pending.in_use()
    }

    /// What an endpoint is doing.
    pub fn status(&self, id: EndpointId) -> EndpointStatus {
        self.endpoints
            .get(usize::from(id.0))
            .map_or(EndpointStatus::Closed, Endpoint::status)
    }

    /// Does all due work: polls the stack, handles its events, runs due timers, retries
    /// paused sessions and clients, then polls the stack again so replies leave at once.
    /// Returns whether anything happened.
    ///
    /// Events about sockets that are not this engine's are dropped; to serve such sockets
    /// in the same loop, use [`poll_with`](Self::poll_with).
    pub fn poll<D: Device>(&mut self, stack: &mut Stack<'_, D>, now: Instant) -> bool {
        self.poll_with(stack, now, |_, _| {})
    }

    /// [`poll`](Self::poll), handing every event that is not about one of this engine's
    /// sockets to `other`: the way plain sockets (a listener of the caller's own, say) share
    /// the loop with sessions. `other` runs before the engine's timers, and what it writes
    /// leaves in the poll that ends this call.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] {
    /// use ustack::session::Engine;
    /// use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// use ustack::{Config, Ready, Stack, Token};
    ///
    /// let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let mut engine = Engine::new(&stack, Instant::ZERO);
    /// let mine = stack.listen(7, 4).unwrap();
    /// stack.connect("10.0.0.1:7".parse().unwrap()).unwrap();
    /// let mut accepted = 0;
    /// for ms in 0..20 {
    ///     engine.poll_with(&mut stack, Instant::from_millis(ms), |stack, ev| {
    ///         if ev.token == Token::Listener(mine) && ev.ready.contains(Ready::ACCEPTABLE) {
    ///             while stack.accept(mine).is_ok() {
    ///                 accepted += 1;
    ///             }
    ///         }
    ///     });
    /// }
    /// assert_eq!(accepted, 1);
    /// # }
    /// ```
    pub fn poll_with<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        now: Instant,
        mut other: impl FnMut(&mut Stack<'_, D>, Event),
    ) -> bool {
        let mut did = stack.poll(now);
        #[cfg(feature = "std")]
        {
            did |= self.run_commands(stack, now);
        }
        while let Some(ev) = stack.next_event() {
            if !self.handle_event(stack, ev, now) {
                other(stack, ev);
            }
            did = true;
        }
        while let Some(i) = self.timers.pop_expired(now) {
            self.on_timer(stack, i, now);
            did = true;
        }
        did |= self.endpoint_work(stack, now);
        if self.waiting > 0 {
            self.retry_waiting(stack, now);
        }
        if did {
            stack.poll(now);
        }
        did
    }

    /// How long the caller may sleep before the next [`poll`](Self::poll) if no frame
    /// arrives.
    pub fn poll_delay<D: Device>(
        &self,
        stack: &mut Stack<'_, D>,
        now: Instant,
    ) -> Option<Duration> {
        let mut d = stack.poll_delay(now);
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                let x = if t > now { t - now } else { Duration::ZERO };
                d = Some(d.map_or(x, |d| d.min(x)));
            }
        };
        at(self.timers.next_deadline());
        for e in &self.endpoints {
            if let Role::Client(c) = &e.role {
                at(c.retry_at);
            }
            if let Role::Server {
                throttled: true, ..
            } = e.role
            {
                at(Some(now + DEFAULT_TICK));
            }
        }
        if self.waiting > 0 {
            at(Some(now + Duration::from_millis(1)));
        }
        d
    }

    /// Handles one stack event; returns `false` if it is not about a session socket of this
    /// engine (so the caller can handle it).
    pub fn handle_event<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        ev: Event,
        now: Instant,
    ) -> bool {
        match ev.token {
            Token::Listener(l) => {
                let ep = self
                    .endpoints
                    .iter()
                    .position(|e| matches!(e.role, Role::Server { listener, .. } if listener == l));
                match ep {
                    Some(ep) => {
                        self.accept_all(stack, ep, now);
                        true
                    }
                    None => false,
                }
            }
            Token::Tcp(h) => {
                let i = usize::from(h.slot);
                match self.slots.get(i) {
                    Some(s) if s.phase != Phase::Free && s.sock == Sock::Tcp(h) => {
                        self.on_tcp(stack, i, ev.ready, now);
                        true
                    }
                    _ => false,
                }
            }
            #[cfg(feature = "udp")]
            Token::Udp(h) => {
                let i = usize::from(h.slot);
                match self.slots.get(i) {
                    Some(s)
                        if s.phase != Phase::Free
                            && matches!(s.sock, Sock::Udp { h: x, .. } if x == h) =>
                    {
                        self.on_udp(stack, i, now);
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    fn on_tcp<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        ready: Ready,
        now: Instant,
    ) {
        match self.slots[i].phase {
            Phase::Connecting { .. } => self.connect_done(stack, i, now),
            Phase::Open => {
                if ready.contains(Ready::WRITABLE) || self.slots[i].pending.is_some() {
                    self.flush(stack, i, now);
                }
                self.read_tcp(stack, i, now);
            }
            Phase::Draining => self.flush(stack, i, now),
            #[cfg(feature = "udp")]
            Phase::Dialing(_) => {}
            Phase::Free => {}
        }
        self.rearm(stack, i, now);
    }

    #[cfg(feature = "udp")]
    fn on_udp<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        match self.slots[i].phase {
            Phase::Dialing(d) => self.check_dial(stack, i, d, now),
            Phase::Open => self.read_udp(stack, i, now),
            _ => {}
        }
        self.rearm(stack, i, now);
    }

    /// A session's context for a callback, with the engine's fields split so that the
    /// protocol (in `endpoints`) and the session can both be borrowed.
    fn with_ctx<D: Device, R>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        now: Instant,
        f: impl FnOnce(&mut dyn super::Protocol, &mut Ctx<'_>) -> R,
    ) -> R {
        let st = &mut self.slots[i];
        let proto = self.endpoints[usize::from(st.endpoint)].proto.get();
        // Without `alloc` the caller's slice is the only kind.
        #[cfg_attr(not(feature = "alloc"), allow(clippy::infallible_destructuring_match))]
        let sink: &mut dyn super::bufs::Sink = match &mut self.encode {
            #[cfg(feature = "alloc")]
            Encode::Heap(v) => v,
            Encode::Slice(s) => s,
        };
        let mut ctx = Ctx {
            inner: Inner::Local {
                index: i,
                st,
                io: stack,
                sink,
                pool: &mut self.pending,
                now,
                framer: None,
                #[cfg(feature = "std")]
                remote: self.remote.as_ref(),
            },
        };
        f(proto, &mut ctx)
    }

    fn on_timer<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        let st = &mut self.slots[i];
        match st.phase {
            Phase::Free => return,
            Phase::Connecting { since } => {
                let ep = usize::from(st.endpoint);
                let timeout = match &self.endpoints[ep].role {
                    Role::Client(c) => c.opts.connect_timeout,
                    _ => Duration::ZERO,
                };
                if now >= since + timeout {
                    if let Sock::Tcp(h) = st.sock {
                        let _ = stack.tcp_abort(h);
                    }
                    self.attempt_failed(i, Error::TimedOut, now);
                    return;
                }
            }
            #[cfg(feature = "udp")]
            Phase::Dialing(d) => {
                self.check_dial(stack, i, d, now);
            }
            Phase::Open | Phase::Draining => {
                if let Some(e) = self.due_error(stack, i, now) {
                    match self.slots[i].phase {
                        Phase::Draining => self.abandon(stack, i),
                        _ => self.end(stack, i, Some(e), now),
                    }
                    return;
                }
                let st = &mut self.slots[i];
                if let (Phase::Open, Some(at), Some(p)) =
                    (st.phase, st.cron_at, st.info.limits.cron_period)
                {
                    if at <= now {
                        // Keep the cadence; after a long stall skip the missed runs.
                        let next = at + p;
                        st.cron_at = Some(if next <= now { now + p } else { next });
                        self.with_ctx(stack, i, now, |p, s| p.cron(s));
                        self.after_callback(stack, i, now);
                    }
                }
            }
        }
        self.rearm(stack, i, now);
    }

    /// Which timeout, if any, has run out for an open or draining session.
    fn due_error<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        now: Instant,
    ) -> Option<SessionError> {
        let st = &mut self.slots[i];
        let lim = st.info.limits;
        let outstanding =
            st.pending_len(&mut self.pending) + super::io::Io::unacked(stack, st.sock);
        let acked = st.info.stats.bytes_out - outstanding as u64;
        if acked > st.acked {
            st.acked = acked;
            st.tx_progress = now;
        }
        let write_limit = match st.phase {
            Phase::Draining => Some(lim.write_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT)),
            _ => lim.write_timeout,
        };
        if let Some(t) = write_limit {
            if outstanding > 0 && now >= st.tx_progress + t {
                return Some(SessionError::WriteTimeout);
            }
        }
        if st.phase == Phase::Draining {
            return None;
        }
        if let (Some(t), Some(since)) = (lim.read_timeout, st.partial_since) {
            if now >= since + t {
                return Some(SessionError::ReadTimeout);
            }
        }
        if let Some(t) = lim.idle_timeout {
            if now >= st.info.stats.last_active + t {
                return Some(SessionError::IdleTimeout);
            }
        }
        None
    }

    /// Puts session `i` on the wheel at its earliest deadline, unless an earlier one is
    /// already there (an early wake-up only recomputes).
    fn rearm<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        let st = &mut self.slots[i];
        let at = match st.phase {
            Phase::Free => {
                let _ = self.timers.cancel(i);
                return;
            }
            Phase::Connecting { .. } => return,
            #[cfg(feature = "udp")]
            Phase::Dialing(_) => return,
            Phase::Open | Phase::Draining => {
                let lim = st.info.limits;
                match (lim.cron_period, st.cron_at) {
                    (Some(p), None) => st.cron_at = Some(now + p),
                    (None, Some(_)) => st.cron_at = None,
                    _ => {}
                }
                let outstanding =
                    st.pending.is_some() || super::io::Io::unacked(stack, st.sock) > 0;
                let write = match st.phase {
                    Phase::Draining => Some(lim.write_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT)),
                    _ => lim.write_timeout,
                };
                let mut at: Option<Instant> = None;
                let mut min = |t: Option<Instant>| {
                    if let Some(t) = t {
                        at = Some(at.map_or(t, |a| a.min(t)));
                    }
                };
                if st.phase == Phase::Open {
                    min(st.cron_at);
                    min(lim.idle_timeout.map(|t| st.info.stats.last_active + t));
                    min(lim
                        .read_timeout
                        .and_then(|t| st.partial_since.map(|s| s + t)));
                }
                if outstanding {
                    min(write.map(|t| st.tx_progress + t));
                }
                at
            }
        };
        if let Some(at) = at {
            match self.timers.deadline(i) {
                Some(cur) if cur <= at => {}
                _ => {
                    let _ = self.timers.schedule(i, at);
                }
            }
        }
    }

    /// After any callback: a `close()` it made takes effect.
    fn after_callback<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize, now: Instant) {
        let st = &self.slots[i];
        if st.phase == Phase::Open {
            if let Some(e) = st.closing {
                self.end(stack, i, e, now);
            }
        }
    }

    /// Ends open session `i`: `on_error` (if `err`), `on_close`, the close callbacks, then
    /// the socket goes (gracefully after its queued output when no error ended it).
    fn end<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        err: Option<SessionError>,
        now: Instant,
    ) {
        if self.slots[i].phase != Phase::Open {
            return;
        }
        // Writes from the closing callbacks are refused: the session is over.
        self.slots[i].closing = Some(err);
        #[cfg(feature = "log")]
        match &err {
            Some(e) => log::debug!(
                "session {} ({}) ends: {e}",
                self.slots[i].info.id.0,
                self.slots[i].info.peer
            ),
            None => log::trace!(
                "session {} ({}) closes",
                self.slots[i].info.id.0,
                self.slots[i].info.peer
            ),
        }
        self.with_ctx(stack, i, now, |p, s| {
            if let Some(e) = &err {
                p.error(s, e);
            }
            p.close(s);
        });
        // From here on the session is over for other threads too, even while it drains.
        #[cfg(feature = "std")]
        self.forget_remote(i);
        let st = &mut self.slots[i];
        for f in core::mem::take(&mut st.on_close) {
            f(&st.info);
        }
        #[cfg(feature = "alloc")]
        {
            st.attrs = alloc::vec::Vec::new();
        }
        if let Some(a) = st.asm.take() {
            self.assembly.give(a.buf);
        }
        if core::mem::take(&mut st.paused) {
            self.waiting -= 1;
        }
        if st.linger_until.take().is_some() {
            self.waiting -= 1;
        }
        self.stats.closed += 1;
        if let Some(e) = err {
            self.stats.errors += 1;
            match e {
                SessionError::MessageTooLarge { .. } => self.stats.too_large += 1,
                SessionError::IdleTimeout
                | SessionError::ReadTimeout
                | SessionError::WriteTimeout => self.stats.timeouts += 1,
                _ => {}
            }
        }
        let ep = usize::from(st.endpoint);
        let e = &mut self.endpoints[ep];
        e.open -= 1;
        if let Role::Client(c) = &mut e.role {
            if !e.closed {
                c.lost(now);
            }
        }
        let graceful = err.as_ref().is_none_or(SessionError::is_graceful);
        match st.sock {
            Sock::Tcp(h) => {
                if graceful && st.pending.is_some() {
                    st.phase = Phase::Draining;
                    st.tx_progress = now;
                    self.rearm(stack, i, now);
                    return;
                }
                if let Some(p) = st.pending.take() {
                    self.pending.give(p.buf);
                }
                let _ = match graceful {
                    true => stack.tcp_close(h),
                    false => stack.tcp_abort(h),
                };
            }
            #[cfg(feature = "udp")]
            Sock::Udp { h, .. } => {
                let _ = stack.udp_close(h);
            }
        }
        self.free(i);
    }

    /// Gives up on a draining session whose output does not move: reset it.
    fn abandon<D: Device>(&mut self, stack: &mut Stack<'_, D>, i: usize) {
        let st = &mut self.slots[i];
        if let Some(p) = st.pending.take() {
            self.pending.give(p.buf);
        }
        if let Sock::Tcp(h) = st.sock {
            let _ = stack.tcp_abort(h);
        }
        self.free(i);
    }

    fn free(&mut self, i: usize) {
        #[cfg(feature = "std")]
        self.forget_remote(i);
        self.slots[i].phase = Phase::Free;
        let _ = self.timers.cancel(i);
    }

    /// Runs `f` on every open session of endpoint `id` on the stack thread: for
    /// broadcasts, or for closing sessions from outside a callback.
    ///
    /// `f` sees each session as its protocol's callbacks do (through
    /// [`Protocol::visit`](super::Protocol::visit)): on a WebSocket endpoint, writes are
    /// binary messages, [`WsSession::from_ctx`](crate::ws::WsSession::from_ctx) sends text
    /// or a close code, and sessions whose upgrade has not completed are skipped.
    pub fn each_session<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        id: EndpointId,
        now: Instant,
        mut f: impl FnMut(&mut Ctx<'_>),
    ) {
        for i in 0..self.slots.len() {
            let st = &self.slots[i];
            if st.phase == Phase::Open && st.endpoint == id.0 {
                self.with_ctx(stack, i, now, |p, s| p.visit(s, &mut f));
                self.after_callback(stack, i, now);
                self.rearm(stack, i, now);
            }
        }
    }
}

#[cfg(feature = "std")]
impl Drop for Engine<'_> {
    /// Nobody takes commands any more: writers blocked on a full command queue (pool
    /// workers, handle owners) are let go before the pool's workers are joined.
    fn drop(&mut self) {
        if let Some(r) = &self.remote {
            r.shut_down();
        }
    }
}
