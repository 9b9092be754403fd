//! A whole `ustack::Stack` fed fuzzer-provided frames: a listener on TCP port 7 (backlog 4),
//! a UDP socket on port 7 and a connection to 10.0.0.2:80 under way, with the application
//! accepting, reading, writing, closing and aborting as the input says. Nothing may panic.
//!
//! Input format: records of `[len_hi, len_lo, ctl, frame...]`; see `ustack_fuzz` (src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack_fuzz::Harness;

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new(false);
    h.run(data);
    let stats = h.stack.stats();
    // Every frame handed to the stack was either counted as received or is still queued
    // (held SYNs are copied out of the device, so they do not stay there).
    let queued = h.stack.device().rx.len() as u64;
    let fed = ustack_fuzz::records(data).count() as u64;
    assert!(
        stats.rx_frames + queued <= fed,
        "{stats:?}: {fed} frames fed, {queued} queued"
    );
    assert!(stats.rx_dropped() <= stats.rx_frames, "{stats:?}");
    assert_eq!(stats.tx_frames, h.stack.device().tx_frames, "{stats:?}");
});
