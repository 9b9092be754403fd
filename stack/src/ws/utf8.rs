//! UTF-8 validation of a text message that arrives in pieces (§8.1).
//!
//! A code point may be split across frames, or across the pieces of one frame's payload, so
//! up to three bytes of an unfinished sequence are carried between calls. A byte that can
//! start no valid sequence fails at once, however much of the message is still to come:
//! Autobahn's "fail fast" cases.
//!
//! ```
//! use ustack::ws::utf8::Utf8Stream;
//! let mut v = Utf8Stream::new();
//! v.feed(b"caf\xc3").unwrap();     // the é is cut in two
//! v.feed(b"\xa9!").unwrap();
//! v.finish().unwrap();
//! assert!(Utf8Stream::new().feed(b"ok\xff").is_err()); // 0xff never starts a sequence
//! ```

use core::fmt;

/// Bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text message is not valid UTF-8")
    }
}

/// A streaming UTF-8 validator: the state between pieces is the unfinished sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    carry: [u8; 4],
    len: u8,
}

impl Utf8Stream {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Stream {
            carry: [0; 4],
            len: 0,
        }
    }

    /// Validates the next piece; fails on the first byte that makes the text invalid.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.len > 0 {
            // Finish the carried sequence a byte at a time: only it can span the boundary.
            while self.len > 0 {
                let Some((&b, rest)) = bytes.split_first() else {
                    return Ok(());
                };
                self.carry[usize::from(self.len)] = b;
                self.len += 1;
                bytes = rest;
                match core::str::from_utf8(&self.carry[..usize::from(self.len)]) {
                    Ok(_) => self.len = 0,
                    Err(e) if e.error_len().is_some() => return Err(Utf8Error),
                    Err(_) => {}
                }
            }
        }
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // `None`: the input ends inside a sequence that could still become valid.
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// The message ended: an unfinished sequence is an error. Resets for the next one.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let open = self.len > 0;
        *self = Utf8Stream::new();
        match open {
            true => Err(Utf8Error),
            false => Ok(()),
        }
    }

    /// Whether a sequence is unfinished.
    pub fn is_mid_sequence(&self) -> bool {
        self.len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of valid and invalid texts gives the whole-text verdict.
    #[test]
    fn any_split_agrees_with_from_utf8() {
        let cases: [&[u8]; 8] = [
            "κόσμε".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            b"\xf0\x90\x80\x80",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"ab\xe2\x82",
            b"\xed\x9f\xbf",
        ];
        for text in cases {
            let want = core::str::from_utf8(text).is_ok();
            for a in 0..=text.len() {
                for b in a..=text.len() {
                    let mut v = Utf8Stream::new();
                    let got = v.feed(&text[..a]).is_ok()
                        && v.feed(&text[a..b]).is_ok()
                        && v.feed(&text[b..]).is_ok()
                        && v.finish().is_ok();
                    assert_eq!(got, want, "{text:x?} split at {a},{b}");
                }
            }
        }
    }

    /// The error comes with the first byte that cannot be valid, not at the end.
    #[test]
    fn fails_fast() {
        let mut v = Utf8Stream::new();
        v.feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")
            .unwrap();
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));
        let mut v = Utf8Stream::new();
        assert_eq!(v.feed(b"\xed\xa0"), Err(Utf8Error)); // a surrogate
    }
}
