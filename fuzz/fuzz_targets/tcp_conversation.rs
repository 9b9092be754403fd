//! A scripted TCP peer, decoded from the input with `arbitrary`, holds a conversation with a
//! whole `ustack::Stack` (listener or active opener, IPv4 or IPv6): handshake, segments with
//! chosen sequence numbers, flags, windows and options, reordering, duplicates, clock steps,
//! and application reads, writes, closes and aborts. What the application reads must be the
//! peer's stream, in order and uncorrupted, with end of stream only at a FIN the peer sent;
//! what the stack sends must be what the application wrote.
//!
//! Input format: see `ustack_fuzz::tcp_conversation` (src/tcp_conversation.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ustack_fuzz::tcp_conversation::run(data);
});
