//! Linux TAP interfaces as smoltcp devices.
//!
//! [`TapDevice::open`] attaches to (or creates) a TAP interface by name and
//! leaves its configuration to someone else. [`TapDevice::create`],
//! [`TapDevice::create_in_netns`] and [`TapBuilder`] also configure the host
//! side (address, link up, optionally inside a network namespace) with
//! iproute2 and remove the interface again when the device is dropped.
//!
//! The device is non-blocking: [`receive`](Device::receive) reads one frame per
//! call and returns `None` only once the kernel has nothing more, so a single
//! smoltcp poll drains every frame that is ready. Register
//! [`AsRawFd::as_raw_fd`] with poll/epoll to learn when frames arrive.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use tun_tap::{Iface, Mode};

use crate::iproute::ip;

/// Length of an Ethernet header without VLAN tag.
const ETH_HEADER: usize = 14;
/// Room for one 802.1Q tag so tagged frames are not truncated on read.
const VLAN_TAG: usize = 4;
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_NAME: usize = 15;
/// MTU assumed when the kernel cannot be asked (the Linux default for TAP).
const DEFAULT_MTU: usize = 1500;
/// `SIOCGIFMTU` from `<linux/sockios.h>`; the libc crate has no Linux binding.
const SIOCGIFMTU: u64 = 0x8921;

/// Frame counters of a [`TapDevice`].
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::TapDevice;
///
/// let tap = TapDevice::open("tap0")?;
/// let stats = tap.stats();
/// println!("rx {} frames, tx {} frames, {} dropped", stats.rx_frames, stats.tx_frames, stats.tx_dropped);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames read from the kernel.
    pub rx_frames: u64,
    /// Frames written to the kernel.
    pub tx_frames: u64,
    /// Bytes of the frames counted in `rx_frames`.
    pub rx_bytes: u64,
    /// Bytes of the frames counted in `tx_frames`.
    pub tx_bytes: u64,
    /// Frames the kernel refused to take (e.g. `EAGAIN`, `ENOBUFS`, `EIO`
    /// while the interface is down).
    pub tx_dropped: u64,
    /// Reads that failed with something other than "no frame ready" (e.g. the
    /// interface was deleted underneath the device).
    pub rx_errors: u64,
}

/// Who removes the interface when the device goes away.
#[derive(Debug)]
struct Owned {
    netns: Option<String>,
}

/// A Linux TAP interface implementing [`smoltcp::phy::Device`].
///
/// Frames are Ethernet frames without packet-info header. One receive buffer
/// and one transmit buffer are allocated up front and reused for every frame.
///
/// # Example
///
/// ```no_run
/// use smoltcp::phy::Device;
/// use ustack_drivers::TapDevice;
///
/// // Needs root or CAP_NET_ADMIN.
/// let tap = TapDevice::create("ustack0", "10.7.0.1/24")?;
/// assert_eq!(tap.capabilities().max_transmission_unit, tap.mtu() + 14);
/// // Hand `tap` to a smoltcp Interface / ustack Stack; dropping it removes ustack0.
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TapDevice {
    iface: Iface,
    mtu: usize,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    stats: TapStats,
    /// Set after the first unexpected error so the log is not flooded.
    warned: bool,
    owned: Option<Owned>,
}

impl TapDevice {
    /// Attaches to the TAP interface `name`, creating it if it does not exist.
    ///
    /// The interface is not configured: no address, and it stays down unless
    /// someone else brings it up. Because the interface is not persistent, it
    /// disappears when the device is dropped (if this call created it). An
    /// empty `name` lets the kernel choose one; see [`name`](Self::name).
    ///
    /// # Errors
    ///
    /// Fails with a message saying what to do when `/dev/net/tun` is missing,
    /// permission is denied, the name is too long, or the name is taken.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::open("tap0")?;
    /// println!("opened {} with MTU {}", tap.name(), tap.mtu());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn open(name: &str) -> io::Result<TapDevice> {
        validate_name(name)?;
        let iface = Iface::without_packet_info(name, Mode::Tap).map_err(|e| open_error(name, e))?;
        set_non_blocking(iface.as_raw_fd()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot make TAP `{name}` non-blocking: {e}"),
            )
        })?;
        let mtu = match read_mtu(iface.name()) {
            Ok(mtu) => mtu,
            Err(e) => {
                log::warn!(
                    "tap {}: cannot read MTU ({e}); assuming {DEFAULT_MTU}",
                    iface.name()
                );
                DEFAULT_MTU
            }
        };
        let frame = mtu + ETH_HEADER;
        log::debug!("tap {}: opened, mtu {mtu}", iface.name());
        Ok(TapDevice {
            iface,
            mtu,
            rx_buf: vec![0; frame + VLAN_TAG],
            tx_buf: vec![0; frame],
            stats: TapStats::default(),
            warned: false,
            owned: None,
        })
    }

    /// Creates the TAP interface `name` with host-side address `host_cidr`
    /// (e.g. `"10.7.0.1/24"`) and brings it up; dropping the device deletes
    /// the interface.
    ///
    /// Shorthand for `TapBuilder::new(name).host_addr(host_cidr).create()`.
    ///
    /// # Errors
    ///
    /// Those of [`open`](Self::open), plus a failing `ip` command (its stderr
    /// is part of the message).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::create("ustack0", "10.7.0.1/24")?;
    /// // The host can now reach 10.7.0.0/24 through ustack0.
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create(name: &str, host_cidr: &str) -> io::Result<TapDevice> {
        TapBuilder::new(name).host_addr(host_cidr).create()
    }

    /// Like [`create`](Self::create), but moves the host side of the interface
    /// into the existing network namespace `netns` (as listed by
    /// `ip netns list`) before configuring it there, and brings that
    /// namespace's loopback up.
    ///
    /// The device keeps working after the move: frames sent in the namespace
    /// towards the interface arrive on this device.
    ///
    /// # Errors
    ///
    /// Those of [`create`](Self::create); a missing namespace is reported with
    /// the hint to create it with `ip netns add`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// // ip netns add test1
    /// let tap = TapDevice::create_in_netns("ustack0", "test1", "10.7.0.1/24")?;
    /// // `ip netns exec test1 ping 10.7.0.2` now sends frames to `tap`.
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create_in_netns(name: &str, netns: &str, host_cidr: &str) -> io::Result<TapDevice> {
        TapBuilder::new(name)
            .netns(netns)
            .host_addr(host_cidr)
            .create()
    }

    /// Starts building a TAP interface with more options; see [`TapBuilder`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::builder("ustack0").host_addr("10.7.0.1/24").ipv6_autoconf(false).create()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder(name: &str) -> TapBuilder {
        TapBuilder::new(name)
    }

    /// The interface name as the kernel knows it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::open("")?; // kernel picks e.g. "tap0"
    /// println!("{}", tap.name());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    /// The network namespace the host side lives in, if the device moved it
    /// there.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::create_in_netns("ustack0", "test1", "10.7.0.1/24")?;
    /// assert_eq!(tap.netns(), Some("test1"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn netns(&self) -> Option<&str> {
        self.owned.as_ref().and_then(|o| o.netns.as_deref())
    }

    /// The interface's IP MTU (as `ip link` shows it, without the Ethernet
    /// header), read when the device was opened.
    ///
    /// Changing the MTU later with `ip link set ... mtu` is not picked up:
    /// smoltcp reads the capabilities once when the interface is built.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::open("tap0")?;
    /// assert_eq!(tap.mtu(), 1500);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Counters of the frames this device moved.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapDevice;
    ///
    /// let tap = TapDevice::open("tap0")?;
    /// assert_eq!(tap.stats().rx_frames, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> TapStats {
        self.stats
    }

    fn note_error(warned: &mut bool, name: &str, what: &str, err: &io::Error) {
        if !*warned {
            *warned = true;
            let hint = match err.raw_os_error() {
                Some(libc::EBADFD) => "; the interface is gone (deleted, or its network namespace was removed), open a new device",
                Some(libc::EIO) => "; is the interface up? (`ip link set <name> up`)",
                _ => "",
            };
            log::warn!(
                "tap {name}: {what} failed: {err}{hint} (further failures are logged at debug)"
            );
        } else {
            log::debug!("tap {name}: {what} failed: {err}");
        }
    }
}

impl fmt::Debug for TapDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapDevice")
            .field("name", &self.name())
            .field("fd", &self.iface.as_raw_fd())
            .field("mtu", &self.mtu)
            .field("netns", &self.netns())
            .field("stats", &self.stats)
            .finish()
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.iface.as_raw_fd()
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by `self.iface` and stays open for
        // as long as `self` (and therefore the returned borrow) lives.
        unsafe { BorrowedFd::borrow_raw(self.iface.as_raw_fd()) }
    }
}

impl Drop for TapDevice {
    fn drop(&mut self) {
        let Some(owned) = self.owned.take() else {
            return;
        };
        // Closing the descriptor (right after this) removes a non-persistent
        // TAP anyway; deleting explicitly also covers a descriptor that was
        // duplicated elsewhere. Failure is expected when the namespace is
        // already gone (the kernel deletes the TAP together with it).
        let name = self.iface.name().to_owned();
        if let Err(e) = ip(owned.netns.as_deref(), &["link", "del", &name]) {
            log::debug!("tap {name}: cleanup: {e}");
        }
    }
}

impl Device for TapDevice {
    type RxToken<'a>
        = TapRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TapTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let len = loop {
            match self.iface.recv(&mut self.rx_buf) {
                Ok(len) => break len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    self.stats.rx_errors += 1;
                    Self::note_error(&mut self.warned, self.iface.name(), "read", &e);
                    return None;
                }
            }
        };
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += len as u64;
        let rx = TapRxToken {
            frame: &self.rx_buf[..len],
        };
        let tx = TapTxToken {
            iface: &self.iface,
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
            warned: &mut self.warned,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(TapTxToken {
            iface: &self.iface,
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
            warned: &mut self.warned,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + ETH_HEADER;
        caps
    }
}

/// Receive token of a [`TapDevice`]: borrows the frame in the device's
/// receive buffer.
#[derive(Debug)]
pub struct TapRxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for TapRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Transmit token of a [`TapDevice`]: builds the frame in the device's
/// transmit buffer and writes it to the kernel.
pub struct TapTxToken<'a> {
    iface: &'a Iface,
    buf: &'a mut Vec<u8>,
    stats: &'a mut TapStats,
    warned: &'a mut bool,
}

impl fmt::Debug for TapTxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapTxToken")
            .field("name", &self.iface.name())
            .finish()
    }
}

impl phy::TxToken for TapTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if self.buf.len() < len {
            // Only reached if someone asks for more than the MTU; growing
            // once keeps later frames allocation-free.
            self.buf.resize(len, 0);
        }
        let frame = &mut self.buf[..len];
        // Stale bytes from the previous frame must never reach the wire.
        frame.fill(0);
        let result = f(frame);
        match self.iface.send(frame) {
            Ok(sent) if sent == len => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
            }
            Ok(sent) => {
                self.stats.tx_dropped += 1;
                log::debug!(
                    "tap {}: short write ({sent} of {len} bytes)",
                    self.iface.name()
                );
            }
            Err(e) => {
                self.stats.tx_dropped += 1;
                let transient = e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == io::ErrorKind::Interrupted;
                if transient {
                    log::debug!("tap {}: dropped a {len}-byte frame: {e}", self.iface.name());
                } else {
                    TapDevice::note_error(self.warned, self.iface.name(), "write", &e);
                }
            }
        }
        result
    }
}

/// Creates and configures a TAP interface; the resulting [`TapDevice`]
/// deletes it when dropped.
///
/// Steps, all with iproute2 (`ip`): create the TAP in the current network
/// namespace, optionally move it into `netns`, optionally turn off IPv6
/// address autoconfiguration, add every host address, bring the link up,
/// and bring the namespace's loopback up.
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

    /// Creates and configures the interface.
    ///
    /// If any step fails, the half-configured interface is removed again.
    ///
    /// # Errors
    ///
    /// Those of [`TapDevice::open`], plus a failing `ip` command (with its
    /// stderr in the message) or `ip` not being installed.
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
        let mut device = TapDevice::open(&self.name)?;
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
            "tap {name}: created (netns {:?}, addrs {:?})",
            self.netns,
            self.host_addrs
        );
        Ok(device)
    }
}

fn validate_name(name: &str) -> io::Result<()> {
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

fn open_error(name: &str, err: io::Error) -> io::Error {
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
fn read_mtu(name: &str) -> io::Result<usize> {
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
        let err = TapDevice::open("a-name-that-is-too-long").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("at most 15"), "{err}");
    }

    #[test]
    fn rejects_nul_in_name() {
        let err = TapDevice::open("ta\0p").unwrap_err();
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
