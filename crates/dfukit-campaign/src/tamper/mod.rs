//! Tampered and policy-breaking updates: every case is a damaged or
//! disallowed update sent by dfukit's host to a simulated board running an
//! old image. The device core must refuse it with the error the case
//! expects (so the refusal is for the right reason, not a side effect), the
//! host must report the failure, and after a power cycle the board must
//! still run the old image byte for byte.
//!
//! A family's cases are a [`Suite`] (one per family and configuration, in
//! its own module: [`nordic`]); [`run`] spreads every suite's cases over the
//! threads and counts the outcomes per group of cases. Each suite also runs
//! its untampered update as a control: refusals prove nothing on a board
//! that refuses everything.

pub mod nordic;

use crate::parallel;
use serde::Serialize;
use std::time::Instant;

/// One case of a suite.
#[derive(Debug, Clone)]
pub struct Case {
    /// The group it is counted in (a JSON value): `init-bit-flip`.
    pub group: &'static str,
    /// What was done, precisely enough to rebuild it: `bit 93 flipped`.
    pub what: String,
}

/// What one case found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Refused with an error the case expects; the old image intact.
    Rejected,
    /// The host reported success, or the board ended up running something
    /// other than the old image.
    Accepted(String),
    /// Refused, old image intact, but not with an error the case expects
    /// (a refusal for the wrong reason hides the check that should have
    /// caught it).
    WrongError(String),
    /// Refused, but the old image is gone or changed.
    OldImageLost(String),
}

/// A family's tamper cases against one board configuration.
pub trait Suite: Sync {
    /// Short name (a JSON value): `nrf52840-qspi-bank1`.
    fn name(&self) -> &'static str;
    /// The board and the update, in words.
    fn describe(&self) -> String;
    /// The cases, in order.
    fn cases(&self) -> &[Case];
    /// Runs case `i` on a fresh board running the old image.
    fn run(&self, i: usize) -> Outcome;
    /// Runs the untampered update on a fresh board; `Err` says why a
    /// correct update did not install.
    fn control(&self) -> Result<(), String>;
}

/// Counted outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Cases run.
    pub cases: u64,
    /// Refused with the expected error, old image intact.
    pub rejected: u64,
    /// Taken (see [`Outcome::Accepted`]).
    pub accepted: u64,
    /// Refused for another reason than expected.
    pub wrong_error: u64,
    /// Refused, old image lost.
    pub old_image_lost: u64,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        self.cases += 1;
        match o {
            Outcome::Rejected => self.rejected += 1,
            Outcome::Accepted(_) => self.accepted += 1,
            Outcome::WrongError(_) => self.wrong_error += 1,
            Outcome::OldImageLost(_) => self.old_image_lost += 1,
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.cases += o.cases;
        self.rejected += o.rejected;
        self.accepted += o.accepted;
        self.wrong_error += o.wrong_error;
        self.old_image_lost += o.old_image_lost;
    }
}

/// One group's figures.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// [`Case::group`].
    pub group: &'static str,
    /// Outcomes.
    #[serde(flatten)]
    pub tally: Tally,
}

/// One suite's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// [`Suite::name`].
    pub name: &'static str,
    /// [`Suite::describe`].
    pub description: String,
    /// Per group, in the order the suite lists them.
    pub groups: Vec<GroupReport>,
    /// The suite's outcomes.
    #[serde(flatten)]
    pub tally: Tally,
    /// The untampered update installed (`None`), or why it did not.
    pub control_failed: Option<String>,
    /// The first failing cases (at most eight).
    pub failures: Vec<String>,
}

/// A whole campaign's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per suite.
    pub suites: Vec<SuiteReport>,
    /// All suites together.
    pub total: Tally,
    /// The seed of the sampled cases.
    pub seed: u64,
    /// Wall time.
    pub seconds: f64,
    /// Threads the cases ran on.
    pub threads: usize,
}

impl Report {
    /// True when every case was refused with its expected error, every old
    /// image survived and every control update installed.
    pub fn passed(&self) -> bool {
        self.total.rejected == self.total.cases
            && self.suites.iter().all(|s| s.control_failed.is_none())
    }
}

/// Runs every suite's cases (sharing the threads) and its control update.
pub fn run(suites: &[&dyn Suite], seed: u64, threads: usize) -> Report {
    let started = Instant::now();
    let work: Vec<(usize, usize)> = suites
        .iter()
        .enumerate()
        .flat_map(|(s, suite)| (0..suite.cases().len()).map(move |i| (s, i)))
        .collect();
    let controls: Vec<usize> = (0..suites.len()).collect();
    let outcomes = parallel::run(&work, threads, |&(s, i)| suites[s].run(i));
    let controls = parallel::run(&controls, threads, |&s| suites[s].control());
    let mut total = Tally::default();
    let reports = suites
        .iter()
        .enumerate()
        .zip(controls)
        .map(|((s, suite), control)| {
            let mut groups: Vec<GroupReport> = Vec::new();
            let mut tally = Tally::default();
            let mut failures = Vec::new();
            for ((_, i), o) in work.iter().zip(&outcomes).filter(|((w, _), _)| *w == s) {
                let case = &suite.cases()[*i];
                match groups.iter_mut().find(|g| g.group == case.group) {
                    Some(g) => g.tally.add(o),
                    None => {
                        let mut g = GroupReport {
                            group: case.group,
                            tally: Tally::default(),
                        };
                        g.tally.add(o);
                        groups.push(g);
                    }
                }
                tally.add(o);
                let failed = match o {
                    Outcome::Rejected => None,
                    Outcome::Accepted(w) => Some(format!("accepted: {w}")),
                    Outcome::WrongError(w) => Some(format!("wrong error: {w}")),
                    Outcome::OldImageLost(w) => Some(format!("old image lost: {w}")),
                };
                if let (Some(f), true) = (failed, failures.len() < 8) {
                    failures.push(format!("{} ({}): {f}", case.what, case.group));
                }
            }
            total.merge(&tally);
            SuiteReport {
                name: suite.name(),
                description: suite.describe(),
                groups,
                tally,
                control_failed: control.err(),
                failures,
            }
        })
        .collect();
    Report {
        suites: reports,
        total,
        seed,
        seconds: started.elapsed().as_secs_f64(),
        threads,
    }
}

/// Every built-in suite, set up (each installs its old image once).
pub fn suites(seed: u64) -> Result<Vec<Box<dyn Suite>>, crate::SetupError> {
    nordic::suites(seed)
}
