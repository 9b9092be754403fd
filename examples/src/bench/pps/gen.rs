//! The kernel load generator: threads in the peer namespace with connected UDP sockets
//! that send and receive in batches (`sendmmsg`/`recvmmsg`), so one syscall moves many
//! datagrams and the generator is not what limits a row.
//!
//! - **echo**: each socket keeps `window` datagrams in flight and sends one more for every
//!   echo it gets back. A socket that hears nothing back for [`STALL`] lost what it had
//!   in flight: its window starts over, and the refill is counted.
//! - **blast** (receive-only rows): each socket sends batch after batch, as fast as the
//!   kernel takes them.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bench::net::enter;
use crate::bench::pin;

use super::Load;

/// Echo rows: silence after which a socket's window starts over.
pub const STALL: Duration = Duration::from_millis(20);
/// Receive buffer per datagram (echoes are small; longer ones are truncated and still count).
const SLOT: usize = 2048;

/// Counters the generator threads add to while they run.
#[derive(Debug, Default)]
pub struct GenCounts {
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Echoes received.
    pub received: AtomicU64,
    /// Times a socket's window started over after a stall.
    pub refills: AtomicU64,
}

/// Running generator threads; dropping it stops and joins them.
pub struct Generator {
    threads: Vec<JoinHandle<io::Result<()>>>,
    stop: Arc<AtomicBool>,
    /// Shared counters.
    pub counts: Arc<GenCounts>,
}

impl Generator {
    /// Starts `load.threads` threads in namespace `ns`, each with `load.sockets` sockets
    /// connected to `to`; `echo` picks echo or blast mode. Thread `i` is pinned (with
    /// `--pin`) to CPU `first_cpu + i` modulo 2.
    pub fn start(
        ns: &str,
        to: SocketAddrV4,
        load: Load,
        echo: bool,
        first_cpu: usize,
    ) -> Generator {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(GenCounts::default());
        let threads = (0..load.threads)
            .map(|i| {
                let (ns, stop, counts) = (ns.to_owned(), stop.clone(), counts.clone());
                thread::Builder::new()
                    .name(format!("udp-gen-{i}"))
                    .spawn(move || {
                        pin((first_cpu + i) % 2);
                        enter(&ns)?;
                        let socks = (0..load.sockets)
                            .map(|_| connected(to))
                            .collect::<io::Result<Vec<_>>>()?;
                        let mut mm = Mmsg::new(load.batch, load.size);
                        if echo {
                            echo_loop(&socks, &mut mm, load, &stop, &counts)
                        } else {
                            blast_loop(&socks, &mut mm, &stop, &counts)
                        }
                    })
                    .expect("cannot spawn a generator thread")
            })
            .collect();
        Generator {
            threads,
            stop,
            counts,
        }
    }

    /// (sent, received) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.received.load(Ordering::Relaxed),
        )
    }

    /// Stops the threads and returns the first error any of them hit.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("generator thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn connected(to: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(to)
        .map_err(|e| io::Error::new(e.kind(), format!("generator: connect {to}: {e}")))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn echo_loop(
    socks: &[UdpSocket],
    mm: &mut Mmsg,
    load: Load,
    stop: &AtomicBool,
    counts: &GenCounts,
) -> io::Result<()> {
    let mut inflight = vec![0usize; socks.len()];
    // When each socket last got an echo back (or was refilled).
    let mut heard = vec![Instant::now(); socks.len()];
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut sent = 0;
        for i in 0..socks.len() {
            // A socket silent for STALL lost what it had in flight: start its window over,
            // so one stalled flow cannot hold the others' pace down or up.
            if inflight[i] > 0 && now - heard[i] >= STALL {
                inflight[i] = 0;
                heard[i] = now;
                counts.refills.fetch_add(1, Ordering::Relaxed);
            }
            let want = (load.window - inflight[i]).min(mm.batch);
            if want > 0 {
                let k = mm.send(socks[i].as_raw_fd(), want)?;
                inflight[i] += k;
                sent += k;
            }
        }
        let mut got = 0;
        for i in 0..socks.len() {
            loop {
                let k = mm.recv(socks[i].as_raw_fd())?;
                if k > 0 {
                    inflight[i] = inflight[i].saturating_sub(k);
                    heard[i] = now;
                    got += k;
                }
                if k < mm.batch {
                    break;
                }
            }
        }
        counts.sent.fetch_add(sent as u64, Ordering::Relaxed);
        if got > 0 {
            counts.received.fetch_add(got as u64, Ordering::Relaxed);
            continue;
        }
        // Nothing came back: sleep until something does (or a stall is due).
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                STALL.as_millis() as i32,
            )
        };
    }
    Ok(())
}

fn blast_loop(
    socks: &[UdpSocket],
    mm: &mut Mmsg,
    stop: &AtomicBool,
    counts: &GenCounts,
) -> io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let mut sent = 0;
        for s in socks {
            sent += mm.send(s.as_raw_fd(), mm.batch)?;
        }
        counts.sent.fetch_add(sent as u64, Ordering::Relaxed);
        if sent == 0 {
            // Every send buffer is full: let the receiver catch up.
            thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(())
}

/// The arrays one `sendmmsg` / `recvmmsg` call needs. Every datagram sent carries the same
/// payload (the sockets are connected, so no addresses).
struct Mmsg {
    batch: usize,
    out: Vec<u8>,
    inbox: Vec<u8>,
    iov_out: Vec<libc::iovec>,
    iov_in: Vec<libc::iovec>,
    hdr_out: Vec<libc::mmsghdr>,
    hdr_in: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new(batch: usize, size: usize) -> Mmsg {
        let mut m = Mmsg {
            batch,
            out: vec![0x42; size],
            inbox: vec![0; batch * SLOT],
            iov_out: Vec::with_capacity(batch),
            iov_in: Vec::with_capacity(batch),
            // SAFETY: mmsghdr is plain data; all-zero is a valid (empty) value.
            hdr_out: vec![unsafe { std::mem::zeroed() }; batch],
            // SAFETY: as above.
            hdr_in: vec![unsafe { std::mem::zeroed() }; batch],
        };
        for i in 0..batch {
            m.iov_out.push(libc::iovec {
                iov_base: m.out.as_mut_ptr().cast(),
                iov_len: size,
            });
            m.iov_in.push(libc::iovec {
                // SAFETY: i * SLOT < batch * SLOT, inside `inbox`.
                iov_base: unsafe { m.inbox.as_mut_ptr().add(i * SLOT) }.cast(),
                iov_len: SLOT,
            });
        }
        for i in 0..batch {
            m.hdr_out[i].msg_hdr.msg_iov = &mut m.iov_out[i];
            m.hdr_out[i].msg_hdr.msg_iovlen = 1;
            m.hdr_in[i].msg_hdr.msg_iov = &mut m.iov_in[i];
            m.hdr_in[i].msg_hdr.msg_iovlen = 1;
        }
        m
    }

    /// Sends up to `n` datagrams; 0 when the socket's buffer is full.
    fn send(&mut self, fd: i32, n: usize) -> io::Result<usize> {
        let n = n.min(self.batch);
        // SAFETY: `hdr_out[..n]` point at iovecs and a payload owned by `self`, which
        // outlive the call; the socket is non-blocking.
        let r = unsafe { libc::sendmmsg(fd, self.hdr_out.as_mut_ptr(), n as u32, 0) };
        finish(r, "sendmmsg")
    }

    /// Receives up to `batch` datagrams without blocking; 0 when none is queued.
    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        for h in &mut self.hdr_in {
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: `hdr_in` points at iovecs into `inbox`, owned by `self`; MSG_DONTWAIT
        // and a null timeout make the call return at once.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr_in.as_mut_ptr(),
                self.batch as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        finish(r, "recvmmsg")
    }
}

fn finish(r: libc::c_int, what: &str) -> io::Result<usize> {
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        // An ICMP error from an earlier datagram (the server was not up yet): keep going.
        io::ErrorKind::ConnectionRefused => Ok(0),
        _ => Err(io::Error::new(e.kind(), format!("generator: {what}: {e}"))),
    }
}
