//! A ustack WebSocket client on TAP driven by an Autobahn fuzzing server (`kosoku -m
//! fuzzingserver`): the client half of the conformance run.
//!
//! `sudo cargo run --release -p ustack-examples --bin ws_autobahn_client -- --server
//! 10.7.0.1:9001 [--agent ustack] [--deflate] [--max-message BYTES] [TAP flags]` with the
//! fuzzing server listening on the TAP's host side. It follows the Autobahn client
//! protocol, one connection at a time: `GET /getCaseCount` (one text message, the count),
//! then `GET /runCase?case=N&agent=AGENT` for every case (echoing every message until the
//! server closes), then `GET /updateReports?agent=AGENT`, after which the fuzzing server
//! writes its report (`index.json` in its `-o` directory).
//!
//! Every step runs in a fresh session [`Engine`] on the same stack: a client endpoint's
//! request path is fixed, an engine holds at most `MAX_ENDPOINTS` endpoints, and a new
//! engine per connection also keeps the cases apart.
//!
//! The integration test `tests/tests/ws_autobahn.rs` includes this file as a module and
//! calls [`run_suite`] on its own stack.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ustack::runtime::{self, PollMode};
use ustack::session::{Backoff, ClientOptions, EndpointStatus, Engine};
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::time::Duration;
use ustack::smoltcp::wire::IpEndpoint;
use ustack::ws::close::CloseCode;
use ustack::ws::conn::Message;
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::ClientConfig;
use ustack::ws::{WsClient, WsListener, WsOptions, WsSession};
use ustack::{Config, Stack};
use ustack_drivers::TapDevice;
use ustack_examples::cli::{TapArgs, USAGE};

const STACK_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x73, 0x74, 0x6c];

/// What a suite run needs to know.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The fuzzing server.
    pub server: SocketAddrV4,
    /// The agent name the report files the results under.
    pub agent: String,
    /// Offer permessage-deflate (`DeflateConfig::default()`).
    pub deflate: bool,
    /// The largest message accepted (the session's `max_msg_len`).
    pub max_message: usize,
    /// How long one case may take before the client gives up on it (it never should).
    pub case_timeout: StdDuration,
}

impl Suite {
    /// The default suite against `server` for agent `ustack`: 16 MiB messages, no
    /// compression.
    pub fn new(server: SocketAddrV4) -> Self {
        Suite {
            server,
            agent: "ustack".into(),
            deflate: false,
            max_message: 16 << 20,
            case_timeout: StdDuration::from_secs(120),
        }
    }
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The session opened (the upgrade succeeded).
    pub opened: bool,
    /// The first text message, if any.
    pub first_text: Option<String>,
    /// Messages received (and echoed, for a case).
    pub messages: u64,
    /// The code of the server's close frame.
    pub close_code: Option<u16>,
    /// Why the connection could not be made, if it was not.
    pub failed: Option<String>,
}

/// Echoes every message (a case) or keeps the first text (the case count).
struct Driver {
    echo: bool,
    seen: Rc<RefCell<Outcome>>,
}

impl WsListener for Driver {
    fn on_open(&mut self, _: &mut WsSession<'_>) -> Result<(), ustack::session::Reject> {
        self.seen.borrow_mut().opened = true;
        Ok(())
    }

    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        {
            let mut seen = self.seen.borrow_mut();
            seen.messages += 1;
            if let (None, Message::Text(t)) = (&seen.first_text, &msg) {
                seen.first_text = Some((*t).to_owned());
            }
        }
        if self.echo {
            if let Err(e) = s.send(msg) {
                log::debug!("session {}: echo failed: {e}", s.id().0);
            }
        }
    }

    fn on_close(&mut self, _: &mut WsSession<'_>, peer: Option<CloseCode>) {
        self.seen.borrow_mut().close_code = peer.map(|c| c.0);
    }
}

/// Opens one WebSocket connection to `path`, runs it until it ends, and returns what it
/// saw. `attempts` connection attempts, 200 ms apart (the first step waits for the fuzzing
/// server to come up).
pub fn run_connection<D: Device + AsRawFd>(
    stack: &mut Stack<'_, D>,
    suite: &Suite,
    path: &str,
    echo: bool,
    attempts: u32,
    stop: &AtomicBool,
) -> Result<Outcome, String> {
    let host = suite.server.to_string();
    let seen = Rc::new(RefCell::new(Outcome::default()));
    let mut engine = Engine::new(stack, runtime::now());
    engine.set_pool_limit(suite.max_message.saturating_mul(8).max(64 << 20));
    let mut opts = ClientOptions {
        connections: 1,
        max_attempts: Some(attempts),
        // Reconnect only after failed attempts: an ended case is never dialled again,
        // since its endpoint closes first.
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(200),
        },
        ..ClientOptions::default()
    };
    // Echoes are request and answer: Nagle's algorithm against the peer's delayed ACK
    // would hold a message's last segment for up to 40 ms.
    opts.tcp.nodelay = true;
    opts.limits.max_msg_len = suite.max_message;
    opts.limits.max_write_queue = suite.max_message.max(1 << 20) * 2;
    let mut cfg = ClientConfig::new(&host, path);
    cfg.deflate = suite.deflate.then(DeflateConfig::default);
    let ws_opts = WsOptions {
        ping_on_cron: false,
        ..WsOptions::default()
    };
    let client = WsClient::new(
        Driver {
            echo,
            seen: seen.clone(),
        },
        cfg,
        ws_opts,
    );
    let remote = IpEndpoint::new((*suite.server.ip()).into(), suite.server.port());
    let id = engine
        .tcp_client(remote, opts, client, runtime::now())
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let fd = stack.device().as_raw_fd();
    let deadline = StdInstant::now() + suite.case_timeout;
    let result = loop {
        engine.poll(stack, runtime::now());
        if engine.stats().closed > 0 {
            break Ok(());
        }
        if let EndpointStatus::GaveUp {
            attempts,
            last_error,
        } = engine.status(id)
        {
            seen.borrow_mut().failed =
                Some(format!("gave up after {attempts} attempts: {last_error}"));
            break Ok(());
        }
        if stop.load(Ordering::Relaxed) {
            break Err("stopped".to_string());
        }
        if StdInstant::now() > deadline {
            break Err(format!(
                "{path}: connection still open after {:?}",
                suite.case_timeout
            ));
        }
        let delay = engine.poll_delay(stack, runtime::now());
        runtime::wait(fd, engine.wake_fd(), delay, PollMode::Block)
            .map_err(|e| format!("poll loop failed: {e}"))?;
    };
    // No reconnect; then let a draining session hand its last bytes to TCP.
    engine.close_endpoint(stack, id, runtime::now());
    let drain_end = StdInstant::now() + StdDuration::from_secs(2);
    while (engine.session_count() > 0 || engine.held_bytes() > 0) && StdInstant::now() < drain_end {
        engine.poll(stack, runtime::now());
        let delay = engine.poll_delay(stack, runtime::now());
        runtime::wait(fd, engine.wake_fd(), delay, PollMode::Block)
            .map_err(|e| format!("poll loop failed: {e}"))?;
    }
    result?;
    let out = seen.borrow().clone();
    Ok(out)
}

/// Runs the whole Autobahn client protocol; returns the number of cases run.
/// `progress(n, total)` is called after every case.
pub fn run_suite<D: Device + AsRawFd>(
    stack: &mut Stack<'_, D>,
    suite: &Suite,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize, String> {
    let count = run_connection(stack, suite, "/getCaseCount", false, 50, stop)?;
    if let Some(why) = count.failed {
        return Err(format!("getCaseCount: {why}"));
    }
    let total: usize = count
        .first_text
        .as_deref()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("getCaseCount: no count in {:?}", count.first_text))?;
    for n in 1..=total {
        let path = format!("/runCase?case={n}&agent={}", suite.agent);
        let o = run_connection(stack, suite, &path, true, 3, stop)?;
        if let Some(why) = o.failed {
            // The fuzzing server judges the case; a connection it never saw is its ERROR.
            log::warn!("case {n}: {why}");
        }
        progress(n, total);
    }
    let path = format!("/updateReports?agent={}", suite.agent);
    let done = run_connection(stack, suite, &path, false, 3, stop)?;
    if let Some(why) = done.failed {
        return Err(format!("updateReports: {why}"));
    }
    Ok(total)
}

struct Args {
    tap: TapArgs,
    suite: Suite,
}

fn parse() -> Result<Args, String> {
    let usage = || {
        format!(
            "ws_autobahn_client --server A.B.C.D:PORT [--agent NAME] [--deflate] \
             [--max-message BYTES] {USAGE}"
        )
    };
    let mut suite = Suite::new(SocketAddrV4::new(Ipv4Addr::new(10, 7, 0, 1), 9001));
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--server" => {
                let v = it.next().ok_or("--server wants A.B.C.D:PORT")?;
                suite.server = v
                    .parse()
                    .map_err(|_| format!("--server: bad address {v:?}"))?;
            }
            "--agent" => suite.agent = it.next().ok_or("--agent wants a name")?,
            "--max-message" => {
                let v = it.next().ok_or("--max-message wants a size in bytes")?;
                suite.max_message = v
                    .parse()
                    .map_err(|_| format!("--max-message: bad size {v:?}"))?;
            }
            "--deflate" => suite.deflate = true,
            "--help" | "-h" => return Err(usage()),
            _ => rest.push(a),
        }
    }
    Ok(Args {
        tap: TapArgs::parse(rest)?,
        suite,
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let t = &args.tap;
    let tap = TapDevice::builder(&t.tap)
        .host_addr(&t.host_cidr)
        .ipv6_autoconf(false)
        .create()
        .map_err(|e| format!("cannot set up TAP {} (run as root): {e}", t.tap))?;
    let config = Config::new(STACK_MAC, t.stack_cidr()).seed_from_os();
    let mut stack = Stack::new(config, tap, runtime::now()).map_err(|e| e.to_string())?;
    let stop = ustack_examples::signal::stop_flag();
    log::info!(
        "Autobahn client at {} against ws://{}/ (agent {}, deflate {})",
        t.stack_ip,
        args.suite.server,
        args.suite.agent,
        if args.suite.deflate { "on" } else { "off" }
    );
    let started = StdInstant::now();
    let mut last = StdInstant::now();
    let total = run_suite(&mut stack, &args.suite, stop, &mut |n, total| {
        if n == total || last.elapsed() >= StdDuration::from_secs(2) {
            last = StdInstant::now();
            log::info!("case {n}/{total}");
        }
    })?;
    log::info!(
        "{total} cases run in {:.1} s; the fuzzing server writes the report",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
