//! The demo: ustack on a TAP link serving TCP and UDP echo (7), a length-prefixed echo
//! (9000) and HTTP with WebSockets (8080: a page, `/stats`, `/ws` echo and `/chat`).
//!
//! `sudo cargo run --release -p ustack-examples --bin ustack-demo`, then open
//! <http://10.7.0.2:8080/>. Without privileges: `ustack-demo --pipe`.

use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use log::info;
use ustack::runtime::{self, PollMode};
use ustack::session::Engine;
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::time::Duration;
use ustack::{Config, Stack};
use ustack_drivers::{PcapRecorder, TapDevice};
use ustack_examples::cli::{TapArgs, USAGE};
use ustack_examples::demo::{pipe, Demo, ECHO_PORT, HTTP_PORT, LP_PORT};
use ustack_examples::signal::stop_flag;

const STACK_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x73, 0x74, 0x6b];

/// Prints a line to stdout; a closed stdout (`ustack-demo | head`) must not stop the
/// server or skip its cleanup.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// How long WebSocket peers get to answer the closing 1001 at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        say!("ustack-demo [--pipe] [{USAGE}]");
        say!("  --pipe   run without privileges: the services on one ustack, a scripted client on another, wired in memory");
        return ExitCode::SUCCESS;
    }
    let pipe_mode = args.iter().any(|a| a == "--pipe");
    args.retain(|a| a != "--pipe");
    let r = if pipe_mode {
        match args.is_empty() {
            true => pipe::run(),
            false => Err(format!(
                "--pipe takes no TAP flags (got {})",
                args.join(" ")
            )),
        }
    } else {
        TapArgs::parse(&args).and_then(|a| run(&a))
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ustack-demo: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The one line that tells a user why the TAP link could not be made, and what to do.
fn tap_error(args: &TapArgs, e: &io::Error) -> String {
    let name = &args.tap;
    if e.kind() == io::ErrorKind::PermissionDenied {
        return format!(
            "creating TAP `{name}` needs root or CAP_NET_ADMIN: run it with sudo, \
             or run `ustack-demo --pipe`, which needs no privileges"
        );
    }
    if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::EBUSY) {
        return format!(
            "the interface name `{name}` is already in use (another ustack-demo?): \
             choose another with --tap NAME, or remove it with `ip link del {name}`"
        );
    }
    // The driver's messages already say what to do; keep them on one line.
    format!(
        "cannot set up TAP `{name}`: {}",
        e.to_string().replace('\n', " ")
    )
}

fn run(args: &TapArgs) -> Result<(), String> {
    let tap = TapDevice::builder(&args.tap)
        .host_addr(&args.host_cidr)
        .ipv6_autoconf(false)
        .create()
        .map_err(|e| tap_error(args, &e))?;
    let config = Config::new(STACK_MAC, args.stack_cidr()).seed_from_os();
    match &args.pcap {
        Some(path) => {
            let dev = PcapRecorder::create(tap, path)
                .map_err(|e| format!("cannot create the pcap file {path}: {e}"))?;
            serve(config, dev, args)
        }
        None => serve(config, tap, args),
    }
}

fn banner(args: &TapArgs) {
    let ip = args.stack_ip;
    say!(
        "ustack-demo: ustack serves {ip} on TAP {} (host side {}); the kernel's TCP/IP stack is not on the serving side.\n",
        args.tap, args.host_cidr
    );
    say!("  browser    http://{ip}:{HTTP_PORT}/   (chat, live stack counters, frames/s chart)");
    say!("  TCP echo   nc {ip} {ECHO_PORT}");
    say!(
        "  UDP echo   python3 -c \"import socket;s=socket.socket(2,2);s.sendto(b'hi',('{ip}',{ECHO_PORT}));print(s.recv(9))\""
    );
    say!("  framed     port {LP_PORT}: 4-byte big-endian length, then the body; echoed back");
    say!("  WebSocket  ws://{ip}:{HTTP_PORT}/ws (echo)   ws://{ip}:{HTTP_PORT}/chat (room)");
    say!("  counters   curl http://{ip}:{HTTP_PORT}/stats");
    match &args.pcap {
        Some(p) => say!("  traffic    recording every frame to {p} (tcpdump -r {p})"),
        None => say!(
            "  traffic    sudo tcpdump -ni {}   (or restart with --pcap FILE)",
            args.tap
        ),
    }
    say!("\nCtrl-C or SIGTERM stops it: WebSockets get close 1001, the TAP interface is removed, and a summary is printed.");
}

fn serve<D: Device + AsRawFd>(config: Config, device: D, args: &TapArgs) -> Result<(), String> {
    let mut stack = Stack::new(config, device, runtime::now()).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(&stack, runtime::now());
    let mut demo = Demo::install(&mut stack, &mut engine, runtime::now())?;
    banner(args);
    let fd = stack.device().as_raw_fd();
    let stop = stop_flag();
    let wait = |stack: &mut Stack<'_, D>, engine: &mut Engine<'_>, cap: Option<Duration>| {
        let delay = engine.poll_delay(stack, runtime::now());
        let delay = match (delay, cap) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        };
        runtime::wait(fd, engine.wake_fd(), delay, PollMode::Block)
            .map_err(|e| format!("poll loop failed: {e}"))
    };
    while !stop.load(Ordering::Relaxed) {
        let now = runtime::now();
        engine.poll(&mut stack, now);
        if !demo.after_poll(&mut stack, &mut engine, now) {
            wait(&mut stack, &mut engine, None)?;
        }
    }

    let open = demo.open_sessions(&engine);
    say!("\nstopping: closing {open} session(s); WebSockets get close 1001");
    let start = runtime::now();
    demo.begin_shutdown(&mut stack, &mut engine, start);
    while demo.open_sessions(&engine) > 0 && runtime::now() < start + CLOSE_GRACE {
        let now = runtime::now();
        engine.poll(&mut stack, now);
        demo.after_poll(&mut stack, &mut engine, now);
        wait(&mut stack, &mut engine, Some(Duration::from_millis(10)))?;
    }
    let left = demo.open_sessions(&engine);
    if left > 0 {
        info!("{left} session(s) did not finish closing within {CLOSE_GRACE}; ending them");
    }
    let now = runtime::now();
    demo.finish(&mut stack, &mut engine, now);
    // Let the last FINs and close frames leave before the link goes away.
    let flush_until = now + Duration::from_millis(200);
    while runtime::now() < flush_until {
        engine.poll(&mut stack, runtime::now());
        wait(&mut stack, &mut engine, Some(Duration::from_millis(10)))?;
    }
    let snap = demo.snapshot();
    drop(engine);
    drop(stack);
    say!("{}", snap.summary());
    say!("TAP {} removed", args.tap);
    Ok(())
}
