//! dfukit's STM32CubeProgrammer replacement (`dfukit_stm32mp::program`)
//! against the simulated STM32MP157, in virtual time: the whole flow for
//! eMMC, SD-card and NAND layouts, and each fault switch with the diagnosis
//! and the time bound the host keeps.

use dfukit_core::Clock;
use dfukit_core::{synthetic, Instant};
use dfukit_sim::boards::stm32mp1::{
    BootStage, EmmcConfig, NandConfig, SdCardConfig, Stm32mp1, Stm32mp1Config, Stm32mp1Fault,
    EMMC_BOOT1_IMAGE, EMMC_BOOT2_IMAGE, EMMC_USER_IMAGE, SDCARD_IMAGE,
};
use dfukit_sim::links::usb::{SimUsb, UsbLinkModel};
use dfukit_sim::StateDir;
use dfukit_stm32mp::image::{self, WriteParams};
use dfukit_stm32mp::layout::{self, CheckOptions, Layout, Offset};
use dfukit_stm32mp::phase::FIP_TOC_HEADER;
use dfukit_stm32mp::program::{
    self, FailureKind, ProgramError, ProgramEvent, ProgramOptions, ProgramStage, Summary,
};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

const KIB: usize = 1024;

fn data(seed: u32, len: usize) -> Vec<u8> {
    synthetic::bytes(seed).take(len).collect()
}

/// Writes the binaries a layout names and the layout itself into `dir`.
fn write_files(dir: &Path, tsv: &str, files: &[(&str, Vec<u8>)]) -> (Layout, Vec<u8>) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let path = dir.join("FlashLayout.tsv");
    std::fs::write(&path, tsv).unwrap();
    let layout = layout::load(&path, &CheckOptions::default()).expect("valid layout");
    (layout, tsv.as_bytes().to_vec())
}

fn boot_files() -> Vec<(&'static str, Vec<u8>)> {
    let fsbl_usb = image::write(&WriteParams::v1(0x2FFC_2500), &data(1, 100 * KIB));
    let fsbl_flash = image::write(&WriteParams::v1(0x2FFC_2500), &data(2, 120 * KIB));
    let mut fip = FIP_TOC_HEADER.to_le_bytes().to_vec();
    fip.extend(data(3, 700 * KIB));
    vec![
        ("tf-a-usb.stm32", fsbl_usb),
        ("tf-a-flash.stm32", fsbl_flash),
        ("fip.bin", fip),
        ("bootfs.ext4", data(4, 3 * 1024 * KIB + 123)),
        ("rootfs.ext4", data(5, 5 * 1024 * KIB + 7)),
    ]
}

const EMMC_TSV: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ttf-a-usb.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\ttf-a-flash.stm32
P\t0x05\tfsbl2\tBinary\tmmc1\tboot2\ttf-a-flash.stm32
P\t0x08\tfip-a\tFIP\tmmc1\t0x00080000\tfip.bin
PED\t0x09\tfip-b\tFIP\tmmc1\t0x00480000\tnone
P\t0x10\tbootfs\tSystem\tmmc1\t0x00880000\tbootfs.ext4
P\t0x12\trootfs\tFileSystem\tmmc1\t0x04880000\trootfs.ext4
";

const SD_TSV: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ttf-a-usb.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary\tmmc0\t0x00004400\ttf-a-flash.stm32
P\t0x05\tfsbl2\tBinary\tmmc0\t0x00044400\ttf-a-flash.stm32
P\t0x08\tfip-a\tFIP\tmmc0\t0x00084400\tfip.bin
P\t0x10\tbootfs\tSystem\tmmc0\t0x00484400\tbootfs.ext4
P\t0x12\trootfs\tFileSystem\tmmc0\t0x04484400\trootfs.ext4
";

const NAND_TSV: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ttf-a-usb.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary(2)\tnand0\t0x00000000\ttf-a-flash.stm32
P\t0x08\tfip-a\tFIP\tnand0\t0x00200000\tfip.bin
P\t0x10\tubifs\tSystem\tnand0\t0x00600000\trootfs.ext4
";

fn board(dir: &Path, cfg: Stm32mp1Config) -> SimUsb<Stm32mp1> {
    let state = StateDir::open(dir.join("board")).unwrap();
    let mut b = Stm32mp1::open(&state, Some(cfg)).unwrap();
    b.use_virtual_time(Instant::ZERO);
    SimUsb::new(b, UsbLinkModel::high_speed())
}

fn emmc_only() -> Stm32mp1Config {
    Stm32mp1Config {
        emmc: Some(EmmcConfig::default()),
        ..Stm32mp1Config::bare()
    }
}

/// Programs `tsv` (with the boot files) onto a board built from `cfg` and
/// requires success; the layout, the cable and the summary.
fn program_ok(dir: &Path, tsv: &str, cfg: Stm32mp1Config) -> (Layout, SimUsb<Stm32mp1>, Summary) {
    let (layout, bytes) = write_files(dir, tsv, &boot_files());
    let mut usb = board(dir, cfg);
    let (r, _) = run(&mut usb, &layout, &bytes);
    let summary = r.unwrap_or_else(|e| panic!("{e}\n{:?}", e.causes()));
    (layout, usb, summary)
}

fn run(
    usb: &mut SimUsb<Stm32mp1>,
    layout: &Layout,
    bytes: &[u8],
) -> (Result<Summary, ProgramError>, Vec<ProgramEvent>) {
    let mut events = Vec::new();
    let r = program::program(usb, layout, bytes, &ProgramOptions::default(), &mut |e| {
        events.push(e)
    });
    (r, events)
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0; len];
    f.read_exact_at(&mut b, offset).unwrap();
    b
}

/// The GPT entries of the disk image `path`, in entry order.
fn gpt_partitions(path: &Path) -> Vec<gpt::partition::Partition> {
    let disk = gpt::GptConfig::new().writable(false).open(path).unwrap();
    disk.partitions().values().cloned().collect()
}

/// Every downloaded row's bytes are where the layout says, in `image`.
fn assert_partitions_hold_binaries(layout: &Layout, board_dir: &Path, user_image: &str) {
    for p in layout
        .partitions
        .iter()
        .filter(|p| p.opt.downloads() && p.ip.is_flash())
    {
        let bin = std::fs::read(p.binary.as_ref().unwrap()).unwrap();
        let (file, off) = match p.offset {
            Offset::Boot1 => (EMMC_BOOT1_IMAGE, 0),
            Offset::Boot2 => (EMMC_BOOT2_IMAGE, 0),
            Offset::Bytes(b) => (user_image, b),
        };
        assert_eq!(
            read_at(&board_dir.join(file), off, bin.len()),
            bin,
            "partition {} in {file}",
            p.name
        );
    }
}

#[test]
fn emmc_layout_is_programmed_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, bytes) = write_files(dir.path(), EMMC_TSV, &boot_files());
    let mut usb = board(dir.path(), emmc_only());
    let (r, events) = run(&mut usb, &layout, &bytes);
    let summary = r.unwrap_or_else(|e| panic!("{e}\n{:?}", e.causes()));
    // Every P row without E was written, in Id order, FSBL and FIP first.
    let ids: Vec<u8> = summary.written.iter().map(|w| w.id).collect();
    assert_eq!(ids, [0x01, 0x03, 0x04, 0x05, 0x08, 0x10, 0x12]);
    let stages: Vec<ProgramStage> = summary.stages.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        stages,
        [
            ProgramStage::Rom,
            ProgramStage::TfA,
            ProgramStage::UBootLayout,
            ProgramStage::UBootProgram
        ]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgramEvent::Progress { id: 0x12, done, total } if done == total)));
    let b = usb.device();
    let b = b.lock().unwrap();
    assert_eq!(b.stage(), BootStage::Done);
    assert!(b.model_errors().is_empty(), "{:?}", b.model_errors());
    let board_dir = dir.path().join("board");
    assert_partitions_hold_binaries(&layout, &board_dir, EMMC_USER_IMAGE);
    // The GPT U-Boot wrote: one entry per row on mmc1 except boot1/boot2.
    let parts = gpt_partitions(&board_dir.join(EMMC_USER_IMAGE));
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fip-a", "fip-b", "bootfs", "rootfs"]);
    assert_eq!(parts[0].first_lba, 0x80000 / 512);
    assert_eq!(parts[0].last_lba, 0x480000 / 512 - 1);
    assert_eq!(parts[2].first_lba, 0x880000 / 512);
    // rootfs on mmc1 gets U-Boot's fixed GUID for the eMMC (ROOTFS_MMC1_UUID),
    // fip-a the FWU bank A GUID.
    assert_eq!(
        parts[3].part_guid.to_string(),
        "491f6117-415d-4f53-88c9-6e0de54deac6"
    );
    assert_eq!(
        parts[0].part_guid.to_string(),
        "4fd84c93-54ef-463f-a7ef-ae25ff887087"
    );
    // bootfs is `System`: legacy-bootable attribute.
    assert_ne!(parts[2].flags & (1 << 2), 0);
    assert_eq!(
        parts[3].part_type_guid.guid.to_string().to_uppercase(),
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    );
}

#[test]
fn sd_card_layout_is_programmed_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Stm32mp1Config {
        sdcard: Some(SdCardConfig::default()),
        ..Stm32mp1Config::bare()
    };
    let (layout, _usb, summary) = program_ok(dir.path(), SD_TSV, cfg);
    assert_eq!(summary.written.len(), 7);
    let board_dir = dir.path().join("board");
    assert_partitions_hold_binaries(&layout, &board_dir, SDCARD_IMAGE);
    let first = gpt_partitions(&board_dir.join(SDCARD_IMAGE))[0].clone();
    // fsbl1 at LBA 34, as ST's SD cards have it.
    assert_eq!((first.name.as_str(), first.first_lba), ("fsbl1", 34));
}

#[test]
fn nand_layout_skips_bad_blocks_and_copies_the_fsbl() {
    let dir = tempfile::tempdir().unwrap();
    let block = 256 * 1024u64;
    let cfg = Stm32mp1Config {
        // A block in the middle of ubifs is bad from the factory.
        nand: Some(NandConfig {
            factory_bad_blocks: vec![30],
            ..NandConfig::default()
        }),
        ..Stm32mp1Config::bare()
    };
    let (_layout, usb, summary) = program_ok(dir.path(), NAND_TSV, cfg);
    assert_eq!(summary.written.len(), 5);
    let b = usb.device();
    let b = b.lock().unwrap();
    assert!(b.model_errors().is_empty(), "{:?}", b.model_errors());
    assert_eq!(b.nand_bad_blocks(), vec![30]);
    let fsbl = std::fs::read(dir.path().join("tf-a-flash.stm32")).unwrap();
    // Binary(2): the FSBL at 0 and again right after it, rounded up to a
    // whole erase block (U-Boot's stm32prog_copy_fsbl).
    assert_eq!(b.read_nand(0, fsbl.len()).unwrap(), fsbl);
    assert_eq!(b.read_nand(block, fsbl.len()).unwrap(), fsbl);
    // ubifs starts at block 24; block 30 is skipped, so the data from its
    // position on sits one block later.
    let rootfs = std::fs::read(dir.path().join("rootfs.ext4")).unwrap();
    let before = (30 - 24) * block as usize;
    assert_eq!(b.read_nand(24 * block, before).unwrap(), rootfs[..before]);
    assert_eq!(
        b.read_nand(31 * block, rootfs.len() - before).unwrap(),
        rootfs[before..]
    );
}

/// Programs the boot files on an eMMC-only board with `fault`, with default
/// options, which must fail. Returns the state directory (the board's
/// files live there), the error, the board and the options.
fn program_with_fault(
    fault: Stm32mp1Fault,
) -> (
    tempfile::TempDir,
    ProgramError,
    SimUsb<Stm32mp1>,
    ProgramOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let (layout, bytes) = write_files(dir.path(), EMMC_TSV, &boot_files());
    let mut cfg = emmc_only();
    cfg.fault = Some(fault);
    let mut usb = board(dir.path(), cfg);
    let opts = ProgramOptions::default();
    let e = program::program(&mut usb, &layout, &bytes, &opts, &mut |_| {}).unwrap_err();
    (dir, e, usb, opts)
}

/// The user report: TF-A never answers after the ROM hands over. dfukit
/// stops within its bound, names the stage and the likely causes.
#[test]
fn tf_a_that_never_answers_is_diagnosed_within_the_bound() {
    let (_dir, e, usb, opts) = program_with_fault(Stm32mp1Fault::TfaNoUsb);
    assert_eq!(e.stage, ProgramStage::TfA);
    assert!(matches!(e.kind, FailureKind::TfaSilent { .. }), "{e}");
    assert_eq!(e.code(), "dfukit::stm32mp::tfa_silent");
    let text = format!("{e} {} {}", e.help(), e.causes().join(" "));
    for needle in ["UART", "usb", "DDR", "PMIC", "OTG"] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
    assert!(e.last_report.is_some());
    // Bounded: the TF-A budget plus one transfer timeout, not minutes.
    let bound = opts.tfa_timeout + opts.transfer_timeout;
    assert!(
        e.elapsed <= bound + Duration::from_secs(2),
        "took {:?}",
        e.elapsed
    );
    assert!(usb.now().as_micros() <= (bound + Duration::from_secs(3)).as_micros() as u64);
}

#[test]
fn u_boot_that_never_reconnects_is_diagnosed_within_the_bound() {
    let (_dir, e, _usb, opts) = program_with_fault(Stm32mp1Fault::UbootNoReconnect);
    assert!(
        matches!(e.kind, FailureKind::UbootNoReconnect { .. }),
        "{e}"
    );
    let text = format!("{e} {} {}", e.help(), e.causes().join(" "));
    assert!(text.contains("force-b-session-valid"), "{text}");
    assert!(e.elapsed <= Duration::from_secs(60), "took {:?}", e.elapsed);
    assert!(e.elapsed >= opts.reenumerate_timeout);
}

#[test]
fn partition_too_small_for_its_image_names_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, bytes) = write_files(dir.path(), EMMC_TSV, &boot_files());
    // rootfs starts at 0x4880000 (72.5 MiB); a 75 MiB eMMC leaves it about
    // 2.5 MiB minus the backup GPT, less than its 5 MiB image.
    let mut cfg = emmc_only();
    cfg.emmc = Some(EmmcConfig {
        size: 75 << 20,
        ..EmmcConfig::default()
    });
    let mut usb = board(dir.path(), cfg);
    let (r, _) = run(&mut usb, &layout, &bytes);
    let e = r.unwrap_err();
    assert_eq!(e.stage, ProgramStage::UBootProgram);
    assert_eq!(e.partition.as_ref().map(|p| p.0), Some(0x12), "{e}");
    let FailureKind::DeviceReported { message, .. } = &e.kind else {
        panic!("{e}");
    };
    assert!(message.contains("rootfs"), "{message}");
    let causes = e.causes().join(" ");
    assert!(causes.contains("enlarge it in the TSV"), "{causes}");
    let b = usb.device();
    assert!(b.lock().unwrap().phase_error().is_some());
}

#[test]
fn nand_erase_failure_is_reported_with_the_device_message() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, bytes) = write_files(dir.path(), NAND_TSV, &boot_files());
    let cfg = Stm32mp1Config {
        emmc: None,
        sdcard: None,
        nand: Some(NandConfig::default()),
        nor: None,
        fault: Some(Stm32mp1Fault::NandEraseFailure { after: 10 }),
        ..Stm32mp1Config::default()
    };
    let mut usb = board(dir.path(), cfg);
    let (r, _) = run(&mut usb, &layout, &bytes);
    let e = r.unwrap_err();
    assert_eq!(e.stage, ProgramStage::UBootProgram);
    let FailureKind::DeviceReported { message, .. } = &e.kind else {
        panic!("{e}");
    };
    assert!(
        message.contains("nand0") || message.contains("erase"),
        "{message}"
    );
    // Reported when U-Boot gives up, within the partition's bounded waits.
    assert!(e.elapsed < Duration::from_secs(60), "took {:?}", e.elapsed);
    let causes = e.causes().join(" ").to_lowercase();
    assert!(causes.contains("erase"), "{e}: {causes}");
}

/// Same inputs, same virtual timeline: the simulation is deterministic.
#[test]
fn two_runs_take_the_same_virtual_time() {
    let mut totals = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let (layout, bytes) = write_files(dir.path(), EMMC_TSV, &boot_files());
        let mut usb = board(dir.path(), emmc_only());
        let (r, _) = run(&mut usb, &layout, &bytes);
        let s = r.unwrap();
        totals.push((s.total, usb.now()));
    }
    assert_eq!(totals[0], totals[1]);
}

/// Brings the board through ROM code, TF-A and U-Boot's layout stage with
/// `tsv`, the way a host that stopped half-way would have left it.
fn leave_in_programming_stage(usb: &mut SimUsb<Stm32mp1>, dir: &Path, tsv: &str) {
    use dfukit_stm32mp::connect::Connector;
    use dfukit_stm32mp::phase::{find_alt, ID_FLASHLAYOUT, ID_FSBL, ID_SSBL};
    use dfukit_usbdfu::host::probe::probe;
    use dfukit_usbdfu::host::DfuHost;
    let step = |usb: &mut SimUsb<Stm32mp1>, id: u8, bytes: &[u8]| {
        let mut t = usb.connect(Duration::from_secs(5)).unwrap();
        let dfu = probe(&mut t).unwrap();
        let alt = find_alt(dfu.alts.iter().map(|(a, n)| (*a, n.as_str())), id).unwrap();
        let mut host = DfuHost::new(t, 0, dfu.functional, Default::default());
        host.set_alt(alt).unwrap();
        host.download(bytes, &mut |_| {}).unwrap();
        host
    };
    step(
        usb,
        ID_FSBL,
        &std::fs::read(dir.join("tf-a-usb.stm32")).unwrap(),
    );
    step(usb, ID_SSBL, &std::fs::read(dir.join("fip.bin")).unwrap())
        .detach()
        .unwrap();
    step(usb, ID_FLASHLAYOUT, tsv.as_bytes()).detach().unwrap();
}

/// A board still holding an earlier run's layout programs that layout's
/// rows and reports END: dfukit must not call that a success for this one.
#[test]
fn end_without_this_layouts_rows_is_not_success() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, bytes) = write_files(dir.path(), EMMC_TSV, &boot_files());
    // The earlier run's layout: only fsbl1.
    let earlier: String = EMMC_TSV
        .lines()
        .filter(|l| !l.starts_with('P') || l.contains("fsbl1"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut usb = board(dir.path(), emmc_only());
    leave_in_programming_stage(&mut usb, dir.path(), &earlier);
    let (r, _) = run(&mut usb, &layout, &bytes);
    let e = r.unwrap_err();
    let FailureKind::NotAllWritten { missing } = &e.kind else {
        panic!("{e}");
    };
    assert!(missing.iter().any(|m| m.contains("rootfs")), "{missing:?}");
    assert!(!missing.iter().any(|m| m.contains("fsbl1")), "{missing:?}");
    assert_eq!(e.code(), "dfukit::stm32mp::not_all_written");
}
