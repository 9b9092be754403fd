//! The HTTP/1.1 upgrade handshake (RFC 6455 §4), both ends, sans-IO.
//!
//! The server side parses the request straight out of the receive buffer (no copy, no heap:
//! the header table lives on the stack), runs the [`UpgradeHooks`] and writes either the
//! `101 Switching Protocols` or a complete error or page response into an [`Out`]. The
//! client side writes the request and checks the server's answer. Both report how many
//! bytes the handshake used, because whatever follows in the same read already belongs to
//! the WebSocket stream.
//!
//! ```text
//! server_upgrade(buf) ─▶ parse_request ─▶ HTTP checks ─▶ hooks ─▶ 101 │ 4xx │ hook page
//! write_request ─▶ … ─▶ client_response(buf) ─▶ Accepted │ HandshakeError
//! ```
//!
//! Everything here takes arbitrary bytes in arbitrary chunks: bad input gives an error
//! status, never a panic.
//!
//! [`Out`]: crate::session::codec::Out

mod client;
mod error;
mod request;
mod server;
mod url;
mod write;

#[cfg(test)]
mod tests;

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use client::{client_response, write_request, ClientConfig, ClientUpgrade};
pub use error::HandshakeError;
pub use request::{parse_request, Request};
pub use server::{
    server_upgrade, NoHooks, Rejection, Response, ServerConfig, Upgrade, UpgradeHooks,
};
pub use url::{parse_url, WsUrl};

/// Headers parsed per request or response; more is answered with 431 (server) or
/// [`HandshakeError::Malformed`] (client). The table is a stack array of this size.
pub const MAX_HEADERS: usize = 32;

/// The default limit on the size of an upgrade request or response, in bytes.
pub const DEFAULT_MAX_REQUEST: usize = 4096;

/// The fixed GUID RFC 6455 appends to the key before hashing.
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: base64(SHA-1(key ++ GUID)),
/// always 28 ASCII bytes.
///
/// `key` is the header value as sent (the base64 text, not the 16 bytes it encodes).
///
/// ```
/// use ustack::ws::handshake::accept_key;
/// assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let mut accept = [0u8; 28];
    // 20 bytes always encode to exactly 28, so this cannot fail; ignoring the result keeps
    // a panic path out of the server.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut accept);
    accept
}
