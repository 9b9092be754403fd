//! WebSocket sessions ustack↔ustack over the in-memory pipe: a `WsServer` on stack A and a
//! `WsClient` (or a hand-driven client socket) on stack B, both engines driven by one
//! simulated clock in one thread. No TAP, no root.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;

use ustack::session::codec::LengthPrefixed;
use ustack::session::{
    ClientOptions, EndpointId, Engine, EventListener, Limits, Reject, ServerOptions, Service,
    Session, SessionHandle,
};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::ws::close::CloseCode;
use ustack::ws::conn::{Event, Message, MsgBuf, Step, WsConfig, WsConn};
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::frame::{FrameHeader, Opcode};
use ustack::ws::handshake::{
    client_response, write_request, ClientConfig, ClientUpgrade, NoHooks, ServerConfig,
};
use ustack::ws::{Role, WsClient, WsListener, WsOptions, WsServer, WsSession, WsSlotState};
use ustack::{Config, Stack, TcpHandle};
use ustack_drivers::{PipeDevice, PipeLink};

type Dev<'a> = PipeDevice<'a, 64, 1514>;
type Lp = LengthPrefixed;

const HOST: &str = "10.9.7.1:9001";

fn stack<'a>(dev: Dev<'a>, last: u8, max_sockets: usize) -> Stack<'a, Dev<'a>> {
    let mut config = Config::new(
        [2, 0, 0, 0, 7, last],
        format!("10.9.7.{last}/24").parse().unwrap(),
    )
    .seed(last.into());
    config.max_sockets = max_sockets;
    Stack::new(config, dev, Instant::ZERO).unwrap()
}

/// A message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

impl Msg {
    fn of(m: Message<'_>) -> Msg {
        match m {
            Message::Text(t) => Msg::Text(t.to_string()),
            Message::Binary(b) => Msg::Binary(b.to_vec()),
        }
    }

    fn as_message(&self) -> Message<'_> {
        match self {
            Msg::Text(t) => Message::Text(t),
            Msg::Binary(b) => Message::Binary(b),
        }
    }

    fn len(&self) -> usize {
        self.as_message().as_bytes().len()
    }
}

/// What a listener saw, in order.
#[derive(Default, Debug)]
struct Log {
    events: Vec<String>,
    msgs: Vec<Msg>,
    /// `bytes_in` and `bytes_out` of the session when it closed.
    traffic: Option<(u64, u64)>,
}

type Shared = Rc<RefCell<Log>>;

impl Log {
    fn count(&self, prefix: &str) -> usize {
        self.events.iter().filter(|e| e.starts_with(prefix)).count()
    }
}

/// A listener for both ends, configured per test.
#[derive(Default)]
struct Rec {
    log: Shared,
    /// Send every message back.
    echo: bool,
    /// Sent on open.
    send: Vec<Msg>,
    /// After this many messages received, `close_with(1000, "bye")`.
    close_after: Option<usize>,
    /// Refuse in `on_open`.
    refuse: bool,
    /// Hand the session's handle out from `on_open`.
    handles: Option<mpsc::Sender<SessionHandle>>,
}

impl Rec {
    fn new(log: &Shared) -> Rec {
        Rec {
            log: log.clone(),
            ..Rec::default()
        }
    }

    fn note(&self, e: String) {
        self.log.borrow_mut().events.push(e);
    }
}

impl WsListener for Rec {
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        let p = s.protocol().map(str::to_string);
        self.note(format!("open {p:?}"));
        if self.refuse {
            return Err(Reject("not you"));
        }
        for m in &self.send {
            s.send(m.as_message()).expect("send on open");
        }
        if let Some(tx) = &self.handles {
            tx.send(s.handle().expect("handles are enabled")).unwrap();
        }
        Ok(())
    }

    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        self.log.borrow_mut().msgs.push(Msg::of(msg));
        if self.echo {
            s.send(msg).expect("echo");
        }
        if Some(self.log.borrow().msgs.len()) == self.close_after {
            s.close_with(CloseCode::NORMAL, "bye").expect("close_with");
        }
    }

    fn on_ping(&mut self, _: &mut WsSession<'_>, payload: &[u8]) {
        self.note(format!("ping {}", payload.len()));
    }

    fn on_pong(&mut self, _: &mut WsSession<'_>, payload: &[u8]) {
        self.note(format!("pong {}", payload.len()));
    }

    fn on_cron(&mut self, _: &mut WsSession<'_>) {
        self.note("cron".into());
    }

    fn on_error(&mut self, _: &mut WsSession<'_>, e: &ustack::session::SessionError) {
        self.note(format!("error {e:?}"));
    }

    fn on_close(&mut self, s: &mut WsSession<'_>, peer: Option<CloseCode>) {
        let st = s.stats();
        self.log.borrow_mut().traffic = Some((st.bytes_in, st.bytes_out));
        self.note(format!("close {:?}", peer.map(|c| c.0)));
    }
}

/// Two stacks on one pipe, an engine on each.
struct Pair<'a> {
    a: Stack<'a, Dev<'a>>,
    ea: Engine<'a>,
    b: Stack<'a, Dev<'a>>,
    eb: Engine<'a>,
    now: Instant,
}

impl<'a> Pair<'a> {
    fn new(link: &'a PipeLink<64, 1514>) -> Self {
        let (da, db) = link.split();
        let (a, b) = (stack(da, 1, 64), stack(db, 2, 64));
        let now = Instant::ZERO;
        let (ea, eb) = (Engine::new(&a, now), Engine::new(&b, now));
        Pair { a, ea, b, eb, now }
    }

    /// Polls both sides in 1 ms steps until `done` or `limit` passes.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.ea.poll(&mut self.a, self.now);
            self.eb.poll(&mut self.b, self.now);
            if done(self) {
                return true;
            }
            self.now += Duration::from_millis(1);
        }
        false
    }

    fn server(&mut self, opts: ServerOptions, server: impl ustack::session::Protocol + 'a) {
        self.ea.tcp_server(&mut self.a, 9001, opts, server).unwrap();
    }

    fn client(&mut self, client: impl ustack::session::Protocol + 'a) -> EndpointId {
        // One attempt only: a session that ends stays ended.
        let opts = ClientOptions {
            max_attempts: Some(1),
            backoff: ustack::session::Backoff {
                initial: Duration::from_secs(1000),
                max: Duration::from_secs(1000),
            },
            ..ClientOptions::default()
        };
        self.eb
            .tcp_client(HOST.parse().unwrap(), opts, client, self.now)
            .unwrap()
    }
}

fn opts() -> WsOptions {
    WsOptions {
        seed: [9; 32],
        ..WsOptions::default()
    }
}

fn pattern(n: usize, k: usize) -> Vec<u8> {
    (0..n).map(|i| ((i / 7 + k) % 251) as u8).collect()
}

fn lp(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn echo_round_trip(deflate: bool) {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let (slog, clog) = (Shared::default(), Shared::default());
    let cfg = ServerConfig {
        deflate: deflate.then(DeflateConfig::default),
        ..ServerConfig::default()
    };
    let server = WsServer::with_options(
        Rec {
            echo: true,
            ..Rec::new(&slog)
        },
        NoHooks,
        cfg,
        opts(),
    );
    p.server(ServerOptions::default(), server);
    let msgs = vec![
        Msg::Text("hello".into()),
        Msg::Binary((0..=255).collect()),
        Msg::Binary(pattern(100 * 1024, 1)),
        Msg::Text("κόσμε ".repeat(2000)),
        Msg::Text(String::new()),
        Msg::Binary(Vec::new()),
        Msg::Binary(pattern(70_000, 2)),
        Msg::Text("last".into()),
    ];
    let ccfg = ClientConfig {
        deflate: deflate.then(DeflateConfig::default),
        ..ClientConfig::new(HOST, "/echo")
    };
    let client = WsClient::new(
        Rec {
            send: msgs.clone(),
            close_after: Some(msgs.len()),
            ..Rec::new(&clog)
        },
        ccfg,
        opts(),
    );
    p.client(client);
    let ok = p.run(Duration::from_secs(20), |_| {
        slog.borrow().count("close") == 1 && clog.borrow().count("close") == 1
    });
    let lens = |l: &Shared| l.borrow().msgs.iter().map(Msg::len).collect::<Vec<_>>();
    assert!(ok, "server {:?}, client {:?}", slog.borrow(), lens(&clog));
    assert!(slog.borrow().msgs == msgs, "server got {:?}", lens(&slog));
    assert!(clog.borrow().msgs == msgs, "client got {:?}", lens(&clog));
    // The client's close_with(1000) completes the handshake: each side heard the other's
    // close frame, nothing failed, and both sessions ended.
    assert_eq!(slog.borrow().events, ["open None", "close Some(1000)"]);
    assert_eq!(clog.borrow().events, ["open None", "close Some(1000)"]);
    assert_eq!(p.ea.session_count(), 0);
    assert_eq!(p.eb.session_count(), 0);
    // Compression shows in the bytes that crossed: the payloads are mostly repetitive.
    let payload: usize = msgs.iter().map(Msg::len).sum();
    let (bytes_in, bytes_out) = slog.borrow().traffic.unwrap();
    if deflate {
        assert!(
            (bytes_in as usize) < payload / 4 && (bytes_out as usize) < payload / 4,
            "{bytes_in} in, {bytes_out} out for {payload} payload bytes"
        );
    } else {
        assert!(
            bytes_in as usize > payload && bytes_out as usize > payload,
            "{bytes_in} in, {bytes_out} out for {payload} payload bytes"
        );
    }
}

#[test]
fn echo_round_trips_text_binary_100k_and_empty_messages_then_closes_cleanly() {
    echo_round_trip(false);
}

#[test]
fn echo_round_trips_with_permessage_deflate_negotiated() {
    echo_round_trip(true);
}

#[test]
fn on_open_refusal_reaches_the_client_as_close_1008() {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let (slog, clog) = (Shared::default(), Shared::default());
    p.server(
        ServerOptions::default(),
        WsServer::new(Rec {
            refuse: true,
            ..Rec::new(&slog)
        }),
    );
    p.client(WsClient::new(
        Rec {
            send: vec![Msg::Text("never read".into())],
            ..Rec::new(&clog)
        },
        ClientConfig::new(HOST, "/"),
        opts(),
    ));
    assert!(p.run(Duration::from_secs(5), |p| {
        clog.borrow().count("close") == 1 && p.ea.session_count() == 0
    }));
    // The refused session gets no other callback.
    assert_eq!(slog.borrow().events, ["open None"]);
    assert!(slog.borrow().msgs.is_empty());
    assert_eq!(clog.borrow().events, ["open None", "close Some(1008)"]);
}

#[test]
fn subprotocol_is_selected_on_both_sides() {
    for (offer, want) in [
        (&["x", "chat"][..], Some("chat")),
        (&["x"][..], None),
        (&[][..], None),
    ] {
        let link = PipeLink::<64, 1514>::new();
        let mut p = Pair::new(&link);
        let (slog, clog) = (Shared::default(), Shared::default());
        let cfg = ServerConfig {
            protocols: &["chat"],
            ..ServerConfig::default()
        };
        p.server(
            ServerOptions::default(),
            WsServer::with_options(Rec::new(&slog), NoHooks, cfg, opts()),
        );
        let ccfg = ClientConfig {
            protocols: offer,
            ..ClientConfig::new(HOST, "/")
        };
        p.client(WsClient::new(Rec::new(&clog), ccfg, opts()));
        assert!(p.run(Duration::from_secs(5), |_| {
            slog.borrow().count("open") == 1 && clog.borrow().count("open") == 1
        }));
        let open = format!("open {:?}", want.map(str::to_string));
        assert_eq!(slog.borrow().events, [open.as_str()], "offer {offer:?}");
        assert_eq!(clog.borrow().events, [open.as_str()], "offer {offer:?}");
    }
}

#[test]
fn cron_heartbeat_pings_the_peer_which_answers() {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let (slog, clog) = (Shared::default(), Shared::default());
    let sopts = ServerOptions {
        limits: Limits {
            cron_period: Some(Duration::from_millis(100)),
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    p.server(sopts, WsServer::new(Rec::new(&slog)));
    p.client(WsClient::new(
        Rec::new(&clog),
        ClientConfig::new(HOST, "/"),
        opts(),
    ));
    assert!(p.run(Duration::from_secs(5), |_| {
        clog.borrow().count("ping") >= 5 && slog.borrow().count("pong") >= 5
    }));
    let (s, c) = (slog.borrow(), clog.borrow());
    assert!(c.events.iter().skip(1).all(|e| e == "ping 0"), "{c:?}");
    assert!(s.count("cron") >= 5, "{s:?}");
    assert_eq!(s.count("error"), 0);
    // The client has no cron of its own: it only answers.
    assert_eq!(c.count("cron") + c.count("pong"), 0);
}

/// A session service on WebSocket: each package is echoed with `write_pkg`.
struct PkgEcho(Shared);

impl EventListener<Lp> for PkgEcho {
    fn on_message(&mut self, s: &mut Session<'_, Lp>, pkg: &[u8]) {
        self.0.borrow_mut().msgs.push(Msg::Binary(pkg.to_vec()));
        s.write_pkg(&pkg).unwrap();
    }
    fn on_close(&mut self, _: &mut Session<'_, Lp>) {
        self.0.borrow_mut().events.push("close".into());
    }
}

#[test]
fn a_session_service_decodes_packages_from_messages_and_replies_in_binary_messages() {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let (slog, clog) = (Shared::default(), Shared::default());
    p.server(
        ServerOptions::default(),
        WsServer::new(Service::new(Lp::U32_BE, PkgEcho(slog.clone()))),
    );
    let bodies: [&[u8]; 3] = [b"one", b"", &[7u8; 5000]];
    let three: Vec<u8> = bodies.iter().flat_map(|b| lp(b)).collect();
    p.client(WsClient::new(
        Rec {
            send: vec![Msg::Binary(three)],
            ..Rec::new(&clog)
        },
        ClientConfig::new(HOST, "/"),
        opts(),
    ));
    assert!(p.run(Duration::from_secs(5), |_| clog.borrow().msgs.len() == 3));
    let want: Vec<Msg> = bodies.iter().map(|b| Msg::Binary(b.to_vec())).collect();
    assert_eq!(slog.borrow().msgs, want, "three on_message calls");
    let replies: Vec<Msg> = bodies.iter().map(|b| Msg::Binary(lp(b))).collect();
    assert_eq!(
        clog.borrow().msgs,
        replies,
        "one binary message per write_pkg"
    );
}

#[test]
fn a_message_that_ends_inside_a_package_closes_with_1007() {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let (slog, clog) = (Shared::default(), Shared::default());
    p.server(
        ServerOptions::default(),
        WsServer::new(Service::new(Lp::U32_BE, PkgEcho(slog.clone()))),
    );
    let mut half = lp(b"whole");
    half.extend_from_slice(&lp(b"cut short")[..6]);
    p.client(WsClient::new(
        Rec {
            send: vec![Msg::Binary(half)],
            ..Rec::new(&clog)
        },
        ClientConfig::new(HOST, "/"),
        opts(),
    ));
    assert!(p.run(Duration::from_secs(5), |_| {
        clog.borrow().count("close") == 1 && slog.borrow().events.len() == 1
    }));
    assert_eq!(slog.borrow().msgs, [Msg::Binary(b"whole".to_vec())]);
    assert_eq!(clog.borrow().msgs, [Msg::Binary(lp(b"whole"))]);
    assert_eq!(clog.borrow().events, ["open None", "close Some(1007)"]);
}

#[test]
fn session_handle_writes_from_another_thread_arrive_as_binary_messages() {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    p.ea.enable_handles().expect("eventfd");
    let (slog, clog) = (Shared::default(), Shared::default());
    let (tx, rx) = mpsc::channel::<SessionHandle>();
    p.server(
        ServerOptions::default(),
        WsServer::new(Rec {
            handles: Some(tx),
            ..Rec::new(&slog)
        }),
    );
    p.client(WsClient::new(
        Rec::new(&clog),
        ClientConfig::new(HOST, "/"),
        opts(),
    ));
    let big = pattern(20_000, 3);
    let big2 = big.clone();
    let writer = std::thread::spawn(move || {
        let h = rx.recv().expect("a handle from on_open");
        h.write(b"from another thread").unwrap();
        h.write(&big2).unwrap();
        let mut codec = Lp::U32_BE;
        h.write_pkg(&mut codec, &&b"pkg"[..]).unwrap();
        h.write(b"").unwrap();
    });
    let mut joined = false;
    let mut writer = Some(writer);
    assert!(p.run(Duration::from_secs(10), |_| {
        if !joined && writer.as_ref().is_some_and(|w| w.is_finished()) {
            writer.take().unwrap().join().unwrap();
            joined = true;
        }
        joined && clog.borrow().msgs.len() == 4
    }));
    assert_eq!(
        clog.borrow().msgs,
        [
            Msg::Binary(b"from another thread".to_vec()),
            Msg::Binary(big),
            Msg::Binary(lp(b"pkg")),
            Msg::Binary(Vec::new()),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// A hand-driven client, for frames a WsClient never sends (fragments)
// ---------------------------------------------------------------------------------------

/// A WebSocket client on a raw TCP socket of stack B: the handshake by hand, frames
/// written with `WsConn::write_frame`, replies read with `WsConn::read`.
struct RawClient {
    h: TcpHandle,
    conn: WsConn,
    key: [u8; 16],
    request_sent: bool,
    upgraded: bool,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    store: MsgBuf<'static>,
    msgs: Vec<Msg>,
    close: Option<Option<(u16, String)>>,
    eof: bool,
}

impl RawClient {
    fn new(s: &mut Stack<'_, Dev<'_>>) -> Self {
        RawClient {
            h: s.connect(HOST.parse().unwrap()).unwrap(),
            conn: WsConn::with_seed(Role::Client, WsConfig::default(), [1; 32]),
            key: *b"0123456789abcdef",
            request_sent: false,
            upgraded: false,
            out: Vec::new(),
            inbuf: Vec::new(),
            store: MsgBuf::heap(),
            msgs: Vec::new(),
            close: None,
            eof: false,
        }
    }

    /// One fragmented message: `parts` as a first frame and continuations.
    fn send_fragments(&mut self, opcode: Opcode, parts: &[&[u8]]) {
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 { opcode } else { Opcode::Continuation };
            let mut h = FrameHeader::new(op, 0);
            h.fin = i + 1 == parts.len();
            self.conn.write_frame(h, part, &mut self.out).unwrap();
        }
    }

    fn pump(&mut self, s: &mut Stack<'_, Dev<'_>>) {
        if s.tcp_connected(self.h) != Ok(true) && !self.request_sent {
            return;
        }
        if !self.request_sent {
            let mut req = Vec::new();
            write_request(&ClientConfig::new(HOST, "/"), &self.key, &mut req).unwrap();
            self.out.splice(0..0, req);
            self.request_sent = true;
        }
        if !self.out.is_empty() {
            if let Ok(n) = s.tcp_write(self.h, &self.out) {
                self.out.drain(..n);
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match s.tcp_read(self.h, &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        if !self.upgraded {
            let cfg = ClientConfig::new(HOST, "/");
            match client_response(&self.inbuf, &cfg, &self.key).expect("101") {
                ClientUpgrade::NeedMore => return,
                ClientUpgrade::Accepted { used, .. } => {
                    self.inbuf.drain(..used);
                    self.upgraded = true;
                }
            }
        }
        while !self.inbuf.is_empty() && self.close.is_none() {
            let step = self
                .conn
                .read(&mut self.inbuf, &mut self.store, &mut self.out)
                .expect("the server's frames are valid");
            let Step::Frame { used, event } = step else {
                break;
            };
            match event {
                Some(Event::Message(m)) => self.msgs.push(Msg::of(m)),
                Some(Event::Close(c)) => {
                    self.close = Some(c.map(|(code, r)| (code.0, r.to_string())));
                }
                _ => {}
            }
            self.inbuf.drain(..used);
        }
    }
}

/// Polls the server engine, stack B and the raw client in 1 ms steps until `until`.
fn drive_raw(
    ea: &mut Engine<'_>,
    a: &mut Stack<'_, Dev<'_>>,
    b: &mut Stack<'_, Dev<'_>>,
    now: &mut Instant,
    c: &mut RawClient,
    until: impl Fn(&RawClient) -> bool,
) -> bool {
    let end = *now + Duration::from_secs(5);
    while *now < end {
        ea.poll(a, *now);
        b.poll(*now);
        while b.next_event().is_some() {}
        c.pump(b);
        if until(c) {
            return true;
        }
        *now += Duration::from_millis(1);
    }
    false
}

#[test]
fn server_over_caller_storage_assembles_fragments_that_fit_and_fails_1009_on_more() {
    const SLOTS: usize = 8;
    const N: usize = 64;
    let log = Shared::default();
    // Declared before the engine, which borrows them for its whole life.
    let mut bufs = [[0u8; N]; SLOTS];
    let mut slots: Vec<WsSlotState<'_>> = Vec::new();
    for b in bufs.iter_mut() {
        slots.push(WsSlotState::new(b));
    }
    let server = WsServer::with_storage(
        Rec {
            echo: true,
            ..Rec::new(&log)
        },
        NoHooks,
        ServerConfig::default(),
        opts(),
        &mut slots,
    );
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    // One session slot per socket slot, plus one the stack keeps.
    let mut a = stack(da, 1, SLOTS - 1);
    let mut b = stack(db, 2, 64);
    let mut now = Instant::ZERO;
    let mut ea = Engine::new(&a, now);
    assert_eq!(ea.capacity(), SLOTS, "one WsSlotState per engine session");
    let sopts = ServerOptions {
        backlog: 2,
        ..ServerOptions::default()
    };
    ea.tcp_server(&mut a, 9001, sopts, server).unwrap();

    // 20 + 20 + 24 = 64 bytes: exactly the slot's buffer.
    let mut c = RawClient::new(&mut b);
    let (x, y, z) = ([b'x'; 20], [b'y'; 20], [b'z'; 24]);
    c.send_fragments(Opcode::Text, &[&x, &y, &z]);
    c.send_fragments(Opcode::Binary, &[b"ab", b"", b"cd"]);
    assert!(drive_raw(&mut ea, &mut a, &mut b, &mut now, &mut c, |c| c
        .msgs
        .len()
        == 2));
    let text = format!("{}{}{}", "x".repeat(20), "y".repeat(20), "z".repeat(24));
    assert_eq!(
        c.msgs,
        [Msg::Text(text.clone()), Msg::Binary(b"abcd".to_vec())]
    );
    // 65 bytes do not fit: the server fails the connection with 1009.
    let big = [b'w'; 33];
    c.send_fragments(Opcode::Binary, &[&big, &big[..32]]);
    assert!(drive_raw(&mut ea, &mut a, &mut b, &mut now, &mut c, |c| c
        .close
        .is_some()
        && c.eof));
    let (code, _) = c.close.clone().unwrap().expect("a close code");
    assert_eq!(code, 1009);
    assert_eq!(c.msgs.len(), 2);
    assert_eq!(
        log.borrow().msgs,
        [Msg::Text(text), Msg::Binary(b"abcd".to_vec())]
    );
    let events = log.borrow().events.clone();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], "open None");
    assert!(
        events[1].starts_with("error Protocol { code: 1009"),
        "{events:?}"
    );
    assert_eq!(events[2], "close None");

    // The slot is reused by the next connection.
    let mut c = RawClient::new(&mut b);
    c.send_fragments(Opcode::Text, &[b"again", b"!"]);
    assert!(drive_raw(&mut ea, &mut a, &mut b, &mut now, &mut c, |c| c
        .msgs
        .len()
        == 1));
    assert_eq!(c.msgs, [Msg::Text("again!".into())]);
    assert_eq!(ea.held_bytes(), 0);
}

#[test]
fn max_msg_len_bounds_each_message_on_its_own() {
    let log = Shared::default();
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let mut a = stack(da, 1, 64);
    let mut b = stack(db, 2, 64);
    let mut now = Instant::ZERO;
    let mut ea = Engine::new(&a, now);
    let sopts = ServerOptions {
        limits: Limits {
            max_msg_len: 100,
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    let server = WsServer::new(Rec {
        echo: true,
        ..Rec::new(&log)
    });
    ea.tcp_server(&mut a, 9001, sopts, server).unwrap();
    let mut c = RawClient::new(&mut b);
    // A fragmented message of 60 bytes, then 60 and 100 bytes in one frame each, then 100
    // in fragments: every one is within the limit.
    c.send_fragments(Opcode::Binary, &[&[1; 30], &[2; 30]]);
    c.send_fragments(Opcode::Binary, &[&[3; 60]]);
    c.send_fragments(Opcode::Binary, &[&[4; 100]]);
    c.send_fragments(Opcode::Text, &[&[b'a'; 50], &[b'b'; 50]]);
    let ok = drive_raw(&mut ea, &mut a, &mut b, &mut now, &mut c, |c| {
        c.msgs.len() == 4 || c.close.is_some()
    });
    assert!(ok);
    assert_eq!(c.close, None, "server events {:?}", log.borrow().events);
    assert_eq!(
        c.msgs.iter().map(Msg::len).collect::<Vec<_>>(),
        [60, 60, 100, 100]
    );
    // 101 bytes are too many.
    c.send_fragments(Opcode::Binary, &[&[5; 101]]);
    assert!(drive_raw(&mut ea, &mut a, &mut b, &mut now, &mut c, |c| {
        c.close.is_some()
    }));
    assert_eq!(c.close.clone().unwrap().map(|c| c.0), Some(1009));
}

#[test]
fn a_message_of_exactly_max_msg_len_is_accepted_whatever_its_type() {
    // Larger than the 16 KiB receive buffer: assembled by the engine, as text (validated
    // as it arrives, its length not announced) and as binary (its length announced).
    const MAX: usize = 40_000;
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let (slog, clog) = (Shared::default(), Shared::default());
    let sopts = ServerOptions {
        limits: Limits {
            max_msg_len: MAX,
            ..Limits::default()
        },
        tcp: ustack::TcpOptions {
            rx_buffer: 16 * 1024,
            ..ustack::TcpOptions::default()
        },
        ..ServerOptions::default()
    };
    p.server(
        sopts,
        WsServer::new(Rec {
            echo: true,
            ..Rec::new(&slog)
        }),
    );
    let msgs = vec![
        Msg::Binary(pattern(MAX, 5)),
        Msg::Text("a".repeat(MAX)),
        Msg::Text("b".repeat(MAX - 10)),
    ];
    p.client(WsClient::new(
        Rec {
            send: msgs.clone(),
            ..Rec::new(&clog)
        },
        ClientConfig::new(HOST, "/"),
        opts(),
    ));
    let ok = p.run(Duration::from_secs(10), |_| {
        clog.borrow().msgs.len() == msgs.len() || clog.borrow().count("close") > 0
    });
    assert!(ok);
    assert_eq!(slog.borrow().events, ["open None"]);
    let lens = clog.borrow().msgs.iter().map(Msg::len).collect::<Vec<_>>();
    assert_eq!(lens, [MAX, MAX, MAX - 10]);
    assert!(clog.borrow().msgs == msgs);
}

/// Routes `/a` and `/b` to tags 1 and 2 through `session_data`.
struct Paths(u64);

impl ustack::ws::handshake::UpgradeHooks for Paths {
    fn on_request(&mut self, path: &[u8]) -> Result<(), ustack::ws::handshake::Rejection> {
        self.0 = match path {
            b"/a" => 1,
            b"/b" => 2,
            _ => return Err(404.into()),
        };
        Ok(())
    }

    fn session_data(&mut self) -> u64 {
        self.0
    }
}

/// A plain TCP client that sends half an upgrade request and records what comes back.
struct HalfRequest(Rc<RefCell<Vec<u8>>>);

impl EventListener<ustack::session::codec::Raw> for HalfRequest {
    fn on_open(&mut self, s: &mut Session<'_, ustack::session::codec::Raw>) -> Result<(), Reject> {
        s.write_bytes(b"GET /a HTTP/1.1\r\nHost: x\r\n").unwrap();
        Ok(())
    }

    fn on_message(&mut self, _: &mut Session<'_, ustack::session::codec::Raw>, pkg: &[u8]) {
        self.0.borrow_mut().extend_from_slice(pkg);
    }
}

#[test]
fn each_session_broadcasts_framed_messages_by_route_and_skips_upgrades_in_progress() {
    let link = PipeLink::<64, 1514>::new();
    let mut p = Pair::new(&link);
    let slog = Shared::default();
    let server = WsServer::with_options(Rec::new(&slog), Paths(0), ServerConfig::default(), opts());
    let id =
        p.ea.tcp_server(&mut p.a, 9001, ServerOptions::default(), server)
            .unwrap();
    let logs: Vec<Shared> = (0..3).map(|_| Shared::default()).collect();
    for (log, path) in logs.iter().zip(["/a", "/a", "/b"]) {
        p.client(WsClient::new(
            Rec::new(log),
            ClientConfig::new(HOST, path),
            opts(),
        ));
    }
    let half = Rc::new(RefCell::new(Vec::new()));
    p.client(Service::new(
        ustack::session::codec::Raw::new(),
        HalfRequest(half.clone()),
    ));
    assert!(p.run(Duration::from_secs(5), |p| {
        slog.borrow().count("open") == 3 && p.ea.session_count() == 4
    }));

    // Tag 1 gets text through the WebSocket view; tag 2 writes through the plain context,
    // which a WebSocket endpoint frames as one binary message. The half-upgraded session
    // is not handed out at all.
    let mut seen = Vec::new();
    p.ea.each_session(&mut p.a, id, p.now, |ctx| {
        seen.push(ctx.user_data());
        if ctx.user_data() == 1 {
            WsSession::from_ctx(ctx).unwrap().send_text("to a").unwrap();
        } else {
            ctx.write_bytes(b"to b").unwrap();
        }
    });
    seen.sort();
    assert_eq!(seen, [1, 1, 2]);
    assert!(p.run(Duration::from_secs(5), |_| logs.iter().all(|l| l
        .borrow()
        .msgs
        .len()
        == 1)));
    assert_eq!(logs[0].borrow().msgs, [Msg::Text("to a".into())]);
    assert_eq!(logs[1].borrow().msgs, [Msg::Text("to a".into())]);
    assert_eq!(logs[2].borrow().msgs, [Msg::Binary(b"to b".to_vec())]);
    assert!(half.borrow().is_empty(), "{:?}", half.borrow());

    // Closing from outside a callback: the close code reaches every open session.
    p.ea.each_session(&mut p.a, id, p.now, |ctx| {
        let mut ws = WsSession::from_ctx(ctx).unwrap();
        ws.close_with(CloseCode::GOING_AWAY, "shutting down")
            .unwrap();
    });
    assert!(p.run(Duration::from_secs(5), |p| logs
        .iter()
        .all(|l| l.borrow().count("close") == 1)
        && p.ea.session_count() == 1));
    for l in &logs {
        assert_eq!(l.borrow().events, ["open None", "close Some(1001)"]);
    }
    assert_eq!(
        p.ea.session_count(),
        1,
        "only the unfinished upgrade is left"
    );
}
