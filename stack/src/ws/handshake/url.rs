//! `ws://` URLs: just enough of RFC 3986 to find the host, port and request target.

use super::{ClientConfig, HandshakeError};

/// The parts of a `ws://` URL a client needs, borrowed from the URL.
///
/// ```
/// use ustack::ws::handshake::parse_url;
/// let url = parse_url("ws://[::1]:9001/echo?x=1").unwrap();
/// assert_eq!((url.host, url.port, url.path), ("::1", 9001, "/echo?x=1"));
/// assert_eq!(url.authority, "[::1]:9001");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsUrl<'a> {
    /// The host name or address, without the brackets of an IPv6 literal, so it can be
    /// resolved or parsed as an address directly.
    pub host: &'a str,
    /// The port; 80 when the URL names none.
    pub port: u16,
    /// The request target: the path and query; `/` if the URL has no path.
    pub path: &'a str,
    /// `host[:port]` exactly as written (brackets included): the `Host` header value.
    pub authority: &'a str,
}

impl<'a> WsUrl<'a> {
    /// A [`ClientConfig`] for this URL (`Host` from [`authority`](Self::authority)).
    pub fn client_config(&self) -> ClientConfig<'a> {
        ClientConfig::new(self.authority, self.path)
    }
}

/// Splits a `ws://host[:port][/path][?query]` URL.
///
/// Refuses `wss://` (ustack has no TLS: terminate TLS in a proxy in front of it), other
/// schemes, user info, fragments, and hosts or paths with characters that could not be
/// sent in the request as they are.
///
/// ```
/// use ustack::ws::handshake::{parse_url, HandshakeError};
/// let url = parse_url("ws://example.com").unwrap();
/// assert_eq!((url.host, url.port, url.path), ("example.com", 80, "/"));
/// assert!(matches!(parse_url("wss://example.com/"), Err(HandshakeError::Url(_))));
/// ```
pub fn parse_url(url: &str) -> Result<WsUrl<'_>, HandshakeError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(HandshakeError::Url("expected ws://host[:port]/path"));
    };
    if scheme.eq_ignore_ascii_case("wss") {
        return Err(HandshakeError::Url(
            "wss:// needs TLS, which ustack does not implement; put a TLS-terminating proxy \
             (stunnel, nginx, a load balancer) in front and connect to it with ws://",
        ));
    }
    if !scheme.eq_ignore_ascii_case("ws") {
        return Err(HandshakeError::Url(
            "only ws:// URLs are supported (expected ws://host[:port]/path)",
        ));
    }

    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if path.contains('#') {
        return Err(HandshakeError::Url(
            "fragments (#...) are not allowed in WebSocket URLs (RFC 6455 §3); remove them",
        ));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HandshakeError::Url(
            "the path has spaces, control or non-ASCII characters; percent-encode them",
        ));
    }
    if authority.contains('@') {
        return Err(HandshakeError::Url(
            "user:password@ is not supported; send credentials in a header or the path",
        ));
    }

    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None | Some("") => 80,
        Some(text) => match text.parse::<u16>() {
            // parse() would also take "+80".
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(HandshakeError::Url(
                    "the port must be a number from 1 to 65535",
                ))
            }
        },
    };
    Ok(WsUrl {
        host,
        port,
        path: if path.is_empty() { "/" } else { path },
        authority,
    })
}

/// `host` and the text after `:`, with IPv6 brackets removed.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), HandshakeError> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(HandshakeError::Url("an IPv6 address needs its closing ']'"));
        };
        let valid = host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !valid {
            return Err(HandshakeError::Url(
                "the text in [brackets] is not an IPv6 address",
            ));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(HandshakeError::Url(
                    "expected ':port' after the IPv6 address",
                )),
            },
        };
    }

    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(HandshakeError::Url("the URL has no host"));
    }
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    if !valid {
        return Err(HandshakeError::Url(
            "the host has characters not allowed in a host name \
             (write IPv6 addresses in brackets: ws://[::1]:80/)",
        ));
    }
    Ok((host, port))
}
