//! The kernel side: a UDP sink that counts every datagram it receives, and the kernel's own
//! connected `send` / unconnected `send_to` over a veth pair (the same-run anchor).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bench::net::{enter, link_counters, VethPair, VETH_A_IP, VETH_B_IP};
use crate::bench::{pin, Deadline};

use super::{
    payload, seq_of, stamp, thread_cpu, LinkOutcome, Mode, Spec, SINK_PORT, SOURCE_PORT, WARM_SEQ,
};

/// How long a blocked `recvmmsg` waits before the sink checks its flags.
const TICK: Duration = Duration::from_millis(20);
/// After the sender is done, the sink stops once nothing arrived for this long.
const IDLE: Duration = Duration::from_millis(300);
/// Datagrams one `recvmmsg` call can take.
const BATCH: usize = 64;
/// Receive buffer per datagram (larger than any payload the benchmark sends).
const SLOT: usize = 2048;

/// The kernel's UDP counters (`/proc/net/snmp`, `Udp:` line) of one namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpSnmp {
    /// Datagrams delivered to sockets.
    pub in_datagrams: u64,
    /// Datagrams to a port nobody listens on.
    pub no_ports: u64,
    /// Datagrams dropped for other reasons (includes `rcvbuf_errors`).
    pub in_errors: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
}

impl UdpSnmp {
    /// The calling thread's namespace's counters (`/proc/thread-self/net/snmp`).
    fn read() -> io::Result<UdpSnmp> {
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Err(io::Error::other(
                "no Udp: lines in /proc/thread-self/net/snmp",
            ));
        };
        let mut s = UdpSnmp::default();
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            let v: u64 = v.parse().unwrap_or(0);
            match n {
                "InDatagrams" => s.in_datagrams = v,
                "NoPorts" => s.no_ports = v,
                "InErrors" => s.in_errors = v,
                "RcvbufErrors" => s.rcvbuf_errors = v,
                _ => {}
            }
        }
        Ok(s)
    }

    fn since(&self, before: &UdpSnmp) -> UdpSnmp {
        UdpSnmp {
            in_datagrams: self.in_datagrams.saturating_sub(before.in_datagrams),
            no_ports: self.no_ports.saturating_sub(before.no_ports),
            in_errors: self.in_errors.saturating_sub(before.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
        }
    }
}

/// What the sink counted during one row.
#[derive(Debug, Clone, Default)]
pub struct SinkReport {
    /// Distinct datagrams of the row (sequence numbers `0..count`), from the expected
    /// sender, with the expected length.
    pub received: u64,
    /// Datagrams whose sequence number had already arrived.
    pub duplicates: u64,
    /// Datagrams with a wrong length, source or sequence number.
    pub malformed: u64,
    /// Warm-up datagrams.
    pub warmups: u64,
    /// Time between the first and the last datagram of the row.
    pub span: Option<Duration>,
    /// The namespace's UDP counters over the row (includes warm-up datagrams).
    pub snmp: UdpSnmp,
    /// The receive buffer the kernel granted (`SO_RCVBUF` as read back).
    pub rcvbuf: usize,
}

/// Counters the sink shares with the sender while it runs.
#[derive(Debug, Default)]
pub struct SinkShared {
    warmups: AtomicU64,
    done: AtomicBool,
    abort: AtomicBool,
}

impl SinkShared {
    /// Warm-up datagrams received so far.
    pub fn warmups(&self) -> u64 {
        self.warmups.load(Ordering::Relaxed)
    }
}

/// A thread in a namespace that receives on a kernel UDP socket and counts. Dropping it stops
/// and joins the thread, so it never outlives its namespace.
pub struct Sink {
    handle: Option<JoinHandle<io::Result<SinkReport>>>,
    shared: Arc<SinkShared>,
}

impl Sink {
    /// Starts a sink in namespace `ns` bound to `bind`, expecting `spec.count` datagrams of
    /// `spec.size` bytes from `from`. Returns once the socket is bound. With `--pin`, the
    /// thread runs on CPU 1.
    pub fn start(
        ns: &str,
        bind: SocketAddrV4,
        from: SocketAddrV4,
        spec: Spec,
        deadline: Deadline,
    ) -> io::Result<Sink> {
        let shared = Arc::new(SinkShared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let ns = ns.to_owned();
        let sh = shared.clone();
        let handle = thread::Builder::new()
            .name("udp-sink".into())
            .spawn(move || {
                pin(1);
                let (socket, rcvbuf, before) = match open(&ns, bind, spec.rcvbuf) {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut report = receive(&socket, from, spec, &sh, &deadline)?;
                report.snmp = UdpSnmp::read()?.since(&before);
                report.rcvbuf = rcvbuf;
                Ok(report)
            })?;
        let sink = Sink {
            handle: Some(handle),
            shared,
        };
        loop {
            deadline.check()?;
            match ready_rx.recv_timeout(TICK) {
                Ok(r) => return r.map(|()| sink),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("sink thread exited before binding"))
                }
            }
        }
    }

    /// The counters the sink shares (for the warm-up handshake).
    pub fn shared(&self) -> Arc<SinkShared> {
        self.shared.clone()
    }

    /// Waits until a warm-up datagram arrived, calling `resend` every 50 ms meanwhile (and
    /// `step` in between, e.g. to poll a userspace stack).
    pub fn wait_warm(
        &self,
        deadline: &Deadline,
        mut resend: impl FnMut() -> io::Result<()>,
        mut step: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut last = Instant::now();
        resend()?;
        while self.shared.warmups() == 0 {
            deadline.check()?;
            if self.is_finished() {
                return Err(io::Error::other("sink thread exited during warm-up"));
            }
            if last.elapsed() >= Duration::from_millis(50) {
                last = Instant::now();
                resend()?;
            }
            step()?;
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Tells the sink the sender is done; it returns once every datagram arrived or nothing
    /// arrived for 300 ms.
    pub fn finish(mut self) -> io::Result<SinkReport> {
        self.shared.done.store(true, Ordering::SeqCst);
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(r) => r,
            Err(_) => Err(io::Error::other("sink thread panicked")),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.shared.abort.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
    }
}

fn setsockopt_int(fd: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to one c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&val as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn rcvbuf_of(fd: i32) -> usize {
    let mut val: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: passes a pointer to one c_int and its size.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut val as *mut i32).cast(),
            &mut len,
        )
    };
    val.max(0) as usize
}

/// Enters `ns`, binds, sizes the receive buffer; returns the socket, the granted buffer and
/// the namespace's UDP counters before the row.
fn open(ns: &str, bind: SocketAddrV4, rcvbuf: usize) -> io::Result<(UdpSocket, usize, UdpSnmp)> {
    enter(ns)?;
    let socket = UdpSocket::bind(bind)
        .map_err(|e| io::Error::new(e.kind(), format!("sink: bind {bind}: {e}")))?;
    let fd = socket.as_raw_fd();
    let want = rcvbuf.min(i32::MAX as usize) as i32;
    // SO_RCVBUFFORCE (root) goes past net.core.rmem_max; plain SO_RCVBUF is capped by it.
    if setsockopt_int(fd, libc::SO_RCVBUFFORCE, want).is_err() {
        setsockopt_int(fd, libc::SO_RCVBUF, want)?;
    }
    socket.set_read_timeout(Some(TICK))?;
    let before = UdpSnmp::read()?;
    Ok((socket, rcvbuf_of(fd), before))
}

/// The receive loop: `recvmmsg` up to 64 datagrams at a time, check and count each.
fn receive(
    socket: &UdpSocket,
    from: SocketAddrV4,
    spec: Spec,
    shared: &SinkShared,
    deadline: &Deadline,
) -> io::Result<SinkReport> {
    let fd = socket.as_raw_fd();
    let want_addr = u32::from_ne_bytes(from.ip().octets());
    let want_port = from.port().to_be();
    let mut seen = vec![0u64; spec.count.div_ceil(64) as usize];
    let mut report = SinkReport::default();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut last_any = Instant::now();

    let mut bufs = vec![0u8; BATCH * SLOT].into_boxed_slice();
    let base = bufs.as_mut_ptr();
    // SAFETY (all zeroed() below): sockaddr_in, iovec and mmsghdr are plain C structs for
    // which all-zero is a valid value.
    let mut names: Vec<libc::sockaddr_in> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            // SAFETY: i * SLOT + SLOT <= bufs.len().
            iov_base: unsafe { base.add(i * SLOT) }.cast(),
            iov_len: SLOT,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|i| {
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            m
        })
        .collect();

    loop {
        for m in msgs.iter_mut() {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        // SAFETY: every mmsghdr points at its own iovec (into `bufs`) and sockaddr_in, all
        // alive and unaliased for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                return Err(io::Error::new(e.kind(), format!("sink: recvmmsg: {e}")));
            }
            if shared.abort.load(Ordering::Relaxed) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "sink aborted by the main thread",
                ));
            }
            deadline.check()?;
            if shared.done.load(Ordering::SeqCst) && last_any.elapsed() >= IDLE {
                break;
            }
            continue;
        }
        let now = Instant::now();
        last_any = now;
        for (i, m) in msgs.iter().enumerate().take(n as usize) {
            let len = (m.msg_len as usize).min(SLOT);
            // SAFETY: the kernel wrote `len` bytes into slot i; no other reference to it lives.
            let data = unsafe { std::slice::from_raw_parts(base.add(i * SLOT), len) };
            let src = &names[i];
            let from_ok = src.sin_addr.s_addr == want_addr && src.sin_port == want_port;
            match seq_of(data) {
                Some(WARM_SEQ) if from_ok => {
                    report.warmups += 1;
                    shared.warmups.fetch_add(1, Ordering::Relaxed);
                }
                Some(seq) if from_ok && seq < spec.count && len == spec.size => {
                    let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                    if seen[w] & bit != 0 {
                        report.duplicates += 1;
                    } else {
                        seen[w] |= bit;
                        report.received += 1;
                        first.get_or_insert(now);
                        last = Some(now);
                    }
                }
                _ => report.malformed += 1,
            }
        }
        if report.received == spec.count && shared.done.load(Ordering::SeqCst) {
            break;
        }
    }
    report.span = first.zip(last).map(|(f, l)| l - f);
    Ok(report)
}

/// The anchor: the kernel sends `spec.count` datagrams from namespace a to a sink in
/// namespace b over a veth pair, with `send` on a connected socket or `send_to` on an
/// unconnected one.
pub fn veth(mode: Mode, spec: Spec, prefix: &str) -> io::Result<LinkOutcome> {
    let deadline = Deadline::new(spec.timeout, "kernel UDP over veth");
    let pair = VethPair::create(prefix)?;
    let to = SocketAddrV4::new(VETH_B_IP.into(), SINK_PORT);
    let from = SocketAddrV4::new(VETH_A_IP.into(), SOURCE_PORT);
    let sink = Sink::start(pair.b.name(), to, from, spec, deadline)?;
    let shared = sink.shared();
    let ns = pair.a.name().to_owned();
    let sender = thread::Builder::new().name("udp-sender".into()).spawn(
        move || -> io::Result<(u64, Duration, Duration, u64)> {
            pin(0);
            enter(&ns)?;
            let s = UdpSocket::bind(from)
                .map_err(|e| io::Error::new(e.kind(), format!("sender: bind {from}: {e}")))?;
            if mode == Mode::Connected {
                s.connect(to)?;
            }
            let send = |buf: &[u8]| match mode {
                Mode::Connected => s.send(buf),
                Mode::Unconnected => s.send_to(buf, to),
            };
            let mut buf = payload(spec.size);
            // Warm-up: until the sink has one (ARP resolved, caches warm).
            stamp(&mut buf, WARM_SEQ);
            let mut since = Instant::now();
            send(&buf)?;
            while shared.warmups() == 0 {
                deadline.check()?;
                if since.elapsed() >= Duration::from_millis(50) {
                    since = Instant::now();
                    send(&buf)?;
                }
                thread::sleep(Duration::from_millis(1));
            }
            let mut retries = 0u64;
            let cpu0 = thread_cpu();
            let start = Instant::now();
            let mut seq = 0u64;
            while seq < spec.count {
                stamp(&mut buf, seq);
                match send(&buf) {
                    Ok(_) => seq += 1,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.raw_os_error() == Some(libc::ENOBUFS) =>
                    {
                        retries += 1;
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("send after {seq} datagrams: {e}"),
                        ))
                    }
                }
                if seq.is_multiple_of(4096) {
                    deadline.check()?;
                }
            }
            let elapsed = start.elapsed();
            Ok((seq, elapsed, thread_cpu() - cpu0, retries))
        },
    )?;
    let result = match sender.join() {
        Ok(r) => r,
        Err(_) => Err(io::Error::other("sender thread panicked")),
    };
    let (sent, elapsed, sender_cpu, retries) = result?;
    let sink = sink.finish()?;
    let mut host_drops = 0;
    for (ns, dev) in [(pair.a.name(), "veth-a"), (pair.b.name(), "veth-b")] {
        match link_counters(ns, dev) {
            Ok((_, _, d)) => host_drops += d,
            Err(e) => log::warn!("{e}"),
        }
    }
    Ok(LinkOutcome {
        sent,
        elapsed,
        sender_cpu,
        sink,
        host_drops,
        tap_write_failures: None,
        polls: None,
        retries: Some(retries),
        others_cpu: None,
    })
}
