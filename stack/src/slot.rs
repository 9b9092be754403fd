//! Per-socket bookkeeping that smoltcp does not keep, and the storage behind it.

use smoltcp::iface::{SocketHandle, SocketStorage};
use smoltcp::socket::tcp::State;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::error::Error;
use crate::ready::ReadyCell;
use crate::synhold::HeldSyn;

pub(crate) const NONE: u16 = u16::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "udp"), allow(dead_code))]
pub(crate) enum Role {
    /// No smoltcp socket behind this slot.
    Empty,
    /// A closed TCP socket waiting in the pool.
    FreeTcp,
    /// A closed UDP socket waiting in the pool.
    FreeUdp,
    /// A TCP connection the user holds a handle to.
    Stream,
    /// A socket armed or pending on listener `n`, not yet accepted.
    Member(u8),
    /// A bound UDP socket.
    Udp,
}

/// Bookkeeping for one socket. Part of the caller-provided storage in `no_std` builds.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub(crate) handle: Option<SocketHandle>,
    pub(crate) gen: u16,
    pub(crate) role: Role,
    pub(crate) prev: State,
    pub(crate) local_port: u16,
    pub(crate) remote: Option<IpEndpoint>,
    /// UDP: the source address a connected socket sends from, chosen once at connect.
    #[cfg_attr(not(feature = "udp"), allow(dead_code))]
    pub(crate) src: Option<IpAddress>,
    /// UDP: discard datagrams equal to the dial probe.
    #[cfg_attr(not(feature = "udp"), allow(dead_code))]
    pub(crate) drop_probe: bool,
    /// UDP: a datagram from the connected peer was seen (answers a dial probe).
    #[cfg_attr(not(feature = "udp"), allow(dead_code))]
    pub(crate) replied: bool,
    pub(crate) user_closed: bool,
    /// TCP: the application shut down or closed before the handshake finished; the FIN
    /// waits until it has (see `Stack::shutdown`).
    pub(crate) shut_pending: bool,
    pub(crate) error: Option<Error>,
    pub(crate) order: u32,
    pub(crate) next_free: u16,
    pub(crate) ev_bits: u8,
    pub(crate) ev_next: u16,
    pub(crate) ev_queued: bool,
}

impl Slot {
    /// An unused slot, for static storage.
    pub const EMPTY: Slot = Slot {
        handle: None,
        gen: 0,
        role: Role::Empty,
        prev: State::Closed,
        local_port: 0,
        remote: None,
        src: None,
        drop_probe: false,
        replied: false,
        user_closed: false,
        shut_pending: false,
        error: None,
        order: 0,
        next_free: NONE,
        ev_bits: 0,
        ev_next: NONE,
        ev_queued: false,
    };

    /// Makes the slot a fresh owner of its socket, invalidating old handles.
    ///
    /// The slot may still sit in the event queue: its links stay, or every slot queued
    /// behind it would be cut off and never get an event again. Its pending bits go, so
    /// the queued entry is skipped (or carries only the new owner's events).
    pub(crate) fn reset(&mut self, role: Role) {
        let (handle, gen) = (self.handle, self.gen.wrapping_add(1));
        let (ev_next, ev_queued) = (self.ev_next, self.ev_queued);
        *self = Slot::EMPTY;
        self.handle = handle;
        self.gen = gen;
        self.role = role;
        self.ev_next = ev_next;
        self.ev_queued = ev_queued;
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::EMPTY
    }
}

/// Caller-provided storage for a stack without a heap.
///
/// `sockets`, `slots` and `cells` must have the same length `n`; the stack then holds up to
/// `n - 1` sockets (one readiness cell heads the ready list). Sockets themselves are added
/// with [`Stack::add_tcp_socket`](crate::Stack::add_tcp_socket) and
/// [`Stack::add_udp_socket`](crate::Stack::add_udp_socket), with buffers the caller owns.
pub struct Storage<'a> {
    /// smoltcp's socket table.
    pub sockets: &'a mut [SocketStorage<'a>],
    /// ustack's per-socket bookkeeping.
    pub slots: &'a mut [Slot],
    /// Readiness cells, woken by smoltcp.
    pub cells: &'a [ReadyCell],
    /// Room for SYNs that wait while their listener's backlog is full
    /// ([`Config::syn_hold`](crate::Config::syn_hold)), any length: a SYN that finds it
    /// full is reset at once. About 140 bytes each.
    pub syn_hold: &'a mut [HeldSyn],
}

/// Fixed storage for `N - 1` sockets and `N` held SYNs, for `static` placement on firmware.
///
/// ```
/// use ustack::StaticStorage;
/// let mut storage: StaticStorage<'_, 9> = StaticStorage::new();
/// let s = storage.storage();
/// assert_eq!((s.slots.len(), s.syn_hold.len()), (9, 9));
/// ```
pub struct StaticStorage<'a, const N: usize> {
    sockets: [SocketStorage<'a>; N],
    slots: [Slot; N],
    cells: [ReadyCell; N],
    syn_hold: [HeldSyn; N],
}

impl<'a, const N: usize> StaticStorage<'a, N> {
    /// Empty storage.
    pub const fn new() -> Self {
        StaticStorage {
            sockets: [SocketStorage::EMPTY; N],
            slots: [Slot::EMPTY; N],
            cells: [ReadyCell::NEW; N],
            syn_hold: [HeldSyn::EMPTY; N],
        }
    }

    /// Borrows it as [`Storage`].
    pub fn storage(&'a mut self) -> Storage<'a> {
        Storage {
            sockets: &mut self.sockets,
            slots: &mut self.slots,
            cells: &self.cells,
            syn_hold: &mut self.syn_hold,
        }
    }
}

impl<const N: usize> Default for StaticStorage<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A table of per-socket records: lent by the caller (no heap) or owned (with `alloc`).
pub(crate) enum Table<'a, T> {
    Borrowed(&'a mut [T]),
    #[cfg(feature = "alloc")]
    Owned(alloc::vec::Vec<T>),
}

pub(crate) type Slots<'a> = Table<'a, Slot>;

impl<T> core::ops::Deref for Table<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Table::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Table::Owned(v) => v,
        }
    }
}

impl<T> core::ops::DerefMut for Table<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Table::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Table::Owned(v) => v,
        }
    }
}

/// Cells are only ever shared: wakers point into them, so no `&mut` may exist.
pub(crate) enum Cells<'a> {
    Borrowed(&'a [ReadyCell]),
    #[cfg(feature = "alloc")]
    Owned(alloc::sync::Arc<[ReadyCell]>),
}

impl core::ops::Deref for Cells<'_> {
    type Target = [ReadyCell];
    fn deref(&self) -> &[ReadyCell] {
        match self {
            Cells::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Cells::Owned(v) => v,
        }
    }
}

/// An intrusive stack of slot indices threaded through `Slot::next_free`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FreeList {
    head: u16,
}

impl FreeList {
    pub(crate) const fn new() -> Self {
        FreeList { head: NONE }
    }

    pub(crate) fn push(&mut self, slots: &mut [Slot], i: usize) {
        slots[i].next_free = self.head;
        self.head = i as u16;
    }

    pub(crate) fn pop(&mut self, slots: &mut [Slot]) -> Option<usize> {
        if self.head == NONE {
            return None;
        }
        let i = usize::from(self.head);
        self.head = slots[i].next_free;
        slots[i].next_free = NONE;
        Some(i)
    }
}

/// FIFO of slots with user-visible readiness, threaded through `Slot::ev_next`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventQueue {
    head: u16,
    tail: u16,
}

impl EventQueue {
    pub(crate) const fn new() -> Self {
        EventQueue {
            head: NONE,
            tail: NONE,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head == NONE
    }

    pub(crate) fn push(&mut self, slots: &mut [Slot], i: usize, bits: u8) {
        let s = &mut slots[i];
        s.ev_bits |= bits;
        if s.ev_queued {
            return;
        }
        s.ev_queued = true;
        s.ev_next = NONE;
        if self.tail == NONE {
            self.head = i as u16;
        } else {
            slots[usize::from(self.tail)].ev_next = i as u16;
        }
        self.tail = i as u16;
    }

    pub(crate) fn pop(&mut self, slots: &mut [Slot]) -> Option<(usize, u8)> {
        if self.head == NONE {
            return None;
        }
        let i = usize::from(self.head);
        let s = &mut slots[i];
        self.head = s.ev_next;
        if self.head == NONE {
            self.tail = NONE;
        }
        s.ev_queued = false;
        s.ev_next = NONE;
        Some((i, core::mem::take(&mut s.ev_bits)))
    }
}
