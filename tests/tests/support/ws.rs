//! What the WebSocket-over-TAP tests share: a TAP link on its own `10.92.N.0/24` subnet, a
//! session engine polled on its own thread that also counts its polls (to tell an idle
//! engine from a spinning one), a recording [`WsListener`], a raw RFC 6455 client over a
//! kernel `TcpStream` written independently of ustack's frame code, and a runner for the
//! Python peers in `tests/py/`.
//!
//! Included with `#[path = "support/ws.rs"] mod ws_support;`.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use ustack::runtime::{self, PollMode};
use ustack::session::{EndpointId, Engine, EngineStats, Reject, SessionError};
use ustack::smoltcp::time::Instant;
use ustack::smoltcp::wire::Ipv4Cidr;
use ustack::ws::close::CloseCode;
use ustack::ws::conn::Message;
use ustack::ws::{WsListener, WsSession};
use ustack::{Config, Stack};
use ustack_drivers::{TapBuilder, TapDevice};
pub use ustack_tests::require_websockets;
use ustack_tests::{unique_name, NetNs, STACK_MAC};

/// Upper bound for anything that should happen at once (liveness, not timing).
pub const LIVE: Duration = Duration::from_secs(10);
/// Socket read timeout of kernel clients, and the limit for a Python peer's whole run.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The `Sec-WebSocket-Key` of every raw client request (RFC 6455's sample nonce) and the
/// accept value it must produce.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------------------------------
// The link
// ---------------------------------------------------------------------------------------

/// A TAP interface named `uwk…` whose host side sits in its own namespace at
/// `10.92.<net>.1/24`, with ustack expected at `10.92.<net>.2`. Each test uses its own
/// `net`, so no two tests (here or elsewhere in the repo) share a subnet.
pub struct WsLink {
    pub ns: NetNs,
    pub device: Option<TapDevice>,
    pub net: u8,
}

impl WsLink {
    pub fn new(net: u8) -> Self {
        let ns = NetNs::new();
        let name = unique_name("uwk");
        let device = TapBuilder::new(&name)
            .netns(ns.name())
            .host_addr(&format!("10.92.{net}.1/24"))
            .ipv6_autoconf(false)
            .create()
            .unwrap_or_else(|e| panic!("cannot create TAP link {name}: {e}"));
        WsLink {
            ns,
            device: Some(device),
            net,
        }
    }

    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 92, self.net, 1)
    }

    pub fn stack_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 92, self.net, 2)
    }

    pub fn take_device(&mut self) -> TapDevice {
        self.device.take().expect("device taken twice")
    }

    /// A kernel TCP connection (made inside the namespace) to ustack's `port`.
    pub fn connect(&self, port: u16) -> TcpStream {
        let addr = (self.stack_ip(), port).into();
        let s = self
            .ns
            .run(|| TcpStream::connect_timeout(&addr, LIVE))
            .expect("connect to ustack");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }
}

impl Drop for WsLink {
    fn drop(&mut self) {
        drop(self.device.take());
    }
}

// ---------------------------------------------------------------------------------------
// The engine thread
// ---------------------------------------------------------------------------------------

/// What the engine thread publishes after every poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snap {
    pub stats: EngineStats,
    /// Open sessions of all endpoints.
    pub sessions: usize,
}

/// A ustack stack on `10.92.<net>.2` plus a session engine, polled on its own thread the way
/// `runtime::run_engine` does (poll, `poll_delay`, `runtime::wait`), counting polls.
pub struct WsEngine {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    view: Arc<Mutex<Snap>>,
    thread: Option<JoinHandle<()>>,
}

impl WsEngine {
    pub fn start(
        link: &mut WsLink,
        setup: impl FnOnce(&mut Stack<'static, TapDevice>, &mut Engine<'static>, Instant) -> Vec<EndpointId>
            + Send
            + 'static,
    ) -> Self {
        let device = link.take_device();
        let config = Config::new(STACK_MAC, Ipv4Cidr::new(link.stack_ip(), 24)).seed(0x92);
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let view = Arc::new(Mutex::new(Snap::default()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (flag, count, out) = (stop.clone(), polls.clone(), view.clone());
        let thread = std::thread::spawn(move || {
            let mut stack = Stack::new(config, device, runtime::now()).expect("stack");
            let mut engine = Engine::new(&stack, runtime::now());
            engine.set_pool_limit(64 << 20);
            let _ids = setup(&mut stack, &mut engine, runtime::now());
            let snap = |e: &Engine<'_>| Snap {
                stats: e.stats(),
                sessions: e.session_count(),
            };
            *out.lock().unwrap() = snap(&engine);
            let _ = ready_tx.send(());
            let fd = stack.device().as_raw_fd();
            while !flag.load(Ordering::Relaxed) {
                engine.poll(&mut stack, runtime::now());
                count.fetch_add(1, Ordering::Relaxed);
                *out.lock().unwrap() = snap(&engine);
                let delay = engine.poll_delay(&mut stack, runtime::now());
                runtime::wait(fd, engine.wake_fd(), delay, PollMode::Block).expect("wait");
            }
        });
        let mut me = WsEngine {
            stop,
            polls,
            view,
            thread: Some(thread),
        };
        if ready_rx.recv().is_err() {
            me.join();
            panic!("engine thread died in setup");
        }
        me
    }

    pub fn snap(&self) -> Snap {
        *self.view.lock().unwrap()
    }

    /// Polls so far.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Waits until `pred` holds, at most [`LIVE`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Snap) -> bool) -> Snap {
        let end = StdInstant::now() + LIVE;
        loop {
            let s = self.snap();
            if pred(&s) {
                return s;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                self.join();
                panic!("engine thread ended while waiting for {what}");
            }
            assert!(
                StdInstant::now() < end,
                "no {what} within {LIVE:?}; last: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls made during `window` of wall time: an idle engine sleeps in `runtime::wait`
    /// (at most 10 wake-ups a second), a spinning one polls millions of times.
    pub fn polls_during(&self, window: Duration) -> u64 {
        let before = self.polls();
        std::thread::sleep(window);
        self.polls() - before
    }

    pub fn stop(mut self) -> Snap {
        self.join();
        self.snap()
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
    }
}

impl Drop for WsEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The recording listener
// ---------------------------------------------------------------------------------------

/// One callback as [`WsRec`] saw it; session ids are `SessionId::0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEv {
    Open(u64),
    Text(u64, String),
    Binary(u64, Vec<u8>),
    Ping(u64, Vec<u8>),
    Pong(u64, Vec<u8>),
    SendFailed(u64, SessionError),
    Error(u64, SessionError),
    Close(u64, Option<u16>),
}

/// An owned message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Text(String),
    Binary(Vec<u8>),
}

impl Owned {
    pub fn as_msg(&self) -> Message<'_> {
        match self {
            Owned::Text(t) => Message::Text(t),
            Owned::Binary(b) => Message::Binary(b),
        }
    }
}

/// A listener that logs every callback and, as configured, echoes messages, sends some
/// on open, and closes (1000) after a number of messages.
#[derive(Clone, Default)]
pub struct WsRec {
    pub log: Arc<Mutex<Vec<WsEv>>>,
    pub echo: bool,
    pub greet: Vec<Owned>,
    pub close_after: Option<usize>,
    pub seen: usize,
}

impl WsRec {
    pub fn echo() -> Self {
        WsRec {
            echo: true,
            ..WsRec::default()
        }
    }

    pub fn events(&self) -> Vec<WsEv> {
        self.log.lock().unwrap().clone()
    }

    fn push(&self, e: WsEv) {
        self.log.lock().unwrap().push(e);
    }

    /// The log without session ids, for one-session tests.
    pub fn count(&self, f: impl Fn(&WsEv) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }
}

impl WsListener for WsRec {
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        let id = s.id().0;
        self.push(WsEv::Open(id));
        for m in self.greet.clone() {
            if let Err(e) = s.send(m.as_msg()) {
                self.push(WsEv::SendFailed(id, e));
            }
        }
        Ok(())
    }

    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        let id = s.id().0;
        self.push(match msg {
            Message::Text(t) => WsEv::Text(id, t.to_string()),
            Message::Binary(b) => WsEv::Binary(id, b.to_vec()),
        });
        if self.echo {
            if let Err(e) = s.send(msg) {
                self.push(WsEv::SendFailed(id, e));
            }
        }
        self.seen += 1;
        if self.close_after == Some(self.seen) {
            if let Err(e) = s.close_with(CloseCode::NORMAL, "done") {
                self.push(WsEv::SendFailed(id, e));
            }
        }
    }

    fn on_ping(&mut self, s: &mut WsSession<'_>, payload: &[u8]) {
        self.push(WsEv::Ping(s.id().0, payload.to_vec()));
    }

    fn on_pong(&mut self, s: &mut WsSession<'_>, payload: &[u8]) {
        self.push(WsEv::Pong(s.id().0, payload.to_vec()));
    }

    fn on_error(&mut self, s: &mut WsSession<'_>, e: &SessionError) {
        self.push(WsEv::Error(s.id().0, *e));
    }

    fn on_close(&mut self, s: &mut WsSession<'_>, peer: Option<CloseCode>) {
        self.push(WsEv::Close(s.id().0, peer.map(|c| c.0)));
    }
}

/// The log with session ids dropped (one-session tests), bulky payloads summarised.
pub fn strip(events: &[WsEv]) -> Vec<WsEv> {
    events
        .iter()
        .map(|e| match e.clone() {
            WsEv::Open(_) => WsEv::Open(0),
            WsEv::Text(_, t) => WsEv::Text(0, t),
            WsEv::Binary(_, b) => WsEv::Binary(0, b),
            WsEv::Ping(_, p) => WsEv::Ping(0, p),
            WsEv::Pong(_, p) => WsEv::Pong(0, p),
            WsEv::SendFailed(_, x) => WsEv::SendFailed(0, x),
            WsEv::Error(_, x) => WsEv::Error(0, x),
            WsEv::Close(_, c) => WsEv::Close(0, c),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// A raw RFC 6455 client
// ---------------------------------------------------------------------------------------

/// An upgrade request for `/` on `host` with [`KEY`] and `extra` header lines (each ending
/// in CRLF).
pub fn upgrade_request(host: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A kernel connection with buffered input.
pub struct Raw {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

/// A frame as the raw client read it (server frames are never masked: asserted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
}

impl Raw {
    pub fn new(s: TcpStream) -> Self {
        Raw { s, buf: Vec::new() }
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads an HTTP response head (through the blank line) and returns it as text.
    pub fn read_head(&mut self) -> io::Result<String> {
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..p + 4).collect();
                return Ok(String::from_utf8(head).expect("ASCII head"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Reads the whole of a `Connection: close` response (head and `Content-Length` body)
    /// up to the server's EOF, and returns the bytes exactly as they came.
    pub fn read_response_to_end(&mut self) -> (Vec<u8>, End) {
        loop {
            match self.fill() {
                Ok(0) => return (std::mem::take(&mut self.buf), End::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return (std::mem::take(&mut self.buf), End::Reset)
                }
                Err(e) => panic!(
                    "reading the response failed: {e}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Sends the upgrade request and checks the 101; returns the response head.
    pub fn upgrade(&mut self, host: &str, extra: &str) -> String {
        self.s.write_all(&upgrade_request(host, extra)).unwrap();
        let head = self.read_head().expect("101 response");
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "not a 101: {head:?}"
        );
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Accept: {ACCEPT}\r\n")),
            "{head:?}"
        );
        head
    }

    /// Reads one frame.
    pub fn read_frame(&mut self) -> io::Result<RawFrame> {
        loop {
            if let Some((f, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(f);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("EOF inside a frame ({} bytes buffered)", self.buf.len()),
                ));
            }
        }
    }

    /// Reads until the connection ends; panics on data.
    pub fn read_end(&mut self) -> End {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buf);
        match self.fill() {
            Ok(0) => End::Eof,
            Ok(n) => panic!("{n} unexpected bytes: {:?}", &self.buf[..n.min(64)]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => End::Reset,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// A masked client frame, built by hand.
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    push_len(&mut f, 0x80, payload.len());
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// An unmasked frame (what a server sends; from a client, a protocol error).
pub fn unmasked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    push_len(&mut f, 0, payload.len());
    f.extend_from_slice(payload);
    f
}

fn push_len(f: &mut Vec<u8>, mask_bit: u8, len: usize) {
    if len < 126 {
        f.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        f.push(mask_bit | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(mask_bit | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A server frame at the front of `buf`, and its length.
fn parse_server_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(
        buf[1] & 0x80,
        0,
        "a server frame is masked: {:?}",
        &buf[..2]
    );
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    Some((
        RawFrame {
            fin: buf[0] & 0x80 != 0,
            rsv: (buf[0] >> 4) & 0x7,
            opcode: buf[0] & 0xf,
            payload,
        },
        at,
    ))
}

/// A close payload: code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

// ---------------------------------------------------------------------------------------
// Python peers
// ---------------------------------------------------------------------------------------

/// The path of a script in `tests/py/`.
pub fn py_script(name: &str) -> String {
    format!("{}/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python script running inside a namespace, killed if it outlives [`TIMEOUT`] or the
/// test (on drop).
pub struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

impl Py {
    pub fn spawn(ns: &NetNs, script: &str, args: &[&str]) -> Py {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "python3",
                "-u",
                &py_script(script),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 {script}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Py {
            child,
            lines,
            stdout: Vec::new(),
        }
    }

    /// The next stdout line (within [`TIMEOUT`]).
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(l) => {
                self.stdout.push(l.clone());
                l
            }
            Err(e) => {
                let _ = self.child.kill();
                let out = self.child.wait_with_output_ref();
                panic!(
                    "no line from python ({e}); stdout so far {:?}; {out}",
                    self.stdout
                )
            }
        }
    }

    /// Waits for the script to exit (killing it after [`TIMEOUT`]) and returns its stdout
    /// lines; panics with its stderr if it failed.
    pub fn finish(mut self) -> Vec<String> {
        let end = StdInstant::now() + TIMEOUT;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if StdInstant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "python did not finish within {TIMEOUT:?}; stdout {:?}; {}",
                    self.stdout,
                    self.child.wait_with_output_ref()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(l);
        }
        let err = self.child.wait_with_output_ref();
        assert!(
            status.success(),
            "python exited with {status}; stdout {:?}; {err}",
            self.stdout
        );
        std::mem::take(&mut self.stdout)
    }
}

trait StderrText {
    fn wait_with_output_ref(&mut self) -> String;
}

impl StderrText for Child {
    fn wait_with_output_ref(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        format!("stderr: {}", err.trim())
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
