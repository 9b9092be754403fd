//! The device wrapper every frame passes through on its way into and out of smoltcp.
//!
//! It counts frames, runs [`classify`](crate::ingress::classify) on each one, hands bad frames
//! to smoltcp as empty buffers (which it discards), holds SYNs that find their listener's
//! backlog full, remembers recent resets so a closed socket can say why it closed, drops
//! datagrams that a connected UDP socket must not see, and notes ICMP errors for the
//! connected UDP socket they concern.

use core::cell::Cell;

use heapless::{Deque, Vec};
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

#[cfg(feature = "udp")]
use crate::ingress::Unreachable;
use crate::ingress::{classify_with, outgoing_syn_port, Facts, TcpInfo, Verdict};
use crate::slot::Slot;
use crate::stats::Stats;
use crate::synhold::{HeldSyn, SynHold};
#[cfg(feature = "udp")]
use crate::udp::{foreign_to_connected, icmp_target};

/// Listeners a stack can have at once.
pub const MAX_LISTENERS: usize = 16;
/// SYN frames that can wait for backlog room at once in a stack from
/// [`Stack::new`](crate::Stack::new); with caller storage, as many as
/// [`Storage::syn_hold`](crate::Storage::syn_hold) has room for.
pub const SYN_STASH_FRAMES: usize = 64;
/// Largest SYN frame that can wait; bigger ones (SYN with data) are reset when the backlog is full.
pub const SYN_STASH_FRAME_LEN: usize = 128;
const RST_MEMORY: usize = 16;
/// ICMP errors for connected UDP sockets that one poll can collect.
#[cfg(feature = "udp")]
const ICMP_ERROR_MEMORY: usize = 16;
/// Interface addresses that ICMP quotes are checked against.
const MAX_ADDRS: usize = 8;

/// How many more SYNs a listening port can absorb during this poll.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub port: u16,
    pub armed: u16,
}

/// A reset seen on the wire, addressed to one of our ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RstSeen {
    pub local_port: u16,
    pub remote: IpEndpoint,
}

/// An ICMP error that matched a connected UDP socket, waiting to be delivered after the poll.
#[cfg(feature = "udp")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct IcmpHit {
    pub slot: u16,
    pub gen: u16,
    pub kind: Unreachable,
}

/// Ingress state that survives between polls.
#[derive(Default)]
pub(crate) struct IngressState<'a> {
    pub stats: Stats,
    pub budgets: Vec<Budget, MAX_LISTENERS>,
    stash: SynHold<'a>,
    resets: Deque<RstSeen, RST_MEMORY>,
    pub syn_hold: Duration,
    /// Connected UDP sockets; while 0, UDP frames skip the connected-socket checks.
    #[cfg_attr(not(feature = "udp"), allow(dead_code))]
    pub udp_connected: usize,
    /// Our interface addresses, copied before the first poll and after `Stack::interface`.
    addrs: Vec<IpAddress, MAX_ADDRS>,
    pub addrs_stale: bool,
    #[cfg(feature = "udp")]
    pub icmp_hits: Deque<IcmpHit, ICMP_ERROR_MEMORY>,
    /// Our MAC, which an ICMP error's frame must be sent to (or be broadcast or multicast).
    #[cfg_attr(not(feature = "udp"), allow(dead_code))]
    mac: [u8; 6],
    /// `Config::max_rx_frame`.
    pub max_rx_frame: usize,
}

/// Whether smoltcp would take the frame as ours at the link layer.
#[cfg(feature = "udp")]
fn to_our_mac(frame: &[u8], mac: &[u8; 6]) -> bool {
    const GROUP_BIT: u8 = 1;
    frame.get(..6) == Some(&mac[..]) || frame.first().is_some_and(|b| b & GROUP_BIT != 0)
}

impl<'a> IngressState<'a> {
    pub(crate) fn new(syn_hold: Duration, mac: [u8; 6], stash: SynHold<'a>) -> Self {
        IngressState {
            syn_hold,
            mac,
            stash,
            addrs_stale: true,
            ..Default::default()
        }
    }

    /// Whether a reset from `remote` to `local_port` arrived recently, forgetting it if so.
    pub(crate) fn take_reset(&mut self, local_port: u16, remote: IpEndpoint) -> bool {
        let want = RstSeen { local_port, remote };
        let n = self.resets.len();
        let mut found = false;
        for _ in 0..n {
            if let Some(r) = self.resets.pop_front() {
                if r == want && !found {
                    found = true;
                } else {
                    let _ = self.resets.push_back(r);
                }
            }
        }
        found
    }

    /// Copies the interface addresses that ICMP quotes must name as their source.
    pub(crate) fn refresh_addrs(&mut self, cidrs: &[IpCidr]) {
        self.addrs_stale = false;
        self.addrs.clear();
        for c in cidrs {
            let _ = self.addrs.push(c.address());
        }
    }

    /// When a held SYN must next be looked at.
    pub(crate) fn stash_deadline(&self) -> Option<Instant> {
        self.stash.front().map(|h| h.since + self.syn_hold)
    }

    fn budget(&mut self, port: u16) -> Option<&mut Budget> {
        self.budgets.iter_mut().find(|b| b.port == port)
    }

    /// A held SYN that may go to smoltcp now: its port has room, or it waited long enough.
    fn release(&mut self, now: Instant) -> Option<HeldSyn> {
        let hold = self.syn_hold;
        let idx = self.stash.iter().position(|h| {
            now >= h.since + hold || self.budgets.iter().any(|b| b.port == h.port && b.armed > 0)
        })?;
        let mut found = None;
        for i in 0..self.stash.len() {
            let h = self.stash.pop_front()?;
            if i == idx {
                found = Some(h);
            } else {
                let _ = self.stash.push_back(h);
            }
        }
        found
    }

    /// Decides what smoltcp gets for this frame; returns false to hand it an empty buffer.
    fn admit(&mut self, frame: &[u8], cx: &Ctx<'_>, replay: bool) -> bool {
        match classify_with(frame, cx.caps.max_len, &cx.caps.checks) {
            Verdict::Drop(reason) => {
                self.stats.count_drop(reason);
                #[cfg(feature = "log")]
                log::debug!("dropped a {}-byte frame: {:?}", frame.len(), reason);
                false
            }
            Verdict::Unsupported => {
                self.stats.rx_unsupported += 1;
                true
            }
            Verdict::Pass(Facts::Other) => true,
            Verdict::Pass(Facts::Tcp(t)) => self.admit_tcp(frame, t, cx, replay),
            #[cfg(not(feature = "udp"))]
            Verdict::Pass(Facts::Udp(_) | Facts::IcmpError(_)) => true,
            #[cfg(feature = "udp")]
            Verdict::Pass(Facts::Udp(u)) => {
                if self.udp_connected > 0 && foreign_to_connected(cx.slots, &u) {
                    self.stats.udp_foreign_dropped += 1;
                    return false;
                }
                true
            }
            #[cfg(feature = "udp")]
            Verdict::Pass(Facts::IcmpError(e)) => {
                // smoltcp would discard a frame for another host; so must its ICMP error.
                let for_us = || self.addrs.contains(&e.to) && to_our_mac(frame, &self.mac);
                if self.udp_connected == 0 || !self.addrs.contains(&e.local.addr) || !for_us() {
                    return true;
                }
                if let Some((slot, gen)) = icmp_target(cx.slots, &e) {
                    if self.icmp_hits.is_full() {
                        self.icmp_hits.pop_front();
                    }
                    let _ = self.icmp_hits.push_back(IcmpHit {
                        slot,
                        gen,
                        kind: e.kind,
                    });
                }
                true
            }
        }
    }

    fn admit_tcp(&mut self, frame: &[u8], t: TcpInfo, cx: &Ctx<'_>, replay: bool) -> bool {
        if t.rst {
            if self.resets.is_full() {
                self.resets.pop_front();
            }
            let remote = IpEndpoint::new(t.src, t.src_port);
            let _ = self.resets.push_back(RstSeen {
                local_port: t.dst_port,
                remote,
            });
        }
        if (t.syn || t.syn_ack) && cx.tx.unsent(t.dst_port) {
            self.stats.tcp_syn_before_connect += 1;
            return false;
        }
        if !t.syn {
            return true;
        }
        let hold = self.syn_hold;
        let Some(b) = self.budget(t.dst_port) else {
            return true;
        };
        if b.armed > 0 {
            b.armed -= 1;
            return true;
        }
        let port = b.port;
        if !replay && hold > Duration::ZERO && !self.stash.is_full() {
            if let Ok(frame) = Vec::from_slice(frame) {
                let _ = self.stash.push_back(HeldSyn {
                    since: cx.now,
                    port,
                    frame,
                });
                self.stats.tcp_syn_deferred += 1;
                return false;
            }
        }
        // smoltcp finds no listening socket and answers with a reset.
        self.stats.tcp_syn_backlog_full += 1;
        #[cfg(feature = "log")]
        log::debug!("backlog of port {port} full: resetting SYN from {}", t.src);
        true
    }
}

/// What admitting a frame needs besides the ingress state, fixed for one poll.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    caps: &'a Caps,
    tx: &'a TxCount,
    now: Instant,
    /// Connected UDP sockets' peers, which filter datagrams and ICMP errors.
    #[cfg_attr(not(feature = "udp"), allow(dead_code))]
    slots: &'a [Slot],
}

/// Wraps the user's device for the duration of one poll.
pub(crate) struct Wrapped<'s, 'a, D> {
    inner: &'s mut D,
    state: &'s mut IngressState<'a>,
    tx: &'s TxCount,
    now: Instant,
    slots: &'s [Slot],
    /// Read once per poll rather than once per frame.
    caps: Caps,
}

impl<'s, 'a, D: Device> Wrapped<'s, 'a, D> {
    pub(crate) fn new(
        inner: &'s mut D,
        state: &'s mut IngressState<'a>,
        tx: &'s TxCount,
        slots: &'s [Slot],
        now: Instant,
    ) -> Self {
        let c = inner.capabilities();
        let caps = Caps {
            max_len: c.max_transmission_unit.max(state.max_rx_frame),
            checks: c.checksum,
        };
        Wrapped {
            inner,
            state,
            tx,
            now,
            slots,
            caps,
        }
    }
}

impl<'s, D: Device> Device for Wrapped<'_, 's, D> {
    type RxToken<'a>
        = Rx<'a, 's, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let cx = Ctx {
            caps: &self.caps,
            tx: self.tx,
            now: self.now,
            slots: self.slots,
        };
        let state = &mut *self.state;
        let counter = self.tx;
        if state.stash.front().is_some() {
            if let Some(held) = state.release(cx.now) {
                let Some(tx) = self.inner.transmit(ts) else {
                    // No room to answer: put it back, it will be released again next poll.
                    let _ = state.stash.push_front(held);
                    return None;
                };
                let rx = Rx::Held { held, state, cx };
                return Some((rx, Tx { inner: tx, counter }));
            }
        }
        let (rx, tx) = self.inner.receive(ts)?;
        let rx = Rx::Device {
            inner: rx,
            state,
            cx,
        };
        Some((rx, Tx { inner: tx, counter }))
    }

    fn transmit(&mut self, ts: Instant) -> Option<Self::TxToken<'_>> {
        let inner = self.inner.transmit(ts)?;
        Some(Tx {
            inner,
            counter: self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        // Ingress validation already verified every checksum smoltcp would.
        let c = &mut caps.checksum;
        for cs in [
            &mut c.ipv4,
            &mut c.tcp,
            &mut c.udp,
            &mut c.icmpv4,
            #[cfg(feature = "ipv6")]
            &mut c.icmpv6,
        ] {
            *cs = match *cs {
                Checksum::Both => Checksum::Tx,
                Checksum::Rx => Checksum::None,
                other => other,
            };
        }
        caps
    }
}

/// What ingress validation needs to know about the device.
#[derive(Clone)]
pub(crate) struct Caps {
    max_len: usize,
    checks: smoltcp::phy::ChecksumCapabilities,
}

/// Connections that may wait for their first SYN to leave (ARP pending) at once.
pub const MAX_UNSENT_CONNECTS: usize = 128;

/// Transmit-side state, shared by both tokens of a pair (hence cells).
pub(crate) struct TxCount {
    pub frames: Cell<u64>,
    pub bytes: Cell<u64>,
    /// Local ports of connections whose SYN has not left yet (0 = free entry).
    unsent: [Cell<u16>; MAX_UNSENT_CONNECTS],
    /// Entries in use, so the common case (none) skips parsing outgoing frames.
    waiting: Cell<usize>,
}

impl Default for TxCount {
    fn default() -> Self {
        TxCount {
            frames: Cell::new(0),
            bytes: Cell::new(0),
            unsent: core::array::from_fn(|_| Cell::new(0)),
            waiting: Cell::new(0),
        }
    }
}

impl TxCount {
    fn record(&self, frame: &[u8]) {
        self.frames.set(self.frames.get() + 1);
        self.bytes.set(self.bytes.get() + frame.len() as u64);
        if self.waiting.get() > 0 {
            if let Some(port) = outgoing_syn_port(frame) {
                self.sent(port);
            }
        }
    }

    /// Notes a connection on `port` whose SYN has not left; false when the table is full.
    pub(crate) fn connecting(&self, port: u16) -> bool {
        match self.unsent.iter().find(|p| p.get() == 0) {
            Some(free) => {
                free.set(port);
                self.waiting.set(self.waiting.get() + 1);
                true
            }
            None => false,
        }
    }

    /// The connection on `port` sent its SYN, or went away.
    pub(crate) fn sent(&self, port: u16) {
        if port == 0 {
            return; // 0 marks free entries, not a connection
        }
        for p in self.unsent.iter().filter(|p| p.get() == port) {
            p.set(0);
            self.waiting.set(self.waiting.get() - 1);
        }
    }

    /// Whether `port` belongs to a connection whose SYN has not left. smoltcp 0.14 panics in
    /// `poll_at` after such a socket takes a SYN or SYN-ACK (its window bookkeeping starts
    /// from an ACK it never sent), so those segments must not reach it.
    fn unsent(&self, port: u16) -> bool {
        port != 0 && self.waiting.get() > 0 && self.unsent.iter().any(|p| p.get() == port)
    }
}

pub(crate) enum Rx<'a, 's, T> {
    Device {
        inner: T,
        state: &'a mut IngressState<'s>,
        cx: Ctx<'a>,
    },
    Held {
        held: HeldSyn,
        state: &'a mut IngressState<'s>,
        cx: Ctx<'a>,
    },
}

impl<T: phy::RxToken> phy::RxToken for Rx<'_, '_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            Rx::Device { inner, state, cx } => inner.consume(|buf| {
                state.stats.rx_frames += 1;
                state.stats.rx_bytes += buf.len() as u64;
                if state.admit(buf, &cx, false) {
                    f(buf)
                } else {
                    f(&[])
                }
            }),
            Rx::Held { held, state, cx } => {
                if state.admit(&held.frame, &cx, true) {
                    f(&held.frame)
                } else {
                    f(&[])
                }
            }
        }
    }
}

pub(crate) struct Tx<'a, T> {
    inner: T,
    counter: &'a TxCount,
}

impl<T: phy::TxToken> phy::TxToken for Tx<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let counter = self.counter;
        self.inner.consume(len, |buf| {
            let r = f(buf);
            counter.record(buf);
            r
        })
    }
}
