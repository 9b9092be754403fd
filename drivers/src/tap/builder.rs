//! [`TapBuilder`]: creating and configuring a TAP interface with iproute2.

use std::io;
use std::path::Path;

use super::{Owned, TapDevice};
use crate::iproute::ip;

/// Largest MTU a TAP interface takes: 65,535 bytes of frame minus the Ethernet header.
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::{tap::MAX_TAP_MTU, TapBuilder};
///
/// let tap = TapBuilder::new("ustack0").mtu(MAX_TAP_MTU).create()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub const MAX_TAP_MTU: usize = 65_521;
/// Smallest MTU the kernel allows on a TAP interface (IPv4's minimum).
const MIN_TAP_MTU: usize = 68;

/// Creates and configures a TAP interface; the resulting [`TapDevice`]
/// deletes it when dropped.
///
/// Steps, all with iproute2 (`ip`): create the TAP in the current network
/// namespace, optionally move it into `netns`, optionally turn off IPv6
/// address autoconfiguration, set the MTU, add every host address, bring the
/// link up, and bring the namespace's loopback up.
///
/// # Fast bulk TCP
///
/// Two options speed up bulk transfers, alone or together:
///
/// - [`offload(true)`](Self::offload): the kernel hands over TCP segments of
///   up to 64 KiB and leaves checksums to ustack, fills in the checksums of
///   what ustack sends, and takes the TCP segments one poll sends as one
///   64 KiB super-frame (register `stack.set_flush(TapDevice::flush)`).
/// - [`mtu(65521)`](Self::mtu) (or 9000): a jumbo MTU, so both sides send
///   segments of up to 65,481 bytes.
///
/// Either way, give the stack large TCP buffers (ustack's `TcpOptions`,
/// `rx_buffer` and `tx_buffer` in `Config::tcp`, e.g. 1 MiB or more): the
/// window smoltcp advertises is its receive buffer (it picks the window-scale
/// factor from the buffer size), and with the default 64 KiB a single
/// 64 KiB segment fills the window.
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::TapBuilder;
///
/// let tap = TapBuilder::new("ustack0")
///     .netns("test1")
///     .host_addr("10.7.0.1/24")
///     .host_addr("fd00:7::1/64")
///     .ipv6_autoconf(false)
///     .create()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TapBuilder {
    name: String,
    netns: Option<String>,
    host_addrs: Vec<String>,
    ipv6_autoconf: bool,
    mtu: Option<usize>,
    offload: bool,
}

impl TapBuilder {
    /// Starts a builder for the interface `name` (at most 15 bytes).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").create()?; // up, no address
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(name: &str) -> TapBuilder {
        TapBuilder {
            name: name.to_owned(),
            netns: None,
            host_addrs: Vec::new(),
            ipv6_autoconf: true,
            mtu: None,
            offload: false,
        }
    }

    /// Moves the host side into the existing network namespace `netns`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").netns("test1").host_addr("10.7.0.1/24").create()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn netns(mut self, netns: &str) -> TapBuilder {
        self.netns = Some(netns.to_owned());
        self
    }

    /// Adds a host-side address in CIDR notation, IPv4 or IPv6. May be
    /// called several times. IPv6 addresses are added with `nodad` so they
    /// are usable at once.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").host_addr("10.7.0.1/24").create()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn host_addr(mut self, cidr: &str) -> TapBuilder {
        self.host_addrs.push(cidr.to_owned());
        self
    }

    /// With `false`, the host side gets no IPv6 link-local address
    /// (`addrgenmode none`), so the kernel sends no DAD, router solicitation
    /// or MLD frames on its own: an IPv4-only link then carries only the
    /// traffic a test causes. IPv6 addresses given with
    /// [`host_addr`](Self::host_addr) still work, but the kernel announces
    /// their solicited-node groups with two MLDv2 reports (ICMPv6 type 143)
    /// within about a second of creation. Default: `true` (kernel default).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let quiet = TapBuilder::new("ustack0").ipv6_autoconf(false).create()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ipv6_autoconf(mut self, enabled: bool) -> TapBuilder {
        self.ipv6_autoconf = enabled;
        self
    }

    /// Sets the interface's MTU (the IP packet size, without the Ethernet
    /// header) before the link comes up: at most 65,521 ([`MAX_TAP_MTU`]), the
    /// most a TAP takes. The device reports it in its capabilities, so smoltcp
    /// advertises a TCP MSS of the MTU minus 40 and the kernel does the same;
    /// give the stack TCP buffers of several times the MTU (see the type's
    /// docs). Default: the kernel's (1500).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").host_addr("10.7.0.1/24").mtu(65521).create()?;
    /// assert_eq!(tap.mtu(), 65521);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mtu(mut self, mtu: usize) -> TapBuilder {
        self.mtu = Some(mtu);
        self
    }

    /// With `true`, frames carry a `virtio_net_hdr` (`IFF_VNET_HDR`) and the
    /// kernel is told that ustack takes partial checksums and TCP
    /// super-segments (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 |
    /// TUN_F_TSO6`):
    ///
    /// - receive: the kernel sends TCP segments of up to 64 KiB without cutting
    ///   them to the MSS, and leaves TCP/UDP checksums partial; the device
    ///   completes them ([`TapStats::rx_gso_frames`](super::TapStats::rx_gso_frames),
    ///   [`rx_csum_completed`](super::TapStats::rx_csum_completed)) and hands each
    ///   super-segment to the stack whole. The capabilities then report a
    ///   maximum frame of 64 KiB so that ustack's ingress check admits them;
    ///   smoltcp's TCP still sends at most the peer's MSS, but a UDP datagram
    ///   larger than the link MTU leaves as one oversized frame instead of
    ///   being dropped.
    /// - transmit: the capabilities say `Checksum::Rx` for TCP and UDP, so
    ///   smoltcp does not compute those checksums; the device writes the
    ///   pseudo-header sum and asks the kernel to finish it
    ///   ([`tx_csum_offloaded`](super::TapStats::tx_csum_offloaded)). The
    ///   consecutive TCP segments of one flow that a poll sends are merged into
    ///   super-frames of up to 64 KiB, which the kernel cuts up again
    ///   ([`tx_gso_frames`](super::TapStats::tx_gso_frames)): one `write` per
    ///   64 KiB instead of one per segment. They are written by
    ///   [`TapDevice::flush`](super::TapDevice::flush), which the stack must
    ///   call at the end of every poll: `stack.set_flush(TapDevice::flush)`.
    ///
    /// A [`PcapRecorder`](crate::PcapRecorder) around such a device records
    /// the frames as the stack sees them: sent TCP/UDP frames carry the
    /// partial checksum, which tcpdump flags as incorrect (as it does on a
    /// NIC with transmit offload).
    ///
    /// Default: `false` (plain Ethernet frames, checksums computed by smoltcp).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").host_addr("10.7.0.1/24").offload(true).create()?;
    /// assert!(tap.offload());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn offload(mut self, enabled: bool) -> TapBuilder {
        self.offload = enabled;
        self
    }

    /// Creates and configures the interface.
    ///
    /// If any step fails, the half-configured interface is removed again.
    ///
    /// # Errors
    ///
    /// Those of [`TapDevice::open`], plus a failing `ip` command (with its
    /// stderr in the message) or `ip` not being installed; an MTU outside
    /// 68..=65,521 is refused before anything is created.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// match TapBuilder::new("ustack0").host_addr("10.7.0.1/24").create() {
    ///     Ok(tap) => println!("created {}", tap.name()),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub fn create(self) -> io::Result<TapDevice> {
        if let Some(mtu) = self.mtu {
            check_mtu(mtu)?;
        }
        // Opening attaches to an existing TAP of that name, and dropping the device would
        // then delete someone else's interface: refuse instead.
        if !self.name.is_empty() && Path::new("/sys/class/net").join(&self.name).exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "interface `{0}` already exists; choose another name, or remove it with `ip link del {0}` if nothing uses it",
                    self.name
                ),
            ));
        }
        let mut device = TapDevice::open_with(&self.name, self.offload)?;
        let name = device.name().to_owned();
        // From here on, dropping `device` (also on error) deletes the interface.
        device.owned = Some(Owned { netns: None });
        if let Some(ns) = &self.netns {
            ip(None, &["link", "set", &name, "netns", ns]).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e}; does namespace `{ns}` exist? create it with `ip netns add {ns}`"),
                )
            })?;
            device.owned = Some(Owned {
                netns: Some(ns.clone()),
            });
        }
        let ns = self.netns.as_deref();
        if !self.ipv6_autoconf {
            // Must happen while the link is still down: the mode is applied
            // when the link comes up.
            ip(ns, &["link", "set", &name, "addrgenmode", "none"])?;
        }
        if let Some(mtu) = self.mtu {
            ip(ns, &["link", "set", &name, "mtu", &mtu.to_string()])?;
            device.set_mtu(mtu);
        }
        for cidr in &self.host_addrs {
            let mut args = vec!["addr", "add", cidr.as_str(), "dev", name.as_str()];
            if cidr.contains(':') {
                args.push("nodad");
            }
            ip(ns, &args).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e}; host addresses are CIDR like 10.7.0.1/24 or fd00::1/64 and must not already exist on the interface"),
                )
            })?;
        }
        ip(ns, &["link", "set", &name, "up"])?;
        if ns.is_some() {
            ip(ns, &["link", "set", "lo", "up"])?;
        }
        log::debug!(
            "tap {name}: created (netns {:?}, addrs {:?}, mtu {}, offload {})",
            self.netns,
            self.host_addrs,
            device.mtu(),
            self.offload
        );
        Ok(device)
    }
}

fn check_mtu(mtu: usize) -> io::Result<()> {
    if mtu > MAX_TAP_MTU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("MTU {mtu} is too large: a TAP interface takes at most {MAX_TAP_MTU} (65,535 bytes of frame minus the 14-byte Ethernet header); use {MAX_TAP_MTU} or less"),
        ));
    }
    if mtu < MIN_TAP_MTU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("MTU {mtu} is too small: the kernel takes at least {MIN_TAP_MTU} (1280 for IPv6); use a larger MTU"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_outside_the_tap_range_is_refused_before_creating_anything() {
        let err = TapBuilder::new("utnever0")
            .mtu(65_522)
            .create()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("at most 65521"), "{err}");
        let err = TapBuilder::new("utnever0").mtu(67).create().unwrap_err();
        assert!(err.to_string().contains("at least 68"), "{err}");
        assert!(!Path::new("/sys/class/net/utnever0").exists());
        assert!(check_mtu(MAX_TAP_MTU).is_ok() && check_mtu(1500).is_ok());
    }
}
