//! The server side: validate an upgrade request, run the hooks, answer.

// A Rejection carries its header lines inline (no heap on this path), which makes it big;
// it travels at most once per handshake, so the copy costs nothing that matters.
#![allow(clippy::result_large_err)]

use base64::Engine as _;

use super::request::{parse_request, trim, Request};
use super::write::{all_or_nothing, is_field_safe, is_token, put_dec, put_header, reason};
use super::{accept_key, DEFAULT_MAX_REQUEST, MAX_HEADERS};
use crate::session::codec::{CodecError, Out};
#[cfg(feature = "alloc")]
use crate::ws::deflate::{DeflateConfig, DeflateParams};

/// Why an upgrade (or a plain request) was refused, and how to answer it.
///
/// ```
/// use ustack::ws::handshake::Rejection;
/// let r = Rejection::new(403).header("X-Reason", "origin not allowed");
/// assert_eq!(r.status, 403);
/// assert_eq!(r.headers.as_str(), "X-Reason: origin not allowed\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status to answer with; anything outside 200..=599 is answered as 500.
    pub status: u16,
    /// Extra header lines, each `Name: value\r\n`. [`header`](Self::header) keeps this
    /// well-formed; lines written here directly that are not are dropped when answering.
    pub headers: heapless::String<256>,
}

impl Rejection {
    /// A rejection with `status` and no extra headers.
    pub fn new(status: u16) -> Self {
        Rejection {
            status,
            headers: heapless::String::new(),
        }
    }

    /// Adds the header `name: value`.
    ///
    /// The header is dropped (with a `log::warn!` under feature `log`) if it does not fit
    /// in the remaining space or is not a valid header: a truncated or CR/LF-carrying value
    /// would hand the peer a different response than the one meant.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let valid = is_token(name.as_bytes()) && is_field_safe(value.as_bytes());
        let need = name.len() + value.len() + 4;
        if valid && need <= self.headers.capacity() - self.headers.len() {
            for piece in [name, ": ", value, "\r\n"] {
                // Cannot fail: the space was checked above.
                let _ = self.headers.push_str(piece);
            }
        } else {
            #[cfg(feature = "log")]
            log::warn!(
                "ws handshake: dropping rejection header {name:?} ({}); keep extra headers \
                 valid and under 256 bytes in total",
                if valid {
                    "no room"
                } else {
                    "invalid name or value"
                }
            );
        }
        self
    }
}

impl From<u16> for Rejection {
    fn from(status: u16) -> Self {
        Rejection::new(status)
    }
}

/// A complete response to a plain (non-upgrade) GET, produced by
/// [`UpgradeHooks::on_get`]: a status page, the demo's HTML, a JSON counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The status, e.g. 200; anything outside 200..=599 is answered as 500.
    pub status: u16,
    /// The `Content-Type` value, e.g. `text/html; charset=utf-8`.
    pub content_type: &'a str,
    /// The body, sent with a `Content-Length`.
    pub body: &'a [u8],
}

/// Callbacks into the upgrade, in the spirit of gobwas/ws's `Upgrader`. Every method has a
/// default that accepts, so implement only what you need.
///
/// They run after the request has passed the HTTP checks (method, version, `Host` and, for
/// upgrades, the WebSocket headers), in this order: [`on_request`](Self::on_request),
/// [`on_host`](Self::on_host), [`on_header`](Self::on_header) for each header in order,
/// then [`on_before_upgrade`](Self::on_before_upgrade) for an upgrade or
/// [`on_get`](Self::on_get) for a plain GET. The first `Err` stops the handshake and is
/// answered as is.
///
/// ```
/// use ustack::ws::handshake::{Rejection, UpgradeHooks};
/// struct OnlyChat;
/// impl UpgradeHooks for OnlyChat {
///     fn on_request(&mut self, path: &[u8]) -> Result<(), Rejection> {
///         if path == b"/chat" { Ok(()) } else { Err(Rejection::new(404)) }
///     }
/// }
/// ```
pub trait UpgradeHooks {
    /// Sees the request target (path and query), for upgrades and plain GETs alike.
    fn on_request(&mut self, path: &[u8]) -> Result<(), Rejection> {
        let _ = path;
        Ok(())
    }

    /// Sees the `Host` header value.
    fn on_host(&mut self, host: &[u8]) -> Result<(), Rejection> {
        let _ = host;
        Ok(())
    }

    /// Sees every header, in the order they came (including those the handshake itself
    /// reads).
    fn on_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), Rejection> {
        let _ = (name, value);
        Ok(())
    }

    /// Sees the whole, valid upgrade request just before the 101 is written: the place to
    /// check `Origin`, cookies or the offered subprotocols.
    fn on_before_upgrade(&mut self, req: &Request<'_, '_>) -> Result<(), Rejection> {
        let _ = req;
        Ok(())
    }

    /// The upgrade was accepted: the value the session's
    /// [`user_data`](crate::session::Ctx::user_data) starts with, read by
    /// [`WsServer`](crate::ws::WsServer) before `on_open`. One endpoint can serve several
    /// paths this way: note the path in [`on_request`](Self::on_request), return its route
    /// here, and let the listener dispatch on `user_data()`.
    fn session_data(&mut self) -> u64 {
        0
    }

    /// Answers a GET that is not an upgrade. `None` answers 426 Upgrade Required.
    fn on_get(&mut self, req: &Request<'_, '_>) -> Option<Response<'_>> {
        let _ = req;
        None
    }
}

/// No hooks: accepts every valid upgrade and answers plain GETs with 426.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl UpgradeHooks for NoHooks {}

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request, in bytes, including the blank line; larger is answered with
    /// 431. Default [`DEFAULT_MAX_REQUEST`].
    pub max_request: usize,
    /// The subprotocols served. The first protocol the client offers that is in this list
    /// is selected; with none in common, the upgrade goes ahead without one (RFC 6455
    /// leaves refusing to the client).
    pub protocols: &'static [&'static str],
    /// permessage-deflate parameters to accept; `None` declines compression.
    #[cfg(feature = "alloc")]
    pub deflate: Option<DeflateConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request: DEFAULT_MAX_REQUEST,
            protocols: &[],
            #[cfg(feature = "alloc")]
            deflate: None,
        }
    }
}

/// What [`server_upgrade`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade<'b> {
    /// The request is not complete yet (and is within `max_request`): call again with
    /// more bytes. Nothing was written.
    NeedMore,
    /// The 101 was written to `out`; the connection is now WebSocket. Bytes after `used`
    /// already belong to the WebSocket stream (a client may send frames right behind its
    /// request).
    Upgraded {
        /// Bytes of the request, including the blank line that ends it.
        used: usize,
        /// The selected subprotocol, borrowed from the request.
        protocol: Option<&'b str>,
        /// The agreed permessage-deflate parameters, if any.
        #[cfg(feature = "alloc")]
        deflate: Option<DeflateParams>,
    },
    /// Another response was written to `out`: an error status or a hook's page. Send it
    /// and close the connection.
    Responded {
        /// Bytes that were looked at: the request's length, or all of `buf` when it never
        /// became a complete request.
        used: usize,
        /// The status written.
        status: u16,
    },
}

/// Parses and validates the request at the front of `buf`, runs `hooks` and writes the
/// response to `out`.
///
/// Call it with everything received so far until it stops answering
/// [`Upgrade::NeedMore`]. It does not allocate (the header table is on the stack) and
/// never panics on bad input. The response is written whole or not at all: if `out` has no
/// room for it, a bare `500` is written instead if that fits (else nothing) and the result
/// is `Responded { status: 500 }`.
///
/// Refusals: not `GET` → 405 with `Allow: GET`; not HTTP/1.1, no (or several) `Host`,
/// malformed HTTP, `Upgrade`/`Connection` without the `websocket`/`upgrade` tokens, or a
/// `Sec-WebSocket-Key` that is not 16 bytes in base64 → 400; `Sec-WebSocket-Version` other
/// than 13 → 426 with `Sec-WebSocket-Version: 13`; more than `max_request` bytes or
/// [`MAX_HEADERS`] headers → 431; a GET without `Upgrade` goes to
/// [`UpgradeHooks::on_get`], and without a page from it → 426 with `Upgrade: websocket`.
///
/// ```
/// use ustack::ws::handshake::{server_upgrade, NoHooks, ServerConfig, Upgrade};
/// let req = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///             Sec-WebSocket-Version: 13\r\n\r\n";
/// let mut out = heapless::Vec::<u8, 256>::new();
/// let cfg = ServerConfig::default();
///
/// // Partial requests ask for more and write nothing.
/// assert_eq!(server_upgrade(&req[..40], &cfg, &mut NoHooks, &mut out), Upgrade::NeedMore);
/// assert!(out.is_empty());
///
/// match server_upgrade(req, &cfg, &mut NoHooks, &mut out) {
///     Upgrade::Upgraded { used, protocol, .. } => {
///         assert_eq!((used, protocol), (req.len(), None));
///     }
///     other => panic!("{other:?}"),
/// }
/// assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// ```
pub fn server_upgrade<'b>(
    buf: &'b [u8],
    cfg: &ServerConfig,
    hooks: &mut dyn UpgradeHooks,
    out: &mut dyn Out,
) -> Upgrade<'b> {
    let mut table = [httparse::EMPTY_HEADER; MAX_HEADERS];
    // Nothing past the limit is looked at, so the answer does not depend on how the bytes
    // arrived: a request that is too long is 431 whatever follows.
    let buf = &buf[..buf.len().min(cfg.max_request.saturating_add(1))];
    match parse_request(buf, &mut table) {
        Ok(Some((req, used))) if used <= cfg.max_request => answer(&req, used, cfg, hooks, out),
        Ok(Some((_, used))) => refuse(out, used, &Rejection::new(431)),
        // Without this limit a peer could make us buffer headers forever.
        Ok(None) if buf.len() > cfg.max_request => refuse(out, buf.len(), &Rejection::new(431)),
        Ok(None) => Upgrade::NeedMore,
        Err(status) => refuse(out, buf.len(), &Rejection::new(status)),
    }
}

/// Everything after a successful parse.
fn answer<'b>(
    req: &Request<'_, 'b>,
    used: usize,
    cfg: &ServerConfig,
    hooks: &mut dyn UpgradeHooks,
    out: &mut dyn Out,
) -> Upgrade<'b> {
    if req.method != "GET" {
        return refuse(out, used, &Rejection::new(405).header("Allow", "GET"));
    }
    if req.version != 1 {
        return refuse(out, used, &Rejection::new(400));
    }
    // Two Host headers are a request-smuggling smell (RFC 9112 §3.2 says 400).
    let mut hosts = req.headers_named("host");
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host,
        _ => return refuse(out, used, &Rejection::new(400)),
    };

    // Anything carrying Upgrade is meant as an upgrade and is held to the WebSocket rules;
    // only a request without it is an ordinary page fetch.
    if req.headers_named("upgrade").next().is_none() {
        if let Err(rejection) = run_hooks(req, host, hooks) {
            return refuse(out, used, &rejection);
        }
        return match hooks.on_get(req) {
            Some(page) => respond_page(out, used, &page),
            None => refuse(
                out,
                used,
                &Rejection::new(426)
                    .header("Upgrade", "websocket")
                    .header("Sec-WebSocket-Version", "13"),
            ),
        };
    }

    if !req.has_token("upgrade", "websocket") || !req.has_token("connection", "upgrade") {
        return refuse(out, used, &Rejection::new(400));
    }
    if req.header("sec-websocket-version").map(trim) != Some(&b"13"[..]) {
        return refuse(
            out,
            used,
            &Rejection::new(426).header("Sec-WebSocket-Version", "13"),
        );
    }
    let key = match single_key(req) {
        Some(key) => key,
        None => return refuse(out, used, &Rejection::new(400)),
    };

    if let Err(rejection) = run_hooks(req, host, hooks).and_then(|()| hooks.on_before_upgrade(req))
    {
        return refuse(out, used, &rejection);
    }

    let protocol = req.protocols().find(|p| cfg.protocols.contains(p));
    #[cfg(feature = "alloc")]
    let deflate = cfg.deflate.as_ref().and_then(|deflate| {
        DeflateParams::negotiate(req.headers_named("sec-websocket-extensions"), deflate)
    });

    let accept = accept_key(key);
    let written = all_or_nothing(out, |out| {
        out.put(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        )?;
        put_header(out, "Sec-WebSocket-Accept", &accept)?;
        if let Some(protocol) = protocol {
            put_header(out, "Sec-WebSocket-Protocol", protocol.as_bytes())?;
        }
        #[cfg(feature = "alloc")]
        if let Some(deflate) = &deflate {
            out.put(b"Sec-WebSocket-Extensions: ")?;
            deflate.write_response(out)?;
            out.put(b"\r\n")?;
        }
        out.put(b"\r\n")
    });
    match written {
        Ok(()) => Upgrade::Upgraded {
            used,
            protocol,
            #[cfg(feature = "alloc")]
            deflate,
        },
        Err(_) => no_room(out, used),
    }
}

/// The one `Sec-WebSocket-Key`, trimmed, if it is the base64 of exactly 16 bytes.
fn single_key<'b>(req: &Request<'_, 'b>) -> Option<&'b [u8]> {
    let mut keys = req.headers_named("sec-websocket-key");
    let key = trim(keys.next()?);
    if keys.next().is_some() || key.len() != 24 {
        return None;
    }
    // 24 base64 characters decode to at most 18 bytes; the engine rejects non-canonical
    // padding and trailing bits, so only a real 16-byte nonce passes.
    let mut nonce = [0u8; 24];
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(key, &mut nonce)
        .ok()?;
    (len == 16).then_some(key)
}

fn run_hooks(
    req: &Request<'_, '_>,
    host: &[u8],
    hooks: &mut dyn UpgradeHooks,
) -> Result<(), Rejection> {
    hooks.on_request(req.path.as_bytes())?;
    hooks.on_host(host)?;
    for header in req.headers {
        hooks.on_header(header.name.as_bytes(), header.value)?;
    }
    Ok(())
}

/// Statuses a hook may answer with; others (1xx would claim a protocol switch) become 500.
fn sane_status(status: u16) -> u16 {
    if (200..=599).contains(&status) {
        status
    } else {
        500
    }
}

/// True if `extra` is a run of `Name: value\r\n` lines, so it cannot end the head early or
/// smuggle a body.
fn extra_is_valid(extra: &[u8]) -> bool {
    let Some(lines) = extra.strip_suffix(b"\r\n") else {
        return extra.is_empty();
    };
    lines.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (name, value) = line.split_at(colon);
                is_token(name) && is_field_safe(value)
            }
            None => false,
        }
    })
}

/// Writes `HTTP/1.1 <status> <reason>` with `Connection: close`, a `Content-Length`, the
/// optional `Content-Type`, the extra header lines and the body.
fn write_response(
    out: &mut dyn Out,
    status: u16,
    content_type: Option<&str>,
    extra: &[u8],
    body: &[u8],
) -> Result<(), CodecError> {
    all_or_nothing(out, |out| {
        out.put(b"HTTP/1.1 ")?;
        put_dec(out, status.into())?;
        out.put(b" ")?;
        out.put(reason(status).as_bytes())?;
        out.put(b"\r\nConnection: close\r\nContent-Length: ")?;
        put_dec(out, body.len())?;
        out.put(b"\r\n")?;
        if let Some(content_type) = content_type {
            put_header(out, "Content-Type", content_type.as_bytes())?;
        }
        out.put(extra)?;
        out.put(b"\r\n")?;
        out.put(body)
    })
}

fn refuse<'b>(out: &mut dyn Out, used: usize, rejection: &Rejection) -> Upgrade<'b> {
    let status = sane_status(rejection.status);
    let mut extra = rejection.headers.as_bytes();
    if !extra_is_valid(extra) {
        #[cfg(feature = "log")]
        log::warn!("ws handshake: dropping malformed Rejection::headers {extra:?}");
        extra = b"";
    }
    match write_response(out, status, None, extra, b"") {
        Ok(()) => Upgrade::Responded { used, status },
        Err(_) => no_room(out, used),
    }
}

fn respond_page<'b>(out: &mut dyn Out, used: usize, page: &Response<'_>) -> Upgrade<'b> {
    if !is_field_safe(page.content_type.as_bytes()) {
        #[cfg(feature = "log")]
        log::warn!(
            "ws handshake: Response::content_type {:?} has control characters; answering 500",
            page.content_type
        );
        return refuse(out, used, &Rejection::new(500));
    }
    let status = sane_status(page.status);
    match write_response(out, status, Some(page.content_type), b"", page.body) {
        Ok(()) => Upgrade::Responded { used, status },
        Err(_) => no_room(out, used),
    }
}

/// The answer when the real one did not fit in `out`.
fn no_room<'b>(out: &mut dyn Out, used: usize) -> Upgrade<'b> {
    #[cfg(feature = "log")]
    log::warn!("ws handshake: the response does not fit the send buffer; answering 500");
    let _ = write_response(out, 500, None, b"", b"");
    Upgrade::Responded { used, status: 500 }
}
