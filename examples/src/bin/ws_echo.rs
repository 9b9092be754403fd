//! A WebSocket echo server on ustack over a TAP interface: what the conformance run
//! (Autobahn through kosoku) and the echo benchmark talk to.
//!
//! `sudo cargo run --release -p ustack-examples --bin ws_echo -- [--port 9001]
//! [--max-message BYTES] [--deflate] [TAP flags]`, then point a client at
//! `ws://10.7.0.2:9001/`.

use std::process::ExitCode;

use log::{error, info};
use ustack::runtime::{self, PollMode};
use ustack::session::{Engine, ServerOptions};
use ustack::ws::conn::Message;
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::{NoHooks, ServerConfig};
use ustack::ws::{WsListener, WsOptions, WsServer, WsSession};
use ustack::{Config, Stack};
use ustack_drivers::TapDevice;
use ustack_examples::cli::{TapArgs, USAGE};
use ustack_examples::signal::stop_flag;

const STACK_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x73, 0x74, 0x6b];

/// Sends every message back as it came.
struct Echo;

impl WsListener for Echo {
    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        if let Err(e) = s.send(msg) {
            log::debug!("session {}: echo failed: {e}", s.id().0);
        }
    }
}

struct Args {
    tap: TapArgs,
    port: u16,
    max_message: usize,
    deflate: bool,
}

fn parse() -> Result<Args, String> {
    let (mut port, mut max_message, mut deflate) = (9001, 16 << 20, false);
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                let v = it.next().ok_or("--port wants a number")?;
                port = v.parse().map_err(|_| format!("--port: bad number {v:?}"))?;
            }
            "--max-message" => {
                let v = it.next().ok_or("--max-message wants a size in bytes")?;
                max_message = v
                    .parse()
                    .map_err(|_| format!("--max-message: bad size {v:?}"))?;
            }
            "--deflate" => deflate = true,
            "--help" | "-h" => {
                return Err(format!(
                    "ws_echo [--port N] [--max-message BYTES] [--deflate] {USAGE}"
                ))
            }
            _ => rest.push(a),
        }
    }
    Ok(Args {
        tap: TapArgs::parse(rest)?,
        port,
        max_message,
        deflate,
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
            error!("{e}");
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
    let mut engine = Engine::new(&stack, runtime::now());
    let mut opts = ServerOptions::default();
    // Request/response traffic: an echo's tail segment must not wait for a delayed ACK.
    opts.tcp.nodelay = true;
    opts.limits.max_msg_len = args.max_message;
    opts.limits.max_write_queue = args.max_message.max(1 << 20) * 2;
    engine.set_pool_limit(args.max_message.saturating_mul(8).max(64 << 20));
    let cfg = ServerConfig {
        deflate: args.deflate.then(DeflateConfig::default),
        ..ServerConfig::default()
    };
    let server = WsServer::with_options(Echo, NoHooks, cfg, WsOptions::default());
    engine
        .tcp_server(&mut stack, args.port, opts, server)
        .map_err(|e| format!("cannot listen on port {}: {e}", args.port))?;
    info!(
        "WebSocket echo at ws://{}:{}/ (max message {} B, deflate {})",
        t.stack_ip,
        args.port,
        args.max_message,
        if args.deflate { "on" } else { "off" }
    );
    let stop = stop_flag();
    runtime::run_engine(&mut stack, &mut engine, PollMode::Block, stop)
        .map_err(|e| format!("poll loop failed: {e}"))?;
    let st = engine.stats();
    info!(
        "stopping: {} sessions, {} errors, {} timeouts",
        st.opened, st.errors, st.timeouts
    );
    Ok(())
}
