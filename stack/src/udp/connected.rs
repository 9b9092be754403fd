//! Connected UDP with Linux semantics: one peer, foreign datagrams dropped, ICMP errors
//! reported once.
//!
//! smoltcp's UDP socket has no peer, so the filtering happens in two places. Ingress drops a
//! foreign datagram before smoltcp queues it (a flood from a stranger cannot fill the peer's
//! buffer), and `recv` drops any that were queued before `connect`. ICMP errors are matched in
//! ingress against the quoted datagram's four addresses and delivered after the poll.

use smoltcp::phy::Device;
use smoltcp::socket::udp::{self, UdpMetadata};
use smoltcp::wire::{IpCidr, IpEndpoint};

use crate::error::{Error, Result};
use crate::event::{Ready, UdpHandle};
use crate::ingress::{IcmpError, UdpInfo, Unreachable};
use crate::slot::{Role, Slot};
use crate::Stack;

impl<'a, D: Device> Stack<'a, D> {
    /// Connects a UDP socket to `remote`: from now on only `remote`'s datagrams are delivered,
    /// [`udp_send`](Self::udp_send) goes to it, and ICMP errors about it are reported. Connect
    /// again to change the peer.
    ///
    /// Errors: [`Error::InvalidInput`] for an unspecified address, port 0, a self-connect
    /// (`remote` is this socket's own address and port), or an IP version the interface has
    /// no address for.
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let s = stack.udp_bind(5000)?;
    /// assert!(matches!(stack.udp_connect(s, "10.0.0.1:5000".parse().unwrap()), Err(Error::InvalidInput(_))));
    /// stack.udp_connect(s, "10.0.0.9:53".parse().unwrap())?;
    /// assert_eq!(stack.udp_send_to(s, b"x", "10.0.0.9:53".parse().unwrap()), Err(Error::AlreadyConnected));
    /// stack.udp_send(s, b"query")?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn udp_connect(&mut self, h: UdpHandle, remote: IpEndpoint) -> Result<()> {
        let i = self.udp_slot(h)?;
        if remote.port == 0 || remote.addr.is_unspecified() {
            return Err(Error::InvalidInput(
                "connect needs a specified address and a non-zero port",
            ));
        }
        if remote.port == self.slots[i].local_port && self.iface.has_ip_addr(remote.addr) {
            return Err(Error::InvalidInput(
                "self-connect: the remote address and port are this socket's own",
            ));
        }
        // smoltcp falls back to a loopback source for IPv6, so check the version first.
        let same_version = |c: &IpCidr| {
            core::mem::discriminant(&c.address()) == core::mem::discriminant(&remote.addr)
        };
        let src = match self.iface.ip_addrs().iter().any(same_version) {
            true => self.iface.get_source_address(&remote.addr),
            false => None,
        };
        let Some(src) = src else {
            return Err(Error::InvalidInput(
                "the interface has no address of the peer's IP version; add one in Config",
            ));
        };
        let s = &mut self.slots[i];
        if s.remote.is_none() {
            self.ingress.udp_connected += 1;
        }
        s.remote = Some(remote);
        s.src = Some(src);
        s.error = None;
        s.replied = false;
        Ok(())
    }

    /// Makes a connected UDP socket unconnected again. A no-op on an unconnected one.
    pub fn udp_disconnect(&mut self, h: UdpHandle) -> Result<()> {
        let i = self.udp_slot(h)?;
        self.forget_peer(i);
        Ok(())
    }

    /// The peer of a connected UDP socket, or [`Error::NotConnected`].
    pub fn udp_peer_addr(&self, h: UdpHandle) -> Result<IpEndpoint> {
        self.slots[self.udp_slot(h)?]
            .remote
            .ok_or(Error::NotConnected)
    }

    /// Queues one datagram to the connected peer. [`Error::DestinationAddressRequired`] when
    /// the socket is not connected; a pending ICMP error is returned once instead of sending.
    pub fn udp_send(&mut self, h: UdpHandle, buf: &[u8]) -> Result<()> {
        let i = self.udp_slot(h)?;
        let Some(remote) = self.slots[i].remote else {
            return Err(Error::DestinationAddressRequired);
        };
        self.udp_take_error(i)?;
        let mut meta = UdpMetadata::from(remote);
        // The source was chosen at connect, so smoltcp skips source selection per datagram.
        meta.local_address = self.slots[i].src;
        self.udp_enqueue(i, buf, meta)
    }

    /// Takes one datagram, without its address; see [`udp_recv_from`](Self::udp_recv_from).
    pub fn udp_recv(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<usize> {
        self.udp_recv_from(h, buf).map(|(n, _)| n)
    }

    /// Makes the socket discard datagrams equal to [`Config::udp_probe`](crate::Config),
    /// which peers' [`udp_dial`](Self::udp_dial) sends (Getty's rule). Dialed sockets do it
    /// already, so an echoed probe never reaches the application.
    pub fn udp_drop_probes(&mut self, h: UdpHandle, on: bool) -> Result<()> {
        let i = self.udp_slot(h)?;
        self.slots[i].drop_probe = on;
        Ok(())
    }

    /// Returns a pending ICMP error, once.
    pub(crate) fn udp_take_error(&mut self, i: usize) -> Result<()> {
        match self.slots[i].error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drops queued datagrams the application must not see: a stranger's on a connected
    /// socket (queued before `connect`), and probes on a socket that drops them. Notes in the
    /// slot whether the peer has been heard from.
    pub(crate) fn udp_skim(&mut self, i: usize) {
        let s = self.slots[i];
        if s.remote.is_none() && !s.drop_probe {
            return;
        }
        let probe = self.config.udp_probe;
        let h = self.handle(i);
        let stats = &mut self.ingress.stats;
        let sock = self.sockets.get_mut::<udp::Socket>(h);
        let mut replied = s.replied;
        while let Ok((payload, meta)) = sock.peek() {
            if s.remote.is_some_and(|r| r != meta.endpoint) {
                stats.udp_foreign_dropped += 1;
            } else if s.drop_probe && payload == probe {
                stats.udp_probes_dropped += 1;
                replied = true;
            } else {
                replied = true;
                break;
            }
            let _ = sock.recv();
        }
        self.slots[i].replied = replied;
    }

    /// Hands ICMP errors that ingress matched to their sockets, with an ERROR event.
    pub(crate) fn deliver_icmp_errors(&mut self) {
        while let Some(hit) = self.ingress.icmp_hits.pop_front() {
            let i = usize::from(hit.slot);
            let s = &mut self.slots[i];
            if s.gen != hit.gen || s.role != Role::Udp || s.remote.is_none() || s.user_closed {
                continue;
            }
            s.error = Some(match hit.kind {
                Unreachable::Port => Error::ConnectionRefused,
                Unreachable::Host => Error::HostUnreachable,
            });
            self.ingress.stats.udp_icmp_errors += 1;
            #[cfg(feature = "log")]
            log::debug!("udp socket {i}: {:?} from {:?}", hit.kind, s.remote);
            self.push_event(i, Ready::READABLE | Ready::ERROR);
        }
    }

    /// Clears the peer (disconnect, or the socket going back to the pool).
    pub(crate) fn forget_peer(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.remote.take().is_some() {
            self.ingress.udp_connected -= 1;
        }
        s.src = None;
        s.error = None;
        s.replied = false;
    }
}

/// The bound UDP socket on `port`, if any (ports are exclusive, so there is at most one).
fn bound(slots: &[Slot], port: u16) -> Option<(usize, &Slot)> {
    slots
        .iter()
        .enumerate()
        .find(|(_, s)| s.role == Role::Udp && s.local_port == port)
}

/// Whether `dgram` is addressed to a connected socket whose peer did not send it.
pub(crate) fn foreign_to_connected(slots: &[Slot], dgram: &UdpInfo) -> bool {
    bound(slots, dgram.dst_port)
        .and_then(|(_, s)| s.remote)
        .is_some_and(|peer| peer != dgram.src)
}

/// The connected socket (slot, generation) that sent the datagram `e` quotes, if any.
/// Unconnected sockets never match: like Linux without `IP_RECVERR`, they ignore ICMP errors.
pub(crate) fn icmp_target(slots: &[Slot], e: &IcmpError) -> Option<(u16, u16)> {
    let (i, s) = bound(slots, e.local.port)?;
    (s.remote == Some(e.remote) && !s.user_closed).then_some((i as u16, s.gen))
}
