//! The markdown tables and goal checks `bench_pps` prints.

use super::latency::Rtts;
use super::rows::UdpServer;
use super::{Load, UdpOutcome};

/// Results of one UDP table (echo or receive-only), in row order.
pub struct UdpTable {
    /// Echo rows (else receive-only).
    pub echo: bool,
    /// Each server with its outcome or error.
    pub rows: Vec<(UdpServer, Result<UdpOutcome, String>)>,
}

/// A latency row: (server and link, how it waits, the round trips or the error).
pub type RttRow = (String, String, Result<Rtts, String>);

fn name(s: &UdpServer) -> String {
    match s {
        UdpServer::Ustack(setup) => format!("ustack, {setup}"),
        UdpServer::Kernel(1) => "kernel `std::net` server".into(),
        UdpServer::Kernel(n) => format!("kernel `std::net` server, {n} × SO_REUSEPORT"),
    }
}

fn threads(s: &UdpServer) -> usize {
    match s {
        UdpServer::Ustack(setup) => setup.stacks,
        UdpServer::Kernel(n) => *n,
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn kpps(v: f64) -> String {
    format!("{:.1}k", v / 1e3)
}

/// The pps of the row whose server matches `pred`.
fn pps_of(t: &UdpTable, pred: impl Fn(&UdpServer) -> bool) -> Option<f64> {
    t.rows
        .iter()
        .filter(|(s, _)| pred(s))
        .find_map(|(_, r)| r.as_ref().ok().map(|o| o.pps))
}

fn is_per_frame(s: &UdpServer) -> bool {
    matches!(s, UdpServer::Ustack(x) if x.stacks == 1 && matches!(x.mode, ustack_drivers::IoMode::PerFrame))
}

/// Prints every table, then the goal checks.
pub fn print(load: &Load, rx_threads: usize, pinned: bool, tables: &[UdpTable], rtts: &[RttRow]) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Machine: {cpus} CPUs. Load generator: {} kernel threads (echo rows; {rx_threads} for the \
         receive rows) × {} connected UDP sockets each, {}-datagram sendmmsg/recvmmsg batches; \
         echo window {} datagrams per socket. {} B payloads, {:.1} s warm-up, {:.1} s measured \
         per row. ustack: one thread per stack, blocking poll. Threads {}pinned. Counters are \
         those of the median run.\n",
        load.threads,
        load.sockets,
        load.batch,
        load.window,
        load.size,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64(),
        if pinned { "" } else { "not " }
    );
    for t in tables {
        print_udp(t);
    }
    if !rtts.is_empty() {
        print_rtt(rtts);
    }
    goals(tables);
}

fn print_udp(t: &UdpTable) {
    let per_frame = pps_of(t, is_per_frame);
    let kernel = pps_of(t, |s| matches!(s, UdpServer::Kernel(1)));
    if t.echo {
        println!("### UDP echo over veth: echoes per second\n");
    } else {
        println!("### UDP receive over veth (generator only sends): datagrams per second taken\n");
    }
    println!("| server | server threads | pps | min–max (runs) | × per-frame | × kernel | server CPU µs / datagram | server CPUs busy | generator sent/s | frames per rx call | frames per tx call | AF_PACKET drops | not taken (row) | per stack (window) | refills | others' CPUs |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for (s, r) in &t.rows {
        match r {
            Ok(o) => println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name(s),
                threads(s),
                kpps(o.pps),
                match o.spread {
                    Some((lo, hi)) if o.runs > 1 =>
                        format!("{}–{} ({})", kpps(lo), kpps(hi), o.runs),
                    _ => "–".into(),
                },
                opt(per_frame.map(|p| o.pps / p), 2),
                opt(kernel.map(|k| o.pps / k), 2),
                opt(o.cpu_us_per_datagram(), 2),
                opt(o.server_cpu.map(|c| c / o.window_secs), 2),
                kpps(o.sent_pps),
                opt(o.rx_per_syscall, 1),
                opt(o.tx_per_syscall, 1),
                o.drops.map_or("–".into(), |d| d.to_string()),
                o.lost,
                if o.per_stack.len() > 1 {
                    o.per_stack
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(" / ")
                } else {
                    "–".into()
                },
                if t.echo {
                    o.refills.to_string()
                } else {
                    "–".into()
                },
                opt(o.others_cpu, 2),
            ),
            Err(e) => println!("| {} | {} | error: {e} ||||||||||||||", name(s), threads(s)),
        }
    }
    println!();
}

fn print_rtt(rows: &[RttRow]) {
    println!(
        "### TCP round trip, 64 B echo, one connection (kernel client in the peer namespace)\n"
    );
    println!("| server | wait | p50 µs | p99 µs | mean µs | round trips |");
    println!("|---|---|---:|---:|---:|---:|");
    for (server, wait, r) in rows {
        match r {
            Ok(v) => println!(
                "| {server} | {wait} | {:.1} | {:.1} | {:.1} | {} |",
                v.quantile_us(0.5),
                v.quantile_us(0.99),
                v.mean_us(),
                v.0.len()
            ),
            Err(e) => println!("| {server} | {wait} | error: {e} ||||"),
        }
    }
    println!();
}

fn goals(tables: &[UdpTable]) {
    let Some(t) = tables.iter().find(|t| t.echo) else {
        return;
    };
    let per_frame = pps_of(t, is_per_frame);
    let kernel = pps_of(t, |s| matches!(s, UdpServer::Kernel(1)));
    // The best single-stack batched or ring row: the goal is about I/O modes, not cores.
    let best = t
        .rows
        .iter()
        .filter(|(s, _)| matches!(s, UdpServer::Ustack(x) if x.stacks == 1 && !is_per_frame(s)))
        .filter_map(|(s, r)| r.as_ref().ok().map(|o| (name(s), o.pps)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    println!("### Goal checks (UDP echo)\n");
    let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
    match (&best, per_frame) {
        (Some((n, b)), Some(p)) => println!(
            "- batched or ring ≥ 3× per-frame: {} ({n}: {} vs {}, {:.2}×)",
            verdict(*b >= 3.0 * p),
            kpps(*b),
            kpps(p),
            b / p
        ),
        _ => println!("- batched or ring ≥ 3× per-frame: not measured"),
    }
    match (&best, kernel) {
        (Some((n, b)), Some(k)) => println!(
            "- ≥ the kernel's UDP echo on the same veth: {} ({n}: {} vs {}, {:.2}×)",
            verdict(*b >= k),
            kpps(*b),
            kpps(k),
            b / k
        ),
        _ => println!("- ≥ the kernel's UDP echo: not measured"),
    }
    // Not a goal: the multi-stack rows against the kernel with as many threads.
    let fanout_best = t
        .rows
        .iter()
        .filter(|(s, _)| matches!(s, UdpServer::Ustack(x) if x.stacks > 1))
        .filter_map(|(s, r)| r.as_ref().ok().map(|o| (name(s), threads(s), o.pps)))
        .max_by(|a, b| a.2.total_cmp(&b.2));
    if let Some((n, k, f)) = fanout_best {
        if let Some(kn) = pps_of(t, |s| matches!(s, UdpServer::Kernel(x) if *x == k)) {
            println!(
                "- (no goal) {n}: {} vs the kernel with {k} threads: {} ({:.2}×)",
                kpps(f),
                kpps(kn),
                f / kn
            );
        }
    }
    // Throughput on 2 CPUs is shared with the generator and the kernel's veth work, so
    // also show what each echo cost the stack's own thread.
    let cpu = |pred: &dyn Fn(&UdpServer) -> bool| {
        t.rows
            .iter()
            .filter(|(s, _)| pred(s))
            .find_map(|(_, r)| r.as_ref().ok().and_then(UdpOutcome::cpu_us_per_datagram))
    };
    let cheapest = t
        .rows
        .iter()
        .filter(|(s, _)| matches!(s, UdpServer::Ustack(x) if x.stacks == 1 && !is_per_frame(s)))
        .filter_map(|(s, r)| r.as_ref().ok()?.cpu_us_per_datagram().map(|c| (name(s), c)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(p), Some((n, c))) = (cpu(&is_per_frame), cheapest) {
        println!(
            "- server CPU per echo: per-frame {p:.2} µs, {n} {c:.2} µs ({:.2}× less); kernel {}",
            p / c,
            cpu(&|s| matches!(s, UdpServer::Kernel(1)))
                .map_or("–".into(), |k| format!("{k:.2} µs"))
        );
    }
    println!();
}
