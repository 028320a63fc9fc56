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

    /// Time since the clock's origin.
    fn elapsed(&self) -> Duration {
        self.since(Instant::ZERO)
    }
}

/// Declares that a type runs on the machine's monotonic clock: it is then
/// a [`Clock`] whose origin is the first time any wall clock of the
/// process was read, and whose sleep sleeps the thread. Real transports
/// (a USB device, a serial port, a radio) say so with one line,
/// `impl WallTime for MyPort {}`; nothing is a wall clock by default.
#[cfg(feature = "std")]
pub trait WallTime {}

#[cfg(feature = "std")]
impl<T: WallTime + ?Sized> Clock for T {
    fn now(&self) -> Instant {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let origin = ORIGIN.get_or_init(std::time::Instant::now);
        Instant::from_micros(origin.elapsed().as_micros() as u64)
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// The machine's monotonic clock on its own, for code that has no
/// transport to take time from.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

#[cfg(feature = "std")]
impl WallClock {
    /// The wall clock.
    pub const fn new() -> Self {
        WallClock
    }
}

#[cfg(feature = "std")]
impl WallTime for WallClock {}

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
