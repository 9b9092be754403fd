//! Ctrl-C and SIGTERM as a flag the poll loop checks.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs handlers for SIGINT and SIGTERM and returns the flag they set. The poll loop
/// wakes within its longest sleep (100 ms), so the program can clean up (and remove its
/// TAP interface) instead of dying mid-loop.
pub fn stop_flag() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    &STOP
}
