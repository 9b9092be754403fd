//! The baseline rows: plain smoltcp written like smoltcp's `examples/benchmark.rs` — a
//! `TunTapInterface`, one `Interface`, one `tcp::Socket` with 64 KiB buffers, and an
//! `iface.poll` + `phy::wait` loop that moves data with the zero-copy `recv`/`send` closures.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{wait as phy_wait, Medium, TunTapInterface};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

use super::kernel::{listening_reader, span, spawn_writer};
use super::net::{link_counters, move_tap_into, Netns};
use super::{
    Counters, Deadline, Dir, Limits, Outcome, HOST_IP, SINK_PORT, SOURCE_PORT, USER_IP, USER_MAC,
};

/// smoltcp's benchmark uses 65535-byte socket buffers.
pub const BUFFER: usize = 65535;
/// Longest sleep. The benchmark sleeps until `poll_at` (or 1 s without a timer); capping it
/// at 100 ms only makes the end of a transfer (a TIME-WAIT timer is 10 s away) noticed
/// quickly. While data flows, frames end every sleep long before.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Runs one bulk transfer between plain smoltcp and the kernel over a fresh TAP and namespace.
pub fn run(dir: Dir, limits: Limits, prefix: &str) -> io::Result<Outcome> {
    let deadline = Deadline::new(limits.timeout, "plain smoltcp transfer");
    let ns = Netns::create(&format!("{prefix}-s"))?;
    let tap_name = format!("{prefix}s");
    // Creates a non-persistent TAP in this namespace; closing the descriptor removes it.
    let mut device = TunTapInterface::new(&tap_name, Medium::Ethernet)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create TAP {tap_name}: {e}")))?;
    move_tap_into(
        &tap_name,
        &ns,
        &format!("{}/24", std::net::Ipv4Addr::from(HOST_IP)),
    )?;
    let fd = device.as_raw_fd();

    let mut config = Config::new(EthernetAddress(USER_MAC).into());
    config.random_seed = seed();
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(
                IpAddress::from(std::net::Ipv4Addr::from(USER_IP)),
                24,
            ))
            .expect("one address fits");
    });
    let mut sockets = SocketSet::new(vec![]);
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    );
    let handle = sockets.add(socket);
    let mut c = Counters::default();
    let total = limits.bytes as usize;

    let elapsed = match dir {
        Dir::KernelToUser => {
            sockets
                .get_mut::<tcp::Socket>(handle)
                .listen(SINK_PORT)
                .map_err(|e| io::Error::other(format!("listen: {e}")))?;
            let writer = spawn_writer(
                ns.name(),
                1,
                SocketAddrV4::new(USER_IP.into(), SINK_PORT),
                limits,
                deadline,
            );
            let (mut processed, mut start, mut end) = (0usize, None::<std::time::Instant>, None);
            let mut opened = false;
            loop {
                deadline.check()?;
                if writer.is_finished() {
                    if end.is_some() {
                        break;
                    }
                    writer.finish()?;
                    return Err(io::Error::other(
                        "kernel writer finished before smoltcp saw EOF",
                    ));
                }
                let timestamp = Instant::now();
                iface.poll(timestamp, &mut device, &mut sockets);
                c.polls += 1;

                // tcp:SINK_PORT: sink data
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                // may_recv: ESTABLISHED (or data still buffered); false again once the FIN is in.
                opened |= socket.may_recv();
                while socket.can_recv() {
                    let length = socket
                        .recv(|buffer| (buffer.len(), buffer.len()))
                        .map_err(|e| io::Error::other(format!("recv: {e}")))?;
                    start.get_or_insert_with(std::time::Instant::now);
                    processed += length;
                }
                if opened && end.is_none() && !socket.may_recv() {
                    if processed != total {
                        return Err(io::Error::other(format!(
                            "EOF after {processed} of {total} bytes"
                        )));
                    }
                    end = Some(std::time::Instant::now());
                    socket.close();
                }

                wait(&mut iface, &sockets, fd, timestamp, &mut c)?;
            }
            writer.finish()?;
            span(start, end)?
        }
        Dir::UserToKernel => {
            let addr = SocketAddrV4::new(HOST_IP.into(), SOURCE_PORT);
            let reader = listening_reader(ns.name(), 1, addr, limits, deadline)?;
            let remote = (
                IpAddress::from(std::net::Ipv4Addr::from(HOST_IP)),
                SOURCE_PORT,
            );
            sockets
                .get_mut::<tcp::Socket>(handle)
                .connect(iface.context(), remote, 49500)
                .map_err(|e| io::Error::other(format!("connect: {e}")))?;
            let mut processed = 0usize;
            while !reader.is_finished() {
                deadline.check()?;
                let timestamp = Instant::now();
                iface.poll(timestamp, &mut device, &mut sockets);
                c.polls += 1;

                // tcp:SOURCE_PORT: emit data
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                while socket.can_send() && processed < total {
                    let length = socket
                        .send(|buffer| {
                            let length = buffer.len().min(total - processed);
                            (length, length)
                        })
                        .map_err(|e| io::Error::other(format!("send: {e}")))?;
                    processed += length;
                }
                if processed == total && socket.may_send() {
                    socket.close();
                }

                wait(&mut iface, &sockets, fd, timestamp, &mut c)?;
            }
            let elapsed = reader.finish()?;
            // Untimed: acknowledge the kernel's FIN, so its socket does not sit in LAST-ACK
            // holding the TAP (deleting a device with such a socket can stall for seconds).
            let grace = Deadline::new(std::time::Duration::from_secs(1), "closing");
            while grace.check().is_ok() {
                let state = sockets.get::<tcp::Socket>(handle).state();
                if !matches!(
                    state,
                    tcp::State::FinWait1 | tcp::State::FinWait2 | tcp::State::Closing
                ) {
                    break;
                }
                let timestamp = Instant::now();
                iface.poll(timestamp, &mut device, &mut sockets);
                wait(
                    &mut iface,
                    &sockets,
                    fd,
                    timestamp,
                    &mut Counters::default(),
                )?;
            }
            elapsed
        }
    };

    match link_counters(ns.name(), &tap_name) {
        Ok((host_rx, host_tx, drops)) => {
            c.frames_in = host_tx;
            c.frames_out = host_rx;
            c.host_drops = drops;
        }
        Err(e) => log::warn!("{e}"),
    }
    drop(device);
    Ok(Outcome {
        bytes: limits.bytes,
        elapsed,
        counters: Some(c),
        others_cpu: None,
    })
}

/// The benchmark's wait: until `poll_at` or a frame, but at most [`IDLE_WAIT`] (so that the
/// end of a transfer, signalled by another thread, is noticed; frames wake it long before).
fn wait(
    iface: &mut Interface,
    sockets: &SocketSet<'_>,
    fd: i32,
    timestamp: Instant,
    c: &mut Counters,
) -> io::Result<()> {
    match iface.poll_at(timestamp, sockets) {
        Some(poll_at) if timestamp < poll_at => {
            c.sleeps += 1;
            phy_wait(fd, Some((poll_at - timestamp).min(IDLE_WAIT)))
        }
        Some(_) => Ok(()),
        None => {
            c.sleeps += 1;
            phy_wait(fd, Some(IDLE_WAIT))
        }
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(17)
}
