//! Opening sessions: endpoints, accepting with limits, client connects with backoff, UDP
//! dial checks.

use smoltcp::phy::Device;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use super::super::endpoint::{
    Client, ClientOptions, Endpoint, EndpointId, ProtocolRef, Role, ServerOptions, WhenFull,
};
use super::super::info::{Kind, SessionId};
use super::super::state::{Phase, Sock};
use super::Engine;
#[cfg(feature = "udp")]
use crate::{DialStatus, UdpDial};
use crate::{Error, Stack};

impl<'a> Engine<'a> {
    fn add(&mut self, e: Endpoint<'a>) -> Result<EndpointId, Error> {
        let id = self.endpoints.len();
        self.endpoints
            .push(e)
            .map_err(|_| Error::InvalidInput("this engine runs at most MAX_ENDPOINTS endpoints"))?;
        Ok(EndpointId(id as u8))
    }

    /// A TCP server on `port`: every accepted connection becomes a session run by `proto`.
    pub fn tcp_server<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        port: u16,
        opts: ServerOptions,
        proto: impl Into<ProtocolRef<'a>>,
    ) -> Result<EndpointId, Error> {
        if self.endpoints.is_full() {
            return Err(Error::InvalidInput(
                "this engine runs at most MAX_ENDPOINTS endpoints",
            ));
        }
        let listener = stack.listen_with(port, opts.backlog, opts.tcp)?;
        self.add(Endpoint {
            proto: proto.into(),
            role: Role::Server {
                listener,
                opts,
                throttled: false,
            },
            limits: opts.limits,
            open: 0,
            closed: false,
        })
    }

    /// A TCP client that keeps `opts.connections` sessions to `remote`, reconnecting with
    /// backoff. The first attempts start on the next [`poll`](Self::poll).
    pub fn tcp_client(
        &mut self,
        remote: IpEndpoint,
        opts: ClientOptions,
        proto: impl Into<ProtocolRef<'a>>,
        now: Instant,
    ) -> Result<EndpointId, Error> {
        self.client(remote, opts, proto.into(), false, now)
    }

    /// A connected UDP client: each of `opts.connections` sessions opens once its socket
    /// passes the dial check ([`Stack::udp_dial`]); a refused dial is retried with backoff.
    #[cfg(feature = "udp")]
    pub fn udp_client(
        &mut self,
        remote: IpEndpoint,
        opts: ClientOptions,
        proto: impl Into<ProtocolRef<'a>>,
        now: Instant,
    ) -> Result<EndpointId, Error> {
        self.client(remote, opts, proto.into(), true, now)
    }

    fn client(
        &mut self,
        remote: IpEndpoint,
        opts: ClientOptions,
        proto: ProtocolRef<'a>,
        udp: bool,
        now: Instant,
    ) -> Result<EndpointId, Error> {
        if opts.connections == 0 {
            return Err(Error::InvalidInput(
                "a client needs at least one connection",
            ));
        }
        if remote.port == 0 || remote.addr.is_unspecified() {
            return Err(Error::InvalidInput(
                "a client needs a peer address and port",
            ));
        }
        self.add(Endpoint {
            proto,
            role: Role::Client(Client::new(remote, opts, udp, now)),
            limits: opts.limits,
            open: 0,
            closed: false,
        })
    }

    /// An unconnected UDP endpoint on `port`: one session for the socket, whose peer is
    /// each datagram's sender in turn. Datagrams the codec cannot decode are dropped and
    /// counted, so one stranger cannot end the session.
    #[cfg(feature = "udp")]
    pub fn udp<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        port: u16,
        limits: super::super::Limits,
        proto: impl Into<ProtocolRef<'a>>,
        now: Instant,
    ) -> Result<EndpointId, Error> {
        if self.endpoints.is_full() {
            return Err(Error::InvalidInput(
                "this engine runs at most MAX_ENDPOINTS endpoints",
            ));
        }
        let h = stack.udp_bind(port)?;
        let id = self.add(Endpoint {
            proto: proto.into(),
            role: Role::Udp,
            limits,
            open: 0,
            closed: false,
        })?;
        let local = IpEndpoint::new(
            stack.config().ipv4.address().into(),
            stack.udp_local_port(h)?,
        );
        let i = usize::from(h.slot);
        self.slots[i].start(
            Phase::Open,
            id.0,
            Sock::Udp {
                h,
                connected: false,
            },
            now,
        );
        if !self.open_session(stack, i, Kind::Udp, local, local, now) {
            return Err(Error::InvalidInput(
                "on_open refused the UDP endpoint's session",
            ));
        }
        Ok(id)
    }

    /// Stops an endpoint: a server stops listening, a client stops reconnecting, and their
    /// open sessions close (`on_close` runs for each).
    pub fn close_endpoint<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        id: EndpointId,
        now: Instant,
    ) {
        let Some(e) = self.endpoints.get_mut(usize::from(id.0)) else {
            return;
        };
        if core::mem::replace(&mut e.closed, true) {
            return;
        }
        match &mut e.role {
            Role::Server { listener, .. } => {
                let _ = stack.close_listener(*listener);
            }
            Role::Client(c) => c.retry_at = None,
            #[cfg(feature = "udp")]
            Role::Udp => {}
        }
        for i in 0..self.slots.len() {
            let st = &mut self.slots[i];
            if st.endpoint != id.0 {
                continue;
            }
            match (st.phase, st.sock) {
                (Phase::Open, _) => self.end(stack, i, None, now),
                (Phase::Connecting { .. }, Sock::Tcp(h)) => {
                    let _ = stack.tcp_abort(h);
                    self.free(i);
                }
                #[cfg(feature = "udp")]
                (Phase::Dialing(_), Sock::Udp { h, .. }) => {
                    let _ = stack.udp_close(h);
                    self.free(i);
                }
                _ => {}
            }
        }
    }

    /// Accepts while the server is under its limits.
    pub(super) fn accept_all<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        ep: usize,
        now: Instant,
    ) {
        loop {
            let e = &mut self.endpoints[ep];
            let Role::Server {
                listener,
                opts,
                throttled,
            } = &mut e.role
            else {
                return;
            };
            if e.closed {
                return;
            }
            let full = e.open >= opts.max_sessions || e.proto.get_ref().busy(None);
            if full && opts.when_full == WhenFull::Wait {
                if !*throttled {
                    #[cfg(feature = "log")]
                    log::debug!(
                        "server: {} sessions open or handlers busy; accepting paused",
                        e.open
                    );
                }
                *throttled = true;
                return;
            }
            *throttled = false;
            let listener = *listener;
            let h = match stack.accept(listener) {
                Ok(h) => h,
                Err(Error::WouldBlock) => return,
                Err(err) => {
                    #[cfg(feature = "log")]
                    log::warn!("server: accept failed: {err}");
                    let _ = err;
                    return;
                }
            };
            if full {
                let _ = stack.tcp_abort(h);
                self.stats.refused_full += 1;
                continue;
            }
            let (Ok(local), Ok(peer)) = (stack.tcp_local_addr(h), stack.tcp_peer_addr(h)) else {
                let _ = stack.tcp_abort(h);
                continue;
            };
            let i = usize::from(h.slot);
            self.slots[i].start(Phase::Open, ep as u8, Sock::Tcp(h), now);
            let kind = self.endpoints[ep].proto.get_ref().kind();
            if self.open_session(stack, i, kind, local, peer, now) {
                self.read_tcp(stack, i, now);
                self.rearm(stack, i, now);
            }
        }
    }

    /// Runs `on_open` for slot `i` (already started). Returns whether the session is open.
    fn open_session<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        kind: Kind,
        local: IpEndpoint,
        peer: IpEndpoint,
        now: Instant,
    ) -> bool {
        let ep = usize::from(self.slots[i].endpoint);
        let st = &mut self.slots[i];
        st.info.id = SessionId(self.next_id);
        self.next_id += 1;
        st.info.kind = kind;
        st.info.local = local;
        st.info.peer = peer;
        st.info.limits = self.endpoints[ep].limits;
        st.mid = false;
        st.phase = Phase::Open;
        self.endpoints[ep].open += 1;
        if let Err(r) = self.with_ctx(stack, i, now, |p, s| p.open(s)) {
            #[cfg(feature = "log")]
            log::debug!("session from {peer} refused: {r}");
            let _ = r;
            self.stats.rejected += 1;
            let e = &mut self.endpoints[ep];
            e.open -= 1;
            let st = &mut self.slots[i];
            #[cfg(feature = "alloc")]
            {
                st.attrs = alloc::vec::Vec::new();
            }
            st.on_close = Default::default();
            if let Some(p) = st.pending.take() {
                self.pending.give(p.buf);
            }
            match st.sock {
                Sock::Tcp(h) => {
                    let _ = stack.tcp_close(h);
                }
                #[cfg(feature = "udp")]
                Sock::Udp { h, .. } => {
                    let _ = stack.udp_close(h);
                }
            }
            if let Role::Client(c) = &mut e.role {
                c.failed(Error::InvalidInput("on_open refused the session"), now);
            }
            self.free(i);
            return false;
        }
        self.stats.opened += 1;
        if let Role::Client(c) = &mut self.endpoints[ep].role {
            c.opened();
        }
        self.after_callback(stack, i, now);
        self.slots[i].phase == Phase::Open
    }

    /// Starts the connections a client is missing.
    fn dial_missing<D: Device>(&mut self, stack: &mut Stack<'_, D>, ep: usize, now: Instant) {
        loop {
            let Role::Client(c) = &mut self.endpoints[ep].role else {
                return;
            };
            if c.active >= c.opts.connections || c.gave_up.is_some() {
                return;
            }
            c.active += 1;
            let (remote, opts, udp) = (c.remote, c.opts, c.udp);
            let r = match udp {
                false => stack.connect_with(remote, opts.tcp).map(|h| {
                    let i = usize::from(h.slot);
                    self.slots[i].start(
                        Phase::Connecting { since: now },
                        ep as u8,
                        Sock::Tcp(h),
                        now,
                    );
                    let _ = self.timers.schedule(i, now + opts.connect_timeout);
                }),
                #[cfg(feature = "udp")]
                true => stack.udp_dial(remote, opts.dial, now).map(|d| {
                    let h = d.handle();
                    let i = usize::from(h.slot);
                    let sock = Sock::Udp { h, connected: true };
                    self.slots[i].start(Phase::Dialing(d), ep as u8, sock, now);
                    let _ = self.timers.schedule(i, d.deadline());
                }),
                // `udp_client`, the only way to get here, needs the feature too.
                #[cfg(not(feature = "udp"))]
                true => Err(Error::InvalidInput("UDP clients need ustack's udp feature")),
            };
            if let Err(e) = r {
                if let Role::Client(c) = &mut self.endpoints[ep].role {
                    c.failed(e, now);
                }
                return;
            }
        }
    }

    /// A client's TCP handshake ended one way or the other.
    pub(super) fn connect_done<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        now: Instant,
    ) {
        let Sock::Tcp(h) = self.slots[i].sock else {
            return;
        };
        match stack.tcp_connected(h) {
            Ok(false) => {}
            Ok(true) => {
                let (Ok(local), Ok(peer)) = (stack.tcp_local_addr(h), stack.tcp_peer_addr(h))
                else {
                    let _ = stack.tcp_abort(h);
                    return self.attempt_failed(i, Error::NotConnected, now);
                };
                if local == peer {
                    // A simultaneous open with itself: nobody is listening there.
                    let _ = stack.tcp_abort(h);
                    return self.attempt_failed(i, Error::InvalidInput("self-connect"), now);
                }
                let _ = self.timers.cancel(i);
                let kind = self.endpoints[usize::from(self.slots[i].endpoint)]
                    .proto
                    .get_ref()
                    .kind();
                if self.open_session(stack, i, kind, local, peer, now) {
                    self.read_tcp(stack, i, now);
                }
            }
            Err(e) => {
                let _ = stack.tcp_abort(h);
                self.attempt_failed(i, e, now);
            }
        }
    }

    /// Drives a UDP client's dial check.
    #[cfg(feature = "udp")]
    pub(super) fn check_dial<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        i: usize,
        d: UdpDial,
        now: Instant,
    ) {
        match stack.udp_dial_check(&d, now) {
            Ok(DialStatus::Pending { until }) => {
                let _ = self.timers.schedule(i, until);
            }
            Ok(DialStatus::Reachable(h)) => {
                let _ = self.timers.cancel(i);
                let _ = stack.udp_drop_probes(h, true);
                let (Ok(peer), Ok(port)) = (stack.udp_peer_addr(h), stack.udp_local_port(h)) else {
                    let _ = stack.udp_close(h);
                    return self.attempt_failed(i, Error::NotConnected, now);
                };
                let local = IpEndpoint::new(stack.config().ipv4.address().into(), port);
                self.slots[i].phase = Phase::Open;
                if self.open_session(stack, i, Kind::Udp, local, peer, now) {
                    self.read_udp(stack, i, now);
                }
            }
            Err(e) => self.attempt_failed(i, e, now),
        }
    }

    /// A client's attempt in slot `i` failed; the slot is free again.
    pub(super) fn attempt_failed(&mut self, i: usize, why: Error, now: Instant) {
        let ep = usize::from(self.slots[i].endpoint);
        self.free(i);
        if let Role::Client(c) = &mut self.endpoints[ep].role {
            c.failed(why, now);
        }
    }

    /// Client retries that are due, and servers that may accept again.
    pub(super) fn endpoint_work<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        now: Instant,
    ) -> bool {
        let mut did = false;
        for ep in 0..self.endpoints.len() {
            let e = &mut self.endpoints[ep];
            if e.closed {
                continue;
            }
            match &mut e.role {
                Role::Client(c) if c.retry_at.is_some_and(|t| t <= now) => {
                    c.retry_at = None;
                    self.dial_missing(stack, ep, now);
                    did = true;
                }
                Role::Server {
                    throttled: true, ..
                } => self.accept_all(stack, ep, now),
                _ => {}
            }
        }
        did
    }
}
