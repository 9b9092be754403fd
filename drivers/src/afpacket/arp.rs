//! ARP for fanout groups.
//!
//! The stacks of a fanout group share an IP and a MAC but no state, and the kernel hands
//! each ARP frame to only one of them, so a stack could wait forever for a reply that went
//! to its sibling. Instead, every member filters ARP out of its share (a four-instruction
//! BPF program) and reads all ARP frames from a second socket of its own, outside the
//! group. Each stack then learns every neighbour, and a request is answered by each member
//! with the same reply. An epoll descriptor covering both sockets is what the runtime
//! waits on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::stats::Counters;
use super::sys::{self, PACKET_OUTGOING};

const ETH_P_ARP: u16 = 0x0806;

/// `ldh [12]; jeq #ETH_P_ARP, drop, keep`: drops ARP frames, keeps the rest whole.
const DROP_ARP: [libc::sock_filter; 4] = [
    libc::sock_filter {
        code: 0x28,
        jt: 0,
        jf: 0,
        k: 12,
    },
    libc::sock_filter {
        code: 0x15,
        jt: 0,
        jf: 1,
        k: ETH_P_ARP as u32,
    },
    libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    },
    libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x40000,
    },
];

pub(super) struct ArpSide {
    sock: OwnedFd,
    epoll: OwnedFd,
    buf: Vec<u8>,
    /// Whether to look at the ARP socket on the next receive: once per poll, and again
    /// after each frame it gave.
    due: bool,
}

impl ArpSide {
    /// Filters ARP out of the fanout socket `main` and opens the group-wide ARP socket.
    pub(super) fn open(main: RawFd, ifindex: i32, frame: usize) -> io::Result<ArpSide> {
        let prog = libc::sock_fprog {
            len: DROP_ARP.len() as u16,
            filter: DROP_ARP.as_ptr().cast_mut(),
        };
        sys::set_opt(
            main,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog,
            "SO_ATTACH_FILTER",
        )?;
        let sock = sys::packet_socket()?;
        let _ = sys::set_opt(
            sock.as_raw_fd(),
            sys::SOL_PACKET,
            sys::PACKET_IGNORE_OUTGOING,
            &1i32,
            "PACKET_IGNORE_OUTGOING",
        );
        sys::bind(sock.as_raw_fd(), ifindex, ETH_P_ARP)?;
        // SAFETY: plain epoll_create1; the descriptor is owned at once.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        for fd in [main, sock.as_raw_fd()] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd as u64,
            };
            // SAFETY: `ev` is valid for the call; both descriptors are open.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ArpSide {
            sock,
            epoll,
            buf: vec![0; frame],
            due: true,
        })
    }

    /// Reads one ARP frame if one is due and waiting; its length.
    pub(super) fn fetch(&mut self, c: &mut Counters) -> Option<usize> {
        if !std::mem::replace(&mut self.due, false) {
            return None;
        }
        loop {
            c.rx_syscalls += 1;
            match sys::recv_one(self.sock.as_raw_fd(), &mut self.buf) {
                Ok(Some((_, PACKET_OUTGOING))) => c.rx_outgoing += 1,
                Ok(Some((len, _))) if len > self.buf.len() => c.rx_truncated += 1,
                Ok(Some((len, _))) => {
                    self.due = true;
                    return Some(len);
                }
                Ok(None) => return None,
                Err(e) => {
                    c.rx_errors += 1;
                    c.warn("(arp)", "recvfrom", &e);
                    return None;
                }
            }
        }
    }

    /// The frame [`fetch`](Self::fetch) read.
    pub(super) fn frame(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    /// The stack's poll saw the last frame: look at the ARP socket again next poll.
    pub(super) fn poll_ended(&mut self) {
        self.due = true;
    }

    pub(super) fn wait_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}
