//! `dfukit usb download` and `usb upload` against the simulated STM32F405
//! over USB/IP (a `dfukit sim stm32f4` process): input that cannot be
//! written whole is refused before anything is erased, so the flash image
//! in the board's state directory stays byte for byte what it was; files
//! whose elements share a sector keep every element; and an upload never
//! leaves half a file.

mod common;

use common::*;
use dfukit_usbdfu::files::{self, DfuseFile, Element, Suffix, Target};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The simulated board and its state directory.
struct Board {
    sim: UsbipSim,
    state: PathBuf,
}

impl Board {
    fn start(state: &Path) -> Board {
        Board {
            sim: UsbipSim::start("stm32f4", state, &[]),
            state: state.to_path_buf(),
        }
    }

    /// The persisted flash image (1 MiB from 0x08000000).
    fn flash(&self) -> Vec<u8> {
        std::fs::read(self.state.join("flash.bin")).unwrap()
    }

    /// `dfukit usb ARGS` on this board.
    fn usb(&self, args: &[&str]) -> Output {
        dfukit()
            .arg("usb")
            .args(args)
            .env("DFUKIT_USBIP", &self.sim.addr)
            .output()
            .unwrap()
    }

    /// `dfukit usb download -a 0 [-s SPEC] EXTRA -D FILE`.
    fn download(&self, spec: Option<&str>, extra: &[&str], file: &Path) -> Output {
        let mut args = vec!["download", "-a", "0"];
        if let Some(s) = spec {
            args.extend(["-s", s]);
        }
        args.extend_from_slice(extra);
        args.extend(["-D", file.to_str().unwrap()]);
        self.usb(&args)
    }
}

/// The STM32F4 ROM's suffix (0483:df11, bcdDevice 0x2200, DfuSe).
fn st_suffix() -> Suffix {
    Suffix {
        bcd_device: 0x2200,
        id_product: 0xdf11,
        id_vendor: 0x0483,
        bcd_dfu: files::BCD_DFUSE,
    }
}

/// Elements as (address, data).
type Elements<'a> = &'a [(u32, &'a [u8])];

/// A `.dfu` file: one target per entry, each (alt, elements).
fn dfu_file(targets: &[(u8, Elements<'_>)]) -> Vec<u8> {
    DfuseFile {
        targets: targets
            .iter()
            .map(|&(alt, elements)| Target {
                alt,
                name: Some("ST...".into()),
                elements: elements
                    .iter()
                    .map(|&(address, data)| Element {
                        address,
                        data: data.to_vec(),
                    })
                    .collect(),
            })
            .collect(),
        suffix: st_suffix(),
    }
    .to_bytes()
    .unwrap()
}

/// Recomputes the suffix CRC after an edit, so only the edit is wrong.
fn reseal(file: &mut [u8]) {
    let n = file.len();
    let crc = files::suffix_crc(&file[..n - 4]);
    file[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

fn firmware(len: usize, seed: u32) -> Vec<u8> {
    dfukit_sim::synthetic::firmware(len, seed)
}

/// A board holding 20,000 bytes of "old firmware" at 0x08000000 (sector 0
/// and part of sector 1) and 5,000 at 0x08020000 (sector 5).
fn board_with_old_firmware(dir: &Path) -> (Board, Vec<u8>) {
    let b = Board::start(&dir.join("board"));
    for (addr, len, seed) in [("0x08000000", 20_000, 1), ("0x08020000", 5_000, 2)] {
        let p = dir.join(format!("old-{addr}.bin"));
        std::fs::write(&p, firmware(len, seed)).unwrap();
        succeeded(&b.download(Some(addr), &[], &p));
    }
    let before = b.flash();
    assert_eq!(&before[..20_000], &firmware(20_000, 1)[..]);
    (b, before)
}

/// Every refused download: a non-zero exit, a diagnostic with its code and
/// the words that say what is wrong, no claim of success, and the flash
/// byte-identical to before.
#[test]
fn refused_downloads_leave_the_flash_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (b, before) = board_with_old_firmware(dir.path());
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let fw = firmware(4_096, 3);
    let good = dfu_file(&[(0, &[(0x0800_0000, &fw)])]);

    // A .dfu whose target signature is damaged (the suffix CRC still fits).
    let mut corrupt = good.clone();
    corrupt[11] = b'X';
    reseal(&mut corrupt);
    // A .dfu whose suffix CRC does not match its contents.
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xFF;
    // A raw file with a DFU suffix whose CRC does not match.
    let mut raw_bad_crc = files::add_suffix(&fw, &st_suffix());
    let n = raw_bad_crc.len();
    raw_bad_crc[n - 2] ^= 0x55;
    // An element that runs past the end of the flash.
    let past_end = dfu_file(&[(0, &[(0x0800_0000, &fw), (0x080F_F800, &fw)])]);
    // A file with no targets, and one whose target has no elements.
    let no_targets = dfu_file(&[]);
    let no_elements = dfu_file(&[(0, &[])]);
    // A second target the device has no alternate setting for.
    let unknown_alt = dfu_file(&[(0, &[(0x0800_0000, &fw)]), (7, &[(0x0800_0000, &fw)])]);
    // An element starting inside a sector it does not cover from its start:
    // erasing that sector would wipe old bytes the file does not rewrite.
    let mid_sector = dfu_file(&[(0, &[(0x0800_2000, &fw)])]);

    let raw = write("fw.bin", &fw);
    let cases: Vec<(PathBuf, Option<&str>, &[&str])> = vec![
        (
            write("corrupt.dfu", &corrupt),
            Some(":mass-erase:force"),
            &["dfukit::usb::dfu_file", "Target", "byte 11"],
        ),
        (
            write("bad-crc.dfu", &bad_crc),
            Some(":mass-erase:force"),
            &["dfukit::usb::dfu_file", "CRC"],
        ),
        (
            write("raw-bad-crc.bin", &raw_bad_crc),
            Some("0x08000000:mass-erase:force"),
            &["dfukit::usb::suffix", "CRC"],
        ),
        (
            raw.clone(),
            Some(":mass-erase:force"),
            &["dfukit::usb::dfuse_address", "needs a target address"],
        ),
        (
            raw.clone(),
            Some("0x080FF800:mass-erase:force"),
            &["dfukit::usbdfu::not_writeable", "0x08100000"],
        ),
        (
            write("past-end.dfu", &past_end),
            Some(":mass-erase:force"),
            &["dfukit::usbdfu::not_writeable", "0x08100000"],
        ),
        (
            raw.clone(),
            Some("0x08000001"),
            &["dfukit::usbdfu::partial_sector", "0x08000001", "0x08000000"],
        ),
        (
            write("mid-sector.dfu", &mid_sector),
            None,
            &["dfukit::usbdfu::partial_sector", "0x08002000", "0x08000000"],
        ),
        (
            write("no-targets.dfu", &no_targets),
            Some(":mass-erase:force"),
            &["dfukit::usbdfu::empty_file", "no targets"],
        ),
        (
            write("no-elements.dfu", &no_elements),
            Some(":mass-erase:force"),
            &["dfukit::usbdfu::empty_target", "target 0"],
        ),
        (
            write("empty.bin", b""),
            Some("0x08000000:leave"),
            &["dfukit::usb::empty_file", "empty.bin", "nothing to write"],
        ),
        (
            write("suffix-only.bin", &files::add_suffix(b"", &st_suffix())),
            Some("0x08000000"),
            &["dfukit::usb::empty_file", "suffix-only.bin"],
        ),
        (
            write("unknown-alt.dfu", &unknown_alt),
            Some(":mass-erase:force"),
            &["dfukit::usbdfu::no_layout", "alt setting 7"],
        ),
    ];
    for (file, spec, words) in &cases {
        let out = b.download(*spec, &[], file);
        let t = text(&out);
        let what = format!("{} -s {spec:?}", file.display());
        assert!(!out.status.success(), "{what}: exit 0\n{t}");
        for w in *words {
            assert!(t.contains(w), "{what}: error lacks {w:?}:\n{t}");
        }
        assert!(t.contains("help"), "{what}: no help line:\n{t}");
        assert!(!t.contains("downloaded"), "{what}: claims success:\n{t}");
        assert!(
            b.flash() == before,
            "{what}: the refused download changed the flash"
        );
    }
}

/// Two targets on the flash alt whose elements share the first 16 KiB
/// sector: both elements survive (the sector is erased once, before either
/// is written), and --verify reads both back after the last write.
#[test]
fn targets_sharing_a_sector_all_survive_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (b, before) = board_with_old_firmware(dir.path());
    let e1 = firmware(4_096, 11);
    let e2 = firmware(256, 12);
    let path = dir.path().join("two-targets.dfu");
    std::fs::write(
        &path,
        dfu_file(&[(0, &[(0x0800_0000, &e1)]), (0, &[(0x0800_2000, &e2)])]),
    )
    .unwrap();
    let t = succeeded(&b.download(None, &["--verify"], &path));
    assert_contains(&t, &["downloaded 2 target(s), verified"]);
    let flash = b.flash();
    assert_eq!(&flash[..e1.len()], &e1[..], "the first target was wiped");
    assert_eq!(&flash[0x2000..0x2000 + e2.len()], &e2[..]);
    // Sector 0 outside the two elements is erased; sector 1 (0x4000..) is
    // not touched, so the old firmware's bytes there are still in place.
    assert!(flash[0x1000..0x2000].iter().all(|&x| x == 0xFF));
    assert_eq!(&flash[0x4000..20_000], &before[0x4000..20_000]);
    assert_eq!(
        &flash[0x20000..0x20000 + 5_000],
        &before[0x20000..0x20000 + 5_000]
    );
}

/// The STM32F4 flash programs any byte length: a 70,001-byte raw image
/// (its last block 369 bytes, not a whole number of words) is written and
/// verified.
#[test]
fn an_odd_length_raw_image_is_written_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let b = Board::start(&dir.path().join("board"));
    let fw = firmware(70_001, 13);
    let p = dir.path().join("odd.bin");
    std::fs::write(&p, &fw).unwrap();
    let t = succeeded(&b.download(Some("0x08000000"), &["--verify"], &p));
    assert_contains(&t, &["70001 bytes written at 0x08000000, verified"]);
    assert_eq!(&b.flash()[..fw.len()], &fw[..]);
    assert_eq!(b.flash()[fw.len()], 0xFF);
}

/// `usb upload -s ADDRESS` without a length reads to the end of the memory
/// segment (as dfu-util's `-U` does), and what it reads is the flash.
#[test]
fn upload_without_a_length_reads_to_the_end_of_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (b, before) = board_with_old_firmware(dir.path());
    let out = dir.path().join("tail.bin");
    let t = succeeded(&b.usb(&[
        "upload",
        "-a",
        "0",
        "-s",
        "0x080E0000",
        "-U",
        out.to_str().unwrap(),
    ]));
    assert_contains(&t, &["131072 bytes read"]);
    assert_eq!(std::fs::read(&out).unwrap(), &before[0xE0000..]);
    // With a trailing colon and no length, the same.
    let out2 = dir.path().join("tail2.bin");
    succeeded(&b.usb(&[
        "upload",
        "-a",
        "0",
        "-s",
        "0x080E0000:",
        "-U",
        out2.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read(&out2).unwrap(), &before[0xE0000..]);
}

/// An upload whose output cannot be written whole (a file-size limit makes
/// the write fail part way) leaves the file that was there untouched and no
/// temporary file beside it.
#[test]
fn a_failed_upload_leaves_no_half_file() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = board_with_old_firmware(dir.path());
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("flash.bin");
    std::fs::write(&out, b"previous contents").unwrap();
    let exe = dfukit().get_program().to_owned();
    // 64 blocks of 512 bytes: the 100,000-byte write fails with EFBIG (the
    // signal that would kill the process instead is ignored).
    let r = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$@\"")
        .arg("sh")
        .arg(&exe)
        .args(["usb", "upload", "-a", "0", "-s", "0x08000000:100000", "-U"])
        .arg(&out)
        .env("DFUKIT_USBIP", &b.sim.addr)
        .output()
        .unwrap();
    let t = failed(&r);
    assert_contains(&t, &["dfukit::usb::output::write", "flash.bin"]);
    let now = std::fs::read(&out).unwrap();
    assert!(
        now == b"previous contents",
        "the output now holds {} other bytes",
        now.len()
    );
    let left: Vec<_> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from("flash.bin")],
        "left behind: {left:?}"
    );
}
