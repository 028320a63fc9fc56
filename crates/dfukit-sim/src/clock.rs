//! Virtual time: an event scheduler and a seeded random source.
//!
//! A simulated board never reads the host clock under test. Everything that
//! "takes time" (a flash operation, a byte on a UART, a BLE connection
//! interval) is an event scheduled at a virtual [`Instant`]; the runner pops
//! events in time order and hands them to the sans-IO cores. Ties are broken
//! by insertion order, so the same sequence of calls always yields the same
//! run, which is what makes a failing power-cut trial replayable from its
//! seed and step number.

use std::collections::BTreeMap;
use std::time::Duration;

use chacha20::ChaCha8Rng;
use dfukit_core::Instant;
use rand_core::{Rng, SeedableRng};

/// Names one scheduled event so that it can be cancelled.
///
/// It carries the event's due time and its insertion number, which together
/// are the event's key in the queue: cancelling needs no second index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    at: Instant,
    seq: u64,
}

impl EventId {
    /// When the event is (or was) due.
    pub fn due(&self) -> Instant {
        self.at
    }
}

/// A virtual clock with a queue of timed events of type `E`.
///
/// `now` only moves forward: by [`pop`](Self::pop) to the popped event's
/// time, or by [`advance_to`](Self::advance_to).
#[derive(Debug, Clone)]
pub struct Scheduler<E> {
    now: Instant,
    next_seq: u64,
    queue: BTreeMap<(Instant, u64), E>,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Scheduler<E> {
    /// An empty scheduler at [`Instant::ZERO`].
    pub fn new() -> Self {
        Self::starting_at(Instant::ZERO)
    }

    /// An empty scheduler whose clock reads `now`.
    pub fn starting_at(now: Instant) -> Self {
        Scheduler {
            now,
            next_seq: 0,
            queue: BTreeMap::new(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Schedules `event` at `at`.
    ///
    /// A time in the past is taken as "now": the event fires next among those
    /// due now, after the ones already queued for now. Moving the clock
    /// backwards would break every core's assumption that time is monotonic.
    pub fn schedule_at(&mut self, at: Instant, event: E) -> EventId {
        let at = at.max(self.now);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert((at, seq), event);
        EventId { at, seq }
    }

    /// Schedules `event` `delay` after now.
    pub fn schedule_in(&mut self, delay: Duration, event: E) -> EventId {
        self.schedule_at(self.now + delay, event)
    }

    /// Removes a scheduled event; returns it, or `None` if it already fired
    /// or was cancelled.
    pub fn cancel(&mut self, id: EventId) -> Option<E> {
        self.queue.remove(&(id.at, id.seq))
    }

    /// True while the event is still queued.
    pub fn is_scheduled(&self, id: EventId) -> bool {
        self.queue.contains_key(&(id.at, id.seq))
    }

    /// When the earliest queued event is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Removes the earliest event (first inserted among equal times) and
    /// advances the clock to its time.
    pub fn pop(&mut self) -> Option<(Instant, E)> {
        let ((at, _), event) = self.queue.pop_first()?;
        self.now = self.now.max(at);
        Some((at, event))
    }

    /// Like [`pop`](Self::pop), but only for an event due at or before
    /// `deadline`; otherwise the clock moves to `deadline` and `None` is
    /// returned. This is "run until T" for a runner that also has wall-clock
    /// or test deadlines.
    pub fn pop_until(&mut self, deadline: Instant) -> Option<(Instant, E)> {
        match self.next_due() {
            Some(at) if at <= deadline => self.pop(),
            _ => {
                self.advance_to(deadline);
                None
            }
        }
    }

    /// Moves the clock forward to `t` without firing anything (a clock never
    /// goes back: an earlier `t` is ignored). Events that become overdue stay
    /// queued and fire on the next [`pop`](Self::pop).
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A small seeded random source for fault injection and flash garbage.
///
/// It is ChaCha8 (the `chacha20` crate's `ChaCha8Rng`), a fixed algorithm:
/// the same seed gives the same stream on every platform and release, which
/// `rand`'s `StdRng` does not promise. A failing trial is reported with its
/// seed and replays exactly.
#[derive(Debug)]
pub struct SimRng {
    seed: u64,
    inner: ChaCha8Rng,
}

impl Clone for SimRng {
    /// A copy at the same position: both produce the same stream from here.
    /// (`ChaCha8Rng` is not `Clone` itself; its serialized state is exact.)
    fn clone(&self) -> Self {
        SimRng {
            seed: self.seed,
            inner: ChaCha8Rng::deserialize_state(&self.inner.serialize_state()),
        }
    }
}

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng {
            seed,
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The seed this generator was made from (not its current position).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A uniformly random `u32`.
    pub fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Fills `buf` with random bytes.
    pub fn fill_bytes(&mut self, buf: &mut [u8]) {
        self.inner.fill_bytes(buf)
    }

    /// A value in `0..n` (0 when `n` is 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's widening multiply with rejection: unbiased and cheap.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn in_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `p` (clamped to 0..=1; NaN counts as 0).
    pub fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits make a uniform f64 in [0, 1).
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// An independent generator derived from this one, for a sub-system
    /// (one chip's garbage, one link's faults) whose draws must not shift
    /// when another sub-system draws more or fewer numbers.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}

/// Where a board served over USB/IP or driven in process takes its time
/// from: the wall clock since it was built, or virtual time its driver
/// advances.
#[derive(Debug, Clone, Copy)]
pub enum BoardClock {
    /// Wall-clock time since the board was built (served over USB/IP).
    Wall(std::time::Instant),
    /// Virtual time, advanced by the caller.
    Virtual(Instant),
}

impl BoardClock {
    /// Wall-clock time from now.
    pub fn wall() -> Self {
        BoardClock::Wall(std::time::Instant::now())
    }

    /// Board time.
    pub fn now(&self) -> Instant {
        match self {
            BoardClock::Wall(start) => Instant::from_micros(start.elapsed().as_micros() as u64),
            BoardClock::Virtual(t) => *t,
        }
    }

    /// Moves virtual time forward to `t` (never back); no effect on the
    /// wall clock.
    pub fn advance_to(&mut self, t: Instant) {
        if let BoardClock::Virtual(now) = self {
            *now = (*now).max(t);
        }
    }

    /// Whether the board runs on the wall clock.
    pub fn is_wall(&self) -> bool {
        matches!(self, BoardClock::Wall(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_pop_in_insertion_order() {
        let mut s = Scheduler::new();
        let t = Instant::from_micros(10);
        s.schedule_at(t, 'a');
        s.schedule_at(Instant::from_micros(5), 'x');
        s.schedule_at(t, 'b');
        s.schedule_at(t, 'c');
        let order: Vec<char> = std::iter::from_fn(|| s.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ['x', 'a', 'b', 'c']);
        assert_eq!(s.now(), t);
    }

    #[test]
    fn cancel_removes_only_that_event() {
        let mut s = Scheduler::new();
        let a = s.schedule_in(Duration::from_millis(1), 1);
        let b = s.schedule_in(Duration::from_millis(1), 2);
        assert!(s.is_scheduled(a));
        assert_eq!(s.cancel(a), Some(1));
        assert_eq!(s.cancel(a), None);
        assert!(!s.is_scheduled(a));
        assert_eq!(s.pop(), Some((b.due(), 2)));
        assert!(s.is_empty());
    }

    #[test]
    fn past_events_fire_now_and_clock_never_goes_back() {
        let mut s = Scheduler::starting_at(Instant::from_micros(100));
        let id = s.schedule_at(Instant::from_micros(3), ());
        assert_eq!(id.due(), Instant::from_micros(100));
        s.advance_to(Instant::from_micros(50));
        assert_eq!(s.now(), Instant::from_micros(100));
        assert_eq!(s.pop().map(|(t, _)| t), Some(Instant::from_micros(100)));
    }

    #[test]
    fn pop_until_stops_at_deadline() {
        let mut s = Scheduler::new();
        s.schedule_in(Duration::from_micros(30), "late");
        assert_eq!(s.pop_until(Instant::from_micros(20)), None);
        assert_eq!(s.now(), Instant::from_micros(20));
        assert_eq!(s.next_due(), Some(Instant::from_micros(30)));
        assert_eq!(
            s.pop_until(Instant::from_micros(40)),
            Some((Instant::from_micros(30), "late"))
        );
        assert_eq!(s.now(), Instant::from_micros(30));
    }

    #[test]
    fn rng_is_reproducible_and_forks_are_independent() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SimRng::new(8).next_u64(), SimRng::new(7).next_u64());
        let mut f = a.fork();
        assert_ne!(f.next_u64(), a.next_u64());
        let mut c = a.clone();
        assert_eq!(c.next_u64(), a.next_u64());
    }

    #[test]
    fn rng_ranges() {
        let mut r = SimRng::new(1);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let v = r.in_range(5, 7);
            assert!((5..=7).contains(&v));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.in_range(9, 3), 9);
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        assert!(!r.chance(f64::NAN));
    }
}
