//! The system calls behind [`AfPacket`](super::AfPacket): socket setup, interface queries,
//! batched send and receive. Every `unsafe` block in the driver's I/O is here or in `ring`.
//!
//! Constants come from `<linux/if_packet.h>` and `<linux/if_ether.h>`, named as there.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(super) const ETH_P_ALL: u16 = 0x0003;
pub(super) const SOL_PACKET: libc::c_int = 263;
pub(super) const PACKET_RX_RING: libc::c_int = 5;
pub(super) const PACKET_STATISTICS: libc::c_int = 6;
pub(super) const PACKET_VERSION: libc::c_int = 10;
pub(super) const PACKET_FANOUT: libc::c_int = 18;
pub(super) const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub(super) const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
pub(super) const PACKET_FANOUT_HASH: u32 = 0;
pub(super) const TPACKET_V3: libc::c_int = 2;
/// `sll_pkttype` of a frame this host sent (seen by taps on the interface).
pub(super) const PACKET_OUTGOING: u8 = 4;

/// Opens a non-blocking `AF_PACKET`/`SOCK_RAW` socket that receives nothing until bound.
pub(super) fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: no frames are queued before `bind` picks the interface and ETH_P_ALL.
    // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let hint = if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            "; raw sockets need root or CAP_NET_RAW"
        } else {
            ""
        };
        return Err(io::Error::new(
            e.kind(),
            format!("cannot open an AF_PACKET socket: {e}{hint}"),
        ));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a plain-data value; the error names the option.
pub(super) fn set_opt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt {what}: {e}")));
    }
    Ok(())
}

/// Reads a packet socket's drop statistics (`tp_packets`, `tp_drops`, `tp_freeze_q_cnt`).
/// The kernel resets them on every read. `tp_freeze_q_cnt` exists only with TPACKET_V3.
pub(super) fn take_stats(fd: RawFd) -> io::Result<(u32, u32, u32)> {
    let mut v = [0u32; 3];
    let mut len = std::mem::size_of_val(&v) as libc::socklen_t;
    // SAFETY: `v` is writable for `len` bytes, and the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_STATISTICS,
            v.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((v[0], v[1], v[2]))
}

/// Binds the socket to interface `ifindex`, receiving `protocol` (an ethertype, or
/// [`ETH_P_ALL`]).
pub(super) fn bind(fd: RawFd, ifindex: i32, protocol: u16) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("bind: {e}")));
    }
    Ok(())
}

/// Interface index, MAC and MTU of `name` in the calling thread's network namespace.
pub(super) fn interface(name: &str) -> io::Result<(i32, [u8; 6], usize)> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the call.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface `{name}` in this network namespace; check `ip link`, and open the device from a thread inside the interface's namespace"),
        ));
    }
    let sock = packet_socket()?;
    let mut req = ifreq(&cname)?;
    // SAFETY: `req` is a valid ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, &b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = b as u8;
    }
    let mut req = ifreq(&cname)?;
    // SAFETY: as above; SIOCGIFMTU (0x8921) fills the mtu member.
    if unsafe { libc::ioctl(sock.as_raw_fd(), 0x8921 as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    let mtu = usize::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((ifindex as i32, mac, mtu))
}

fn ifreq(name: &CString) -> io::Result<libc::ifreq> {
    // SAFETY: an all-zero ifreq is valid (name and union are plain data).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name longer than 15 bytes",
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// One `recvfrom`: the frame's length (as on the wire, possibly more than `buf`) and its
/// packet type, or `None` when nothing is queued.
pub(super) fn recv_one(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, u8)>> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    loop {
        // SAFETY: `buf` and `addr` are writable for the lengths passed.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut alen,
            )
        };
        if n >= 0 {
            return Ok(Some((n as usize, addr.sll_pkttype)));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// One `send` of a whole frame.
pub(super) fn send_one(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `frame` is readable for its length.
        let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Scatter-gather headers for `recvmmsg`/`sendmmsg` over `n` equal slots of one buffer.
///
/// The headers hold raw pointers into the caller's buffer, so they are rebuilt right
/// before every call and never used after it.
pub(super) struct MsgVec {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_ll>,
}

// SAFETY: the raw pointers inside are only set and used within one call on the owning
// thread (see `prepare`); between calls they are dead values.
unsafe impl Send for MsgVec {}

impl MsgVec {
    pub(super) fn new(n: usize) -> MsgVec {
        // SAFETY: all-zero mmsghdr, iovec and sockaddr_ll are valid (null pointers, zero
        // lengths).
        let zero_h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        MsgVec {
            hdrs: vec![zero_h; n],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                n
            ],
            addrs: vec![zero_a; n],
        }
    }

    /// Frames one call can move.
    pub(super) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Points header `i` at `buf[i * slot..][..lens[i]]` (receive: the whole slot).
    fn prepare(&mut self, buf: &mut [u8], slot: usize, lens: Option<&[usize]>, n: usize) {
        for i in 0..n {
            let len = lens.map_or(slot, |l| l[i]);
            self.iovs[i] = libc::iovec {
                iov_base: buf[i * slot..].as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_flags = 0;
            if lens.is_none() {
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_ll).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as _;
            } else {
                h.msg_hdr.msg_name = std::ptr::null_mut();
                h.msg_hdr.msg_namelen = 0;
            }
        }
    }

    /// Receives up to `buf.len() / slot` frames in one `recvmmsg`. Returns how many came;
    /// `info(i)` then gives frame `i`'s length, packet type and whether it was cut.
    pub(super) fn recv(&mut self, fd: RawFd, buf: &mut [u8], slot: usize) -> io::Result<usize> {
        let n = (buf.len() / slot).min(self.hdrs.len());
        self.prepare(buf, slot, None, n);
        loop {
            // SAFETY: every header points at a distinct, writable slot of `buf` and at its
            // own sockaddr_ll, all alive for the call; no timeout pointer.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got >= 0 {
                return Ok(got as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Length, packet type and truncation of frame `i` of the last [`recv`](Self::recv).
    pub(super) fn info(&self, i: usize) -> (usize, u8, bool) {
        let h = &self.hdrs[i];
        let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (h.msg_len as usize, self.addrs[i].sll_pkttype, cut)
    }

    /// Sends frames `0..lens.len()` of `buf` (slot `i` holding `lens[i]` bytes) in one
    /// `sendmmsg`; returns how many the kernel took, in order.
    pub(super) fn send(
        &mut self,
        fd: RawFd,
        buf: &mut [u8],
        slot: usize,
        lens: &[usize],
    ) -> io::Result<usize> {
        let n = lens.len().min(self.hdrs.len());
        self.prepare(buf, slot, Some(lens), n);
        loop {
            // SAFETY: every header points at a distinct, readable slot of `buf` alive for
            // the call; the socket is bound, so no address is needed.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
