//! ustack's WebSocket server and client against real peers over TAP: Python `websockets`
//! (client and server), tungstenite, and a raw RFC 6455 client on a kernel `TcpStream`.
//! Every test has its own TAP link (`uwk…`) on its own subnet `10.92.N.0/24` in a private
//! namespace; the engine runs on its own thread ([`ws_support::WsEngine`]) and a recording
//! listener logs every callback.
//!
//! The Python peers live in `tests/py/` and need `pip install websockets`.

#[path = "support/ws.rs"]
mod ws_support;

use std::io::Write;
use std::time::Duration;

use ustack::session::{Backoff, ClientOptions, Limits, ServerOptions, SessionError};
use ustack::smoltcp::time::Duration as SDuration;
use ustack::smoltcp::wire::IpEndpoint;
use ustack::ws::conn::{Event, Message, MsgBuf, Step, WsConfig, WsConn};
use ustack::ws::deflate::{DeflateConfig, DeflateParams};
use ustack::ws::handshake::{ClientConfig, NoHooks, Request, Response, ServerConfig, UpgradeHooks};
use ustack::ws::{Role, WsClient, WsOptions, WsServer};
use ustack_tests::{privileged, random_bytes};
use ws_support::{
    client_frame, close_payload, require_websockets, strip, unmasked_frame, End, Owned, Py, Raw,
    RawFrame, WsEngine, WsEv, WsLink, WsRec,
};

const PORT: u16 = 9001;

/// What `tests/py/wsdata.py` sends, byte for byte.
const TEXT: &str = "hello, ustack ✓ — ünïcödé";
const FRAGMENTS: [&str; 3] = ["frag-one|", "frag-two|", "frag-three"];
const LARGE_SEED: u64 = 0x92_0001;
const LARGE_LEN: usize = 1 << 20;

fn binary() -> Vec<u8> {
    (0..=255).collect()
}

fn large() -> Vec<u8> {
    random_bytes(LARGE_SEED, LARGE_LEN)
}

/// Room for 1 MiB messages (the header counts against `max_msg_len`) and their echoes.
fn big_limits() -> Limits {
    Limits {
        max_msg_len: 2 << 20,
        max_write_queue: 8 << 20,
        ..Limits::default()
    }
}

/// A `WsServer` on [`PORT`] with `limits`, `cfg`, `opts`, `hooks` and `rec` as listener.
fn ws_server<H: UpgradeHooks + Send + 'static>(
    link: &mut WsLink,
    limits: Limits,
    cfg: ServerConfig,
    opts: WsOptions,
    hooks: H,
    rec: WsRec,
) -> WsEngine {
    WsEngine::start(link, move |stack, engine, _| {
        let server = WsServer::with_options(rec, hooks, cfg, opts);
        let sopts = ServerOptions {
            limits,
            ..ServerOptions::default()
        };
        vec![engine
            .tcp_server(stack, PORT, sopts, server)
            .expect("tcp_server")]
    })
}

fn deflate_cfg(on: bool) -> ServerConfig {
    ServerConfig {
        deflate: on.then(DeflateConfig::default),
        ..ServerConfig::default()
    }
}

/// A readable summary of a log (bulky payloads as length and FNV-1a hash).
fn describe(events: &[WsEv]) -> Vec<String> {
    fn fnv(b: &[u8]) -> u64 {
        b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
        })
    }
    events
        .iter()
        .map(|e| match e {
            WsEv::Binary(_, b) if b.len() > 64 => {
                format!("Binary({} bytes, fnv {:016x})", b.len(), fnv(b))
            }
            WsEv::Text(_, t) if t.len() > 64 => {
                format!("Text({} bytes, fnv {:016x})", t.len(), fnv(t.as_bytes()))
            }
            e => format!("{e:?}"),
        })
        .collect()
}

/// Asserts the one-session log equals `want`, exactly, printing summaries on a mismatch.
fn assert_log(rec: &WsRec, want: &[WsEv]) {
    let got = strip(&rec.events());
    assert!(
        got == want,
        "listener log differs:\n got  {:#?}\n want {:#?}",
        describe(&got),
        describe(want)
    );
}

/// The echo exchange every client does, as the server's listener logs it.
fn echo_log(ping: &[u8]) -> Vec<WsEv> {
    vec![
        WsEv::Open(0),
        WsEv::Text(0, TEXT.into()),
        WsEv::Binary(0, binary()),
        WsEv::Text(0, FRAGMENTS.concat()),
        WsEv::Binary(0, large()),
        WsEv::Ping(0, ping.to_vec()),
        WsEv::Close(0, Some(1000)),
    ]
}

// ---------------------------------------------------------------------------------------
// 1. Python websockets client ↔ ustack WsServer
// ---------------------------------------------------------------------------------------

fn python_client_echo(net: u8, deflate: bool) {
    if !privileged() {
        return;
    }
    require_websockets();
    let mut link = WsLink::new(net);
    let rec = WsRec::echo();
    let mut server = ws_server(
        &mut link,
        big_limits(),
        deflate_cfg(deflate),
        WsOptions::default(),
        NoHooks,
        rec.clone(),
    );
    let url = format!("ws://{}:{PORT}/", link.stack_ip());
    let mode = if deflate { "deflate" } else { "plain" };
    let out = Py::spawn(&link.ns, "ws_echo_client.py", &[&url, mode]).finish();
    let ext = if deflate {
        "extensions: permessage-deflate"
    } else {
        "extensions: none"
    };
    assert_eq!(
        out,
        [
            ext,
            "text: ok",
            "binary: ok",
            "fragmented: ok",
            "large: ok",
            "pong: ok",
            "close: ok"
        ]
    );
    let snap = server.wait_for("the session closed", |s| s.stats.closed == 1);
    assert_log(&rec, &echo_log(b"py-ping"));
    assert_eq!((snap.stats.opened, snap.stats.errors), (1, 0));
}

/// Text, binary, a text message in 3 frames, 1 MiB of binary, a ping and the close
/// handshake from Python `websockets`, without compression: all echoed byte-exact, the
/// ping answered, the close code 1000 both ways.
#[test]
fn python_client_echoes_through_ws_server() {
    python_client_echo(1, false);
}

/// The same with permessage-deflate negotiated: every message (fragmented too) arrives
/// compressed and is echoed compressed.
#[test]
fn python_client_echoes_through_ws_server_with_deflate() {
    python_client_echo(2, true);
}

// ---------------------------------------------------------------------------------------
// 2. tungstenite client ↔ ustack WsServer
// ---------------------------------------------------------------------------------------

/// The same exchange from tungstenite 0.30 (which has no permessage-deflate, so this runs
/// uncompressed only); the fragmented message is sent as three raw frames.
#[test]
fn tungstenite_client_echoes_through_ws_server() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::{CloseFrame, Frame};
    use tungstenite::Message as T;

    if !privileged() {
        return;
    }
    let mut link = WsLink::new(3);
    let rec = WsRec::echo();
    let mut server = ws_server(
        &mut link,
        big_limits(),
        ServerConfig::default(),
        WsOptions::default(),
        NoHooks,
        rec.clone(),
    );
    let stream = link.connect(PORT);
    let url = format!("ws://{}:{PORT}/", link.stack_ip());
    let (mut ws, resp) = tungstenite::client(url.as_str(), stream).expect("upgrade");
    assert_eq!(resp.status(), 101);

    ws.send(T::text(TEXT)).unwrap();
    match ws.read().unwrap() {
        T::Text(t) => assert_eq!(t.as_str(), TEXT),
        m => panic!("not the text echo: {m:?}"),
    }
    ws.send(T::binary(binary())).unwrap();
    assert_eq!(ws.read().unwrap(), T::binary(binary()));

    let [a, b, c] = FRAGMENTS;
    ws.write(T::Frame(Frame::message(
        a.as_bytes().to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.write(T::Frame(Frame::message(
        b.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .unwrap();
    ws.send(T::Frame(Frame::message(
        c.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    match ws.read().unwrap() {
        T::Text(t) => assert_eq!(t.as_str(), FRAGMENTS.concat()),
        m => panic!("not the fragmented echo: {m:?}"),
    }

    ws.send(T::binary(large())).unwrap();
    match ws.read().unwrap() {
        T::Binary(got) => assert!(
            got[..] == large()[..],
            "1 MiB echo differs ({} B)",
            got.len()
        ),
        m => panic!("not the 1 MiB echo: {m:?}"),
    }

    ws.send(T::Ping(b"tg-ping".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        T::Pong(p) => assert_eq!(&p[..], b"tg-ping"),
        m => panic!("not the pong: {m:?}"),
    }

    ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(T::Close(Some(f))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("not the close echo: {other:?}"),
    }
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("not closed after the close handshake: {other:?}"),
    }

    let snap = server.wait_for("the session closed", |s| s.stats.closed == 1);
    assert_log(&rec, &echo_log(b"tg-ping"));
    assert_eq!((snap.stats.opened, snap.stats.errors), (1, 0));
}

// ---------------------------------------------------------------------------------------
// 3. ustack WsClient ↔ Python websockets server
// ---------------------------------------------------------------------------------------

fn ws_client_to_python(net: u8, deflate: bool) {
    if !privileged() {
        return;
    }
    require_websockets();
    let mut link = WsLink::new(net);
    let mode = if deflate { "deflate" } else { "plain" };
    let host = link.host_ip().to_string();
    let mut py = Py::spawn(
        &link.ns,
        "ws_echo_server.py",
        &[&host, &PORT.to_string(), mode],
    );
    assert_eq!(py.line(), "listening");

    let sent = vec![
        Owned::Text(TEXT.into()),
        Owned::Binary(binary()),
        Owned::Binary(large()),
    ];
    let rec = WsRec {
        greet: sent.clone(),
        close_after: Some(sent.len()),
        ..WsRec::default()
    };
    let remote = IpEndpoint::new(link.host_ip().into(), PORT);
    let authority: &'static str = Box::leak(format!("{host}:{PORT}").into_boxed_str());
    let listener = rec.clone();
    let mut client = WsEngine::start(&mut link, move |_, engine, now| {
        let cfg = ClientConfig {
            deflate: deflate.then(DeflateConfig::default),
            ..ClientConfig::new(authority, "/")
        };
        let opts = ClientOptions {
            limits: big_limits(),
            // One connection: no reconnect within the test once it closed.
            backoff: Backoff {
                initial: SDuration::from_secs(600),
                max: SDuration::from_secs(600),
            },
            ..ClientOptions::default()
        };
        let proto = WsClient::new(listener, cfg, WsOptions::default());
        vec![engine
            .tcp_client(remote, opts, proto, now)
            .expect("tcp_client")]
    });
    let snap = client.wait_for("the session closed", |s| s.stats.closed == 1);
    let out = py.finish();
    let ext = if deflate {
        "extensions: permessage-deflate"
    } else {
        "extensions: none"
    };
    assert_eq!(
        out,
        [
            "listening",
            ext,
            &format!("text {}", TEXT.chars().count()),
            "binary 256",
            &format!("binary {LARGE_LEN}"),
            "closed 1000",
        ]
    );
    let mut want = vec![WsEv::Open(0)];
    want.extend(sent.iter().map(|m| match m {
        Owned::Text(t) => WsEv::Text(0, t.clone()),
        Owned::Binary(b) => WsEv::Binary(0, b.clone()),
    }));
    want.push(WsEv::Close(0, Some(1000)));
    assert_log(&rec, &want);
    assert_eq!((snap.stats.opened, snap.stats.errors), (1, 0));
}

/// A ustack `WsClient` sends text, binary and 1 MiB to a Python `websockets` echo server on
/// the kernel side, gets each back exactly, and closes cleanly (1000 both ways).
#[test]
fn ws_client_echoes_through_python_server() {
    ws_client_to_python(4, false);
}

/// The same with permessage-deflate offered by ustack and accepted by Python.
#[test]
fn ws_client_echoes_through_python_server_with_deflate() {
    ws_client_to_python(5, true);
}

// ---------------------------------------------------------------------------------------
// 4. Handshake failures
// ---------------------------------------------------------------------------------------

const PAGE: &[u8] = b"ustack ws test page\n";

/// Serves [`PAGE`] on plain `GET /page`.
struct Page;

impl UpgradeHooks for Page {
    fn on_get(&mut self, req: &Request<'_, '_>) -> Option<Response<'_>> {
        (req.path == "/page").then_some(Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: PAGE,
        })
    }
}

/// Sends `req` on a fresh connection and returns everything the server sent until it
/// closed.
fn exchange(link: &WsLink, req: &[u8]) -> (String, End) {
    let mut raw = Raw::new(link.connect(PORT));
    raw.s.write_all(req).unwrap();
    let (bytes, end) = raw.read_response_to_end();
    (String::from_utf8(bytes).expect("ASCII response"), end)
}

/// Bad upgrades over real TCP get exact HTTP answers and a close; a plain GET gets the
/// hook's page; a half request gets 408 at the upgrade deadline; frames sent in the same
/// write as the request are not lost.
#[test]
fn handshake_failures_are_answered_exactly() {
    if !privileged() {
        return;
    }
    let mut link = WsLink::new(6);
    let rec = WsRec::echo();
    let opts = WsOptions {
        upgrade_timeout: SDuration::from_millis(500),
        ..WsOptions::default()
    };
    let mut server = ws_server(
        &mut link,
        Limits::default(),
        ServerConfig::default(),
        opts,
        Page,
        rec.clone(),
    );
    let key = ws_support::KEY;

    // Version 8.
    let req = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    assert_eq!(
        exchange(&link, req.as_bytes()),
        (
            "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 0\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
                .to_string(),
            End::Eof
        )
    );

    // 5 KiB of request, over the 4 KiB limit. The server may close before all of it has
    // arrived, so the end may be a reset; the answer is what counts.
    let req = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "p".repeat(5 * 1024)
    );
    let (resp, _) = exchange(&link, req.as_bytes());
    assert_eq!(
        resp,
        "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );

    // No Host.
    let req = format!(
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(
        exchange(&link, req.as_bytes()),
        (
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
            End::Eof
        )
    );

    // A plain GET served by the hook.
    let (resp, end) = exchange(&link, b"GET /page HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        resp,
        format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
            PAGE.len(),
            std::str::from_utf8(PAGE).unwrap()
        )
    );
    assert_eq!(end, End::Eof);

    // Slowloris: half a request, then nothing. Answered at the upgrade deadline.
    assert_eq!(
        exchange(&link, b"GET / HTTP/1.1\r\nHost: h\r\nUpgr"),
        (
            "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
            End::Eof
        )
    );

    // The request and a masked text frame in one write.
    let mut raw = Raw::new(link.connect(PORT));
    let mut bytes = ws_support::upgrade_request("h", "");
    bytes.extend(client_frame(true, 0, 0x1, b"pipelined", [1, 2, 3, 4]));
    raw.s.write_all(&bytes).unwrap();
    let head = raw.read_head().unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head:?}"
    );
    assert!(head.contains(&format!(
        "\r\nSec-WebSocket-Accept: {}\r\n",
        ws_support::ACCEPT
    )));
    let f = raw.read_frame().unwrap();
    assert_eq!(
        f,
        RawFrame {
            fin: true,
            rsv: 0,
            opcode: 0x1,
            payload: b"pipelined".to_vec()
        }
    );
    raw.s
        .write_all(&client_frame(
            true,
            0,
            0x8,
            &close_payload(1000, ""),
            [9, 9, 9, 9],
        ))
        .unwrap();
    assert_eq!(raw.read_frame().unwrap().close_code(), Some(1000));
    assert_eq!(raw.read_end(), End::Eof);

    let snap = server.wait_for("all six connections closed", |s| {
        s.stats.closed == 6 && s.sessions == 0
    });
    // Only the upgraded connection reached the listener.
    assert_log(
        &rec,
        &[
            WsEv::Open(0),
            WsEv::Text(0, "pipelined".into()),
            WsEv::Close(0, Some(1000)),
        ],
    );
    assert_eq!(snap.stats.errors, 0, "{snap:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Session limits on WebSocket
// ---------------------------------------------------------------------------------------

/// An upgraded raw connection.
fn upgraded(link: &WsLink, extra: &str) -> (Raw, String) {
    let mut raw = Raw::new(link.connect(PORT));
    let head = raw.upgrade("h", extra);
    (raw, head)
}

/// Sends `frame` and expects a close frame with `code` and then the end of the connection.
fn expect_failed_with(link: &WsLink, frame: &[u8], code: u16) {
    let (mut raw, _) = upgraded(link, "");
    raw.s.write_all(frame).unwrap();
    let f = raw.read_frame().unwrap();
    assert_eq!(f.opcode, 0x8, "{f:?}");
    assert_eq!(f.close_code(), Some(code), "{f:?}");
    // Bytes the server never read may make its close a reset.
    raw.buf.clear();
    let _ = raw.read_end();
}

/// A message over `max_msg_len` fails the connection with 1009, an unmasked client frame
/// with 1002, invalid UTF-8 in a text message with 1007; each is one error and one close.
#[test]
fn limits_and_protocol_errors_close_with_the_right_code() {
    if !privileged() {
        return;
    }
    let mut link = WsLink::new(7);
    let rec = WsRec::echo();
    let limits = Limits {
        max_msg_len: 1024,
        ..Limits::default()
    };
    let mut server = ws_server(
        &mut link,
        limits,
        ServerConfig::default(),
        WsOptions::default(),
        NoHooks,
        rec.clone(),
    );
    expect_failed_with(
        &link,
        &client_frame(true, 0, 0x2, &[0x55; 2048], [1, 2, 3, 4]),
        1009,
    );
    expect_failed_with(&link, &unmasked_frame(true, 0, 0x1, b"no mask"), 1002);
    expect_failed_with(
        &link,
        &client_frame(true, 0, 0x1, &[b'h', b'i', 0xff, 0xfe], [5, 6, 7, 8]),
        1007,
    );
    let snap = server.wait_for("three sessions closed", |s| s.stats.closed == 3);
    let codes: Vec<_> = strip(&rec.events())
        .into_iter()
        .map(|e| match e {
            WsEv::Error(_, SessionError::Protocol { code, .. }) => format!("error {code}"),
            e => format!("{e:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            "Open(0)",
            "error 1009",
            "Close(0, None)",
            "Open(0)",
            "error 1002",
            "Close(0, None)",
            "Open(0)",
            "error 1007",
            "Close(0, None)"
        ]
    );
    assert_eq!((snap.stats.opened, snap.stats.errors), (3, 3));
}

/// An idle session gets a close frame 1001 ("idle timeout") and then the FIN.
#[test]
fn idle_timeout_sends_going_away_then_fin() {
    if !privileged() {
        return;
    }
    let mut link = WsLink::new(8);
    let rec = WsRec::echo();
    let limits = Limits {
        idle_timeout: Some(SDuration::from_millis(300)),
        ..Limits::default()
    };
    let mut server = ws_server(
        &mut link,
        limits,
        ServerConfig::default(),
        WsOptions::default(),
        NoHooks,
        rec.clone(),
    );
    let (mut raw, _) = upgraded(&link, "");
    let f = raw.read_frame().unwrap();
    assert_eq!(
        f,
        RawFrame {
            fin: true,
            rsv: 0,
            opcode: 0x8,
            payload: close_payload(1001, "idle timeout")
        }
    );
    assert_eq!(raw.read_end(), End::Eof);
    let snap = server.wait_for("the session closed", |s| s.stats.closed == 1);
    assert_log(
        &rec,
        &[
            WsEv::Open(0),
            WsEv::Error(0, SessionError::IdleTimeout),
            WsEv::Close(0, None),
        ],
    );
    assert_eq!(snap.stats.timeouts, 1);
}

/// With a cron period the server pings an idle client (empty pings, opcode 0x9); the pong
/// reaches the listener, and the client's close ends it cleanly.
#[test]
fn cron_sends_heartbeat_pings() {
    if !privileged() {
        return;
    }
    let mut link = WsLink::new(9);
    let rec = WsRec::echo();
    let limits = Limits {
        cron_period: Some(SDuration::from_millis(200)),
        ..Limits::default()
    };
    let mut server = ws_server(
        &mut link,
        limits,
        ServerConfig::default(),
        WsOptions::default(),
        NoHooks,
        rec.clone(),
    );
    let (mut raw, _) = upgraded(&link, "");
    let ping = RawFrame {
        fin: true,
        rsv: 0,
        opcode: 0x9,
        payload: vec![],
    };
    for _ in 0..3 {
        assert_eq!(raw.read_frame().unwrap(), ping);
    }
    raw.s
        .write_all(&client_frame(true, 0, 0xA, b"", [1, 1, 1, 1]))
        .unwrap();
    raw.s
        .write_all(&client_frame(
            true,
            0,
            0x8,
            &close_payload(1000, ""),
            [2, 2, 2, 2],
        ))
        .unwrap();
    // Pings sent before our close arrived may still come first.
    let close = loop {
        let f = raw.read_frame().unwrap();
        if f != ping {
            break f;
        }
    };
    assert_eq!(close.close_code(), Some(1000));
    assert_eq!(raw.read_end(), End::Eof);
    server.wait_for("the session closed", |s| s.stats.closed == 1);
    assert_log(
        &rec,
        &[
            WsEv::Open(0),
            WsEv::Pong(0, vec![]),
            WsEv::Close(0, Some(1000)),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// 6. Compression and timeouts: the session ends once and the engine goes idle
// ---------------------------------------------------------------------------------------

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Most polls a second an idle engine may make: it sleeps up to 100 ms per wait, so about
/// 10; a spinning loop makes millions.
const IDLE_POLLS: u64 = 200;

/// The deflate parameters the server agreed to, from its 101.
fn agreed(head: &str) -> DeflateParams {
    let value = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .unwrap_or_else(|| panic!("no extension agreed: {head:?}"));
    DeflateParams::from_response(value.as_bytes(), &DeflateConfig::default()).unwrap()
}

/// A client-side connection with the agreed compression, to make and read frames.
fn deflate_client(head: &str) -> WsConn {
    let mut c = WsConn::with_seed(Role::Client, WsConfig::default(), [7; 32]);
    c.set_deflate(agreed(head), 6);
    c
}

/// `msg` as one compressed, masked frame.
fn compressed_frame(c: &mut WsConn, msg: Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    c.write_message(msg, &mut out).unwrap();
    assert_eq!(out[0] & 0x70, 0x40, "RSV1 (compressed)");
    assert_eq!(out[1] & 0x80, 0x80, "masked");
    out
}

/// The compressed payload of a frame [`compressed_frame`] made, unmasked.
fn deflated_payload(frame: &[u8]) -> Vec<u8> {
    let (len, at) = match frame[1] & 0x7f {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => (
            u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let key: [u8; 4] = frame[at..at + 4].try_into().unwrap();
    let body = &frame[at + 4..];
    assert_eq!(body.len(), len);
    body.iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect()
}

/// Reads what is left of the connection: frames until EOF or reset.
fn drain(raw: &mut Raw) -> (Vec<RawFrame>, End) {
    let mut frames = Vec::new();
    loop {
        match raw.read_frame() {
            Ok(f) => frames.push(f),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return (frames, End::Eof),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (frames, End::Reset)
            }
            Err(e) => panic!("reading the end failed: {e}"),
        }
    }
}

fn deflate_server(link: &mut WsLink, limits: Limits, rec: &WsRec) -> WsEngine {
    ws_server(
        link,
        limits,
        deflate_cfg(true),
        WsOptions::default(),
        NoHooks,
        rec.clone(),
    )
}

/// After the session ended, the engine must be idle, and the session ended exactly once.
fn assert_idle_after_end(server: &WsEngine, rec: &WsRec, error: SessionError) {
    let polls = server.polls_during(Duration::from_secs(1));
    eprintln!("engine polls in the second after the session ended: {polls}");
    assert!(
        polls < IDLE_POLLS,
        "the engine polled {polls} times in the second after the session ended: it spins"
    );
    let snap = server.snap();
    assert_eq!(
        (
            snap.stats.opened,
            snap.stats.closed,
            snap.stats.errors,
            snap.stats.timeouts
        ),
        (1, 1, 1, 1),
        "{snap:?}"
    );
    assert_eq!(
        rec.count(|e| matches!(e, WsEv::Error(..))),
        1,
        "{:?}",
        describe(&rec.events())
    );
    assert_eq!(
        rec.count(|e| matches!(e, WsEv::Close(..))),
        1,
        "{:?}",
        describe(&rec.events())
    );
    assert!(rec.events().contains(&WsEv::Error(rec_id(rec), error)));
}

fn rec_id(rec: &WsRec) -> u64 {
    rec.events()
        .iter()
        .find_map(|e| match e {
            WsEv::Open(i) => Some(*i),
            _ => None,
        })
        .expect("a session opened")
}

/// A deflate session whose client stalls after `send` (which gets the raw connection and the
/// client's `WsConn`) must end by the read timeout, once (`on_error(ReadTimeout)` then
/// `on_close`), with a reset, and leave the engine idle.
fn stalled_deflate_session_ends_once(link: u8, send: impl FnOnce(&mut Raw, &mut WsConn)) {
    let mut link = WsLink::new(link);
    let rec = WsRec::echo();
    let limits = Limits {
        read_timeout: Some(SDuration::from_millis(300)),
        ..big_limits()
    };
    let mut server = deflate_server(&mut link, limits, &rec);
    let (mut raw, head) = upgraded(&link, OFFER);
    let mut c = deflate_client(&head);
    send(&mut raw, &mut c);
    server.wait_for("the session ended", |s| s.stats.closed == 1);
    // A read timeout is not graceful: the connection is reset, and the close frame the
    // session wrote as it ended goes with the discarded output.
    assert_eq!(drain(&mut raw), (vec![], End::Reset));
    assert_log(
        &rec,
        &[
            WsEv::Open(0),
            WsEv::Error(0, SessionError::ReadTimeout),
            WsEv::Close(0, None),
        ],
    );
    assert_idle_after_end(&server, &rec, SessionError::ReadTimeout);
}

/// The seed's CPU-100% bug: half of a compressed frame, then nothing.
#[test]
fn deflate_half_frame_read_timeout_ends_once_and_engine_idles() {
    if !privileged() {
        return;
    }
    stalled_deflate_session_ends_once(10, |raw, c| {
        // Random bytes do not compress: the frame is as long as the message.
        let msg = random_bytes(0x6a1f, 256 << 10);
        let frame = compressed_frame(c, Message::Binary(&msg));
        raw.s.write_all(&frame[..frame.len() / 2]).unwrap();
    });
}

/// The same stall between frames: the first fragment of a compressed message arrives
/// whole (FIN clear, RSV1) and the rest never comes. Every byte was consumed, so only the
/// protocol knows the message is unfinished (`set_mid_message`), and the read timeout must
/// still end the session.
#[test]
fn deflate_stalled_fragmented_message_read_timeout_ends_once() {
    if !privileged() {
        return;
    }
    stalled_deflate_session_ends_once(11, |raw, c| {
        let text = "a compressible line of text\n".repeat(2000);
        let deflated = deflated_payload(&compressed_frame(c, Message::Text(&text)));
        let first = &deflated[..deflated.len() / 2];
        let frame = client_frame(false, 0x4, 0x1, first, [3, 1, 4, 1]);
        raw.s.write_all(&frame).unwrap();
    });
}

/// A deflate session with context takeover exchanges a compressed message, then goes
/// quiet: the idle timeout fires between messages, sends 1001 and the FIN, ends the session
/// once, and the engine idles afterwards.
#[test]
fn deflate_idle_timeout_between_messages_ends_once() {
    if !privileged() {
        return;
    }
    let mut link = WsLink::new(12);
    let rec = WsRec::echo();
    let limits = Limits {
        idle_timeout: Some(SDuration::from_millis(300)),
        ..big_limits()
    };
    let mut server = deflate_server(&mut link, limits, &rec);
    let (mut raw, head) = upgraded(&link, OFFER);
    let mut c = deflate_client(&head);
    let text = "deflate me, deflate me again\n".repeat(100);
    raw.s
        .write_all(&compressed_frame(&mut c, Message::Text(&text)))
        .unwrap();
    let echo = raw.read_frame().unwrap();
    assert_eq!(
        (echo.fin, echo.rsv, echo.opcode),
        (true, 0x4, 0x1),
        "compressed text"
    );
    assert!(
        echo.payload.len() < text.len() / 4,
        "{} B",
        echo.payload.len()
    );
    let mut wire = unmasked_frame(true, 0x4, 0x1, &echo.payload);
    let mut store = MsgBuf::heap();
    let mut replies = Vec::new();
    match c.read(&mut wire, &mut store, &mut replies).unwrap() {
        Step::Frame {
            event: Some(Event::Message(Message::Text(t))),
            ..
        } => assert!(t == text, "the echo inflates to {} B", t.len()),
        s => panic!("not a text message: {s:?}"),
    }
    let f = raw.read_frame().unwrap();
    assert_eq!(f.payload, close_payload(1001, "idle timeout"), "{f:?}");
    assert_eq!(raw.read_end(), End::Eof);
    server.wait_for("the session ended", |s| s.stats.closed == 1);
    assert_log(
        &rec,
        &[
            WsEv::Open(0),
            WsEv::Text(0, text.clone()),
            WsEv::Error(0, SessionError::IdleTimeout),
            WsEv::Close(0, None),
        ],
    );
    assert_idle_after_end(&server, &rec, SessionError::IdleTimeout);
}

/// permessage-deflate: `max_msg_len` bounds the message after decompression (module docs),
/// so a message of exactly `max_msg_len` bytes must pass even when it does not compress
/// (1 MiB of random bytes deflates to 1 MiB + 171 bytes).
///
/// (Before `WsConn::frame_limit`, the compressed frame length was held to
/// `max_message_size` too, and this message was refused with 1009.)
#[test]
fn deflate_message_of_exactly_max_msg_len_is_accepted() {
    if !privileged() {
        return;
    }
    let mut link = WsLink::new(13);
    let rec = WsRec::echo();
    let limits = Limits {
        max_msg_len: LARGE_LEN,
        max_write_queue: 8 << 20,
        ..Limits::default()
    };
    let _server = deflate_server(&mut link, limits, &rec);
    let (mut raw, head) = upgraded(&link, OFFER);
    let mut c = deflate_client(&head);
    let frame = compressed_frame(&mut c, Message::Binary(&large()));
    let mut w = raw.s.try_clone().unwrap();
    // Written on another thread: a server that refuses stops reading.
    let writer = std::thread::spawn(move || w.write_all(&frame));
    let f = raw.read_frame().unwrap();
    if f.opcode == 0x8 {
        let _ = raw.s.shutdown(std::net::Shutdown::Both);
        let _ = writer.join();
        panic!(
            "refused with close {:?}: {:?}",
            f.close_code(),
            String::from_utf8_lossy(&f.payload[2..])
        );
    }
    writer.join().unwrap().unwrap();
    assert_eq!(
        (f.fin, f.rsv, f.opcode),
        (true, 0x4, 0x2),
        "compressed binary"
    );
    let mut wire = unmasked_frame(true, 0x4, 0x2, &f.payload);
    let (mut store, mut replies) = (MsgBuf::heap(), Vec::new());
    match c.read(&mut wire, &mut store, &mut replies).unwrap() {
        Step::Frame {
            event: Some(Event::Message(Message::Binary(b))),
            ..
        } => assert!(b == large(), "the echo inflates to {} B", b.len()),
        s => panic!("not a binary message: {s:?}"),
    }
}
