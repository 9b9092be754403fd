//! Autobahn conformance of ustack's WebSocket server and client, run by `kosoku` (a native
//! Autobahn TestSuite runner: `pip install kosoku`) inside a private network namespace.
//!
//! - Server: a ustack `WsServer` echo on a TAP link (port 9001 plain, 9002 with
//!   permessage-deflate); `kosoku -m fuzzingclient` drives sections 1–7, 9 and 10 against
//!   the plain one and a subset of 12 and 13 against the deflate one.
//! - Client: `examples/src/bin/ws_autobahn_client.rs` (included below as a module) drives
//!   `kosoku -m fuzzingserver` through sections 1–7, 9 and 10.
//!
//! Every case must end `OK`, `NON-STRICT` or `INFORMATIONAL` in both `behavior` and
//! `behaviorClose`. `scripts/autobahn.sh` runs the whole suite and writes `CONFORMANCE.md`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ustack::runtime::{self, PollMode};
use ustack::session::{Engine, ServerOptions};
use ustack::smoltcp::wire::Ipv4Cidr;
use ustack::ws::conn::Message;
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::{NoHooks, ServerConfig};
use ustack::ws::{WsListener, WsOptions, WsServer, WsSession};
use ustack::{Config, Stack};
use ustack_drivers::{TapBuilder, TapDevice};
use ustack_tests::{privileged, unique_name, NetNs, STACK_MAC};

#[path = "../../examples/src/bin/ws_autobahn_client.rs"]
#[allow(dead_code)]
mod autobahn_client;

/// The largest message: 9.1.6 / 9.2.6 send 16 MiB.
const MAX_MSG: usize = 16 << 20;
/// Upper bound for one kosoku run (a hang, not a slow run, trips it).
const KOSOKU_LIMIT: Duration = Duration::from_secs(300);
const PLAIN_PORT: u16 = 9001;
const DEFLATE_PORT: u16 = 9002;

/// Sections 1–7, 9 and 10: the protocol without extensions.
const BASE: &[&str] = &[
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*",
];
/// The permessage-deflate cases that run in seconds (the rest, 1000 messages of up to
/// 128 KiB each, are in `scripts/autobahn.sh`).
const DEFLATE: &[&str] = &[
    "12.1.1", "12.1.2", "12.1.3", "12.1.4", "12.1.5", "12.2.1", "12.2.2", "12.2.3", "12.2.4",
    "12.2.5", "13.1.1", "13.1.2", "13.1.3", "13.1.4", "13.1.5", "13.2.1", "13.2.2", "13.2.3",
    "13.2.4", "13.2.5", "13.3.1", "13.3.2", "13.3.3", "13.3.4", "13.3.5", "13.4.1", "13.4.2",
    "13.4.3", "13.4.4", "13.4.5",
];
/// [`DEFLATE`] for the client, less 13.2: there kosoku's server accepts only an offer with
/// `client_no_context_takeover`, which `DeflateConfig::default()` does not make, so it
/// declines compression and the case is UNIMPLEMENTED (as are 13.5 and 13.6).
const CLIENT_DEFLATE: &[&str] = &[
    "12.1.1", "12.1.2", "12.1.3", "12.1.4", "12.1.5", "12.2.1", "12.2.2", "12.2.3", "12.2.4",
    "12.2.5", "13.1.1", "13.1.2", "13.1.3", "13.1.4", "13.1.5", "13.3.1", "13.3.2", "13.3.3",
    "13.3.4", "13.3.5", "13.4.1", "13.4.2", "13.4.3", "13.4.4", "13.4.5",
];

/// Verdicts that pass, in `behavior` and `behaviorClose` alike.
const PASS: &[&str] = &["OK", "NON-STRICT", "INFORMATIONAL"];

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Panics with the install line unless `kosoku` runs.
fn require_kosoku() {
    match Command::new("kosoku").arg("--help").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`kosoku --help` failed ({}): reinstall it with `pip install kosoku`",
            o.status
        ),
        Err(e) => {
            panic!("kosoku (the Autobahn test runner) is missing ({e}): `pip install kosoku`")
        }
    }
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique_name("uab"));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A namespace whose TAP host side has `10.91.NET.1/24`; ustack is at `10.91.NET.2`.
struct Link {
    ns: NetNs,
    net: u8,
}

impl Link {
    fn new(net: u8) -> (Link, TapDevice) {
        let ns = NetNs::new();
        let device = TapBuilder::new(&unique_name("uab"))
            .netns(ns.name())
            .host_addr(&format!("10.91.{net}.1/24"))
            .ipv6_autoconf(false)
            .create()
            .unwrap_or_else(|e| panic!("cannot create TAP link: {e}"));
        (Link { ns, net }, device)
    }

    fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 91, self.net, 1)
    }

    fn stack_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 91, self.net, 2)
    }

    fn config(&self) -> Config {
        Config::new(STACK_MAC, Ipv4Cidr::new(self.stack_ip(), 24)).seed(0xab5)
    }
}

/// A kosoku process in the link's namespace, killed on drop.
struct Kosoku {
    child: Option<Child>,
    log: PathBuf,
}

impl Kosoku {
    fn start(link: &Link, mode: &str, addr: &str, out: &Path, cases: &[&str]) -> Kosoku {
        let log = out.with_extension("log");
        let f = File::create(&log).expect("kosoku log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", link.ns.name(), "kosoku", "-m", mode, addr])
            .arg("-o")
            .arg(out)
            .args(["-p", "2"]);
        for c in cases {
            cmd.args(["-i", c]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("start kosoku");
        Kosoku {
            child: Some(child),
            log,
        }
    }

    /// Waits for the run to end (kosoku exits 1 when a case fails: the report says which).
    fn wait(mut self, limit: Duration) {
        let child = self.child.as_mut().unwrap();
        let end = Instant::now() + limit;
        loop {
            if child.try_wait().expect("wait for kosoku").is_some() {
                self.child = None;
                return;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "kosoku did not finish within {limit:?}; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kosoku {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One case's verdicts.
#[derive(Debug, Clone)]
struct Case {
    id: String,
    behavior: String,
    close: String,
}

impl Case {
    fn passed(&self) -> bool {
        PASS.contains(&self.behavior.as_str()) && PASS.contains(&self.close.as_str())
    }

    fn section(&self) -> u32 {
        self.id
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// The cases of `agent` (or of the only agent) in `dir/index.json`, read with Python's
/// json module (kosoku is a Python package, so Python is there).
fn read_report(dir: &Path, agent: Option<&str>) -> Vec<Case> {
    let index = dir.join("index.json");
    assert!(
        index.exists(),
        "kosoku wrote no {}; its log:\n{}",
        index.display(),
        std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default()
    );
    let script = "import json,sys\n\
        d=json.load(open(sys.argv[1]))\n\
        for a,cs in d.items():\n\
        \x20   for c,v in cs.items(): print(a, c, v['behavior'].replace(' ','_'), v['behaviorClose'].replace(' ','_'))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&index)
        .output()
        .expect("run python3 to read index.json");
    assert!(
        out.status.success(),
        "cannot read {}: {}",
        index.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cases: Vec<Case> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let [a, id, b, c] = f[..] else { return None };
            if agent.is_some_and(|x| x != a) {
                return None;
            }
            Some(Case {
                id: id.into(),
                behavior: b.replace('_', " "),
                close: c.replace('_', " "),
            })
        })
        .collect();
    cases.sort_by_key(|c| {
        c.id.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    cases
}

/// Prints a per-section table of verdicts.
fn print_table(title: &str, cases: &[Case]) {
    const COLS: &[&str] = &[
        "OK",
        "NON-STRICT",
        "INFORMATIONAL",
        "UNIMPLEMENTED",
        "FAILED",
    ];
    println!("\n{title}");
    println!(
        "{:>7} {:>5} {:>6} {:>5} {:>10} {:>5} {:>6} {:>6} {:>9}",
        "section", "cases", "passed", "OK", "NON-STRICT", "INFO", "UNIMPL", "FAILED", "close-bad"
    );
    let mut sections: Vec<u32> = cases.iter().map(Case::section).collect();
    sections.dedup();
    for s in sections {
        let of: Vec<&Case> = cases.iter().filter(|c| c.section() == s).collect();
        let n = |b: &str| of.iter().filter(|c| c.behavior == b).count();
        let other = of
            .iter()
            .filter(|c| !COLS.contains(&c.behavior.as_str()))
            .count();
        println!(
            "{:>7} {:>5} {:>6} {:>5} {:>10} {:>5} {:>6} {:>6} {:>9}",
            s,
            of.len(),
            of.iter().filter(|c| c.passed()).count(),
            n("OK"),
            n("NON-STRICT"),
            n("INFORMATIONAL"),
            n("UNIMPLEMENTED"),
            n("FAILED") + other,
            of.iter()
                .filter(|c| !PASS.contains(&c.close.as_str()))
                .count(),
        );
    }
}

/// Asserts that `cases` cover `want_sections` and all passed.
fn assert_passed(what: &str, cases: &[Case], want_sections: &[u32]) {
    print_table(what, cases);
    for s in want_sections {
        assert!(
            cases.iter().any(|c| c.section() == *s),
            "{what}: no case of section {s} in the report"
        );
    }
    let bad: Vec<String> = cases
        .iter()
        .filter(|c| !c.passed())
        .map(|c| format!("{}: {} / {}", c.id, c.behavior, c.close))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} cases did not pass:\n  {}",
        bad.len(),
        cases.len(),
        bad.join("\n  ")
    );
}

/// Sends every message back as it came.
struct Echo;

impl WsListener for Echo {
    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        let _ = s.send(msg);
    }
}

/// A stack thread, stopped and joined on drop.
struct StackThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StackThread {
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(p) = self.thread.take().unwrap().join() {
            std::panic::resume_unwind(p);
        }
    }
}

impl Drop for StackThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Echo servers on [`PLAIN_PORT`] and [`DEFLATE_PORT`].
fn start_servers(config: Config, device: TapDevice) -> StackThread {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut stack = Stack::new(config, device, runtime::now()).expect("stack");
        let mut engine = Engine::new(&stack, runtime::now());
        engine.set_pool_limit(256 << 20);
        let mut opts = ServerOptions::default();
        opts.limits.max_msg_len = MAX_MSG;
        opts.limits.max_write_queue = 64 << 20;
        // Echo is request and answer: without this, Nagle's algorithm against the peer's
        // delayed ACK holds some messages' last segment for 40 ms.
        opts.tcp.nodelay = true;
        let plain =
            WsServer::with_options(Echo, NoHooks, ServerConfig::default(), WsOptions::default());
        engine
            .tcp_server(&mut stack, PLAIN_PORT, opts, plain)
            .expect("listen (plain)");
        let cfg = ServerConfig {
            deflate: Some(DeflateConfig::default()),
            ..ServerConfig::default()
        };
        let deflate = WsServer::with_options(Echo, NoHooks, cfg, WsOptions::default());
        engine
            .tcp_server(&mut stack, DEFLATE_PORT, opts, deflate)
            .expect("listen (deflate)");
        let _ = ready_tx.send(());
        runtime::run_engine(&mut stack, &mut engine, PollMode::Block, &flag).expect("poll loop");
    });
    ready_rx.recv().expect("server thread died in setup");
    StackThread {
        stop,
        thread: Some(thread),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// kosoku's fuzzing client against ustack's echo server: sections 1–7, 9, 10 on the plain
/// server, then the quick 12.x / 13.x cases on the permessage-deflate one.
#[test]
fn autobahn_server() {
    if !privileged() {
        return;
    }
    require_kosoku();
    let (link, device) = Link::new(1);
    let tmp = TempDir::new();
    let server = start_servers(link.config(), device);
    let (plain_dir, deflate_dir) = (tmp.0.join("server"), tmp.0.join("server-deflate"));
    let started = Instant::now();
    let plain = Kosoku::start(
        &link,
        "fuzzingclient",
        &format!("{}:{PLAIN_PORT}", link.stack_ip()),
        &plain_dir,
        BASE,
    );
    plain.wait(KOSOKU_LIMIT);
    // One after the other: both servers share the stack thread, and compression in a
    // debug build would starve the 16 MiB cases of 9.x.
    let deflate = Kosoku::start(
        &link,
        "fuzzingclient",
        &format!("{}:{DEFLATE_PORT}", link.stack_ip()),
        &deflate_dir,
        DEFLATE,
    );
    deflate.wait(KOSOKU_LIMIT);
    println!("server runs took {:.1} s", started.elapsed().as_secs_f64());
    server.stop();
    assert_passed(
        "server, sections 1-7, 9, 10",
        &read_report(&plain_dir, None),
        &[1, 2, 3, 4, 5, 6, 7, 9, 10],
    );
    assert_passed(
        "server with permessage-deflate, 12.x / 13.x subset",
        &read_report(&deflate_dir, None),
        &[12, 13],
    );
}

/// Runs `ws_autobahn_client`'s suite (included above) on a link `10.91.NET.0/24` against
/// kosoku's fuzzing server with `cases`, then checks the report.
fn client_run(what: &str, net: u8, deflate: bool, cases: &[&str], sections: &[u32]) {
    if !privileged() {
        return;
    }
    require_kosoku();
    let (link, device) = Link::new(net);
    let tmp = TempDir::new();
    let dir = tmp.0.join("client");
    let addr = SocketAddrV4::new(link.host_ip(), PLAIN_PORT);
    let kosoku = Kosoku::start(&link, "fuzzingserver", &addr.to_string(), &dir, cases);
    let config = link.config();
    let mut suite = autobahn_client::Suite::new(addr);
    suite.deflate = deflate;
    let started = Instant::now();
    let label = what.to_owned();
    let client = std::thread::spawn(move || {
        let mut stack = Stack::new(config, device, runtime::now()).expect("stack");
        let never = AtomicBool::new(false);
        // The client retries until kosoku listens.
        autobahn_client::run_suite(&mut stack, &suite, &never, &mut |n, total| {
            if n % 100 == 0 || n == total {
                println!("{label}: case {n}/{total}");
            }
        })
    });
    let total = match client.join() {
        Ok(r) => r.unwrap_or_else(|e| panic!("{what}: client run failed: {e}")),
        Err(p) => std::panic::resume_unwind(p),
    };
    kosoku.wait(Duration::from_secs(60));
    println!(
        "{what}: {total} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cases = read_report(&dir, Some("ustack"));
    assert_eq!(
        cases.len(),
        total,
        "{what}: cases in the report vs. cases run"
    );
    assert_passed(what, &cases, sections);
}

/// ustack's client (`ws_autobahn_client`) against kosoku's fuzzing server, sections 1–7,
/// 9, 10, one case at a time.
#[test]
fn autobahn_client() {
    client_run(
        "client, sections 1-7, 9, 10",
        2,
        false,
        BASE,
        &[1, 2, 3, 4, 5, 6, 7, 9, 10],
    );
}

/// The client offering permessage-deflate: the quick 12.x / 13.x cases.
#[test]
fn autobahn_client_deflate() {
    client_run(
        "client with permessage-deflate, 12.x / 13.x subset",
        3,
        true,
        CLIENT_DEFLATE,
        &[12, 13],
    );
}
