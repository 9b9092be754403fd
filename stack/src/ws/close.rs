//! Close codes (RFC 6455 §7.4) and the close frame's payload (§5.5.1).
//!
//! ```
//! use ustack::ws::close::{parse_close, CloseCode};
//! let (code, reason) = parse_close(b"\x03\xe8bye").unwrap().unwrap();
//! assert_eq!((code, reason), (CloseCode::NORMAL, "bye"));
//! assert!(parse_close(b"\x03").is_err()); // a one-byte payload is malformed
//! ```

use core::fmt;

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type this endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data not consistent with its type (bad UTF-8 in a text message).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy (also: a deadline passed).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not negotiate.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// Whether the code may appear in a close frame: the defined codes 1000-1003 and
    /// 1007-1014 (IANA's registry), and 3000-4999 for libraries and applications.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status",
            1006 => "abnormal closure",
            1007 => "invalid frame payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            _ => "",
        };
        match name {
            "" => write!(f, "{}", self.0),
            n => write!(f, "{} ({n})", self.0),
        }
    }
}

/// A close payload that breaks §5.5.1 or §7.4, and the code to fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadClose {
    /// 1002 for a malformed payload or a code that may not be sent, 1007 for a reason that
    /// is not UTF-8.
    pub code: CloseCode,
    /// What was wrong.
    pub what: &'static str,
}

/// Parses a received close payload: `None` for an empty one (no status), else the code and
/// the UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, BadClose> {
    match payload {
        [] => Ok(None),
        [_] => Err(BadClose {
            code: CloseCode::PROTOCOL,
            what: "a close payload of one byte",
        }),
        [a, b, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*a, *b]));
            if !code.is_sendable() {
                return Err(BadClose {
                    code: CloseCode::PROTOCOL,
                    what: "a close code that may not be sent",
                });
            }
            let reason = core::str::from_utf8(reason).map_err(|_| BadClose {
                code: CloseCode::INVALID_DATA,
                what: "a close reason that is not UTF-8",
            })?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_autobahn_checks() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode(ok).is_sendable(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(bad).is_sendable(), "{bad}");
            let p = bad.to_be_bytes();
            assert_eq!(parse_close(&p).unwrap_err().code, CloseCode::PROTOCOL);
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close(b""), Ok(None));
        assert_eq!(
            parse_close(b"\x03\xe9"),
            Ok(Some((CloseCode::GOING_AWAY, "")))
        );
        let e = parse_close(b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
            .unwrap_err();
        assert_eq!(e.code, CloseCode::INVALID_DATA);
        assert_eq!(parse_close(b"\x10").unwrap_err().code, CloseCode::PROTOCOL);
    }
}
