//! Hostile frames into a stack with a listener, an established connection, a bound and a
//! connected UDP socket and an open WebSocket session, all set up with a real ustack peer
//! behind the harness's wire. No panic, no hang, bounded memory; the established stream and
//! the WebSocket messages the application gets are prefixes of what the peer sent.
//!
//! Input format: records, see `ustack_fuzz::ingress` (src/ingress.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ustack_fuzz::ingress::run(data);
});
