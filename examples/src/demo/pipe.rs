//! `ustack-demo --pipe`: the demo's services on one ustack, a scripted client on a second
//! one, the two wired back to back by an in-memory [`PipeLink`]. No TAP, no root, no network.
//!
//! One thread and one simulated clock drive both stacks: every tick polls the server's
//! engine (then [`Demo::after_poll`]) and the client's, and moves the clock on by 100 µs
//! while frames are moving, 1 ms when nothing moved. Each step of the script waits for its
//! result within [`MAX_TICKS`] ticks, so a hang becomes an error naming what was expected.
//!
//! The client talks to the services the way an outside peer would: raw TCP and UDP
//! sockets of its own stack for the echoes, the dials and HTTP, and [`WsClient`]s on its own
//! session engine for the WebSockets.

use std::cell::RefCell;
use std::fmt::Display;
use std::io::Write;
use std::rc::Rc;

use serde_json::Value;
use ustack::session::{Backoff, ClientOptions, EndpointId, Engine, Reject, SessionError};
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint};
use ustack::ws::close::CloseCode;
use ustack::ws::conn::Message;
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::ClientConfig;
use ustack::ws::{WsClient, WsListener, WsOptions, WsSession};
use ustack::{Config, DialOptions, DialStatus, Error, Stack, TcpHandle};
use ustack_drivers::{PipeDevice, PipeLink};

use super::{web, Demo, ECHO_PORT, HTTP_PORT, LP_PORT};

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
    tcp_echo(&mut w)?;
    lp_echo(&mut w)?;
    udp_echo(&mut w)?;
    udp_dial_open(&mut w)?;
    udp_dial_closed(&mut w)?;
    http(&mut w)?;
    let ws = ws_upgrade(&mut w)?;
    chat(&mut w, &ws)?;
    ws_echo(&mut w, &ws)?;
    ws_close(&mut w, &ws)?;
    shutdown(&mut w, &ws)?;
    out(format_args!("\npipe demo: all {} steps passed", w.passed))?;
    Ok(())
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

    /// Ticks until `done` holds; past [`MAX_TICKS`] in this step, fails with `expected`
    /// (what the step was waiting for).
    fn until(
        &mut self,
        mut done: impl FnMut(&mut Self) -> bool,
        expected: impl FnOnce(&Self) -> String,
    ) -> Result<(), String> {
        while !done(self) {
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
        Ok(())
    }

    fn server_ep(&self, port: u16) -> IpEndpoint {
        IpEndpoint::new(IpAddress::Ipv4(self.server.config().ipv4.address()), port)
    }

    /// Runs `f` on the open WebSocket session of client endpoint `id`.
    fn ws_do(
        &mut self,
        id: EndpointId,
        who: &str,
        mut f: impl FnMut(&mut WsSession<'_>) -> Result<(), SessionError>,
    ) -> Result<(), String> {
        let mut result = Err(format!("{who} has no open WebSocket session"));
        self.ce.each_session(&mut self.client, id, self.now, |ctx| {
            if let Some(mut ws) = WsSession::from_ctx(ctx) {
                result = f(&mut ws).map_err(|e| format!("{who}: {e}"));
            }
        });
        result
    }
}

/// A raw TCP connection of the client: what is left to write, what came back.
struct Conn {
    h: TcpHandle,
    local: IpEndpoint,
    remote: IpEndpoint,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Connects to `remote` and waits for the handshake.
    fn open(w: &mut World<'_>, remote: IpEndpoint) -> Result<Conn, String> {
        let h = w
            .client
            .connect(remote)
            .map_err(|e| format!("connect to {remote}: {e}"))?;
        let mut failed = None;
        w.until(
            |w| match w.client.tcp_connected(h) {
                Ok(up) => up,
                Err(e) => {
                    failed = Some(e);
                    true
                }
            },
            |_| format!("the TCP handshake with {remote}"),
        )?;
        if let Some(e) = failed {
            return Err(format!("connect to {remote} failed: {e:?}"));
        }
        let local = w
            .client
            .tcp_local_addr(h)
            .map_err(|e| format!("local address: {e}"))?;
        Ok(Conn {
            h,
            local,
            remote,
            out: Vec::new(),
            sent: 0,
            got: Vec::new(),
            eof: false,
        })
    }

    fn route(&self) -> String {
        route(self.local, self.remote)
    }

    /// Writes what fits, reads what arrived.
    fn pump<D: Device>(&mut self, s: &mut Stack<'_, D>) -> Result<(), String> {
        while self.sent < self.out.len() {
            match s.tcp_write(self.h, &self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(format!("{}: write failed: {e}", self.route())),
            }
        }
        let mut buf = [0u8; 16 * 1024];
        while !self.eof {
            match s.tcp_read(self.h, &mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(format!("{}: read failed: {e}", self.route())),
            }
        }
        Ok(())
    }

    /// Sends `bytes` and waits until at least `want` bytes came back in all.
    fn exchange(&mut self, w: &mut World<'_>, bytes: &[u8], want: usize) -> Result<(), String> {
        self.out.extend_from_slice(bytes);
        let remote = self.remote;
        let mut err = None;
        w.until(
            |w| match self.pump(&mut w.client) {
                Ok(()) => self.got.len() >= want || self.eof,
                Err(e) => {
                    err = Some(e);
                    true
                }
            },
            |_| format!("{want} B back from {remote}"),
        )?;
        match err {
            Some(e) => Err(e),
            None if self.got.len() < want => Err(format!(
                "{} closed the connection after {} of {want} B",
                self.remote,
                self.got.len()
            )),
            None => Ok(()),
        }
    }

    /// Half-closes, reads to the peer's FIN, and closes.
    fn finish(mut self, w: &mut World<'_>) -> Result<Vec<u8>, String> {
        w.client
            .tcp_shutdown_write(self.h)
            .map_err(|e| format!("shutdown: {e}"))?;
        self.read_to_end(w)?;
        let _ = w.client.tcp_close(self.h);
        Ok(self.got)
    }

    fn read_to_end(&mut self, w: &mut World<'_>) -> Result<(), String> {
        let remote = self.remote;
        let mut err = None;
        w.until(
            |w| match self.pump(&mut w.client) {
                Ok(()) => self.eof,
                Err(e) => {
                    err = Some(e);
                    true
                }
            },
            |_| format!("{remote} to close its side (FIN)"),
        )?;
        err.map_or(Ok(()), Err)
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

fn tcp_echo(w: &mut World<'_>) -> Result<(), String> {
    w.begin("tcp echo on port 7");
    let mut c = Conn::open(w, w.server_ep(ECHO_PORT))?;
    let line = b"hello ustack, this is the pipe client\n";
    c.exchange(w, line, line.len())?;
    same(line, &c.got).map_err(|e| format!("tcp echo line: {e}"))?;
    say(
        "tcp echo",
        format!("{}  line of {} B back, identical", c.route(), line.len()),
    )?;
    let big = pattern(64 * 1024, 7);
    c.exchange(w, &big, line.len() + big.len())?;
    same(&big, &c.got[line.len()..]).map_err(|e| format!("tcp echo: {e}"))?;
    let route = c.route();
    let got = c.finish(w)?;
    if got.len() != line.len() + big.len() {
        return Err(format!(
            "tcp echo: {} extra bytes after the echo",
            got.len() - line.len() - big.len()
        ));
    }
    say(
        "tcp echo",
        format!(
            "{route}  sent {} B, got {} B back, identical",
            big.len(),
            big.len()
        ),
    )?;
    w.pass();
    Ok(())
}

/// One length-prefixed package: 4-byte big-endian length, then the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn lp_echo(w: &mut World<'_>) -> Result<(), String> {
    w.begin("length-prefixed echo on port 9000");
    let bodies = [
        Vec::new(),
        b"ping".to_vec(),
        pattern(1460, 1),
        pattern(256 * 1024, 2),
    ];
    let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    let mut c = Conn::open(w, w.server_ep(LP_PORT))?;
    c.exchange(w, &wire, wire.len())?;
    let route = c.route();
    let got = c.finish(w)?;
    // Cut what came back into packages again, and compare them one by one.
    let mut rest = &got[..];
    let mut back = Vec::new();
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + n {
            break;
        }
        back.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    if !rest.is_empty() || back.len() != bodies.len() {
        return Err(format!(
            "length-prefixed echo: sent {} packages ({} B), got {} whole packages and {} B left over",
            bodies.len(),
            wire.len(),
            back.len(),
            rest.len()
        ));
    }
    for (i, (sent, got)) in bodies.iter().zip(&back).enumerate() {
        same(sent, got).map_err(|e| format!("length-prefixed echo, package {i}: {e}"))?;
    }
    let sizes: Vec<String> = bodies.iter().map(|b| b.len().to_string()).collect();
    say(
        "lp echo",
        format!(
            "{route}  {} packages ({} B) back, same framing, identical",
            bodies.len(),
            sizes.join(", ")
        ),
    )?;
    w.pass();
    Ok(())
}

/// Waits for one datagram on `h`.
fn udp_recv(
    w: &mut World<'_>,
    h: ustack::UdpHandle,
    from: IpEndpoint,
) -> Result<(Vec<u8>, IpEndpoint), String> {
    let mut buf = vec![0u8; 2048];
    let mut got = None;
    let mut err = None;
    w.until(
        |w| match w.client.udp_recv_from(h, &mut buf) {
            Ok((n, meta)) => {
                got = Some((buf[..n].to_vec(), meta.remote));
                true
            }
            Err(Error::WouldBlock) => false,
            Err(e) => {
                err = Some(e);
                true
            }
        },
        |_| format!("a datagram back from {from}"),
    )?;
    match (got, err) {
        (Some(g), _) => Ok(g),
        (None, Some(e)) => Err(format!("udp receive from {from}: {e:?}: {e}")),
        (None, None) => Err(format!("udp receive from {from}: nothing")),
    }
}

fn udp_echo(w: &mut World<'_>) -> Result<(), String> {
    w.begin("udp echo on port 7");
    let to = w.server_ep(ECHO_PORT);
    let h = w.client.udp_bind(0).map_err(|e| format!("udp bind: {e}"))?;
    let local = w.client.udp_local_port(h).map_err(|e| e.to_string())?;
    let msg = b"hello over udp";
    w.client
        .udp_send_to(h, msg, to)
        .map_err(|e| format!("udp send to {to}: {e}"))?;
    let (back, from) = udp_recv(w, h, to)?;
    same(msg, &back).map_err(|e| format!("udp echo: {e}"))?;
    if from != to {
        return Err(format!("udp echo: the answer came from {from}, not {to}"));
    }
    let _ = w.client.udp_close(h);
    say(
        "udp echo",
        format!(
            "{}  sent {} B, got {} B back from {from}, identical",
            route(format!("{}:{local}", w.client.config().ipv4.address()), to),
            msg.len(),
            back.len()
        ),
    )?;
    w.pass();
    Ok(())
}

/// A dial's local address and verdict: `Ok((handle, answered))` where `answered` says
/// whether a reply (rather than the timeout) decided.
type Dialed = (String, Result<(ustack::UdpHandle, bool), Error>);

/// Dials `to` and waits for the verdict.
fn dial(w: &mut World<'_>, to: IpEndpoint) -> Result<Dialed, String> {
    let d = w
        .client
        .udp_dial(to, DialOptions::default(), w.now)
        .map_err(|e| format!("udp_dial {to}: {e}"))?;
    // The check closes the socket on an error: take its port now.
    let local = w
        .client
        .udp_local_port(d.handle())
        .map_err(|e| format!("udp_dial {to}: {e}"))?;
    let local = format!("{}:{local}", w.client.config().ipv4.address());
    let mut verdict = None;
    w.until(
        |w| match w.client.udp_dial_check(&d, w.now) {
            Ok(DialStatus::Pending { .. }) => false,
            Ok(DialStatus::Reachable(h)) => {
                verdict = Some(Ok((h, w.now < d.deadline())));
                true
            }
            Err(e) => {
                verdict = Some(Err(e));
                true
            }
        },
        |_| format!("a verdict on the dial to {to}"),
    )?;
    let verdict = verdict.ok_or_else(|| format!("udp_dial {to}: no verdict"))?;
    Ok((local, verdict))
}

fn udp_dial_open(w: &mut World<'_>) -> Result<(), String> {
    w.begin("connected udp dial to port 7");
    let to = w.server_ep(ECHO_PORT);
    let (local, verdict) = dial(w, to)?;
    let (h, answered) = match verdict {
        Ok(v) => v,
        Err(e) => return Err(format!("udp_dial to the open port {to} failed: {e:?}: {e}")),
    };
    if !answered {
        return Err(format!(
            "udp_dial to {to}: the echo never answered the probe (the dial passed on silence)"
        ));
    }
    let msg = b"hello over connected udp";
    w.client
        .udp_send(h, msg)
        .map_err(|e| format!("udp send on the dialed socket: {e}"))?;
    let (back, from) = udp_recv(w, h, to)?;
    same(msg, &back).map_err(|e| format!("connected udp echo: {e}"))?;
    let _ = w.client.udp_close(h);
    say(
        "udp dial",
        format!(
            "{}  reachable: the echo answered the probe; \
             sent {} B, got {} B back from {from}",
            route(local, to),
            msg.len(),
            back.len()
        ),
    )?;
    w.pass();
    Ok(())
}

fn udp_dial_closed(w: &mut World<'_>) -> Result<(), String> {
    w.begin("connected udp dial to a closed port");
    let to = w.server_ep(CLOSED_PORT);
    let before = w.client.stats();
    let (local, verdict) = dial(w, to)?;
    match verdict {
        Err(e @ Error::ConnectionRefused) => {
            let icmp = w.client.stats().udp_icmp_errors - before.udp_icmp_errors;
            say(
                "udp dial",
                format!(
                    "{}  refused: Error::{e:?} ({icmp} ICMP port unreachable came back)",
                    route(local, to),
                ),
            )?;
        }
        Err(e) => {
            return Err(format!(
                "udp_dial to the closed port {to}: expected ConnectionRefused, got {e:?}: {e}"
            ))
        }
        Ok((_, answered)) => {
            return Err(format!(
                "udp_dial to the closed port {to} was not refused (reachable, {})",
                if answered {
                    "a reply came"
                } else {
                    "silence until the timeout"
                }
            ))
        }
    }
    w.pass();
    Ok(())
}

/// A response to a plain GET.
struct Reply {
    route: String,
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn http_get(w: &mut World<'_>, path: &str) -> Result<Reply, String> {
    let mut c = Conn::open(w, w.server_ep(HTTP_PORT))?;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: ustack-demo-pipe\r\n\r\n");
    c.out.extend_from_slice(req.as_bytes());
    // Every plain GET response closes the connection: read to the FIN.
    c.read_to_end(w)?;
    let _ = w.client.tcp_close(c.h);
    let raw = &c.got;
    let end = raw
        .windows(4)
        .position(|x| x == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no end of headers in {} B", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| format!("GET {path}: headers are not UTF-8"))?;
    let body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line {status_line:?}"))?;
    let mut content_type = String::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(format!("GET {path}: bad header line {l:?}"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-type") {
            content_type = v.to_string();
        }
        if k.eq_ignore_ascii_case("content-length") && v.parse::<usize>().ok() != Some(body.len()) {
            return Err(format!(
                "GET {path}: Content-Length {v} but the body has {} B",
                body.len()
            ));
        }
    }
    Ok(Reply {
        route: c.route(),
        status,
        content_type,
        body,
    })
}

fn http(w: &mut World<'_>) -> Result<(), String> {
    w.begin("http on port 8080");
    let page = http_get(w, "/")?;
    if page.status != 200 || page.body != web::PAGE {
        return Err(format!(
            "GET /: expected 200 and page.html ({} B), got {} with {} B",
            web::PAGE.len(),
            page.status,
            page.body.len()
        ));
    }
    say(
        "http GET",
        format!(
            "{}  /        {} {}, {} B, identical to page.html",
            page.route,
            page.status,
            page.content_type,
            page.body.len()
        ),
    )?;
    let stats = http_get(w, "/stats")?;
    if stats.status != 200 || stats.content_type != "application/json" {
        return Err(format!(
            "GET /stats: expected 200 application/json, got {} {:?}",
            stats.status, stats.content_type
        ));
    }
    let doc: Value = serde_json::from_slice(&stats.body)
        .map_err(|e| format!("GET /stats: the body is not JSON: {e}"))?;
    let num = |ptr: &str| {
        doc.pointer(ptr)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("GET /stats: no number at {ptr}"))
    };
    // What the steps so far sent: one line and 64 KiB; a datagram, the dial's probe and a
    // datagram on the dialed socket; four packages.
    let expect = [
        ("/messages/tcp_echo_bytes", 38 + 64 * 1024),
        ("/messages/udp_echo_datagrams", 3),
        ("/messages/lp_echo_packages", 4),
    ];
    for (ptr, want) in expect {
        let got = num(ptr)?;
        if got != want {
            return Err(format!("GET /stats: {ptr} is {got}, expected {want}"));
        }
    }
    if doc.pointer("/stack_ip").and_then(Value::as_str) != Some("10.7.0.2") {
        return Err(format!("GET /stats: stack_ip is {}", doc["stack_ip"]));
    }
    say(
        "http GET",
        format!(
            "{}  /stats   {} {}, {} B of valid JSON: frames in {} / out {}, \
             {} sessions opened, echoed {} B TCP, {} UDP datagrams, {} packages",
            stats.route,
            stats.status,
            stats.content_type,
            stats.body.len(),
            num("/frames/in")?,
            num("/frames/out")?,
            num("/sessions/opened")?,
            num("/messages/tcp_echo_bytes")?,
            num("/messages/udp_echo_datagrams")?,
            num("/messages/lp_echo_packages")?,
        ),
    )?;
    let missing = http_get(w, "/nope")?;
    if missing.status != 404 {
        return Err(format!("GET /nope: expected 404, got {}", missing.status));
    }
    say(
        "http GET",
        format!("{}  /nope    {}", missing.route, missing.status),
    )?;
    w.pass();
    Ok(())
}

/// What one WebSocket client saw.
#[derive(Default, Debug)]
struct PeerLog {
    local: Option<IpEndpoint>,
    texts: Vec<String>,
    /// The text messages that are JSON, parsed once on arrival.
    docs: Vec<Value>,
    binaries: Vec<Vec<u8>>,
    /// `Some(code)` once the session is over; the code of the server's close frame.
    closed: Option<Option<u16>>,
    errors: Vec<String>,
}

impl PeerLog {
    /// The server's JSON messages of type `ty`.
    fn json(&self, ty: &str) -> Vec<Value> {
        self.docs
            .iter()
            .filter(|v| v["type"] == ty)
            .cloned()
            .collect()
    }

    fn addr(&self) -> String {
        self.local.map_or_else(|| "?".into(), |a| a.to_string())
    }
}

type Log = Rc<RefCell<PeerLog>>;

struct Peer(Log);

impl WsListener for Peer {
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        self.0.borrow_mut().local = Some(s.local_addr());
        Ok(())
    }

    fn on_message(&mut self, _: &mut WsSession<'_>, msg: Message<'_>) {
        let mut log = self.0.borrow_mut();
        match msg {
            Message::Text(t) => {
                if let Ok(v) = serde_json::from_str(t) {
                    log.docs.push(v);
                }
                log.texts.push(t.to_string());
            }
            Message::Binary(b) => log.binaries.push(b.to_vec()),
        }
    }

    fn on_error(&mut self, _: &mut WsSession<'_>, e: &SessionError) {
        self.0.borrow_mut().errors.push(e.to_string());
    }

    fn on_close(&mut self, _: &mut WsSession<'_>, peer: Option<CloseCode>) {
        self.0.borrow_mut().closed = Some(peer.map(|c| c.0));
    }
}

/// The three WebSocket clients.
struct Ws {
    alice: (EndpointId, Log),
    bob: (EndpointId, Log),
    echo: (EndpointId, Log),
}

fn ws_client(w: &mut World<'_>, path: &'static str) -> Result<(EndpointId, Log), String> {
    let log = Log::default();
    let cfg = ClientConfig {
        deflate: Some(DeflateConfig::default()),
        ..ClientConfig::new(HOST, path)
    };
    let client = WsClient::new(Peer(log.clone()), cfg, WsOptions::default());
    // One connection, no reconnecting: a session that ends stays ended.
    let opts = ClientOptions {
        max_attempts: Some(1),
        backoff: Backoff {
            initial: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
        },
        ..ClientOptions::default()
    };
    let id =
        w.ce.tcp_client(w.server_ep(HTTP_PORT), opts, client, w.now)
            .map_err(|e| format!("ws client for {path}: {e}"))?;
    Ok((id, log))
}

fn compact(v: &Value) -> String {
    v.to_string()
}

fn ws_upgrade(w: &mut World<'_>) -> Result<Ws, String> {
    w.begin("websocket upgrades");
    let alice = ws_client(w, "/chat")?;
    w.until(
        |_| !alice.1.borrow().json("welcome").is_empty() || alice.1.borrow().closed.is_some(),
        |_| "alice's upgrade to /chat and the welcome".into(),
    )?;
    let welcome = alice.1.borrow().json("welcome");
    let Some(hello) = welcome.first() else {
        return Err(format!(
            "alice's upgrade to /chat failed: {:?}",
            alice.1.borrow()
        ));
    };
    if hello["members"] != 1 || hello["you"] != alice.1.borrow().addr() {
        return Err(format!("alice's welcome is wrong: {hello}"));
    }
    say(
        "ws upgrade",
        format!(
            "alice {} -> ws://{HOST}/chat  101 Switching Protocols; {}",
            alice.1.borrow().addr(),
            compact(hello)
        ),
    )?;
    let bob = ws_client(w, "/chat")?;
    w.until(
        |_| {
            (!bob.1.borrow().json("welcome").is_empty() || bob.1.borrow().closed.is_some())
                && alice.1.borrow().json("join").len() >= 2
        },
        |_| "bob's upgrade to /chat, his welcome and alice seeing him join".into(),
    )?;
    let welcome = bob.1.borrow().json("welcome");
    let Some(hello) = welcome.first() else {
        return Err(format!(
            "bob's upgrade to /chat failed: {:?}",
            bob.1.borrow()
        ));
    };
    if hello["members"] != 2 {
        return Err(format!("bob's welcome is wrong: {hello}"));
    }
    say(
        "ws upgrade",
        format!(
            "bob   {} -> ws://{HOST}/chat  101 Switching Protocols; {}",
            bob.1.borrow().addr(),
            compact(hello)
        ),
    )?;
    let join = alice.1.borrow().json("join")[1].clone();
    if join["who"] != bob.1.borrow().addr() || join["members"] != 2 {
        return Err(format!("alice saw a wrong join notice: {join}"));
    }
    say("ws upgrade", format!("alice got {}", compact(&join)))?;
    let echo = ws_client(w, "/ws")?;
    w.until(
        |_| echo.1.borrow().local.is_some() || echo.1.borrow().closed.is_some(),
        |_| "the upgrade to /ws".into(),
    )?;
    if echo.1.borrow().local.is_none() {
        return Err(format!("the upgrade to /ws failed: {:?}", echo.1.borrow()));
    }
    say(
        "ws upgrade",
        format!(
            "echo  {} -> ws://{HOST}/ws    101 Switching Protocols",
            echo.1.borrow().addr()
        ),
    )?;
    w.pass();
    Ok(Ws { alice, bob, echo })
}

fn chat(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("chat");
    let line = "hello from alice, over ustack";
    w.ws_do(ws.alice.0, "alice", |s| s.send_text(line))?;
    let said = |l: &Log| -> Option<Value> {
        l.borrow()
            .json("chat")
            .into_iter()
            .find(|v| v["text"] == line)
    };
    w.until(
        |_| said(&ws.alice.1).is_some() && said(&ws.bob.1).is_some(),
        |_| format!("the chat line {line:?} at alice and bob"),
    )?;
    say("chat", format!("alice sends {line:?}"))?;
    for (name, log) in [("alice", &ws.alice.1), ("bob", &ws.bob.1)] {
        let Some(m) = said(log) else {
            return Err(format!("{name} did not get the chat line"));
        };
        if m["from"] != ws.alice.1.borrow().addr() || m["seq"] != 1 {
            return Err(format!("{name} got a wrong chat message: {m}"));
        }
        say("chat", format!("{name:<5} got {}", compact(&m)))?;
    }
    // Every second each member gets the counters that /stats serves.
    w.until(
        |_| !ws.bob.1.borrow().json("stats").is_empty(),
        |_| "bob's first stats push (one comes every second)".into(),
    )?;
    let push = ws.bob.1.borrow().json("stats")[0]["stats"].clone();
    let chat_lines = push.pointer("/messages/chat").and_then(Value::as_u64);
    if chat_lines != Some(1) || push["sessions"]["by_service"]["chat"] != 2 {
        return Err(format!("bob's stats push is wrong: {push}"));
    }
    say(
        "chat",
        format!(
            "bob   got a stats push: uptime {} s, {} chat member(s), {} chat line(s), frames in {} / out {}",
            push["uptime_s"],
            push["sessions"]["by_service"]["chat"],
            push["messages"]["chat"],
            push["frames"]["in"],
            push["frames"]["out"]
        ),
    )?;
    w.pass();
    Ok(())
}

fn ws_echo(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("websocket echo on /ws");
    let text = "echo this, κόσμε";
    let bin = pattern(64 * 1024, 3);
    w.ws_do(ws.echo.0, "echo", |s| {
        s.send_text(text)?;
        s.send_binary(&bin)
    })?;
    let log = &ws.echo.1;
    w.until(
        |_| {
            let l = log.borrow();
            (!l.texts.is_empty() && !l.binaries.is_empty()) || l.closed.is_some()
        },
        |_| "a text and a binary message back from /ws".into(),
    )?;
    let l = log.borrow();
    if l.texts.first().map(String::as_str) != Some(text) {
        return Err(format!("/ws echo: sent text {text:?}, got {:?}", l.texts));
    }
    same(&bin, l.binaries.first().map_or(&[][..], |b| b))
        .map_err(|e| format!("/ws binary echo: {e}"))?;
    say(
        "ws echo",
        format!(
            "echo  text {} B back as text, identical; binary {} B back as binary, identical",
            text.len(),
            bin.len()
        ),
    )?;
    w.pass();
    Ok(())
}

fn ws_close(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("websocket close");
    let alice_addr = ws.alice.1.borrow().addr();
    w.ws_do(ws.alice.0, "alice", |s| {
        s.close_with(CloseCode::NORMAL, "bye")
    })?;
    let left = |l: &Log| {
        l.borrow()
            .json("leave")
            .into_iter()
            .find(|v| v["who"] == alice_addr.as_str())
    };
    w.until(
        |_| ws.alice.1.borrow().closed.is_some() && left(&ws.bob.1).is_some(),
        |_| "alice's close handshake and bob seeing her leave".into(),
    )?;
    w.ce.close_endpoint(&mut w.client, ws.alice.0, w.now);
    let code = ws.alice.1.borrow().closed.flatten();
    if code != Some(1000) {
        return Err(format!(
            "alice sent close 1000 but the server answered {code:?}"
        ));
    }
    say(
        "ws close",
        "alice sends close 1000 \"bye\"; the server answers close 1000",
    )?;
    let leave = left(&ws.bob.1).unwrap_or_default();
    if leave["members"] != 1 {
        return Err(format!("bob got a wrong leave notice: {leave}"));
    }
    say("ws close", format!("bob   got {}", compact(&leave)))?;
    w.pass();
    Ok(())
}

fn shutdown(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("server shutdown");
    let open = w.demo.open_sessions(&w.se);
    say(
        "shutdown",
        format!("the server stops with {open} session(s) open: WebSockets get close 1001"),
    )?;
    let now = w.now;
    w.demo.begin_shutdown(&mut w.server, &mut w.se, now);
    w.until(
        |w| {
            ws.bob.1.borrow().closed.is_some()
                && ws.echo.1.borrow().closed.is_some()
                && w.demo.open_sessions(&w.se) == 0
        },
        |w| {
            format!(
                "close 1001 at bob ({:?}) and echo ({:?}), and no server session left ({} open)",
                ws.bob.1.borrow().closed,
                ws.echo.1.borrow().closed,
                w.demo.open_sessions(&w.se)
            )
        },
    )?;
    for (name, log) in [("bob", &ws.bob.1), ("echo", &ws.echo.1)] {
        let code = log.borrow().closed.flatten();
        if code != Some(1001) {
            return Err(format!(
                "{name} should get close 1001 at shutdown, got {code:?}"
            ));
        }
        say("shutdown", format!("{name:<5} got close 1001 (going away)"))?;
    }
    for (id, _) in [&ws.bob, &ws.echo] {
        w.ce.close_endpoint(&mut w.client, *id, w.now);
    }
    let now = w.now;
    w.demo.finish(&mut w.server, &mut w.se, now);
    for _ in 0..FLUSH_TICKS {
        w.tick();
    }
    let errors: Vec<String> = [&ws.alice, &ws.bob, &ws.echo]
        .iter()
        .flat_map(|(_, l)| l.borrow().errors.clone())
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "websocket clients saw errors: {}",
            errors.join("; ")
        ));
    }
    say("shutdown", "every session closed")?;
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
    out(format_args!("\n{}", w.demo.snapshot().summary()))?;
    w.pass();
    Ok(())
}
