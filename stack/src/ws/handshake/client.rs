//! The client side: write the upgrade request, check the server's answer.

use base64::Engine as _;
use httparse::Status;

use super::request::{trim, Request};
use super::write::{all_or_nothing, is_field_safe, is_token, put_header};
use super::{accept_key, HandshakeError, DEFAULT_MAX_REQUEST, MAX_HEADERS};
use crate::session::codec::{CodecError, Out};
#[cfg(feature = "alloc")]
use crate::ws::deflate::{DeflateConfig, DeflateParams};

/// What the client asks for.
#[derive(Debug, Clone)]
pub struct ClientConfig<'a> {
    /// The `Host` header value: the host, plus `:port` unless it is 80
    /// ([`WsUrl::authority`](super::WsUrl::authority) is exactly this).
    pub host: &'a str,
    /// The request target (path and query); empty means `/`.
    pub path: &'a str,
    /// The `Origin` header to send, if any (servers checking for browsers may want one).
    pub origin: Option<&'a str>,
    /// The subprotocols to offer, most preferred first; the server may pick one of them.
    pub protocols: &'a [&'a str],
    /// The largest response accepted, in bytes. Default 4096.
    pub max_response: usize,
    /// permessage-deflate to offer; `None` offers no compression.
    #[cfg(feature = "alloc")]
    pub deflate: Option<DeflateConfig>,
}

impl<'a> ClientConfig<'a> {
    /// A request for `path` on `host`: no `Origin`, no subprotocols, no compression.
    pub fn new(host: &'a str, path: &'a str) -> Self {
        ClientConfig {
            host,
            path,
            origin: None,
            protocols: &[],
            max_response: DEFAULT_MAX_REQUEST,
            #[cfg(feature = "alloc")]
            deflate: None,
        }
    }
}

/// What [`client_response`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientUpgrade<'b> {
    /// The response is not complete yet: call again with more bytes.
    NeedMore,
    /// The server switched to WebSocket.
    Accepted {
        /// Bytes of the response, including the blank line; what follows is already
        /// WebSocket data.
        used: usize,
        /// The subprotocol the server selected, borrowed from the response; `None` if it
        /// selected none (decide yourself whether to go on without).
        protocol: Option<&'b str>,
        /// The agreed permessage-deflate parameters, if the server accepted the offer.
        #[cfg(feature = "alloc")]
        deflate: Option<DeflateParams>,
    },
}

/// Writes the GET upgrade request for `cfg`, with `key` (16 random bytes the caller drew,
/// fresh for every connection) as `Sec-WebSocket-Key` in base64.
///
/// The request is written whole or not at all: [`CodecError::NoRoom`] if `out` is too
/// small, [`CodecError::Malformed`] if a configured value cannot go into a header (control
/// characters, a subprotocol that is not a token).
///
/// ```
/// use ustack::ws::handshake::{write_request, ClientConfig};
/// let mut out = Vec::new();
/// let cfg = ClientConfig::new("example.com:9001", "/chat");
/// write_request(&cfg, b"the sample nonce", &mut out).unwrap();
/// assert!(out.starts_with(b"GET /chat HTTP/1.1\r\nHost: example.com:9001\r\n"));
/// assert!(out.windows(43).any(|w| w == b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="));
/// ```
pub fn write_request(
    cfg: &ClientConfig<'_>,
    key: &[u8; 16],
    out: &mut dyn Out,
) -> Result<(), CodecError> {
    if cfg.host.is_empty() || !cfg.host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CodecError::Malformed(
            "ClientConfig::host must be a non-empty host[:port] without spaces",
        ));
    }
    if !cfg.path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CodecError::Malformed(
            "ClientConfig::path has spaces, control or non-ASCII characters; percent-encode them",
        ));
    }
    if cfg.origin.is_some_and(|o| !is_field_safe(o.as_bytes())) {
        return Err(CodecError::Malformed(
            "ClientConfig::origin has control characters",
        ));
    }
    if !cfg.protocols.iter().all(|p| is_token(p.as_bytes())) {
        return Err(CodecError::Malformed(
            "ClientConfig::protocols must be HTTP tokens (no spaces, commas or separators)",
        ));
    }

    let mut encoded = [0u8; 24];
    // 16 bytes always encode to exactly 24.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(key, &mut encoded);

    all_or_nothing(out, |out| {
        out.put(b"GET ")?;
        // The request target must start with '/', even for "ws://host?query".
        if !cfg.path.starts_with('/') {
            out.put(b"/")?;
        }
        out.put(cfg.path.as_bytes())?;
        out.put(b" HTTP/1.1\r\n")?;
        put_header(out, "Host", cfg.host.as_bytes())?;
        out.put(b"Upgrade: websocket\r\nConnection: Upgrade\r\n")?;
        put_header(out, "Sec-WebSocket-Key", &encoded)?;
        out.put(b"Sec-WebSocket-Version: 13\r\n")?;
        if let Some(origin) = cfg.origin {
            put_header(out, "Origin", origin.as_bytes())?;
        }
        if let Some((first, rest)) = cfg.protocols.split_first() {
            out.put(b"Sec-WebSocket-Protocol: ")?;
            out.put(first.as_bytes())?;
            for protocol in rest {
                out.put(b", ")?;
                out.put(protocol.as_bytes())?;
            }
            out.put(b"\r\n")?;
        }
        #[cfg(feature = "alloc")]
        if let Some(deflate) = &cfg.deflate {
            out.put(b"Sec-WebSocket-Extensions: ")?;
            DeflateParams::write_offer(deflate, out)?;
            out.put(b"\r\n")?;
        }
        out.put(b"\r\n")
    })
}

/// Checks the server's response at the front of `buf` against the request written with
/// `cfg` and `key`.
///
/// Requires status 101 (else [`HandshakeError::Status`]), `Upgrade: websocket`,
/// `Connection: upgrade`, the `Sec-WebSocket-Accept` matching `key`, a subprotocol only if
/// one was offered and then one of those, and an extension only if permessage-deflate was
/// offered (and then only that, with parameters the offer allows).
///
/// ```
/// use ustack::ws::handshake::{accept_key, client_response, ClientConfig, ClientUpgrade};
/// let key = b"the sample nonce";
/// let cfg = ClientConfig::new("example.com", "/chat");
/// let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// assert_eq!(client_response(&response[..20], &cfg, key), Ok(ClientUpgrade::NeedMore));
/// match client_response(response, &cfg, key).unwrap() {
///     ClientUpgrade::Accepted { used, protocol, .. } => {
///         assert_eq!((used, protocol), (response.len(), None));
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn client_response<'b>(
    buf: &'b [u8],
    cfg: &ClientConfig<'_>,
    key: &[u8; 16],
) -> Result<ClientUpgrade<'b>, HandshakeError> {
    let mut table = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut table);
    let used = match response.parse(buf) {
        Ok(Status::Complete(used)) => used,
        Ok(Status::Partial) if buf.len() > cfg.max_response => {
            return Err(HandshakeError::TooLarge {
                max: cfg.max_response,
            })
        }
        Ok(Status::Partial) => return Ok(ClientUpgrade::NeedMore),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::Malformed("more than 32 header lines"))
        }
        Err(_) => {
            return Err(HandshakeError::Malformed(
                "not an HTTP/1.x status line followed by headers",
            ))
        }
    };
    if used > cfg.max_response {
        return Err(HandshakeError::TooLarge {
            max: cfg.max_response,
        });
    }
    match response.code {
        Some(101) => {}
        Some(code) => return Err(HandshakeError::Status(code)),
        None => return Err(HandshakeError::Malformed("no status code")),
    }
    if response.version != Some(1) {
        return Err(HandshakeError::Malformed("a 101 must be HTTP/1.1"));
    }
    // Request's header helpers work on any header table.
    let view = Request {
        method: "",
        path: "",
        version: 1,
        headers: response.headers,
    };
    if !view.has_token("upgrade", "websocket") {
        return Err(HandshakeError::Missing("Upgrade: websocket"));
    }
    if !view.has_token("connection", "upgrade") {
        return Err(HandshakeError::Missing("Connection: Upgrade"));
    }

    let mut encoded = [0u8; 24];
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(key, &mut encoded);
    let mut accepts = view.headers_named("sec-websocket-accept").map(trim);
    match (accepts.next(), accepts.next()) {
        (None, _) => return Err(HandshakeError::Missing("Sec-WebSocket-Accept")),
        // Two answers cannot both be right (RFC 6455 §4.1): fail rather than pick one.
        (Some(_), Some(_)) => return Err(HandshakeError::BadAccept),
        (Some(accept), None) if accept != accept_key(&encoded) => {
            return Err(HandshakeError::BadAccept)
        }
        (Some(_), None) => {}
    }

    let protocol = selected_protocol(&view, cfg)?;

    let mut extensions = view
        .headers_named("sec-websocket-extensions")
        .map(trim)
        .filter(|v| !v.is_empty());
    let extension = match (extensions.next(), extensions.next()) {
        (None, _) => None,
        (Some(value), None) if !value.contains(&b',') => Some(value),
        _ => {
            return Err(HandshakeError::Extension(
                "the server accepted more than one extension",
            ))
        }
    };
    #[cfg(feature = "alloc")]
    let deflate = match (extension, &cfg.deflate) {
        (None, _) => None,
        (Some(value), Some(deflate)) => Some(
            DeflateParams::from_response(value, deflate)
                .map_err(|e| HandshakeError::Extension(e.0))?,
        ),
        (Some(_), None) => return Err(not_offered()),
    };
    #[cfg(not(feature = "alloc"))]
    if extension.is_some() {
        return Err(not_offered());
    }

    Ok(ClientUpgrade::Accepted {
        used,
        protocol,
        #[cfg(feature = "alloc")]
        deflate,
    })
}

fn not_offered() -> HandshakeError {
    HandshakeError::Extension("the server selected an extension that was not offered")
}

fn selected_protocol<'b>(
    view: &Request<'_, 'b>,
    cfg: &ClientConfig<'_>,
) -> Result<Option<&'b str>, HandshakeError> {
    let mut selected = view
        .headers_named("sec-websocket-protocol")
        .map(trim)
        .filter(|v| !v.is_empty());
    let Some(value) = selected.next() else {
        return Ok(None);
    };
    if selected.next().is_some() {
        return Err(HandshakeError::Protocol(
            "the server selected more than one subprotocol",
        ));
    }
    if cfg.protocols.is_empty() {
        return Err(HandshakeError::Protocol(
            "the server selected a subprotocol although none was offered",
        ));
    }
    match core::str::from_utf8(value) {
        Ok(protocol) if cfg.protocols.contains(&protocol) => Ok(Some(protocol)),
        _ => Err(HandshakeError::Protocol(
            "the server selected a subprotocol that was not offered",
        )),
    }
}
