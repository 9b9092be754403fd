//! Opening an [`AfPacket`]: socket options, ring, bind, fanout.

use std::cell::Cell;
use std::io;
use std::os::fd::AsRawFd;

use super::neigh::NeighSide;
use super::ring::Ring;
use super::rx::RxPath;
use super::stats::Counters;
use super::sys::{self, MsgVec};
use super::tx::TxQueue;
use super::{AfPacket, IoMode, TxPath, LINK_OVERHEAD};

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
    pub(super) name: String,
    pub(super) mode: IoMode,
    pub(super) fanout: Option<u16>,
    pub(super) qdisc_bypass: bool,
    pub(super) rcvbuf: usize,
    pub(super) rx_budget: usize,
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

    /// Frames one poll may receive in per-frame and ring mode (default 64; batched mode
    /// takes one `recvmmsg` of `batch` frames per poll). Then the poll ends: the sockets and
    /// the transmit queue drain before more frames come in, so a flood cannot keep one poll
    /// reading while the application's buffers overflow. Frames left wait in the kernel
    /// (the descriptor stays readable, so the next poll comes at once).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let dev = ustack_drivers::AfPacket::builder("veth1").rx_budget(256).open()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn rx_budget(mut self, frames: usize) -> Self {
        self.rx_budget = frames.max(1);
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
                    served: 0,
                    budget: self.rx_budget,
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
                    _ => RxPath::PerFrame {
                        buf: vec![0; slot],
                        served: 0,
                        budget: self.rx_budget,
                    },
                }
            }
        };
        sys::bind(raw, ifindex, sys::ETH_P_ALL)?;
        if let Some(group) = self.fanout {
            let arg = u32::from(group) | (sys::PACKET_FANOUT_HASH << 16);
            sys::set_opt(raw, sys::SOL_PACKET, sys::PACKET_FANOUT, &arg, "PACKET_FANOUT").map_err(|e| {
                io::Error::new(e.kind(), format!("{e}; every socket of fanout group {group} must use the same interface and mode"))
            })?;
        }
        let neigh = match self.fanout {
            Some(_) => Some(NeighSide::open(raw, ifindex, slot)?),
            None => None,
        };
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
            neigh,
        })
    }
}
