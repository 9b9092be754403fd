//! Messages over frames: the sans-IO WebSocket connection after the handshake.
//!
//! [`WsConn::read`] takes the received bytes, one frame per call, and says what they were:
//! a whole message, a ping, a pong, a close, or nothing yet (a fragment, or a frame that is
//! still arriving). It enforces every RFC 6455 rule a receiver must fail on, and on failure
//! writes the close frame with the right code before returning the error. Automatic
//! replies (the pong to a ping, the close echo) go to the `out` it is given.
//!
//! A message in one frame is handed out where it lies, unmasked in place. A fragmented
//! (or compressed) message is assembled in a [`MsgBuf`] the caller owns: a heap vector, or
//! a fixed slice on firmware.
//!
//! ```
//! use ustack::ws::{conn::{Event, Message, MsgBuf, Step, WsConfig, WsConn}, Role};
//! let mut server = WsConn::new(Role::Server, WsConfig::default());
//! let mut client = WsConn::new(Role::Client, WsConfig::default());
//! let mut wire = Vec::new();
//! client.write_message(Message::Text("hi"), &mut wire).unwrap();
//! let (mut store, mut replies) = (MsgBuf::heap(), Vec::new());
//! match server.read(&mut wire, &mut store, &mut replies).unwrap() {
//!     Step::Frame { used, event: Some(Event::Message(Message::Text(t))) } => {
//!         assert_eq!((t, used), ("hi", 8)); // 2 + 4 (mask) + 2
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use core::fmt;

use super::close::{parse_close, CloseCode};
#[cfg(feature = "alloc")]
use super::deflate::{Deflate, DeflateParams, InflateError};
use super::frame::{
    apply_mask, FrameHeader, HeaderBytes, Opcode, MAX_CONTROL_PAYLOAD, RSV1, RSV2, RSV3,
};
use super::keys::KeyStream;
use super::utf8::Utf8Stream;
use super::Role;
use crate::session::codec::{CodecError, Out};

/// The default largest message, after decompression: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

/// A heap [`MsgBuf`] keeps at most this much capacity between messages, so an idle
/// connection does not hold on to the buffer of its largest message.
#[cfg(feature = "alloc")]
const KEEP_CAPACITY: usize = 4096;

/// Text frames up to this long are validated as they arrive (the reader asks to be
/// called again for every new byte); longer ones are checked once complete, so that the
/// caller can assemble them knowing their length.
const LOOK_AHEAD_MAX: usize = 64 << 10;

/// How a connection behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsConfig {
    /// The largest message accepted (after decompression); larger ones fail with 1009.
    pub max_message_size: usize,
    /// Answer every ping with a pong at once.
    pub auto_pong: bool,
    /// With permessage-deflate, messages shorter than this are sent uncompressed (RFC 7692
    /// allows it per message). 0, the default, compresses every message, which is what peers
    /// expect; raising it to ~32 saves CPU on tiny messages deflate cannot shrink.
    pub compress_min: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: DEFAULT_MAX_MESSAGE,
            auto_pong: true,
            compress_min: 0,
        }
    }
}

/// A whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'b> {
    /// A text message, valid UTF-8.
    Text(&'b str),
    /// A binary message.
    Binary(&'b [u8]),
}

impl<'b> Message<'b> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'b [u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The opcode the message starts with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Message::Text(_) => Opcode::Text,
            Message::Binary(_) => Opcode::Binary,
        }
    }
}

/// What a frame amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'b> {
    /// A message is complete.
    Message(Message<'b>),
    /// A ping (already answered when `auto_pong` is on).
    Ping(&'b [u8]),
    /// A pong, solicited or not.
    Pong(&'b [u8]),
    /// The peer's close: its code and reason (`None`: it sent no code). Our close frame
    /// has been written too, if it had not been already.
    Close(Option<(CloseCode, &'b str)>),
}

/// How far [`WsConn::read`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'b> {
    /// One frame was consumed.
    Frame {
        /// Bytes of it, header included.
        used: usize,
        /// What it completed, if anything (a fragment completes nothing).
        event: Option<Event<'b>>,
    },
    /// The next frame is not all there yet.
    NeedMore {
        /// Its length in bytes, header included, once the header is in.
        total: Option<usize>,
    },
}

/// A received frame or message broke the protocol: the code the connection was failed
/// with (the close frame was written) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    /// The close code sent to the peer.
    pub code: CloseCode,
    /// What the peer did.
    pub what: &'static str,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket closed with {}: {}", self.code, self.what)
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// A close frame was already sent: nothing may follow it (§5.5.1).
    Closed,
    /// A control frame's payload is over 125 bytes, or it is not final.
    ControlTooLong,
    /// The output had no room.
    NoRoom,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteError::Closed => "the close frame was sent; nothing may be sent after it",
            WriteError::ControlTooLong => "control frame payloads are limited to 125 bytes",
            WriteError::NoRoom => "the output buffer has no room for the frame",
        })
    }
}

impl From<CodecError> for WriteError {
    fn from(_: CodecError) -> Self {
        WriteError::NoRoom
    }
}

/// Where fragmented and compressed messages are assembled.
#[derive(Debug)]
pub struct MsgBuf<'a> {
    buf: Buf<'a>,
}

#[derive(Debug)]
enum Buf<'a> {
    #[cfg(feature = "alloc")]
    Heap(alloc::vec::Vec<u8>),
    Slice(&'a mut [u8], usize),
}

impl<'a> MsgBuf<'a> {
    /// A growing buffer (bounded by the connection's `max_message_size`).
    #[cfg(feature = "alloc")]
    pub fn heap() -> MsgBuf<'static> {
        MsgBuf {
            buf: Buf::Heap(alloc::vec::Vec::new()),
        }
    }

    /// A fixed buffer: a fragmented message longer than it fails with 1009.
    pub fn slice(buf: &'a mut [u8]) -> Self {
        MsgBuf {
            buf: Buf::Slice(buf, 0),
        }
    }

    /// The bytes assembled so far.
    pub fn as_slice(&self) -> &[u8] {
        match &self.buf {
            #[cfg(feature = "alloc")]
            Buf::Heap(v) => v,
            Buf::Slice(b, n) => &b[..*n],
        }
    }

    /// Bytes held (capacity), for memory accounting.
    pub fn capacity(&self) -> usize {
        match &self.buf {
            #[cfg(feature = "alloc")]
            Buf::Heap(v) => v.capacity(),
            Buf::Slice(b, _) => b.len(),
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn clear(&mut self) {
        match &mut self.buf {
            #[cfg(feature = "alloc")]
            Buf::Heap(v) => {
                v.clear();
                if v.capacity() > KEEP_CAPACITY {
                    *v = alloc::vec::Vec::new();
                }
            }
            Buf::Slice(_, n) => *n = 0,
        }
    }

    fn extend(&mut self, bytes: &[u8]) -> bool {
        match &mut self.buf {
            #[cfg(feature = "alloc")]
            Buf::Heap(v) => {
                v.extend_from_slice(bytes);
                true
            }
            Buf::Slice(b, n) => match b.get_mut(*n..*n + bytes.len()) {
                Some(dst) => {
                    dst.copy_from_slice(bytes);
                    *n += bytes.len();
                    true
                }
                None => false,
            },
        }
    }
}

/// The message being received across frames.
#[derive(Debug, Clone, Copy)]
struct Partial {
    text: bool,
    compressed: bool,
}

/// Validation of a text frame that has not all arrived: how much of its payload was
/// checked, and the validator after it, so the next look starts where this one stopped.
#[derive(Debug, Clone, Copy, Default)]
struct Peek {
    checked: usize,
    utf8: Utf8Stream,
}

/// One WebSocket connection after the handshake, either role.
pub struct WsConn {
    role: Role,
    cfg: WsConfig,
    msg: Option<Partial>,
    utf8: Utf8Stream,
    peek: Peek,
    close_sent: bool,
    close_received: bool,
    rng: KeyStream,
    /// `KeyStream::mask_key` for a client, `None` for a server. Called through a pointer
    /// that only [`client`](WsConn::client) creates, so firmware that runs only servers
    /// (which never mask) does not link ChaCha8 (3 KB of Thumb code).
    masks: Option<fn(&mut KeyStream) -> [u8; 4]>,
    #[cfg(feature = "alloc")]
    deflate: Option<(Deflate, DeflateParams)>,
    #[cfg(feature = "alloc")]
    scratch: alloc::vec::Vec<u8>,
    /// What messages written through a session context are sent as.
    pub(crate) send_opcode: Opcode,
    /// The last header [`frame_message`](Self::frame_message) made, for the session's
    /// framer to lend out.
    pub(crate) head: HeaderBytes,
    /// The subprotocol agreed in the handshake.
    pub(crate) protocol: Option<heapless::String<32>>,
}

impl fmt::Debug for WsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConn")
            .field("role", &self.role)
            .field("cfg", &self.cfg)
            .field("close_sent", &self.close_sent)
            .field("close_received", &self.close_received)
            .finish_non_exhaustive()
    }
}

/// Where a framed message's body is.
pub(crate) enum Body {
    /// The payload as given (masked in place for a client).
    Payload,
    /// The compressed copy in the connection's scratch buffer.
    #[cfg(feature = "alloc")]
    Scratch,
}

impl WsConn {
    /// A connection with masking keys from a fixed seed: fine for a server (which never
    /// masks); a client should use [`with_seed`](Self::with_seed) and real entropy.
    pub fn new(role: Role, cfg: WsConfig) -> Self {
        Self::with_seed(role, cfg, [0x5a; 32])
    }

    /// A connection whose masking keys come from a ChaCha8 stream seeded with `seed`
    /// (RFC 6455 §10.3 wants them unpredictable: seed from the system's entropy).
    pub fn with_seed(role: Role, cfg: WsConfig, seed: [u8; 32]) -> Self {
        match role {
            Role::Server => Self::server(cfg),
            Role::Client => Self::client(cfg, seed),
        }
    }

    /// The server end: reads masked frames, writes unmasked ones, needs no randomness.
    ///
    /// ```
    /// use ustack::ws::{conn::{WsConfig, WsConn}, Role};
    /// assert_eq!(WsConn::server(WsConfig::default()).role(), Role::Server);
    /// ```
    pub fn server(cfg: WsConfig) -> Self {
        Self::build(Role::Server, cfg, [0; 32], None)
    }

    /// The client end: every frame it writes is masked with the next key from a ChaCha8
    /// stream seeded with `seed`.
    ///
    /// ```
    /// use ustack::ws::{conn::{WsConfig, WsConn}, Role};
    /// assert_eq!(WsConn::client(WsConfig::default(), [7; 32]).role(), Role::Client);
    /// ```
    pub fn client(cfg: WsConfig, seed: [u8; 32]) -> Self {
        Self::build(Role::Client, cfg, seed, Some(KeyStream::mask_key))
    }

    fn build(
        role: Role,
        cfg: WsConfig,
        seed: [u8; 32],
        masks: Option<fn(&mut KeyStream) -> [u8; 4]>,
    ) -> Self {
        WsConn {
            role,
            cfg,
            msg: None,
            utf8: Utf8Stream::new(),
            peek: Peek::default(),
            close_sent: false,
            close_received: false,
            rng: KeyStream::new(seed),
            masks,
            #[cfg(feature = "alloc")]
            deflate: None,
            #[cfg(feature = "alloc")]
            scratch: alloc::vec::Vec::new(),
            send_opcode: Opcode::Binary,
            head: FrameHeader::new(Opcode::Binary, 0).to_bytes(),
            protocol: None,
        }
    }

    /// Turns on permessage-deflate with the negotiated `params`.
    #[cfg(feature = "alloc")]
    pub fn set_deflate(&mut self, params: DeflateParams, level: u8) {
        self.deflate = Some((Deflate::new(params, self.role, level), params));
    }

    /// The negotiated permessage-deflate parameters, if compression is on.
    #[cfg(feature = "alloc")]
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|d| d.1)
    }

    /// Heap bytes held for compression (windows and scratch), not counting the
    /// caller's [`MsgBuf`].
    pub fn memory(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.deflate.as_ref().map_or(0, |d| d.0.memory()) + self.scratch.capacity()
        }
        #[cfg(not(feature = "alloc"))]
        0
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &WsConfig {
        &self.cfg
    }

    /// Changes the largest message accepted from now on.
    pub fn set_max_message_size(&mut self, n: usize) {
        self.cfg.max_message_size = n;
    }

    /// Whether our close frame was sent.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Whether the peer's close frame was received (or the connection was failed).
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether a fragmented message is partly received.
    pub fn mid_message(&self) -> bool {
        self.msg.is_some()
    }

    /// A fresh random value from the masking-key stream (a client's handshake key).
    pub fn random(&mut self, out: &mut [u8]) {
        self.rng.fill(out);
    }

    /// Reads the frame at the front of `buf`, unmasking it in place. Writes automatic
    /// replies (pong, close echo) and, on error, the failing close frame to `out`.
    pub fn read<'b>(
        &mut self,
        buf: &'b mut [u8],
        store: &'b mut MsgBuf<'_>,
        out: &mut dyn Out,
    ) -> Result<Step<'b>, WsError> {
        if self.close_received {
            if buf.is_empty() {
                return Ok(Step::NeedMore { total: None });
            }
            // Nothing after a close means anything (§5.5.1); drop it.
            return Ok(Step::Frame {
                used: buf.len(),
                event: None,
            });
        }
        let (h, hl) = match FrameHeader::parse(buf) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Step::NeedMore { total: None }),
            Err(_) => return Err(self.fail(out, CloseCode::PROTOCOL, "frame length too large")),
        };
        if let Some(total) = self.plain_whole(&h, hl, buf.len()) {
            self.peek.checked = 0;
            let payload = &mut buf[hl..total];
            if let Some(k) = h.mask {
                apply_mask(payload, k, 0);
            }
            let msg = match h.opcode {
                Opcode::Text => match core::str::from_utf8(payload) {
                    Ok(t) => Message::Text(t),
                    Err(_) => return Err(self.bad_utf8(out)),
                },
                _ => Message::Binary(payload),
            };
            let event = Some(Event::Message(msg));
            return Ok(Step::Frame { used: total, event });
        }
        // Only an uncompressed message's assembled bytes add up with this frame's; a
        // compressed one is bounded after inflation.
        let have = match self.msg {
            Some(m) if !m.compressed => store.len(),
            _ => 0,
        };
        self.check(&h, have, out)?;
        // `check` bounded the length by max_message_size, which fits a usize.
        let len = h.len as usize;
        let total = hl + len;
        if buf.len() < total {
            // While text is checked as it arrives, the caller must come back with every
            // new byte, not only once the whole frame is in.
            let text = self.look_ahead(&h, &buf[hl..], out)?;
            // Past `max_message_size` a caller buffering input of unknown length would
            // stop short of the frame's end (the header adds to it): say the length.
            let known = !text || total > LOOK_AHEAD_MAX || total > self.cfg.max_message_size;
            let total = known.then_some(total);
            return Ok(Step::NeedMore { total });
        }
        let peek = core::mem::take(&mut self.peek);
        let payload = &mut buf[hl..total];
        if let Some(k) = h.mask {
            apply_mask(payload, k, 0);
        }
        let event = match h.opcode {
            Opcode::Ping => {
                if self.cfg.auto_pong && !self.close_sent {
                    let _ = self.write_control(Opcode::Pong, payload, out);
                }
                Some(Event::Ping(payload))
            }
            Opcode::Pong => Some(Event::Pong(payload)),
            Opcode::Close => {
                let c = match parse_close(payload) {
                    Ok(c) => c,
                    Err(e) => return Err(self.fail(out, e.code, e.what)),
                };
                self.close_received = true;
                if !self.close_sent {
                    let code = c.map_or(CloseCode::NORMAL, |c| c.0);
                    let _ = self.write_close(code, "", out);
                }
                Some(Event::Close(c))
            }
            _ => self.data(&h, payload, peek, store, out)?,
        };
        Ok(Step::Frame { used: total, event })
    }

    /// The common case, which takes the short way: a whole, unfragmented, uncompressed
    /// message that breaks no rule and is all in the buffer. Its length, header included.
    #[inline]
    fn plain_whole(&self, h: &FrameHeader, hl: usize, have: usize) -> Option<usize> {
        let masked_right = h.mask.is_some() == (self.role == Role::Server);
        let plain = h.fin && h.rsv == 0 && self.msg.is_none() && masked_right;
        if !plain || !matches!(h.opcode, Opcode::Text | Opcode::Binary) {
            return None;
        }
        let len = usize::try_from(h.len).ok()?;
        let total = hl.checked_add(len)?;
        (len <= self.cfg.max_message_size && total <= have).then_some(total)
    }

    /// Every rule a frame header can break, with its close code.
    fn check(&mut self, h: &FrameHeader, have: usize, out: &mut dyn Out) -> Result<(), WsError> {
        let proto = |what| Err((CloseCode::PROTOCOL, what));
        let r = if h.rsv & (RSV2 | RSV3) != 0 {
            proto("RSV2 or RSV3 set without an extension that defines them")
        } else if h.rsv & RSV1 != 0 && !self.deflating() {
            proto("RSV1 set without permessage-deflate")
        } else if h.rsv & RSV1 != 0 && !matches!(h.opcode, Opcode::Text | Opcode::Binary) {
            proto("RSV1 set on a control or continuation frame")
        } else if let Opcode::Reserved(_) = h.opcode {
            proto("reserved opcode")
        } else if self.role == Role::Server && h.mask.is_none() {
            proto("unmasked frame from a client")
        } else if self.role == Role::Client && h.mask.is_some() {
            proto("masked frame from a server")
        } else if h.opcode.is_control() && !h.fin {
            proto("fragmented control frame")
        } else if h.opcode.is_control() && h.len > MAX_CONTROL_PAYLOAD as u64 {
            proto("control frame payload over 125 bytes")
        } else if h.opcode == Opcode::Continuation && self.msg.is_none() {
            proto("continuation frame without a message to continue")
        } else if matches!(h.opcode, Opcode::Text | Opcode::Binary) && self.msg.is_some() {
            proto("new message before the fragmented one finished")
        } else if !h.opcode.is_control()
            && (have as u64).saturating_add(h.len) > self.frame_limit(h) as u64
        {
            Err((CloseCode::TOO_BIG, "message larger than max_message_size"))
        } else {
            Ok(())
        };
        r.map_err(|(code, what)| self.fail(out, code, what))
    }

    /// The most payload a data frame may carry. A compressed message is held to
    /// `max_message_size` after inflation; its frames may be a little longer than that,
    /// since incompressible data grows by deflate's block overhead.
    fn frame_limit(&self, h: &FrameHeader) -> usize {
        let max = self.cfg.max_message_size;
        let compressed = match h.opcode {
            Opcode::Continuation => self.msg.is_some_and(|m| m.compressed),
            _ => h.rsv & RSV1 != 0,
        };
        match compressed {
            true => max.saturating_add(max / 8).saturating_add(64),
            false => max,
        }
    }

    fn deflating(&self) -> bool {
        #[cfg(feature = "alloc")]
        {
            self.deflate.is_some()
        }
        #[cfg(not(feature = "alloc"))]
        false
    }

    /// Validates what has arrived of an unfinished text frame, so that bad UTF-8 fails
    /// the connection before the rest of the frame comes (fail fast, §8.1).
    /// Returns whether the frame is text checked this way.
    fn look_ahead(
        &mut self,
        h: &FrameHeader,
        avail: &[u8],
        out: &mut dyn Out,
    ) -> Result<bool, WsError> {
        let text = match h.opcode {
            Opcode::Text => h.rsv & RSV1 == 0,
            Opcode::Continuation => self.msg.is_some_and(|m| m.text && !m.compressed),
            _ => false,
        };
        if !text || avail.len() <= self.peek.checked {
            return Ok(text);
        }
        if self.peek.checked == 0 {
            self.peek.utf8 = match h.opcode {
                Opcode::Text => Utf8Stream::new(),
                _ => self.utf8,
            };
        }
        let mut chunk = [0u8; 256];
        let mut at = self.peek.checked;
        while at < avail.len() {
            let n = (avail.len() - at).min(chunk.len());
            let c = &mut chunk[..n];
            c.copy_from_slice(&avail[at..at + n]);
            if let Some(k) = h.mask {
                apply_mask(c, k, at);
            }
            if self.peek.utf8.feed(c).is_err() {
                return Err(self.fail(out, CloseCode::INVALID_DATA, "text is not valid UTF-8"));
            }
            at += n;
        }
        self.peek.checked = at;
        Ok(true)
    }

    /// A data frame, unmasked, that the short way in `read` did not take: a fragment, a
    /// compressed message, or the last fragment of one (assembled in `store`).
    fn data<'b>(
        &mut self,
        h: &FrameHeader,
        payload: &'b mut [u8],
        peek: Peek,
        store: &'b mut MsgBuf<'_>,
        out: &mut dyn Out,
    ) -> Result<Option<Event<'b>>, WsError> {
        let part = match self.msg {
            Some(p) => p,
            None => {
                store.clear();
                self.utf8 = Utf8Stream::new();
                Partial {
                    text: h.opcode == Opcode::Text,
                    compressed: h.rsv & RSV1 != 0,
                }
            }
        };
        if part.compressed {
            return self.inflate(h.fin, part, payload, store, out);
        }
        if part.text {
            // What the look-ahead checked need not be checked again.
            let from = match peek.checked {
                0 => 0,
                n => {
                    self.utf8 = peek.utf8;
                    n
                }
            };
            if self.utf8.feed(&payload[from..]).is_err() {
                return Err(self.bad_utf8(out));
            }
        }
        if !store.extend(payload) {
            return Err(self.fail(out, CloseCode::TOO_BIG, "message larger than the buffer"));
        }
        self.finish(h.fin, part, store, out)
    }

    /// Delivers an assembled message once its last frame is in.
    fn finish<'b>(
        &mut self,
        fin: bool,
        part: Partial,
        store: &'b mut MsgBuf<'_>,
        out: &mut dyn Out,
    ) -> Result<Option<Event<'b>>, WsError> {
        if !fin {
            self.msg = Some(part);
            return Ok(None);
        }
        self.msg = None;
        if !part.text {
            return Ok(Some(Event::Message(Message::Binary(store.as_slice()))));
        }
        if self.utf8.finish().is_err() {
            return Err(self.bad_utf8(out));
        }
        match core::str::from_utf8(store.as_slice()) {
            Ok(t) => Ok(Some(Event::Message(Message::Text(t)))),
            Err(_) => Err(self.bad_utf8(out)),
        }
    }

    #[cfg(feature = "alloc")]
    fn inflate<'b>(
        &mut self,
        fin: bool,
        part: Partial,
        payload: &'b mut [u8],
        store: &'b mut MsgBuf<'_>,
        out: &mut dyn Out,
    ) -> Result<Option<Event<'b>>, WsError> {
        let Buf::Heap(v) = &mut store.buf else {
            let what = "compressed messages need a heap message buffer";
            return Err(self.fail(out, CloseCode::INTERNAL, what));
        };
        let Some((d, _)) = self.deflate.as_mut() else {
            return Err(self.fail(out, CloseCode::PROTOCOL, "RSV1 without deflate"));
        };
        let before = v.len();
        match d.decompress(payload, fin, v, self.cfg.max_message_size) {
            Ok(()) => {}
            Err(InflateError::TooBig { .. }) => {
                return Err(self.fail(
                    out,
                    CloseCode::TOO_BIG,
                    "message larger than max_message_size",
                ))
            }
            Err(InflateError::Corrupt(what)) => {
                return Err(self.fail(out, CloseCode::INVALID_DATA, what))
            }
        }
        if part.text && self.utf8.feed(&v[before..]).is_err() {
            return Err(self.bad_utf8(out));
        }
        self.finish(fin, part, store, out)
    }

    #[cfg(not(feature = "alloc"))]
    fn inflate<'b>(
        &mut self,
        _: bool,
        _: Partial,
        _: &'b mut [u8],
        _: &'b mut MsgBuf<'_>,
        out: &mut dyn Out,
    ) -> Result<Option<Event<'b>>, WsError> {
        Err(self.fail(out, CloseCode::PROTOCOL, "RSV1 without deflate"))
    }

    #[cold]
    fn bad_utf8(&mut self, out: &mut dyn Out) -> WsError {
        self.fail(out, CloseCode::INVALID_DATA, "text is not valid UTF-8")
    }

    /// Fails the connection: the close frame goes out (unless one already did), and
    /// nothing more is read.
    fn fail(&mut self, out: &mut dyn Out, code: CloseCode, what: &'static str) -> WsError {
        if !self.close_sent {
            let _ = self.write_close(code, what, out);
        }
        self.close_received = true;
        self.msg = None;
        WsError { code, what }
    }

    /// A masking key for the next frame this side sends (`None` for a server).
    fn key(&mut self) -> Option<[u8; 4]> {
        self.masks.map(|next| next(&mut self.rng))
    }

    /// Writes one frame: the header (with a fresh key in the client role) and the payload,
    /// masked on the way out through a small stack buffer.
    pub fn write_frame(
        &mut self,
        mut h: FrameHeader,
        payload: &[u8],
        out: &mut dyn Out,
    ) -> Result<(), WriteError> {
        if self.close_sent {
            return Err(WriteError::Closed);
        }
        if h.opcode.is_control() && (payload.len() > MAX_CONTROL_PAYLOAD || !h.fin) {
            return Err(WriteError::ControlTooLong);
        }
        h.mask = self.key();
        h.len = payload.len() as u64;
        let head = h.to_bytes();
        if out.room() < head.len() + payload.len() {
            return Err(WriteError::NoRoom);
        }
        out.put(&head)?;
        match h.mask {
            None => out.put(payload)?,
            Some(k) => {
                let mut chunk = [0u8; 512];
                for (i, p) in payload.chunks(chunk.len()).enumerate() {
                    let c = &mut chunk[..p.len()];
                    c.copy_from_slice(p);
                    apply_mask(c, k, i * 512);
                    out.put(c)?;
                }
            }
        }
        if h.opcode == Opcode::Close {
            self.close_sent = true;
        }
        Ok(())
    }

    /// Writes a ping, pong or close frame with `payload` (at most 125 bytes).
    pub fn write_control(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        out: &mut dyn Out,
    ) -> Result<(), WriteError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(WriteError::ControlTooLong);
        }
        self.write_frame(FrameHeader::new(opcode, 0), payload, out)
    }

    /// Starts (or answers) the close handshake; `reason` is cut to fit 123 bytes at a
    /// character boundary. Nothing can be written after it.
    pub fn write_close(
        &mut self,
        code: CloseCode,
        reason: &str,
        out: &mut dyn Out,
    ) -> Result<(), WriteError> {
        let mut p = [0u8; MAX_CONTROL_PAYLOAD];
        p[..2].copy_from_slice(&code.0.to_be_bytes());
        let mut n = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(n) {
            n -= 1;
        }
        p[2..2 + n].copy_from_slice(&reason.as_bytes()[..n]);
        self.write_control(Opcode::Close, &p[..2 + n], out)
    }

    /// Writes a whole message in one frame, compressed when permessage-deflate is on and it
    /// is at least `compress_min` bytes long.
    pub fn write_message(&mut self, msg: Message<'_>, out: &mut dyn Out) -> Result<(), WriteError> {
        #[cfg_attr(not(feature = "alloc"), allow(unused_mut))]
        let mut h = FrameHeader::new(msg.opcode(), 0);
        #[cfg(feature = "alloc")]
        if self.compress(msg.as_bytes(), &mut h) {
            let body = core::mem::take(&mut self.scratch);
            let r = self.write_frame(h, &body, out);
            self.scratch = body;
            return r;
        }
        self.write_frame(h, msg.as_bytes(), out)
    }

    /// Compresses `payload` into the scratch buffer if deflate applies, setting RSV1.
    #[cfg(feature = "alloc")]
    fn compress(&mut self, payload: &[u8], h: &mut FrameHeader) -> bool {
        let Some((d, _)) = self.deflate.as_mut() else {
            return false;
        };
        if payload.len() < self.cfg.compress_min {
            return false;
        }
        self.scratch.clear();
        d.compress(payload, &mut self.scratch);
        h.rsv |= RSV1;
        true
    }

    /// Frames `payload` as one message without copying it (unless it is compressed): the
    /// header to send, and where the body is. A client's payload is masked in place.
    pub(crate) fn frame_message(
        &mut self,
        opcode: Opcode,
        payload: &mut [u8],
    ) -> Result<(HeaderBytes, Body), WriteError> {
        if self.close_sent {
            return Err(WriteError::Closed);
        }
        let mut h = FrameHeader::new(opcode, payload.len() as u64);
        h.mask = self.key();
        #[cfg(feature = "alloc")]
        if self.compress(payload, &mut h) {
            h.len = self.scratch.len() as u64;
            if let Some(k) = h.mask {
                apply_mask(&mut self.scratch, k, 0);
            }
            return Ok((h.to_bytes(), Body::Scratch));
        }
        if let Some(k) = h.mask {
            apply_mask(payload, k, 0);
        }
        Ok((h.to_bytes(), Body::Payload))
    }

    /// The compressed body [`frame_message`](Self::frame_message) left in the scratch.
    #[cfg(feature = "alloc")]
    pub(crate) fn scratch(&self) -> &[u8] {
        &self.scratch
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
