//! Telling a full queue from a broken device when the kernel refuses a frame.

use std::io;

/// Whether a send failed only for lack of room right now (`EAGAIN`, `ENOBUFS`, or a signal):
/// worth a retry or a quiet drop, not a warning.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::ENOBUFS)
}
