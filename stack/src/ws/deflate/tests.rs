use alloc::vec;
use alloc::vec::Vec;

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::{Deflate, DeflateConfig, DeflateParams, ExtError, InflateError};
use crate::session::codec::{CodecError, SliceOut};
use crate::ws::Role;

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

fn cfg() -> DeflateConfig {
    DeflateConfig::default()
}

fn negotiate(values: &[&str], cfg: &DeflateConfig) -> Option<DeflateParams> {
    DeflateParams::negotiate(values.iter().map(|v| v.as_bytes()), cfg)
}

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

fn response(p: &DeflateParams) -> alloc::string::String {
    let mut out = Vec::new();
    p.write_response(&mut out).unwrap();
    alloc::string::String::from_utf8(out).unwrap()
}

fn offer(cfg: &DeflateConfig) -> alloc::string::String {
    let mut out = Vec::new();
    DeflateParams::write_offer(cfg, &mut out).unwrap();
    alloc::string::String::from_utf8(out).unwrap()
}

/// Deterministic noise, so the tests need no rand crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Compressible text-like data whose repeats lie at all distances up to 32 KiB.
    fn words(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 12] = [
            b"alpha ",
            b"beta ",
            b"gamma ",
            b"delta ",
            b"{\"id\":",
            b"\"value\":",
            b"true,",
            b"false}",
            b"websocket ",
            b"deflate ",
            b"\n",
            b"0123456789",
        ];
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            let r = self.next();
            out.extend_from_slice(WORDS[(r % 12) as usize]);
            if r & 0x300 == 0 {
                out.push((r >> 16) as u8);
            }
        }
        out.truncate(n);
        out
    }
}

fn pair(p: DeflateParams) -> (Deflate, Deflate) {
    (
        Deflate::new(p, Role::Server, 6),
        Deflate::new(p, Role::Client, 6),
    )
}

fn round_trip(from: &mut Deflate, to: &mut Deflate, msg: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    from.compress(msg, &mut wire);
    let mut back = Vec::new();
    to.decompress(&wire, true, &mut back, usize::MAX).unwrap();
    assert_eq!(back, msg);
    wire
}

/// Inflates one message with a window of exactly 2^bits bytes: miniz_oxide refuses any
/// distance longer than its wrapping output buffer, so this proves the window was kept.
fn strict_inflate(msg: &[u8], bits: u8) -> Result<Vec<u8>, TINFLStatus> {
    let mut input = msg.to_vec();
    input.extend_from_slice(&TAIL);
    let mut input = &input[..];
    let mut r = DecompressorOxide::new();
    let mut win = vec![0u8; 1 << bits];
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        let (status, used, written) = decompress(
            &mut r,
            input,
            &mut win,
            pos,
            inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
        );
        out.extend_from_slice(&win[pos..pos + written]);
        pos = (pos + written) & (win.len() - 1);
        input = &input[used..];
        match status {
            TINFLStatus::NeedsMoreInput if input.is_empty() => return Ok(out),
            TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput => {}
            TINFLStatus::Done => return Ok(out),
            e => return Err(e),
        }
    }
}

// ---------------------------------------------------------------- negotiation

#[test]
fn plain_offer() {
    let p = negotiate(&["permessage-deflate"], &cfg()).unwrap();
    assert_eq!(p, params(false, false, 15, 15));
    assert_eq!(response(&p), "permessage-deflate");
}

#[test]
fn browser_offer() {
    let p = negotiate(&["permessage-deflate; client_max_window_bits"], &cfg()).unwrap();
    assert_eq!(p, params(false, false, 15, 15));
    assert_eq!(response(&p), "permessage-deflate");
}

#[test]
fn each_parameter() {
    let c = cfg();
    let p = negotiate(&["permessage-deflate; server_no_context_takeover"], &c).unwrap();
    assert_eq!(p, params(true, false, 15, 15));
    let p = negotiate(&["permessage-deflate; client_no_context_takeover"], &c).unwrap();
    assert_eq!(p, params(false, true, 15, 15));
    let p = negotiate(&["permessage-deflate; server_max_window_bits=10"], &c).unwrap();
    assert_eq!(p, params(false, false, 10, 15));
    assert_eq!(
        response(&p),
        "permessage-deflate; server_max_window_bits=10"
    );
    let p = negotiate(&["permessage-deflate; server_max_window_bits=8"], &c).unwrap();
    assert_eq!(p.server_max_window_bits, 8);
    let p = negotiate(&["permessage-deflate; client_max_window_bits=9"], &c).unwrap();
    assert_eq!(p, params(false, false, 15, 9));
    assert_eq!(response(&p), "permessage-deflate; client_max_window_bits=9");
    let p = negotiate(
        &["PerMessage-Deflate ;\tServer_No_Context_Takeover ; client_max_window_bits = 12 "],
        &c,
    )
    .unwrap();
    assert_eq!(p, params(true, false, 15, 12));
}

#[test]
fn config_limits_windows() {
    let c = DeflateConfig {
        server_max_window_bits: 11,
        client_max_window_bits: 10,
        ..cfg()
    };
    // The server window may always be limited; the client's only if it offered the param.
    let p = negotiate(&["permessage-deflate"], &c).unwrap();
    assert_eq!(p, params(false, false, 11, 15));
    assert_eq!(
        response(&p),
        "permessage-deflate; server_max_window_bits=11"
    );
    let p = negotiate(&["permessage-deflate; client_max_window_bits"], &c).unwrap();
    assert_eq!(p, params(false, false, 11, 10));
    let p = negotiate(
        &["permessage-deflate; client_max_window_bits=9; server_max_window_bits=13"],
        &c,
    )
    .unwrap();
    assert_eq!(p, params(false, false, 11, 9));
    let p = negotiate(&["permessage-deflate; server_max_window_bits=9"], &c).unwrap();
    assert_eq!(p.server_max_window_bits, 9);
}

#[test]
fn config_forces_no_context_takeover() {
    let c = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..cfg()
    };
    let p = negotiate(&["permessage-deflate"], &c).unwrap();
    assert_eq!(p, params(true, true, 15, 15));
    assert_eq!(
        response(&p),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
}

#[test]
fn first_valid_offer_wins() {
    let c = cfg();
    let p = negotiate(
        &["permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover, permessage-deflate"],
        &c,
    )
    .unwrap();
    assert_eq!(p, params(false, true, 15, 15));
    // Across header values, after other extensions and a syntax error.
    let p = negotiate(
        &[
            "x-webkit-deflate-frame; no_context_takeover, foo; bar=\"a,b\"",
            "permessage-deflate; x=\"a,b\", permessage-deflate; ; , , permessage-deflate; server_max_window_bits=12",
        ],
        &c,
    )
    .unwrap();
    assert_eq!(p, params(false, false, 12, 15));
    // An unterminated quote swallows the rest of its value, not the next header value.
    let p = negotiate(
        &[
            "permessage-deflate; x=\"unterminated, permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ],
        &c,
    )
    .unwrap();
    assert_eq!(p, params(true, false, 15, 15));
    assert_eq!(negotiate(&["foo, bar; baz=1"], &c), None);
    assert_eq!(negotiate(&[], &c), None);
    assert_eq!(negotiate(&[""], &c), None);
}

#[test]
fn invalid_offers_declined() {
    let c = cfg();
    for bad in [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=\"7\"",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; mystery",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate server_no_context_takeover",
        "permessage-deflate; =10",
    ] {
        assert_eq!(negotiate(&[bad], &c), None, "{bad}");
    }
}

#[test]
fn quoted_values() {
    let c = cfg();
    let p = negotiate(&["permessage-deflate; client_max_window_bits=\"10\""], &c).unwrap();
    assert_eq!(p.client_max_window_bits, 10);
    let p = negotiate(&["permessage-deflate; server_max_window_bits=\"1\\2\""], &c).unwrap();
    assert_eq!(p.server_max_window_bits, 12);
    assert_eq!(
        negotiate(&["permessage-deflate; server_max_window_bits=\" 9\""], &c),
        None
    );
}

#[test]
fn response_strings() {
    assert_eq!(
        response(&params(true, false, 15, 10)),
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    );
    assert_eq!(
        response(&params(true, true, 8, 9)),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=8; client_max_window_bits=9"
    );
    // All or nothing into a buffer that is too small.
    let mut buf = [0u8; 20];
    let mut out = SliceOut::new(&mut buf);
    assert!(matches!(
        params(true, false, 15, 15).write_response(&mut out),
        Err(CodecError::NoRoom { .. })
    ));
    assert_eq!(out.filled(), b"");
}

#[test]
fn offer_strings() {
    assert_eq!(offer(&cfg()), "permessage-deflate; client_max_window_bits");
    let all = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 9,
        level: 1,
    };
    assert_eq!(
        offer(&all),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=9"
    );
    // Out-of-range configuration is clamped rather than written.
    let odd = DeflateConfig {
        server_max_window_bits: 3,
        client_max_window_bits: 200,
        ..cfg()
    };
    assert_eq!(
        offer(&odd),
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
    );
}

#[test]
fn client_round_trip() {
    for c in [
        cfg(),
        DeflateConfig {
            server_no_context_takeover: true,
            client_max_window_bits: 12,
            ..cfg()
        },
        DeflateConfig {
            client_no_context_takeover: true,
            server_max_window_bits: 9,
            ..cfg()
        },
    ] {
        let server_cfg = DeflateConfig {
            client_max_window_bits: 11,
            ..cfg()
        };
        let o = offer(&c);
        let agreed = negotiate(&[&o], &server_cfg).unwrap();
        let r = response(&agreed);
        let got = DeflateParams::from_response(r.as_bytes(), &c).unwrap();
        assert_eq!(got, agreed, "{o} -> {r}");
    }
}

#[test]
fn client_checks_response() {
    let c = cfg();
    let ok = |r: &str| DeflateParams::from_response(r.as_bytes(), &c);
    assert_eq!(ok("permessage-deflate"), Ok(params(false, false, 15, 15)));
    // The server may add parameters that were not asked for.
    assert_eq!(
        ok("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"),
        Ok(params(true, true, 9, 15))
    );
    assert_eq!(
        ok("permessage-deflate; client_max_window_bits=\"8\""),
        Ok(params(false, false, 15, 8))
    );
    for bad in [
        "",
        "foo",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate, foo",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_no_context_takeover=true",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate;",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }

    let asked = DeflateConfig {
        server_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 12,
        ..cfg()
    };
    let check = |r: &str| DeflateParams::from_response(r.as_bytes(), &asked);
    assert_eq!(
        check("permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
        Ok(params(true, false, 9, 12))
    );
    for bad in [
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=13",
    ] {
        assert!(check(bad).is_err(), "{bad}");
    }
    assert_eq!(
        ExtError("x").to_string(),
        "bad permessage-deflate negotiation: x"
    );
}

#[test]
fn negotiation_survives_noise() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let alphabet =
        b"permessage-deflate;,=\" \t\\server_no_context_takeover0123456789client_max_window_bits";
    for _ in 0..20_000 {
        let n = (rng.next() % 80) as usize;
        let v: Vec<u8> = (0..n)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        let raw = rng.bytes(n);
        for value in [&v[..], &raw[..]] {
            if let Some(p) = DeflateParams::negotiate([value].into_iter(), &cfg()) {
                assert!((8..=15).contains(&p.server_max_window_bits));
                assert!((8..=15).contains(&p.client_max_window_bits));
                let _ = response(&p);
            }
            let _ = DeflateParams::from_response(value, &cfg());
        }
    }
}

// ---------------------------------------------------------------- codec

#[test]
fn round_trips_both_ways() {
    let mut rng = XorShift(7);
    let big = rng.words(1 << 20);
    let noise = rng.bytes(100_000);
    for p in [
        params(false, false, 15, 15),
        params(true, true, 15, 15),
        params(false, true, 12, 15),
    ] {
        let (mut server, mut client) = pair(p);
        for msg in [&b"Hello, world!"[..], &big, &noise, b"", b"x"] {
            round_trip(&mut server, &mut client, msg);
            round_trip(&mut client, &mut server, msg);
        }
    }
}

#[test]
fn levels() {
    let mut rng = XorShift(11);
    let msg = rng.words(50_000);
    for level in [0, 1, 3, 6, 9, 10, 200] {
        let p = params(false, false, 15, 15);
        let mut server = Deflate::new(p, Role::Server, level);
        let mut client = Deflate::new(p, Role::Client, level);
        let wire = round_trip(&mut server, &mut client, &msg);
        round_trip(&mut server, &mut client, &msg);
        if level > 0 {
            assert!(wire.len() < msg.len() / 2, "level {level}: {}", wire.len());
        }
    }
}

#[test]
fn empty_message() {
    let (mut server, mut client) = pair(params(false, false, 15, 15));
    let mut wire = Vec::new();
    server.compress(b"", &mut wire);
    assert_eq!(wire, [0x00]);
    assert_eq!(server.memory(), 0, "an empty message wakes no compressor");
    let mut out = Vec::new();
    client.decompress(&wire, true, &mut out, 0).unwrap();
    assert!(out.is_empty());
    // An empty payload (no DEFLATE data at all) is an empty message too, and leaves the
    // context intact for the next one.
    round_trip(&mut server, &mut client, b"first");
    client.decompress(b"", true, &mut out, 0).unwrap();
    assert!(out.is_empty());
    round_trip(&mut server, &mut client, b"first again");
    // Also in the middle of context takeover, in a 0x00 representation.
    wire.clear();
    server.compress(b"", &mut wire);
    client.decompress(&wire, true, &mut out, 0).unwrap();
    round_trip(&mut server, &mut client, b"first and last");
}

#[test]
fn context_takeover_shrinks_repeats() {
    let mut rng = XorShift(3);
    let msg = rng.words(2_000);
    let (mut server, mut client) = pair(params(false, false, 15, 15));
    let first = round_trip(&mut server, &mut client, &msg);
    let second = round_trip(&mut server, &mut client, &msg);
    assert!(
        second.len() * 10 < first.len(),
        "{} vs {}",
        second.len(),
        first.len()
    );
    for i in 0..200 {
        round_trip(&mut server, &mut client, &msg[i..i + 100 + i * 5]);
    }

    // Without takeover the second copy costs as much as the first.
    let (mut server, mut client) = pair(params(true, true, 15, 15));
    let first = round_trip(&mut server, &mut client, &msg);
    let second = round_trip(&mut server, &mut client, &msg);
    assert_eq!(first, second);
}

#[test]
fn small_windows_are_kept() {
    let mut rng = XorShift(5);
    let mut msg = rng.words(200_000);
    // Repeat a random block at 3000 bytes: only a window over 2^11 can use it.
    let block = rng.bytes(1000);
    for i in 0..10 {
        msg.extend_from_slice(&block);
        msg.extend_from_slice(&rng.bytes(2000 + i));
    }
    let full = {
        let (mut server, mut client) = pair(params(false, false, 15, 15));
        round_trip(&mut server, &mut client, &msg)
    };
    // The checker itself: a 15-bit stream breaks an 8-bit window.
    assert_eq!(
        strict_inflate(&full, 8),
        Err(TINFLStatus::Failed),
        "the strict decoder must catch far references"
    );
    assert_eq!(strict_inflate(&full, 15).unwrap(), msg);

    for bits in [8, 9, 10, 12, 14] {
        let p = params(false, false, bits, bits);
        let (mut server, mut client) = pair(p);
        for _ in 0..2 {
            let wire = round_trip(&mut server, &mut client, &msg);
            assert_ne!(wire, full);
            assert_eq!(strict_inflate(&wire, bits).unwrap(), msg, "bits {bits}");
            let wire = round_trip(&mut client, &mut server, &msg);
            assert_eq!(strict_inflate(&wire, bits).unwrap(), msg, "bits {bits}");
        }
        // No context is kept with a small window.
        assert_eq!(server.memory(), Deflate::INFLATER_MEMORY);
    }
}

#[test]
fn fragmented_message() {
    let mut rng = XorShift(9);
    let msg = rng.words(100_000);
    let (mut server, mut client) = pair(params(false, false, 15, 15));
    for _ in 0..3 {
        let mut wire = Vec::new();
        server.compress(&msg, &mut wire);
        let (a, rest) = wire.split_at(wire.len() / 3);
        let (b, c) = rest.split_at(1);
        let mut out = Vec::new();
        client.decompress(a, false, &mut out, msg.len()).unwrap();
        client.decompress(b, false, &mut out, msg.len()).unwrap();
        client.decompress(b"", false, &mut out, msg.len()).unwrap();
        client.decompress(c, true, &mut out, msg.len()).unwrap();
        assert_eq!(out, msg);
    }
    // A final frame with an empty payload.
    let mut wire = Vec::new();
    server.compress(b"tail", &mut wire);
    let mut out = Vec::new();
    client.decompress(&wire, false, &mut out, 100).unwrap();
    client.decompress(b"", true, &mut out, 100).unwrap();
    assert_eq!(out, b"tail");
}

#[test]
fn rfc7692_examples() {
    let p = params(true, true, 15, 15);
    let mut client = Deflate::new(p, Role::Client, 6);
    // §7.2.3.1, whole and in two frames.
    let mut out = Vec::new();
    client
        .decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            5,
        )
        .unwrap();
    assert_eq!(out, b"Hello");
    out.clear();
    client
        .decompress(&[0xf2, 0x48, 0xcd], false, &mut out, 5)
        .unwrap();
    client
        .decompress(&[0xc9, 0xc9, 0x07, 0x00], true, &mut out, 5)
        .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.3: a BFINAL block, then a fresh stream for the next message.
    let mut client = Deflate::new(params(false, false, 15, 15), Role::Client, 6);
    for _ in 0..2 {
        out.clear();
        client
            .decompress(
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                true,
                &mut out,
                5,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
    }
    // §7.2.3.2: the second message refers to the first one's window.
    let mut client = Deflate::new(params(false, false, 15, 15), Role::Client, 6);
    out.clear();
    client
        .decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            5,
        )
        .unwrap();
    out.clear();
    client
        .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 5)
        .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.4: a stored block.
    out.clear();
    client
        .decompress(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            true,
            &mut out,
            5,
        )
        .unwrap();
    assert_eq!(out, b"Hello");

    // And our own compressor produces exactly the RFC's bytes.
    let mut server = Deflate::new(p, Role::Server, 6);
    let mut wire = Vec::new();
    server.compress(b"Hello", &mut wire);
    assert_eq!(wire, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
}

#[test]
fn corrupt_input() {
    let mut client = Deflate::new(params(false, false, 15, 15), Role::Client, 6);
    let mut out = Vec::new();
    // BTYPE 11 is reserved.
    assert_eq!(
        client.decompress(&[0xff, 0xff, 0xff], true, &mut out, 1000),
        Err(InflateError::Corrupt("invalid DEFLATE data"))
    );
    assert_eq!(client.memory(), 0, "a failed inflater is dropped");
    // A stored block whose NLEN does not match.
    assert!(matches!(
        client.decompress(&[0x00, 0x05, 0x00, 0x00, 0x00], true, &mut out, 1000),
        Err(InflateError::Corrupt(_))
    ));
    // A back-reference before the start of the stream is not caught by miniz_oxide's
    // wrapping window, but it can only read zeros: a fresh inflater starts zeroed and one
    // is never reused across a context reset, so no earlier data can leak.
    let mut client = Deflate::new(params(false, false, 15, 15), Role::Client, 6);
    out.clear();
    client
        .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 1000)
        .unwrap();
    assert_eq!(out, [b'H', 0, 0, 0, 0]);
    assert!(InflateError::Corrupt("x").to_string().contains("corrupt"));
    assert!(InflateError::TooBig { max: 12 }
        .to_string()
        .contains("12-byte"));
}

#[test]
fn noise_never_panics() {
    let mut rng = XorShift(0xdead_beef);
    let mut server = Deflate::new(params(false, false, 15, 15), Role::Server, 6);
    let mut out = Vec::new();
    for i in 0..3_000 {
        let n = (rng.next() % 300) as usize;
        let mut data = rng.bytes(n);
        if i % 3 == 1 {
            // Mostly-valid streams go deeper into the decoder.
            let mut c = Deflate::new(params(true, true, 15, 15), Role::Client, 6);
            let mut wire = Vec::new();
            c.compress(&rng.words(n + 1), &mut wire);
            let k = (rng.next() as usize) % wire.len();
            wire[k] ^= 1 << (rng.next() % 8);
            data = wire;
        }
        out.clear();
        let max = (rng.next() % 5000) as usize;
        match server.decompress(&data, rng.next() & 1 == 0, &mut out, max) {
            Ok(()) => assert!(out.len() <= max),
            Err(InflateError::TooBig { .. }) => assert!(out.len() <= max + 1),
            Err(InflateError::Corrupt(_)) => {}
        }
    }
}

#[test]
fn zip_bomb_is_bounded() {
    let zeros = vec![0u8; 10 << 20];
    let (mut server, mut client) = pair(params(false, false, 15, 15));
    let mut wire = Vec::new();
    server.compress(&zeros, &mut wire);
    assert!(wire.len() < 20_000, "{}", wire.len());
    let max = 1 << 20;
    let mut out = Vec::new();
    assert_eq!(
        client.decompress(&wire, true, &mut out, max),
        Err(InflateError::TooBig { max })
    );
    assert!(out.len() <= max + 1, "{}", out.len());
    // Exactly at the limit is fine; one byte less is not.
    let mut out = Vec::new();
    let mut fresh = Deflate::new(params(true, true, 15, 15), Role::Client, 6);
    let mut wire = Vec::new();
    server.compress(&zeros[..100_000], &mut wire);
    let mut server = Deflate::new(params(true, true, 15, 15), Role::Server, 6);
    wire.clear();
    server.compress(&zeros[..100_000], &mut wire);
    fresh.decompress(&wire, true, &mut out, 100_000).unwrap();
    assert_eq!(out.len(), 100_000);
    out.clear();
    assert_eq!(
        fresh.decompress(&wire, true, &mut out, 99_999),
        Err(InflateError::TooBig { max: 99_999 })
    );
    // The limit counts what `out` already held.
    out = vec![1; 50];
    assert!(fresh.decompress(&wire, true, &mut out, 100_000).is_err());
}

#[test]
fn memory_figures() {
    #[cfg(target_pointer_width = "64")]
    {
        // Measured with a counting allocator on miniz_oxide 0.8.9; the module docs quote
        // these, so a dependency update that changes them must update the docs.
        assert_eq!(Deflate::COMPRESSOR_MEMORY, 319_326);
        assert_eq!(Deflate::INFLATER_MEMORY, 43_296);
    }
    let msg = b"some message, some message";
    let mut out = Vec::new();

    // Context takeover both ways: both states stay.
    let (mut server, mut client) = pair(params(false, false, 15, 15));
    assert_eq!(server.memory(), 0);
    round_trip(&mut server, &mut client, msg);
    assert_eq!(server.memory(), Deflate::COMPRESSOR_MEMORY);
    assert_eq!(client.memory(), Deflate::INFLATER_MEMORY);
    round_trip(&mut client, &mut server, msg);
    assert_eq!(
        server.memory(),
        Deflate::COMPRESSOR_MEMORY + Deflate::INFLATER_MEMORY
    );
    server.release();
    assert_eq!(server.memory(), 0);

    // No takeover either way: nothing between messages, the inflater during one.
    let (mut server, mut client) = pair(params(true, true, 15, 15));
    round_trip(&mut server, &mut client, msg);
    round_trip(&mut client, &mut server, msg);
    assert_eq!(server.memory(), 0);
    assert_eq!(client.memory(), 0);
    let mut wire = Vec::new();
    client.compress(msg, &mut wire);
    server.decompress(&wire[..3], false, &mut out, 100).unwrap();
    assert_eq!(server.memory(), Deflate::INFLATER_MEMORY);
    server.decompress(&wire[3..], true, &mut out, 100).unwrap();
    assert_eq!(server.memory(), 0);

    // Mixed: the server keeps only its compressor.
    let (mut server, mut client) = pair(params(false, true, 15, 15));
    round_trip(&mut server, &mut client, msg);
    round_trip(&mut client, &mut server, msg);
    assert_eq!(server.memory(), Deflate::COMPRESSOR_MEMORY);
    assert_eq!(client.memory(), Deflate::INFLATER_MEMORY);
}
