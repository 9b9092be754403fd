//! Two in-memory Ethernet devices wired back to back.
//!
//! A [`PipeLink`] owns two bounded frame queues (A→B and B→A). [`PipeLink::split`]
//! hands out the two ends as [`PipeDevice`]s; whatever one end transmits, the
//! other end receives, in order and byte for byte. Nothing here allocates or
//! needs an OS, so it works without the `std` feature and without privileges.
//!
//! Both ends are meant to be polled from one thread (e.g. a test that polls two
//! stacks alternately); the queues sit in [`RefCell`]s, so the devices are not
//! `Sync`.
//!
//! # Back-pressure
//!
//! When the peer's queue is full, [`PipeDevice::transmit`](Device::transmit)
//! returns `None`: smoltcp keeps the data and retries on a later poll, so
//! nothing is lost and the refusal is counted in [`PipeStats::tx_full`]. The
//! only way a frame can still be lost is through the transmit token that comes
//! with [`receive`](Device::receive) (smoltcp uses it for immediate replies such
//! as ICMP echo replies or RSTs) when the peer queue fills up meanwhile; such
//! frames are counted in [`PipeStats::tx_dropped`], never discarded silently.

use core::cell::{Cell, RefCell};
use core::fmt;

use heapless::{Deque, Vec};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frame counters of one [`PipeDevice`].
///
/// # Example
///
/// ```
/// use ustack_drivers::{PipeLink, PipeStats};
///
/// let link = PipeLink::<4, 1514>::new();
/// let (a, _b) = link.split();
/// assert_eq!(a.stats(), PipeStats::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Frames this device received (taken off its queue).
    pub rx_frames: u64,
    /// Frames this device delivered to the peer's queue.
    pub tx_frames: u64,
    /// Bytes of the frames counted in `rx_frames`.
    pub rx_bytes: u64,
    /// Bytes of the frames counted in `tx_frames`.
    pub tx_bytes: u64,
    /// Frames lost on transmit: the peer queue was full when a transmit token
    /// was consumed, or the frame was larger than the link MTU.
    pub tx_dropped: u64,
    /// `transmit()` calls refused because the peer queue was full. smoltcp
    /// retries these later, so they are back-pressure, not loss.
    pub tx_full: u64,
}

impl PipeStats {
    const ZERO: PipeStats = PipeStats {
        rx_frames: 0,
        tx_frames: 0,
        rx_bytes: 0,
        tx_bytes: 0,
        tx_dropped: 0,
        tx_full: 0,
    };
}

type Frame<const MTU: usize> = Vec<u8, MTU>;
type Queue<const FRAMES: usize, const MTU: usize> = RefCell<Deque<Frame<MTU>, FRAMES>>;

/// Storage for two back-to-back Ethernet devices.
///
/// `FRAMES` is the capacity of each direction's queue; `MTU` is the largest
/// Ethernet frame in bytes *including* the 14-byte Ethernet header (what
/// smoltcp calls `max_transmission_unit` for Ethernet), so `1514` gives an IP
/// MTU of 1500.
///
/// The link stores both queues inline (about `2 * FRAMES * MTU` bytes), so
/// large links are best boxed or kept in a long-lived location.
///
/// # Example
///
/// ```
/// use smoltcp::phy::{Device, RxToken, TxToken};
/// use smoltcp::time::Instant;
/// use ustack_drivers::PipeLink;
///
/// let link = PipeLink::<16, 1514>::new();
/// let (mut a, mut b) = link.split();
/// let now = Instant::ZERO;
/// b.transmit(now).unwrap().consume(4, |buf| buf.copy_from_slice(&[1, 2, 3, 4]));
/// let (rx, _) = a.receive(now).unwrap();
/// rx.consume(|frame| assert_eq!(frame, &[1, 2, 3, 4]));
/// ```
pub struct PipeLink<const FRAMES: usize, const MTU: usize> {
    /// `queues[side]` holds the frames waiting to be received by `side`.
    queues: [Queue<FRAMES, MTU>; 2],
    stats: [Cell<PipeStats>; 2],
}

const A: usize = 0;
const B: usize = 1;

impl<const FRAMES: usize, const MTU: usize> PipeLink<FRAMES, MTU> {
    /// Creates an empty link.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::PipeLink;
    ///
    /// let link: PipeLink<8, 1514> = PipeLink::new();
    /// let (_a, _b) = link.split();
    /// ```
    pub const fn new() -> Self {
        PipeLink {
            queues: [RefCell::new(Deque::new()), RefCell::new(Deque::new())],
            stats: [Cell::new(PipeStats::ZERO), Cell::new(PipeStats::ZERO)],
        }
    }

    /// Returns the two ends of the link: frames sent on the first arrive at
    /// the second and vice versa.
    ///
    /// Calling `split` again yields further handles onto the same two ends
    /// (sharing queues and counters), which is harmless but rarely useful.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::PipeLink;
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (a, b) = link.split();
    /// assert_eq!(a.rx_pending() + b.rx_pending(), 0);
    /// ```
    pub fn split(&self) -> (PipeDevice<'_, FRAMES, MTU>, PipeDevice<'_, FRAMES, MTU>) {
        (
            PipeDevice {
                link: self,
                side: A,
            },
            PipeDevice {
                link: self,
                side: B,
            },
        )
    }

    fn update_stats(&self, side: usize, f: impl FnOnce(&mut PipeStats)) {
        let mut stats = self.stats[side].get();
        f(&mut stats);
        self.stats[side].set(stats);
    }

    fn pending(&self, side: usize) -> usize {
        // A failed borrow can only mean a token is mid-consume on this same
        // thread; reporting 0 then is better than panicking.
        self.queues[side].try_borrow().map_or(0, |q| q.len())
    }

    /// Queues `frame` for `to` and updates the sender's counters.
    fn deliver(&self, to: usize, frame: Frame<MTU>) {
        let from = 1 - to;
        let len = frame.len() as u64;
        let delivered = match self.queues[to].try_borrow_mut() {
            Ok(mut queue) => queue.push_back(frame).is_ok(),
            Err(_) => false,
        };
        self.update_stats(from, |s| {
            if delivered {
                s.tx_frames += 1;
                s.tx_bytes += len;
            } else {
                s.tx_dropped += 1;
            }
        });
        #[cfg(feature = "std")]
        if !delivered {
            log::debug!("pipe: peer queue full, dropped a {len}-byte frame");
        }
    }
}

impl<const FRAMES: usize, const MTU: usize> Default for PipeLink<FRAMES, MTU> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const FRAMES: usize, const MTU: usize> fmt::Debug for PipeLink<FRAMES, MTU> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeLink")
            .field("frames", &FRAMES)
            .field("mtu", &MTU)
            .field("pending_a", &self.pending(A))
            .field("pending_b", &self.pending(B))
            .field("stats_a", &self.stats[A].get())
            .field("stats_b", &self.stats[B].get())
            .finish()
    }
}

/// One end of a [`PipeLink`]; implements [`smoltcp::phy::Device`].
///
/// # Example
///
/// ```
/// use smoltcp::phy::{Device, Medium};
/// use ustack_drivers::PipeLink;
///
/// let link = PipeLink::<8, 1514>::new();
/// let (a, _b) = link.split();
/// let caps = a.capabilities();
/// assert_eq!(caps.medium, Medium::Ethernet);
/// assert_eq!(caps.max_transmission_unit, 1514);
/// ```
pub struct PipeDevice<'a, const FRAMES: usize, const MTU: usize> {
    link: &'a PipeLink<FRAMES, MTU>,
    side: usize,
}

impl<const FRAMES: usize, const MTU: usize> PipeDevice<'_, FRAMES, MTU> {
    /// Counters of this end.
    ///
    /// # Example
    ///
    /// ```
    /// use smoltcp::phy::{Device, TxToken};
    /// use smoltcp::time::Instant;
    /// use ustack_drivers::PipeLink;
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (mut a, b) = link.split();
    /// a.transmit(Instant::ZERO).unwrap().consume(60, |_| ());
    /// assert_eq!(a.stats().tx_frames, 1);
    /// assert_eq!(b.stats().rx_frames, 0); // not received yet
    /// ```
    pub fn stats(&self) -> PipeStats {
        self.link.stats[self.side].get()
    }

    /// Number of frames waiting to be received by this end. Handy for "poll
    /// both stacks until the link is idle" loops.
    ///
    /// # Example
    ///
    /// ```
    /// use smoltcp::phy::{Device, TxToken};
    /// use smoltcp::time::Instant;
    /// use ustack_drivers::PipeLink;
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (mut a, b) = link.split();
    /// a.transmit(Instant::ZERO).unwrap().consume(60, |_| ());
    /// assert_eq!(b.rx_pending(), 1);
    /// ```
    pub fn rx_pending(&self) -> usize {
        self.link.pending(self.side)
    }
}

impl<const FRAMES: usize, const MTU: usize> fmt::Debug for PipeDevice<'_, FRAMES, MTU> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeDevice")
            .field("side", &if self.side == A { "a" } else { "b" })
            .field("rx_pending", &self.rx_pending())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<const FRAMES: usize, const MTU: usize> Device for PipeDevice<'_, FRAMES, MTU> {
    type RxToken<'t>
        = PipeRxToken<MTU>
    where
        Self: 't;
    type TxToken<'t>
        = PipeTxToken<'t, FRAMES, MTU>
    where
        Self: 't;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.link.queues[self.side]
            .try_borrow_mut()
            .ok()?
            .pop_front()?;
        let len = frame.len() as u64;
        self.link.update_stats(self.side, |s| {
            s.rx_frames += 1;
            s.rx_bytes += len;
        });
        let tx = PipeTxToken {
            link: self.link,
            peer: 1 - self.side,
        };
        Some((PipeRxToken { frame }, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let peer = 1 - self.side;
        let full = self.link.queues[peer]
            .try_borrow()
            .map_or(true, |q| q.is_full());
        if full {
            self.link.update_stats(self.side, |s| s.tx_full += 1);
            return None;
        }
        Some(PipeTxToken {
            link: self.link,
            peer,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// Receive token of a [`PipeDevice`]: owns the frame taken off the queue.
pub struct PipeRxToken<const MTU: usize> {
    frame: Frame<MTU>,
}

impl<const MTU: usize> phy::RxToken for PipeRxToken<MTU> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.frame)
    }
}

impl<const MTU: usize> fmt::Debug for PipeRxToken<MTU> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeRxToken")
            .field("len", &self.frame.len())
            .finish()
    }
}

/// Transmit token of a [`PipeDevice`]: builds the frame, then queues it for
/// the peer.
pub struct PipeTxToken<'a, const FRAMES: usize, const MTU: usize> {
    link: &'a PipeLink<FRAMES, MTU>,
    peer: usize,
}

impl<const FRAMES: usize, const MTU: usize> phy::TxToken for PipeTxToken<'_, FRAMES, MTU> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame: Frame<MTU> = Vec::new();
        if frame.resize(len, 0).is_ok() {
            // The frame is built outside the queue so that no RefCell borrow
            // is held while smoltcp's closure runs.
            let result = f(&mut frame);
            self.link.deliver(self.peer, frame);
            return result;
        }
        // smoltcp never asks for more than `max_transmission_unit`; if some
        // other caller does, the frame cannot be carried, so count it as lost.
        self.link.update_stats(1 - self.peer, |s| s.tx_dropped += 1);
        oversized(len, f)
    }
}

#[cfg(feature = "std")]
fn oversized<R, F: FnOnce(&mut [u8]) -> R>(len: usize, f: F) -> R {
    log::warn!("pipe: dropped a {len}-byte frame larger than the link MTU; raise the PipeLink MTU parameter");
    f(&mut std::vec![0; len])
}

#[cfg(not(feature = "std"))]
fn oversized<R, F: FnOnce(&mut [u8]) -> R>(_len: usize, f: F) -> R {
    // Without an allocator there is no buffer of the requested size to offer.
    // smoltcp never gets here (it respects `max_transmission_unit`); any other
    // caller sees an empty buffer and the frame is already counted as dropped.
    f(&mut [])
}

impl<const FRAMES: usize, const MTU: usize> fmt::Debug for PipeTxToken<'_, FRAMES, MTU> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeTxToken")
            .field("to", &if self.peer == A { "a" } else { "b" })
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{RxToken, TxToken};
    use std::vec::Vec as StdVec;

    const T: Instant = Instant::ZERO;

    fn send<const F: usize, const M: usize>(dev: &mut PipeDevice<'_, F, M>, data: &[u8]) -> bool {
        match dev.transmit(T) {
            Some(tx) => {
                tx.consume(data.len(), |buf| buf.copy_from_slice(data));
                true
            }
            None => false,
        }
    }

    fn recv<const F: usize, const M: usize>(dev: &mut PipeDevice<'_, F, M>) -> Option<StdVec<u8>> {
        let (rx, _tx) = dev.receive(T)?;
        Some(rx.consume(|f| f.to_vec()))
    }

    #[test]
    fn frames_cross_both_ways_in_order() {
        let link = PipeLink::<8, 64>::new();
        let (mut a, mut b) = link.split();
        for i in 0..5u8 {
            assert!(send(&mut a, &[i; 20]));
            assert!(send(&mut b, &[100 + i; 30]));
        }
        for i in 0..5u8 {
            assert_eq!(recv(&mut b).unwrap(), [i; 20]);
            assert_eq!(recv(&mut a).unwrap(), [100 + i; 30]);
        }
        assert!(recv(&mut a).is_none());
        assert!(recv(&mut b).is_none());
        let sa = a.stats();
        let sb = b.stats();
        assert_eq!(
            (sa.tx_frames, sa.tx_bytes, sa.rx_frames, sa.rx_bytes),
            (5, 100, 5, 150)
        );
        assert_eq!(
            (sb.tx_frames, sb.tx_bytes, sb.rx_frames, sb.rx_bytes),
            (5, 150, 5, 100)
        );
        assert_eq!(sa.tx_dropped + sb.tx_dropped + sa.tx_full + sb.tx_full, 0);
    }

    #[test]
    fn full_queue_refuses_transmit_without_losing_frames() {
        let link = PipeLink::<2, 64>::new();
        let (mut a, mut b) = link.split();
        assert!(send(&mut a, b"one"));
        assert!(send(&mut a, b"two"));
        assert!(
            !send(&mut a, b"three"),
            "transmit must refuse when the peer queue is full"
        );
        assert_eq!(a.stats().tx_full, 1);
        assert_eq!(a.stats().tx_dropped, 0);
        assert_eq!(recv(&mut b).unwrap(), b"one");
        assert!(send(&mut a, b"three"));
        assert_eq!(recv(&mut b).unwrap(), b"two");
        assert_eq!(recv(&mut b).unwrap(), b"three");
        assert_eq!(a.stats().tx_frames, 3);
    }

    #[test]
    fn reply_token_into_full_queue_is_counted_as_dropped() {
        let link = PipeLink::<1, 64>::new();
        let (mut a, mut b) = link.split();
        assert!(send(&mut a, b"ping"));
        assert!(send(&mut b, b"filler"));
        // b receives and replies through the paired token, but a's queue is full.
        let (rx, tx) = b.receive(T).unwrap();
        rx.consume(|f| assert_eq!(f, b"ping"));
        tx.consume(4, |buf| buf.copy_from_slice(b"pong"));
        assert_eq!(b.stats().tx_dropped, 1);
        assert_eq!(b.stats().tx_frames, 1);
        assert_eq!(recv(&mut a).unwrap(), b"filler");
        assert!(recv(&mut a).is_none());
    }

    #[test]
    fn zero_length_and_max_length_frames() {
        let link = PipeLink::<4, 1514>::new();
        let (mut a, mut b) = link.split();
        assert!(send(&mut a, &[]));
        let big: StdVec<u8> = (0..1514).map(|i| i as u8).collect();
        assert!(send(&mut a, &big));
        assert_eq!(recv(&mut b).unwrap(), StdVec::<u8>::new());
        assert_eq!(recv(&mut b).unwrap(), big);
        assert_eq!(a.stats().tx_bytes, 1514);
    }

    #[cfg(feature = "std")]
    #[test]
    fn oversized_frame_is_dropped_and_counted() {
        let link = PipeLink::<4, 64>::new();
        let (mut a, mut b) = link.split();
        let tx = a.transmit(T).unwrap();
        let seen = tx.consume(65, |buf| buf.len());
        assert_eq!(seen, 65);
        assert_eq!(a.stats().tx_dropped, 1);
        assert_eq!(a.stats().tx_frames, 0);
        assert!(recv(&mut b).is_none());
    }

    #[test]
    fn capabilities_report_ethernet_and_frame_size() {
        let link = PipeLink::<4, 9014>::new();
        let (a, _b) = link.split();
        let caps = a.capabilities();
        assert_eq!(caps.medium, Medium::Ethernet);
        assert_eq!(caps.max_transmission_unit, 9014);
        assert_eq!(caps.ip_mtu(), 9000);
    }

    #[test]
    fn const_construction() {
        let link = const { PipeLink::<2, 64>::new() };
        let (a, b) = link.split();
        assert_eq!(a.rx_pending() + b.rx_pending(), 0);
    }
}
