//! TCP and UDP echo as an event handler: the way an application sits on [`ustack::Stack`].

use std::collections::HashMap;

use log::{debug, warn};
use ustack::smoltcp::phy::Device;
use ustack::{Error, Event, Ready, Stack, TcpHandle, TcpListener, Token, UdpHandle};

/// Counters of the echo service.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EchoStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections that ended (cleanly or not).
    pub closed: u64,
    /// Bytes echoed over TCP.
    pub tcp_bytes: u64,
    /// Datagrams echoed over UDP.
    pub udp_datagrams: u64,
}

#[derive(Default)]
struct Conn {
    /// Bytes read but not yet written back, because the send buffer was full.
    pending: Vec<u8>,
    eof: bool,
}

/// Echoes every byte on a TCP listener and every datagram on a UDP socket.
///
/// ```no_run
/// # fn demo<D: ustack::smoltcp::phy::Device + std::os::fd::AsRawFd>(mut stack: ustack::Stack<'_, D>) -> std::io::Result<()> {
/// use std::sync::atomic::AtomicBool;
/// use ustack_examples::echo::Echo;
/// let mut echo = Echo::bind(&mut stack, 7, 64)?;
/// let stop = AtomicBool::new(false);
/// ustack::runtime::run(&mut stack, Default::default(), &stop, |s, ev| echo.on_event(s, ev))?;
/// # Ok(()) }
/// ```
pub struct Echo {
    listener: TcpListener,
    udp: Option<UdpHandle>,
    conns: HashMap<TcpHandle, Conn>,
    buf: Vec<u8>,
    stats: EchoStats,
}

impl Echo {
    /// Listens on TCP `port` with `backlog`, and binds UDP `port`.
    pub fn bind<D: Device>(
        stack: &mut Stack<'_, D>,
        port: u16,
        backlog: usize,
    ) -> Result<Self, Error> {
        let listener = stack.listen(port, backlog)?;
        let udp = Some(stack.udp_bind(port)?);
        Ok(Echo {
            listener,
            udp,
            conns: HashMap::new(),
            buf: vec![0; 64 * 1024],
            stats: EchoStats::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> EchoStats {
        self.stats
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Handles one event from [`Stack::next_event`].
    pub fn on_event<D: Device>(&mut self, stack: &mut Stack<'_, D>, ev: Event) {
        match ev.token {
            Token::Listener(l) if l == self.listener => self.accept_all(stack),
            Token::Tcp(h) if self.conns.contains_key(&h) => self.serve(stack, h, ev.ready),
            Token::Udp(u) if Some(u) == self.udp => self.udp_echo(stack, u),
            _ => {}
        }
    }

    fn accept_all<D: Device>(&mut self, stack: &mut Stack<'_, D>) {
        loop {
            match stack.accept(self.listener) {
                Ok(h) => {
                    self.stats.accepted += 1;
                    debug!("echo: accepted {:?}", stack.tcp_peer_addr(h));
                    self.conns.insert(h, Conn::default());
                    // The accept queues an event, but serving now saves a round trip.
                    self.serve(stack, h, Ready::READABLE | Ready::WRITABLE);
                }
                Err(Error::WouldBlock) => return,
                Err(e) => {
                    warn!("echo: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn serve<D: Device>(&mut self, stack: &mut Stack<'_, D>, h: TcpHandle, ready: Ready) {
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        let result = pump(stack, h, conn, &mut self.buf, &mut self.stats.tcp_bytes);
        let done = match result {
            Ok(()) => ready.contains(Ready::CLOSED) || (conn.eof && conn.pending.is_empty()),
            Err(e) => {
                debug!("echo: connection {h:?} ended: {e}");
                true
            }
        };
        if done {
            let _ = stack.tcp_close(h);
            self.conns.remove(&h);
            self.stats.closed += 1;
        }
    }

    fn udp_echo<D: Device>(&mut self, stack: &mut Stack<'_, D>, u: UdpHandle) {
        loop {
            match stack.udp_recv_from(u, &mut self.buf) {
                Ok((n, meta)) => match stack.udp_send_to(u, &self.buf[..n], meta.remote) {
                    Ok(()) => self.stats.udp_datagrams += 1,
                    // UDP may drop; a full queue drops this reply, visibly.
                    Err(e) => warn!("echo: UDP reply to {} dropped: {e}", meta.remote),
                },
                Err(Error::WouldBlock) => return,
                Err(e) => warn!("echo: UDP receive: {e}"),
            }
        }
    }
}

/// Moves bytes from the receive side to the send side until one of them blocks.
fn pump<D: Device>(
    stack: &mut Stack<'_, D>,
    h: TcpHandle,
    conn: &mut Conn,
    buf: &mut [u8],
    echoed: &mut u64,
) -> Result<(), Error> {
    loop {
        while !conn.pending.is_empty() {
            match stack.tcp_write(h, &conn.pending) {
                Ok(n) => {
                    conn.pending.drain(..n);
                    *echoed += n as u64;
                }
                Err(Error::WouldBlock) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if conn.eof {
            return Ok(());
        }
        match stack.tcp_read(h, buf) {
            Ok(0) => conn.eof = true,
            Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
            Err(Error::WouldBlock) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
