//! Echo over a real link: kernel `std::net` clients in a namespace send u32-BE
//! length-prefixed messages (`LengthPrefixed::U32_BE`) and wait for the echo.
//!
//! - **ustack** rows: the server is a session [`Engine`] over a `TapDevice`, run by
//!   [`run_engine`] on its own thread: inline ([`Service`]) or on a task pool ([`Pooled`],
//!   round-robin or ordered). The clients sit in the TAP's namespace.
//! - **kernel** row (the anchor): the same clients in namespace a talk over a veth pair to a
//!   one-thread epoll server in namespace b that cuts and writes messages with the same codec.
//!
//! Every client thread drives its share of the sessions with epoll (edge-triggered,
//! non-blocking `std::net::TcpStream`s, `TCP_NODELAY`). Each session keeps `window` messages
//! outstanding: 1 is request/response ping-pong; more is a pipeline that sends a new message
//! whenever an echo comes back. Echoes are checked (length, session, sequence number) and
//! counted; the rate is taken over a fixed time after a warm-up.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ustack::runtime::{self, run_engine, PollMode};
use ustack::session::codec::{Codec, Decoded, LengthPrefixed};
use ustack::session::tasks::{Dispatch, PoolConfig};
use ustack::session::{
    Engine, EngineStats, EventListener, Pooled, ServerOptions, Service, Session, SessionError,
};
use ustack::{Stack, TcpOptions};
use ustack_drivers::TapDevice;

use crate::bench::net::{enter, user_tap, Netns, VethPair, VETH_B_IP};
use crate::bench::{interrupted, user_config, CpuMeter, Deadline, USER_IP};

use super::{other_thread_cpu, process_cpu, Placement};

/// Port every echo server listens on.
pub const ECHO_PORT: u16 = 7000;
/// Smallest message body: session number (4 bytes) and sequence number (8 bytes).
pub const MIN_SIZE: usize = 12;
/// Largest message body the benchmark sends.
pub const MAX_SIZE: usize = 60_000;
/// How long a blocked `epoll_wait` sleeps before its thread checks its flags.
const TICK_MS: i32 = 20;

/// The codec on every side: a 4-byte big-endian length, then the body.
const CODEC: LengthPrefixed = LengthPrefixed::U32_BE;

/// Who serves the echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The kernel over veth: one epoll thread, `std::net`, the same codec (the anchor).
    Kernel,
    /// ustack over TAP, `Service`: `on_message` runs on the stack thread.
    Inline,
    /// ustack over TAP, `Pooled` with round-robin dispatch.
    PoolRoundRobin,
    /// ustack over TAP, `Pooled` with ordered dispatch (one queue per worker, by session).
    PoolOrdered,
}

impl Server {
    /// Every server, in report order.
    pub const ALL: [Server; 4] = [
        Server::Kernel,
        Server::Inline,
        Server::PoolRoundRobin,
        Server::PoolOrdered,
    ];

    /// The name `--servers` takes.
    pub fn key(self) -> &'static str {
        match self {
            Server::Kernel => "kernel",
            Server::Inline => "inline",
            Server::PoolRoundRobin => "pool-rr",
            Server::PoolOrdered => "pool-ordered",
        }
    }

    /// The name in the report.
    pub fn title(self, workers: usize) -> String {
        match self {
            Server::Kernel => "kernel (epoll, veth)".into(),
            Server::Inline => "ustack inline (`Service`)".into(),
            Server::PoolRoundRobin => {
                format!("ustack pool round-robin (`Pooled`, per_worker({workers}))")
            }
            Server::PoolOrdered => format!("ustack pool ordered (`Pooled`, per_worker({workers}))"),
        }
    }

    /// The short name in table headers.
    pub fn short(self) -> &'static str {
        match self {
            Server::Kernel => "kernel",
            Server::Inline => "ustack inline",
            Server::PoolRoundRobin => "ustack pool RR",
            Server::PoolOrdered => "ustack pool ordered",
        }
    }

    /// Parses a `--servers` name.
    pub fn parse(s: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|k| k.key() == s)
    }
}

/// What one echo cell runs.
#[derive(Debug, Clone, Copy)]
pub struct EchoSpec {
    /// Concurrent sessions (TCP connections).
    pub sessions: usize,
    /// Messages each session keeps outstanding (1: ping-pong).
    pub window: usize,
    /// Body bytes per message (the prefix adds 4).
    pub size: usize,
    /// Measured time.
    pub duration: Duration,
    /// Untimed traffic before the measurement.
    pub warmup: Duration,
    /// Longest the setup (namespaces, server start, connecting) may take.
    pub timeout: Duration,
    /// Workers (and queues) of the pool rows: `PoolConfig::per_worker(workers, ..)`.
    pub workers: usize,
    /// Client threads the sessions are spread over.
    pub clients: usize,
    /// Where the cell's threads run.
    pub placement: Placement,
    /// The ustack listener's backlog (`ServerOptions::backlog`): sockets kept in LISTEN.
    pub backlog: usize,
}

/// What one echo cell measured.
#[derive(Debug, Clone, Default)]
pub struct EchoOutcome {
    /// Echoes the clients received in the measured time.
    pub echoes: u64,
    /// The measured time.
    pub elapsed: Duration,
    /// Echoes that came back after one with a higher sequence number on the same session.
    pub reordered: u64,
    /// CPU time of every thread but the clients' (and the idle main thread) in the measured
    /// time: the server thread, plus the pool's workers.
    pub server_cpu: Duration,
    /// CPU time of the server's main thread alone (the stack thread, or the epoll thread).
    pub server_thread_cpu: Option<Duration>,
    /// CPU time of the client threads.
    pub client_cpu: Duration,
    /// CPUs other processes kept busy meanwhile.
    pub others_cpu: Option<f64>,
    /// Echo writes the server refused in the measured time (should be 0; at the end of a
    /// cell, pool workers may still hold messages of sessions the clients closed).
    pub write_errors: u64,
    /// ustack rows: the engine's counters at the end.
    pub engine: Option<EngineStats>,
}

impl EchoOutcome {
    /// Echoes per second.
    pub fn rate(&self) -> f64 {
        self.echoes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Microseconds of `cpu` per echo.
    pub fn per_msg_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.echoes.max(1) as f64
    }
}

// ---------------------------------------------------------------------------------------
// epoll

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new descriptor we own, or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: `events` is valid for `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

const EDGE: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// A non-blocking stream with a receive buffer and pending output.
struct Stream {
    s: TcpStream,
    rx: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    sent: usize,
}

impl Stream {
    fn new(s: TcpStream) -> io::Result<Stream> {
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        Ok(Stream {
            s,
            rx: vec![0; 64 * 1024],
            filled: 0,
            out: Vec::with_capacity(64 * 1024),
            sent: 0,
        })
    }

    /// Reads until the socket is empty. `Ok(false)`: the peer closed.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if self.filled == self.rx.len() {
                let n = self.rx.len() * 2;
                self.rx.resize(n, 0);
            }
            match self.s.read(&mut self.rx[self.filled..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes pending output until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.out.len() {
            match self.s.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(())
    }

    /// Calls `each` on every whole package received, then keeps the unfinished rest.
    fn packages(&mut self, mut each: impl FnMut(&[u8], &mut Vec<u8>)) -> io::Result<()> {
        let mut codec = CODEC;
        let mut start = 0;
        loop {
            match codec.decode(&self.rx[start..self.filled]) {
                Ok(Decoded::Packet(body, n)) => {
                    each(body, &mut self.out);
                    start += n;
                }
                Ok(_) => break,
                Err(e) => return Err(io::Error::other(format!("codec: {e}"))),
            }
        }
        self.rx.copy_within(start..self.filled, 0);
        self.filled -= start;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// clients

/// Flags the client threads and the main thread share.
#[derive(Default)]
struct Control {
    connected: AtomicUsize,
    go: AtomicBool,
    stop: AtomicBool,
    failed: AtomicBool,
}

/// Counters one client thread publishes.
#[derive(Default)]
struct ClientCounters {
    echoes: AtomicU64,
    reordered: AtomicU64,
}

/// One session on the client side.
struct ClientConn {
    st: Stream,
    id: u32,
    next_seq: u64,
    max_seen: Option<u64>,
}

impl ClientConn {
    fn send_one(&mut self, body: &mut [u8]) {
        body[..4].copy_from_slice(&self.id.to_le_bytes());
        body[4..12].copy_from_slice(&self.next_seq.to_le_bytes());
        self.next_seq += 1;
        let mut codec = CODEC;
        // Encoding into a Vec cannot fail for bodies under 4 GiB.
        let _ = codec.encode(&&body[..], &mut self.st.out);
    }
}

#[allow(clippy::too_many_arguments)]
fn client_thread(
    ns: &str,
    server: SocketAddrV4,
    first: usize,
    count: usize,
    spec: EchoSpec,
    ctl: &Control,
    cnt: &ClientCounters,
    deadline: &Deadline,
) -> io::Result<()> {
    enter(ns)?;
    let ep = Epoll::new()?;
    let mut conns = Vec::with_capacity(count);
    for k in 0..count {
        let s =
            TcpStream::connect_timeout(&server.into(), Duration::from_secs(5)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("client: connect to {server} (session {}): {e}", first + k),
                )
            })?;
        let st = Stream::new(s)?;
        ep.add(st.s.as_raw_fd(), k as u64, EDGE)?;
        conns.push(ClientConn {
            st,
            id: (first + k) as u32,
            next_seq: 0,
            max_seen: None,
        });
        ctl.connected.fetch_add(1, Ordering::SeqCst);
    }
    while !ctl.go.load(Ordering::SeqCst) {
        if ctl.stop.load(Ordering::SeqCst) || ctl.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        deadline.check()?;
        thread::sleep(Duration::from_millis(1));
    }
    let mut body = vec![0xa5u8; spec.size];
    for c in conns.iter_mut() {
        for _ in 0..spec.window {
            c.send_one(&mut body);
        }
        c.st.flush()?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let (mut echoes, mut reordered) = (0u64, 0u64);
    let mut seqs = Vec::with_capacity(1024);
    while !ctl.stop.load(Ordering::Relaxed) {
        if ctl.failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = ep.wait(&mut events, TICK_MS)?;
        for ev in &events[..n] {
            let c = &mut conns[ev.u64 as usize];
            let open = c.st.fill()?;
            let (id, size) = (c.id, spec.size);
            let (mut got, mut bad) = (0usize, None::<String>);
            seqs.clear();
            c.st.packages(|b, _| {
                let sid = b
                    .get(..4)
                    .map(|x| u32::from_le_bytes(x.try_into().unwrap()));
                let seq = b
                    .get(4..12)
                    .map(|x| u64::from_le_bytes(x.try_into().unwrap()));
                match (b.len() == size, sid, seq) {
                    (true, Some(s), Some(q)) if s == id => seqs.push(q),
                    _ => {
                        bad.get_or_insert(format!(
                            "session {id}: echo of {} bytes is not a message this session sent",
                            b.len()
                        ));
                    }
                }
                got += 1;
            })?;
            if let Some(why) = bad {
                return Err(io::Error::other(why));
            }
            for &q in &seqs {
                if q >= c.next_seq {
                    return Err(io::Error::other(format!(
                        "session {id}: echo of message {q}, which was never sent"
                    )));
                }
                match c.max_seen {
                    Some(m) if q < m => reordered += 1,
                    _ => c.max_seen = Some(q),
                }
                c.send_one(&mut body);
            }
            echoes += got as u64;
            c.st.flush()?;
            if !open {
                return Err(io::Error::other(format!(
                    "session {id}: the server closed the connection"
                )));
            }
        }
        cnt.echoes.store(echoes, Ordering::Relaxed);
        cnt.reordered.store(reordered, Ordering::Relaxed);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// servers

/// The kernel anchor: one thread in namespace `ns`, epoll over every connection, the same
/// codec. It reads what is there, echoes every whole message, and writes.
fn kernel_server(
    ns: &str,
    bind: SocketAddrV4,
    stop: &AtomicBool,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<()> {
    let started = (|| -> io::Result<(TcpListener, Epoll)> {
        enter(ns)?;
        let l = TcpListener::bind(bind)
            .map_err(|e| io::Error::new(e.kind(), format!("kernel server: bind {bind}: {e}")))?;
        l.set_nonblocking(true)?;
        let ep = Epoll::new()?;
        ep.add(l.as_raw_fd(), u64::MAX, libc::EPOLLIN as u32)?;
        Ok((l, ep))
    })();
    let (l, ep) = match started {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let mut conns: Vec<Option<Stream>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while !stop.load(Ordering::Relaxed) {
        let n = ep.wait(&mut events, TICK_MS)?;
        for ev in &events[..n] {
            if ev.u64 == u64::MAX {
                loop {
                    match l.accept() {
                        Ok((s, _)) => {
                            let st = Stream::new(s)?;
                            ep.add(st.s.as_raw_fd(), conns.len() as u64, EDGE)?;
                            conns.push(Some(st));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let slot = &mut conns[ev.u64 as usize];
            let Some(st) = slot else { continue };
            // A peer that closes or resets (the clients stop at the end of a cell, with
            // echoes unread) just goes away.
            let Ok(open) = st.fill() else {
                *slot = None;
                continue;
            };
            let mut codec = CODEC;
            st.packages(|body, out| {
                let _ = codec.encode(&body, out);
            })?;
            if st.flush().is_err() || !open {
                *slot = None;
            }
        }
    }
    Ok(())
}

/// The ustack echo listener: writes every package back.
#[derive(Clone)]
struct Echo {
    write_errors: Arc<AtomicU64>,
}

impl EventListener<LengthPrefixed> for Echo {
    fn on_message(&mut self, s: &mut Session<'_, LengthPrefixed>, pkg: &[u8]) {
        if s.write_pkg(&pkg).is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_error(&mut self, _: &mut Session<'_, LengthPrefixed>, e: &SessionError) {
        log::debug!("ustack echo session ended by {e}");
    }
}

/// The ustack server on this thread: a stack over `tap`, an engine with one TCP server, and
/// `run_engine` until `stop`.
fn ustack_server(
    tap: TapDevice,
    server: Server,
    workers: usize,
    backlog: usize,
    stop: &AtomicBool,
    write_errors: Arc<AtomicU64>,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<EngineStats> {
    let err = |what: &str, e: ustack::Error| io::Error::other(format!("ustack: {what}: {e}"));
    let now = runtime::now();
    let mut stack = match Stack::new(user_config(), tap, now) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(err("new stack", e)));
            return Err(err("new stack", e));
        }
    };
    let mut engine = Engine::new(&stack, now);
    let opts = ServerOptions {
        backlog,
        tcp: TcpOptions {
            nodelay: true,
            ..TcpOptions::default()
        },
        ..ServerOptions::default()
    };
    let echo = Echo { write_errors };
    let dispatch = match server {
        Server::PoolOrdered => Dispatch::Ordered,
        _ => Dispatch::RoundRobin,
    };
    let listening = match server {
        Server::Inline => engine
            .tcp_server(&mut stack, ECHO_PORT, opts, Service::new(CODEC, echo))
            .map_err(|e| err("tcp_server", e)),
        _ => Pooled::new(
            &mut engine,
            CODEC,
            echo,
            PoolConfig::per_worker(workers, dispatch),
        )
        .and_then(|p| {
            engine
                .tcp_server(&mut stack, ECHO_PORT, opts, p)
                .map_err(|e| err("tcp_server", e))
        }),
    };
    if let Err(e) = listening {
        let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
        return Err(e);
    }
    let _ = ready.send(Ok(()));
    run_engine(&mut stack, &mut engine, PollMode::Block, stop)?;
    Ok(engine.stats())
}

// ---------------------------------------------------------------------------------------
// one cell

/// The threads of one cell; dropping it stops and joins them all (clients first), so none
/// outlives the namespace it entered.
struct Threads {
    ctl: Arc<Control>,
    clients: Vec<JoinHandle<io::Result<()>>>,
    server_stop: Arc<AtomicBool>,
    server: Option<JoinHandle<io::Result<Option<EngineStats>>>>,
}

impl Threads {
    fn client_cpu(&self) -> Duration {
        self.clients.iter().filter_map(other_thread_cpu).sum()
    }

    fn server_thread_cpu(&self) -> Option<Duration> {
        self.server.as_ref().and_then(other_thread_cpu)
    }

    fn finished_early(&self) -> bool {
        self.clients.iter().any(JoinHandle::is_finished)
            || self.server.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// Stops the clients, then the server; the first error of any of them.
    fn stop(&mut self) -> io::Result<Option<EngineStats>> {
        self.ctl.stop.store(true, Ordering::SeqCst);
        let mut first: io::Result<()> = Ok(());
        for h in self.clients.drain(..) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("client thread panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        self.server_stop.store(true, Ordering::SeqCst);
        let stats = match self.server.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("server thread panicked")),
            None => Ok(None),
        };
        first?;
        stats
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.ctl.failed.store(true, Ordering::SeqCst);
        let _ = self.stop();
    }
}

/// Where the link of a cell lives; dropping it removes the namespaces (and TAP or veth).
enum Link {
    Tap(#[allow(dead_code)] Netns),
    Veth(#[allow(dead_code)] VethPair),
}

/// Sleeps `d` in short steps; fails on Ctrl-C or when a thread of the cell ended early.
fn sleep_checked(d: Duration, t: &Threads) -> io::Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted (Ctrl-C)",
            ));
        }
        if t.finished_early() {
            return Err(io::Error::other(
                "a client or server thread stopped during the run (its error follows)",
            ));
        }
        thread::sleep(Duration::from_millis(10).min(end - Instant::now()));
    }
    Ok(())
}

struct Sample {
    echoes: u64,
    write_errors: u64,
    reordered: u64,
    at: Instant,
    process: Duration,
    clients: Duration,
    server_thread: Option<Duration>,
    meter: Option<CpuMeter>,
}

/// Runs one cell: a fresh link, a server, `spec.sessions` client sessions, warm-up, then
/// `spec.duration` of measured echoes.
pub fn run(server: Server, spec: EchoSpec, prefix: &str) -> io::Result<EchoOutcome> {
    // Every thread of the cell is spawned from this one and inherits its CPU mask.
    let _cpus = spec.placement.apply()?;
    let deadline = Deadline::new(spec.timeout, "echo setup (link, server, connections)");
    let write_errors = Arc::new(AtomicU64::new(0));
    let server_stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (link, client_ns, addr, handle) = match server {
        Server::Kernel => {
            let pair = VethPair::create(prefix)?;
            let (ns, client_ns) = (pair.b.name().to_owned(), pair.a.name().to_owned());
            let addr = SocketAddrV4::new(VETH_B_IP.into(), ECHO_PORT);
            let stop = server_stop.clone();
            let h = thread::Builder::new()
                .name("echo-kernel".into())
                .spawn(move || kernel_server(&ns, addr, &stop, ready_tx).map(|()| None))?;
            (Link::Veth(pair), client_ns, addr, h)
        }
        _ => {
            let (ns, tap) = user_tap(prefix)?;
            let client_ns = ns.name().to_owned();
            let addr = SocketAddrV4::new(USER_IP.into(), ECHO_PORT);
            let (stop, errors, workers) = (server_stop.clone(), write_errors.clone(), spec.workers);
            let backlog = spec.backlog;
            let h = thread::Builder::new()
                .name("echo-ustack".into())
                .spawn(move || {
                    ustack_server(tap, server, workers, backlog, &stop, errors, ready_tx).map(Some)
                })?;
            (Link::Tap(ns), client_ns, addr, h)
        }
    };
    let ctl = Arc::new(Control::default());
    let mut threads = Threads {
        ctl: ctl.clone(),
        clients: Vec::new(),
        server_stop,
        server: Some(handle),
    };
    loop {
        deadline.check()?;
        match ready_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => break r?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(threads
                    .stop()
                    .err()
                    .unwrap_or_else(|| io::Error::other("server thread exited before listening")))
            }
        }
    }
    let n_clients = spec.clients.clamp(1, spec.sessions);
    let mut counters = Vec::new();
    for c in 0..n_clients {
        // Sessions spread as evenly as possible: the first ones get one more.
        let first = c * (spec.sessions / n_clients) + c.min(spec.sessions % n_clients);
        let count = spec.sessions / n_clients + usize::from(c < spec.sessions % n_clients);
        let cnt = Arc::new(ClientCounters::default());
        counters.push(cnt.clone());
        let (ns, ctl) = (client_ns.clone(), ctl.clone());
        let h = thread::Builder::new()
            .name(format!("echo-client-{c}"))
            .spawn(move || {
                let r = client_thread(&ns, addr, first, count, spec, &ctl, &cnt, &deadline);
                if r.is_err() {
                    ctl.failed.store(true, Ordering::SeqCst);
                }
                r
            })?;
        threads.clients.push(h);
    }
    while ctl.connected.load(Ordering::SeqCst) < spec.sessions {
        if let Err(e) = deadline.check() {
            return Err(threads.stop().err().unwrap_or(e));
        }
        if ctl.failed.load(Ordering::SeqCst) || threads.finished_early() {
            return Err(threads
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("a client thread ended before connecting")));
        }
        thread::sleep(Duration::from_millis(1));
    }
    ctl.go.store(true, Ordering::SeqCst);
    let sample = |t: &Threads| Sample {
        echoes: counters
            .iter()
            .map(|c| c.echoes.load(Ordering::Relaxed))
            .sum(),
        write_errors: write_errors.load(Ordering::Relaxed),
        reordered: counters
            .iter()
            .map(|c| c.reordered.load(Ordering::Relaxed))
            .sum(),
        at: Instant::now(),
        process: process_cpu(),
        clients: t.client_cpu(),
        server_thread: t.server_thread_cpu(),
        meter: CpuMeter::now(),
    };
    let timed = (|| {
        sleep_checked(spec.warmup, &threads)?;
        let s0 = sample(&threads);
        sleep_checked(spec.duration, &threads)?;
        let s1 = sample(&threads);
        Ok::<_, io::Error>((s0, s1))
    })();
    let stopped = threads.stop();
    let (s0, s1, engine) = match (timed, stopped) {
        (Ok((s0, s1)), Ok(engine)) => (s0, s1, engine),
        (_, Err(e)) | (Err(e), _) => return Err(e),
    };
    drop(threads);
    drop(link);
    let clients = s1.clients.saturating_sub(s0.clients);
    Ok(EchoOutcome {
        echoes: s1.echoes - s0.echoes,
        elapsed: s1.at - s0.at,
        reordered: s1.reordered - s0.reordered,
        server_cpu: (s1.process.saturating_sub(s0.process)).saturating_sub(clients),
        server_thread_cpu: s0
            .server_thread
            .zip(s1.server_thread)
            .map(|(a, b)| b.saturating_sub(a)),
        client_cpu: clients,
        others_cpu: s0.meter.zip(s1.meter).map(|(a, b)| a.others_since(&b)),
        write_errors: s1.write_errors - s0.write_errors,
        engine,
    })
}
