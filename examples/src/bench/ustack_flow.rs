//! The ustack rows: a `Stack` on this thread over a TAP (default, jumbo MTU or with
//! offloads) or over AF_PACKET on a veth end, the kernel in a namespace behind the link.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::time::Instant;

use ustack::runtime::{self, PollMode};
use ustack::smoltcp::socket::tcp::State;
use ustack::smoltcp::time::Duration as SDuration;
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use ustack::{Error, Ready, Stack, TcpHandle, TcpOptions, Token};

use ustack_drivers::{AfPacket, IoMode};

use super::kernel::{listening_reader, span, spawn_writer};
use super::net::{link_counters, user_tap_with, TapOptions, UserVeth};
use super::{
    user_config, Counters, Deadline, Dir, Limits, Outcome, HOST_IP, SINK_PORT, SOURCE_PORT, USER_IP,
};

/// Settings of the ustack side.
#[derive(Debug, Clone, Copy)]
pub struct UstackSettings {
    /// Receive buffer (and advertised window) of the connection.
    pub rx_buffer: usize,
    /// Transmit buffer of the connection.
    pub tx_buffer: usize,
    /// Spin instead of sleeping in `poll(2)`.
    pub busy_poll: bool,
    /// The link ustack runs over.
    pub link: Link,
}

/// The link of a ustack row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A TAP (MTU 1500 unless [`TapOptions::mtu`], kernel offloads per [`TapOptions`]).
    Tap(TapOptions),
    /// AF_PACKET on ustack's end of a veth pair, in this I/O mode.
    AfPacket(IoMode),
}

/// What a ustack row measured: the outcome, and for AF_PACKET the device's real system
/// call count (the TAP rows only have an estimate, see [`Counters::syscalls_estimate`]).
#[derive(Debug, Clone, Copy)]
pub struct FlowReport {
    /// Throughput and counters.
    pub outcome: Outcome,
    /// Receive and transmit system calls of the AF_PACKET device, plus one per sleep.
    pub syscalls: Option<u64>,
}

/// Longest untimed wait for the connection to finish closing after a transfer.
const GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes per `tcp_read`/`tcp_write` call.
const APP_CHUNK: usize = 64 * 1024;

fn io_err(what: &str, e: Error) -> io::Error {
    io::Error::other(format!("ustack: {what}: {e}"))
}

/// Runs one bulk transfer between ustack and the kernel over a fresh link and namespace(s).
pub fn run(
    dir: Dir,
    limits: Limits,
    settings: UstackSettings,
    prefix: &str,
) -> io::Result<FlowReport> {
    let deadline = Deadline::new(limits.timeout, "ustack transfer");
    let mut config = user_config();
    config.tcp = TcpOptions {
        rx_buffer: settings.rx_buffer,
        tx_buffer: settings.tx_buffer,
        ..TcpOptions::default()
    };
    let mode = if settings.busy_poll {
        PollMode::BusyPoll
    } else {
        PollMode::Block
    };
    let mut loop_ = Loop {
        mode,
        counters: Counters::default(),
    };
    match settings.link {
        Link::Tap(opts) => {
            let (ns, tap) = user_tap_with(prefix, opts)?;
            // With offloads the TAP delivers TCP segments of up to 64 KiB, past the MTU.
            config.max_rx_frame = tap.rx_frame_limit();
            let mut stack =
                Stack::new(config, tap, runtime::now()).map_err(|e| io_err("new stack", e))?;
            // With offloads each poll's TCP segments leave as one super-frame (no-op otherwise).
            stack.set_flush(ustack_drivers::TapDevice::flush);
            let elapsed = transfer(&mut stack, ns.name(), dir, limits, deadline, &mut loop_)
                .inspect_err(|_| {
                    log::warn!(
                        "ustack {dir} failed; TAP {:?}; stack {:?}",
                        stack.device().stats(),
                        stack.stats()
                    )
                })?;
            let mut counters = loop_.counters;
            let tap_stats = stack.device().stats();
            match link_counters(ns.name(), stack.device().name()) {
                Ok((host_rx, host_tx, drops)) => {
                    counters.frames_in = host_tx;
                    counters.frames_out = host_rx;
                    counters.host_drops = drops;
                }
                Err(e) => {
                    log::warn!("{e}; using the TAP device's own counters");
                    counters.frames_in = tap_stats.rx_frames;
                    counters.frames_out = tap_stats.tx_frames;
                }
            }
            let s = stack.stats();
            log::info!(
                "ustack {dir}: tap rx {} tx {} (tx dropped {}), ingress drops {}",
                tap_stats.rx_frames,
                tap_stats.tx_frames,
                tap_stats.tx_dropped,
                s.rx_dropped()
            );
            Ok(FlowReport {
                outcome: outcome(limits, elapsed, counters),
                syscalls: None,
            })
        }
        Link::AfPacket(io_mode) => {
            let link = UserVeth::create(prefix, false, None)?;
            let dev = link.open(io_mode, None)?;
            config.mac = ustack::smoltcp::wire::EthernetAddress(dev.mac());
            let mut stack =
                Stack::new(config, dev, runtime::now()).map_err(|e| io_err("new stack", e))?;
            stack.set_flush(AfPacket::flush);
            let elapsed = transfer(
                &mut stack,
                link.peer.name(),
                dir,
                limits,
                deadline,
                &mut loop_,
            )
            .inspect_err(|_| {
                log::warn!(
                    "ustack {dir} failed; AF_PACKET {:?}; stack {:?}",
                    stack.device().stats(),
                    stack.stats()
                )
            })?;
            let d = stack.device().stats();
            log::info!(
                "ustack {dir} over AF_PACKET: {d:?}, ingress drops {}",
                stack.stats().rx_dropped()
            );
            let counters = Counters {
                frames_in: d.rx_frames,
                frames_out: d.tx_frames,
                host_drops: d.rx_kernel_drops + d.tx_dropped,
                ..loop_.counters
            };
            Ok(FlowReport {
                outcome: outcome(limits, elapsed, counters),
                syscalls: Some(d.rx_syscalls + d.tx_syscalls + counters.sleeps),
            })
        }
    }
}

fn outcome(limits: Limits, elapsed: std::time::Duration, counters: Counters) -> Outcome {
    Outcome {
        bytes: limits.bytes,
        elapsed,
        counters: Some(counters),
        others_cpu: None,
    }
}

/// One transfer in direction `dir` between `stack` and the kernel in namespace `ns`;
/// returns the time from the receiver's first byte to its last.
fn transfer<D>(
    stack: &mut Stack<'_, D>,
    ns: &str,
    dir: Dir,
    limits: Limits,
    deadline: Deadline,
    loop_: &mut Loop,
) -> io::Result<std::time::Duration>
where
    D: ustack::smoltcp::phy::Device + AsRawFd,
{
    let mode = loop_.mode;
    let elapsed = match dir {
        Dir::KernelToUser => {
            let listener = stack
                .listen(SINK_PORT, 1)
                .map_err(|e| io_err("listen", e))?;
            let writer = spawn_writer(
                ns,
                1,
                SocketAddrV4::new(USER_IP.into(), SINK_PORT),
                limits,
                deadline,
            );
            let mut conn: Option<TcpHandle> = None;
            let mut buf = vec![0u8; APP_CHUNK];
            let (mut got, mut start, mut end) = (0u64, None::<Instant>, None);
            loop {
                deadline.check()?;
                if writer.is_finished() {
                    if end.is_some() {
                        break;
                    }
                    writer.finish()?;
                    return Err(io::Error::other(
                        "kernel writer finished before ustack saw EOF",
                    ));
                }
                loop_.step(stack, &deadline, |stack, ev| {
                    match ev.token {
                        Token::Listener(l) if l == listener && conn.is_none() => {
                            match stack.accept(l) {
                                Ok(h) => conn = Some(h),
                                Err(Error::WouldBlock) => {}
                                Err(e) => return Err(io_err("accept", e)),
                            }
                        }
                        Token::Tcp(h) if Some(h) == conn && end.is_none() => {
                            if !ev.ready.contains(Ready::READABLE) {
                                return Ok(());
                            }
                            loop {
                                match stack.tcp_read(h, &mut buf) {
                                    Ok(0) => {
                                        if got != limits.bytes {
                                            return Err(io::Error::other(format!(
                                                "EOF after {got} of {} bytes",
                                                limits.bytes
                                            )));
                                        }
                                        end = Some(Instant::now());
                                        stack.tcp_close(h).map_err(|e| io_err("close", e))?;
                                        break;
                                    }
                                    Ok(n) => {
                                        start.get_or_insert_with(Instant::now);
                                        got += n as u64;
                                    }
                                    Err(Error::WouldBlock) => break,
                                    Err(e) => {
                                        return Err(io_err(&format!("read after {got} bytes"), e))
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            writer.finish()?;
            span(start, end)?
        }
        Dir::UserToKernel => {
            let addr = SocketAddrV4::new(HOST_IP.into(), SOURCE_PORT);
            let reader = listening_reader(ns, 1, addr, limits, deadline)?;
            let remote = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(HOST_IP)), SOURCE_PORT);
            let h = stack.connect(remote).map_err(|e| io_err("connect", e))?;
            let buf = vec![0xa5u8; APP_CHUNK];
            let mut sent = 0u64;
            let mut shut = false;
            while !reader.is_finished() {
                deadline.check()?;
                loop_.step(stack, &deadline, |stack, ev| {
                    if ev.token != Token::Tcp(h) || shut {
                        return Ok(());
                    }
                    if ev.ready.contains(Ready::ERROR) || ev.ready.contains(Ready::CLOSED) {
                        return Err(io::Error::other(format!(
                            "connection ended after {sent} bytes: {:?}",
                            stack.tcp_write(h, &buf[..1]).err()
                        )));
                    }
                    if !(ev.ready.contains(Ready::WRITABLE) || ev.ready.contains(Ready::CONNECTED))
                    {
                        return Ok(());
                    }
                    while sent < limits.bytes {
                        let n = (limits.bytes - sent).min(buf.len() as u64) as usize;
                        match stack.tcp_write(h, &buf[..n]) {
                            Ok(k) => sent += k as u64,
                            Err(Error::WouldBlock) => break,
                            Err(e) => return Err(io_err(&format!("write after {sent} bytes"), e)),
                        }
                    }
                    if sent == limits.bytes {
                        stack
                            .tcp_shutdown_write(h)
                            .map_err(|e| io_err("shutdown", e))?;
                        shut = true;
                    }
                    Ok(())
                })?;
            }
            let elapsed = reader.finish()?;
            // Untimed: acknowledge the kernel's FIN, so its socket does not sit in LAST-ACK
            // holding the TAP (deleting a device with such a socket can stall for seconds).
            let grace = Deadline::new(GRACE, "closing");
            while grace.check().is_ok() {
                if !matches!(
                    stack.tcp_state(h),
                    Ok(State::FinWait1 | State::FinWait2 | State::Closing)
                ) {
                    break;
                }
                let mut quiet = Loop {
                    mode,
                    counters: Counters::default(),
                };
                quiet.step(stack, &grace, |_, _| Ok(()))?;
            }
            elapsed
        }
    };
    Ok(elapsed)
}

/// One iteration of the event loop at a time, counting polls and sleeps.
struct Loop {
    mode: PollMode,
    counters: Counters,
}

impl Loop {
    /// poll → every event through `on_event` → poll_delay → wait.
    fn step<D, F>(
        &mut self,
        stack: &mut Stack<'_, D>,
        deadline: &Deadline,
        mut on_event: F,
    ) -> io::Result<()>
    where
        D: ustack::smoltcp::phy::Device + AsRawFd,
        F: FnMut(&mut Stack<'_, D>, ustack::Event) -> io::Result<()>,
    {
        stack.poll(runtime::now());
        self.counters.polls += 1;
        while let Some(ev) = stack.next_event() {
            on_event(stack, ev)?;
        }
        let delay = stack.poll_delay(runtime::now());
        if self.mode == PollMode::Block && delay != Some(SDuration::ZERO) {
            self.counters.sleeps += 1;
        }
        deadline.check()?;
        runtime::wait(stack.device().as_raw_fd(), None, delay, self.mode)
    }
}
