//! Readiness bookkeeping: which sockets smoltcp touched during a poll.
//!
//! Every socket slot owns a [`ReadyCell`]. Its wakers are registered with the smoltcp socket;
//! when smoltcp wakes one, the cell records the direction and pushes itself onto an intrusive
//! list headed by cell 0. After a poll the stack walks only that list, so the cost of a poll is
//! proportional to the sockets that have work, not to the sockets that exist.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use core::task::{RawWaker, RawWakerVTable, Waker};

/// smoltcp woke the socket's receive waker.
pub(crate) const RECV: u8 = 1;
/// smoltcp woke the socket's send waker.
pub(crate) const SEND: u8 = 2;

const NIL: u32 = u32::MAX;

/// Per-socket readiness state. Part of the caller-provided storage in `no_std` builds.
#[derive(Debug)]
pub struct ReadyCell {
    bits: AtomicU8,
    queued: AtomicBool,
    index: AtomicU32,
    next: AtomicU32,
}

impl ReadyCell {
    /// An unused cell, for static storage.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const NEW: ReadyCell = ReadyCell {
        bits: AtomicU8::new(0),
        queued: AtomicBool::new(false),
        index: AtomicU32::new(0),
        next: AtomicU32::new(NIL),
    };
}

impl Default for ReadyCell {
    fn default() -> Self {
        ReadyCell::NEW
    }
}

/// A view over the cells; cell 0 is the list head and slot `i` uses cell `i + 1`.
pub(crate) struct ReadyTable<'a> {
    cells: &'a [ReadyCell],
}

impl<'a> ReadyTable<'a> {
    /// A view over cells that [`init`](Self::init) prepared.
    pub(crate) fn view(cells: &'a [ReadyCell]) -> Self {
        ReadyTable { cells }
    }

    /// Resets the cells and returns a view.
    pub(crate) fn init(cells: &'a [ReadyCell]) -> Self {
        for (i, c) in cells.iter().enumerate() {
            c.index.store(i as u32, Ordering::Relaxed);
            c.bits.store(0, Ordering::Relaxed);
            c.queued.store(false, Ordering::Relaxed);
            c.next.store(NIL, Ordering::Relaxed);
        }
        if let Some(head) = cells.first() {
            head.queued.store(true, Ordering::Relaxed);
        }
        ReadyTable { cells }
    }

    /// Wakers for slot `slot`: (receive, send).
    pub(crate) fn wakers(&self, slot: usize) -> (Waker, Waker) {
        let i = slot + 1;
        assert!(i < self.cells.len());
        // Derived from the slice pointer so that the waker may step back to cell 0.
        let p = self.cells.as_ptr().wrapping_add(i) as *const ();
        // SAFETY: the cells outlive every socket that holds these wakers (the stack drops its
        // sockets before its storage), and the vtables only touch atomics through `&`.
        unsafe {
            (
                Waker::from_raw(RawWaker::new(p, &RECV_VTABLE)),
                Waker::from_raw(RawWaker::new(p, &SEND_VTABLE)),
            )
        }
    }

    /// Pops one slot that was woken, with the directions it was woken for.
    pub(crate) fn pop(&self) -> Option<(usize, u8)> {
        let head = &self.cells[0];
        loop {
            let first = head.next.load(Ordering::Acquire);
            if first == NIL {
                return None;
            }
            let cell = self.cells.get(first as usize)?;
            let after = cell.next.load(Ordering::Acquire);
            if head
                .next
                .compare_exchange(first, after, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                cell.queued.store(false, Ordering::Release);
                let bits = cell.bits.swap(0, Ordering::AcqRel);
                return Some((first as usize - 1, bits));
            }
        }
    }

    /// Forgets anything recorded for a slot that is being recycled.
    pub(crate) fn clear(&self, slot: usize) {
        self.cells[slot + 1].bits.store(0, Ordering::Release);
    }

    /// Marks a slot ready by hand, as if smoltcp had woken it.
    pub(crate) fn mark(&self, slot: usize, bits: u8) {
        let p = self.cells.as_ptr().wrapping_add(slot + 1);
        // SAFETY: `p` is in bounds of `cells` (checked by the index below).
        let _ = &self.cells[slot + 1];
        unsafe { wake(p as *const (), bits) }
    }
}

unsafe fn wake(data: *const (), bit: u8) {
    let cell = &*(data as *const ReadyCell);
    cell.bits.fetch_or(bit, Ordering::AcqRel);
    if cell.queued.swap(true, Ordering::AcqRel) {
        return;
    }
    let index = cell.index.load(Ordering::Relaxed);
    let head = &*(data as *const ReadyCell).sub(index as usize);
    let mut first = head.next.load(Ordering::Acquire);
    loop {
        cell.next.store(first, Ordering::Release);
        match head
            .next
            .compare_exchange(first, index, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(now) => first = now,
        }
    }
}

unsafe fn clone_recv(p: *const ()) -> RawWaker {
    RawWaker::new(p, &RECV_VTABLE)
}
unsafe fn clone_send(p: *const ()) -> RawWaker {
    RawWaker::new(p, &SEND_VTABLE)
}
unsafe fn wake_recv(p: *const ()) {
    wake(p, RECV)
}
unsafe fn wake_send(p: *const ()) {
    wake(p, SEND)
}
unsafe fn drop_waker(_: *const ()) {}

static RECV_VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_recv, wake_recv, wake_recv, drop_waker);
static SEND_VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_send, wake_send, wake_send, drop_waker);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_are_collected_once_per_slot_with_merged_bits() {
        let cells: [ReadyCell; 4] = [
            ReadyCell::NEW,
            ReadyCell::NEW,
            ReadyCell::NEW,
            ReadyCell::NEW,
        ];
        let t = ReadyTable::init(&cells);
        let (r0, s0) = t.wakers(0);
        let (r2, _) = t.wakers(2);
        r0.wake_by_ref();
        s0.wake_by_ref();
        r2.wake_by_ref();
        r0.wake();
        let mut got = [t.pop(), t.pop(), t.pop()];
        got.sort();
        assert_eq!(got, [None, Some((0, RECV | SEND)), Some((2, RECV))]);
        t.mark(1, SEND);
        assert_eq!(t.pop(), Some((1, SEND)));
        assert_eq!(t.pop(), None);
    }
}
