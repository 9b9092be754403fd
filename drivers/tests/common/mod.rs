//! What the drivers' kernel tests share: the privilege check and unique names.

use std::sync::atomic::{AtomicU32, Ordering};

/// Whether to run a test that needs root. Without root it fails saying so; it skips only
/// when USTACK_SKIP_PRIVILEGED=1.
pub fn privileged() -> bool {
    let _ = env_logger::builder().is_test(true).try_init();
    if std::env::var("USTACK_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("skipped: USTACK_SKIP_PRIVILEGED=1");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "these tests need root (TAP devices, raw sockets, network namespaces): run them \
         with sudo, or set USTACK_SKIP_PRIVILEGED=1 to skip them"
    );
    true
}

/// `prefix` plus this process and a counter: unique across parallel tests and runs, and
/// short enough for an interface name with a prefix of up to 4 bytes.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
