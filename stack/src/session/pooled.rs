//! A [`Codec`] and an [`EventListener`] whose `on_message` runs on a [`TaskPool`].

use alloc::sync::Arc;
use alloc::vec::Vec;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use super::codec::{Codec, Decoded};
use super::ctx::{Ctx, Inner, Session};
use super::handle::{SessionHandle, Shared};
use super::info::{SessionId, SessionInfo};
use super::listener::{decode_all, EventListener, Input, Protocol, Service};
use super::tasks::{PoolConfig, TaskPool};
use super::{Engine, Reject, SessionError};

/// One package on its way to a worker.
pub struct Task {
    handle: SessionHandle,
    info: SessionInfo,
    bytes: Vec<u8>,
    _flight: InFlight,
}

/// Counts a session's tasks from submission until they are handled or dropped, so that a
/// session whose peer finished sending stays open until its replies are written.
struct InFlight {
    counts: Arc<[AtomicU32]>,
    index: usize,
    shared: Arc<Shared>,
}

impl InFlight {
    fn new(counts: &Arc<[AtomicU32]>, index: usize, shared: &Arc<Shared>) -> Self {
        counts[index].fetch_add(1, Ordering::AcqRel);
        InFlight {
            counts: counts.clone(),
            index,
            shared: shared.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counts[self.index].fetch_sub(1, Ordering::AcqRel) == 1 {
            // The engine may be waiting for this session's last reply.
            self.shared.kick();
        }
    }
}

/// Like [`Service`](super::Service), but `on_message` runs on a pool of worker threads, each
/// with its own clone of the listener. `on_open`, `on_cron`, `on_error` and `on_close` stay
/// on the stack thread, so they see attributes and can refuse sessions.
///
/// The stack thread decodes (and checks lengths); workers get each package's bytes and a
/// [`Session`] whose writes and `close` are queued back. When a session's queue is full its
/// reading pauses (the socket's window closes), and a server stops accepting while every
/// queue is full. When the peer finishes sending, the session stays open until the workers
/// have handled its messages (at most [`DEFAULT_DRAIN_TIMEOUT`](super::DEFAULT_DRAIN_TIMEOUT)),
/// so a client that half-closes gets every reply. Messages still queued when a session is
/// closed for another reason are handled, but their writes fail with `Closed`.
pub struct Pooled<C: Codec, L> {
    /// Runs everything but `on_message`, on the stack thread.
    inline: Service<C, L>,
    pool: TaskPool<Task>,
    flight: Arc<[AtomicU32]>,
    shared: Arc<Shared>,
}

impl<C, L> Pooled<C, L>
where
    C: Codec + Clone + Send + 'static,
    C::Error: Into<SessionError>,
    L: EventListener<C> + Clone + Send + 'static,
{
    /// Starts the pool's workers. The engine's handles are enabled so workers can reach
    /// sessions.
    pub fn new(
        engine: &mut Engine<'_>,
        codec: C,
        listener: L,
        config: PoolConfig,
    ) -> io::Result<Self> {
        let shared = engine.shared()?;
        let flight = (0..engine.capacity()).map(|_| AtomicU32::new(0)).collect();
        let pool = TaskPool::new(config, |_| {
            let (mut codec, mut listener, mut out) = (codec.clone(), listener.clone(), Vec::new());
            move |t: Task| run(&mut codec, &mut listener, &mut out, t)
        })?;
        let kick = shared.clone();
        pool.on_room(Arc::new(move || kick.kick()));
        Ok(Pooled {
            inline: Service::new(codec, listener),
            pool,
            flight,
            shared,
        })
    }
}

impl<C: Codec, L> Pooled<C, L> {
    /// Messages waiting in the pool's queues (not yet taken by a worker).
    pub fn queued(&self) -> usize {
        self.pool.queued()
    }
}

fn run<C, L>(codec: &mut C, listener: &mut L, out: &mut Vec<u8>, t: Task)
where
    C: Codec + Clone,
    C::Error: Into<SessionError>,
    L: EventListener<C>,
{
    let Task {
        handle,
        mut info,
        bytes,
        _flight,
    } = t;
    // Decoding starts from a fresh copy, as on the stack thread.
    let mut dec = codec.clone();
    let Ok(Decoded::Packet(pkg, _)) = dec.decode(&bytes) else {
        // The stack thread decoded these very bytes; a codec that disagrees is broken.
        #[cfg(feature = "log")]
        log::error!(
            "session {}: the codec did not decode a package a second time",
            info.id.0
        );
        return;
    };
    let ctx = Ctx {
        inner: Inner::Remote {
            info: &mut info,
            handle: &handle,
            out,
        },
    };
    listener.on_message(&mut Session::new(ctx, codec), pkg);
}

impl<C, L> Protocol for Pooled<C, L>
where
    C: Codec + Clone + Send + 'static,
    C::Error: Into<SessionError>,
    L: EventListener<C> + Clone + Send + 'static,
{
    fn open(&mut self, s: &mut Ctx<'_>) -> Result<(), Reject> {
        self.inline.open(s)
    }

    fn input(&mut self, s: &mut Ctx<'_>, buf: &mut [u8]) -> Result<Input, SessionError> {
        let (pool, flight, shared) = (&self.pool, &self.flight, &self.shared);
        decode_all(self.inline.codec(), s, buf, |s, _pkg, raw| {
            let (Some(handle), Some(index)) = (s.handle(), s.index()) else {
                return false;
            };
            let task = Task {
                handle,
                info: *s.info(),
                bytes: raw.to_vec(),
                _flight: InFlight::new(flight, index, shared),
            };
            pool.try_submit(s.id().0, task).is_ok()
        })
    }

    fn cron(&mut self, s: &mut Ctx<'_>) {
        self.inline.cron(s)
    }

    fn error(&mut self, s: &mut Ctx<'_>, e: &SessionError) {
        self.inline.error(s, e)
    }

    fn close(&mut self, s: &mut Ctx<'_>) {
        self.inline.close(s)
    }

    fn busy(&self, id: Option<SessionId>) -> bool {
        self.pool.is_full(id.map(|i| i.0))
    }

    fn in_flight(&self, index: usize) -> bool {
        self.flight
            .get(index)
            .is_some_and(|c| c.load(Ordering::Acquire) > 0)
    }
}
