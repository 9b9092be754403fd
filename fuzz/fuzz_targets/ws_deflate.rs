//! permessage-deflate (`ustack::ws::deflate::Deflate`) under arbitrary negotiated
//! parameters: hostile compressed messages, zip bombs, and round trips.
//!
//! Input: `[dparams, cfg, limit, data...]`.
//!
//! - `dparams`: the negotiated `DeflateParams`: bits 0-2 server window bits - 8, bits 3-5
//!   client window bits - 8, bit 6 `server_no_context_takeover`, bit 7
//!   `client_no_context_takeover`.
//! - `cfg`: bits 0-3 the compression level (mod 11), bit 4 the sending role (0: the server
//!   compresses, the client inflates), bits 5-7 the largest frame (1, 2, 7, 64, 300, 4096,
//!   16 KiB, 64 KiB) the data is cut into, with sizes seeded by `limit`.
//! - `limit`: bits 0-1 the inflate limit (64 KiB, 0, 1, 1000 bytes).
//!
//! Checks:
//!
//! 1. `data` as a compressed message (twice, the second time through the context the first
//!    left) inflated by the receiving side with the limit: never a panic, never more than
//!    `limit + 1` bytes out, errors only `TooBig { max: limit }` or `Corrupt`; cutting the
//!    message into frames (FIN on the last) gives the same output, or the same kind of
//!    error, as one frame. A compressed run of zeros far larger than the limit (the zip-bomb
//!    seeds) stops at `limit + 1`.
//! 2. Round trip: messages cut from `data`, compressed one after the other by the sending
//!    side (context takeover as negotiated) and inflated frame by frame by the other side,
//!    come out equal; the sender keeps its compressor only with a 15-bit window and context
//!    takeover, the receiver its inflater only with the sender's context takeover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack::ws::deflate::{Deflate, DeflateParams, InflateError};
use ustack::ws::Role;
use ustack_fuzz::seeds::deflate_params;

const FRAME_LIMITS: [usize; 8] = [1, 2, 7, 64, 300, 4096, 16 << 10, 64 << 10];
const LIMITS: [usize; 4] = [64 << 10, 0, 1, 1000];

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

fn cut<'a>(data: &'a [u8], rng: &mut Rng, limit: usize) -> Vec<&'a [u8]> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(limit)).min(data.len() - at);
        frames.push(&data[at..at + n]);
        at += n;
    }
    if frames.is_empty() {
        frames.push(data);
    }
    frames
}

/// Inflates one message given as `frames` with `max`, checking the bound.
fn inflate(d: &mut Deflate, frames: &[&[u8]], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let r = d.decompress(f, i + 1 == frames.len(), &mut out, max);
        assert!(
            out.len() <= max + 1,
            "{} bytes out with limit {max}",
            out.len()
        );
        match r {
            Ok(()) => {}
            Err(InflateError::TooBig { max: m }) => {
                assert_eq!(m, max);
                assert!(out.len() > max, "TooBig with {} of {max}", out.len());
                return Err(InflateError::TooBig { max: m });
            }
            Err(e @ InflateError::Corrupt(_)) => return Err(e),
        }
    }
    assert!(
        out.len() <= max,
        "Ok with {} bytes over the limit {max}",
        out.len()
    );
    Ok(out)
}

fn same_kind(a: &Result<Vec<u8>, InflateError>, b: &Result<Vec<u8>, InflateError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(InflateError::TooBig { .. }), Err(InflateError::TooBig { .. })) => true,
        (Err(InflateError::Corrupt(_)), Err(InflateError::Corrupt(_))) => true,
        _ => false,
    }
}

fn hostile(
    p: DeflateParams,
    recv_role: Role,
    data: &[u8],
    frame_limit: usize,
    seed: u8,
    max: usize,
) {
    let mut whole = Deflate::new(p, recv_role, 6);
    let mut pieces = Deflate::new(p, recv_role, 6);
    let mut rng = Rng(u32::from(seed).wrapping_mul(2654435761).wrapping_add(1));
    for round in 0..2 {
        let a = inflate(&mut whole, &[data], max);
        let frames = cut(data, &mut rng, frame_limit);
        let b = inflate(&mut pieces, &frames, max);
        assert!(
            same_kind(&a, &b),
            "round {round}: one frame gave {:?}, {} frames gave {:?}",
            a.as_ref().map(Vec::len),
            frames.len(),
            b.as_ref().map(Vec::len)
        );
        assert!(whole.memory() <= Deflate::INFLATER_MEMORY);
        if a.is_err() {
            // The connection is failed after an error; the state was dropped.
            assert_eq!(whole.memory(), 0);
            break;
        }
    }
}

fn round_trip(
    p: DeflateParams,
    send_role: Role,
    level: u8,
    data: &[u8],
    frame_limit: usize,
    seed: u8,
) {
    let recv_role = match send_role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let (bits, nct) = match send_role {
        Role::Server => (p.server_max_window_bits, p.server_no_context_takeover),
        Role::Client => (p.client_max_window_bits, p.client_no_context_takeover),
    };
    let mut tx = Deflate::new(p, send_role, level);
    let mut rx = Deflate::new(p, recv_role, level);
    let mut rng = Rng(u32::from(seed)
        .wrapping_mul(40503)
        .wrapping_add(0x9e37_79b9));
    let mut rest = data;
    for _ in 0..8 {
        let n = rng.below(rest.len() + 1);
        let (msg, r) = rest.split_at(n);
        rest = r;
        let mut wire = Vec::new();
        tx.compress(msg, &mut wire);
        let keeps = !nct && bits == 15 && tx.memory() > 0;
        assert!(
            tx.memory() == 0 || keeps,
            "compressor kept ({} B) with window {bits}, no_context_takeover {nct}",
            tx.memory()
        );
        let frames = cut(&wire, &mut rng, frame_limit);
        let got = inflate(&mut rx, &frames, 1 << 20)
            .unwrap_or_else(|e| panic!("our own {}-byte message failed: {e}", msg.len()));
        assert!(got == msg, "round trip of {} bytes changed them", msg.len());
        if nct {
            assert_eq!(rx.memory(), 0, "inflater kept without context takeover");
        }
        if rest.is_empty() {
            break;
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [dparams, cfg, limit, data @ ..] = input else {
        return;
    };
    let p = deflate_params(*dparams);
    let level = (cfg & 15) % 11;
    let send_role = if cfg & 0x10 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let recv_role = match send_role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let frame_limit = FRAME_LIMITS[usize::from(cfg >> 5)];
    let max = LIMITS[usize::from(limit & 3)];
    hostile(p, recv_role, data, frame_limit, *limit, max);
    round_trip(p, send_role, level, data, frame_limit, *limit);
});
