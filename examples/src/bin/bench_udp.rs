//! Connected `send` against unconnected `send_to`, in one run.
//!
//! - **ustack over TAP**: a `Stack` over a `TapDevice` sends `--count` datagrams of `--size`
//!   bytes to a kernel UDP sink in the TAP's namespace, once with `udp_connect` +
//!   `udp_send`, once with `udp_send_to` on an unconnected socket.
//! - **kernel over veth** (the anchor): a `std::net::UdpSocket` does the same with `send` /
//!   `send_to` from one namespace to the same kind of sink in another, over a veth pair.
//! - **ustack over the pipe**: ustack's own CPU cost per datagram in each mode, with no
//!   kernel on the path (`PipeDevice`, frames checked and dropped by a sink).
//!
//! The sink counts what arrives (sequence numbers, so duplicates and losses show). Rows are
//! repeated `--repeat` times (the pipe rows `--pipe-repeat` times), alternating which mode
//! goes first, and the median is reported.
//! Progress goes to stderr, markdown tables to stdout. The TAP and veth rows need root; the
//! pipe rows do not (`--only pipe`). Everything created is removed on exit, on error, on
//! panic and on Ctrl-C.
//!
//! ```text
//! sudo target/release/bench_udp [--count N] [--size BYTES] [--repeat N] [--pipe-repeat N]
//!                               [--only tap,kernel,pipe] [--mode connected|unconnected|both]
//!                               [--queue N] [--rcvbuf SIZE] [--pin] [--timeout SECS]
//! ```

#[allow(dead_code)] // bench_tcp's TCP flows and counters are not used here
#[path = "../bench/mod.rs"]
mod bench;
#[path = "../bench/udp.rs"]
mod udp;

use std::process::ExitCode;
use std::time::Duration;

use udp::pipe::PipeOutcome;
use udp::{LinkOutcome, Mode, Spec};

const USAGE: &str = "\
usage: bench_udp [options]
  --count N          datagrams per row (default 1000000; `_` separators allowed)
  --size BYTES       payload bytes per datagram, 8..=1472 (default 64)
  --repeat N         run every row N times, alternating which mode goes first, and report
                     the median (default 3)
  --pipe-repeat N    the same for the pipe rows, which take well under a second each
                     (default 16; even, so both build orders count alike)
  --only LIST        run only some paths: tap (ustack over TAP), kernel (kernel over veth),
                     pipe (ustack's CPU cost over PipeDevice) (default all; pipe needs no root)
  --mode MODE        connected, unconnected or both (default both; one mode is for profiling)
  --queue N          datagrams ustack's socket queues before WouldBlock (default 256)
  --rcvbuf SIZE      SO_RCVBUF of the kernel sink, set with SO_RCVBUFFORCE (default 64M)
  --pin              pin the sender to CPU 0 and the sink to CPU 1
  --timeout SECS     abort a row that takes longer (default 60)
needs root for tap and kernel: creates network namespaces, TAP and veth interfaces (all
removed on exit)";

struct Args {
    spec: Spec,
    repeat: usize,
    pipe_repeat: usize,
    tap: bool,
    kernel: bool,
    pipe: bool,
    pin: bool,
    modes: [bool; 2],
}

fn parse_num(arg: &str, v: &str) -> Result<u64, String> {
    v.replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad {arg} `{v}`: expected a positive number"))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        spec: Spec {
            count: 1_000_000,
            size: 64,
            queue: 256,
            rcvbuf: 64 * 1024 * 1024,
            timeout: Duration::from_secs(60),
        },
        repeat: 3,
        pipe_repeat: 16,
        tap: true,
        kernel: true,
        pipe: true,
        pin: false,
        modes: [true, true],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--count" => a.spec.count = parse_num(&arg, &value()?)?,
            "--size" => {
                let v = value()?;
                let n = parse_num(&arg, &v)? as usize;
                if !(udp::MIN_SIZE..=udp::MAX_SIZE).contains(&n) {
                    return Err(format!(
                        "bad --size `{v}`: between {} (the sequence number) and {} (one 1500-byte packet)",
                        udp::MIN_SIZE,
                        udp::MAX_SIZE
                    ));
                }
                a.spec.size = n;
            }
            "--repeat" => a.repeat = parse_num(&arg, &value()?)? as usize,
            "--pipe-repeat" => a.pipe_repeat = parse_num(&arg, &value()?)? as usize,
            "--queue" => {
                let v = value()?;
                let n = parse_num(&arg, &v)? as usize;
                let max = udp::pipe::FRAMES - 8;
                if n > max {
                    return Err(format!("bad --queue `{v}`: at most {max}"));
                }
                a.spec.queue = n;
            }
            "--rcvbuf" => {
                let v = value()?;
                a.spec.rcvbuf =
                    bench::parse_size(&v).map_err(|e| format!("bad {arg}: {e}"))? as usize;
            }
            "--timeout" => a.spec.timeout = Duration::from_secs(parse_num(&arg, &value()?)?),
            "--pin" => a.pin = true,
            "--mode" => {
                let v = value()?;
                a.modes = match v.as_str() {
                    "connected" => [true, false],
                    "unconnected" => [false, true],
                    "both" => [true, true],
                    _ => return Err(format!("bad --mode `{v}`: connected, unconnected or both")),
                };
            }
            "--only" => {
                let v = value()?;
                (a.tap, a.kernel, a.pipe) = (false, false, false);
                for w in v.split(',') {
                    match w.trim() {
                        "tap" | "ustack" => a.tap = true,
                        "kernel" | "veth" => a.kernel = true,
                        "pipe" => a.pipe = true,
                        other => return Err(format!("unknown path `{other}` in --only\n{USAGE}")),
                    }
                }
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

/// An outcome that knows how busy other processes kept the CPUs during its run.
trait Disturbed {
    fn others_cpu(&self) -> Option<f64>;
}

impl Disturbed for LinkOutcome {
    fn others_cpu(&self) -> Option<f64> {
        self.others_cpu
    }
}

impl Disturbed for PipeOutcome {
    fn others_cpu(&self) -> Option<f64> {
        self.others_cpu
    }
}

/// Runs of one path: per mode, the successful runs tagged with their repetition.
struct Runs<T> {
    ok: [Vec<(usize, T)>; 2],
    errors: Vec<String>,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Runs {
            ok: [Vec::new(), Vec::new()],
            errors: Vec::new(),
        }
    }
}

impl<T: Disturbed> Runs<T> {
    /// The most CPU other processes took during any run of mode `m` (all modes: `None`).
    fn worst_others(&self, m: Option<usize>) -> Option<f64> {
        let modes = self.ok.iter().enumerate();
        let runs = modes
            .filter(|(i, _)| m.is_none_or(|m| m == *i))
            .flat_map(|(_, r)| r);
        runs.filter_map(|(_, o)| o.others_cpu()).reduce(f64::max)
    }

    /// The "others' CPUs" cell: the median run's figure and, in brackets, the worst run's.
    fn others_cell(&self, m: usize, median: &T) -> String {
        match (median.others_cpu(), self.worst_others(Some(m))) {
            (Some(a), Some(b)) => format!("{a:.2} ({b:.2})"),
            _ => "–".into(),
        }
    }
}

impl<T> Runs<T> {
    /// The run with the median `key` (the lower middle one for an even count).
    fn median(&self, m: usize, key: impl Fn(&T) -> f64) -> Option<&T> {
        let mut v: Vec<&T> = self.ok[m].iter().map(|(_, o)| o).collect();
        v.sort_by(|a, b| key(a).total_cmp(&key(b)));
        v.get((v.len().max(1) - 1) / 2).copied()
    }

    fn spread(&self, m: usize, key: impl Fn(&T) -> f64) -> Option<(f64, f64)> {
        let k = self.ok[m].iter().map(|(_, o)| key(o));
        Some((k.clone().reduce(f64::min)?, k.reduce(f64::max)?))
    }

    /// Per repetition, `f(connected, unconnected)` where both modes succeeded.
    fn paired(&self, f: impl Fn(&T, &T) -> f64) -> Vec<f64> {
        self.paired_reps(f).into_iter().map(|(_, v)| v).collect()
    }

    /// [`paired`](Self::paired), with the repetition each value comes from.
    fn paired_reps(&self, f: impl Fn(&T, &T) -> f64) -> Vec<(usize, f64)> {
        self.ok[0]
            .iter()
            .filter_map(|(r, c)| {
                let (_, u) = self.ok[1].iter().find(|(r2, _)| r2 == r)?;
                Some((*r, f(c, u)))
            })
            .collect()
    }

    fn record(&mut self, rep: usize, mode: Mode, what: &str, r: std::io::Result<T>) -> bool {
        match r {
            Ok(o) => {
                self.ok[mode as usize].push((rep, o));
                true
            }
            Err(_) if bench::interrupted() => false,
            Err(e) => {
                log::error!("{what}, {mode}: {e}");
                self.errors
                    .push(format!("- {what}, {mode} (run {rep}): {e}"));
                true
            }
        }
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
    if (args.tap || args.kernel) && unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "bench_udp needs root for the TAP and veth rows (network namespaces, TAP and veth \
             interfaces); run it with sudo, or run only the pipe rows with --only pipe"
        );
        return ExitCode::from(2);
    }
    bench::install_signal_handlers();
    bench::set_pinning(args.pin);
    bench::pin(0);
    let prefix = format!("uu{}", std::process::id());
    let spec = args.spec;

    let mut tap: Runs<LinkOutcome> = Runs::default();
    let mut kernel: Runs<LinkOutcome> = Runs::default();
    let mut pipe: Runs<PipeOutcome> = Runs::default();

    'outer: for rep in 1..=args.repeat {
        // Alternate which mode goes first, so drift and warm-up effects hit both alike.
        let mut order: Vec<Mode> = Mode::BOTH
            .into_iter()
            .filter(|&m| args.modes[m as usize])
            .collect();
        if rep % 2 == 0 {
            order.reverse();
        }
        for &mode in order.iter().filter(|_| args.tap) {
            if bench::interrupted() {
                break 'outer;
            }
            log::info!(
                "[{rep}/{}] ustack over TAP, {mode}: {} datagrams of {} B ...",
                args.repeat,
                spec.count,
                spec.size
            );
            let r = link_row(|| udp::tap::run(mode, spec, &prefix));
            if let Ok(o) = &r {
                log_link("ustack over TAP", mode, o);
            }
            if !tap.record(rep, mode, "ustack over TAP", r) {
                break 'outer;
            }
        }
        for &mode in order.iter().filter(|_| args.kernel) {
            if bench::interrupted() {
                break 'outer;
            }
            log::info!(
                "[{rep}/{}] kernel over veth, {mode}: {} datagrams of {} B ...",
                args.repeat,
                spec.count,
                spec.size
            );
            let r = link_row(|| udp::kernel::veth(mode, spec, &prefix));
            if let Ok(o) = &r {
                log_link("kernel over veth", mode, o);
            }
            if !kernel.record(rep, mode, "kernel over veth", r) {
                break 'outer;
            }
        }
    }
    // The pipe rows are cheap (well under a second each), so they repeat more often.
    'pipe: for rep in 1..=args.pipe_repeat {
        if !args.pipe {
            break;
        }
        let mut order: Vec<Mode> = Mode::BOTH
            .into_iter()
            .filter(|&m| args.modes[m as usize])
            .collect();
        if rep % 2 == 0 {
            order.reverse();
        }
        if bench::interrupted() {
            break 'pipe;
        }
        let names: Vec<String> = order.iter().map(Mode::to_string).collect();
        log::info!(
            "[{rep}/{}] ustack over the pipe, {} taking turns: {} datagrams of {} B each ...",
            args.pipe_repeat,
            names.join(" and "),
            spec.count,
            spec.size
        );
        let before = bench::CpuMeter::now();
        match udp::pipe::run(&order, spec) {
            Ok(outs) => {
                let others = before
                    .zip(bench::CpuMeter::now())
                    .map(|(b, a)| b.others_since(&a));
                for (&mode, mut o) in order.iter().zip(outs) {
                    o.others_cpu = others;
                    log::info!(
                        "ustack over the pipe, {mode}: {:.1} ns/datagram ({:.1} in send, {:.1} in poll; thread CPU/wall {:.3})",
                        o.ns(),
                        o.enqueue_ns(),
                        o.poll_ns(),
                        o.cpu_share()
                    );
                    pipe.record(rep, mode, "ustack over the pipe", Ok(o));
                }
            }
            Err(e) => {
                if !pipe.record(rep, order[0], "ustack over the pipe", Err(e)) {
                    break 'pipe;
                }
            }
        }
    }
    let source_ns = if args.pipe && !bench::interrupted() {
        udp::pipe::source_selection_ns(spec, 10_000_000)
            .map_err(|e| log::error!("source-selection timing: {e}"))
            .ok()
    } else {
        None
    };

    print_report(&args, &tap, &kernel, &pipe, source_ns);
    if bench::interrupted() {
        eprintln!("interrupted; everything created was removed");
        return ExitCode::from(130);
    }
    if !(tap.errors.is_empty() && kernel.errors.is_empty() && pipe.errors.is_empty()) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs one link row and records how busy other processes kept the machine meanwhile.
fn link_row(f: impl FnOnce() -> std::io::Result<LinkOutcome>) -> std::io::Result<LinkOutcome> {
    let before = bench::CpuMeter::now();
    let mut o = f()?;
    if let (Some(b), Some(a)) = (before, bench::CpuMeter::now()) {
        o.others_cpu = Some(b.others_since(&a));
    }
    Ok(o)
}

fn log_link(what: &str, mode: Mode, o: &LinkOutcome) {
    log::info!(
        "{what}, {mode}: {:.0} datagrams/s ({:.3} s), sink received {} of {} (other processes used {:.2} CPUs)",
        o.rate(),
        o.elapsed.as_secs_f64(),
        o.sink.received,
        o.sent,
        o.others_cpu.unwrap_or(f64::NAN)
    );
}

fn opt(v: Option<u64>) -> String {
    v.map_or("–".into(), |v| v.to_string())
}

/// `median (min–max)` of `v` (or its one value), each formatted by `f`.
fn range_text(v: &[f64], f: impl Fn(f64) -> String) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => "–".into(),
        1 => f(v[0]),
        n => format!("{} ({}–{})", f(v[(n - 1) / 2]), f(v[0]), f(v[n - 1])),
    }
}

fn print_report(
    args: &Args,
    tap: &Runs<LinkOutcome>,
    kernel: &Runs<LinkOutcome>,
    pipe: &Runs<PipeOutcome>,
    source_ns: Option<f64>,
) {
    let spec = &args.spec;
    let median_of = |n: usize| {
        if n > 1 {
            format!(", median of {n} runs")
        } else {
            String::new()
        }
    };
    let reps = median_of(args.repeat);
    let links = [
        ("ustack over TAP", args.tap, tap),
        ("kernel over veth", args.kernel, kernel),
    ];
    if args.tap || args.kernel {
        println!(
            "### Connected vs unconnected UDP to a kernel sink: {} datagrams of {} B per row{reps}\n",
            spec.count, spec.size
        );
        println!("| sender → kernel sink | connected `send` dgram/s | unconnected `send_to` dgram/s | connected / unconnected | per-run ratios: median (min–max) | received (connected / unconnected) |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, on, runs) in links {
            if !on {
                continue;
            }
            let c = runs.median(0, LinkOutcome::rate);
            let u = runs.median(1, LinkOutcome::rate);
            let cell =
                |o: Option<&LinkOutcome>| o.map_or("–".into(), |o| format!("{:.0}", o.rate()));
            let recv = |o: Option<&LinkOutcome>| {
                o.map_or("–".into(), |o| format!("{}/{}", o.sink.received, o.sent))
            };
            let ratio = match (c, u) {
                (Some(c), Some(u)) => format!("{:.3}×", c.rate() / u.rate()),
                _ => "–".into(),
            };
            let paired = runs.paired(|c, u| c.rate() / u.rate());
            println!(
                "| {name} | {} | {} | {ratio} | {} | {} / {} |",
                cell(c),
                cell(u),
                range_text(&paired, |x| format!("{x:.3}")),
                recv(c),
                recv(u)
            );
        }
        println!();
        println!("dgram/s: datagrams the sender got out per second, from its first send call until the last");
        println!("datagram left it (ustack: frame written to the TAP; kernel: last `send`/`sendto` returned).");
        println!("Ratio > 1: connected is faster. Per-run ratios pair the two modes of the same repetition.\n");

        println!("| sender | mode | runs | median dgram/s | min–max dgram/s | seconds | sender CPU ns/dgram | sent | received | lost | dup / bad | sink rcvbuf drops | host drops | send failures | polls | others' CPUs (max) |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, on, runs) in links {
            if !on {
                continue;
            }
            for mode in Mode::BOTH {
                let m = mode as usize;
                let (Some(o), Some((lo, hi))) = (
                    runs.median(m, LinkOutcome::rate),
                    runs.spread(m, LinkOutcome::rate),
                ) else {
                    continue;
                };
                let others = runs.others_cell(m, o);
                println!(
                    "| {name} | {mode} | {} | {:.0} | {lo:.0}–{hi:.0} | {:.3} | {:.0} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {others} |",
                    runs.ok[m].len(),
                    o.rate(),
                    o.elapsed.as_secs_f64(),
                    o.sender_cpu.as_nanos() as f64 / o.sent.max(1) as f64,
                    o.sent,
                    o.sink.received,
                    o.lost(),
                    o.sink.duplicates,
                    o.sink.malformed,
                    o.sink.snmp.rcvbuf_errors,
                    o.host_drops,
                    opt(o.tap_write_failures.or(o.retries)),
                    opt(o.polls),
                );
            }
        }
        let rcvbuf = links
            .iter()
            .flat_map(|(_, _, r)| r.ok.iter().flatten())
            .map(|(_, o)| o.sink.rcvbuf)
            .next();
        println!();
        println!("Counters are those of the median run. sender CPU: CPU time of the sending thread, kernel work in");
        println!("its syscalls included (for ustack over TAP, a TAP write runs the kernel's receive path). received:");
        println!("distinct datagrams of the row the sink got, checked by sequence number, source and length. sink");
        println!("rcvbuf drops: the sink namespace's UDP RcvbufErrors. host drops: rx+tx drops of the TAP or veth");
        println!("interfaces. send failures: ustack, TAP writes the kernel refused; kernel, `send` calls that failed with");
        println!("ENOBUFS/EAGAIN and were retried. polls: `Stack::poll` calls while sending (--queue {} datagrams).", spec.queue);
        if let Some(b) = rcvbuf {
            println!("The sink reads with recvmmsg (64 per call); its SO_RCVBUF is {b} bytes as granted by the kernel.");
        }
        let worst = links
            .iter()
            .filter_map(|(_, _, r)| r.worst_others(None))
            .reduce(f64::max);
        if let Some(w) = worst.filter(|&w| w > 0.25) {
            println!("\n**Warning:** other processes kept up to {w:.2} CPUs busy during a run; the numbers are disturbed.");
        }
        println!();
    }

    if args.pipe {
        println!(
            "### ustack's own cost per datagram over PipeDevice (no kernel): {} datagrams of {} B per row{}\n",
            spec.count,
            spec.size,
            median_of(args.pipe_repeat)
        );
        println!("| mode | runs | ns/dgram, typical batch | min–max | ns/dgram, all time | in `udp_send`/`udp_send_to` | in `poll` (dispatch) | datagrams per poll | thread CPU / wall | frames checked | others' CPUs (max) |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for mode in Mode::BOTH {
            let m = mode as usize;
            let (Some(o), Some((lo, hi))) = (
                pipe.median(m, PipeOutcome::ns),
                pipe.spread(m, PipeOutcome::ns),
            ) else {
                continue;
            };
            let others = pipe.others_cell(m, o);
            println!(
                "| {mode} | {} | {:.1} | {lo:.1}–{hi:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.3} | {} | {others} |",
                pipe.ok[m].len(),
                o.ns(),
                o.mean_ns(),
                o.enqueue_ns(),
                o.poll_ns(),
                o.count as f64 / o.polls.max(1) as f64,
                o.cpu_share(),
                o.good
            );
        }
        if let (Some(c), Some(u)) = (
            pipe.median(0, PipeOutcome::ns),
            pipe.median(1, PipeOutcome::ns),
        ) {
            let paired = pipe.paired(|c, u| u.ns() - c.ns());
            println!(
                "| unconnected − connected | | {:+.1} ({:+.1}%) | per run: {} | {:+.1} | {:+.1} | {:+.1} | | | | |",
                u.ns() - c.ns(),
                100.0 * (u.ns() - c.ns()) / u.ns(),
                range_text(&paired, |x| format!("{x:+.1}")),
                u.mean_ns() - c.mean_ns(),
                u.enqueue_ns() - c.enqueue_ns(),
                u.poll_ns() - c.poll_ns(),
            );
            if !paired.is_empty() {
                let list: Vec<String> = paired.iter().map(|d| format!("{d:+.1}")).collect();
                println!("\nPer-run differences (unconnected − connected, ns/dgram, same repetition): {}.", list.join(", "));
            }
            // Odd runs build the connected sender first, even runs the unconnected one. Their
            // two means separate the mode's effect from the senders' positions.
            let reps = pipe.paired_reps(|c, u| u.ns() - c.ns());
            let mean_of = |odd: bool| {
                let v: Vec<f64> = reps
                    .iter()
                    .filter(|(r, _)| (r % 2 == 1) == odd)
                    .map(|(_, d)| *d)
                    .collect();
                (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64, v.len()))
            };
            if let (Some((a, na)), Some((b, nb))) = (mean_of(true), mean_of(false)) {
                println!(
                    "\nBalanced over the build order, unconnected − connected = {:+.1} ns/dgram ({:+.1}%): mean {a:+.1} over the {na} runs that built the connected sender first, {b:+.1} over the {nb} that built it second. Position effect (the second-built sender minus the first-built one, whichever mode it carries): {:+.1} ns/dgram.",
                    (a + b) / 2.0,
                    100.0 * (a + b) / 2.0 / u.ns(),
                    (a - b) / 2.0
                );
            }
        }
        println!();
        println!("In each run a connected and an unconnected sender take turns batch by batch (queue until");
        println!("WouldBlock, poll), each with its own PipeLink and stacks: stack A (10.9.0.1) sends to stack B's");
        println!("address (10.9.0.2); after the ARP warm-up a sink takes each frame off the link, verifies it");
        println!("(headers, IPv4 and UDP checksums, addresses, ports, length, sequence) and drops it. Only A's calls");
        println!("are timed (wall clock, one thread); the sink is not. typical batch: the median over a run's batches");
        println!("of (send + poll time) / datagrams, which a preempted batch does not move; all time: the sums over");
        println!(
            "the run, split into the two phases. A positive difference: connected is cheaper."
        );
        let worst = pipe.worst_others(None);
        let least = pipe
            .ok
            .iter()
            .flatten()
            .map(|(_, o)| o.cpu_share())
            .reduce(f64::min);
        if worst.is_some_and(|w| w > 0.25) || least.is_some_and(|l| l < 0.97) {
            println!(
                "\n**Warning:** other processes kept up to {:.2} CPUs busy, and the sender got as little as {:.3} of a CPU during a run; the numbers are disturbed.",
                worst.unwrap_or(0.0),
                least.unwrap_or(1.0)
            );
        }
        if let Some(ns) = source_ns {
            println!();
            println!("What `connect` saves smoltcp per datagram, timed alone: `Interface::get_source_address` takes {ns:.1} ns per call (best of 5 × 10^7 calls).");
        }
        println!();
    }

    let errors: Vec<&String> = tap
        .errors
        .iter()
        .chain(&kernel.errors)
        .chain(&pipe.errors)
        .collect();
    if !errors.is_empty() {
        println!("Errors:");
        for e in errors {
            println!("{e}");
        }
    }
}
