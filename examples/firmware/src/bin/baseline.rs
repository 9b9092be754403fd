//! The size baseline: the same board (clock, LAN9118 driver, panic and fault handlers) with
//! no network stack. It sends every received frame straight back, so the driver's receive
//! and transmit paths are both linked. `size.sh` subtracts this image from the full
//! firmware: the difference is what ustack (stack, sessions, WebSocket and their
//! dependencies) and the echo services add.
#![no_std]
#![no_main]

#[path = "../board.rs"]
mod board;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use smoltcp::phy::{Device, RxToken, TxToken};

#[entry]
fn main() -> ! {
    // The same instrumentation as the firmware, so that the size difference leaves it out.
    let mut stack_watch = board::StackWatch::paint();
    let (mut clock, mut device) = board::init("baseline");
    hprintln!("baseline: reflecting frames");
    loop {
        let now = clock.now();
        stack_watch.report(now);
        if let Some((rx, tx)) = device.receive(now) {
            rx.consume(|frame| tx.consume(frame.len(), |out| out.copy_from_slice(frame)));
        }
    }
}
