//! The session as handlers see it: [`Ctx`] without a codec, [`Session`] with one.

use core::ops::{Deref, DerefMut};

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use super::bufs::{Held, Sink};
use super::codec::Codec;
use super::info::{Kind, Limits, SessionId, SessionInfo, SessionStats};
use super::io::Io;
use super::state::{Pending, SessionSlot, Sock};
use super::SessionError;
use crate::Error;

/// A live session without its codec: identity, counters, limits, attributes, raw writes and
/// close. [`Session`] derefs to it.
///
/// On the stack thread it acts at once. On a task-pool worker (feature `std`) it holds a
/// snapshot of the session's [`SessionInfo`]: writes, limit changes and `close` are queued
/// to the stack thread, and attributes are not available.
pub struct Ctx<'x> {
    pub(crate) inner: Inner<'x>,
}

pub(crate) enum Inner<'x> {
    Local {
        index: usize,
        st: &'x mut SessionSlot,
        io: &'x mut dyn Io,
        sink: &'x mut dyn Sink,
        pool: &'x mut dyn Held,
        now: Instant,
        framer: Option<&'x mut dyn Framer>,
        #[cfg(feature = "std")]
        remote: Option<&'x alloc::sync::Arc<super::handle::Shared>>,
    },
    #[cfg(feature = "std")]
    Remote {
        info: &'x mut SessionInfo,
        handle: &'x super::handle::SessionHandle,
        out: &'x mut alloc::vec::Vec<u8>,
    },
}

impl<'x> Ctx<'x> {
    /// A shorter-lived copy, for handing to a callback.
    pub(crate) fn reborrow(&mut self) -> Ctx<'_> {
        let inner = match &mut self.inner {
            Inner::Local {
                index,
                st,
                io,
                sink,
                pool,
                now,
                framer,
                #[cfg(feature = "std")]
                remote,
            } => Inner::Local {
                index: *index,
                st,
                io: *io,
                sink: *sink,
                pool: *pool,
                now: *now,
                framer: match framer {
                    Some(f) => Some(&mut **f),
                    None => None,
                },
                #[cfg(feature = "std")]
                remote: *remote,
            },
            #[cfg(feature = "std")]
            Inner::Remote { info, handle, out } => Inner::Remote { info, handle, out },
        };
        Ctx { inner }
    }

    /// A shorter-lived copy whose message writes go through `framer` (on the stack thread;
    /// a worker's writes are framed by [`Protocol::write_remote`](super::Protocol)).
    pub(crate) fn with_framer<'y>(&'y mut self, f: &'y mut dyn Framer) -> Ctx<'y> {
        let mut c = self.reborrow();
        #[allow(irrefutable_let_patterns)] // without `std` there is no other variant
        if let Inner::Local { framer, .. } = &mut c.inner {
            *framer = Some(f);
        }
        c
    }

    #[cfg(feature = "alloc")]
    fn slot(&self) -> Option<&SessionSlot> {
        match &self.inner {
            Inner::Local { st, .. } => Some(st),
            #[cfg(feature = "std")]
            Inner::Remote { .. } => None,
        }
    }

    fn slot_mut(&mut self) -> Option<&mut SessionSlot> {
        match &mut self.inner {
            Inner::Local { st, .. } => Some(st),
            #[cfg(feature = "std")]
            Inner::Remote { .. } => None,
        }
    }

    /// Everything that is plain data about the session.
    pub fn info(&self) -> &SessionInfo {
        match &self.inner {
            Inner::Local { st, .. } => &st.info,
            #[cfg(feature = "std")]
            Inner::Remote { info, .. } => info,
        }
    }

    pub(crate) fn info_mut(&mut self) -> &mut SessionInfo {
        match &mut self.inner {
            Inner::Local { st, .. } => &mut st.info,
            #[cfg(feature = "std")]
            Inner::Remote { info, .. } => info,
        }
    }

    /// The session's id, unique for the engine's life.
    pub fn id(&self) -> SessionId {
        self.info().id
    }

    /// TCP, UDP or WebSocket.
    pub fn kind(&self) -> Kind {
        self.info().kind
    }

    /// The local address.
    pub fn local_addr(&self) -> IpEndpoint {
        self.info().local
    }

    /// The peer's address; for an unconnected UDP session, the current datagram's source.
    pub fn peer_addr(&self) -> IpEndpoint {
        self.info().peer
    }

    /// Traffic counters.
    pub fn stats(&self) -> SessionStats {
        self.info().stats
    }

    /// The current timers and limits.
    pub fn limits(&self) -> Limits {
        self.info().limits
    }

    /// The engine's slot for this session, below its capacity: an index for per-session
    /// tables kept by a protocol. `None` on a pool worker.
    pub fn index(&self) -> Option<usize> {
        match &self.inner {
            Inner::Local { index, .. } => Some(*index),
            #[cfg(feature = "std")]
            Inner::Remote { .. } => None,
        }
    }

    /// The time of the event being handled.
    pub fn now(&self) -> Instant {
        match &self.inner {
            Inner::Local { now, .. } => *now,
            #[cfg(feature = "std")]
            Inner::Remote { .. } => crate::runtime::now(),
        }
    }

    /// A handle for reaching this session from another thread, once
    /// [`Engine::enable_handles`](super::Engine::enable_handles) was called.
    #[cfg(feature = "std")]
    pub fn handle(&self) -> Option<super::handle::SessionHandle> {
        match &self.inner {
            Inner::Local {
                index, st, remote, ..
            } => {
                let shared = (*remote)?;
                shared.set_alive(*index, st.info.id.0);
                Some(super::handle::SessionHandle {
                    shared: shared.clone(),
                    slot: *index as u16,
                    id: st.info.id,
                })
            }
            Inner::Remote { handle, .. } => Some((*handle).clone()),
        }
    }

    /// The application's word.
    pub fn user_data(&self) -> u64 {
        self.info().user_data
    }

    /// Sets the application's word (on a worker, in its snapshot only).
    pub fn set_user_data(&mut self, v: u64) {
        self.info_mut().user_data = v;
    }

    fn set_limits(&mut self, f: impl FnOnce(&mut Limits)) {
        match &mut self.inner {
            Inner::Local { st, .. } => {
                let mut limits = st.info.limits;
                f(&mut limits);
                st.set_limits(limits);
            }
            #[cfg(feature = "std")]
            Inner::Remote { info, handle, .. } => {
                f(&mut info.limits);
                let _ = handle.set_limits(info.limits);
            }
        }
    }

    /// Runs `on_cron` every `period` (`None` stops it).
    pub fn set_cron_period(&mut self, period: Option<Duration>) {
        self.set_limits(|l| l.cron_period = period);
    }

    /// Closes the session when no bytes move either way for `t`.
    pub fn set_idle_timeout(&mut self, t: Option<Duration>) {
        self.set_limits(|l| l.idle_timeout = t);
    }

    /// Closes the session when a package stays unfinished for `t`.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.set_limits(|l| l.read_timeout = t);
    }

    /// Closes the session when queued output makes no progress for `t`.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.set_limits(|l| l.write_timeout = t);
    }

    /// The longest package accepted, header included.
    pub fn set_max_msg_len(&mut self, n: usize) {
        self.set_limits(|l| l.max_msg_len = n);
    }

    /// The most output queued beyond the socket's transmit buffer.
    pub fn set_max_write_queue(&mut self, n: usize) {
        self.set_limits(|l| l.max_write_queue = n);
    }

    /// Ends the session once the current callback returns: `on_close` runs, queued output
    /// is sent, then the connection is closed.
    pub fn close(&mut self) {
        match &mut self.inner {
            Inner::Local { st, .. } => {
                st.closing.get_or_insert(None);
            }
            #[cfg(feature = "std")]
            Inner::Remote { handle, .. } => {
                let _ = handle.close();
            }
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        match &self.inner {
            Inner::Local { st, .. } => st.closing.is_some(),
            #[cfg(feature = "std")]
            Inner::Remote { handle, .. } => !handle.is_open(),
        }
    }

    /// Writes raw bytes, whole or not at all.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.write_vectored(&[bytes])
    }

    /// Writes several slices as one piece (one datagram on UDP), whole or not at all.
    pub fn write_vectored(&mut self, parts: &[&[u8]]) -> Result<(), SessionError> {
        match &mut self.inner {
            // A stream takes the slices as they are.
            Inner::Local {
                st,
                io,
                pool,
                now,
                framer: None,
                ..
            } if matches!(st.sock, Sock::Tcp(_)) || parts.len() < 2 => {
                put(st, *io, *pool, *now, parts, 0)
            }
            _ => self.write_with(0, |sink| {
                parts.iter().try_for_each(|p| sink.put(p))?;
                Ok(())
            }),
        }
    }

    /// Fills the encode area with `fill`, then writes it as one piece counting `pkgs`
    /// packages (on a worker, queues it to the stack thread).
    pub(crate) fn write_with(
        &mut self,
        pkgs: u64,
        fill: impl FnOnce(&mut dyn Sink) -> Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        match &mut self.inner {
            Inner::Local {
                st,
                io,
                sink,
                pool,
                now,
                framer,
                ..
            } => {
                sink.clear();
                fill(*sink)?;
                match framer {
                    Some(f) => {
                        let m = f.frame(sink.filled_mut())?;
                        put(st, *io, *pool, *now, &[m.head, m.body], pkgs)
                    }
                    None => put(st, *io, *pool, *now, &[sink.filled_mut()], pkgs),
                }
            }
            #[cfg(feature = "std")]
            Inner::Remote { handle, out, .. } => {
                out.clear();
                fill(*out)?;
                handle.write_bytes(core::mem::take(*out), pkgs)
            }
        }
    }

    /// Writes bytes that are already framed, as `pkgs` packages, whole or not at all.
    pub(crate) fn write_raw(&mut self, parts: &[&[u8]], pkgs: u64) -> Result<(), SessionError> {
        match &mut self.inner {
            Inner::Local {
                st, io, pool, now, ..
            } => put(st, *io, *pool, *now, parts, pkgs),
            #[cfg(feature = "std")]
            Inner::Remote { handle, .. } => handle.write_bytes(parts.concat(), pkgs),
        }
    }

    /// Tells the engine the protocol holds part of a message (the read timeout runs
    /// until it is whole), or no longer does.
    pub(crate) fn set_mid_message(&mut self, mid: bool) {
        if let Some(st) = self.slot_mut() {
            st.mid = mid;
        }
    }

    /// The framer this context writes messages through, if any.
    pub(crate) fn framer(&mut self) -> Option<&mut dyn Framer> {
        match &mut self.inner {
            Inner::Local { framer, .. } => match framer {
                Some(f) => Some(&mut **f),
                None => None,
            },
            #[cfg(feature = "std")]
            Inner::Remote { .. } => None,
        }
    }

    /// Writes already framed `parts` even though the session is closing: a protocol's last
    /// word (WebSocket's close frame) from its close callback. Only on the stack thread.
    pub(crate) fn write_last(&mut self, parts: &[&[u8]]) -> Result<(), SessionError> {
        match &mut self.inner {
            Inner::Local {
                st, io, pool, now, ..
            } => {
                let closing = st.closing.take();
                let r = put(st, *io, *pool, *now, parts, 0);
                st.closing = closing;
                r
            }
            #[cfg(feature = "std")]
            Inner::Remote { .. } => Err(SessionError::Socket(Error::Closed)),
        }
    }

    /// Stores a typed attribute, returning the one it replaces.
    #[cfg(feature = "alloc")]
    pub fn set_attr<T: 'static>(&mut self, v: T) -> Option<T> {
        use alloc::boxed::Box;
        use core::any::TypeId;
        let Some(st) = self.slot_mut() else {
            return Some(v);
        };
        let id = TypeId::of::<T>();
        match st.attrs.iter_mut().find(|(t, _)| *t == id) {
            Some((_, old)) => {
                let prev = core::mem::replace(old, Box::new(v));
                prev.downcast::<T>().ok().map(|b| *b)
            }
            None => {
                st.attrs.push((id, Box::new(v)));
                None
            }
        }
    }

    /// The attribute of type `T`, if set (never on a pool worker).
    #[cfg(feature = "alloc")]
    pub fn attr<T: 'static>(&self) -> Option<&T> {
        let st = self.slot()?;
        let id = core::any::TypeId::of::<T>();
        let (_, v) = st.attrs.iter().find(|(t, _)| *t == id)?;
        v.downcast_ref()
    }

    /// The attribute of type `T`, mutably.
    #[cfg(feature = "alloc")]
    pub fn attr_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let st = self.slot_mut()?;
        let id = core::any::TypeId::of::<T>();
        let (_, v) = st.attrs.iter_mut().find(|(t, _)| *t == id)?;
        v.downcast_mut()
    }

    /// Removes and returns the attribute of type `T`.
    #[cfg(feature = "alloc")]
    pub fn remove_attr<T: 'static>(&mut self) -> Option<T> {
        let st = self.slot_mut()?;
        let id = core::any::TypeId::of::<T>();
        let at = st.attrs.iter().position(|(t, _)| *t == id)?;
        st.attrs.swap_remove(at).1.downcast::<T>().ok().map(|b| *b)
    }

    /// Runs `f` after `on_close`, in the order added. Returns `false` (and drops `f`) on a
    /// pool worker.
    #[cfg(feature = "alloc")]
    pub fn add_close_callback(&mut self, f: impl FnOnce(&SessionInfo) + 'static) -> bool {
        match &mut self.inner {
            Inner::Local { st, .. } => {
                st.on_close.push(alloc::boxed::Box::new(f));
                true
            }
            #[cfg(feature = "std")]
            Inner::Remote { .. } => false,
        }
    }

    /// Runs `f` after `on_close`, in the order added. Without a heap there is room for four;
    /// returns `false` when full.
    #[cfg(not(feature = "alloc"))]
    pub fn add_close_callback(&mut self, f: fn(&SessionInfo)) -> bool {
        self.slot_mut()
            .is_some_and(|st| st.on_close.push(f).is_ok())
    }
}

/// How a protocol wraps each message written through a [`Ctx`] (WebSocket's framing).
pub(crate) trait Framer {
    /// Frames one encoded message; may change `payload` in place (masking).
    fn frame<'s>(&'s mut self, payload: &'s mut [u8]) -> Result<Framed<'s>, SessionError>;
    /// The framer as `Any`, for the protocol that installed it to get its state back.
    fn as_any(&mut self) -> &mut dyn core::any::Any;
}

/// One framed message: a header and a body to send after it.
pub(crate) struct Framed<'s> {
    pub(crate) head: &'s [u8],
    pub(crate) body: &'s [u8],
}

/// Hands `parts` to the socket, queueing what does not fit; all or nothing.
pub(crate) fn put(
    st: &mut SessionSlot,
    io: &mut dyn Io,
    pool: &mut dyn Held,
    now: Instant,
    parts: &[&[u8]],
    pkgs: u64,
) -> Result<(), SessionError> {
    if !st.is_open() || st.closing.is_some() {
        return Err(SessionError::Socket(Error::Closed));
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    match st.sock {
        #[cfg(feature = "udp")]
        Sock::Udp { .. } => {
            let bytes = parts.first().copied().unwrap_or_default();
            io.write(st.sock, st.info.peer, bytes)?;
        }
        Sock::Tcp(_) => {
            // What was sent leaves the buffer before more is added, so it never holds more
            // than what still waits.
            if let Some(p) = st.pending.filter(|p| p.sent > 0) {
                pool.consume(p.buf, p.sent);
                st.pending = Some(Pending {
                    buf: p.buf,
                    sent: 0,
                });
            }
            let queued = st.pending_len(pool);
            // Queued bytes go first, so nothing may overtake them.
            let room = if queued > 0 { 0 } else { io.room(st.sock) };
            let over = total.saturating_sub(room);
            let max = st.info.limits.max_write_queue;
            if over > 0 && (queued + over > max || !pool.can_hold(st.pending.map(|p| p.buf), over))
            {
                return Err(SessionError::WriteQueueFull { queued, max });
            }
            let mut direct = room.min(total);
            for p in parts {
                let k = direct.min(p.len());
                if k > 0 {
                    let n = io.write(st.sock, st.info.peer, &p[..k])?;
                    debug_assert_eq!(n, k, "the socket took less than its free room");
                    direct -= k;
                }
                if k < p.len() {
                    let p_rest = &p[k..];
                    let pending = match st.pending {
                        Some(q) => q,
                        None => {
                            let buf = pool
                                .take(0)
                                .ok_or(SessionError::WriteQueueFull { queued, max })?;
                            st.tx_progress = now;
                            Pending { buf, sent: 0 }
                        }
                    };
                    st.pending = Some(pending);
                    if !pool.extend(pending.buf, p_rest) {
                        return Err(SessionError::WriteQueueFull { queued, max });
                    }
                }
            }
        }
    }
    st.info.stats.bytes_out += total as u64;
    st.info.stats.pkgs_out += pkgs;
    st.info.stats.last_active = now;
    Ok(())
}

/// A live session with its codec: a [`Ctx`] plus [`write_pkg`](Self::write_pkg).
pub struct Session<'x, C> {
    pub(crate) ctx: Ctx<'x>,
    pub(crate) codec: &'x mut C,
}

impl<'x, C: Codec> Session<'x, C>
where
    C::Error: Into<SessionError>,
{
    /// A session over `ctx` that encodes with `codec`; what a [`Protocol`] builds to call
    /// an [`EventListener`].
    ///
    /// [`Protocol`]: super::Protocol
    /// [`EventListener`]: super::EventListener
    pub fn new(ctx: Ctx<'x>, codec: &'x mut C) -> Self {
        Session { ctx, codec }
    }

    /// Encodes `pkg` and writes it, whole or not at all.
    pub fn write_pkg(&mut self, pkg: &C::Pkg<'_>) -> Result<(), SessionError> {
        let codec = &mut *self.codec;
        self.ctx
            .write_with(1, |sink| codec.encode(pkg, sink).map_err(Into::into))
    }

    /// The codec.
    pub fn codec(&mut self) -> &mut C {
        self.codec
    }
}

impl<'x, C> Deref for Session<'x, C> {
    type Target = Ctx<'x>;
    fn deref(&self) -> &Ctx<'x> {
        &self.ctx
    }
}

impl<C> DerefMut for Session<'_, C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ctx
    }
}
