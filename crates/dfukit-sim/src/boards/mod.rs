//! The simulated boards. Each is a device core plus the hardware around
//! it (flash chips with datasheet timing, storage images in a state
//! directory, fault switches), and each implements [`crate::Board`].

pub mod nrf52840;
pub mod stm32f4;
pub mod stm32mp1;

use dfukit_core::Instant;

/// The sooner of two optional wake-ups: what a board reports as
/// [`dfukit_core::Board::next_wakeup`] when two of its parts keep time.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
