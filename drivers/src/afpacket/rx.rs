//! The receive side of each mode: where the next frame for the stack comes from.

use std::os::fd::RawFd;

use super::ring::{self, Cursor, Ring, TP_STATUS_CSUM_NOT_READY};
use super::stats::Counters;
use super::sys::{self, MsgVec, PACKET_OUTGOING};

pub(super) enum RxPath {
    PerFrame {
        buf: Vec<u8>,
        /// Frames given since the poll began, and how many one poll may take.
        served: usize,
        budget: usize,
    },
    Batched {
        buf: Vec<u8>,
        msgs: MsgVec,
        count: usize,
        pos: usize,
        /// The poll already got `None` for this batch; the next receive starts a new one.
        drained: bool,
    },
    Ring {
        ring: Ring,
        block: usize,
        cur: Option<Cursor>,
        /// Frames given since the poll began, and how many one poll may take.
        served: usize,
        budget: usize,
    },
}

/// Ends a poll once it took `budget` frames: the stack's sockets (64 datagrams of UDP
/// buffer by default) and its transmit queue drain before more come in, so a flood cannot
/// keep one poll reading while the application's queues overflow (receive livelock).
fn over_budget(served: &mut usize, budget: usize) -> bool {
    if *served >= budget {
        *served = 0;
        return true;
    }
    false
}

/// The next frame for the stack, if any; `None` also ends one poll's batch.
pub(super) fn next_frame<'b>(
    rx: &'b mut RxPath,
    fd: RawFd,
    c: &mut Counters,
    name: &str,
) -> Option<&'b [u8]> {
    match rx {
        RxPath::PerFrame {
            buf,
            served,
            budget,
        } => loop {
            if over_budget(served, *budget) {
                return None;
            }
            c.rx_syscalls += 1;
            match sys::recv_one(fd, buf) {
                Ok(Some((_, PACKET_OUTGOING))) => c.rx_outgoing += 1,
                Ok(Some((len, _))) if len > buf.len() => c.rx_truncated += 1,
                Ok(Some((len, _))) => {
                    *served += 1;
                    return Some(&buf[..len]);
                }
                Ok(None) => {
                    *served = 0;
                    return None;
                }
                Err(e) => {
                    c.rx_errors += 1;
                    c.warn(name, "recvfrom", &e);
                    return None;
                }
            }
        },
        RxPath::Batched {
            buf,
            msgs,
            count,
            pos,
            drained,
        } => {
            let slot = buf.len() / msgs.capacity();
            loop {
                if *pos < *count {
                    let i = *pos;
                    *pos += 1;
                    match msgs.info(i) {
                        (_, PACKET_OUTGOING, _) => c.rx_outgoing += 1,
                        (_, _, true) => c.rx_truncated += 1,
                        (len, _, false) => return Some(&buf[i * slot..][..len]),
                    }
                    continue;
                }
                // One recvmmsg per poll: the poll ends (and flushes) before the next batch.
                if !std::mem::replace(drained, true) {
                    return None;
                }
                c.rx_syscalls += 1;
                *pos = 0;
                *count = match msgs.recv(fd, buf, slot) {
                    Ok(n) => n,
                    Err(e) => {
                        c.rx_errors += 1;
                        c.warn(name, "recvmmsg", &e);
                        0
                    }
                };
                if *count == 0 {
                    return None;
                }
                *drained = false;
            }
        }
        RxPath::Ring {
            ring,
            block,
            cur,
            served,
            budget,
        } => {
            // Positions first, the borrow of the block last: the loop cannot hold it.
            let (start, len) = loop {
                if over_budget(served, *budget) {
                    return None;
                }
                let Some(at) = cur.as_mut() else {
                    let Some(b) = ring.owned(*block) else {
                        *served = 0;
                        return None;
                    };
                    let first = ring::first(b);
                    c.rx_syscalls += 1;
                    match first {
                        Some(first) => *cur = Some(first),
                        None => {
                            ring.release(*block);
                            *block = (*block + 1) % ring.blocks();
                        }
                    }
                    continue;
                };
                match ring.owned(*block).and_then(|b| ring::next(b, at)) {
                    Some(f) if f.pkttype == PACKET_OUTGOING => c.rx_outgoing += 1,
                    Some(f) if f.snaplen < f.len => c.rx_truncated += 1,
                    Some(f) => {
                        if f.status & TP_STATUS_CSUM_NOT_READY != 0 {
                            let b = ring.owned(*block)?;
                            if crate::csum::fill_l4_checksum(&mut b[f.start..][..f.snaplen]) {
                                c.rx_csum_filled += 1;
                            }
                        }
                        *served += 1;
                        break (f.start, f.snaplen);
                    }
                    None => {
                        ring.release(*block);
                        *block = (*block + 1) % ring.blocks();
                        *cur = None;
                    }
                }
            };
            Some(&ring.owned(*block)?[start..][..len])
        }
    }
}
