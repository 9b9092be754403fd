//! A `no_std`, polled driver for the SMSC LAN9118 Ethernet controller.
//!
//! The LAN9118 is the Ethernet controller of Arm's MPS2 boards and of QEMU's
//! `mps2-an385`/`mps2-an386`/`mps2-an500`/`mps2-an511` machines (base address
//! `0x4020_0000` there). [`Lan9118`] implements [`smoltcp::phy::Device`] with
//! [`Medium::Ethernet`] and an MTU of 1514 bytes, so it can be handed to a
//! smoltcp `Interface` or a ustack `Stack` directly.
//!
//! - Register access goes through the [`Bus`] trait. [`Mmio`] is the real
//!   implementation (volatile 32-bit accesses); tests use a fake bus.
//! - Nothing allocates. Each driver owns one receive and one transmit buffer
//!   of [`BUF_LEN`] bytes.
//! - Nothing blocks forever: every wait on the hardware is a bounded number of
//!   register reads ([`SPIN_LIMIT`]) and ends in an [`Error`].
//! - Hardware values are never trusted: lengths are clamped and checked, bad
//!   frames are dropped and counted in [`Counters`].
//! - Interrupts stay disabled; the driver is meant to be polled from the
//!   firmware's main loop.
//!
//! # Example
//!
//! ```no_run
//! use ustack_drivers::lan9118::{Lan9118, Mmio};
//!
//! // SAFETY: 0x4020_0000 is the LAN9118 of QEMU's mps2-an385, nothing else
//! // accesses it, and the driver lives for the rest of the program.
//! let bus = unsafe { Mmio::new(0x4020_0000) };
//! let mut eth = Lan9118::new(bus, [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]).unwrap();
//! // hand `eth` to smoltcp / ustack; poll it from the main loop.
//! ```

pub mod regs;

#[cfg(test)]
mod tests;

use core::fmt;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest Ethernet frame handed to or taken from smoltcp (header included,
/// CRC excluded): an IP MTU of 1500.
pub const MTU: usize = 1514;

/// Size of the driver's receive and transmit buffers. Must hold a frame plus
/// its CRC and be a multiple of 4 (the FIFOs move 32-bit words).
pub const BUF_LEN: usize = 1536;

/// How many register reads a wait on the hardware may take before it gives up.
pub const SPIN_LIMIT: u32 = 100_000;

/// Frames taken off the RX FIFO per [`receive`](Device::receive) call while
/// skipping bad ones, so that one call is bounded.
const RX_SKIP_LIMIT: usize = 16;

/// Bytes a transmit needs in the TX data FIFO: two command words plus the
/// largest frame, rounded up to words.
const TX_SPACE_NEEDED: u32 = (8 + MTU.div_ceil(4) * 4) as u32;

// The buffers must hold whole words.
const _: () = assert!(BUF_LEN.is_multiple_of(4) && BUF_LEN >= MTU + regs::CRC_LEN);

/// 32-bit register access to a LAN9118.
///
/// `offset` is a byte offset from the controller's base (one of the constants
/// in [`regs`], always 4-byte aligned and below [`regs::WINDOW`]).
pub trait Bus {
    /// Reads the 32-bit register at `offset`. Reading a FIFO port pops it.
    fn read(&mut self, offset: usize) -> u32;
    /// Writes `value` to the 32-bit register at `offset`.
    fn write(&mut self, offset: usize, value: u32);
}

/// Memory-mapped access to a LAN9118 at a fixed physical address.
#[derive(Debug)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// Creates a bus for the controller whose 256-byte register window starts
    /// at `base` (`0x4020_0000` on QEMU's `mps2-an385`).
    ///
    /// # Safety
    ///
    /// - `base` must be 4-byte aligned and `base..base + 0x100` must be the
    ///   register window of a LAN9118 (device memory, mapped, 32-bit accesses
    ///   allowed);
    /// - nothing else (another `Mmio`, an interrupt handler, DMA) may access
    ///   that window while this value lives, because reads pop FIFOs.
    pub const unsafe fn new(base: usize) -> Self {
        Mmio { base }
    }

    /// The base address this bus was created with.
    pub fn base(&self) -> usize {
        self.base
    }

    fn addr(&self, offset: usize) -> *mut u32 {
        debug_assert!(offset < regs::WINDOW && offset.is_multiple_of(4));
        // Masking keeps every access inside the window promised in `new`.
        (self.base + (offset & (regs::WINDOW - 4))) as *mut u32
    }
}

impl Bus for Mmio {
    fn read(&mut self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract makes `base..base + WINDOW` an aligned,
        // mapped LAN9118 register window owned by this value; `addr` keeps
        // the access inside it and 4-byte aligned.
        unsafe { core::ptr::read_volatile(self.addr(offset)) }
    }

    fn write(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(self.addr(offset), value) }
    }
}

/// Why [`Lan9118::new`] (or a management access) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `BYTE_TEST` did not read `0x8765_4321`: wrong base address, bus width
    /// or byte order, or no controller there. Holds the value read.
    ByteTest(u32),
    /// `HW_CFG.SRST` did not clear (or `SRST_TO` was set) after a soft reset.
    ResetTimeout,
    /// `PMT_CTRL.READY` never came up.
    NotReady,
    /// A MAC CSR access (`MAC_CSR_CMD.BUSY`) did not complete.
    MacCsrTimeout,
    /// A PHY access (`MII_ACC.BUSY`) or the PHY reset did not complete.
    PhyTimeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ByteTest(v) => write!(f, "lan9118: BYTE_TEST read {v:#010x}, not 0x87654321"),
            Error::ResetTimeout => f.write_str("lan9118: soft reset did not complete"),
            Error::NotReady => f.write_str("lan9118: PMT_CTRL.READY never set"),
            Error::MacCsrTimeout => f.write_str("lan9118: MAC CSR access timed out"),
            Error::PhyTimeout => f.write_str("lan9118: PHY access timed out"),
        }
    }
}

/// Frame counters of a [`Lan9118`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to smoltcp.
    pub rx_frames: u64,
    /// Bytes of the frames in `rx_frames` (CRC excluded).
    pub rx_bytes: u64,
    /// Frames dropped because their RX status had the error bit (CRC, runt,
    /// too long, collision, MII error...).
    pub rx_errors: u64,
    /// Frames dropped because their length was impossible (shorter than an
    /// Ethernet header plus CRC, or longer than [`BUF_LEN`]), plus RX FIFO
    /// dumps after a length that did not match the data FIFO.
    pub rx_dropped: u64,
    /// Frames written to the TX FIFO.
    pub tx_frames: u64,
    /// Bytes of the frames in `tx_frames`.
    pub tx_bytes: u64,
    /// TX status words read back (one per transmitted frame when the chip
    /// reports them).
    pub tx_status: u64,
    /// TX status words with the error bit set.
    pub tx_errors: u64,
    /// Frames lost on transmit: longer than [`MTU`], or no FIFO space left
    /// when a token was consumed.
    pub tx_dropped: u64,
    /// `transmit()` calls refused for lack of TX FIFO space (smoltcp retries
    /// later, so this is back-pressure, not loss).
    pub tx_full: u64,
}

/// Register access, transmit buffer and counters: everything a transmit token
/// needs, kept apart from the receive buffer so a receive can hand out both
/// tokens at once.
struct Hw<B> {
    bus: B,
    tx_buf: [u8; BUF_LEN],
    counters: Counters,
    tag: u16,
}

impl<B: Bus> Hw<B> {
    /// Reads `offset` until `done(value)` holds, at most [`SPIN_LIMIT`] times.
    fn wait(&mut self, offset: usize, done: impl Fn(u32) -> bool) -> Option<u32> {
        for _ in 0..SPIN_LIMIT {
            let value = self.bus.read(offset);
            if done(value) {
                return Some(value);
            }
        }
        None
    }

    fn mac_wait(&mut self) -> Result<(), Error> {
        self.wait(regs::MAC_CSR_CMD, |v| v & regs::MAC_CSR_CMD_BUSY == 0)
            .map(|_| ())
            .ok_or(Error::MacCsrTimeout)
    }

    fn mac_read(&mut self, reg: u8) -> Result<u32, Error> {
        self.mac_wait()?;
        let cmd = regs::MAC_CSR_CMD_BUSY
            | regs::MAC_CSR_CMD_READ
            | (reg as u32 & regs::MAC_CSR_CMD_ADDR_MASK);
        self.bus.write(regs::MAC_CSR_CMD, cmd);
        self.mac_wait()?;
        Ok(self.bus.read(regs::MAC_CSR_DATA))
    }

    fn mac_write(&mut self, reg: u8, value: u32) -> Result<(), Error> {
        self.mac_wait()?;
        self.bus.write(regs::MAC_CSR_DATA, value);
        let cmd = regs::MAC_CSR_CMD_BUSY | (reg as u32 & regs::MAC_CSR_CMD_ADDR_MASK);
        self.bus.write(regs::MAC_CSR_CMD, cmd);
        self.mac_wait()
    }

    fn mii_wait(&mut self) -> Result<(), Error> {
        for _ in 0..SPIN_LIMIT {
            if self.mac_read(regs::MAC_MII_ACC)? & regs::MII_ACC_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::PhyTimeout)
    }

    fn phy_read(&mut self, reg: u8) -> Result<u16, Error> {
        self.mii_wait()?;
        let acc = regs::mii_acc_phy(regs::PHY_ADDR) | regs::mii_acc_reg(reg) | regs::MII_ACC_BUSY;
        self.mac_write(regs::MAC_MII_ACC, acc)?;
        self.mii_wait()?;
        Ok(self.mac_read(regs::MAC_MII_DATA)? as u16)
    }

    fn phy_write(&mut self, reg: u8, value: u16) -> Result<(), Error> {
        self.mii_wait()?;
        self.mac_write(regs::MAC_MII_DATA, value as u32)?;
        let acc = regs::mii_acc_phy(regs::PHY_ADDR)
            | regs::mii_acc_reg(reg)
            | regs::MII_ACC_WRITE
            | regs::MII_ACC_BUSY;
        self.mac_write(regs::MAC_MII_ACC, acc)?;
        self.mii_wait()
    }

    /// Pops every waiting TX status word, counting errors. Returns whether
    /// the TX data FIFO has room for a full frame (from the same read).
    fn drain_tx_status(&mut self) -> bool {
        let info = self.bus.read(regs::TX_FIFO_INF);
        let waiting = regs::tx_fifo_inf_status_used(info);
        for _ in 0..waiting {
            let status = self.bus.read(regs::TX_STATUS_FIFO);
            self.counters.tx_status += 1;
            if status & regs::TX_STATUS_ES != 0 {
                self.counters.tx_errors += 1;
            }
        }
        regs::tx_fifo_inf_data_free(info) >= TX_SPACE_NEEDED
    }

    fn tx_space(&mut self) -> bool {
        regs::tx_fifo_inf_data_free(self.bus.read(regs::TX_FIFO_INF)) >= TX_SPACE_NEEDED
    }

    /// Writes the first `len` bytes of `tx_buf` to the TX FIFO as one frame.
    fn send(&mut self, len: usize) {
        // `len <= MTU < 2048`, so it fits the 11-bit length fields.
        let len_field = len as u32 & regs::TX_CMD_LEN_MASK;
        self.tag = self.tag.wrapping_add(1);
        let cmd_a = regs::TX_CMD_A_FIRST_SEG | regs::TX_CMD_A_LAST_SEG | len_field;
        let cmd_b = regs::tx_cmd_b_tag(self.tag) | len_field;
        self.bus.write(regs::TX_DATA_FIFO, cmd_a);
        self.bus.write(regs::TX_DATA_FIFO, cmd_b);
        for chunk in self.tx_buf[..len.div_ceil(4) * 4].chunks_exact(4) {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.bus.write(regs::TX_DATA_FIFO, word);
        }
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += len as u64;
    }
}

/// An initialised LAN9118, polled; implements [`smoltcp::phy::Device`].
///
/// It holds two [`BUF_LEN`]-byte buffers inline (about 3 KiB), so firmware
/// normally keeps it in a `static` or in `main`'s never-returning frame.
pub struct Lan9118<B: Bus> {
    hw: Hw<B>,
    rx_buf: [u8; BUF_LEN],
    mac: [u8; 6],
    chip_id: u32,
}

impl<B: Bus> Lan9118<B> {
    /// Resets and starts the controller with MAC address `mac`.
    ///
    /// Sequence: check `BYTE_TEST`; soft reset (`HW_CFG.SRST`) and wait for it
    /// to clear and for `PMT_CTRL.READY`; mask and clear all interrupts; set
    /// the MAC address (`ADDRL`/`ADDRH`); reset the internal PHY and start
    /// auto-negotiation (not waited for: see [`link_up`](Self::link_up));
    /// enable the transmitter (`TX_CFG.TX_ON`, `MAC_CR.TXEN`) and the receiver
    /// (`MAC_CR.RXEN`) with perfect filtering on `mac`, broadcast, and all
    /// multicast accepted.
    ///
    /// # Errors
    ///
    /// Any bounded wait that runs out, or a bad `BYTE_TEST` value; see [`Error`].
    pub fn new(bus: B, mac: [u8; 6]) -> Result<Self, Error> {
        let mut hw = Hw {
            bus,
            tx_buf: [0; BUF_LEN],
            counters: Counters::default(),
            tag: 0,
        };

        let test = hw.bus.read(regs::BYTE_TEST);
        if test != regs::BYTE_TEST_VALUE {
            return Err(Error::ByteTest(test));
        }
        let chip_id = hw.bus.read(regs::ID_REV);

        hw.bus.write(regs::HW_CFG, regs::HW_CFG_SRST);
        let hw_cfg = hw
            .wait(regs::HW_CFG, |v| v & regs::HW_CFG_SRST == 0)
            .ok_or(Error::ResetTimeout)?;
        if hw_cfg & regs::HW_CFG_SRST_TO != 0 {
            return Err(Error::ResetTimeout);
        }
        hw.wait(regs::PMT_CTRL, |v| v & regs::PMT_CTRL_READY != 0)
            .ok_or(Error::NotReady)?;

        // Polled driver: no interrupts.
        hw.bus.write(regs::INT_EN, 0);
        hw.bus.write(regs::INT_STS, regs::INT_ALL);
        hw.bus.write(regs::IRQ_CFG, 0);
        hw.bus.write(regs::AFC_CFG, regs::AFC_CFG_DEFAULT);

        let addrl = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let addrh = u32::from_le_bytes([mac[4], mac[5], 0, 0]);
        hw.mac_write(regs::MAC_ADDRL, addrl)?;
        hw.mac_write(regs::MAC_ADDRH, addrh)?;

        // PHY: reset, advertise 10/100 half/full, auto-negotiate.
        hw.phy_write(regs::PHY_BMCR, regs::BMCR_RESET)?;
        let mut reset_done = false;
        for _ in 0..SPIN_LIMIT / 100 {
            if hw.phy_read(regs::PHY_BMCR)? & regs::BMCR_RESET == 0 {
                reset_done = true;
                break;
            }
        }
        if !reset_done {
            return Err(Error::PhyTimeout);
        }
        hw.phy_write(regs::PHY_ANAR, regs::ANAR_10_100_ALL)?;
        hw.phy_write(regs::PHY_BMCR, regs::BMCR_ANENABLE | regs::BMCR_ANRESTART)?;

        // Start with empty FIFOs, then enable both directions.
        hw.bus.write(regs::RX_CFG, regs::RX_CFG_RX_DUMP);
        hw.bus.write(
            regs::TX_CFG,
            regs::TX_CFG_TXS_DUMP | regs::TX_CFG_TXD_DUMP | regs::TX_CFG_TX_ON | regs::TX_CFG_TXSAO,
        );
        hw.mac_write(
            regs::MAC_CR,
            regs::MAC_CR_TXEN | regs::MAC_CR_RXEN | regs::MAC_CR_FDPX | regs::MAC_CR_MCPAS,
        )?;

        Ok(Lan9118 {
            hw,
            rx_buf: [0; BUF_LEN],
            mac,
            chip_id,
        })
    }

    /// The MAC address given to [`new`](Self::new).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// `ID_REV` as read at initialisation (`0x0118_0001` on QEMU).
    pub fn chip_id(&self) -> u32 {
        self.chip_id
    }

    /// Frame counters so far.
    pub fn counters(&self) -> Counters {
        self.hw.counters
    }

    /// Whether the PHY reports the link up (`BMSR.LSTATUS`).
    ///
    /// # Errors
    ///
    /// [`Error::MacCsrTimeout`] or [`Error::PhyTimeout`] if the MII access
    /// does not complete.
    pub fn link_up(&mut self) -> Result<bool, Error> {
        // BMSR's link bit latches low: read twice for the current state.
        let _ = self.hw.phy_read(regs::PHY_BMSR)?;
        Ok(self.hw.phy_read(regs::PHY_BMSR)? & regs::BMSR_LSTATUS != 0)
    }

    /// Reads register `reg` (0..=31) of the internal PHY through the MII
    /// management interface (see the `PHY_*`/`BMCR_*`/`BMSR_*` constants in
    /// [`regs`]).
    ///
    /// # Errors
    ///
    /// [`Error::MacCsrTimeout`] or [`Error::PhyTimeout`] if an access does not
    /// complete.
    pub fn phy_read(&mut self, reg: u8) -> Result<u16, Error> {
        self.hw.phy_read(reg)
    }

    /// Writes register `reg` (0..=31) of the internal PHY. For example
    /// setting [`regs::BMCR_LOOPBACK`] in [`regs::PHY_BMCR`] makes QEMU's
    /// model deliver every transmitted frame back to this receiver.
    ///
    /// # Errors
    ///
    /// As for [`phy_read`](Self::phy_read).
    pub fn phy_write(&mut self, reg: u8, value: u16) -> Result<(), Error> {
        self.hw.phy_write(reg, value)
    }

    /// Reads `RX_DROP`: frames the chip dropped because the RX FIFO was full
    /// since the last call (the register clears on read; QEMU always reads 0).
    pub fn take_hw_dropped(&mut self) -> u32 {
        self.hw.bus.read(regs::RX_DROP)
    }

    /// Gives back the bus (the controller keeps running).
    pub fn into_bus(self) -> B {
        self.hw.bus
    }

    /// Discards `words` words of the RX data FIFO, never more than it holds.
    /// Returns `false` (after dumping the RX FIFOs) if it held fewer, i.e. the
    /// status and data FIFOs disagree.
    fn discard_rx_words(&mut self, words: usize) -> bool {
        let avail = rx_data_words(self.hw.bus.read(regs::RX_FIFO_INF));
        if words > avail {
            self.hw.bus.write(regs::RX_CFG, regs::RX_CFG_RX_DUMP);
            return false;
        }
        for _ in 0..words {
            let _ = self.hw.bus.read(regs::RX_DATA_FIFO);
        }
        true
    }

    /// Takes the next good frame off the RX FIFO into `rx_buf`; returns its
    /// length without CRC.
    fn fetch_frame(&mut self) -> Option<usize> {
        for _ in 0..RX_SKIP_LIMIT {
            let info = self.hw.bus.read(regs::RX_FIFO_INF);
            if regs::rx_fifo_inf_status_used(info) == 0 {
                return None;
            }
            let status = self.hw.bus.read(regs::RX_STATUS_FIFO);
            let len = regs::rx_status_len(status);
            let words = len.div_ceil(4);

            if status & regs::RX_STATUS_ES != 0 {
                self.hw.counters.rx_errors += 1;
                if !self.discard_rx_words(words) {
                    self.hw.counters.rx_dropped += 1;
                }
                continue;
            }
            if !(14 + regs::CRC_LEN..=BUF_LEN).contains(&len) {
                self.hw.counters.rx_dropped += 1;
                self.discard_rx_words(words);
                continue;
            }
            // `words <= BUF_LEN / 4` here, so every word fits `rx_buf`.
            let avail = rx_data_words(self.hw.bus.read(regs::RX_FIFO_INF));
            if words > avail {
                self.hw.bus.write(regs::RX_CFG, regs::RX_CFG_RX_DUMP);
                self.hw.counters.rx_dropped += 1;
                return None;
            }
            for chunk in self.rx_buf[..words * 4].chunks_exact_mut(4) {
                chunk.copy_from_slice(&self.hw.bus.read(regs::RX_DATA_FIFO).to_le_bytes());
            }
            let frame_len = len - regs::CRC_LEN;
            self.hw.counters.rx_frames += 1;
            self.hw.counters.rx_bytes += frame_len as u64;
            return Some(frame_len);
        }
        None
    }
}

/// Whole words waiting in the RX data FIFO according to `RX_FIFO_INF`.
fn rx_data_words(info: u32) -> usize {
    regs::rx_fifo_inf_data_used(info) as usize / 4
}

impl<B: Bus> fmt::Debug for Lan9118<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lan9118")
            .field("mac", &self.mac)
            .field("chip_id", &format_args!("{:#010x}", self.chip_id))
            .field("counters", &self.hw.counters)
            .finish()
    }
}

impl<B: Bus> Device for Lan9118<B> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, B>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let len = self.fetch_frame()?;
        // The reply token re-checks the space itself when it is consumed.
        let _ = self.hw.drain_tx_status();
        Some((
            RxToken {
                frame: &self.rx_buf[..len],
            },
            TxToken { hw: &mut self.hw },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if !self.hw.drain_tx_status() {
            self.hw.counters.tx_full += 1;
            return None;
        }
        Some(TxToken { hw: &mut self.hw })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// Receive token of a [`Lan9118`]: borrows the frame in the driver's buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl fmt::Debug for RxToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxToken")
            .field("len", &self.frame.len())
            .finish()
    }
}

/// Transmit token of a [`Lan9118`]: builds the frame in the driver's buffer,
/// then writes it to the TX FIFO.
pub struct TxToken<'a, B: Bus> {
    hw: &'a mut Hw<B>,
}

impl<B: Bus> phy::TxToken for TxToken<'_, B> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if len > MTU {
            // smoltcp never asks for more than the MTU. Any other caller gets
            // the whole buffer (never a panic) and the frame is not sent.
            self.hw.counters.tx_dropped += 1;
            return f(&mut self.hw.tx_buf[..]);
        }
        let result = f(&mut self.hw.tx_buf[..len]);
        // Re-check: a token handed out by `receive` did not check the space,
        // and `transmit`'s check may be stale.
        if self.hw.tx_space() {
            self.hw.send(len);
        } else {
            self.hw.counters.tx_dropped += 1;
        }
        result
    }
}

impl<B: Bus> fmt::Debug for TxToken<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxToken").finish_non_exhaustive()
    }
}
