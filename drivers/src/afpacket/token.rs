//! smoltcp tokens of an [`AfPacket`](super::AfPacket).

use std::fmt;
use std::os::fd::RawFd;

use smoltcp::phy;
use smoltcp::time::Instant;

use super::stats::Counters;
use super::{sys, TxPath};

/// Receive token of an [`AfPacket`](super::AfPacket): the frame, in the batch buffer or the ring.
#[derive(Debug)]
pub struct AfPacketRxToken<'a> {
    pub(super) frame: &'a [u8],
}

impl phy::RxToken for AfPacketRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Transmit token of an [`AfPacket`](super::AfPacket): sends at once (per-frame mode) or queues the frame
/// for the next flush.
pub struct AfPacketTxToken<'a> {
    pub(super) fd: RawFd,
    pub(super) tx: &'a mut TxPath,
    pub(super) c: &'a mut Counters,
    pub(super) name: &'a str,
    pub(super) now: Instant,
}

impl fmt::Debug for AfPacketTxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacketTxToken")
            .field("name", &self.name)
            .finish()
    }
}

impl phy::TxToken for AfPacketTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self.tx {
            TxPath::PerFrame { buf } => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                let frame = &mut buf[..len];
                frame.fill(0);
                let r = f(frame);
                self.c.s.tx_syscalls += 1;
                match sys::send_one(self.fd, frame) {
                    Ok(n) if n == len => {
                        self.c.s.tx_frames += 1;
                        self.c.s.tx_bytes += len as u64;
                    }
                    Ok(_) => self.c.s.tx_dropped += 1,
                    Err(e) => {
                        self.c.s.tx_dropped += 1;
                        if crate::txerr::is_transient(&e) {
                            log::debug!("afpacket {}: dropped a {len}-byte frame: {e}", self.name);
                        } else {
                            self.c.warn(self.name, "send", &e);
                        }
                    }
                }
                r
            }
            TxPath::Queued { q, since } => {
                if q.is_full() || len > q.slot() {
                    q.flush(self.fd, self.c, self.name);
                }
                if len > q.slot() {
                    // Bigger than the MTU allows: smoltcp never asks for this.
                    self.c.s.tx_dropped += 1;
                    let mut scratch = vec![0; len];
                    return f(&mut scratch);
                }
                since.get_or_insert(self.now);
                f(q.push(len))
            }
        }
    }
}
