//! The transmit queue of the batched modes: frames a poll produces wait here and leave in
//! one `sendmmsg` when the poll ends ([`AfPacket::flush`](super::AfPacket::flush)) or the
//! queue is full.

use std::os::fd::RawFd;

use super::sys::MsgVec;
use super::Counters;

/// How often a flush retries frames the kernel refused for lack of room before it drops
/// them (counted in `tx_dropped`).
const FLUSH_RETRIES: usize = 8;

pub(super) struct TxQueue {
    buf: Vec<u8>,
    lens: Vec<usize>,
    slot: usize,
    msgs: MsgVec,
}

impl TxQueue {
    pub(super) fn new(batch: usize, slot: usize) -> TxQueue {
        TxQueue {
            buf: vec![0; batch * slot],
            lens: Vec::with_capacity(batch),
            slot,
            msgs: MsgVec::new(batch),
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.lens.len() * self.slot >= self.buf.len()
    }

    /// Largest frame a slot holds.
    pub(super) fn slot(&self) -> usize {
        self.slot
    }

    pub(super) fn len(&self) -> usize {
        self.lens.len()
    }

    /// The next free slot, zeroed to `len` bytes; the frame counts as queued once written.
    pub(super) fn push(&mut self, len: usize) -> &mut [u8] {
        let i = self.lens.len();
        self.lens.push(len);
        let frame = &mut self.buf[i * self.slot..][..len];
        // Stale bytes of an earlier frame must never reach the wire.
        frame.fill(0);
        frame
    }

    /// Sends everything queued. Frames the kernel has no room for are retried a few times
    /// and then dropped and counted; nothing stays queued after a flush.
    pub(super) fn flush(&mut self, fd: RawFd, c: &mut Counters, name: &str) {
        let mut done = 0;
        let mut retries = 0;
        while done < self.lens.len() {
            c.tx_syscalls += 1;
            let (buf, lens) = (&mut self.buf[done * self.slot..], &self.lens[done..]);
            match self.msgs.send(fd, buf, self.slot, lens) {
                Ok(n) if n > 0 => {
                    c.tx_frames += n as u64;
                    c.tx_bytes += lens[..n].iter().sum::<usize>() as u64;
                    done += n;
                }
                Ok(_) => retries += 1,
                Err(e) if crate::txerr::is_transient(&e) => {
                    c.tx_retries += 1;
                    retries += 1;
                }
                Err(e) => {
                    // The first frame is bad (or the link is gone): drop it, keep the rest.
                    c.tx_dropped += 1;
                    c.warn(name, "sendmmsg", &e);
                    done += 1;
                    continue;
                }
            }
            if retries > FLUSH_RETRIES {
                let lost = self.lens.len() - done;
                c.tx_dropped += lost as u64;
                log::debug!("afpacket {name}: dropped {lost} frames, the kernel had no room");
                break;
            }
        }
        self.lens.clear();
    }
}
