//! What a session is and what it has done: identity, counters and limits.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// A session's id: unique for the life of its engine, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What carries a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A TCP connection.
    Tcp,
    /// A UDP socket (unconnected: the peer is the last datagram's source).
    Udp,
    /// A WebSocket over TCP.
    Ws,
}

/// Traffic counters of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Bytes taken from the socket (decoded or being assembled).
    pub bytes_in: u64,
    /// Bytes handed to the socket or queued for it.
    pub bytes_out: u64,
    /// Packages decoded.
    pub pkgs_in: u64,
    /// Packages written.
    pub pkgs_out: u64,
    /// When the session opened.
    pub opened: Instant,
    /// When bytes last moved in either direction.
    pub last_active: Instant,
}

/// Largest package a session accepts unless told otherwise: 1 MiB.
pub const DEFAULT_MAX_MSG_LEN: usize = 1 << 20;

/// Most output a session queues beyond its socket's transmit buffer unless told otherwise.
pub const DEFAULT_MAX_WRITE_QUEUE: usize = 1 << 20;

/// A session's timers and limits. `None` turns a timer off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How often `on_cron` runs.
    pub cron_period: Option<Duration>,
    /// Close a session with no traffic for this long.
    pub idle_timeout: Option<Duration>,
    /// Close a session whose current package stays unfinished for this long.
    pub read_timeout: Option<Duration>,
    /// Close a session whose queued output does not drain for this long.
    pub write_timeout: Option<Duration>,
    /// Longest package, header included, checked on the declared length.
    pub max_msg_len: usize,
    /// Most output bytes queued beyond the socket's transmit buffer.
    pub max_write_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cron_period: None,
            idle_timeout: None,
            read_timeout: None,
            write_timeout: None,
            max_msg_len: DEFAULT_MAX_MSG_LEN,
            max_write_queue: DEFAULT_MAX_WRITE_QUEUE,
        }
    }
}

/// Everything about a session that is plain data: a copy of it can travel to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id.
    pub id: SessionId,
    /// What carries it.
    pub kind: Kind,
    /// The local address.
    pub local: IpEndpoint,
    /// The peer (for an unconnected UDP session, the source of the current datagram).
    pub peer: IpEndpoint,
    /// Traffic so far.
    pub stats: SessionStats,
    /// Timers and limits.
    pub limits: Limits,
    /// One word for the application (a user id, an index), on every target.
    pub user_data: u64,
}
