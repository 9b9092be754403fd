//! Devices for ustack.
//!
//! Every device here implements [`smoltcp::phy::Device`] with
//! [`Medium::Ethernet`](smoltcp::phy::Medium::Ethernet), so any of them can be
//! handed to a smoltcp `Interface` (and therefore to a ustack `Stack`).
//!
//! - [`PipeLink`] / [`PipeDevice`]: two in-memory devices wired back to back.
//!   Needs no privileges and no allocator (works without the `std` feature),
//!   which makes it the default choice for stack-to-stack tests.
//! - [`TapDevice`] (`std`): a Linux TAP interface, optionally created with a
//!   host-side address and moved into a network namespace.
//! - [`AfPacket`] (`std`): a raw `AF_PACKET` socket on an interface with no kernel
//!   address, moving frames one per system call, in `recvmmsg`/`sendmmsg` batches, or
//!   through a `TPACKET_V3` ring; fanout groups give one stack per core. Its links are
//!   built with [`veth`] and [`ethtool`].
//! - `lan9118::Lan9118` (feature `lan9118`, on by default, no `std`): the SMSC LAN9118
//!   Ethernet controller over memory-mapped registers, as on QEMU's `mps2-an385` board.
//! - [`PcapRecorder`] (`std`): wraps any device and records every frame in both
//!   directions to a pcap file readable by `tcpdump -r` / Wireshark.
//! - [`PcapReplay`] (`std`): plays a pcap file's frames into a stack, one per
//!   receive, and counts what the stack sends back (replays and fuzzing).
//!
//! # Example
//!
//! ```
//! use smoltcp::phy::{Device, RxToken, TxToken};
//! use smoltcp::time::Instant;
//! use ustack_drivers::PipeLink;
//!
//! let link = PipeLink::<8, 1514>::new();
//! let (mut a, mut b) = link.split();
//! let now = Instant::from_millis(0);
//! a.transmit(now).unwrap().consume(3, |buf| buf.copy_from_slice(b"hi!"));
//! let (rx, _tx) = b.receive(now).unwrap();
//! assert_eq!(rx.consume(|frame| frame.to_vec()), b"hi!");
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

// Unit tests use `std` collections even when the library is built `no_std`.
#[cfg(all(test, not(feature = "std")))]
extern crate std;

pub mod pipe;

#[cfg(feature = "lan9118")]
pub mod lan9118;

#[cfg(feature = "std")]
pub mod afpacket;
#[cfg(feature = "std")]
mod csum;
#[cfg(feature = "std")]
pub mod ethtool;
#[cfg(feature = "std")]
pub mod veth;

#[cfg(feature = "std")]
pub mod iproute;
#[cfg(feature = "std")]
pub mod pcap;
#[cfg(feature = "std")]
pub mod pcap_replay;
#[cfg(feature = "std")]
pub mod tap;
#[cfg(feature = "std")]
mod txerr;

pub use pipe::{PipeDevice, PipeLink, PipeStats};

#[cfg(feature = "std")]
pub use afpacket::{AfPacket, AfPacketBuilder, AfPacketStats, IoMode, RingConfig};
#[cfg(feature = "std")]
pub use pcap::PcapRecorder;
#[cfg(feature = "std")]
pub use pcap_replay::{PcapReplay, ReplayStats};
#[cfg(feature = "std")]
pub use tap::{TapBuilder, TapDevice, TapStats};
