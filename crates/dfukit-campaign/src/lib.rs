//! Reliability campaigns: many seeded trials of one promise against the
//! simulated boards, run on every core, with every outcome counted.
//!
//! A campaign is a list of scenarios (one per family and configuration,
//! each in its own module, so a new family is a new module beside the
//! others) and a trial generator; [`parallel::run`] spreads the trials over
//! threads and a campaign folds the verdicts into a report. The first is
//! [`power_cuts`]: MCUboot's simulator method (count a clean update's flash
//! operations, then cut power at each), extended to cuts part-way through an
//! operation and to nested cuts during recovery.
#![warn(missing_docs)]

pub mod parallel;
pub mod power_cuts;
mod rng;

pub use rng::TrialRng;
