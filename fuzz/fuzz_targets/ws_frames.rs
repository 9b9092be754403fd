//! `ustack::ws::conn::WsConn` reading arbitrary frame streams in either role, and writing
//! then reading back messages derived from the input.
//!
//! Input: `[cfg, dparams, chunking, stream...]`.
//!
//! - `cfg`: bit 0 the reading role (0 server: masked frames expected; 1 client), bit 1
//!   permessage-deflate on, bit 2 assemble into a 300-byte `MsgBuf::slice` instead of the
//!   heap, bit 3 `auto_pong` off, bits 4-6 `max_message_size` (1, 16, 125, 1000, 4096,
//!   64 KiB, 1 MiB, 16 MiB), bit 7 the direction of the round trip (0 client to server).
//! - `dparams`: the negotiated `DeflateParams`: bits 0-2 server window bits - 8, bits 3-5
//!   client window bits - 8, bit 6 `server_no_context_takeover`, bit 7
//!   `client_no_context_takeover`.
//! - `chunking`: bits 0-2 the largest chunk (1, 2, 3, 7, 16, 64, 300, 2000 bytes), bits 3-7
//!   seed the chunk sizes (and the round trip's message cuts).
//!
//! Checks:
//!
//! 1. Reading the stream chunk by chunk as a receiver does (a buffer of unconsumed bytes,
//!    `read` until `NeedMore`, drop `used`) gives exactly the events (messages with their
//!    bytes, pings, pongs, close), the automatic replies written to `out`, and the final
//!    error of reading the whole stream at once. A `NeedMore { total: Some(n) }` has
//!    `n` over what is buffered; `used` never exceeds it.
//! 2. An error's code is 1002, 1007 or 1009 (1011 only for a compressed message into a
//!    slice store), and the last frame written to `out` is a close frame with that code.
//!    Every ping was answered by a pong with its payload (when `auto_pong` is on and our
//!    close has not gone out). The message buffer stays within twice `max_message_size`.
//! 3. Round trip: messages cut from the stream bytes (text or binary, whole or fragmented
//!    with `write_frame` FIN=0 plus continuations, with pings between fragments, compressed
//!    by `write_message` or by a separate `Deflate` of the writer's role) written by one
//!    role and read by the other, with and without deflate, come out equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack::ws::close::{parse_close, CloseCode};
use ustack::ws::conn::{Event, Message, MsgBuf, Step, WsConfig, WsConn};
use ustack::ws::deflate::{Deflate, DeflateParams};
use ustack::ws::frame::{apply_mask, FrameHeader, Opcode, RSV1};
use ustack::ws::Role;
use ustack_fuzz::seeds::deflate_params;

const MAX_SIZES: [usize; 8] = [1, 16, 125, 1000, 4096, 64 << 10, 1 << 20, 16 << 20];
const CHUNK_LIMITS: [usize; 8] = [1, 2, 3, 7, 16, 64, 300, 2000];
const SLICE_STORE: usize = 300;
/// Turns on the checks of findings reported but not fixed yet in `stack/src/ws/` (see
/// "Findings: WebSocket" in `fuzz/README.md`); set it once they are.
const AFTER_FIXES: bool = true;

/// An event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, Vec<u8>)>),
}

impl Ev {
    fn of(e: Event<'_>) -> Ev {
        match e {
            Event::Message(Message::Text(t)) => Ev::Text(t.as_bytes().to_vec()),
            Event::Message(Message::Binary(b)) => Ev::Binary(b.to_vec()),
            Event::Ping(p) => Ev::Ping(p.to_vec()),
            Event::Pong(p) => Ev::Pong(p.to_vec()),
            Event::Close(c) => Ev::Close(c.map(|(code, r)| (code.0, r.as_bytes().to_vec()))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    role: Role,
    max: usize,
    deflate: Option<DeflateParams>,
    level: u8,
    slice: bool,
    auto_pong: bool,
}

impl Setup {
    fn conn(&self, role: Role) -> WsConn {
        let cfg = WsConfig {
            max_message_size: self.max,
            auto_pong: self.auto_pong,
            ..WsConfig::default()
        };
        let mut c = WsConn::with_seed(role, cfg, [7; 32]);
        if let Some(p) = self.deflate {
            c.set_deflate(p, self.level);
        }
        c
    }
}

/// A small deterministic generator for chunk sizes and cuts.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n.max(1)
    }
}

/// What a reader saw: events, the bytes it wrote, the error it ended with.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    events: Vec<Ev>,
    out: Vec<u8>,
    error: Option<u16>,
    /// Bytes left unconsumed at the end (0 after an error).
    left: usize,
}

/// Reads `chunks` one after the other the way a receiver does.
fn drive(s: &Setup, chunks: &[&[u8]]) -> Seen {
    let mut conn = s.conn(s.role);
    let mut slice = [0u8; SLICE_STORE];
    let mut store = if s.slice {
        MsgBuf::slice(&mut slice)
    } else {
        MsgBuf::heap()
    };
    let mut seen = Seen {
        events: Vec::new(),
        out: Vec::new(),
        error: None,
        left: 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    'chunks: for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let have = buf.len();
            match conn.read(&mut buf, &mut store, &mut seen.out) {
                Ok(Step::Frame { used, event }) => {
                    assert!(used <= have, "used {used} of {have}");
                    if let Some(e) = event {
                        seen.events.push(Ev::of(e));
                    }
                    buf.drain(..used);
                    if used == 0 {
                        // Only after a close: nothing left to drop.
                        assert!(conn.close_received() && have == 0);
                        break;
                    }
                }
                Ok(Step::NeedMore { total }) => {
                    if let Some(t) = total {
                        assert!(t > have, "NeedMore total {t} with {have} buffered");
                    }
                    break;
                }
                Err(e) => {
                    seen.error = Some(e.code.0);
                    break 'chunks;
                }
            }
            let bound = (2 * (s.max + 1)).max(64);
            assert!(
                store.capacity() <= bound.max(if s.slice { SLICE_STORE } else { 0 }),
                "message buffer holds {} for max {}",
                store.capacity(),
                s.max
            );
        }
    }
    // After an error, what was left depends on where the chunk ended.
    seen.left = if seen.error.is_some() { 0 } else { buf.len() };
    seen
}

/// The frames in `out` (what this side wrote), unmasked.
fn frames_written(out: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let (h, hl) = FrameHeader::parse(&out[at..])
            .expect("we write valid lengths")
            .expect("we write whole frames");
        let len = h.len as usize;
        let mut payload = out[at + hl..at + hl + len].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut payload, k, 0);
        }
        frames.push((h, payload));
        at += hl + len;
    }
    frames
}

fn check_stream(s: &Setup, chunking: u8, stream: &[u8]) {
    let whole = drive(s, &[stream]);
    let mut rng = Rng(u32::from(chunking >> 3)
        .wrapping_mul(2654435761)
        .wrapping_add(1));
    let limit = CHUNK_LIMITS[usize::from(chunking & 7)];
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = (1 + rng.below(limit)).min(stream.len() - at);
        chunks.push(&stream[at..at + n]);
        at += n;
    }
    let chunked = drive(s, &chunks);
    assert_eq!(whole, chunked, "chunking changed what was read");

    let written = frames_written(&whole.out);
    for (h, _) in &written {
        assert_eq!(
            h.mask.is_some(),
            s.role == Role::Client,
            "masking of our frames"
        );
        assert!(h.fin && h.rsv == 0 && matches!(h.opcode, Opcode::Pong | Opcode::Close));
    }
    let pongs: Vec<&Vec<u8>> = written
        .iter()
        .filter(|(h, _)| h.opcode == Opcode::Pong)
        .map(|(_, p)| p)
        .collect();
    let pings: Vec<&Vec<u8>> = whole
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Ping(p) => Some(p),
            _ => None,
        })
        .collect();
    if s.auto_pong {
        assert_eq!(pings, pongs, "every ping answered with its payload");
    } else {
        assert!(pongs.is_empty());
    }
    let closes: Vec<_> = written
        .iter()
        .filter(|(h, _)| h.opcode == Opcode::Close)
        .collect();
    assert!(closes.len() <= 1, "one close frame at most");
    if let Some((_, last)) = written.last().filter(|(h, _)| h.opcode == Opcode::Close) {
        let (code, _) = parse_close(last)
            .expect("our close payload is valid")
            .expect("our close carries a code");
        match whole.error {
            Some(e) => assert_eq!(code.0, e, "the failing close carries the error's code"),
            None => {
                // The echo of the peer's close.
                let Some(Ev::Close(c)) = whole.events.last() else {
                    panic!("a close frame without an error or a peer close: {whole:?}")
                };
                assert_eq!(code.0, c.as_ref().map_or(1000, |c| c.0));
            }
        }
    }
    if let Some(e) = whole.error {
        let allowed =
            matches!(e, 1002 | 1007 | 1009) || (e == 1011 && s.slice && s.deflate.is_some());
        assert!(allowed, "error code {e}");
        assert!(
            written
                .last()
                .is_some_and(|(h, _)| h.opcode == Opcode::Close),
            "error {e} without a close frame written"
        );
    }
    if matches!(whole.events.last(), Some(Ev::Close(_))) || whole.error.is_some() {
        assert!(
            !closes.is_empty(),
            "no close frame after the close handshake"
        );
    }
}

/// One message to send in the round trip.
struct Msg {
    text: bool,
    bytes: Vec<u8>,
    /// Fragment lengths (the last takes the rest); empty: one frame.
    cuts: Vec<usize>,
    /// Send a ping with this payload after the first fragment.
    ping: Option<Vec<u8>>,
}

fn message_event(m: &Msg) -> Ev {
    if m.text {
        Ev::Text(m.bytes.clone())
    } else {
        Ev::Binary(m.bytes.clone())
    }
}

fn round_trip(s: &Setup, dir: bool, chunking: u8, stream: &[u8]) {
    let (writer_role, reader_role) = if dir {
        (Role::Server, Role::Client)
    } else {
        (Role::Client, Role::Server)
    };
    let mut rng = Rng(u32::from(chunking)
        .wrapping_mul(40503)
        .wrapping_add(0x9e37_79b9));
    // External compression: a separate `Deflate` of the writer's role compresses every
    // message, so fragmented compressed messages can be written too.
    let external = s.deflate.is_some() && rng.below(2) == 0;
    let mut ext = s.deflate.map(|p| Deflate::new(p, writer_role, s.level));
    let mut msgs = Vec::new();
    let mut rest = stream;
    let cap = s.max.min(70_000);
    while !rest.is_empty() || msgs.is_empty() {
        let n = rng.below(rest.len().min(cap) + 1);
        let (bytes, r) = rest.split_at(n);
        rest = r;
        let text = rng.below(2) == 0;
        let mut bytes = bytes.to_vec();
        if text {
            bytes = String::from_utf8_lossy(&bytes).into_owned().into_bytes();
            while bytes.len() > s.max {
                // Lossy conversion grows the bytes; drop whole characters to fit again.
                let mut t = String::from_utf8(bytes).expect("utf8");
                t.pop();
                bytes = t.into_bytes();
            }
        }
        let mut cuts = Vec::new();
        if rng.below(3) == 0 {
            for _ in 0..rng.below(4) + 1 {
                cuts.push(rng.below(bytes.len() + 1));
            }
        }
        let ping = (rng.below(4) == 0).then(|| bytes.iter().take(125).copied().collect());
        msgs.push(Msg {
            text,
            bytes,
            cuts,
            ping,
        });
        if msgs.len() >= 16 {
            break;
        }
    }

    let mut writer = s.conn(writer_role);
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for m in &msgs {
        let opcode = if m.text { Opcode::Text } else { Opcode::Binary };
        let compressed = match (&mut ext, external) {
            (Some(d), true) if rng.below(4) != 0 => {
                let mut c = Vec::new();
                d.compress(&m.bytes, &mut c);
                Some(c)
            }
            _ => None,
        };
        if m.cuts.is_empty() && compressed.is_none() && !external {
            let msg = if m.text {
                Message::Text(std::str::from_utf8(&m.bytes).expect("utf8"))
            } else {
                Message::Binary(&m.bytes)
            };
            writer.write_message(msg, &mut wire).expect("write_message");
        } else {
            let body = compressed.as_deref().unwrap_or(&m.bytes);
            let mut pieces = Vec::new();
            let mut left = body;
            for &c in &m.cuts {
                let c = c.min(left.len());
                let (a, b) = left.split_at(c);
                pieces.push(a);
                left = b;
            }
            pieces.push(left);
            for (i, p) in pieces.iter().enumerate() {
                let mut h = FrameHeader::new(if i == 0 { opcode } else { Opcode::Continuation }, 0);
                h.fin = i + 1 == pieces.len();
                if i == 0 && compressed.is_some() {
                    h.rsv = RSV1;
                }
                writer.write_frame(h, p, &mut wire).expect("write_frame");
                if let (0, Some(ping)) = (i, &m.ping) {
                    writer
                        .write_control(Opcode::Ping, ping, &mut wire)
                        .expect("ping");
                }
            }
            // The ping follows the first fragment: it arrives before the message is
            // complete unless that fragment was the whole message.
            if let Some(ping) = m.ping.as_ref().filter(|_| pieces.len() > 1) {
                expect.push(Ev::Ping(ping.clone()));
            }
            expect.push(message_event(m));
            if let Some(ping) = m.ping.as_ref().filter(|_| pieces.len() == 1) {
                expect.push(Ev::Ping(ping.clone()));
            }
            continue;
        }
        expect.push(message_event(m));
    }
    writer
        .write_close(CloseCode::NORMAL, "done", &mut wire)
        .expect("close");
    expect.push(Ev::Close(Some((1000, b"done".to_vec()))));

    // Finding (reported): `WsConn::read` holds a compressed frame's *compressed* length
    // to `max_message_size` too, so a message of `max` incompressible bytes, whose
    // compressed form is a few bytes longer, fails with 1009 although it inflates to
    // `max`. Until that is settled (`AFTER_FIXES`) the reader gets room for the overhead.
    let max = match (AFTER_FIXES, s.deflate) {
        (false, Some(_)) => s.max + s.max / 8 + 64,
        _ => s.max,
    };
    let reader_setup = Setup {
        role: reader_role,
        slice: false,
        max,
        ..*s
    };
    let seen = drive(&reader_setup, &[&wire]);
    assert_eq!(seen.error, None, "round trip failed: {seen:?}");
    assert_eq!(seen.left, 0);
    assert_eq!(seen.events.len(), expect.len());
    for (i, (a, b)) in seen.events.iter().zip(&expect).enumerate() {
        assert!(a == b, "round trip event {i} differs: {a:?} != {b:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let [cfg, dparams, chunking, stream @ ..] = data else {
        return;
    };
    let (cfg, dparams, chunking) = (*cfg, *dparams, *chunking);
    let s = Setup {
        role: if cfg & 1 == 0 {
            Role::Server
        } else {
            Role::Client
        },
        max: MAX_SIZES[usize::from((cfg >> 4) & 7)],
        deflate: (cfg & 2 != 0).then(|| deflate_params(dparams)),
        level: chunking % 11,
        slice: cfg & 4 != 0,
        auto_pong: cfg & 8 == 0,
    };
    check_stream(&s, chunking, stream);
    round_trip(
        &s,
        cfg & 0x80 != 0,
        chunking,
        &stream[..stream.len().min(1 << 16)],
    );
});
