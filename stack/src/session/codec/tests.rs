//! The shipped codecs: exact framing, round trips, and independence from chunking.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::test_rng::Rng;

/// What a session does: buffer what arrives, decode as many packages as are complete, drop
/// the bytes they used. Returns the packages, and every known length seen.
fn feed<C>(codec: &mut C, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<usize>)
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let (mut buf, mut pkgs, mut known) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&buf).unwrap() {
                Decoded::Packet(p, used) => {
                    pkgs.push(p.to_vec());
                    buf.drain(..used);
                }
                Decoded::NeedMoreKnownLen(n) => {
                    assert!(
                        n > buf.len(),
                        "known length {n} with {} buffered",
                        buf.len()
                    );
                    known.push(n);
                    break;
                }
                Decoded::NeedMore => break,
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    (pkgs, known)
}

fn stream<C>(codec: &mut C, pkgs: &[Vec<u8>]) -> Vec<u8>
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let mut out = Vec::new();
    for p in pkgs {
        codec.encode(&&p[..], &mut out).unwrap();
    }
    out
}

fn random_packages(rng: &mut Rng, n: usize, max: usize, line: bool) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.below(max as u64 + 1) as usize;
            (0..len)
                .map(|_| {
                    let b = rng.next() as u8;
                    match (line, b) {
                        (true, b'\n' | b'\r') => b'x',
                        _ => b,
                    }
                })
                .collect()
        })
        .collect()
}

const ALL: [LengthPrefixed; 4] = [
    LengthPrefixed::U16_BE,
    LengthPrefixed::U16_LE,
    LengthPrefixed::U32_BE,
    LengthPrefixed::U32_LE,
];

#[test]
fn length_prefixes_are_laid_out_as_named() {
    let want: [&[u8]; 4] = [
        &[0x01, 0x02],
        &[0x02, 0x01],
        &[0, 0, 0x01, 0x02],
        &[0x02, 0x01, 0, 0],
    ];
    let body = vec![7u8; 0x0102];
    for (mut c, header) in ALL.into_iter().zip(want) {
        let mut out = Vec::new();
        c.encode(&&body[..], &mut out).unwrap();
        assert_eq!(&out[..header.len()], header, "{c:?}");
        assert_eq!(out.len(), header.len() + body.len());
        assert_eq!(c.decode(&out), Ok(Decoded::Packet(&body[..], out.len())));
    }
}

#[test]
fn a_declared_length_is_known_from_the_header_alone() {
    // 4 GiB - 1 declared: the session can refuse it before buffering any body.
    let mut c = LengthPrefixed::U32_BE;
    assert_eq!(c.decode(&[0xff, 0xff, 0xff]), Ok(Decoded::NeedMore));
    let total = 4 + u32::MAX as usize;
    assert_eq!(
        c.decode(&[0xff, 0xff, 0xff, 0xff]),
        Ok(Decoded::NeedMoreKnownLen(total))
    );
    let mut c = LengthPrefixed::U16_LE;
    assert_eq!(c.decode(&[0x00]), Ok(Decoded::NeedMore));
    assert_eq!(
        c.decode(&[0x00, 0x01, 1, 2]),
        Ok(Decoded::NeedMoreKnownLen(258))
    );
    assert_eq!(c.decode(&[0, 0, 9]), Ok(Decoded::Packet(&[][..], 2)));
}

#[test]
fn encode_refuses_what_does_not_fit_and_writes_nothing() {
    let big = vec![0u8; 70_000];
    let mut out = Vec::new();
    assert_eq!(
        { LengthPrefixed::U16_BE }.encode(&&big[..], &mut out),
        Err(CodecError::TooLong {
            len: 70_000,
            max: 65_535
        })
    );
    let mut buf = [0u8; 5];
    let mut small = SliceOut::new(&mut buf);
    assert_eq!(
        { LengthPrefixed::U32_BE }.encode(&&b"hi"[..], &mut small),
        Err(CodecError::NoRoom { need: 6, room: 5 })
    );
    assert_eq!(small.filled(), b"");
    let mut hv: heapless::Vec<u8, 3> = heapless::Vec::new();
    assert_eq!(
        Lines::new().encode(&&b"abc"[..], &mut hv),
        Err(CodecError::NoRoom { need: 4, room: 3 })
    );
    assert!(hv.is_empty());
    for bad in [&b"a\nb"[..], b"ends\r"] {
        assert!(matches!(
            Lines::new().encode(&bad, &mut out),
            Err(CodecError::Malformed(_))
        ));
    }
    assert!(out.is_empty());
}

#[test]
fn lines_strip_crlf_and_keep_empty_lines() {
    let (pkgs, _) = feed(&mut Lines::new(), &[b"a\r\n\nbc\n\r\n"]);
    assert_eq!(pkgs, vec![b"a".to_vec(), vec![], b"bc".to_vec(), vec![]]);
}

#[test]
fn lines_search_each_byte_once() {
    // The codec resumes where it stopped: a 10,000-byte line fed byte by byte is found.
    let mut c = Lines::new();
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        buf.push(b'x');
        assert_eq!(c.decode(&buf), Ok(Decoded::NeedMore));
        assert_eq!(c.scanned, buf.len());
    }
    buf.push(b'\n');
    assert_eq!(c.decode(&buf), Ok(Decoded::Packet(&buf[..10_000], 10_001)));
    assert_eq!(c.scanned, 0);
    // A caller that starts over with a shorter buffer is searched from the start.
    c.scanned = 50;
    assert_eq!(c.decode(b"ab\n"), Ok(Decoded::Packet(&b"ab"[..], 3)));
}

/// Every split point of a stream, and random chunkings, decode to the same packages as the
/// whole stream at once.
fn chunking_never_matters<C>(mut codec: C, pkgs: &[Vec<u8>], rng: &mut Rng)
where
    C: Clone + for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let bytes = stream(&mut codec.clone(), pkgs);
    let (whole, _) = feed(&mut codec.clone(), &[&bytes]);
    assert_eq!(whole, pkgs);
    for cut in 0..=bytes.len() {
        let (got, _) = feed(&mut codec, &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(got, pkgs, "split at {cut}");
    }
    for _ in 0..50 {
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let n = 1 + rng.below(64.min(bytes.len() - at) as u64) as usize;
            chunks.push(&bytes[at..at + n]);
            at += n;
        }
        let (got, _) = feed(&mut codec, &chunks);
        assert_eq!(got, pkgs);
    }
}

#[test]
fn length_prefixed_decoding_does_not_depend_on_chunking() {
    let mut rng = Rng(0x5eed);
    for c in ALL {
        let pkgs = random_packages(&mut rng, 40, 300, false);
        chunking_never_matters(c, &pkgs, &mut rng);
    }
}

#[test]
fn line_decoding_does_not_depend_on_chunking() {
    let mut rng = Rng(0x11e5);
    let pkgs = random_packages(&mut rng, 60, 200, true);
    chunking_never_matters(Lines::new(), &pkgs, &mut rng);
}

#[test]
fn byte_by_byte_reports_the_known_length_once_the_header_is_in() {
    let mut c = LengthPrefixed::U16_BE;
    let bytes = stream(&mut c, &[vec![1u8; 10], vec![2u8; 3]]);
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let (pkgs, known) = feed(&mut c, &chunks);
    assert_eq!(pkgs, vec![vec![1u8; 10], vec![2u8; 3]]);
    // From the 2nd byte on, each package's total is known until its last byte arrives.
    assert_eq!(known, [vec![12; 10], vec![5; 3]].concat());
}
