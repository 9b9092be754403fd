//! The one error type of the socket API.

use core::fmt;

/// What went wrong, phrased so the caller knows what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The operation cannot make progress now; poll the stack and retry after the next
    /// readiness event for this socket.
    WouldBlock,
    /// Nothing listens there: the peer answered a TCP connection attempt with a reset, or a
    /// connected UDP socket's datagram with ICMP port unreachable.
    ConnectionRefused,
    /// An ICMP destination-unreachable (host, network, protocol, or administratively
    /// prohibited) came back for a datagram this connected UDP socket sent.
    HostUnreachable,
    /// `send` on a UDP socket that is not connected.
    DestinationAddressRequired,
    /// `send_to` on a connected UDP socket (Go's "use of WriteTo with pre-connected
    /// connection").
    AlreadyConnected,
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
            Error::ConnectionRefused => f.write_str("connection refused: the peer answered with a TCP reset or an ICMP port unreachable; check that something listens on that port"),
            Error::HostUnreachable => f.write_str("host unreachable: an ICMP destination-unreachable came back for this socket's datagram; check the peer's address and the route to it"),
            Error::DestinationAddressRequired => f.write_str("destination address required: this UDP socket is not connected; connect it first, or use send_to with an address"),
            Error::AlreadyConnected => f.write_str("use of WriteTo with pre-connected connection: this UDP socket is connected; use send, or disconnect first"),
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
            Error::HostUnreachable => K::HostUnreachable,
            Error::DestinationAddressRequired => K::NotConnected,
            Error::AlreadyConnected => K::InvalidInput,
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
