//! A parsed HTTP/1.1 request that borrows the receive buffer, and the header-value
//! grammar the handshake needs (comma lists, cookies), all without copying.

use httparse::{Header, Status};

use super::MAX_HEADERS;

/// A parsed request, borrowing the bytes it was parsed from (`'b`) and the header table
/// (`'h`).
///
/// ```
/// use ustack::ws::handshake::{parse_request, MAX_HEADERS};
/// let raw = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n";
/// let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
/// let (req, used) = parse_request(raw, &mut headers).unwrap().unwrap();
/// assert_eq!((req.path, used), ("/chat", raw.len()));
/// assert_eq!(req.host(), Some(&b"a"[..]));
/// assert!(req.has_token("connection", "upgrade"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'h, 'b> {
    /// The method, e.g. `GET`.
    pub method: &'b str,
    /// The request target as sent: path and query.
    pub path: &'b str,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The headers in the order they came.
    pub headers: &'h [Header<'b>],
}

impl<'h, 'b> Request<'h, 'b> {
    /// The value of the first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The values of every header called `name`, in order: HTTP lets a list-valued header
    /// be split over several lines.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        // Shorten the table's borrow to 's so the iterator names only lifetimes it may keep.
        let headers: &'s [Header<'b>] = self.headers;
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&'b [u8]> {
        self.header("host")
    }

    /// The `Origin` header (browsers always send it; check it against cross-site use).
    pub fn origin(&self) -> Option<&'b [u8]> {
        self.header("origin")
    }

    /// The `name=value` pairs of every `Cookie` header, with whitespace trimmed. Pieces
    /// without `=` are skipped.
    pub fn cookies(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + 'h {
        let headers: &'h [Header<'b>] = self.headers;
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                let (name, value) = (trim(&pair[..eq]), trim(&pair[eq + 1..]));
                (!name.is_empty()).then_some((name, value))
            })
    }

    /// The subprotocols the client offers, in its order of preference: the tokens of every
    /// `Sec-WebSocket-Protocol` header. Tokens that are not UTF-8 are skipped.
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> + 'h {
        let headers: &'h [Header<'b>] = self.headers;
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .flat_map(|h| comma_list(h.value))
            .filter_map(|t| core::str::from_utf8(t).ok())
    }

    /// True if some header called `header` lists `token` in its comma-separated value
    /// (both compared case-insensitively), as in `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, header: &str, token: &str) -> bool {
        self.headers_named(header)
            .flat_map(comma_list)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// Parses the request at the front of `buf` into `headers`.
///
/// `Ok(None)` means the request is not complete yet: call again with more bytes. `Ok(Some)`
/// gives the request and its length including the blank line; bytes after it are not
/// part of it. `Err` is the status to answer: 431 for more than [`MAX_HEADERS`] headers,
/// 400 for anything else malformed. Size limits are the caller's business (see
/// [`ServerConfig::max_request`](super::ServerConfig::max_request)).
///
/// ```
/// use ustack::ws::handshake::{parse_request, MAX_HEADERS};
/// let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
/// assert!(matches!(parse_request(b"GET / HTTP/1.1\r\nHo", &mut headers), Ok(None)));
/// let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
/// assert_eq!(parse_request(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &mut headers), Err(400));
/// ```
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>; MAX_HEADERS],
) -> Result<Option<(Request<'h, 'b>, usize)>, u16> {
    let mut req = httparse::Request::new(headers);
    let used = match req.parse(buf) {
        Ok(Status::Complete(used)) => used,
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    // A complete parse fills all three; the match keeps that an assumption, not a panic.
    match (req.method, req.path, req.version) {
        (Some(method), Some(path), Some(version)) => Ok(Some((
            Request {
                method,
                path,
                version,
                headers: req.headers,
            },
            used,
        ))),
        _ => Err(400),
    }
}

/// `bytes` without leading and trailing spaces and tabs (HTTP's optional whitespace).
pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(&[])
}

/// The non-empty, trimmed elements of a comma-separated header value.
pub(super) fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}
