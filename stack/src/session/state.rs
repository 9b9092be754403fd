//! The engine's per-session record: one per stack socket slot, holding no buffers.

use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use super::bufs::BufId;
use super::info::{Kind, Limits, SessionId, SessionInfo, SessionStats};
use super::SessionError;
use crate::TcpHandle;
#[cfg(feature = "udp")]
use crate::{UdpDial, UdpHandle};

/// The socket under a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sock {
    Tcp(TcpHandle),
    #[cfg(feature = "udp")]
    Udp {
        h: UdpHandle,
        connected: bool,
    },
}

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Free,
    /// A client's TCP connect, waiting for the handshake.
    Connecting {
        since: Instant,
    },
    /// A client's UDP dial check.
    #[cfg(feature = "udp")]
    Dialing(UdpDial),
    Open,
    /// Closed by the application; queued output still going out before the FIN.
    Draining,
}

/// Bytes moved out of the socket because a package is too long to decode in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Assembly {
    pub buf: BufId,
    /// The length of the package at the front, once known.
    pub total: Option<usize>,
}

/// Output the socket could not take yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub buf: BufId,
    pub sent: usize,
}

#[cfg(feature = "alloc")]
pub(crate) type Attrs = alloc::vec::Vec<(core::any::TypeId, alloc::boxed::Box<dyn core::any::Any>)>;
#[cfg(feature = "alloc")]
pub(crate) type CloseFns = alloc::vec::Vec<alloc::boxed::Box<dyn FnOnce(&SessionInfo)>>;
#[cfg(not(feature = "alloc"))]
pub(crate) type CloseFns = heapless::Vec<fn(&SessionInfo), 4>;

/// The engine's record of one session. Part of the caller-provided storage on `no_std`
/// (fill it with [`SessionSlot::EMPTY`]); its fields are private.
pub struct SessionSlot {
    pub(crate) phase: Phase,
    pub(crate) endpoint: u8,
    pub(crate) sock: Sock,
    pub(crate) info: SessionInfo,
    /// Bytes the current package needs before decoding is worth trying again.
    pub(crate) want: usize,
    /// When the unfinished package began.
    pub(crate) partial_since: Option<Instant>,
    /// The protocol holds part of a message although every byte was consumed (a
    /// WebSocket message between its fragments): the read timeout keeps running.
    pub(crate) mid: bool,
    pub(crate) asm: Option<Assembly>,
    pub(crate) pending: Option<Pending>,
    /// Reading stopped because the handler side is full; retried every engine poll.
    pub(crate) paused: bool,
    /// The peer finished but handlers still owe replies: close when they are done or then.
    pub(crate) linger_until: Option<Instant>,
    /// Output acknowledged by the peer at the last check, and when it last grew.
    pub(crate) acked: u64,
    pub(crate) tx_progress: Instant,
    pub(crate) cron_at: Option<Instant>,
    /// `close()` was called (with the error that ended it, if any).
    pub(crate) closing: Option<Option<SessionError>>,
    #[cfg(feature = "alloc")]
    pub(crate) attrs: Attrs,
    pub(crate) on_close: CloseFns,
}

const NO_ENDPOINT: IpEndpoint = IpEndpoint {
    addr: IpAddress::Ipv4(Ipv4Address::UNSPECIFIED),
    port: 0,
};

const NO_INFO: SessionInfo = SessionInfo {
    id: SessionId(0),
    kind: Kind::Tcp,
    local: NO_ENDPOINT,
    peer: NO_ENDPOINT,
    stats: SessionStats {
        bytes_in: 0,
        bytes_out: 0,
        pkgs_in: 0,
        pkgs_out: 0,
        opened: Instant::ZERO,
        last_active: Instant::ZERO,
    },
    limits: Limits {
        cron_period: None,
        idle_timeout: None,
        read_timeout: None,
        write_timeout: None,
        max_msg_len: super::info::DEFAULT_MAX_MSG_LEN,
        max_write_queue: super::info::DEFAULT_MAX_WRITE_QUEUE,
    },
    user_data: 0,
};

impl SessionSlot {
    /// Takes new limits. A changed cron period counts from now: the next rearm schedules
    /// it afresh instead of keeping the deadline the old period set.
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        if limits.cron_period != self.info.limits.cron_period {
            self.cron_at = None;
        }
        self.info.limits = limits;
    }

    /// A free slot, for static storage.
    pub const EMPTY: SessionSlot = SessionSlot {
        phase: Phase::Free,
        endpoint: 0,
        sock: Sock::Tcp(TcpHandle { slot: 0, gen: 0 }),
        info: NO_INFO,
        want: 0,
        partial_since: None,
        mid: false,
        asm: None,
        pending: None,
        paused: false,
        linger_until: None,
        acked: 0,
        tx_progress: Instant::ZERO,
        cron_at: None,
        closing: None,
        #[cfg(feature = "alloc")]
        attrs: alloc::vec::Vec::new(),
        #[cfg(feature = "alloc")]
        on_close: alloc::vec::Vec::new(),
        #[cfg(not(feature = "alloc"))]
        on_close: heapless::Vec::new(),
    };

    /// A fresh record for a socket that is becoming a session (or a client's attempt).
    pub(crate) fn start(&mut self, phase: Phase, endpoint: u8, sock: Sock, now: Instant) {
        *self = SessionSlot::EMPTY;
        self.phase = phase;
        self.endpoint = endpoint;
        self.sock = sock;
        self.info.stats.opened = now;
        self.info.stats.last_active = now;
        self.tx_progress = now;
    }

    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Output waiting beyond the socket: `(buffer, bytes not yet handed over)`.
    pub(crate) fn pending_len(&self, pool: &mut dyn super::bufs::Held) -> usize {
        self.pending.map_or(0, |p| pool.get(p.buf).len() - p.sent)
    }
}

impl Default for SessionSlot {
    fn default() -> Self {
        SessionSlot::EMPTY
    }
}
