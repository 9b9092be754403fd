//! SYNs that wait for backlog room ([`Config::syn_hold`](crate::Config::syn_hold)): a ring
//! over caller storage on firmware, or over the heap.

use heapless::Vec;
use smoltcp::time::Instant;

use crate::device::SYN_STASH_FRAME_LEN;
use crate::slot::Table;

/// Room for one SYN frame held while its listener's backlog is full. A
/// [`Storage`](crate::Storage) lends the stack as many as may wait at once;
/// [`StaticStorage<N>`](crate::StaticStorage) has `N`, and a stack from
/// [`Stack::new`](crate::Stack::new) allocates [`SYN_STASH_FRAMES`](crate::SYN_STASH_FRAMES).
///
/// ```
/// let room = [ustack::HeldSyn::EMPTY; 4];
/// assert_eq!(room.len(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct HeldSyn {
    pub(crate) since: Instant,
    pub(crate) port: u16,
    pub(crate) frame: Vec<u8, SYN_STASH_FRAME_LEN>,
}

impl HeldSyn {
    /// An unused entry, for static storage.
    pub const EMPTY: HeldSyn = HeldSyn {
        since: Instant::ZERO,
        port: 0,
        frame: Vec::new(),
    };
}

/// The held SYNs, oldest first.
pub(crate) struct SynHold<'a> {
    buf: Table<'a, HeldSyn>,
    head: usize,
    len: usize,
}

impl Default for SynHold<'_> {
    /// Room for none: every SYN beyond the backlog is reset at once.
    fn default() -> Self {
        SynHold::new(Table::Borrowed(&mut []))
    }
}

impl<'a> SynHold<'a> {
    pub(crate) fn new(buf: Table<'a, HeldSyn>) -> Self {
        SynHold {
            buf,
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    pub(crate) fn front(&self) -> Option<&HeldSyn> {
        (self.len > 0).then(|| &self.buf[self.head])
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &HeldSyn> {
        (0..self.len).map(|k| &self.buf[(self.head + k) % self.buf.len()])
    }

    /// Holds `h` after the others; false (and `h` dropped) when full.
    pub(crate) fn push_back(&mut self, h: HeldSyn) -> bool {
        if self.is_full() {
            return false;
        }
        let i = (self.head + self.len) % self.buf.len();
        self.buf[i] = h;
        self.len += 1;
        true
    }

    /// Holds `h` before the others; false (and `h` dropped) when full.
    pub(crate) fn push_front(&mut self, h: HeldSyn) -> bool {
        if self.is_full() {
            return false;
        }
        self.head = (self.head + self.buf.len() - 1) % self.buf.len();
        self.buf[self.head] = h;
        self.len += 1;
        true
    }

    pub(crate) fn pop_front(&mut self) -> Option<HeldSyn> {
        if self.len == 0 {
            return None;
        }
        let h = core::mem::replace(&mut self.buf[self.head], HeldSyn::EMPTY);
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(port: u16) -> HeldSyn {
        HeldSyn {
            port,
            ..HeldSyn::EMPTY
        }
    }

    fn ports(h: &SynHold<'_>) -> std::vec::Vec<u16> {
        h.iter().map(|s| s.port).collect()
    }

    #[test]
    fn a_ring_of_three_keeps_order_across_the_wrap_and_refuses_a_fourth() {
        let mut room = [HeldSyn::EMPTY, HeldSyn::EMPTY, HeldSyn::EMPTY];
        let mut h = SynHold::new(Table::Borrowed(&mut room));
        for p in 1..=3 {
            assert!(h.push_back(syn(p)));
        }
        assert!(h.is_full());
        assert!(!h.push_back(syn(4)) && !h.push_front(syn(5)));
        assert_eq!(ports(&h), [1, 2, 3]);
        assert_eq!(h.pop_front().map(|s| s.port), Some(1));
        assert!(h.push_back(syn(6))); // wraps to index 0
        assert_eq!(ports(&h), [2, 3, 6]);
        assert_eq!(h.pop_front().map(|s| s.port), Some(2));
        assert!(h.push_front(syn(7)));
        assert_eq!(ports(&h), [7, 3, 6]);
        assert_eq!(h.front().map(|s| s.port), Some(7));
        let drained: std::vec::Vec<u16> =
            core::iter::from_fn(|| h.pop_front().map(|s| s.port)).collect();
        assert_eq!(drained, [7, 3, 6]);
        assert_eq!((h.len(), h.front().is_none()), (0, true));
    }

    #[test]
    fn no_room_holds_nothing() {
        let mut h = SynHold::default();
        assert!(h.is_full());
        assert!(!h.push_back(syn(1)) && !h.push_front(syn(2)));
        assert!(h.pop_front().is_none() && h.front().is_none());
        assert_eq!(h.iter().count(), 0);
    }
}
