//! Reliability campaigns: many seeded trials of one promise against the
//! simulated boards, run on every core, with every outcome counted.
//!
//! A campaign is a list of scenarios (one per family and configuration,
//! each in its own module, so a new family is a new module beside the
//! others) and a trial generator; [`parallel::run`] spreads the trials over
//! threads and a campaign folds the verdicts into a report. [`power_cuts`]
//! is MCUboot's simulator method (count a clean update's flash operations,
//! then cut power at each), extended to cuts part-way through an operation
//! and to nested cuts during recovery; [`tamper`] sends damaged and
//! policy-breaking updates and checks each is refused for its reason.
//! [`nrf52840`] sets up the simulated nRF52840 for both.
#![warn(missing_docs)]

pub mod link_faults;
pub mod nrf52840;
pub mod parallel;
pub mod power_cuts;
mod rng;
pub mod stm32f4;
pub mod tamper;

pub use rng::TrialRng;

/// Why a scenario could not be set up (a bug in the simulator or the
/// host, never an outcome of the campaign).
#[derive(Debug, thiserror::Error)]
#[error("campaign scenario {scenario}: {what}")]
pub struct SetupError {
    /// The scenario.
    pub scenario: &'static str,
    /// What failed.
    pub what: String,
}
