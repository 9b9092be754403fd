//! Neighbour discovery (ARP, and IPv6 neighbour solicitations and advertisements) for
//! fanout groups.
//!
//! The stacks of a fanout group share an IP and a MAC but no state, and the kernel hands
//! each such frame to only one of them, so a stack could wait forever for a reply that went
//! to its sibling. Instead, every member filters neighbour frames out of its share (a small
//! BPF program) and reads all of them from a second socket of its own, outside the group.
//! Each stack then learns every neighbour, and a request is answered by each member with
//! the same reply. An epoll descriptor covering both sockets is what the runtime waits on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::stats::Counters;
use super::sys::{self, PACKET_OUTGOING};

const ETH_P_ARP: u32 = 0x0806;
const ETH_P_IPV6: u32 = 0x86dd;
/// IPv6 next header of ICMPv6, at byte 20 of an Ethernet frame.
const IPPROTO_ICMPV6: u32 = 58;
/// ICMPv6 neighbour solicitation and advertisement, whose type is at byte 54 when no
/// extension header comes first (as neighbour discovery requires).
const ND_SOLICIT: u32 = 135;
const ND_ADVERT: u32 = 136;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A classic BPF program that sorts neighbour frames (ARP, ICMPv6 NS/NA) from the rest:
/// it returns `neigh` for them and `other` for everything else (0 drops, 0x40000 keeps the
/// whole frame). Jumps count instructions from the next one.
const fn sort_neighbours(neigh: u32, other: u32) -> [libc::sock_filter; 10] {
    const LDH_ABS: u16 = 0x28;
    const LDB_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    [
        insn(LDH_ABS, 0, 0, 12),
        insn(JEQ_K, 7, 0, ETH_P_ARP),  // ARP: to `neigh`
        insn(JEQ_K, 0, 5, ETH_P_IPV6), // not IPv6: to `other`
        insn(LDB_ABS, 0, 0, 20),
        insn(JEQ_K, 0, 3, IPPROTO_ICMPV6), // not ICMPv6: to `other`
        insn(LDB_ABS, 0, 0, 54),
        insn(JEQ_K, 2, 0, ND_SOLICIT),
        insn(JEQ_K, 1, 0, ND_ADVERT),
        insn(RET_K, 0, 0, other),
        insn(RET_K, 0, 0, neigh),
    ]
}

/// On the fanout socket: everything but neighbour frames.
const DROP_NEIGHBOURS: [libc::sock_filter; 10] = sort_neighbours(0, 0x40000);
/// On the side socket: neighbour frames only.
const ONLY_NEIGHBOURS: [libc::sock_filter; 10] = sort_neighbours(0x40000, 0);

fn attach(fd: RawFd, prog: &[libc::sock_filter; 10]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    sys::set_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog,
        "SO_ATTACH_FILTER",
    )
}

pub(super) struct NeighSide {
    sock: OwnedFd,
    epoll: OwnedFd,
    buf: Vec<u8>,
    /// Whether to look at the side socket on the next receive: once per poll, and again
    /// after each frame it gave.
    due: bool,
}

impl NeighSide {
    /// Filters neighbour frames out of the fanout socket `main` and opens the side socket
    /// that gets all of them.
    pub(super) fn open(main: RawFd, ifindex: i32, frame: usize) -> io::Result<NeighSide> {
        attach(main, &DROP_NEIGHBOURS)?;
        let sock = sys::packet_socket()?;
        let _ = sys::set_opt(
            sock.as_raw_fd(),
            sys::SOL_PACKET,
            sys::PACKET_IGNORE_OUTGOING,
            &1i32,
            "PACKET_IGNORE_OUTGOING",
        );
        // Filter first, so no other frame is ever queued on this socket.
        attach(sock.as_raw_fd(), &ONLY_NEIGHBOURS)?;
        sys::bind(sock.as_raw_fd(), ifindex, sys::ETH_P_ALL)?;
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
        Ok(NeighSide {
            sock,
            epoll,
            buf: vec![0; frame],
            due: true,
        })
    }

    /// Reads one neighbour frame if one is due and waiting; its length.
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
                    c.warn("(neighbour socket)", "recvfrom", &e);
                    return None;
                }
            }
        }
    }

    /// The frame [`fetch`](Self::fetch) read.
    pub(super) fn frame(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    /// The stack's poll saw the last frame: look at the side socket again next poll.
    pub(super) fn poll_ended(&mut self) {
        self.due = true;
    }

    pub(super) fn wait_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}
