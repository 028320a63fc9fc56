//! no_std building blocks shared by dfukit's device cores and simulator.
//!
//! Everything here is sans-IO: time is a value passed in ([`Instant`]) or
//! taken from a [`Clock`] the caller provides, flash
//! work is described as [`FlashOp`] values that somebody else performs, and the
//! result comes back as a [`FlashOutcome`]. The same core therefore runs on a
//! microcontroller, in the simulator under virtual time, and in tests.
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod board;
pub mod clock;
pub mod crc;
pub mod flash;
pub mod synthetic;
pub mod time;
pub mod usb;

pub use board::Board;
pub use clock::{Clock, ManualClock};
#[cfg(feature = "std")]
pub use clock::{WallClock, WallTime};
pub use crc::Crc32;
pub use flash::{FlashOp, FlashOutcome, ReadError, ReadFlash};
pub use time::Instant;
