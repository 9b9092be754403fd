//! The per-message compressor and decompressor (RFC 7692 §7.2).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::mem::size_of;

use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use super::DeflateParams;
use crate::ws::Role;

/// The empty stored block that ends a sync flush: stripped by the sender, put back by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is produced this much at a time, so a message can overshoot its limit by at most
/// one byte (the probe that proves it is too big) and a zip bomb costs at most this much
/// work past the limit.
const CHUNK: usize = 16 * 1024;

/// What `CompressorOxide` keeps in its own boxes besides its inline fields: Huffman tables
/// (3 × 288 × 5 bytes), the output buffer (85 196), the LZ dictionary (32 768 + 258) and
/// its two hash chains (2 × 65 536). Read from miniz_oxide 0.8.9's sources and checked
/// with a counting allocator.
const COMPRESSOR_BOXES: usize = 3 * 288 * 5 + 85_196 + (32_768 + 258) + 2 * 65_536;

/// Why an inflated message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates to more than the limit.
    TooBig {
        /// The limit, in bytes.
        max: usize,
    },
    /// The payload is not a valid DEFLATE stream.
    Corrupt(&'static str),
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig { max } => write!(
                f,
                "compressed message inflates to more than the {max}-byte limit"
            ),
            InflateError::Corrupt(why) => write!(f, "corrupt compressed message: {why}"),
        }
    }
}

/// One connection's permessage-deflate state: a compressor for what this side sends and a
/// decompressor for what it receives.
///
/// Both are allocated on first use. The compressor is kept between messages only when
/// this side takes over its context with a full window; the decompressor only when the
/// peer takes over its context. Otherwise each is dropped at the end of every message, so
/// an idle connection holds no heap at all. See the [module docs](super) for the sizes.
///
/// ```
/// use ustack::ws::deflate::{Deflate, DeflateConfig, DeflateParams};
/// use ustack::ws::Role;
///
/// let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
/// let params = DeflateParams::negotiate([offer].into_iter(), &DeflateConfig::default()).unwrap();
/// let mut server = Deflate::new(params, Role::Server, 6);
/// let mut client = Deflate::new(params, Role::Client, 6);
///
/// let mut wire = Vec::new();
/// server.compress(b"Hello, Hello, Hello", &mut wire);
/// let mut text = Vec::new();
/// client.decompress(&wire, true, &mut text, 1 << 20).unwrap();
/// assert_eq!(text, b"Hello, Hello, Hello");
/// // The server took over its context: it holds its compressor until the session ends.
/// assert_eq!(server.memory(), Deflate::COMPRESSOR_MEMORY);
/// server.release();
/// assert_eq!(server.memory(), 0);
/// ```
pub struct Deflate {
    /// miniz_oxide flags for a raw stream at the configured level.
    flags: u32,
    /// Our compression window, in bits.
    send_bits: u8,
    /// Whether the compressor may outlive a message.
    send_keep: bool,
    comp: Option<Box<CompressorOxide>>,
    /// Whether the decompressor may outlive a message.
    recv_keep: bool,
    inflater: Option<Box<InflateState>>,
    /// The current incoming message has produced input for the inflater.
    recv_started: bool,
    /// The peer ended the DEFLATE stream (a BFINAL block) inside the current message.
    recv_ended: bool,
}

impl fmt::Debug for Deflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflate")
            .field("send_bits", &self.send_bits)
            .field("send_keep", &self.send_keep)
            .field("recv_keep", &self.recv_keep)
            .field("memory", &self.memory())
            .finish()
    }
}

impl Deflate {
    /// Heap bytes of one compressor (miniz_oxide 0.8.9): about 312 KiB.
    pub const COMPRESSOR_MEMORY: usize = size_of::<CompressorOxide>() + COMPRESSOR_BOXES;
    /// Heap bytes of one decompressor, its 32 KiB window included: about 42 KiB.
    pub const INFLATER_MEMORY: usize = size_of::<InflateState>();

    /// The state for one connection on the `role` side with the agreed `params`, compressing
    /// at `level` (0..=10, larger is clamped). Allocates nothing until first use.
    pub fn new(params: DeflateParams, role: Role, level: u8) -> Self {
        let (send_nct, send_bits, recv_nct) = match role {
            Role::Server => (
                params.server_no_context_takeover,
                params.server_max_window_bits,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_no_context_takeover,
                params.client_max_window_bits,
                params.server_no_context_takeover,
            ),
        };
        let send_bits = send_bits.clamp(8, 15);
        Deflate {
            // Negative window bits select a raw stream: no zlib header, no Adler-32.
            flags: create_comp_flags_from_zip_params(i32::from(level.min(10)), -15, 0),
            send_bits,
            // A small window is emulated by starting every chunk with an empty dictionary
            // (see `compress`), which leaves no context to take over.
            send_keep: !send_nct && send_bits == 15,
            comp: None,
            recv_keep: !recv_nct,
            inflater: None,
            recv_started: false,
            recv_ended: false,
        }
    }

    /// Compresses one whole message payload and appends it to `out`, without the trailing
    /// `00 00 ff ff` (RFC 7692 §7.2.1).
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            // An empty stored block with its LEN/NLEN stripped: valid in any context, and
            // cheaper than waking a compressor. Our compressor is always byte-aligned
            // between messages, so this cannot interleave with its bits.
            out.push(0x00);
            return;
        }
        let start = out.len();
        let flags = self.flags;
        let comp = self
            .comp
            .get_or_insert_with(|| Box::new(CompressorOxide::new(flags)));
        let ok = if self.send_bits == 15 {
            feed(comp, payload, TDEFLFlush::Sync, out)
        } else {
            // miniz_oxide always searches a 32 KiB window. To honour a smaller one, the
            // message goes in chunks of at most 2^bits bytes, each ended by a full flush:
            // that byte-aligns the output with an empty stored block (a sync flush) and
            // empties the dictionary, so no back-reference can reach past the start of its
            // chunk, hence never further than 2^bits. Sync-flushed non-final blocks simply
            // concatenate, so the chunks form one valid stream. A full flush clears only the
            // hash chains (128 KiB), a third of what `reset` clears.
            payload
                .chunks(1 << self.send_bits)
                .all(|chunk| feed(comp, chunk, TDEFLFlush::Full, out))
        };
        if ok && out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        } else {
            // Cannot happen with miniz_oxide's callback output, but a compressor in an
            // unknown state must not be trusted: stored blocks are always valid.
            self.comp = None;
            out.truncate(start);
            stored(payload, out);
        }
        if !self.send_keep {
            // Dropping rather than resetting: a fresh compressor costs about 55 µs against
            // 12 µs for a reset, but an idle connection then holds 312 KiB less.
            self.comp = None;
        }
    }

    /// Inflates one frame's (unmasked) payload of a compressed message, appending to `out`;
    /// `fin` marks the message's last frame, after which the `00 00 ff ff` tail is fed
    /// internally (RFC 7692 §7.2.2).
    ///
    /// Fails with [`InflateError::TooBig`] as soon as `out.len()` would exceed `max`, having
    /// appended at most one byte past it. After any error the message and the connection
    /// are unusable (fail it with close code 1007 or 1009): the state is dropped.
    ///
    /// A stream that the peer ended with a BFINAL block ends the message there: the rest of
    /// its bytes are ignored and the next message starts a fresh stream. An empty payload
    /// for a whole message inflates to nothing.
    pub fn decompress(
        &mut self,
        data: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        let res = self.inflate_frame(data, fin, out, max);
        if res.is_err() || fin {
            if res.is_err() || !self.recv_keep || self.recv_ended {
                self.inflater = None;
            }
            self.recv_started = false;
            self.recv_ended = false;
        }
        res
    }

    fn inflate_frame(
        &mut self,
        data: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        if data.is_empty() && !(fin && self.recv_started) {
            // Empty fragments carry nothing; an empty message is not a DEFLATE stream at
            // all, and feeding it the tail alone would leave the inflater inside a stored
            // block header.
            return Ok(());
        }
        self.recv_started = true;
        let inflater = self
            .inflater
            .get_or_insert_with(|| InflateState::new_boxed(DataFormat::Raw));
        inflate_into(inflater, data, out, max, &mut self.recv_ended)?;
        if fin {
            inflate_into(inflater, &TAIL, out, max, &mut self.recv_ended)?;
        }
        Ok(())
    }

    /// Heap bytes this connection holds right now (its windows and tables).
    pub fn memory(&self) -> usize {
        let comp = self.comp.as_ref().map_or(0, |_| Self::COMPRESSOR_MEMORY);
        let inflater = self.inflater.as_ref().map_or(0, |_| Self::INFLATER_MEMORY);
        comp + inflater
    }

    /// Drops both states (e.g. when the session closes or goes idle).
    ///
    /// Always safe for the sending side, which then starts its next message with an empty
    /// window. The receiving side is lost: if the peer takes over its context, calling this
    /// between two of its messages makes the next one fail, so do that only on close. With
    /// no context takeover there is nothing to drop between messages anyway.
    pub fn release(&mut self) {
        self.comp = None;
        self.inflater = None;
        self.recv_started = false;
        self.recv_ended = false;
    }
}

/// Compresses all of `input` and ends with `flush`; `false` if the compressor failed.
fn feed(
    comp: &mut CompressorOxide,
    mut input: &[u8],
    flush: TDEFLFlush,
    out: &mut Vec<u8>,
) -> bool {
    loop {
        let (status, used) = compress_to_output(comp, input, flush, |bytes| {
            out.extend_from_slice(bytes);
            true
        });
        if status != TDEFLStatus::Okay {
            return false;
        }
        // In callback mode one call takes everything; looping only guards against a
        // future version that returns early, and stops if it makes no progress.
        match input.get(used..) {
            Some([]) => return true,
            Some(rest) if used > 0 => input = rest,
            _ => return false,
        }
    }
}

/// `payload` as stored (uncompressed) non-final blocks, minus the sync tail.
fn stored(payload: &[u8], out: &mut Vec<u8>) {
    for block in payload.chunks(usize::from(u16::MAX)) {
        // `chunks` bounds the length, so the conversion cannot fail.
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    // The receiver appends the tail: the empty stored block's header byte is all that goes.
    out.push(0x00);
}

/// Runs `input` through the inflater, appending at most `CHUNK` bytes at a time and never
/// more than one byte past `max`.
fn inflate_into(
    state: &mut InflateState,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
    ended: &mut bool,
) -> Result<(), InflateError> {
    while !*ended {
        let len = out.len();
        // One byte more than the room left: producing it proves the message too big.
        let want = CHUNK.min(max.saturating_sub(len).saturating_add(1));
        out.resize(len + want, 0);
        let res = inflate(state, input, &mut out[len..], MZFlush::None);
        out.truncate(len + res.bytes_written);
        input = input.get(res.bytes_consumed..).unwrap_or_default();
        if out.len() > max {
            return Err(InflateError::TooBig { max });
        }
        let progress = res.bytes_written > 0 || res.bytes_consumed > 0;
        match res.status {
            Ok(MZStatus::StreamEnd) => *ended = true,
            Ok(_) | Err(MZError::Buf) if progress => {}
            // No progress: waiting for input, which is fine only if there is none.
            Ok(_) | Err(MZError::Buf) if input.is_empty() => return Ok(()),
            Ok(_) | Err(MZError::Buf) => return Err(InflateError::Corrupt("inflater stalled")),
            Err(_) => return Err(InflateError::Corrupt("invalid DEFLATE data")),
        }
        // Done once the input is used up and the output was not cut short.
        if input.is_empty() && res.bytes_written < want {
            return Ok(());
        }
    }
    Ok(())
}
