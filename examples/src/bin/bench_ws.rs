//! WebSocket echo over a real link, ustack against tungstenite, in one run: messages per
//! second for 100 connections of request/response echo, with 20-byte and 16 KiB binary
//! messages, from the same kernel-side tungstenite load client:
//!
//! - **ustack**: `WsServer` on a session engine over a TAP, one stack thread;
//! - **tungstenite** 0.30: kernel TCP over a veth pair, one thread per connection.
//!
//! Progress goes to stderr, a markdown table to stdout. Needs root (network namespaces, TAP
//! and veth, all removed on exit, on error, on panic and on Ctrl-C).
//!
//! ```text
//! sudo target/release/bench_ws [--repeat N] [--duration SECS] [--conns 100] [--sizes 20,16K]
//! ```

#[allow(dead_code)] // bench_tcp's flows, counters and kernel peer are not used here
#[path = "../bench/mod.rs"]
mod bench;
#[path = "../bench/ws_echo.rs"]
mod ws_echo;

use std::process::ExitCode;
use std::time::Duration;

use ws_echo::{EchoOutcome, EchoSpec, Server};

const USAGE: &str = "\
usage: bench_ws [options]
  --repeat N          runs of every cell; the report gives the median (default 3)
  --duration SECS     measured time per cell (default 2; decimals allowed)
  --warmup SECS       untimed echo traffic before it (default 0.5)
  --conns LIST        concurrent connections per cell (default 100)
  --sizes LIST        message payload bytes, K/M suffixes allowed (default 20,16K)
  --servers LIST      ustack, tungstenite (default both)
  --threads N         client threads the connections are spread over (default 4)
  --timeout SECS      limit for one cell's setup (default 60)
creates network namespaces, TAP and veth interfaces (all removed on exit)";

struct Args {
    repeat: usize,
    duration: Duration,
    warmup: Duration,
    conns: Vec<usize>,
    sizes: Vec<usize>,
    servers: Vec<Server>,
    threads: usize,
    timeout: Duration,
}

fn secs(arg: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad {arg} `{v}`: expected seconds"))
}

fn num(arg: &str, v: &str) -> Result<usize, String> {
    v.replace('_', "")
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad {arg} `{v}`: expected a positive number"))
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        repeat: 3,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        conns: vec![100],
        sizes: vec![20, 16 * 1024],
        servers: Server::ALL.to_vec(),
        threads: 4,
        timeout: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Err(USAGE.into());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{arg} wants a value\n{USAGE}"))?;
        match arg.as_str() {
            "--repeat" => a.repeat = num(&arg, &v)?,
            "--duration" => a.duration = secs(&arg, &v)?,
            "--warmup" => a.warmup = secs(&arg, &v)?,
            "--conns" => {
                a.conns = v
                    .split(',')
                    .map(|x| num(&arg, x))
                    .collect::<Result<_, _>>()?
            }
            "--sizes" => {
                a.sizes = v
                    .split(',')
                    .map(|x| bench::parse_size(x).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--servers" => {
                a.servers = v
                    .split(',')
                    .map(|x| Server::parse(x).ok_or_else(|| format!("unknown server `{x}`")))
                    .collect::<Result<_, _>>()?
            }
            "--threads" => a.threads = num(&arg, &v)?,
            "--timeout" => a.timeout = secs(&arg, &v)?,
            _ => return Err(format!("unknown option `{arg}`\n{USAGE}")),
        }
    }
    Ok(a)
}

fn median_run(runs: &[EchoOutcome]) -> Option<EchoOutcome> {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    v.get((v.len().max(1) - 1) / 2).copied()
}

fn size_name(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    bench::install_signal_handlers();
    let prefix = format!("bws{}", std::process::id());
    // (conns, size, server) → runs
    let mut results: Vec<Cell> = Vec::new();
    let mut failed = false;
    for &conns in &args.conns {
        for &size in &args.sizes {
            let mut cells: Vec<Vec<EchoOutcome>> = vec![Vec::new(); args.servers.len()];
            // Runs interleave the servers, so slow drifts in the machine's load hit both.
            for r in 0..args.repeat {
                for (si, &server) in args.servers.iter().enumerate() {
                    if bench::interrupted() {
                        return ExitCode::FAILURE;
                    }
                    let spec = EchoSpec {
                        conns,
                        size,
                        duration: args.duration,
                        warmup: args.warmup,
                        timeout: args.timeout,
                        threads: args.threads,
                    };
                    eprintln!(
                        "[bench_ws] {} conns × {}, {}: run {}/{} …",
                        conns,
                        size_name(size),
                        server.key(),
                        r + 1,
                        args.repeat
                    );
                    match ws_echo::run(server, spec, &prefix) {
                        Ok(o) => {
                            eprintln!(
                                "[bench_ws]   {:.0} msgs/s (server CPU {:.1} µs/msg, others' CPUs {:.2})",
                                o.rate(),
                                o.per_msg_us(o.server_cpu),
                                o.others_cpu.unwrap_or(f64::NAN)
                            );
                            cells[si].push(o);
                        }
                        Err(e) => {
                            eprintln!("[bench_ws]   failed: {e}");
                            failed = true;
                        }
                    }
                }
            }
            for (si, &server) in args.servers.iter().enumerate() {
                results.push(((conns, size, server), std::mem::take(&mut cells[si])));
            }
        }
    }
    print_report(&args, &results);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// (connections, message size, server) and the runs of that cell.
type Cell = ((usize, usize, Server), Vec<EchoOutcome>);

fn print_report(args: &Args, results: &[Cell]) {
    println!(
        "### WebSocket echo over a virtual link: msgs/s, median of {} runs, {:.1} s each\n",
        args.repeat,
        args.duration.as_secs_f64()
    );
    println!("| conns | message | server | runs | median msgs/s | min–max | ×tungstenite | mean RTT µs | server CPU µs/msg | client CPU µs/msg | others' CPUs |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((conns, size, server), runs) in results {
        let Some(o) = median_run(runs) else {
            println!(
                "| {conns} | {} | {} | 0 | – | – | – | – | – | – | – |",
                size_name(*size),
                server.title()
            );
            continue;
        };
        let rates: Vec<f64> = runs.iter().map(EchoOutcome::rate).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let base = results
            .iter()
            .find(|((c, s, v), _)| c == conns && s == size && *v == Server::Tungstenite)
            .and_then(|(_, r)| median_run(r));
        let ratio = base.map_or("–".into(), |b| format!("{:.2}×", o.rate() / b.rate()));
        println!(
            "| {conns} | {} | {} | {} | {:.0} | {:.0}–{:.0} | {ratio} | {:.0} | {:.1} | {:.1} | {:.2} |",
            size_name(*size),
            server.title(),
            runs.len(),
            o.rate(),
            lo,
            hi,
            *conns as f64 / o.rate() * 1e6,
            o.per_msg_us(o.server_cpu),
            o.per_msg_us(o.client_cpu),
            o.others_cpu.unwrap_or(f64::NAN),
        );
    }
    println!();
    println!("msgs/s: echoes the clients received (and checked: length and bytes) per second after a {:.1} s warm-up.", args.warmup.as_secs_f64());
    println!("Client: {} kernel-side threads, tungstenite 0.30 clients over kernel TCP (TCP_NODELAY), each sending one masked", args.threads);
    println!("binary message on every one of its connections, then reading every echo: one message in flight per connection.");
    println!("Mean RTT = conns / (msgs/s). Server CPU: every thread of the process but the clients' (for the veth row, kernel");
    println!(
        "softirq work is charged to whichever thread was interrupted). {} CPUs, threads unpinned.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let stats: Vec<_> = results
        .iter()
        .flat_map(|(_, runs)| runs.iter().filter_map(|o| o.engine))
        .collect();
    if !stats.is_empty() {
        println!(
            "ustack engine over all runs: {} sessions opened, {} ended by errors, {} by timeouts.",
            stats.iter().map(|s| s.opened).sum::<u64>(),
            stats.iter().map(|s| s.errors).sum::<u64>(),
            stats.iter().map(|s| s.timeouts).sum::<u64>()
        );
    }
    println!();
}
