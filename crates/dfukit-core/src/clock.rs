//! Where host drivers and boards take time from: one trait, one way.
//!
//! A host driver (the Secure DFU host, the DFU/DfuSe host, the STM32MP
//! programming flow) never reads a clock or sleeps on its own: every wait
//! and every deadline goes through the [`Clock`] its transport provides.
//! A real transport delegates to a [`WallClock`] (with the `std` feature);
//! a simulated one advances virtual time, and with it the board, so the
//! same driver code runs in wall-clock and virtual time, and a timeout in
//! a test costs no real time.
//!
//! There is deliberately no default implementation: a transport that
//! forgot to say where its time comes from would silently mix the wall
//! clock into a virtual-time run.

use crate::time::Instant;
use core::time::Duration;

/// A source of time that can also let time pass.
pub trait Clock {
    /// The current time, from an origin fixed when the clock was made.
    fn now(&self) -> Instant;

    /// Lets `d` pass. A wall clock sleeps the thread; a virtual clock
    /// advances (running whatever falls due on the way).
    fn sleep(&mut self, d: Duration);

    /// Time since `earlier` by this clock (zero if `earlier` is later).
    fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

impl<C: Clock + ?Sized> Clock for &mut C {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn sleep(&mut self, d: Duration) {
        (**self).sleep(d)
    }
}

/// The machine's monotonic clock, from the moment the value was made.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: std::time::Instant,
}

#[cfg(feature = "std")]
impl WallClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        WallClock {
            origin: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "std")]
impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for WallClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Virtual time that moves only when slept through: for drivers whose
/// peer answers at once (an in-process device core in a unit test).
#[derive(Debug, Clone, Copy, Default)]
pub struct ManualClock {
    now: Instant,
}

impl ManualClock {
    /// A clock at `now`.
    pub const fn starting_at(now: Instant) -> Self {
        ManualClock { now }
    }

    /// Moves the clock to `t`; never backwards.
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now
    }
    fn sleep(&mut self, d: Duration) {
        self.now += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_slept_or_advanced() {
        let mut c = ManualClock::default();
        let t0 = c.now();
        c.sleep(Duration::from_millis(5));
        assert_eq!(c.since(t0), Duration::from_millis(5));
        c.advance_to(Instant::from_micros(1));
        assert_eq!(c.now(), Instant::from_micros(5_000), "never backwards");
        c.advance_to(Instant::from_micros(9_000));
        assert_eq!(c.now().as_micros(), 9_000);
    }

    #[cfg(feature = "std")]
    #[test]
    fn wall_clock_sleeps_for_real() {
        let mut c = WallClock::new();
        let t0 = c.now();
        c.sleep(Duration::from_millis(20));
        assert!(c.since(t0) >= Duration::from_millis(20));
    }
}
