//! Endpoints: what opens sessions. A TCP server accepts them, a TCP client dials N of them
//! and keeps them up, a UDP endpoint is one session per bound socket, and a UDP client is a
//! connected socket that passed the dial check.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use super::info::Limits;
use super::listener::Protocol;
#[cfg(feature = "udp")]
use crate::DialOptions;
use crate::{Error, TcpListener, TcpOptions};

/// Most endpoints one engine runs.
pub const MAX_ENDPOINTS: usize = 16;

/// An endpoint of an [`Engine`](super::Engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId(pub(crate) u8);

/// What a server does with connections beyond its limits (too many sessions, or every
/// handler queue full): the seed's "self-DDoS" lesson, accept only what can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Stop accepting: connections wait in the listener's backlog, then SYNs wait in the
    /// stack's SYN hold, then are reset ([`Config::syn_hold`](crate::Config::syn_hold)).
    /// Accepting resumes when load drops.
    #[default]
    Wait,
    /// Accept and reset at once, so clients fail fast and can go elsewhere.
    Reset,
}

/// How a TCP server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Connections the listener keeps ready to accept.
    pub backlog: usize,
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// What happens beyond the limits.
    pub when_full: WhenFull,
    /// Socket options of accepted connections; the default is [`TcpOptions::default`] with
    /// `nodelay` (see [`session_tcp`]).
    pub tcp: TcpOptions,
    /// Timers and limits every new session starts with.
    pub limits: Limits,
}

/// The TCP options sessions start with: the stack's defaults without Nagle. Sessions
/// exchange messages and answer each other, and with Nagle a reply's last partial segment
/// waits for the peer's delayed ACK (40 ms on Linux) before it leaves. Getty and Go's `net`
/// turn Nagle off for the same reason.
///
/// ```
/// let tcp = ustack::session::session_tcp();
/// assert!(tcp.nodelay);
/// assert_eq!(ustack::session::ServerOptions::default().tcp, tcp);
/// assert_eq!(ustack::session::ClientOptions::default().tcp, tcp);
/// ```
pub fn session_tcp() -> TcpOptions {
    TcpOptions {
        nodelay: true,
        ..TcpOptions::default()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: 64,
            max_sessions: usize::MAX,
            when_full: WhenFull::Wait,
            tcp: session_tcp(),
            limits: Limits::default(),
        }
    }
}

/// Exponential backoff: the first retry after `initial`, each next one twice as late, at
/// most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// How a client endpoint connects and reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Sessions to keep open to the server.
    pub connections: usize,
    /// Delay between failed attempts.
    pub backoff: Backoff,
    /// Give up after this many failed attempts in a row (over all connections); `None`
    /// retries forever. A session that opens resets the count.
    pub max_attempts: Option<u32>,
    /// A TCP handshake not done in this time counts as a failed attempt.
    pub connect_timeout: Duration,
    /// The UDP client's dial check (feature `udp`).
    #[cfg(feature = "udp")]
    pub dial: DialOptions,
    /// Socket options of the connections; the default is [`session_tcp`].
    pub tcp: TcpOptions,
    /// Timers and limits every new session starts with.
    pub limits: Limits,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connections: 1,
            backoff: Backoff::default(),
            max_attempts: None,
            connect_timeout: Duration::from_secs(5),
            #[cfg(feature = "udp")]
            dial: DialOptions::default(),
            tcp: session_tcp(),
            limits: Limits::default(),
        }
    }
}

/// What an endpoint is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    /// A server or UDP endpoint: this many sessions open.
    Serving {
        /// Open sessions.
        sessions: usize,
        /// Whether accepting is paused by the limits.
        throttled: bool,
    },
    /// A client: `sessions` of `wanted` are open; the rest are connecting or waiting to retry.
    Client {
        /// Open sessions.
        sessions: usize,
        /// Sessions the client keeps.
        wanted: usize,
        /// Failed attempts in a row.
        attempts: u32,
        /// When the next retry starts, if one is waiting.
        retry_at: Option<Instant>,
    },
    /// A client that reached its attempt limit and stopped.
    GaveUp {
        /// Failed attempts in a row.
        attempts: u32,
        /// Why the last one failed.
        last_error: Error,
    },
    /// Closed with [`Engine::close_endpoint`](super::Engine::close_endpoint).
    Closed,
}

pub(crate) struct Client {
    pub remote: IpEndpoint,
    pub opts: ClientOptions,
    pub udp: bool,
    /// Connecting, dialing or open.
    pub active: usize,
    pub attempts: u32,
    pub delay: Duration,
    pub retry_at: Option<Instant>,
    pub gave_up: Option<Error>,
}

impl Client {
    pub(crate) fn new(remote: IpEndpoint, opts: ClientOptions, udp: bool, now: Instant) -> Self {
        Client {
            remote,
            opts,
            udp,
            active: 0,
            attempts: 0,
            delay: opts.backoff.initial,
            retry_at: Some(now),
            gave_up: None,
        }
    }

    /// An attempt failed: back off, or give up at the limit.
    pub(crate) fn failed(&mut self, why: Error, now: Instant) {
        self.active = self.active.saturating_sub(1);
        self.attempts = self.attempts.saturating_add(1);
        if self.opts.max_attempts.is_some_and(|m| self.attempts >= m) {
            #[cfg(feature = "log")]
            log::warn!(
                "client of {}: giving up after {} failed attempts, the last: {why}",
                self.remote,
                self.attempts
            );
            self.gave_up = Some(why);
            self.retry_at = None;
            return;
        }
        #[cfg(feature = "log")]
        log::debug!(
            "client of {}: attempt {} failed ({why}); retrying in {}",
            self.remote,
            self.attempts,
            self.delay
        );
        // One retry round per backoff step, however many connections failed in it.
        if self.retry_at.is_none() {
            self.retry_at = Some(now + self.delay);
            self.delay = (self.delay * 2).min(self.opts.backoff.max);
        }
    }

    /// A session opened: the failure streak is over.
    pub(crate) fn opened(&mut self) {
        self.attempts = 0;
        self.delay = self.opts.backoff.initial;
    }

    /// An open session ended: reconnect after the first backoff step.
    pub(crate) fn lost(&mut self, now: Instant) {
        self.active = self.active.saturating_sub(1);
        if self.gave_up.is_none() && self.retry_at.is_none() {
            self.retry_at = Some(now + self.opts.backoff.initial);
        }
    }
}

pub(crate) enum Role {
    Server {
        listener: TcpListener,
        opts: ServerOptions,
        throttled: bool,
    },
    Client(Client),
    #[cfg(feature = "udp")]
    Udp,
}

/// An endpoint's protocol: borrowed (any target) or boxed (with a heap).
pub enum ProtocolRef<'a> {
    /// Caller-owned.
    Borrowed(&'a mut dyn Protocol),
    /// Owned by the engine.
    #[cfg(feature = "alloc")]
    Boxed(alloc::boxed::Box<dyn Protocol + 'a>),
}

impl ProtocolRef<'_> {
    pub(crate) fn get(&mut self) -> &mut dyn Protocol {
        match self {
            ProtocolRef::Borrowed(p) => *p,
            #[cfg(feature = "alloc")]
            ProtocolRef::Boxed(p) => &mut **p,
        }
    }

    pub(crate) fn get_ref(&self) -> &dyn Protocol {
        match self {
            ProtocolRef::Borrowed(p) => &**p,
            #[cfg(feature = "alloc")]
            ProtocolRef::Boxed(p) => &**p,
        }
    }
}

impl<'a> From<&'a mut dyn Protocol> for ProtocolRef<'a> {
    fn from(p: &'a mut dyn Protocol) -> Self {
        ProtocolRef::Borrowed(p)
    }
}

#[cfg(feature = "alloc")]
impl<'a, P: Protocol + 'a> From<P> for ProtocolRef<'a> {
    fn from(p: P) -> Self {
        ProtocolRef::Boxed(alloc::boxed::Box::new(p))
    }
}

pub(crate) struct Endpoint<'a> {
    pub proto: ProtocolRef<'a>,
    pub role: Role,
    pub limits: Limits,
    pub open: usize,
    pub closed: bool,
}

impl Endpoint<'_> {
    pub(crate) fn status(&self) -> EndpointStatus {
        if self.closed {
            return EndpointStatus::Closed;
        }
        match &self.role {
            Role::Server { throttled, .. } => EndpointStatus::Serving {
                sessions: self.open,
                throttled: *throttled,
            },
            #[cfg(feature = "udp")]
            Role::Udp => EndpointStatus::Serving {
                sessions: self.open,
                throttled: false,
            },
            Role::Client(c) => match c.gave_up {
                Some(last_error) => EndpointStatus::GaveUp {
                    attempts: c.attempts,
                    last_error,
                },
                None => EndpointStatus::Client {
                    sessions: self.open,
                    wanted: c.opts.connections,
                    attempts: c.attempts,
                    retry_at: c.retry_at,
                },
            },
        }
    }
}
