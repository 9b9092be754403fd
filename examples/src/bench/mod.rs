//! Pieces of the `bench_tcp` binary: namespaces and links, the kernel peer, and the three
//! userspace/kernel contenders (ustack, plain smoltcp, kernel over veth).

pub mod kernel;
pub mod net;
pub mod smoltcp_flow;
pub mod ustack_flow;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Host (kernel) side of the TAP, inside its namespace.
pub const HOST_IP: [u8; 4] = [10, 7, 0, 1];
/// The userspace stack's address on the TAP.
pub const USER_IP: [u8; 4] = [10, 7, 0, 2];
/// MAC of the userspace stack.
pub const USER_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x62, 0x65, 0x6e];
/// Port the userspace stack listens on (kernel → userspace flow).
pub const SINK_PORT: u16 = 5001;
/// Port the kernel listens on (userspace → kernel flow).
pub const SOURCE_PORT: u16 = 5002;
/// Chunk the kernel side reads and writes with, as smoltcp's `examples/benchmark.rs` does.
pub const KERNEL_CHUNK: usize = 1_000_000;

/// ustack's configuration at [`USER_IP`]/24 with [`USER_MAC`], seeded from the OS.
pub fn user_config() -> ustack::Config {
    let ip = ustack::smoltcp::wire::Ipv4Address::from(USER_IP);
    ustack::Config::new(USER_MAC, ustack::smoltcp::wire::Ipv4Cidr::new(ip, 24)).seed_from_os()
}

/// Parses a positive byte count: digits with optional `_` separators and an optional K, M or
/// G suffix (binary multiples), as the benchmarks' size flags take them.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.replace('_', "");
    let (num, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1024),
        Some('M' | 'm') => (&t[..t.len() - 1], 1024 * 1024),
        Some('G' | 'g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (&t[..], 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a positive size (e.g. 1000000, 64K, 1M)"))
}

/// Which way the bulk data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The kernel writes, the stack under test reads.
    KernelToUser,
    /// The stack under test writes, the kernel reads.
    UserToKernel,
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::KernelToUser => "kernel → userspace",
            Dir::UserToKernel => "userspace → kernel",
        })
    }
}

/// Frame and loop counters of one transfer over a TAP (none for veth).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Frames the userspace stack read from the TAP (host-side TX packets).
    pub frames_in: u64,
    /// Frames the userspace stack wrote to the TAP (host-side RX packets).
    pub frames_out: u64,
    /// Frames the kernel dropped on the host side (both directions), e.g. a full TAP queue.
    pub host_drops: u64,
    /// Iterations of the userspace poll loop.
    pub polls: u64,
    /// Of those, iterations that slept in `poll(2)`/`select(2)`.
    pub sleeps: u64,
}

impl Counters {
    /// Syscalls of the userspace side, estimated: one `read`/`write` per frame, one failed
    /// `read` (EAGAIN) ending each poll's receive loop, and one sleep call per sleep.
    pub fn syscalls_estimate(&self) -> u64 {
        self.frames_in + self.frames_out + self.polls + self.sleeps
    }
}

/// The result of one bulk transfer.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Payload bytes moved.
    pub bytes: u64,
    /// From the receiver's first byte to its last.
    pub elapsed: Duration,
    /// TAP and loop counters, when the flow ran over a TAP.
    pub counters: Option<Counters>,
    /// CPUs that other processes kept busy, on average, during the transfer (see [`CpuMeter`]).
    pub others_cpu: Option<f64>,
}

impl Outcome {
    /// Throughput in Gbit/s (10^9 bits per second).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// Limits every transfer shares.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Payload bytes per transfer.
    pub bytes: u64,
    /// Longest a transfer (including setup) may take before it is aborted.
    pub timeout: Duration,
}

static STOP: AtomicBool = AtomicBool::new(false);
static PIN: AtomicBool = AtomicBool::new(false);

/// With `on`, [`pin`] binds threads to CPUs; without, it does nothing.
pub fn set_pinning(on: bool) {
    PIN.store(on, Ordering::Relaxed);
}

/// Binds the calling thread to `cpu` when pinning is on (`--pin`): the userspace stack (or
/// veth reader) on CPU 0, the kernel-side peer on CPU 1. Failure is logged, not fatal.
pub fn pin(cpu: usize) {
    if !PIN.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch `set`,
    // and pid 0 means the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            log::warn!(
                "cannot pin a thread to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag that every loop checks, so Ctrl-C unwinds normally and
/// the namespace, TAP and veth guards remove what they created.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether Ctrl-C (or SIGTERM) was received.
pub fn interrupted() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// A deadline for one transfer; [`check`](Self::check) fails once it passed or on Ctrl-C.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    what: &'static str,
    timeout: Duration,
}

impl Deadline {
    /// A deadline `timeout` from now for the transfer described by `what`.
    pub fn new(timeout: Duration, what: &'static str) -> Self {
        Deadline {
            at: Instant::now() + timeout,
            what,
            timeout,
        }
    }

    /// Fails with a clear error when the deadline passed or the user interrupted.
    pub fn check(&self) -> io::Result<()> {
        if interrupted() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted (Ctrl-C)",
            ));
        }
        if Instant::now() >= self.at {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: no completion within {:?}; aborting this transfer (raise --timeout for slow machines)",
                    self.what, self.timeout
                ),
            ));
        }
        Ok(())
    }
}

/// Measures how much CPU *other* processes used while a transfer ran, so that a run disturbed
/// by a compiler or fuzzer on the same machine shows up in the report instead of silently
/// lowering the numbers.
///
/// It is the machine's busy time (`/proc/stat`: user, nice, system, irq, softirq, steal) minus
/// this process's own (`/proc/self/stat`: utime, stime, and waited-for children such as `ip`).
/// Interrupt and softirq work done for the benchmark's own traffic outside its threads counts as
/// "other" too, so a quiet machine reads a few hundredths, not zero.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    busy: u64,
    own: u64,
    at: Instant,
}

impl CpuMeter {
    /// A reading now, or `None` if `/proc` cannot be read.
    pub fn now() -> Option<CpuMeter> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy = cpu
            .get(..8)
            .map(|c| c[0] + c[1] + c[2] + c[5] + c[6] + c[7])?;
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime is field 14 of the whole line.
        let rest = &me[me.rfind(')')? + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        let own = f.get(11..15)?.iter().sum();
        Some(CpuMeter {
            busy,
            own,
            at: Instant::now(),
        })
    }

    /// Average CPUs used by others between `self` and `later`.
    pub fn others_since(&self, later: &CpuMeter) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let others =
            later.busy.saturating_sub(self.busy) as f64 - later.own.saturating_sub(self.own) as f64;
        let secs = (later.at - self.at).as_secs_f64().max(1e-3);
        (others / hz / secs).max(0.0)
    }
}
