//! Power cuts: for every flash operation k of a clean update, cut power
//! before k and part-way through it (a partly programmed page with one torn
//! word, a partly erased sector with unpredictable bits: the simulator's
//! [`CutPoint`]), reboot, let the host resume, and check what the board
//! boots at every reboot and what its flash holds at the end.
//!
//! A trial may add up to [`MAX_NESTED`] further cuts, at seeded points,
//! during the recovery and the resume. Each scenario (one family and
//! configuration) is a [`Scenario`]; the families' scenarios live in their
//! own modules ([`nordic`], [`dfuse`]).

pub mod dfuse;
pub mod nordic;

use crate::{parallel, TrialRng};
use dfukit_sim::{CutPoint, PowerCutPlan};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Most further cuts a trial makes during recovery and resume.
pub const MAX_NESTED: u64 = 5;

/// One trial: the first cut, counted from the start of the update, then
/// the cuts armed at each reboot (counted from that power-on).
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The cut during the update.
    pub first: PowerCutPlan,
    /// Cuts during recovery and resume, one per reboot, in order.
    pub nested: Vec<PowerCutPlan>,
    /// Seed of the board's flash generator (the torn bits).
    pub seed: u64,
}

impl std::fmt::Display for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", plan_text(&self.first))?;
        for n in &self.nested {
            write!(f, ", then {}", plan_text(n))?;
        }
        write!(f, " (flash seed {:#x})", self.seed)
    }
}

fn plan_text(p: &PowerCutPlan) -> String {
    match p {
        PowerCutPlan::Never => "no cut".into(),
        PowerCutPlan::Before { op } => format!("cut before op {op}"),
        PowerCutPlan::During {
            op,
            at: CutPoint::Fraction(f),
        } => format!("cut at {:.0}% of op {op}", f * 100.0),
        PowerCutPlan::During {
            op,
            at: CutPoint::Bytes(b),
        } => format!("cut {b} bytes into op {op}"),
    }
}

/// What one trial found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every reboot came up with the old or the new image (or, for a
    /// single-bank update, in DFU mode waiting for the rest), the update
    /// completed on resume, and the final flash equals a clean run's.
    Recovered {
        /// Nested cuts that fired (a cut armed after the update finished
        /// never fires).
        nested_fired: u32,
    },
    /// A reboot came up without an image it had to keep, or the board
    /// could not be brought to the new image (the resume failed with power
    /// on).
    Bricked(String),
    /// A reboot ran an image that is neither the old nor the new one, or
    /// the final flash differs from a clean run's.
    WrongImage(String),
}

/// A family's update under power cuts.
pub trait Scenario: Sync {
    /// Short name (a JSON key): `nrf52840-qspi-bank1`.
    fn name(&self) -> &'static str;
    /// What is updated, in words.
    fn describe(&self) -> String;
    /// Flash operations of a clean update (transfer and activation).
    fn clean_ops(&self) -> u64;
    /// False when the update erases the old image by design (single bank):
    /// a reboot without an image is then not a failure if the board waits
    /// in DFU mode.
    fn keeps_old_image(&self) -> bool {
        true
    }
    /// The cut points to try inside operation k besides "before" (the
    /// campaign's seeded fractions are added to these).
    fn fixed_cuts(&self) -> Vec<CutPoint> {
        vec![CutPoint::Fraction(0.5)]
    }
    /// Runs one trial.
    fn trial(&self, t: &Trial) -> Verdict;
}

/// Counted outcomes, per scenario and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Trials run.
    pub trials: u64,
    /// Trials that recovered (see [`Verdict::Recovered`]).
    pub recovered: u64,
    /// Trials that left a board without a working image.
    pub bricked: u64,
    /// Trials that left a board running, or holding, the wrong image.
    pub wrong_image: u64,
    /// Cuts that fired in all (the first of each trial and the nested ones).
    pub cuts: u64,
    /// Trials with at least one nested cut that fired.
    pub nested_trials: u64,
    /// The campaign's seed.
    pub seed: u64,
}

impl Tally {
    fn add(&mut self, v: &Verdict) {
        self.trials += 1;
        self.cuts += 1;
        match v {
            Verdict::Recovered { nested_fired } => {
                self.recovered += 1;
                self.cuts += u64::from(*nested_fired);
                self.nested_trials += u64::from(*nested_fired > 0);
            }
            Verdict::Bricked(_) => self.bricked += 1,
            Verdict::WrongImage(_) => self.wrong_image += 1,
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.trials += o.trials;
        self.recovered += o.recovered;
        self.bricked += o.bricked;
        self.wrong_image += o.wrong_image;
        self.cuts += o.cuts;
        self.nested_trials += o.nested_trials;
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// [`Scenario::name`].
    pub name: &'static str,
    /// [`Scenario::describe`].
    pub description: String,
    /// Flash operations of a clean update.
    pub clean_ops: u64,
    /// See [`Scenario::keeps_old_image`].
    pub keeps_old_image: bool,
    /// Outcomes.
    #[serde(flatten)]
    pub tally: Tally,
    /// CPU time spent in this scenario's trials, summed over threads.
    pub cpu_s: f64,
    /// The first failing trials (at most five), each with what to replay.
    pub failures: Vec<String>,
}

/// A whole campaign's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// All scenarios together.
    pub total: Tally,
    /// Wall time of the campaign.
    pub seconds: f64,
    /// Threads the trials ran on.
    pub threads: usize,
}

impl Report {
    /// True when no trial bricked a board or left a wrong image.
    pub fn passed(&self) -> bool {
        self.total.bricked == 0 && self.total.wrong_image == 0
    }
}

/// How many trials, from which seed, on how many threads.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The seed of every choice (cut kind and point, nested cuts, torn bits).
    pub seed: u64,
    /// Trials to aim at per scenario; every operation gets at least its
    /// before-cut and its fixed part-way cuts, the rest are seeded.
    pub trials_per_scenario: u64,
    /// Seeded rounds every operation gets at least, beyond its fixed cuts.
    pub min_seeded_rounds: u64,
    /// Nested cuts at all (off: only the first cut).
    pub nested: bool,
    /// Worker threads.
    pub threads: usize,
}

impl Campaign {
    /// The trials for a scenario whose clean update has `total` operations:
    /// for each operation k, a cut before it, a cut at each fixed point,
    /// then seeded rounds (before or part-way, at a seeded fraction, with
    /// zero to [`MAX_NESTED`] nested cuts at seeded operations) until the
    /// scenario has its share.
    pub fn trials(&self, total: u64, fixed: &[CutPoint], stream: u64) -> Vec<Trial> {
        let base = 1 + fixed.len() as u64;
        let rounds = self
            .trials_per_scenario
            .div_ceil(total.max(1))
            .max(base + self.min_seeded_rounds);
        let mut out = Vec::new();
        for k in 1..=total {
            let mut rng = TrialRng::new(self.seed, stream << 32 | k);
            for r in 0..rounds {
                let seed = rng.next_u64();
                let first = match r {
                    0 => PowerCutPlan::before(k),
                    r if r < base => PowerCutPlan::during(k, fixed[r as usize - 1]),
                    _ => random_cut(&mut rng, k),
                };
                let nested = if r >= base && self.nested {
                    (0..rng.range(0, MAX_NESTED))
                        .map(|_| {
                            let op = rng.range(1, total);
                            random_cut(&mut rng, op)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                out.push(Trial {
                    first,
                    nested,
                    seed,
                });
            }
        }
        out
    }

    /// Runs every scenario's trials (all scenarios' trials share the
    /// threads) and counts the verdicts.
    pub fn run(&self, scenarios: &[&dyn Scenario]) -> Report {
        let started = Instant::now();
        let mut work = Vec::new();
        let mut clean = Vec::new();
        for (i, s) in scenarios.iter().enumerate() {
            let ops = s.clean_ops();
            clean.push(ops);
            for t in self.trials(ops, &s.fixed_cuts(), i as u64) {
                work.push((i, t));
            }
        }
        let verdicts = parallel::run(&work, self.threads, |(i, t)| {
            let t0 = Instant::now();
            let v = scenarios[*i].trial(t);
            (v, t0.elapsed())
        });
        let mut reports: Vec<ScenarioReport> = scenarios
            .iter()
            .zip(&clean)
            .map(|(s, &ops)| ScenarioReport {
                name: s.name(),
                description: s.describe(),
                clean_ops: ops,
                keeps_old_image: s.keeps_old_image(),
                tally: Tally {
                    seed: self.seed,
                    ..Tally::default()
                },
                cpu_s: 0.0,
                failures: Vec::new(),
            })
            .collect();
        let mut cpu = vec![Duration::ZERO; scenarios.len()];
        for ((i, t), (v, took)) in work.iter().zip(&verdicts) {
            let r = &mut reports[*i];
            r.tally.add(v);
            cpu[*i] += *took;
            let what = match v {
                Verdict::Recovered { .. } => None,
                Verdict::Bricked(w) => Some(format!("bricked: {w}")),
                Verdict::WrongImage(w) => Some(format!("wrong image: {w}")),
            };
            if let (Some(w), true) = (what, r.failures.len() < 5) {
                r.failures.push(format!("{t}: {w}"));
            }
        }
        let mut total = Tally {
            seed: self.seed,
            ..Tally::default()
        };
        for (r, c) in reports.iter_mut().zip(cpu) {
            r.cpu_s = c.as_secs_f64();
            total.merge(&r.tally);
        }
        Report {
            scenarios: reports,
            total,
            seconds: started.elapsed().as_secs_f64(),
            threads: self.threads,
        }
    }
}

/// Before or part-way through `op`, at a seeded fraction.
fn random_cut(rng: &mut TrialRng, op: u64) -> PowerCutPlan {
    if rng.range(0, 2) == 0 {
        PowerCutPlan::before(op)
    } else {
        PowerCutPlan::during(op, CutPoint::Fraction(rng.fraction()))
    }
}

/// Every built-in scenario, set up (each runs its clean update once).
pub fn scenarios() -> Result<Vec<Box<dyn Scenario>>, crate::SetupError> {
    let mut v = nordic::scenarios()?;
    v.extend(dfuse::scenarios()?);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(n: u64) -> Campaign {
        Campaign {
            seed: 9,
            trials_per_scenario: n,
            min_seeded_rounds: 0,
            nested: true,
            threads: 1,
        }
    }

    #[test]
    fn every_operation_gets_a_cut_before_and_part_way() {
        let t = campaign(0).trials(4, &[CutPoint::Fraction(0.5)], 0);
        assert_eq!(t.len(), 8);
        for k in 1..=4 {
            assert!(t.contains(&Trial {
                first: PowerCutPlan::before(k),
                nested: vec![],
                seed: t[(k as usize - 1) * 2].seed,
            }));
            assert!(t
                .iter()
                .any(|x| x.first == PowerCutPlan::during(k, CutPoint::Fraction(0.5))));
        }
    }

    #[test]
    fn seeded_rounds_fill_the_share_and_replay() {
        let a = campaign(100).trials(10, &[CutPoint::Fraction(0.5)], 3);
        assert_eq!(a.len(), 100);
        assert_eq!(a, campaign(100).trials(10, &[CutPoint::Fraction(0.5)], 3));
        assert_ne!(a, campaign(100).trials(10, &[CutPoint::Fraction(0.5)], 4));
        let nested: Vec<usize> = a.iter().map(|t| t.nested.len()).collect();
        assert!(nested.iter().all(|&n| n as u64 <= MAX_NESTED));
        assert!(nested.contains(&0) && nested.iter().any(|&n| n >= 3));
        assert!(a
            .iter()
            .flat_map(|t| &t.nested)
            .all(|p| p.op().is_some_and(|op| (1..=10).contains(&op))));
    }
}
