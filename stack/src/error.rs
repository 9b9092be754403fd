//! The one error type of the socket API.

use core::fmt;

/// What went wrong, phrased so the caller knows what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The operation cannot make progress now; poll the stack and retry after the next
    /// readiness event for this socket.
    WouldBlock,
    /// The peer answered the connection attempt with a reset: nothing listens there.
    ConnectionRefused,
    /// The peer reset an established connection.
    ConnectionReset,
    /// The peer stopped answering within the socket's timeout.
    TimedOut,
    /// Another socket already uses this local port.
    AddrInUse,
    /// The socket is not connected (yet, or any more).
    NotConnected,
    /// The socket table, a listener table or a buffer pool is full.
    NoBufferSpace,
    /// An argument was rejected; the text says which.
    InvalidInput(&'static str),
    /// The handle refers to a socket that was closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => f.write_str("operation would block: poll the stack and retry on the next readiness event"),
            Error::ConnectionRefused => f.write_str("connection refused: the peer sent a reset; check that something listens on that port"),
            Error::ConnectionReset => f.write_str("connection reset by peer: close this socket and reconnect"),
            Error::TimedOut => f.write_str("timed out: the peer stopped answering; check the route and the peer, then reconnect"),
            Error::AddrInUse => f.write_str("address in use: another ustack socket holds this port; pick another port or close that socket"),
            Error::NotConnected => f.write_str("not connected: connect (or accept) first, and wait for the CONNECTED event"),
            Error::NoBufferSpace => f.write_str("no buffer space: the socket table or buffer pool is full; close idle sockets or raise the limits in Config"),
            Error::InvalidInput(why) => write!(f, "invalid input: {why}"),
            Error::Closed => f.write_str("socket closed: this handle is no longer valid; open a new socket"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e {
            Error::WouldBlock => K::WouldBlock,
            Error::ConnectionRefused => K::ConnectionRefused,
            Error::ConnectionReset => K::ConnectionReset,
            Error::TimedOut => K::TimedOut,
            Error::AddrInUse => K::AddrInUse,
            Error::NotConnected => K::NotConnected,
            Error::NoBufferSpace => K::OutOfMemory,
            Error::InvalidInput(_) => K::InvalidInput,
            Error::Closed => K::BrokenPipe,
        };
        std::io::Error::new(kind, e)
    }
}

/// Result alias for the socket API.
pub type Result<T> = core::result::Result<T, Error>;
