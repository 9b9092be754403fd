//! Negotiating permessage-deflate parameters.
//!
//! The header grammar is RFC 6455 §9.1 (`name; param[=token|quoted-string], ...`); the
//! parameter rules are RFC 7692 §7.1. Parsing never allocates and never panics: any byte
//! sequence either yields an offer, is skipped as another extension, or is declined.

use core::fmt;

use crate::session::codec::{CodecError, Out};

/// The extension's token in `Sec-WebSocket-Extensions`.
const NAME: &[u8] = b"permessage-deflate";

/// What this side is willing to negotiate.
///
/// ```
/// use ustack::ws::deflate::{DeflateConfig, DeflateParams};
/// // A server that wants to keep nothing between the messages it sends.
/// let cfg = DeflateConfig { server_no_context_takeover: true, ..DeflateConfig::default() };
/// let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
/// let params = DeflateParams::negotiate([offer].into_iter(), &cfg).unwrap();
/// let mut out = Vec::new();
/// params.write_response(&mut out).unwrap();
/// assert_eq!(out, b"permessage-deflate; server_no_context_takeover");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Server: always answer `server_no_context_takeover` (the server then keeps no
    /// compression window between messages). Client: ask for it.
    pub server_no_context_takeover: bool,
    /// Server: always answer `client_no_context_takeover` (the peer's messages are then
    /// inflated without a kept window). Client: offer it.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window (bits, 8..=15) the server side compresses with. Values
    /// outside that range are clamped into it.
    pub server_max_window_bits: u8,
    /// The largest window (bits, 8..=15) the client side compresses with. Values outside
    /// that range are clamped into it.
    pub client_max_window_bits: u8,
    /// Compression level, 0..=10 (miniz_oxide's scale).
    pub level: u8,
}

impl Default for DeflateConfig {
    /// Context takeover both ways and full 32 KiB windows: that is what compresses a stream
    /// of similar messages best, and what browsers offer. Level 6 is zlib's default: in
    /// miniz_oxide the level changes only how hard matches are searched, never memory, and
    /// above 6 the CPU cost grows much faster than the ratio improves.
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
        }
    }
}

/// What was agreed for one connection.
///
/// ```
/// use ustack::ws::deflate::{DeflateConfig, DeflateParams};
/// let cfg = DeflateConfig { client_max_window_bits: 12, ..DeflateConfig::default() };
/// let mut offer = Vec::new();
/// DeflateParams::write_offer(&cfg, &mut offer).unwrap();
/// assert_eq!(offer, b"permessage-deflate; client_max_window_bits=12");
/// let params = DeflateParams::from_response(b"permessage-deflate; client_max_window_bits=10", &cfg).unwrap();
/// assert_eq!(params.client_max_window_bits, 10);
/// assert_eq!(params.server_max_window_bits, 15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's window, in bits.
    pub server_max_window_bits: u8,
    /// The client's window, in bits.
    pub client_max_window_bits: u8,
}

/// A malformed or unacceptable `Sec-WebSocket-Extensions` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtError(pub &'static str);

impl fmt::Display for ExtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad permessage-deflate negotiation: {}", self.0)
    }
}

/// One parsed `permessage-deflate` element (offer or response).
#[derive(Debug, Default)]
struct Element {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (legal in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

impl DeflateParams {
    /// Server side: the first acceptable `permessage-deflate` offer among the request's
    /// `Sec-WebSocket-Extensions` values, or `None` to run without compression.
    pub fn negotiate<'a>(
        values: impl Iterator<Item = &'a [u8]>,
        cfg: &DeflateConfig,
    ) -> Option<DeflateParams> {
        for value in values {
            let mut lex = Lexer::new(value);
            while let Some(name) = lex.element() {
                let offer = match name {
                    Ok(name) if name.eq_ignore_ascii_case(NAME) => {
                        parse_element(&mut lex).map(Some)
                    }
                    // Another extension: its parameters only need to be stepped over.
                    Ok(_) => skip_params(&mut lex).map(|()| None),
                    Err(e) => Err(e),
                };
                match offer {
                    Ok(Some(offer)) => return Some(Self::answer(&offer, cfg)),
                    Ok(None) => {}
                    // A broken element must not hide a good offer after it (RFC 7692 §5:
                    // offers are tried in order), so resynchronise at the next comma.
                    Err(_) => lex.recover(),
                }
            }
        }
        None
    }

    /// Every syntactically valid offer is acceptable: any server window is honoured by
    /// chunked compression, and our inflater always has 32 KiB, so any client window works.
    fn answer(offer: &Element, cfg: &DeflateConfig) -> DeflateParams {
        let server_cap = clamp_bits(cfg.server_max_window_bits);
        let client_cap = clamp_bits(cfg.client_max_window_bits);
        DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || cfg.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || cfg.client_no_context_takeover,
            server_max_window_bits: offer.server_max_window_bits.unwrap_or(15).min(server_cap),
            // Without the parameter in the offer the client may not understand a limit,
            // so none can be imposed (RFC 7692 §7.1.2.2).
            client_max_window_bits: match offer.client_max_window_bits {
                Some(v) => v.unwrap_or(15).min(client_cap),
                None => 15,
            },
        }
    }

    /// Server side: the response value (`permessage-deflate; ...`, no header name, no CRLF).
    ///
    /// Window sizes are written only when below 15: a full window is the default. Written
    /// entirely or not at all.
    pub fn write_response(&self, out: &mut dyn Out) -> Result<(), CodecError> {
        let mut buf = Line::new();
        buf.push(NAME);
        if self.server_no_context_takeover {
            buf.push(b"; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            buf.push(b"; client_no_context_takeover");
        }
        let server = clamp_bits(self.server_max_window_bits);
        if server < 15 {
            buf.push(b"; server_max_window_bits=");
            buf.push_bits(server);
        }
        let client = clamp_bits(self.client_max_window_bits);
        if client < 15 {
            buf.push(b"; client_max_window_bits=");
            buf.push_bits(client);
        }
        buf.write_to(out)
    }

    /// Client side: the offer value for `cfg`.
    ///
    /// `client_max_window_bits` is always offered (with a value when below 15) so that a
    /// server wanting a smaller client window can say so instead of declining.
    pub fn write_offer(cfg: &DeflateConfig, out: &mut dyn Out) -> Result<(), CodecError> {
        let mut buf = Line::new();
        buf.push(NAME);
        if cfg.server_no_context_takeover {
            buf.push(b"; server_no_context_takeover");
        }
        if cfg.client_no_context_takeover {
            buf.push(b"; client_no_context_takeover");
        }
        let server = clamp_bits(cfg.server_max_window_bits);
        if server < 15 {
            buf.push(b"; server_max_window_bits=");
            buf.push_bits(server);
        }
        buf.push(b"; client_max_window_bits");
        let client = clamp_bits(cfg.client_max_window_bits);
        if client < 15 {
            buf.push(b"=");
            buf.push_bits(client);
        }
        buf.write_to(out)
    }

    /// Client side: checks the server's response value against what `cfg` offered
    /// (through [`write_offer`](Self::write_offer)), RFC 7692 §7.1.
    pub fn from_response(value: &[u8], cfg: &DeflateConfig) -> Result<DeflateParams, ExtError> {
        let mut lex = Lexer::new(value);
        let mut found = None;
        while let Some(name) = lex.element() {
            let name = name?;
            if !name.eq_ignore_ascii_case(NAME) {
                return Err(ExtError(
                    "the server accepted an extension that was not offered",
                ));
            }
            let element = parse_element(&mut lex)?;
            if found.replace(element).is_some() {
                return Err(ExtError("permessage-deflate accepted twice"));
            }
        }
        let resp = found.ok_or(ExtError("no permessage-deflate in the response"))?;

        // An accepted offer is accepted with all its parameters (RFC 7692 §7.1.1.1,
        // §7.1.2.1): a response dropping one answers an offer we did not make.
        if cfg.server_no_context_takeover && !resp.server_no_context_takeover {
            return Err(ExtError(
                "server_no_context_takeover was requested but not accepted",
            ));
        }
        let offered_server = clamp_bits(cfg.server_max_window_bits);
        let server = match resp.server_max_window_bits {
            Some(bits) if bits > offered_server => {
                return Err(ExtError("server_max_window_bits is larger than offered"))
            }
            Some(bits) => bits,
            None if offered_server < 15 => {
                return Err(ExtError(
                    "server_max_window_bits was requested but not accepted",
                ))
            }
            None => 15,
        };
        let offered_client = clamp_bits(cfg.client_max_window_bits);
        let client = match resp.client_max_window_bits {
            Some(None) => return Err(ExtError("client_max_window_bits needs a value")),
            Some(Some(bits)) if bits > offered_client => {
                return Err(ExtError("client_max_window_bits is larger than offered"))
            }
            Some(Some(bits)) => bits,
            // Our own offer is a promise to stay within it, answered or not.
            None => offered_client,
        };
        Ok(DeflateParams {
            server_no_context_takeover: resp.server_no_context_takeover,
            client_no_context_takeover: resp.client_no_context_takeover
                || cfg.client_no_context_takeover,
            server_max_window_bits: server,
            client_max_window_bits: client,
        })
    }
}

/// Window bits as the RFC allows them (8..=15), whatever a configuration holds.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(8, 15)
}

/// The parameters of one `permessage-deflate` element, up to the next comma.
fn parse_element(lex: &mut Lexer<'_>) -> Result<Element, ExtError> {
    let mut el = Element::default();
    // Tracked apart from the values because `client_max_window_bits` may come bare.
    let mut seen = [false; 4];
    while let Some((name, value)) = lex.param()? {
        let (slot, dup) = if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            no_value(value)?;
            el.server_no_context_takeover = true;
            (0, seen[0])
        } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            no_value(value)?;
            el.client_no_context_takeover = true;
            (1, seen[1])
        } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
            let value = value.ok_or(ExtError("server_max_window_bits needs a value"))?;
            el.server_max_window_bits = Some(window_bits(value)?);
            (2, seen[2])
        } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
            el.client_max_window_bits = Some(value.map(window_bits).transpose()?);
            (3, seen[3])
        } else {
            return Err(ExtError("unknown parameter"));
        };
        if dup {
            return Err(ExtError("duplicated parameter"));
        }
        seen[slot] = true;
    }
    Ok(el)
}

/// Steps over the parameters of an extension we do not implement.
fn skip_params(lex: &mut Lexer<'_>) -> Result<(), ExtError> {
    while lex.param()?.is_some() {}
    Ok(())
}

fn no_value(value: Option<Value<'_>>) -> Result<(), ExtError> {
    match value {
        None => Ok(()),
        Some(_) => Err(ExtError("a no_context_takeover parameter takes no value")),
    }
}

/// `1*DIGIT` without leading zero, 8..=15 (RFC 7692 §7.1.2.1); a quoted string counts by
/// its unescaped content (RFC 6455 §9.1).
fn window_bits(value: Value<'_>) -> Result<u8, ExtError> {
    const BAD: ExtError = ExtError("window bits must be a decimal 8..=15");
    // Two digits at most: anything longer is out of range anyway.
    let mut digits = [0u8; 2];
    let mut n = 0;
    for c in value.chars() {
        if n == digits.len() {
            return Err(BAD);
        }
        digits[n] = c;
        n += 1;
    }
    let bits = match &digits[..n] {
        [d @ b'8'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'5'] => 10 + d - b'0',
        _ => return Err(BAD),
    };
    Ok(bits)
}

/// A parameter value as it appeared.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    /// The content between the quotes, escapes still in.
    Quoted(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value's characters with quoting undone.
    fn chars(self) -> impl Iterator<Item = u8> + 'a {
        let (raw, quoted) = match self {
            Value::Token(raw) => (raw, false),
            Value::Quoted(raw) => (raw, true),
        };
        let mut escaped = false;
        raw.iter().copied().filter(move |&c| {
            if quoted && !escaped && c == b'\\' {
                escaped = true;
                return false;
            }
            escaped = false;
            true
        })
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// One `name[=value]` of an element.
type Param<'a> = (&'a [u8], Option<Value<'a>>);

/// A cursor over one header value.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer { s, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<&'a [u8], ExtError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        match self.s.get(start..self.i) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(ExtError("expected a token")),
        }
    }

    /// The next element's name, skipping empty list elements (RFC 7230 §7); `None` at the
    /// end of the value.
    fn element(&mut self) -> Option<Result<&'a [u8], ExtError>> {
        loop {
            self.ows();
            match self.peek()? {
                b',' => self.i += 1,
                _ => return Some(self.token()),
            }
        }
    }

    /// The next `; name[=value]` of the current element; `None` at its end (a comma,
    /// which is left for [`element`](Self::element), or the end of the value).
    fn param(&mut self) -> Result<Option<Param<'a>>, ExtError> {
        self.ows();
        match self.peek() {
            None | Some(b',') => return Ok(None),
            Some(b';') => self.i += 1,
            Some(_) => return Err(ExtError("expected ';' or ','")),
        }
        self.ows();
        let name = self.token()?;
        self.ows();
        if self.peek() != Some(b'=') {
            return Ok(Some((name, None)));
        }
        self.i += 1;
        self.ows();
        let value = if self.peek() == Some(b'"') {
            self.i += 1;
            let start = self.i;
            loop {
                match self.peek() {
                    None => return Err(ExtError("unterminated quoted string")),
                    Some(b'"') => break,
                    Some(b'\\') => self.i += 2,
                    Some(_) => self.i += 1,
                }
            }
            let raw = self.s.get(start..self.i).unwrap_or_default();
            self.i += 1;
            Value::Quoted(raw)
        } else {
            Value::Token(self.token()?)
        };
        Ok(Some((name, Some(value))))
    }

    /// After an error: move past the next comma outside a quoted string.
    fn recover(&mut self) {
        let mut quoted = false;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' if quoted => self.i += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }
}

/// The longest line written: every parameter with two-digit values.
const LINE_MAX: usize = 128;

/// Builds a value on the stack so that it reaches `out` entirely or not at all.
struct Line(heapless::Vec<u8, LINE_MAX>);

impl Line {
    fn new() -> Self {
        Line(heapless::Vec::new())
    }

    fn push(&mut self, bytes: &[u8]) {
        // Cannot overflow: the longest combination of fixed strings fits LINE_MAX (checked
        // by a test), so ignoring the error loses nothing.
        let _ = self.0.extend_from_slice(bytes);
    }

    fn push_bits(&mut self, bits: u8) {
        if bits >= 10 {
            self.push(&[b'1', b'0' + bits - 10]);
        } else {
            self.push(&[b'0' + bits]);
        }
    }

    fn write_to(&self, out: &mut dyn Out) -> Result<(), CodecError> {
        let room = out.room();
        if room < self.0.len() {
            return Err(CodecError::NoRoom {
                need: self.0.len(),
                room,
            });
        }
        out.put(&self.0)
    }
}
