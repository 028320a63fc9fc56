//! `bench tamper`: damaged and policy-breaking updates against every
//! family's simulated board (see `dfukit_campaign::tamper`), counted per
//! group of cases.

use super::fixtures::diag;
use crate::util::diag::Diag;
use clap::Args;
use dfukit_campaign::tamper::{self, Report};

#[derive(Args)]
pub struct TamperBench {
    /// Seed of the sampled cases (image flips, cuts, extensions, forged
    /// signatures); the report names it.
    #[arg(long, default_value_t = 0x00df_c0de)]
    seed: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Only the suites whose name contains this.
    #[arg(long)]
    suite: Option<String>,
}

/// Runs `bench tamper`.
pub fn run(a: TamperBench) -> Result<(), Diag> {
    let all = tamper::suites(a.seed).map_err(diag)?;
    let chosen: Vec<&dyn tamper::Suite> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| a.suite.as_deref().is_none_or(|f| s.name().contains(f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        return Err(Diag::new(
            "dfukit::bench::suite",
            format!("no tamper suite matches {:?}", a.suite.unwrap_or_default()),
            format!("suites: {}", names.join(", ")),
        ));
    }
    let threads = a.threads.unwrap_or_else(dfukit_campaign::parallel::cores);
    let report = tamper::run(&chosen, a.seed, threads);
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&report).expect("serializes"));
    } else {
        print_report(&report);
    }
    if report.passed() {
        Ok(())
    } else {
        let t = &report.total;
        Err(Diag::new(
            "dfukit::bench::tamper_failed",
            format!(
                "of {} tampered updates, {} were accepted, {} refused for the wrong reason, {} lost the old image; {} control updates failed",
                t.cases,
                t.accepted,
                t.wrong_error,
                t.old_image_lost,
                report.suites.iter().filter(|s| s.control_failed.is_some()).count()
            ),
            "each failure above names its case; the cases are the same for the same --seed",
        ))
    }
}

fn print_report(r: &Report) {
    println!(
        "Tampered updates, seed {:#x}, {} threads, {:.1} s",
        r.seed, r.threads, r.seconds
    );
    let row = |name: &str, t: &tamper::Tally| {
        println!(
            "  {:<24} {:>7} {:>9} {:>9} {:>12} {:>15}",
            name, t.cases, t.rejected, t.accepted, t.wrong_error, t.old_image_lost
        )
    };
    for s in &r.suites {
        println!("{}: {}", s.name, s.description);
        println!(
            "  {:<24} {:>7} {:>9} {:>9} {:>12} {:>15}",
            "group", "cases", "rejected", "accepted", "wrong_error", "old_image_lost"
        );
        for g in &s.groups {
            row(g.group, &g.tally);
        }
        row("all", &s.tally);
        match &s.control_failed {
            None => println!("  control: the untampered update installed"),
            Some(why) => println!("  control FAILED: {why}"),
        }
        for f in &s.failures {
            println!("  FAILED {f}");
        }
    }
    row("total", &r.total);
}
