//! UDP sockets: bind, send_to, recv_from; connected sockets and the dial check live in the
//! submodules.

use smoltcp::phy::Device;
use smoltcp::socket::udp::{self, RecvError, SendError, UdpMetadata};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::config::UdpOptions;
use crate::error::{Error, Result};
use crate::event::{Ready, UdpHandle};
use crate::ready::{RECV, SEND};
use crate::slot::Role;
use crate::Stack;

mod connected;
mod dial;
#[cfg(all(test, feature = "std"))]
mod tests;

pub(crate) use connected::{foreign_to_connected, icmp_target};
pub use dial::{DialOptions, DialStatus, UdpDial};

/// Where a datagram came from, and which of our addresses it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpMeta {
    /// The sender.
    pub remote: IpEndpoint,
    /// The destination address, when known.
    pub local: Option<IpAddress>,
}

impl<'a, D: Device> Stack<'a, D> {
    /// Binds a UDP socket to `port` (0 picks an ephemeral port).
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let a = stack.udp_bind(7)?;
    /// let b = stack.udp_bind(0)?;
    /// stack.udp_send_to(b, b"ping", "10.0.0.1:7".parse().unwrap())?;
    /// let mut now = Instant::ZERO;
    /// let mut buf = [0u8; 64];
    /// let (n, meta) = loop {
    ///     stack.poll(now);
    ///     match stack.udp_recv_from(a, &mut buf) {
    ///         Err(Error::WouldBlock) => now += ustack::smoltcp::time::Duration::from_millis(1),
    ///         r => break r?,
    ///     }
    /// };
    /// assert_eq!((&buf[..n], meta.remote.port), (&b"ping"[..], stack.udp_local_port(b)?));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn udp_bind(&mut self, port: u16) -> Result<UdpHandle> {
        let opts = self.config.udp;
        self.udp_bind_with(port, opts)
    }

    /// [`udp_bind`](Self::udp_bind) with buffer sizes for a heap-allocated socket.
    pub fn udp_bind_with(&mut self, port: u16, opts: UdpOptions) -> Result<UdpHandle> {
        let port = if port == 0 {
            self.ephemeral_port(Self::udp_port_in_use)?
        } else {
            port
        };
        if self.udp_port_in_use(port) {
            return Err(Error::AddrInUse);
        }
        let i = self.alloc_udp(&opts)?;
        let h = self.handle(i);
        if self.sockets.get_mut::<udp::Socket>(h).bind(port).is_err() {
            self.recycle(i);
            return Err(Error::InvalidInput("smoltcp refused the UDP port"));
        }
        self.slots[i].local_port = port;
        self.register_wakers(i);
        Ok(UdpHandle {
            slot: i as u16,
            gen: self.slots[i].gen,
        })
    }

    /// Queues one datagram to `to`. [`Error::WouldBlock`] when the transmit queue is full;
    /// [`Error::AlreadyConnected`] on a connected socket (use [`udp_send`](Self::udp_send)).
    pub fn udp_send_to(&mut self, h: UdpHandle, buf: &[u8], to: IpEndpoint) -> Result<()> {
        let i = self.udp_slot(h)?;
        if self.slots[i].remote.is_some() {
            return Err(Error::AlreadyConnected);
        }
        self.udp_enqueue(i, buf, to.into())
    }

    fn udp_enqueue(&mut self, i: usize, buf: &[u8], meta: UdpMetadata) -> Result<()> {
        let sock = self.sockets.get_mut::<udp::Socket>(self.handle(i));
        match sock.send_slice(buf, meta) {
            Ok(()) => Ok(()),
            Err(SendError::BufferFull) => {
                if buf.len() > sock.payload_send_capacity() {
                    Err(Error::InvalidInput(
                        "datagram larger than the socket's transmit buffer",
                    ))
                } else {
                    Err(Error::WouldBlock)
                }
            }
            Err(SendError::Unaddressable) => Err(Error::InvalidInput(
                "unaddressable destination: needs a non-zero port and a specified address",
            )),
        }
    }

    /// Takes one datagram. A datagram longer than `buf` is dropped with
    /// [`Error::InvalidInput`], so size `buf` for the largest one expected. On a connected
    /// socket, a pending ICMP error is reported first, once, and `meta.remote` is always the
    /// peer.
    pub fn udp_recv_from(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<(usize, UdpMeta)> {
        let i = self.udp_slot(h)?;
        self.udp_take_error(i)?;
        self.udp_skim(i);
        let sock = self.sockets.get_mut::<udp::Socket>(self.handle(i));
        match sock.recv_slice(buf) {
            Ok((n, meta)) => Ok((
                n,
                UdpMeta {
                    remote: meta.endpoint,
                    local: meta.local_address,
                },
            )),
            Err(RecvError::Exhausted) => Err(Error::WouldBlock),
            Err(RecvError::Truncated) => Err(Error::InvalidInput(
                "datagram larger than the receive buffer was dropped; pass a larger buffer",
            )),
        }
    }

    /// The local port of a UDP socket.
    pub fn udp_local_port(&self, h: UdpHandle) -> Result<u16> {
        Ok(self.slots[self.udp_slot(h)?].local_port)
    }

    /// Closes the socket once its queued datagrams are sent. The handle is invalid afterwards.
    pub fn udp_close(&mut self, h: UdpHandle) -> Result<()> {
        let i = self.udp_slot(h)?;
        self.slots[i].user_closed = true;
        if self.sockets.get::<udp::Socket>(self.handle(i)).send_queue() == 0 {
            self.recycle(i);
        }
        Ok(())
    }

    /// Adds a caller-owned UDP socket to the pool (how `no_std` builds get sockets).
    pub fn add_udp_socket(
        &mut self,
        rx: udp::PacketBuffer<'a>,
        tx: udp::PacketBuffer<'a>,
    ) -> Result<()> {
        let i = self.take_empty()?;
        let h = self.sockets.add(udp::Socket::new(rx, tx));
        self.slots[i].handle = Some(h);
        self.slots[i].reset(Role::FreeUdp);
        self.free_udp.push(&mut self.slots, i);
        Ok(())
    }

    pub(crate) fn on_udp(&mut self, i: usize, bits: u8) {
        let sock = self.sockets.get::<udp::Socket>(self.handle(i));
        if self.slots[i].user_closed {
            if sock.send_queue() == 0 {
                self.recycle(i);
            } else {
                self.register_wakers(i);
            }
            return;
        }
        let mut ready = Ready::empty();
        if bits & RECV != 0 && sock.can_recv() {
            ready |= Ready::READABLE;
        }
        if bits & SEND != 0 && sock.can_send() {
            ready |= Ready::WRITABLE;
        }
        if !ready.is_empty() {
            self.push_event(i, ready);
        }
        self.register_wakers(i);
    }

    pub(crate) fn udp_slot(&self, h: UdpHandle) -> Result<usize> {
        self.live_slot(h.slot, h.gen, Role::Udp)
    }

    fn udp_port_in_use(&self, port: u16) -> bool {
        self.slots
            .iter()
            .any(|s| s.role == Role::Udp && s.local_port == port)
    }

    fn alloc_udp(&mut self, opts: &UdpOptions) -> Result<usize> {
        if let Some(i) = self.free_udp.pop(&mut self.slots) {
            self.slots[i].reset(Role::Udp);
            return Ok(i);
        }
        self.new_udp(opts)
    }

    #[cfg(feature = "alloc")]
    fn new_udp(&mut self, opts: &UdpOptions) -> Result<usize> {
        use alloc::vec;
        if !self.owns_heap() {
            return Err(Error::NoBufferSpace);
        }
        let i = self.take_empty()?;
        let buf = |packets: usize, bytes: usize| {
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0u8; bytes])
        };
        let sock = udp::Socket::new(
            buf(opts.rx_packets, opts.rx_bytes),
            buf(opts.tx_packets, opts.tx_bytes),
        );
        self.slots[i].handle = Some(self.sockets.add(sock));
        self.slots[i].reset(Role::Udp);
        Ok(i)
    }

    #[cfg(not(feature = "alloc"))]
    fn new_udp(&mut self, _opts: &UdpOptions) -> Result<usize> {
        Err(Error::NoBufferSpace)
    }
}
