//! Linux `AF_PACKET` raw sockets as smoltcp devices, with batched I/O and mmap rings.
//!
//! An [`AfPacket`] is bound to one interface (a veth end, a NIC) that holds no kernel IP
//! address, so the kernel never answers for the stack. Three I/O modes ([`IoMode`]):
//!
//! | mode | receive | transmit |
//! |---|---|---|
//! | [`PerFrame`](IoMode::PerFrame) | one `recvfrom` per frame | one `send` per frame |
//! | [`Batched`](IoMode::Batched) | one `recvmmsg` per poll, up to `batch` frames | queued, one `sendmmsg` per poll |
//! | [`Ring`](IoMode::Ring) | `TPACKET_V3` blocks read in place, no copy, no syscall per block | as `Batched` |
//!
//! smoltcp hands a device one frame per token, so the batching lives here: received frames
//! are served from the last batch, and transmitted frames wait in a queue until the stack's
//! poll ends. **Call [`Stack::set_flush`]`(AfPacket::flush)` once** so that every poll
//! ends with one `sendmmsg`. A full queue is flushed on the spot; frames the kernel has no
//! room for are retried, then dropped and counted in [`AfPacketStats::tx_dropped`]. Frames
//! the kernel could not queue for us (socket buffer or ring full) are counted in
//! [`AfPacketStats::rx_kernel_drops`].
//!
//! Per-core stacks: open one device per thread with the same [`fanout`](AfPacketBuilder::fanout)
//! group; the kernel spreads flows over them by hash (`PACKET_FANOUT_HASH`), and each thread
//! runs its own `Stack` with the same IP and MAC. Every member also sees every ARP frame
//! and IPv6 neighbour solicitation and advertisement (see the `neigh` module's notes), so
//! each stack learns its neighbours.
//!
//! # The link
//!
//! - The peer's end must not hand over TSO/GSO super-frames or checksum-partial frames:
//!   turn those offloads off there ([`ethtool::disable_offloads`](crate::ethtool::disable_offloads),
//!   or `ethtool -K DEV tso off gso off tx off`). In ring mode, frames marked
//!   `TP_STATUS_CSUM_NOT_READY` get their TCP/UDP checksum filled in (counted in
//!   `rx_csum_filled`); in the other modes smoltcp drops them as bad checksums.
//! - Give the stack the interface's own MAC ([`mac`](AfPacket::mac)) and no kernel address
//!   on that interface (`ip addr flush dev DEV`); `ip link set DEV addrgenmode none` keeps
//!   the kernel's IPv6 chatter off the link. ARP is answered by the stack itself.
//!
//! [`Stack::set_flush`]: https://docs.rs/ustack/latest/ustack/struct.Stack.html#method.set_flush
//!
//! # Example
//!
//! ```no_run
//! use smoltcp::phy::Device;
//! use ustack_drivers::{AfPacket, IoMode};
//!
//! // As root, in the namespace that holds `veth1`:
//! let dev = AfPacket::builder("veth1").mode(IoMode::Batched { batch: 64 }).open()?;
//! println!("{} mac {:02x?} mtu {}", dev.name(), dev.mac(), dev.mtu());
//! // let mut stack = ustack::Stack::new(config_with(dev.mac()), dev, now)?;
//! // stack.set_flush(AfPacket::flush);
//! # Ok::<(), std::io::Error>(())
//! ```

mod builder;
mod neigh;
mod ring;
mod rx;
mod stats;
mod sys;
mod token;
mod tx;

use std::cell::Cell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

pub use builder::AfPacketBuilder;
pub use ring::RingConfig;
use rx::{next_frame, RxPath};
pub use stats::AfPacketStats;
use stats::Counters;
pub use token::{AfPacketRxToken, AfPacketTxToken};
use tx::TxQueue;

/// Ethernet header plus one 802.1Q tag: frames are at most MTU + this.
const LINK_OVERHEAD: usize = 14 + 4;
/// Default receive buffer for the socket modes; the kernel default (~208 KiB) holds only a
/// few hundred small frames.
const DEFAULT_RCVBUF: usize = 4 << 20;
/// Frames one poll receives in per-frame and ring mode: the default UDP socket buffer's
/// 64 datagrams, and the default batch.
const DEFAULT_RX_BUDGET: usize = 64;

/// How an [`AfPacket`] moves frames; chosen when it is opened.
///
/// # Example
///
/// ```
/// use ustack_drivers::{IoMode, RingConfig};
///
/// let modes = [IoMode::PerFrame, IoMode::Batched { batch: 64 }, IoMode::Ring(RingConfig::default())];
/// assert_eq!(modes[1].batch(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// One system call per frame in each direction: the baseline.
    PerFrame,
    /// `recvmmsg`/`sendmmsg` moving up to `batch` frames per call.
    Batched {
        /// Frames per call, at least 1.
        batch: usize,
    },
    /// A `TPACKET_V3` mmap receive ring, and `sendmmsg` with `PACKET_QDISC_BYPASS`.
    Ring(RingConfig),
}

impl IoMode {
    /// Frames per transmit call (1 for [`PerFrame`](IoMode::PerFrame)).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(ustack_drivers::IoMode::PerFrame.batch(), 1);
    /// ```
    pub fn batch(&self) -> usize {
        match self {
            IoMode::PerFrame => 1,
            IoMode::Batched { batch } => *batch,
            IoMode::Ring(r) => r.tx_batch,
        }
    }

    /// A short name for tables and logs: `per-frame`, `batched`, `ring`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(ustack_drivers::IoMode::Batched { batch: 8 }.name(), "batched");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            IoMode::PerFrame => "per-frame",
            IoMode::Batched { .. } => "batched",
            IoMode::Ring(_) => "ring",
        }
    }
}

enum TxPath {
    PerFrame {
        buf: Vec<u8>,
    },
    Queued {
        q: TxQueue,
        /// When the oldest queued frame was queued (the poll's timestamp).
        since: Option<Instant>,
    },
}

/// A raw `AF_PACKET` socket on one interface, implementing [`smoltcp::phy::Device`].
///
/// See the [module docs](self) for the modes, the flush rule and the link's settings.
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::{AfPacket, IoMode};
///
/// let dev = AfPacket::builder("veth1").mode(IoMode::Batched { batch: 32 }).open()?;
/// assert_eq!(dev.mode(), IoMode::Batched { batch: 32 });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AfPacket {
    fd: OwnedFd,
    name: String,
    mac: [u8; 6],
    mtu: usize,
    mode: IoMode,
    rx: RxPath,
    tx: TxPath,
    c: Counters,
    /// Kernel drop counters summed so far (`tp_drops`, `tp_freeze_q_cnt`); reading them
    /// resets the kernel's, hence the running sum.
    kernel: Cell<(u64, u64)>,
    /// Fanout groups only: every ARP and IPv6 neighbour frame (see `neigh`).
    neigh: Option<neigh::NeighSide>,
}

impl AfPacket {
    /// Starts building a device on interface `name`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder(name: &str) -> AfPacketBuilder {
        AfPacketBuilder {
            name: name.to_owned(),
            mode: IoMode::Batched { batch: 64 },
            fanout: None,
            qdisc_bypass: true,
            rcvbuf: DEFAULT_RCVBUF,
            rx_budget: DEFAULT_RX_BUDGET,
        }
    }

    /// Sends every queued frame (one `sendmmsg` per `batch` frames). Register it with
    /// `Stack::set_flush(AfPacket::flush)`; it does nothing in per-frame mode.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use smoltcp::phy::{Device, TxToken};
    /// use smoltcp::time::Instant;
    ///
    /// let mut dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// dev.transmit(Instant::ZERO).unwrap().consume(60, |f| f.fill(0xff));
    /// assert_eq!(dev.stats().tx_frames, 0); // queued
    /// dev.flush();
    /// assert_eq!(dev.stats().tx_frames, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&mut self) {
        if let TxPath::Queued { q, since } = &mut self.tx {
            if q.len() > 0 {
                q.flush(self.fd.as_raw_fd(), &mut self.c, &self.name);
            }
            *since = None;
        }
    }

    /// Frames queued for the next [`flush`](Self::flush).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// assert_eq!(dev.queued(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn queued(&self) -> usize {
        match &self.tx {
            TxPath::Queued { q, .. } => q.len(),
            TxPath::PerFrame { .. } => 0,
        }
    }

    /// Counters, including the kernel's drop counts (read with `PACKET_STATISTICS`).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// assert_eq!(dev.stats().tx_dropped, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> AfPacketStats {
        let (mut drops, mut freezes) = self.kernel.get();
        if let Ok((_, d, f)) = sys::take_stats(self.fd.as_raw_fd()) {
            drops += u64::from(d);
            freezes += u64::from(f);
            self.kernel.set((drops, freezes));
        }
        AfPacketStats {
            rx_kernel_drops: drops,
            rx_ring_freezes: freezes,
            ..self.c.s
        }
    }

    /// The interface name.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// assert_eq!(dev.name(), "veth1");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's MAC address, read at open: the stack should use it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// assert_eq!(dev.mac()[0] & 1, 0, "unicast");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's IP MTU, read at open.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
    /// assert_eq!(dev.mtu(), 1500);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The I/O mode.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").mode(ustack_drivers::IoMode::PerFrame).open()?;
    /// assert_eq!(dev.mode().name(), "per-frame");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// Flushes frames left from an earlier poll whose end was never signalled.
    fn late_flush(&mut self, now: Instant) {
        if let TxPath::Queued { since: Some(t), .. } = &self.tx {
            if *t != now {
                if self.c.late_flushes == 0 {
                    log::warn!(
                        "afpacket {}: frames waited for the next poll; call `stack.set_flush(AfPacket::flush)` so each poll sends its frames",
                        self.name
                    );
                }
                self.c.late_flushes += 1;
                self.flush();
            }
        }
    }

    fn tx_token(&mut self, now: Instant) -> AfPacketTxToken<'_> {
        AfPacketTxToken {
            fd: self.fd.as_raw_fd(),
            tx: &mut self.tx,
            c: &mut self.c,
            name: &self.name,
            now,
        }
    }
}

impl Device for AfPacket {
    type RxToken<'a>
        = AfPacketRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = AfPacketTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.late_flush(now);
        let fd = self.fd.as_raw_fd();
        let neigh_len = self.neigh.as_mut().and_then(|a| a.fetch(&mut self.c));
        // Borrows are taken inside each branch: the one not taken stays free.
        let frame = if let Some(len) = neigh_len {
            self.neigh.as_ref()?.frame(len)
        } else {
            match next_frame(&mut self.rx, fd, &mut self.c, &self.name) {
                Some(frame) => frame,
                None => {
                    if let Some(a) = self.neigh.as_mut() {
                        a.poll_ended();
                    }
                    return None;
                }
            }
        };
        self.c.s.rx_frames += 1;
        self.c.s.rx_bytes += frame.len() as u64;
        let rx = AfPacketRxToken { frame };
        let tx = AfPacketTxToken {
            fd,
            tx: &mut self.tx,
            c: &mut self.c,
            name: &self.name,
            now,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.late_flush(now);
        Some(self.tx_token(now))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

impl fmt::Debug for AfPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacket")
            .field("name", &self.name)
            .field("fd", &self.fd.as_raw_fd())
            .field("mode", &self.mode)
            .field("mtu", &self.mtu)
            .field("stats", &self.c.s)
            .finish()
    }
}

impl AsRawFd for AfPacket {
    /// The descriptor to wait on for frames: the socket, or in a fanout group an epoll
    /// descriptor that also covers the neighbour-discovery socket.
    fn as_raw_fd(&self) -> RawFd {
        match &self.neigh {
            Some(a) => a.wait_fd(),
            None => self.fd.as_raw_fd(),
        }
    }
}

impl AsFd for AfPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
