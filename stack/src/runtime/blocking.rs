//! Blocking `std::io` adapters over a stack polled by its own thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use smoltcp::phy::Device;
use smoltcp::wire::IpEndpoint;

use super::{now, wait, PollMode};
use crate::{DialOptions, DialStatus, Error, Stack, TcpHandle, UdpHandle, UdpMeta};

struct Inner<D: Device> {
    stack: Mutex<Stack<'static, D>>,
    cond: Condvar,
    wake: Arc<OwnedFd>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<D: Device> Inner<D> {
    fn lock(&self) -> MutexGuard<'_, Stack<'static, D>> {
        // A panic elsewhere must not take every socket down with it.
        self.stack.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the poll thread that sockets have work (data written, window opened).
    fn kick(&self) {
        kick(&self.wake);
    }

    /// Waits for the poll thread to report progress, or until `deadline`.
    fn wait<'g>(
        &self,
        guard: MutexGuard<'g, Stack<'static, D>>,
        deadline: Option<StdInstant>,
    ) -> io::Result<MutexGuard<'g, Stack<'static, D>>> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the ustack poll thread has stopped",
            ));
        }
        let slice = StdDuration::from_millis(50);
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(StdInstant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "ustack socket operation timed out",
                    ));
                }
                left.min(slice)
            }
            None => slice,
        };
        let (g, _) = self
            .cond
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|e| e.into_inner());
        Ok(g)
    }

    /// Runs `op` until it stops returning `WouldBlock`.
    fn blocking<T>(
        &self,
        deadline: Option<StdInstant>,
        mut op: impl FnMut(&mut Stack<'static, D>) -> crate::Result<T>,
    ) -> io::Result<T> {
        let mut g = self.lock();
        loop {
            match op(&mut g) {
                Err(Error::WouldBlock) => g = self.wait(g, deadline)?,
                r => {
                    drop(g);
                    self.kick();
                    return r.map_err(io::Error::from);
                }
            }
        }
    }
}

fn kick(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a valid u64 to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

fn drain(fd: &OwnedFd) {
    let mut v: u64 = 0;
    // SAFETY: reading 8 bytes into a valid u64 from a non-blocking eventfd.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// A stack driven by its own poll thread, shared by blocking sockets.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use ustack::runtime::{PollMode, SharedStack};
/// # fn demo<D: ustack::smoltcp::phy::Device + std::os::fd::AsRawFd + Send + 'static>(stack: ustack::Stack<'static, D>) -> std::io::Result<()> {
/// let shared = SharedStack::spawn(stack, PollMode::Block)?;
/// let mut conn = shared.connect("10.7.0.1:7".parse().unwrap())?;
/// conn.write_all(b"hello")?;
/// let mut buf = [0; 5];
/// conn.read_exact(&mut buf)?;
/// # Ok(()) }
/// ```
pub struct SharedStack<D: Device> {
    inner: Arc<Inner<D>>,
}

impl<D: Device> Clone for SharedStack<D> {
    fn clone(&self) -> Self {
        SharedStack {
            inner: self.inner.clone(),
        }
    }
}

impl<D> SharedStack<D>
where
    D: Device + AsRawFd + Send + 'static,
{
    /// Moves `stack` onto a new poll thread.
    pub fn spawn(stack: Stack<'static, D>, mode: PollMode) -> io::Result<Self> {
        let fd = stack.device().as_raw_fd();
        // SAFETY: eventfd returns a new descriptor that we own, or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let inner = Arc::new(Inner {
            stack: Mutex::new(stack),
            cond: Condvar::new(),
            wake: wake.clone(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("ustack-poll".into())
            .spawn(move || poll_thread(weak, fd, wake, mode))?;
        *inner.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(SharedStack { inner })
    }
}

impl<D: Device> SharedStack<D> {
    /// Runs `f` with the stack locked (for counters, options, or the non-blocking API).
    pub fn with<R>(&self, f: impl FnOnce(&mut Stack<'static, D>) -> R) -> R {
        let r = f(&mut self.inner.lock());
        self.inner.kick();
        r
    }

    /// Connects, blocking until the handshake completes or fails.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream<D>> {
        let ep = IpEndpoint::from(addr);
        let h = self.with(|s| s.connect(ep))?;
        let stream = TcpStream::new(self.inner.clone(), h);
        self.inner.blocking(None, |s| match s.tcp_connected(h) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::WouldBlock),
            Err(e) => Err(e),
        })?;
        Ok(stream)
    }

    /// Listens on `port` with `backlog`.
    pub fn listen(&self, port: u16, backlog: usize) -> io::Result<TcpListener<D>> {
        let l = self.with(|s| s.listen(port, backlog))?;
        Ok(TcpListener {
            inner: self.inner.clone(),
            listener: l,
        })
    }

    /// Binds a UDP socket.
    pub fn udp_bind(&self, port: u16) -> io::Result<UdpSocket<D>> {
        let h = self.with(|s| s.udp_bind(port))?;
        Ok(UdpSocket {
            inner: self.inner.clone(),
            h,
            timeout: None,
        })
    }

    /// Binds an ephemeral UDP port, connects it to `remote`, and runs the dial check (see
    /// [`Stack::udp_dial`]): fails with `ConnectionRefused` when the peer answers the probe
    /// with ICMP port unreachable, and passes on a reply or on silence (unless
    /// `opts.strict`).
    pub fn udp_dial(&self, remote: SocketAddr, opts: DialOptions) -> io::Result<UdpSocket<D>> {
        let dial = self.with(|s| s.udp_dial(IpEndpoint::from(remote), opts, now()))?;
        let h = self
            .inner
            .blocking(None, |s| match s.udp_dial_check(&dial, now())? {
                DialStatus::Pending { .. } => Err(Error::WouldBlock),
                DialStatus::Reachable(h) => Ok(h),
            })?;
        Ok(UdpSocket {
            inner: self.inner.clone(),
            h,
            timeout: None,
        })
    }

    /// Stops the poll thread and waits for it. Sockets fail with `BrokenPipe` afterwards.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.kick();
        let t = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = t {
            let _ = t.join();
        }
        self.inner.cond.notify_all();
    }
}

fn poll_thread<D: Device>(weak: Weak<Inner<D>>, fd: i32, wake: Arc<OwnedFd>, mode: PollMode) {
    loop {
        let delay = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.stop.load(Ordering::Relaxed) {
                return;
            }
            let mut s = inner.lock();
            let changed = s.poll(now());
            let mut events = false;
            while s.next_event().is_some() {
                events = true;
            }
            let delay = s.poll_delay(now());
            drop(s);
            if changed || events {
                inner.cond.notify_all();
            }
            delay
        };
        if let Err(e) = wait(fd, Some(wake.as_raw_fd()), delay, mode) {
            #[cfg(feature = "log")]
            log::error!("ustack poll thread: waiting on the device failed: {e}");
            let _ = e;
            return;
        }
        drain(&wake);
    }
}

/// A blocking TCP connection, like `std::net::TcpStream`. Dropping it closes gracefully.
pub struct TcpStream<D: Device> {
    inner: Arc<Inner<D>>,
    h: TcpHandle,
    read_timeout: Option<StdDuration>,
    write_timeout: Option<StdDuration>,
}

impl<D: Device> TcpStream<D> {
    fn new(inner: Arc<Inner<D>>, h: TcpHandle) -> Self {
        TcpStream {
            inner,
            h,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// The handle inside the stack.
    pub fn handle(&self) -> TcpHandle {
        self.h
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<IpEndpoint> {
        Ok(self.inner.lock().tcp_peer_addr(self.h)?)
    }

    /// Limits how long `read` blocks.
    pub fn set_read_timeout(&mut self, t: Option<StdDuration>) {
        self.read_timeout = t;
    }

    /// Limits how long `write` blocks.
    pub fn set_write_timeout(&mut self, t: Option<StdDuration>) {
        self.write_timeout = t;
    }

    /// Disables (`true`) or enables Nagle's algorithm.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        Ok(self.inner.lock().tcp_set_nodelay(self.h, nodelay)?)
    }

    /// Shuts down the write half (FIN). `Read` and `Both` also close writing; ustack cannot
    /// refuse incoming data without resetting.
    pub fn shutdown(&self, _how: Shutdown) -> io::Result<()> {
        let r = self.inner.lock().tcp_shutdown_write(self.h);
        self.inner.kick();
        Ok(r?)
    }

    /// Waits until everything written was acknowledged by the peer.
    pub fn flush_acked(&self) -> io::Result<()> {
        let h = self.h;
        self.inner.blocking(None, |s| match s.tcp_send_queue(h)? {
            0 => Ok(()),
            _ => Err(Error::WouldBlock),
        })
    }

    /// Resets the connection (RST) instead of closing gracefully.
    pub fn abort(self) -> io::Result<()> {
        let r = self.inner.lock().tcp_abort(self.h);
        self.inner.kick();
        std::mem::forget(self);
        Ok(r?)
    }
}

fn deadline(t: Option<StdDuration>) -> Option<StdInstant> {
    t.map(|t| StdInstant::now() + t)
}

impl<D: Device> Read for TcpStream<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let h = self.h;
        self.inner
            .blocking(deadline(self.read_timeout), |s| s.tcp_read(h, buf))
    }
}

impl<D: Device> Write for TcpStream<D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let h = self.h;
        self.inner
            .blocking(deadline(self.write_timeout), |s| s.tcp_write(h, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.kick();
        Ok(())
    }
}

impl<D: Device> Drop for TcpStream<D> {
    fn drop(&mut self) {
        let _ = self.inner.lock().tcp_close(self.h);
        self.inner.kick();
    }
}

/// A blocking TCP listener, like `std::net::TcpListener`.
pub struct TcpListener<D: Device> {
    inner: Arc<Inner<D>>,
    listener: crate::TcpListener,
}

impl<D: Device> TcpListener<D> {
    /// Blocks until a connection is established, and returns it.
    pub fn accept(&self) -> io::Result<TcpStream<D>> {
        let l = self.listener;
        let h = self.inner.blocking(None, |s| s.accept(l))?;
        Ok(TcpStream::new(self.inner.clone(), h))
    }

    /// Like [`accept`](Self::accept), giving up after `timeout`.
    pub fn accept_timeout(&self, timeout: StdDuration) -> io::Result<TcpStream<D>> {
        let l = self.listener;
        let h = self
            .inner
            .blocking(deadline(Some(timeout)), |s| s.accept(l))?;
        Ok(TcpStream::new(self.inner.clone(), h))
    }
}

impl<D: Device> Drop for TcpListener<D> {
    fn drop(&mut self) {
        let _ = self.inner.lock().close_listener(self.listener);
        self.inner.kick();
    }
}

/// A blocking UDP socket, like `std::net::UdpSocket`.
pub struct UdpSocket<D: Device> {
    inner: Arc<Inner<D>>,
    h: UdpHandle,
    timeout: Option<StdDuration>,
}

impl<D: Device> UdpSocket<D> {
    /// [`SharedStack::udp_dial`] with the default options and the given probe timeout.
    pub fn dial(
        stack: &SharedStack<D>,
        remote: SocketAddr,
        probe_timeout: StdDuration,
    ) -> io::Result<Self> {
        let opts = DialOptions {
            probe_timeout: probe_timeout.into(),
            ..DialOptions::default()
        };
        stack.udp_dial(remote, opts)
    }

    /// Connects to `remote` (see [`Stack::udp_connect`]); no datagram is sent.
    pub fn connect(&self, remote: SocketAddr) -> io::Result<()> {
        Ok(self.inner.lock().udp_connect(self.h, remote.into())?)
    }

    /// Goes back to unconnected.
    pub fn disconnect(&self) -> io::Result<()> {
        Ok(self.inner.lock().udp_disconnect(self.h)?)
    }

    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<IpEndpoint> {
        Ok(self.inner.lock().udp_peer_addr(self.h)?)
    }

    /// Sends one datagram to the connected peer, waiting for queue space.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let h = self.h;
        self.inner
            .blocking(deadline(self.timeout), |s| s.udp_send(h, buf))?;
        Ok(buf.len())
    }

    /// Receives one datagram (from the peer, if connected).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let h = self.h;
        self.inner
            .blocking(deadline(self.timeout), |s| s.udp_recv(h, buf))
    }

    /// The handle inside the stack.
    pub fn handle(&self) -> UdpHandle {
        self.h
    }

    /// Sends one datagram, waiting for queue space.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let (h, ep) = (self.h, IpEndpoint::from(to));
        self.inner
            .blocking(deadline(self.timeout), |s| s.udp_send_to(h, buf, ep))?;
        Ok(buf.len())
    }

    /// Receives one datagram.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, UdpMeta)> {
        let h = self.h;
        self.inner
            .blocking(deadline(self.timeout), |s| s.udp_recv_from(h, buf))
    }

    /// Limits how long `send_to` and `recv_from` block.
    pub fn set_timeout(&mut self, t: Option<StdDuration>) {
        self.timeout = t;
    }

    /// The bound port.
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.inner.lock().udp_local_port(self.h)?)
    }
}

impl<D: Device> Drop for UdpSocket<D> {
    fn drop(&mut self) {
        let _ = self.inner.lock().udp_close(self.h);
        self.inner.kick();
    }
}
