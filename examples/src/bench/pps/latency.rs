//! Round-trip latency of a 64-byte TCP echo: a kernel client in the peer namespace sends 64
//! bytes, waits for them to come back, and times every round trip on one connection. The
//! server is ustack (over AF_PACKET or TAP, blocking or busy polling) or, as the reference,
//! the kernel's own TCP on the same kind of veth link.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ustack::runtime::{self, PollMode};
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::time::Duration as SDuration;
use ustack::smoltcp::wire::EthernetAddress;
use ustack::{Error, Stack, TcpHandle, Token};

use crate::bench::net::enter;
use crate::bench::{pin, user_config, Deadline, USER_IP};

use super::TCP_PORT;

/// Bytes per message.
pub const MSG: usize = 64;

/// Round-trip times of one row, sorted, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Rtts(pub Vec<u64>);

impl Rtts {
    /// The `q`-quantile (0.5 = median), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let v = &self.0;
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1e3
    }

    /// Mean in microseconds.
    pub fn mean_us(&self) -> f64 {
        self.0.iter().sum::<u64>() as f64 / self.0.len().max(1) as f64 / 1e3
    }
}

/// The kernel client: connects to ustack's address from namespace `ns`, does `warmup`
/// untimed and `count` timed round trips, and returns the sorted times.
pub fn client(ns: &str, warmup: usize, count: usize, deadline: Deadline) -> io::Result<Rtts> {
    ustack_drivers::iproute::in_netns(ns, || {
        pin(1);
        let to = SocketAddrV4::new(USER_IP.into(), TCP_PORT);
        let mut s = loop {
            deadline.check()?;
            match TcpStream::connect_timeout(&to.into(), Duration::from_secs(1)) {
                Ok(s) => break s,
                // The server thread may still be starting.
                Err(e) => {
                    log::debug!("connect {to}: {e}; retrying");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        };
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let msg = [0x33u8; MSG];
        let mut back = [0u8; MSG];
        let mut v = Vec::with_capacity(count);
        for i in 0..warmup + count {
            if i % 1024 == 0 {
                deadline.check()?;
            }
            let t = Instant::now();
            s.write_all(&msg)?;
            s.read_exact(&mut back).map_err(|e| {
                io::Error::new(e.kind(), format!("echo {i}: {e} (server gone or too slow)"))
            })?;
            if i >= warmup {
                v.push(t.elapsed().as_nanos() as u64);
            }
            if back != msg {
                return Err(io::Error::other(format!("echo {i} came back changed")));
            }
        }
        v.sort_unstable();
        Ok(Rtts(v))
    })?
}

/// A server thread; dropping it stops and joins it.
pub struct Server {
    thread: Option<JoinHandle<io::Result<()>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Stops the server and returns its error, if it had one.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("echo server thread panicked")),
        }
    }

    fn spawn(f: impl FnOnce(&AtomicBool) -> io::Result<()> + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || {
                pin(0);
                f(&st)
            })
            .expect("cannot spawn the echo server thread");
        Server {
            thread: Some(thread),
            stop,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// ustack's TCP echo server over `dev` (with `mac`, and `flush` after every poll when the
/// device batches its writes), waiting in `mode`.
pub fn ustack_server<D>(dev: D, mac: [u8; 6], flush: Option<fn(&mut D)>, mode: PollMode) -> Server
where
    D: Device + AsRawFd + Send + 'static,
{
    Server::spawn(move |stop| {
        let err = |what: &str, e: Error| io::Error::other(format!("ustack: {what}: {e}"));
        let mut config = user_config();
        config.mac = EthernetAddress(mac);
        let mut stack = Stack::new(config, dev, runtime::now()).map_err(|e| err("new stack", e))?;
        if let Some(f) = flush {
            stack.set_flush(f);
        }
        let listener = stack.listen(TCP_PORT, 4).map_err(|e| err("listen", e))?;
        let mut conn: Option<TcpHandle> = None;
        let mut buf = [0u8; 4096];
        let mut out: Vec<u8> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            stack.poll(runtime::now());
            while let Some(ev) = stack.next_event() {
                if ev.token == Token::Listener(listener) && conn.is_none() {
                    match stack.accept(listener) {
                        Ok(h) => {
                            stack
                                .tcp_set_nodelay(h, true)
                                .map_err(|e| err("nodelay", e))?;
                            conn = Some(h);
                        }
                        Err(Error::WouldBlock) => {}
                        Err(e) => return Err(err("accept", e)),
                    }
                }
            }
            let mut wrote = false;
            if let Some(h) = conn {
                loop {
                    if !out.is_empty() {
                        match stack.tcp_write(h, &out) {
                            Ok(n) => {
                                out.drain(..n);
                                wrote |= n > 0;
                            }
                            Err(Error::WouldBlock) => {}
                            Err(e) => return Err(err("write", e)),
                        }
                        if !out.is_empty() {
                            break;
                        }
                    }
                    match stack.tcp_read(h, &mut buf) {
                        Ok(0) => {
                            let _ = stack.tcp_close(h);
                            conn = None;
                            break;
                        }
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(Error::WouldBlock) => break,
                        Err(e) => return Err(err("read", e)),
                    }
                }
            }
            let delay = if wrote {
                Some(SDuration::ZERO)
            } else {
                stack.poll_delay(runtime::now())
            };
            runtime::wait(stack.device().as_raw_fd(), None, delay, mode)?;
        }
        Ok(())
    })
}

/// The reference: the kernel's TCP echo server in namespace `ns` (ustack's end, given
/// ustack's address), one `read` and one `write_all` per message.
pub fn kernel_server(ns: &str) -> Server {
    let ns = ns.to_owned();
    Server::spawn(move |stop| {
        enter(&ns)?;
        let bind = SocketAddrV4::new(USER_IP.into(), TCP_PORT);
        let l = TcpListener::bind(bind)
            .map_err(|e| io::Error::new(e.kind(), format!("kernel echo: bind {bind}: {e}")))?;
        l.set_nonblocking(true)?;
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        };
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => s.write_all(&buf[..n])?,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}
