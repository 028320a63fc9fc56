//! `dfukit bench stm32mp`: the whole STM32MP programming flow (ROM code,
//! TF-A, U-Boot stm32prog) for an eMMC layout with a large rootfs, on the
//! simulated STM32MP157 in virtual time, with a USB high-speed link model
//! and eMMC timing; each phase's throughput against the floor the models
//! allow.

use crate::util::diag::Diag;
use clap::Args;
use dfukit_sim::boards::stm32mp1::{
    sample, EmmcConfig, Stm32mp1, Stm32mp1Config, EMMC_USER_IMAGE, ROM_TRANSFER_SIZE,
    UBOOT_TRANSFER_SIZE,
};
use dfukit_sim::links::usb::{SimUsb, UsbLinkModel};
use dfukit_sim::StateDir;
use dfukit_stm32mp::layout::{self, CheckOptions, IpKind};
use dfukit_stm32mp::program::{self, ProgramOptions};
use serde::Serialize;
use std::time::Duration;

/// Options of `bench stm32mp`.
#[derive(Args)]
pub struct Stm32mpBench {
    /// Size of the rootfs image in MiB.
    #[arg(long, default_value_t = 64)]
    rootfs_mib: usize,
}

/// One downloaded binary.
#[derive(Serialize)]
struct PhaseResult {
    id: u8,
    name: String,
    /// Where it went: `ram` for the FSBL and FIP, else the layout's device.
    target: String,
    bytes: u64,
    /// Virtual time from the first request to the end of manifestation.
    achieved_s: f64,
    achieved_mb_s: f64,
    /// The DFU stop-and-wait floor: every DNLOAD block's link time plus its
    /// modelled storage time.
    bound_s: f64,
    bound_mb_s: f64,
    /// bound_s / achieved_s.
    ratio: f64,
}

#[derive(Serialize)]
struct Result {
    link: &'static str,
    link_bytes_per_s: u64,
    emmc_write_bytes_per_s: u64,
    phases: Vec<PhaseResult>,
    /// Whole run, virtual time, including re-enumerations and GPT creation.
    total_s: f64,
    /// Sum of the phases' bounds.
    bound_s: f64,
    /// bound_s / (sum of the phases' achieved times).
    ratio: f64,
}

fn diag(e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::bench::stm32mp",
        format!("benchmark run failed: {e}"),
        "this is a bug in dfukit's simulator or host; please report it with the output",
    )
}

/// The floor for `bytes` sent in blocks of `block` bytes: each DNLOAD's
/// control transfer on the link, then the device's work on the block
/// (`storage`), one after the other as DFU 1.1 requires.
fn bound(
    bytes: u64,
    block: u64,
    link: &UsbLinkModel,
    storage: impl Fn(u64) -> Duration,
) -> Duration {
    let full = bytes / block;
    let rest = bytes % block;
    let mut t = (link.control_transfer_time(block as usize) + storage(block)) * full as u32;
    if rest > 0 {
        t += link.control_transfer_time(rest as usize) + storage(rest);
    }
    t
}

/// Runs `bench stm32mp`.
pub fn run(a: &Stm32mpBench) -> std::result::Result<(), Diag> {
    let dir = tempfile::tempdir().map_err(diag)?;
    let rootfs_len = a.rootfs_mib << 20;
    let (path, rootfs_offset) =
        sample::write_emmc_layout(dir.path(), 16 << 20, rootfs_len).map_err(diag)?;
    let layout_bytes = std::fs::read(&path).map_err(diag)?;
    let layout = layout::load(&path, &CheckOptions::default()).map_err(diag)?;

    let cfg = Stm32mp1Config {
        emmc: Some(EmmcConfig::default()),
        sdcard: None,
        nand: None,
        nor: None,
        ..Stm32mp1Config::default()
    };
    let timing = cfg.timing;
    let state = StateDir::open(dir.path().join("board")).map_err(diag)?;
    let mut board = Stm32mp1::open(&state, Some(cfg)).map_err(diag)?;
    board.use_virtual_time(dfukit_core::Instant::ZERO);
    let link = UsbLinkModel::high_speed();
    let mut usb = SimUsb::new(board, link);
    let summary = program::program(
        &mut usb,
        &layout,
        &layout_bytes,
        &ProgramOptions::default(),
        &mut |_| {},
    )
    .map_err(|e| diag(format!("{e}")))?;

    let mut phases = Vec::new();
    for w in &summary.written {
        let (target, block, storage): (String, u64, Box<dyn Fn(u64) -> Duration>) =
            if w.ip.kind == IpKind::None {
                // FSBL to SYSRAM, FIP to DDR: RAM, no storage time.
                (
                    "ram".into(),
                    u64::from(ROM_TRANSFER_SIZE),
                    Box::new(|_| Duration::ZERO),
                )
            } else {
                (
                    w.ip.to_string(),
                    u64::from(UBOOT_TRANSFER_SIZE),
                    Box::new(move |n| timing.mmc_write(n)),
                )
            };
        let b = bound(w.bytes, block, &link, storage);
        let achieved = w.elapsed.as_secs_f64();
        let mb = |s: f64| w.bytes as f64 / s / 1e6;
        phases.push(PhaseResult {
            id: w.id,
            name: w.name.clone(),
            target,
            bytes: w.bytes,
            achieved_s: achieved,
            achieved_mb_s: mb(achieved),
            bound_s: b.as_secs_f64(),
            bound_mb_s: mb(b.as_secs_f64()),
            ratio: b.as_secs_f64() / achieved,
        });
    }
    // The image really is on the eMMC: a benchmark of a wrong run is no figure.
    let rootfs = std::fs::read(dir.path().join(sample::ROOTFS_FILE)).map_err(diag)?;
    let user = std::fs::File::open(dir.path().join("board").join(EMMC_USER_IMAGE)).map_err(diag)?;
    let mut back = vec![0; rootfs.len()];
    std::os::unix::fs::FileExt::read_exact_at(&user, &mut back, rootfs_offset).map_err(diag)?;
    if back != rootfs {
        return Err(diag("the eMMC does not hold the rootfs"));
    }
    let bound_s: f64 = phases.iter().map(|p| p.bound_s).sum();
    let achieved_s: f64 = phases.iter().map(|p| p.achieved_s).sum();
    let r = Result {
        link: "USB 2.0 high speed, control transfers (64-byte packets, 31 per 125 us microframe)",
        link_bytes_per_s: link.bytes_per_second().unwrap_or(0),
        emmc_write_bytes_per_s: timing.mmc_write_bytes_per_s,
        phases,
        total_s: summary.total.as_secs_f64(),
        bound_s,
        ratio: bound_s / achieved_s,
    };
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&r).expect("serializes"));
        return Ok(());
    }
    println!(
        "STM32MP157 eMMC layout, {} MiB rootfs, virtual time: {} ({:.2} MB/s), eMMC writes {:.0} MB/s",
        a.rootfs_mib,
        r.link,
        r.link_bytes_per_s as f64 / 1e6,
        r.emmc_write_bytes_per_s as f64 / 1e6
    );
    println!("bound per phase = sum over DNLOAD blocks of (link time of the block + storage time of the block)");
    println!(
        "{:<5} {:<10} {:<5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "id", "name", "to", "bytes", "time s", "MB/s", "bound s", "bnd MB/s", "ratio"
    );
    for p in &r.phases {
        println!(
            "{:<#5x} {:<10} {:<5} {:>10} {:>9.3} {:>9.2} {:>9.3} {:>9.2} {:>5.1}%",
            p.id,
            p.name,
            p.target,
            p.bytes,
            p.achieved_s,
            p.achieved_mb_s,
            p.bound_s,
            p.bound_mb_s,
            p.ratio * 100.0
        );
    }
    println!(
        "all phases: {:.3} s achieved vs {:.3} s bound ({:.1}%); whole run incl. re-enumerations {:.3} s",
        achieved_s,
        r.bound_s,
        r.ratio * 100.0,
        r.total_s
    );
    Ok(())
}
