//! Recording every frame a device moves to a pcap file.
//!
//! [`PcapRecorder`] wraps any [`smoltcp::phy::Device`] and writes each frame
//! that is actually received or transmitted (i.e. whose token is consumed) to
//! a classic pcap stream with link type Ethernet, readable by `tcpdump -r`,
//! `tshark -r` and Wireshark.
//!
//! Timestamps come from the smoltcp [`Instant`]s the stack passes to
//! `receive`/`transmit`, anchored to the wall clock at the first frame, so
//! captures show real dates while keeping the stack's notion of time (which
//! matters for tests that drive time by hand).

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

/// Largest number of bytes stored per frame; longer frames are truncated in
/// the file (their original length is still recorded).
const SNAPLEN: u32 = 65535;

/// The writer side of a recorder, shared by the rx and tx tokens.
///
/// pcap-file's `PcapWriter` offers no way to flush (or reach) its writer while
/// it is in use, so the file header comes from pcap-file and the 16-byte
/// record headers are written here, in the same (native) byte order.
struct Sink<W: Write> {
    writer: W,
    /// smoltcp instant of the first frame and the wall-clock time it maps to.
    anchor: Option<(Instant, Duration)>,
    recorded: u64,
    errors: u64,
}

impl<W: Write> Sink<W> {
    fn record(&mut self, at: Instant, frame: &[u8]) {
        let (first, wall) = *self.anchor.get_or_insert_with(|| {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (at, wall)
        });
        // A clock that steps backwards must not underflow; clamp to the anchor.
        let since = if at < first {
            0
        } else {
            (at - first).total_micros()
        };
        let timestamp = wall + Duration::from_micros(since);
        match self.write_record(timestamp, frame) {
            Ok(()) => self.recorded += 1,
            Err(e) => self.fail(&e),
        }
    }

    fn write_record(&mut self, timestamp: Duration, frame: &[u8]) -> io::Result<()> {
        let kept = frame.len().min(SNAPLEN as usize);
        let mut header = [0u8; 16];
        let fields = [
            u32::try_from(timestamp.as_secs()).unwrap_or(u32::MAX),
            timestamp.subsec_micros(),
            kept as u32,
            u32::try_from(frame.len()).unwrap_or(u32::MAX),
        ];
        for (chunk, field) in header.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_ne_bytes());
        }
        self.writer.write_all(&header)?;
        self.writer.write_all(&frame[..kept])
    }

    fn fail(&mut self, err: &io::Error) {
        self.errors += 1;
        if self.errors == 1 {
            log::warn!("pcap: cannot record frame: {err}; recording continues, failures are counted (further ones logged at debug)");
        } else {
            log::debug!("pcap: cannot record frame: {err}");
        }
    }
}

/// Writes `frame` unless the sink is already borrowed (which only a token
/// consumed inside another token's closure could cause); counts that as an
/// error rather than panicking.
fn record<W: Write>(sink: &RefCell<Sink<W>>, at: Instant, frame: &[u8]) {
    match sink.try_borrow_mut() {
        Ok(mut sink) => sink.record(at, frame),
        Err(_) => log::debug!("pcap: recorder busy, frame not recorded"),
    }
}

/// A device wrapper that records every frame in both directions as pcap.
///
/// # Example
///
/// ```
/// use ustack_drivers::{PcapRecorder, PipeLink};
///
/// let link = PipeLink::<8, 1514>::new();
/// let (a, _b) = link.split();
/// let recorder = PcapRecorder::new(a, Vec::new())?;
/// // Hand `recorder` to the stack instead of `a`; afterwards:
/// let (_a, pcap_bytes) = recorder.into_parts();
/// assert_eq!(pcap_bytes.len(), 24); // just the file header so far
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PcapRecorder<D, W: Write> {
    inner: D,
    sink: RefCell<Sink<W>>,
}

impl<D: Device> PcapRecorder<D, BufWriter<File>> {
    /// Records `device` into a new file at `path` (truncated if it exists).
    ///
    /// # Errors
    ///
    /// The file cannot be created or its header written; the message names
    /// the path.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use ustack_drivers::{PcapRecorder, TapDevice};
    ///
    /// let tap = TapDevice::open("tap0")?;
    /// let recorder = PcapRecorder::create(tap, "/tmp/ustack.pcap")?;
    /// // ... run the stack on `recorder`, then: tcpdump -r /tmp/ustack.pcap
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create(device: D, path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create pcap file {}: {e}; check the directory exists and is writable",
                    path.display()
                ),
            )
        })?;
        Self::new(device, BufWriter::new(file)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write pcap file {}: {e}", path.display()),
            )
        })
    }
}

impl<D: Device, W: Write> PcapRecorder<D, W> {
    /// Records `device` into `writer`, writing the pcap file header at once.
    ///
    /// # Errors
    ///
    /// Writing the file header fails.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (a, _b) = link.split();
    /// let recorder = PcapRecorder::new(a, std::io::sink())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(device: D, writer: W) -> io::Result<Self> {
        // Records are written in native byte order with microsecond
        // timestamps (see `Sink::write_record`); the header must say so.
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let mut writer = writer;
        header.write_to(&mut writer).map_err(to_io)?;
        Ok(PcapRecorder {
            inner: device,
            sink: RefCell::new(Sink {
                writer,
                anchor: None,
                recorded: 0,
                errors: 0,
            }),
        })
    }
}

impl<D, W: Write> PcapRecorder<D, W> {
    /// Number of frames written so far (both directions).
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// assert_eq!(recorder.frames_recorded(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn frames_recorded(&self) -> u64 {
        self.sink.try_borrow().map_or(0, |s| s.recorded)
    }

    /// Number of frames that could not be written (I/O errors). The device
    /// keeps working when recording fails; check this to know the file is
    /// complete.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// assert_eq!(recorder.record_errors(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn record_errors(&self) -> u64 {
        self.sink.try_borrow().map_or(0, |s| s.errors)
    }

    /// The wrapped device.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// assert_eq!(recorder.inner().stats().tx_frames, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably. Frames moved through it directly are not
    /// recorded.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let mut recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// let _device = recorder.inner_mut();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Flushes buffered records to the writer, e.g. before reading a file
    /// while the stack is still running.
    ///
    /// # Errors
    ///
    /// The writer's flush fails.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let mut recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// recorder.flush()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&mut self) -> io::Result<()> {
        // `&mut self` guarantees no token holds the sink: no runtime borrow.
        self.sink.get_mut().writer.flush()
    }

    /// Flushes (logging any failure) and returns the wrapped device.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// let _device = recorder.into_inner();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> D {
        self.into_parts().0
    }

    /// Flushes (logging any failure) and returns the wrapped device and the
    /// writer holding the pcap stream.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let recorder = PcapRecorder::new(link.split().0, Vec::new())?;
    /// let (_device, bytes) = recorder.into_parts();
    /// assert_eq!(&bytes[..4], &0xa1b2c3d4u32.to_ne_bytes());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_parts(mut self) -> (D, W) {
        if let Err(e) = self.flush() {
            log::warn!("pcap: flush failed, the capture may be incomplete: {e}");
        }
        let sink = self.sink.into_inner();
        (self.inner, sink.writer)
    }
}

fn to_io(err: PcapError) -> io::Error {
    match err {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<D: fmt::Debug, W: Write> fmt::Debug for PcapRecorder<D, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapRecorder")
            .field("inner", &self.inner)
            .field("frames_recorded", &self.frames_recorded())
            .field("record_errors", &self.record_errors())
            .finish()
    }
}

impl<D: AsRawFd, W: Write> AsRawFd for PcapRecorder<D, W> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<D: AsFd, W: Write> AsFd for PcapRecorder<D, W> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<D: Device, W: Write> Device for PcapRecorder<D, W> {
    type RxToken<'a>
        = PcapRxToken<'a, D::RxToken<'a>, W>
    where
        Self: 'a;
    type TxToken<'a>
        = PcapTxToken<'a, D::TxToken<'a>, W>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(timestamp)?;
        let rx = PcapRxToken {
            inner: rx,
            sink: &self.sink,
            at: timestamp,
        };
        let tx = PcapTxToken {
            inner: tx,
            sink: &self.sink,
            at: timestamp,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(PcapTxToken {
            inner: tx,
            sink: &self.sink,
            at: timestamp,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// Receive token of a [`PcapRecorder`]: records the frame, then hands it on.
pub struct PcapRxToken<'a, T, W: Write> {
    inner: T,
    sink: &'a RefCell<Sink<W>>,
    at: Instant,
}

impl<T: phy::RxToken, W: Write> phy::RxToken for PcapRxToken<'_, T, W> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let sink = self.sink;
        let at = self.at;
        self.inner.consume(|frame| {
            // Record before `f` runs: smoltcp consumes the paired tx token
            // inside `f`, and the capture should show request before reply.
            record(sink, at, frame);
            f(frame)
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

impl<T, W: Write> fmt::Debug for PcapRxToken<'_, T, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapRxToken").field("at", &self.at).finish()
    }
}

/// Transmit token of a [`PcapRecorder`]: lets the stack build the frame,
/// records it, then hands it on.
pub struct PcapTxToken<'a, T, W: Write> {
    inner: T,
    sink: &'a RefCell<Sink<W>>,
    at: Instant,
}

impl<T: phy::TxToken, W: Write> phy::TxToken for PcapTxToken<'_, T, W> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let sink = self.sink;
        let at = self.at;
        self.inner.consume(len, |frame| {
            let result = f(frame);
            record(sink, at, frame);
            result
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}

impl<T, W: Write> fmt::Debug for PcapTxToken<'_, T, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapTxToken").field("at", &self.at).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PipeLink;
    use pcap_file::pcap::PcapReader;
    use smoltcp::phy::{RxToken, TxToken};

    fn send<D: Device>(dev: &mut D, at: Instant, data: &[u8]) {
        let tx = dev.transmit(at).expect("transmit token");
        tx.consume(data.len(), |buf| buf.copy_from_slice(data));
    }

    fn recv<D: Device>(dev: &mut D, at: Instant) -> Vec<u8> {
        let (rx, _tx) = dev.receive(at).expect("receive token");
        rx.consume(|f| f.to_vec())
    }

    fn read_back(bytes: &[u8]) -> (PcapHeader, Vec<(Duration, u32, Vec<u8>)>) {
        let mut reader = PcapReader::new(bytes).expect("valid pcap header");
        let header = reader.header();
        let mut packets = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.expect("valid pcap record");
            packets.push((packet.timestamp, packet.orig_len, packet.data.to_vec()));
        }
        (header, packets)
    }

    #[test]
    fn records_both_directions_in_order() {
        let link = PipeLink::<8, 1514>::new();
        let (a, mut b) = link.split();
        let mut rec = PcapRecorder::new(a, Vec::new()).unwrap();
        let frames: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 60 + usize::from(i)]).collect();

        send(&mut rec, Instant::from_millis(1000), &frames[0]);
        send(&mut b, Instant::from_millis(1000), &frames[1]);
        assert_eq!(recv(&mut rec, Instant::from_millis(1250)), frames[1]);
        assert_eq!(recv(&mut b, Instant::from_millis(1250)), frames[0]);
        send(&mut rec, Instant::from_millis(3000), &frames[2]);
        // Reply through the token paired with a receive.
        send(&mut b, Instant::from_millis(3000), &frames[3]);
        let (rx, tx) = rec.receive(Instant::from_millis(3500)).unwrap();
        rx.consume(|f| assert_eq!(f, &frames[3][..]));
        tx.consume(3, |buf| buf.copy_from_slice(b"ack"));

        assert_eq!(rec.frames_recorded(), 5);
        assert_eq!(rec.record_errors(), 0);
        let (_a, bytes) = rec.into_parts();
        let (header, packets) = read_back(&bytes);
        assert_eq!(header.datalink, DataLink::ETHERNET);
        let datas: Vec<&[u8]> = packets.iter().map(|p| &p.2[..]).collect();
        assert_eq!(
            datas,
            [&frames[0][..], &frames[1], &frames[2], &frames[3], b"ack"]
        );
        for p in &packets {
            assert_eq!(p.1 as usize, p.2.len());
        }
        // Relative spacing follows the smoltcp clock; the origin is wall time.
        let t0 = packets[0].0;
        assert!(
            t0 > Duration::from_secs(1_600_000_000),
            "anchored to wall clock: {t0:?}"
        );
        let offsets: Vec<u128> = packets.iter().map(|p| (p.0 - t0).as_millis()).collect();
        assert_eq!(offsets, [0, 250, 2000, 2500, 2500]);
    }

    #[test]
    fn unconsumed_tokens_are_not_recorded() {
        let link = PipeLink::<8, 1514>::new();
        let (a, _b) = link.split();
        let mut rec = PcapRecorder::new(a, Vec::new()).unwrap();
        assert!(rec.transmit(Instant::ZERO).is_some());
        assert_eq!(rec.frames_recorded(), 0);
        let (_a, bytes) = rec.into_parts();
        assert!(read_back(&bytes).1.is_empty());
    }

    /// Accepts the file header, then fails every write.
    struct FailAfter(usize);

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_counted_and_the_device_keeps_working() {
        let link = PipeLink::<8, 1514>::new();
        let (a, mut b) = link.split();
        let mut rec = PcapRecorder::new(a, FailAfter(24)).unwrap();
        send(&mut rec, Instant::ZERO, b"frame");
        assert_eq!(recv(&mut b, Instant::ZERO), b"frame");
        assert_eq!(rec.frames_recorded(), 0);
        assert_eq!(rec.record_errors(), 1);
        assert!(PcapRecorder::new(link.split().0, FailAfter(0)).is_err());
    }

    #[test]
    fn create_writes_a_readable_file() {
        let path = std::env::temp_dir().join(format!("ustack-drivers-{}.pcap", std::process::id()));
        let link = PipeLink::<8, 1514>::new();
        let (a, mut b) = link.split();
        let mut rec = PcapRecorder::create(a, &path).unwrap();
        // A broadcast ARP request for 10.7.0.2 from 10.7.0.1.
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 10, 7, 0, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 7, 0, 2]);
        send(&mut rec, Instant::from_millis(5), &arp);
        recv(&mut b, Instant::ZERO);
        rec.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, packets) = read_back(&bytes);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].2, arp);
        drop(rec);
        let _ = std::fs::remove_file(&path);
        let err = PcapRecorder::create(link.split().0, "/nonexistent-dir/x.pcap").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.pcap"), "{err}");
    }
}
