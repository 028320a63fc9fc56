//! What the benchmarks share: the synthetic application package, process
//! timing, medians and the set-up diagnostic.

use crate::util::diag::Diag;
use dfukit_firmware as firmware;
use dfukit_nordic::package;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub(super) fn diag(e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::bench::setup",
        e.to_string(),
        "the benchmark needs a writable temporary directory and /dev/ptmx",
    )
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// An unsigned application package (`DIR/app.zip`) of `len` synthetic
/// bytes from `seed`, for hardware version 52 and S140 (0x0100), linked at
/// 0x27000: what the nRF52840 benchmarks send.
pub(super) fn app_package(dir: &Path, len: usize, seed: u32) -> Result<PathBuf, Diag> {
    let fw = dfukit_sim::synthetic::firmware(len, seed);
    let hex = dir.join("app.hex");
    std::fs::write(&hex, firmware::to_intel_hex(&[(0x27000, &fw)])).map_err(diag)?;
    let pkg = dir.join("app.zip");
    package::generate_to_file(
        &package::PackageOptions {
            application: Some(hex),
            application_version: Some(1),
            hw_version: Some(52),
            sd_req: Some(vec![0x0100]),
            ..Default::default()
        },
        &pkg,
    )
    .map_err(diag)?;
    Ok(pkg)
}

/// Runs a host process to completion and returns its wall time.
pub(super) fn timed(mut cmd: Command, who: &str) -> Result<f64, Diag> {
    let start = Instant::now();
    let out = cmd.output().map_err(|e| {
        Diag::new(
            "dfukit::bench::peer",
            format!("cannot run {who}: {e}"),
            "run scripts/install-peers, or pass --nrfutil",
        )
    })?;
    let t = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Diag::new(
            "dfukit::bench::failed",
            format!(
                "{who} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            "a host could not flash the simulated board",
        ));
    }
    Ok(t)
}
