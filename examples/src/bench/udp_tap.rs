//! ustack sends datagrams over a TAP to the kernel sink in the TAP's namespace.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::time::Instant;

use ustack::runtime::{self, PollMode};
use ustack::smoltcp::time::Duration as SDuration;
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use ustack::{Error, Stack};
use ustack_drivers::TapDevice;

use crate::bench::net::{link_counters, user_tap};
use crate::bench::{user_config, Deadline, HOST_IP, USER_IP};

use super::kernel::Sink;
use super::{
    payload, send, stamp, thread_cpu, LinkOutcome, Mode, Spec, SINK_PORT, SOURCE_PORT, WARM_SEQ,
};

fn io_err(what: &str, e: Error) -> io::Error {
    io::Error::other(format!("ustack: {what}: {e}"))
}

/// One row: a fresh namespace, TAP, sink and stack; `spec.count` datagrams with
/// `udp_send` on a connected socket or `udp_send_to` on an unconnected one.
///
/// The sending loop is what an application does: queue datagrams until the socket says
/// `WouldBlock`, poll (which writes one frame per datagram to the TAP), repeat. The clock
/// stops when the TAP has taken the last datagram's frame.
pub fn run(mode: Mode, spec: Spec, prefix: &str) -> io::Result<LinkOutcome> {
    let deadline = Deadline::new(spec.timeout, "ustack UDP over TAP");
    let (ns, tap) = user_tap(prefix)?;
    let to = SocketAddrV4::new(HOST_IP.into(), SINK_PORT);
    let from = SocketAddrV4::new(USER_IP.into(), SOURCE_PORT);
    let sink = Sink::start(ns.name(), to, from, spec, deadline)?;

    let mut config = user_config();
    config.udp = spec.udp_options();
    let mut stack = Stack::new(config, tap, runtime::now()).map_err(|e| io_err("new stack", e))?;
    let h = stack
        .udp_bind(SOURCE_PORT)
        .map_err(|e| io_err("udp_bind", e))?;
    let remote = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(HOST_IP)), SINK_PORT);
    if mode == Mode::Connected {
        stack
            .udp_connect(h, remote)
            .map_err(|e| io_err("udp_connect", e))?;
    }
    let mut buf = payload(spec.size);

    // Warm-up: ARP is resolved and the sink has a datagram before the clock starts.
    stamp(&mut buf, WARM_SEQ);
    {
        let stack = std::cell::RefCell::new(&mut stack);
        sink.wait_warm(
            &deadline,
            || match send(&mut stack.borrow_mut(), mode, h, &buf, remote) {
                Ok(()) | Err(Error::WouldBlock) => Ok(()),
                Err(e) => Err(io_err("warm-up send", e)),
            },
            || {
                let mut s = stack.borrow_mut();
                s.poll(runtime::now());
                while s.next_event().is_some() {}
                let fd = s.device().as_raw_fd();
                runtime::wait(fd, None, Some(SDuration::from_millis(1)), PollMode::Block)
            },
        )?;
    }
    // Let any queued warm-up copy go out before the counters are read.
    stack.poll(runtime::now());
    while stack.next_event().is_some() {}

    let base = stack.device().stats();
    let mut polls = 0u64;
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let mut seq = 0u64;
    while seq < spec.count {
        while seq < spec.count {
            stamp(&mut buf, seq);
            match send(&mut stack, mode, h, &buf, remote) {
                Ok(()) => seq += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(io_err(&format!("send after {seq} datagrams"), e)),
            }
        }
        stack.poll(runtime::now());
        polls += 1;
        while stack.next_event().is_some() {}
        deadline.check()?;
    }
    // Until the TAP has taken (or refused) a frame for every datagram.
    let handed = |s: &Stack<'_, TapDevice>| {
        let t = s.device().stats();
        (t.tx_frames + t.tx_dropped) - (base.tx_frames + base.tx_dropped)
    };
    while handed(&stack) < spec.count {
        stack.poll(runtime::now());
        polls += 1;
        while stack.next_event().is_some() {}
        deadline.check()?;
    }
    let elapsed = start.elapsed();
    let sender_cpu = thread_cpu() - cpu0;
    let tap = stack.device().stats();
    let report = sink.finish()?;
    let host_drops = match link_counters(ns.name(), stack.device().name()) {
        Ok((_, _, d)) => d,
        Err(e) => {
            log::warn!("{e}");
            0
        }
    };
    log::debug!(
        "ustack {mode}: tap tx {} (+{} refused), stack tx_frames {}",
        tap.tx_frames - base.tx_frames,
        tap.tx_dropped - base.tx_dropped,
        stack.stats().tx_frames
    );
    Ok(LinkOutcome {
        sent: seq,
        elapsed,
        sender_cpu,
        sink: report,
        host_drops,
        tap_write_failures: Some(tap.tx_dropped - base.tx_dropped),
        polls: Some(polls),
        retries: None,
        others_cpu: None,
    })
}
