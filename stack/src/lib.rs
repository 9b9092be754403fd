//! ustack: a userspace TCP/IP engine on [smoltcp].
//!
//! A [`Stack`] owns one smoltcp interface, its sockets and a device. The caller feeds it time
//! through [`Stack::poll`] and takes readiness [`Event`]s out, so the same code runs on
//! firmware (`no_std`, caller storage), on Linux (with the [`runtime`] loop) and under a
//! fuzzer. Every frame enters through the device, and [`ingress::classify`] looks at each one
//! before smoltcp does, so bad frames are counted rather than silently dropped.
//!
//! Features: `alloc` (sockets and buffers grow on demand), `std` (the blocking runtime and
//! `std::io` adapters; implies `alloc`, `ipv6` and `udp`), `log` (diagnostics through the
//! `log` crate), `ipv6` and `udp` (both on by default; firmware that needs neither saves
//! about 28 KB of code).
//!
//! [smoltcp]: https://docs.rs/smoltcp
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod config;
mod device;
mod error;
mod event;
#[cfg(all(feature = "alloc", any(test, feature = "frames")))]
pub mod frames;
pub mod ingress;
mod ready;
pub mod session;
mod slot;
mod stack;
mod stats;
mod synhold;
mod tcp;
#[cfg(feature = "udp")]
mod udp;
pub mod ws;

#[cfg(feature = "std")]
pub mod runtime;

pub use config::{Config, TcpOptions};
#[cfg(feature = "udp")]
pub use config::{UdpOptions, DEFAULT_UDP_PROBE};
pub use device::{MAX_LISTENERS, MAX_UNSENT_CONNECTS, SYN_STASH_FRAMES, SYN_STASH_FRAME_LEN};
pub use error::{Error, Result};
#[cfg(feature = "udp")]
pub use event::UdpHandle;
pub use event::{Event, Ready, TcpHandle, TcpListener, Token};
pub use ready::ReadyCell;
pub use slot::{Slot, StaticStorage, Storage};
pub use stack::Stack;
pub use stats::{DropReason, Stats};
pub use synhold::HeldSyn;
pub use tcp::MAX_BACKLOG;
#[cfg(feature = "udp")]
pub use udp::{DialOptions, DialStatus, UdpDial, UdpMeta};

/// smoltcp, re-exported so users name the same version of its types.
pub use smoltcp;

#[cfg(test)]
mod test_rng;
#[cfg(all(test, feature = "std"))]
mod test_wire;
#[cfg(all(test, feature = "std"))]
mod tests;
