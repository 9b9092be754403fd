//! `ustack-demo`: every service of the demo on one stack and one session engine.
//!
//! [`Demo::install`] puts the endpoints on an engine; the caller's loop polls the engine
//! and then calls [`Demo::after_poll`], which refreshes the counters and delivers the chat
//! room's broadcasts. The same code serves a TAP link (`ustack-demo`) and the in-memory
//! pipe (`ustack-demo --pipe`, see [`pipe`]).
//!
//! ```
//! use ustack::session::Engine;
//! use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
//! use ustack::{Config, Stack};
//! use ustack_examples::demo::Demo;
//!
//! let config = Config::new([2, 0, 0, 0, 0, 2], "10.7.0.2/24".parse().unwrap());
//! let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
//! let mut engine = Engine::new(&stack, Instant::ZERO);
//! let mut demo = Demo::install(&mut stack, &mut engine, Instant::ZERO).unwrap();
//! engine.poll(&mut stack, Instant::ZERO);
//! demo.after_poll(&mut stack, &mut engine, Instant::ZERO);
//! assert_eq!(demo.snapshot().open.udp_echo, 1);
//! ```

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use log::debug;
use ustack::session::codec::{LengthPrefixed, Raw};
use ustack::session::{EndpointId, Engine, Limits, ServerOptions, Service};
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::time::Instant;
use ustack::ws::close::CloseCode;
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::ServerConfig;
use ustack::ws::{WsOptions, WsServer, WsSession};
use ustack::Stack;

mod echo;
pub mod pipe;
pub mod stats;
pub mod web;

pub use stats::{Counters, Open, Snapshot};

/// TCP and UDP echo.
pub const ECHO_PORT: u16 = 7;
/// Length-prefixed (4-byte big-endian) echo.
pub const LP_PORT: u16 = 9000;
/// The page, `/stats`, `/ws` and `/chat`.
pub const HTTP_PORT: u16 = 8080;
/// The largest WebSocket message and length-prefixed package body.
pub const MAX_MESSAGE: usize = 1 << 20;

/// What the services share: the counters and the chat room.
#[derive(Debug)]
pub struct Shared {
    snap: Snapshot,
    room: web::Room,
}

impl Deref for Shared {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

impl DerefMut for Shared {
    fn deref_mut(&mut self) -> &mut Snapshot {
        &mut self.snap
    }
}

type SharedSnap = Rc<RefCell<Shared>>;

/// The demo's endpoints on one engine.
pub struct Demo {
    shared: SharedSnap,
    tcp_echo: EndpointId,
    udp_echo: EndpointId,
    lp_echo: EndpointId,
    http: EndpointId,
}

impl Demo {
    /// Opens every service on `stack` through `engine`.
    pub fn install<D: Device>(
        stack: &mut Stack<'_, D>,
        engine: &mut Engine<'_>,
        now: Instant,
    ) -> Result<Demo, String> {
        let ip = stack.config().ipv4.address();
        let shared = Rc::new(RefCell::new(Shared {
            snap: Snapshot::new(ip, now),
            room: web::Room::default(),
        }));
        let echo = |service| echo::Echo {
            snap: shared.clone(),
            service,
        };
        let mut opts = ServerOptions::default();
        // Echoes and chat are request/response: no tail segment may wait for a delayed ACK.
        opts.tcp.nodelay = true;
        opts.limits.max_msg_len = MAX_MESSAGE + 4;
        fn bind(what: &'static str, port: u16) -> impl Fn(ustack::Error) -> String {
            move |e| format!("cannot open the {what} on port {port}: {e}")
        }
        let tcp_echo = engine
            .tcp_server(
                stack,
                ECHO_PORT,
                opts,
                Service::new(Raw::new(), echo(echo::Service::Tcp)),
            )
            .map_err(bind("TCP echo", ECHO_PORT))?;
        let udp_echo = engine
            .udp(
                stack,
                ECHO_PORT,
                Limits::default(),
                Service::new(Raw::new(), echo(echo::Service::Udp)),
                now,
            )
            .map_err(bind("UDP echo", ECHO_PORT))?;
        let lp = Service::new(LengthPrefixed::U32_BE, echo(echo::Service::LengthPrefixed));
        let lp_echo = engine
            .tcp_server(stack, LP_PORT, opts, lp)
            .map_err(bind("length-prefixed echo", LP_PORT))?;
        let routes = web::Routes {
            snap: shared.clone(),
            route: None,
            body: Vec::new(),
        };
        let cfg = ServerConfig {
            deflate: Some(DeflateConfig::default()),
            ..ServerConfig::default()
        };
        let listener = web::Web {
            snap: shared.clone(),
        };
        let server = WsServer::with_options(listener, routes, cfg, WsOptions::default());
        opts.limits.max_msg_len = MAX_MESSAGE;
        let http = engine
            .tcp_server(stack, HTTP_PORT, opts, server)
            .map_err(bind("HTTP server", HTTP_PORT))?;
        Ok(Demo {
            shared,
            tcp_echo,
            udp_echo,
            lp_echo,
            http,
        })
    }

    /// Refreshes the counters and sends what the chat room queued during the poll; call it
    /// after every `engine.poll`. Returns whether it wrote anything (poll again soon).
    pub fn after_poll<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        engine: &mut Engine<'_>,
        now: Instant,
    ) -> bool {
        let outbox = {
            let mut sh = self.shared.borrow_mut();
            sh.now = now;
            sh.stack = stack.stats();
            sh.engine = engine.stats();
            sh.open = Open {
                tcp_echo: engine.sessions(self.tcp_echo),
                udp_echo: engine.sessions(self.udp_echo),
                lp_echo: engine.sessions(self.lp_echo),
                http: engine.sessions(self.http),
            };
            std::mem::take(&mut sh.room.outbox)
        };
        if outbox.is_empty() {
            return false;
        }
        let chat = web::Route::Chat as u64;
        let mut sent = 0;
        engine.each_session(stack, self.http, now, |ctx| {
            if ctx.user_data() != chat {
                return;
            }
            let Some(mut ws) = WsSession::from_ctx(ctx) else {
                return;
            };
            for m in &outbox {
                if let Err(e) = ws.send_text(m) {
                    // A member whose queue is full cannot keep up: let it go rather than
                    // hold the room's messages for it without bound.
                    debug!(
                        "session {}: chat broadcast failed ({e}); closing",
                        ws.id().0
                    );
                    let _ = ws.close_with(CloseCode::POLICY, "too slow for the chat");
                    break;
                }
                sent += 1;
            }
        });
        self.shared.borrow_mut().counters.ws_out += sent;
        true
    }

    /// Starts a graceful stop: WebSocket sessions get close 1001, other sessions a FIN.
    /// Keep polling until [`Engine::session_count`] is down to the UDP endpoint's one (or
    /// a deadline passes), then call [`finish`](Self::finish).
    pub fn begin_shutdown<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        engine: &mut Engine<'_>,
        now: Instant,
    ) {
        engine.each_session(stack, self.http, now, |ctx| {
            match WsSession::from_ctx(ctx) {
                Some(mut ws) => {
                    let _ = ws.close_with(CloseCode::GOING_AWAY, "server shutting down");
                }
                None => ctx.close(),
            }
        });
        for id in [self.tcp_echo, self.lp_echo] {
            engine.each_session(stack, id, now, |ctx| ctx.close());
        }
    }

    /// Sessions still open, not counting the UDP endpoint's.
    pub fn open_sessions(&self, engine: &Engine<'_>) -> usize {
        engine.session_count() - engine.sessions(self.udp_echo)
    }

    /// Closes every endpoint (and whatever session is still open).
    pub fn finish<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        engine: &mut Engine<'_>,
        now: Instant,
    ) {
        for id in [self.tcp_echo, self.udp_echo, self.lp_echo, self.http] {
            engine.close_endpoint(stack, id, now);
        }
        self.after_poll(stack, engine, now);
    }

    /// The counters as of the last [`after_poll`](Self::after_poll).
    pub fn snapshot(&self) -> Snapshot {
        self.shared.borrow().snap.clone()
    }
}
