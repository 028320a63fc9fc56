//! The one interface every simulated board offers its drivers.
//!
//! A board is a device core plus the hardware around it (flash chips with
//! their timing, a power supply, a USB or serial port). Drivers — a USB/IP
//! server, a pseudo-terminal pump, a virtual-time link in a test or a
//! benchmark, a fleet runner — need the same few things of any board:
//! move it to a point in time, learn when it next has work of its own,
//! cut its power, and look at its state. Protocol traffic goes through the
//! board's own port type (control transfers, SLIP frames, GATT writes),
//! which differs per family and is not part of this trait.

use crate::time::Instant;

/// A simulated board, driven by time.
pub trait Board {
    /// What [`Board::inspect`] returns: the board's state, with a
    /// `Display` that says it in words (what `dfukit sim inspect` prints).
    type Inspection: core::fmt::Display;

    /// The board's current time.
    fn now(&self) -> Instant;

    /// Runs the board up to `now`: flash operations that finish by then
    /// complete, timers that fall due fire. Time never goes backwards; an
    /// earlier `now` is a no-op.
    fn advance(&mut self, now: Instant);

    /// When the board next has work of its own (a flash completion, a
    /// deadline), or `None` when it waits for its host.
    fn next_wakeup(&self) -> Option<Instant>;

    /// Whether the board has power.
    fn is_powered(&self) -> bool;

    /// Cuts the power now and restores it: work in flight is lost, and the
    /// board boots again from what its storage holds.
    fn power_cycle(&mut self);

    /// The board's state as its bootloader sees it.
    fn inspect(&mut self) -> Self::Inspection;
}
