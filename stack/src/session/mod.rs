//! The session layer, Getty-style: a [`Codec`](codec::Codec) turns a byte stream into
//! packages, and one timer structure drives every session's cron and timeouts.
//!
//! Everything here is sans-IO: it never touches a socket or a clock, so the same code runs on
//! firmware, in tests and under a fuzzer.

pub mod codec;
pub mod timer;
