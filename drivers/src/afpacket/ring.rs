//! The `PACKET_MMAP` receive ring, `TPACKET_V3` layout.
//!
//! The kernel fills whole blocks with frames and hands a block over by setting
//! `TP_STATUS_USER` in its header, when the block is full or its timeout (`tp_retire_blk_tov`)
//! passes. The device reads the frames in place and gives the block back by writing
//! `TP_STATUS_KERNEL`. The walk over a block's frames is safe code over a byte slice; only
//! the mapping and the status word are `unsafe`.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::{set_opt, PACKET_RX_RING, PACKET_VERSION, SOL_PACKET, TPACKET_V3};

// `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// `struct tpacket3_hdr`.
const PKT_NEXT_OFFSET: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` follows.
const PKT_SLL: usize = 48;
/// `sll_pkttype` inside `sockaddr_ll`.
const SLL_PKTTYPE: usize = 10;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// The frame's checksum was left for offload hardware that never saw it.
pub(super) const TP_STATUS_CSUM_NOT_READY: u32 = 1 << 3;

/// Sizes of a receive ring.
///
/// # Example
///
/// ```
/// use ustack_drivers::RingConfig;
///
/// let ring = RingConfig { block_timeout_ms: 2, ..RingConfig::default() };
/// assert_eq!(ring.bytes(), ring.block_size * ring.block_count);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size (4096), and a power of two.
    pub block_size: usize,
    /// Blocks in the ring.
    pub block_count: usize,
    /// How long the kernel keeps a partly filled block before handing it over, in
    /// milliseconds (at least 1). The latency floor of ring mode under light load.
    pub block_timeout_ms: u32,
    /// Frames the transmit side queues before it must flush (one `sendmmsg`).
    pub tx_batch: usize,
}

impl Default for RingConfig {
    /// 256 blocks of 16 KiB (4 MiB), a 1 ms block timeout, 64-frame transmit batches.
    ///
    /// Many small blocks rather than a few big ones: under light traffic the kernel hands
    /// over a block every timeout however little it holds, so the block count, not the
    /// bytes, is how long the stack may stall (here 256 ms) before frames are dropped.
    /// Use bigger blocks for jumbo frames (a block must hold one frame).
    fn default() -> Self {
        RingConfig {
            block_size: 16 * 1024,
            block_count: 256,
            block_timeout_ms: 1,
            tx_batch: 64,
        }
    }
}

impl RingConfig {
    /// Total ring memory in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(ustack_drivers::RingConfig::default().bytes(), 4 << 20);
    /// ```
    pub fn bytes(&self) -> usize {
        self.block_size * self.block_count
    }

    pub(super) fn check(&self, frame: usize) -> io::Result<()> {
        let bad = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if self.block_size < 4096 || !self.block_size.is_power_of_two() || self.block_size > 1 << 30
        {
            return bad(format!(
                "ring block_size {} must be a power of two of at least 4096",
                self.block_size
            ));
        }
        if self.block_count == 0 || self.block_count > 1 << 16 {
            return bad(format!(
                "ring block_count {} must be between 1 and 65536",
                self.block_count
            ));
        }
        if frame + 128 > self.block_size {
            return bad(format!(
                "ring block_size {} cannot hold one {frame}-byte frame; use a bigger block",
                self.block_size
            ));
        }
        if self.block_timeout_ms == 0 || self.tx_batch == 0 {
            return bad("ring block_timeout_ms and tx_batch must be at least 1".into());
        }
        Ok(())
    }
}

/// One frame read from a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame {
    /// Offset of the Ethernet header in the block.
    pub start: usize,
    /// Bytes captured.
    pub snaplen: usize,
    /// Bytes on the wire (more than `snaplen` when cut).
    pub len: usize,
    pub status: u32,
    pub pkttype: u8,
}

/// Where the next frame of a held block is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    pub left: u32,
    pub at: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The cursor at a fresh block's first frame; `None` if the header is inconsistent.
pub(super) fn first(block: &[u8]) -> Option<Cursor> {
    Some(Cursor {
        left: u32_at(block, BLOCK_NUM_PKTS)?,
        at: u32_at(block, BLOCK_FIRST_PKT)? as usize,
    })
}

/// Reads the frame under `cur` and moves past it. `None` when the block is done, or its
/// contents point outside it (then the rest of the block is skipped).
pub(super) fn next(block: &[u8], cur: &mut Cursor) -> Option<Frame> {
    if cur.left == 0 {
        return None;
    }
    let at = cur.at;
    let frame = (|| {
        let snaplen = u32_at(block, at + PKT_SNAPLEN)? as usize;
        let start = at + usize::from(u16_at(block, at + PKT_MAC)?);
        block.get(start..start.checked_add(snaplen)?)?;
        Some(Frame {
            start,
            snaplen,
            len: u32_at(block, at + PKT_LEN)? as usize,
            status: u32_at(block, at + PKT_STATUS)?,
            pkttype: *block.get(at + PKT_SLL + SLL_PKTTYPE)?,
        })
    })();
    let step = u32_at(block, at + PKT_NEXT_OFFSET).unwrap_or(0) as usize;
    cur.left -= 1;
    if frame.is_none() || (cur.left > 0 && step == 0) {
        cur.left = 0;
    }
    cur.at = at + step;
    frame
}

/// The mapped ring.
pub(super) struct Ring {
    base: *mut u8,
    block_size: usize,
    blocks: usize,
}

// SAFETY: the mapping belongs to this value alone; the kernel's concurrent writes are
// ordered by the status words (see `owned`/`release`).
unsafe impl Send for Ring {}

impl Ring {
    /// Switches `fd` to TPACKET_V3, asks for the ring and maps it. Must come before `bind`.
    pub(super) fn new(fd: RawFd, cfg: &RingConfig) -> io::Result<Ring> {
        set_opt(
            fd,
            SOL_PACKET,
            PACKET_VERSION,
            &TPACKET_V3,
            "PACKET_VERSION",
        )?;
        // The kernel wants a frame size that divides the block; V3 packs frames tightly
        // and uses it only for that check.
        let frame_size = 2048.min(cfg.block_size);
        // struct tpacket_req3
        let req: [u32; 7] = [
            cfg.block_size as u32,
            cfg.block_count as u32,
            frame_size as u32,
            (cfg.bytes() / frame_size) as u32,
            cfg.block_timeout_ms,
            0, // tp_sizeof_priv
            0, // tp_feature_req_word
        ];
        set_opt(fd, SOL_PACKET, PACKET_RX_RING, &req, "PACKET_RX_RING").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}; the ring ({} blocks of {} bytes) may be too big for this machine",
                    cfg.block_count, cfg.block_size
                ),
            )
        })?;
        // SAFETY: maps the ring the kernel just allocated for `fd`; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cfg.bytes(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mmap of the rx ring: {e}"),
            ));
        }
        Ok(Ring {
            base: base.cast(),
            block_size: cfg.block_size,
            blocks: cfg.block_count,
        })
    }

    pub(super) fn blocks(&self) -> usize {
        self.blocks
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block `i` lies inside the mapping (callers pass i < blocks), the status
        // word is 4-aligned (blocks are page-aligned) and shared with the kernel, hence
        // atomic.
        unsafe { &*(self.base.add(i * self.block_size + BLOCK_STATUS) as *const AtomicU32) }
    }

    /// Block `i`, if the kernel has handed it to us.
    pub(super) fn owned(&mut self, i: usize) -> Option<&mut [u8]> {
        if self.status(i).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the kernel does not touch a block while TP_STATUS_USER is set, so this is
        // the only reference to it until `release(i)`; the Acquire load above orders the
        // kernel's writes of the frames before our reads.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.base.add(i * self.block_size), self.block_size)
        })
    }

    /// Gives block `i` back to the kernel.
    pub(super) fn release(&mut self, i: usize) {
        self.status(i).store(TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slices into it outlive `self`.
        unsafe { libc::munmap(self.base.cast(), self.block_size * self.blocks) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_with(frames: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[BLOCK_NUM_PKTS..][..4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[BLOCK_FIRST_PKT..][..4].copy_from_slice(&48u32.to_ne_bytes());
        let mut at = 48;
        for (i, f) in frames.iter().enumerate() {
            let mac = 48 + 20 + 2; // header, sockaddr_ll, padding
            let size = (mac + f.len() + 15) & !15;
            let next = if i + 1 == frames.len() { 0 } else { size };
            b[at..][..4].copy_from_slice(&(next as u32).to_ne_bytes());
            b[at + PKT_SNAPLEN..][..4].copy_from_slice(&(f.len() as u32).to_ne_bytes());
            b[at + PKT_LEN..][..4].copy_from_slice(&(f.len() as u32).to_ne_bytes());
            b[at + PKT_MAC..][..2].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[at + PKT_SLL + SLL_PKTTYPE] = i as u8;
            b[at + mac..][..f.len()].copy_from_slice(f);
            at += size;
        }
        b
    }

    #[test]
    fn walks_every_frame_in_order() {
        let block = block_with(&[b"first frame", b"2nd", &[7u8; 200]]);
        let mut cur = first(&block).unwrap();
        let mut seen = Vec::new();
        while let Some(f) = next(&block, &mut cur) {
            seen.push((block[f.start..][..f.snaplen].to_vec(), f.pkttype));
        }
        assert_eq!(
            seen,
            vec![
                (b"first frame".to_vec(), 0),
                (b"2nd".to_vec(), 1),
                (vec![7u8; 200], 2)
            ]
        );
    }

    #[test]
    fn a_frame_pointing_outside_the_block_ends_the_walk() {
        let mut block = block_with(&[b"ok", b"bad"]);
        let second = 48 + ((48 + 22 + 2 + 15) & !15);
        block[second + PKT_SNAPLEN..][..4].copy_from_slice(&100_000u32.to_ne_bytes());
        let mut cur = first(&block).unwrap();
        assert_eq!(next(&block, &mut cur).map(|f| f.snaplen), Some(2));
        assert_eq!(next(&block, &mut cur), None);
        assert_eq!(next(&block, &mut cur), None);
    }

    #[test]
    fn garbage_blocks_never_panic() {
        let mut block = vec![0xffu8; 4096];
        let mut cur = first(&block).unwrap();
        for _ in 0..10 {
            let _ = next(&block, &mut cur);
        }
        block.truncate(10);
        assert!(first(&block).is_none());
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        let small = RingConfig {
            block_size: 1000,
            ..RingConfig::default()
        };
        assert!(small
            .check(1514)
            .unwrap_err()
            .to_string()
            .contains("power of two"));
        let tiny = RingConfig {
            block_size: 4096,
            block_count: 1,
            ..RingConfig::default()
        };
        assert!(tiny.check(1514).is_ok());
        assert!(tiny
            .check(9014)
            .unwrap_err()
            .to_string()
            .contains("bigger block"));
    }
}
