//! permessage-deflate (RFC 7692): negotiation and the per-message compressor.
//!
//! [`DeflateParams`] negotiates the extension from `Sec-WebSocket-Extensions` values
//! (server: [`DeflateParams::negotiate`] and [`DeflateParams::write_response`]; client:
//! [`DeflateParams::write_offer`] and [`DeflateParams::from_response`]). [`Deflate`] then
//! compresses whole outgoing messages and inflates incoming ones frame by frame, with a
//! hard limit on the inflated size so that a small frame cannot expand into gigabytes.
//!
//! # Memory
//!
//! Measured with a counting allocator on miniz_oxide 0.8.9 (64-bit):
//!
//! | state | heap | kept between messages when |
//! |---|---|---|
//! | compressor ([`Deflate::COMPRESSOR_MEMORY`]) | 319 326 B (312 KiB) | this side takes over its context with a 15-bit window |
//! | decompressor ([`Deflate::INFLATER_MEMORY`]) | 43 296 B (42.3 KiB) | the peer takes over its context |
//!
//! A connection that takes over both contexts holds about 354 KiB for its whole life;
//! with no context takeover in both directions it holds nothing between messages (each
//! state lives only while a message is being compressed or inflated). The compressor is
//! the expensive half: a server with many connections should set
//! [`DeflateConfig::server_no_context_takeover`] (or a smaller server window, which implies
//! it here). Recreating a compressor per message costs about 55 µs against 12 µs for a
//! reset on a desktop CPU; this module drops it anyway, because memory is scarcer.
//!
//! miniz_oxide builds parts of its compressor on the stack before boxing them, so the
//! first `compress` after an allocation briefly needs up to about 150 KiB of stack.
//!
//! # Window sizes
//!
//! The inflater always keeps a 32 KiB window, so any client window can be accepted. The
//! compressor emulates windows below 15 bits by compressing in chunks of at most
//! 2^bits bytes with an empty dictionary at the start of each (see [`Deflate::compress`]):
//! this costs a few bytes per chunk and gives up context takeover, but is always valid.

mod codec;
mod params;
#[cfg(test)]
mod tests;

pub use codec::{Deflate, InflateError};
pub use params::{DeflateConfig, DeflateParams, ExtError};
