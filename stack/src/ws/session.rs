//! WebSocket sessions: the upgrade and the frames as a session [`Protocol`], so that a
//! WebSocket endpoint runs in the same [`Engine`](crate::session::Engine) as TCP and UDP
//! ones, with the same timers, limits, counters and handles.
//!
//! [`WsServer`] goes on a `tcp_server` endpoint, [`WsClient`] on a `tcp_client` one. Both
//! call a [`WsListener`] with whole messages; a plain session
//! [`Service`](crate::session::Service) is a `WsListener` too, whose codec then cuts each
//! message into packages (Getty's WebSocket sessions) and whose `write_pkg` sends each
//! package as one binary message.
//!
//! - The session's `max_msg_len` is the largest message (after decompression), its idle
//!   and read timeouts apply as on TCP, and each cron tick sends a ping (Getty's heartbeat)
//!   before `on_cron`.
//! - Until the upgrade completes, the cron timer is the upgrade deadline: a client that
//!   holds half a request is answered `408` and closed.
//! - Closing: [`WsSession::close_with`] starts the close handshake and the session ends
//!   when the peer answers (or at the next cron tick); a plain `close()`, an idle timeout
//!   or a protocol error send the close frame as the session ends.
//!
//! ```
//! use ustack::ws::{conn::Message, WsListener, WsServer, WsSession};
//! struct Echo;
//! impl WsListener for Echo {
//!     fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
//!         let _ = s.send(msg);
//!     }
//! }
//! let server = WsServer::new(Echo);
//! # let _ = server;
//! ```

use core::ops::{Deref, DerefMut};

use smoltcp::time::{Duration, Instant};

use super::close::CloseCode;
use super::conn::{Body, Event, Message, MsgBuf, Step, WsConfig, WsConn};
use super::frame::Opcode;
use super::handshake::{
    client_response, server_upgrade, write_request, ClientConfig, ClientUpgrade, NoHooks,
    ServerConfig, Upgrade, UpgradeHooks,
};
use super::keys::KeyStream;
use crate::session::codec::{Codec, Out};
use crate::session::{
    decode_all, Ctx, EventListener, Framed, Framer, Input, Kind, Next, Protocol, Reject, Service,
    Session, SessionError,
};

/// How long a connection may take to send its upgrade request.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Room for the frames the connection writes by itself (pong, close): 125 + 14 bytes.
type Replies = heapless::Vec<u8, 160>;

/// The callbacks of a WebSocket session.
pub trait WsListener {
    /// The upgrade completed; `Err` closes the connection with 1008 (policy violation), and
    /// no other callback runs for it.
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        let _ = s;
        Ok(())
    }
    /// A whole message.
    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>);
    /// A ping arrived (it is answered already unless `auto_pong` is off).
    fn on_ping(&mut self, s: &mut WsSession<'_>, payload: &[u8]) {
        let _ = (s, payload);
    }
    /// A pong arrived.
    fn on_pong(&mut self, s: &mut WsSession<'_>, payload: &[u8]) {
        let _ = (s, payload);
    }
    /// The cron period passed (after the heartbeat ping went out).
    fn on_cron(&mut self, s: &mut WsSession<'_>) {
        let _ = s;
    }
    /// An error is ending the session.
    fn on_error(&mut self, s: &mut WsSession<'_>, e: &SessionError) {
        let _ = (s, e);
    }
    /// The session is over; `peer` is the code of the peer's close frame, if one came.
    fn on_close(&mut self, s: &mut WsSession<'_>, peer: Option<CloseCode>) {
        let _ = (s, peer);
    }
}

/// A session's [`Ctx`] with WebSocket sends. Everything written through the context
/// (`write_bytes`, a codec's `write_pkg`) goes out as one binary message per call.
pub struct WsSession<'x> {
    ctx: Ctx<'x>,
}

impl WsSession<'_> {
    /// The WebSocket view of a session context handed out by
    /// [`Engine::each_session`](crate::session::Engine::each_session); `None` if the
    /// session is not an open WebSocket session.
    ///
    /// ```
    /// use ustack::session::Ctx;
    /// use ustack::ws::WsSession;
    /// // Inside `engine.each_session(&mut stack, chat, now, |ctx| ...)`:
    /// fn tell(ctx: &mut Ctx<'_>, line: &str) {
    ///     if let Some(mut ws) = WsSession::from_ctx(ctx) {
    ///         let _ = ws.send_text(line);
    ///     }
    /// }
    /// ```
    pub fn from_ctx<'y>(ctx: &'y mut Ctx<'_>) -> Option<WsSession<'y>> {
        let mut ws = WsSession {
            ctx: ctx.reborrow(),
        };
        ws.conn()?;
        Some(ws)
    }

    fn conn(&mut self) -> Option<&mut WsConn> {
        self.ctx.framer()?.as_any().downcast_mut::<WsConn>()
    }

    /// Sends a message, whole or not at all.
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), SessionError> {
        match msg {
            Message::Text(t) => self.send_text(t),
            Message::Binary(b) => self.send_binary(b),
        }
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SessionError> {
        if let Some(c) = self.conn() {
            c.send_opcode = Opcode::Text;
        }
        let r = self
            .ctx
            .write_with(1, |sink| Ok(sink.put(text.as_bytes())?));
        if let Some(c) = self.conn() {
            c.send_opcode = Opcode::Binary;
        }
        r
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.ctx.write_with(1, |sink| Ok(sink.put(bytes)?))
    }

    /// Sends a ping (at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        self.control(|c, out| c.write_control(Opcode::Ping, payload, out))
    }

    /// Starts the close handshake with `code` and `reason`; the session ends when the
    /// peer answers, or at the next cron tick if it does not.
    pub fn close_with(&mut self, code: CloseCode, reason: &str) -> Result<(), SessionError> {
        self.control(|c, out| c.write_close(code, reason, out))
    }

    fn control(
        &mut self,
        f: impl FnOnce(&mut WsConn, &mut dyn Out) -> Result<(), super::conn::WriteError>,
    ) -> Result<(), SessionError> {
        let mut out = Replies::new();
        let conn = self
            .conn()
            .ok_or(SessionError::Socket(crate::Error::Closed))?;
        f(conn, &mut out).map_err(|_| SessionError::Socket(crate::Error::Closed))?;
        self.ctx.write_raw(&[&out], 0)
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&mut self) -> Option<&str> {
        self.conn()?.protocol.as_deref()
    }
}

impl<'x> Deref for WsSession<'x> {
    type Target = Ctx<'x>;
    fn deref(&self) -> &Ctx<'x> {
        &self.ctx
    }
}

impl DerefMut for WsSession<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ctx
    }
}

impl Framer for WsConn {
    fn frame<'s>(&'s mut self, payload: &'s mut [u8]) -> Result<Framed<'s>, SessionError> {
        let op = self.send_opcode;
        let (head, body) = self
            .frame_message(op, payload)
            .map_err(|_| SessionError::Socket(crate::Error::Closed))?;
        self.head = head;
        let body: &'s [u8] = match body {
            Body::Payload => payload,
            #[cfg(feature = "alloc")]
            Body::Scratch => self.scratch(),
        };
        Ok(Framed {
            head: &self.head,
            body,
        })
    }

    fn as_any(&mut self) -> &mut dyn core::any::Any {
        self
    }
}

/// A session [`Service`] runs on WebSocket messages: its codec cuts each message into
/// packages, and a message must end on a package boundary.
impl<C, L> WsListener for Service<C, L>
where
    C: Codec + Clone,
    C::Error: Into<SessionError>,
    L: EventListener<C>,
{
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        Protocol::open(self, &mut s.ctx)
    }

    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        let proto = self.codec().clone();
        let bytes = msg.as_bytes();
        let r = decode_all(&proto, &mut s.ctx, bytes, |s, pkg, _| {
            let (codec, listener) = self.parts();
            listener.on_message(&mut Session::new(s.reborrow(), codec), pkg);
            true
        });
        match r {
            Ok(Input { used, .. }) if used == bytes.len() => {}
            Ok(_) => {
                let _ = s.close_with(CloseCode::INVALID_DATA, "message ends inside a package");
            }
            Err(e) => {
                let what = match e {
                    SessionError::Codec(w) => w,
                    _ => "message too large for the codec",
                };
                let _ = s.close_with(CloseCode::INVALID_DATA, what);
            }
        }
    }

    fn on_cron(&mut self, s: &mut WsSession<'_>) {
        Protocol::cron(self, &mut s.ctx)
    }

    fn on_error(&mut self, s: &mut WsSession<'_>, e: &SessionError) {
        Protocol::error(self, &mut s.ctx, e)
    }

    fn on_close(&mut self, s: &mut WsSession<'_>, _: Option<CloseCode>) {
        Protocol::close(self, &mut s.ctx)
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (server) or on (client) the upgrade, since then.
    Upgrading { since: Instant },
    /// Frames flow; `opened`: `on_open` accepted it.
    Open { opened: bool },
    /// Refused or answered without an upgrade: no WebSocket callbacks.
    Done,
}

/// One session's WebSocket state.
struct Slot<'a> {
    id: u64,
    phase: Phase,
    conn: WsConn,
    store: MsgBuf<'a>,
    cron: Option<Duration>,
    peer_close: Option<CloseCode>,
    end_code: CloseCode,
    key: [u8; 16],
    /// Keeps a compression window between messages (counted against `max_takeover`).
    takeover: bool,
}

/// Per-session state, indexed by the engine's slot.
enum Slots<'a> {
    #[cfg(feature = "alloc")]
    Heap(alloc::vec::Vec<Option<alloc::boxed::Box<Slot<'a>>>>),
    Fixed(&'a mut [WsSlotState<'a>]),
}

/// One session's WebSocket state in caller storage (no heap): give an endpoint one per
/// engine session (`Engine::capacity`), each with a fixed buffer for fragmented messages.
pub struct WsSlotState<'a>(Slot<'a>);

impl<'a> WsSlotState<'a> {
    /// A slot whose fragmented messages are assembled in `msg_buf`.
    pub fn new(msg_buf: &'a mut [u8]) -> Self {
        WsSlotState(Slot::new(MsgBuf::slice(msg_buf)))
    }
}

impl<'a> Slot<'a> {
    fn new(store: MsgBuf<'a>) -> Self {
        Slot {
            id: 0,
            phase: Phase::Done,
            conn: WsConn::server(WsConfig::default()),
            store,
            cron: None,
            peer_close: None,
            end_code: CloseCode::NORMAL,
            key: [0; 16],
            takeover: false,
        }
    }
}

impl<'a> Slots<'a> {
    fn get(&mut self, i: usize) -> Option<&mut Slot<'a>> {
        match self {
            #[cfg(feature = "alloc")]
            Slots::Heap(v) => {
                if v.len() <= i {
                    v.resize_with(i + 1, || None);
                }
                Some(
                    &mut **v[i]
                        .get_or_insert_with(|| alloc::boxed::Box::new(Slot::new(MsgBuf::heap()))),
                )
            }
            Slots::Fixed(f) => f.get_mut(i).map(|s| &mut s.0),
        }
    }
}

/// What a WebSocket endpoint needs besides its listener.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    /// Frame-level behaviour (`auto_pong`, `compress_min`). The largest message is the
    /// session's `max_msg_len`, not `max_message_size` here.
    pub ws: WsConfig,
    /// How long the upgrade may take.
    pub upgrade_timeout: Duration,
    /// Send a ping on every cron tick.
    pub ping_on_cron: bool,
    /// Sessions that may keep compression windows between messages (context takeover);
    /// beyond this many, new sessions are offered no context takeover both ways, and hold
    /// no window between messages. Bounds deflate memory per endpoint.
    pub max_takeover: usize,
    /// Seed for masking keys and handshake keys (a client's must be unpredictable; with
    /// `std`, [`WsOptions::default`] draws it from the system).
    pub seed: [u8; 32],
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            ws: WsConfig::default(),
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            ping_on_cron: true,
            max_takeover: 64,
            seed: default_seed(),
        }
    }
}

#[cfg(feature = "std")]
fn default_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    // getrandom(2) through libc would need `unsafe`; std's RandomState is seeded from the
    // system's entropy, and mixing in the time keeps successive seeds apart.
    use std::hash::{BuildHasher, Hasher};
    for (i, c) in s.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        c.copy_from_slice(&h.finish().to_ne_bytes());
    }
    s
}

#[cfg(not(feature = "std"))]
fn default_seed() -> [u8; 32] {
    [0x5a; 32]
}

/// What server and client endpoints share: the listener, options and per-session state.
struct Core<'a, L> {
    listener: L,
    opts: WsOptions,
    slots: Slots<'a>,
    rng: KeyStream,
    takeover: usize,
    #[cfg(feature = "alloc")]
    resp: alloc::vec::Vec<u8>,
    #[cfg(not(feature = "alloc"))]
    resp: heapless::Vec<u8, 1024>,
}

impl<'a, L: WsListener> Core<'a, L> {
    fn new(listener: L, opts: WsOptions, slots: Slots<'a>) -> Self {
        Core {
            listener,
            rng: KeyStream::new(opts.seed),
            opts,
            slots,
            takeover: 0,
            resp: Default::default(),
        }
    }

    /// A new connection: `conn` (built by the caller, so that only a client's path
    /// touches the key stream), and the cron timer becomes the upgrade deadline.
    fn begin(&mut self, s: &mut Ctx<'_>, conn: WsConn) -> Result<&mut Slot<'a>, Reject> {
        let i = s
            .index()
            .ok_or(Reject("WebSocket sessions run on the stack thread"))?;
        let slot = self.slots.get(i).ok_or(Reject(
            "no WebSocket state for this session: give WsStorage one slot per engine session",
        ))?;
        slot.id = s.id().0;
        slot.phase = Phase::Upgrading { since: s.now() };
        slot.conn = conn;
        slot.store.clear();
        slot.cron = s.limits().cron_period;
        slot.peer_close = None;
        slot.end_code = CloseCode::NORMAL;
        slot.takeover = false;
        s.set_cron_period(Some(self.opts.upgrade_timeout));
        Ok(slot)
    }

    fn slot(&mut self, s: &Ctx<'_>) -> Option<&mut Slot<'a>> {
        let id = s.id().0;
        self.slots.get(s.index()?).filter(|st| st.id == id)
    }

    /// The upgrade is done: the session's own cron comes back and `on_open` runs; then
    /// whatever followed the handshake is read as frames.
    #[allow(clippy::too_many_arguments)]
    fn upgraded(
        &mut self,
        s: &mut Ctx<'_>,
        protocol: Option<&str>,
        #[cfg(feature = "alloc")] deflate: Option<(super::deflate::DeflateParams, u8)>,
        used: usize,
        buf: &mut [u8],
    ) -> Result<Input, SessionError> {
        let Core {
            listener,
            slots,
            takeover,
            ..
        } = self;
        let Some(slot) = s.index().and_then(|i| slots.get(i)) else {
            return Err(SessionError::Socket(crate::Error::Closed));
        };
        slot.conn.protocol = protocol.and_then(|p| heapless::String::try_from(p).ok());
        #[cfg(feature = "alloc")]
        if let Some((p, level)) = deflate {
            slot.conn.set_deflate(p, level);
            slot.takeover = !(p.server_no_context_takeover && p.client_no_context_takeover);
            *takeover += usize::from(slot.takeover);
        }
        let _ = takeover;
        s.set_cron_period(slot.cron);
        slot.phase = Phase::Open { opened: false };
        let ok = {
            let mut ws = WsSession {
                ctx: s.with_framer(&mut slot.conn),
            };
            listener.on_open(&mut ws).is_ok()
        };
        if !ok {
            let mut out = Replies::new();
            let _ = slot
                .conn
                .write_close(CloseCode::POLICY, "refused", &mut out);
            let _ = s.write_raw(&[&out], 0);
            s.close();
            return Ok(Input {
                used,
                next: Next::Pause,
            });
        }
        slot.phase = Phase::Open { opened: true };
        let r = frames(listener, slot, s, &mut buf[used..])?;
        Ok(Input {
            used: used + r.used,
            next: r.next,
        })
    }

    fn input_open(&mut self, s: &mut Ctx<'_>, buf: &mut [u8]) -> Result<Input, SessionError> {
        let Core {
            listener, slots, ..
        } = self;
        let Some(slot) = s.index().and_then(|i| slots.get(i)) else {
            return Err(SessionError::Socket(crate::Error::Closed));
        };
        match slot.phase {
            Phase::Open { .. } => frames(listener, slot, s, buf),
            _ => Ok(Input {
                used: buf.len(),
                next: Next::NeedMore,
            }),
        }
    }

    /// Open sessions get their context with the framer; others are not WebSocket yet.
    fn visit(&mut self, s: &mut Ctx<'_>, f: &mut dyn FnMut(&mut Ctx<'_>)) {
        if let Some(slot) = self.slot(s) {
            if slot.phase == (Phase::Open { opened: true }) && !slot.conn.close_sent() {
                f(&mut s.with_framer(&mut slot.conn));
            }
        }
    }

    fn cron(&mut self, s: &mut Ctx<'_>, on_deadline: &[u8]) {
        let (ping, timeout) = (self.opts.ping_on_cron, self.opts.upgrade_timeout);
        let Core {
            listener, slots, ..
        } = self;
        let Some(slot) = s.index().and_then(|i| slots.get(i)) else {
            return;
        };
        match slot.phase {
            Phase::Upgrading { since } if s.now() >= since + timeout => {
                #[cfg(feature = "log")]
                log::debug!("session {}: no upgrade within {timeout}; closing", s.id().0);
                if !on_deadline.is_empty() {
                    let _ = s.write_raw(&[on_deadline], 0);
                }
                slot.phase = Phase::Done;
                s.close();
            }
            Phase::Open { opened } => {
                if slot.conn.close_sent() {
                    // The peer did not answer our close within a cron period.
                    s.close();
                    return;
                }
                if ping {
                    let mut out = Replies::new();
                    if slot.conn.write_control(Opcode::Ping, b"", &mut out).is_ok() {
                        let _ = s.write_raw(&[&out], 0);
                    }
                }
                if opened {
                    let mut ws = WsSession {
                        ctx: s.with_framer(&mut slot.conn),
                    };
                    listener.on_cron(&mut ws);
                }
            }
            _ => {}
        }
    }

    fn error(&mut self, s: &mut Ctx<'_>, e: &SessionError) {
        let Core {
            listener, slots, ..
        } = self;
        let Some(slot) = s.index().and_then(|i| slots.get(i)) else {
            return;
        };
        slot.end_code = match e {
            SessionError::IdleTimeout => CloseCode::GOING_AWAY,
            SessionError::Protocol { code, .. } => CloseCode(*code),
            SessionError::MessageTooLarge { .. } => CloseCode::TOO_BIG,
            _ => CloseCode::POLICY,
        };
        if slot.phase == (Phase::Open { opened: true }) {
            let mut ws = WsSession {
                ctx: s.with_framer(&mut slot.conn),
            };
            listener.on_error(&mut ws, e);
        }
    }

    fn close(&mut self, s: &mut Ctx<'_>) {
        let Core {
            listener,
            slots,
            takeover,
            ..
        } = self;
        let Some(slot) = s.index().and_then(|i| slots.get(i)) else {
            return;
        };
        if let Phase::Open { opened } = slot.phase {
            if !slot.conn.close_sent() {
                let mut out = Replies::new();
                let reason = match slot.end_code {
                    CloseCode::GOING_AWAY => "idle timeout",
                    _ => "",
                };
                if slot
                    .conn
                    .write_close(slot.end_code, reason, &mut out)
                    .is_ok()
                {
                    let _ = s.write_last(&[&out]);
                }
            }
            if opened {
                let mut ws = WsSession {
                    ctx: s.with_framer(&mut slot.conn),
                };
                listener.on_close(&mut ws, slot.peer_close);
            }
        }
        slot.phase = Phase::Done;
        *takeover -= usize::from(core::mem::take(&mut slot.takeover));
        // Compression windows and message buffers go with the session.
        slot.conn = WsConn::server(WsConfig::default());
        slot.store.clear();
    }

    fn write_remote(
        &mut self,
        s: &mut Ctx<'_>,
        bytes: &mut [u8],
        pkgs: u64,
    ) -> Result<(), SessionError> {
        let closed = SessionError::Socket(crate::Error::Closed);
        let slot = self.slot(s).ok_or(closed)?;
        if !matches!(slot.phase, Phase::Open { .. }) {
            return Err(closed);
        }
        let (head, body) = slot
            .conn
            .frame_message(Opcode::Binary, bytes)
            .map_err(|_| closed)?;
        let body: &[u8] = match body {
            Body::Payload => bytes,
            #[cfg(feature = "alloc")]
            Body::Scratch => slot.conn.scratch(),
        };
        s.write_raw(&[&head, body], pkgs)
    }
}

/// Reads frames until the buffer holds no whole one, calling the listener.
fn frames<L: WsListener>(
    listener: &mut L,
    slot: &mut Slot<'_>,
    s: &mut Ctx<'_>,
    buf: &mut [u8],
) -> Result<Input, SessionError> {
    let opened = slot.phase == (Phase::Open { opened: true });
    let Slot {
        conn,
        store,
        peer_close,
        ..
    } = slot;
    conn.set_max_message_size(s.limits().max_msg_len);
    let mut used = 0;
    loop {
        if s.is_closing() {
            return Ok(Input {
                used,
                next: Next::Pause,
            });
        }
        let mut replies = Replies::new();
        let step = conn.read(&mut buf[used..], store, &mut replies);
        s.set_mid_message(conn.mid_message());
        if !replies.is_empty() {
            s.write_raw(&[&replies], 0)?;
        }
        let step = step.map_err(|e| SessionError::Protocol {
            code: e.code.0,
            what: e.what,
        })?;
        let (n, event) = match step {
            Step::NeedMore { total } => {
                let next = total.map_or(Next::NeedMore, Next::Known);
                return Ok(Input { used, next });
            }
            Step::Frame { used: n, event } => (n, event),
        };
        used += n;
        let Some(event) = event else {
            continue;
        };
        if let Event::Close(c) = event {
            *peer_close = c.map(|c| c.0);
            s.close();
            continue;
        }
        if !opened {
            continue;
        }
        let mut ws = WsSession {
            ctx: s.with_framer(conn),
        };
        match event {
            Event::Message(m) => {
                ws.ctx.info_mut().stats.pkgs_in += 1;
                listener.on_message(&mut ws, m);
            }
            Event::Ping(p) => listener.on_ping(&mut ws, p),
            Event::Pong(p) => listener.on_pong(&mut ws, p),
            Event::Close(_) => {}
        }
    }
}

/// A WebSocket server endpoint: put it on a `tcp_server`.
pub struct WsServer<'a, L, H = NoHooks> {
    core: Core<'a, L>,
    hooks: H,
    cfg: ServerConfig,
}

#[cfg(feature = "alloc")]
impl<L: WsListener> WsServer<'static, L, NoHooks> {
    /// A server with default handshake settings (no subprotocols, no compression).
    pub fn new(listener: L) -> Self {
        WsServer::with_options(
            listener,
            NoHooks,
            ServerConfig::default(),
            WsOptions::default(),
        )
    }
}

impl<'a, L: WsListener, H: UpgradeHooks> WsServer<'a, L, H> {
    /// A server with upgrade `hooks`, handshake config `cfg` (request limit, subprotocols,
    /// permessage-deflate) and `opts`; per-session state on the heap.
    #[cfg(feature = "alloc")]
    pub fn with_options(listener: L, hooks: H, cfg: ServerConfig, opts: WsOptions) -> Self {
        WsServer {
            core: Core::new(listener, opts, Slots::Heap(alloc::vec::Vec::new())),
            hooks,
            cfg,
        }
    }

    /// As [`with_options`](Self::with_options), with per-session state in `storage` (one
    /// slot per engine session): no heap. permessage-deflate is then declined.
    pub fn with_storage(
        listener: L,
        hooks: H,
        cfg: ServerConfig,
        opts: WsOptions,
        storage: &'a mut [WsSlotState<'a>],
    ) -> Self {
        WsServer {
            core: Core::new(listener, opts, Slots::Fixed(storage)),
            hooks,
            cfg,
        }
    }

    /// The listener.
    pub fn listener(&mut self) -> &mut L {
        &mut self.core.listener
    }

    /// The upgrade hooks.
    pub fn hooks(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// Sessions that keep compression windows now.
    pub fn takeover_sessions(&self) -> usize {
        self.core.takeover
    }
}

const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

impl<L: WsListener, H: UpgradeHooks> Protocol for WsServer<'_, L, H> {
    fn kind(&self) -> Kind {
        Kind::Ws
    }

    fn open(&mut self, s: &mut Ctx<'_>) -> Result<(), Reject> {
        let conn = WsConn::server(self.core.opts.ws);
        self.core.begin(s, conn).map(|_| ())
    }

    fn input(&mut self, s: &mut Ctx<'_>, buf: &mut [u8]) -> Result<Input, SessionError> {
        let upgrading = matches!(
            self.core.slot(s).map(|st| st.phase),
            Some(Phase::Upgrading { .. })
        );
        if !upgrading {
            return self.core.input_open(s, buf);
        }
        let full = self.core.takeover >= self.core.opts.max_takeover;
        #[cfg(feature = "alloc")]
        let saved = self.cfg.deflate;
        #[cfg(feature = "alloc")]
        if let (true, Some(d)) = (full, self.cfg.deflate.as_mut()) {
            d.server_no_context_takeover = true;
            d.client_no_context_takeover = true;
        }
        // Compressed messages inflate into a heap buffer: caller storage declines deflate.
        #[cfg(feature = "alloc")]
        if matches!(self.core.slots, Slots::Fixed(_)) {
            self.cfg.deflate = None;
        }
        let _ = full;
        let mut resp = core::mem::take(&mut self.core.resp);
        resp.clear();
        let up = server_upgrade(buf, &self.cfg, &mut self.hooks, &mut resp);
        #[cfg(feature = "alloc")]
        {
            self.cfg.deflate = saved;
        }
        let r = match up {
            Upgrade::NeedMore => Ok(Input {
                used: 0,
                next: Next::NeedMore,
            }),
            Upgrade::Responded { used, .. } => {
                let r = s.write_raw(&[&resp], 0);
                if let Some(st) = self.core.slot(s) {
                    st.phase = Phase::Done;
                }
                s.close();
                r.map(|_| Input {
                    used,
                    next: Next::Pause,
                })
            }
            Upgrade::Upgraded {
                used,
                protocol,
                #[cfg(feature = "alloc")]
                deflate,
            } => {
                let protocol: Option<heapless::String<32>> =
                    protocol.and_then(|p| heapless::String::try_from(p).ok());
                #[cfg(feature = "alloc")]
                let level = self.cfg.deflate.map_or(0, |d| d.level);
                s.set_user_data(self.hooks.session_data());
                match s.write_raw(&[&resp], 0) {
                    Ok(()) => self.core.upgraded(
                        s,
                        protocol.as_deref(),
                        #[cfg(feature = "alloc")]
                        deflate.map(|p| (p, level)),
                        used,
                        buf,
                    ),
                    Err(e) => Err(e),
                }
            }
        };
        self.core.resp = resp;
        r
    }

    fn write_remote(
        &mut self,
        s: &mut Ctx<'_>,
        bytes: &mut [u8],
        pkgs: u64,
    ) -> Result<(), SessionError> {
        self.core.write_remote(s, bytes, pkgs)
    }

    fn visit(&mut self, s: &mut Ctx<'_>, f: &mut dyn FnMut(&mut Ctx<'_>)) {
        self.core.visit(s, f)
    }

    fn cron(&mut self, s: &mut Ctx<'_>) {
        self.core.cron(s, TIMEOUT_408)
    }

    fn error(&mut self, s: &mut Ctx<'_>, e: &SessionError) {
        self.core.error(s, e)
    }

    fn close(&mut self, s: &mut Ctx<'_>) {
        self.core.close(s)
    }
}

/// A WebSocket client endpoint: put it on a `tcp_client`; every connection it makes
/// sends the upgrade request of `cfg`.
pub struct WsClient<'a, L> {
    core: Core<'a, L>,
    cfg: ClientConfig<'a>,
}

impl<'a, L: WsListener> WsClient<'a, L> {
    /// A client sending the request `cfg` (host, path, subprotocols, deflate offer).
    #[cfg(feature = "alloc")]
    pub fn new(listener: L, cfg: ClientConfig<'a>, opts: WsOptions) -> Self {
        WsClient {
            core: Core::new(listener, opts, Slots::Heap(alloc::vec::Vec::new())),
            cfg,
        }
    }

    /// As [`new`](Self::new), with per-session state in `storage`: no heap.
    pub fn with_storage(
        listener: L,
        cfg: ClientConfig<'a>,
        opts: WsOptions,
        storage: &'a mut [WsSlotState<'a>],
    ) -> Self {
        // Compressed messages inflate into a heap buffer: caller storage offers no deflate.
        #[cfg(feature = "alloc")]
        let cfg = ClientConfig {
            deflate: None,
            ..cfg
        };
        WsClient {
            core: Core::new(listener, opts, Slots::Fixed(storage)),
            cfg,
        }
    }

    /// The listener.
    pub fn listener(&mut self) -> &mut L {
        &mut self.core.listener
    }
}

impl<L: WsListener> Protocol for WsClient<'_, L> {
    fn kind(&self) -> Kind {
        Kind::Ws
    }

    fn open(&mut self, s: &mut Ctx<'_>) -> Result<(), Reject> {
        let mut resp = core::mem::take(&mut self.core.resp);
        resp.clear();
        let mut seed = [0u8; 32];
        self.core.rng.fill(&mut seed);
        let conn = WsConn::client(self.core.opts.ws, seed);
        let slot = self.core.begin(s, conn)?;
        let mut key = [0u8; 16];
        slot.conn.random(&mut key);
        slot.key = key;
        let r = match write_request(&self.cfg, &key, &mut resp) {
            Ok(()) => s
                .write_raw(&[&resp], 0)
                .map_err(|_| Reject("the upgrade request could not be sent")),
            Err(_) => Err(Reject("the upgrade request does not fit the buffer")),
        };
        self.core.resp = resp;
        r
    }

    fn input(&mut self, s: &mut Ctx<'_>, buf: &mut [u8]) -> Result<Input, SessionError> {
        let Some(slot) = self.core.slot(s) else {
            return Err(SessionError::Socket(crate::Error::Closed));
        };
        if !matches!(slot.phase, Phase::Upgrading { .. }) {
            return self.core.input_open(s, buf);
        }
        let key = slot.key;
        let fail = |what| SessionError::Protocol { code: 1002, what };
        match client_response(buf, &self.cfg, &key) {
            Ok(ClientUpgrade::NeedMore) => Ok(Input {
                used: 0,
                next: Next::NeedMore,
            }),
            Ok(ClientUpgrade::Accepted {
                used,
                protocol,
                #[cfg(feature = "alloc")]
                deflate,
            }) => {
                let protocol: Option<heapless::String<32>> =
                    protocol.and_then(|p| heapless::String::try_from(p).ok());
                #[cfg(feature = "alloc")]
                let level = self.cfg.deflate.map_or(0, |d| d.level);
                self.core.upgraded(
                    s,
                    protocol.as_deref(),
                    #[cfg(feature = "alloc")]
                    deflate.map(|p| (p, level)),
                    used,
                    buf,
                )
            }
            Err(e) => {
                #[cfg(feature = "log")]
                log::debug!("session {}: upgrade refused: {e}", s.id().0);
                let _ = e;
                Err(fail("the server refused or botched the upgrade"))
            }
        }
    }

    fn write_remote(
        &mut self,
        s: &mut Ctx<'_>,
        bytes: &mut [u8],
        pkgs: u64,
    ) -> Result<(), SessionError> {
        self.core.write_remote(s, bytes, pkgs)
    }

    fn visit(&mut self, s: &mut Ctx<'_>, f: &mut dyn FnMut(&mut Ctx<'_>)) {
        self.core.visit(s, f)
    }

    fn cron(&mut self, s: &mut Ctx<'_>) {
        self.core.cron(s, b"")
    }

    fn error(&mut self, s: &mut Ctx<'_>, e: &SessionError) {
        self.core.error(s, e)
    }

    fn close(&mut self, s: &mut Ctx<'_>) {
        self.core.close(s)
    }
}
