//! Dispatch cost of the task pool: `TaskPool` alone, a trivial task (one atomic add), K
//! producer threads submitting as fast as they can (spinning on `Full`, with a `yield_now`
//! every 64 refusals so a shared core is handed over), for the queue
//! layouts 1:N (one queue, N workers), 1:1 (a queue per worker) and M:N (M queues shared by
//! N workers), with `std::sync::mpsc::sync_channel` and one consumer as the reference.
//!
//! The time runs from the moment the producers are released until the worker that runs the
//! last task notices it is the last: submit → queue → wake-up → executed, for every task.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ustack::session::tasks::{Dispatch, Full, PoolConfig, TaskPool};

use crate::bench::{interrupted, CpuMeter};

use super::{process_cpu, Placement};

/// A queue layout under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One queue, N workers (round-robin is moot with one queue).
    OneToN,
    /// A queue per worker, round-robin.
    OneToOne,
    /// A queue per worker, ordered (`hash(key) % M`; every task has its own key).
    OneToOneOrdered,
    /// M queues, N workers (N/M per queue), round-robin.
    MToN,
    /// `std::sync::mpsc::sync_channel` with one consumer thread.
    Mpsc,
}

impl Model {
    /// Every model, in report order.
    pub const ALL: [Model; 5] = [
        Model::OneToN,
        Model::OneToOne,
        Model::OneToOneOrdered,
        Model::MToN,
        Model::Mpsc,
    ];

    /// The pool's shape for `workers` workers and `m` queues in the M:N model.
    pub fn config(self, workers: usize, m: usize, capacity: usize) -> Option<PoolConfig> {
        let (queues, dispatch) = match self {
            Model::OneToN => (1, Dispatch::RoundRobin),
            Model::OneToOne => (workers, Dispatch::RoundRobin),
            Model::OneToOneOrdered => (workers, Dispatch::Ordered),
            Model::MToN => (m, Dispatch::RoundRobin),
            Model::Mpsc => return None,
        };
        Some(PoolConfig {
            queues,
            workers,
            capacity,
            dispatch,
        })
    }

    /// The model's name in the report.
    pub fn title(self, workers: usize, m: usize) -> String {
        match self {
            Model::OneToN => format!("1:N — 1 queue, {workers} workers"),
            Model::OneToOne => format!("1:1 — {workers} queues, 1 worker each, round-robin"),
            Model::OneToOneOrdered => {
                format!("1:1 — {workers} queues, 1 worker each, ordered")
            }
            Model::MToN => format!(
                "M:N — {m} queues, {workers} workers ({} per queue)",
                workers / m.max(1)
            ),
            Model::Mpsc => "`std::sync::mpsc::sync_channel`, 1 consumer (reference)".into(),
        }
    }
}

/// What one pool cell runs.
#[derive(Debug, Clone, Copy)]
pub struct PoolSpec {
    /// Tasks in total (over all producers).
    pub tasks: u64,
    /// Producer threads.
    pub producers: usize,
    /// Workers of the pool models.
    pub workers: usize,
    /// Queues of the M:N model.
    pub m: usize,
    /// Tasks one queue holds (`PoolConfig::capacity`); also the mpsc channel's bound.
    pub capacity: usize,
    /// Longest one cell may take.
    pub timeout: Duration,
    /// Where the cell's threads run.
    pub placement: Placement,
}

/// What one pool cell measured.
#[derive(Debug, Clone, Copy)]
pub struct PoolOutcome {
    /// Tasks run.
    pub tasks: u64,
    /// From the producers' release to the last task's execution.
    pub elapsed: Duration,
    /// `try_submit` calls refused with `Full` (spun on), over all producers.
    pub full: u64,
    /// CPU time of the whole process over the cell.
    pub cpu: Duration,
    /// CPUs other processes kept busy meanwhile.
    pub others_cpu: Option<f64>,
}

impl PoolOutcome {
    /// Wall nanoseconds per task, end to end.
    pub fn ns(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.tasks.max(1) as f64
    }

    /// CPU nanoseconds per task, every thread.
    pub fn cpu_ns(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.tasks.max(1) as f64
    }
}

/// The trivial task's shared state: a counter, and the time the last task ran.
struct Done {
    count: AtomicU64,
    total: u64,
    at: Mutex<Option<Instant>>,
    cv: Condvar,
}

impl Done {
    /// The task: one atomic add; the one that completes the set records the time.
    #[inline]
    fn task(&self, v: u64) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        std::hint::black_box(v);
        if n == self.total {
            *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.cv.notify_all();
        }
    }

    /// Waits for the last task (or the timeout).
    fn wait(&self, timeout: Duration) -> io::Result<Instant> {
        let end = Instant::now() + timeout;
        let mut g = self.at.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(t) = *g {
                return Ok(t);
            }
            let now = Instant::now();
            if now >= end || interrupted() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "only {} of {} tasks ran within {timeout:?} (raise --timeout, or lower --tasks)",
                        self.count.load(Ordering::Relaxed),
                        self.total
                    ),
                ));
            }
            let step = (end - now).min(Duration::from_millis(100));
            g = self
                .cv
                .wait_timeout(g, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What a producer does after its `refused`-th `Full`: spin, and every 64th time yield the
/// CPU, so that on a shared core the workers get to run before the time slice ends.
#[inline]
fn backoff(refused: u64) {
    if refused.is_multiple_of(64) {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Splits `total` over `k` producers.
fn share(total: u64, k: usize, p: usize) -> u64 {
    total / k as u64 + u64::from((p as u64) < total % k as u64)
}

/// Runs one cell.
pub fn run(model: Model, spec: PoolSpec) -> io::Result<PoolOutcome> {
    // Workers, producers and the consumer are spawned from this thread and inherit its mask.
    let _cpus = spec.placement.apply()?;
    let done = Arc::new(Done {
        count: AtomicU64::new(0),
        total: spec.tasks,
        at: Mutex::new(None),
        cv: Condvar::new(),
    });
    let full = AtomicU64::new(0);
    let start = Barrier::new(spec.producers + 1);
    let meter = CpuMeter::now();
    let cpu0 = process_cpu();
    let (t0, end) = match model.config(spec.workers, spec.m, spec.capacity) {
        Some(config) => {
            let d = done.clone();
            let pool = TaskPool::new(config, move |_| {
                let d = d.clone();
                move |v: u64| d.task(v)
            })?;
            let t0 = thread::scope(|s| {
                for p in 0..spec.producers {
                    let (pool, full, start) = (&pool, &full, &start);
                    s.spawn(move || {
                        let n = share(spec.tasks, spec.producers, p);
                        let mut refused = 0u64;
                        start.wait();
                        for i in 0..n {
                            // Every task has its own key, so ordered dispatch spreads them.
                            let key = ((p as u64) << 40) | i;
                            let mut task = i;
                            loop {
                                match pool.try_submit(key, task) {
                                    Ok(()) => break,
                                    Err(Full(t)) => {
                                        task = t;
                                        refused += 1;
                                        if interrupted() {
                                            return;
                                        }
                                        backoff(refused);
                                    }
                                }
                            }
                        }
                        full.fetch_add(refused, Ordering::Relaxed);
                    });
                }
                start.wait();
                Instant::now()
            });
            let end = done.wait(spec.timeout);
            drop(pool);
            (t0, end?)
        }
        None => {
            let (tx, rx) = mpsc::sync_channel::<u64>(spec.capacity);
            let d = done.clone();
            let consumer =
                thread::Builder::new()
                    .name("mpsc-consumer".into())
                    .spawn(move || {
                        while let Ok(v) = rx.recv() {
                            d.task(v);
                        }
                    })?;
            let t0 = thread::scope(|s| {
                for p in 0..spec.producers {
                    let (tx, full, start) = (tx.clone(), &full, &start);
                    s.spawn(move || {
                        let n = share(spec.tasks, spec.producers, p);
                        let mut refused = 0u64;
                        start.wait();
                        for i in 0..n {
                            let mut task = i;
                            loop {
                                match tx.try_send(task) {
                                    Ok(()) => break,
                                    Err(TrySendError::Full(t)) => {
                                        task = t;
                                        refused += 1;
                                        if interrupted() {
                                            return;
                                        }
                                        backoff(refused);
                                    }
                                    Err(TrySendError::Disconnected(_)) => return,
                                }
                            }
                        }
                        full.fetch_add(refused, Ordering::Relaxed);
                    });
                }
                start.wait();
                Instant::now()
            });
            drop(tx);
            let end = done.wait(spec.timeout);
            let _ = consumer.join();
            (t0, end?)
        }
    };
    let cpu = process_cpu().saturating_sub(cpu0);
    Ok(PoolOutcome {
        tasks: spec.tasks,
        elapsed: end - t0,
        full: full.load(Ordering::Relaxed),
        cpu,
        others_cpu: meter.zip(CpuMeter::now()).map(|(a, b)| a.others_since(&b)),
    })
}
