//! `bench serial`: Secure DFU over a pty, dfukit's host against nrfutil's.

use super::fixtures::{app_package, diag, median, timed};
use crate::util::diag::Diag;
use clap::Args;
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::links::pty::ServedBoard;
use dfukit_sim::Storage;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Args)]
pub struct SerialBench {
    /// Application size in KiB.
    #[arg(long, default_value_t = 512)]
    size_kib: usize,
    /// Repetitions of each host (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The nrfutil executable (default: $DFUKIT_NRFUTIL, else target/peers/nrfutil-venv/bin/nrfutil).
    #[arg(long)]
    nrfutil: Option<PathBuf>,
}

#[derive(Serialize)]
struct SerialResult {
    image_bytes: usize,
    runs: usize,
    dfukit_s: f64,
    nrfutil_s: Option<f64>,
    nrfutil_fixed_wait_s: f64,
    ratio: Option<f64>,
    dfukit_kb_s: f64,
    board_cpu_ms_per_mib: f64,
}

fn board() -> Result<ServedBoard, Diag> {
    let cfg = BoardConfig {
        bank1: Bank1::Qspi,
        flash_timing: false,
        // Unsigned packages: both hosts send the same bytes, no key needed.
        public_key: None,
        ..BoardConfig::default()
    };
    let b = Nrf52840::new(
        cfg,
        Storage::in_memory(1 << 20),
        Storage::in_memory(8 << 20),
    )
    .map_err(diag)?;
    let s = ServedBoard::spawn(b).map_err(diag)?;
    std::thread::sleep(Duration::from_millis(20));
    Ok(s)
}

fn nrfutil_path(arg: Option<PathBuf>) -> Option<PathBuf> {
    arg.or_else(|| std::env::var_os("DFUKIT_NRFUTIL").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("target/peers/nrfutil-venv/bin/nrfutil")))
        .filter(|p| p.exists())
}

/// nrfutil polls for a USB device behind the port for `-t` seconds before
/// opening it (`__ensure_bootloader`); on a pty it never finds one. With
/// `-t 1` that is about 1 s of every run, reported separately.
const NRFUTIL_PORT_WAIT_S: f64 = 1.0;

/// Runs `bench serial`.
pub fn run(a: SerialBench) -> Result<(), Diag> {
    let dir = tempfile::tempdir().map_err(diag)?;
    let len = a.size_kib * 1024;
    let pkg = app_package(dir.path(), len, 0x1234_5678)?;

    // Both hosts run as processes, timed from spawn to exit, so that start-up
    // and package loading count for both.
    let me = std::env::current_exe().map_err(diag)?;
    let mut ours = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..a.runs {
        let b = board()?;
        let mut cmd = Command::new(&me);
        cmd.args(["nordic", "dfu", "serial", "--package"])
            .arg(&pkg)
            .arg("--port")
            .arg(b.path());
        ours.push(timed(cmd, "dfukit")?);
        let (board, board_cpu) = b.stop().map_err(diag)?;
        check_installed(&board_state(board), len)?;
        cpu.push(board_cpu.as_secs_f64() * 1000.0 / (len as f64 / (1 << 20) as f64));
    }
    let nrfutil = nrfutil_path(a.nrfutil);
    let theirs = match &nrfutil {
        Some(path) => {
            let mut v = Vec::new();
            for _ in 0..a.runs {
                let b = board()?;
                v.push(run_nrfutil(path, &pkg, b.path())?);
                let (board, _) = b.stop().map_err(diag)?;
                check_installed(&board_state(board), len)?;
            }
            Some(median(v))
        }
        None => {
            if std::env::var("DFUKIT_REQUIRE_PEERS").as_deref() == Ok("1") {
                return Err(Diag::new(
                    "dfukit::bench::peer_missing",
                    "nrfutil not found",
                    "run scripts/install-peers or pass --nrfutil",
                ));
            }
            None
        }
    };
    let d = median(ours);
    let r = SerialResult {
        image_bytes: len,
        runs: a.runs,
        dfukit_s: d,
        nrfutil_s: theirs,
        nrfutil_fixed_wait_s: NRFUTIL_PORT_WAIT_S,
        ratio: theirs.map(|t| t / d),
        dfukit_kb_s: len as f64 / 1000.0 / d,
        board_cpu_ms_per_mib: median(cpu),
    };
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&r).expect("serializes"));
    } else {
        println!(
            "Secure DFU over a pty, {} KiB application, flash timing off, median of {} runs",
            a.size_kib, a.runs
        );
        println!(
            "  dfukit host:  {:.3} s ({:.0} kB/s)",
            r.dfukit_s, r.dfukit_kb_s
        );
        match (r.nrfutil_s, r.ratio) {
            (Some(t), Some(ratio)) => {
                println!("  nrfutil host: {t:.3} s (of which ~{NRFUTIL_PORT_WAIT_S:.1} s is its USB-device poll before opening the port)");
                println!(
                    "  ratio nrfutil/dfukit: {ratio:.1}x (excluding nrfutil's port poll: {:.1}x)",
                    (t - NRFUTIL_PORT_WAIT_S).max(0.0) / r.dfukit_s
                );
            }
            _ => println!("  nrfutil: not found (pass --nrfutil)"),
        }
        println!(
            "  simulated board CPU: {:.1} ms per MiB received",
            r.board_cpu_ms_per_mib
        );
    }
    Ok(())
}

fn board_state(mut b: Nrf52840) -> dfukit_sim::boards::nrf52840::Inspection {
    b.inspect()
}

fn check_installed(ins: &dfukit_sim::boards::nrf52840::Inspection, len: usize) -> Result<(), Diag> {
    if ins.app_valid && ins.app_size as usize == len {
        Ok(())
    } else {
        Err(Diag::new(
            "dfukit::bench::failed",
            format!("the board does not hold the benchmark image: {ins:?}"),
            "a benchmark run failed; rerun with fewer runs to see the error",
        ))
    }
}

fn run_nrfutil(nrfutil: &Path, pkg: &Path, port: &Path) -> Result<f64, Diag> {
    let mut cmd = Command::new(nrfutil);
    cmd.args(["dfu", "serial", "-pkg"])
        .arg(pkg)
        .arg("-p")
        .arg(port)
        .args(["-t", "1", "-fc", "0"]);
    timed(cmd, "nrfutil")
}
