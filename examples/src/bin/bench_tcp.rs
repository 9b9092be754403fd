//! Bulk TCP throughput over TAP: ustack vs plain smoltcp, with the kernel over veth as ceiling.
//!
//! One run measures, for each direction (kernel → userspace and userspace → kernel), one
//! flow of `--bytes` bytes (default 1 GB) through:
//! - ustack: a `Stack` over a `TapDevice` on the main thread, the kernel side in a fresh
//!   network namespace behind the TAP (10.7.0.1 there, ustack at 10.7.0.2);
//! - plain smoltcp 0.14 written like smoltcp's `examples/benchmark.rs`: `TunTapInterface`,
//!   64 KiB socket buffers, one frame per syscall, `iface.poll` + `phy::wait`;
//! - the kernel on both ends of a veth pair between two namespaces (10.8.0.1 ↔ 10.8.0.2).
//!
//! Progress goes to stderr (`RUST_LOG=debug` for more), the markdown tables to stdout.
//! Needs root (namespaces, TAP, veth); everything it creates is removed on exit, on error,
//! on panic and on Ctrl-C. Traffic stays inside the namespaces and the TAP.
//!
//! ```text
//! sudo target/release/bench_tcp [--bytes N] [--timeout SECS] [--buf SIZE] [--sweep SIZE,SIZE..]
//!                               [--only ustack,smoltcp,kernel] [--busy-poll] [--repeat N]
//!                               [--dir in|out|both] [--pin]
//! ```

#[path = "../bench/mod.rs"]
mod bench;

use std::process::ExitCode;
use std::time::Duration;

use bench::ustack_flow::UstackSettings;
use bench::{Dir, Limits, Outcome};

const USAGE: &str = "\
usage: bench_tcp [options]
  --bytes N          payload bytes per flow (default 1000000000; `_` separators allowed)
  --timeout SECS     abort a transfer that takes longer (default 120)
  --buf SIZE         ustack rx and tx buffer per connection (default 1M; K/M suffixes)
  --sweep SIZES      also run ustack with each of these buffer sizes, e.g. 64K,256K,1M
  --only LIST        run only some contenders: ustack,smoltcp,kernel (default all)
  --busy-poll        ustack spins instead of sleeping in poll(2)
  --dir in|out|both  only kernel → userspace (in), only userspace → kernel (out), or both (default)
  --pin              pin the userspace stack (and veth reader) to CPU 0, the kernel peer to CPU 1
  --repeat N         run every transfer N times (round-robin) and report the median (default 1)
needs root: creates network namespaces, TAP and veth interfaces (all removed on exit)";

const DIRS: [Dir; 2] = [Dir::KernelToUser, Dir::UserToKernel];

struct Args {
    bytes: u64,
    timeout: Duration,
    buf: usize,
    sweep: Vec<usize>,
    ustack: bool,
    smoltcp: bool,
    kernel: bool,
    busy_poll: bool,
    repeat: usize,
    dirs: [bool; 2],
    pin: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bytes: 1_000_000_000,
        timeout: Duration::from_secs(120),
        buf: 1024 * 1024,
        sweep: Vec::new(),
        ustack: true,
        smoltcp: true,
        kernel: true,
        busy_poll: false,
        repeat: 1,
        dirs: [true, true],
        pin: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--bytes" => {
                let v = value()?;
                a.bytes = v
                    .replace('_', "")
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --bytes `{v}`"))?;
            }
            "--timeout" => {
                let v = value()?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --timeout `{v}`"))?;
                a.timeout = Duration::from_secs(secs);
            }
            "--buf" => a.buf = bench::parse_size(&value()?)? as usize,
            "--sweep" => {
                a.sweep = value()?
                    .split(',')
                    .map(|s| bench::parse_size(s.trim()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--only" => {
                let v = value()?;
                (a.ustack, a.smoltcp, a.kernel) = (false, false, false);
                for w in v.split(',') {
                    match w.trim() {
                        "ustack" => a.ustack = true,
                        "smoltcp" => a.smoltcp = true,
                        "kernel" => a.kernel = true,
                        other => {
                            return Err(format!("unknown contender `{other}` in --only\n{USAGE}"))
                        }
                    }
                }
            }
            "--busy-poll" => a.busy_poll = true,
            "--pin" => a.pin = true,
            "--dir" => {
                let v = value()?;
                a.dirs = match v.as_str() {
                    "in" => [true, false],
                    "out" => [false, true],
                    "both" => [true, true],
                    _ => {
                        return Err(format!(
                            "bad --dir `{v}`: in (kernel → userspace), out or both"
                        ))
                    }
                };
            }
            "--repeat" => {
                let v = value()?;
                a.repeat = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --repeat `{v}`"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(a)
}

/// Who runs the userspace (or, for the ceiling, both) end of a flow.
#[derive(Clone, Copy)]
enum Contender {
    Ustack(UstackSettings),
    Smoltcp,
    Kernel,
}

impl Contender {
    fn name(&self) -> String {
        match self {
            Contender::Ustack(s) => format!("ustack ({} buffers)", size(s.rx_buffer)),
            Contender::Smoltcp => "plain smoltcp".into(),
            Contender::Kernel => "kernel veth".into(),
        }
    }

    fn run(&self, dir: Dir, limits: Limits, prefix: &str) -> std::io::Result<Outcome> {
        match *self {
            Contender::Ustack(s) => bench::ustack_flow::run(dir, limits, s, prefix),
            Contender::Smoltcp => bench::smoltcp_flow::run(dir, limits, prefix),
            Contender::Kernel => bench::kernel::veth(dir, limits, prefix),
        }
    }
}

/// All runs of one contender in one direction.
#[derive(Default)]
struct Runs {
    ok: Vec<Outcome>,
    errors: Vec<String>,
}

impl Runs {
    /// The run with the median throughput (the lower middle one for an even count).
    fn median(&self) -> Option<&Outcome> {
        let mut v: Vec<&Outcome> = self.ok.iter().collect();
        v.sort_by(|a, b| a.gbps().total_cmp(&b.gbps()));
        v.get((v.len().max(1) - 1) / 2).copied()
    }

    fn spread(&self) -> Option<(f64, f64)> {
        let g = self.ok.iter().map(Outcome::gbps);
        let min = g.clone().reduce(f64::min)?;
        Some((min, g.reduce(f64::max)?))
    }
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
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "bench_tcp needs root (network namespaces, TAP and veth interfaces); run it with sudo"
        );
        return ExitCode::from(2);
    }
    bench::install_signal_handlers();
    bench::set_pinning(args.pin);
    bench::pin(0);
    let prefix = format!("ub{}", std::process::id());
    let limits = Limits {
        bytes: args.bytes,
        timeout: args.timeout,
    };
    let settings = UstackSettings {
        rx_buffer: args.buf,
        tx_buffer: args.buf,
        busy_poll: args.busy_poll,
    };

    // Slots 0..3 are the main table; sweep rows follow.
    let mut contenders = vec![
        args.ustack.then_some(Contender::Ustack(settings)),
        args.smoltcp.then_some(Contender::Smoltcp),
        args.kernel.then_some(Contender::Kernel),
    ];
    contenders.extend(args.sweep.iter().map(|&b| {
        Some(Contender::Ustack(UstackSettings {
            rx_buffer: b,
            tx_buffer: b,
            ..settings
        }))
    }));
    let mut runs: Vec<[Runs; 2]> = contenders.iter().map(|_| Default::default()).collect();

    // Round-robin over contenders and directions, so slow drift of the machine hits all alike.
    'outer: for rep in 1..=args.repeat {
        for (i, dir) in DIRS.into_iter().enumerate().filter(|&(i, _)| args.dirs[i]) {
            for (c, r) in contenders.iter().zip(runs.iter_mut()) {
                let Some(c) = c else { continue };
                if bench::interrupted() {
                    break 'outer;
                }
                let name = c.name();
                log::info!(
                    "[{rep}/{}] {name}, {dir}: {} bytes ...",
                    args.repeat,
                    limits.bytes
                );
                let before = bench::CpuMeter::now();
                match c.run(dir, limits, &prefix) {
                    Ok(mut o) => {
                        if let (Some(b), Some(a)) = (before, bench::CpuMeter::now()) {
                            o.others_cpu = Some(b.others_since(&a));
                        }
                        log::info!(
                            "{name}, {dir}: {:.3} Gbit/s ({:.3} s; other processes used {:.2} CPUs)",
                            o.gbps(),
                            o.elapsed.as_secs_f64(),
                            o.others_cpu.unwrap_or(f64::NAN)
                        );
                        r[i].ok.push(o);
                    }
                    Err(_) if bench::interrupted() => break 'outer,
                    Err(e) => {
                        log::error!("{name}, {dir}: {e}");
                        r[i].errors.push(e.to_string());
                    }
                }
            }
        }
    }

    print_report(&args, &contenders, &runs);
    if bench::interrupted() {
        eprintln!("interrupted; everything created was removed");
        return ExitCode::from(130);
    }
    if runs.iter().flatten().any(|r| !r.errors.is_empty()) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn size(n: usize) -> String {
    match n {
        n if n % (1024 * 1024) == 0 => format!("{} MiB", n / (1024 * 1024)),
        n if n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} B"),
    }
}

fn gbps(r: &Runs) -> String {
    match (r.median(), r.errors.is_empty()) {
        (Some(o), _) => format!("{:.2}", o.gbps()),
        (None, false) => "error".into(),
        (None, true) => "–".into(),
    }
}

fn ratio(a: &Runs, b: &Runs) -> String {
    match (a.median(), b.median()) {
        (Some(a), Some(b)) => format!("{:.2}×", a.gbps() / b.gbps()),
        _ => "–".into(),
    }
}

fn print_report(args: &Args, contenders: &[Option<Contender>], runs: &[[Runs; 2]]) {
    let (ustack, smoltcp, kernel) = (&runs[0], &runs[1], &runs[2]);
    let reps = if args.repeat > 1 {
        format!(", median of {} runs", args.repeat)
    } else {
        String::new()
    };
    println!(
        "### Bulk TCP over TAP, {} bytes per flow, one flow at a time{reps}\n",
        args.bytes
    );
    println!("| flow | ustack Gbit/s | smoltcp Gbit/s | kernel veth Gbit/s | ustack/smoltcp | ustack/kernel |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, dir) in DIRS.iter().enumerate() {
        println!(
            "| {dir} | {} | {} | {} | {} | {} |",
            gbps(&ustack[i]),
            gbps(&smoltcp[i]),
            gbps(&kernel[i]),
            ratio(&ustack[i], &smoltcp[i]),
            ratio(&ustack[i], &kernel[i])
        );
    }
    println!();
    println!(
        "ustack: {} rx / {} tx buffers, {} poll; smoltcp: {} B rx / tx buffers (as in smoltcp's examples/benchmark.rs).",
        size(args.buf),
        size(args.buf),
        if args.busy_poll { "busy" } else { "blocking" },
        bench::smoltcp_flow::BUFFER
    );
    println!("Gbit/s = 10^9 bit/s of TCP payload, timed at the receiver from its first byte to its last.\n");

    println!("| contender | flow | runs | median Gbit/s | min–max Gbit/s | seconds | frames in | frames out | host drops | polls | sleeps | ≈ syscalls | payload B / syscall | others' CPUs (max) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, r) in contenders.iter().zip(runs) {
        let Some(c) = c else { continue };
        for (i, dir) in DIRS.iter().enumerate() {
            let (Some(o), Some((min, max))) = (r[i].median(), r[i].spread()) else {
                continue;
            };
            let counters = match o.counters {
                Some(c) => {
                    let sys = c.syscalls_estimate();
                    format!(
                        "{} | {} | {} | {} | {} | {} | {:.0}",
                        c.frames_in,
                        c.frames_out,
                        c.host_drops,
                        c.polls,
                        c.sleeps,
                        sys,
                        o.bytes as f64 / sys.max(1) as f64
                    )
                }
                None => "– | – | – | – | – | – | –".into(),
            };
            let others = match (
                o.others_cpu,
                r[i].ok.iter().filter_map(|o| o.others_cpu).reduce(f64::max),
            ) {
                (Some(m), Some(x)) => format!("{m:.2} ({x:.2})"),
                _ => "–".into(),
            };
            println!(
                "| {} | {dir} | {} | {:.2} | {min:.2}–{max:.2} | {:.3} | {counters} | {others} |",
                c.name(),
                r[i].ok.len(),
                o.gbps(),
                o.elapsed.as_secs_f64(),
            );
        }
    }
    println!();
    println!("Counters are those of the median run. frames in/out: read from / written to the TAP by the");
    println!("userspace stack (host-side interface counters); ≈ syscalls: one read or write per frame, one");
    println!("EAGAIN read per poll, one poll/select per sleep. others' CPUs: CPUs kept busy by other processes");
    println!("(and by interrupts outside this process) during the median run, and at most during any run.");
    let worst = runs
        .iter()
        .flatten()
        .flat_map(|r| &r.ok)
        .filter_map(|o| o.others_cpu)
        .reduce(f64::max);
    if let Some(w) = worst.filter(|&w| w > 0.25) {
        println!("\n**Warning:** other processes kept up to {w:.2} CPUs busy during a run; the numbers are disturbed.");
    }

    let errors: Vec<String> = contenders
        .iter()
        .zip(runs)
        .filter_map(|(c, r)| c.map(|c| (c, r)))
        .flat_map(|(c, r)| {
            r.iter().zip(DIRS).flat_map(move |(r, d)| {
                r.errors
                    .iter()
                    .map(move |e| format!("- {}, {d}: {e}", c.name()))
            })
        })
        .collect();
    if !errors.is_empty() {
        println!("\nErrors:\n{}", errors.join("\n"));
    }
}
