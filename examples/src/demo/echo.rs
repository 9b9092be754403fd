//! The echo services: raw TCP and UDP on port 7, length-prefixed packages on port 9000.
//! Each is a session [`EventListener`] that writes every package back and counts it.

use log::debug;
use ustack::session::codec::{LengthPrefixed, Raw};
use ustack::session::{Ctx, EventListener, Reject, Session, SessionError};

use super::SharedSnap;

/// Which echo a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// TCP port 7: bytes back as they came.
    Tcp,
    /// UDP port 7: each datagram back to its sender.
    Udp,
    /// TCP port 9000: each package back, same framing.
    LengthPrefixed,
}

/// Writes every package back, and counts it.
pub struct Echo {
    pub(super) snap: SharedSnap,
    pub(super) service: Service,
}

impl Echo {
    /// Counts a written echo of `len` bytes; a failed one ends a stream session.
    fn wrote(&mut self, r: Result<(), SessionError>, len: usize, s: &mut Ctx<'_>) {
        match r {
            Ok(()) => {
                let mut snap = self.snap.borrow_mut();
                let c = &mut snap.counters;
                match self.service {
                    Service::Tcp => c.tcp_echo_bytes += len as u64,
                    Service::Udp => c.udp_echo_datagrams += 1,
                    Service::LengthPrefixed => c.lp_echo_packages += 1,
                }
            }
            Err(e) => {
                // The write queue is bounded and reading pauses before it fills, so this is
                // a peer that stopped reading altogether: end it rather than lose bytes.
                debug!("session {}: echo failed ({e})", s.id().0);
                if self.service != Service::Udp {
                    s.close();
                }
            }
        }
    }

    fn opened(&mut self) {
        let mut snap = self.snap.borrow_mut();
        match self.service {
            Service::Tcp => snap.counters.opened_tcp_echo += 1,
            Service::LengthPrefixed => snap.counters.opened_lp_echo += 1,
            Service::Udp => {}
        }
    }
}

impl EventListener<Raw> for Echo {
    fn on_open(&mut self, _: &mut Session<'_, Raw>) -> Result<(), Reject> {
        self.opened();
        Ok(())
    }

    fn on_message(&mut self, s: &mut Session<'_, Raw>, pkg: &[u8]) {
        let r = s.write_pkg(&pkg);
        self.wrote(r, pkg.len(), s)
    }
}

impl EventListener<LengthPrefixed> for Echo {
    fn on_open(&mut self, _: &mut Session<'_, LengthPrefixed>) -> Result<(), Reject> {
        self.opened();
        Ok(())
    }

    fn on_message(&mut self, s: &mut Session<'_, LengthPrefixed>, pkg: &[u8]) {
        let r = s.write_pkg(&pkg);
        self.wrote(r, pkg.len(), s)
    }
}
