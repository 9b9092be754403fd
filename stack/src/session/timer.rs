//! One timing wheel that drives the timers of every session.
//!
//! The session layer has several timers per session (cron, idle, read and write timeouts).
//! There is never a thread or task per session: one [`TimerWheel`] holds, for each session
//! slot `id`, **one** deadline, the earliest one that session cares about. When it fires the
//! session layer works out which of its own timers are due, acts on them and schedules the
//! next earliest deadline again. The wheel is sans-IO: it never reads a clock, the caller
//! passes `now` in.
//!
//! # Design
//!
//! * **Ticks.** Time is cut into ticks of `tick` (10 ms by default) on a grid anchored at the
//!   `now` given to [`TimerWheel::new`]. A deadline belongs to the tick `k` whose grid point
//!   `origin + k * tick` is the first one at or after the deadline.
//! * **Two levels and an overflow list.** `BUCKETS` ticks make one *revolution*. The near
//!   level has one bucket per tick of the current revolution. The far level has one bucket
//!   per revolution for the next `BUCKETS - 1` revolutions. Deadlines further out wait on an
//!   overflow list (with the defaults, more than about 11 minutes ahead). When the wheel
//!   enters a revolution it moves that revolution's far bucket into the near level, and
//!   overflow entries that came within reach into the levels. This is the second-level
//!   alternative to per-entry "remaining rounds" counters: every bucket holds exactly one
//!   tick (near) or one revolution (far), so finding the earliest deadline never has to look
//!   past the first occupied bucket. Each entry keeps its exact deadline, so moving it
//!   between levels never rounds it.
//! * **Intrusive lists.** Buckets are doubly-linked lists threaded through caller-provided
//!   [`TimerEntry`] storage by `u16` index, like the stack's slot lists, so
//!   [`schedule`](TimerWheel::schedule), rescheduling and [`cancel`](TimerWheel::cancel) are
//!   O(1) and nothing allocates after construction.
//!
//! # Firing precision
//!
//! * **Never early.** [`pop_expired(now)`](TimerWheel::pop_expired) returns an id only if its
//!   deadline is `<= now`.
//! * **Never missed.** Calling `pop_expired(now)` until it returns `None` returns every id
//!   whose deadline is `<= now`, exactly once. So a timer fires at the first such drain with
//!   `now >= deadline`, down to the microsecond, not only on tick boundaries.
//! * **At most one tick late.** The lateness is therefore the gap between the deadline and
//!   that drain. Draining at least once per tick while timers are pending keeps it below one
//!   tick. Sleeping until [`next_deadline`](TimerWheel::next_deadline), which is rounded
//!   *up* to the tick grid so that timers within one tick share one wake-up, also keeps it
//!   below one tick.
//! * Within one drain, ids come out in the order of their ticks; ids in the same tick come
//!   out in no particular order.
//!
//! # Costs
//!
//! `schedule`, `cancel` and `deadline` are O(1). `pop_expired` is O(1) per returned id, plus
//! O(`BUCKETS`) per revolution the clock moved through and a walk of the current tick's
//! bucket when one of its deadlines falls due (and, if the clock steps back in the middle of a
//! drain, re-filing the ids already found due). `next_deadline` is O(1) while its cached
//! answer is valid and otherwise O(`BUCKETS`) plus a walk of the first occupied bucket; only
//! when nothing is due within `BUCKETS` revolutions does it walk the overflow list.

use core::cell::Cell;
use core::fmt;

use smoltcp::time::{Duration, Instant};

/// The default tick, 10 ms.
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);

/// The default number of buckets per level.
pub const DEFAULT_BUCKETS: usize = 256;

/// The most ids one wheel can track; links are `u16` with one value reserved.
pub const MAX_TIMERS: usize = NIL as usize;

const NIL: u16 = u16::MAX;

/// Relative times are clamped to ±2^61 µs (73,000 years), so tick arithmetic cannot overflow.
const LIMIT: i64 = 1 << 61;

/// The per-id state of a [`TimerWheel`]. Part of the caller-provided storage.
///
/// Its fields are private; use [`TimerEntry::EMPTY`] to fill static storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    /// The deadline in microseconds, meaningful while `loc != NIL`.
    at: i64,
    next: u16,
    prev: u16,
    /// Which list the entry is on: near bucket `0..B`, far bucket `B..2B`, the overflow list
    /// `2B`, the due list `2B + 1`, or `NIL` when no deadline is set.
    loc: u16,
}

impl TimerEntry {
    /// An entry without a deadline, for static storage.
    pub const EMPTY: TimerEntry = TimerEntry {
        at: 0,
        next: NIL,
        prev: NIL,
        loc: NIL,
    };
}

impl Default for TimerEntry {
    fn default() -> Self {
        TimerEntry::EMPTY
    }
}

/// What a [`TimerWheel`] rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerError {
    /// `id` is not below the wheel's capacity.
    OutOfRange {
        /// The id that was passed.
        id: usize,
        /// The wheel's capacity; valid ids are `0..capacity`.
        capacity: usize,
    },
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerError::OutOfRange { id, capacity } => write!(
                f,
                "timer id {id} is out of range: this wheel tracks ids 0..{capacity}; \
                 give it more TimerEntry storage"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TimerError {}

type Entries<'a> = crate::slot::Table<'a, TimerEntry>;

/// The earliest deadline on the wheel's levels (not counting the due list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Min {
    /// Has to be recomputed.
    Unknown,
    /// The levels and the overflow list are empty.
    Empty,
    /// Exactly this deadline, in microseconds.
    At(i64),
}

/// A hashed timing wheel: one deadline per id, for every session at once.
///
/// `BUCKETS` (256 by default, at most 32,766) is the number of buckets per level; one
/// revolution is `BUCKETS` ticks. See the [module documentation](self) for the design and
/// the exact firing guarantees. Because `BUCKETS` has a default, name the type
/// (`TimerWheel` or `TimerWheel<'_, 64>`) where the wheel is created.
///
/// ```
/// use ustack::session::timer::{TimerEntry, TimerWheel, DEFAULT_TICK};
/// use ustack::smoltcp::time::{Duration, Instant};
///
/// // Storage for ids 0..4, e.g. a `static` array on firmware.
/// let mut entries = [TimerEntry::EMPTY; 4];
/// let start = Instant::from_millis(0);
/// let mut wheel: TimerWheel = TimerWheel::new(&mut entries, DEFAULT_TICK, start);
///
/// wheel.schedule(1, start + Duration::from_millis(250)).unwrap();
/// wheel.schedule(3, start + Duration::from_millis(40)).unwrap();
/// assert_eq!(wheel.next_deadline(), Some(start + Duration::from_millis(40)));
///
/// // Nothing is due yet, and nothing fires early.
/// assert_eq!(wheel.pop_expired(start + Duration::from_millis(39)), None);
///
/// // Drain what is due; the caller may reschedule between pops.
/// let now = start + Duration::from_millis(45);
/// while let Some(id) = wheel.pop_expired(now) {
///     assert_eq!(id, 3);
///     wheel.schedule(id, now + Duration::from_secs(60)).unwrap(); // the next cron round
/// }
/// assert_eq!(wheel.deadline(1), Some(start + Duration::from_millis(250)));
///
/// wheel.cancel(1).unwrap();
/// assert_eq!(wheel.len(), 1);
/// assert!(wheel.schedule(4, now).is_err()); // out of range: ids are 0..4
/// ```
pub struct TimerWheel<'a, const BUCKETS: usize = DEFAULT_BUCKETS> {
    entries: Entries<'a>,
    /// Valid ids are `0..cap`.
    cap: usize,
    /// The tick grid's origin, in microseconds.
    origin: i64,
    /// The tick in microseconds, at least 1.
    tick: i64,
    /// The wheel's current tick. Every entry on the levels sits in a tick `>= cur`; an entry
    /// scheduled for an earlier tick sits in tick `cur`.
    cur: i64,
    /// One bucket per tick of the current revolution.
    near: [u16; BUCKETS],
    /// One bucket per revolution for the next `BUCKETS - 1` revolutions.
    far: [u16; BUCKETS],
    /// Entries `BUCKETS` or more revolutions ahead.
    overflow: u16,
    /// A lower bound on the tick of every overflow entry.
    overflow_floor: i64,
    /// Entries found due but not returned yet, in firing order.
    due_head: u16,
    due_tail: u16,
    /// The `now` (µs) the due list was filled at: every entry on it is due at that time.
    due_now: i64,
    /// Ids with a deadline, including those on the due list.
    len: usize,
    /// Cache for `next_deadline` and `pop_expired`'s fast path.
    min: Cell<Min>,
}

impl<'a, const B: usize> TimerWheel<'a, B> {
    const VALID: () = assert!(
        B >= 1 && B <= 32_766,
        "TimerWheel: BUCKETS must be in 1..=32766"
    );
    const OVERFLOW: u16 = (2 * B) as u16;
    const DUE: u16 = (2 * B + 1) as u16;

    /// A wheel over caller-provided storage, tracking ids `0..storage.len()` (at most
    /// [`MAX_TIMERS`]; extra entries are left unused).
    ///
    /// `tick` is the granularity (see [`DEFAULT_TICK`]); a zero tick is taken as 1 µs.
    /// `now` anchors the tick grid. Every entry is reset to [`TimerEntry::EMPTY`], so storage
    /// may be reused from an earlier wheel.
    pub fn new(storage: &'a mut [TimerEntry], tick: Duration, now: Instant) -> Self {
        Self::build(Entries::Borrowed(storage), tick, now)
    }

    fn build(mut entries: Entries<'a>, tick: Duration, now: Instant) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        entries.fill(TimerEntry::EMPTY);
        let cap = entries.len().min(MAX_TIMERS);
        let tick = i64::try_from(tick.total_micros())
            .unwrap_or(LIMIT)
            .clamp(1, LIMIT);
        TimerWheel {
            entries,
            cap,
            origin: now.total_micros(),
            tick,
            cur: 0,
            near: [NIL; B],
            far: [NIL; B],
            overflow: NIL,
            overflow_floor: i64::MAX,
            due_head: NIL,
            due_tail: NIL,
            due_now: i64::MIN,
            len: 0,
            min: Cell::new(Min::Empty),
        }
    }

    /// The most ids this wheel tracks; valid ids are `0..capacity()`.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The tick: the granularity of [`next_deadline`](Self::next_deadline).
    pub fn tick(&self) -> Duration {
        Duration::from_micros(self.tick as u64)
    }

    /// How many ids have a deadline, including ids already due but not yet popped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id has a deadline.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `id`'s deadline to `at`, replacing any earlier one. O(1).
    ///
    /// A deadline at or before the `now` of the next [`pop_expired`](Self::pop_expired) fires
    /// in that call. If the deadline lands in the same bucket as before (for instance when
    /// an idle timer is pushed back by less than a tick), only the stored instant changes.
    /// An id that is already due but not yet popped is taken off the due list and waits for
    /// the new deadline.
    pub fn schedule(&mut self, id: usize, at: Instant) -> Result<(), TimerError> {
        self.check(id)?;
        let at = at.total_micros();
        let slot = self.slot(at);
        let old = self.entries[id];
        if old.loc == self.loc(slot) {
            self.entries[id].at = at;
            self.note_remove(old.at);
            self.note_insert(at);
            if old.loc == Self::OVERFLOW {
                self.overflow_floor = self.overflow_floor.min(slot);
            }
        } else {
            if old.loc != NIL {
                self.remove(id);
            }
            self.entries[id].at = at;
            self.insert(id);
            self.len += 1;
        }
        Ok(())
    }

    /// Removes `id`'s deadline. Returns whether it had one. O(1).
    pub fn cancel(&mut self, id: usize) -> Result<bool, TimerError> {
        self.check(id)?;
        if self.entries[id].loc == NIL {
            return Ok(false);
        }
        self.remove(id);
        Ok(true)
    }

    /// `id`'s deadline, exactly as scheduled; `None` if it has none or is out of range.
    pub fn deadline(&self, id: usize) -> Option<Instant> {
        if id >= self.cap || self.entries[id].loc == NIL {
            return None;
        }
        Some(Instant::from_micros(self.entries[id].at))
    }

    /// Takes one id whose deadline is `<= now` off the wheel and returns it, earliest tick
    /// first; `None` when no deadline is `<= now`.
    ///
    /// Call it until it returns `None`. Between calls the caller may schedule or cancel
    /// anything, including the id just returned. An id rescheduled to a deadline `<= now`
    /// comes back in the same drain. `now` may go backwards: nothing panics, nothing is
    /// lost, and a deadline still fires only once `now` reaches it.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        let t = now.total_micros();
        if t < self.due_now && self.due_head != NIL {
            // Time went back during a drain: what was due may not be due any more.
            self.requeue_due();
        }
        if let Some(id) = self.pop_due() {
            return Some(id);
        }
        let n = self.tick_of(t);
        if self.len == 0 {
            // Nothing to cascade: just keep `cur` current so new deadlines land near.
            self.cur = self.cur.max(n);
            return None;
        }
        self.advance(n);
        if self.cur < n {
            // Tick `cur` has ended and its bucket is occupied: all of it is due.
            let mut id = core::mem::replace(&mut self.near[self.near_bucket(self.cur)], NIL);
            while id != NIL {
                let next = self.entries[usize::from(id)].next;
                self.link_due(usize::from(id));
                id = next;
            }
            self.due_now = t;
            self.min.set(Min::Unknown);
            self.step();
            return self.pop_due();
        }
        // `cur >= n`: only tick `cur` can hold due entries (those of this tick, and those
        // scheduled for earlier ticks), and every other entry is later than all of them.
        if let Min::At(m) = self.min.get() {
            if m > t {
                return None;
            }
        }
        let b = self.near_bucket(self.cur);
        let mut rest = Min::Unknown;
        let mut id = self.near[b];
        while id != NIL {
            let i = usize::from(id);
            let TimerEntry { at, next, .. } = self.entries[i];
            if at <= t {
                self.unlink(i);
                self.link_due(i);
            } else {
                rest = match rest {
                    Min::At(m) if m <= at => rest,
                    _ => Min::At(at),
                };
            }
            id = next;
        }
        self.min.set(rest);
        self.due_now = t;
        self.pop_due()
    }

    /// Drains every id whose deadline is `<= now`, calling `f` with each, earliest tick
    /// first. Returns how many fired.
    ///
    /// `f` cannot touch the wheel; collect what needs rescheduling, or use
    /// [`pop_expired`](Self::pop_expired) to reschedule between ids.
    pub fn expire(&mut self, now: Instant, mut f: impl FnMut(usize)) -> usize {
        let mut fired = 0;
        while let Some(id) = self.pop_expired(now) {
            f(id);
            fired += 1;
        }
        fired
    }

    /// The earliest pending deadline, rounded up to the tick grid (`origin + k * tick`, the
    /// first grid point at or after it); `None` when no id has a deadline.
    ///
    /// Waking at this instant and draining [`pop_expired`](Self::pop_expired) fires that
    /// timer at most one tick late, and fires together all timers of the same tick. Cached:
    /// O(1) while valid, otherwise see the module's cost notes.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let mut best = self.list_min(self.due_head);
        let min = match self.min.get() {
            Min::Unknown => {
                let m = self.compute_min();
                self.min.set(m);
                m
            }
            m => m,
        };
        if let Min::At(m) = min {
            best = Some(best.map_or(m, |b| b.min(m)));
        }
        best.map(|at| Instant::from_micros(self.grid(self.tick_of(at))))
    }

    /// How long from `now` until [`next_deadline`](Self::next_deadline), zero if it has
    /// passed; `None` when no id has a deadline. Meant for the stack's poll delay.
    pub fn next_delay(&self, now: Instant) -> Option<Duration> {
        let at = self.next_deadline()?;
        Some(if at > now { at - now } else { Duration::ZERO })
    }

    fn check(&self, id: usize) -> Result<(), TimerError> {
        if id < self.cap {
            Ok(())
        } else {
            Err(TimerError::OutOfRange {
                id,
                capacity: self.cap,
            })
        }
    }

    /// The tick of an instant in microseconds: the first grid point at or after it.
    fn tick_of(&self, micros: i64) -> i64 {
        let rel = micros.saturating_sub(self.origin).clamp(-LIMIT, LIMIT);
        let q = rel.div_euclid(self.tick);
        if rel.rem_euclid(self.tick) == 0 {
            q
        } else {
            q + 1
        }
    }

    /// The instant of tick `k`'s grid point, in microseconds.
    fn grid(&self, k: i64) -> i64 {
        self.origin.saturating_add(k.saturating_mul(self.tick))
    }

    fn rev(k: i64) -> i64 {
        k.div_euclid(B as i64)
    }

    fn near_bucket(&self, k: i64) -> usize {
        k.rem_euclid(B as i64) as usize
    }

    /// The tick an entry with this deadline waits in: its own, or `cur` if that has passed.
    fn slot(&self, at: i64) -> i64 {
        self.tick_of(at).max(self.cur)
    }

    /// The list for an entry waiting in tick `slot >= cur`.
    fn loc(&self, slot: i64) -> u16 {
        let (r, r0) = (Self::rev(slot), Self::rev(self.cur));
        if r == r0 {
            self.near_bucket(slot) as u16
        } else if r - r0 < B as i64 {
            (B + r.rem_euclid(B as i64) as usize) as u16
        } else {
            Self::OVERFLOW
        }
    }

    fn head(&mut self, loc: u16) -> &mut u16 {
        let l = usize::from(loc);
        if l < B {
            &mut self.near[l]
        } else if l < 2 * B {
            &mut self.far[l - B]
        } else if loc == Self::OVERFLOW {
            &mut self.overflow
        } else {
            &mut self.due_head
        }
    }

    /// Pushes an unlinked entry onto the front of a bucket or the overflow list.
    fn link_front(&mut self, id: usize, loc: u16) {
        let head = *self.head(loc);
        let e = &mut self.entries[id];
        e.loc = loc;
        e.prev = NIL;
        e.next = head;
        if head != NIL {
            self.entries[usize::from(head)].prev = id as u16;
        }
        *self.head(loc) = id as u16;
    }

    /// Appends an entry to the due list. Its old links are overwritten, not followed.
    fn link_due(&mut self, id: usize) {
        let tail = self.due_tail;
        let e = &mut self.entries[id];
        e.loc = Self::DUE;
        e.prev = tail;
        e.next = NIL;
        if tail == NIL {
            self.due_head = id as u16;
        } else {
            self.entries[usize::from(tail)].next = id as u16;
        }
        self.due_tail = id as u16;
    }

    fn unlink(&mut self, id: usize) {
        let TimerEntry {
            next, prev, loc, ..
        } = self.entries[id];
        if prev == NIL {
            *self.head(loc) = next;
        } else {
            self.entries[usize::from(prev)].next = next;
        }
        if next != NIL {
            self.entries[usize::from(next)].prev = prev;
        } else if loc == Self::DUE {
            self.due_tail = prev;
        }
        let e = &mut self.entries[id];
        e.loc = NIL;
        e.next = NIL;
        e.prev = NIL;
    }

    /// Puts an unlinked entry on the list for its deadline.
    fn insert(&mut self, id: usize) {
        let at = self.entries[id].at;
        let slot = self.slot(at);
        let loc = self.loc(slot);
        self.link_front(id, loc);
        if loc == Self::OVERFLOW {
            self.overflow_floor = self.overflow_floor.min(slot);
        }
        self.note_insert(at);
    }

    /// Moves every entry on the due list back onto the levels.
    fn requeue_due(&mut self) {
        let mut id = core::mem::replace(&mut self.due_head, NIL);
        self.due_tail = NIL;
        while id != NIL {
            let i = usize::from(id);
            id = self.entries[i].next;
            self.insert(i);
        }
    }

    /// Takes a scheduled id off whatever list it is on.
    fn remove(&mut self, id: usize) {
        let TimerEntry { at, loc, .. } = self.entries[id];
        self.unlink(id);
        self.len -= 1;
        if loc != Self::DUE {
            self.note_remove(at);
        }
    }

    fn pop_due(&mut self) -> Option<usize> {
        if self.due_head == NIL {
            return None;
        }
        let id = usize::from(self.due_head);
        self.unlink(id);
        self.len -= 1;
        Some(id)
    }

    fn note_insert(&self, at: i64) {
        self.min.set(match self.min.get() {
            Min::Unknown => Min::Unknown,
            Min::Empty => Min::At(at),
            Min::At(m) => Min::At(m.min(at)),
        });
    }

    fn note_remove(&self, at: i64) {
        if self.min.get() == Min::At(at) {
            self.min.set(Min::Unknown);
        }
    }

    /// Moves `cur` forward to the first occupied tick before `n`, or to `n`, entering every
    /// revolution on the way that holds entries.
    fn advance(&mut self, n: i64) {
        let bb = B as i64;
        while self.cur < n {
            let r0 = Self::rev(self.cur);
            let end = (r0 + 1) * bb;
            let mut k = self.cur;
            while k < n.min(end) {
                if self.near[self.near_bucket(k)] != NIL {
                    self.cur = k;
                    return;
                }
                k += 1;
            }
            if n < end {
                self.cur = n;
                return;
            }
            // The rest of this revolution is empty: jump to the next revolution that may
            // hold entries, or to `n`'s.
            let mut target = Self::rev(n);
            let mut r = r0 + 1;
            while r < target.min(r0 + bb) {
                if self.far[r.rem_euclid(bb) as usize] != NIL {
                    target = r;
                    break;
                }
                r += 1;
            }
            if self.overflow != NIL {
                target = target.min(Self::rev(self.overflow_floor).max(r0 + 1));
            }
            self.enter(target);
        }
    }

    /// Moves `cur` one tick on, after its bucket was emptied.
    fn step(&mut self) {
        let next = self.cur + 1;
        if Self::rev(next) == Self::rev(self.cur) {
            self.cur = next;
        } else {
            self.enter(Self::rev(next));
        }
    }

    /// Starts revolution `r`, later than the current one. The near level must be empty and
    /// no far or overflow entry may belong to a revolution before `r`.
    fn enter(&mut self, r: i64) {
        let bb = B as i64;
        let r0 = Self::rev(self.cur);
        self.cur = r * bb;
        if r - r0 < bb {
            let mut id = core::mem::replace(&mut self.far[r.rem_euclid(bb) as usize], NIL);
            while id != NIL {
                let i = usize::from(id);
                id = self.entries[i].next;
                let loc = self.loc(self.slot(self.entries[i].at));
                self.link_front(i, loc);
            }
        }
        if self.overflow != NIL && Self::rev(self.overflow_floor) < r + bb {
            let mut floor = i64::MAX;
            let mut id = self.overflow;
            while id != NIL {
                let i = usize::from(id);
                id = self.entries[i].next;
                let slot = self.slot(self.entries[i].at);
                let loc = self.loc(slot);
                if loc == Self::OVERFLOW {
                    floor = floor.min(slot);
                } else {
                    self.unlink(i);
                    self.link_front(i, loc);
                }
            }
            self.overflow_floor = floor;
        }
    }

    fn list_min(&self, mut id: u16) -> Option<i64> {
        let mut best = None;
        while id != NIL {
            let e = &self.entries[usize::from(id)];
            best = Some(best.map_or(e.at, |b: i64| b.min(e.at)));
            id = e.next;
        }
        best
    }

    /// The earliest deadline on the levels: the first occupied bucket holds it.
    fn compute_min(&self) -> Min {
        let bb = B as i64;
        let r0 = Self::rev(self.cur);
        let first = (self.cur..(r0 + 1) * bb)
            .map(|k| self.near[self.near_bucket(k)])
            .chain((r0 + 1..r0 + bb).map(|r| self.far[r.rem_euclid(bb) as usize]))
            .chain(core::iter::once(self.overflow))
            .find(|&head| head != NIL);
        match first.and_then(|head| self.list_min(head)) {
            Some(m) => Min::At(m),
            None => Min::Empty,
        }
    }
}

#[cfg(feature = "alloc")]
impl<const B: usize> TimerWheel<'static, B> {
    /// A wheel that allocates its own storage for ids `0..capacity` (at most
    /// [`MAX_TIMERS`]). See [`new`](TimerWheel::new) for `tick` and `now`.
    pub fn with_capacity(capacity: usize, tick: Duration, now: Instant) -> Self {
        let entries = alloc::vec![TimerEntry::EMPTY; capacity.min(MAX_TIMERS)];
        Self::build(Entries::Owned(entries), tick, now)
    }
}

impl<const B: usize> fmt::Debug for TimerWheel<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("buckets", &B)
            .field("tick", &self.tick())
            .field("capacity", &self.cap)
            .field("len", &self.len)
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests;
