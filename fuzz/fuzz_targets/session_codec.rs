//! The shipped session codecs (`LengthPrefixed` in its four layouts, `Lines`) on arbitrary
//! streams cut into arbitrary chunks. Decoding chunk by chunk, the way a session buffers,
//! must give exactly the packages that decoding the whole stream at once gives; a known
//! length must exceed what is buffered; every package must re-encode to the bytes it used
//! (for lines, up to the `\r\n` / `\n` ending).
//!
//! Input: `[codec, n_cuts, cut..., stream...]`. `codec % 5` picks the codec; each cut byte is
//! a chunk length (0 means 1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack::session::codec::{Codec, CodecError, Decoded, LengthPrefixed, Lines};

/// Each package with the bytes it used.
type Packages = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes `chunks` as a session would; returns the packages and the bytes each one used.
fn decode<C>(codec: &mut C, chunks: &[&[u8]]) -> (Packages, usize)
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec
                .decode(&buf)
                .expect("the shipped codecs accept any stream")
            {
                Decoded::Packet(p, used) => {
                    assert!(
                        used > 0 && used <= buf.len(),
                        "used {used} of {}",
                        buf.len()
                    );
                    out.push((p.to_vec(), buf[..used].to_vec()));
                    buf.drain(..used);
                }
                Decoded::NeedMoreKnownLen(n) => {
                    assert!(
                        n > buf.len(),
                        "known length {n} with {} buffered",
                        buf.len()
                    );
                    break;
                }
                Decoded::NeedMore => break,
            }
        }
    }
    (out, buf.len())
}

fn check<C>(mut codec: C, cuts: &[u8], stream: &[u8], lines: bool)
where
    C: Clone + for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let (whole, left) = decode(&mut codec.clone(), &[stream]);
    let mut chunks = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().cycle().take(stream.len()) {
        if at >= stream.len() {
            break;
        }
        let n = usize::from(c.max(1)).min(stream.len() - at);
        chunks.push(&stream[at..at + n]);
        at += n;
    }
    if at < stream.len() {
        chunks.push(&stream[at..]);
    }
    let (chunked, chunked_left) = decode(&mut codec.clone(), &chunks);
    assert_eq!(whole, chunked, "chunking changed the packages");
    assert_eq!(left, chunked_left);
    for (pkg, used) in &whole {
        let mut again = Vec::new();
        match codec.encode(&&pkg[..], &mut again) {
            Ok(()) if lines => assert!(used == &again || used[..used.len() - 1].ends_with(b"\r")),
            Ok(()) => assert_eq!(&again, used),
            // A line ending in '\r' before "\r\n" cannot be written back; nothing else fails.
            Err(CodecError::Malformed(_)) if lines => assert!(pkg.ends_with(b"\r")),
            Err(e) => panic!("re-encoding a decoded package failed: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [which, n, rest @ ..] = data else { return };
    let n = usize::from(*n).min(rest.len());
    let (cuts, stream) = rest.split_at(n);
    let cuts = if cuts.is_empty() { &[1u8][..] } else { cuts };
    match which % 5 {
        0 => check(LengthPrefixed::U16_BE, cuts, stream, false),
        1 => check(LengthPrefixed::U16_LE, cuts, stream, false),
        2 => check(LengthPrefixed::U32_BE, cuts, stream, false),
        3 => check(LengthPrefixed::U32_LE, cuts, stream, false),
        _ => check(Lines::new(), cuts, stream, true),
    }
});
