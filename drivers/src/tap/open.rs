//! Opening `/dev/net/tun` as a TAP interface, and the ioctls around it.
//!
//! The device opens `/dev/net/tun` itself instead of going through the `tun-tap` crate:
//! `tun-tap` only knows `IFF_TAP` and `IFF_NO_PI`, and cannot set `IFF_VNET_HDR` or call
//! `TUNSETVNETHDRSZ`/`TUNSETOFFLOAD`, which the offload path needs. One open path for both
//! modes keeps the plain mode on the same, tested code.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::vnet;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub(super) const MAX_NAME: usize = 15;
/// `SIOCGIFMTU` from `<linux/sockios.h>`; the libc crate has no Linux binding.
const SIOCGIFMTU: u64 = 0x8921;

/// Opens `/dev/net/tun` and attaches it to the TAP interface `name` (created if missing; an
/// empty name lets the kernel choose). With `vnet_hdr`, every frame carries a
/// `virtio_net_hdr` and the kernel may hand over GSO super-segments and partial checksums.
/// Returns the descriptor (non-blocking) and the name the kernel used.
pub(super) fn open_tap(name: &str, vnet_hdr: bool) -> io::Result<(File, String)> {
    validate_name(name)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| open_error(name, e))?;
    // SAFETY: an all-zero ifreq is a valid value (name and union are POD).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    // All three flags fit in the 16-bit field.
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the valid, initialised ifreq, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(open_error(name, io::Error::last_os_error()));
    }
    let actual: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let actual = String::from_utf8_lossy(&actual).into_owned();
    if vnet_hdr {
        set_offload(&file).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot turn on checksum and TSO offload for TAP `{actual}`: {e}; this kernel's tun driver lacks TUNSETVNETHDRSZ/TUNSETOFFLOAD, build the device without `offload(true)`"),
            )
        })?;
    }
    set_non_blocking(file.as_raw_fd()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot make TAP `{actual}` non-blocking: {e}"),
        )
    })?;
    Ok((file, actual))
}

/// Sets the 10-byte `virtio_net_hdr` and lets the kernel hand over partial checksums and
/// TCP super-segments (IPv4 and IPv6). UDP segmentation offload stays off: ustack would have
/// to split such datagrams itself.
fn set_offload(file: &File) -> io::Result<()> {
    let size = vnet::LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes the feature bits by value; no memory is passed.
    if unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            features as libc::c_ulong,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn validate_name(name: &str) -> io::Result<()> {
    if name.len() > MAX_NAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{name}` is {} bytes; Linux allows at most {MAX_NAME}, use a shorter name", name.len()),
        ));
    }
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name contains a NUL byte; remove it",
        ));
    }
    Ok(())
}

pub(super) fn open_error(name: &str, err: io::Error) -> io::Error {
    let msg = match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "cannot open /dev/net/tun for TAP `{name}`: permission denied; run as root or grant CAP_NET_ADMIN"
        ),
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => format!(
            "cannot open /dev/net/tun for TAP `{name}`: {err}; load the tun module (`modprobe tun`) or create the node (`mknod /dev/net/tun c 10 200`)"
        ),
        Some(libc::EBUSY) => format!(
            "TAP `{name}` is already attached to another open descriptor (in this or another process); close it or choose another name"
        ),
        Some(libc::EINVAL) => format!(
            "cannot create TAP `{name}`: {err}; the name is invalid or an interface of another type already uses it, choose another name"
        ),
        _ => format!("cannot create TAP `{name}`: {err}"),
    };
    io::Error::new(err.kind(), msg)
}

fn set_non_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor we own; no pointers involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads an interface's MTU with `SIOCGIFMTU` in the caller's network namespace.
pub(super) fn read_mtu(name: &str) -> io::Result<usize> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = cname.as_bytes_with_nul();
    // SAFETY: an all-zero ifreq is a valid value (name and union are POD).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: socket/ioctl/close with a valid, initialised ifreq that outlives
    // the call; the socket is closed on every path.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let rc = libc::ioctl(sock, SIOCGIFMTU as _, &mut req);
        let err = io::Error::last_os_error();
        libc::close(sock);
        if rc < 0 {
            return Err(err);
        }
        usize::try_from(req.ifr_ifru.ifru_mtu)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_long_names_without_touching_the_kernel() {
        let err = open_tap("a-name-that-is-too-long", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("at most 15"), "{err}");
    }

    #[test]
    fn rejects_nul_in_name() {
        let err = open_tap("ta\0p", true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn permission_error_says_what_to_do() {
        let err = open_error("tap0", io::Error::from_raw_os_error(libc::EPERM));
        assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn mtu_of_loopback_is_readable() {
        assert!(read_mtu("lo").unwrap() >= 1500);
        assert!(read_mtu("no-such-if0").is_err());
    }
}
