use core::fmt::Write as _;

use super::*;
use crate::session::codec::{CodecError, Out, SliceOut};

type Buf = heapless::Vec<u8, 8192>;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn buf(parts: &[&[u8]]) -> Buf {
    let mut b = Buf::new();
    for part in parts {
        b.extend_from_slice(part).unwrap();
    }
    b
}

/// A valid upgrade request with `extra` header lines spliced in before the blank line.
fn request_with(extra: &str) -> Buf {
    let mut s = heapless::String::<8192>::new();
    write!(
        s,
        "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
    .unwrap();
    buf(&[s.as_bytes()])
}

/// A request built from a full header block (no request line, no blank line).
fn raw(request_line: &str, headers: &str) -> Buf {
    buf(&[
        request_line.as_bytes(),
        b"\r\n",
        headers.as_bytes(),
        b"\r\n",
    ])
}

fn run<'b>(req: &'b [u8], cfg: &ServerConfig, hooks: &mut dyn UpgradeHooks) -> (Upgrade<'b>, Buf) {
    let mut out = Buf::new();
    let result = server_upgrade(req, cfg, hooks, &mut out);
    (result, out)
}

fn default_run(req: &[u8]) -> (Upgrade<'_>, Buf) {
    run(req, &ServerConfig::default(), &mut NoHooks)
}

fn assert_status(req: &[u8], status: u16, head_contains: &[&str]) {
    let (result, out) = default_run(req);
    match result {
        Upgrade::Responded { status: s, .. } => assert_eq!(s, status, "{}", text(&out)),
        other => panic!("expected {status}, got {other:?}"),
    }
    let head = text(&out);
    assert!(
        head.starts_with(&*status_line(status)),
        "wrong status line: {head}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
    for h in head_contains {
        assert!(head.contains(h), "{head:?} lacks {h:?}");
    }
}

fn status_line(status: u16) -> heapless::String<64> {
    let mut s = heapless::String::new();
    write!(s, "HTTP/1.1 {status} ").unwrap();
    s
}

fn text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap()
}

fn upgraded(result: &Upgrade<'_>) -> (usize, Option<&'static str>) {
    match result {
        Upgrade::Upgraded { used, protocol, .. } => (
            *used,
            protocol.map(|p| match p {
                "chat" => "chat",
                "superchat" => "superchat",
                "json" => "json",
                other => panic!("unexpected protocol {other}"),
            }),
        ),
        other => panic!("expected an upgrade, got {other:?}"),
    }
}

#[test]
fn accept_key_matches_rfc_6455_example() {
    assert_eq!(&accept_key(KEY.as_bytes()), ACCEPT.as_bytes());
}

#[test]
fn valid_request_gets_exact_101() {
    let req = request_with("");
    let (result, out) = default_run(&req);
    assert_eq!(upgraded(&result), (req.len(), None));
    assert_eq!(
        text(&out),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn pipelined_bytes_are_not_consumed() {
    let req = request_with("");
    let frame = [0x81, 0x85, 1, 2, 3, 4, b'h', b'e', b'l', b'l', b'o'];
    let both = buf(&[&req, &frame]);
    let (result, _) = default_run(&both);
    assert_eq!(upgraded(&result).0, req.len());
    assert_eq!(&both[req.len()..], &frame);
}

#[test]
fn non_get_is_405_with_allow() {
    let req = raw("POST /chat HTTP/1.1", "Host: a\r\nUpgrade: websocket\r\n");
    assert_status(&req, 405, &["Allow: GET\r\n"]);
}

#[test]
fn http_1_0_is_400() {
    let req = raw(
        "GET /chat HTTP/1.0",
        "Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_status(&req, 400, &[]);
}

#[test]
fn missing_or_repeated_host_is_400() {
    let req = raw(
        "GET /chat HTTP/1.1",
        "Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_status(&req, 400, &[]);
    assert_status(&request_with("Host: evil.example\r\n"), 400, &[]);
}

#[test]
fn error_response_is_exact() {
    let req = raw("GET / HTTP/1.0", "Host: a\r\n");
    let (result, out) = default_run(&req);
    assert_eq!(
        result,
        Upgrade::Responded {
            used: req.len(),
            status: 400
        }
    );
    assert_eq!(
        text(&out),
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn malformed_http_is_400() {
    assert_status(b"GET /chat HTTP/1.1\r\nBad Header\r\n\r\n", 400, &[]);
    assert_status(b"\x00\x01\x02 garbage\r\n\r\n", 400, &[]);
}

#[test]
fn wrong_version_is_426_with_version_header() {
    let req = raw(
        "GET /chat HTTP/1.1",
        "Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
    );
    assert_status(&req, 426, &["Sec-WebSocket-Version: 13\r\n"]);
    let no_version = raw(
        "GET /chat HTTP/1.1",
        "Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    assert_status(&no_version, 426, &["Sec-WebSocket-Version: 13\r\n"]);
}

#[test]
fn oversized_request_is_431() {
    // Incomplete and already past the limit: no point in waiting for the rest.
    let mut big = request_with("");
    big.truncate(big.len() - 2);
    let filler = [b'a'; 4200];
    let big = buf(&[&big, b"X-Filler: ", &filler]);
    assert_status(&big, 431, &[]);
    // Complete but longer than the limit.
    let mut s = heapless::String::<4400>::new();
    s.push_str("X-Filler: ").unwrap();
    for _ in 0..4200 {
        s.push('a').unwrap();
    }
    s.push_str("\r\n").unwrap();
    let complete = request_with(&s);
    assert!(complete.len() > DEFAULT_MAX_REQUEST);
    assert_status(&complete, 431, &[]);
    // And a raised limit lets it through.
    let cfg = ServerConfig {
        max_request: 8192,
        ..ServerConfig::default()
    };
    let (result, _) = run(&complete, &cfg, &mut NoHooks);
    assert_eq!(upgraded(&result).0, complete.len());
}

#[test]
fn too_many_headers_is_431() {
    let mut extra = heapless::String::<2048>::new();
    // The request already has 5 headers; 28 more make 33.
    for i in 0..28 {
        write!(extra, "X-H{i}: v\r\n").unwrap();
    }
    assert_status(&request_with(&extra), 431, &[]);
    // 32 is still fine.
    extra.clear();
    for i in 0..27 {
        write!(extra, "X-H{i}: v\r\n").unwrap();
    }
    let req = request_with(&extra);
    assert_eq!(upgraded(&default_run(&req).0).0, req.len());
}

fn with_key(key: &str) -> Buf {
    let mut s = heapless::String::<512>::new();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    buf(&[s.as_bytes()])
}

#[test]
fn bad_keys_are_400() {
    // base64 of 15, 17 and 18 bytes.
    assert_status(&with_key("AAAAAAAAAAAAAAAAAAAA"), 400, &[]);
    assert_status(&with_key("AAAAAAAAAAAAAAAAAAAAAAA="), 400, &[]);
    assert_status(&with_key("AAAAAAAAAAAAAAAAAAAAAAAA"), 400, &[]);
    // 24 characters that are not base64, and non-canonical trailing bits.
    assert_status(&with_key("!!!!!!!!!!!!!!!!!!!!!!=="), 400, &[]);
    assert_status(&with_key("dGhlIHNhbXBsZSBub25jZR=="), 400, &[]);
    // Missing, and two of them.
    let no_key = raw(
        "GET / HTTP/1.1",
        "Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_status(&no_key, 400, &[]);
    assert_status(
        &request_with("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"),
        400,
        &[],
    );
    // A real 16-byte key, with surrounding whitespace, is fine.
    let ok = with_key("AAAAAAAAAAAAAAAAAAAAAA==  ");
    assert_eq!(upgraded(&default_run(&ok).0).0, ok.len());
}

#[test]
fn upgrade_and_connection_tokens_are_required() {
    let no_upgrade_token = raw(
        "GET / HTTP/1.1",
        "Host: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_status(&no_upgrade_token, 400, &[]);
    let no_connection = raw(
        "GET / HTTP/1.1",
        "Host: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_status(&no_connection, 400, &[]);
}

#[test]
fn connection_keep_alive_upgrade_is_accepted() {
    let req = raw(
        "GET / HTTP/1.1",
        "Host: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    let (result, out) = default_run(&req);
    assert_eq!(upgraded(&result).0, req.len());
    assert!(text(&out).contains(ACCEPT));
}

/// Writes what every hook saw into a log.
#[derive(Default)]
struct Recorder {
    log: heapless::String<2048>,
    reject_before_upgrade: bool,
}

impl UpgradeHooks for Recorder {
    fn on_request(&mut self, path: &[u8]) -> Result<(), Rejection> {
        writeln!(self.log, "request {}", text(path)).unwrap();
        Ok(())
    }

    fn on_host(&mut self, host: &[u8]) -> Result<(), Rejection> {
        writeln!(self.log, "host {}", text(host)).unwrap();
        Ok(())
    }

    fn on_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), Rejection> {
        writeln!(self.log, "header {}={}", text(name), text(value)).unwrap();
        Ok(())
    }

    fn on_before_upgrade(&mut self, req: &Request<'_, '_>) -> Result<(), Rejection> {
        writeln!(self.log, "before origin={:?}", req.origin().map(text)).unwrap();
        for (name, value) in req.cookies() {
            writeln!(self.log, "cookie {}={}", text(name), text(value)).unwrap();
        }
        for protocol in req.protocols() {
            writeln!(self.log, "protocol {protocol}").unwrap();
        }
        if self.reject_before_upgrade {
            return Err(Rejection::new(403).header("X-Reason", "origin not allowed"));
        }
        Ok(())
    }
}

#[test]
fn hooks_run_in_order_with_borrowed_values() {
    let req = request_with(
        "Origin: http://example.com\r\nCookie: a=1; b = 2 ;flag\r\n\
         Sec-WebSocket-Protocol: chat , superchat\r\nCookie: c=3\r\nSec-WebSocket-Protocol: json\r\n",
    );
    let mut hooks = Recorder::default();
    let (result, _) = run(&req, &ServerConfig::default(), &mut hooks);
    assert_eq!(upgraded(&result), (req.len(), None));
    assert_eq!(
        hooks.log.as_str(),
        "request /chat?room=1\nhost example.com\n\
         header Host=example.com\nheader Upgrade=websocket\nheader Connection=Upgrade\n\
         header Sec-WebSocket-Key=dGhlIHNhbXBsZSBub25jZQ==\nheader Sec-WebSocket-Version=13\n\
         header Origin=http://example.com\nheader Cookie=a=1; b = 2 ;flag\n\
         header Sec-WebSocket-Protocol=chat , superchat\nheader Cookie=c=3\n\
         header Sec-WebSocket-Protocol=json\n\
         before origin=Some(\"http://example.com\")\n\
         cookie a=1\ncookie b=2\ncookie c=3\n\
         protocol chat\nprotocol superchat\nprotocol json\n"
    );
}

#[test]
fn hook_rejection_answers_its_status_and_headers() {
    let req = request_with("Origin: http://evil.example\r\n");
    let mut hooks = Recorder {
        reject_before_upgrade: true,
        ..Recorder::default()
    };
    let (result, out) = run(&req, &ServerConfig::default(), &mut hooks);
    assert_eq!(
        result,
        Upgrade::Responded {
            used: req.len(),
            status: 403
        }
    );
    assert_eq!(
        text(&out),
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\
         X-Reason: origin not allowed\r\n\r\n"
    );
}

struct RejectPath;

impl UpgradeHooks for RejectPath {
    fn on_request(&mut self, path: &[u8]) -> Result<(), Rejection> {
        if path == b"/chat?room=1" {
            Err(Rejection::new(404))
        } else {
            Ok(())
        }
    }

    fn on_header(&mut self, _: &[u8], _: &[u8]) -> Result<(), Rejection> {
        panic!("hooks after a rejection must not run");
    }
}

#[test]
fn first_rejection_stops_the_hooks() {
    let req = request_with("");
    let (result, out) = run(&req, &ServerConfig::default(), &mut RejectPath);
    assert!(matches!(result, Upgrade::Responded { status: 404, .. }));
    assert!(text(&out).starts_with("HTTP/1.1 404 Not Found\r\n"));
}

struct Page;

impl UpgradeHooks for Page {
    fn on_get(&mut self, req: &Request<'_, '_>) -> Option<Response<'_>> {
        (req.path == "/").then_some(Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: b"<h1>hi</h1>",
        })
    }
}

#[test]
fn plain_get_goes_to_on_get() {
    let req = raw("GET / HTTP/1.1", "Host: a\r\nAccept: text/html\r\n");
    let (result, out) = run(&req, &ServerConfig::default(), &mut Page);
    assert_eq!(
        result,
        Upgrade::Responded {
            used: req.len(),
            status: 200
        }
    );
    assert_eq!(
        text(&out),
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<h1>hi</h1>"
    );
    // Without a page: 426 that says how to upgrade.
    let other = raw("GET /other HTTP/1.1", "Host: a\r\n");
    let (result, out) = run(&other, &ServerConfig::default(), &mut Page);
    assert!(matches!(result, Upgrade::Responded { status: 426, .. }));
    assert_eq!(
        text(&out),
        "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 0\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
}

#[test]
fn byte_by_byte_feeding_needs_more_until_complete() {
    let req = request_with("Sec-WebSocket-Protocol: chat\r\n");
    let cfg = ServerConfig {
        protocols: &["chat"],
        ..ServerConfig::default()
    };
    for end in 0..req.len() {
        let (result, out) = run(&req[..end], &cfg, &mut NoHooks);
        assert_eq!(result, Upgrade::NeedMore, "at {end}");
        assert!(out.is_empty());
    }
    let (whole, whole_out) = run(&req, &cfg, &mut NoHooks);
    assert_eq!(upgraded(&whole), (req.len(), Some("chat")));
    let (_, direct_out) = run(&req, &cfg, &mut NoHooks);
    assert_eq!(whole_out, direct_out);
}

/// `ws_handshake` found that a request malformed past `max_request` was answered 431 when it
/// came in pieces but 400 when it came at once; the status must not depend on chunking.
#[test]
fn a_request_malformed_past_the_limit_gets_the_same_status_however_it_arrives() {
    let cfg = ServerConfig {
        max_request: 256,
        ..ServerConfig::default()
    };
    let mut filler = heapless::String::<512>::new();
    write!(filler, "X-Filler: {:a<300}\r\nBad Header\r\n", "").unwrap();
    let req = request_with(&filler);
    let (whole, whole_out) = run(&req, &cfg, &mut NoHooks);
    assert!(
        matches!(whole, Upgrade::Responded { status: 431, .. }),
        "{whole:?}"
    );
    for end in 1..req.len() {
        let (result, out) = run(&req[..end], &cfg, &mut NoHooks);
        if result != Upgrade::NeedMore {
            assert_eq!((result, out), (whole, whole_out.clone()), "at {end}");
            break;
        }
    }
}

#[test]
fn subprotocol_is_the_first_offered_that_is_served() {
    let cfg = ServerConfig {
        protocols: &["json", "superchat"],
        ..ServerConfig::default()
    };
    let req = request_with("Sec-WebSocket-Protocol: chat, superchat, json\r\n");
    let (result, out) = run(&req, &cfg, &mut NoHooks);
    assert_eq!(upgraded(&result).1, Some("superchat"));
    assert!(text(&out).ends_with("Sec-WebSocket-Protocol: superchat\r\n\r\n"));
    // Nothing in common: upgrade without one.
    let req = request_with("Sec-WebSocket-Protocol: chat\r\n");
    let (result, out) = run(&req, &cfg, &mut NoHooks);
    assert_eq!(upgraded(&result).1, None);
    assert!(!text(&out).contains("Sec-WebSocket-Protocol"));
}

#[test]
fn full_out_gets_500_or_nothing() {
    let req = request_with("");
    // Too small for the 101 (129 bytes) but big enough for the bare 500 (70 bytes).
    let mut small = [0u8; 100];
    let mut out = SliceOut::new(&mut small);
    let result = server_upgrade(&req, &ServerConfig::default(), &mut NoHooks, &mut out);
    assert_eq!(
        result,
        Upgrade::Responded {
            used: req.len(),
            status: 500
        }
    );
    assert_eq!(
        text(out.filled()),
        "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    // Too small for anything: nothing at all, never half a response.
    let mut tiny = [0u8; 10];
    let mut out = SliceOut::new(&mut tiny);
    let result = server_upgrade(&req, &ServerConfig::default(), &mut NoHooks, &mut out);
    assert!(matches!(result, Upgrade::Responded { status: 500, .. }));
    assert!(out.filled().is_empty());
}

#[test]
fn rejection_headers_that_do_not_fit_or_are_invalid_are_dropped() {
    let long = [b'x'; 300];
    let r = Rejection::new(403)
        .header("X-Long", text(&long))
        .header("X-Ok", "1")
        .header("Bad Name", "v")
        .header("X-Split", "a\r\nSet-Cookie: evil=1");
    assert_eq!(r.headers.as_str(), "X-Ok: 1\r\n");
    // Headers written into the field by hand are checked before they go out.
    let mut raw_rejection = Rejection::new(403);
    raw_rejection
        .headers
        .push_str("X-A: 1\r\n\r\nbody")
        .unwrap();
    struct Raw(Rejection);
    impl UpgradeHooks for Raw {
        fn on_host(&mut self, _: &[u8]) -> Result<(), Rejection> {
            Err(self.0.clone())
        }
    }
    let req = request_with("");
    let (result, out) = run(&req, &ServerConfig::default(), &mut Raw(raw_rejection));
    assert!(matches!(result, Upgrade::Responded { status: 403, .. }));
    assert_eq!(
        text(&out),
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn request_helpers() {
    let req = raw(
        "GET /x HTTP/1.1",
        "Host: h\r\nCONNECTION: keep-alive\r\nconnection: Upgrade\r\nCookie: =skip; k=v=w\r\n",
    );
    let mut table = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (r, used) = parse_request(&req, &mut table).unwrap().unwrap();
    assert_eq!(
        (r.method, r.path, r.version, used),
        ("GET", "/x", 1, req.len())
    );
    assert_eq!(r.header("connection"), Some(&b"keep-alive"[..]));
    assert_eq!(r.headers_named("Connection").count(), 2);
    assert!(r.has_token("Connection", "UPGRADE"));
    assert!(!r.has_token("Connection", "close"));
    assert_eq!(r.origin(), None);
    let cookies: heapless::Vec<_, 4> = r.cookies().collect();
    assert_eq!(&cookies[..], &[(&b"k"[..], &b"v=w"[..])]);
}

/// Deterministic xorshift, enough to shake out panics.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn arbitrary_bytes_never_panic() {
    let valid = request_with("Sec-WebSocket-Protocol: chat\r\nCookie: a=b\r\n");
    let cfg = ServerConfig {
        protocols: &["chat"],
        max_request: 300,
        ..ServerConfig::default()
    };
    let client = ClientConfig::new("a", "/");
    let mut state = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        let mut mutated = valid.clone();
        for _ in 0..(next(&mut state) % 4 + 1) {
            let at = (next(&mut state) as usize) % mutated.len();
            mutated[at] = next(&mut state) as u8;
        }
        let cut = (next(&mut state) as usize) % (mutated.len() + 1);
        let mut small = [0u8; 160];
        let mut out = SliceOut::new(&mut small);
        let _ = server_upgrade(&mutated[..cut], &cfg, &mut Recorder::default(), &mut out);
        let _ = client_response(&mutated[..cut], &client, &[0; 16]);
    }
}

// Client side.

const NONCE: &[u8; 16] = b"0123456789abcdef";

fn client_request(cfg: &ClientConfig<'_>) -> Buf {
    let mut out = Buf::new();
    write_request(cfg, NONCE, &mut out).unwrap();
    out
}

#[test]
fn client_request_is_exact() {
    let cfg = ClientConfig {
        origin: Some("http://example.com"),
        protocols: &["chat", "json"],
        ..ClientConfig::new("example.com:9001", "/chat")
    };
    assert_eq!(
        text(&client_request(&cfg)),
        "GET /chat HTTP/1.1\r\nHost: example.com:9001\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\
         Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\
         Sec-WebSocket-Protocol: chat, json\r\n\r\n"
    );
    // "ws://host?q" has a path that does not start with '/'.
    let query = client_request(&ClientConfig::new("h", "?q=1"));
    assert!(text(&query).starts_with("GET /?q=1 HTTP/1.1\r\n"));
    let empty = client_request(&ClientConfig::new("h", ""));
    assert!(text(&empty).starts_with("GET / HTTP/1.1\r\n"));
}

#[test]
fn client_request_refuses_bad_values_and_small_out() {
    let mut out = Buf::new();
    let bad_host = ClientConfig::new("a\r\nX: y", "/");
    assert!(matches!(
        write_request(&bad_host, NONCE, &mut out),
        Err(CodecError::Malformed(_))
    ));
    let bad_protocol = ClientConfig {
        protocols: &["a b"],
        ..ClientConfig::new("a", "/")
    };
    assert!(matches!(
        write_request(&bad_protocol, NONCE, &mut out),
        Err(CodecError::Malformed(_))
    ));
    assert!(out.is_empty());
    let mut small = [0u8; 50];
    let mut out = SliceOut::new(&mut small);
    assert!(matches!(
        write_request(&ClientConfig::new("a", "/"), NONCE, &mut out),
        Err(CodecError::NoRoom { .. })
    ));
    assert!(out.filled().is_empty());
    assert_eq!(out.room(), 50);
}

#[test]
fn client_server_round_trip() {
    let client = ClientConfig {
        protocols: &["chat", "json"],
        origin: Some("http://example.com"),
        ..ClientConfig::new("example.com", "/chat")
    };
    let server = ServerConfig {
        protocols: &["json", "chat"],
        ..ServerConfig::default()
    };
    let request = client_request(&client);
    let mut response = Buf::new();
    let result = server_upgrade(&request, &server, &mut NoHooks, &mut response);
    assert_eq!(upgraded(&result), (request.len(), Some("chat")));

    // The server's first WebSocket frame may arrive in the same read.
    let with_frame = buf(&[&response, &[0x81, 0x00]]);
    for end in 0..response.len() {
        assert_eq!(
            client_response(&with_frame[..end], &client, NONCE),
            Ok(ClientUpgrade::NeedMore)
        );
    }
    match client_response(&with_frame, &client, NONCE).unwrap() {
        ClientUpgrade::Accepted { used, protocol, .. } => {
            assert_eq!((used, protocol), (response.len(), Some("chat")));
        }
        other => panic!("{other:?}"),
    }
}

fn response_101(extra: &str, accept: &str) -> Buf {
    let mut s = heapless::String::<1024>::new();
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .unwrap();
    buf(&[s.as_bytes()])
}

fn nonce_accept() -> heapless::String<28> {
    let accept = accept_key(b"MDEyMzQ1Njc4OWFiY2RlZg==");
    let mut s = heapless::String::new();
    s.push_str(text(&accept)).unwrap();
    s
}

#[test]
fn client_rejects_bad_accept() {
    let cfg = ClientConfig::new("a", "/");
    let good = response_101("", &nonce_accept());
    assert!(client_response(&good, &cfg, NONCE).is_ok());
    let bad = response_101("", ACCEPT);
    assert_eq!(
        client_response(&bad, &cfg, NONCE),
        Err(HandshakeError::BadAccept)
    );
    let missing =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        client_response(missing, &cfg, NONCE),
        Err(HandshakeError::Missing("Sec-WebSocket-Accept"))
    );
    let no_upgrade = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        client_response(no_upgrade, &cfg, NONCE),
        Err(HandshakeError::Missing("Upgrade: websocket"))
    );
}

/// `ws_handshake` found that only the first `Sec-WebSocket-Accept` was read, so a second
/// one of another value went unnoticed.
#[test]
fn client_rejects_a_second_accept_header_in_either_order() {
    let cfg = ClientConfig::new("a", "/");
    let good = nonce_accept();
    for extra in [accept_line(ACCEPT), accept_line(&good)] {
        let response = response_101(&extra, &good);
        assert_eq!(
            client_response(&response, &cfg, NONCE),
            Err(HandshakeError::BadAccept),
            "{}",
            text(&response)
        );
    }
}

fn accept_line(accept: &str) -> heapless::String<64> {
    let mut s = heapless::String::new();
    write!(s, "Sec-WebSocket-Accept: {accept}\r\n").unwrap();
    s
}

#[test]
fn client_rejects_unoffered_protocol() {
    let accept = nonce_accept();
    let response = response_101("Sec-WebSocket-Protocol: superchat\r\n", &accept);
    let offered = ClientConfig {
        protocols: &["chat"],
        ..ClientConfig::new("a", "/")
    };
    assert!(matches!(
        client_response(&response, &offered, NONCE),
        Err(HandshakeError::Protocol(_))
    ));
    assert!(matches!(
        client_response(&response, &ClientConfig::new("a", "/"), NONCE),
        Err(HandshakeError::Protocol(_))
    ));
    let chosen = response_101("Sec-WebSocket-Protocol: chat\r\n", &accept);
    assert!(matches!(
        client_response(&chosen, &offered, NONCE),
        Ok(ClientUpgrade::Accepted {
            protocol: Some("chat"),
            ..
        })
    ));
}

#[test]
fn client_rejects_unoffered_extension() {
    let response = response_101(
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        &nonce_accept(),
    );
    assert!(matches!(
        client_response(&response, &ClientConfig::new("a", "/"), NONCE),
        Err(HandshakeError::Extension(_))
    ));
}

#[test]
fn client_reports_other_statuses_and_limits() {
    let cfg = ClientConfig::new("a", "/");
    let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        client_response(not_found, &cfg, NONCE),
        Err(HandshakeError::Status(404))
    );
    let mut endless = Buf::new();
    endless
        .extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nX: ")
        .unwrap();
    endless.resize(5000, b'a').unwrap();
    assert_eq!(
        client_response(&endless, &cfg, NONCE),
        Err(HandshakeError::TooLarge { max: 4096 })
    );
    assert!(matches!(
        client_response(b"SSH-2.0-OpenSSH\r\n\r\n", &cfg, NONCE),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn parse_url_cases() {
    let url = parse_url("ws://example.com").unwrap();
    assert_eq!(
        url,
        WsUrl {
            host: "example.com",
            port: 80,
            path: "/",
            authority: "example.com"
        }
    );
    let url = parse_url("ws://example.com:9001/chat?room=1").unwrap();
    assert_eq!(
        (url.host, url.port, url.path, url.authority),
        ("example.com", 9001, "/chat?room=1", "example.com:9001")
    );
    let url = parse_url("ws://[::1]:8080/").unwrap();
    assert_eq!((url.host, url.port, url.path), ("::1", 8080, "/"));
    assert_eq!(url.client_config().host, "[::1]:8080");
    let url = parse_url("ws://[fe80::1]").unwrap();
    assert_eq!((url.host, url.port), ("fe80::1", 80));
    let url = parse_url("WS://10.0.0.1:81?x").unwrap();
    assert_eq!((url.host, url.port, url.path), ("10.0.0.1", 81, "?x"));

    for bad in [
        "wss://example.com/",
        "http://example.com/",
        "example.com",
        "ws://",
        "ws://:80/",
        "ws://a:0/",
        "ws://a:65536/",
        "ws://a:+80/",
        "ws://a:x/",
        "ws://::1/",
        "ws://[::1/",
        "ws://[zz]/",
        "ws://[::1]x/",
        "ws://u:p@a/",
        "ws://a/#frag",
        "ws://a/b c",
        "ws://a b/",
    ] {
        assert!(
            matches!(parse_url(bad), Err(HandshakeError::Url(_))),
            "{bad} should be refused"
        );
    }
    let mut msg = heapless::String::<512>::new();
    write!(msg, "{}", parse_url("wss://a/").unwrap_err()).unwrap();
    assert!(msg.contains("TLS"), "{msg}");
}

#[test]
fn display_says_what_to_do() {
    let mut msg = heapless::String::<512>::new();
    write!(msg, "{}", HandshakeError::TooLarge { max: 4096 }).unwrap();
    assert!(msg.contains("max_response"), "{msg}");
}

#[cfg(feature = "alloc")]
mod deflate {
    use super::*;
    use crate::ws::deflate::{DeflateConfig, DeflateParams};

    const CFG: DeflateConfig = DeflateConfig {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        level: 6,
    };

    #[test]
    fn round_trip_negotiates_permessage_deflate() {
        let client = ClientConfig {
            deflate: Some(CFG),
            ..ClientConfig::new("a", "/")
        };
        let server = ServerConfig {
            deflate: Some(CFG),
            ..ServerConfig::default()
        };
        let request = client_request(&client);
        assert!(text(&request).contains("Sec-WebSocket-Extensions: permessage-deflate"));
        let mut response = Buf::new();
        let server_params = match server_upgrade(&request, &server, &mut NoHooks, &mut response) {
            Upgrade::Upgraded {
                deflate: Some(params),
                ..
            } => params,
            other => panic!("{other:?}"),
        };
        assert!(text(&response).contains("Sec-WebSocket-Extensions: permessage-deflate"));
        match client_response(&response, &client, NONCE).unwrap() {
            ClientUpgrade::Accepted {
                deflate: Some(params),
                ..
            } => assert_eq!(params, server_params),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_without_deflate_config_declines() {
        let req = request_with("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        let (result, out) = default_run(&req);
        assert!(matches!(result, Upgrade::Upgraded { deflate: None, .. }));
        assert!(!text(&out).contains("Extensions"));
        // Unused here, but keeps the import honest if the test above changes.
        let _: Option<DeflateParams> = None;
    }

    #[test]
    fn round_trip_allocates_only_vec_out() {
        // The alloc build uses Vec as an Out as well; same bytes as the heapless one.
        let req = request_with("");
        let mut vec_out = alloc::vec::Vec::new();
        let result = server_upgrade(&req, &ServerConfig::default(), &mut NoHooks, &mut vec_out);
        let (_, heapless_out) = default_run(&req);
        assert_eq!(upgraded(&result).0, req.len());
        assert_eq!(&vec_out[..], &heapless_out[..]);
    }
}
