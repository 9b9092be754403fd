//! The WebSocket HTTP upgrade (`ustack::ws::handshake`) on arbitrary bytes in arbitrary
//! chunks: the server's `server_upgrade`, the client's `client_response`, and `parse_url`.
//!
//! Input: `[mode, cfg, chunking, bytes...]`.
//!
//! - `mode % 3`: 0 `server_upgrade` on `bytes` as a request, 1 `client_response` on
//!   `bytes` as the answer to a request with the key `"the sample nonce"`, 2 `parse_url`.
//! - `cfg`: bits 0-2 the configuration: server: default, subprotocols `chat`/`superchat`,
//!   deflate (default), deflate with no context takeover and 10-bit windows, a 256-byte
//!   `max_request` with hooks that serve a page on `GET /page` and refuse `/forbidden`
//!   with 403; client: plain, subprotocols, deflate offered. Bit 3: the server answers
//!   into a 160-byte `SliceOut` (too small for most answers: a bare 500 instead).
//! - `chunking`: bits 0-2 the largest chunk (1, 2, 3, 7, 16, 64, 300, 2000 bytes), bits 3-7
//!   seed the chunk sizes.
//!
//! Checks (server): growing prefixes are fed, re-parsed from the start each time, until
//! the answer is not `NeedMore` (which writes nothing); the answer and the bytes written
//! equal those of feeding the whole input at once (`used` too, unless the answer came
//! before the request was complete: then `used` is what was buffered). `Upgraded` has
//! `used` within the buffer, the request (read back with `parse_request` and httparse)
//! complete at `used`, and a `101` whose `Sec-WebSocket-Accept` is `accept_key` of the
//! request's `Sec-WebSocket-Key`, naming the protocol and extension it reports, which
//! ustack's own client accepts. `Responded` wrote `HTTP/1.1 <status> `.
//!
//! Checks (client): the same chunk independence (the result equals the whole input's);
//! `Accepted` only for a complete `HTTP/1.1 101` within the buffer whose accept value
//! matches the key. (`parse_url`): an accepted URL is `ws://` + authority + path as
//! written, and the request ustack's client writes for it is upgraded by ustack's server.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use ustack::session::codec::{Out, SliceOut};
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::{
    accept_key, client_response, parse_request, parse_url, server_upgrade, write_request,
    ClientConfig, ClientUpgrade, NoHooks, Rejection, Request, Response, ServerConfig, Upgrade,
    UpgradeHooks, MAX_HEADERS,
};

const CHUNK_LIMITS: [usize; 8] = [1, 2, 3, 7, 16, 64, 300, 2000];
const PROTOCOLS: &[&str] = &["chat", "superchat"];
const KEY: &[u8; 16] = b"the sample nonce";
const SMALL_OUT: usize = 160;
/// Turns on the checks of findings reported but not fixed yet in `stack/src/ws/` (see
/// "Findings: WebSocket" in `fuzz/README.md`); set it once they are.
const AFTER_FIXES: bool = true;

/// Serves `/page`, refuses `/forbidden`.
struct Pages;

impl UpgradeHooks for Pages {
    fn on_request(&mut self, path: &[u8]) -> Result<(), Rejection> {
        match path {
            b"/forbidden" => Err(Rejection::new(403).header("X-Why", "fuzz")),
            _ => Ok(()),
        }
    }

    fn on_get(&mut self, req: &Request<'_, '_>) -> Option<Response<'_>> {
        (req.path == "/page").then_some(Response {
            status: 200,
            content_type: "text/plain",
            body: b"a page",
        })
    }
}

fn server_config(cfg: u8) -> ServerConfig {
    let mut c = ServerConfig::default();
    match cfg & 7 {
        1 => c.protocols = PROTOCOLS,
        2 => c.deflate = Some(DeflateConfig::default()),
        3 => {
            c.deflate = Some(DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 10,
                ..DeflateConfig::default()
            })
        }
        4 => c.max_request = 256,
        _ => {}
    }
    c
}

fn chunk_ends(len: usize, chunking: u8) -> Vec<usize> {
    let mut x = u32::from(chunking >> 3)
        .wrapping_mul(2654435761)
        .wrapping_add(1);
    let limit = CHUNK_LIMITS[usize::from(chunking & 7)];
    let mut ends = Vec::new();
    let mut at = 0;
    while at < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        at = (at + 1 + x as usize % limit).min(len);
        ends.push(at);
    }
    if ends.is_empty() {
        ends.push(0);
    }
    ends
}

/// An owned `Upgrade`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    NeedMore,
    Upgraded {
        used: usize,
        protocol: Option<String>,
        deflate: Option<ustack::ws::deflate::DeflateParams>,
    },
    Responded {
        used: usize,
        status: u16,
    },
}

/// Runs `server_upgrade` on `buf` with a fresh output; returns the answer and the bytes.
fn upgrade(buf: &[u8], cfg: &ServerConfig, hooks_cfg: u8, small: bool) -> (Answer, Vec<u8>) {
    let mut hooks_pages = Pages;
    let mut no_hooks = NoHooks;
    let hooks: &mut dyn UpgradeHooks = if hooks_cfg & 7 == 4 {
        &mut hooks_pages
    } else {
        &mut no_hooks
    };
    let mut space = [0u8; SMALL_OUT];
    let mut slice = SliceOut::new(&mut space);
    let mut vec = Vec::new();
    let out: &mut dyn Out = if small { &mut slice } else { &mut vec };
    let answer = match server_upgrade(buf, cfg, hooks, out) {
        Upgrade::NeedMore => Answer::NeedMore,
        Upgrade::Upgraded {
            used,
            protocol,
            deflate,
        } => Answer::Upgraded {
            used,
            protocol: protocol.map(str::to_owned),
            deflate,
        },
        Upgrade::Responded { used, status } => Answer::Responded { used, status },
    };
    let written = if small { slice.filled().to_vec() } else { vec };
    (answer, written)
}

/// The request at the front of `buf` is complete: its length.
fn request_len(buf: &[u8]) -> Option<usize> {
    let mut table = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_request(buf, &mut table) {
        Ok(Some((_, used))) => Some(used),
        _ => None,
    }
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(s, |i| i + 1);
    &b[s..e]
}

fn check_server(input: &[u8], cfg_byte: u8, chunking: u8) {
    let cfg = server_config(cfg_byte);
    let small = cfg_byte & 8 != 0;
    let mut last = (Answer::NeedMore, Vec::new(), 0);
    for end in chunk_ends(input.len(), chunking) {
        let (answer, out) = upgrade(&input[..end], &cfg, cfg_byte, small);
        if answer == Answer::NeedMore {
            assert!(out.is_empty(), "NeedMore wrote {} bytes", out.len());
            continue;
        }
        last = (answer, out, end);
        break;
    }
    let (answer, out, end) = last;
    let (whole, whole_out) = upgrade(input, &cfg, cfg_byte, small);

    match (&answer, &whole) {
        (Answer::NeedMore, _) => assert_eq!(whole, Answer::NeedMore),
        (
            Answer::Responded { used, status },
            Answer::Responded {
                used: w_used,
                status: w_status,
            },
        ) if request_len(&input[..end]).is_none() => {
            // Answered before the request was complete (malformed, or over max_request):
            // `used` is what was buffered then.
            // Finding (reported): with a request over `max_request` that is malformed past
            // that point, the chunked server answers 431 as soon as it holds
            // `max_request + 1` bytes, while the whole input is answered 400 (httparse
            // reaches the error first). Both refuse; only the status differs.
            let over = !AFTER_FIXES && *status == 431 && *w_status == 400 && end > cfg.max_request;
            assert!(
                status == w_status || over,
                "chunked {answer:?}, whole {whole:?}"
            );
            // Nothing past max_request + 1 bytes is looked at.
            let seen = |n: usize| n.min(cfg.max_request + 1);
            assert_eq!(*used, seen(end));
            assert!(
                *w_used == seen(input.len()) || *status == 431,
                "whole {whole:?}"
            );
        }
        _ => {
            assert_eq!(answer, whole, "chunked and whole answers differ");
            assert_eq!(out, whole_out, "chunked and whole responses differ");
        }
    }

    match &answer {
        Answer::NeedMore => {}
        Answer::Responded { used, status } => {
            assert!(*used <= end);
            assert!((200..=599).contains(status), "status {status}");
            let head = format!("HTTP/1.1 {status} ");
            assert!(
                out.starts_with(head.as_bytes()),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
            if small {
                assert!(out.len() <= SMALL_OUT);
            }
        }
        Answer::Upgraded {
            used,
            protocol,
            deflate,
        } => {
            assert!(*used <= end, "used {used} of {end}");
            assert_eq!(request_len(&input[..end]), Some(*used));
            // The request, read independently.
            let mut table = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut table);
            let status = req.parse(&input[..*used]).expect("the request parses");
            assert_eq!(status, httparse::Status::Complete(*used));
            assert_eq!(req.method, Some("GET"));
            let keys = header(req.headers, "sec-websocket-key");
            assert_eq!(keys.len(), 1, "one key");
            let key = trim(keys[0]);
            let mut nonce = [0u8; 24];
            let n = base64::engine::general_purpose::STANDARD
                .decode_slice(key, &mut nonce)
                .expect("the key is base64");
            assert_eq!(n, 16, "the key encodes 16 bytes");

            // The response, read independently.
            assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            let mut table = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut table);
            let status = resp.parse(&out).expect("the 101 parses");
            assert_eq!(status, httparse::Status::Complete(out.len()));
            assert_eq!(resp.code, Some(101));
            assert_eq!(
                header(resp.headers, "sec-websocket-accept"),
                vec![&accept_key(key)[..]]
            );
            let protos = header(resp.headers, "sec-websocket-protocol");
            match protocol {
                Some(p) => {
                    assert!(cfg.protocols.contains(&p.as_str()));
                    assert_eq!(protos, vec![p.as_bytes()]);
                }
                None => assert!(protos.is_empty()),
            }
            let exts = header(resp.headers, "sec-websocket-extensions");
            assert_eq!(exts.len(), usize::from(deflate.is_some()));
            assert!(deflate.is_none() || cfg.deflate.is_some());

            if deflate.is_none() {
                // ustack's client takes this 101 for the request's key.
                let mut k = [0u8; 16];
                k.copy_from_slice(&nonce[..16]);
                let mut client = ClientConfig::new("h", "/");
                client.protocols = PROTOCOLS;
                match client_response(&out, &client, &k) {
                    Ok(ClientUpgrade::Accepted {
                        used, protocol: p, ..
                    }) => {
                        assert_eq!(used, out.len());
                        assert_eq!(p, protocol.as_deref());
                    }
                    other => panic!("ustack's client refuses ustack's 101: {other:?}"),
                }
            }
        }
    }
}

fn client_config(cfg: u8) -> ClientConfig<'static> {
    let mut c = ClientConfig::new("example.com", "/chat");
    match cfg % 3 {
        1 => c.protocols = PROTOCOLS,
        2 => c.deflate = Some(DeflateConfig::default()),
        _ => {}
    }
    c
}

fn check_client(input: &[u8], cfg_byte: u8, chunking: u8) {
    let cfg = client_config(cfg_byte);
    let mut last = (Ok(ClientUpgrade::NeedMore), 0);
    for end in chunk_ends(input.len(), chunking) {
        let r = client_response(&input[..end], &cfg, KEY);
        if r == Ok(ClientUpgrade::NeedMore) {
            continue;
        }
        last = (r, end);
        break;
    }
    let (r, end) = last;
    let whole = client_response(input, &cfg, KEY);
    if r != Ok(ClientUpgrade::NeedMore) {
        assert_eq!(r, whole, "chunked and whole results differ");
    } else {
        assert_eq!(whole, Ok(ClientUpgrade::NeedMore));
    }
    if let Ok(ClientUpgrade::Accepted { used, protocol, .. }) = r {
        assert!(used <= end);
        let mut table = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut table);
        let status = resp.parse(&input[..used]).expect("the 101 parses");
        assert_eq!(status, httparse::Status::Complete(used));
        assert_eq!((resp.version, resp.code), (Some(1), Some(101)));
        let mut encoded = [0u8; 24];
        base64::engine::general_purpose::STANDARD
            .encode_slice(KEY, &mut encoded)
            .expect("16 bytes fit");
        let accepts = header(resp.headers, "sec-websocket-accept");
        // Finding (reported): `client_response` reads only the first
        // `Sec-WebSocket-Accept`, so a second one with another value is not refused.
        if AFTER_FIXES {
            assert_eq!(accepts.len(), 1, "several Sec-WebSocket-Accept accepted");
        }
        assert_eq!(trim(accepts[0]), &accept_key(&encoded)[..]);
        if let Some(p) = protocol {
            assert!(cfg.protocols.contains(&p));
        }
    }
}

fn check_url(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(url) = parse_url(text) else {
        return;
    };
    let (scheme, rest) = text.split_once("://").expect("a scheme");
    assert!(scheme.eq_ignore_ascii_case("ws"));
    assert!(rest.starts_with(url.authority));
    let path = &rest[url.authority.len()..];
    assert!(url.path == path || (path.is_empty() && url.path == "/"));
    assert!(url.port != 0);
    assert!(!url.host.is_empty());

    // ustack's client writes a request for it that ustack's server upgrades.
    let mut req = Vec::new();
    write_request(&url.client_config(), KEY, &mut req).expect("the request can be written");
    let (answer, _) = upgrade(&req, &ServerConfig::default(), 0, false);
    assert!(
        matches!(answer, Answer::Upgraded { used, .. } if used == req.len()),
        "{answer:?} for {:?}",
        String::from_utf8_lossy(&req)
    );
}

fuzz_target!(|data: &[u8]| {
    let [mode, cfg, chunking, input @ ..] = data else {
        return;
    };
    match mode % 3 {
        0 => check_server(input, *cfg, *chunking),
        1 => check_client(input, *cfg, *chunking),
        _ => check_url(input),
    }
});
