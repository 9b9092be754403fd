//! ustack on QEMU `mps2-an385`: a Cortex-M3 with an SMSC LAN9118, no heap.
//!
//! Static IP 10.7.0.2/24, MAC 02:00:00:00:00:02. Serves TCP echo on 7 (the socket API), a
//! length-prefixed session echo on 9000 (u32 big-endian length, then the body) and a
//! WebSocket echo on 8080 (no permessage-deflate). SysTick at 1 kHz is the stack's clock;
//! logs and panics go out through semihosting (both in `board.rs`). All storage is static:
//! no heap.
#![no_std]
#![no_main]

mod board;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use heapless::Vec;
use smoltcp::phy::Device;
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use ustack::session::codec::LengthPrefixed;
use ustack::session::timer::TimerEntry;
use ustack::session::{
    Engine, EngineStorage, EventListener, Limits, Protocol, ServerOptions, Service, Session,
    SessionError, SessionSlot,
};
use ustack::ws::conn::Message;
use ustack::ws::handshake::{NoHooks, ServerConfig};
use ustack::ws::{WsListener, WsOptions, WsServer, WsSession, WsSlotState};
use ustack::{Config, Error, Event, Stack, StaticStorage, TcpHandle, TcpListener, Token};

const IPV4: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(10, 7, 0, 2), 24);

/// TCP sockets lent to the stack: each listener keeps its backlog armed, the rest serve.
const TCP_SOCKETS: usize = 16;
/// Storage entries: one more than the sockets (one readiness cell heads the ready list).
const SLOTS: usize = TCP_SOCKETS + 1;
/// Each TCP socket's receive and send buffer, in bytes.
const TCP_BUF: usize = 4096;

const ECHO_PORT: u16 = 7;
const SESSION_PORT: u16 = 9000;
const WS_PORT: u16 = 8080;
const BACKLOG: usize = 2;

/// Largest session package body or WebSocket message payload, in bytes.
const MAX_MSG: usize = 8192;
/// Room for a header: a 4-byte length prefix or a WebSocket frame header (at most 14).
const HEADER: usize = 16;
/// Encode scratch: the largest package with its header.
const ENCODE_BUF: usize = MAX_MSG + HEADER;
/// Chunk size of the engine's assembly and pending pools. A held package must fit in one
/// chunk (a larger one ends its session with MessageTooLarge), so a chunk holds the
/// largest package.
const CHUNK: usize = ENCODE_BUF;
/// Each pool's size: two packages larger than a socket buffer in flight at once.
const POOL: usize = 2 * CHUNK;
/// Per-session buffer for fragmented WebSocket messages.
const WS_FRAGMENTS: usize = 2048;

#[entry]
fn main() -> ! {
    let mut stack_watch = board::StackWatch::paint();
    let (mut clock, device) = board::init("ustack-firmware");

    let Some(storage) =
        cortex_m::singleton!(: StaticStorage<'static, SLOTS> = StaticStorage::new())
    else {
        panic!("storage taken twice");
    };
    let Some(buffers) =
        cortex_m::singleton!(: [[u8; TCP_BUF]; 2 * TCP_SOCKETS] = [[0; TCP_BUF]; 2 * TCP_SOCKETS])
    else {
        panic!("buffers taken twice");
    };

    let config = Config::new(board::MAC, IPV4);
    let mut stack = match Stack::with_storage(config, device, storage.storage(), clock.now()) {
        Ok(s) => s,
        Err(e) => panic!("stack: {e}"),
    };
    for pair in buffers.chunks_exact_mut(2) {
        if let [rx, tx] = pair {
            if let Err(e) = stack.add_tcp_socket(rx, tx) {
                panic!("add_tcp_socket: {e}");
            }
        }
    }
    let mut echo = match Echo::bind(&mut stack, ECHO_PORT, BACKLOG) {
        Ok(e) => e,
        Err(e) => panic!("listen {ECHO_PORT}: {e}"),
    };
    let mut engine = sessions(&mut stack, clock.now());
    hprintln!(
        "ustack: 10.7.0.2/24 up; TCP echo on {}, session echo on {}, WebSocket echo on {}",
        ECHO_PORT,
        SESSION_PORT,
        WS_PORT
    );

    loop {
        let now = clock.now();
        stack_watch.report(now);
        // The engine polls the stack and handles its sessions' events; the echo's own
        // sockets' events come to the closure.
        engine.poll_with(&mut stack, now, |stack, ev| echo.on_event(stack, ev));
    }
}

/// The session engine with the length-prefixed and WebSocket echo endpoints, all in statics.
fn sessions<D: Device>(stack: &mut Stack<'static, D>, now: Instant) -> Engine<'static> {
    let Some(sessions) = cortex_m::singleton!(: [SessionSlot; SLOTS] = [SessionSlot::EMPTY; SLOTS])
    else {
        panic!("sessions taken twice");
    };
    let Some(timers) = cortex_m::singleton!(: [TimerEntry; SLOTS] = [TimerEntry::EMPTY; SLOTS])
    else {
        panic!("timers taken twice");
    };
    let Some(scratch) = cortex_m::singleton!(: ([u8; TCP_BUF], [u8; ENCODE_BUF], [u8; POOL], [u8; POOL]) =
        ([0; TCP_BUF], [0; ENCODE_BUF], [0; POOL], [0; POOL]))
    else {
        panic!("scratch taken twice");
    };
    let (rx, tx, assembly, pending) = scratch;
    let storage = EngineStorage {
        sessions,
        timers,
        rx,
        tx,
        assembly,
        pending,
        chunk: CHUNK,
    };
    let mut engine = match Engine::with_storage(stack, storage, now) {
        Ok(e) => e,
        Err(e) => panic!("engine: {e}"),
    };

    let limits = Limits {
        // The limit counts the header too.
        max_msg_len: MAX_MSG + HEADER,
        max_write_queue: POOL,
        ..Limits::default()
    };
    let opts = ServerOptions {
        backlog: BACKLOG,
        limits,
        // The default TCP options: no Nagle, so replies leave whole at once.
        ..ServerOptions::default()
    };

    let Some(session_echo) = cortex_m::singleton!(: Service<LengthPrefixed, SessionEcho> =
        Service::new(LengthPrefixed::U32_BE, SessionEcho))
    else {
        panic!("session echo taken twice");
    };
    let proto: &'static mut dyn Protocol = session_echo;
    if let Err(e) = engine.tcp_server(stack, SESSION_PORT, opts, proto) {
        panic!("listen {SESSION_PORT}: {e}");
    }

    let Some(fragments) =
        cortex_m::singleton!(: [[u8; WS_FRAGMENTS]; SLOTS] = [[0; WS_FRAGMENTS]; SLOTS])
    else {
        panic!("fragment buffers taken twice");
    };
    let Some(ws_slots) = cortex_m::singleton!(: [WsSlotState<'static>; SLOTS] =
        fragments.each_mut().map(|b| WsSlotState::new(b)))
    else {
        panic!("WebSocket slots taken twice");
    };
    let ws_opts = WsOptions {
        // A server never masks and takes nothing from this stream; a client would need a
        // per-boot seed (a hardware RNG, or a unique ID and a boot counter).
        seed: [0x5a; 32],
        ..WsOptions::default()
    };
    let Some(ws) = cortex_m::singleton!(: WsServer<'static, WsEcho, NoHooks> =
        WsServer::with_storage(WsEcho, NoHooks, ServerConfig::default(), ws_opts, ws_slots))
    else {
        panic!("WebSocket server taken twice");
    };
    let proto: &'static mut dyn Protocol = ws;
    if let Err(e) = engine.tcp_server(stack, WS_PORT, opts, proto) {
        panic!("listen {WS_PORT}: {e}");
    }
    engine
}

/// Sends every length-prefixed package back.
struct SessionEcho;

impl EventListener<LengthPrefixed> for SessionEcho {
    fn on_message(&mut self, s: &mut Session<'_, LengthPrefixed>, pkg: &[u8]) {
        if let Err(e) = s.write_pkg(&pkg) {
            hprintln!("session: echo failed: {}", e);
        }
    }

    fn on_error(&mut self, s: &mut Session<'_, LengthPrefixed>, e: &SessionError) {
        hprintln!("session: {} ended: {}", s.peer_addr(), e);
    }
}

/// Sends every WebSocket message back as it came (text as text, binary as binary).
struct WsEcho;

impl WsListener for WsEcho {
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), ustack::session::Reject> {
        hprintln!("ws: open from {}", s.peer_addr());
        Ok(())
    }

    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        let sent = match msg {
            Message::Text(t) => s.send_text(t),
            Message::Binary(b) => s.send_binary(b),
        };
        if let Err(e) = sent {
            hprintln!("ws: echo failed: {}", e);
        }
    }

    fn on_error(&mut self, s: &mut WsSession<'_>, e: &SessionError) {
        hprintln!("ws: {} ended: {}", s.peer_addr(), e);
    }
}

/// TCP echo without a heap: bytes go back out only as fast as the send buffer takes them.
struct Echo {
    listener: TcpListener,
    conns: Vec<TcpHandle, TCP_SOCKETS>,
    buf: [u8; 1024],
    accepted: u32,
}

impl Echo {
    fn bind<D: Device>(stack: &mut Stack<'_, D>, port: u16, backlog: usize) -> Result<Self, Error> {
        Ok(Echo {
            listener: stack.listen(port, backlog)?,
            conns: Vec::new(),
            buf: [0; 1024],
            accepted: 0,
        })
    }

    /// Handles one event about the echo's listener or connections (events are
    /// edge-triggered: each one moves all it can).
    fn on_event<D: Device>(&mut self, stack: &mut Stack<'_, D>, ev: Event) {
        match ev.token {
            Token::Listener(l) if l == self.listener => self.accept_all(stack),
            Token::Tcp(h) => {
                if let Some(i) = self.conns.iter().position(|&c| c == h) {
                    if self.serve(stack, h) {
                        self.conns.swap_remove(i);
                    }
                }
            }
            _ => {}
        }
    }

    fn accept_all<D: Device>(&mut self, stack: &mut Stack<'_, D>) {
        loop {
            match stack.accept(self.listener) {
                Ok(h) => {
                    self.accepted += 1;
                    if let Ok(peer) = stack.tcp_peer_addr(h) {
                        hprintln!("echo: #{} from {}", self.accepted, peer);
                    }
                    if self.conns.push(h).is_err() {
                        // More streams than sockets cannot happen; refuse rather than leak.
                        let _ = stack.tcp_abort(h);
                        continue;
                    }
                }
                Err(Error::WouldBlock) => return,
                Err(e) => {
                    hprintln!("echo: accept: {}", e);
                    return;
                }
            }
        }
    }

    /// Echoes what `h` has; returns whether the connection is done (and closed).
    fn serve<D: Device>(&mut self, stack: &mut Stack<'_, D>, h: TcpHandle) -> bool {
        let done = match pump(stack, h, &mut self.buf) {
            Ok(eof) => eof,
            Err(e) => {
                hprintln!("echo: {:?} ended: {}", h, e);
                true
            }
        };
        if done {
            let _ = stack.tcp_close(h);
        }
        done
    }
}

/// Moves bytes from the receive buffer to the send buffer while the send buffer has room.
/// Returns whether the peer has finished sending.
fn pump<D: Device>(stack: &mut Stack<'_, D>, h: TcpHandle, buf: &mut [u8]) -> Result<bool, Error> {
    loop {
        let room = TCP_BUF.saturating_sub(stack.tcp_send_queue(h)?);
        if room == 0 {
            return Ok(false);
        }
        let chunk = room.min(buf.len());
        match stack.tcp_read(h, &mut buf[..chunk]) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                let written = stack.tcp_write(h, &buf[..n])?;
                if written != n {
                    return Err(Error::NoBufferSpace);
                }
            }
            Err(Error::WouldBlock) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
