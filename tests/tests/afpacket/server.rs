//! A ustack echo server (TCP and UDP on [`PORT`]) over one AF_PACKET device, polled on its
//! own thread until stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ustack::runtime::{self, PollMode};
use ustack::{Config, Stack, Stats};
use ustack_drivers::{AfPacket, AfPacketStats};
use ustack_examples::echo::{Echo, EchoStats};

use crate::topo::PORT;

/// What a stopped server reports.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// The device's counters (frames, syscalls, drops).
    pub dev: AfPacketStats,
    /// The stack's counters.
    pub stack: Stats,
    /// The echo service's counters.
    pub echo: EchoStats,
}

pub struct EchoThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Served>>,
}

impl EchoThread {
    /// Starts a stack on `dev` with `config`; the device keeps its namespace, so the thread
    /// itself may live anywhere.
    pub fn start(dev: AfPacket, config: Config) -> EchoThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stack = Stack::new(config, dev, runtime::now()).expect("stack");
            // Each poll ends with one flush of the frames it queued.
            stack.set_flush(AfPacket::flush);
            let mut echo = Echo::bind(&mut stack, PORT, 64).expect("bind echo");
            runtime::run(&mut stack, PollMode::Block, &flag, |s, ev| {
                echo.on_event(s, ev)
            })
            .expect("poll loop");
            Served {
                dev: stack.device().stats(),
                stack: stack.stats(),
                echo: echo.stats(),
            }
        });
        EchoThread {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loop and returns the counters.
    pub fn stop(mut self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().expect("running").join() {
            Ok(served) => served,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for EchoThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
