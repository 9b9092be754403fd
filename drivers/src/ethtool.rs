//! Turning NIC offloads on and off with the `SIOCETHTOOL` ioctl, so no `ethtool` binary is
//! needed.
//!
//! A kernel peer on a veth link normally hands over TCP super-frames of up to 64 KiB (TSO/GSO)
//! and frames whose checksum is left for hardware that does not exist (TX checksum offload).
//! A raw-socket stack like ustack's [`AfPacket`](crate::AfPacket) sees those frames as they
//! are, so on the *peer's* end of the link these offloads are turned off.

use std::ffi::CString;
use std::io;

/// `SIOCETHTOOL` from `<linux/sockios.h>`.
const SIOCETHTOOL: u64 = 0x8946;
// Legacy per-feature commands from `<linux/ethtool.h>`: a get and a set each.
const ETHTOOL_GRXCSUM: u32 = 0x14;
const ETHTOOL_SRXCSUM: u32 = 0x15;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Offload settings of one interface, as `ethtool -k` shows them.
///
/// # Example
///
/// ```no_run
/// let now = ustack_drivers::ethtool::offloads("veth0")?;
/// println!("tso {} gso {} tx-csum {}", now.tso, now.gso, now.tx_csum);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// TX checksum offload (`tx`).
    pub tx_csum: bool,
    /// RX checksum offload (`rx`).
    pub rx_csum: bool,
    /// TCP segmentation offload (`tso`).
    pub tso: bool,
    /// Generic segmentation offload (`gso`).
    pub gso: bool,
    /// Generic receive offload (`gro`).
    pub gro: bool,
}

/// Reads the offload settings of interface `ifname` in the calling thread's namespace.
///
/// # Errors
///
/// A missing interface, or a kernel that refuses the ioctl.
///
/// # Example
///
/// ```no_run
/// assert!(!ustack_drivers::ethtool::offloads("lo")?.gro || true);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn offloads(ifname: &str) -> io::Result<Offloads> {
    let sock = Socket::new()?;
    Ok(Offloads {
        tx_csum: sock.get(ifname, ETHTOOL_GTXCSUM)?,
        rx_csum: sock.get(ifname, ETHTOOL_GRXCSUM)?,
        tso: sock.get(ifname, ETHTOOL_GTSO)?,
        gso: sock.get(ifname, ETHTOOL_GGSO)?,
        gro: sock.get(ifname, ETHTOOL_GGRO)?,
    })
}

/// Turns off TSO, GSO, GRO and TX and RX checksum offload on `ifname`, in the calling
/// thread's network namespace; the equivalent of
/// `ethtool -K IFNAME tso off gso off gro off tx off rx off`. A feature the driver does not
/// have is skipped.
///
/// # Errors
///
/// A missing interface, missing privileges (needs `CAP_NET_ADMIN`), or a feature that stays
/// on after the call.
///
/// # Example
///
/// ```no_run
/// // Inside the kernel peer's namespace, on its end of the veth:
/// ustack_drivers::ethtool::disable_offloads("veth-peer")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn disable_offloads(ifname: &str) -> io::Result<()> {
    let sock = Socket::new()?;
    // TX checksum first: TSO depends on it, and the kernel drops TSO along with it.
    for cmd in [
        ETHTOOL_STXCSUM,
        ETHTOOL_STSO,
        ETHTOOL_SGSO,
        ETHTOOL_SGRO,
        ETHTOOL_SRXCSUM,
    ] {
        match sock.set(ifname, cmd, false) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            other => other?,
        }
    }
    let now = offloads(ifname)?;
    if now.tx_csum || now.tso || now.gso {
        return Err(io::Error::other(format!(
            "offloads on {ifname} are still on after turning them off ({now:?}); check `ethtool -k {ifname}`"
        )));
    }
    log::debug!("ethtool {ifname}: offloads off");
    Ok(())
}

/// A datagram socket to hang ioctls on, closed on drop.
struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn new() -> io::Result<Socket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Socket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl(&self, ifname: &str, value: &mut EthtoolValue) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let name = CString::new(ifname).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL")
        })?;
        // SAFETY: an all-zero ifreq is valid (name and union are plain data).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = name.as_bytes_with_nul();
        if bytes.len() > req.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name `{ifname}` is longer than 15 bytes"),
            ));
        }
        for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (value as *mut EthtoolValue).cast();
        // SAFETY: `req` and the `value` it points to outlive the call.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), SIOCETHTOOL as _, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::ENODEV) => "; no such interface in this network namespace",
                Some(libc::EPERM) => "; run as root or grant CAP_NET_ADMIN",
                _ => "",
            };
            return Err(io::Error::new(
                e.kind(),
                format!("ethtool ioctl {:#x} on {ifname}: {e}{hint}", value.cmd),
            ));
        }
        Ok(())
    }

    fn get(&self, ifname: &str, cmd: u32) -> io::Result<bool> {
        let mut v = EthtoolValue { cmd, data: 0 };
        self.ioctl(ifname, &mut v)?;
        Ok(v.data != 0)
    }

    fn set(&self, ifname: &str, cmd: u32, on: bool) -> io::Result<()> {
        let mut v = EthtoolValue {
            cmd,
            data: u32::from(on),
        };
        self.ioctl(ifname, &mut v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interface_is_a_clear_error() {
        let err = offloads("no-such-if0").unwrap_err();
        assert!(err.to_string().contains("no-such-if0"), "{err}");
    }

    #[test]
    fn long_name_is_rejected() {
        let err = offloads("a-name-that-is-too-long").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
