//! The session layer's task pool: `TaskPool` on its own (ordered vs round-robin dispatch,
//! config checks, a full queue), and `Pooled` servers over TAP with kernel clients in the
//! namespace: per-session order, backpressure that closes the TCP window, and
//! `SessionHandle`s used from other threads.
//!
//! Pool workers are real threads, so these tests use real threads and the real clock; each
//! engine runs on its own thread (the engine is not `Send`, so it is built there).

mod support;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ustack::runtime::{self, PollMode};
use ustack::session::codec::LengthPrefixed;
use ustack::session::tasks::{Dispatch, Full, PoolConfig, TaskPool};
use ustack::session::{
    EndpointId, Engine, EngineStats, EventListener, Pooled, Reject, ServerOptions, Service,
    Session, SessionError, SessionHandle,
};
use ustack::{Error, Stack};
use ustack_drivers::TapDevice;
use ustack_tests::{privileged, random_bytes, SeededRng, TapLink, STACK_IP};

type Lp = LengthPrefixed;

/// Generous bound for anything that must eventually happen.
const LIVENESS: Duration = Duration::from_secs(30);

/// The port every test server listens on (each test has its own namespace).
const PORT: u16 = 7000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A door handlers wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// Waits until `f` holds, panicking with `what` after [`LIVENESS`].
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + LIVENESS;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Neighbours out of order: 0 exactly when `seqs` is ascending.
fn descents(seqs: &[u32]) -> usize {
    seqs.windows(2).filter(|w| w[0] > w[1]).count()
}

/// A short random pause of up to `max_us` microseconds: mostly none or a yield, sometimes a
/// busy wait, sometimes a real sleep (whose wake-up alone takes tens of microseconds; fewer
/// of them keep the test quick on a loaded machine).
fn jitter(rng: &mut SeededRng, max_us: u64) {
    match rng.below(8) {
        0..=2 => {}
        3..=4 => std::thread::yield_now(),
        5..=6 => {
            let until = Instant::now() + Duration::from_micros(rng.below(max_us + 1));
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        _ => std::thread::sleep(Duration::from_micros(rng.below(max_us + 1))),
    }
}

/// Submits `task`, retrying while its queue is full (yielding, then, after a few refusals in
/// a row, sleeping a little so that spinning producers do not starve the workers on a small
/// machine); returns how many times it was refused.
fn submit_spinning<T: Send + 'static>(pool: &TaskPool<T>, key: u64, mut task: T) -> usize {
    let mut refused = 0;
    loop {
        match pool.try_submit(key, task) {
            Ok(()) => return refused,
            Err(Full(t)) => {
                refused += 1;
                task = t;
                match refused {
                    0..16 => std::thread::yield_now(),
                    _ => std::thread::sleep(Duration::from_micros(50)),
                }
            }
        }
    }
}

fn new_pool_err(config: PoolConfig) -> io::Error {
    match TaskPool::new(config, |_| |_: u32| {}) {
        Ok(_) => panic!("{config:?} was accepted"),
        Err(e) => e,
    }
}

/// How the engine thread runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `runtime::run_engine`, as an application would.
    RunEngine,
    /// The same loop by hand, which also runs probes sent by the test (and wakes at least
    /// every 2 ms to see them).
    Probed,
}

type Probe =
    Box<dyn FnOnce(&mut Stack<'static, TapDevice>, &mut Engine<'static>, EndpointId) + Send>;

/// What the engine thread reports after its loop ends and the engine is dropped.
#[derive(Debug)]
struct Final {
    stats: EngineStats,
    held: usize,
}

/// A ustack engine with one TCP server endpoint on [`PORT`], on its own thread.
struct Server {
    stop: Arc<AtomicBool>,
    probes: mpsc::Sender<Probe>,
    done: mpsc::Receiver<Final>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the engine thread; `build` adds the endpoint (and runs on that thread). Returns
    /// once the server listens.
    fn start<B>(device: TapDevice, mode: Mode, build: B) -> Server
    where
        B: FnOnce(&mut Stack<'static, TapDevice>, &mut Engine<'static>) -> EndpointId
            + Send
            + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (probes, probe_rx) = mpsc::channel::<Probe>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stack = Stack::new(support::config(), device, runtime::now()).expect("stack");
            let mut engine: Engine<'static> = Engine::new(&stack, runtime::now());
            let id = build(&mut stack, &mut engine);
            ready_tx.send(()).unwrap();
            match mode {
                Mode::RunEngine => {
                    runtime::run_engine(&mut stack, &mut engine, PollMode::Block, &flag)
                        .expect("run_engine");
                }
                Mode::Probed => {
                    let fd = stack.device().as_raw_fd();
                    let cap = ustack::smoltcp::time::Duration::from_millis(2);
                    while !flag.load(Ordering::Relaxed) {
                        engine.poll(&mut stack, runtime::now());
                        while let Ok(p) = probe_rx.try_recv() {
                            p(&mut stack, &mut engine, id);
                        }
                        let d = engine
                            .poll_delay(&mut stack, runtime::now())
                            .map_or(cap, |d| d.min(cap));
                        runtime::wait(fd, engine.wake_fd(), Some(d), PollMode::Block)
                            .expect("wait");
                    }
                }
            }
            let fin = Final {
                stats: engine.stats(),
                held: engine.held_bytes(),
            };
            drop(engine);
            drop(stack);
            let _ = done_tx.send(fin);
        });
        ready_rx
            .recv_timeout(LIVENESS)
            .expect("the engine thread starts its server");
        Server {
            stop,
            probes,
            done,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the engine thread (between two polls) and returns its result.
    fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Stack<'static, TapDevice>, &mut Engine<'static>, EndpointId) -> R
            + Send
            + 'static,
    ) -> R {
        let (tx, rx) = mpsc::channel();
        self.probes
            .send(Box::new(move |s, e, id| {
                let _ = tx.send(f(s, e, id));
            }))
            .expect("the engine thread is running");
        rx.recv_timeout(LIVENESS)
            .expect("the engine thread answers a probe")
    }

    /// The one open session's counters (bytes_in, pkgs_in, bytes_out, pkgs_out).
    fn session_counters(&self) -> Vec<[u64; 4]> {
        self.query(|stack, engine, id| {
            let mut v = Vec::new();
            engine.each_session(stack, id, runtime::now(), |s| {
                let st = s.stats();
                v.push([st.bytes_in, st.pkgs_in, st.bytes_out, st.pkgs_out]);
            });
            v
        })
    }

    /// Blocks the engine thread until the returned sender is dropped or sent to.
    fn freeze(&self) -> mpsc::Sender<()> {
        let (release, wait) = mpsc::channel::<()>();
        let (frozen_tx, frozen) = mpsc::channel();
        self.probes
            .send(Box::new(move |_, _, _| {
                frozen_tx.send(()).unwrap();
                let _ = wait.recv();
            }))
            .expect("the engine thread is running");
        frozen
            .recv_timeout(LIVENESS)
            .expect("the engine thread runs the freeze probe");
        release
    }

    /// Stops the loop; returns the final counters once the engine (and its pool) dropped.
    fn stop(mut self) -> Final {
        self.stop.store(true, Ordering::Relaxed);
        let fin = match self.done.recv_timeout(LIVENESS) {
            Ok(fin) => fin,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the engine thread did not finish: dropping the engine hung")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                match self.thread.take().expect("running").join() {
                    Err(p) => std::panic::resume_unwind(p),
                    Ok(()) => unreachable!("the engine thread always reports before it ends"),
                }
            }
        };
        self.thread.take().expect("running").join().unwrap();
        fin
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // No join: a hung engine thread must not hang the test that found it.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn server_addr() -> SocketAddr {
    SocketAddr::from((STACK_IP, PORT))
}

/// A kernel client in the link's namespace, connected to the test server.
fn connect(link: &TapLink) -> TcpStream {
    let conn = link
        .ns
        .run(|| TcpStream::connect_timeout(&server_addr(), LIVENESS))
        .expect("connect to the ustack server");
    conn.set_read_timeout(Some(LIVENESS)).unwrap();
    conn.set_write_timeout(Some(LIVENESS)).unwrap();
    conn
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn int_sockopt(fd: i32, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes for the duration of the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
    v
}

/// Bytes written to a kernel TCP socket that the peer has not acknowledged yet (SIOCOUTQ).
fn unacked(fd: i32) -> usize {
    let mut v: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the valid pointer.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut v as *mut libc::c_int) };
    assert_eq!(r, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
    v as usize
}

// ---------------------------------------------------------------------------------------
// 1. TaskPool on its own
// ---------------------------------------------------------------------------------------

/// Runs `keys` producers (one thread per key) submitting `per_key` tasks each to a pool of
/// `config`, whose handlers jitter then record `(key, seq)`. Returns the handled sequence
/// numbers per key, the refusals seen and the `on_room` calls.
fn run_pool(
    config: PoolConfig,
    keys: u64,
    per_key: u32,
    max_us: u64,
) -> (Vec<Vec<u32>>, usize, usize) {
    let handled: Arc<Vec<Mutex<Vec<u32>>>> =
        Arc::new((0..keys).map(|_| Mutex::new(Vec::new())).collect());
    let made = Mutex::new(Vec::new());
    let rooms = Arc::new(AtomicUsize::new(0));
    let pool = TaskPool::new(config, |w| {
        made.lock().unwrap().push(w);
        let (handled, mut rng) = (handled.clone(), SeededRng::new(0xC0FFEE + w as u64));
        move |(key, seq): (u64, u32)| {
            jitter(&mut rng, max_us);
            handled[key as usize].lock().unwrap().push(seq);
        }
    })
    .expect("a valid pool");
    let mut made = made.into_inner().unwrap();
    made.sort_unstable();
    assert_eq!(
        made,
        (0..config.workers).collect::<Vec<_>>(),
        "one handler per worker"
    );
    let r = rooms.clone();
    pool.on_room(Arc::new(move || {
        r.fetch_add(1, Ordering::Relaxed);
    }));
    let refused: usize = std::thread::scope(|s| {
        let producers: Vec<_> = (0..keys)
            .map(|key| {
                let pool = &pool;
                s.spawn(move || {
                    (0..per_key)
                        .map(|seq| submit_spinning(pool, key, (key, seq)))
                        .sum::<usize>()
                })
            })
            .collect();
        producers.into_iter().map(|p| p.join().unwrap()).sum()
    });
    // Dropping runs what is still queued, then joins the workers.
    drop(pool);
    let handled = Arc::try_unwrap(handled)
        .unwrap_or_else(|_| panic!("the workers are gone"))
        .into_iter()
        .map(|m| m.into_inner().unwrap())
        .collect();
    (handled, refused, rooms.load(Ordering::Relaxed))
}

#[test]
fn pool_ordered_dispatch_handles_each_keys_tasks_in_submission_order() {
    let config = PoolConfig {
        queues: 4,
        workers: 4,
        capacity: 16,
        dispatch: Dispatch::Ordered,
    };
    let (handled, refused, rooms) = run_pool(config, 8, 10_000, 50);
    let want: Vec<u32> = (0..10_000).collect();
    for (key, got) in handled.iter().enumerate() {
        assert_eq!(got.len(), 10_000, "key {key}: every task handled once");
        assert!(
            got == &want,
            "key {key}: handled out of order ({} descents)",
            descents(got)
        );
    }
    // Eight producers against sleeping handlers and 16-task queues: the queues filled up,
    // and every refusal was followed by a pop from a full queue, which calls on_room.
    assert!(
        refused > 0,
        "the queues never filled; the test exercised no backpressure"
    );
    assert!(rooms > 0, "{refused} refusals but on_room never ran");
}

#[test]
fn pool_round_robin_dispatch_on_one_key_reorders_tasks() {
    let config = PoolConfig {
        queues: 4,
        workers: 4,
        capacity: 64,
        dispatch: Dispatch::RoundRobin,
    };
    // Shows the ordered test is not vacuous: the same handlers over round-robin queues
    // finish one key's tasks out of order. Practically certain in one round; a few rounds
    // with longer sleeps keep it from ever being flaky.
    let mut seen = Vec::new();
    for round in 0..5u64 {
        let (handled, _, _) = run_pool(config, 1, 2_000, 50 << round);
        let got = &handled[0];
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..2_000).collect::<Vec<u32>>(),
            "each task handled exactly once"
        );
        let d = descents(got);
        seen.push(d);
        if d > 0 {
            eprintln!("round-robin pool: {d} descents in round {round}");
            return;
        }
    }
    panic!("round-robin kept one key's order in every round (descents {seen:?})");
}

#[test]
fn pool_config_validation_rejects_bad_shapes_with_invalid_input() {
    let ok = PoolConfig::per_worker(3, Dispatch::Ordered);
    assert_eq!(
        ok,
        PoolConfig {
            queues: 3,
            workers: 3,
            capacity: 1024,
            dispatch: Dispatch::Ordered
        }
    );
    assert_eq!(Dispatch::default(), Dispatch::RoundRobin);
    let bad = [
        // Ordered needs exactly one worker per queue.
        PoolConfig { workers: 6, ..ok },
        PoolConfig {
            queues: 2,
            workers: 1,
            ..ok
        },
        // Workers must be a multiple of queues.
        PoolConfig {
            queues: 3,
            workers: 4,
            capacity: 8,
            dispatch: Dispatch::RoundRobin,
        },
        PoolConfig {
            queues: 4,
            workers: 2,
            capacity: 8,
            dispatch: Dispatch::RoundRobin,
        },
        // Zero sizes.
        PoolConfig { queues: 0, ..ok },
        PoolConfig { workers: 0, ..ok },
        PoolConfig { capacity: 0, ..ok },
        PoolConfig {
            queues: 0,
            workers: 0,
            capacity: 0,
            dispatch: Dispatch::RoundRobin,
        },
    ];
    for config in bad {
        let e = new_pool_err(config);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{config:?}: {e}");
    }
    // Several workers per queue are fine for round-robin, and they all work.
    let rr = PoolConfig {
        queues: 2,
        workers: 4,
        capacity: 8,
        dispatch: Dispatch::RoundRobin,
    };
    let (handled, _, _) = run_pool(rr, 2, 500, 5);
    for got in handled {
        let mut got = got;
        got.sort_unstable();
        assert_eq!(got, (0..500).collect::<Vec<u32>>());
    }
}

#[test]
fn pool_full_queue_refuses_and_returns_the_task_then_signals_room() {
    let gate = Arc::new(Gate::default());
    let (started_tx, started) = mpsc::channel();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let config = PoolConfig {
        queues: 1,
        workers: 1,
        capacity: 3,
        dispatch: Dispatch::Ordered,
    };
    let pool = TaskPool::new(config, |_| {
        let (gate, started_tx, handled) = (gate.clone(), started_tx.clone(), handled.clone());
        move |t: String| {
            started_tx.send(t.clone()).unwrap();
            gate.wait();
            handled.lock().unwrap().push(t);
        }
    })
    .unwrap();
    let rooms = Arc::new(AtomicUsize::new(0));
    let r = rooms.clone();
    pool.on_room(Arc::new(move || {
        r.fetch_add(1, Ordering::SeqCst);
    }));
    assert!(!pool.is_full(Some(9)) && !pool.is_full(None));
    pool.try_submit(9, "t0".to_string()).unwrap();
    // The worker takes t0 and blocks in it: the queue is empty again.
    assert_eq!(started.recv_timeout(LIVENESS).unwrap(), "t0");
    assert_eq!(pool.queued(), 0);
    for t in ["t1", "t2", "t3"] {
        pool.try_submit(9, t.to_string()).unwrap();
    }
    assert_eq!(pool.queued(), 3);
    assert!(pool.is_full(Some(9)), "the key's queue is full");
    assert!(pool.is_full(Some(12345)), "one queue: every key maps to it");
    assert!(pool.is_full(None));
    let Err(Full(back)) = pool.try_submit(9, "t4".to_string()) else {
        panic!("a full queue took a task");
    };
    assert_eq!(back, "t4", "the refused task comes back intact");
    assert_eq!(pool.queued(), 3, "a refusal does not grow the queue");
    assert_eq!(rooms.load(Ordering::SeqCst), 0, "no room yet");
    gate.open();
    // The worker pops t1 from the full queue: room, and on_room says so.
    wait_until("on_room after the full queue got room", || {
        rooms.load(Ordering::SeqCst) >= 1
    });
    pool.try_submit(9, back).unwrap();
    drop(pool);
    assert_eq!(*handled.lock().unwrap(), ["t0", "t1", "t2", "t3", "t4"]);
}

// ---------------------------------------------------------------------------------------
// 2. Ordered and round-robin Pooled servers end to end
// ---------------------------------------------------------------------------------------

/// Echoes each package from a pool worker after a random sleep of up to `max_us`.
#[derive(Clone)]
struct SleepyEcho {
    max_us: u64,
    salt: u64,
    echoed: Arc<AtomicUsize>,
    write_errors: Arc<Mutex<Vec<SessionError>>>,
    closes: Arc<AtomicUsize>,
}

impl EventListener<Lp> for SleepyEcho {
    fn on_message(&mut self, s: &mut Session<'_, Lp>, pkg: &[u8]) {
        let seq = u32::from_be_bytes(pkg[4..8].try_into().unwrap());
        let mut rng = SeededRng::new(self.salt ^ (s.id().0 << 32) ^ u64::from(seq));
        let us = rng.below(self.max_us + 1);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
        match s.write_pkg(&pkg) {
            Ok(()) => {
                self.echoed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.write_errors.lock().unwrap().push(e),
        }
    }

    fn on_close(&mut self, _: &mut Session<'_, Lp>) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sends `msgs` packages `[client u32][seq u32]` and returns the sequence numbers echoed,
/// in arrival order (checking each echo is a whole 8-byte package of this client).
fn seq_client(conn: TcpStream, client: u32, msgs: u32) -> Vec<u32> {
    let mut reader = conn.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut buf = vec![0u8; msgs as usize * 12];
        reader.read_exact(&mut buf).map(|_| buf)
    });
    let mut out = Vec::with_capacity(msgs as usize * 12);
    for seq in 0..msgs {
        out.extend_from_slice(&8u32.to_be_bytes());
        out.extend_from_slice(&client.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }
    (&conn).write_all(&out).expect("client writes");
    let echoed = reading.join().unwrap().expect("client reads every echo");
    echoed
        .chunks_exact(12)
        .map(|f| {
            assert_eq!(
                f[..4],
                8u32.to_be_bytes(),
                "client {client}: an echo's length prefix"
            );
            assert_eq!(
                f[4..8],
                client.to_be_bytes(),
                "client {client}: another session's echo"
            );
            u32::from_be_bytes(f[8..12].try_into().unwrap())
        })
        .collect()
}

/// Runs 8 kernel clients of `msgs` messages against a `Pooled` echo of `config`; returns
/// each client's echoed sequence numbers after checking the server's counters.
fn pooled_echo_run(config: PoolConfig, msgs: u32, max_us: u64) -> Vec<Vec<u32>> {
    const CLIENTS: u32 = 8;
    let mut link = TapLink::new();
    let listener = SleepyEcho {
        max_us,
        salt: max_us,
        echoed: Arc::default(),
        write_errors: Arc::default(),
        closes: Arc::default(),
    };
    let l = listener.clone();
    let server = Server::start(link.take_device(), Mode::RunEngine, move |stack, engine| {
        let pooled = Pooled::new(engine, Lp::U32_BE, l, config).expect("pool");
        engine
            .tcp_server(stack, PORT, ServerOptions::default(), pooled)
            .expect("server")
    });
    let conns: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(&link)).collect();
    let results: Vec<Vec<u32>> = std::thread::scope(|s| {
        let clients: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(c, conn)| s.spawn(move || seq_client(conn, c as u32, msgs)))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    // The clients closed: every session ends cleanly.
    wait_until("8 sessions closed", || {
        listener.closes.load(Ordering::SeqCst) == 8
    });
    let fin = server.stop();
    assert_eq!(*listener.write_errors.lock().unwrap(), []);
    assert_eq!(
        listener.echoed.load(Ordering::SeqCst),
        (CLIENTS * msgs) as usize
    );
    assert_eq!(
        (fin.stats.opened, fin.stats.closed, fin.stats.errors),
        (8, 8, 0)
    );
    assert_eq!(fin.held, 0);
    results
}

#[test]
fn pooled_ordered_echo_keeps_per_session_order_for_8_kernel_clients() {
    if !privileged() {
        return;
    }
    let started = Instant::now();
    let results = pooled_echo_run(PoolConfig::per_worker(4, Dispatch::Ordered), 10_000, 20);
    let want: Vec<u32> = (0..10_000).collect();
    for (c, got) in results.iter().enumerate() {
        assert_eq!(got.len(), 10_000);
        assert!(
            got == &want,
            "client {c}: echoes out of order ({} descents)",
            descents(got)
        );
    }
    eprintln!("ordered pooled echo, 8 x 10,000: {:?}", started.elapsed());
}

#[test]
fn pooled_round_robin_echo_reorders_some_session() {
    if !privileged() {
        return;
    }
    let config = PoolConfig {
        queues: 4,
        workers: 4,
        capacity: 1024,
        dispatch: Dispatch::RoundRobin,
    };
    let mut seen = Vec::new();
    for max_us in [50, 200, 1000] {
        let results = pooled_echo_run(config, 2_000, max_us);
        let mut total = 0;
        for got in &results {
            let mut sorted = got.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..2_000).collect::<Vec<u32>>(),
                "none lost, none twice"
            );
            total += descents(got);
        }
        seen.push(total);
        if total > 0 {
            eprintln!("round-robin pooled echo: {total} descents with sleeps up to {max_us} us");
            return;
        }
    }
    panic!("round-robin echoed every session in order (descents per round {seen:?})");
}

// ---------------------------------------------------------------------------------------
// 3. Backpressure
// ---------------------------------------------------------------------------------------

/// Echoes from a pool worker once the gate opens; counts handler entries.
#[derive(Clone)]
struct GatedEcho {
    gate: Arc<Gate>,
    started: Arc<AtomicUsize>,
    write_errors: Arc<Mutex<Vec<SessionError>>>,
    closes: Arc<AtomicUsize>,
}

impl GatedEcho {
    fn new() -> Self {
        GatedEcho {
            gate: Arc::default(),
            started: Arc::default(),
            write_errors: Arc::default(),
            closes: Arc::default(),
        }
    }
}

impl EventListener<Lp> for GatedEcho {
    fn on_message(&mut self, s: &mut Session<'_, Lp>, pkg: &[u8]) {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.gate.wait();
        if let Err(e) = s.write_pkg(&pkg) {
            self.write_errors.lock().unwrap().push(e);
        }
    }

    fn on_close(&mut self, _: &mut Session<'_, Lp>) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn pooled_backpressure_pauses_reading_closes_the_window_and_loses_nothing() {
    if !privileged() {
        return;
    }
    const MSG: usize = 1024;
    const N: usize = 4096; // 4 MiB: far more than can be in flight while the handler blocks
    const CAP: usize = 4;
    const RX_BUFFER: usize = 64 * 1024; // ustack's default TCP receive buffer
    let config = PoolConfig {
        queues: 1,
        workers: 1,
        capacity: CAP,
        dispatch: Dispatch::Ordered,
    };
    let mut link = TapLink::new();
    let listener = GatedEcho::new();
    let l = listener.clone();
    let server = Server::start(link.take_device(), Mode::Probed, move |stack, engine| {
        let pooled = Pooled::new(engine, Lp::U32_BE, l, config).expect("pool");
        engine
            .tcp_server(stack, PORT, ServerOptions::default(), pooled)
            .expect("server")
    });
    let stream: Vec<u8> = (0..N as u32)
        .flat_map(|seq| {
            let mut body = seq.to_be_bytes().to_vec();
            body.extend_from_slice(&random_bytes(u64::from(seq), MSG - 8));
            frame(&body)
        })
        .collect();
    assert_eq!(stream.len(), N * MSG);
    let conn = connect(&link);
    let fd = conn.as_raw_fd();

    // Write until the kernel takes nothing more for 500 ms.
    conn.set_nonblocking(true).unwrap();
    let mut written = 0;
    let mut progress = Instant::now();
    while written < stream.len() {
        let end = (written + 64 * 1024).min(stream.len());
        match (&conn).write(&stream[written..end]) {
            Ok(n) => {
                written += n;
                progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if progress.elapsed() >= Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("client write: {e}"),
        }
    }
    assert!(
        written < stream.len(),
        "the kernel took all {written} bytes: no backpressure"
    );
    let outq = unacked(fd);
    let sndbuf = int_sockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF) as usize;
    let acked = written - outq;

    // One task in the (blocked) worker, CAP in the queue, nothing more taken from the socket.
    assert_eq!(
        listener.started.load(Ordering::SeqCst),
        1,
        "one handler runs (and waits)"
    );
    let counters = server.session_counters();
    assert_eq!(counters.len(), 1, "one session");
    let [bytes_in, pkgs_in, bytes_out, _] = counters[0];
    assert_eq!(
        (bytes_in, pkgs_in, bytes_out),
        (((CAP + 1) * MSG) as u64, (CAP + 1) as u64, 0),
        "the engine takes capacity + 1 packages, then pauses"
    );
    let (stats, held) = server.query(|_, e, _| (e.stats(), e.held_bytes()));
    assert!(stats.paused >= 1, "reading never paused: {stats:?}");
    assert_eq!(
        held, 0,
        "1 KiB packages are decoded in place: nothing assembled or pending"
    );
    // ustack acknowledged what the engine took plus at most its receive buffer; the window
    // is closed (the kernel holds the rest), and that buffer really filled up.
    let consumed = bytes_in as usize;
    assert!(
        acked <= consumed + RX_BUFFER,
        "ustack acknowledged {acked} bytes, more than {consumed} taken + {RX_BUFFER} buffered"
    );
    assert!(
        acked >= consumed + RX_BUFFER / 2,
        "ustack acknowledged only {acked} bytes: its receive buffer did not fill"
    );
    assert!(
        outq > 0,
        "the kernel holds unsent bytes behind the closed window"
    );
    // So the kernel took at most what ustack acknowledged plus its own send buffer
    // (SO_SNDBUF, which Linux may overshoot by one skb of up to 64 KiB: it checks for room
    // before it fills a new one). Far below the 4 MiB offered.
    let bound = consumed + RX_BUFFER + sndbuf + 64 * 1024;
    assert!(
        written <= bound,
        "{written} written (acked {acked}, unacked {outq}) > {consumed} taken + {RX_BUFFER} \
         buffered + SO_SNDBUF {sndbuf} + 64 KiB"
    );
    eprintln!(
        "backpressure: written {written}, acked by ustack {acked}, kernel unacked {outq}, \
         SO_SNDBUF {sndbuf}, paused {}",
        stats.paused
    );

    // Open the gate: everything is echoed, in order, byte for byte, while the queue never
    // holds more than its capacity.
    conn.set_nonblocking(false).unwrap();
    let mut reader = conn.try_clone().unwrap();
    let total = stream.len();
    let reading = std::thread::spawn(move || {
        let mut got = vec![0u8; total];
        reader.read_exact(&mut got).map(|_| got)
    });
    let writing = {
        let conn = conn.try_clone().unwrap();
        let rest = stream[written..].to_vec();
        std::thread::spawn(move || (&conn).write_all(&rest))
    };
    listener.gate.open();
    let mut max_backlog = 0;
    let mut samples = 0;
    while !writing.is_finished() || !reading.is_finished() {
        let started = listener.started.clone();
        let (bytes_in, started) = server.query(move |stack, engine, id| {
            let mut b = 0;
            engine.each_session(stack, id, runtime::now(), |s| b = s.stats().bytes_in);
            // Read after bytes_in: what was taken but not yet started is queued (or popped).
            (b, started.load(Ordering::SeqCst))
        });
        let backlog = (bytes_in as usize / MSG).saturating_sub(started);
        max_backlog = max_backlog.max(backlog);
        samples += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    writing.join().unwrap().expect("the client writes the rest");
    let got = reading
        .join()
        .unwrap()
        .expect("the client reads every echo");
    assert!(got == stream, "echoed bytes differ from what was sent");
    assert!(
        max_backlog <= CAP + 1,
        "{max_backlog} tasks taken but not started (capacity {CAP} + 1 popped)"
    );
    assert_eq!(listener.started.load(Ordering::SeqCst), N);
    assert_eq!(*listener.write_errors.lock().unwrap(), []);
    let counters = server.session_counters();
    assert_eq!(
        counters,
        [[total as u64, N as u64, total as u64, N as u64]],
        "bytes_in, pkgs_in, bytes_out, pkgs_out"
    );
    drop(conn);
    wait_until("the session closed", || {
        listener.closes.load(Ordering::SeqCst) == 1
    });
    let fin = server.stop();
    assert_eq!(
        (fin.stats.opened, fin.stats.closed, fin.stats.errors),
        (1, 1, 0)
    );
    assert_eq!(fin.held, 0);
    eprintln!("backpressure: {samples} samples, largest backlog {max_backlog}");
}

// ---------------------------------------------------------------------------------------
// 4. SessionHandle from another thread
// ---------------------------------------------------------------------------------------

/// Hands each session's handle out from `on_open` (stack thread) and reports closes.
struct HandleOut {
    handles: mpsc::Sender<SessionHandle>,
    closes: mpsc::Sender<u64>,
}

impl EventListener<Lp> for HandleOut {
    fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
        let h = s.handle().expect("handles are enabled");
        assert_eq!(h.id(), s.id());
        self.handles.send(h).unwrap();
        Ok(())
    }

    fn on_message(&mut self, _: &mut Session<'_, Lp>, _: &[u8]) {}

    fn on_close(&mut self, s: &mut Session<'_, Lp>) {
        let _ = self.closes.send(s.id().0);
    }
}

/// A server whose sessions' handles come out of `handles`; `closes` reports `on_close`.
fn handle_server(
    link: &mut TapLink,
    mode: Mode,
) -> (Server, mpsc::Receiver<SessionHandle>, mpsc::Receiver<u64>) {
    let (htx, handles) = mpsc::channel();
    let (ctx, closes) = mpsc::channel();
    let server = Server::start(link.take_device(), mode, move |stack, engine| {
        engine.enable_handles().expect("eventfd");
        let service = Service::new(
            Lp::U32_BE,
            HandleOut {
                handles: htx,
                closes: ctx,
            },
        );
        engine
            .tcp_server(stack, PORT, ServerOptions::default(), service)
            .expect("server")
    });
    (server, handles, closes)
}

/// Reads length-prefixed packages until EOF.
fn read_packages(conn: &mut TcpStream) -> io::Result<Vec<Vec<u8>>> {
    let mut all = Vec::new();
    conn.read_to_end(&mut all)?;
    let mut pkgs = Vec::new();
    let mut rest = &all[..];
    while !rest.is_empty() {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        pkgs.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    Ok(pkgs)
}

#[test]
fn session_handle_writes_and_closes_from_another_thread() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let (server, handles, closes) = handle_server(&mut link, Mode::RunEngine);
    let mut conn = connect(&link);
    let handle = handles
        .recv_timeout(LIVENESS)
        .expect("on_open hands out a handle");
    assert!(handle.is_open());
    let pkgs: Vec<Vec<u8>> = (0..100u64)
        .map(|i| random_bytes(i, 1 + (i as usize * 37) % 2000))
        .collect();
    // The writer is another thread than both the stack thread and this one.
    let writer = {
        let (handle, pkgs) = (handle.clone(), pkgs.clone());
        std::thread::spawn(move || {
            let mut codec = Lp::U32_BE;
            for p in &pkgs {
                handle.write_pkg(&mut codec, &&p[..])?;
            }
            Ok::<_, SessionError>(handle)
        })
    };
    let mut got = Vec::new();
    for _ in 0..100 {
        let mut h = [0u8; 4];
        conn.read_exact(&mut h).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(h) as usize];
        conn.read_exact(&mut body).unwrap();
        got.push(body);
    }
    assert!(got == pkgs, "the packages arrive whole and in order");
    let handle2 = writer.join().unwrap().expect("every write_pkg is accepted");
    // Close from the writer's clone; the peer sees EOF with nothing more.
    handle2.close().expect("close an open session");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).expect("EOF");
    assert_eq!(rest, b"");
    assert_eq!(closes.recv_timeout(LIVENESS).unwrap(), handle.id().0);
    // The stack thread forgot the session before its FIN left: every clone knows.
    let mut codec = Lp::U32_BE;
    for h in [&handle, &handle2] {
        assert!(!h.is_open());
        assert_eq!(h.write(b"x"), Err(SessionError::Socket(Error::Closed)));
        assert_eq!(
            h.write_pkg(&mut codec, &&b"x"[..]),
            Err(SessionError::Socket(Error::Closed))
        );
        assert_eq!(h.close(), Err(SessionError::Socket(Error::Closed)));
    }
    drop(conn);
    let fin = server.stop();
    assert_eq!(
        (fin.stats.opened, fin.stats.closed, fin.stats.errors),
        (1, 1, 0)
    );
    assert_eq!(fin.held, 0);
}

/// `close()` is queued to the stack thread, but takes effect for handles at once: they say
/// closed and refuse writes, while writes made before the close are still delivered.
#[test]
fn session_handle_close_refuses_later_writes_at_once_and_delivers_earlier_ones() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let (server, handles, closes) = handle_server(&mut link, Mode::Probed);
    let mut conn = connect(&link);
    let handle = handles.recv_timeout(LIVENESS).unwrap();
    handle.write(b"before").unwrap();
    let release = server.freeze();
    handle.close().unwrap();
    assert!(!handle.is_open(), "closed for every handle at once");
    assert_eq!(
        handle.write(b"after"),
        Err(SessionError::Socket(Error::Closed)),
        "a write after the close is refused"
    );
    assert_eq!(handle.close(), Err(SessionError::Socket(Error::Closed)));
    drop(release);
    let mut all = Vec::new();
    conn.read_to_end(&mut all).unwrap();
    assert_eq!(
        all, b"before",
        "the write made before the close is delivered"
    );
    assert_eq!(closes.recv_timeout(LIVENESS).unwrap(), handle.id().0);
    assert!(!handle.is_open());
    let fin = server.stop();
    assert_eq!((fin.stats.closed, fin.stats.errors), (1, 0));
}

/// A client that half-closes after its requests still gets every reply: the session waits
/// for the pool to handle what it queued before it closes (an inline `Service` answers
/// before it even sees the FIN).
#[test]
fn pooled_session_waits_for_queued_replies_after_the_peer_half_closes() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let listener = GatedEcho::new();
    let l = listener.clone();
    let server = Server::start(link.take_device(), Mode::Probed, move |stack, engine| {
        let pooled = Pooled::new(
            engine,
            Lp::U32_BE,
            l,
            PoolConfig::per_worker(1, Dispatch::Ordered),
        )
        .expect("pool");
        engine
            .tcp_server(stack, PORT, ServerOptions::default(), pooled)
            .expect("server")
    });
    let mut conn = connect(&link);
    let mut sent = Vec::new();
    for k in 0..3u8 {
        sent.extend(frame(&[k; 10]));
    }
    conn.write_all(&sent).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    wait_until("the first message with the worker", || {
        listener.started.load(Ordering::SeqCst) == 1
    });
    // The FIN arrived while the worker is held: the session must not end yet.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        listener.closes.load(Ordering::SeqCst),
        0,
        "closed with replies owed"
    );
    listener.gate.open();
    let mut all = Vec::new();
    conn.read_to_end(&mut all).unwrap();
    assert_eq!(
        all, sent,
        "every reply reached the half-closed client, in order"
    );
    wait_until("on_close", || listener.closes.load(Ordering::SeqCst) == 1);
    assert!(listener.write_errors.lock().unwrap().is_empty());
    let fin = server.stop();
    assert_eq!(
        (fin.stats.opened, fin.stats.closed, fin.stats.errors),
        (1, 1, 0)
    );
}

// ---------------------------------------------------------------------------------------
// Regressions: a draining session is closed for its handles; dropping an engine never hangs
// ---------------------------------------------------------------------------------------

/// After `on_close` ran for a session that still drains queued output, its handles keep
/// saying it is open and accept writes (which are dropped): `forget_remote` runs only when
/// the slot is freed after the drain, not when the session ends.
#[test]
fn session_handle_reports_closed_once_on_close_ran_even_while_draining() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let (server, handles, closes) = handle_server(&mut link, Mode::Probed);
    let mut conn = connect(&link);
    let handle = handles.recv_timeout(LIVENESS).unwrap();
    // The client reads nothing yet: 800 KiB overflow every buffer, the rest stays queued.
    let pkgs: Vec<Vec<u8>> = (0..50u64).map(|i| random_bytes(i, 16 * 1024)).collect();
    let mut codec = Lp::U32_BE;
    for p in &pkgs {
        handle.write_pkg(&mut codec, &&p[..]).unwrap();
    }
    handle.close().unwrap();
    assert_eq!(
        closes.recv_timeout(LIVENESS).unwrap(),
        handle.id().0,
        "on_close ran"
    );
    let held = server.query(|_, e, _| e.held_bytes());
    assert!(held > 0, "the session drains queued output");
    let open_after_close = handle.is_open();
    let late_write = handle.write(b"late");
    // The drain still completes.
    let got = read_packages(&mut conn).unwrap();
    assert!(got == pkgs, "every package before the close arrives");
    assert!(!handle.is_open());
    drop(server);
    assert_eq!(
        (open_after_close, late_write),
        (false, Err(SessionError::Socket(Error::Closed))),
        "(is_open(), write()) after on_close ran"
    );
}

/// Dropping an engine whose pool workers still have more than `COMMAND_QUEUE` writes to
/// make hangs: `TaskPool::drop` joins the workers, which wait in `Shared::push` for room in
/// the command queue that only the (no longer polling) stack thread makes.
#[test]
fn dropping_an_engine_whose_workers_have_many_writes_left_does_not_hang() {
    if !privileged() {
        return;
    }
    const MSGS: usize = 5_000; // > COMMAND_QUEUE (4096), 8 bytes each: fits the window
    let mut link = TapLink::new();
    let listener = GatedEcho::new();
    let l = listener.clone();
    let config = PoolConfig {
        queues: 1,
        workers: 1,
        capacity: 8192,
        dispatch: Dispatch::Ordered,
    };
    let server = Server::start(link.take_device(), Mode::Probed, move |stack, engine| {
        let pooled = Pooled::new(engine, Lp::U32_BE, l, config).expect("pool");
        engine
            .tcp_server(stack, PORT, ServerOptions::default(), pooled)
            .expect("server")
    });
    let conn = connect(&link);
    let stream: Vec<u8> = (0..MSGS as u32)
        .flat_map(|k| frame(&k.to_be_bytes()))
        .collect();
    (&conn).write_all(&stream).unwrap();
    wait_until("every message queued for the pool", || {
        server.session_counters().first().map(|c| c[0]) == Some(stream.len() as u64)
    });
    // The stack thread stops taking commands; the worker fills the command queue.
    let release = server.freeze();
    listener.gate.open();
    wait_until("the worker blocks on the full command queue", || {
        listener.started.load(Ordering::SeqCst) > ustack::session::COMMAND_QUEUE
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        listener.started.load(Ordering::SeqCst),
        ustack::session::COMMAND_QUEUE + 1,
        "the worker waits in its write"
    );
    // Stop: the loop ends without another poll and the engine is dropped.
    server.stop.store(true, Ordering::Relaxed);
    drop(release);
    let fin = server.stop();
    assert_eq!(fin.stats.opened, 1);
    drop(conn);
}
