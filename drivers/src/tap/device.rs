//! The [`Device`] side of a [`TapDevice`]: one `read` per received frame, one `write` per
//! sent frame, with the `virtio_net_hdr` handled in offload mode.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::{vnet, TapDevice, TapStats, ETH_HEADER};

impl TapDevice {
    fn tx_token(&mut self) -> TapTxToken<'_> {
        TapTxToken {
            file: &self.file,
            name: &self.name,
            offload: self.offload,
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
            warned: &mut self.warned,
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

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
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
            stats: &mut self.stats,
            warned: &mut self.warned,
        };
        let rx = TapRxToken {
            frame: &self.rx_buf[start..len],
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(self.tx_token())
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
/// transmit buffer and writes it to the kernel.
pub struct TapTxToken<'a> {
    file: &'a File,
    name: &'a str,
    offload: bool,
    buf: &'a mut Vec<u8>,
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
        if self.offload {
            let (hdr, offloaded) = vnet::on_transmit(&mut out[start..]);
            hdr.write(out);
            self.stats.tx_csum_offloaded += u64::from(offloaded);
        }
        // Header and frame go in one write: the kernel takes one frame per write.
        match (&*self.file).write(out) {
            Ok(sent) if sent == total => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
                self.stats.tx_largest_frame = self.stats.tx_largest_frame.max(len as u64);
            }
            Ok(sent) => {
                self.stats.tx_dropped += 1;
                log::debug!("tap {}: short write ({sent} of {total} bytes)", self.name);
            }
            Err(e) => {
                self.stats.tx_dropped += 1;
                let transient = e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == io::ErrorKind::Interrupted;
                if transient {
                    log::debug!("tap {}: dropped a {len}-byte frame: {e}", self.name);
                } else {
                    TapDevice::note_error(self.warned, self.name, "write", &e);
                }
            }
        }
        result
    }
}
