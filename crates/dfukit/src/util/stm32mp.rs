//! STM32MP programming as `stm32mp flash` and the demo run it: the layout
//! loaded with every error printed, the flow with progress, the summary
//! table, and the failure diagnosis with its likely causes.

use super::diag::read_input;
use super::diag::Diag;
use super::progress::{self, Task};
use dfukit_stm32mp::connect::Connector;
use dfukit_stm32mp::layout::{self, CheckOptions, Layout};
use dfukit_stm32mp::program::{self, ProgramError, ProgramEvent, ProgramOptions, Summary};
use serde_json::json;
use std::path::Path;

/// Loads and checks a layout; every error is printed `path:line:col` with
/// its help, and the diagnostic says how many there were.
pub fn load(path: &Path) -> Result<Layout, Diag> {
    layout::load(path, &CheckOptions::default()).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{e}\n  help: {}", e.help());
        }
        Diag::new(
            "dfukit::stm32mp::layout",
            format!(
                "{}: {} error(s) in the flashlayout",
                path.display(),
                errs.0.len()
            ),
            "fix each line above; the rules are U-Boot stm32prog's (see `dfukit stm32mp check`)",
        )
    })
}

/// Programs the board from the layout at `path`, reached through `conn`,
/// with progress on stderr and the summary table on stdout.
pub fn flash(
    conn: &mut impl Connector,
    path: &Path,
    opts: &ProgramOptions,
) -> Result<Summary, Diag> {
    let layout = load(path).map_err(|mut d| {
        d.message.push_str("; nothing was sent to the board");
        d
    })?;
    let layout_bytes = read_input(path, "dfukit::stm32mp::layout", "check the path")?;
    let mut task: Option<Task> = None;
    let mut on_event = |e: ProgramEvent| match e {
        ProgramEvent::StageStarted { stage } => progress::event(
            "stage",
            &format!("== {stage}"),
            json!({"stage": stage.to_string()}),
        ),
        ProgramEvent::Connected { stage, alts } => progress::event(
            "connected",
            &format!("   connected: {stage}, {alts} alternate settings"),
            json!({"stage": stage.to_string(), "alts": alts}),
        ),
        ProgramEvent::Reconnecting { stage } => progress::event(
            "reconnecting",
            &format!("   waiting for the board: {stage}"),
            json!({"stage": stage.to_string()}),
        ),
        ProgramEvent::PhaseRead { stage, record } => progress::event(
            "phase_read",
            &format!("   device reports {record}"),
            json!({"stage": stage.to_string(), "record": record.to_string()}),
        ),
        ProgramEvent::PartitionStarted { id, name, total } => {
            task = Some(Task::start(&format!("{id:#04x} {name}"), total));
        }
        ProgramEvent::Progress { done, total, .. } => {
            if let Some(t) = &mut task {
                t.progress(done, total);
            }
        }
        ProgramEvent::PartitionDone { id, bytes, elapsed } => {
            if let Some(t) = task.take() {
                t.finish(
                    &format!("{bytes} bytes written in {:.2} s", elapsed.as_secs_f64()),
                    json!({"id": id, "bytes": bytes, "seconds": elapsed.as_secs_f64()}),
                );
            }
        }
    };
    let result = program::program(conn, &layout, &layout_bytes, opts, &mut on_event);
    if let Some(t) = task.take() {
        t.fail();
    }
    match result {
        Ok(summary) => {
            print_summary(&summary);
            Ok(summary)
        }
        Err(e) => Err(diagnosis(&e)),
    }
}

/// Prints the per-partition table, the stage times and the total.
pub fn print_summary(s: &Summary) {
    progress::result(
        "table",
        &format!(
            "{:<5} {:<16} {:<9} {:>12} {:>12} {:>8} {:>9}",
            "id", "partition", "device", "offset", "bytes", "time", "MB/s"
        ),
        json!({}),
    );
    for w in &s.written {
        let rate = w.bytes_per_second();
        progress::result(
            "partition",
            &format!(
                "{:<#5x} {:<16} {:<9} {:>12} {:>12} {:>7.2}s {:>9}",
                w.id,
                w.name,
                w.ip.to_string(),
                w.offset.to_string(),
                w.bytes,
                w.elapsed.as_secs_f64(),
                rate.map_or("-".into(), |b| format!("{:.2}", b / 1e6)),
            ),
            json!({
                "id": w.id, "name": w.name, "device": w.ip.to_string(), "offset": w.offset.to_string(),
                "bytes": w.bytes, "seconds": w.elapsed.as_secs_f64(), "bytes_per_second": rate,
            }),
        );
    }
    for (stage, d) in &s.stages {
        progress::result(
            "stage_time",
            &format!("{stage}: {:.2} s", d.as_secs_f64()),
            json!({"stage": stage.to_string(), "seconds": d.as_secs_f64()}),
        );
    }
    progress::result(
        "done",
        &format!(
            "done: {} bytes in {} partitions, {:.2} s",
            s.bytes(),
            s.written.len(),
            s.total.as_secs_f64()
        ),
        json!({"bytes": s.bytes(), "partitions": s.written.len(), "seconds": s.total.as_secs_f64()}),
    );
}

/// The error with its likely causes as the help text.
pub fn diagnosis(e: &ProgramError) -> Diag {
    let mut help = e.help();
    let causes = e.causes();
    if !causes.is_empty() {
        help.push_str("\nlikely causes:");
        for c in causes {
            help.push_str("\n  - ");
            help.push_str(&c);
        }
    }
    if let Some(r) = &e.last_report {
        help.push_str(&format!("\nlast device report: {r}"));
    }
    Diag::new(e.code(), e.to_string(), help)
}
