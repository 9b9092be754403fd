//! Commands from other threads: writes, closes and limit changes queued by
//! [`SessionHandle`](crate::session::SessionHandle)s and pool workers.

use std::io;
use std::os::fd::RawFd;

use alloc::sync::Arc;
use smoltcp::phy::Device;
use smoltcp::time::Instant;

use super::super::handle::{Cmd, Shared};
use super::super::state::Phase;
use super::Engine;
use crate::Stack;

impl Engine<'_> {
    /// Lets sessions be reached from other threads ([`Ctx::handle`]). Returns the eventfd
    /// the stack thread must also wait on (the [`run`](crate::runtime::run_engine) loop
    /// does).
    ///
    /// [`Ctx::handle`]: super::super::Ctx::handle
    pub fn enable_handles(&mut self) -> io::Result<RawFd> {
        if self.remote.is_none() {
            self.remote = Some(Arc::new(Shared::new(self.slots.len())?));
        }
        Ok(self.wake_fd().unwrap_or(-1))
    }

    /// The eventfd other threads wake the stack thread with, once handles are enabled.
    pub fn wake_fd(&self) -> Option<RawFd> {
        self.remote.as_ref().map(|r| r.fd())
    }

    /// The shared command queue, for pool workers to wake the stack thread through.
    pub(crate) fn shared(&mut self) -> io::Result<Arc<Shared>> {
        self.enable_handles()?;
        Ok(self.remote.clone().expect("enabled above"))
    }

    pub(super) fn forget_remote(&mut self, i: usize) {
        if let Some(r) = &self.remote {
            r.set_alive(i, 0);
        }
    }

    /// Applies queued commands; returns whether there were any.
    pub(super) fn run_commands<D: Device>(
        &mut self,
        stack: &mut Stack<'_, D>,
        now: Instant,
    ) -> bool {
        let Some(shared) = self.remote.clone() else {
            return false;
        };
        let cmds = shared.take();
        let any = !cmds.is_empty();
        for cmd in cmds {
            let (slot, id) = match &cmd {
                Cmd::Write { slot, id, .. }
                | Cmd::Close { slot, id }
                | Cmd::Limits { slot, id, .. } => (usize::from(*slot), *id),
            };
            let Some(st) = self.slots.get_mut(slot) else {
                continue;
            };
            if st.phase != Phase::Open || st.info.id.0 != id {
                continue;
            }
            match cmd {
                Cmd::Write {
                    mut bytes, pkgs, ..
                } => {
                    let r =
                        self.with_ctx(stack, slot, now, |p, s| p.write_remote(s, &mut bytes, pkgs));
                    if let Err(e) = r {
                        self.end(stack, slot, Some(e), now);
                        continue;
                    }
                    self.flush(stack, slot, now);
                }
                Cmd::Close { .. } => {
                    st.closing.get_or_insert(None);
                    self.after_callback(stack, slot, now);
                }
                Cmd::Limits { limits, .. } => st.set_limits(limits),
            }
            self.rearm(stack, slot, now);
        }
        any
    }
}
