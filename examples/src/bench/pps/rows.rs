//! One row of each kind, on a fresh link: UDP echo or receive-only (ustack over AF_PACKET or
//! the kernel), and TCP round-trip latency (ustack over AF_PACKET or TAP, or the kernel).

use std::io;
use std::net::SocketAddrV4;
use std::thread;
use std::time::{Duration, Instant};

use ustack::runtime::PollMode;
use ustack_drivers::{AfPacket, IoMode};

use crate::bench::net::{user_tap, UserVeth};
use crate::bench::{interrupted, CpuMeter, Deadline, USER_IP, USER_MAC};

use super::gen::Generator;
use super::kernel_side::KernelUdp;
use super::latency::{self, Rtts};
use super::stacks::Stacks;
use super::{thread_cpu, Load, StackSetup, UdpOutcome, UDP_PORT};

/// Who serves a UDP row.
#[derive(Debug, Clone, Copy)]
pub enum UdpServer {
    /// ustack over AF_PACKET.
    Ustack(StackSetup),
    /// The kernel's `std::net` server with this many threads (`SO_REUSEPORT` if more than
    /// one).
    Kernel(usize),
}

/// The server of a row, either kind.
enum Running {
    Ustack(Stacks),
    Kernel(KernelUdp),
}

impl Running {
    fn counts(&self) -> Vec<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            Running::Ustack(s) => s.received.iter().map(|c| c.load(Relaxed)).collect(),
            Running::Kernel(k) => k.received.iter().map(|c| c.load(Relaxed)).collect(),
        }
    }

    /// CPU seconds all server threads used so far.
    fn cpu(&self) -> Option<f64> {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            Running::Ustack(s) => s.tids.iter().map(|t| thread_cpu(t.load(Relaxed))).sum(),
            Running::Kernel(k) => k.tids.iter().map(|&t| thread_cpu(t)).sum(),
        }
    }
}

/// Sleeps `d`, waking early on Ctrl-C.
fn sleep(d: Duration) -> io::Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted (Ctrl-C)",
            ));
        }
        thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// One UDP row: a fresh link, the server, the generator in the peer namespace; `load.warmup`
/// of traffic, then `load.duration` measured.
pub fn udp(server: UdpServer, echo: bool, load: Load, prefix: &str) -> io::Result<UdpOutcome> {
    let kernel = matches!(server, UdpServer::Kernel(_));
    let link = UserVeth::create(prefix, kernel, None)?;
    let running = match server {
        UdpServer::Ustack(setup) => Running::Ustack(Stacks::start(
            &link,
            &setup,
            echo,
            PollMode::Block,
            std::process::id() as u16,
        )?),
        UdpServer::Kernel(threads) => {
            Running::Kernel(KernelUdp::start(link.user.name(), echo, threads)?)
        }
    };
    let to = SocketAddrV4::new(USER_IP.into(), UDP_PORT);
    let gen = Generator::start(link.peer.name(), to, load, echo, 1);
    sleep(load.warmup)?;
    let ((s0, r0), c0, cpu0, m0, t0) = (
        gen.snapshot(),
        running.counts(),
        running.cpu(),
        CpuMeter::now(),
        Instant::now(),
    );
    sleep(load.duration)?;
    let ((s1, r1), c1, cpu1, m1, t1) = (
        gen.snapshot(),
        running.counts(),
        running.cpu(),
        CpuMeter::now(),
        Instant::now(),
    );
    let refills = gen
        .counts
        .refills
        .load(std::sync::atomic::Ordering::Relaxed);
    gen.finish()?;
    let secs = (t1 - t0).as_secs_f64();
    let per_stack: Vec<u64> = c1.iter().zip(&c0).map(|(a, b)| a - b).collect();
    let took: u64 = per_stack.iter().sum();
    let mut o = UdpOutcome {
        pps: if echo { (r1 - r0) as f64 } else { took as f64 } / secs,
        sent_pps: (s1 - s0) as f64 / secs,
        per_stack,
        refills,
        took,
        window_secs: secs,
        server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        others_cpu: m0.zip(m1).map(|(a, b)| a.others_since(&b)),
        ..UdpOutcome::default()
    };
    let total: u64 = c1.iter().sum();
    o.lost = s1.saturating_sub(total);
    match running {
        Running::Ustack(stacks) => {
            let reports = stacks.finish()?;
            let sum = |f: fn(&ustack_drivers::AfPacketStats) -> u64| -> u64 {
                reports.iter().map(|r| f(&r.dev)).sum()
            };
            let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
            o.rx_per_syscall = ratio(sum(|d| d.rx_frames), sum(|d| d.rx_syscalls));
            o.tx_per_syscall = echo
                .then(|| ratio(sum(|d| d.tx_frames), sum(|d| d.tx_syscalls)))
                .flatten();
            o.drops = Some(sum(|d| d.rx_kernel_drops));
            let ingress: u64 = reports.iter().map(|r| r.ingress_drops).sum();
            if ingress > 0 {
                log::warn!("ustack's ingress dropped {ingress} frames (malformed or bad checksum)");
            }
        }
        Running::Kernel(k) => {
            k.finish()?;
        }
    }
    if took == 0 {
        return Err(io::Error::other(
            "the server took no datagrams in the measured window; check the link (RUST_LOG=debug)",
        ));
    }
    drop(link);
    Ok(o)
}

/// Who serves a latency row.
#[derive(Debug, Clone, Copy)]
pub enum RttServer {
    /// ustack over AF_PACKET in this mode, waiting this way.
    AfPacket(IoMode, PollMode),
    /// ustack over a TAP, waiting this way.
    Tap(PollMode),
    /// The kernel's TCP over veth.
    Kernel,
}

/// One latency row on a fresh link: `warmup` untimed and `count` timed round trips.
pub fn rtt(
    server: RttServer,
    warmup: usize,
    count: usize,
    timeout: Duration,
    prefix: &str,
) -> io::Result<Rtts> {
    let deadline = Deadline::new(timeout, "TCP round trips");
    match server {
        RttServer::AfPacket(mode, poll) => {
            let link = UserVeth::create(prefix, false, None)?;
            let dev = link.open(mode, None)?;
            let mac = dev.mac();
            let srv = latency::ustack_server(dev, mac, Some(AfPacket::flush), poll);
            let r = latency::client(link.peer.name(), warmup, count, deadline);
            srv.finish()?;
            r
        }
        RttServer::Tap(poll) => {
            let (ns, tap) = user_tap(prefix)?;
            let srv = latency::ustack_server(tap, USER_MAC, None, poll);
            let r = latency::client(ns.name(), warmup, count, deadline);
            srv.finish()?;
            r
        }
        RttServer::Kernel => {
            let link = UserVeth::create(prefix, true, None)?;
            let srv = latency::kernel_server(link.user.name());
            let r = latency::client(link.peer.name(), warmup, count, deadline);
            srv.finish()?;
            r
        }
    }
}
