//! The `std` runtime: block on the device's file descriptor until I/O or a timer is due.
//!
//! Two ways to drive a stack:
//! - [`run`] on the caller's thread, with a handler for each [`Event`]: the event-driven way,
//!   as the `echo` example does;
//! - [`SharedStack`], a poll thread plus blocking [`TcpStream`], [`TcpListener`] and
//!   [`UdpSocket`] adapters that work like `std::net`.

mod blocking;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};

use crate::{Event, Stack};

pub use blocking::{SharedStack, TcpListener, TcpStream, UdpSocket};

/// How the loop waits between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMode {
    /// Sleep in `poll(2)` until a frame arrives or a timer is due. Costs no CPU when idle.
    #[default]
    Block,
    /// Spin without sleeping: lowest latency, one core at 100%.
    BusyPoll,
}

/// Longest sleep, so that stop requests are noticed even with no traffic.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// The current time on the stack's clock.
pub fn now() -> Instant {
    Instant::now()
}

/// Waits until `fd` (or `extra`) is readable or `delay` passes. Interrupted waits return early.
///
/// ```no_run
/// use ustack::runtime::{wait, PollMode};
/// use ustack::smoltcp::time::Duration;
/// wait(0, None, Some(Duration::from_millis(10)), PollMode::Block).unwrap();
/// ```
pub fn wait(
    fd: RawFd,
    extra: Option<RawFd>,
    delay: Option<Duration>,
    mode: PollMode,
) -> io::Result<()> {
    let delay = delay.map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
    if mode == PollMode::BusyPoll || delay == Duration::ZERO {
        std::hint::spin_loop();
        return Ok(());
    }
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: extra.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let micros = delay.total_micros();
    let ts = libc::timespec {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_nsec: ((micros % 1_000_000) * 1000) as libc::c_long,
    };
    // SAFETY: `fds` and `ts` are valid for the duration of the call.
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Runs `stack` on this thread until `stop` is set, calling `on_event` for each event.
///
/// ```no_run
/// use std::sync::atomic::AtomicBool;
/// use ustack::runtime::{run, PollMode};
/// # fn demo<D: ustack::smoltcp::phy::Device + std::os::fd::AsRawFd>(mut stack: ustack::Stack<'_, D>) {
/// let stop = AtomicBool::new(false);
/// run(&mut stack, PollMode::Block, &stop, |stack, event| {
///     println!("{event:?}");
/// }).unwrap();
/// # }
/// ```
pub fn run<D, F>(
    stack: &mut Stack<'_, D>,
    mode: PollMode,
    stop: &AtomicBool,
    mut on_event: F,
) -> io::Result<()>
where
    D: Device + AsRawFd,
    F: FnMut(&mut Stack<'_, D>, Event),
{
    let fd = stack.device().as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        stack.poll(now());
        while let Some(ev) = stack.next_event() {
            on_event(stack, ev);
        }
        let delay = stack.poll_delay(now());
        wait(fd, None, delay, mode)?;
    }
    Ok(())
}

/// Runs `engine`'s sessions over `stack` on this thread until `stop` is set: polls, then
/// sleeps until a frame arrives, a session timer is due, or another thread queues a
/// command ([`SessionHandle`](crate::session::SessionHandle), pool workers).
///
/// ```no_run
/// use std::sync::atomic::AtomicBool;
/// use ustack::runtime::{run_engine, PollMode};
/// use ustack::session::Engine;
/// # fn demo<D: ustack::smoltcp::phy::Device + std::os::fd::AsRawFd>(mut stack: ustack::Stack<'_, D>) {
/// let mut engine = Engine::new(&stack, ustack::runtime::now());
/// // ... add endpoints ...
/// let stop = AtomicBool::new(false);
/// run_engine(&mut stack, &mut engine, PollMode::Block, &stop).unwrap();
/// # }
/// ```
pub fn run_engine<D>(
    stack: &mut Stack<'_, D>,
    engine: &mut crate::session::Engine<'_>,
    mode: PollMode,
    stop: &AtomicBool,
) -> io::Result<()>
where
    D: Device + AsRawFd,
{
    let fd = stack.device().as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        engine.poll(stack, now());
        let delay = engine.poll_delay(stack, now());
        wait(fd, engine.wake_fd(), delay, mode)?;
    }
    Ok(())
}
