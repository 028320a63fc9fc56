//! `bench power-cuts`: the power-cut campaign over every family's device
//! core (see `dfukit_campaign::power_cuts`), with its counts per scenario.

use super::fixtures::diag;
use crate::util::diag::Diag;
use clap::Args;
use dfukit_campaign::power_cuts::{self, Campaign, Report};

/// Trials of the full campaign, over all scenarios.
const FULL_TRIALS: u64 = 100_000;

#[derive(Args)]
pub struct PowerCutsBench {
    /// A seeded subset for the test suite: every operation cut before,
    /// part-way, and once more at a seeded point with nested cuts.
    #[arg(long)]
    quick: bool,
    /// Trials over all scenarios (default 100000; ignored with --quick).
    #[arg(long)]
    trials: Option<u64>,
    /// Seed of every choice; the report names it, and a failing trial
    /// replays with the same seed.
    #[arg(long, default_value_t = 0x00df_c0de)]
    seed: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    scenario: Option<String>,
}

/// Runs `bench power-cuts`.
pub fn run(a: PowerCutsBench) -> Result<(), Diag> {
    let all = power_cuts::scenarios().map_err(diag)?;
    let chosen: Vec<&dyn power_cuts::Scenario> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| a.scenario.as_deref().is_none_or(|f| s.name().contains(f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        return Err(Diag::new(
            "dfukit::bench::scenario",
            format!(
                "no power-cut scenario matches {:?}",
                a.scenario.unwrap_or_default()
            ),
            format!("scenarios: {}", names.join(", ")),
        ));
    }
    let share = if a.quick {
        0
    } else {
        a.trials
            .unwrap_or(FULL_TRIALS)
            .div_ceil(chosen.len() as u64)
    };
    let campaign = Campaign {
        seed: a.seed,
        trials_per_scenario: share,
        min_seeded_rounds: 1,
        nested: true,
        threads: a.threads.unwrap_or_else(dfukit_campaign::parallel::cores),
    };
    let report = campaign.run(&chosen);
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&report).expect("serializes"));
    } else {
        print_report(&report);
    }
    if report.passed() {
        Ok(())
    } else {
        Err(Diag::new(
            "dfukit::bench::power_cuts_failed",
            format!(
                "{} of {} power-cut trials bricked a board, {} left a wrong image",
                report.total.bricked, report.total.trials, report.total.wrong_image
            ),
            "each failure above names its cut points and flash seed; rerun with the same --seed and --scenario to replay it",
        ))
    }
}

fn print_report(r: &Report) {
    println!(
        "Power cuts, seed {:#x}, {} threads, {:.1} s",
        r.total.seed, r.threads, r.seconds
    );
    println!(
        "{:<26} {:>6} {:>8} {:>10} {:>8} {:>12} {:>8} {:>8}",
        "scenario", "ops", "trials", "recovered", "bricked", "wrong_image", "cuts", "cpu_s"
    );
    for s in &r.scenarios {
        println!(
            "{:<26} {:>6} {:>8} {:>10} {:>8} {:>12} {:>8} {:>8.1}",
            s.name,
            s.clean_ops,
            s.tally.trials,
            s.tally.recovered,
            s.tally.bricked,
            s.tally.wrong_image,
            s.tally.cuts,
            s.cpu_s
        );
    }
    let t = &r.total;
    println!(
        "{:<26} {:>6} {:>8} {:>10} {:>8} {:>12} {:>8}",
        "total", "", t.trials, t.recovered, t.bricked, t.wrong_image, t.cuts
    );
    for s in &r.scenarios {
        println!("  {}: {}", s.name, s.description);
        for f in &s.failures {
            println!("    FAILED {f}");
        }
    }
}
