//! `ustack-demo` over TAP, driven from the Linux kernel's side.
//!
//! Each test starts the real binary (`ip netns exec <ns> ustack-demo --tap <name>
//! --host-cidr 10.7.N.1/24 --stack-ip 10.7.N.2`) in its own network namespace with its own
//! TAP name and subnet, waits for its banner, and talks to it with kernel sockets
//! (`NetNs::run`) and with the Python `websockets` peers in `tests/py/demo_peers.py`:
//!
//! - [`echo_services_and_stats`]: TCP echo of 1 MiB, UDP echo, ECONNREFUSED from a closed
//!   UDP port, the length-prefixed echo, `GET /`, `GET /nope` and the `/stats` counters.
//! - [`websocket_echo_and_chat`]: `/ws` echo with and without permessage-deflate, `/chat`
//!   between three clients, and what `/stats` says about them.
//! - [`sigterm_closes_sessions_and_removes_the_tap`]: SIGTERM with a `/chat` member and
//!   TCP sessions open: close 1001, FINs, the summary, exit 0, the interface gone.
//! - [`a_second_demo_on_the_same_tap_name_is_refused`]: one stderr line, exit 1, and the
//!   first demo keeps serving.
//!
//! A [`Proc`] guard SIGKILLs its child if the test fails midway; the namespace goes with
//! its [`NetNs`].

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use ustack_tests::{privileged, random_bytes, require_websockets, unique_name, NetNs, SeededRng};

const DEMO: &str = env!("CARGO_BIN_EXE_ustack-demo");
const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/demo_peers.py");

const ECHO_PORT: u16 = 7;
const LP_PORT: u16 = 9000;
const HTTP_PORT: u16 = 8080;
/// Nothing listens there on the demo.
const CLOSED_PORT: u16 = 9;

/// Start-up, one exchange, or a whole Python script never takes this long.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const PY_TIMEOUT: Duration = Duration::from_secs(90);
/// The demo waits up to 2 s for sessions to close, then 0.2 s for the last frames.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The last line of the banner: everything before it has been printed and the stack polls.
const BANNER_END: &str = "Ctrl-C or SIGTERM stops it";

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A child process with its stdout read line by line and its stderr collected; SIGKILLed
/// on drop if it still runs, so a failing test never leaves it behind.
struct Proc {
    what: String,
    child: Child,
    // In a Mutex only so that a `&Demo` can go into `NetNs::run`.
    lines: Mutex<mpsc::Receiver<String>>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc {
            what: what.to_owned(),
            child,
            lines: Mutex::new(lines),
            stdout: Vec::new(),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What it said so far, for panic messages.
    fn transcript(&self) -> String {
        format!(
            "{} stdout so far:\n{}\n{} stderr so far:\n{}",
            self.what,
            self.stdout.join("\n"),
            self.what,
            self.stderr()
        )
    }

    /// The next stdout line, or `None` at EOF; panics after `timeout`.
    fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let next = self.lines.get_mut().unwrap().recv_timeout(timeout);
        match next {
            Ok(l) => {
                self.stdout.push(l.clone());
                Some(l)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} printed no line within {timeout:?}\n{}",
                self.what,
                self.transcript()
            ),
        }
    }

    /// Reads stdout up to and including the first line that starts with `prefix`.
    fn line_starting(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(l) if l.starts_with(prefix) => return l,
                Some(_) => {}
                None => {
                    // Give the stderr reader a moment to collect the last words.
                    let status = self.wait(Duration::from_secs(2));
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "{} ended ({status}) before printing a line starting {prefix:?}\n{}",
                        self.what,
                        self.transcript()
                    )
                }
            }
        }
    }

    /// Waits for the process to exit; panics (and the guard kills it) after `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.what,
                    self.transcript()
                ),
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        }
    }

    /// Every stdout line up to EOF (the process has exited or is about to).
    fn rest_of_stdout(&mut self) -> Vec<String> {
        while self.next_line(IO_TIMEOUT).is_some() {}
        self.stdout.clone()
    }

    /// Runs to the end (within `timeout`): exit status, all stdout lines, all stderr.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let status = self.wait(timeout);
        let out = self.rest_of_stdout();
        // stdout's EOF came with the exit; stderr's reader may lag a moment behind.
        thread::sleep(Duration::from_millis(50));
        (status, out, self.stderr())
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child, which
        // has not been reaped yet (so the pid cannot have been reused).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Child::kill sends SIGKILL.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One demo inside a namespace: its TAP name and addresses.
struct Demo {
    proc: Proc,
    tap: String,
    host_ip: Ipv4Addr,
    stack_ip: Ipv4Addr,
}

/// The `ustack-demo` command inside `ns`, on TAP `tap` and subnet 10.7.`net`.0/24.
fn demo_command(ns: &NetNs, tap: &str, net: u8) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), DEMO])
        .args(["--tap", tap])
        .args(["--host-cidr", &format!("10.7.{net}.1/24")])
        .args(["--stack-ip", &format!("10.7.{net}.2")]);
    cmd
}

impl Demo {
    /// Starts the demo and waits for its whole banner.
    fn start(ns: &NetNs, net: u8) -> Demo {
        let tap = unique_name("ud");
        let host_ip = Ipv4Addr::new(10, 7, net, 1);
        let stack_ip = Ipv4Addr::new(10, 7, net, 2);
        // `ip netns exec` execs the demo, so the child's pid is the demo's own.
        let mut proc = Proc::spawn(
            &format!("ustack-demo (TAP {tap})"),
            demo_command(ns, &tap, net),
        );
        let first = proc.line_starting("ustack-demo: ", READY_TIMEOUT);
        let want = format!("ustack-demo: ustack serves {stack_ip} on TAP {tap} ");
        assert!(
            first.starts_with(&want),
            "banner's first line is {first:?}, want it to start with {want:?}"
        );
        proc.line_starting(BANNER_END, READY_TIMEOUT);
        let text = proc.stdout.join("\n");
        for part in [
            format!("http://{stack_ip}:{HTTP_PORT}/"),
            format!("nc {stack_ip} {ECHO_PORT}"),
            format!("('{stack_ip}',{ECHO_PORT})"),
            format!("curl http://{stack_ip}:{HTTP_PORT}/stats"),
            format!("tcpdump -ni {tap}"),
        ] {
            assert!(text.contains(&part), "banner lacks {part:?}:\n{text}");
        }
        // The flags took effect: the host side of the TAP has 10.7.N.1/24.
        let out = ns.exec("ip", &["-4", "-o", "addr", "show", "dev", &tap]);
        let addrs = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && addrs.contains(&format!("{host_ip}/24")),
            "TAP {tap} should have {host_ip}/24 in {}: {addrs}{}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        Demo {
            proc,
            tap,
            host_ip,
            stack_ip,
        }
    }

    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.stack_ip, port))
    }

    fn ws_url(&self, path: &str) -> String {
        format!("ws://{}:{HTTP_PORT}{path}", self.stack_ip)
    }

    /// SIGTERM, then the exit status and all of stdout.
    fn terminate(self) -> (ExitStatus, Vec<String>, String) {
        self.proc.signal(libc::SIGTERM);
        self.proc.finish(EXIT_TIMEOUT)
    }
}

/// Runs `demo_peers.py args...` inside `ns` in the background.
fn peers(ns: &NetNs, args: &[&str]) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "python3", "-u", PEERS])
        .args(args);
    Proc::spawn(&format!("demo_peers.py {}", args.join(" ")), cmd)
}

/// Runs `demo_peers.py args...` to the end and returns its result: the last stdout line,
/// parsed. Panics with its stderr if it failed.
fn peers_result(ns: &NetNs, args: &[&str]) -> Value {
    let p = peers(ns, args);
    let what = p.what.clone();
    let (status, out, err) = p.finish(PY_TIMEOUT);
    assert!(
        status.success(),
        "{what} failed ({status}):\n{}\nstdout:\n{}",
        err.trim_end(),
        out.join("\n")
    );
    let last = out.last().map(String::as_str).unwrap_or("");
    let doc: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{what} printed no JSON result ({e}): {last:?}"));
    assert_eq!(doc["result"], "ok", "{what}: {doc}");
    doc
}

// ---------------------------------------------------------------------------------------
// Kernel-side clients (call inside `ns.run`)
// ---------------------------------------------------------------------------------------

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Asserts `got == want` without printing megabytes when they differ.
fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} bytes, want {}; first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

/// Writes `chunks` on one thread while reading `expect` back on this one, so neither
/// side's buffers can fill up and stall the other; `pause` sleeps after each of the
/// first chunks so that they leave as separate segments.
fn write_while_reading(
    s: &TcpStream,
    chunks: Vec<Vec<u8>>,
    pause: usize,
    read: impl FnOnce(&mut TcpStream),
) {
    let mut w = s.try_clone().unwrap();
    let mut r = s.try_clone().unwrap();
    thread::scope(|scope| {
        let writer = scope.spawn(move || {
            for (i, c) in chunks.iter().enumerate() {
                w.write_all(c).unwrap_or_else(|e| panic!("writing: {e}"));
                if i < pause {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        });
        read(&mut r);
        writer.join().unwrap();
    });
}

/// `data` cut into pieces of 1..=`max` bytes (seeded).
fn chunked(data: &[u8], max: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SeededRng::new(seed);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(max) as usize).min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}

/// TCP echo: `data` written in random pieces, read back concurrently, compared exactly.
fn tcp_echo(addr: SocketAddr, data: &[u8]) {
    let s = connect(addr);
    write_while_reading(&s, chunked(data, 64 * 1024, 0xde70), 0, |r| {
        let mut got = vec![0; data.len()];
        r.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("reading the TCP echo: {e}"));
        assert_same_bytes("TCP echo", &got, data);
    });
}

/// UDP echo: each payload comes back exactly.
fn udp_echo(addr: SocketAddr, payloads: &[Vec<u8>]) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = vec![0; 2048];
    for p in payloads {
        s.send(p).unwrap();
        let n = s
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no echo of a {}-byte datagram: {e}", p.len()));
        assert_same_bytes(&format!("UDP echo of {} bytes", p.len()), &buf[..n], p);
    }
}

/// A connected UDP socket to a closed port sees ECONNREFUSED (from the ICMP port
/// unreachable). The first error may race the first recv, so send again a few times.
fn udp_refused(addr: SocketAddr) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0; 64];
    let refused = |e: &std::io::Error| {
        e.kind() == ErrorKind::ConnectionRefused && e.raw_os_error() == Some(libc::ECONNREFUSED)
    };
    for _ in 0..5 {
        match s.send(b"anyone there?") {
            Ok(_) => {}
            // A refusal that arrived after the last recv shows up here.
            Err(e) if refused(&e) => return,
            Err(e) => panic!("send to {addr}: {e}"),
        }
        match s.recv(&mut buf) {
            Err(e) if refused(&e) => return,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv from {addr}: want ECONNREFUSED, got {e} ({e:?})"),
            Ok(n) => panic!("closed port {addr} answered {:?}", &buf[..n]),
        }
    }
    panic!("no ECONNREFUSED from {addr} after 5 datagrams");
}

fn lp_frame(body: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// The length-prefixed echo: `bodies` written as one write, then again split across many
/// writes (headers byte by byte at first); every package comes back framed, in order.
/// Returns how many packages were sent.
fn lp_echo(addr: SocketAddr, bodies: &[Vec<u8>]) -> usize {
    let stream: Vec<u8> = bodies.iter().flat_map(|b| lp_frame(b)).collect();
    let mut chunks = vec![stream.clone()];
    // Then: single bytes through the first headers, then random pieces up to 3000 bytes.
    let (head, tail) = stream.split_at(11);
    chunks.extend(head.iter().map(|&b| vec![b]));
    chunks.extend(chunked(tail, 3000, 0x9000));
    let pause = 1 + head.len() + 20;
    let expect: Vec<&Vec<u8>> = bodies.iter().chain(bodies).collect();
    let s = connect(addr);
    write_while_reading(&s, chunks, pause, |r| {
        for (i, want) in expect.iter().enumerate() {
            let mut len = [0; 4];
            r.read_exact(&mut len)
                .unwrap_or_else(|e| panic!("reading the header of package {i}: {e}"));
            let len = u32::from_be_bytes(len) as usize;
            assert_eq!(len, want.len(), "package {i}: echoed length");
            let mut got = vec![0; len];
            r.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("reading the body of package {i}: {e}"));
            assert_same_bytes(&format!("package {i}"), &got, want);
        }
    });
    expect.len()
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain GET; the demo closes every such connection after its response.
fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: demo_tap\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: reading to EOF: {e}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "GET {path}: no end of headers in {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8(raw[..end].to_vec()).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: bad status line {status_line:?}"));
    let headers = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("GET {path}: bad header line {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let r = HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if let Some(len) = r.header("Content-Length") {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(r.body.len()),
            "GET {path}: Content-Length {len} for a {}-byte body",
            r.body.len()
        );
    }
    r
}

/// `GET /stats`, checked for status and type, parsed.
fn stats(addr: SocketAddr) -> Value {
    let r = http_get(addr, "/stats");
    assert_eq!(r.status, 200, "GET /stats");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "/stats is not JSON ({e}): {}",
            String::from_utf8_lossy(&r.body)
        )
    })
}

fn num(doc: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(doc, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("/stats has no counter {path}: {doc:#}"))
}

/// Every drop counter is there and zero.
fn assert_no_drops(doc: &Value) {
    let drops = doc["drops"]
        .as_object()
        .unwrap_or_else(|| panic!("/stats has no drops: {doc:#}"));
    let names: Vec<&str> = drops.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "truncated",
            "oversize",
            "bad_checksum",
            "malformed",
            "unsupported_ethertype",
            "tcp_syn_backlog_full",
            "udp_foreign",
            "udp_undecodable",
            "too_large"
        ]
    );
    for (k, v) in drops {
        assert_eq!(v.as_u64(), Some(0), "drops.{k} in {doc:#}");
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn echo_services_and_stats() {
    if !privileged() {
        return;
    }
    let ns = NetNs::new();
    let demo = Demo::start(&ns, 71);
    let http = demo.addr(HTTP_PORT);

    ns.run(|| {
        // Before any traffic: nothing echoed yet.
        let before = stats(http);
        assert_eq!(before["stack_ip"], demo.stack_ip.to_string());
        for c in [
            "messages.tcp_echo_bytes",
            "messages.udp_echo_datagrams",
            "messages.lp_echo_packages",
        ] {
            assert_eq!(num(&before, c), 0, "{c} at start");
        }

        // TCP echo, 1 MiB.
        let data = random_bytes(0xde70_0001, 1 << 20);
        tcp_echo(demo.addr(ECHO_PORT), &data);

        // UDP echo.
        let udp: Vec<Vec<u8>> = [1, 512, 1400]
            .iter()
            .map(|&n| random_bytes(0xde70_0100 + n as u64, n))
            .collect();
        udp_echo(demo.addr(ECHO_PORT), &udp);

        // A closed UDP port refuses.
        udp_refused(demo.addr(CLOSED_PORT));

        // Length-prefixed echo.
        let bodies: Vec<Vec<u8>> = [0, 1, 1000, 100 * 1024]
            .iter()
            .map(|&n| random_bytes(0xde70_9000 + n as u64, n))
            .collect();
        let packages = lp_echo(demo.addr(LP_PORT), &bodies);

        // The page and a 404.
        let page = http_get(http, "/");
        assert_eq!(page.status, 200, "GET /");
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let html = String::from_utf8_lossy(&page.body);
        assert!(
            html.contains("<canvas") && html.contains("/chat"),
            "the page lacks <canvas or /chat:\n{html}"
        );
        let nope = http_get(http, "/nope");
        assert_eq!(nope.status, 404, "GET /nope");
        // TCP echo, length-prefixed echo, GET /, GET /nope (and the first GET /stats).
        let sessions = 5;

        let after = stats(http);
        assert_eq!(after["stack_ip"], demo.stack_ip.to_string());
        assert!(
            after["uptime_s"].is_f64(),
            "uptime_s: {}",
            after["uptime_s"]
        );
        assert!(num(&after, "frames.in") > num(&before, "frames.in"));
        assert!(num(&after, "frames.out") > num(&before, "frames.out"));
        // The 1 MiB went through both ways.
        assert!(num(&after, "bytes.in") > 1 << 20, "{after:#}");
        assert!(num(&after, "bytes.out") > 1 << 20, "{after:#}");
        assert_eq!(num(&after, "messages.tcp_echo_bytes"), 1 << 20);
        assert_eq!(num(&after, "messages.udp_echo_datagrams"), udp.len() as u64);
        assert_eq!(num(&after, "messages.lp_echo_packages"), packages as u64);
        for c in ["messages.ws_in", "messages.ws_out", "messages.chat"] {
            assert_eq!(num(&after, c), 0, "{c}: no WebSocket in this test");
        }
        assert!(
            num(&after, "sessions.opened") >= sessions,
            "sessions.opened < {sessions}: {after:#}"
        );
        assert_no_drops(&after);
    });
}

#[test]
fn websocket_echo_and_chat() {
    if !privileged() {
        return;
    }
    require_websockets();
    let ns = NetNs::new();
    let demo = Demo::start(&ns, 72);

    // /ws: text, binary, empty and 100 KiB messages, without and with permessage-deflate.
    let echo = peers_result(&ns, &["ws-echo", &demo.ws_url("/ws")]);
    let runs = echo["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{echo}");
    assert_eq!(runs[0]["compression"], "none");
    assert_eq!(runs[0]["extension"], Value::Null, "{echo}");
    assert_eq!(runs[1]["compression"], "deflate");
    let ext = runs[1]["extension"].as_str().unwrap_or("");
    assert!(ext.starts_with("permessage-deflate"), "{echo}");
    for r in runs {
        assert_eq!(r["messages"], 6, "{r}");
        assert_eq!(r["close_code"], 1000, "{r}");
    }
    let echoed = num(&echo, "messages");

    // /chat: three members, one line each; everyone gets all three.
    let n = 3;
    let chat = peers_result(&ns, &["chat", &demo.ws_url("/chat"), &n.to_string()]);
    let clients = chat["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), n, "{chat:#}");
    // The first chat lines since start.
    assert_eq!(chat["seqs"], serde_json::json!([1, 2, 3]), "{chat:#}");
    let senders: Vec<(&str, &str)> = clients
        .iter()
        .map(|c| (c["sent"].as_str().unwrap(), c["you"].as_str().unwrap()))
        .collect();
    for c in clients {
        let you = c["you"].as_str().unwrap();
        assert!(
            you.starts_with(&format!("{}:", demo.host_ip)),
            "member address {you}"
        );
        let lines = c["chat"].as_array().unwrap();
        assert_eq!(lines.len(), n, "{c}");
        for (text, from) in &senders {
            let m = lines
                .iter()
                .find(|m| m["text"] == *text)
                .unwrap_or_else(|| panic!("{you} missed {text:?}: {c}"));
            assert_eq!(m["from"], *from, "{c}");
        }
        assert!(c["stats_pushes"].as_u64().unwrap() >= 1, "{c}");
        assert!(c["frames_in"].as_u64().unwrap() > 0, "{c}");
    }

    // What /stats says about it all, once the closing handshakes are through.
    let http = demo.addr(HTTP_PORT);
    let doc = ns.run(|| {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let doc = stats(http);
            let open =
                num(&doc, "sessions.by_service.ws_echo") + num(&doc, "sessions.by_service.chat");
            if open == 0 || Instant::now() > deadline {
                return doc;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(num(&doc, "sessions.by_service.ws_echo"), 0, "{doc:#}");
    assert_eq!(num(&doc, "sessions.by_service.chat"), 0, "{doc:#}");
    assert_eq!(num(&doc, "messages.chat"), n as u64, "{doc:#}");
    assert_eq!(num(&doc, "messages.ws_in"), echoed + n as u64, "{doc:#}");
    // Echoes, plus each line to each member (and welcomes, joins, stats pushes).
    assert!(
        num(&doc, "messages.ws_out") >= echoed + (n * n) as u64,
        "{doc:#}"
    );
    // Two /ws connections, three /chat members.
    assert!(num(&doc, "sessions.opened") >= 5, "{doc:#}");
    assert_no_drops(&doc);
}

#[test]
fn sigterm_closes_sessions_and_removes_the_tap() {
    if !privileged() {
        return;
    }
    require_websockets();
    let ns = NetNs::new();
    let demo = Demo::start(&ns, 73);
    let tap = demo.tap.clone();

    // A chat member that stays until the server closes it.
    let mut member = peers(&ns, &["chat-hold", &demo.ws_url("/chat")]);
    let hello = member
        .next_line(PY_TIMEOUT)
        .unwrap_or_else(|| panic!("chat-hold ended early\n{}", member.transcript()));
    let hello: Value = serde_json::from_str(&hello).expect("JSON");
    assert_eq!(hello["event"], "connected", "{hello}");

    // Two TCP sessions, one byte / one package each, then idle.
    let (mut echo, mut lp) = ns.run(|| {
        let mut echo = connect(demo.addr(ECHO_PORT));
        echo.write_all(b"x").unwrap();
        let mut b = [0; 1];
        echo.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        let mut lp = connect(demo.addr(LP_PORT));
        lp.write_all(&lp_frame(b"pkg")).unwrap();
        let mut f = [0; 7];
        lp.read_exact(&mut f).unwrap();
        assert_eq!(f[..], lp_frame(b"pkg")[..]);
        (echo, lp)
    });

    let (status, out, err) = demo.terminate();
    let text = out.join("\n");
    assert_eq!(
        status.code(),
        Some(0),
        "the demo should exit 0 on SIGTERM ({status})\nstdout:\n{text}\nstderr:\n{err}"
    );
    assert!(
        out.iter()
            .any(|l| l == "stopping: closing 3 session(s); WebSockets get close 1001"),
        "no `stopping:` line for 3 sessions:\n{text}"
    );
    assert!(
        out.iter().any(|l| l.starts_with("summary after ")),
        "no summary:\n{text}"
    );
    for part in [
        "(1 TCP echo, 1 length-prefixed, 0 /ws, 1 /chat)",
        "echoed     1 B over TCP, 0 UDP datagrams, 1 length-prefixed package",
        "drops      none",
    ] {
        assert!(text.contains(part), "summary lacks {part:?}:\n{text}");
    }
    assert_eq!(
        out.last().map(String::as_str),
        Some(format!("TAP {tap} removed").as_str()),
        "\n{text}"
    );

    // The member got close 1001.
    let (py_status, py_out, py_err) = member.finish(PY_TIMEOUT);
    assert!(py_status.success(), "chat-hold failed: {py_err}");
    let closed: Value =
        serde_json::from_str(py_out.last().unwrap()).expect("chat-hold's last line is JSON");
    assert_eq!(closed["event"], "closed", "{closed}");
    assert_eq!(closed["code"], 1001, "{closed}");
    assert_eq!(closed["reason"], "server shutting down", "{closed}");

    // The TCP sessions got a FIN: EOF, nothing more.
    for (name, s) in [("TCP echo", &mut echo), ("length-prefixed", &mut lp)] {
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{name}: {} stray bytes", rest.len()),
            Err(e) => panic!("{name}: want EOF after the demo stopped, got {e}"),
        }
    }

    // The interface is gone.
    let out = ns.exec("ip", &["link", "show", &tap]);
    assert!(
        !out.status.success(),
        "TAP {tap} still exists after the demo exited: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_second_demo_on_the_same_tap_name_is_refused() {
    if !privileged() {
        return;
    }
    let ns = NetNs::new();
    let demo = Demo::start(&ns, 74);

    // Same name, another subnet: the name alone is the conflict.
    let mut cmd = demo_command(&ns, &demo.tap, 75);
    // The default log level, whatever the test runs with: stderr must be one line.
    cmd.env_remove("RUST_LOG");
    let second = Proc::spawn("the second ustack-demo", cmd);
    let (status, out, err) = second.finish(READY_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(1),
        "the second demo should exit 1 ({status})\nstdout:\n{}\nstderr:\n{err}",
        out.join("\n")
    );
    assert!(out.is_empty(), "stdout should be empty: {out:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one stderr line, got {lines:#?}");
    assert!(
        lines[0].starts_with("ustack-demo: ")
            && lines[0].contains("already in use")
            && lines[0].contains(&format!("`{}`", demo.tap)),
        "stderr: {:?}",
        lines[0]
    );

    // The first demo still owns its TAP and serves.
    ns.run(|| udp_echo(demo.addr(ECHO_PORT), &[b"still there".to_vec()]));
    let (status, out, err) = demo.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{err}",
        out.join("\n")
    );
}
