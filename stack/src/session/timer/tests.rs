//! The timing wheel against exact expectations and a model.

use super::*;
use crate::test_rng::Rng;

const MS: i64 = 1000;

fn at(ms: i64) -> Instant {
    Instant::from_micros(ms * MS)
}

fn us(micros: i64) -> Instant {
    Instant::from_micros(micros)
}

/// Schedules ids `0..n` at `from + rng.below(span)` microseconds; returns the deadlines.
fn schedule_random<const B: usize>(
    w: &mut TimerWheel<'_, B>,
    rng: &mut Rng,
    n: usize,
    from: i64,
    span: i64,
) -> Vec<i64> {
    let want: Vec<i64> = (0..n)
        .map(|_| from + rng.below(span as u64) as i64)
        .collect();
    for (id, &d) in want.iter().enumerate() {
        w.schedule(id, us(d)).unwrap();
    }
    want
}

fn drain<const B: usize>(w: &mut TimerWheel<'_, B>, now: Instant) -> Vec<usize> {
    let mut out = Vec::new();
    w.expire(now, |id| out.push(id));
    out
}

/// The tick grid point at or after `micros` for a grid anchored at 0.
fn round_up(micros: i64, tick: i64) -> i64 {
    micros.div_euclid(tick) * tick
        + if micros.rem_euclid(tick) == 0 {
            0
        } else {
            tick
        }
}

/// Checks the wheel's linked lists against its counters.
fn check_lists<const B: usize>(w: &TimerWheel<'_, B>) {
    let mut seen = 0;
    let heads = w
        .near
        .iter()
        .chain(w.far.iter())
        .copied()
        .chain([w.overflow, w.due_head]);
    for head in heads {
        let mut prev = NIL;
        let mut id = head;
        let loc = if head == NIL {
            NIL
        } else {
            w.entries[usize::from(head)].loc
        };
        while id != NIL {
            let e = w.entries[usize::from(id)];
            assert_eq!(e.prev, prev);
            assert_eq!(e.loc, loc);
            seen += 1;
            prev = id;
            id = e.next;
        }
        if loc == TimerWheel::<'_, B>::DUE {
            assert_eq!(w.due_tail, prev);
        }
    }
    assert_eq!(seen, w.len());
    let scheduled = w.entries.iter().filter(|e| e.loc != NIL).count();
    assert_eq!(scheduled, w.len());
}

#[test]
fn fires_at_deadline_not_before() {
    let mut e = [TimerEntry::EMPTY; 4];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    w.schedule(2, us(25_300)).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w.pop_expired(at(20)), None);
    assert_eq!(w.pop_expired(us(25_299)), None);
    assert_eq!(w.pop_expired(us(25_300)), Some(2));
    assert_eq!(w.pop_expired(us(25_300)), None);
    assert!(w.is_empty());
    assert_eq!(w.deadline(2), None);
}

#[test]
fn never_early_at_most_one_tick_late_per_tick_loop() {
    const N: usize = 3000;
    let tick = 10 * MS;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Start the wheel off the loop's grid, so ticks and calls are not aligned.
    let mut e = vec![TimerEntry::EMPTY; N];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, us(3_700));
    // Up to 20 s: ~8 revolutions.
    let want = schedule_random(&mut w, &mut rng, N, 5_000, 20_000 * MS);
    let mut fired = vec![false; N];
    let mut now = 0;
    let mut last = i64::MIN;
    while !w.is_empty() {
        now += tick;
        while let Some(id) = w.pop_expired(us(now)) {
            assert!(!fired[id], "id {id} fired twice");
            fired[id] = true;
            assert!(want[id] <= now, "id {id} fired early");
            assert!(now - want[id] < tick, "id {id} fired a tick late");
            // Ticks come out in order.
            let k = round_up(want[id] - 3_700, tick);
            assert!(k >= last);
            last = k;
        }
    }
    assert!(fired.iter().all(|&f| f));
}

#[test]
fn sleeping_until_next_deadline_is_at_most_one_tick_late() {
    let mut rng = Rng(7);
    let mut e = vec![TimerEntry::EMPTY; 500];
    let mut w: TimerWheel<'_, 16> = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    let want = schedule_random(&mut w, &mut rng, 500, 1, 120_000 * MS);
    let mut count = 0;
    while let Some(wake) = w.next_deadline() {
        let now = wake.total_micros();
        let fired = drain(&mut w, wake);
        assert!(!fired.is_empty(), "woke at {now} for nothing");
        for id in fired {
            assert!(want[id] <= now && now - want[id] < 10 * MS);
            count += 1;
        }
    }
    assert_eq!(count, 500);
}

#[test]
fn random_deadlines_fire_once_in_tick_order() {
    const N: usize = 5000;
    let tick = 10 * MS;
    let mut rng = Rng(0xDEAD_BEEF);
    let mut e = vec![TimerEntry::EMPTY; N];
    let mut w: TimerWheel<'_, 64> = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    // An hour: past the overflow.
    let want = schedule_random(&mut w, &mut rng, N, 0, 3_600_000 * MS);
    let mut fired = vec![false; N];
    let mut now = 0;
    let mut last = i64::MIN;
    let mut count = 0;
    while count < N {
        // Irregular steps, from under a tick to many revolutions.
        let span = if rng.below(4) == 0 { 60_000 } else { 50 };
        now += 1 + rng.below(span) as i64 * MS;
        for id in drain(&mut w, us(now)) {
            assert!(!fired[id]);
            fired[id] = true;
            count += 1;
            assert!(want[id] <= now);
            let k = round_up(want[id], tick);
            assert!(k >= last, "out of tick order");
            last = k;
        }
        // Nothing due is left behind.
        let due = (0..N).filter(|&i| !fired[i] && want[i] <= now).count();
        assert_eq!(due, 0);
        assert_eq!(w.len(), N - count);
    }
    check_lists(&w);
}

#[test]
fn reschedule_moves_the_timer() {
    let mut e = [TimerEntry::EMPTY; 8];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    w.schedule(5, at(100)).unwrap();
    w.schedule(5, at(50)).unwrap(); // earlier
    assert_eq!(w.len(), 1);
    assert_eq!(w.deadline(5), Some(at(50)));
    assert_eq!(w.pop_expired(at(49)), None);
    assert_eq!(w.pop_expired(at(50)), Some(5));

    w.schedule(5, at(100)).unwrap();
    w.schedule(5, at(300)).unwrap(); // later
    assert_eq!(drain(&mut w, at(299)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(300)), vec![5]);

    // Within one bucket: only the instant changes.
    w.schedule(5, us(400_100)).unwrap();
    w.schedule(5, us(400_900)).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w.pop_expired(us(400_500)), None);
    assert_eq!(w.pop_expired(us(400_900)), Some(5));

    // Idempotent.
    w.schedule(1, at(600)).unwrap();
    w.schedule(1, at(600)).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(drain(&mut w, at(600)), vec![1]);
    check_lists(&w);
}

#[test]
fn reschedule_between_pops() {
    let mut e = [TimerEntry::EMPTY; 8];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    for id in 0..8 {
        w.schedule(id, at(20)).unwrap();
    }
    let now = at(25);
    let first = w.pop_expired(now).unwrap();
    // Postpone one that is already due but not yet returned, and re-arm the first.
    let other = (first + 1) % 8;
    w.schedule(other, at(1000)).unwrap();
    w.schedule(first, at(500)).unwrap();
    let mut rest = drain(&mut w, now);
    rest.sort_unstable();
    let expect: Vec<usize> = (0..8).filter(|&i| i != first && i != other).collect();
    assert_eq!(rest, expect);
    assert_eq!(w.len(), 2);
    assert_eq!(drain(&mut w, at(500)), vec![first]);
    assert_eq!(drain(&mut w, at(1000)), vec![other]);

    // Rescheduling into the past inside a drain fires again in that drain.
    w.schedule(3, at(1005)).unwrap();
    let now = at(1010);
    assert_eq!(w.pop_expired(now), Some(3));
    w.schedule(3, at(1008)).unwrap();
    assert_eq!(w.pop_expired(now), Some(3));
    assert_eq!(w.pop_expired(now), None);
}

#[test]
fn cancel_removes() {
    let mut e = [TimerEntry::EMPTY; 4];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    w.schedule(0, at(30)).unwrap();
    w.schedule(1, at(30)).unwrap();
    w.schedule(2, at(10_000_000)).unwrap(); // overflow
    assert_eq!(w.cancel(1), Ok(true));
    assert_eq!(w.cancel(1), Ok(false));
    assert_eq!(w.cancel(2), Ok(true));
    assert_eq!(w.cancel(3), Ok(false));
    assert_eq!(w.len(), 1);
    assert_eq!(w.deadline(1), None);
    assert_eq!(w.next_deadline(), Some(at(30)));
    assert_eq!(drain(&mut w, at(20_000_000)), vec![0]);
    assert_eq!(w.next_deadline(), None);

    // Cancel an id that is due but not yet popped.
    w.schedule(0, at(20_000_001)).unwrap();
    w.schedule(1, at(20_000_001)).unwrap();
    let first = w.pop_expired(at(20_000_002)).unwrap();
    assert_eq!(w.cancel(1 - first), Ok(true));
    assert_eq!(w.pop_expired(at(20_000_002)), None);
    assert!(w.is_empty());
    check_lists(&w);
}

#[test]
fn far_deadlines_fire_on_time() {
    // 8 buckets of 10 ms: a revolution is 80 ms, the far level reaches 640 ms.
    let mut e = [TimerEntry::EMPTY; 6];
    let mut w: TimerWheel<'_, 8> = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    let want = [75, 85, 645, 1_000, 60_005, 3_600_000];
    for (id, &ms) in want.iter().enumerate() {
        w.schedule(id, at(ms)).unwrap();
    }
    // A call every millisecond: each fires exactly at its deadline.
    for ms in 0..=3_600_000 {
        let fired = drain(&mut w, at(ms));
        let expect: Vec<usize> = (0..6).filter(|&i| want[i] == ms).collect();
        assert_eq!(fired, expect, "at {ms} ms");
    }
    assert!(w.is_empty());

    // The same deadlines with one big jump come out in tick order.
    for (id, &ms) in want.iter().enumerate().rev() {
        w.schedule(id, at(3_600_000 + ms)).unwrap();
    }
    assert_eq!(drain(&mut w, at(3_600_000 + 59_999)), vec![0, 1, 2, 3]);
    assert_eq!(drain(&mut w, at(8_000_000)), vec![4, 5]);
}

#[test]
fn next_deadline_is_min_rounded_up_to_tick() {
    let tick = 10 * MS;
    let mut rng = Rng(42);
    const N: usize = 300;
    let mut e = vec![TimerEntry::EMPTY; N];
    let mut w: TimerWheel<'_, 4> = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    let mut model: Vec<Option<i64>> = vec![None; N];
    let mut now = 0i64;
    assert_eq!(w.next_deadline(), None);
    for round in 0..20_000 {
        let id = rng.below(N as u64) as usize;
        match rng.below(10) {
            0..=5 => {
                let span = if rng.below(3) == 0 { 5_000 } else { 100 };
                let d = now + rng.below(span) as i64 * MS + rng.below(1000) as i64;
                w.schedule(id, us(d)).unwrap();
                model[id] = Some(d);
            }
            6 | 7 => {
                assert_eq!(w.cancel(id).unwrap(), model[id].take().is_some());
            }
            _ => {
                now += rng.below(200) as i64 * MS;
                for id in drain(&mut w, us(now)) {
                    assert!(model[id].take().unwrap() <= now);
                }
            }
        }
        let min = model.iter().flatten().min().copied();
        assert_eq!(
            w.next_deadline(),
            min.map(|m| us(round_up(m, tick))),
            "round {round}"
        );
        assert_eq!(w.len(), model.iter().flatten().count());
    }
    check_lists(&w);
}

#[test]
fn next_deadline_rounds_to_the_grid_of_new() {
    let mut e = [TimerEntry::EMPTY; 2];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, us(3_000));
    w.schedule(0, us(13_000)).unwrap(); // on the grid
    assert_eq!(w.next_deadline(), Some(us(13_000)));
    w.schedule(0, us(13_001)).unwrap();
    assert_eq!(w.next_deadline(), Some(us(23_000)));
    assert_eq!(w.next_delay(us(20_000)), Some(Duration::from_millis(3)));
    assert_eq!(w.next_delay(us(30_000)), Some(Duration::ZERO));
    w.schedule(1, us(-50_000)).unwrap(); // long ago
    assert_eq!(w.next_deadline(), Some(us(-47_000)));
}

#[test]
fn past_deadlines_fire_on_next_pop() {
    let mut e = [TimerEntry::EMPTY; 3];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, at(1000));
    assert_eq!(drain(&mut w, at(5000)), Vec::<usize>::new());
    w.schedule(0, at(10)).unwrap(); // before the wheel existed
    w.schedule(1, at(4999)).unwrap();
    w.schedule(2, at(5000)).unwrap();
    let mut fired = drain(&mut w, at(5000));
    fired.sort_unstable();
    assert_eq!(fired, vec![0, 1, 2]);
}

#[test]
fn time_going_backwards() {
    let mut e = [TimerEntry::EMPTY; 4];
    let mut w: TimerWheel<'_, 8> = TimerWheel::new(&mut e, DEFAULT_TICK, at(1000));
    w.schedule(0, at(1500)).unwrap();
    w.schedule(1, at(5000)).unwrap();
    w.schedule(2, at(900_000)).unwrap(); // overflow
    assert_eq!(drain(&mut w, at(1499)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(0)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(-1_000_000)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(1500)), vec![0]);
    assert_eq!(drain(&mut w, at(4000)), Vec::<usize>::new());

    // Jump ahead, schedule behind the wheel's tick, then go back before it.
    assert_eq!(drain(&mut w, at(6000)), vec![1]);
    w.schedule(3, at(3000)).unwrap();
    assert_eq!(w.next_deadline(), Some(at(3000)));
    assert_eq!(drain(&mut w, at(2999)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(2000)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(3000)), vec![3]);
    assert_eq!(w.len(), 1);
    assert_eq!(drain(&mut w, at(899_999)), Vec::<usize>::new());
    assert_eq!(drain(&mut w, at(900_000)), vec![2]);
    check_lists(&w);
}

#[test]
fn time_going_backwards_during_a_drain() {
    let mut e = [TimerEntry::EMPTY; 4];
    let mut w: TimerWheel<'_, 8> = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    // All in one tick (100, 110] ms, so one pop puts all four on the due list.
    let want = |id: usize| 101 + id as i64;
    for id in 0..4 {
        w.schedule(id, at(want(id))).unwrap();
    }
    let first = w.pop_expired(at(200)).unwrap();
    assert_eq!(w.len(), 3);
    // The clock steps back: only what is due at the earlier time comes out.
    let mut fired = drain(&mut w, at(102));
    fired.sort_unstable();
    let expect: Vec<usize> = (0..4).filter(|&i| i != first && want(i) <= 102).collect();
    assert_eq!(fired, expect);
    let rest: Vec<usize> = (0..4).filter(|&i| i != first && want(i) > 102).collect();
    assert_eq!(w.len(), rest.len());
    assert_eq!(w.next_deadline(), Some(at(110)));
    let mut fired = drain(&mut w, at(104));
    fired.sort_unstable();
    assert_eq!(fired, rest);
    assert!(w.is_empty());
    check_lists(&w);
}

#[test]
fn ids_out_of_range_are_errors() {
    let mut e = [TimerEntry::EMPTY; 3];
    let mut w: TimerWheel = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
    let err = TimerError::OutOfRange { id: 3, capacity: 3 };
    assert_eq!(w.capacity(), 3);
    assert_eq!(w.schedule(3, at(1)), Err(err));
    assert_eq!(w.cancel(3), Err(err));
    assert_eq!(w.schedule(usize::MAX, at(1)).unwrap_err().to_string(),
        format!("timer id {} is out of range: this wheel tracks ids 0..3; give it more TimerEntry storage", usize::MAX));
    assert_eq!(w.deadline(3), None);
    assert_eq!(w.deadline(usize::MAX), None);
    assert!(w.is_empty());

    // An empty wheel accepts nothing and never panics.
    let mut none: [TimerEntry; 0] = [];
    let mut w: TimerWheel = TimerWheel::new(&mut none, DEFAULT_TICK, at(0));
    assert!(w.schedule(0, at(1)).is_err());
    assert_eq!(w.pop_expired(at(100)), None);
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn extreme_inputs_do_not_panic() {
    let mut e = [TimerEntry::EMPTY; 4];
    let mut w: TimerWheel<'_, 1> = TimerWheel::new(&mut e, Duration::ZERO, us(i64::MIN));
    assert_eq!(w.tick(), Duration::from_micros(1));
    w.schedule(0, us(i64::MAX)).unwrap();
    w.schedule(1, us(i64::MIN)).unwrap();
    w.schedule(2, us(0)).unwrap();
    assert!(w.next_deadline().is_some());
    assert_eq!(w.pop_expired(us(i64::MIN)), Some(1));
    assert_eq!(drain(&mut w, us(0)), vec![2]);
    assert_eq!(drain(&mut w, us(i64::MAX)), vec![0]);

    let mut e = [TimerEntry::EMPTY; 2];
    let mut w: TimerWheel = TimerWheel::new(&mut e, Duration::MAX, us(i64::MAX));
    w.schedule(0, us(i64::MIN)).unwrap();
    w.schedule(1, us(i64::MAX)).unwrap();
    assert!(w.next_deadline().is_some());
    let mut fired = drain(&mut w, us(i64::MAX));
    fired.sort_unstable();
    assert_eq!(fired, vec![0, 1]);
}

/// A model check with tiny wheels, so cascades and the overflow list work hard.
fn model_check<const B: usize>(seed: u64, rounds: usize) {
    const N: usize = 64;
    let tick = 7 * MS;
    let mut rng = Rng(seed);
    let mut e = [TimerEntry::EMPTY; N];
    let mut w: TimerWheel<'_, B> =
        TimerWheel::new(&mut e, Duration::from_micros(tick as u64), us(1_234));
    let mut model: Vec<Option<i64>> = vec![None; N];
    let mut now = 1_234i64;
    for _ in 0..rounds {
        let id = rng.below(N as u64) as usize;
        match rng.below(16) {
            0..=7 => {
                let span = [3 * MS, 50 * MS, 2_000 * MS, 200_000 * MS][rng.below(4) as usize];
                let d = now - 20 * MS + rng.below(span as u64) as i64;
                w.schedule(id, us(d)).unwrap();
                model[id] = Some(d);
            }
            8 | 9 => assert_eq!(w.cancel(id).unwrap(), model[id].take().is_some()),
            10 => {
                // Pop just one, then carry on with other operations.
                if let Some(id) = w.pop_expired(us(now)) {
                    assert!(model[id].take().unwrap() <= now);
                }
            }
            11 => now -= rng.below(100 * MS as u64) as i64, // backwards
            _ => {
                let span = [MS, tick, 40 * MS, 5_000 * MS][rng.below(4) as usize];
                now += rng.below(span as u64) as i64;
                for id in drain(&mut w, us(now)) {
                    let d = model[id].take().unwrap();
                    assert!(d <= now, "B={B} seed={seed} id {id} early: {d} > {now}");
                }
                for (i, m) in model.iter().enumerate() {
                    assert!(m.is_none_or(|d| d > now), "id {i} missed");
                    assert_eq!(w.deadline(i).map(|d| d.total_micros()), *m);
                }
            }
        }
        let min = model.iter().flatten().min().copied();
        assert_eq!(
            w.next_deadline(),
            min.map(|m| us(1_234 + round_up(m - 1_234, tick)))
        );
        assert_eq!(w.len(), model.iter().flatten().count());
    }
    check_lists(&w);
}

#[test]
fn model_check_small_wheels() {
    for seed in 1..=8 {
        model_check::<1>(seed, 4_000);
        model_check::<2>(seed, 4_000);
        model_check::<4>(seed, 8_000);
        model_check::<5>(seed, 8_000);
        model_check::<64>(seed, 8_000);
    }
}

#[test]
fn churn_10000_ids() {
    const N: usize = 10_000;
    let mut rng = Rng(0x1234_5678);
    let mut w: TimerWheel = TimerWheel::with_capacity(N, DEFAULT_TICK, at(0));
    assert_eq!(w.capacity(), N);
    let mut model: Vec<Option<i64>> = vec![None; N];
    let mut now = 0i64;
    for (id, m) in model.iter_mut().enumerate() {
        let d = 30_000 * MS + rng.below(1_000 * MS as u64) as i64; // idle timeouts
        w.schedule(id, us(d)).unwrap();
        *m = Some(d);
    }
    let mut fired = 0;
    for step in 0..200_000 {
        let id = rng.below(N as u64) as usize;
        match rng.below(8) {
            0..=4 => {
                // Traffic pushes the idle timer back.
                let d = now + 30_000 * MS + rng.below(1_000 * MS as u64) as i64;
                w.schedule(id, us(d)).unwrap();
                model[id] = Some(d);
            }
            5 => {
                let d = now + rng.below(500 * MS as u64) as i64; // a short read timeout
                w.schedule(id, us(d)).unwrap();
                model[id] = Some(d);
            }
            6 => assert_eq!(w.cancel(id).unwrap(), model[id].take().is_some()),
            _ => {
                now += rng.below(3 * MS as u64) as i64;
                for id in drain(&mut w, us(now)) {
                    assert!(model[id].take().unwrap() <= now);
                    fired += 1;
                }
            }
        }
        if step % 10_000 == 0 {
            assert!(model.iter().flatten().all(|&d| d > now));
            assert_eq!(w.len(), model.iter().flatten().count());
            check_lists(&w);
        }
    }
    assert!(fired > 0);
    now += 3_600_000 * MS;
    fired = drain(&mut w, us(now)).len();
    assert_eq!(fired, model.iter().flatten().count());
    assert!(w.is_empty());
    check_lists(&w);
}

#[test]
fn storage_is_reset_and_static_friendly() {
    let mut e = [TimerEntry {
        at: 5,
        next: 0,
        prev: 0,
        loc: 3,
    }; 4];
    {
        let w: TimerWheel<'_, 16> = TimerWheel::new(&mut e, DEFAULT_TICK, at(0));
        assert!(w.is_empty());
        assert_eq!(w.deadline(0), None);
        assert_eq!(w.tick(), DEFAULT_TICK);
        let _ = format!("{w:?}");
    }
    assert!(e.iter().all(|x| *x == TimerEntry::EMPTY));
    assert_eq!(TimerEntry::default(), TimerEntry::EMPTY);
}
