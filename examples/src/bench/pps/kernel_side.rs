//! The kernel's own UDP echo server and receive-only counter, the anchors of the UDP rows:
//! `std::net::UdpSocket`s on ustack's veth end (which has the address for these rows), one
//! datagram per `recv_from` / `send_to`, as a plain kernel application does it. With more
//! than one thread, each has its own socket on the same port (`SO_REUSEPORT`), so the kernel
//! spreads flows over them by hash, as fanout does for ustack's stacks.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::bench::net::enter;
use crate::bench::{pin, USER_IP};

use super::UDP_PORT;

/// How long a blocked `recv_from` waits before the server checks its stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Running kernel UDP server threads; dropping it stops and joins them.
pub struct KernelUdp {
    threads: Vec<JoinHandle<io::Result<u64>>>,
    stop: Arc<AtomicBool>,
    /// Datagrams each thread received so far.
    pub received: Vec<Arc<AtomicU64>>,
    /// The server threads' ids, for CPU accounting.
    pub tids: Vec<i32>,
}

impl KernelUdp {
    /// Starts `threads` server threads in namespace `ns` on [`USER_IP`]:[`UDP_PORT`],
    /// echoing when `echo`, and returns once all are bound. Thread `i` is pinned (with
    /// `--pin`) to CPU `i` modulo 2.
    pub fn start(ns: &str, echo: bool, threads: usize) -> io::Result<KernelUdp> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut k = KernelUdp {
            threads: Vec::new(),
            stop: stop.clone(),
            received: Vec::new(),
            tids: Vec::new(),
        };
        let (ready_tx, ready) = mpsc::channel();
        for i in 0..threads {
            let count = Arc::new(AtomicU64::new(0));
            k.received.push(count.clone());
            let (ns, st, ready_tx) = (ns.to_owned(), stop.clone(), ready_tx.clone());
            let reuse = threads > 1;
            let t = thread::Builder::new()
                .name(format!("kernel-udp-{i}"))
                .spawn(move || {
                    pin(i % 2);
                    enter(&ns)?;
                    let s = bind(SocketAddrV4::new(USER_IP.into(), UDP_PORT), reuse)?;
                    s.set_read_timeout(Some(TICK))?;
                    let _ = ready_tx.send(super::gettid());
                    serve(&s, echo, &st, &count)
                })
                .expect("cannot spawn a kernel server thread");
            k.threads.push(t);
        }
        drop(ready_tx);
        for _ in 0..threads {
            match ready.recv_timeout(Duration::from_secs(5)) {
                Ok(tid) => k.tids.push(tid),
                Err(_) => {
                    k.stop.store(true, Ordering::SeqCst);
                    for t in k.threads.drain(..) {
                        if let Ok(Err(e)) = t.join() {
                            return Err(e);
                        }
                    }
                    return Err(io::Error::other(
                        "kernel UDP server did not start within 5 s",
                    ));
                }
            }
        }
        Ok(k)
    }

    /// Stops the servers; returns the datagrams they received, or the first error.
    pub fn finish(mut self) -> io::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = 0;
        for t in self.threads.drain(..) {
            total += t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("kernel server thread panicked")))?;
        }
        Ok(total)
    }
}

impl Drop for KernelUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(s: &UdpSocket, echo: bool, stop: &AtomicBool, count: &AtomicU64) -> io::Result<u64> {
    let mut buf = [0u8; 2048];
    let mut n_rx = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                n_rx += 1;
                count.store(n_rx, Ordering::Relaxed);
                if echo {
                    // A full send buffer drops the echo, as it would any reply.
                    let _ = s.send_to(&buf[..n], from);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n_rx)
}

/// A UDP socket bound to `addr`; with `reuse`, `SO_REUSEPORT` is set first (std cannot set
/// it before binding), so several threads can each bind one.
fn bind(addr: SocketAddrV4, reuse: bool) -> io::Result<UdpSocket> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("kernel server: bind {addr}: {e}"));
    if !reuse {
        return UdpSocket::bind(addr).map_err(named);
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(named(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: `one` lives for the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(named(io::Error::last_os_error()));
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in for the duration of the call.
    let r = unsafe {
        libc::bind(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(named(io::Error::last_os_error()));
    }
    Ok(UdpSocket::from(owned))
}
