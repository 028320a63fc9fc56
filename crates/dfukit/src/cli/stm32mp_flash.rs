//! `dfukit stm32mp flash`: the STM32CubeProgrammer TSV flashing job over
//! USB/IP or local USB, with progress, a summary table and, when the board
//! stops answering, a bounded diagnosis.

use super::diag::Diag;
use super::progress;
use super::usb::{dfu_devices, AnyTransfer, Target};
use clap::Args;
use dfukit_stm32mp::connect::{ConnectError, Connector};
use dfukit_stm32mp::phase::{USB_PID, USB_VID};
use dfukit_stm32mp::program::{self, Event, Options, ProgramError, Summary};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `stm32mp flash`.
#[derive(Args)]
pub struct FlashArgs {
    /// The flashlayout (.tsv); binaries are found relative to it.
    pub layout: PathBuf,
    /// USB/IP server HOST[:PORT] the board is exported on (a simulated
    /// board from `dfukit sim stm32mp1`, or usbipd); without it, local USB.
    #[arg(long, env = "DFUKIT_USBIP")]
    pub usbip: Option<String>,
    /// Serial number of the board, when several are connected.
    #[arg(short = 'S', long)]
    pub serial: Option<String>,
    /// Seconds to wait for the board to appear at the start.
    #[arg(long, default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// Seconds one control transfer may take.
    #[arg(long, default_value_t = 2.0)]
    pub transfer_timeout: f64,
    /// Seconds TF-A may take to answer after the ROM code starts it.
    #[arg(long, default_value_t = 10.0)]
    pub tfa_timeout: f64,
    /// Seconds U-Boot may take to come back on USB after a DETACH.
    #[arg(long, default_value_t = 15.0)]
    pub reenumerate_timeout: f64,
}

/// Finds the board (0483:df11) again after each re-enumeration, by polling
/// the USB/IP server's device list or the local bus.
struct CliConnector {
    target: Target,
    start: Instant,
}

impl Connector for CliConnector {
    type Transport = AnyTransfer;

    fn connect(&mut self, timeout: Duration) -> Result<AnyTransfer, ConnectError> {
        let deadline = Instant::now() + timeout;
        let mut last_error: Option<String>;
        loop {
            // An error can be passing (the server restarting, udev not yet
            // done with a re-enumerated device's permissions): retried
            // until the deadline, then reported.
            match dfu_devices(&self.target) {
                Ok(mut found) if !found.is_empty() => return Ok(found.remove(0).transfer),
                Ok(_) => last_error = None,
                Err(d) => last_error = Some(d.message),
            }
            if Instant::now() >= deadline {
                return Err(match last_error {
                    Some(m) => ConnectError::Io(m),
                    None => ConnectError::NotFound { waited: timeout },
                });
            }
            // Enumeration takes hundreds of milliseconds; polling faster
            // only loads the server.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

fn secs(s: f64, what: &str) -> Result<Duration, Diag> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        Diag::new(
            "dfukit::stm32mp::flash::option",
            format!("--{what} {s}: not a number of seconds"),
            "give a positive number, e.g. 2 or 0.5",
        )
    })
}

/// Runs `stm32mp flash`.
pub fn flash(a: &FlashArgs) -> Result<(), Diag> {
    let layout = super::stm32mp::load(&a.layout).map_err(|mut d| {
        d.message.push_str("; nothing was sent to the board");
        d
    })?;
    let layout_bytes = std::fs::read(&a.layout).map_err(|e| {
        Diag::new(
            "dfukit::stm32mp::layout",
            format!("cannot read {}: {e}", a.layout.display()),
            "check the path",
        )
    })?;
    let opts = Options {
        connect_timeout: secs(a.connect_timeout, "connect-timeout")?,
        transfer_timeout: secs(a.transfer_timeout, "transfer-timeout")?,
        tfa_timeout: secs(a.tfa_timeout, "tfa-timeout")?,
        reenumerate_timeout: secs(a.reenumerate_timeout, "reenumerate-timeout")?,
    };
    let mut conn = CliConnector {
        target: Target {
            usbip: a.usbip.clone(),
            device: Some(format!("{USB_VID:04x}:{USB_PID:04x}")),
            serial: a.serial.clone(),
            path: None,
        },
        start: Instant::now(),
    };
    let mut bar: Option<ProgressBar> = None;
    let mut on_event = |e: Event| match e {
        Event::StageStarted { stage } => eprintln!("== {stage}"),
        Event::Connected { stage, alts } => {
            eprintln!("   connected: {stage}, {alts} alternate settings")
        }
        Event::Reconnecting { stage } => eprintln!("   waiting for the board: {stage}"),
        Event::PhaseRead { record, .. } => eprintln!("   device reports {record}"),
        Event::PartitionStarted { id, name, total } => {
            bar = Some(progress::bar(total, &format!("{id:#04x} {name}")));
        }
        Event::Progress { done, .. } => {
            if let Some(b) = &bar {
                b.set_position(done);
            }
        }
        Event::PartitionDone { .. } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    };
    let result = program::program(&mut conn, &layout, &layout_bytes, &opts, &mut on_event);
    if let Some(b) = bar.take() {
        b.abandon();
    }
    match result {
        Ok(summary) => {
            print_summary(&summary);
            Ok(())
        }
        Err(e) => Err(diagnosis(&e)),
    }
}

fn print_summary(s: &Summary) {
    println!(
        "{:<5} {:<16} {:<9} {:>12} {:>12} {:>8} {:>9}",
        "id", "partition", "device", "offset", "bytes", "time", "MB/s"
    );
    for w in &s.written {
        println!(
            "{:<#5x} {:<16} {:<9} {:>12} {:>12} {:>7.2}s {:>9}",
            w.id,
            w.name,
            w.ip.to_string(),
            w.offset.to_string(),
            w.bytes,
            w.elapsed.as_secs_f64(),
            w.bytes_per_second()
                .map_or("-".into(), |b| format!("{:.2}", b / 1e6)),
        );
    }
    for (stage, d) in &s.stages {
        println!("{stage}: {:.2} s", d.as_secs_f64());
    }
    println!(
        "done: {} bytes in {} partitions, {:.2} s",
        s.bytes(),
        s.written.len(),
        s.total.as_secs_f64()
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
