//! The simulated STM32MP157 driven over a virtual USB cable by dfukit's
//! DFU host, through the three firmwares: ROM code, TF-A, U-Boot stm32prog.
//!
//! The driver here is deliberately small (probe, select alt, download,
//! read 0xF1, detach, reconnect), as STM32CubeProgrammer's USB flow is.

use dfukit_core::Clock;
use dfukit_core::{synthetic, Instant};
use dfukit_sim::boards::stm32mp1::{
    BootStage, EmmcConfig, NandConfig, NorConfig, Stm32mp1, Stm32mp1Config, Stm32mp1Fault,
    EMMC_BOOT1_IMAGE, EMMC_BOOT2_IMAGE, EMMC_USER_IMAGE, NOR_IMAGE, OTP_IMAGE,
};
use dfukit_sim::links::usb::{SimTransport, SimUsb, UsbLinkModel};
use dfukit_sim::StateDir;
use dfukit_stm32mp::connect::{ConnectError, Connector};
use dfukit_stm32mp::image::{self, WriteParams};
use dfukit_stm32mp::phase::{self, PhaseRecord, FIP_TOC_HEADER, PHASE_END, PHASE_ERROR};
use dfukit_usbdfu::host::probe::{probe, DfuInterface};
use dfukit_usbdfu::host::{DfuHost, DfuHostError, DfuOptions, TransferError};
use dfukit_usbdfu::wire::Status;
use std::os::unix::fs::FileExt;
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn data(seed: u32, len: usize) -> Vec<u8> {
    synthetic::bytes(seed).take(len).collect()
}

/// A TF-A image with a valid v1 STM32 header.
fn fsbl() -> Vec<u8> {
    image::write(&WriteParams::v1(0x2FFC_2500), &data(1, 90 * 1024))
}

/// A FIP: the ToC header, then anything.
fn fip(len: usize) -> Vec<u8> {
    let mut f = FIP_TOC_HEADER.to_le_bytes().to_vec();
    f.extend(data(2, len - 4));
    f
}

/// The host side: a connector and the open DFU interface.
struct Driver {
    usb: SimUsb<Stm32mp1>,
    host: Option<DfuHost<SimTransport<Stm32mp1>>>,
    dfu: Option<DfuInterface>,
}

impl Driver {
    fn new(dir: &std::path::Path, cfg: Stm32mp1Config) -> Driver {
        let state = StateDir::open(dir).unwrap();
        let mut board = Stm32mp1::open(&state, Some(cfg)).unwrap();
        board.use_virtual_time(Instant::ZERO);
        Driver {
            usb: SimUsb::new(board, UsbLinkModel::high_speed()),
            host: None,
            dfu: None,
        }
    }

    fn board<R>(&self, f: impl FnOnce(&Stm32mp1) -> R) -> R {
        f(&self.usb.device().lock().unwrap())
    }

    fn connect(&mut self) -> Result<(), ConnectError> {
        let mut t = self.usb.connect(Duration::from_secs(5))?;
        let dfu = probe(&mut t).expect("probe");
        let opts = DfuOptions {
            timeout: Duration::from_secs(5),
            ..DfuOptions::default()
        };
        self.host = Some(DfuHost::new(
            t,
            u16::from(dfu.interface),
            dfu.functional,
            opts,
        ));
        self.dfu = Some(dfu);
        Ok(())
    }

    fn host(&mut self) -> &mut DfuHost<SimTransport<Stm32mp1>> {
        self.host.as_mut().expect("connected")
    }

    fn alt_names(&self) -> Vec<String> {
        let dfu = self.dfu.as_ref().expect("connected");
        dfu.alts.iter().map(|(_, n)| n.clone()).collect()
    }

    fn alt_of(&self, id: u8) -> u8 {
        let dfu = self.dfu.as_ref().expect("connected");
        phase::find_alt(dfu.alts.iter().map(|(a, n)| (*a, n.as_str())), id)
            .unwrap_or_else(|| panic!("no alt for {id:#04x} in {:?}", dfu.alts))
    }

    fn read_phase(&mut self) -> Result<PhaseRecord, DfuHostError> {
        let alt = self.alt_of(phase::ID_CMD);
        self.host().set_alt(alt)?;
        let b = self.host().upload(Some(512), &mut |_| {})?;
        Ok(PhaseRecord::decode(&b).expect("phase record"))
    }

    fn download(&mut self, id: u8, image: &[u8]) -> Result<(), DfuHostError> {
        let alt = self.alt_of(id);
        self.host().set_alt(alt)?;
        self.host().download(image, &mut |_| {})
    }

    /// Downloads `image` to partition `id` and asserts that the device
    /// refuses it with `status`.
    fn download_refused(&mut self, id: u8, image: &[u8], status: Status) {
        let err = self.download(id, image).unwrap_err();
        assert!(
            matches!(err, DfuHostError::Device { status: s, .. } if s == status),
            "{err}"
        );
    }

    fn upload(&mut self, id: u8) -> Vec<u8> {
        let alt = self.alt_of(id);
        self.host().set_alt(alt).unwrap();
        self.host().upload(None, &mut |_| {}).unwrap()
    }

    fn detach(&mut self) {
        self.host().detach().unwrap();
        self.host = None;
    }

    /// ROM → TF-A → U-Boot's first enumeration.
    fn boot_to_uboot(&mut self) {
        self.connect().unwrap();
        let r = self.read_phase().unwrap();
        assert_eq!(r.phase, phase::ID_FSBL);
        self.download(phase::ID_FSBL, &fsbl()).unwrap();
        assert_eq!(self.board(|b| b.stage()), BootStage::TfA);
        let r = self.read_phase().unwrap();
        assert_eq!((r.phase, r.address), (phase::ID_SSBL, 0xC000_0000));
        self.download(phase::ID_SSBL, &fip(300 * 1024)).unwrap();
        assert!(self.read_phase().unwrap().detach_requested());
        self.detach();
        assert!(!self.board(dfukit_usbip::UsbDevice::attached));
        self.connect().unwrap();
        assert_eq!(self.board(|b| b.stage()), BootStage::UBootLayout);
        let r = self.read_phase().unwrap();
        assert_eq!((r.phase, r.extra.as_slice()), (0, &[0u8][..]));
    }

    /// Sends the layout, checks it was accepted, detaches and reconnects.
    fn send_layout(&mut self, tsv: impl AsRef<[u8]>) {
        self.download(phase::ID_FLASHLAYOUT, tsv.as_ref()).unwrap();
        let r = self.read_phase().unwrap();
        assert_eq!(r.phase, 0, "layout refused: {r}");
        assert_eq!(r.extra, [1]);
        self.detach();
        self.connect().unwrap();
        assert_eq!(self.board(|b| b.stage()), BootStage::UBootProgram);
    }

    /// The stm32prog loop: read the phase, send that partition, until END.
    fn program(&mut self, files: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut order = Vec::new();
        loop {
            let r = self.read_phase().unwrap();
            if r.phase == PHASE_END {
                break;
            }
            assert_ne!(r.phase, PHASE_ERROR, "{r}");
            let (_, img) = files
                .iter()
                .find(|(id, _)| *id == r.phase)
                .unwrap_or_else(|| panic!("no file for phase {:#04x}", r.phase));
            let img = img.clone();
            self.download(r.phase, &img).unwrap();
            order.push(r.phase);
        }
        order
    }
}

fn emmc_board(size: u64) -> Stm32mp1Config {
    Stm32mp1Config {
        emmc: Some(EmmcConfig {
            size,
            boot_size: MIB,
            erase_group: 512 * KIB,
        }),
        ..Stm32mp1Config::bare()
    }
}

const EMMC_LAYOUT: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\tfsbl.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\tfsbl.stm32
P\t0x05\tfsbl2\tBinary\tmmc1\tboot2\tfsbl.stm32
P\t0x08\tfip-a\tFIP\tmmc1\t0x00080000\tfip.bin
PED\t0x09\tfip-b\tFIP\tmmc1\t0x00100000\tnone
P\t0x10\tbootfs\tSystem\tmmc1\t0x00180000\tbootfs.ext4
P\t0x11\trootfs\tFileSystem\tmmc1\t0x00400000\trootfs.ext4
";

fn emmc_files() -> Vec<(u8, Vec<u8>)> {
    vec![
        (0x04, fsbl()),
        (0x05, fsbl()),
        (0x08, fip(200 * 1024)),
        (0x10, data(10, 300 * 1024 + 17)),
        (0x11, data(11, (MIB + 123) as usize)),
    ]
}

/// The whole flow on an eMMC board; returns the virtual time it took.
fn flash_emmc(dir: &std::path::Path) -> Duration {
    let mut d = Driver::new(dir, emmc_board(64 * MIB));
    // Old contents where fip-b (a PED row) goes: stm32prog must erase it.
    let old = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(EMMC_USER_IMAGE))
        .unwrap();
    old.write_all_at(&[0xA5; 4096], 0x100000).unwrap();
    d.boot_to_uboot();
    d.send_layout(EMMC_LAYOUT);
    assert_eq!(
        d.alt_names(),
        [
            "@fsbl1/0x04/1*1Me",
            "@fsbl2/0x05/1*1Me",
            "@fip-a/0x08/1*512Ke",
            "@fip-b/0x09/1*512Ka",
            "@bootfs/0x10/1*2560Ke",
            "@rootfs/0x11/1*60928Ke",
            "@virtual/0xf1/1*512Ba",
            "@OTP/0xf2/1*1024Be",
            "@PMIC/0xf4/1*8Be",
        ]
    );
    let order = d.program(&emmc_files());
    assert_eq!(order, [0x04, 0x05, 0x08, 0x10, 0x11]);
    d.detach();
    assert_eq!(d.board(|b| b.stage()), BootStage::Done);
    assert!(d.board(|b| b.model_errors().is_empty()));
    d.usb.elapsed()
}

#[test]
fn rom_tfa_uboot_flow_writes_gpt_and_partitions_on_emmc() {
    let dir = tempfile::tempdir().unwrap();
    let elapsed = flash_emmc(dir.path());
    // Bus time, the ROM's 100 ms hand-over, two 300 ms re-enumerations and
    // 40 MB/s eMMC writes: about a second, far from the host's timeouts.
    assert!(elapsed > Duration::from_millis(700), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let user = dir.path().join(EMMC_USER_IMAGE);
    let disk = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open(&user)
        .unwrap();
    let parts: Vec<_> = disk.partitions().values().cloned().collect();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fip-a", "fip-b", "bootfs", "rootfs"]);
    let lbas: Vec<(u64, u64)> = parts.iter().map(|p| (p.first_lba, p.last_lba)).collect();
    assert_eq!(
        lbas,
        [
            (0x80000 / 512, 0x100000 / 512 - 1),
            (0x100000 / 512, 0x180000 / 512 - 1),
            (0x180000 / 512, 0x400000 / 512 - 1),
            (0x400000 / 512, (64 * MIB - 512 * KIB) / 512 - 1),
        ]
    );
    let fip_type = uuid::uuid!("19D5DF83-11B0-457B-BE2C-7559C13142A5");
    let linux = uuid::uuid!("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    assert_eq!(parts[0].part_type_guid.guid, fip_type);
    assert_eq!(parts[2].part_type_guid.guid, linux);
    assert_eq!(parts[2].flags & (1 << 2), 1 << 2, "System is bootable");
    assert_eq!(parts[3].flags & (1 << 2), 0);

    let f = std::fs::File::open(&user).unwrap();
    let files = emmc_files();
    for (id, off) in [(0x08u8, 0x80000u64), (0x10, 0x180000), (0x11, 0x400000)] {
        let img = &files.iter().find(|(i, _)| *i == id).unwrap().1;
        let mut back = vec![0u8; img.len()];
        f.read_exact_at(&mut back, off).unwrap();
        assert!(back == *img, "partition {id:#04x} differs");
    }
    let mut fip_b = vec![0xFFu8; 4096];
    f.read_exact_at(&mut fip_b, 0x100000).unwrap();
    assert!(fip_b.iter().all(|&b| b == 0), "fip-b (PED) is erased");
    for name in [EMMC_BOOT1_IMAGE, EMMC_BOOT2_IMAGE] {
        let boot = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(&boot[..fsbl().len()], &fsbl()[..], "{name}");
    }
    let ext_csd: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("emmc-ext-csd.json")).unwrap())
            .unwrap();
    // partconf 1 2 0: boot ack, boot from boot2 (the last one written).
    assert_eq!(ext_csd["partition_config"], (1 << 6) | (2 << 3));
    let log = std::fs::read_to_string(dir.path().join("events.log")).unwrap();
    assert!(log.contains("partition rootfs (0x11) written"), "{log}");
    assert!(log.contains("GPT written on mmc1"), "{log}");
}

#[test]
fn virtual_clock_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_eq!(flash_emmc(a.path()), flash_emmc(b.path()));
}

#[test]
fn nand_skips_factory_bad_blocks_and_copies_binary_n() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Stm32mp1Config {
        nand: Some(NandConfig {
            size: 8 * MIB,
            page_size: 4 * KIB,
            block_size: 256 * KIB,
            factory_bad_blocks: vec![1, 5],
        }),
        ..Stm32mp1Config::bare()
    };
    let mut d = Driver::new(dir.path(), cfg);
    d.boot_to_uboot();
    d.send_layout(
        "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\tfsbl.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary(2)\tnand0\t0x00000000\tfsbl.stm32
P\t0x06\tfip\tFIP\tnand0\t0x00100000\tfip.bin
P\t0x10\tubifs\tSystem\tnand0\t0x00200000\troot.ubi
",
    );
    let fip_img = fip(300 * 1024);
    let ubi = data(20, (MIB + 5) as usize);
    d.program(&[(0x04, fsbl()), (0x06, fip_img.clone()), (0x10, ubi.clone())]);
    let blk = (256 * KIB) as usize;
    d.board(|b| {
        assert!(b.model_errors().is_empty(), "{:?}", b.model_errors());
        assert_eq!(b.nand_bad_blocks(), [1, 5]);
        let f = fsbl();
        // Copy 1 in the first half of fsbl1, copy 2 in the second half.
        assert_eq!(b.read_nand(0, f.len()).unwrap(), f);
        assert_eq!(b.read_nand(2 * blk as u64, f.len()).unwrap(), f);
        // The FIP skips bad block 5: blocks 4 and 6.
        assert_eq!(b.read_nand(4 * blk as u64, blk).unwrap(), fip_img[..blk]);
        assert_eq!(
            b.read_nand(6 * blk as u64, fip_img.len() - blk).unwrap(),
            fip_img[blk..]
        );
        assert!(b
            .read_nand(5 * blk as u64, blk)
            .unwrap()
            .iter()
            .all(|&x| x == 0xFF));
        assert_eq!(b.read_nand(8 * blk as u64, ubi.len()).unwrap(), ubi);
    });
    // Read back through DFU: dfu_mtd skips the bad block too.
    let back = d.upload(0x06);
    assert_eq!(&back[..fip_img.len()], &fip_img[..]);
    assert!(back[fip_img.len()..].iter().all(|&x| x == 0xFF));
}

#[test]
fn rom_rejects_a_bad_fsbl_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.connect().unwrap();
    let mut bad = fsbl();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    d.download_refused(phase::ID_FSBL, &bad, Status::ErrVerify);
    assert_eq!(d.board(|b| b.stage()), BootStage::Rom);
    // More than the 256 KiB of SYSRAM is refused while it arrives.
    let big = image::write(&WriteParams::v1(0x2FFC_2500), &data(6, 300 * 1024));
    d.download_refused(phase::ID_FSBL, &big, Status::ErrAddress);
    // The ROM is still there: the good image is accepted afterwards.
    d.download(phase::ID_FSBL, &fsbl()).unwrap();
    assert_eq!(d.board(|b| b.stage()), BootStage::TfA);
}

#[test]
fn tfa_no_usb_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Stm32mp1Config {
        fault: Some(Stm32mp1Fault::TfaNoUsb),
        ..emmc_board(64 * MIB)
    };
    let mut d = Driver::new(dir.path(), cfg);
    d.connect().unwrap();
    let err = d.download(phase::ID_FSBL, &fsbl()).unwrap_err();
    assert!(
        matches!(
            err,
            DfuHostError::Transfer {
                source: TransferError::Timeout,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(d.board(|b| b.stage()), BootStage::Hung);
    let before = d.usb.now();
    let err = d.read_phase().unwrap_err();
    assert!(matches!(
        err,
        DfuHostError::SetAlt {
            source: TransferError::Timeout,
            ..
        }
    ));
    // Each unanswered request costs the host its whole timeout.
    assert!(d.usb.now().saturating_duration_since(before) >= Duration::from_secs(5));
}

#[test]
fn uboot_that_never_reconnects_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Stm32mp1Config {
        fault: Some(Stm32mp1Fault::UbootNoReconnect),
        ..emmc_board(64 * MIB)
    };
    let mut d = Driver::new(dir.path(), cfg);
    d.boot_to_uboot();
    d.download(phase::ID_FLASHLAYOUT, EMMC_LAYOUT.as_bytes())
        .unwrap();
    d.detach();
    let before = d.usb.elapsed();
    assert_eq!(
        d.connect().unwrap_err(),
        ConnectError::NotFound {
            waited: Duration::from_secs(5)
        }
    );
    assert_eq!(d.usb.elapsed() - before, Duration::from_secs(5));
    assert_eq!(d.board(|b| b.stage()), BootStage::Lost);
}

#[test]
fn nand_erase_failure_runs_out_of_good_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Stm32mp1Config {
        nand: Some(NandConfig {
            size: 2 * MIB,
            page_size: 4 * KIB,
            block_size: 256 * KIB,
            factory_bad_blocks: vec![],
        }),
        fault: Some(Stm32mp1Fault::NandEraseFailure { after: 2 }),
        ..Stm32mp1Config::bare()
    };
    let mut d = Driver::new(dir.path(), cfg);
    d.boot_to_uboot();
    d.send_layout(
        "#Opt\tId\tName\tType\tIP\tOffset\tBinary
P\t0x10\tubifs\tSystem\tnand0\t0x0\troot.ubi
",
    );
    let r = d.read_phase().unwrap();
    assert_eq!(r.phase, 0x10);
    d.download_refused(0x10, &data(3, (MIB + 1) as usize), Status::ErrWrite);
    let r = d.read_phase().unwrap();
    assert_eq!(r.phase, PHASE_ERROR);
    let msg = r.error_message().unwrap();
    assert!(msg.starts_with("ubifs (0x10): out of good blocks"), "{msg}");
    // Blocks 0 and 1 erased fine; every later erase failed and marked the
    // block bad.
    d.board(|b| {
        assert_eq!(b.nand_bad_blocks(), [2, 3, 4, 5, 6, 7]);
        assert!(b.model_errors().is_empty());
    });
    let bbt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("nand-bbt.json")).unwrap()).unwrap();
    assert_eq!(bbt["runtime"], serde_json::json!([2, 3, 4, 5, 6, 7]));
}

#[test]
fn too_small_emmc_refuses_the_image_with_err_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(8 * MIB));
    d.boot_to_uboot();
    d.send_layout(
        "#Opt\tId\tName\tType\tIP\tOffset\tBinary
P\t0x10\tbootfs\tSystem\tmmc1\t0x00080000\tbootfs.ext4
P\t0x12\trootfs\tFileSystem\tmmc1\t0x00100000\trootfs.ext4
",
    );
    d.download(0x10, &data(4, 100_000)).unwrap();
    assert_eq!(d.read_phase().unwrap().phase, 0x12);
    // rootfs runs from 1 MiB to 8 MiB - 512 KiB: 6.5 MiB.
    d.download_refused(0x12, &data(5, 7 * MIB as usize), Status::ErrAddress);
    let r = d.read_phase().unwrap();
    assert_eq!(r.phase, PHASE_ERROR);
    assert_eq!(
        r.error_message().unwrap(),
        "rootfs (0x12): image too large for partition: 6819840 > 6815744 bytes"
    );
}

#[test]
fn otp_writes_or_bits_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.boot_to_uboot();
    d.download(phase::ID_OTP, &[0x01, 0x00, 0xF0, 0x80])
        .unwrap();
    d.download(phase::ID_OTP, &[0x02, 0x10, 0x0F, 0x00])
        .unwrap();
    let otp = d.upload(phase::ID_OTP);
    assert_eq!(otp.len(), 1024);
    assert_eq!(&otp[..4], &[0x03, 0x10, 0xFF, 0x80]);
    assert!(otp[4..].iter().all(|&b| b == 0));
    assert_eq!(std::fs::read(dir.path().join(OTP_IMAGE)).unwrap(), otp);
    // PMIC NVM: 8 bytes, written as sent.
    d.download(phase::ID_PMIC, &[1, 2, 3, 4, 5, 6, 7, 8])
        .unwrap();
    d.download(phase::ID_PMIC, &[9]).unwrap();
    assert_eq!(d.upload(phase::ID_PMIC), [9, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn layout_errors_become_phase_ff_and_missing_devices_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.boot_to_uboot();
    d.download(
        phase::ID_FLASHLAYOUT,
        b"#Opt\tId\tName\tType\tIP\tOffset\tBinary\nX\t0x10\tbootfs\tSystem\tmmc1\t0x80000\tb\n",
    )
    .unwrap();
    let r = d.read_phase().unwrap();
    assert_eq!(r.phase, PHASE_ERROR);
    assert!(
        r.error_message().unwrap().starts_with("Layout line 2: "),
        "{r}"
    );

    // A layout for a NAND the board does not have: refused at DETACH.
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.boot_to_uboot();
    d.download(
        phase::ID_FLASHLAYOUT,
        b"#Opt\tId\tName\tType\tIP\tOffset\tBinary\nP\t0x10\tubifs\tSystem\tnand0\t0x0\tu\n",
    )
    .unwrap();
    d.detach();
    d.connect().unwrap();
    let r = d.read_phase().unwrap();
    assert_eq!(
        r.error_message().as_deref(),
        Some("MTD device nand0 not found")
    );
}

#[test]
fn st_sample_emmc_layout_on_the_default_board() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), Stm32mp1Config::default());
    d.boot_to_uboot();
    let tsv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dfukit-stm32mp/tests/fixtures/layout/FlashLayout_emmc_stm32mp157f-ev1_sample.tsv"
    ))
    .unwrap();
    d.send_layout(tsv);
    let names = d.alt_names();
    assert_eq!(names.len(), 11 + 3);
    assert_eq!(names[0], "@fsbl1/0x04/1*4Me");
    assert_eq!(names[5], "@fip-b/0x09/1*4Ma");
    assert_eq!(d.read_phase().unwrap().phase, 0x04);
}

#[test]
fn layout_in_an_stm32_header_is_unwrapped_and_its_checksum_checked() {
    let wrapped = image::write(&WriteParams::v1(0xC200_0000), EMMC_LAYOUT.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.boot_to_uboot();
    d.send_layout(&wrapped);
    assert_eq!(d.alt_names().len(), 6 + 3);

    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.boot_to_uboot();
    d.download(phase::ID_FLASHLAYOUT, &bad).unwrap();
    let msg = d.read_phase().unwrap().error_message().unwrap();
    assert!(msg.starts_with("Layout: invalid checksum : 0x"), "{msg}");
}

#[test]
fn phase_command_sets_the_resume_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Driver::new(dir.path(), emmc_board(64 * MIB));
    d.boot_to_uboot();
    d.send_layout(EMMC_LAYOUT);
    d.download(phase::ID_CMD, &phase::encode_command(0x11, 0x1000))
        .unwrap();
    let r = d.read_phase().unwrap();
    assert_eq!((r.phase, r.offset), (0x11, 0x1000));
    let tail = data(7, 5000);
    d.download(0x11, &tail).unwrap();
    let f = std::fs::File::open(dir.path().join(EMMC_USER_IMAGE)).unwrap();
    let mut back = vec![0u8; tail.len()];
    f.read_exact_at(&mut back, 0x400000 + 0x1000).unwrap();
    assert_eq!(back, tail);
    // rootfs is done; the lowest Id not yet written is next.
    assert_eq!(d.read_phase().unwrap().phase, 0x04);
}

#[test]
fn nor_partitions_are_erased_ahead_and_programmed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Stm32mp1Config {
        nor: Some(NorConfig {
            size: 4 * MIB,
            sector_size: 64 * KIB,
        }),
        ..Stm32mp1Config::bare()
    };
    let mut d = Driver::new(dir.path(), cfg);
    d.boot_to_uboot();
    d.send_layout(
        "#Opt\tId\tName\tType\tIP\tOffset\tBinary
P\t0x04\tfsbl1\tBinary\tnor0\t0x00000000\tfsbl.stm32
P\t0x06\tfip\tFIP\tnor0\t0x00080000\tfip.bin
PE\t0x07\tenv\tENV\tnor0\t0x00200000\tnone
",
    );
    assert_eq!(d.alt_names()[2], "@env/0x07/1*2Ma");
    let fip_img = fip(200 * 1024);
    let before = d.usb.elapsed();
    d.program(&[(0x04, fsbl()), (0x06, fip_img.clone())]);
    // fsbl1 needs 2 sectors, the FIP 4: 6 erases of 0.5 s each.
    assert!(d.usb.elapsed() - before > Duration::from_secs(3));
    let nor = std::fs::read(dir.path().join(NOR_IMAGE)).unwrap();
    assert_eq!(&nor[..fsbl().len()], &fsbl()[..]);
    assert_eq!(&nor[0x80000..0x80000 + fip_img.len()], &fip_img[..]);
    // The rest of the last programmed sector reads erased.
    let end = 0x80000 + fip_img.len();
    assert!(nor[end..0x80000 + 4 * 64 * 1024].iter().all(|&b| b == 0xFF));
    assert!(d.board(|b| b.model_errors().is_empty()));
    // An E row is read-only.
    let err = d.download(0x07, &[0; 16]).unwrap_err();
    assert!(
        matches!(
            err,
            DfuHostError::Device {
                status: Status::ErrWrite,
                ..
            }
        ),
        "{err}"
    );
}
