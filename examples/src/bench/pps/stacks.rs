//! ustack's side of the UDP rows: one or more stacks over AF_PACKET on ustack's veth end,
//! each on its own thread with its own socket (one `PACKET_FANOUT_HASH` group when there are
//! several), all with the same MAC and IP, sharing nothing. Each runs a UDP echo server or a
//! receive-only counter on [`UDP_PORT`](super::UDP_PORT).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use ustack::runtime::{self, PollMode};
use ustack::smoltcp::time::Duration as SDuration;
use ustack::smoltcp::wire::{EthernetAddress, IpEndpoint};
use ustack::{Error, Stack, UdpOptions};
use ustack_drivers::{AfPacket, AfPacketStats};

use crate::bench::net::UserVeth;
use crate::bench::{pin, user_config};

use super::{StackSetup, UDP_PORT};

/// Datagrams each stack's socket queues in either direction.
const QUEUE: usize = 1024;

/// What one stack did over a whole row (warm-up included).
#[derive(Debug, Clone, Copy)]
pub struct StackReport {
    /// The device's counters.
    pub dev: AfPacketStats,
    /// Frames ustack's ingress dropped (bad checksum, malformed, ...).
    pub ingress_drops: u64,
}

/// Running stack threads; dropping it stops and joins them.
pub struct Stacks {
    threads: Vec<JoinHandle<io::Result<StackReport>>>,
    stop: Arc<AtomicBool>,
    /// Datagrams each stack took so far.
    pub received: Vec<Arc<AtomicU64>>,
    /// Each stack thread's id (0 until it started), for CPU accounting.
    pub tids: Vec<Arc<AtomicI32>>,
}

impl Stacks {
    /// Opens `setup.stacks` AF_PACKET sockets on ustack's end of `link` (fanout group
    /// `group` when more than one) and starts a stack thread on each, echoing when `echo`.
    /// Stack `i` is pinned (with `--pin`) to CPU `i` modulo 2.
    pub fn start(
        link: &UserVeth,
        setup: &StackSetup,
        echo: bool,
        poll: PollMode,
        group: u16,
    ) -> io::Result<Stacks> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = Stacks {
            threads: Vec::new(),
            stop: stop.clone(),
            received: Vec::new(),
            tids: Vec::new(),
        };
        for i in 0..setup.stacks {
            let dev = link.open(setup.mode, (setup.stacks > 1).then_some(group))?;
            let count = Arc::new(AtomicU64::new(0));
            s.received.push(count.clone());
            let tid = Arc::new(AtomicI32::new(0));
            s.tids.push(tid.clone());
            let stop = stop.clone();
            s.threads.push(
                thread::Builder::new()
                    .name(format!("ustack-{i}"))
                    .spawn(move || {
                        pin(i % 2);
                        tid.store(super::gettid(), Ordering::Relaxed);
                        serve(dev, echo, poll, &stop, &count)
                    })
                    .expect("cannot spawn a stack thread"),
            );
        }
        Ok(s)
    }

    /// Stops the stacks and returns their reports, or the first error one of them hit.
    pub fn finish(mut self) -> io::Result<Vec<StackReport>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .drain(..)
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("stack thread panicked")))
            })
            .collect()
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn io_err(what: &str, e: Error) -> io::Error {
    io::Error::other(format!("ustack: {what}: {e}"))
}

/// One stack's loop: poll, take every queued datagram (echoing it), wait.
fn serve(
    dev: AfPacket,
    echo: bool,
    mode: PollMode,
    stop: &AtomicBool,
    count: &AtomicU64,
) -> io::Result<StackReport> {
    let mut config = user_config();
    config.mac = EthernetAddress(dev.mac());
    config.udp = UdpOptions {
        rx_packets: QUEUE,
        rx_bytes: QUEUE * 256,
        tx_packets: QUEUE,
        tx_bytes: QUEUE * 256,
    };
    let mut stack = Stack::new(config, dev, runtime::now()).map_err(|e| io_err("new stack", e))?;
    stack.set_flush(AfPacket::flush);
    let h = stack
        .udp_bind(UDP_PORT)
        .map_err(|e| io_err("udp_bind", e))?;
    let mut buf = [0u8; 2048];
    // A datagram taken but not yet echoed because the transmit queue was full.
    let mut pending: Option<(usize, IpEndpoint)> = None;
    let mut received = 0u64;
    while !stop.load(Ordering::Relaxed) {
        stack.poll(runtime::now());
        while stack.next_event().is_some() {}
        let mut moved = false;
        loop {
            if let Some((n, to)) = pending {
                match stack.udp_send_to(h, &buf[..n], to) {
                    Ok(()) => pending = None,
                    Err(Error::WouldBlock) => break,
                    Err(e) => return Err(io_err("udp_send_to", e)),
                }
            }
            match stack.udp_recv_from(h, &mut buf) {
                Ok((n, meta)) => {
                    received += 1;
                    moved = true;
                    if echo {
                        pending = Some((n, meta.remote));
                    }
                }
                Err(Error::WouldBlock) => break,
                // Oversized (not sent by the generator): dropped by the stack, keep going.
                Err(Error::InvalidInput(_)) => {}
                Err(e) => return Err(io_err("udp_recv_from", e)),
            }
        }
        count.store(received, Ordering::Relaxed);
        let delay = if moved || pending.is_some() {
            Some(SDuration::ZERO)
        } else {
            stack.poll_delay(runtime::now())
        };
        runtime::wait(stack.device().as_raw_fd(), None, delay, mode)?;
    }
    Ok(StackReport {
        dev: stack.device().stats(),
        ingress_drops: stack.stats().rx_dropped(),
    })
}
