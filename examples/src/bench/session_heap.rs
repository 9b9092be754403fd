//! Heap bytes per idle session: a server stack with a session engine and a client stack,
//! joined by an in-memory `PipeLink` (no root, no kernel), open `sessions` TCP connections
//! and leave them idle. A counting global allocator (installed by the binary) tags every
//! allocation with the side that made it, through a thread-local that the benchmark sets
//! around each side's calls (both stacks run on this one thread). Only the server side is
//! reported; it is snapshotted after each construction step, so the report can say what is
//! preallocated per stack slot and what each accepted session adds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ustack::runtime;
use ustack::session::codec::LengthPrefixed;
use ustack::session::{Engine, EngineStats, EventListener, ServerOptions, Service, Session};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use ustack::{Config, Error, Stack, TcpOptions};
use ustack_drivers::PipeLink;

use crate::bench::{interrupted, Deadline};

use super::median;

// ---------------------------------------------------------------------------------------
// the counting allocator

/// Allocations made outside a measured side are not counted.
pub const NOBODY: u8 = 0;
/// The server stack and its engine.
pub const SERVER: u8 = 1;
/// The client stack.
pub const CLIENT: u8 = 2;

/// Exact live-allocation counts per requested size up to this many bytes; larger ones are
/// summed in one bucket.
const EXACT: usize = 64 * 1024;

thread_local! {
    static SIDE: Cell<u8> = const { Cell::new(NOBODY) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static LIVE: [AtomicI64; 3] = [const { AtomicI64::new(0) }; 3];
static CALLS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// Server side: live allocations per exact requested size (index = size).
static SIZES: [AtomicI64; EXACT + 1] = [const { AtomicI64::new(0) }; EXACT + 1];
/// Server side: live allocations above `EXACT` bytes, and their bytes.
static LARGE: [AtomicI64; 2] = [const { AtomicI64::new(0) }; 2];

/// The system allocator, counting requested bytes per side (see the module docs).
pub struct Counting;

fn record(size: usize, sign: i64) {
    let side = SIDE.try_with(Cell::get).unwrap_or(NOBODY);
    if side == NOBODY {
        return;
    }
    let s = usize::from(side);
    LIVE[s].fetch_add(sign * size as i64, Ordering::Relaxed);
    if sign > 0 {
        CALLS[s].fetch_add(1, Ordering::Relaxed);
    }
    if side == SERVER {
        if size <= EXACT {
            SIZES[size].fetch_add(sign, Ordering::Relaxed);
        } else {
            LARGE[0].fetch_add(sign, Ordering::Relaxed);
            LARGE[1].fetch_add(sign * size as i64, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting touches
// only atomics and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            record(l.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            record(l.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(p, l) };
        record(l.size(), -1);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            record(l.size(), -1);
            record(new, 1);
        }
        q
    }
}

/// Runs `f` with its allocations counted for `side`.
fn on<R>(side: u8, f: impl FnOnce() -> R) -> R {
    let before = SIDE.with(|s| s.replace(side));
    let r = f();
    SIDE.with(|s| s.set(before));
    r
}

/// The counters at one moment (taken with counting off, so taking it is not counted).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Live requested bytes per side.
    pub live: [i64; 3],
    /// Allocation calls per side so far.
    pub calls: [u64; 3],
    sizes: Vec<i64>,
    large: [i64; 2],
}

fn snapshot() -> Snapshot {
    on(NOBODY, || Snapshot {
        live: core::array::from_fn(|i| LIVE[i].load(Ordering::Relaxed)),
        calls: core::array::from_fn(|i| CALLS[i].load(Ordering::Relaxed)),
        sizes: SIZES.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
        large: [
            LARGE[0].load(Ordering::Relaxed),
            LARGE[1].load(Ordering::Relaxed),
        ],
    })
}

impl Snapshot {
    /// Server bytes added since `before`.
    pub fn server_since(&self, before: &Snapshot) -> i64 {
        self.live[usize::from(SERVER)] - before.live[usize::from(SERVER)]
    }

    /// Server allocation calls since `before`.
    pub fn server_calls_since(&self, before: &Snapshot) -> u64 {
        self.calls[usize::from(SERVER)] - before.calls[usize::from(SERVER)]
    }

    /// Server live allocations of exactly `size` bytes added since `before`.
    pub fn count_of_size_since(&self, before: &Snapshot, size: usize) -> i64 {
        match size <= EXACT {
            true => self.sizes[size] - before.sizes[size],
            false => 0,
        }
    }

    /// Server bytes in allocations above 64 KiB added since `before` (count, bytes).
    pub fn large_since(&self, before: &Snapshot) -> (i64, i64) {
        (
            self.large[0] - before.large[0],
            self.large[1] - before.large[1],
        )
    }

    /// The sizes whose live server allocations changed most since `before`, by bytes:
    /// `(size, count change)`.
    pub fn top_sizes_since(&self, before: &Snapshot, n: usize) -> Vec<(usize, i64)> {
        let mut v: Vec<(usize, i64)> = (0..=EXACT)
            .map(|s| (s, self.sizes[s] - before.sizes[s]))
            .filter(|&(_, d)| d != 0)
            .collect();
        v.sort_by_key(|&(s, d)| std::cmp::Reverse((s as i64 * d).abs()));
        v.truncate(n);
        v
    }
}

// ---------------------------------------------------------------------------------------
// the benchmark

/// Frames each direction of the link holds.
const FRAMES: usize = 1024;
type Link = PipeLink<FRAMES, 1514>;

const PORT: u16 = 7001;
const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 1);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);

/// What the heap row runs.
#[derive(Debug, Clone, Copy)]
pub struct HeapSpec {
    /// Idle sessions to open.
    pub sessions: usize,
    /// smoltcp receive and transmit buffer of every socket, bytes each.
    pub buf: usize,
    /// Listener backlog (sockets kept in LISTEN); at most `ustack::MAX_BACKLOG`.
    pub backlog: usize,
    /// Longest the row may take.
    pub timeout: Duration,
    /// Idle `Engine::poll` + `poll_delay` calls timed at the end.
    pub idle_polls: usize,
}

/// What the heap row measured.
#[derive(Debug, Clone)]
pub struct HeapOutcome {
    /// The spec it ran.
    pub spec: HeapSpec,
    /// `Config::max_sockets` of the server stack.
    pub max_sockets: usize,
    /// Stack slots (`max_sockets + 1`), each with an engine `SessionSlot` and `TimerEntry`.
    pub slots: usize,
    /// Before the server existed.
    pub s0: Snapshot,
    /// After `Stack::new`.
    pub s1: Snapshot,
    /// After `Engine::new`.
    pub s2: Snapshot,
    /// After `tcp_server` and a first poll (the backlog armed).
    pub s3: Snapshot,
    /// With every session open and idle.
    pub s4: Snapshot,
    /// Sessions open at the end (engine count).
    pub open: usize,
    /// The engine's held bytes at the end (assembly + pending output).
    pub held: usize,
    /// The engine's counters at the end.
    pub stats: EngineStats,
    /// Time to open every session.
    pub connect_time: Duration,
    /// Median wall time of one `Engine::poll` with every session idle.
    pub idle_poll: Duration,
    /// Median wall time of one `Engine::poll_delay` with every session idle.
    pub idle_poll_delay: Duration,
    /// Client stack bytes at the end (for reference).
    pub client_bytes: i64,
}

fn io_err(what: &str, e: Error) -> io::Error {
    io::Error::other(format!("ustack (pipe): {what}: {e}"))
}

/// A listener that does nothing: the sessions stay idle.
struct Idle;

impl EventListener<LengthPrefixed> for Idle {
    fn on_message(&mut self, _: &mut Session<'_, LengthPrefixed>, _: &[u8]) {}
}

fn config(ip: Ipv4Address, last: u8, max_sockets: usize, tcp: TcpOptions) -> Config {
    let mut c = Config::new([2, 0, 0, 0, 9, last], Ipv4Cidr::new(ip, 24)).seed(last.into());
    c.max_sockets = max_sockets;
    c.tcp = tcp;
    c
}

/// Whether the binary installed [`Counting`] as its global allocator.
pub fn counting_installed() -> bool {
    drop(std::hint::black_box(Box::new(0u64)));
    INSTALLED.load(Ordering::Relaxed)
}

/// Opens `spec.sessions` idle sessions and measures the server side's heap.
pub fn run(spec: HeapSpec) -> io::Result<HeapOutcome> {
    if !counting_installed() {
        return Err(io::Error::other(
            "the counting allocator is not installed: the binary must declare \
             `#[global_allocator] static A: session::heap::Counting = session::heap::Counting;`",
        ));
    }
    let deadline = Deadline::new(spec.timeout, "opening idle sessions over the pipe");
    let link: Box<Link> = Box::new(Link::new());
    let (da, db) = link.split();
    let tcp = TcpOptions {
        rx_buffer: spec.buf,
        tx_buffer: spec.buf,
        ..TcpOptions::default()
    };
    // Every session, the listener's armed sockets, and one spare.
    let max_sockets = spec.sessions + spec.backlog + 1;
    let t = runtime::now();

    let s0 = snapshot();
    let mut server = on(SERVER, || {
        Stack::new(config(SERVER_IP, 1, max_sockets, tcp), da, t)
    })
    .map_err(|e| io_err("server stack", e))?;
    let s1 = snapshot();
    let mut engine = on(SERVER, || Engine::new(&server, t));
    let s2 = snapshot();
    let opts = ServerOptions {
        backlog: spec.backlog,
        tcp,
        ..ServerOptions::default()
    };
    on(SERVER, || {
        engine
            .tcp_server(
                &mut server,
                PORT,
                opts,
                Service::new(LengthPrefixed::U32_BE, Idle),
            )
            .map(|_| engine.poll(&mut server, runtime::now()))
    })
    .map_err(|e| io_err("tcp_server", e))?;
    let s3 = snapshot();
    let slots = max_sockets + 1;

    let mut client = on(CLIENT, || {
        Stack::new(config(CLIENT_IP, 2, spec.sessions + 1, tcp), db, t)
    })
    .map_err(|e| io_err("client stack", e))?;
    let remote = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT);
    // Connections in the handshake at once: below the backlog, so no SYN waits for a slot.
    let in_flight = (spec.backlog / 2).max(1);
    let (mut started, mut last_report) = (0usize, 0usize);
    let begin = Instant::now();
    while engine.session_count() < spec.sessions {
        if let Err(e) = deadline.check() {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{e}; {} of {} sessions open, {started} connects started",
                    engine.session_count(),
                    spec.sessions
                ),
            ));
        }
        on(CLIENT, || -> io::Result<()> {
            while started < spec.sessions && started - engine.session_count() < in_flight {
                match client.connect_with(remote, tcp) {
                    Ok(_) => started += 1,
                    // Too many SYNs not yet sent: poll first.
                    Err(Error::NoBufferSpace) => break,
                    Err(e) => return Err(io_err("connect", e)),
                }
            }
            client.poll(runtime::now());
            while client.next_event().is_some() {}
            Ok(())
        })?;
        on(SERVER, || engine.poll(&mut server, runtime::now()));
        let open = engine.session_count();
        if open >= last_report + spec.sessions.div_ceil(5) {
            last_report = open;
            log::info!(
                "heap: {open} of {} sessions open ({:.1} s)",
                spec.sessions,
                begin.elapsed().as_secs_f64()
            );
        }
    }
    let connect_time = begin.elapsed();
    // Let the last ACKs and window updates settle, then the sessions are idle.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(300) && !interrupted() {
        on(CLIENT, || {
            client.poll(runtime::now());
            while client.next_event().is_some() {}
        });
        on(SERVER, || engine.poll(&mut server, runtime::now()));
    }
    let s4 = snapshot();

    // The cost of driving many idle sessions: one engine poll, one poll_delay.
    let mut polls = Vec::new();
    let mut delays = Vec::new();
    for _ in 0..spec.idle_polls.max(1) {
        let a = Instant::now();
        engine.poll(&mut server, runtime::now());
        let b = Instant::now();
        std::hint::black_box(engine.poll_delay(&mut server, runtime::now()));
        let c = Instant::now();
        polls.push((b - a).as_secs_f64());
        delays.push((c - b).as_secs_f64());
    }
    let secs = |v: &[f64]| Duration::from_secs_f64(median(v).unwrap_or(0.0));
    let out = HeapOutcome {
        spec,
        max_sockets,
        slots,
        open: engine.session_count(),
        held: engine.held_bytes(),
        stats: engine.stats(),
        connect_time,
        idle_poll: secs(&polls),
        idle_poll_delay: secs(&delays),
        client_bytes: s4.live[usize::from(CLIENT)],
        s0,
        s1,
        s2,
        s3,
        s4,
    };
    // The stacks and the engine drop (uncounted) before the link they borrow.
    Ok(out)
}
