//! Pieces of the `bench_udp` binary: connected `send` against unconnected `send_to`, for
//! ustack over TAP, for the kernel over veth, and for ustack's own CPU cost over the
//! in-memory pipe. Namespaces, the deadline, the CPU meter and pinning come from the
//! `bench_tcp` helpers in `bench/mod.rs` and `bench/net.rs`.

#[path = "udp_kernel.rs"]
pub mod kernel;
#[path = "udp_pipe.rs"]
pub mod pipe;
#[path = "udp_tap.rs"]
pub mod tap;

use std::fmt;
use std::time::Duration;

pub use kernel::SinkReport;

/// Port the kernel sink listens on.
pub const SINK_PORT: u16 = 5010;
/// Port every sender sends from.
pub const SOURCE_PORT: u16 = 5011;
/// Sequence number of warm-up datagrams (sent before the clock starts, not counted).
pub const WARM_SEQ: u64 = u64::MAX;
/// Smallest payload: the first 8 bytes carry the datagram's sequence number.
pub const MIN_SIZE: usize = 8;
/// Largest payload that fits one 1500-byte IPv4 packet.
pub const MAX_SIZE: usize = 1472;

/// How the sender addresses its datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `connect` once, then `send` (ustack: `udp_connect` + `udp_send`).
    Connected,
    /// No `connect`, `send_to` with the destination on every call (ustack: `udp_send_to`).
    Unconnected,
}

impl Mode {
    /// Both modes, in the order of the odd repetitions (even ones reverse it).
    pub const BOTH: [Mode; 2] = [Mode::Connected, Mode::Unconnected];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Connected => "connected `send`",
            Mode::Unconnected => "unconnected `send_to`",
        })
    }
}

/// What every row sends.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Datagrams per row (warm-up datagrams not included).
    pub count: u64,
    /// Payload bytes per datagram.
    pub size: usize,
    /// Datagrams ustack's socket can queue for transmission (`UdpOptions::tx_packets`).
    pub queue: usize,
    /// `SO_RCVBUF` the kernel sink asks for (with `SO_RCVBUFFORCE`).
    pub rcvbuf: usize,
    /// Longest one row (including setup) may take.
    pub timeout: Duration,
}

impl Spec {
    /// The ustack socket's buffers: `queue` datagrams in both directions, with room for
    /// them in the payload rings.
    pub fn udp_options(&self) -> ustack::UdpOptions {
        let bytes = (self.queue * self.size).max(64 * 1024);
        ustack::UdpOptions {
            rx_packets: self.queue,
            rx_bytes: bytes,
            tx_packets: self.queue,
            tx_bytes: bytes,
        }
    }
}

/// A payload of `size` bytes; [`stamp`] writes the sequence number into it.
pub fn payload(size: usize) -> Vec<u8> {
    vec![0x5a; size]
}

/// Writes sequence number `seq` into the first 8 bytes of `buf` (little endian).
#[inline]
pub fn stamp(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// The sequence number [`stamp`] wrote.
#[inline]
pub fn seq_of(buf: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(..8)?.try_into().ok()?))
}

/// The one call that differs between the two modes: `udp_send` on the connected socket,
/// `udp_send_to` with the destination on the unconnected one.
#[inline]
pub fn send<D: ustack::smoltcp::phy::Device>(
    stack: &mut ustack::Stack<'_, D>,
    mode: Mode,
    h: ustack::UdpHandle,
    buf: &[u8],
    to: ustack::smoltcp::wire::IpEndpoint,
) -> Result<(), ustack::Error> {
    match mode {
        Mode::Connected => stack.udp_send(h, buf),
        Mode::Unconnected => stack.udp_send_to(h, buf, to),
    }
}

/// CPU time the calling thread has used (user + system).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One row over a real link (ustack over TAP, or the kernel over veth).
#[derive(Debug, Clone)]
pub struct LinkOutcome {
    /// Datagrams the sender handed over successfully (its count, warm-up excluded).
    pub sent: u64,
    /// From the first send call to the moment the last datagram left the sender: for ustack,
    /// its frame was written to the TAP; for the kernel, the last `send`/`sendto` returned.
    pub elapsed: Duration,
    /// CPU time of the sending thread over `elapsed` (includes kernel work in its syscalls).
    pub sender_cpu: Duration,
    /// What the kernel sink counted.
    pub sink: SinkReport,
    /// Frames the kernel dropped on the link (host-side interface counters, rx + tx).
    pub host_drops: u64,
    /// ustack only: frames whose `write(2)` to the TAP failed.
    pub tap_write_failures: Option<u64>,
    /// ustack only: `Stack::poll` calls while sending.
    pub polls: Option<u64>,
    /// Kernel only: `send` calls that failed with `ENOBUFS`/`EAGAIN` and were retried.
    pub retries: Option<u64>,
    /// CPUs other processes kept busy during the row (see `bench::CpuMeter`).
    pub others_cpu: Option<f64>,
}

impl LinkOutcome {
    /// Datagrams per second, at the sender.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Datagrams the sender sent that the sink did not receive.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.sink.received)
    }
}
