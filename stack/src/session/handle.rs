//! Reaching sessions from other threads: a [`SessionHandle`] queues writes and closes to the
//! stack thread, which an eventfd wakes.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use super::codec::Codec;
use super::info::{Limits, SessionId};
use super::SessionError;
use crate::Error;

/// Commands queued from other threads before a writer has to wait.
pub const COMMAND_QUEUE: usize = 4096;

pub(crate) enum Cmd {
    Write {
        slot: u16,
        id: u64,
        bytes: Vec<u8>,
        pkgs: u64,
    },
    Close {
        slot: u16,
        id: u64,
    },
    Limits {
        slot: u16,
        id: u64,
        limits: Limits,
    },
}

/// What the stack thread and every handle share.
pub(crate) struct Shared {
    cmds: Mutex<VecDeque<Cmd>>,
    space: Condvar,
    /// The engine is gone: commands are dropped instead of queued.
    gone: AtomicBool,
    wake: OwnedFd,
    /// Per engine slot: the id of the session open there, or 0.
    alive: Vec<AtomicU64>,
}

impl Shared {
    pub(crate) fn new(slots: usize) -> io::Result<Self> {
        // SAFETY: eventfd returns a new descriptor that we own, or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Shared {
            cmds: Mutex::new(VecDeque::new()),
            space: Condvar::new(),
            gone: AtomicBool::new(false),
            // SAFETY: `raw` is a fresh, valid descriptor.
            wake: unsafe { OwnedFd::from_raw_fd(raw) },
            alive: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Wakes the stack thread.
    pub(crate) fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to an eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn set_alive(&self, slot: usize, id: u64) {
        self.alive[slot].store(id, Ordering::Release);
    }

    fn is_alive(&self, slot: u16, id: u64) -> bool {
        self.alive[usize::from(slot)].load(Ordering::Acquire) == id
    }

    /// Takes every queued command (and clears the wake-up).
    pub(crate) fn take(&self) -> VecDeque<Cmd> {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from a non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        let mut q = self.cmds.lock().unwrap_or_else(|e| e.into_inner());
        let cmds = core::mem::take(&mut *q);
        drop(q);
        // Writers wait only on a full queue; waking nobody would still cost a syscall a poll.
        if cmds.len() >= COMMAND_QUEUE {
            self.space.notify_all();
        }
        cmds
    }

    /// Marks every session closed and releases writers waiting for queue room.
    pub(crate) fn shut_down(&self) {
        let _q = self.cmds.lock().unwrap_or_else(|e| e.into_inner());
        self.gone.store(true, Ordering::Release);
        for a in &self.alive {
            a.store(0, Ordering::Release);
        }
        self.space.notify_all();
    }

    fn push(&self, cmd: Cmd) {
        let mut q = self.cmds.lock().unwrap_or_else(|e| e.into_inner());
        // A bounded queue: a writer faster than the stack thread waits here.
        while q.len() >= COMMAND_QUEUE && !self.gone.load(Ordering::Acquire) {
            q = self.space.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if self.gone.load(Ordering::Acquire) {
            return;
        }
        let first = q.is_empty();
        q.push_back(cmd);
        drop(q);
        if first {
            self.kick();
        }
    }
}

/// A session, reachable from any thread: writes and close are queued to the stack thread.
/// Once the session is closed every call returns `SessionError::Socket(Error::Closed)`.
///
/// Get one with [`Ctx::handle`](super::Ctx::handle) after [`Engine::enable_handles`].
///
/// [`Engine::enable_handles`]: super::Engine::enable_handles
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) slot: u16,
    pub(crate) id: SessionId,
}

impl core::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl SessionHandle {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Whether the session is still open.
    pub fn is_open(&self) -> bool {
        self.shared.is_alive(self.slot, self.id.0)
    }

    fn check(&self) -> Result<(), SessionError> {
        match self.is_open() {
            true => Ok(()),
            false => Err(SessionError::Socket(Error::Closed)),
        }
    }

    /// Queues raw bytes.
    pub fn write(&self, bytes: &[u8]) -> Result<(), SessionError> {
        self.write_bytes(bytes.to_vec(), 0)
    }

    /// Encodes `pkg` with `codec` here, and queues the bytes.
    pub fn write_pkg<C: Codec>(&self, codec: &mut C, pkg: &C::Pkg<'_>) -> Result<(), SessionError>
    where
        C::Error: Into<SessionError>,
    {
        self.check()?;
        let mut out = Vec::new();
        codec.encode(pkg, &mut out).map_err(Into::into)?;
        self.write_bytes(out, 1)
    }

    pub(crate) fn write_bytes(&self, bytes: Vec<u8>, pkgs: u64) -> Result<(), SessionError> {
        self.check()?;
        let (slot, id) = (self.slot, self.id.0);
        self.shared.push(Cmd::Write {
            slot,
            id,
            bytes,
            pkgs,
        });
        Ok(())
    }

    /// Closes the session (as [`Ctx::close`](super::Ctx::close) would). From this call on
    /// every handle of the session reports it closed, and writes made after it are refused;
    /// writes made before it are still sent.
    pub fn close(&self) -> Result<(), SessionError> {
        let (slot, id) = (self.slot, self.id.0);
        let alive = &self.shared.alive[usize::from(slot)];
        if alive
            .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(SessionError::Socket(Error::Closed));
        }
        self.shared.push(Cmd::Close { slot, id });
        Ok(())
    }

    pub(crate) fn set_limits(&self, limits: Limits) -> Result<(), SessionError> {
        self.check()?;
        let (slot, id) = (self.slot, self.id.0);
        self.shared.push(Cmd::Limits { slot, id, limits });
        Ok(())
    }
}
