//! What dfukit's test suites share. A dev-dependency only: nothing here is
//! part of a shipped crate.
//!
//! - [`flash`]: [`TestFlash`], a memory map of RAM-backed regions that
//!   applies [`dfukit_core::FlashOp`]s with NOR rules (a program over bytes
//!   that are not erased is recorded, or fails the test), as embassy-boot's
//!   test flash does, and serves the device cores' reads.
//! - [`peers`]: finding the peer tools the tests run against, under the
//!   project's rule that `DFUKIT_REQUIRE_PEERS=1` (set by `scripts/test`)
//!   turns a missing peer into a failure instead of a skip; running them
//!   with a deadline.
//! - [`servers`]: misbehaving servers (a USB/IP server that trickles its reply).
#![warn(missing_docs)]

pub mod flash;
pub mod peers;
pub mod servers;

pub use flash::{Region, TestFlash};
