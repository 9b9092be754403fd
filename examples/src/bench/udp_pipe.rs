//! ustack's own CPU cost per datagram, with no kernel on the path: stack A sends to stack B's
//! address over an in-memory `PipeLink`. B answers ARP during the warm-up; after that a sink
//! takes every frame off the link, checks it (Ethernet, IPv4 and UDP headers, both checksums,
//! addresses, ports, length, sequence number) and drops it. Only A's work is timed. A
//! connected and an unconnected sender, each with its own link and stacks, take turns batch
//! by batch within one row.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use ustack::runtime;
use ustack::smoltcp::phy::{Device, RxToken};
use ustack::smoltcp::time::Instant as SInstant;
use ustack::smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Address, Ipv4Cidr,
    Ipv4Packet, UdpPacket,
};
use ustack::{Config, Error, Stack, UdpHandle};
use ustack_drivers::{PipeDevice, PipeLink};

use crate::bench::Deadline;

use super::{
    payload, send, seq_of, stamp, thread_cpu, Mode, Spec, SINK_PORT, SOURCE_PORT, WARM_SEQ,
};

/// Frames each direction of the link can hold; the socket queue must fit in it.
pub const FRAMES: usize = 1024;
const MTU: usize = 1514;
type Link = PipeLink<FRAMES, MTU>;
type Dev<'a> = PipeDevice<'a, FRAMES, MTU>;

const A_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 1);
const B_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);
/// Datagrams sent through the same loop before the clock starts.
const WARM_DATAGRAMS: u64 = 50_000;

/// The sender's time for one row, split by phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipeOutcome {
    /// Datagrams timed.
    pub count: u64,
    /// Wall time inside the `udp_send` / `udp_send_to` calls (queueing into the socket).
    pub enqueue: Duration,
    /// Wall time inside `Stack::poll` and `next_event` (dispatch: headers, checksums, route
    /// and neighbor lookup, the device's transmit).
    pub poll: Duration,
    /// Wall time of the sink (checking and dropping frames; not the stack's cost).
    pub sink: Duration,
    /// Thread CPU time over the whole timed loop (every mode of the row and the sink).
    pub cpu: Duration,
    /// Wall time over the whole timed loop (every mode of the row and the sink).
    pub wall: Duration,
    /// `Stack::poll` calls.
    pub polls: u64,
    /// UDP frames the sink checked and found correct.
    pub good: u64,
    /// UDP frames that failed a check.
    pub bad: u64,
    /// Frames out of sequence.
    pub out_of_order: u64,
    /// Non-UDP frames (e.g. ARP) seen by the sink.
    pub other: u64,
    /// CPUs other processes kept busy during the row (see `bench::CpuMeter`).
    pub others_cpu: Option<f64>,
    /// Median over the row's batches of (send + poll time) / datagrams in the batch: the
    /// typical cost, robust against the few batches in which the thread was preempted.
    pub batch_median_ns: f64,
}

impl PipeOutcome {
    fn per(&self, d: Duration) -> f64 {
        d.as_nanos() as f64 / self.count.max(1) as f64
    }
    /// The stack's nanoseconds per datagram: queueing plus dispatch, all time summed.
    pub fn mean_ns(&self) -> f64 {
        self.per(self.enqueue + self.poll)
    }
    /// The stack's nanoseconds per datagram in a typical batch (see `batch_median_ns`).
    pub fn ns(&self) -> f64 {
        self.batch_median_ns
    }
    /// Nanoseconds per datagram in `udp_send` / `udp_send_to`.
    pub fn enqueue_ns(&self) -> f64 {
        self.per(self.enqueue)
    }
    /// Nanoseconds per datagram in `poll` (dispatch).
    pub fn poll_ns(&self) -> f64 {
        self.per(self.poll)
    }
    /// Thread CPU time over wall time for the timed loop (1.0: never descheduled).
    pub fn cpu_share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

fn io_err(what: &str, e: Error) -> io::Error {
    io::Error::other(format!("ustack (pipe): {what}: {e}"))
}

fn stack<'a>(
    dev: Dev<'a>,
    ip: Ipv4Address,
    last: u8,
    spec: &Spec,
) -> io::Result<Stack<'a, Dev<'a>>> {
    let mut config = Config::new([2, 0, 0, 0, 9, last], Ipv4Cidr::new(ip, 24)).seed(last.into());
    config.udp = spec.udp_options();
    Stack::new(config, dev, runtime::now()).map_err(|e| io_err("new stack", e))
}

/// One sender: its own link, stack A (timed), stack B (answers ARP during the warm-up) and
/// the sink on B's end of the link.
struct Sender<'l> {
    mode: Mode,
    a: Stack<'l, Dev<'l>>,
    sink: Dev<'l>,
    h: UdpHandle,
    to: IpEndpoint,
    buf: Vec<u8>,
    /// Next sequence number to queue, next one the sink expects.
    seq: u64,
    expect: u64,
    out: PipeOutcome,
    /// (send + poll) nanoseconds per datagram of each batch.
    batches: Vec<f64>,
}

impl<'l> Sender<'l> {
    fn new(link: &'l Link, mode: Mode, spec: &Spec, deadline: &Deadline) -> io::Result<Self> {
        let (da, db) = link.split();
        // A second handle on B's end: the sink takes frames off it without B seeing them.
        let (_, sink) = link.split();
        let mut a = stack(da, A_IP, 1, spec)?;
        let mut b = stack(db, B_IP, 2, spec)?;
        let hb = b.udp_bind(SINK_PORT).map_err(|e| io_err("bind", e))?;
        let h = a.udp_bind(SOURCE_PORT).map_err(|e| io_err("bind", e))?;
        let to = IpEndpoint::new(IpAddress::Ipv4(B_IP), SINK_PORT);
        if mode == Mode::Connected {
            a.udp_connect(h, to).map_err(|e| io_err("connect", e))?;
        }
        let mut buf = payload(spec.size);
        // ARP both ways and one datagram delivered, B polled normally.
        stamp(&mut buf, WARM_SEQ);
        send(&mut a, mode, h, &buf, to).map_err(|e| io_err("warm-up send", e))?;
        let mut rx = vec![0u8; 2048];
        loop {
            deadline.check()?;
            let now = runtime::now();
            a.poll(now);
            b.poll(now);
            while a.next_event().is_some() {}
            while b.next_event().is_some() {}
            match b.udp_recv(hb, &mut rx) {
                Ok(_) => break,
                Err(Error::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => return Err(io_err("warm-up recv", e)),
            }
        }
        // B is dropped here: from now on only the sink reads B's end of the link.
        Ok(Sender {
            mode,
            a,
            sink,
            h,
            to,
            buf,
            seq: 0,
            expect: 0,
            out: PipeOutcome::default(),
            batches: Vec::new(),
        })
    }

    /// Starts a new pass of `n` datagrams (sequence numbers `0..n`).
    fn reset(&mut self, n: u64) {
        self.seq = 0;
        self.expect = 0;
        self.out = PipeOutcome {
            count: n,
            ..Default::default()
        };
        self.batches.clear();
    }

    /// Fills in the batch median once the pass is done.
    fn finish(&mut self) {
        self.batches.sort_by(f64::total_cmp);
        let n = self.batches.len();
        self.out.batch_median_ns = if n == 0 {
            f64::NAN
        } else {
            self.batches[(n - 1) / 2]
        };
    }

    fn done(&self) -> bool {
        self.out.good + self.out.bad >= self.out.count
    }

    /// One batch, the way an application sends: queue until `WouldBlock`, poll. Both phases
    /// are timed; then the sink checks and drops what arrived (untimed).
    fn batch(&mut self) -> io::Result<()> {
        let (n, size) = (self.out.count, self.buf.len());
        let first = self.seq;
        let t0 = Instant::now();
        while self.seq < n {
            stamp(&mut self.buf, self.seq);
            match send(&mut self.a, self.mode, self.h, &self.buf, self.to) {
                Ok(()) => self.seq += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(io_err(&format!("send after {} datagrams", self.seq), e)),
            }
        }
        let t1 = Instant::now();
        self.a.poll(runtime::now());
        while self.a.next_event().is_some() {}
        let t2 = Instant::now();
        let out = &mut self.out;
        while let Some((rx, _)) = self.sink.receive(SInstant::ZERO) {
            match rx.consume(|f| check(f, size)) {
                Check::Udp(s) => {
                    out.good += 1;
                    if s != self.expect {
                        out.out_of_order += 1;
                    }
                    self.expect = s + 1;
                }
                Check::Bad => out.bad += 1,
                Check::Other => out.other += 1,
            }
        }
        let t3 = Instant::now();
        out.enqueue += t1 - t0;
        out.poll += t2 - t1;
        let k = self.seq - first;
        if k > 0 {
            self.batches.push((t2 - t0).as_nanos() as f64 / k as f64);
        }
        out.sink += t3 - t2;
        out.polls += 1;
        Ok(())
    }
}

/// One row: for each mode in `modes`, a fresh link and stacks, and `spec.count` datagrams.
/// The modes take turns batch by batch (alternating which goes first), so that both see the
/// same machine at the same moments and their difference is not blurred by drift between
/// separate runs. Returns the outcomes in the order of `modes`.
pub fn run(modes: &[Mode], spec: Spec) -> io::Result<Vec<PipeOutcome>> {
    if spec.queue + 8 > FRAMES {
        return Err(io::Error::other(format!(
            "--queue {} does not fit the pipe ({FRAMES} frames); use at most {}",
            spec.queue,
            FRAMES - 8
        )));
    }
    let deadline = Deadline::new(spec.timeout, "ustack UDP over the pipe");
    let links: Vec<Box<Link>> = modes.iter().map(|_| Box::new(Link::new())).collect();
    let mut senders = modes
        .iter()
        .zip(&links)
        .map(|(&m, link)| Sender::new(link, m, &spec, &deadline))
        .collect::<io::Result<Vec<_>>>()?;

    let mut warm_bad = 0;
    for (n, timed) in [(WARM_DATAGRAMS.min(spec.count), false), (spec.count, true)] {
        senders.iter_mut().for_each(|s| s.reset(n));
        let (cpu0, t0) = (thread_cpu(), Instant::now());
        let mut round = 0usize;
        while senders.iter().any(|s| !s.done()) {
            let k = senders.len();
            for i in 0..k {
                let s = &mut senders[(i + round) % k];
                if !s.done() {
                    s.batch()?;
                }
            }
            round += 1;
            if round.is_multiple_of(256) {
                deadline.check()?;
            }
        }
        let (wall, cpu) = (t0.elapsed(), thread_cpu() - cpu0);
        if !timed {
            warm_bad = senders.iter().map(|s| s.out.bad).sum();
            continue;
        }
        for s in senders.iter_mut() {
            (s.out.wall, s.out.cpu) = (wall, cpu);
            s.finish();
        }
    }
    let outs: Vec<PipeOutcome> = senders.iter().map(|s| s.out).collect();
    let bad: u64 = outs.iter().map(|o| o.bad + o.out_of_order).sum();
    if bad + warm_bad > 0 {
        return Err(io::Error::other(format!(
            "pipe sink: {} bad or out-of-order frames",
            bad + warm_bad
        )));
    }
    Ok(outs)
}

enum Check {
    Udp(u64),
    Bad,
    Other,
}

/// Parses and verifies one frame A sent.
fn check(frame: &[u8], size: usize) -> Check {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Check::Bad;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Check::Other;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Check::Bad;
    };
    if ip.next_header() != IpProtocol::Udp {
        return Check::Other;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
        return Check::Bad;
    };
    let ok = ip.verify_checksum()
        && src == A_IP
        && dst == B_IP
        && udp.verify_checksum(&src.into(), &dst.into())
        && udp.src_port() == SOURCE_PORT
        && udp.dst_port() == SINK_PORT
        && udp.payload().len() == size;
    match seq_of(udp.payload()) {
        Some(s) if ok => Check::Udp(s),
        _ => Check::Bad,
    }
}

/// What `connect` saves smoltcp per datagram: `Interface::get_source_address` for the
/// destination, timed alone, in nanoseconds per call (on a stack like the pipe rows').
pub fn source_selection_ns(spec: Spec, calls: u64) -> io::Result<f64> {
    let link: Box<Link> = Box::new(Link::new());
    let (da, _db) = link.split();
    let mut a = stack(da, A_IP, 1, &spec)?;
    let iface = a.interface();
    let dst = IpAddress::Ipv4(B_IP);
    let mut best = f64::INFINITY;
    // Best of 5 rounds: this is a lower bound on what the call costs inside dispatch.
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..calls {
            black_box(iface.get_source_address(black_box(&dst)));
        }
        best = best.min(t.elapsed().as_nanos() as f64 / calls as f64);
    }
    Ok(best)
}
