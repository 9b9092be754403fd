//! Looking into a connection's queues without moving bytes through a caller buffer twice:
//! what the session layer decodes from and writes into.

use smoltcp::socket::tcp::{self, RecvError, State};

use crate::error::{Error, Result};
use crate::event::TcpHandle;
use crate::stack::Stack;

impl<'a, D: smoltcp::phy::Device> Stack<'a, D> {
    /// Copies queued bytes into `buf` without consuming them. Like [`tcp_read`]: `Ok(0)`
    /// means the peer closed and everything was read, [`Error::WouldBlock`] that nothing is
    /// queued yet.
    ///
    /// [`tcp_read`]: Self::tcp_read
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::Instant};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// let conn = stack.connect("10.0.0.1:7".parse().unwrap())?;
    /// let mut buf = [0u8; 16];
    /// assert_eq!(stack.tcp_peek(conn, &mut buf), Err(Error::WouldBlock));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn tcp_peek(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize> {
        let i = self.stream(h)?;
        let sock = self.sockets.get_mut::<tcp::Socket>(self.handle(i));
        match sock.peek_slice(buf) {
            Ok(0) if !buf.is_empty() => match self.tcp_peer_closed(h)? {
                true => Ok(0),
                false => Err(Error::WouldBlock),
            },
            Ok(n) => Ok(n),
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::InvalidState) => Err(self.why_not_open(i)),
        }
    }

    /// Drops up to `n` queued bytes (after a [`tcp_peek`](Self::tcp_peek)); returns how many.
    pub fn tcp_discard(&mut self, h: TcpHandle, n: usize) -> Result<usize> {
        let i = self.stream(h)?;
        let sock = self.sockets.get_mut::<tcp::Socket>(self.handle(i));
        let mut done = 0;
        // The ring may wrap, so one dequeue can stop short of `n`.
        while done < n {
            match sock.recv(|b| {
                let k = b.len().min(n - done);
                (k, k)
            }) {
                Ok(0) | Err(_) => break,
                Ok(k) => done += k,
            }
        }
        Ok(done)
    }

    /// Free bytes in the transmit buffer: how much a write can take now.
    pub fn tcp_send_room(&self, h: TcpHandle) -> Result<usize> {
        let i = self.stream(h)?;
        let sock = self.sockets.get::<tcp::Socket>(self.handle(i));
        Ok(sock.send_capacity() - sock.send_queue())
    }

    /// Size of the receive buffer: the longest run of bytes [`tcp_peek`](Self::tcp_peek) can
    /// ever see at once.
    pub fn tcp_recv_capacity(&self, h: TcpHandle) -> Result<usize> {
        let i = self.stream(h)?;
        Ok(self
            .sockets
            .get::<tcp::Socket>(self.handle(i))
            .recv_capacity())
    }
}

impl<'a, D: smoltcp::phy::Device> Stack<'a, D> {
    /// Whether the peer has finished sending (FIN received): once the queued bytes are read,
    /// no more come. An error if the connection failed.
    pub fn tcp_peer_closed(&self, h: TcpHandle) -> Result<bool> {
        let i = self.stream(h)?;
        if let Some(e) = self.slots[i].error {
            return Err(e);
        }
        // Not `!may_recv()`: smoltcp keeps that true in CLOSE-WAIT while bytes are queued.
        let state = self.sockets.get::<tcp::Socket>(self.handle(i)).state();
        Ok(matches!(
            state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
        ))
    }
}
