//! The board under every firmware image here: QEMU `mps2-an385` (Cortex-M3, 25 MHz) with its
//! LAN9118. SysTick at 1 kHz is the clock; panics and faults go out through semihosting and
//! end QEMU with a failure status.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use smoltcp::time::Instant;
use ustack_drivers::lan9118::{Lan9118, Mmio};

/// The LAN9118's register window on mps2-an385 (QEMU hw/arm/mps2.c).
const LAN9118_BASE: usize = 0x4020_0000;
/// mps2's system clock, which clocks the core and so SysTick's core source.
const SYSCLK_HZ: u32 = 25_000_000;
/// SysTick rate: one tick per millisecond.
const TICK_HZ: u32 = 1_000;

/// The board's MAC address (locally administered).
pub const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// Milliseconds since SysTick started; wraps after 49 days, [`Clock`] widens it.
static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Widens [`MILLIS`] to a 64-bit [`Instant`].
pub struct Clock {
    last: u32,
    millis: u64,
}

impl Clock {
    fn start(syst: &mut SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Clock { last: 0, millis: 0 }
    }

    /// Now, in the stack's time.
    pub fn now(&mut self) -> Instant {
        let m = MILLIS.load(Ordering::Relaxed);
        self.millis += u64::from(m.wrapping_sub(self.last));
        self.last = m;
        Instant::from_millis(i64::try_from(self.millis).unwrap_or(i64::MAX))
    }
}

/// Starts the clock and brings up the Ethernet controller; `name` goes into the first log line.
pub fn init(name: &str) -> (Clock, Lan9118<Mmio>) {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        panic!("core peripherals already taken");
    };
    hprintln!(
        "{}: mps2-an385, SYST calibration {} ticks/10ms",
        name,
        SYST::get_ticks_per_10ms()
    );
    let clock = Clock::start(&mut cp.SYST);
    // SAFETY: 0x4020_0000 is the LAN9118 register window on mps2-an385, and nothing else in
    // this program touches it.
    let bus = unsafe { Mmio::new(LAN9118_BASE) };
    let device = match Lan9118::new(bus, MAC) {
        Ok(d) => d,
        Err(e) => panic!("lan9118: {e:?}"),
    };
    hprintln!("lan9118: up, MAC 02:00:00:00:00:02");
    (clock, device)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    hprintln!("PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    // SAFETY (runtime): cortex-m-rt requires this handler to be `unsafe fn`; it only reads
    // the stacked frame it is given and reports it.
    hprintln!("HARDFAULT: {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
