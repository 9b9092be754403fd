//! RFC 6455 §5.2 frame headers, and masking.
//!
//! [`FrameHeader`] is the parsed form (a smoltcp-style `Repr`): [`FrameHeader::parse`] reads
//! one from the front of a buffer without copying the payload, [`FrameHeader::emit`] writes
//! one. [`Frame`] is a checked view of a whole frame. [`apply_mask`] masks and unmasks in
//! place, a word at a time, from any offset into the payload, so a payload that arrives in
//! pieces is unmasked piece by piece.
//!
//! ```
//! use ustack::ws::frame::{apply_mask, FrameHeader, Opcode};
//! // A masked "Hello" from a client (RFC 6455 §5.7).
//! let mut bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let (h, n) = FrameHeader::parse(&bytes).unwrap().unwrap();
//! assert!(h.fin && h.opcode == Opcode::Text && h.len == 5);
//! apply_mask(&mut bytes[n..], h.mask.unwrap(), 0);
//! assert_eq!(&bytes[n..], b"Hello");
//! ```

use core::fmt;

/// The FIN bit of the first header byte.
pub const FIN: u8 = 0x80;
/// RSV1: permessage-deflate's "compressed" bit.
pub const RSV1: u8 = 0x40;
/// RSV2.
pub const RSV2: u8 = 0x20;
/// RSV3.
pub const RSV3: u8 = 0x10;
const OPCODE: u8 = 0x0f;
/// The MASK bit of the second header byte.
pub const MASK: u8 = 0x80;
const LEN7: u8 = 0x7f;
/// A 7-bit length of 126 means a 16-bit length follows.
const LEN_16: u8 = 126;
/// A 7-bit length of 127 means a 64-bit length follows.
const LEN_64: u8 = 127;
/// The longest header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;
/// The longest control-frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (§5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: the first frame of a UTF-8 text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
    /// A reserved opcode (0x3-0x7, 0xB-0xF); a peer that sends one fails the connection.
    Reserved(u8),
}

impl Opcode {
    /// The opcode of the low four bits of `b`.
    pub fn from_bits(b: u8) -> Opcode {
        match b & OPCODE {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    /// The four bits on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(b) => b & OPCODE,
        }
    }

    /// Close, Ping and Pong (and reserved 0xB-0xF): at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A header whose 64-bit length has its top bit set (§5.2 forbids it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLength;

impl fmt::Display for BadLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frame length has its most significant bit set")
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as they sit in the first byte (`RSV1 | RSV2 | RSV3` mask).
    pub rsv: u8,
    /// What the frame is.
    pub opcode: Opcode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

impl FrameHeader {
    /// An unmasked final frame header.
    pub fn new(opcode: Opcode, len: u64) -> Self {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len,
        }
    }

    /// Parses a header from the front of `buf`: `Ok(None)` while it is incomplete, else
    /// the header and its length in bytes. Does not judge the header against a role or
    /// negotiated extensions; that is the connection's job.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, BadLength> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        let (len, mut at) = match b1 & LEN7 {
            LEN_16 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            LEN_64 => match buf.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let n = u64::from_be_bytes(a);
                    if n >> 63 != 0 {
                        return Err(BadLength);
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if b1 & MASK != 0 {
            let Some(k) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        let h = FrameHeader {
            fin: b0 & FIN != 0,
            rsv: b0 & (RSV1 | RSV2 | RSV3),
            opcode: Opcode::from_bits(b0),
            mask,
            len,
        };
        Ok(Some((h, at)))
    }

    /// The header's length on the wire (the shortest length encoding, as §5.2 requires).
    pub fn header_len(&self) -> usize {
        let len = match self.len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header to the front of `out` and returns its length, or `None` when
    /// `out` is shorter than [`header_len`](Self::header_len).
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.header_len();
        let out = out.get_mut(..n)?;
        out[0] = self.opcode.bits() | (self.rsv & (RSV1 | RSV2 | RSV3));
        if self.fin {
            out[0] |= FIN;
        }
        let mask = if self.mask.is_some() { MASK } else { 0 };
        let at = match self.len {
            0..=125 => {
                out[1] = mask | self.len as u8;
                2
            }
            126..=0xffff => {
                out[1] = mask | LEN_16;
                out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
                4
            }
            _ => {
                out[1] = mask | LEN_64;
                out[2..10].copy_from_slice(&self.len.to_be_bytes());
                10
            }
        };
        if let Some(k) = self.mask {
            out[at..at + 4].copy_from_slice(&k);
        }
        Some(n)
    }

    /// The header as bytes, ready to send.
    pub fn to_bytes(&self) -> HeaderBytes {
        let mut b = [0u8; MAX_HEADER_LEN];
        let len = self.emit(&mut b).unwrap_or(0);
        HeaderBytes { b, len }
    }
}

/// An emitted header (at most [`MAX_HEADER_LEN`] bytes), kept on the stack.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBytes {
    b: [u8; MAX_HEADER_LEN],
    len: usize,
}

impl core::ops::Deref for HeaderBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.b[..self.len]
    }
}

/// A whole frame in a buffer: header and payload, checked to be all there.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    header: FrameHeader,
    header_len: usize,
}

/// Why [`Frame::new_checked`] refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends before the frame does; `need` bytes in all are required (0 while
    /// the header itself is incomplete).
    Truncated {
        /// The frame's full length, once the header tells.
        need: usize,
    },
    /// The header's length is invalid.
    BadLength,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that `buffer` starts with one whole frame.
    pub fn new_checked(buffer: T) -> Result<Self, FrameError> {
        let bytes = buffer.as_ref();
        let (header, header_len) = match FrameHeader::parse(bytes) {
            Ok(Some(x)) => x,
            Ok(None) => return Err(FrameError::Truncated { need: 0 }),
            Err(BadLength) => return Err(FrameError::BadLength),
        };
        let total = usize::try_from(header.len)
            .ok()
            .and_then(|n| n.checked_add(header_len))
            .ok_or(FrameError::BadLength)?;
        if bytes.len() < total {
            return Err(FrameError::Truncated { need: total });
        }
        Ok(Frame {
            buffer,
            header,
            header_len,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> FrameHeader {
        self.header
    }

    /// Header plus payload length: the bytes this frame takes.
    pub fn total_len(&self) -> usize {
        self.header_len + self.header.len as usize
    }

    /// The payload as received (still masked if the header has a key).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// The payload, mutably (to unmask it in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (at, end) = (self.header_len, self.total_len());
        &mut self.buffer.as_mut()[at..end]
    }

    /// Unmasks the payload in place (a no-op for an unmasked frame) and returns it.
    pub fn unmask(&mut self) -> &mut [u8] {
        let key = self.header.mask;
        let p = self.payload_mut();
        if let Some(k) = key {
            apply_mask(p, k, 0);
        }
        p
    }
}

/// XORs `buf` with `key`, where `buf[0]` is byte `offset` of the payload (§5.3). Masking
/// and unmasking are the same operation.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The key as seen from payload byte `offset`.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset & 3;
    [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples_parse_and_emit() {
        // §5.7: unmasked "Hello", a 256-byte binary and a 64 KiB binary header.
        let hello = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        let f = Frame::new_checked(&hello[..]).unwrap();
        assert_eq!(f.header(), FrameHeader::new(Opcode::Text, 5));
        assert_eq!(f.payload(), b"Hello");
        let h = FrameHeader::new(Opcode::Binary, 256);
        assert_eq!(&*h.to_bytes(), &[0x82, 0x7e, 0x01, 0x00]);
        let h = FrameHeader::new(Opcode::Binary, 65536);
        assert_eq!(&*h.to_bytes(), &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0][..]);
        let ping = FrameHeader::parse(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!(ping, (FrameHeader::new(Opcode::Ping, 5), 2));
    }

    #[test]
    fn every_header_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x10000, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for b in 0..16u8 {
                    let h = FrameHeader {
                        fin: b & 1 == 1,
                        rsv: (b << 4) & (RSV1 | RSV2 | RSV3),
                        opcode: Opcode::from_bits(b),
                        mask,
                        len,
                    };
                    let bytes = h.to_bytes();
                    assert_eq!(bytes.len(), h.header_len());
                    for cut in 0..bytes.len() {
                        assert_eq!(FrameHeader::parse(&bytes[..cut]), Ok(None));
                    }
                    assert_eq!(FrameHeader::parse(&bytes), Ok(Some((h, bytes.len()))));
                }
            }
        }
    }

    #[test]
    fn top_bit_of_a_64_bit_length_is_refused() {
        let b = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(FrameHeader::parse(&b), Err(BadLength));
        assert_eq!(
            Frame::new_checked(&b[..]).err(),
            Some(FrameError::BadLength)
        );
    }

    #[test]
    fn truncated_frames_say_how_long_they_are() {
        let b = [0x82, 0x03, 1, 2];
        assert_eq!(
            Frame::new_checked(&b[..]).err(),
            Some(FrameError::Truncated { need: 5 })
        );
        assert_eq!(
            Frame::new_checked(&b[..1]).err(),
            Some(FrameError::Truncated { need: 0 })
        );
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: alloc::vec::Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for (i, b) in whole.iter().enumerate() {
            assert_eq!(*b, data[i] ^ key[i % 4]);
        }
        for step in [1, 3, 5, 8, 13, 64] {
            let mut pieces = data.clone();
            let mut at = 0;
            while at < pieces.len() {
                let end = (at + step).min(pieces.len());
                apply_mask(&mut pieces[at..end], key, at);
                at = end;
            }
            assert_eq!(pieces, whole, "step {step}");
        }
    }
}
