//! Why a session ended, and why `on_open` turned one away.

use core::fmt;

use crate::Error;

/// What ended a session. [`EventListener::on_error`](super::EventListener::on_error) gets
/// one of these only when an error ended the session; a clean close has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// A package declared (or, before its length was known, buffered) more bytes than the
    /// session's maximum message length. Checked before the body is buffered.
    MessageTooLarge {
        /// The declared or buffered length.
        len: usize,
        /// The session's limit ([`Session::set_max_msg_len`](super::Ctx::set_max_msg_len)).
        max: usize,
    },
    /// The codec rejected the stream; the text is the codec's.
    Codec(&'static str),
    /// No bytes came in or went out for the idle timeout.
    IdleTimeout,
    /// A package was begun but not finished within the read timeout (a slow or stalled
    /// sender).
    ReadTimeout,
    /// Queued output did not drain within the write timeout (a peer that stopped reading).
    WriteTimeout,
    /// The peer closed in the middle of a package; this many bytes of it were buffered.
    UnexpectedEof {
        /// Bytes of the unfinished package.
        buffered: usize,
    },
    /// More output was queued than the session may hold while the peer is not reading.
    WriteQueueFull {
        /// Bytes already queued.
        queued: usize,
        /// The limit.
        max: usize,
    },
    /// The socket failed (reset, refused, timed out).
    Socket(Error),
    /// The peer broke the protocol running over the session, which said so on the wire
    /// before closing (WebSocket: a close frame with `code`). The connection is closed
    /// gracefully, so that the peer gets that message.
    Protocol {
        /// The protocol's close code (WebSocket: 1002, 1007, 1009, ...).
        code: u16,
        /// What the peer did wrong.
        what: &'static str,
    },
}

impl SessionError {
    /// Whether the connection closes gracefully (queued output, such as a protocol's
    /// closing message, is still sent) rather than being reset.
    pub fn is_graceful(&self) -> bool {
        matches!(
            self,
            SessionError::IdleTimeout
                | SessionError::UnexpectedEof { .. }
                | SessionError::Protocol { .. }
        )
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::MessageTooLarge { len, max } => write!(
                f,
                "message too large: {len} bytes declared or buffered, the limit is {max}; \
                 raise it with set_max_msg_len if the peer is legitimate"
            ),
            SessionError::Codec(why) => write!(f, "codec error: {why}"),
            SessionError::IdleTimeout => f.write_str(
                "idle timeout: no traffic in either direction; raise set_idle_timeout or \
                 send heartbeats from on_cron",
            ),
            SessionError::ReadTimeout => f.write_str(
                "read timeout: a message was started but not finished in time (a slow or \
                 stalled sender); raise set_read_timeout for slow links",
            ),
            SessionError::WriteTimeout => f.write_str(
                "write timeout: queued output did not drain (the peer stopped reading); \
                 raise set_write_timeout for slow links",
            ),
            SessionError::UnexpectedEof { buffered } => write!(
                f,
                "the peer closed in the middle of a message ({buffered} bytes of it \
                 received)"
            ),
            SessionError::WriteQueueFull { queued, max } => write!(
                f,
                "write queue full: {queued} bytes already wait for a peer that is not \
                 reading, the limit is {max}; slow down or raise set_max_write_queue"
            ),
            SessionError::Socket(e) => write!(f, "socket error: {e}"),
            SessionError::Protocol { code, what } => {
                write!(
                    f,
                    "protocol error ({code}): {what}; the peer was told and the \
                           connection closed"
                )
            }
        }
    }
}

impl From<Error> for SessionError {
    fn from(e: Error) -> Self {
        SessionError::Socket(e)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SessionError {}

/// Why `on_open` refused a session. The connection is closed before the session starts, and
/// `on_close` is not called for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject(pub &'static str);

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session rejected by on_open: {}", self.0)
    }
}

impl From<super::codec::CodecError> for SessionError {
    fn from(e: super::codec::CodecError) -> Self {
        use super::codec::CodecError;
        match e {
            CodecError::TooLong { len, max } => SessionError::MessageTooLarge { len, max },
            CodecError::NoRoom { .. } => {
                SessionError::Codec("the encoded package does not fit the encode buffer")
            }
            CodecError::Malformed(why) => SessionError::Codec(why),
        }
    }
}
