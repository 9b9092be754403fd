//! The stack as a session writes to it, with the device type erased so that `Session` has
//! no type parameter for it.

use smoltcp::phy::Device;
use smoltcp::wire::IpEndpoint;

use super::state::Sock;
use crate::{Error, Stack};

pub(crate) trait Io {
    /// Writes what fits; `Ok(0)` when nothing does.
    fn write(&mut self, sock: Sock, to: IpEndpoint, bytes: &[u8]) -> Result<usize, Error>;
    /// Free transmit space (TCP); UDP takes a datagram whole or not at all.
    fn room(&self, sock: Sock) -> usize;
    /// Bytes written but not yet acknowledged.
    fn unacked(&self, sock: Sock) -> usize;
}

impl<D: Device> Io for Stack<'_, D> {
    // Without UDP, every session is TCP and `to` is its connection's peer already.
    #[cfg_attr(not(feature = "udp"), allow(unused_variables))]
    fn write(&mut self, sock: Sock, to: IpEndpoint, bytes: &[u8]) -> Result<usize, Error> {
        match sock {
            Sock::Tcp(h) => match self.tcp_write(h, bytes) {
                Err(Error::WouldBlock) => Ok(0),
                r => r,
            },
            #[cfg(feature = "udp")]
            Sock::Udp { h, connected } => {
                match connected {
                    true => self.udp_send(h, bytes)?,
                    false => self.udp_send_to(h, bytes, to)?,
                }
                Ok(bytes.len())
            }
        }
    }

    fn room(&self, sock: Sock) -> usize {
        match sock {
            Sock::Tcp(h) => self.tcp_send_room(h).unwrap_or(0),
            #[cfg(feature = "udp")]
            Sock::Udp { .. } => usize::MAX,
        }
    }

    fn unacked(&self, sock: Sock) -> usize {
        match sock {
            Sock::Tcp(h) => self.tcp_send_queue(h).unwrap_or(0),
            #[cfg(feature = "udp")]
            Sock::Udp { .. } => 0,
        }
    }
}
