//! Encoding: the inverse of `arbitrary`'s decoding, for seeds.

use super::script::{AckChoice, Delivery, Handshake, Op, Opts, Script, Seg, SeqChoice, Setup};

/// Writes values the way `arbitrary` 1.5 reads them back.
pub trait Encode {
    /// Appends the encoding of `self`.
    fn enc(&self, out: &mut Vec<u8>);
}

impl Encode for u8 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for bool {
    fn enc(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn enc(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.enc(out);
            }
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn enc(&self, out: &mut Vec<u8>) {
        self.0.enc(out);
        self.1.enc(out);
    }
}

impl Encode for [u8; 4] {
    fn enc(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

/// The `u32` that makes the derived `Arbitrary` pick variant `index` of `count`.
fn variant(out: &mut Vec<u8>, index: u64, count: u64) {
    // The decoder computes (x * count) >> 32; the smallest x with that quotient.
    let x = (index << 32).div_ceil(count);
    debug_assert_eq!((x * count) >> 32, index);
    (x as u32).enc(out);
}

impl Encode for Handshake {
    fn enc(&self, out: &mut Vec<u8>) {
        let i = match self {
            Handshake::Full => 0,
            Handshake::Half => 1,
            Handshake::Skip => 2,
        };
        variant(out, i, 3);
    }
}

impl Encode for Opts {
    fn enc(&self, out: &mut Vec<u8>) {
        self.mss.enc(out);
        self.wscale.enc(out);
        self.sack_perm.enc(out);
        self.ts.enc(out);
        self.sack.enc(out);
        self.junk.enc(out);
    }
}

impl Encode for Setup {
    fn enc(&self, out: &mut Vec<u8>) {
        self.ipv6.enc(out);
        self.active.enc(out);
        self.handshake.enc(out);
        self.auto_read.enc(out);
        self.isn.enc(out);
        self.window.enc(out);
        self.opts.enc(out);
    }
}

impl Encode for SeqChoice {
    fn enc(&self, out: &mut Vec<u8>) {
        match self {
            SeqChoice::Next => variant(out, 0, 5),
            SeqChoice::Back(n) => {
                variant(out, 1, 5);
                n.enc(out);
            }
            SeqChoice::Ahead(n) => {
                variant(out, 2, 5);
                n.enc(out);
            }
            SeqChoice::Acked => variant(out, 3, 5),
            SeqChoice::Raw(n) => {
                variant(out, 4, 5);
                n.enc(out);
            }
        }
    }
}

impl Encode for AckChoice {
    fn enc(&self, out: &mut Vec<u8>) {
        match self {
            AckChoice::Latest => variant(out, 0, 5),
            AckChoice::Una => variant(out, 1, 5),
            AckChoice::Back(n) => {
                variant(out, 2, 5);
                n.enc(out);
            }
            AckChoice::Ahead(n) => {
                variant(out, 3, 5);
                n.enc(out);
            }
            AckChoice::Raw(n) => {
                variant(out, 4, 5);
                n.enc(out);
            }
        }
    }
}

impl Encode for Delivery {
    fn enc(&self, out: &mut Vec<u8>) {
        let i = match self {
            Delivery::Now => 0,
            Delivery::Hold => 1,
            Delivery::Twice => 2,
        };
        variant(out, i, 3);
    }
}

impl Encode for Seg {
    fn enc(&self, out: &mut Vec<u8>) {
        self.seq.enc(out);
        self.len.enc(out);
        self.flags.enc(out);
        self.ack.enc(out);
        self.window.enc(out);
        self.opts.enc(out);
        self.delivery.enc(out);
    }
}

impl Encode for Op {
    fn enc(&self, out: &mut Vec<u8>) {
        const N: u64 = 10;
        match self {
            Op::Send(s) => {
                variant(out, 0, N);
                s.enc(out);
            }
            Op::Release(n) => {
                variant(out, 1, N);
                n.enc(out);
            }
            Op::Replay(n) => {
                variant(out, 2, N);
                n.enc(out);
            }
            Op::Advance(n) => {
                variant(out, 3, N);
                n.enc(out);
            }
            Op::AdvanceMs(n) => {
                variant(out, 4, N);
                n.enc(out);
            }
            Op::Read(n) => {
                variant(out, 5, N);
                n.enc(out);
            }
            Op::Write(n) => {
                variant(out, 6, N);
                n.enc(out);
            }
            Op::Shutdown => variant(out, 7, N),
            Op::Close => variant(out, 8, N),
            Op::Abort => variant(out, 9, N),
        }
    }
}

/// The input bytes that decode to `script`.
pub fn encode(script: &Script) -> Vec<u8> {
    let mut out = Vec::new();
    script.setup.enc(&mut out);
    for op in &script.ops {
        out.push(1);
        op.enc(&mut out);
    }
    out
}
