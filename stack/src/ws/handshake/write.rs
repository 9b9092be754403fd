//! Writing HTTP heads into an [`Out`] without a heap and without half-written messages.

use crate::session::codec::{CodecError, Out};

/// An [`Out`] that only counts, so a message can be sized before it is written.
pub(super) struct Measure(pub(super) usize);

impl Out for Measure {
    fn room(&self) -> usize {
        usize::MAX - self.0
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(())
    }
}

/// Runs `write` against a [`Measure`] first and against `out` only if everything fits: a
/// peer must never see half a status line followed by nothing.
pub(super) fn all_or_nothing(
    out: &mut dyn Out,
    write: impl Fn(&mut dyn Out) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut size = Measure(0);
    write(&mut size)?;
    let room = out.room();
    if size.0 > room {
        return Err(CodecError::NoRoom { need: size.0, room });
    }
    write(out)
}

/// Writes `n` in decimal.
pub(super) fn put_dec(out: &mut dyn Out, mut n: usize) -> Result<(), CodecError> {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&digits[at..])
}

/// Writes `Name: value\r\n`.
pub(super) fn put_header(out: &mut dyn Out, name: &str, value: &[u8]) -> Result<(), CodecError> {
    out.put(name.as_bytes())?;
    out.put(b": ")?;
    out.put(value)?;
    out.put(b"\r\n")
}

/// The reason phrase for the statuses this module and typical hooks answer with.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// True if `bytes` can go into a header line as is: a CR or LF would let the text start a
/// header (or a body) of its own, and other control bytes are not valid field content.
pub(super) fn is_field_safe(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// True if `name` is a valid header name (an RFC 9110 token).
pub(super) fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
