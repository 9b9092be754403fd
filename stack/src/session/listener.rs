//! What runs a session: the user's [`EventListener`] with a [`Codec`], behind the
//! object-safe [`Protocol`] the engine drives (and that WebSocket plugs into).

use super::codec::{Codec, Decoded};
use super::ctx::{Ctx, Session};
use super::info::{Kind, SessionId};
use super::{Reject, SessionError};

/// The callbacks of a session, Getty's `EventListener`.
///
/// Order: `on_open` first; if it returns `Err`, the connection is closed at once and no
/// other callback runs for it. Otherwise `on_message` and `on_cron` as things happen; at the
/// end `on_error` only if an error ended the session, then `on_close`, exactly once.
///
/// ```
/// use ustack::session::{EventListener, Session, codec::LengthPrefixed};
/// struct Echo;
/// impl EventListener<LengthPrefixed> for Echo {
///     fn on_message(&mut self, s: &mut Session<'_, LengthPrefixed>, pkg: &[u8]) {
///         let _ = s.write_pkg(&pkg);
///     }
/// }
/// ```
pub trait EventListener<C: Codec> {
    /// A session opened; `Err` refuses it.
    fn on_open(&mut self, s: &mut Session<'_, C>) -> Result<(), Reject> {
        let _ = s;
        Ok(())
    }
    /// One decoded package.
    fn on_message(&mut self, s: &mut Session<'_, C>, pkg: C::Pkg<'_>);
    /// The cron period passed.
    fn on_cron(&mut self, s: &mut Session<'_, C>) {
        let _ = s;
    }
    /// An error is ending the session; `on_close` follows.
    fn on_error(&mut self, s: &mut Session<'_, C>, e: &SessionError) {
        let _ = (s, e);
    }
    /// The session is over.
    fn on_close(&mut self, s: &mut Session<'_, C>) {
        let _ = s;
    }
}

/// How far [`Protocol::input`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Bytes consumed from the front of the input.
    pub used: usize,
    /// What the rest needs.
    pub next: Next,
}

/// What the unconsumed rest of the input needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More bytes, how many is not known yet.
    NeedMore,
    /// The next package is this many bytes long in total.
    Known(usize),
    /// The handler side is full: stop reading this session and retry later.
    Pause,
}

/// What an endpoint runs for each of its sessions: framing plus callbacks, object-safe so
/// that one engine drives TCP, UDP and WebSocket endpoints with different codecs.
/// [`Service`] is the implementation for a [`Codec`] and an [`EventListener`]; WebSocket
/// implements it over the same sessions.
pub trait Protocol {
    /// What sessions of a stream endpoint report as their kind.
    fn kind(&self) -> Kind {
        Kind::Tcp
    }
    /// A session opened.
    fn open(&mut self, s: &mut Ctx<'_>) -> Result<(), Reject>;
    /// Bytes arrived; `buf` starts at the first byte of the next package. Returns how much
    /// was consumed and what the rest needs. Must check packages against
    /// [`Limits::max_msg_len`](super::Limits::max_msg_len).
    ///
    /// `buf` is a scratch copy the protocol may change in place (WebSocket unmasks there),
    /// but bytes it does not consume must be left as they were: they are handed in again.
    fn input(&mut self, s: &mut Ctx<'_>, buf: &mut [u8]) -> Result<Input, SessionError>;
    /// Bytes another thread wrote through a
    /// [`SessionHandle`](super::SessionHandle) or a pool worker's session, for the stack
    /// thread to send as `pkgs` packages: raw by default; a protocol that frames its
    /// messages (WebSocket) frames them here.
    fn write_remote(
        &mut self,
        s: &mut Ctx<'_>,
        bytes: &mut [u8],
        pkgs: u64,
    ) -> Result<(), SessionError> {
        s.write_raw(&[bytes], pkgs)
    }
    /// Hands `f` the session's context as the protocol's own callbacks see it, for
    /// [`Engine::each_session`](super::Engine::each_session): plain by default; a protocol
    /// that frames its messages (WebSocket) frames writes made through it, and skips
    /// sessions that cannot take messages yet.
    fn visit(&mut self, s: &mut Ctx<'_>, f: &mut dyn FnMut(&mut Ctx<'_>)) {
        f(s)
    }
    /// The cron period passed.
    fn cron(&mut self, s: &mut Ctx<'_>);
    /// An error is ending the session.
    fn error(&mut self, s: &mut Ctx<'_>, e: &SessionError);
    /// The session is over.
    fn close(&mut self, s: &mut Ctx<'_>);
    /// Whether the handler side cannot take more work: for session `id`, or (with `None`)
    /// for any new session. Busy stops reading, or accepting.
    fn busy(&self, id: Option<SessionId>) -> bool {
        let _ = id;
        false
    }
    /// Whether handlers still owe the session at engine slot `index` work (replies may
    /// still come). After the peer finishes sending, the engine keeps such a session open
    /// until they are done, or for at most
    /// [`DEFAULT_DRAIN_TIMEOUT`](super::DEFAULT_DRAIN_TIMEOUT).
    fn in_flight(&self, index: usize) -> bool {
        let _ = index;
        false
    }
}

/// A [`Codec`] and an [`EventListener`] run inline on the stack thread.
///
/// The codec given here is a prototype: each decode pass starts from a copy of it (every
/// pass starts at a package boundary), and `write_pkg` encodes with it.
///
/// ```
/// use ustack::session::{EventListener, Service, Session, codec::Lines};
/// struct Shout;
/// impl EventListener<Lines> for Shout {
///     fn on_message(&mut self, s: &mut Session<'_, Lines>, line: &[u8]) {
///         let _ = s.write_pkg(&&line.to_ascii_uppercase()[..]);
///     }
/// }
/// let service = Service::new(Lines::new(), Shout);
/// # let _ = service;
/// ```
pub struct Service<C, L> {
    codec: C,
    listener: L,
}

impl<C, L> Service<C, L> {
    /// Runs `listener` over packages framed by `codec`.
    pub fn new(codec: C, listener: L) -> Self {
        Service { codec, listener }
    }

    /// The listener.
    pub fn listener(&mut self) -> &mut L {
        &mut self.listener
    }

    /// The codec prototype.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    pub(crate) fn parts(&mut self) -> (&mut C, &mut L) {
        (&mut self.codec, &mut self.listener)
    }
}

/// Decodes packages from `buf` until it runs out, calling `each` on every one; the part of
/// [`Protocol::input`] that every codec-driven protocol shares. `each` returns `false` to
/// stop before a package (it is then not consumed).
pub fn decode_all<C>(
    codec: &C,
    s: &mut Ctx<'_>,
    buf: &[u8],
    mut each: impl FnMut(&mut Ctx<'_>, C::Pkg<'_>, &[u8]) -> bool,
) -> Result<Input, SessionError>
where
    C: Codec + Clone,
    C::Error: Into<SessionError>,
{
    let mut dec = codec.clone();
    let max = s.limits().max_msg_len;
    let mut used = 0;
    loop {
        if s.is_closing() {
            return Ok(Input {
                used,
                next: Next::Pause,
            });
        }
        let rest = &buf[used..];
        match dec.decode(rest).map_err(Into::into)? {
            Decoded::Packet(pkg, n) => {
                if n > max {
                    return Err(SessionError::MessageTooLarge { len: n, max });
                }
                if n == 0 || n > rest.len() {
                    return Err(SessionError::Codec(
                        "the codec reported a package of an impossible length",
                    ));
                }
                s.info_mut().stats.pkgs_in += 1;
                if !each(s, pkg, &rest[..n]) {
                    s.info_mut().stats.pkgs_in -= 1;
                    return Ok(Input {
                        used,
                        next: Next::Pause,
                    });
                }
                used += n;
            }
            Decoded::NeedMoreKnownLen(total) => {
                if total > max {
                    return Err(SessionError::MessageTooLarge { len: total, max });
                }
                let next = match total > rest.len() {
                    true => Next::Known(total),
                    false => Next::NeedMore,
                };
                return Ok(Input { used, next });
            }
            Decoded::NeedMore => {
                if rest.len() >= max {
                    return Err(SessionError::MessageTooLarge {
                        len: rest.len(),
                        max,
                    });
                }
                return Ok(Input {
                    used,
                    next: Next::NeedMore,
                });
            }
        }
    }
}

impl<C, L> Protocol for Service<C, L>
where
    C: Codec + Clone,
    C::Error: Into<SessionError>,
    L: EventListener<C>,
{
    fn open(&mut self, s: &mut Ctx<'_>) -> Result<(), Reject> {
        self.listener
            .on_open(&mut Session::new(s.reborrow(), &mut self.codec))
    }

    fn input(&mut self, s: &mut Ctx<'_>, buf: &mut [u8]) -> Result<Input, SessionError> {
        let (codec, listener) = (&mut self.codec, &mut self.listener);
        let proto = codec.clone();
        decode_all(&proto, s, buf, |s, pkg, _| {
            listener.on_message(&mut Session::new(s.reborrow(), codec), pkg);
            true
        })
    }

    fn cron(&mut self, s: &mut Ctx<'_>) {
        self.listener
            .on_cron(&mut Session::new(s.reborrow(), &mut self.codec));
    }

    fn error(&mut self, s: &mut Ctx<'_>, e: &SessionError) {
        self.listener
            .on_error(&mut Session::new(s.reborrow(), &mut self.codec), e);
    }

    fn close(&mut self, s: &mut Ctx<'_>) {
        self.listener
            .on_close(&mut Session::new(s.reborrow(), &mut self.codec));
    }
}
