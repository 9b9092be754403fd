//! Readiness events: what the last poll changed, one entry per socket that has work.

use core::fmt;

/// A set of readiness flags. Events are edge-triggered: after `READABLE`, read until
/// [`Error::WouldBlock`](crate::Error::WouldBlock); after `WRITABLE`, write until it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready(u8);

impl Ready {
    /// Data (or end of stream, or an error) can be read.
    pub const READABLE: Ready = Ready(1);
    /// Buffer space is free for writing.
    pub const WRITABLE: Ready = Ready(2);
    /// A `connect` completed its handshake, or an accepted connection is handed out.
    pub const CONNECTED: Ready = Ready(4);
    /// The connection is fully closed; close the handle to free it.
    pub const CLOSED: Ready = Ready(8);
    /// The connection ended abnormally, or (UDP) an ICMP error is pending; the next read or
    /// write reports it.
    pub const ERROR: Ready = Ready(16);
    /// A listener has a connection waiting in `accept`.
    pub const ACCEPTABLE: Ready = Ready(32);

    /// No flags.
    pub const fn empty() -> Ready {
        Ready(0)
    }

    /// Whether every flag of `other` is set.
    ///
    /// ```
    /// use ustack::Ready;
    /// let r = Ready::READABLE | Ready::CLOSED;
    /// assert!(r.contains(Ready::CLOSED) && !r.contains(Ready::WRITABLE));
    /// ```
    pub const fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    pub(crate) const fn from_bits(b: u8) -> Ready {
        Ready(b)
    }
}

impl core::ops::BitOr for Ready {
    type Output = Ready;
    fn bitor(self, o: Ready) -> Ready {
        Ready(self.0 | o.0)
    }
}

impl core::ops::BitOrAssign for Ready {
    fn bitor_assign(&mut self, o: Ready) {
        self.0 |= o.0;
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 6] = [
            "READABLE",
            "WRITABLE",
            "CONNECTED",
            "CLOSED",
            "ERROR",
            "ACCEPTABLE",
        ];
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("(empty)")?;
        }
        Ok(())
    }
}

/// A TCP connection. Copyable; stale copies are refused with [`Error::Closed`](crate::Error::Closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpHandle {
    pub(crate) slot: u16,
    pub(crate) gen: u16,
}

/// A bound UDP socket (feature `udp`).
#[cfg(feature = "udp")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpHandle {
    pub(crate) slot: u16,
    pub(crate) gen: u16,
}

/// A TCP listener created by [`Stack::listen`](crate::Stack::listen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpListener {
    pub(crate) idx: u8,
    pub(crate) gen: u16,
}

/// Which socket an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// A TCP connection.
    Tcp(TcpHandle),
    /// A UDP socket (feature `udp`).
    #[cfg(feature = "udp")]
    Udp(UdpHandle),
    /// A listener.
    Listener(TcpListener),
}

/// One socket's readiness after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The socket.
    pub token: Token,
    /// What it is ready for.
    pub ready: Ready,
}
