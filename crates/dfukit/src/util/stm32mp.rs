//! STM32MP programming as `stm32mp flash` and the demo run it: the layout
//! loaded with every error printed (its binaries found as ST's scripts find
//! them), the flow with progress, the summary table, and the failure
//! diagnosis with its likely causes and what was on the bus. Also the
//! output side of `stm32mp sdcard`: sizes in MiB and files written whole
//! or not at all.

use super::diag::read_input;
use super::diag::Diag;
use super::progress::{self, Task};
use clap::Args;
use dfukit_stm32mp::connect::Connector;
use dfukit_stm32mp::layout::{self, CheckOptions, Layout};
use dfukit_stm32mp::program::{self, ProgramError, ProgramEvent, ProgramOptions, Summary};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A flashlayout and where its binaries are.
#[derive(Args, Clone, Debug)]
pub struct LayoutArgs {
    /// The flashlayout (.tsv, or .tsv.stm32 wrapped in an STM32 header).
    /// Its Binary paths are looked up from its directory and up to three
    /// levels above it, as in ST's starter packages.
    pub layout: PathBuf,
    /// Directory searched first for the binaries (repeatable).
    #[arg(long = "binaries", value_name = "DIR")]
    pub binaries: Vec<PathBuf>,
}

impl LayoutArgs {
    /// The layout at `path`, binaries looked up from it only.
    pub fn at(path: &Path) -> Self {
        LayoutArgs {
            layout: path.to_path_buf(),
            binaries: Vec::new(),
        }
    }
}

/// Loads and checks a layout; every error is printed `path:line:col` with
/// its help, and the diagnostic says how many there were.
pub fn load(args: &LayoutArgs) -> Result<Layout, Diag> {
    let path = args.layout.as_path();
    let options = CheckOptions {
        binary_dirs: args.binaries.clone(),
        ..Default::default()
    };
    layout::load(path, &options).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{e} [{}]\n  help: {}", e.kind.code(), e.help());
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

/// Programs the board from the layout `args`, reached through `conn`,
/// with progress on stderr and the summary table on stdout.
pub fn flash(
    conn: &mut impl Connector,
    args: &LayoutArgs,
    opts: &ProgramOptions,
) -> Result<Summary, Diag> {
    let layout = load(args).map_err(|mut d| {
        d.message.push_str("; nothing was sent to the board");
        d
    })?;
    let path = args.layout.as_path();
    let mut layout_bytes = read_input(path, "dfukit::stm32mp::layout", "check the path")?;
    // The host accepts a layout saved with a UTF-8 BOM (Windows editors
    // write one); U-Boot would take the BOM as part of the first Opt
    // column, so the board gets the text without it.
    if layout_bytes.starts_with(UTF8_BOM) {
        layout_bytes.drain(..UTF8_BOM.len());
    }
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

/// The UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

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

/// What is on the bus where the board was looked for (`usbip`: a USB/IP
/// server, else this machine's USB), one line per device with DFU devices
/// marked, or "nothing"; or, as the error, why the bus could not be listed.
pub fn bus_report(usbip: Option<&str>) -> Result<String, String> {
    /// DFU's interface class and subclass (application specific, DFU).
    const DFU: (u8, u8) = (0xFE, 0x01);
    let (place, found) = match usbip {
        Some(addr) => {
            let addr = dfukit_transport::usb::with_default_port(addr);
            let list = dfukit_usbip::Client::list_with_timeout(
                addr.as_str(),
                std::time::Duration::from_secs(2),
            );
            let found = list.map_err(|e| e.to_string()).map(|devs| {
                (devs.iter())
                    .map(|d| {
                        let dfu = d.interfaces.iter().any(|i| (i.class, i.subclass) == DFU);
                        let r = &d.device;
                        (r.busid.clone(), r.vendor_id, r.product_id, dfu, None)
                    })
                    .collect::<Vec<_>>()
            });
            (format!("the USB/IP server {addr}"), found)
        }
        None => {
            use nusb::MaybeFuture;
            let found = nusb::list_devices().wait().map_err(|e| e.to_string());
            let found = found.map(|devs| {
                devs.map(|d| {
                    let dfu = d.interfaces().any(|i| (i.class(), i.subclass()) == DFU);
                    let name = d.product_string().map(str::to_string);
                    let place = format!("{}-{:?}", d.bus_id(), d.port_chain());
                    (place, d.vendor_id(), d.product_id(), dfu, name)
                })
                .collect::<Vec<_>>()
            });
            ("this machine's USB".to_string(), found)
        }
    };
    match found {
        Err(e) => Err(format!("{place} could not be listed: {e}")),
        Ok(devs) if devs.is_empty() => Ok(format!("seen on {place}: nothing")),
        Ok(devs) => {
            let mut s = format!("seen on {place}:");
            for (busid, vid, pid, dfu, name) in devs {
                s.push_str(&format!("\n  {busid}  {vid:04x}:{pid:04x}"));
                if dfu {
                    s.push_str("  DFU");
                }
                if let Some(n) = name {
                    s.push_str(&format!("  {n}"));
                }
            }
            Ok(s)
        }
    }
}
