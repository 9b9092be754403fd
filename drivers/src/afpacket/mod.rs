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
//! runs its own `Stack` with the same IP and MAC.
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

mod ring;
mod sys;
mod tx;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

pub use ring::RingConfig;
use ring::{Cursor, Ring, TP_STATUS_CSUM_NOT_READY};
use sys::{MsgVec, PACKET_OUTGOING};
use tx::TxQueue;

/// Ethernet header plus one 802.1Q tag: frames are at most MTU + this.
const LINK_OVERHEAD: usize = 14 + 4;
/// Default receive buffer for the socket modes; the kernel default (~208 KiB) holds only a
/// few hundred small frames.
const DEFAULT_RCVBUF: usize = 4 << 20;

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

/// Counters of an [`AfPacket`].
///
/// # Example
///
/// ```no_run
/// let dev = ustack_drivers::AfPacket::builder("veth1").open()?;
/// let s = dev.stats();
/// println!("{} frames in {} calls, {} lost in the kernel", s.rx_frames, s.rx_syscalls, s.rx_kernel_drops);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the kernel took from us.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Receive system calls (`recvfrom`/`recvmmsg`, empty ones included); ring blocks
    /// taken in ring mode.
    pub rx_syscalls: u64,
    /// Transmit system calls (`send`/`sendmmsg`).
    pub tx_syscalls: u64,
    /// Frames the kernel dropped because the socket buffer or ring was full
    /// (`PACKET_STATISTICS` `tp_drops`).
    pub rx_kernel_drops: u64,
    /// Times the ring was full and the kernel froze it (`tp_freeze_q_cnt`, ring mode).
    pub rx_ring_freezes: u64,
    /// Frames longer than the receive buffer (MTU + 18), skipped.
    pub rx_truncated: u64,
    /// Frames this host sent on the interface, seen by the socket and skipped.
    pub rx_outgoing: u64,
    /// Frames whose TCP/UDP checksum the kernel left unfilled, filled in (ring mode).
    pub rx_csum_filled: u64,
    /// Transmit calls the kernel refused for lack of room, retried.
    pub tx_retries: u64,
    /// Frames given up on: refused after retries, or rejected by the kernel.
    pub tx_dropped: u64,
    /// Flushes done by the device itself because a poll ended without
    /// [`AfPacket::flush`]; should stay 0.
    pub late_flushes: u64,
    /// Receive calls that failed with something other than "nothing ready".
    pub rx_errors: u64,
}

/// The device's own counters, plus a log-once flag.
#[derive(Debug, Default)]
pub(super) struct Counters {
    s: AfPacketStats,
    warned: bool,
}

impl std::ops::Deref for Counters {
    type Target = AfPacketStats;
    fn deref(&self) -> &AfPacketStats {
        &self.s
    }
}

impl std::ops::DerefMut for Counters {
    fn deref_mut(&mut self) -> &mut AfPacketStats {
        &mut self.s
    }
}

impl Counters {
    fn warn(&mut self, name: &str, what: &str, e: &io::Error) {
        if std::mem::replace(&mut self.warned, true) {
            log::debug!("afpacket {name}: {what} failed: {e}");
        } else {
            log::warn!("afpacket {name}: {what} failed: {e}; is the interface still there and up? (further failures are logged at debug)");
        }
    }
}

/// Builds an [`AfPacket`]; see [`AfPacket::builder`].
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::{AfPacket, IoMode, RingConfig};
///
/// let dev = AfPacket::builder("veth1")
///     .mode(IoMode::Ring(RingConfig::default()))
///     .fanout(7)
///     .open()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AfPacketBuilder {
    name: String,
    mode: IoMode,
    fanout: Option<u16>,
    qdisc_bypass: bool,
    rcvbuf: usize,
}

impl AfPacketBuilder {
    /// The I/O mode (default: `Batched { batch: 64 }`).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").mode(ustack_drivers::IoMode::PerFrame).open()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mode(mut self, mode: IoMode) -> Self {
        self.mode = mode;
        self
    }

    /// Joins fanout group `group` in hash mode: every socket of the group (same interface,
    /// same mode) gets a share of the flows, each flow always the same socket.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::AfPacket;
    /// // One per thread, each under its own Stack with the same IP and MAC:
    /// let a = AfPacket::builder("veth1").fanout(1).open()?;
    /// let b = AfPacket::builder("veth1").fanout(1).open()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fanout(mut self, group: u16) -> Self {
        self.fanout = Some(group);
        self
    }

    /// Sends straight to the driver, past the qdisc layer (`PACKET_QDISC_BYPASS`; default
    /// on). Faster; the qdisc's shaping and its queue are skipped.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").qdisc_bypass(false).open()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn qdisc_bypass(mut self, on: bool) -> Self {
        self.qdisc_bypass = on;
        self
    }

    /// Socket receive buffer in bytes for the socket modes (default 4 MiB, forced past
    /// `net.core.rmem_max` when running as root). Ring mode uses the ring instead.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").rcvbuf(16 << 20).open()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn rcvbuf(mut self, bytes: usize) -> Self {
        self.rcvbuf = bytes;
        self
    }

    /// Opens the socket in the calling thread's network namespace and binds it.
    ///
    /// # Errors
    ///
    /// Missing privileges (needs `CAP_NET_RAW`), an interface that does not exist in this
    /// namespace, a bad batch or ring size, or a fanout group that another kind of socket
    /// already uses; each message says what to change.
    ///
    /// # Example
    ///
    /// ```no_run
    /// match ustack_drivers::AfPacket::builder("veth1").open() {
    ///     Ok(dev) => println!("opened {}", dev.name()),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub fn open(self) -> io::Result<AfPacket> {
        let name = self.name.clone();
        self.open_inner().map_err(|e| {
            let msg = e.to_string();
            if msg.contains(&name) {
                e
            } else {
                io::Error::new(e.kind(), format!("AF_PACKET on `{name}`: {msg}"))
            }
        })
    }

    fn open_inner(self) -> io::Result<AfPacket> {
        if self.mode.batch() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "batch size 0; use at least 1",
            ));
        }
        let (ifindex, mac, mtu) = sys::interface(&self.name)?;
        let slot = mtu + LINK_OVERHEAD;
        let fd = sys::packet_socket()?;
        let raw = fd.as_raw_fd();
        // Best effort: older kernels lack it, and the pkttype check below covers them.
        let _ = sys::set_opt(
            raw,
            sys::SOL_PACKET,
            sys::PACKET_IGNORE_OUTGOING,
            &1i32,
            "PACKET_IGNORE_OUTGOING",
        );
        if self.qdisc_bypass {
            sys::set_opt(
                raw,
                sys::SOL_PACKET,
                sys::PACKET_QDISC_BYPASS,
                &1i32,
                "PACKET_QDISC_BYPASS",
            )?;
        }
        let rx = match self.mode {
            IoMode::Ring(cfg) => {
                cfg.check(slot)?;
                RxPath::Ring {
                    ring: Ring::new(raw, &cfg)?,
                    block: 0,
                    cur: None,
                }
            }
            mode => {
                let bytes = i32::try_from(self.rcvbuf).unwrap_or(i32::MAX);
                let forced = sys::set_opt(
                    raw,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &bytes,
                    "SO_RCVBUFFORCE",
                );
                if forced.is_err() {
                    sys::set_opt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes, "SO_RCVBUF")?;
                }
                match mode {
                    IoMode::Batched { batch } => RxPath::Batched {
                        buf: vec![0; batch * slot],
                        msgs: MsgVec::new(batch),
                        count: 0,
                        pos: 0,
                        drained: true,
                    },
                    _ => RxPath::PerFrame { buf: vec![0; slot] },
                }
            }
        };
        sys::bind(raw, ifindex)?;
        if let Some(group) = self.fanout {
            let arg = u32::from(group) | (sys::PACKET_FANOUT_HASH << 16);
            sys::set_opt(raw, sys::SOL_PACKET, sys::PACKET_FANOUT, &arg, "PACKET_FANOUT").map_err(|e| {
                io::Error::new(e.kind(), format!("{e}; every socket of fanout group {group} must use the same interface and mode"))
            })?;
        }
        let tx = match self.mode {
            IoMode::PerFrame => TxPath::PerFrame { buf: vec![0; slot] },
            mode => TxPath::Queued {
                q: TxQueue::new(mode.batch(), slot),
                since: None,
            },
        };
        log::debug!(
            "afpacket {}: open, {} mode, mtu {mtu}, fanout {:?}",
            self.name,
            self.mode.name(),
            self.fanout
        );
        Ok(AfPacket {
            fd,
            name: self.name,
            mac,
            mtu,
            mode: self.mode,
            rx,
            tx,
            c: Counters::default(),
            kernel: Cell::new((0, 0)),
        })
    }
}

enum RxPath {
    PerFrame {
        buf: Vec<u8>,
    },
    Batched {
        buf: Vec<u8>,
        msgs: MsgVec,
        count: usize,
        pos: usize,
        /// The poll already got `None` for this batch; the next receive starts a new one.
        drained: bool,
    },
    Ring {
        ring: Ring,
        block: usize,
        cur: Option<Cursor>,
    },
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

/// The next frame for the stack, if any; `None` also ends one poll's batch.
fn next_frame<'b>(rx: &'b mut RxPath, fd: RawFd, c: &mut Counters, name: &str) -> Option<&'b [u8]> {
    match rx {
        RxPath::PerFrame { buf } => loop {
            c.rx_syscalls += 1;
            match sys::recv_one(fd, buf) {
                Ok(Some((_, PACKET_OUTGOING))) => c.rx_outgoing += 1,
                Ok(Some((len, _))) if len > buf.len() => c.rx_truncated += 1,
                Ok(Some((len, _))) => return Some(&buf[..len]),
                Ok(None) => return None,
                Err(e) => {
                    c.rx_errors += 1;
                    c.warn(name, "recvfrom", &e);
                    return None;
                }
            }
        },
        RxPath::Batched {
            buf,
            msgs,
            count,
            pos,
            drained,
        } => {
            let slot = buf.len() / msgs.capacity();
            loop {
                if *pos < *count {
                    let i = *pos;
                    *pos += 1;
                    match msgs.info(i) {
                        (_, PACKET_OUTGOING, _) => c.rx_outgoing += 1,
                        (_, _, true) => c.rx_truncated += 1,
                        (len, _, false) => return Some(&buf[i * slot..][..len]),
                    }
                    continue;
                }
                // One recvmmsg per poll: the poll ends (and flushes) before the next batch.
                if !std::mem::replace(drained, true) {
                    return None;
                }
                c.rx_syscalls += 1;
                *pos = 0;
                *count = match msgs.recv(fd, buf, slot) {
                    Ok(n) => n,
                    Err(e) => {
                        c.rx_errors += 1;
                        c.warn(name, "recvmmsg", &e);
                        0
                    }
                };
                if *count == 0 {
                    return None;
                }
                *drained = false;
            }
        }
        RxPath::Ring { ring, block, cur } => {
            // Positions first, the borrow of the block last: the loop cannot hold it.
            let (start, len) = loop {
                let Some(at) = cur.as_mut() else {
                    let first = ring::first(ring.owned(*block)?);
                    c.rx_syscalls += 1;
                    match first {
                        Some(first) => *cur = Some(first),
                        None => {
                            ring.release(*block);
                            *block = (*block + 1) % ring.blocks();
                        }
                    }
                    continue;
                };
                match ring.owned(*block).and_then(|b| ring::next(b, at)) {
                    Some(f) if f.pkttype == PACKET_OUTGOING => c.rx_outgoing += 1,
                    Some(f) if f.snaplen < f.len => c.rx_truncated += 1,
                    Some(f) => {
                        if f.status & TP_STATUS_CSUM_NOT_READY != 0 {
                            let b = ring.owned(*block)?;
                            if crate::csum::fill_l4_checksum(&mut b[f.start..][..f.snaplen]) {
                                c.rx_csum_filled += 1;
                            }
                        }
                        break (f.start, f.snaplen);
                    }
                    None => {
                        // One block per poll, then the poll ends and flushes.
                        ring.release(*block);
                        *block = (*block + 1) % ring.blocks();
                        *cur = None;
                        return None;
                    }
                }
            };
            Some(&ring.owned(*block)?[start..][..len])
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
        let frame = next_frame(&mut self.rx, fd, &mut self.c, &self.name)?;
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
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for AfPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Receive token of an [`AfPacket`]: the frame, in the batch buffer or the ring.
#[derive(Debug)]
pub struct AfPacketRxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for AfPacketRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Transmit token of an [`AfPacket`]: sends at once (per-frame mode) or queues the frame
/// for the next flush.
pub struct AfPacketTxToken<'a> {
    fd: RawFd,
    tx: &'a mut TxPath,
    c: &'a mut Counters,
    name: &'a str,
    now: Instant,
}

impl fmt::Debug for AfPacketTxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacketTxToken")
            .field("name", &self.name)
            .finish()
    }
}

impl phy::TxToken for AfPacketTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self.tx {
            TxPath::PerFrame { buf } => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                let frame = &mut buf[..len];
                frame.fill(0);
                let r = f(frame);
                self.c.s.tx_syscalls += 1;
                match sys::send_one(self.fd, frame) {
                    Ok(n) if n == len => {
                        self.c.s.tx_frames += 1;
                        self.c.s.tx_bytes += len as u64;
                    }
                    Ok(_) => self.c.s.tx_dropped += 1,
                    Err(e) => {
                        self.c.s.tx_dropped += 1;
                        if tx::is_transient(&e) {
                            log::debug!("afpacket {}: dropped a {len}-byte frame: {e}", self.name);
                        } else {
                            self.c.warn(self.name, "send", &e);
                        }
                    }
                }
                r
            }
            TxPath::Queued { q, since } => {
                if q.is_full() || len > q.slot() {
                    q.flush(self.fd, self.c, self.name);
                }
                if len > q.slot() {
                    // Bigger than the MTU allows: smoltcp never asks for this.
                    self.c.s.tx_dropped += 1;
                    let mut scratch = vec![0; len];
                    return f(&mut scratch);
                }
                since.get_or_insert(self.now);
                f(q.push(len))
            }
        }
    }
}
