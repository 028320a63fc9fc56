//! `bench link-faults`: seeded schedules of link faults on every transport
//! (see `dfukit_campaign::link_faults`), with their outcomes counted.

use super::fixtures::diag;
use crate::util::diag::Diag;
use clap::Args;
use dfukit_campaign::link_faults::{self, Report};

#[derive(Args)]
pub struct LinkFaultsBench {
    /// Schedules per transport (the campaign: 10000).
    #[arg(long, default_value_t = 10_000)]
    schedules: u64,
    /// Seed of every schedule; the report names it, and a failing schedule
    /// replays with the same seed.
    #[arg(long, default_value_t = 0x00df_c0de)]
    seed: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Only the transports whose name contains this.
    #[arg(long)]
    transport: Option<String>,
}

/// Runs `bench link-faults`.
pub fn run(a: LinkFaultsBench) -> Result<(), Diag> {
    let all = link_faults::transports().map_err(diag)?;
    let chosen: Vec<&dyn link_faults::Transport> = all
        .iter()
        .map(|t| t.as_ref())
        .filter(|t| a.transport.as_deref().is_none_or(|f| t.name().contains(f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
        return Err(Diag::new(
            "dfukit::bench::transport",
            format!(
                "no link-fault transport matches {:?}",
                a.transport.unwrap_or_default()
            ),
            format!("transports: {}", names.join(", ")),
        ));
    }
    let threads = a.threads.unwrap_or_else(dfukit_campaign::parallel::cores);
    let report = link_faults::run(&chosen, a.schedules, a.seed, threads);
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
            "dfukit::bench::link_faults_failed",
            format!(
                "of {} link-fault schedules, {} corrupted an image silently, {} reported a false success, {} left a board that could not be updated",
                t.schedules, t.silent_corruption, t.false_success, t.bricked
            ),
            "each failure above lists its faults; rerun with the same --seed and --transport to replay it",
        ))
    }
}

fn print_report(r: &Report) {
    println!(
        "Link faults, seed {:#x}, {} threads, {:.1} s",
        r.total.seed, r.threads, r.seconds
    );
    println!(
        "{:<12} {:>13} {:>9} {:>10} {:>12} {:>17} {:>13} {:>8} {:>7} {:>7}",
        "transport",
        "clean frames",
        "schedules",
        "completed",
        "clean_errors",
        "silent_corruption",
        "false_success",
        "bricked",
        "faults",
        "cpu_s"
    );
    for t in &r.transports {
        println!(
            "{:<12} {:>13} {:>9} {:>10} {:>12} {:>17} {:>13} {:>8} {:>7} {:>7.1}",
            t.name,
            format!("{}/{}", t.clean_frames.0, t.clean_frames.1),
            t.tally.schedules,
            t.tally.completed,
            t.tally.clean_errors,
            t.tally.silent_corruption,
            t.tally.false_success,
            t.tally.bricked,
            t.tally.faults_fired,
            t.cpu_s
        );
    }
    let t = &r.total;
    println!(
        "{:<12} {:>13} {:>9} {:>10} {:>12} {:>17} {:>13} {:>8} {:>7}",
        "total",
        "",
        t.schedules,
        t.completed,
        t.clean_errors,
        t.silent_corruption,
        t.false_success,
        t.bricked,
        t.faults_fired
    );
    for t in &r.transports {
        println!("  {}: {}", t.name, t.description);
        for f in &t.failures {
            println!("    FAILED {f}");
        }
    }
}
