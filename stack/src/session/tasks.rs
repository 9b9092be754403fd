//! The task pool (feature `std`): handlers off the stack thread, Getty's design with its
//! flaws fixed. M bounded queues, N workers (N/M per queue), dispatch round-robin or
//! **ordered** (`hash(key) % M`, one worker per queue, so one key's tasks run in order).
//! A full queue is refused, never grown: the caller pauses instead (Getty's
//! `AddTaskAlways` spawns without limit).

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;

/// How tasks are spread over queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Each task to the next queue that has room: best spread, no order between tasks.
    #[default]
    RoundRobin,
    /// Each task to queue `hash(key) % M`, served by one worker: tasks of one key (one
    /// session) run in the order submitted.
    Ordered,
}

/// The shape of a [`TaskPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Queues (M).
    pub queues: usize,
    /// Workers (N); a multiple of `queues`. `Ordered` needs exactly one per queue.
    pub workers: usize,
    /// Tasks one queue holds before it refuses more.
    pub capacity: usize,
    /// How tasks are spread.
    pub dispatch: Dispatch,
}

impl PoolConfig {
    /// `n` workers with a queue each (1:1), 1024 tasks per queue.
    pub fn per_worker(n: usize, dispatch: Dispatch) -> Self {
        PoolConfig {
            queues: n,
            workers: n,
            capacity: 1024,
            dispatch,
        }
    }
}

struct Queue<T> {
    tasks: Mutex<VecDeque<T>>,
    ready: Condvar,
    cap: usize,
}

struct Inner<T> {
    queues: Vec<Queue<T>>,
    stop: AtomicBool,
    /// Called when a full queue gets room, so a paused producer can go on.
    on_room: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

/// A pool of worker threads fed by bounded queues.
///
/// ```
/// use std::sync::mpsc;
/// use ustack::session::tasks::{Dispatch, PoolConfig, TaskPool};
/// let (tx, rx) = mpsc::channel();
/// let pool = TaskPool::new(PoolConfig::per_worker(2, Dispatch::Ordered), |_worker| {
///     let tx = tx.clone();
///     move |n: u32| tx.send(n).unwrap()
/// }).unwrap();
/// for n in 0..10 {
///     pool.try_submit(7, n).unwrap();
/// }
/// drop(pool); // runs what is queued, then joins
/// let got: Vec<u32> = rx.try_iter().collect();
/// assert_eq!(got, (0..10).collect::<Vec<_>>(), "one key, one queue, in order");
/// ```
pub struct TaskPool<T: Send + 'static> {
    inner: Arc<Inner<T>>,
    dispatch: Dispatch,
    next: AtomicUsize,
    threads: Vec<JoinHandle<()>>,
}

/// A task the pool refused because its queue is full; the task comes back.
#[derive(Debug)]
pub struct Full<T>(pub T);

impl<T> core::fmt::Display for Full<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("task queue full: the handlers are saturated; pause the producer and retry when a queue has room")
    }
}

impl<T: Send + 'static> TaskPool<T> {
    /// Starts `config.workers` threads; `make(w)` builds worker `w`'s handler.
    pub fn new<W, F>(config: PoolConfig, make: F) -> io::Result<Self>
    where
        F: Fn(usize) -> W,
        W: FnMut(T) + Send + 'static,
    {
        let PoolConfig {
            queues: m,
            workers: n,
            capacity,
            dispatch,
        } = config;
        let bad = |why| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if m == 0 || n == 0 || capacity == 0 {
            return bad("a task pool needs at least one queue, one worker and a capacity of one");
        }
        if n % m != 0 {
            return bad("workers must be a multiple of queues, so every queue has as many");
        }
        if dispatch == Dispatch::Ordered && n != m {
            return bad("ordered dispatch needs exactly one worker per queue (workers == queues)");
        }
        let inner = Arc::new(Inner {
            queues: (0..m)
                .map(|_| Queue {
                    tasks: Mutex::new(VecDeque::with_capacity(capacity)),
                    ready: Condvar::new(),
                    cap: capacity,
                })
                .collect(),
            stop: AtomicBool::new(false),
            on_room: Mutex::new(None),
        });
        let mut pool = TaskPool {
            inner,
            dispatch,
            next: AtomicUsize::new(0),
            threads: Vec::with_capacity(n),
        };
        for w in 0..n {
            let (inner, mut work) = (pool.inner.clone(), make(w));
            // On failure, dropping `pool` stops and joins the workers already started.
            let t = std::thread::Builder::new()
                .name(alloc::format!("ustack-worker-{w}"))
                .spawn(move || worker(&inner, w % m, &mut work))?;
            pool.threads.push(t);
        }
        Ok(pool)
    }

    /// Calls `f` whenever a queue that was full gets room.
    pub fn on_room(&self, f: Arc<dyn Fn() + Send + Sync>) {
        *self.inner.on_room.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    fn queue_of(&self, key: u64) -> usize {
        // Fibonacci hashing spreads sequential ids over the queues.
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize % self.inner.queues.len()
    }

    /// Queues `task`, or gives it back when its queue is full (round-robin tries every
    /// queue once).
    pub fn try_submit(&self, key: u64, task: T) -> Result<(), Full<T>> {
        let qs = &self.inner.queues;
        let (first, tries) = match self.dispatch {
            Dispatch::Ordered => (self.queue_of(key), 1),
            Dispatch::RoundRobin => (self.next.fetch_add(1, Ordering::Relaxed), qs.len()),
        };
        for k in 0..tries {
            let q = &qs[(first + k) % qs.len()];
            let mut g = q.tasks.lock().unwrap_or_else(|e| e.into_inner());
            if g.len() < q.cap {
                g.push_back(task);
                drop(g);
                q.ready.notify_one();
                return Ok(());
            }
            drop(g);
        }
        Err(Full(task))
    }

    /// Whether a task for `key` would be refused now (`None`: whether every queue is full).
    pub fn is_full(&self, key: Option<u64>) -> bool {
        let full = |q: &Queue<T>| q.tasks.lock().map_or(true, |g| g.len() >= q.cap);
        match (key, self.dispatch) {
            (Some(k), Dispatch::Ordered) => full(&self.inner.queues[self.queue_of(k)]),
            _ => self.inner.queues.iter().all(full),
        }
    }

    /// Tasks waiting in all queues.
    pub fn queued(&self) -> usize {
        let len = |q: &Queue<T>| q.tasks.lock().map_or(0, |g| g.len());
        self.inner.queues.iter().map(len).sum()
    }
}

impl<T: Send + 'static> Drop for TaskPool<T> {
    /// Lets the workers finish what is queued, then joins them.
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        for q in &self.inner.queues {
            let _g = q.tasks.lock();
            q.ready.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker<T>(inner: &Inner<T>, qi: usize, work: &mut dyn FnMut(T)) {
    let q = &inner.queues[qi];
    loop {
        let mut g = q.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let task = loop {
            if let Some(t) = g.pop_front() {
                break t;
            }
            if inner.stop.load(Ordering::Acquire) {
                return;
            }
            g = q.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        };
        let was_full = g.len() + 1 >= q.cap;
        drop(g);
        if was_full {
            let f = inner
                .on_room
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(f) = f {
                f();
            }
        }
        // A panicking handler loses its task, not its worker: the queue keeps draining.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(task))).is_err() {
            #[cfg(feature = "log")]
            log::error!("ustack task pool: a handler panicked; its task was dropped");
        }
    }
}
