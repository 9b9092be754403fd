//! Bulk TCP throughput: ustack over TAP and AF_PACKET vs plain smoltcp, with the kernel over
//! veth as ceiling.
//!
//! One run measures, for each direction (kernel → userspace and userspace → kernel), one
//! flow of `--bytes` bytes (default 1 GB) through:
//! - ustack: a `Stack` over a `TapDevice` on the main thread, the kernel side in a fresh
//!   network namespace behind the TAP (10.7.0.1 there, ustack at 10.7.0.2);
//! - ustack over a TAP with a jumbo MTU (`--jumbo-mtu`, default 65521), and over a TAP with
//!   `IFF_VNET_HDR` offloads (large TCP segments from the kernel);
//! - ustack over AF_PACKET (`--afpacket-mode`, default ring) on one end of a veth pair whose
//!   other end, with offloads off, is the kernel's in its own namespace;
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
//!                               [--only ustack,smoltcp,kernel,tap-jumbo,tap-offload,afpacket]
//!                               [--busy-poll] [--repeat N] [--dir in|out|both] [--pin]
//!                               [--jumbo-mtu N] [--afpacket-mode ring|batched|per-frame]
//!                               [--csv PATH]
//! ```

#[path = "../bench/mod.rs"]
mod bench;
#[path = "../bench/pps/csv.rs"]
mod csv;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::net::TapOptions;
use bench::ustack_flow::{FlowReport, Link, UstackSettings};
use bench::{Dir, Limits, Outcome};
use ustack_drivers::{IoMode, RingConfig};

const USAGE: &str = "\
usage: bench_tcp [options]
  --bytes N          payload bytes per flow (default 1000000000; `_` separators allowed)
  --timeout SECS     abort a transfer that takes longer (default 120)
  --buf SIZE         ustack rx and tx buffer per connection (default 1M; K/M suffixes)
  --sweep SIZES      also run ustack with each of these buffer sizes, e.g. 64K,256K,1M
  --only LIST        run only some contenders (default all): ustack (TAP), smoltcp, kernel,
                     tap-jumbo (ustack, TAP with --jumbo-mtu), tap-offload (ustack, TAP with
                     IFF_VNET_HDR offloads), afpacket (ustack, AF_PACKET on a veth)
  --jumbo-mtu N      MTU of the tap-jumbo rows (default 65521)
  --afpacket-mode M  ring, batched or per-frame (default ring; batched uses 64-frame batches)
  --csv PATH         CSV rows (bench,contender,mode,metric,value,unit) (default target/bench/tcp.csv)
  --busy-poll        ustack spins instead of sleeping in poll(2)
  --dir in|out|both  only kernel → userspace (in), only userspace → kernel (out), or both (default)
  --pin              pin the userspace stack (and veth reader) to CPU 0, the kernel peer to CPU 1
  --repeat N         run every transfer N times (round-robin) and report the median (default 1)
needs root: creates network namespaces, TAP and veth interfaces (all removed on exit)";

/// `--only` names, in slot order: the first three are the main table's.
const NAMES: [&str; 6] = [
    "ustack",
    "smoltcp",
    "kernel",
    "tap-jumbo",
    "tap-offload",
    "afpacket",
];

const DIRS: [Dir; 2] = [Dir::KernelToUser, Dir::UserToKernel];

struct Args {
    bytes: u64,
    timeout: Duration,
    buf: usize,
    sweep: Vec<usize>,
    /// Which of [`NAMES`] run.
    only: [bool; 6],
    jumbo_mtu: usize,
    afpacket_mode: IoMode,
    csv: PathBuf,
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
        only: [true; 6],
        jumbo_mtu: 65521,
        afpacket_mode: IoMode::Ring(RingConfig::default()),
        csv: PathBuf::from("target/bench/tcp.csv"),
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
                a.only = [false; 6];
                for w in v.split(',') {
                    match NAMES.iter().position(|n| *n == w.trim()) {
                        Some(i) => a.only[i] = true,
                        None => return Err(format!("unknown contender `{w}` in --only\n{USAGE}")),
                    }
                }
            }
            "--jumbo-mtu" => {
                let v = value()?;
                a.jumbo_mtu = v
                    .parse()
                    .ok()
                    .filter(|n| (1280..=65521).contains(n))
                    .ok_or(format!("bad --jumbo-mtu `{v}`: 1280..=65521"))?;
            }
            "--afpacket-mode" => {
                let v = value()?;
                a.afpacket_mode = match v.as_str() {
                    "ring" => IoMode::Ring(RingConfig::default()),
                    "batched" => IoMode::Batched { batch: 64 },
                    "per-frame" => IoMode::PerFrame,
                    _ => {
                        return Err(format!(
                            "bad --afpacket-mode `{v}`: ring, batched or per-frame"
                        ))
                    }
                };
            }
            "--csv" => a.csv = PathBuf::from(value()?),
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
            Contender::Ustack(s) => match s.link {
                Link::Tap(TapOptions {
                    mtu: None,
                    offload: false,
                }) => format!("ustack ({} buffers)", size(s.rx_buffer)),
                Link::Tap(o) => format!(
                    "ustack TAP{}{} ({} buffers)",
                    o.mtu.map_or(String::new(), |m| format!(" MTU {m}")),
                    if o.offload { " offload" } else { "" },
                    size(s.rx_buffer)
                ),
                Link::AfPacket(m) => format!(
                    "ustack AF_PACKET {} ({} buffers)",
                    m.name(),
                    size(s.rx_buffer)
                ),
            },
            Contender::Smoltcp => "plain smoltcp".into(),
            Contender::Kernel => "kernel veth".into(),
        }
    }

    fn run(&self, dir: Dir, limits: Limits, prefix: &str) -> std::io::Result<FlowReport> {
        let plain = |outcome| FlowReport {
            outcome,
            syscalls: None,
        };
        match *self {
            Contender::Ustack(s) => bench::ustack_flow::run(dir, limits, s, prefix),
            Contender::Smoltcp => bench::smoltcp_flow::run(dir, limits, prefix).map(plain),
            Contender::Kernel => bench::kernel::veth(dir, limits, prefix).map(plain),
        }
    }
}

/// All runs of one contender in one direction.
#[derive(Default)]
struct Runs {
    ok: Vec<Outcome>,
    /// Measured system calls of each run in `ok` (AF_PACKET rows only).
    syscalls: Vec<Option<u64>>,
    errors: Vec<String>,
}

impl Runs {
    /// Index of the run with the median throughput (the lower middle one for an even count).
    fn median_index(&self) -> Option<usize> {
        let mut v: Vec<usize> = (0..self.ok.len()).collect();
        v.sort_by(|&a, &b| self.ok[a].gbps().total_cmp(&self.ok[b].gbps()));
        v.get((v.len().max(1) - 1) / 2).copied()
    }

    /// The run with the median throughput.
    fn median(&self) -> Option<&Outcome> {
        self.median_index().map(|i| &self.ok[i])
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
        link: Link::Tap(TapOptions::default()),
    };
    let with_link = |link| Contender::Ustack(UstackSettings { link, ..settings });

    // Slots 0..3 are the main table, 3..6 the other links; sweep rows follow.
    let all = [
        Contender::Ustack(settings),
        Contender::Smoltcp,
        Contender::Kernel,
        with_link(Link::Tap(TapOptions {
            mtu: Some(args.jumbo_mtu),
            offload: false,
        })),
        with_link(Link::Tap(TapOptions {
            mtu: None,
            offload: true,
        })),
        with_link(Link::AfPacket(args.afpacket_mode)),
    ];
    let mut contenders: Vec<Option<Contender>> = all
        .into_iter()
        .zip(args.only)
        .map(|(c, on)| on.then_some(c))
        .collect();
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
                    Ok(FlowReport {
                        outcome: mut o,
                        syscalls,
                    }) => {
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
                        r[i].syscalls.push(syscalls);
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
    let mut csv = csv::Csv::default();
    for (c, r) in contenders.iter().zip(&runs) {
        let Some(c) = c else { continue };
        for (i, dir) in DIRS.iter().enumerate() {
            if let Some(o) = r[i].median() {
                let g = (o.gbps() * 1000.0).round() / 1000.0;
                csv.add("tcp_bulk", &c.name(), &dir.to_string(), "gbps", g, "Gbit/s");
            }
        }
    }
    match csv.write(&args.csv) {
        Ok(()) => eprintln!("CSV rows written to {}", args.csv.display()),
        Err(e) => eprintln!("{e}"),
    }
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
        "### Bulk TCP over TAP and AF_PACKET, {} bytes per flow, one flow at a time{reps}\n",
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

    let others: Vec<_> = contenders[3..6]
        .iter()
        .zip(&runs[3..6])
        .filter_map(|(c, r)| c.map(|c| (c, r)))
        .collect();
    if !others.is_empty() {
        println!("| contender | flow | Gbit/s | × plain smoltcp | × kernel veth |");
        println!("|---|---|---:|---:|---:|");
        for (c, r) in others {
            for (i, dir) in DIRS.iter().enumerate() {
                if !args.dirs[i] {
                    continue;
                }
                println!(
                    "| {} | {dir} | {} | {} | {} |",
                    c.name(),
                    gbps(&r[i]),
                    ratio(&r[i], &smoltcp[i]),
                    ratio(&r[i], &kernel[i])
                );
            }
        }
        println!(
            "\nTAP MTU {} for the jumbo rows; AF_PACKET rows: veth pair, offloads off on both ends, ustack's end without a kernel address.\n",
            args.jumbo_mtu
        );
    }

    println!("| contender | flow | runs | median Gbit/s | min–max Gbit/s | seconds | frames in | frames out | host drops | polls | sleeps | ≈ syscalls | payload B / syscall | others' CPUs (max) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, r) in contenders.iter().zip(runs) {
        let Some(c) = c else { continue };
        for (i, dir) in DIRS.iter().enumerate() {
            let (Some(m), Some((min, max))) = (r[i].median_index(), r[i].spread()) else {
                continue;
            };
            let o = &r[i].ok[m];
            let counters = match o.counters {
                Some(c) => {
                    let sys = r[i].syscalls[m].unwrap_or_else(|| c.syscalls_estimate());
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
    println!("userspace stack (host-side interface counters; the AF_PACKET device's own counters, with its");
    println!("kernel drops as host drops); ≈ syscalls: one read or write per frame, one EAGAIN read per poll,");
    println!("one poll/select per sleep (AF_PACKET rows: the device's counted receive and send calls plus sleeps).");
    println!("others' CPUs: CPUs kept busy by other processes (and by interrupts outside this process) during the median run, and at most during any run.");
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
