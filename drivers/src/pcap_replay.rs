//! Replaying a pcap file into a stack.
//!
//! [`PcapReplay`] is a [`smoltcp::phy::Device`] whose receive side hands out
//! the packets of a classic pcap stream, one per token, in file order, and
//! whose transmit side accepts (and counts) whatever the stack sends. It reads
//! what [`PcapRecorder`](crate::PcapRecorder) writes, and captures from
//! `tcpdump -w` with link type Ethernet.
//!
//! The input is treated as hostile: a malformed or truncated file ends the
//! replay (counted in [`ReplayStats::read_errors`]) instead of panicking, and
//! no record may claim more than [`MAX_CAPTURED`] bytes, so a forged length
//! never turns into a large allocation.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest captured length a record may claim: a 65,535-byte IP packet plus
/// the 14-byte Ethernet header. A larger claim is treated as a malformed file.
pub const MAX_CAPTURED: usize = 65_535 + 14;

/// Default MTU of a [`PcapReplay`] (Ethernet header included); longer packets
/// are skipped.
pub const DEFAULT_MTU: usize = 1514;

/// Counters of a [`PcapReplay`].
///
/// # Example
///
/// ```
/// use smoltcp::phy::{Device, RxToken, TxToken};
/// use smoltcp::time::Instant;
/// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink, ReplayStats};
///
/// let link = PipeLink::<8, 1514>::new();
/// let mut rec = PcapRecorder::new(link.split().0, Vec::new())?;
/// rec.transmit(Instant::ZERO).unwrap().consume(60, |buf| buf.fill(1));
/// let (_a, mut bytes) = rec.into_parts();
/// bytes.truncate(bytes.len() - 1); // cut the last (only) record short
///
/// let mut replay = PcapReplay::new(&bytes[..])?;
/// assert!(replay.receive(Instant::ZERO).is_none());
/// let want = ReplayStats { read_errors: 1, ..ReplayStats::default() };
/// assert_eq!(replay.stats(), want);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Packets handed to the stack (receive tokens consumed).
    pub replayed: u64,
    /// Complete records not handed out: longer than the MTU, or the file's
    /// link type is not Ethernet.
    pub skipped: u64,
    /// Frames the stack transmitted.
    pub transmitted: u64,
    /// Malformed or truncated records, or read failures. Each ends the replay,
    /// so this is 0 or 1.
    pub read_errors: u64,
}

/// The record to hand out next, once read.
struct Pending {
    frame: Vec<u8>,
    timestamp: Duration,
    full: bool,
}

/// What the transmit side keeps.
struct TxSide {
    keep: usize,
    kept: VecDeque<Vec<u8>>,
    scratch: Vec<u8>,
    transmitted: u64,
}

/// A device that replays a pcap stream as received frames and swallows what
/// the stack transmits.
///
/// # Example
///
/// Record two frames with [`PcapRecorder`](crate::PcapRecorder), then replay
/// them:
///
/// ```
/// use smoltcp::phy::{Device, RxToken, TxToken};
/// use smoltcp::time::Instant;
/// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
///
/// let link = PipeLink::<8, 1514>::new();
/// let (a, _b) = link.split();
/// let mut rec = PcapRecorder::new(a, Vec::new())?;
/// for frame in [&b"first frame"[..], b"second"] {
///     let tx = rec.transmit(Instant::ZERO).unwrap();
///     tx.consume(frame.len(), |buf| buf.copy_from_slice(frame));
/// }
/// let (_a, bytes) = rec.into_parts();
///
/// let mut replay = PcapReplay::new(&bytes[..])?;
/// let mut got = Vec::new();
/// while let Some((rx, _tx)) = replay.receive(Instant::ZERO) {
///     got.push(rx.consume(|f| f.to_vec()));
/// }
/// assert_eq!(got, [&b"first frame"[..], b"second"]);
/// assert_eq!(replay.stats().replayed, 2);
/// assert!(replay.is_finished());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PcapReplay<R: Read> {
    reader: R,
    header: PcapHeader,
    mtu: usize,
    pending: Pending,
    /// No more records: end of file, or an error.
    done: bool,
    replayed: u64,
    skipped: u64,
    read_errors: u64,
    tx: TxSide,
}

impl PcapReplay<BufReader<File>> {
    /// Replays the pcap file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, or its header is missing or invalid; the
    /// message names the path.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let path = std::env::temp_dir().join(format!("replay-doc-{}.pcap", std::process::id()));
    /// let link = PipeLink::<8, 1514>::new();
    /// drop(PcapRecorder::create(link.split().0, &path)?); // header only
    /// let mut replay = PcapReplay::open(&path)?;
    /// assert!(replay.is_finished());
    /// std::fs::remove_file(&path)?;
    /// assert!(PcapReplay::open("/nonexistent-dir/x.pcap").is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open pcap file {}: {e}", path.display()),
            )
        })?;
        Self::new(BufReader::new(file)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot replay pcap file {}: {e}", path.display()),
            )
        })
    }
}

impl<R: Read> PcapReplay<R> {
    /// Reads the pcap file header from `reader`; packets are read one at a
    /// time as the stack asks for them.
    ///
    /// # Errors
    ///
    /// Fewer than 24 header bytes, an unknown magic number, or a read error.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// assert!(PcapReplay::new(&bytes[..]).is_ok());
    /// assert!(PcapReplay::new(&b"not a pcap file at all!!"[..]).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(mut reader: R) -> io::Result<Self> {
        let mut raw = [0u8; 24];
        let n = read_full(&mut reader, &mut raw)?;
        let (_, header) = PcapHeader::from_slice(&raw[..n]).map_err(to_io)?;
        Ok(PcapReplay {
            reader,
            header,
            mtu: DEFAULT_MTU,
            pending: Pending {
                frame: Vec::new(),
                timestamp: Duration::ZERO,
                full: false,
            },
            done: false,
            replayed: 0,
            skipped: 0,
            read_errors: 0,
            tx: TxSide {
                keep: 0,
                kept: VecDeque::new(),
                scratch: Vec::new(),
                transmitted: 0,
            },
        })
    }

    /// Sets the MTU (Ethernet header included, default [`DEFAULT_MTU`]):
    /// longer packets are skipped, and it is what
    /// [`capabilities`](Device::capabilities) reports.
    ///
    /// # Example
    ///
    /// ```
    /// use smoltcp::phy::Device;
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// let replay = PcapReplay::new(&bytes[..])?.with_mtu(9014);
    /// assert_eq!(replay.capabilities().max_transmission_unit, 9014);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Keeps the last `n` transmitted frames (default 0), for
    /// [`transmitted_frames`](Self::transmitted_frames).
    ///
    /// # Example
    ///
    /// ```
    /// use smoltcp::phy::{Device, TxToken};
    /// use smoltcp::time::Instant;
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// let mut replay = PcapReplay::new(&bytes[..])?.keep_transmitted(1);
    /// for frame in [&b"one"[..], b"two"] {
    ///     let tx = replay.transmit(Instant::ZERO).unwrap();
    ///     tx.consume(frame.len(), |buf| buf.copy_from_slice(frame));
    /// }
    /// assert_eq!(replay.transmitted_frames().collect::<Vec<_>>(), [b"two"]);
    /// assert_eq!(replay.stats().transmitted, 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn keep_transmitted(mut self, n: usize) -> Self {
        self.tx.keep = n;
        while self.tx.kept.len() > n {
            self.tx.kept.pop_front();
        }
        self
    }

    /// The last transmitted frames kept (see
    /// [`keep_transmitted`](Self::keep_transmitted)), oldest first.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// let replay = PcapReplay::new(&bytes[..])?.keep_transmitted(4);
    /// assert_eq!(replay.transmitted_frames().count(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn transmitted_frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.tx.kept.iter().map(Vec::as_slice)
    }

    /// The file's header (link type, snap length, byte order, resolution).
    ///
    /// # Example
    ///
    /// ```
    /// use pcap_file::DataLink;
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// let replay = PcapReplay::new(&bytes[..])?;
    /// assert_eq!(replay.header().datalink, DataLink::ETHERNET);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn header(&self) -> PcapHeader {
        self.header
    }

    /// The counters so far.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink, ReplayStats};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// let replay = PcapReplay::new(&bytes[..])?;
    /// assert_eq!(replay.stats(), ReplayStats::default());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            replayed: self.replayed,
            skipped: self.skipped,
            transmitted: self.tx.transmitted,
            read_errors: self.read_errors,
        }
    }

    /// The capture time of the packet the next `receive` hands out (as
    /// written in the file: since the Unix epoch for most captures), or
    /// `None` when the replay is over. Reads ahead one record, so a caller
    /// can pace the replay by advancing its clock to match.
    ///
    /// # Example
    ///
    /// ```
    /// use smoltcp::phy::{Device, RxToken, TxToken};
    /// use smoltcp::time::Instant;
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let mut rec = PcapRecorder::new(link.split().0, Vec::new())?;
    /// for ms in [0, 250] {
    ///     let tx = rec.transmit(Instant::from_millis(ms)).unwrap();
    ///     tx.consume(4, |buf| buf.fill(0));
    /// }
    /// let (_a, bytes) = rec.into_parts();
    /// let mut replay = PcapReplay::new(&bytes[..])?;
    /// let t0 = replay.next_timestamp().unwrap();
    /// let (rx, _) = replay.receive(Instant::ZERO).unwrap();
    /// rx.consume(|_| ());
    /// let t1 = replay.next_timestamp().unwrap();
    /// assert_eq!((t1 - t0).as_millis(), 250);
    /// let (rx, _) = replay.receive(Instant::ZERO).unwrap();
    /// rx.consume(|_| ());
    /// assert_eq!(replay.next_timestamp(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn next_timestamp(&mut self) -> Option<Duration> {
        self.fill();
        self.pending.full.then_some(self.pending.timestamp)
    }

    /// Whether every packet has been handed out (or the file ended in error):
    /// `receive` returns `None` from now on.
    ///
    /// # Example
    ///
    /// ```
    /// use ustack_drivers::{PcapRecorder, PcapReplay, PipeLink};
    ///
    /// let link = PipeLink::<8, 1514>::new();
    /// let (_a, bytes) = PcapRecorder::new(link.split().0, Vec::new())?.into_parts();
    /// let mut replay = PcapReplay::new(&bytes[..])?;
    /// assert!(replay.is_finished());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_finished(&mut self) -> bool {
        self.fill();
        !self.pending.full
    }

    /// Makes sure the next deliverable record is in `pending`, unless the
    /// replay is over.
    fn fill(&mut self) {
        while !self.pending.full && !self.done {
            match self.read_record() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    self.read_errors += 1;
                    self.pending.frame.clear();
                    log::debug!("pcap replay: stopping at a bad record: {e}");
                }
            }
        }
    }

    /// Reads one record: `Ok(true)` if it was read (into `pending`, or
    /// skipped), `Ok(false)` at a clean end of file.
    fn read_record(&mut self) -> io::Result<bool> {
        let mut raw = [0u8; 16];
        match read_full(&mut self.reader, &mut raw)? {
            0 => return Ok(false),
            16 => {}
            n => {
                return Err(truncated(format!(
                    "record header cut after {n} of 16 bytes"
                )))
            }
        }
        let field = |i: usize| {
            let b = [raw[i], raw[i + 1], raw[i + 2], raw[i + 3]];
            match self.header.endianness {
                Endianness::Big => u32::from_be_bytes(b),
                Endianness::Little => u32::from_le_bytes(b),
            }
        };
        let (ts_sec, ts_frac, incl_len) = (field(0), field(4), field(8));
        let len = incl_len as usize;
        if len > MAX_CAPTURED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record claims {len} captured bytes, more than {MAX_CAPTURED}"),
            ));
        }
        let frac_nanos = match self.header.ts_resolution {
            TsResolution::MicroSecond => u64::from(ts_frac) * 1000,
            TsResolution::NanoSecond => u64::from(ts_frac),
        };
        let timestamp = Duration::from_secs(u64::from(ts_sec)) + Duration::from_nanos(frac_nanos);
        if len > self.mtu || self.header.datalink != DataLink::ETHERNET {
            // Read past it without keeping it.
            let got = io::copy(&mut (&mut self.reader).take(len as u64), &mut io::sink())?;
            if got != len as u64 {
                return Err(truncated(format!("record cut after {got} of {len} bytes")));
            }
            self.skipped += 1;
            return Ok(true);
        }
        let frame = &mut self.pending.frame;
        frame.clear();
        frame.resize(len, 0);
        let got = read_full(&mut self.reader, frame)?;
        if got != len {
            return Err(truncated(format!("record cut after {got} of {len} bytes")));
        }
        self.pending.timestamp = timestamp;
        self.pending.full = true;
        Ok(true)
    }
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn truncated(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg)
}

fn to_io(err: PcapError) -> io::Error {
    match err {
        PcapError::IoError(e) => e,
        PcapError::IncompleteBuffer => truncated("pcap file header cut short".into()),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<R: Read> fmt::Debug for PcapReplay<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapReplay")
            .field("header", &self.header)
            .field("mtu", &self.mtu)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<R: Read> Device for PcapReplay<R> {
    type RxToken<'a>
        = ReplayRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = ReplayTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.fill();
        if !self.pending.full {
            return None;
        }
        let rx = ReplayRxToken {
            pending: &mut self.pending,
            replayed: &mut self.replayed,
        };
        Some((rx, ReplayTxToken { tx: &mut self.tx }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(ReplayTxToken { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// Receive token of a [`PcapReplay`]: the next packet of the file. A token
/// dropped without being consumed leaves the packet for the next `receive`.
pub struct ReplayRxToken<'a> {
    pending: &'a mut Pending,
    replayed: &'a mut u64,
}

impl phy::RxToken for ReplayRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        self.pending.full = false;
        *self.replayed += 1;
        f(&self.pending.frame)
    }
}

impl fmt::Debug for ReplayRxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayRxToken")
            .field("len", &self.pending.frame.len())
            .finish()
    }
}

/// Transmit token of a [`PcapReplay`]: counts the frame (and keeps it if
/// asked to), sends it nowhere.
pub struct ReplayTxToken<'a> {
    tx: &'a mut TxSide,
}

impl phy::TxToken for ReplayTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let tx = self.tx;
        let mut buf = std::mem::take(&mut tx.scratch);
        buf.clear();
        buf.resize(len, 0);
        let result = f(&mut buf);
        tx.transmitted += 1;
        if tx.keep > 0 {
            if tx.kept.len() >= tx.keep {
                tx.kept.pop_front();
            }
            tx.kept.push_back(buf);
        } else {
            tx.scratch = buf;
        }
        result
    }
}

impl fmt::Debug for ReplayTxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayTxToken")
            .field("transmitted", &self.tx.transmitted)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PcapRecorder, PipeLink};
    use smoltcp::phy::{RxToken, TxToken};

    /// A pcap stream of `frames`, each transmitted 10 ms after the previous.
    fn record(frames: &[Vec<u8>]) -> Vec<u8> {
        let link = PipeLink::<8, 1514>::new();
        let (a, mut b) = link.split();
        let mut rec = PcapRecorder::new(a, Vec::new()).unwrap();
        for (i, frame) in frames.iter().enumerate() {
            let tx = rec.transmit(Instant::from_millis(10 * i as i64)).unwrap();
            tx.consume(frame.len(), |buf| buf.copy_from_slice(frame));
            b.receive(Instant::ZERO).unwrap().0.consume(|_| ());
        }
        rec.into_parts().1
    }

    fn drain<R: Read>(replay: &mut PcapReplay<R>) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        // Bounded: a replay never hands out more packets than records.
        for _ in 0..10_000 {
            let Some((rx, _tx)) = replay.receive(Instant::ZERO) else {
                break;
            };
            got.push(rx.consume(|f| f.to_vec()));
        }
        assert!(replay.receive(Instant::ZERO).is_none());
        got
    }

    fn frames() -> Vec<Vec<u8>> {
        (0..5u8)
            .map(|i| (0..60 + 7 * usize::from(i)).map(|j| j as u8 ^ i).collect())
            .collect()
    }

    #[test]
    fn round_trip_is_exact_and_ordered() {
        let frames = frames();
        let bytes = record(&frames);
        let mut replay = PcapReplay::new(&bytes[..]).unwrap();
        let mut stamps = Vec::new();
        while let Some(ts) = replay.next_timestamp() {
            stamps.push(ts);
            replay.receive(Instant::ZERO).unwrap().0.consume(|_| ());
        }
        let offsets: Vec<u128> = stamps
            .iter()
            .map(|t| (*t - stamps[0]).as_millis())
            .collect();
        assert_eq!(offsets, [0, 10, 20, 30, 40]);

        let mut replay = PcapReplay::new(&bytes[..]).unwrap();
        assert_eq!(drain(&mut replay), frames);
        let stats = replay.stats();
        assert_eq!(
            stats,
            ReplayStats {
                replayed: 5,
                ..ReplayStats::default()
            }
        );
    }

    #[test]
    fn unconsumed_token_keeps_the_packet() {
        let frames = frames();
        let bytes = record(&frames);
        let mut replay = PcapReplay::new(&bytes[..]).unwrap();
        assert!(replay.receive(Instant::ZERO).is_some());
        assert_eq!(replay.stats().replayed, 0);
        assert_eq!(drain(&mut replay), frames);
    }

    #[test]
    fn every_cut_point_replays_the_complete_packets() {
        let frames = frames();
        let bytes = record(&frames);
        // End offset of each record.
        let mut ends = Vec::new();
        let mut at = 24;
        for f in &frames {
            at += 16 + f.len();
            ends.push(at);
        }
        assert_eq!(at, bytes.len());
        for cut in 0..=bytes.len() {
            let Ok(mut replay) = PcapReplay::new(&bytes[..cut]) else {
                assert!(cut < 24, "header refused at cut {cut}");
                continue;
            };
            assert!(cut >= 24);
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            let got = drain(&mut replay);
            assert_eq!(got, frames[..complete], "cut {cut}");
            let on_boundary = cut == 24 || ends.contains(&cut);
            let stats = replay.stats();
            assert_eq!(stats.replayed, complete as u64, "cut {cut}");
            assert_eq!(stats.read_errors, u64::from(!on_boundary), "cut {cut}");
            assert_eq!(stats.skipped, 0);
        }
    }

    /// A reader that fails the test if asked for more than `limit` bytes in
    /// one call: a forged length must not be read (or allocated) whole.
    struct Stingy<'a>(&'a [u8]);

    impl Read for Stingy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(buf.len() <= MAX_CAPTURED, "asked for {} bytes", buf.len());
            self.0.read(buf)
        }
    }

    #[test]
    fn oversized_captured_length_is_rejected() {
        let frames = frames();
        let mut bytes = record(&frames[..1]);
        // A second record claiming 4 GiB, followed by a little data.
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&u32::MAX.to_ne_bytes());
        bytes.extend_from_slice(&u32::MAX.to_ne_bytes());
        bytes.extend_from_slice(&[0xab; 100]);
        let mut replay = PcapReplay::new(Stingy(&bytes)).unwrap();
        assert_eq!(drain(&mut replay), frames[..1]);
        assert_eq!(replay.stats().read_errors, 1);
        assert!(replay.pending.frame.capacity() <= 4096);

        // Just over the cap is malformed too; at the cap (over the MTU) is skipped.
        for (claim, skipped, errors) in [(MAX_CAPTURED + 1, 0, 1), (MAX_CAPTURED, 1, 0)] {
            let mut bytes = record(&[]);
            bytes.extend_from_slice(&[0; 8]);
            bytes.extend_from_slice(&(claim as u32).to_ne_bytes());
            bytes.extend_from_slice(&(claim as u32).to_ne_bytes());
            bytes.resize(bytes.len() + MAX_CAPTURED, 0);
            bytes.truncate(24 + 16 + MAX_CAPTURED);
            let mut replay = PcapReplay::new(Stingy(&bytes)).unwrap();
            assert!(drain(&mut replay).is_empty());
            let stats = replay.stats();
            assert_eq!(
                (stats.skipped, stats.read_errors),
                (skipped, errors),
                "{claim}"
            );
        }
    }

    #[test]
    fn packets_over_the_mtu_and_other_link_types_are_skipped() {
        let big = vec![7u8; 1400];
        let small = vec![1u8; 60];
        let bytes = record(&[small.clone(), big.clone(), small.clone()]);
        let mut replay = PcapReplay::new(&bytes[..]).unwrap().with_mtu(1000);
        assert_eq!(drain(&mut replay), [small.clone(), small.clone()]);
        assert_eq!(replay.stats().skipped, 1);
        assert_eq!(replay.stats().read_errors, 0);

        // Same records, link type raw IP (101).
        let mut raw_ip = bytes.clone();
        raw_ip[20..24].copy_from_slice(&101u32.to_ne_bytes());
        let mut replay = PcapReplay::new(&raw_ip[..]).unwrap();
        assert!(drain(&mut replay).is_empty());
        assert_eq!(replay.stats().skipped, 3);
    }

    #[test]
    fn foreign_byte_order_and_nanoseconds_are_read() {
        let frame = vec![0x42u8; 64];
        // Big-endian (or whichever is not native) nanosecond file by hand.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
        bytes.extend_from_slice(&2u16.to_be_bytes());
        bytes.extend_from_slice(&4u16.to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&65535u32.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        for field in [7u32, 5, 64, 64] {
            bytes.extend_from_slice(&field.to_be_bytes());
        }
        bytes.extend_from_slice(&frame);
        let mut replay = PcapReplay::new(&bytes[..]).unwrap();
        assert_eq!(replay.next_timestamp(), Some(Duration::new(7, 5)));
        assert_eq!(drain(&mut replay), [frame]);
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let mut bytes = record(&frames());
        bytes[..4].copy_from_slice(b"GIF8");
        let err = PcapReplay::new(&bytes[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let err = PcapReplay::new(&bytes[..10]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn transmit_counts_and_keeps_the_last_frames() {
        let bytes = record(&[]);
        let mut replay = PcapReplay::new(&bytes[..]).unwrap().keep_transmitted(2);
        for i in 0..5u8 {
            let tx = replay.transmit(Instant::ZERO).unwrap();
            tx.consume(3, |buf| buf.fill(i));
        }
        let kept: Vec<&[u8]> = replay.transmitted_frames().collect();
        assert_eq!(kept, [&[3u8; 3][..], &[4u8; 3]]);
        assert_eq!(replay.stats().transmitted, 5);
        assert!(replay.is_finished());
    }
}
