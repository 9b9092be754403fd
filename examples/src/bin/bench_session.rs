//! Benchmarks of the session layer, in one run:
//!
//! - **echo**: messages per second for 1, 10 and 100 sessions of u32-BE length-prefixed
//!   echo over a TAP, served by ustack inline (`Service`) and on a task pool (`Pooled`,
//!   round-robin and ordered), against the kernel over veth with the same codec and the same
//!   kernel `std::net` clients (the anchor). Ping-pong, and optionally pipelined.
//! - **pool**: the task pool's dispatch cost per task for the 1:N, 1:1 and M:N queue layouts,
//!   with `std::sync::mpsc` as the reference.
//! - **heap**: heap bytes per idle session, 10 000 sessions over the in-memory pipe, counted
//!   by this binary's global allocator.
//!
//! Progress goes to stderr, markdown tables to stdout. The echo part needs root (network
//! namespaces, TAP and veth); the pool and heap parts do not (`--only pool,heap`). Everything
//! created is removed on exit, on error, on panic and on Ctrl-C.
//!
//! ```text
//! sudo target/release/bench_session [--only echo,pool,heap] [--repeat N] [--duration SECS]
//!                                   [--sessions 1,10,100] [--window 1,16] [--servers LIST] ...
//! ```

#[allow(dead_code)] // bench_tcp's flows, counters and kernel peer are not used here
#[path = "../bench/mod.rs"]
mod bench;
#[path = "../bench/session.rs"]
mod session;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use session::echo::{EchoOutcome, EchoSpec, Server};
use session::heap::{HeapOutcome, HeapSpec};
use session::pool::{Model, PoolOutcome, PoolSpec};
use session::{grouped, median, spread, Placement};

#[global_allocator]
static ALLOC: session::heap::Counting = session::heap::Counting;

const USAGE: &str = "\
usage: bench_session [options]
  --only LIST         parts to run: echo, pool, heap (default all; echo needs root, pool and
                      heap do not)
  --repeat N          runs of every echo and pool cell; the report gives the median (default 3)
  --duration SECS     measured time per echo cell (default 2; decimals allowed)
  --warmup SECS       untimed echo traffic before the measured time (default 0.3)
  --sessions LIST     concurrent sessions per echo cell (default 1,10,100)
  --window LIST       messages each session keeps outstanding: 1 is request/response
                      ping-pong, more is pipelined (default 1,16)
  --size BYTES        message body; the u32-BE length prefix adds 4 (default 64, at least 12)
  --servers LIST      echo servers: kernel (epoll over veth, the anchor), inline (ustack
                      Service), pool-rr, pool-ordered (ustack Pooled) (default all)
  --workers N         pool echo rows: PoolConfig::per_worker(N, RoundRobin|Ordered) (default 2)
  --clients N         client threads the sessions are spread over (default 1)
  --backlog N         ustack echo listener's backlog: sockets kept in LISTEN, which every
                      poll walks (default 64, ServerOptions::default())
  --tasks N           tasks per pool cell (default 500000; `_` separators allowed)
  --producers LIST    producer threads per pool cell (default 1,2)
  --pool-workers N    workers of every pool model (default 4)
  --pool-queues M     queues of the M:N model; must divide --pool-workers (default 2)
  --capacity N        tasks one pool queue holds, also the mpsc bound (default 1024)
  --heap-sessions N   idle sessions of the heap part (default 10000)
  --heap-buf SIZE     smoltcp rx and tx buffer of every socket in the heap part (default 4K)
  --idle-polls N      heap part: idle Engine::poll + poll_delay calls timed at the end
                      (default 200; more for profiling them)
  --placement LIST    where the threads of echo and pool cells run: one-cpu (every thread
                      on CPU 0), free (unpinned) (default one-cpu,free)
  --timeout SECS      limit for one echo cell's setup, one pool cell, and the heap part
                      (default 60)
the echo part creates network namespaces, TAP and veth interfaces (all removed on exit)";

struct Args {
    echo: bool,
    pool: bool,
    heap: bool,
    repeat: usize,
    duration: Duration,
    warmup: Duration,
    sessions: Vec<usize>,
    windows: Vec<usize>,
    size: usize,
    servers: Vec<Server>,
    workers: usize,
    clients: usize,
    backlog: usize,
    tasks: u64,
    producers: Vec<usize>,
    pool_workers: usize,
    pool_queues: usize,
    capacity: usize,
    heap_sessions: usize,
    heap_buf: usize,
    idle_polls: usize,
    placements: Vec<Placement>,
    timeout: Duration,
}

fn parse_num(arg: &str, v: &str) -> Result<u64, String> {
    v.replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad {arg} `{v}`: expected a positive number"))
}

fn parse_secs(arg: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad {arg} `{v}`: expected seconds, e.g. 3 or 0.5"))
}

fn parse_list(arg: &str, v: &str) -> Result<Vec<usize>, String> {
    v.split(',')
        .map(|w| parse_num(arg, w.trim()).map(|n| n as usize))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        echo: true,
        pool: true,
        heap: true,
        repeat: 3,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(300),
        sessions: vec![1, 10, 100],
        windows: vec![1, 16],
        size: 64,
        servers: Server::ALL.to_vec(),
        workers: 2,
        clients: 1,
        backlog: ustack::session::ServerOptions::default().backlog,
        tasks: 500_000,
        producers: vec![1, 2],
        pool_workers: 4,
        pool_queues: 2,
        capacity: 1024,
        heap_sessions: 10_000,
        heap_buf: 4096,
        idle_polls: 200,
        placements: Placement::ALL.to_vec(),
        timeout: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--only" => {
                let v = value()?;
                (a.echo, a.pool, a.heap) = (false, false, false);
                for w in v.split(',') {
                    match w.trim() {
                        "echo" => a.echo = true,
                        "pool" => a.pool = true,
                        "heap" => a.heap = true,
                        other => return Err(format!("unknown part `{other}` in --only\n{USAGE}")),
                    }
                }
            }
            "--repeat" => a.repeat = parse_num(&arg, &value()?)? as usize,
            "--duration" => {
                a.duration = parse_secs(&arg, &value()?)?;
                if a.duration < Duration::from_millis(100) {
                    return Err("--duration must be at least 0.1 s".into());
                }
            }
            "--warmup" => a.warmup = parse_secs(&arg, &value()?)?,
            "--sessions" => {
                a.sessions = parse_list(&arg, &value()?)?;
                if let Some(n) = a.sessions.iter().find(|&&n| n > 1000) {
                    return Err(format!(
                        "bad --sessions: {n} is more than the 1000 the TAP rows allow (ustack's default max_sockets is 1024)"
                    ));
                }
            }
            "--window" => a.windows = parse_list(&arg, &value()?)?,
            "--size" => {
                let v = value()?;
                let n = parse_num(&arg, &v)? as usize;
                if !(session::echo::MIN_SIZE..=session::echo::MAX_SIZE).contains(&n) {
                    return Err(format!(
                        "bad --size `{v}`: between {} (session and sequence number) and {}",
                        session::echo::MIN_SIZE,
                        session::echo::MAX_SIZE
                    ));
                }
                a.size = n;
            }
            "--servers" => {
                let v = value()?;
                a.servers = Vec::new();
                for w in v.split(',') {
                    match Server::parse(w.trim()) {
                        Some(s) if !a.servers.contains(&s) => a.servers.push(s),
                        Some(_) => {}
                        None => {
                            return Err(format!(
                                "unknown server `{}` in --servers\n{USAGE}",
                                w.trim()
                            ))
                        }
                    }
                }
                a.servers
                    .sort_by_key(|s| Server::ALL.iter().position(|x| x == s));
            }
            "--workers" => a.workers = parse_num(&arg, &value()?)? as usize,
            "--clients" => a.clients = parse_num(&arg, &value()?)? as usize,
            "--backlog" => {
                let v = value()?;
                a.backlog = parse_num(&arg, &v)? as usize;
                if a.backlog > ustack::MAX_BACKLOG {
                    return Err(format!(
                        "bad --backlog `{v}`: at most {}",
                        ustack::MAX_BACKLOG
                    ));
                }
            }
            "--tasks" => a.tasks = parse_num(&arg, &value()?)?,
            "--producers" => a.producers = parse_list(&arg, &value()?)?,
            "--pool-workers" => a.pool_workers = parse_num(&arg, &value()?)? as usize,
            "--pool-queues" => a.pool_queues = parse_num(&arg, &value()?)? as usize,
            "--capacity" => a.capacity = parse_num(&arg, &value()?)? as usize,
            "--heap-sessions" => {
                let v = value()?;
                a.heap_sessions = parse_num(&arg, &v)? as usize;
                if a.heap_sessions > 16_000 {
                    return Err(format!(
                        "bad --heap-sessions `{v}`: at most 16000 (the client's ephemeral ports)"
                    ));
                }
            }
            "--heap-buf" => {
                let v = value()?;
                a.heap_buf = bench::parse_size(&v).map_err(|e| format!("bad {arg}: {e}"))? as usize;
            }
            "--idle-polls" => a.idle_polls = parse_num(&arg, &value()?)? as usize,
            "--placement" => {
                let v = value()?;
                a.placements = Vec::new();
                for w in v.split(',') {
                    match Placement::parse(w.trim()) {
                        Some(p) if !a.placements.contains(&p) => a.placements.push(p),
                        Some(_) => {}
                        None => {
                            return Err(format!(
                                "unknown placement `{}` in --placement\n{USAGE}",
                                w.trim()
                            ))
                        }
                    }
                }
            }
            "--timeout" => a.timeout = Duration::from_secs(parse_num(&arg, &value()?)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if !a.pool_workers.is_multiple_of(a.pool_queues) {
        return Err(format!(
            "--pool-queues {} must divide --pool-workers {} (every queue gets as many workers)",
            a.pool_queues, a.pool_workers
        ));
    }
    Ok(a)
}

/// Results of one part: per cell, the successful runs; and the errors.
struct Results<K, T> {
    ok: BTreeMap<K, Vec<T>>,
    errors: Vec<String>,
}

impl<K: Ord, T> Default for Results<K, T> {
    fn default() -> Self {
        Results {
            ok: BTreeMap::new(),
            errors: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, T> Results<K, T> {
    /// The run with the median `key`.
    fn median_run(&self, k: K, key: impl Fn(&T) -> f64) -> Option<&T> {
        let mut v: Vec<&T> = self.ok.get(&k)?.iter().collect();
        v.sort_by(|a, b| key(a).total_cmp(&key(b)));
        v.get((v.len().max(1) - 1) / 2).copied()
    }

    fn values(&self, k: K, key: impl Fn(&T) -> f64) -> Vec<f64> {
        self.ok
            .get(&k)
            .map_or(Vec::new(), |v| v.iter().map(key).collect())
    }
}

/// Echo cells: (placement, window, sessions, server index in `Server::ALL`).
type EchoKey = (usize, usize, usize, usize);
/// Pool cells: (placement, producers, model index in `Model::ALL`).
type PoolKey = (usize, usize, usize);

fn placement_index(p: Placement) -> usize {
    Placement::ALL.iter().position(|&x| x == p).unwrap_or(0)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if args.echo && unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "bench_session needs root for the echo part (network namespaces, TAP and veth \
             interfaces); run it with sudo, or run only the other parts with --only pool,heap"
        );
        return ExitCode::from(2);
    }
    bench::install_signal_handlers();
    let prefix = format!("us{}", std::process::id());
    let started = Instant::now();

    let echo = if args.echo {
        run_echo(&args, &prefix)
    } else {
        Results::default()
    };
    let pool = if args.pool && !bench::interrupted() {
        run_pool(&args)
    } else {
        Results::default()
    };
    let heap = if args.heap && !bench::interrupted() {
        log::info!(
            "heap: opening {} idle sessions over the pipe ...",
            args.heap_sessions
        );
        let spec = HeapSpec {
            sessions: args.heap_sessions,
            buf: args.heap_buf,
            backlog: ustack::MAX_BACKLOG,
            timeout: args.timeout,
            idle_polls: args.idle_polls,
        };
        Some(session::heap::run(spec).map_err(|e| {
            log::error!("heap: {e}");
            e.to_string()
        }))
    } else {
        None
    };

    print_echo(&args, &echo);
    print_pool(&args, &pool);
    if let Some(h) = &heap {
        print_heap(h);
    }
    let errors: Vec<&String> = echo.errors.iter().chain(&pool.errors).collect();
    if !errors.is_empty() {
        println!("Errors:");
        for e in &errors {
            println!("{e}");
        }
    }
    log::info!(
        "bench_session took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if bench::interrupted() {
        eprintln!("interrupted; everything created was removed");
        return ExitCode::from(130);
    }
    if !errors.is_empty() || matches!(heap, Some(Err(_))) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn run_echo(args: &Args, prefix: &str) -> Results<EchoKey, EchoOutcome> {
    let mut res = Results::default();
    let cells = args.repeat
        * args.placements.len()
        * args.windows.len()
        * args.sessions.len()
        * args.servers.len();
    let per = args.duration + args.warmup + Duration::from_millis(500);
    log::info!(
        "echo: {cells} cells of {:.1} s measured each, about {:.0} s in all",
        args.duration.as_secs_f64(),
        (per * cells as u32).as_secs_f64()
    );
    let mut n = 0;
    'outer: for rep in 1..=args.repeat {
        for &placement in &args.placements {
            for &window in &args.windows {
                for &sessions in &args.sessions {
                    // Rotate the order per repetition, so drift hits every server alike.
                    let mut order = args.servers.clone();
                    let k = (rep - 1) % order.len();
                    order.rotate_left(k);
                    for server in order {
                        if bench::interrupted() {
                            break 'outer;
                        }
                        n += 1;
                        let spec = EchoSpec {
                            sessions,
                            window,
                            size: args.size,
                            duration: args.duration,
                            warmup: args.warmup,
                            timeout: args.timeout,
                            workers: args.workers,
                            clients: args.clients,
                            placement,
                            backlog: args.backlog,
                        };
                        let what = format!(
                            "{}, {sessions} session{}, window {window}, {}",
                            server.short(),
                            if sessions == 1 { "" } else { "s" },
                            placement.key()
                        );
                        log::info!("[{n}/{cells}] echo, {what} ...");
                        let key = (
                            placement_index(placement),
                            window,
                            sessions,
                            server_index(server),
                        );
                        match session::echo::run(server, spec, prefix) {
                            Ok(o) => {
                                log::info!(
                                    "echo, {what}: {:.0} msgs/s, server {:.1} µs/msg CPU, client {:.1} µs/msg, reordered {} (others used {:.2} CPUs)",
                                    o.rate(),
                                    o.per_msg_us(o.server_cpu),
                                    o.per_msg_us(o.client_cpu),
                                    o.reordered,
                                    o.others_cpu.unwrap_or(f64::NAN)
                                );
                                res.ok.entry(key).or_insert_with(Vec::new).push(o);
                            }
                            Err(_) if bench::interrupted() => break 'outer,
                            Err(e) => {
                                log::error!("echo, {what}: {e}");
                                res.errors.push(format!("- echo, {what} (run {rep}): {e}"));
                            }
                        }
                    }
                }
            }
        }
    }
    res
}

fn server_index(s: Server) -> usize {
    Server::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

fn run_pool(args: &Args) -> Results<PoolKey, PoolOutcome> {
    let mut res = Results::default();
    let cells = args.repeat * args.placements.len() * args.producers.len() * Model::ALL.len();
    log::info!("pool: {cells} cells of {} tasks each", grouped(args.tasks));
    let mut n = 0;
    'outer: for rep in 1..=args.repeat {
        for &placement in &args.placements {
            for &producers in &args.producers {
                let mut order: Vec<usize> = (0..Model::ALL.len()).collect();
                let k = (rep - 1) % order.len();
                order.rotate_left(k);
                for mi in order {
                    if bench::interrupted() {
                        break 'outer;
                    }
                    n += 1;
                    let model = Model::ALL[mi];
                    let spec = PoolSpec {
                        tasks: args.tasks,
                        producers,
                        workers: args.pool_workers,
                        m: args.pool_queues,
                        capacity: args.capacity,
                        timeout: args.timeout,
                        placement,
                    };
                    let what = format!(
                        "{}, {producers} producer{}, {}",
                        model.title(args.pool_workers, args.pool_queues),
                        if producers == 1 { "" } else { "s" },
                        placement.key()
                    );
                    match session::pool::run(model, spec) {
                        Ok(o) => {
                            log::info!(
                                "[{n}/{cells}] pool, {what}: {:.0} ns/task, {:.2} Full per task",
                                o.ns(),
                                o.full as f64 / o.tasks as f64
                            );
                            res.ok
                                .entry((placement_index(placement), producers, mi))
                                .or_insert_with(Vec::new)
                                .push(o);
                        }
                        Err(_) if bench::interrupted() => break 'outer,
                        Err(e) => {
                            log::error!("pool, {what}: {e}");
                            res.errors.push(format!("- pool, {what} (run {rep}): {e}"));
                        }
                    }
                }
            }
        }
    }
    res
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn range_cell(v: &[f64], digits: usize) -> String {
    match spread(v) {
        Some((lo, hi)) => format!("{lo:.digits$}–{hi:.digits$}"),
        None => "–".into(),
    }
}

fn others_note(worst: Option<f64>) {
    if let Some(w) = worst.filter(|&w| w > 0.25) {
        println!("\n**Warning:** other processes kept up to {w:.2} CPUs busy during a run; the numbers are disturbed.");
    }
}

fn print_echo(args: &Args, r: &Results<EchoKey, EchoOutcome>) {
    if !args.echo || r.ok.is_empty() {
        return;
    }
    let runs = if args.repeat > 1 {
        format!(", median of {} runs", args.repeat)
    } else {
        String::new()
    };
    let kernel = server_index(Server::Kernel);
    let has_kernel = args.servers.contains(&Server::Kernel);
    let rate = |k: EchoKey| median(&r.values(k, EchoOutcome::rate));
    for &placement in &args.placements {
        let pi = placement_index(placement);
        for &window in &args.windows {
            let kind = match window {
                1 => "request/response ping-pong (window 1)".to_string(),
                w => format!("pipelined, {w} messages outstanding per session"),
            };
            println!(
                "### Echo msgs/s over TAP, {kind}, {}: {} B bodies (+4 B prefix), {:.1} s per cell{runs}\n",
                placement.title(),
                args.size,
                args.duration.as_secs_f64()
            );
            let mut head = String::from("| sessions |");
            let mut rule = String::from("|---:|");
            for &s in &args.servers {
                head += &format!(" {} |", s.short());
                rule += "---:|";
                if s != Server::Kernel && has_kernel {
                    head += " ×kernel |";
                    rule += "---:|";
                }
            }
            println!("{head}\n{rule}");
            for &sessions in &args.sessions {
                let mut line = format!("| {sessions} |");
                let k = rate((pi, window, sessions, kernel));
                for &s in &args.servers {
                    let v = rate((pi, window, sessions, server_index(s)));
                    line += &format!(" {} |", v.map_or("–".into(), |v| format!("{v:.0}")));
                    if s != Server::Kernel && has_kernel {
                        let ratio = v
                            .zip(k)
                            .map_or("–".into(), |(v, k)| format!("{:.2}×", v / k));
                        line += &format!(" {ratio} |");
                    }
                }
                println!("{line}");
            }
            println!();
        }
    }
    println!("| placement | window | sessions | server | runs | median msgs/s | min–max | mean RTT µs | server CPU µs/msg (stack thread + workers) | client CPU µs/msg | reordered | others' CPUs (max) |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut worst: Option<f64> = None;
    for &placement in &args.placements {
        let pi = placement_index(placement);
        for &window in &args.windows {
            for &sessions in &args.sessions {
                for &s in &args.servers {
                    let key = (pi, window, sessions, server_index(s));
                    let Some(o) = r.median_run(key, EchoOutcome::rate) else {
                        continue;
                    };
                    let rates = r.values(key, EchoOutcome::rate);
                    let w = r
                        .values(key, |o| o.others_cpu.unwrap_or(0.0))
                        .into_iter()
                        .reduce(f64::max);
                    worst = max_opt(worst, w);
                    let split = match o.server_thread_cpu {
                        Some(t) if s != Server::Kernel && s != Server::Inline => format!(
                            "{:.1} ({:.1} + {:.1})",
                            o.per_msg_us(o.server_cpu),
                            o.per_msg_us(t),
                            o.per_msg_us(o.server_cpu.saturating_sub(t))
                        ),
                        _ => format!("{:.1}", o.per_msg_us(o.server_cpu)),
                    };
                    println!(
                        "| {} | {window} | {sessions} | {} | {} | {:.0} | {} | {:.1} | {split} | {:.1} | {} | {:.2} ({:.2}) |",
                        placement.key(),
                        s.title(args.workers),
                        rates.len(),
                        o.rate(),
                        range_cell(&rates, 0),
                        (sessions * window) as f64 / o.rate() * 1e6,
                        o.per_msg_us(o.client_cpu),
                        o.reordered,
                        o.others_cpu.unwrap_or(f64::NAN),
                        w.unwrap_or(f64::NAN),
                    );
                }
            }
        }
    }
    println!();
    println!("msgs/s: echoes the clients received per second over the measured time, after a {:.1} s warm-up.", args.warmup.as_secs_f64());
    println!("Clients: {} kernel `std::net` thread(s) with epoll, non-blocking, TCP_NODELAY, in the TAP's (or veth a's)", args.clients);
    println!("namespace; every echo is decoded with `LengthPrefixed::U32_BE` and checked (length, session, sequence).");
    println!("Mean RTT = sessions × window / (msgs/s). Server CPU: every thread of the process but the clients");
    println!("(the idle main thread adds nothing); for the pool rows it is split into the stack thread + the workers.");
    println!(
        "Kernel work that runs in softirq context is charged to whichever thread was interrupted."
    );
    println!("reordered: echoes that arrived after one with a higher sequence number on the same session.");
    let errs: u64 = r.ok.values().flatten().map(|o| o.write_errors).sum();
    let paused: u64 =
        r.ok.values()
            .flatten()
            .filter_map(|o| o.engine.map(|e| e.paused))
            .sum();
    println!("ustack server: {errs} echo writes refused in the measured times; sessions paused for a full pool queue {paused} times (all runs).");
    others_note(worst);
    println!();
}

fn print_pool(args: &Args, r: &Results<PoolKey, PoolOutcome>) {
    if !args.pool || r.ok.is_empty() {
        return;
    }
    let runs = if args.repeat > 1 {
        format!(", median of {} runs", args.repeat)
    } else {
        String::new()
    };
    println!(
        "### Task-pool dispatch: {} trivial tasks per cell (one atomic add), submit → executed{runs}\n",
        grouped(args.tasks)
    );
    println!("| placement | model | producers | median ns/task | min–max | Mtasks/s | CPU ns/task (all threads) | `Full` retries per task | ×mpsc | others' CPUs (max) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mpsc = Model::ALL
        .iter()
        .position(|&m| m == Model::Mpsc)
        .unwrap_or(0);
    let mut worst: Option<f64> = None;
    for &placement in &args.placements {
        let pi = placement_index(placement);
        for &producers in &args.producers {
            let base = median(&r.values((pi, producers, mpsc), PoolOutcome::ns));
            for (mi, model) in Model::ALL.into_iter().enumerate() {
                let key = (pi, producers, mi);
                let Some(o) = r.median_run(key, PoolOutcome::ns) else {
                    continue;
                };
                let ns = r.values(key, PoolOutcome::ns);
                let w = r
                    .values(key, |o| o.others_cpu.unwrap_or(0.0))
                    .into_iter()
                    .reduce(f64::max);
                worst = max_opt(worst, w);
                let ratio = base.map_or("–".into(), |b| format!("{:.2}×", o.ns() / b));
                println!(
                    "| {} | {} | {producers} | {:.0} | {} | {:.2} | {:.0} | {:.2} | {ratio} | {:.2} ({:.2}) |",
                    placement.key(),
                    model.title(args.pool_workers, args.pool_queues),
                    o.ns(),
                    range_cell(&ns, 0),
                    1e3 / o.ns(),
                    o.cpu_ns(),
                    o.full as f64 / o.tasks as f64,
                    o.others_cpu.unwrap_or(f64::NAN),
                    w.unwrap_or(f64::NAN),
                );
            }
        }
    }
    println!();
    println!(
        "ns/task: wall time from releasing the producers until the last task ran, over the tasks."
    );
    println!("×mpsc: ns/task over that of `sync_channel({})` with one consumer and the same producers and placement (> 1 is slower).", args.capacity);
    println!("Producers spin (`spin_loop`) on `Full` and yield the CPU every 64th time; every queue holds {} tasks. {} CPUs on this machine.", args.capacity, std::thread::available_parallelism().map_or(0, |n| n.get()));
    others_note(worst);
    println!();
}

fn print_heap(h: &Result<HeapOutcome, String>) {
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            println!("### Heap per idle session\n\nfailed: {e}\n");
            return;
        }
    };
    use std::mem::size_of;
    let spec = &h.spec;
    let n = h.open.max(1) as f64;
    let slots = h.slots as f64;
    let kib = |b: usize| match b.is_multiple_of(1024) {
        true => format!("{} KiB", b / 1024),
        false => format!("{b} B"),
    };
    println!(
        "### Heap per idle session: {} sessions over `PipeDevice`, {} rx + {} tx smoltcp buffers per socket\n",
        grouped(h.open as u64),
        kib(spec.buf),
        kib(spec.buf)
    );
    let slot = size_of::<ustack::Slot>();
    let cell = size_of::<ustack::ReadyCell>();
    let sess = size_of::<ustack::session::SessionSlot>();
    let timer = size_of::<ustack::session::timer::TimerEntry>();
    let info = size_of::<ustack::session::SessionInfo>();
    let storage = size_of::<ustack::smoltcp::iface::SocketStorage<'static>>();
    let sock = size_of::<ustack::smoltcp::socket::tcp::Socket<'static>>();
    let d1 = h.s1.server_since(&h.s0);
    let d2 = h.s2.server_since(&h.s1);
    let d3 = h.s3.server_since(&h.s2);
    let d4 = h.s4.server_since(&h.s3);
    let total = h.s4.server_since(&h.s0);
    let bufs = h.s4.count_of_size_since(&h.s3, spec.buf);
    let buf_bytes = bufs * spec.buf as i64;
    let (_, large_bytes) = h.s4.large_since(&h.s3);
    let rest = d4 - buf_bytes - large_bytes;
    let b = |v: i64| grouped(v.unsigned_abs()).replace(' ', "\u{202f}");
    let signed = |v: i64| if v < 0 { format!("−{}", b(v)) } else { b(v) };
    println!("| server side | bytes | per session | per stack slot | what it is |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| `Stack::new`, `max_sockets` = {} ({} slots) | {} | – | {:.1} | `Slot` ({slot} B) + `ReadyCell` ({cell} B) per slot, and the interface |",
        h.max_sockets,
        h.slots,
        signed(d1),
        d1 as f64 / slots
    );
    println!(
        "| `Engine::new` | {} | – | {:.1} | `SessionSlot` ({sess} B, of which `SessionInfo` {info} B) + `TimerEntry` ({timer} B) per slot, preallocated |",
        signed(d2),
        d2 as f64 / slots
    );
    println!(
        "| `tcp_server` + first poll | {} | – | – | the endpoint, {} sockets armed in LISTEN with their buffers |",
        signed(d3),
        spec.backlog
    );
    println!(
        "| **{} sessions accepted, idle** | **{}** | **{:.0}** | – | what accepting added ({:.2} allocation calls per session) |",
        grouped(h.open as u64),
        signed(d4),
        d4 as f64 / n,
        h.s4.server_calls_since(&h.s3) as f64 / n
    );
    println!(
        "| ↳ smoltcp socket buffers | {} | {:.0} | – | {} live allocations of {} B: one rx + one tx per socket |",
        signed(buf_bytes),
        buf_bytes as f64 / n,
        bufs,
        spec.buf
    );
    println!(
        "| ↳ smoltcp socket storage | {} | {:.0} | – | `SocketSet`'s `Vec<SocketStorage>` ({storage} B per entry; `tcp::Socket` is {sock} B) grew by {} entries for {} new sockets: the rest is the `Vec`'s doubling slack |",
        signed(large_bytes),
        large_bytes as f64 / n,
        large_bytes / storage.max(1) as i64,
        h.open
    );
    println!(
        "| ↳ everything else | {} | {:.1} | – | engine and stack per-session state beyond the above |",
        signed(rest),
        rest as f64 / n
    );
    println!(
        "| **total server heap** | **{}** | **{:.0}** | – | everything above, over the open sessions |",
        signed(total),
        total as f64 / n
    );
    println!();
    let top = h.s4.top_sizes_since(&h.s3, 6);
    if !top.is_empty() {
        let list: Vec<String> = top.iter().map(|(s, c)| format!("{c:+} × {s} B")).collect();
        println!(
            "Live server allocations up to 64 KiB that accepting changed most (count × requested size): {}.",
            list.join(", ")
        );
    }
    println!(
        "Sessions open: {} of {}; `engine.held_bytes()` = {}; engine counters: opened {}, closed {}, errors {}.",
        h.open, spec.sessions, h.held, h.stats.opened, h.stats.closed, h.stats.errors
    );
    println!(
        "Opening them took {:.2} s. With all of them idle, one `Engine::poll` takes {:.1} µs and one `Engine::poll_delay` {:.1} µs (median of {}).",
        h.connect_time.as_secs_f64(),
        h.idle_poll.as_secs_f64() * 1e6,
        h.idle_poll_delay.as_secs_f64() * 1e6,
        h.spec.idle_polls
    );
    println!(
        "Client stack (not part of the figures): {} bytes, {:.0} per connection.",
        b(h.client_bytes),
        h.client_bytes as f64 / n
    );
    println!("Bytes are the sizes requested from the allocator (malloc adds its own header and rounding).");
    println!();
}
