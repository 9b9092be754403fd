//! UDP packets per second and TCP round-trip latency: ustack over AF_PACKET in each I/O mode
//! (and fanout over several stacks) against the kernel on the same kind of veth link, in one
//! run.
//!
//! - **UDP echo** (64 B): a kernel load generator in the peer namespace keeps a window of
//!   datagrams in flight on several connected sockets (`sendmmsg`/`recvmmsg`); the server
//!   echoes them. Rows: ustack per-frame, batched, ring, fanout × 2 (batched, ring), and the
//!   kernel's own `std::net` echo server on the same veth (ustack's end given the address).
//! - **UDP receive**: the generator only sends; the server counts what it takes.
//! - **TCP round trip** (64 B ping-pong, one connection): ustack over AF_PACKET (batched) and
//!   over TAP, blocking and busy polling, with kernel TCP over veth as reference.
//!
//! Every row gets a fresh veth pair (or TAP) and namespaces, removed on exit, error, panic
//! and Ctrl-C. ustack's end has no kernel address in ustack rows. Markdown tables go to
//! stdout, progress to stderr, CSV rows to `--csv` (default `target/bench/pps.csv`).
//!
//! ```text
//! sudo target/release/bench_pps [--duration SECS] [--only echo,rx,rtt] [--gen-threads N] ...
//! ```

#[allow(dead_code)] // bench_tcp's flows are not all used here
#[path = "../bench/mod.rs"]
mod bench;
#[path = "../bench/pps/mod.rs"]
mod pps;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pps::csv::Csv;
use pps::report::UdpTable;
use pps::rows::{RttServer, UdpServer};
use pps::{Load, StackSetup, UdpOutcome};
use ustack::runtime::PollMode;
use ustack_drivers::IoMode;

const USAGE: &str = "\
usage: bench_pps [options]
  --duration SECS    measured time of each UDP row (default 3; fractions allowed)
  --warmup SECS      traffic before the clock starts (default 0.5)
  --size BYTES       UDP payload (default 64)
  --gen-threads N    load generator threads of the echo rows (default 2)
  --rx-gen-threads N load generator threads of the receive rows (default 2; 1 leaves a core
                     to the receiver, but one kernel sender then caps the rate)
  --sockets N        connected sockets per generator thread (default 8)
  --window N         echo: datagrams in flight per socket (default 32)
  --gen-batch N      datagrams per sendmmsg/recvmmsg of the generator (default 32)
  --batch N          AF_PACKET batch (batched mode) (default 64)
  --fanout N         stacks of the fanout rows (default 2; 1 = no fanout rows)
  --rtts N           timed TCP round trips per latency row (default 20000, after 1000 untimed)
  --no-tap           no TAP latency rows
  --only LIST        echo,rx,rtt (default all)
  --repeat N         run every UDP row N times (round-robin) and report the median (default 1)
  --pin              pin stack threads to CPU 0 (stack i to CPU i), generator / client to CPU 1
  --csv PATH         CSV output (default target/bench/pps.csv)
  --timeout SECS     abort a latency row that takes longer (default 60)
needs root: creates network namespaces and veth/TAP interfaces (all removed on exit)";

struct Args {
    load: Load,
    rx_gen_threads: usize,
    batch: usize,
    fanout: usize,
    rtts: usize,
    tap: bool,
    only: [bool; 3],
    repeat: usize,
    pin: bool,
    csv: PathBuf,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        load: Load {
            threads: 2,
            sockets: 8,
            window: 32,
            batch: 32,
            size: 64,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(3),
        },
        rx_gen_threads: 2,
        batch: 64,
        fanout: 2,
        rtts: 20_000,
        tap: true,
        only: [true; 3],
        repeat: 1,
        pin: false,
        csv: PathBuf::from("target/bench/pps.csv"),
        timeout: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let num = |v: String| -> Result<usize, String> {
            v.replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("bad value `{v}`: expected a positive number"))
        };
        let secs = |v: String| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or(format!("bad value `{v}`: expected seconds, e.g. 3 or 0.5"))
        };
        match arg.as_str() {
            "--duration" => a.load.duration = secs(value()?)?,
            "--warmup" => a.load.warmup = secs(value()?)?,
            "--size" => a.load.size = num(value()?)?.min(1472),
            "--gen-threads" => a.load.threads = num(value()?)?,
            "--rx-gen-threads" => a.rx_gen_threads = num(value()?)?,
            "--sockets" => a.load.sockets = num(value()?)?,
            "--window" => a.load.window = num(value()?)?,
            "--gen-batch" => a.load.batch = num(value()?)?,
            "--batch" => a.batch = num(value()?)?,
            "--fanout" => a.fanout = num(value()?)?,
            "--rtts" => a.rtts = num(value()?)?,
            "--repeat" => a.repeat = num(value()?)?,
            "--timeout" => a.timeout = secs(value()?)?,
            "--no-tap" => a.tap = false,
            "--pin" => a.pin = true,
            "--csv" => a.csv = PathBuf::from(value()?),
            "--only" => {
                a.only = [false; 3];
                for w in value()?.split(',') {
                    match w.trim() {
                        "echo" => a.only[0] = true,
                        "rx" => a.only[1] = true,
                        "rtt" => a.only[2] = true,
                        other => {
                            return Err(format!("unknown row kind `{other}` in --only\n{USAGE}"))
                        }
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
        eprintln!("bench_pps needs root (network namespaces, veth and TAP interfaces, AF_PACKET); run it with sudo");
        return ExitCode::from(2);
    }
    bench::install_signal_handlers();
    bench::set_pinning(args.pin);
    let prefix = format!("up{}", std::process::id() % 100_000);
    let mut csv = Csv::default();
    let mut failed = false;

    let mut servers: Vec<UdpServer> = StackSetup::all(args.batch, args.fanout)
        .into_iter()
        .map(UdpServer::Ustack)
        .collect();
    servers.push(UdpServer::Kernel(1));
    if args.fanout > 1 {
        servers.push(UdpServer::Kernel(args.fanout));
    }
    // results[kind][server]: every repetition's outcome; round-robin over kinds and
    // servers, so slow drift of the machine hits all rows alike.
    let kinds: Vec<bool> = [(0, true), (1, false)]
        .into_iter()
        .filter(|&(k, _)| args.only[k])
        .map(|(_, echo)| echo)
        .collect();
    let mut results: Vec<Vec<Vec<Result<UdpOutcome, String>>>> =
        vec![vec![Vec::new(); servers.len()]; kinds.len()];
    'reps: for rep in 1..=args.repeat {
        for (k, &echo) in kinds.iter().enumerate() {
            for (j, &s) in servers.iter().enumerate() {
                if bench::interrupted() {
                    break 'reps;
                }
                let name = server_name(&s);
                let kind = if echo { "echo" } else { "receive" };
                log::info!("[{rep}/{}] UDP {kind}: {name} ...", args.repeat);
                let load = if echo {
                    args.load
                } else {
                    Load {
                        threads: args.rx_gen_threads,
                        ..args.load
                    }
                };
                let r = pps::rows::udp(s, echo, load, &prefix).map_err(|e| e.to_string());
                match &r {
                    Ok(o) => log::info!("{name}: {:.0} pps", o.pps),
                    Err(e) => {
                        log::error!("{name}: {e}");
                        failed = true;
                    }
                }
                results[k][j].push(r);
            }
        }
    }
    let mut tables = Vec::new();
    for (&echo, per_server) in kinds.iter().zip(results) {
        let mut t = UdpTable {
            echo,
            rows: Vec::new(),
        };
        for (&s, runs) in servers.iter().zip(per_server) {
            let Some(r) = median(runs) else { continue };
            if let Ok(o) = &r {
                let (contender, mode) = csv_names(&s);
                let bench = if echo { "udp_echo" } else { "udp_rx" };
                csv.add(bench, &contender, &mode, "pps", o.pps.round(), "pps");
                if let Some(c) = o.cpu_us_per_datagram() {
                    let c = (c * 1000.0).round() / 1000.0;
                    csv.add(bench, &contender, &mode, "server_cpu_per_datagram", c, "us");
                }
            }
            t.rows.push((s, r));
        }
        tables.push(t);
    }

    let mut rtt_rows = Vec::new();
    if args.only[2] {
        let af = IoMode::Batched { batch: args.batch };
        let mut servers = vec![
            RttServer::AfPacket(af, PollMode::Block),
            RttServer::AfPacket(af, PollMode::BusyPoll),
        ];
        if args.tap {
            servers.extend([
                RttServer::Tap(PollMode::Block),
                RttServer::Tap(PollMode::BusyPoll),
            ]);
        }
        servers.push(RttServer::Kernel);
        for s in servers {
            if bench::interrupted() {
                break;
            }
            let (link, wait) = rtt_names(&s);
            log::info!("TCP round trips: {link}, {wait} ...");
            let r = pps::rows::rtt(s, 1000, args.rtts, args.timeout, &prefix)
                .map_err(|e| e.to_string());
            match &r {
                Ok(v) => {
                    for (metric, value) in [
                        ("p50", v.quantile_us(0.5)),
                        ("p99", v.quantile_us(0.99)),
                        ("mean", v.mean_us()),
                    ] {
                        csv.add(
                            "tcp_rtt",
                            &link,
                            &wait,
                            metric,
                            (value * 100.0).round() / 100.0,
                            "us",
                        );
                    }
                }
                Err(e) => {
                    log::error!("{link}, {wait}: {e}");
                    failed = true;
                }
            }
            rtt_rows.push((link, wait, r));
        }
    }

    pps::report::print(
        &args.load,
        args.rx_gen_threads,
        args.pin,
        &tables,
        &rtt_rows,
    );
    match csv.write(&args.csv) {
        Ok(()) => eprintln!("CSV rows written to {}", args.csv.display()),
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    if bench::interrupted() {
        eprintln!("interrupted; everything created was removed");
        return ExitCode::from(130);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The run with the median pps (the lower middle one for an even count), with the spread
/// of all successful runs; the first error when none succeeded.
fn median(runs: Vec<Result<UdpOutcome, String>>) -> Option<Result<UdpOutcome, String>> {
    let mut ok: Vec<UdpOutcome> = runs
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    if ok.is_empty() {
        return runs.into_iter().next();
    }
    ok.sort_by(|a, b| a.pps.total_cmp(&b.pps));
    let spread = (ok[0].pps, ok[ok.len() - 1].pps);
    let mut m = ok.swap_remove((ok.len() - 1) / 2);
    m.runs = runs.len();
    m.spread = Some(spread);
    Some(Ok(m))
}

fn server_name(s: &UdpServer) -> String {
    match s {
        UdpServer::Ustack(setup) => format!("ustack AF_PACKET {setup}"),
        UdpServer::Kernel(n) => format!("kernel std::net ({n} threads)"),
    }
}

/// (contender, mode) columns of the CSV.
fn csv_names(s: &UdpServer) -> (String, String) {
    match s {
        UdpServer::Ustack(setup) => ("ustack AF_PACKET".into(), setup.to_string()),
        UdpServer::Kernel(1) => ("kernel".into(), "std::net, 1 thread".into()),
        UdpServer::Kernel(n) => ("kernel".into(), format!("std::net, {n} × SO_REUSEPORT")),
    }
}

/// (link, wait) of a latency row.
fn rtt_names(s: &RttServer) -> (String, String) {
    let wait = |p: &PollMode| match p {
        PollMode::Block => "block".to_string(),
        PollMode::BusyPoll => "busy-poll".to_string(),
    };
    match s {
        RttServer::AfPacket(m, p) => (format!("ustack AF_PACKET {}", pps::mode_name(m)), wait(p)),
        RttServer::Tap(p) => ("ustack TAP".into(), wait(p)),
        RttServer::Kernel => ("kernel TCP over veth".into(), "block".into()),
    }
}
