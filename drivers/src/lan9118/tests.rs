//! Host tests of the LAN9118 driver against a fake bus that models the chip's
//! FIFOs the way QEMU's `hw/net/lan9118.c` does.

use super::regs::*;
use super::*;
use smoltcp::phy::{RxToken as _, TxToken as _};
use std::collections::VecDeque;
use std::vec::Vec;

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    CmdA,
    CmdB,
    Data,
}

/// One frame as the fake chip assembled it from the TX FIFO words.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SentFrame {
    cmd_a: u32,
    cmd_b: u32,
    data: Vec<u8>,
}

struct FakeBus {
    byte_test: u32,
    /// HW_CFG.SRST never clears.
    srst_sticks: bool,
    pmt_ready: bool,
    /// MAC_CSR_CMD.BUSY never clears.
    mac_busy_sticks: bool,
    hw_cfg: u32,
    regs: [u32; WINDOW / 4],
    mac_regs: [u32; 16],
    mac_cmd: u32,
    mac_data: u32,
    phy: [u16; 32],
    rx_status: VecDeque<u32>,
    rx_data: VecDeque<u32>,
    rx_underflows: usize,
    rx_dumps: usize,
    tx_state: TxState,
    tx_cur: SentFrame,
    tx_remaining: usize,
    tx_frames: Vec<SentFrame>,
    tx_status: VecDeque<u32>,
    tx_free: u32,
    srst_writes: usize,
}

impl FakeBus {
    fn new() -> Self {
        let mut bus = FakeBus {
            byte_test: BYTE_TEST_VALUE,
            srst_sticks: false,
            pmt_ready: true,
            mac_busy_sticks: false,
            hw_cfg: 0,
            regs: [0; WINDOW / 4],
            mac_regs: [0; 16],
            mac_cmd: 0,
            mac_data: 0,
            phy: [0; 32],
            rx_status: VecDeque::new(),
            rx_data: VecDeque::new(),
            rx_underflows: 0,
            rx_dumps: 0,
            tx_state: TxState::CmdA,
            tx_cur: SentFrame {
                cmd_a: 0,
                cmd_b: 0,
                data: Vec::new(),
            },
            tx_remaining: 0,
            tx_frames: Vec::new(),
            tx_status: VecDeque::new(),
            tx_free: 4608,
            srst_writes: 0,
        };
        bus.reset();
        bus
    }

    /// What QEMU's `lan9118_reset` sets up.
    fn reset(&mut self) {
        self.hw_cfg = 0x0005_0004;
        self.mac_regs = [0; 16];
        self.mac_regs[MAC_CR as usize] = MAC_CR_PRMS;
        self.phy = [0; 32];
        self.phy[PHY_BMCR as usize] = 0x3000;
        self.phy[PHY_BMSR as usize] = 0x7809 | 0x0024;
        self.phy[PHY_ID1 as usize] = 0x0007;
        self.phy[PHY_ID2 as usize] = 0xC0D1;
        self.phy[PHY_ANAR as usize] = 0x01E1;
        self.rx_status.clear();
        self.rx_data.clear();
        self.tx_state = TxState::CmdA;
    }

    /// Queues a received frame the way QEMU does: data words little-endian,
    /// then the CRC, status length = frame + 4.
    fn push_rx(&mut self, frame: &[u8], status_bits: u32) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xC1, 0xC2, 0xC3, 0xC4]); // fake CRC
        while !bytes.len().is_multiple_of(4) {
            bytes.push(0);
        }
        for w in bytes.chunks_exact(4) {
            self.rx_data
                .push_back(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        self.rx_status
            .push_back((((frame.len() + 4) as u32) << 16) | status_bits);
    }

    fn mac_read(&mut self, reg: usize) -> u32 {
        self.mac_regs[reg]
    }

    fn mac_write(&mut self, reg: usize, value: u32) {
        if reg == MAC_MII_ACC as usize {
            let phy_reg = ((value >> 6) & 0x1F) as usize;
            if value & MII_ACC_WRITE != 0 {
                let data = self.mac_regs[MAC_MII_DATA as usize] as u16;
                if phy_reg == PHY_BMCR as usize && data & BMCR_RESET != 0 {
                    self.phy[0] = 0x3000;
                } else {
                    self.phy[phy_reg] = data;
                }
            } else {
                self.mac_regs[MAC_MII_DATA as usize] = self.phy[phy_reg] as u32;
            }
            self.mac_regs[reg] = value & !MII_ACC_BUSY;
        } else {
            self.mac_regs[reg] = value;
        }
    }

    fn tx_push(&mut self, value: u32) {
        match self.tx_state {
            TxState::CmdA => {
                self.tx_cur = SentFrame {
                    cmd_a: value,
                    cmd_b: 0,
                    data: Vec::new(),
                };
                self.tx_state = TxState::CmdB;
            }
            TxState::CmdB => {
                self.tx_cur.cmd_b = value;
                self.tx_remaining = (self.tx_cur.cmd_a & TX_CMD_LEN_MASK) as usize;
                self.tx_state = TxState::Data;
            }
            TxState::Data => {
                let take = self.tx_remaining.min(4);
                self.tx_cur
                    .data
                    .extend_from_slice(&value.to_le_bytes()[..take]);
                self.tx_remaining -= take;
            }
        }
        if self.tx_state == TxState::Data && self.tx_remaining == 0 {
            self.tx_status.push_back(self.tx_cur.cmd_b & 0xFFFF_0000);
            self.tx_frames.push(self.tx_cur.clone());
            self.tx_state = TxState::CmdA;
        }
    }
}

impl Bus for FakeBus {
    fn read(&mut self, offset: usize) -> u32 {
        assert!(
            offset < WINDOW && offset.is_multiple_of(4),
            "bad offset {offset:#x}"
        );
        match offset {
            RX_DATA_FIFO => self.rx_data.pop_front().unwrap_or_else(|| {
                self.rx_underflows += 1;
                0
            }),
            RX_STATUS_FIFO => self.rx_status.pop_front().unwrap_or(0),
            TX_STATUS_FIFO => self.tx_status.pop_front().unwrap_or(0),
            ID_REV => 0x0118_0001,
            BYTE_TEST => self.byte_test,
            HW_CFG => self.hw_cfg,
            PMT_CTRL => self.pmt_ready as u32,
            RX_FIFO_INF => {
                ((self.rx_status.len().min(0xFF) as u32) << 16)
                    | (self.rx_data.len() * 4).min(0xFFFF) as u32
            }
            TX_FIFO_INF => ((self.tx_status.len().min(0xFF) as u32) << 16) | self.tx_free,
            MAC_CSR_CMD => self.mac_cmd,
            MAC_CSR_DATA => self.mac_data,
            RX_DROP => 0,
            INT_STS | INT_EN | IRQ_CFG | TX_CFG | RX_CFG | AFC_CFG => self.regs[offset / 4],
            _ => panic!("read of a register the driver should not touch: {offset:#x}"),
        }
    }

    fn write(&mut self, offset: usize, value: u32) {
        assert!(
            offset < WINDOW && offset.is_multiple_of(4),
            "bad offset {offset:#x}"
        );
        match offset {
            TX_DATA_FIFO => self.tx_push(value),
            HW_CFG => {
                if value & HW_CFG_SRST != 0 {
                    self.srst_writes += 1;
                    if self.srst_sticks {
                        self.hw_cfg |= HW_CFG_SRST;
                    } else {
                        self.reset();
                    }
                }
            }
            MAC_CSR_CMD => {
                if value & MAC_CSR_CMD_BUSY != 0 {
                    let reg = (value & 0xF) as usize;
                    if value & MAC_CSR_CMD_READ != 0 {
                        self.mac_data = self.mac_read(reg);
                    } else {
                        self.mac_write(reg, self.mac_data);
                    }
                }
                self.mac_cmd = if self.mac_busy_sticks {
                    value | MAC_CSR_CMD_BUSY
                } else {
                    value & !MAC_CSR_CMD_BUSY
                };
            }
            MAC_CSR_DATA => self.mac_data = value,
            RX_CFG => {
                if value & RX_CFG_RX_DUMP != 0 {
                    self.rx_dumps += 1;
                    self.rx_status.clear();
                    self.rx_data.clear();
                }
                self.regs[offset / 4] = value & !RX_CFG_RX_DUMP;
            }
            INT_STS => self.regs[offset / 4] &= !value,
            INT_EN | IRQ_CFG | TX_CFG | AFC_CFG => self.regs[offset / 4] = value,
            _ => panic!("write of a register the driver should not touch: {offset:#x}"),
        }
    }
}

fn driver() -> Lan9118<FakeBus> {
    Lan9118::new(FakeBus::new(), MAC).expect("init")
}

fn bus(dev: &mut Lan9118<FakeBus>) -> &mut FakeBus {
    &mut dev.hw.bus
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn recv(dev: &mut Lan9118<FakeBus>) -> Option<Vec<u8>> {
    let (rx, _tx) = dev.receive(Instant::ZERO)?;
    Some(rx.consume(|f| f.to_vec()))
}

#[test]
fn init_sequence_programs_the_chip() {
    let mut dev = driver();
    assert_eq!(dev.chip_id(), 0x0118_0001);
    assert_eq!(dev.mac(), MAC);
    let b = bus(&mut dev);
    assert_eq!(b.srst_writes, 1);
    assert_eq!(b.mac_regs[MAC_ADDRL as usize], 0x3322_1102);
    assert_eq!(b.mac_regs[MAC_ADDRH as usize], 0x5544);
    let cr = b.mac_regs[MAC_CR as usize];
    assert_ne!(cr & MAC_CR_TXEN, 0);
    assert_ne!(cr & MAC_CR_RXEN, 0);
    assert_eq!(cr & MAC_CR_PRMS, 0, "perfect filtering, not promiscuous");
    assert_eq!(cr & MAC_CR_BCAST, 0, "broadcast (ARP) accepted");
    assert_ne!(b.regs[TX_CFG / 4] & TX_CFG_TX_ON, 0);
    assert_eq!(b.regs[INT_EN / 4], 0);
    assert_eq!(b.phy[PHY_ANAR as usize], ANAR_10_100_ALL);
    assert_ne!(b.phy[PHY_BMCR as usize] & BMCR_ANENABLE, 0);
    assert!(dev.link_up().unwrap());
    assert_eq!(dev.counters(), Counters::default());
    let caps = dev.capabilities();
    assert_eq!(caps.medium, Medium::Ethernet);
    assert_eq!(caps.max_transmission_unit, 1514);
}

#[test]
fn bad_byte_test_is_an_error() {
    let mut b = FakeBus::new();
    b.byte_test = 0x4321_8765;
    assert_eq!(
        Lan9118::new(b, MAC).unwrap_err(),
        Error::ByteTest(0x4321_8765)
    );
}

#[test]
fn reset_timeout_is_an_error() {
    let mut b = FakeBus::new();
    b.srst_sticks = true;
    assert_eq!(Lan9118::new(b, MAC).unwrap_err(), Error::ResetTimeout);
}

#[test]
fn not_ready_is_an_error() {
    let mut b = FakeBus::new();
    b.pmt_ready = false;
    assert_eq!(Lan9118::new(b, MAC).unwrap_err(), Error::NotReady);
}

#[test]
fn stuck_mac_csr_is_an_error() {
    let mut b = FakeBus::new();
    b.mac_busy_sticks = true;
    assert_eq!(Lan9118::new(b, MAC).unwrap_err(), Error::MacCsrTimeout);
}

#[test]
fn receive_is_byte_exact_for_every_length_modulo_4() {
    let mut dev = driver();
    let lens = [14, 42, 60, 61, 62, 63, 64, 65, 1513, 1514];
    for (i, &len) in lens.iter().enumerate() {
        bus(&mut dev).push_rx(&frame(len, i as u8), 0);
    }
    for (i, &len) in lens.iter().enumerate() {
        assert_eq!(recv(&mut dev).unwrap(), frame(len, i as u8), "len {len}");
    }
    assert!(recv(&mut dev).is_none());
    let b = bus(&mut dev);
    assert!(b.rx_data.is_empty());
    assert_eq!(b.rx_underflows, 0);
    let c = dev.counters();
    assert_eq!(c.rx_frames, lens.len() as u64);
    assert_eq!(c.rx_bytes, lens.iter().sum::<usize>() as u64);
    assert_eq!(c.rx_errors + c.rx_dropped, 0);
}

#[test]
fn error_frames_are_dropped_and_counted() {
    let mut dev = driver();
    bus(&mut dev).push_rx(&frame(61, 1), RX_STATUS_ES | RX_STATUS_CRC_ERROR);
    bus(&mut dev).push_rx(&frame(70, 2), 0);
    bus(&mut dev).push_rx(&frame(99, 3), RX_STATUS_ES | RX_STATUS_RUNT);
    assert_eq!(recv(&mut dev).unwrap(), frame(70, 2));
    assert!(recv(&mut dev).is_none());
    let c = dev.counters();
    assert_eq!((c.rx_frames, c.rx_errors, c.rx_dropped), (1, 2, 0));
    let b = bus(&mut dev);
    assert!(b.rx_data.is_empty(), "data FIFO stays in step");
    assert_eq!((b.rx_underflows, b.rx_dumps), (0, 1)); // the one at init
}

#[test]
fn impossible_lengths_never_panic() {
    let mut dev = driver();
    let dumps_at_init = bus(&mut dev).rx_dumps;
    // Status lengths of 0, 3 and 17 (shorter than header + CRC): dropped,
    // their (few) words skipped.
    for len in [0u32, 3, 17] {
        let b = bus(&mut dev);
        b.rx_status.push_back(len << 16);
        b.rx_data
            .extend(std::iter::repeat_n(0xAAAA_AAAA, (len as usize).div_ceil(4)));
    }
    // Longer than the buffer but backed by data: skipped word by word.
    {
        let b = bus(&mut dev);
        b.rx_status.push_back(1600 << 16);
        b.rx_data.extend(std::iter::repeat_n(0xBBBB_BBBB, 400));
    }
    bus(&mut dev).push_rx(&frame(64, 9), 0);
    assert_eq!(recv(&mut dev).unwrap(), frame(64, 9));
    assert_eq!(dev.counters().rx_dropped, 4);

    // The maximum length with no data behind it: the FIFOs are dumped.
    bus(&mut dev).rx_status.push_back(0x3FFF << 16);
    bus(&mut dev).push_rx(&frame(64, 10), 0);
    assert!(recv(&mut dev).is_none());
    assert_eq!(bus(&mut dev).rx_dumps, dumps_at_init + 1);
    assert_eq!(dev.counters().rx_dropped, 5);

    // A plausible length but too little data: dumped, not read past.
    bus(&mut dev).rx_status.push_back(200 << 16);
    bus(&mut dev).rx_data.extend([1, 2, 3]);
    assert!(recv(&mut dev).is_none());
    assert_eq!(bus(&mut dev).rx_underflows, 0);
    assert_eq!(dev.counters().rx_dropped, 6);
    assert_eq!(dev.counters().rx_frames, 1);

    // An error frame with an absurd length: counted, FIFOs dumped.
    bus(&mut dev)
        .rx_status
        .push_back((0x3FFF << 16) | RX_STATUS_ES);
    assert!(recv(&mut dev).is_none());
    assert_eq!(dev.counters().rx_errors, 1);
    assert_eq!(bus(&mut dev).rx_underflows, 0);

    // And the driver still works afterwards.
    bus(&mut dev).push_rx(&frame(1514, 11), 0);
    assert_eq!(recv(&mut dev).unwrap(), frame(1514, 11));
}

#[test]
fn one_receive_call_is_bounded() {
    let mut dev = driver();
    for _ in 0..100 {
        bus(&mut dev).push_rx(&frame(60, 0), RX_STATUS_ES);
    }
    assert!(recv(&mut dev).is_none());
    assert_eq!(dev.counters().rx_errors, RX_SKIP_LIMIT as u64);
}

#[test]
fn transmit_is_byte_exact_with_correct_command_words() {
    let mut dev = driver();
    let lens = [42, 60, 61, 62, 63, 1514];
    for (i, &len) in lens.iter().enumerate() {
        let tx = dev.transmit(Instant::ZERO).unwrap();
        tx.consume(len, |buf| buf.copy_from_slice(&frame(len, i as u8)));
    }
    let sent = core::mem::take(&mut bus(&mut dev).tx_frames);
    assert_eq!(sent.len(), lens.len());
    for (i, (&len, f)) in lens.iter().zip(&sent).enumerate() {
        assert_eq!(f.cmd_a, TX_CMD_A_FIRST_SEG | TX_CMD_A_LAST_SEG | len as u32);
        assert_eq!(f.cmd_b, tx_cmd_b_tag(i as u16 + 1) | len as u32);
        assert_eq!(f.data, frame(len, i as u8), "len {len}");
    }
    assert_eq!(bus(&mut dev).tx_state, TxState::CmdA);
    let c = dev.counters();
    assert_eq!(c.tx_frames, lens.len() as u64);
    assert_eq!(c.tx_bytes, lens.iter().sum::<usize>() as u64);
    // The next transmit drains the status words QEMU queued.
    let _ = dev.transmit(Instant::ZERO).unwrap();
    assert_eq!(dev.counters().tx_status, lens.len() as u64);
    assert!(bus(&mut dev).tx_status.is_empty());
}

#[test]
fn tx_status_errors_are_counted() {
    let mut dev = driver();
    bus(&mut dev)
        .tx_status
        .extend([0x0001_0000, 0x0002_8000 | 1 << 11]);
    let _ = dev.transmit(Instant::ZERO);
    let c = dev.counters();
    assert_eq!((c.tx_status, c.tx_errors), (2, 1));
}

#[test]
fn full_tx_fifo_refuses_transmit() {
    let mut dev = driver();
    bus(&mut dev).tx_free = 1000;
    assert!(dev.transmit(Instant::ZERO).is_none());
    assert_eq!(dev.counters().tx_full, 1);

    // A token from `receive` re-checks the space before writing.
    bus(&mut dev).push_rx(&frame(60, 0), 0);
    let (_rx, tx) = dev.receive(Instant::ZERO).unwrap();
    tx.consume(60, |buf| buf.fill(0xEE));
    assert!(bus(&mut dev).tx_frames.is_empty());
    assert_eq!(dev.counters().tx_dropped, 1);

    bus(&mut dev).tx_free = 4608;
    let tx = dev.transmit(Instant::ZERO).unwrap();
    tx.consume(60, |buf| buf.fill(0xEE));
    assert_eq!(bus(&mut dev).tx_frames.len(), 1);
}

#[test]
fn oversized_transmit_is_dropped_without_panic() {
    let mut dev = driver();
    let tx = dev.transmit(Instant::ZERO).unwrap();
    let n = tx.consume(4000, |buf| buf.len());
    assert_eq!(n, BUF_LEN);
    assert!(bus(&mut dev).tx_frames.is_empty());
    assert_eq!(dev.counters().tx_dropped, 1);
}

#[test]
fn receive_token_can_reply_through_its_tx_token() {
    let mut dev = driver();
    bus(&mut dev).push_rx(&frame(60, 5), 0);
    let (rx, tx) = dev.receive(Instant::ZERO).unwrap();
    let got = rx.consume(|f| f.to_vec());
    tx.consume(got.len(), |buf| buf.copy_from_slice(&got));
    let sent = &bus(&mut dev).tx_frames;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].data, frame(60, 5));
}
