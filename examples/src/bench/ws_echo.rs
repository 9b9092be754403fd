//! WebSocket echo over a real link, for `bench_ws`: the same kernel-side load client
//! against ustack's `WsServer` over a TAP and against a tungstenite server on the kernel
//! stack over a veth pair.
//!
//! - **client** (both rows): `threads` Rust threads in the client namespace, each owning its
//!   share of the connections: kernel `TcpStream`s (`TCP_NODELAY`) upgraded by
//!   `tungstenite::client`. A round sends one masked binary message of `size` bytes on each
//!   of the thread's connections, then reads every echo back (blocking) and checks its length
//!   and bytes: request/response, one message in flight per connection.
//! - **ustack** row: a stack over a `TapDevice` and a session engine with `WsServer` echoing
//!   every message (`WsSession::send`), driven by `run_engine` on one thread; the clients sit
//!   in the TAP's namespace.
//! - **tungstenite** row: a kernel `TcpListener` in namespace b of a veth pair and one thread
//!   per connection running `tungstenite::accept`, then `read` / `send` (write + flush) in a
//!   loop: the way tungstenite's own examples serve; the clients sit in namespace a.

use std::io;
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tungstenite::{Bytes, Message as TMessage};
use ustack::runtime::{self, run_engine, PollMode};
use ustack::session::{Engine, EngineStats, ServerOptions};
use ustack::ws::conn::Message;
use ustack::ws::handshake::{NoHooks, ServerConfig};
use ustack::ws::{WsListener, WsOptions, WsServer, WsSession};
use ustack::{Stack, TcpOptions};
use ustack_drivers::TapDevice;

use crate::bench::net::{enter, user_tap, Netns, VethPair, VETH_B_IP};
use crate::bench::{interrupted, user_config, CpuMeter, Deadline, USER_IP};

/// Port both echo servers listen on.
pub const WS_PORT: u16 = 9101;

/// Who serves the echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// ustack `WsServer` over TAP, on one stack thread.
    Ustack,
    /// tungstenite 0.30 on the kernel stack over veth, one thread per connection.
    Tungstenite,
}

impl Server {
    /// Both, in report order.
    pub const ALL: [Server; 2] = [Server::Ustack, Server::Tungstenite];

    /// The name `--servers` takes.
    pub fn key(self) -> &'static str {
        match self {
            Server::Ustack => "ustack",
            Server::Tungstenite => "tungstenite",
        }
    }

    /// The name in the report.
    pub fn title(self) -> &'static str {
        match self {
            Server::Ustack => "ustack `WsServer` (TAP, one stack thread)",
            Server::Tungstenite => "tungstenite 0.30 (kernel TCP over veth, thread per connection)",
        }
    }

    /// Parses a `--servers` name.
    pub fn parse(s: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|k| k.key() == s)
    }
}

/// What one cell runs.
#[derive(Debug, Clone, Copy)]
pub struct EchoSpec {
    /// Concurrent WebSocket connections.
    pub conns: usize,
    /// Message payload bytes.
    pub size: usize,
    /// Measured time.
    pub duration: Duration,
    /// Untimed traffic before it.
    pub warmup: Duration,
    /// Longest the setup may take.
    pub timeout: Duration,
    /// Client threads the connections are spread over.
    pub threads: usize,
}

/// What one cell measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoOutcome {
    /// Echoes received (and checked) in the measured time.
    pub echoes: u64,
    /// The measured time.
    pub elapsed: Duration,
    /// CPU of every thread but the clients' in the measured time (the server's).
    pub server_cpu: Duration,
    /// CPU of the client threads in the measured time.
    pub client_cpu: Duration,
    /// CPUs other processes kept busy meanwhile.
    pub others_cpu: Option<f64>,
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

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process.
fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

// ---------------------------------------------------------------------------------------
// servers

/// Sends every message back as it came.
struct Echo {
    write_errors: Arc<AtomicU64>,
}

impl WsListener for Echo {
    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        if s.send(msg).is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn ustack_server(
    tap: TapDevice,
    size: usize,
    stop: &AtomicBool,
    write_errors: Arc<AtomicU64>,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<EngineStats> {
    let err = |what: &str, e: ustack::Error| io::Error::other(format!("ustack: {what}: {e}"));
    let now = runtime::now();
    let started = (|| {
        let mut stack = Stack::new(user_config(), tap, now).map_err(|e| err("new stack", e))?;
        let mut engine = Engine::new(&stack, now);
        let mut opts = ServerOptions {
            tcp: TcpOptions {
                nodelay: true,
                ..TcpOptions::default()
            },
            ..ServerOptions::default()
        };
        opts.limits.max_msg_len = opts.limits.max_msg_len.max(2 * size);
        let server = WsServer::with_options(
            Echo { write_errors },
            NoHooks,
            ServerConfig::default(),
            WsOptions::default(),
        );
        engine
            .tcp_server(&mut stack, WS_PORT, opts, server)
            .map_err(|e| err("tcp_server", e))?;
        Ok::<_, io::Error>((stack, engine))
    })();
    let (mut stack, mut engine) = match started {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    run_engine(&mut stack, &mut engine, PollMode::Block, stop)?;
    Ok(engine.stats())
}

/// One tungstenite connection: handshake, then echo until the client goes away.
fn tungstenite_conn(s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_nodelay(true);
    // A read timeout lets the thread see `stop` even if a client never closes.
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut ws) = tungstenite::accept(s) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(m @ (TMessage::Binary(_) | TMessage::Text(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The kernel anchor: accepts in namespace `ns` and gives every connection a thread.
fn tungstenite_server(
    ns: &str,
    bind: SocketAddrV4,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<()> {
    let started = (|| {
        enter(ns)?;
        let l = TcpListener::bind(bind).map_err(|e| {
            io::Error::new(e.kind(), format!("tungstenite server: bind {bind}: {e}"))
        })?;
        l.set_nonblocking(true)?;
        Ok::<_, io::Error>(l)
    })();
    let l = match started {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                let stop = stop.clone();
                conns.push(
                    thread::Builder::new()
                        .name("ws-tung-conn".into())
                        .spawn(move || tungstenite_conn(s, &stop))?,
                );
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
    for h in conns {
        let _ = h.join();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// client

#[derive(Default)]
struct Control {
    connected: AtomicUsize,
    go: AtomicBool,
    stop: AtomicBool,
    failed: AtomicBool,
}

#[derive(Default)]
struct ClientCounters {
    echoes: AtomicU64,
    cpu_ns: AtomicU64,
}

fn client_thread(
    ns: &str,
    addr: SocketAddrV4,
    count: usize,
    size: usize,
    ctl: &Control,
    cnt: &ClientCounters,
    deadline: &Deadline,
) -> io::Result<()> {
    enter(ns)?;
    let url = format!("ws://{addr}/");
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        deadline.check()?;
        let s = TcpStream::connect(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (ws, _) = tungstenite::client(url.as_str(), s)
            .map_err(|e| io::Error::other(format!("upgrade at {url}: {e}")))?;
        conns.push(ws);
        ctl.connected.fetch_add(1, Ordering::SeqCst);
    }
    let body: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    let payload = Bytes::from(body);
    while !ctl.go.load(Ordering::SeqCst) {
        if ctl.stop.load(Ordering::SeqCst) || ctl.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        deadline.check()?;
        thread::sleep(Duration::from_millis(1));
    }
    let mut echoes = 0u64;
    while !ctl.stop.load(Ordering::Relaxed) {
        for ws in &mut conns {
            ws.send(TMessage::Binary(payload.clone()))
                .map_err(|e| io::Error::other(format!("send: {e}")))?;
        }
        for ws in &mut conns {
            loop {
                match ws.read() {
                    Ok(TMessage::Binary(b)) => {
                        if b != payload {
                            return Err(io::Error::other(format!(
                                "echo of {} bytes differs from the {} sent",
                                b.len(),
                                payload.len()
                            )));
                        }
                        break;
                    }
                    Ok(TMessage::Ping(_) | TMessage::Pong(_)) => {}
                    Ok(other) => {
                        return Err(io::Error::other(format!("unexpected message {other:?}")))
                    }
                    Err(e) => return Err(io::Error::other(format!("read: {e}"))),
                }
            }
            echoes += 1;
        }
        cnt.echoes.store(echoes, Ordering::Relaxed);
        cnt.cpu_ns
            .store(thread_cpu().as_nanos() as u64, Ordering::Relaxed);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// one cell

enum Link {
    Tap(#[allow(dead_code)] Netns),
    Veth(#[allow(dead_code)] VethPair),
}

/// The cell's threads; dropping it stops and joins them (clients first).
struct Threads {
    ctl: Arc<Control>,
    clients: Vec<JoinHandle<io::Result<()>>>,
    server_stop: Arc<AtomicBool>,
    server: Option<JoinHandle<io::Result<Option<EngineStats>>>>,
}

impl Threads {
    fn finished_early(&self) -> bool {
        self.clients.iter().any(JoinHandle::is_finished)
            || self.server.as_ref().is_some_and(JoinHandle::is_finished)
    }

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
    at: Instant,
    process: Duration,
    clients: Duration,
    meter: Option<CpuMeter>,
}

/// Runs one cell: a fresh link and server, `spec.conns` connections, warm-up, then
/// `spec.duration` of measured echoes.
pub fn run(server: Server, spec: EchoSpec, prefix: &str) -> io::Result<EchoOutcome> {
    let deadline = Deadline::new(spec.timeout, "ws echo setup (link, server, connections)");
    let server_stop = Arc::new(AtomicBool::new(false));
    let write_errors = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (link, client_ns, addr, handle) = match server {
        Server::Tungstenite => {
            let pair = VethPair::create(prefix)?;
            let (ns, client_ns) = (pair.b.name().to_owned(), pair.a.name().to_owned());
            let addr = SocketAddrV4::new(VETH_B_IP.into(), WS_PORT);
            let stop = server_stop.clone();
            let h = thread::Builder::new()
                .name("ws-tung-accept".into())
                .spawn(move || tungstenite_server(&ns, addr, stop, ready_tx).map(|()| None))?;
            (Link::Veth(pair), client_ns, addr, h)
        }
        Server::Ustack => {
            let (ns, tap) = user_tap(prefix)?;
            let client_ns = ns.name().to_owned();
            let addr = SocketAddrV4::new(USER_IP.into(), WS_PORT);
            let (stop, errors, size) = (server_stop.clone(), write_errors.clone(), spec.size);
            let h = thread::Builder::new()
                .name("ws-ustack".into())
                .spawn(move || ustack_server(tap, size, &stop, errors, ready_tx).map(Some))?;
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
    let n = spec.threads.clamp(1, spec.conns);
    let mut counters = Vec::new();
    for c in 0..n {
        let count = spec.conns / n + usize::from(c < spec.conns % n);
        let cnt = Arc::new(ClientCounters::default());
        counters.push(cnt.clone());
        let (ns, ctl) = (client_ns.clone(), ctl.clone());
        let size = spec.size;
        let h = thread::Builder::new()
            .name(format!("ws-client-{c}"))
            .spawn(move || {
                let r = client_thread(&ns, addr, count, size, &ctl, &cnt, &deadline);
                if r.is_err() {
                    ctl.failed.store(true, Ordering::SeqCst);
                }
                r
            })?;
        threads.clients.push(h);
    }
    while ctl.connected.load(Ordering::SeqCst) < spec.conns {
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
    let sample = || Sample {
        echoes: counters
            .iter()
            .map(|c| c.echoes.load(Ordering::Relaxed))
            .sum(),
        at: Instant::now(),
        process: process_cpu(),
        clients: Duration::from_nanos(
            counters
                .iter()
                .map(|c| c.cpu_ns.load(Ordering::Relaxed))
                .sum(),
        ),
        meter: CpuMeter::now(),
    };
    let timed = (|| {
        sleep_checked(spec.warmup, &threads)?;
        let s0 = sample();
        sleep_checked(spec.duration, &threads)?;
        let s1 = sample();
        Ok::<_, io::Error>((s0, s1))
    })();
    let stopped = threads.stop();
    let (s0, s1, engine) = match (timed, stopped) {
        (Ok((s0, s1)), Ok(engine)) => (s0, s1, engine),
        (_, Err(e)) | (Err(e), _) => return Err(e),
    };
    drop(threads);
    drop(link);
    let errors = write_errors.load(Ordering::Relaxed);
    if errors > 0 {
        log::warn!("ustack echo: {errors} sends refused");
    }
    let clients = s1.clients.saturating_sub(s0.clients);
    Ok(EchoOutcome {
        echoes: s1.echoes - s0.echoes,
        elapsed: s1.at - s0.at,
        server_cpu: s1
            .process
            .saturating_sub(s0.process)
            .saturating_sub(clients),
        client_cpu: clients,
        others_cpu: s0.meter.zip(s1.meter).map(|(a, b)| a.others_since(&b)),
        engine,
    })
}
