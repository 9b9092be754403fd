//! Register map of the SMSC LAN9118 (and the LAN911x family), 32-bit bus mode.
//!
//! Offsets are byte offsets from the controller's base address (the whole
//! window is 256 bytes). Bit fields follow the SMSC LAN9118 datasheet; the
//! notes marked *QEMU* say what QEMU's `hw/net/lan9118.c` model actually does,
//! which is what the `mps2-an385` firmware runs against.

// ---------------------------------------------------------------------------
// FIFO ports
// ---------------------------------------------------------------------------

/// RX data FIFO port (read). 0x04..0x1C are aliases.
pub const RX_DATA_FIFO: usize = 0x00;
/// TX data FIFO port (write): command A, command B, then the data words.
/// 0x24..0x3C are aliases.
pub const TX_DATA_FIFO: usize = 0x20;
/// RX status FIFO port (read pops one status word).
pub const RX_STATUS_FIFO: usize = 0x40;
/// RX status FIFO peek (read without popping).
pub const RX_STATUS_FIFO_PEEK: usize = 0x44;
/// TX status FIFO port (read pops one status word).
pub const TX_STATUS_FIFO: usize = 0x48;
/// TX status FIFO peek (read without popping).
pub const TX_STATUS_FIFO_PEEK: usize = 0x4C;

// ---------------------------------------------------------------------------
// System control and status registers
// ---------------------------------------------------------------------------

/// Chip ID (bits 31:16) and revision (bits 15:0). *QEMU*: `0x0118_0001`.
pub const ID_REV: usize = 0x50;
/// Main interrupt configuration.
pub const IRQ_CFG: usize = 0x54;
/// Interrupt status (write 1 to clear).
pub const INT_STS: usize = 0x58;
/// Interrupt enable.
pub const INT_EN: usize = 0x5C;
/// Byte order test register; reads [`BYTE_TEST_VALUE`] when the bus is sane.
pub const BYTE_TEST: usize = 0x64;
/// FIFO level interrupt thresholds.
pub const FIFO_INT: usize = 0x68;
/// Receive configuration.
pub const RX_CFG: usize = 0x6C;
/// Transmit configuration.
pub const TX_CFG: usize = 0x70;
/// Hardware configuration (soft reset, TX FIFO size).
pub const HW_CFG: usize = 0x74;
/// RX datapath control (fast forward).
pub const RX_DP_CTRL: usize = 0x78;
/// RX FIFO information: status words used, data bytes used.
pub const RX_FIFO_INF: usize = 0x7C;
/// TX FIFO information: status words used, data bytes free.
pub const TX_FIFO_INF: usize = 0x80;
/// Power management control (READY bit).
pub const PMT_CTRL: usize = 0x84;
/// GPIO configuration (LEDs).
pub const GPIO_CFG: usize = 0x88;
/// General purpose timer configuration.
pub const GPT_CFG: usize = 0x8C;
/// General purpose timer count.
pub const GPT_CNT: usize = 0x90;
/// Word swap (16-bit mode only).
pub const WORD_SWAP: usize = 0x98;
/// Free running 25 MHz counter.
pub const FREE_RUN: usize = 0x9C;
/// RX dropped frame counter (clears on read). *QEMU*: always 0.
pub const RX_DROP: usize = 0xA0;
/// MAC CSR synchronizer command.
pub const MAC_CSR_CMD: usize = 0xA4;
/// MAC CSR synchronizer data.
pub const MAC_CSR_DATA: usize = 0xA8;
/// Automatic flow control configuration.
pub const AFC_CFG: usize = 0xAC;
/// EEPROM command.
pub const E2P_CMD: usize = 0xB0;
/// EEPROM data.
pub const E2P_DATA: usize = 0xB4;

/// Size of the register window in bytes.
pub const WINDOW: usize = 0x100;

// ---------------------------------------------------------------------------
// Field values
// ---------------------------------------------------------------------------

/// What [`BYTE_TEST`] reads on a correctly wired 32-bit little-endian bus.
pub const BYTE_TEST_VALUE: u32 = 0x8765_4321;

/// `ID_REV`: chip ID field.
pub const fn id_rev_chip(value: u32) -> u16 {
    (value >> 16) as u16
}

/// `INT_STS` / `INT_EN`: every interrupt source (write to `INT_STS` to clear all).
pub const INT_ALL: u32 = 0xFFFF_FFFF;

/// `IRQ_CFG`: IRQ output enable.
pub const IRQ_CFG_IRQ_EN: u32 = 1 << 8;

/// `RX_CFG`: force RX discard (empties the RX data and status FIFOs).
pub const RX_CFG_RX_DUMP: u32 = 1 << 15;

/// `TX_CFG`: dump the TX status FIFO.
pub const TX_CFG_TXS_DUMP: u32 = 1 << 15;
/// `TX_CFG`: dump the TX data FIFO.
pub const TX_CFG_TXD_DUMP: u32 = 1 << 14;
/// `TX_CFG`: TX status allow overrun (transmission never stalls on a full status FIFO).
pub const TX_CFG_TXSAO: u32 = 1 << 2;
/// `TX_CFG`: transmitter enable.
pub const TX_CFG_TX_ON: u32 = 1 << 1;
/// `TX_CFG`: stop transmitter.
pub const TX_CFG_STOP_TX: u32 = 1 << 0;

/// `HW_CFG`: soft reset (self-clearing). *QEMU*: the reset is immediate.
pub const HW_CFG_SRST: u32 = 1 << 0;
/// `HW_CFG`: soft reset timed out.
pub const HW_CFG_SRST_TO: u32 = 1 << 1;

/// `RX_DP_CTRL`: RX data FIFO fast forward (skip the current frame).
pub const RX_DP_CTRL_RX_FFWD: u32 = 1 << 31;

/// `RX_FIFO_INF`: number of RX status words waiting (bits 23:16).
pub const fn rx_fifo_inf_status_used(value: u32) -> u32 {
    (value >> 16) & 0xFF
}
/// `RX_FIFO_INF`: bytes waiting in the RX data FIFO (bits 15:0).
pub const fn rx_fifo_inf_data_used(value: u32) -> u32 {
    value & 0xFFFF
}

/// `TX_FIFO_INF`: number of TX status words waiting (bits 23:16).
pub const fn tx_fifo_inf_status_used(value: u32) -> u32 {
    (value >> 16) & 0xFF
}
/// `TX_FIFO_INF`: free bytes in the TX data FIFO (bits 15:0).
pub const fn tx_fifo_inf_data_free(value: u32) -> u32 {
    value & 0xFFFF
}

/// `PMT_CTRL`: device ready (set once the chip is out of reset).
pub const PMT_CTRL_READY: u32 = 1 << 0;

/// `AFC_CFG`: the datasheet's recommended flow control thresholds.
pub const AFC_CFG_DEFAULT: u32 = 0x006E_3740;

/// `MAC_CSR_CMD`: busy; set to start an access, cleared when it is done.
pub const MAC_CSR_CMD_BUSY: u32 = 1 << 31;
/// `MAC_CSR_CMD`: read (set) or write (clear).
pub const MAC_CSR_CMD_READ: u32 = 1 << 30;
/// `MAC_CSR_CMD`: CSR address field mask (bits 7:0).
pub const MAC_CSR_CMD_ADDR_MASK: u32 = 0xFF;

// ---------------------------------------------------------------------------
// MAC control and status registers (indirect, through MAC_CSR_CMD/DATA)
// ---------------------------------------------------------------------------

/// MAC control register.
pub const MAC_CR: u8 = 1;
/// MAC address high: bytes 4 and 5 in bits 15:0.
pub const MAC_ADDRH: u8 = 2;
/// MAC address low: bytes 0..=3, byte 0 in bits 7:0.
pub const MAC_ADDRL: u8 = 3;
/// Multicast hash table high.
pub const MAC_HASHH: u8 = 4;
/// Multicast hash table low.
pub const MAC_HASHL: u8 = 5;
/// MII access (PHY register command).
pub const MAC_MII_ACC: u8 = 6;
/// MII data.
pub const MAC_MII_DATA: u8 = 7;
/// Flow control.
pub const MAC_FLOW: u8 = 8;

/// `MAC_CR`: receive all frames.
pub const MAC_CR_RXALL: u32 = 1 << 31;
/// `MAC_CR`: full duplex.
pub const MAC_CR_FDPX: u32 = 1 << 20;
/// `MAC_CR`: pass all multicast frames.
pub const MAC_CR_MCPAS: u32 = 1 << 19;
/// `MAC_CR`: promiscuous mode. *QEMU*: set after reset.
pub const MAC_CR_PRMS: u32 = 1 << 18;
/// `MAC_CR`: disable reception of broadcast frames.
pub const MAC_CR_BCAST: u32 = 1 << 11;
/// `MAC_CR`: automatic pad stripping.
pub const MAC_CR_PADSTR: u32 = 1 << 8;
/// `MAC_CR`: transmitter enable.
pub const MAC_CR_TXEN: u32 = 1 << 3;
/// `MAC_CR`: receiver enable.
pub const MAC_CR_RXEN: u32 = 1 << 2;

/// `MII_ACC`: PHY address field (bits 15:11).
pub const fn mii_acc_phy(addr: u8) -> u32 {
    ((addr as u32) & 0x1F) << 11
}
/// `MII_ACC`: PHY register index field (bits 10:6).
pub const fn mii_acc_reg(reg: u8) -> u32 {
    ((reg as u32) & 0x1F) << 6
}
/// `MII_ACC`: write (set) or read (clear).
pub const MII_ACC_WRITE: u32 = 1 << 1;
/// `MII_ACC`: busy; set to start an access, cleared when it is done.
pub const MII_ACC_BUSY: u32 = 1 << 0;

// ---------------------------------------------------------------------------
// Internal PHY (IEEE 802.3 clause 22 registers)
// ---------------------------------------------------------------------------

/// MII address of the internal PHY. *QEMU* ignores the address.
pub const PHY_ADDR: u8 = 1;

/// Basic control register.
pub const PHY_BMCR: u8 = 0;
/// Basic status register.
pub const PHY_BMSR: u8 = 1;
/// PHY identifier 1. *QEMU*: `0x0007`.
pub const PHY_ID1: u8 = 2;
/// PHY identifier 2. *QEMU*: `0xC0D1`.
pub const PHY_ID2: u8 = 3;
/// Auto-negotiation advertisement.
pub const PHY_ANAR: u8 = 4;

/// `BMCR`: reset (self-clearing).
pub const BMCR_RESET: u16 = 1 << 15;
/// `BMCR`: loopback. *QEMU*: transmitted frames are received by the same chip.
pub const BMCR_LOOPBACK: u16 = 1 << 14;
/// `BMCR`: auto-negotiation enable.
pub const BMCR_ANENABLE: u16 = 1 << 12;
/// `BMCR`: restart auto-negotiation.
pub const BMCR_ANRESTART: u16 = 1 << 9;
/// `BMSR`: auto-negotiation complete.
pub const BMSR_ANEGCOMPLETE: u16 = 1 << 5;
/// `BMSR`: link up.
pub const BMSR_LSTATUS: u16 = 1 << 2;
/// `ANAR`: 10/100 half/full duplex, IEEE 802.3 selector.
pub const ANAR_10_100_ALL: u16 = 0x01E1;

// ---------------------------------------------------------------------------
// TX command words and status
// ---------------------------------------------------------------------------

/// TX command A: interrupt on completion.
pub const TX_CMD_A_IOC: u32 = 1 << 31;
/// TX command A: first segment of a frame.
pub const TX_CMD_A_FIRST_SEG: u32 = 1 << 13;
/// TX command A: last segment of a frame.
pub const TX_CMD_A_LAST_SEG: u32 = 1 << 12;
/// TX command A / B: buffer size / packet length mask (bits 10:0).
pub const TX_CMD_LEN_MASK: u32 = 0x7FF;

/// TX command B: packet tag field (bits 31:16), echoed in the TX status.
pub const fn tx_cmd_b_tag(tag: u16) -> u32 {
    (tag as u32) << 16
}
/// TX command B: disable CRC generation.
pub const TX_CMD_B_ADD_CRC_DISABLE: u32 = 1 << 13;
/// TX command B: disable padding of short frames.
pub const TX_CMD_B_DISABLE_PADDING: u32 = 1 << 12;

/// TX status: packet tag (bits 31:16). *QEMU*: the status is just the tag.
pub const fn tx_status_tag(status: u32) -> u16 {
    (status >> 16) as u16
}
/// TX status: error summary.
pub const TX_STATUS_ES: u32 = 1 << 15;

// ---------------------------------------------------------------------------
// RX status
// ---------------------------------------------------------------------------

/// RX status: filtering failed (only delivered in receive-all mode).
pub const RX_STATUS_FILTER_FAIL: u32 = 1 << 30;
/// RX status: frame length in bytes including the 4-byte CRC (bits 29:16).
pub const fn rx_status_len(status: u32) -> usize {
    ((status >> 16) & 0x3FFF) as usize
}
/// RX status: error summary (CRC, runt, too long, collision, MII error...).
pub const RX_STATUS_ES: u32 = 1 << 15;
/// RX status: broadcast frame.
pub const RX_STATUS_BROADCAST: u32 = 1 << 13;
/// RX status: length error.
pub const RX_STATUS_LENGTH_ERROR: u32 = 1 << 12;
/// RX status: runt frame.
pub const RX_STATUS_RUNT: u32 = 1 << 11;
/// RX status: multicast frame.
pub const RX_STATUS_MULTICAST: u32 = 1 << 10;
/// RX status: frame too long.
pub const RX_STATUS_TOO_LONG: u32 = 1 << 7;
/// RX status: collision seen.
pub const RX_STATUS_COLLISION: u32 = 1 << 6;
/// RX status: receive watchdog timeout.
pub const RX_STATUS_WATCHDOG: u32 = 1 << 4;
/// RX status: MII error.
pub const RX_STATUS_MII_ERROR: u32 = 1 << 3;
/// RX status: CRC error.
pub const RX_STATUS_CRC_ERROR: u32 = 1 << 1;

/// Bytes of CRC at the end of every received frame.
pub const CRC_LEN: usize = 4;
