//! Codecs: how a session cuts its byte stream into packages, and how it writes them.
//!
//! A codec is sans-IO. [`Codec::decode`] looks at the bytes buffered so far, always starting
//! at the first byte of the next package, and says how far it got: [`Decoded::NeedMore`],
//! [`Decoded::NeedMoreKnownLen`] once a header names the package's size (Getty's
//! `(nil, pkgLen, nil)`), or [`Decoded::Packet`] with the package and the bytes it used. The
//! session enforces its maximum message length on that known length, before the body is
//! buffered, and on the buffered bytes while the length is still unknown.
//!
//! Packages may borrow from the buffer (`Pkg<'b>`), so the shipped codecs decode without
//! copying and without a heap.

use core::fmt;

/// How far [`Codec::decode`] got with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<P> {
    /// Not enough bytes to tell anything yet.
    NeedMore,
    /// The header is parsed: the whole package, header included, is this many bytes.
    NeedMoreKnownLen(usize),
    /// One package, and how many bytes of the buffer it used.
    Packet(P, usize),
}

/// A way to cut a byte stream into packages and to write packages as bytes.
pub trait Codec {
    /// A decoded package; it may borrow from the decode buffer.
    type Pkg<'b>;
    /// Why the stream or a package is invalid.
    type Error: fmt::Debug + fmt::Display;

    /// Decodes the next package from `buf`, which starts at its first byte. Called again
    /// with more bytes after [`Decoded::NeedMore`] or [`Decoded::NeedMoreKnownLen`].
    fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Decoded<Self::Pkg<'b>>, Self::Error>;

    /// Writes `pkg` to `out`, entirely or not at all.
    fn encode<O: Out + ?Sized>(
        &mut self,
        pkg: &Self::Pkg<'_>,
        out: &mut O,
    ) -> Result<(), Self::Error>;
}

/// Where [`Codec::encode`] writes.
pub trait Out {
    /// Bytes that still fit.
    fn room(&self) -> usize;
    /// Appends `bytes`; the caller checked [`room`](Self::room) first.
    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError>;
}

/// A fixed buffer as an [`Out`]: what firmware encodes into.
///
/// ```
/// use ustack::session::codec::{Codec, LengthPrefixed, SliceOut};
/// let mut buf = [0u8; 16];
/// let mut out = SliceOut::new(&mut buf);
/// let mut codec = LengthPrefixed::U16_BE;
/// codec.encode(&&b"hi"[..], &mut out).unwrap();
/// assert_eq!(out.filled(), &[0, 2, b'h', b'i']);
/// ```
#[derive(Debug)]
pub struct SliceOut<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) len: usize,
}

impl<'a> SliceOut<'a> {
    /// An empty writer over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceOut { buf, len: 0 }
    }

    /// The bytes written so far.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Out for SliceOut<'_> {
    fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        let end = self.len + bytes.len();
        let room = self.buf.len() - self.len;
        let dst = self.buf.get_mut(self.len..end).ok_or(CodecError::NoRoom {
            need: bytes.len(),
            room,
        })?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl<const N: usize> Out for heapless::Vec<u8, N> {
    fn room(&self) -> usize {
        N - self.len()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        let room = Out::room(self);
        self.extend_from_slice(bytes)
            .map_err(|_| CodecError::NoRoom {
                need: bytes.len(),
                room,
            })
    }
}

#[cfg(feature = "alloc")]
impl Out for alloc::vec::Vec<u8> {
    fn room(&self) -> usize {
        isize::MAX as usize - self.len()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Why the shipped codecs refused a stream or a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// A package is longer than the format can express.
    TooLong {
        /// The package's length.
        len: usize,
        /// The longest the format allows.
        max: usize,
    },
    /// The output has no room for the whole package.
    NoRoom {
        /// Bytes the package needs.
        need: usize,
        /// Bytes left.
        room: usize,
    },
    /// The package cannot be written in this format; the text says why.
    Malformed(&'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::TooLong { len, max } => write!(
                f,
                "package of {len} bytes is longer than the format's {max}: use a wider length prefix or split it"
            ),
            CodecError::NoRoom { need, room } => write!(
                f,
                "package needs {need} bytes but the output has {room}: wait for the send queue to drain"
            ),
            CodecError::Malformed(why) => write!(f, "cannot encode package: {why}"),
        }
    }
}

/// Byte order of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Network order, most significant byte first.
    Big,
    /// Least significant byte first.
    Little,
}

/// Width of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// Two bytes: bodies up to 65,535 bytes.
    U16,
    /// Four bytes: bodies up to 4 GiB.
    U32,
}

/// Packages framed by a length prefix that counts the body (not itself).
///
/// ```
/// use ustack::session::codec::{Codec, Decoded, LengthPrefixed};
/// let mut c = LengthPrefixed::U32_BE;
/// assert_eq!(c.decode(&[0, 0, 0, 5, b'h']).unwrap(), Decoded::NeedMoreKnownLen(9));
/// assert_eq!(c.decode(b"\0\0\0\x05hello!").unwrap(), Decoded::Packet(&b"hello"[..], 9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthPrefixed {
    /// Prefix width.
    pub width: Width,
    /// Prefix byte order.
    pub order: Order,
}

impl LengthPrefixed {
    /// 2-byte big-endian prefix.
    pub const U16_BE: Self = Self::new(Width::U16, Order::Big);
    /// 2-byte little-endian prefix.
    pub const U16_LE: Self = Self::new(Width::U16, Order::Little);
    /// 4-byte big-endian prefix.
    pub const U32_BE: Self = Self::new(Width::U32, Order::Big);
    /// 4-byte little-endian prefix.
    pub const U32_LE: Self = Self::new(Width::U32, Order::Little);

    /// A codec with this prefix.
    pub const fn new(width: Width, order: Order) -> Self {
        LengthPrefixed { width, order }
    }

    /// Bytes in the prefix.
    pub const fn header_len(&self) -> usize {
        match self.width {
            Width::U16 => 2,
            Width::U32 => 4,
        }
    }

    /// The longest body the prefix can express.
    pub const fn max_body(&self) -> usize {
        match self.width {
            Width::U16 => u16::MAX as usize,
            Width::U32 => u32::MAX as usize,
        }
    }

    fn read(&self, h: &[u8]) -> usize {
        let mut b = [0u8; 4];
        let n = self.header_len();
        match self.order {
            Order::Big => b[4 - n..].copy_from_slice(&h[..n]),
            Order::Little => {
                b[..n].copy_from_slice(&h[..n]);
                b.reverse();
            }
        }
        u32::from_be_bytes(b) as usize
    }
}

impl Codec for LengthPrefixed {
    type Pkg<'b> = &'b [u8];
    type Error = CodecError;

    fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Decoded<&'b [u8]>, CodecError> {
        let h = self.header_len();
        if buf.len() < h {
            return Ok(Decoded::NeedMore);
        }
        let total = h.saturating_add(self.read(buf));
        match buf.get(h..total) {
            Some(body) => Ok(Decoded::Packet(body, total)),
            None => Ok(Decoded::NeedMoreKnownLen(total)),
        }
    }

    fn encode<O: Out + ?Sized>(&mut self, pkg: &&[u8], out: &mut O) -> Result<(), CodecError> {
        let (len, max) = (pkg.len(), self.max_body());
        if len > max {
            return Err(CodecError::TooLong { len, max });
        }
        let need = self.header_len() + len;
        if out.room() < need {
            return Err(CodecError::NoRoom {
                need,
                room: out.room(),
            });
        }
        let be = (len as u32).to_be_bytes();
        let mut header = [0u8; 4];
        let n = self.header_len();
        header[..n].copy_from_slice(&be[4 - n..]);
        if self.order == Order::Little {
            header[..n].reverse();
        }
        out.put(&header[..n])?;
        out.put(pkg)
    }
}

/// No framing: whatever bytes have arrived form one package (a datagram is one package on
/// UDP). What an echo or a proxy wants; encoding copies the bytes as they are.
///
/// A package is checked against the session's `max_msg_len` like any other, so on a
/// stream whose receive buffer is larger than that limit, cap packages with
/// [`Raw::up_to`] (never on UDP: it would split datagrams).
///
/// ```
/// use ustack::session::codec::{Codec, Decoded, Raw};
/// assert_eq!(Raw::new().decode(b"").unwrap(), Decoded::NeedMore);
/// assert_eq!(Raw::new().decode(b"any bytes").unwrap(), Decoded::Packet(&b"any bytes"[..], 9));
/// assert_eq!(Raw::up_to(3).decode(b"any bytes").unwrap(), Decoded::Packet(&b"any"[..], 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw {
    max: usize,
}

impl Raw {
    /// Everything that has arrived is one package.
    pub const fn new() -> Self {
        Raw { max: usize::MAX }
    }

    /// Packages of at most `max` bytes (at least 1).
    pub const fn up_to(max: usize) -> Self {
        Raw {
            max: if max == 0 { 1 } else { max },
        }
    }
}

impl Default for Raw {
    fn default() -> Self {
        Raw::new()
    }
}

impl Codec for Raw {
    type Pkg<'b> = &'b [u8];
    type Error = CodecError;

    fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Decoded<&'b [u8]>, CodecError> {
        match buf.len().min(self.max) {
            0 => Ok(Decoded::NeedMore),
            n => Ok(Decoded::Packet(&buf[..n], n)),
        }
    }

    fn encode<O: Out + ?Sized>(&mut self, pkg: &&[u8], out: &mut O) -> Result<(), CodecError> {
        if out.room() < pkg.len() {
            return Err(CodecError::NoRoom {
                need: pkg.len(),
                room: out.room(),
            });
        }
        out.put(pkg)
    }
}

/// Packages that end with `\n`; a `\r` before it is dropped too. The newline is not part of
/// the package, so a package cannot contain one, nor end with `\r`.
///
/// It remembers how far it has searched, so a line that arrives byte by byte costs O(n),
/// not O(n²): always call it with the bytes buffered since the last package.
///
/// ```
/// use ustack::session::codec::{Codec, Decoded, Lines};
/// let mut c = Lines::new();
/// assert_eq!(c.decode(b"hel").unwrap(), Decoded::NeedMore);
/// assert_eq!(c.decode(b"hello\r\nnext").unwrap(), Decoded::Packet(&b"hello"[..], 7));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lines {
    scanned: usize,
}

impl Lines {
    /// A line codec.
    pub const fn new() -> Self {
        Lines { scanned: 0 }
    }
}

impl Codec for Lines {
    type Pkg<'b> = &'b [u8];
    type Error = CodecError;

    fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Decoded<&'b [u8]>, CodecError> {
        // A shorter buffer than last time means the caller started over.
        let from = if self.scanned <= buf.len() {
            self.scanned
        } else {
            0
        };
        let Some(at) = buf[from..].iter().position(|&b| b == b'\n') else {
            self.scanned = buf.len();
            return Ok(Decoded::NeedMore);
        };
        self.scanned = 0;
        let end = from + at;
        let line = &buf[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(Decoded::Packet(line, end + 1))
    }

    fn encode<O: Out + ?Sized>(&mut self, pkg: &&[u8], out: &mut O) -> Result<(), CodecError> {
        if pkg.contains(&b'\n') {
            return Err(CodecError::Malformed("a line cannot contain a newline"));
        }
        if pkg.last() == Some(&b'\r') {
            // It would be read back without it.
            return Err(CodecError::Malformed(
                "a line cannot end with a carriage return",
            ));
        }
        let need = pkg.len() + 1;
        if out.room() < need {
            return Err(CodecError::NoRoom {
                need,
                room: out.room(),
            });
        }
        out.put(pkg)?;
        out.put(b"\n")
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
