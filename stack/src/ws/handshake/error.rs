//! Why a client handshake or a WebSocket URL was refused.

use core::fmt;

/// Why [`client_response`](super::client_response) or [`parse_url`](super::parse_url)
/// refused. The `Display` text says what to check or change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with this status instead of `101 Switching Protocols`.
    Status(u16),
    /// The `101` lacks a header (or a required token in it); the text names it.
    Missing(&'static str),
    /// `Sec-WebSocket-Accept` does not match the key that was sent.
    BadAccept,
    /// The server selected a subprotocol that was not offered; the text says how.
    Protocol(&'static str),
    /// The server's `Sec-WebSocket-Extensions` is not acceptable; the text says why.
    Extension(&'static str),
    /// The response grew past this many bytes without being complete.
    TooLarge {
        /// The limit, [`ClientConfig::max_response`](super::ClientConfig::max_response).
        max: usize,
    },
    /// The response is not valid HTTP/1.1; the text says what is wrong.
    Malformed(&'static str),
    /// The URL cannot be used; the text says why.
    Url(&'static str),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Status(status) => write!(
                f,
                "the server answered HTTP {status} instead of 101 Switching Protocols; \
                 check the URL path and that the server accepts WebSocket upgrades there"
            ),
            HandshakeError::Missing(what) => write!(
                f,
                "the server's 101 response lacks `{what}`; the peer is not a conforming \
                 WebSocket server, or a proxy in between rewrote the upgrade"
            ),
            HandshakeError::BadAccept => f.write_str(
                "Sec-WebSocket-Accept does not match the key that was sent; something other \
                 than the WebSocket server (a proxy or cache) answered, or the response \
                 belongs to another connection: connect directly and use a fresh key each time",
            ),
            HandshakeError::Protocol(why) => write!(
                f,
                "subprotocol negotiation failed: {why}; list the protocol the server selects \
                 in ClientConfig::protocols"
            ),
            HandshakeError::Extension(why) => write!(
                f,
                "extension negotiation failed: {why}; only permessage-deflate is supported, \
                 and only when offered through ClientConfig::deflate"
            ),
            HandshakeError::TooLarge { max } => write!(
                f,
                "the handshake response exceeds {max} bytes without ending; raise \
                 ClientConfig::max_response or check that the peer is an HTTP server"
            ),
            HandshakeError::Malformed(why) => write!(
                f,
                "malformed HTTP response: {why}; check that the address points at an \
                 HTTP/1.1 WebSocket server"
            ),
            HandshakeError::Url(why) => write!(f, "bad WebSocket URL: {why}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for HandshakeError {}
