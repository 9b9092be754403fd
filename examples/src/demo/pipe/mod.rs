//! `ustack-demo --pipe`: the demo's services on one ustack, a scripted client on a second
//! one, the two wired back to back by an in-memory [`PipeLink`]. No TAP, no root, no network.
//!
//! One thread and one simulated clock drive both stacks: every tick polls the server's
//! engine (then [`Demo::after_poll`]) and the client's, and moves the clock on by 100 µs
//! while frames are moving, 1 ms when nothing moved. Each step of the script waits for its
//! result within [`MAX_TICKS`] ticks, so a hang becomes an error naming what was expected.
//!
//! The client talks to the services the way an outside peer would: raw TCP and UDP
//! sockets of its own stack for the echoes, the dials and HTTP (`tcp`, `udp`), and
//! [`WsClient`](ustack::ws::WsClient)s on its own session engine for the WebSockets (`ws`).

mod tcp;
mod udp;
mod ws;

use std::fmt::Display;
use std::io::Write;

use ustack::session::Engine;
use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint};
use ustack::{Config, Stack};
use ustack_drivers::{PipeDevice, PipeLink};

use super::Demo;

type Dev<'a> = PipeDevice<'a, 64, 1514>;

/// The client plays the TAP's host side, the server ustack's TAP address (the defaults).
const CLIENT_CIDR: &str = "10.7.0.1/24";
const SERVER_CIDR: &str = "10.7.0.2/24";
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x73, 0x74, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x73, 0x74, 0x6b];
/// The `Host` header of the client's requests.
const HOST: &str = "10.7.0.2:8080";
/// A UDP port nothing listens on (discard): the dial there must be refused.
const CLOSED_PORT: u16 = 9;
/// Ephemeral ports start at `49152 + seed % 16384`: this seed makes the client's first
/// port 49152, so the transcript is the same on every run.
const CLIENT_SEED: u64 = 16384;
const SERVER_SEED: u64 = 2;

/// Ticks one step may take (at least 20 s of simulated time) before it counts as hung.
pub const MAX_TICKS: u64 = 200_000;
/// Ticks given to the last FINs and close frames after [`Demo::finish`].
const FLUSH_TICKS: u64 = 200;

/// Runs the pipe demo: prints the transcript, and returns the first mismatch as an error.
pub fn run() -> Result<(), String> {
    let link = Box::new(PipeLink::<64, 1514>::new());
    let (sdev, cdev) = link.split();
    let mut w = World::new(sdev, cdev)?;
    out(format_args!(
        "ustack-demo --pipe: the services on ustack {} and a scripted client on ustack {}, \
         wired by an in-memory link (no TAP, no root)\n",
        w.server.config().ipv4.address(),
        w.client.config().ipv4.address(),
    ))?;
    tcp::echo(&mut w)?;
    tcp::lp_echo(&mut w)?;
    udp::echo(&mut w)?;
    udp::dial_open(&mut w)?;
    udp::dial_closed(&mut w)?;
    tcp::http(&mut w)?;
    let peers = ws::upgrade(&mut w)?;
    ws::chat(&mut w, &peers)?;
    ws::echo(&mut w, &peers)?;
    ws::close(&mut w, &peers)?;
    ws::shutdown(&mut w, &peers)?;
    totals(&w)?;
    out(format_args!("\npipe demo: all {} steps passed", w.passed))?;
    Ok(())
}

/// What crossed the link, and the demo's summary.
fn totals(w: &World<'_>) -> Result<(), String> {
    let (s, c) = (w.server.device().stats(), w.client.device().stats());
    say(
        "link",
        format!(
            "client -> server {} frames, server -> client {} frames; {} lost, {} refused while a queue was full",
            c.tx_frames,
            s.tx_frames,
            c.tx_dropped + s.tx_dropped,
            c.tx_full + s.tx_full
        ),
    )?;
    out(format_args!("\n{}", w.demo.snapshot().summary()))
}

/// One transcript line: a label column, then the result.
fn say(label: &str, text: impl Display) -> Result<(), String> {
    out(format_args!("{label:<11} {text}"))
}

/// A line of the transcript on stdout. A closed stdout (`ustack-demo --pipe | head`) ends
/// the run with an error rather than a panic.
fn out(line: impl Display) -> Result<(), String> {
    writeln!(std::io::stdout(), "{line}")
        .map_err(|e| format!("cannot write the transcript to stdout: {e}"))
}

fn stack<'a>(
    dev: Dev<'a>,
    mac: [u8; 6],
    cidr: &str,
    seed: u64,
) -> Result<Stack<'a, Dev<'a>>, String> {
    let cidr = cidr.parse().map_err(|_| format!("bad address {cidr}"))?;
    let config = Config::new(mac, cidr).seed(seed);
    Stack::new(config, dev, Instant::ZERO).map_err(|e| format!("cannot make a stack: {e}"))
}

/// Both stacks, their engines, the demo and the clock.
struct World<'a> {
    server: Stack<'a, Dev<'a>>,
    se: Engine<'a>,
    demo: Demo,
    client: Stack<'a, Dev<'a>>,
    ce: Engine<'a>,
    now: Instant,
    /// The step running, its ticks so far, and the steps passed.
    step: &'static str,
    ticks: u64,
    passed: usize,
}

impl<'a> World<'a> {
    fn new(sdev: Dev<'a>, cdev: Dev<'a>) -> Result<Self, String> {
        let now = Instant::ZERO;
        let mut server = stack(sdev, SERVER_MAC, SERVER_CIDR, SERVER_SEED)?;
        let mut se = Engine::new(&server, now);
        let demo = Demo::install(&mut server, &mut se, now)?;
        let client = stack(cdev, CLIENT_MAC, CLIENT_CIDR, CLIENT_SEED)?;
        let ce = Engine::new(&client, now);
        Ok(World {
            server,
            se,
            demo,
            client,
            ce,
            now,
            step: "start",
            ticks: 0,
            passed: 0,
        })
    }

    fn begin(&mut self, step: &'static str) {
        self.step = step;
        self.ticks = 0;
    }

    fn pass(&mut self) {
        self.passed += 1;
    }

    /// Polls both sides once and moves the clock on: 100 µs while frames are moving, 1 ms
    /// when nothing moved.
    fn tick(&mut self) {
        let now = self.now;
        let mut busy = self.se.poll(&mut self.server, now);
        busy |= self.demo.after_poll(&mut self.server, &mut self.se, now);
        busy |= self.ce.poll(&mut self.client, now);
        busy |= self.server.device().rx_pending() + self.client.device().rx_pending() > 0;
        self.now += match busy {
            true => Duration::from_micros(100),
            false => Duration::from_millis(1),
        };
    }

    /// Ticks until `poll` yields a value (or fails, which ends the wait with its error);
    /// past [`MAX_TICKS`] in this step, fails with `expected` (what the step waited for).
    fn wait<T>(
        &mut self,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, String>,
        expected: impl FnOnce(&Self) -> String,
    ) -> Result<T, String> {
        loop {
            if let Some(v) = poll(self)? {
                return Ok(v);
            }
            if self.ticks >= MAX_TICKS {
                return Err(format!(
                    "{} did not finish: {} (after {MAX_TICKS} ticks, at {} ms simulated)",
                    self.step,
                    expected(self),
                    self.now.total_millis()
                ));
            }
            self.ticks += 1;
            self.tick();
        }
    }

    /// Ticks until `done` holds, as [`World::wait`].
    fn until(
        &mut self,
        mut done: impl FnMut(&mut Self) -> bool,
        expected: impl FnOnce(&Self) -> String,
    ) -> Result<(), String> {
        self.wait(|w| Ok(done(w).then_some(())), expected)
    }

    fn server_ep(&self, port: u16) -> IpEndpoint {
        IpEndpoint::new(IpAddress::Ipv4(self.server.config().ipv4.address()), port)
    }

    fn client_ep(&self, port: u16) -> IpEndpoint {
        IpEndpoint::new(IpAddress::Ipv4(self.client.config().ipv4.address()), port)
    }
}

/// `local -> remote`, padded so that the results line up.
fn route(local: impl Display, remote: impl Display) -> String {
    format!("{:<31}", format!("{local} -> {remote}"))
}

/// Reproducible bytes that are not all alike.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// `Ok` if `b` (what came back) is `a` (what was sent), else where they first differ.
fn same(a: &[u8], b: &[u8]) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    Err(format!(
        "sent {} B, got {} B back, first difference at byte {at}",
        a.len(),
        b.len()
    ))
}
