//! The kernel side of every flow: a writer or reader thread that entered a namespace and uses
//! `std::net`, plus the kernel-to-kernel ceiling over a veth pair.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::net::{enter, VethPair, VETH_A_IP, VETH_B_IP};
use super::{Deadline, Dir, Limits, Outcome, KERNEL_CHUNK};

/// How often blocked kernel-side calls come back to check the deadline and abort flag.
const TICK: Duration = Duration::from_millis(200);

/// A kernel-side thread. Dropping the guard tells the thread to stop and waits for it, so no
/// thread outlives the namespace it entered.
pub struct Peer<T: Send + 'static> {
    handle: Option<JoinHandle<io::Result<T>>>,
    abort: Arc<AtomicBool>,
}

impl<T: Send + 'static> Peer<T> {
    fn spawn(
        name: &str,
        cpu: usize,
        f: impl FnOnce(&Stop) -> io::Result<T> + Send + 'static,
        deadline: Deadline,
    ) -> Self {
        let abort = Arc::new(AtomicBool::new(false));
        let stop = Stop {
            abort: abort.clone(),
            deadline,
        };
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                super::pin(cpu);
                f(&stop)
            })
            .expect("cannot spawn a thread");
        Peer {
            handle: Some(handle),
            abort,
        }
    }

    /// Whether the thread returned.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the thread and returns its result.
    pub fn finish(mut self) -> io::Result<T> {
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(r) => r,
            Err(_) => Err(io::Error::other("kernel-side thread panicked")),
        }
    }
}

impl<T: Send + 'static> Drop for Peer<T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.abort.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
    }
}

/// What a kernel-side thread checks between blocking calls.
pub struct Stop {
    abort: Arc<AtomicBool>,
    deadline: Deadline,
}

impl Stop {
    fn check(&self) -> io::Result<()> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "aborted by the main thread",
            ));
        }
        self.deadline.check()
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A thread in namespace `ns` that connects to `to`, writes `limits.bytes` bytes, shuts its
/// sending half down and waits for the peer's FIN.
/// With `--pin`, the thread runs on CPU `cpu`.
pub fn spawn_writer(
    ns: &str,
    cpu: usize,
    to: SocketAddrV4,
    limits: Limits,
    deadline: Deadline,
) -> Peer<()> {
    let ns = ns.to_owned();
    Peer::spawn(
        "kernel-writer",
        cpu,
        move |stop| {
            enter(&ns)?;
            let mut s = loop {
                stop.check()?;
                match TcpStream::connect_timeout(&SocketAddr::V4(to), TICK * 5) {
                    Ok(s) => break s,
                    Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                        log::debug!("connect {to}: {e}; retrying");
                        thread::sleep(TICK);
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("connect {to}: {e}"))),
                }
            };
            s.set_write_timeout(Some(TICK))?;
            s.set_read_timeout(Some(TICK))?;
            let buf = vec![0x5a_u8; KERNEL_CHUNK];
            let mut sent = 0u64;
            while sent < limits.bytes {
                let n = (limits.bytes - sent).min(buf.len() as u64) as usize;
                match s.write(&buf[..n]) {
                    Ok(0) => {
                        return Err(io::Error::other(format!(
                            "peer stopped reading after {sent} bytes"
                        )))
                    }
                    Ok(k) => {
                        sent += k as u64;
                        // Also while data flows: a slow but steady transfer must time out too.
                        stop.check()?;
                    }
                    Err(e) if timed_out(&e) => stop.check()?,
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("write after {sent} bytes: {e}"),
                        ))
                    }
                }
            }
            s.shutdown(Shutdown::Write)?;
            // Wait for the peer to close too, so the connection ends cleanly.
            let mut sink = [0u8; 256];
            loop {
                match s.read(&mut sink) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if timed_out(&e) => stop.check()?,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        },
        deadline,
    )
}

/// A thread in namespace `ns` that listens on `bind` (sending on `ready` once it does),
/// accepts one connection and reads `limits.bytes` bytes, then waits for the peer's FIN.
/// Returns the time from the first byte read to the last. With `--pin`, runs on CPU `cpu`.
pub fn spawn_reader(
    ns: &str,
    cpu: usize,
    bind: SocketAddrV4,
    limits: Limits,
    deadline: Deadline,
    ready: mpsc::Sender<()>,
) -> Peer<Duration> {
    let ns = ns.to_owned();
    Peer::spawn(
        "kernel-reader",
        cpu,
        move |stop| {
            enter(&ns)?;
            let l = TcpListener::bind(bind)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {bind}: {e}")))?;
            l.set_nonblocking(true)?;
            let _ = ready.send(());
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        stop.check()?;
                        thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("accept on {bind}: {e}")))
                    }
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(TICK))?;
            let mut buf = vec![0u8; KERNEL_CHUNK];
            let mut got = 0u64;
            let mut start = None;
            let mut elapsed = None;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let t = start.get_or_insert_with(Instant::now);
                        got += n as u64;
                        if got >= limits.bytes && elapsed.is_none() {
                            elapsed = Some(t.elapsed());
                        }
                        stop.check()?;
                    }
                    Err(e) if timed_out(&e) => stop.check()?,
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("read after {got} bytes: {e}"),
                        ))
                    }
                }
            }
            match elapsed {
                Some(d) if got == limits.bytes => Ok(d),
                _ => Err(io::Error::other(format!(
                    "peer closed after {got} bytes, expected {}",
                    limits.bytes
                ))),
            }
        },
        deadline,
    )
}

/// [`spawn_reader`], returning once the reader listens.
pub fn listening_reader(
    ns: &str,
    cpu: usize,
    bind: SocketAddrV4,
    limits: Limits,
    deadline: Deadline,
) -> io::Result<Peer<Duration>> {
    let (tx, rx) = mpsc::channel();
    let reader = spawn_reader(ns, cpu, bind, limits, deadline, tx);
    wait_ready(&rx, &deadline)?;
    Ok(reader)
}

/// The time between the first and the last byte a userspace receiver saw.
pub fn span(start: Option<Instant>, end: Option<Instant>) -> io::Result<Duration> {
    match (start, end) {
        (Some(s), Some(e)) => Ok(e - s),
        _ => Err(io::Error::other("no data received")),
    }
}

/// Waits for a reader thread to listen.
fn wait_ready(ready: &mpsc::Receiver<()>, deadline: &Deadline) -> io::Result<()> {
    loop {
        deadline.check()?;
        match ready.recv_timeout(TICK) {
            Ok(()) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other(
                    "kernel reader thread exited before listening",
                ))
            }
        }
    }
}

/// The ceiling: kernel TCP to kernel TCP over a veth pair between two namespaces.
pub fn veth(dir: Dir, limits: Limits, prefix: &str) -> io::Result<Outcome> {
    let deadline = Deadline::new(limits.timeout, "kernel veth transfer");
    let pair = VethPair::create(prefix)?;
    // Direction is symmetric for the kernel; the rows only swap which namespace sends.
    let (writer_ns, reader_ns, reader_ip) = match dir {
        Dir::KernelToUser => (pair.a.name(), pair.b.name(), VETH_B_IP),
        Dir::UserToKernel => (pair.b.name(), pair.a.name(), VETH_A_IP),
    };
    let addr = SocketAddrV4::new(reader_ip.into(), super::SOURCE_PORT);
    let reader = listening_reader(reader_ns, 0, addr, limits, deadline)?;
    let writer = spawn_writer(writer_ns, 1, addr, limits, deadline);
    let elapsed = reader.finish()?;
    writer.finish()?;
    drop(pair);
    Ok(Outcome {
        bytes: limits.bytes,
        elapsed,
        counters: None,
        others_cpu: None,
    })
}
