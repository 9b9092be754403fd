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
//! smoltcp poll drains every frame that is ready, and each frame a poll sends
//! is written at once, back to back (in offload mode TCP segments are merged until the poll
//! ends, see [`TapDevice::flush`]). Register [`AsRawFd::as_raw_fd`] with
//! poll/epoll to learn when frames arrive.
//!
//! Two options make bulk TCP faster (see [`TapBuilder::offload`] and
//! [`TapBuilder::mtu`]): checksum and segmentation offload with a
//! `virtio_net_hdr` in front of every frame, and a jumbo MTU of up to 65,521.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

#[cfg(doc)]
use smoltcp::phy::Device;

use crate::iproute::ip;

mod builder;
mod device;
mod gso;
mod open;
mod vnet;

pub use builder::{TapBuilder, MAX_TAP_MTU};
pub use device::{TapRxToken, TapTxToken};

/// Length of an Ethernet header without VLAN tag.
const ETH_HEADER: usize = 14;
/// Room for one 802.1Q tag so tagged frames are not truncated on read.
const VLAN_TAG: usize = 4;
/// MTU assumed when the kernel cannot be asked (the Linux default for TAP).
const DEFAULT_MTU: usize = 1500;
/// Largest IP packet the kernel hands over as one TCP super-segment in offload mode (its
/// `gso_max_size` is 64 KiB, and an IPv4 total length cannot say more).
const GSO_MAX_IP: usize = 65_535;

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
    /// Frames written to the kernel (a TCP super-frame of merged segments counts once).
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
    /// Offload mode: frames that arrived as one TCP super-segment of up to
    /// 64 KiB, which the kernel did not cut into MSS-sized frames.
    pub rx_gso_frames: u64,
    /// Offload mode: received frames whose TCP/UDP checksum the kernel left
    /// partial and the device completed.
    pub rx_csum_completed: u64,
    /// Offload mode: frames whose `virtio_net_hdr` asked for something the
    /// frame does not allow (a checksum position outside it, an unknown GSO
    /// type); they are passed on unchanged, and ustack's ingress check drops
    /// them if their checksum is wrong.
    pub rx_malformed: u64,
    /// Offload mode: transmitted TCP/UDP segments whose checksum the kernel was
    /// asked to fill in (each segment of a super-frame counts).
    pub tx_csum_offloaded: u64,
    /// Offload mode: TCP super-frames written, each carrying several of the stack's segments
    /// for the kernel to cut up again (`virtio_net_hdr` GSO).
    pub tx_gso_frames: u64,
    /// Offload mode: the stack's TCP segments that left inside the super-frames counted in
    /// `tx_gso_frames`.
    pub tx_segments_merged: u64,
    /// Offload mode: times queued frames were written only when the next poll began,
    /// because no [`TapDevice::flush`] ended the poll that queued them.
    pub late_flushes: u64,
    /// Longest frame received, in bytes (Ethernet header included, virtio
    /// header not): above 1514 with a jumbo MTU or GSO.
    pub rx_largest_frame: u64,
    /// Longest frame written, in bytes (Ethernet header included, virtio
    /// header not).
    pub tx_largest_frame: u64,
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
/// With [`TapBuilder::offload`], TCP and UDP checksums are left to the kernel
/// on transmit (the capabilities say `Checksum::Rx` for them), partial
/// checksums from the kernel are completed on receive, and TCP super-segments
/// of up to 64 KiB are handed to the stack whole; the TCP segments a poll
/// sends are merged into super-frames for the kernel to cut up, written by
/// [`flush`](Self::flush). See [`TapStats`] for the counters.
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
    file: File,
    name: String,
    mtu: usize,
    /// Frames carry a `virtio_net_hdr` (opened with `IFF_VNET_HDR`).
    offload: bool,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// Offload mode: the TCP super-frame being merged, written by `flush`.
    gso: gso::Coalescer,
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
        Self::open_with(name, false)
    }

    /// [`open`](Self::open), with the `virtio_net_hdr` and offloads when `offload`.
    fn open_with(name: &str, offload: bool) -> io::Result<TapDevice> {
        let (file, name) = open::open_tap(name, offload)?;
        let mtu = match open::read_mtu(&name) {
            Ok(mtu) => mtu,
            Err(e) => {
                log::warn!("tap {name}: cannot read MTU ({e}); assuming {DEFAULT_MTU}");
                DEFAULT_MTU
            }
        };
        log::debug!("tap {name}: opened, mtu {mtu}, offload {offload}");
        let mut device = TapDevice {
            file,
            name,
            mtu,
            offload,
            rx_buf: Vec::new(),
            tx_buf: Vec::new(),
            gso: gso::Coalescer::new(offload),
            stats: TapStats::default(),
            warned: false,
            owned: None,
        };
        device.set_mtu(mtu);
        Ok(device)
    }

    /// Records a new link MTU and sizes the buffers for it: a read must hold the
    /// largest frame whole, or the kernel truncates it.
    fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
        let vnet = if self.offload { vnet::LEN } else { 0 };
        let rx_frame = self.rx_frame_limit() + VLAN_TAG;
        self.rx_buf = vec![0; vnet + rx_frame];
        self.tx_buf = vec![0; vnet + self.mtu + ETH_HEADER];
    }

    /// The longest frame the device may deliver, with its Ethernet header: a 64 KiB TCP
    /// super-segment in offload mode, otherwise the link MTU plus the header. In offload mode
    /// this is more than the MTU, so give it to the stack:
    /// `Config::max_rx_frame(tap.rx_frame_limit())`, or ustack's ingress check drops the
    /// large segments as oversize.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").offload(true).create()?;
    /// assert_eq!(tap.rx_frame_limit(), 65_535 + 14);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn rx_frame_limit(&self) -> usize {
        let ip = if self.offload {
            self.mtu.max(GSO_MAX_IP)
        } else {
            self.mtu
        };
        ip + ETH_HEADER
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
        &self.name
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
    /// header), read when the device was opened or set with
    /// [`TapBuilder::mtu`].
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

    /// Whether frames carry a `virtio_net_hdr` with checksum and TCP
    /// segmentation offload ([`TapBuilder::offload`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let tap = TapBuilder::new("ustack0").offload(true).create()?;
    /// assert!(tap.offload());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Writes out the frames queued since the last flush: in offload mode the consecutive TCP
    /// segments of one flow that a poll sent leave as one super-frame of up to 64 KiB, which
    /// the kernel cuts up again (one `write` instead of one per segment). Without offload
    /// every frame is written at once and this does nothing.
    ///
    /// Register it with `stack.set_flush(TapDevice::flush)` so each poll ends with its
    /// frames on the wire. Without it, queued frames leave when the next poll begins (counted
    /// in [`TapStats::late_flushes`], with a warning), or when the merge is full.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::TapBuilder;
    ///
    /// let mut tap = TapBuilder::new("ustack0").offload(true).create()?;
    /// tap.flush(); // nothing queued yet
    /// assert_eq!(tap.stats().tx_frames, 0);
    /// // With a ustack Stack: `stack.set_flush(TapDevice::flush);`
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&mut self) {
        device::flush_pending(
            &mut self.gso,
            &self.file,
            &self.name,
            &mut self.stats,
            &mut self.warned,
        );
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
            .field("fd", &self.file.as_raw_fd())
            .field("mtu", &self.mtu)
            .field("offload", &self.offload)
            .field("netns", &self.netns())
            .field("stats", &self.stats)
            .finish()
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for TapDevice {
    fn drop(&mut self) {
        self.flush();
        let Some(owned) = self.owned.take() else {
            return;
        };
        // Closing the descriptor (right after this) removes a non-persistent
        // TAP anyway; deleting explicitly also covers a descriptor that was
        // duplicated elsewhere. Failure is expected when the namespace is
        // already gone (the kernel deletes the TAP together with it).
        let name = &self.name;
        if let Err(e) = ip(owned.netns.as_deref(), &["link", "del", name]) {
            log::debug!("tap {name}: cleanup: {e}");
        }
    }
}
