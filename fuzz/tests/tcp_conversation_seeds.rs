//! The `tcp_conversation` seeds do what their names say, and `encode` writes exactly the
//! bytes `arbitrary` decodes back into the same script. Regenerate the seeds with
//! `cargo run --example gen_tcp_conversation_seeds`.

use arbitrary::{Arbitrary, Unstructured};
use ustack::Error;
use ustack_fuzz::tcp_conversation::{
    encode, run, Conversation, Script, AFTER_FIXES, SHUTDOWN_FIXED,
};

fn seeds() -> Vec<(String, Vec<u8>)> {
    let out = ustack_fuzz::seeds::all("tcp_conversation");
    let total: usize = out.iter().map(|(_, d)| d.len()).sum();
    assert!(total < 1 << 20, "seed directory is {total} bytes");
    out
}

/// The number after `key` in a seed name (`read1500` -> 1500).
fn number(name: &str, key: &str) -> Option<u64> {
    name.split('_')
        .find_map(|w| w.strip_prefix(key)?.parse().ok())
}

#[test]
fn seeds_do_what_their_names_say() {
    for (name, data) in seeds() {
        // The checks against the reference run inside: a disagreement panics.
        let script = Script::decode(&data).unwrap_or_else(|| panic!("{name}: does not decode"));
        assert_eq!(encode(&script), data, "{name}: not in canonical encoding");
        let r = run(&data).expect("decodes");
        if name == "regression_shutdown_while_connecting" {
            // The bug it showed: `TimedOut` at once, though no timeout is configured.
            let timed_out = r.error == Some(Error::TimedOut);
            assert_eq!(timed_out, !SHUTDOWN_FIXED, "{name}: {r:?}");
        }
        if name == "regression_fin_reuses_syn_seq" {
            assert!(r.stack_fin, "{name}: {r:?}");
            assert_eq!(r.fin_on_syn, !SHUTDOWN_FIXED, "{name}: {r:?}");
            // The peer acknowledged only the SYN; the stack took its FIN as acked.
            let fin_wait_2 = r.state == Some(ustack::smoltcp::socket::tcp::State::FinWait2);
            assert_eq!(fin_wait_2, !SHUTDOWN_FIXED, "{name}: {r:?}");
        }
        if name == "finding_data_after_fin" {
            // Trimmed, the peer sends nothing past its FIN; untrimmed, the 400 bytes past it
            // are read after end of stream until smoltcp ignores data in CLOSE-WAIT.
            assert_eq!((r.read, r.eof), (400, true), "{name}: {r:?}");
            let script = Script::decode(&data).expect("decodes");
            let untrimmed = std::panic::catch_unwind(|| {
                let mut c = Conversation::new(&script.setup);
                c.trim_after_fin = false;
                c.run(&script.ops);
                c.report
            });
            assert_eq!(untrimmed.is_err(), !AFTER_FIXES, "{name}: {untrimmed:?}");
        }
        if name == "finding_fin_past_window" {
            // 2800 bytes then FIN were sent; the stream ends after the 2048 of the window.
            let cut = (r.read, r.eof, r.fin_cut) == (2048, true, true);
            assert_eq!(cut, !AFTER_FIXES, "{name}: {r:?}");
        }
        if name == "finding_ooo_data_past_fin" {
            // Bytes 100..300 queued out of order, then 0..200 with a FIN at 200: the stream
            // must end at 200; it ends at 300 until smoltcp drops what is queued past a FIN.
            assert!(r.eof, "{name}: {r:?}");
            let late = (r.read, r.fin_late) == (300, true);
            assert_eq!(late, !AFTER_FIXES, "{name}: {r:?}");
            if AFTER_FIXES {
                assert_eq!(r.read, 200, "{name}: {r:?}");
            }
        }
        if name.starts_with("finding_") || name.starts_with("regression_") {
            continue;
        }
        let words: Vec<&str> = name.split('_').collect();
        if let Some(n) = number(&name, "read") {
            assert_eq!(r.read, n, "{name}: {r:?}");
        }
        if let Some(n) = number(&name, "acked") {
            assert_eq!(r.acked, n, "{name}: {r:?}");
        }
        assert_eq!(r.eof, words.contains(&"eof"), "{name}: {r:?}");
        if words.contains(&"reset") {
            assert_eq!(r.error, Some(Error::ConnectionReset), "{name}: {r:?}");
        }
        if words.contains(&"refused") {
            assert_eq!(r.error, Some(Error::ConnectionRefused), "{name}: {r:?}");
        }
        assert_eq!(r.stack_fin, words.contains(&"stackfin"), "{name}: {r:?}");
        if words.contains(&"retx") {
            assert!(r.retransmits > 0, "{name}: {r:?}");
        }
        if words.contains(&"zerowin") {
            assert!(r.zero_windows > 0, "{name}: {r:?}");
        }
        assert_eq!(
            r.established,
            !words.contains(&"noconn") && !words.contains(&"refused"),
            "{name}: {r:?}"
        );
    }
}

/// A small deterministic generator, so the test needs no extra dependency.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn encode_round_trips_through_arbitrary() {
    let mut decoded = 0;
    for seed in 0..3000u64 {
        let mut data = bytes(seed, (seed % 700) as usize);
        // Mostly "one more op" bytes, so the scripts get long.
        for (i, b) in data.iter_mut().enumerate() {
            if i % 23 == 0 {
                *b |= 1;
            }
        }
        let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(&data)) else {
            continue;
        };
        decoded += 1;
        let enc = encode(&script);
        assert_eq!(
            Script::decode(&enc).as_ref(),
            Some(&script),
            "seed {seed}: {script:?}"
        );
    }
    assert!(decoded > 2500, "only {decoded} inputs decoded");
}
