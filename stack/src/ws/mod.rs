//! WebSocket (RFC 6455) over sessions: the HTTP/1.1 upgrade, frames, messages and
//! permessage-deflate (RFC 7692, feature `alloc`).
//!
//! Everything here is sans-IO, in the style of smoltcp's `wire` modules and quinn-proto:
//! [`handshake`] parses an upgrade request straight from received bytes and writes the
//! response, [`frame`] reads and writes frame headers and masks payloads, and [`WsConn`]
//! turns frames into messages and back. None of it touches a socket or a clock, so the same
//! code runs in the session engine, on firmware, in benchmarks and under a fuzzer.
//!
//! ```text
//! session engine ─▶ WsServer / WsClient (a session Protocol)
//!                      ├─ handshake: request ─▶ hooks ─▶ 101 / 4xx / static page
//!                      └─ WsConn: frames ─▶ (inflate) ─▶ UTF-8 ─▶ messages ─▶ codec ─▶ listener
//! ```

pub mod close;
pub mod conn;
#[cfg(feature = "alloc")]
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod keys;
pub mod utf8;

/// Which end of the connection this side is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts upgrades; reads masked frames, writes unmasked ones.
    Server,
    /// Requests the upgrade; masks every frame it writes.
    Client,
}
mod session;

pub use session::{
    WsClient, WsListener, WsOptions, WsServer, WsSession, WsSlotState, DEFAULT_UPGRADE_TIMEOUT,
};
