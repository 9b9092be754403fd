//! ICMP destination-unreachable messages that quote arbitrary datagrams, aimed at connected
//! and unconnected UDP sockets: only a quote that names a connected socket exactly (our
//! address and its port as source, its peer as destination) may leave an error on it, once.
//! Raw ICMP messages and raw frames are mixed in, with socket actions (connect, disconnect,
//! close, rebind, datagrams from the peer and from strangers).
//!
//! Input format, model and checks: see `ustack_fuzz::udp_icmp` (src/udp_icmp.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ustack_fuzz::udp_icmp::run(data);
});
