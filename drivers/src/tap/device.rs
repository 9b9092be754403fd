//! The [`Device`] side of a [`TapDevice`]: one `read` per received frame, one `write` per
//! sent frame, with the `virtio_net_hdr` handled in offload mode, where TCP segments are
//! queued and merged into super-frames until [`TapDevice::flush`].

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::gso::{Coalescer, Finished};
use super::{vnet, TapDevice, TapStats, ETH_HEADER};

impl TapDevice {
    fn tx_token(&mut self, now: Instant) -> TapTxToken<'_> {
        TapTxToken {
            file: &self.file,
            name: &self.name,
            offload: self.offload,
            buf: &mut self.tx_buf,
            gso: &mut self.gso,
            now,
            stats: &mut self.stats,
            warned: &mut self.warned,
        }
    }

    /// Writes out frames left from an earlier poll whose end was never signalled.
    fn late_flush(&mut self, now: Instant) {
        match self.gso.since() {
            Some(t) if t != now => {}
            _ => return,
        }
        if self.stats.late_flushes == 0 {
            log::warn!(
                "tap {}: frames waited for the next poll; call `stack.set_flush(TapDevice::flush)` so each poll sends its frames",
                self.name
            );
        }
        self.stats.late_flushes += 1;
        self.flush();
    }
}

/// Writes the pending super-frame of `gso`, if any.
pub(super) fn flush_pending(
    gso: &mut Coalescer,
    file: &File,
    name: &str,
    stats: &mut TapStats,
    warned: &mut bool,
) {
    if let Some(done) = gso.finish() {
        write_finished(done, file, name, stats, warned);
    }
}

/// Counts and writes a frame the coalescer let go.
fn write_finished(
    done: Finished<'_>,
    file: &File,
    name: &str,
    stats: &mut TapStats,
    warned: &mut bool,
) {
    if done.segs > 1 {
        stats.tx_gso_frames += 1;
        stats.tx_segments_merged += done.segs;
    }
    if done.offloaded {
        stats.tx_csum_offloaded += done.segs;
    }
    write_frame(file, name, done.out, vnet::LEN, done.segs, stats, warned);
}

/// Writes header and frame (`out`, the frame starting at `start`) in one `write`: the kernel
/// takes one frame per write. `segs` is how many of the stack's frames it carries.
fn write_frame(
    file: &File,
    name: &str,
    out: &[u8],
    start: usize,
    segs: u64,
    stats: &mut TapStats,
    warned: &mut bool,
) {
    let (total, len) = (out.len(), out.len() - start);
    match (&*file).write(out) {
        Ok(sent) if sent == total => {
            stats.tx_frames += 1;
            stats.tx_bytes += len as u64;
            stats.tx_largest_frame = stats.tx_largest_frame.max(len as u64);
        }
        Ok(sent) => {
            stats.tx_dropped += segs;
            log::debug!("tap {name}: short write ({sent} of {total} bytes)");
        }
        Err(e) => {
            stats.tx_dropped += segs;
            if crate::txerr::is_transient(&e) {
                log::debug!("tap {name}: dropped a {len}-byte frame: {e}");
            } else {
                TapDevice::note_error(warned, name, "write", &e);
            }
        }
    }
}

impl Device for TapDevice {
    type RxToken<'a>
        = TapRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TapTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.late_flush(timestamp);
        let len = loop {
            match (&self.file).read(&mut self.rx_buf) {
                Ok(len) => break len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    self.stats.rx_errors += 1;
                    Self::note_error(&mut self.warned, &self.name, "read", &e);
                    return None;
                }
            }
        };
        let start = if self.offload {
            let Some(hdr) = vnet::Header::parse(&self.rx_buf[..len]) else {
                // The kernel always writes the whole header; a shorter read carries no frame.
                self.stats.rx_malformed += 1;
                return None;
            };
            let got = vnet::on_receive(&hdr, &mut self.rx_buf[vnet::LEN..len]);
            self.stats.rx_gso_frames += u64::from(got.gso);
            self.stats.rx_csum_completed += u64::from(got.completed);
            self.stats.rx_malformed += u64::from(got.malformed);
            vnet::LEN
        } else {
            0
        };
        let frame_len = (len - start) as u64;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame_len;
        self.stats.rx_largest_frame = self.stats.rx_largest_frame.max(frame_len);
        let tx = TapTxToken {
            file: &self.file,
            name: &self.name,
            offload: self.offload,
            buf: &mut self.tx_buf,
            gso: &mut self.gso,
            now: timestamp,
            stats: &mut self.stats,
            warned: &mut self.warned,
        };
        let rx = TapRxToken {
            frame: &self.rx_buf[start..len],
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.late_flush(timestamp);
        Some(self.tx_token(timestamp))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // The link's MTU: what may be sent. Offload mode receives more (`rx_frame_limit`).
        caps.max_transmission_unit = self.mtu + ETH_HEADER;
        if self.offload {
            // Verify on receive (the device completed partial checksums), leave them to the
            // kernel on transmit.
            caps.checksum.tcp = Checksum::Rx;
            caps.checksum.udp = Checksum::Rx;
        }
        caps
    }
}

/// Receive token of a [`TapDevice`]: borrows the frame in the device's
/// receive buffer.
#[derive(Debug)]
pub struct TapRxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for TapRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Transmit token of a [`TapDevice`]: builds the frame in the device's
/// transmit buffer and writes it to the kernel, or, in offload mode, queues a TCP segment
/// for merging until [`TapDevice::flush`].
pub struct TapTxToken<'a> {
    file: &'a File,
    name: &'a str,
    offload: bool,
    buf: &'a mut Vec<u8>,
    gso: &'a mut Coalescer,
    now: Instant,
    stats: &'a mut TapStats,
    warned: &'a mut bool,
}

impl fmt::Debug for TapTxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapTxToken")
            .field("name", &self.name)
            .finish()
    }
}

impl phy::TxToken for TapTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let start = if self.offload { vnet::LEN } else { 0 };
        let total = start + len;
        if self.buf.len() < total {
            // Only reached if someone asks for more than the MTU; growing
            // once keeps later frames allocation-free.
            self.buf.resize(total, 0);
        }
        let out = &mut self.buf[..total];
        // Stale bytes from the previous frame must never reach the wire.
        out.fill(0);
        let result = f(&mut out[start..]);
        if !self.offload {
            write_frame(self.file, self.name, out, 0, 1, self.stats, self.warned);
            return result;
        }
        let (file, name, now) = (self.file, self.name, self.now);
        let (stats, warned) = (self.stats, self.warned);
        self.gso.push(out, now, |done| {
            write_finished(done, file, name, stats, warned)
        });
        result
    }
}
