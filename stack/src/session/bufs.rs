//! The buffers sessions share. An idle session owns none: bytes are decoded from a scratch
//! area lent for one decode pass, encoded into another, and only two situations make a
//! session *hold* a buffer across events, both bounded by a timeout and by the pool's size:
//!
//! * a package longer than the socket's receive buffer, assembled while it arrives (the
//!   read timeout bounds it);
//! * output the socket could not take yet (the write timeout bounds it).

use super::codec::{Out, SliceOut};

/// A held buffer, lent by [`BufPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufId(u16);

/// Held buffers: on the heap up to a byte budget, or chunks of one caller-provided area.
// The chunk variant keeps its bookkeeping inline because it is the one without a heap.
#[allow(clippy::large_enum_variant)]
pub(crate) enum BufPool<'a> {
    #[cfg(feature = "alloc")]
    Heap {
        bufs: alloc::vec::Vec<alloc::vec::Vec<u8>>,
        free: alloc::vec::Vec<u16>,
        in_use: usize,
        max: usize,
    },
    Chunks {
        mem: &'a mut [u8],
        chunk: usize,
        /// Bit `k` set: chunk `k` is lent.
        lent: u64,
        /// Bytes used of each lent chunk.
        lens: [u32; 64],
    },
}

impl<'a> BufPool<'a> {
    #[cfg(feature = "alloc")]
    pub(crate) fn heap(max: usize) -> Self {
        BufPool::Heap {
            bufs: alloc::vec::Vec::new(),
            free: alloc::vec::Vec::new(),
            in_use: 0,
            max,
        }
    }

    /// `mem` cut into chunks of `chunk` bytes (at most 64 of them).
    pub(crate) fn chunks(mem: &'a mut [u8], chunk: usize) -> Self {
        let chunk = chunk.max(1);
        let n = (mem.len() / chunk).min(64);
        let mem = &mut mem[..n * chunk];
        BufPool::Chunks {
            mem,
            chunk,
            lent: 0,
            lens: [0; 64],
        }
    }

    /// The most one buffer can hold.
    pub(crate) fn per_buffer(&self) -> usize {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap { max, .. } => *max,
            BufPool::Chunks { chunk, .. } => *chunk,
        }
    }

    /// Bytes lent out right now.
    pub(crate) fn in_use(&self) -> usize {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap { in_use, .. } => *in_use,
            BufPool::Chunks { lent, chunk, .. } => lent.count_ones() as usize * chunk,
        }
    }

    /// Lends a buffer holding `len` zero bytes, or `None` when the pool cannot.
    pub(crate) fn take(&mut self, len: usize) -> Option<BufId> {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap {
                bufs,
                free,
                in_use,
                max,
            } => {
                if in_use.saturating_add(len) > *max {
                    return None;
                }
                let id = match free.pop() {
                    Some(id) => id,
                    None if bufs.len() < usize::from(u16::MAX) => {
                        bufs.push(alloc::vec::Vec::new());
                        (bufs.len() - 1) as u16
                    }
                    None => return None,
                };
                bufs[usize::from(id)].resize(len, 0);
                *in_use += len;
                Some(BufId(id))
            }
            BufPool::Chunks {
                mem,
                chunk,
                lent,
                lens,
            } => {
                let n = mem.len() / *chunk;
                if len > *chunk {
                    return None;
                }
                let k = (0..n).find(|k| *lent & (1 << k) == 0)?;
                *lent |= 1 << k;
                lens[k] = len as u32;
                mem[k * *chunk..k * *chunk + len].fill(0);
                Some(BufId(k as u16))
            }
        }
    }

    /// The buffer's bytes.
    pub(crate) fn get(&mut self, id: BufId) -> &mut [u8] {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap { bufs, .. } => &mut bufs[usize::from(id.0)],
            BufPool::Chunks {
                mem, chunk, lens, ..
            } => {
                let k = usize::from(id.0);
                &mut mem[k * *chunk..k * *chunk + lens[k] as usize]
            }
        }
    }

    /// Appends `bytes`, or returns `false` and changes nothing when the pool cannot hold them.
    pub(crate) fn extend(&mut self, id: BufId, bytes: &[u8]) -> bool {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap {
                bufs, in_use, max, ..
            } => {
                if in_use.saturating_add(bytes.len()) > *max {
                    return false;
                }
                bufs[usize::from(id.0)].extend_from_slice(bytes);
                *in_use += bytes.len();
                true
            }
            BufPool::Chunks {
                mem, chunk, lens, ..
            } => {
                let k = usize::from(id.0);
                let at = lens[k] as usize;
                if at + bytes.len() > *chunk {
                    return false;
                }
                mem[k * *chunk + at..k * *chunk + at + bytes.len()].copy_from_slice(bytes);
                lens[k] += bytes.len() as u32;
                true
            }
        }
    }

    /// Drops the first `n` bytes of a buffer.
    pub(crate) fn consume(&mut self, id: BufId, n: usize) {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap { bufs, in_use, .. } => {
                let b = &mut bufs[usize::from(id.0)];
                let n = n.min(b.len());
                b.drain(..n);
                *in_use -= n;
            }
            BufPool::Chunks {
                mem, chunk, lens, ..
            } => {
                let k = usize::from(id.0);
                let len = lens[k] as usize;
                let n = n.min(len);
                mem[k * *chunk..k * *chunk + len].copy_within(n.., 0);
                lens[k] -= n as u32;
            }
        }
    }

    /// Gives a buffer back. The heap pool frees its memory, so idle sessions cost nothing.
    pub(crate) fn give(&mut self, id: BufId) {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap {
                bufs, free, in_use, ..
            } => {
                let b = core::mem::take(&mut bufs[usize::from(id.0)]);
                *in_use -= b.len();
                free.push(id.0);
            }
            BufPool::Chunks { lent, .. } => *lent &= !(1 << id.0),
        }
    }
}

/// The pool as the session API sees it, without its storage lifetime.
pub(crate) trait Held {
    fn take(&mut self, len: usize) -> Option<BufId>;
    fn get(&mut self, id: BufId) -> &mut [u8];
    fn extend(&mut self, id: BufId, bytes: &[u8]) -> bool;
    /// Whether `n` more bytes would fit (`id`: the buffer they would go to, if any).
    fn can_hold(&self, id: Option<BufId>, n: usize) -> bool;
    fn consume(&mut self, id: BufId, n: usize);
}

impl Held for BufPool<'_> {
    fn take(&mut self, len: usize) -> Option<BufId> {
        BufPool::take(self, len)
    }
    fn get(&mut self, id: BufId) -> &mut [u8] {
        BufPool::get(self, id)
    }
    fn extend(&mut self, id: BufId, bytes: &[u8]) -> bool {
        BufPool::extend(self, id, bytes)
    }
    fn consume(&mut self, id: BufId, n: usize) {
        BufPool::consume(self, id, n)
    }
    fn can_hold(&self, id: Option<BufId>, n: usize) -> bool {
        match self {
            #[cfg(feature = "alloc")]
            BufPool::Heap { in_use, max, .. } => in_use.saturating_add(n) <= *max,
            BufPool::Chunks {
                chunk,
                lens,
                lent,
                mem,
                ..
            } => match id {
                Some(id) => lens[usize::from(id.0)] as usize + n <= *chunk,
                None => n <= *chunk && lent.count_ones() < (mem.len() / *chunk) as u32,
            },
        }
    }
}

/// Where packages are encoded before they go to the socket.
pub(crate) trait Sink: Out {
    fn clear(&mut self);
    fn filled_mut(&mut self) -> &mut [u8];
}

#[cfg(feature = "alloc")]
impl Sink for alloc::vec::Vec<u8> {
    fn clear(&mut self) {
        alloc::vec::Vec::clear(self)
    }
    fn filled_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Sink for SliceOut<'_> {
    fn clear(&mut self) {
        self.len = 0;
    }
    fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

/// A scratch area lent for one decode or encode pass.
pub(crate) enum Area<'a> {
    #[cfg(feature = "alloc")]
    Heap(alloc::vec::Vec<u8>),
    Slice(&'a mut [u8]),
}

impl Area<'_> {
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        match self {
            #[cfg(feature = "alloc")]
            Area::Heap(v) => v,
            Area::Slice(s) => s,
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn exercise(pool: &mut BufPool<'_>, chunked: bool) {
        let a = pool.take(4).unwrap();
        pool.get(a).copy_from_slice(b"abcd");
        assert!(pool.extend(a, b"ef"));
        assert_eq!(pool.get(a), b"abcdef");
        pool.consume(a, 2);
        assert_eq!(pool.get(a), b"cdef");
        let b = pool.take(8).unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.get(b), &[0u8; 8]);
        pool.give(a);
        let c = pool.take(2).unwrap();
        assert_eq!(pool.get(c), &[0, 0], "a lent buffer starts zeroed");
        if chunked {
            assert!(!pool.extend(c, &[1; 15]), "past the chunk");
        }
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn heap_pool_lends_extends_and_frees_within_its_budget() {
        let mut pool = BufPool::heap(16);
        exercise(&mut pool, false);
        let a = pool.take(10).unwrap();
        assert_eq!(pool.take(7), None, "over the byte budget");
        assert!(!pool.extend(a, &[0; 7]));
        assert_eq!(pool.in_use(), 10);
        pool.give(a);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn chunk_pool_lends_whole_chunks_and_refuses_longer_buffers() {
        let mut mem = [0u8; 40];
        let mut pool = BufPool::chunks(&mut mem, 16);
        exercise(&mut pool, true);
        assert_eq!(pool.take(17), None);
        let (a, b) = (pool.take(1).unwrap(), pool.take(16).unwrap());
        assert_eq!(pool.take(1), None, "two chunks of 16 fit in 40 bytes");
        assert_eq!(pool.in_use(), 32);
        pool.give(a);
        pool.give(b);
    }
}
