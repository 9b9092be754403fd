//! The poll loop around one smoltcp `Interface`.

use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{Device, Medium};
use smoltcp::socket::tcp;
#[cfg(feature = "udp")]
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpCidr};

use crate::config::Config;
use crate::device::{Budget, IngressState, TxCount, Wrapped, MAX_LISTENERS};
use crate::error::{Error, Result};
#[cfg(feature = "udp")]
use crate::event::UdpHandle;
use crate::event::{Event, Ready, TcpHandle, TcpListener, Token};
use crate::ready::{ReadyTable, RECV, SEND};
use crate::slot::{Cells, EventQueue, FreeList, Role, Slot, Slots, Storage, Table};
use crate::stats::Stats;
use crate::synhold::SynHold;
use crate::tcp::Listener;

/// A userspace TCP/IP stack: one smoltcp interface, its sockets, and the device under it.
///
/// The stack is sans-IO in time: the caller passes `now` into [`poll`](Self::poll) and asks
/// [`poll_delay`](Self::poll_delay) when to come back. Frames move only inside `poll`.
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use smoltcp::phy::Loopback;
/// use smoltcp::time::Instant;
/// use ustack::{Config, Stack};
///
/// let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
/// let mut stack = Stack::new(config, Loopback::new(smoltcp::phy::Medium::Ethernet), Instant::ZERO).unwrap();
/// let listener = stack.listen(7, 4).unwrap();
/// stack.poll(Instant::ZERO);
/// assert_eq!(stack.accept(listener), Err(ustack::Error::WouldBlock));
/// # }
/// ```
pub struct Stack<'a, D: Device> {
    pub(crate) iface: Interface,
    pub(crate) device: D,
    pub(crate) sockets: SocketSet<'a>,
    pub(crate) slots: Slots<'a>,
    cells: Cells<'a>,
    pub(crate) listeners: [Option<Listener>; MAX_LISTENERS],
    pub(crate) ingress: IngressState<'a>,
    pub(crate) txc: TxCount,
    pub(crate) config: Config,
    pub(crate) empty: FreeList,
    pub(crate) free_tcp: FreeList,
    #[cfg(feature = "udp")]
    pub(crate) free_udp: FreeList,
    pub(crate) events: EventQueue,
    pub(crate) next_port: u16,
    pub(crate) order: u32,
    pub(crate) listener_gen: u16,
    pub(crate) owned: bool,
    /// Called on the device when a poll ends; see [`Stack::set_flush`].
    flush: Option<fn(&mut D)>,
}

/// The stack's per-socket tables and SYN hold: lent by the caller or allocated.
struct Tables<'a> {
    sockets: SocketSet<'a>,
    slots: Slots<'a>,
    cells: Cells<'a>,
    stash: SynHold<'a>,
    /// Allocated by the stack, which may then add sockets itself.
    owned: bool,
}

impl<'a, D: Device> Stack<'a, D> {
    /// A stack that allocates sockets and buffers on demand, up to `config.max_sockets`.
    #[cfg(feature = "alloc")]
    pub fn new(config: Config, device: D, now: Instant) -> Result<Self> {
        use alloc::vec::Vec;
        if config.max_sockets == 0 || config.max_sockets >= usize::from(crate::slot::NONE) {
            return Err(Error::InvalidInput(
                "max_sockets must be between 1 and 65534",
            ));
        }
        let n = config.max_sockets + 1;
        let cells: alloc::sync::Arc<[crate::ready::ReadyCell]> =
            (0..n).map(|_| crate::ready::ReadyCell::NEW).collect();
        let slots = alloc::vec![Slot::EMPTY; n];
        let syns = alloc::vec![crate::HeldSyn::EMPTY; crate::SYN_STASH_FRAMES];
        let tables = Tables {
            sockets: SocketSet::new(Vec::new()),
            slots: Table::Owned(slots),
            cells: Cells::Owned(cells),
            stash: SynHold::new(Table::Owned(syns)),
            owned: true,
        };
        Self::build(config, device, tables, now)
    }

    /// A stack over caller-provided storage: no heap needed. See [`Storage`].
    pub fn with_storage(
        config: Config,
        device: D,
        storage: Storage<'a>,
        now: Instant,
    ) -> Result<Self> {
        let n = storage.slots.len();
        if n < 2 || storage.sockets.len() != n || storage.cells.len() != n {
            return Err(Error::InvalidInput(
                "storage slices must share one length of at least 2",
            ));
        }
        if n >= usize::from(crate::slot::NONE) {
            return Err(Error::InvalidInput("storage holds more than 65534 sockets"));
        }
        for s in storage.slots.iter_mut() {
            *s = Slot::EMPTY;
        }
        let sockets = SocketSet::new(storage.sockets);
        let tables = Tables {
            sockets,
            slots: Table::Borrowed(storage.slots),
            cells: Cells::Borrowed(storage.cells),
            stash: SynHold::new(Table::Borrowed(storage.syn_hold)),
            owned: false,
        };
        Self::build(config, device, tables, now)
    }

    fn build(config: Config, mut device: D, tables: Tables<'a>, now: Instant) -> Result<Self> {
        let Tables {
            sockets,
            slots,
            cells,
            stash,
            owned,
        } = tables;
        if !config.mac.is_unicast() {
            return Err(Error::InvalidInput(
                "the MAC address must be unicast (first octet even)",
            ));
        }
        if device.capabilities().medium != Medium::Ethernet {
            return Err(Error::InvalidInput("ustack drives Ethernet devices only"));
        }
        ReadyTable::init(&cells);
        let mut ingress = IngressState::new(config.syn_hold, config.mac.0, stash);
        ingress.max_rx_frame = config.max_rx_frame;
        let txc = TxCount::default();
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(config.mac));
        iface_config.random_seed = config.random_seed;
        let mut iface = {
            let mut wrapped = Wrapped::new(&mut device, &mut ingress, &txc, &[], now);
            Interface::new(iface_config, &mut wrapped, now)
        };
        let mut addr_err = None;
        iface.update_ip_addrs(|addrs| {
            if addrs.push(IpCidr::Ipv4(config.ipv4)).is_err() {
                addr_err = Some(());
            }
            #[cfg(feature = "ipv6")]
            if let Some(v6) = config.ipv6 {
                if addrs.push(IpCidr::Ipv6(v6)).is_err() {
                    addr_err = Some(());
                }
            }
        });
        if addr_err.is_some() {
            return Err(Error::InvalidInput("too many interface addresses"));
        }
        if let Some(gw) = config.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| Error::InvalidInput("route table full"))?;
        }
        let mut empty = FreeList::new();
        let mut slots = slots;
        // The last slot has no readiness cell (cell 0 heads the list), so it is never used.
        for i in (0..slots.len() - 1).rev() {
            empty.push(&mut slots, i);
        }
        let seed = config.random_seed;
        Ok(Stack {
            iface,
            device,
            sockets,
            slots,
            cells,
            listeners: Default::default(),
            ingress,
            txc,
            next_port: 49152 + (seed % 16384) as u16,
            config,
            empty,
            free_tcp: FreeList::new(),
            #[cfg(feature = "udp")]
            free_udp: FreeList::new(),
            events: EventQueue::new(),
            order: 0,
            listener_gen: 0,
            owned,
            flush: None,
        })
    }

    /// Does all the work that is due: reads every frame the device has ready, runs timers,
    /// transmits what the sockets queued, then records which sockets changed.
    /// Returns whether anything may have changed; take the changes with
    /// [`next_event`](Self::next_event).
    pub fn poll(&mut self, now: Instant) -> bool {
        self.refresh_budgets();
        if self.ingress.addrs_stale {
            self.ingress.refresh_addrs(self.iface.ip_addrs());
        }
        let result = {
            let mut wrapped = Wrapped::new(
                &mut self.device,
                &mut self.ingress,
                &self.txc,
                &self.slots,
                now,
            );
            self.iface.poll(now, &mut wrapped, &mut self.sockets)
        };
        if let Some(flush) = self.flush {
            flush(&mut self.device);
        }
        #[cfg(feature = "udp")]
        self.deliver_icmp_errors();
        let stats = &mut self.ingress.stats;
        stats.tx_frames = self.txc.frames.get();
        stats.tx_bytes = self.txc.bytes.get();
        let woken = self.drain();
        self.rearm_all();
        result == PollResult::SocketStateChanged || woken || !self.events.is_empty()
    }

    /// How long the caller may wait before the next [`poll`](Self::poll), if no frame
    /// arrives. `None` means: only when a frame arrives or a socket is used.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        if !self.events.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut delay = self.iface.poll_delay(now, &self.sockets);
        if let Some(deadline) = self.ingress.stash_deadline() {
            self.refresh_budgets();
            let room = self.ingress.budgets.iter().any(|b| b.armed > 0);
            let d = if room || deadline <= now {
                Duration::ZERO
            } else {
                deadline - now
            };
            delay = Some(delay.map_or(d, |x| x.min(d)));
        }
        delay
    }

    /// The next socket with work, oldest first. Listeners come before connections.
    pub fn next_event(&mut self) -> Option<Event> {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if let Some(l) = l {
                if core::mem::take(&mut l.notified) {
                    let token = Token::Listener(TcpListener {
                        idx: i as u8,
                        gen: l.gen,
                    });
                    return Some(Event {
                        token,
                        ready: Ready::ACCEPTABLE,
                    });
                }
            }
        }
        while let Some((i, bits)) = self.events.pop(&mut self.slots) {
            let s = &self.slots[i];
            if s.user_closed || bits == 0 {
                continue;
            }
            let (slot, gen) = (i as u16, s.gen);
            let token = match s.role {
                Role::Stream => Token::Tcp(TcpHandle { slot, gen }),
                #[cfg(feature = "udp")]
                Role::Udp => Token::Udp(UdpHandle { slot, gen }),
                _ => continue,
            };
            return Some(Event {
                token,
                ready: Ready::from_bits(bits),
            });
        }
        None
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.ingress.stats
    }

    /// Has every [`poll`](Self::poll) end by calling `flush` on the device.
    ///
    /// smoltcp hands a device one frame per transmit token. A device that batches its
    /// writes (one `sendmmsg` or ring kick for everything a poll produced, like
    /// `ustack_drivers::AfPacket`) queues those frames and needs to hear when the poll is
    /// over; this is that signal. Devices that write each frame at once need no flush.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] {
    /// use smoltcp::phy::{Loopback, Medium};
    /// use smoltcp::time::Instant;
    /// use ustack::{Config, Stack};
    ///
    /// fn flush(_device: &mut Loopback) { /* write out queued frames */ }
    ///
    /// let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// stack.set_flush(flush);
    /// stack.poll(Instant::ZERO); // ends with flush(&mut device)
    /// # }
    /// ```
    pub fn set_flush(&mut self, flush: fn(&mut D)) {
        self.flush = Some(flush);
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (for injecting or inspecting frames).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Takes the device back, dropping the stack and its sockets.
    pub fn into_device(self) -> D {
        self.device
    }

    /// The smoltcp interface, for settings ustack does not wrap.
    pub fn interface(&mut self) -> &mut Interface {
        // The caller may change the addresses that ICMP errors are checked against.
        self.ingress.addrs_stale = true;
        &mut self.iface
    }

    /// The configuration the stack was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn ready(&self) -> ReadyTable<'_> {
        ReadyTable::view(&self.cells)
    }

    pub(crate) fn register_wakers(&mut self, i: usize) {
        let Some(h) = self.slots[i].handle else {
            return;
        };
        let (rw, sw) = self.ready().wakers(i);
        match self.slots[i].role {
            Role::Stream | Role::Member(_) => {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                s.register_recv_waker(&rw);
                s.register_send_waker(&sw);
            }
            #[cfg(feature = "udp")]
            Role::Udp => {
                let s = self.sockets.get_mut::<udp::Socket>(h);
                s.register_recv_waker(&rw);
                s.register_send_waker(&sw);
            }
            _ => {}
        }
    }

    /// Queues a user event for slot `i`, as if smoltcp had reported it.
    pub(crate) fn push_event(&mut self, i: usize, ready: Ready) {
        self.events.push(&mut self.slots, i, ready.bits());
    }

    /// Marks a slot for the next drain even if smoltcp does not wake it.
    pub(crate) fn touch(&self, i: usize) {
        self.ready().mark(i, RECV | SEND);
    }

    fn drain(&mut self) -> bool {
        let mut any = false;
        while let Some((i, bits)) = self.ready().pop() {
            any = true;
            match self.slots[i].role {
                Role::Stream => self.on_stream(i, bits),
                Role::Member(l) => self.on_member(i, usize::from(l)),
                #[cfg(feature = "udp")]
                Role::Udp => self.on_udp(i, bits),
                _ => {}
            }
        }
        any
    }

    fn refresh_budgets(&mut self) {
        let mut budgets = heapless::Vec::new();
        for l in self.listeners.iter().flatten() {
            let armed = l
                .members
                .iter()
                .filter(|&&m| self.socket_state(usize::from(m)) == Some(tcp::State::Listen))
                .count();
            let _ = budgets.push(Budget {
                port: l.port,
                armed: armed as u16,
            });
        }
        self.ingress.budgets = budgets;
    }

    pub(crate) fn socket_state(&self, i: usize) -> Option<tcp::State> {
        let h = self.slots[i].handle?;
        Some(self.sockets.get::<tcp::Socket>(h).state())
    }

    pub(crate) fn handle(&self, i: usize) -> SocketHandle {
        // Every caller checked the role, and every non-empty role has a handle.
        self.slots[i].handle.expect("slot with a role has a socket")
    }

    /// Gives slot `i` back to its pool, or frees it entirely.
    pub(crate) fn recycle(&mut self, i: usize) {
        self.ready().clear(i);
        let role = self.slots[i].role;
        let h = self.slots[i].handle;
        if role == Role::Stream {
            self.txc.sent(self.slots[i].local_port);
        }
        match (role, h) {
            (Role::Stream | Role::Member(_), Some(h)) => {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                if s.state() != tcp::State::Closed {
                    // Only reachable with the heap: a TIME-WAIT socket is dropped, not reset.
                    self.sockets.remove(h);
                    self.slots[i].handle = None;
                    self.slots[i].reset(Role::Empty);
                    self.empty.push(&mut self.slots, i);
                    return;
                }
                self.slots[i].reset(Role::FreeTcp);
                self.free_tcp.push(&mut self.slots, i);
            }
            #[cfg(feature = "udp")]
            (Role::Udp, Some(h)) => {
                self.forget_peer(i);
                self.sockets.get_mut::<udp::Socket>(h).close();
                self.slots[i].reset(Role::FreeUdp);
                self.free_udp.push(&mut self.slots, i);
            }
            _ => {}
        }
    }

    /// Takes an empty slot for a new socket, if the table has room.
    pub(crate) fn take_empty(&mut self) -> Result<usize> {
        self.empty.pop(&mut self.slots).ok_or(Error::NoBufferSpace)
    }

    /// The slot behind a handle, if it is still the socket the handle was issued for.
    pub(crate) fn live_slot(&self, slot: u16, gen: u16, role: Role) -> Result<usize> {
        let i = usize::from(slot);
        match self.slots.get(i) {
            Some(s) if s.gen == gen && s.role == role && !s.user_closed => Ok(i),
            Some(_) => Err(Error::Closed),
            None => Err(Error::InvalidInput("handle does not belong to this stack")),
        }
    }

    /// The next port of the ephemeral range (49152..=65535) that `in_use` does not claim.
    pub(crate) fn ephemeral_port(&mut self, in_use: impl Fn(&Self, u16) -> bool) -> Result<u16> {
        const FIRST: u16 = 49152;
        for _ in 0..=(u16::MAX - FIRST) {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { FIRST } else { p + 1 };
            if !in_use(self, p) {
                return Ok(p);
            }
        }
        Err(Error::AddrInUse)
    }

    pub(crate) fn owns_heap(&self) -> bool {
        self.owned
    }
}
