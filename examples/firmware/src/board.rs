//! The board under every firmware image here: QEMU `mps2-an385` (Cortex-M3, 25 MHz) with its
//! LAN9118. SysTick at 1 kHz is the clock; panics and faults go out through semihosting and
//! end QEMU with a failure status.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use smoltcp::time::{Duration, Instant};
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

/// How much of the stack below `main`'s frame is painted to measure stack use.
const STACK_PAINT: usize = 64 * 1024;
const PAINT: u32 = 0x5a5a_5a5a;
/// How often [`StackWatch::report`] looks.
const STACK_REPORT: Duration = Duration::from_millis(250);

/// The main stack's high-water mark. The stack region below the caller's frame is painted at
/// startup; later, whatever is no longer paint has been used (by calls or by interrupt
/// frames). `.bss` states the rest of RAM, so this completes the RAM figure.
pub struct StackWatch {
    low: usize,
    words: usize,
    top: usize,
    reported: usize,
    next_check: Instant,
}

extern "C" {
    /// The stack's top (cortex-m-rt's link.x: the end of RAM).
    static _stack_start: u32;
    /// The end of `.bss`: the stack may never reach below it.
    static __ebss: u32;
}

impl StackWatch {
    /// Paints up to [`STACK_PAINT`] bytes below the current stack pointer (keeping clear of
    /// this call's own frame and of `.bss`).
    pub fn paint() -> Self {
        // Only the symbols' addresses are taken, never their contents.
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let ebss = core::ptr::addr_of!(__ebss) as usize;
        let sp = cortex_m::register::msp::read() as usize;
        let high = sp.saturating_sub(256) & !3;
        let low = high.saturating_sub(STACK_PAINT).max((ebss + 3) & !3);
        let words = high.saturating_sub(low) / 4;
        for i in 0..words {
            // SAFETY: [low, high) lies between the end of .bss and the live stack, in RAM
            // no Rust object occupies; the stack grows into it only later.
            unsafe { core::ptr::write_volatile((low as *mut u32).add(i), PAINT) };
        }
        StackWatch {
            low,
            words,
            top,
            reported: 0,
            next_check: Instant::ZERO,
        }
    }

    /// Every 250 ms, prints `stack: N bytes used` if the high-water mark grew.
    pub fn report(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + STACK_REPORT;
        if let Some(used) = self.grew() {
            hprintln!("stack: {} bytes used", used);
        }
    }

    /// Bytes of stack used since boot, when more than last time this returned.
    fn grew(&mut self) -> Option<usize> {
        let untouched = (0..self.words)
            // SAFETY: the painted region, read word by word; the stack may write it
            // concurrently only from this same thread or an interrupt, which volatile reads
            // tolerate (a stale word just reads as used).
            .take_while(
                |&i| unsafe { core::ptr::read_volatile((self.low as *const u32).add(i)) } == PAINT,
            )
            .count();
        let used = self.top - (self.low + 4 * untouched);
        (used > self.reported).then(|| {
            self.reported = used;
            used
        })
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
