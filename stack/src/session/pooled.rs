//! A [`Codec`] and an [`EventListener`] whose `on_message` runs on a [`TaskPool`].

use alloc::sync::Arc;
use alloc::vec::Vec;
use std::io;

use super::codec::{Codec, Decoded};
use super::ctx::{Ctx, Inner, Session};
use super::handle::SessionHandle;
use super::info::{SessionId, SessionInfo};
use super::listener::{decode_all, EventListener, Input, Protocol, Service};
use super::tasks::{PoolConfig, TaskPool};
use super::{Engine, Reject, SessionError};

/// One package on its way to a worker.
pub struct Task {
    handle: SessionHandle,
    info: SessionInfo,
    bytes: Vec<u8>,
}

/// Like [`Service`](super::Service), but `on_message` runs on a pool of worker threads, each
/// with its own clone of the listener. `on_open`, `on_cron`, `on_error` and `on_close` stay
/// on the stack thread, so they see attributes and can refuse sessions.
///
/// The stack thread decodes (and checks lengths); workers get each package's bytes and a
/// [`Session`] whose writes and `close` are queued back. When a session's queue is full its
/// reading pauses (the socket's window closes), and a server stops accepting while every
/// queue is full. Messages still queued when a session closes are handled, but their writes
/// fail with `Closed`.
pub struct Pooled<C: Codec, L> {
    /// Runs everything but `on_message`, on the stack thread.
    inline: Service<C, L>,
    pool: TaskPool<Task>,
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
        let pool = TaskPool::new(config, |_| {
            let (mut codec, mut listener, mut out) = (codec.clone(), listener.clone(), Vec::new());
            move |t: Task| run(&mut codec, &mut listener, &mut out, t)
        })?;
        pool.on_room(Arc::new(move || shared.kick()));
        Ok(Pooled {
            inline: Service::new(codec, listener),
            pool,
        })
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

    fn input(&mut self, s: &mut Ctx<'_>, buf: &[u8]) -> Result<Input, SessionError> {
        let pool = &self.pool;
        decode_all(self.inline.codec(), s, buf, |s, _pkg, raw| {
            let Some(handle) = s.handle() else {
                return false;
            };
            let task = Task {
                handle,
                info: *s.info(),
                bytes: raw.to_vec(),
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
}
