//! Pieces of the `bench_pps` binary: UDP packets per second and TCP round-trip latency for
//! ustack over AF_PACKET (each I/O mode, and fanout over several stacks), with the kernel's
//! own UDP and TCP over the same kind of veth link as anchors. Namespaces, the veth link
//! ([`UserVeth`](crate::bench::net::UserVeth)), the deadline, pinning and the CPU meter come
//! from `bench/mod.rs` and `bench/net.rs`.

pub mod csv;
pub mod gen;
pub mod kernel_side;
pub mod latency;
pub mod report;
pub mod rows;
pub mod stacks;

use std::fmt;
use std::time::Duration;

use ustack_drivers::{IoMode, RingConfig};

/// UDP port of the echo and receive-only servers.
pub const UDP_PORT: u16 = 7;
/// TCP port of the echo server of the latency rows.
pub const TCP_PORT: u16 = 7;

/// How ustack's side of a row is built.
#[derive(Debug, Clone, Copy)]
pub struct StackSetup {
    /// The AF_PACKET I/O mode of every stack.
    pub mode: IoMode,
    /// Stacks (threads), each with its own socket in one fanout group; 1 means no fanout.
    pub stacks: usize,
}

impl StackSetup {
    /// The single-stack setups, one per I/O mode, then fanout over `fanout` stacks in the
    /// batched and ring modes.
    pub fn all(batch: usize, fanout: usize) -> Vec<StackSetup> {
        let modes = [
            IoMode::PerFrame,
            IoMode::Batched { batch },
            IoMode::Ring(RingConfig::default()),
        ];
        let mut v: Vec<StackSetup> = modes
            .iter()
            .map(|m| StackSetup {
                mode: *m,
                stacks: 1,
            })
            .collect();
        if fanout > 1 {
            v.extend(modes[1..].iter().map(|m| StackSetup {
                mode: *m,
                stacks: fanout,
            }));
        }
        v
    }

    /// Short name of the I/O mode, as the tables and the CSV print it.
    pub fn mode_name(&self) -> String {
        mode_name(&self.mode)
    }
}

impl fmt::Display for StackSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stacks > 1 {
            write!(f, "fanout {} × {}", self.stacks, self.mode_name())
        } else {
            f.write_str(&self.mode_name())
        }
    }
}

/// `per-frame`, `batched (64)` or `ring`.
pub fn mode_name(mode: &IoMode) -> String {
    match mode {
        IoMode::Batched { batch } => format!("batched ({batch})"),
        other => other.name().into(),
    }
}

/// The load of a UDP row, and how long it is measured.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Generator threads in the peer namespace.
    pub threads: usize,
    /// Connected UDP sockets per generator thread (distinct source ports, so fanout
    /// spreads them).
    pub sockets: usize,
    /// Echo rows: datagrams each socket keeps in flight.
    pub window: usize,
    /// Datagrams per `sendmmsg`/`recvmmsg` of the generator.
    pub batch: usize,
    /// Payload bytes per datagram.
    pub size: usize,
    /// Traffic before the clock starts (ARP, caches, windows filling).
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
}

/// What one UDP row measured.
#[derive(Debug, Clone, Default)]
pub struct UdpOutcome {
    /// Datagrams per second counted at the receiver in the measured window (echo rows: the
    /// echoes the generator got back; receive rows: what the server took).
    pub pps: f64,
    /// Datagrams the generator sent per second in the window.
    pub sent_pps: f64,
    /// Frames the AF_PACKET sockets received per receive syscall (ustack rows).
    pub rx_per_syscall: Option<f64>,
    /// Frames the AF_PACKET sockets sent per send syscall (ustack echo rows).
    pub tx_per_syscall: Option<f64>,
    /// Frames the kernel dropped before ustack got them (ring or socket buffer full), over
    /// the whole row (ustack rows).
    pub drops: Option<u64>,
    /// Datagrams the generator sent that the server never took, over the whole row.
    pub lost: u64,
    /// Datagrams each stack took, for fanout rows.
    pub per_stack: Vec<u64>,
    /// Echo rows: times a generator socket heard nothing back for 20 ms and started its
    /// window over (lost datagrams), over the whole row.
    pub refills: u64,
    /// CPUs other processes kept busy during the measured window.
    pub others_cpu: Option<f64>,
    /// CPU time the server's threads used in the measured window, in seconds (from
    /// `/proc/self/task/<tid>/stat`, so the threads themselves pay nothing for it).
    pub server_cpu: Option<f64>,
    /// Datagrams the server took in the measured window.
    pub took: u64,
    /// Length of the measured window in seconds.
    pub window_secs: f64,
    /// Repetitions of the row this is the median of (0 or 1: a single run).
    pub runs: usize,
    /// Lowest and highest pps over the repetitions.
    pub spread: Option<(f64, f64)>,
}

impl UdpOutcome {
    /// Server CPU microseconds per datagram taken in the measured window.
    pub fn cpu_us_per_datagram(&self) -> Option<f64> {
        self.server_cpu
            .filter(|_| self.took > 0)
            .map(|c| c * 1e6 / self.took as f64)
    }
}

/// The calling thread's id, for [`thread_cpu`].
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU seconds (user + system) thread `tid` of this process used so far, read from
/// `/proc/self/task/<tid>/stat` (clock-tick resolution); `None` if it cannot be read.
pub fn thread_cpu(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((f.get(11)? + f.get(12)?) as f64 / hz)
}
