//! `dfukit bench stm32mp`: the whole STM32MP programming flow (ROM code,
//! TF-A, U-Boot stm32prog) for an eMMC layout with a large rootfs, on the
//! simulated STM32MP157 in virtual time, with a USB high-speed link model
//! and eMMC timing; each phase's throughput against the floor the models
//! allow.

use super::diag::Diag;
use clap::Args;
use dfukit_sim::stm32mp1::{
    EmmcConfig, Stm32mp1, Stm32mp1Config, ROM_TRANSFER_SIZE, UBOOT_TRANSFER_SIZE,
};
use dfukit_sim::usb_link::{SimUsb, UsbLinkModel};
use dfukit_sim::StateDir;
use dfukit_stm32mp::image::{self, WriteParams};
use dfukit_stm32mp::layout::{self, CheckOptions, IpKind};
use dfukit_stm32mp::phase::FIP_TOC_HEADER;
use dfukit_stm32mp::program::{self, Options};
use serde::Serialize;
use std::time::Duration;

/// Options of `bench stm32mp`.
#[derive(Args)]
pub struct Stm32mpBench {
    /// Size of the rootfs image in MiB.
    #[arg(long, default_value_t = 64)]
    rootfs_mib: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
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

fn data(seed: u32, len: usize) -> Vec<u8> {
    dfukit_core::synthetic::bytes(seed).take(len).collect()
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
    let mut fip = FIP_TOC_HEADER.to_le_bytes().to_vec();
    fip.extend(data(3, (1 << 20) + 123 * 1024));
    // Sizes of an OpenSTLinux build: TF-A ~230 KiB, FIP ~1.1 MiB, bootfs
    // 16 MiB (kernel, DTBs, initrd).
    let files: [(&str, Vec<u8>); 5] = [
        (
            "tf-a-usb.stm32",
            image::write(&WriteParams::v1(0x2FFC_2500), &data(1, 230 * 1024)),
        ),
        (
            "tf-a-emmc.stm32",
            image::write(&WriteParams::v1(0x2FFC_2500), &data(2, 230 * 1024)),
        ),
        ("fip.bin", fip),
        ("bootfs.ext4", data(4, 16 << 20)),
        ("rootfs.ext4", data(5, rootfs_len)),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).map_err(diag)?;
    }
    // userfs is created empty (E): the rootfs needs a next row to end at.
    let rootfs_end = 0x0280_0000u64 + ((rootfs_len as u64 + (1 << 20)) & !0xF_FFFF);
    let tsv = format!(
        "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ttf-a-usb.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\ttf-a-emmc.stm32
P\t0x05\tfsbl2\tBinary\tmmc1\tboot2\ttf-a-emmc.stm32
P\t0x08\tfip-a\tFIP\tmmc1\t0x00080000\tfip.bin
P\t0x10\tbootfs\tSystem\tmmc1\t0x00800000\tbootfs.ext4
P\t0x12\trootfs\tFileSystem\tmmc1\t0x02800000\trootfs.ext4
PE\t0x13\tuserfs\tFileSystem\tmmc1\t{rootfs_end:#010x}\tnone
"
    );
    let path = dir.path().join("FlashLayout_emmc.tsv");
    std::fs::write(&path, &tsv).map_err(diag)?;
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
        tsv.as_bytes(),
        &Options::default(),
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
    let rootfs = &files[4].1;
    let user = std::fs::File::open(
        dir.path()
            .join("board")
            .join(dfukit_sim::stm32mp1::EMMC_USER_IMAGE),
    )
    .map_err(diag)?;
    let mut back = vec![0; rootfs.len()];
    std::os::unix::fs::FileExt::read_exact_at(&user, &mut back, 0x0280_0000).map_err(diag)?;
    if &back != rootfs {
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
    if a.json {
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
