//! TCP: listeners with a real backlog, connect, accept, and stream I/O.

use smoltcp::phy::Device;
use smoltcp::socket::tcp::{self, RecvError, SendError, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::config::TcpOptions;
use crate::error::{Error, Result};
use crate::event::{Ready, TcpHandle, TcpListener};
use crate::ready::{RECV, SEND};
use crate::slot::Role;
use crate::Stack;

mod queue;
#[cfg(all(test, feature = "std"))]
mod tests;

/// Most sockets one listener keeps armed or pending; larger backlogs are clamped to it.
pub const MAX_BACKLOG: usize = 128;

pub(crate) struct Listener {
    pub port: u16,
    pub backlog: u16,
    pub gen: u16,
    pub notified: bool,
    pub opts: TcpOptions,
    /// Slots armed (LISTEN) or pending (handshaking or waiting in `accept`).
    pub members: heapless::Vec<u16, MAX_BACKLOG>,
}

impl<'a, D: Device> Stack<'a, D> {
    /// Listens on `port`, keeping `backlog` connections armed or waiting for `accept`.
    ///
    /// smoltcp has no backlog, so the listener keeps `backlog` sockets in LISTEN. Each
    /// connection occupies one until it is accepted, and then a new one is armed. A SYN that
    /// finds none armed is held for [`Config::syn_hold`](crate::Config::syn_hold) in case the
    /// application accepts in time, and is then answered with a reset and counted in
    /// [`Stats::tcp_syn_backlog_full`](crate::Stats::tcp_syn_backlog_full).
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let listener = stack.listen(80, 16)?;
    /// assert_eq!(stack.listen(80, 16), Err(Error::AddrInUse));
    /// assert_eq!(stack.listener_port(listener), Ok(80));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn listen(&mut self, port: u16, backlog: usize) -> Result<TcpListener> {
        let opts = self.config.tcp;
        self.listen_with(port, backlog, opts)
    }

    /// [`listen`](Self::listen) with options for the accepted connections.
    pub fn listen_with(
        &mut self,
        port: u16,
        backlog: usize,
        opts: TcpOptions,
    ) -> Result<TcpListener> {
        if port == 0 {
            return Err(Error::InvalidInput("cannot listen on port 0"));
        }
        if backlog == 0 {
            return Err(Error::InvalidInput("backlog must be at least 1"));
        }
        if self.port_in_use(port) {
            return Err(Error::AddrInUse);
        }
        let idx = self
            .listeners
            .iter()
            .position(Option::is_none)
            .ok_or(Error::NoBufferSpace)?;
        self.listener_gen = self.listener_gen.wrapping_add(1);
        let gen = self.listener_gen;
        self.listeners[idx] = Some(Listener {
            port,
            backlog: backlog.min(MAX_BACKLOG) as u16,
            gen,
            notified: false,
            opts,
            members: heapless::Vec::new(),
        });
        self.rearm(idx);
        let armed = self.listeners[idx].as_ref().map_or(0, |l| l.members.len());
        if armed == 0 {
            self.listeners[idx] = None;
            return Err(Error::NoBufferSpace);
        }
        #[cfg(feature = "log")]
        log::debug!("listening on port {port} with backlog {backlog} ({armed} armed)");
        Ok(TcpListener {
            idx: idx as u8,
            gen,
        })
    }

    /// Takes the oldest established connection, or [`Error::WouldBlock`].
    ///
    /// [`Ready::ACCEPTABLE`] is edge-triggered: on that event, accept until `WouldBlock`.
    /// Each accept arms a fresh listening socket, and any SYN held back for lack of room is
    /// let through on the next poll.
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let listener = stack.listen(80, 4)?;
    /// let client = stack.connect("10.0.0.1:80".parse().unwrap())?;
    /// let mut now = Instant::ZERO;
    /// let server = loop {
    ///     stack.poll(now);
    ///     match stack.accept(listener) {
    ///         Ok(conn) => break conn,
    ///         Err(Error::WouldBlock) => now += ustack::smoltcp::time::Duration::from_millis(10),
    ///         Err(e) => return Err(e),
    ///     }
    /// };
    /// assert_eq!(stack.tcp_peer_addr(server)?, stack.tcp_local_addr(client)?);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn accept(&mut self, listener: TcpListener) -> Result<TcpHandle> {
        let li = self.listener_index(listener)?;
        let l = self.listeners[li].as_ref().ok_or(Error::Closed)?;
        let mut best: Option<(usize, u32)> = None;
        for (pos, &m) in l.members.iter().enumerate() {
            let i = usize::from(m);
            let established = !matches!(
                self.socket_state(i),
                None | Some(State::Listen | State::SynReceived | State::Closed)
            );
            let order = self.slots[i].order;
            if established && best.is_none_or(|(_, o)| order < o) {
                best = Some((pos, order));
            }
        }
        let (pos, _) = best.ok_or(Error::WouldBlock)?;
        let i = usize::from(
            self.listeners[li]
                .as_mut()
                .map_or(0, |l| l.members.swap_remove(pos)),
        );
        let sock = self.sockets.get::<tcp::Socket>(self.handle(i));
        let (state, remote) = (sock.state(), sock.remote_endpoint());
        let local_port = sock.local_endpoint().map_or(0, |e| e.port);
        let s = &mut self.slots[i];
        s.role = Role::Stream;
        s.prev = state;
        s.remote = remote;
        s.local_port = local_port;
        let handle = TcpHandle {
            slot: i as u16,
            gen: s.gen,
        };
        self.ingress.stats.tcp_accepted += 1;
        self.register_wakers(i);
        // Data may have arrived before the accept; an edge-triggered user must hear of it.
        self.push_event(i, Ready::CONNECTED | Ready::READABLE | Ready::WRITABLE);
        self.rearm(li);
        Ok(handle)
    }

    /// Stops listening. Connections not yet accepted are reset.
    pub fn close_listener(&mut self, listener: TcpListener) -> Result<()> {
        let li = self.listener_index(listener)?;
        let Some(l) = self.listeners[li].take() else {
            return Err(Error::Closed);
        };
        for &m in l.members.iter() {
            let i = usize::from(m);
            let h = self.handle(i);
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            self.slots[i].role = Role::Stream;
            self.slots[i].user_closed = true;
            self.touch(i);
        }
        Ok(())
    }

    /// The local port of a listener.
    pub fn listener_port(&self, listener: TcpListener) -> Result<u16> {
        let li = self.listener_index(listener)?;
        Ok(self.listeners[li].as_ref().map_or(0, |l| l.port))
    }

    /// Opens a connection from an ephemeral local port. Wait for [`Ready::CONNECTED`]
    /// (or an error) before writing; writes before that return [`Error::WouldBlock`].
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let conn = stack.connect("10.0.0.1:7".parse().unwrap())?;
    /// assert_eq!(stack.tcp_connected(conn), Ok(false));
    /// assert_eq!(stack.tcp_write(conn, b"early"), Err(Error::WouldBlock));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn connect(&mut self, remote: IpEndpoint) -> Result<TcpHandle> {
        let opts = self.config.tcp;
        self.connect_with(remote, opts)
    }

    /// [`connect`](Self::connect) with per-socket options.
    pub fn connect_with(&mut self, remote: IpEndpoint, opts: TcpOptions) -> Result<TcpHandle> {
        if remote.port == 0 || remote.addr.is_unspecified() {
            return Err(Error::InvalidInput(
                "connect needs a non-zero port and a specified address",
            ));
        }
        if !self.routable(remote.addr) {
            return Err(Error::InvalidInput(
                "no route to host: the address is outside the interface subnet and no gateway is configured",
            ));
        }
        let port = self.ephemeral_port(Self::port_in_use)?;
        let i = self.alloc_tcp(&opts)?;
        if !self.txc.connecting(port) {
            self.recycle(i);
            return Err(Error::NoBufferSpace);
        }
        let h = self.handle(i);
        let cx = self.iface.context();
        let sock = self.sockets.get_mut::<tcp::Socket>(h);
        if sock.connect(cx, remote, port).is_err() {
            self.txc.sent(port);
            self.recycle(i);
            return Err(Error::InvalidInput(
                "smoltcp refused the endpoints (address family mismatch?)",
            ));
        }
        let s = &mut self.slots[i];
        s.role = Role::Stream;
        s.prev = State::SynSent;
        s.local_port = port;
        s.remote = Some(remote);
        self.ingress.stats.tcp_connects += 1;
        self.register_wakers(i);
        Ok(TcpHandle {
            slot: i as u16,
            gen: self.slots[i].gen,
        })
    }

    /// Reads into `buf`. `Ok(0)` means the peer closed its side and all data was read.
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let conn = stack.connect("10.0.0.1:7".parse().unwrap())?;
    /// let mut buf = [0u8; 1500];
    /// assert_eq!(stack.tcp_read(conn, &mut buf), Err(Error::WouldBlock)); // still connecting
    /// stack.tcp_close(conn)?;
    /// assert_eq!(stack.tcp_read(conn, &mut buf), Err(Error::Closed)); // the handle is spent
    /// # Ok::<(), Error>(())
    /// ```
    pub fn tcp_read(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize> {
        let i = self.stream(h)?;
        let sock = self.sockets.get_mut::<tcp::Socket>(self.handle(i));
        match sock.recv_slice(buf) {
            Ok(0) if !buf.is_empty() => Err(Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::InvalidState) => Err(self.why_not_open(i)),
        }
    }

    /// Writes from `buf`, returning how much was queued.
    pub fn tcp_write(&mut self, h: TcpHandle, buf: &[u8]) -> Result<usize> {
        let i = self.stream(h)?;
        if self.slots[i].shut_pending {
            return Err(Error::NotConnected);
        }
        let sock = self.sockets.get_mut::<tcp::Socket>(self.handle(i));
        match sock.send_slice(buf) {
            Ok(0) if !buf.is_empty() => Err(Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(SendError::InvalidState) => match sock.state() {
                // Not open for sending yet: the CONNECTED event will say when.
                State::SynSent | State::SynReceived => Err(Error::WouldBlock),
                _ => Err(self.why_not_open(i)),
            },
        }
    }

    /// Whether the handshake is done: `Ok(false)` while connecting, the error if it failed.
    pub fn tcp_connected(&self, h: TcpHandle) -> Result<bool> {
        let i = self.stream(h)?;
        match self.socket_state(i) {
            Some(State::SynSent | State::SynReceived) => Ok(false),
            Some(State::Closed) => Err(self.why_not_open(i)),
            _ => Ok(true),
        }
    }

    /// Bytes waiting to be read.
    pub fn tcp_recv_queue(&self, h: TcpHandle) -> Result<usize> {
        let i = self.stream(h)?;
        Ok(self.sockets.get::<tcp::Socket>(self.handle(i)).recv_queue())
    }

    /// Bytes written but not yet acknowledged by the peer.
    pub fn tcp_send_queue(&self, h: TcpHandle) -> Result<usize> {
        let i = self.stream(h)?;
        Ok(self.sockets.get::<tcp::Socket>(self.handle(i)).send_queue())
    }

    /// Closes the sending half (sends FIN once queued data is out); reading goes on.
    ///
    /// Before the handshake has finished the FIN waits for it, and reading goes on once it
    /// has. Writing after a shutdown fails with [`Error::NotConnected`].
    ///
    /// # Example
    ///
    /// ```
    /// use smoltcp::phy::{Loopback, Medium};
    /// use smoltcp::time::Instant;
    /// use ustack::{Config, Error, Stack};
    ///
    /// let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO)?;
    /// let conn = stack.connect("10.0.0.1:7".parse().unwrap())?;
    /// stack.tcp_shutdown_write(conn)?; // still connecting: the FIN waits for the handshake
    /// assert_eq!(stack.tcp_write(conn, b"late"), Err(Error::NotConnected));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn tcp_shutdown_write(&mut self, h: TcpHandle) -> Result<()> {
        let i = self.stream(h)?;
        self.shutdown(i, false);
        Ok(())
    }

    /// Closes gracefully: queued data is sent, then FIN. The handle is invalid afterwards; the
    /// stack finishes the close and reuses the socket. A connect still waiting for its
    /// SYN-ACK is dropped at once; in SYN-RECEIVED the FIN waits for the handshake.
    pub fn tcp_close(&mut self, h: TcpHandle) -> Result<()> {
        let i = self.stream(h)?;
        self.shutdown(i, true);
        self.slots[i].user_closed = true;
        self.touch(i);
        Ok(())
    }

    /// Queues the FIN, or, before the handshake has finished, remembers it for
    /// [`on_stream`](Self::on_stream) to queue once the handshake is done. smoltcp 0.14 would
    /// otherwise drop a connection still in SYN-SENT outright (reported later as a
    /// timeout) and, from SYN-RECEIVED, send a FIN that reuses the SYN's
    /// sequence number, so the peer's ACK of the SYN passes for the ACK of the FIN; the
    /// `tcp_conversation` fuzzer found both.
    ///
    /// A connection still in SYN-SENT whose handle is given up (`releasing`) is dropped at
    /// once instead: nobody waits for it, and nothing can have been written yet.
    fn shutdown(&mut self, i: usize, releasing: bool) {
        let sock = self.sockets.get_mut::<tcp::Socket>(self.handle(i));
        let defer = match sock.state() {
            State::SynReceived => true,
            State::SynSent => !releasing,
            _ => false,
        };
        if defer {
            self.slots[i].shut_pending = true;
        } else {
            sock.close();
        }
    }

    /// Resets the connection at once (RST). The handle is invalid afterwards.
    pub fn tcp_abort(&mut self, h: TcpHandle) -> Result<()> {
        let i = self.stream(h)?;
        self.sockets.get_mut::<tcp::Socket>(self.handle(i)).abort();
        self.slots[i].user_closed = true;
        self.touch(i);
        Ok(())
    }

    /// The smoltcp state of the connection.
    pub fn tcp_state(&self, h: TcpHandle) -> Result<State> {
        let i = self.stream(h)?;
        Ok(self.sockets.get::<tcp::Socket>(self.handle(i)).state())
    }

    /// The peer's address.
    pub fn tcp_peer_addr(&self, h: TcpHandle) -> Result<IpEndpoint> {
        let i = self.stream(h)?;
        self.slots[i].remote.ok_or(Error::NotConnected)
    }

    /// The local address.
    pub fn tcp_local_addr(&self, h: TcpHandle) -> Result<IpEndpoint> {
        let i = self.stream(h)?;
        let sock = self.sockets.get::<tcp::Socket>(self.handle(i));
        sock.local_endpoint().ok_or(Error::NotConnected)
    }

    /// Disables (`true`) or enables Nagle's algorithm.
    pub fn tcp_set_nodelay(&mut self, h: TcpHandle, nodelay: bool) -> Result<()> {
        let i = self.stream(h)?;
        self.sockets
            .get_mut::<tcp::Socket>(self.handle(i))
            .set_nagle_enabled(!nodelay);
        Ok(())
    }

    /// Sets the keep-alive interval (`None` disables it).
    pub fn tcp_set_keepalive(
        &mut self,
        h: TcpHandle,
        interval: Option<smoltcp::time::Duration>,
    ) -> Result<()> {
        let i = self.stream(h)?;
        self.sockets
            .get_mut::<tcp::Socket>(self.handle(i))
            .set_keep_alive(interval);
        Ok(())
    }

    /// Sets the timeout after which an unanswered connection is aborted.
    pub fn tcp_set_timeout(
        &mut self,
        h: TcpHandle,
        timeout: Option<smoltcp::time::Duration>,
    ) -> Result<()> {
        let i = self.stream(h)?;
        self.sockets
            .get_mut::<tcp::Socket>(self.handle(i))
            .set_timeout(timeout);
        Ok(())
    }

    /// Adds a caller-owned TCP socket to the pool (how `no_std` builds get sockets).
    pub fn add_tcp_socket(&mut self, rx: &'a mut [u8], tx: &'a mut [u8]) -> Result<()> {
        let i = self.take_empty()?;
        let h = self.sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(rx),
            tcp::SocketBuffer::new(tx),
        ));
        self.slots[i].handle = Some(h);
        self.slots[i].reset(crate::slot::Role::FreeTcp);
        self.free_tcp.push(&mut self.slots, i);
        Ok(())
    }

    pub(crate) fn stream(&self, h: TcpHandle) -> Result<usize> {
        self.live_slot(h.slot, h.gen, Role::Stream)
    }

    fn listener_index(&self, l: TcpListener) -> Result<usize> {
        let li = usize::from(l.idx);
        match self.listeners.get(li) {
            Some(Some(x)) if x.gen == l.gen => Ok(li),
            Some(_) => Err(Error::Closed),
            None => Err(Error::InvalidInput(
                "listener does not belong to this stack",
            )),
        }
    }

    pub(crate) fn why_not_open(&self, i: usize) -> Error {
        if let Some(e) = self.slots[i].error {
            return e;
        }
        match self.socket_state(i) {
            Some(State::SynSent | State::SynReceived) => Error::WouldBlock,
            _ => Error::NotConnected,
        }
    }

    fn routable(&self, addr: IpAddress) -> bool {
        match addr {
            IpAddress::Ipv4(a) => {
                self.config.ipv4.contains_addr(&a) || self.config.gateway.is_some()
            }
            #[cfg(feature = "ipv6")]
            IpAddress::Ipv6(a) => self.config.ipv6.is_some_and(|c| c.contains_addr(&a)),
        }
    }

    pub(crate) fn port_in_use(&self, port: u16) -> bool {
        self.listeners.iter().flatten().any(|l| l.port == port)
            || self
                .slots
                .iter()
                .any(|s| matches!(s.role, Role::Stream | Role::Member(_)) && s.local_port == port)
    }

    /// A closed TCP socket configured with `opts`, from the pool or (with a heap) new.
    pub(crate) fn alloc_tcp(&mut self, opts: &TcpOptions) -> Result<usize> {
        let i = loop {
            let Some(i) = self.free_tcp.pop(&mut self.slots) else {
                break None;
            };
            let s = self.sockets.get::<tcp::Socket>(self.handle(i));
            let fits = !self.owns_heap()
                || (s.recv_capacity() == opts.rx_buffer && s.send_capacity() == opts.tx_buffer);
            if fits {
                break Some(i);
            }
            // Pooled with other sizes: let the heap reclaim it.
            let h = self.handle(i);
            self.sockets.remove(h);
            self.slots[i].handle = None;
            self.slots[i].reset(Role::Empty);
            self.empty.push(&mut self.slots, i);
        };
        let i = match i {
            Some(i) => i,
            None => self.new_tcp(opts)?,
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(self.handle(i));
        sock.set_nagle_enabled(!opts.nodelay);
        sock.set_keep_alive(opts.keepalive);
        sock.set_timeout(opts.timeout);
        self.slots[i].reset(Role::Stream);
        Ok(i)
    }

    #[cfg(feature = "alloc")]
    fn new_tcp(&mut self, opts: &TcpOptions) -> Result<usize> {
        use alloc::vec;
        if !self.owns_heap() {
            return Err(Error::NoBufferSpace);
        }
        if opts.rx_buffer == 0 || opts.tx_buffer == 0 {
            return Err(Error::InvalidInput("TCP buffers must not be empty"));
        }
        let i = self.take_empty()?;
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; opts.rx_buffer]),
            tcp::SocketBuffer::new(vec![0u8; opts.tx_buffer]),
        );
        self.slots[i].handle = Some(self.sockets.add(sock));
        Ok(i)
    }

    #[cfg(not(feature = "alloc"))]
    fn new_tcp(&mut self, _opts: &TcpOptions) -> Result<usize> {
        Err(Error::NoBufferSpace)
    }

    /// Arms listener `li` up to its backlog.
    pub(crate) fn rearm(&mut self, li: usize) {
        loop {
            let Some(l) = self.listeners[li].as_ref() else {
                return;
            };
            if l.members.len() >= usize::from(l.backlog) {
                return;
            }
            let (port, opts) = (l.port, l.opts);
            let Ok(i) = self.alloc_tcp(&opts) else { return };
            let h = self.handle(i);
            if self.sockets.get_mut::<tcp::Socket>(h).listen(port).is_err() {
                self.recycle(i);
                return;
            }
            self.slots[i].role = Role::Member(li as u8);
            self.slots[i].local_port = port;
            self.slots[i].prev = State::Listen;
            if let Some(l) = self.listeners[li].as_mut() {
                let _ = l.members.push(i as u16);
            }
            self.register_wakers(i);
        }
    }

    pub(crate) fn rearm_all(&mut self) {
        for li in 0..self.listeners.len() {
            self.rearm(li);
        }
    }

    /// A listener member changed state.
    pub(crate) fn on_member(&mut self, i: usize, li: usize) {
        let Some(state) = self.socket_state(i) else {
            return;
        };
        match state {
            State::Listen | State::SynReceived => {}
            State::Closed => {
                // The handshake failed; this member goes back to listening.
                let port = self.slots[i].local_port;
                self.slots[i].order = 0;
                let h = self.handle(i);
                let _ = self.sockets.get_mut::<tcp::Socket>(h).listen(port);
            }
            _ => {
                if self.slots[i].order == 0 {
                    self.order = self.order.wrapping_add(1).max(1);
                    self.slots[i].order = self.order;
                    if let Some(l) = self.listeners[li].as_mut() {
                        l.notified = true;
                    }
                }
            }
        }
        self.slots[i].prev = state;
        self.register_wakers(i);
    }

    /// A connection the user holds (or closed) changed state.
    pub(crate) fn on_stream(&mut self, i: usize, bits: u8) {
        let h = self.handle(i);
        if self.slots[i].shut_pending {
            let sock = self.sockets.get_mut::<tcp::Socket>(h);
            if !matches!(sock.state(), State::SynSent | State::SynReceived) {
                // The handshake is over (or failed, where close does nothing): the FIN
                // can now take the sequence number after the SYN.
                self.slots[i].shut_pending = false;
                sock.close();
            }
        }
        let sock = self.sockets.get::<tcp::Socket>(h);
        let state = sock.state();
        let prev = self.slots[i].prev;
        if self.slots[i].user_closed {
            self.slots[i].prev = state;
            match state {
                State::Closed => return self.recycle(i),
                State::TimeWait if self.owns_heap() => return self.recycle(i),
                _ => return self.register_wakers(i),
            }
        }
        let mut ready = Ready::empty();
        let eof = !sock.may_recv()
            && !matches!(state, State::SynSent | State::SynReceived | State::Listen);
        if bits & RECV != 0 && (sock.can_recv() || eof) {
            ready |= Ready::READABLE;
        }
        if bits & SEND != 0 && sock.can_send() {
            ready |= Ready::WRITABLE;
        }
        let opened = |s: State| matches!(s, State::SynSent | State::SynReceived);
        if opened(prev) && !opened(state) && state != State::Closed {
            ready |= Ready::CONNECTED | Ready::WRITABLE;
        }
        if state == State::Closed && prev != State::Closed {
            ready |= Ready::CLOSED | Ready::READABLE | Ready::WRITABLE;
            let graceful = matches!(
                prev,
                State::FinWait1
                    | State::FinWait2
                    | State::Closing
                    | State::TimeWait
                    | State::LastAck
            );
            if !graceful {
                let s = &self.slots[i];
                let reset = s
                    .remote
                    .is_some_and(|r| self.ingress.take_reset(s.local_port, r));
                let err = match (reset, prev) {
                    (true, State::SynSent) => Error::ConnectionRefused,
                    (true, _) => Error::ConnectionReset,
                    (false, _) => Error::TimedOut,
                };
                self.slots[i].error = Some(err);
                ready |= Ready::ERROR;
                #[cfg(feature = "log")]
                log::debug!("connection {i} to {:?} ended: {err}", self.slots[i].remote);
            }
        }
        self.slots[i].prev = state;
        if !ready.is_empty() {
            self.push_event(i, ready);
        }
        self.register_wakers(i);
    }
}
