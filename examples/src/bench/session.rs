//! Pieces of the `bench_session` binary: echo over TAP against the kernel over veth, task-pool
//! dispatch cost, and heap bytes per idle session over the in-memory pipe. Namespaces, the
//! deadline, the CPU meter and pinning come from the `bench_tcp` helpers in `bench/mod.rs`
//! and `bench/net.rs`.

#[path = "session_echo.rs"]
pub mod echo;
#[path = "session_heap.rs"]
pub mod heap;
#[path = "session_pool.rs"]
pub mod pool;

use std::time::Duration;

/// CPU time the whole process has used (every thread, user + system).
pub fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time another thread of this process has used, through its CPU-time clock.
pub fn other_thread_cpu<T>(h: &std::thread::JoinHandle<T>) -> Option<Duration> {
    use std::os::unix::thread::JoinHandleExt;
    let mut id: libc::clockid_t = 0;
    // SAFETY: the thread is alive while its JoinHandle is not joined; `id` is one clockid_t.
    if unsafe { libc::pthread_getcpuclockid(h.as_pthread_t(), &mut id) } != 0 {
        return None;
    }
    Some(clock(id))
}

/// The median of `v` (the lower middle one for an even count), or `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get((v.len().max(1) - 1) / 2).copied()
}

/// `(min, max)` of `v`.
pub fn spread(v: &[f64]) -> Option<(f64, f64)> {
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

/// Thousands separators: `1234567` → `1 234 567` (narrow, as the other benchmark tables).
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Where the threads of a cell run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every thread of the cell on CPU 0: no cross-CPU wake-ups, so a cell measures the CPU
    /// work per message (and the threads take turns on one core).
    OneCpu,
    /// No pinning: the scheduler spreads the threads over every CPU. A thread that sleeps
    /// and is woken from the other CPU pays the wake-up of an idle (v)CPU.
    Free,
}

impl Placement {
    /// Both, in report order.
    pub const ALL: [Placement; 2] = [Placement::OneCpu, Placement::Free];

    /// The name `--placement` takes.
    pub fn key(self) -> &'static str {
        match self {
            Placement::OneCpu => "one-cpu",
            Placement::Free => "free",
        }
    }

    /// The name in the report.
    pub fn title(self) -> &'static str {
        match self {
            Placement::OneCpu => "all threads on CPU 0",
            Placement::Free => "threads unpinned on both CPUs",
        }
    }

    /// Parses a `--placement` name.
    pub fn parse(s: &str) -> Option<Placement> {
        Placement::ALL.into_iter().find(|p| p.key() == s)
    }

    /// Pins the calling thread as the placement says, until the guard drops. Threads it
    /// spawns meanwhile (servers, clients, pool workers) inherit the mask.
    pub fn apply(self) -> std::io::Result<Affinity> {
        match self {
            Placement::OneCpu => Affinity::only(0),
            Placement::Free => Ok(Affinity(None)),
        }
    }
}

/// Restores the calling thread's CPU mask when dropped.
pub struct Affinity(Option<libc::cpu_set_t>);

impl Affinity {
    /// Binds the calling thread to `cpu` alone.
    pub fn only(cpu: usize) -> std::io::Result<Affinity> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed cpu_set_t is valid; sched_{get,set}affinity read or write one
        // cpu_set_t of `size` bytes, and pid 0 is the calling thread.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut old) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size, &set) != 0 {
                let e = std::io::Error::last_os_error();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot pin to CPU {cpu}: {e} (use --placement free)"),
                ));
            }
            Ok(Affinity(Some(old)))
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: restores the mask read in `only`.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
        }
    }
}
