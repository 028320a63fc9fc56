//! USB DFU across real boundaries: the simulated STM32F4 exported over
//! USB/IP by a `dfukit sim stm32f4` process, the Linux `usbip` tool listing
//! it, and Debian's unmodified dfu-util 0.11 driving it through dfukit's
//! libusb shim.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The simulated STM32F405 exported over USB/IP, and its state directory.
struct Board {
    sim: UsbipSim,
    state: PathBuf,
}

impl std::ops::Deref for Board {
    type Target = UsbipSim;
    fn deref(&self) -> &UsbipSim {
        &self.sim
    }
}

impl Board {
    fn start(state: &Path) -> Board {
        Self::start_with(state, &[])
    }

    fn start_with(state: &Path, extra: &[&str]) -> Board {
        Board {
            sim: UsbipSim::start("stm32f4", state, extra),
            state: state.to_path_buf(),
        }
    }

    fn flash(&self) -> Vec<u8> {
        std::fs::read(self.state.join("flash.bin")).unwrap()
    }
}

/// A board in a new temporary directory, or None (the test is skipped)
/// where dfu-util is missing.
fn board_for_dfu_util() -> Option<(tempfile::TempDir, Board)> {
    tool("dfu-util")?;
    let dir = tempfile::tempdir().unwrap();
    let b = Board::start(&dir.path().join("board"));
    Some((dir, b))
}

/// Waits for the board to come back after `:leave` (the sim re-attaches it),
/// as `list` (dfu-util's or dfukit's listing) shows it.
fn wait_listed(list: impl Fn() -> Output) {
    let start = Instant::now();
    while !text(&list()).contains("alt=0") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "board never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `len` bytes of synthetic firmware from `seed` to `path`; returns them.
fn firmware_file(path: &Path, len: usize, seed: u32) -> Vec<u8> {
    let fw = dfukit_sim::synthetic::firmware(len, seed);
    std::fs::write(path, &fw).unwrap();
    fw
}

/// A DfuSe (.dfu) file for the STM32F4's ROM (0483:df11, bcdDevice 0x2200)
/// with one target on alt 0 named `name`, holding `elements` as
/// (address, data).
fn dfuse_file(name: &str, elements: &[(u32, &[u8])]) -> Vec<u8> {
    use dfukit_usbdfu::files;
    files::DfuseFile {
        targets: vec![files::Target {
            alt: 0,
            name: Some(name.into()),
            elements: elements
                .iter()
                .map(|&(address, data)| files::Element {
                    address,
                    data: data.to_vec(),
                })
                .collect(),
        }],
        suffix: files::Suffix {
            bcd_device: 0x2200,
            id_product: 0xdf11,
            id_vendor: 0x0483,
            bcd_dfu: 0x011a,
        },
    }
    .to_bytes()
    .unwrap()
}

/// Whether `bytes` are all erased flash.
fn erased(bytes: &[u8]) -> bool {
    bytes.iter().all(|&x| x == 0xFF)
}

/// dfu-util's download of `file` to alt 0 at `spec` (`ADDRESS[:MODIFIERS]`).
fn dfu_util_download(board: &Board, spec: &str, file: impl AsRef<Path>) -> Output {
    let file = file.as_ref().to_str().unwrap();
    dfu_util(board, &["-a", "0", "-s", spec, "-D", file])
}

/// dfu-util's upload from alt 0 at `spec` (`ADDRESS:LENGTH`) into `file`.
fn dfu_util_upload(board: &Board, spec: &str, file: impl AsRef<Path>) -> Output {
    let file = file.as_ref().to_str().unwrap();
    dfu_util(board, &["-a", "0", "-s", spec, "-U", file])
}

/// `dfukit usb upload` from alternate setting `alt` at `spec` into `file`.
fn usb_upload(board: &Board, alt: &str, spec: &str, file: impl AsRef<Path>) -> Output {
    let file = file.as_ref().to_str().unwrap();
    usb(board, &["upload", "-a", alt, "-s", spec, "-U", file])
}

/// `dfukit usb download` of `file` to alt 0 at `spec`, with `extra` options.
fn usb_download(board: &Board, spec: &str, extra: &[&str], file: impl AsRef<Path>) -> Output {
    let mut args = vec!["download", "-a", "0", "-s", spec];
    args.extend_from_slice(extra);
    args.extend(["-D", file.as_ref().to_str().unwrap()]);
    usb(board, &args)
}

#[test]
fn usbip_tool_lists_the_simulated_stm32f4() {
    let Some(usbip) = tool("usbip") else { return };
    let dir = tempfile::tempdir().unwrap();
    let b = Board::start(&dir.path().join("board"));
    let out = Command::new(usbip)
        .args(["--tcp-port", &b.port.to_string(), "list", "-r", "127.0.0.1"])
        .output()
        .unwrap();
    let t = succeeded(&out);
    assert_contains(
        &t,
        &["1-1: STMicroelectronics", "(0483:df11)", "(fe/01/02)"],
    );
}

#[test]
fn dfu_util_through_the_shim_lists_downloads_uploads_and_mass_erases() {
    let Some((dir, b)) = board_for_dfu_util() else {
        return;
    };

    let list = text(&dfu_util(&b, &["-l"]));
    assert!(list.contains(r#"[0483:df11] ver=2200, devnum=1, cfg=1, intf=0, path="1-1", alt=0, name="@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg""#), "{list}");
    assert!(
        list.contains(r#"alt=1, name="@Option Bytes  /0x1FFFC000/01*016 e""#),
        "{list}"
    );

    // Raw download with :leave, spanning sectors 0-4.
    let bin = dir.path().join("fw.bin");
    let fw = firmware_file(&bin, 70_000, 42);
    let t = succeeded(&dfu_util_download(&b, "0x08000000:leave", &bin));
    assert_contains(&t, &["File downloaded successfully"]);
    assert_eq!(&b.flash()[..fw.len()], &fw[..]);
    wait_listed(|| dfu_util(&b, &["-l"]));

    // Byte-exact read-back by dfu-util.
    let up = dir.path().join("up.bin");
    succeeded(&dfu_util_upload(&b, "0x08000000:70000", &up));
    assert_eq!(std::fs::read(&up).unwrap(), fw);

    // A .dfu file (DfuSe container) written by dfukit, at the 128 KiB sector 5.
    let fw2 = dfukit_sim::synthetic::firmware(5_000, 43);
    let dfu = dir.path().join("fw2.dfu");
    std::fs::write(&dfu, dfuse_file("ST...", &[(0x0802_0000, &fw2)])).unwrap();
    succeeded(&dfu_util(&b, &["-a", "0", "-D", dfu.to_str().unwrap()]));
    assert_eq!(&b.flash()[0x20000..0x20000 + fw2.len()], &fw2[..]);
    // The first image is untouched by the second download.
    assert_eq!(&b.flash()[..fw.len()], &fw[..]);

    // Mass erase.
    succeeded(&dfu_util_download(&b, "0x08000000:mass-erase:force", &bin));
    let flash = b.flash();
    assert_eq!(&flash[..fw.len()], &fw[..], "re-downloaded after the erase");
    assert!(
        erased(&flash[0x20000..0x20000 + fw2.len()]),
        "mass erase left sector 5"
    );

    // Writing past the memory map is refused by dfu-util before the device
    // is touched.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 64]).unwrap();
    failed(&dfu_util_download(&b, "0x080FFFF0", &big));
}

fn usb(board: &Board, args: &[&str]) -> Output {
    dfukit()
        .args(["usb"])
        .args(args)
        .env("DFUKIT_USBIP", format!("127.0.0.1:{}", board.port))
        .output()
        .unwrap()
}

/// dfukit's host against the board, and each tool reading what the other wrote.
#[test]
fn dfukit_host_and_dfu_util_read_each_others_writes() {
    let Some((dir, b)) = board_for_dfu_util() else {
        return;
    };
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let list = text(&usb(&b, &["list"]));
    assert!(list.contains(r#"[0483:df11] ver=2200, devnum=1, cfg=1, intf=0, path="1-1", alt=0, name="@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg", serial="3574364C3034""#), "{list}");

    // dfukit writes (with read-back verify and :leave); dfu-util reads back.
    let fw = firmware_file(&dir.path().join("a.bin"), 150_000, 7);
    let out = usb_download(&b, "0x08000000:leave", &["--verify"], p("a.bin"));
    succeeded(&out);
    assert_eq!(&b.flash()[..fw.len()], &fw[..]);
    wait_listed(|| dfu_util(&b, &["-l"]));
    succeeded(&dfu_util_upload(&b, "0x08000000:150000", p("a.up")));
    assert_eq!(std::fs::read(p("a.up")).unwrap(), fw);

    // dfu-util writes (at the 64 KiB sector 4); dfukit reads back.
    let fw2 = firmware_file(&dir.path().join("b.bin"), 20_000, 8);
    succeeded(&dfu_util_download(&b, "0x08040000", p("b.bin")));
    let flash_alt = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg";
    succeeded(&usb_upload(&b, flash_alt, "0x08040000:20000", p("b.up")));
    assert_eq!(std::fs::read(p("b.up")).unwrap(), fw2);

    // Option bytes through the second alternate setting.
    succeeded(&usb_upload(&b, "1", "0x1FFFC000:16", p("ob.bin")));
    assert_eq!(std::fs::read(p("ob.bin")).unwrap()[0], 0xAA, "RDP level 0");

    // Bad input: clear error, non-zero exit, flash untouched.
    let before = b.flash();
    // Each case: the options before `-D a.bin`, and words the error must contain.
    let cases: &[(&[&str], &str)] = &[
        (&["-a", "0", "-s", "0x080FF000"], "not writeable"),
        (&["-a", "9", "-s", "0x08000000"], "no alternate setting"),
        (&["-a", "0", "-s", "0x08000000:launch"], "DfuSe address"),
        (&["-a", "0", "-s", "0x08000000:mass-erase"], ":force"),
        (&["-a", "0"], "needs a target address"),
        (
            &["-a", "0", "-d", "1234:5678", "-s", "0x08000000"],
            "no DFU device matches",
        ),
    ];
    let a_bin = p("a.bin");
    for (options, words) in cases {
        let args = [&["download"], *options, &["-D", &a_bin]].concat();
        let out = usb(&b, &args);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?}: exit 0");
        assert!(t.contains(words), "{args:?}: error lacks {words:?}:\n{t}");
        assert!(t.contains("dfukit::"), "{args:?}: no diagnostic code:\n{t}");
    }
    assert!(b.flash() == before, "a refused command changed the flash");
    let t = failed(&run(&["usb", "list", "--usbip", "127.0.0.1:9"]));
    assert_contains(&t, &["cannot reach the USB/IP server"]);
}

/// dfukit's suffixes pass dfu-suffix's check, and dfu-suffix's pass dfukit's.
#[test]
fn dfu_suffix_files_are_interchangeable() {
    let Some(dfu_suffix) = tool("dfu-suffix") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.bin");
    std::fs::write(&a, dfukit_sim::synthetic::firmware(3_000, 9)).unwrap();
    ok(&[
        "usb",
        "suffix",
        "add",
        a.to_str().unwrap(),
        "-v",
        "0483",
        "-p",
        "df11",
        "-d",
        "2200",
    ]);
    let t = succeeded(
        &Command::new(&dfu_suffix)
            .arg("-c")
            .arg(&a)
            .output()
            .unwrap(),
    );
    assert!(
        t.contains("0xDF11") && t.contains("0x0483") && t.contains("0x2200"),
        "{t}"
    );

    let b = dir.path().join("b.bin");
    std::fs::write(&b, dfukit_sim::synthetic::firmware(3_000, 10)).unwrap();
    let out = Command::new(&dfu_suffix)
        .args(["-a"])
        .arg(&b)
        .args(["-v", "1209", "-p", "0001", "-d", "0100"])
        .output()
        .unwrap();
    succeeded(&out);
    let shown = ok(&["usb", "suffix", "check", b.to_str().unwrap()]);
    assert!(
        shown.contains("Vendor ID:\t0x1209") && shown.contains("Product ID:\t0x0001"),
        "{shown}"
    );
    ok(&["usb", "suffix", "remove", b.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&b).unwrap(),
        dfukit_sim::synthetic::firmware(3_000, 10)
    );
    // A corrupted suffix is refused.
    let mut bad = std::fs::read(&a).unwrap();
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    std::fs::write(&a, bad).unwrap();
    let out = run(&["usb", "suffix", "check", a.to_str().unwrap()]);
    assert!(!out.status.success());
}

/// A device that stalls, or drops off the bus, in the middle of a download:
/// a bounded, clear error naming the phase and address, a non-zero exit, and
/// no claim that the image was written.
#[test]
fn a_device_that_fails_mid_download_is_reported_not_claimed_written() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fw.bin");
    let fw = firmware_file(&bin, 100_000, 11);
    for (fault, words) in [
        ("stall-after-blocks=10", "stall"),
        ("vanish-after-blocks=10", "disconnect"),
    ] {
        let b = Board::start_with(&dir.path().join(fault), &["--fault", fault]);
        let start = Instant::now();
        let out = usb_download(&b, "0x08000000", &[], &bin);
        let t = text(&out);
        assert!(!out.status.success(), "{fault}: exit 0\n{t}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{fault}: took {:?}",
            start.elapsed()
        );
        assert!(
            t.to_lowercase().contains(words),
            "{fault}: error lacks {words:?}:\n{t}"
        );
        // Block 11 (the first refused) is at 10 * 2048 = 0x5000.
        assert!(
            t.contains("0x08005000"),
            "{fault}: error lacks the address of block 11:\n{t}"
        );
        assert!(
            !t.contains("bytes written"),
            "{fault}: claims success:\n{t}"
        );
        // Blocks 1-10 went in; nothing beyond them is claimed or present.
        assert_eq!(&b.flash()[..10 * 2048], &fw[..10 * 2048]);
        assert!(erased(&b.flash()[11 * 2048..fw.len()]));
    }
}

/// A .dfu file whose elements share a sector keeps every element (each
/// sector is erased once, before any element is written), and `:leave`
/// without an address works for dfu-util and dfukit alike.
#[test]
fn dfu_file_elements_sharing_a_sector_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let b = Board::start(&dir.path().join("board"));
    let e1 = dfukit_sim::synthetic::firmware(256, 21);
    let e2 = dfukit_sim::synthetic::firmware(256, 22);
    let path = dir.path().join("two.dfu");
    let file = dfuse_file("two", &[(0x0800_0000, &e1), (0x0800_0400, &e2)]);
    std::fs::write(&path, file).unwrap();
    succeeded(&usb_download(&b, ":leave", &["--verify"], &path));
    let flash = b.flash();
    assert_eq!(&flash[..256], &e1[..], "first element wiped");
    assert_eq!(&flash[0x400..0x500], &e2[..]);
    wait_listed(|| usb(&b, &["list"]));
    // An upload from a DfuSe device without an address is refused, not
    // answered with the command list.
    let x = dir.path().join("x.bin");
    let t = failed(&usb(&b, &["upload", "-a", "0", "-U", x.to_str().unwrap()]));
    assert_contains(&t, &["needs ADDRESS:LENGTH"]);
    // dfu-util's `-s :leave` with a .dfu file: the ROM takes the leave request from dfuIDLE.
    if tool("dfu-util").is_some() {
        succeeded(&dfu_util_download(&b, ":leave", &path));
    }
}

/// Without --usbip dfukit looks at this machine's USB (nusb). Where the
/// machine has no USB stack (CI's VMs), that is a clear error, not a hang or
/// an empty success.
#[test]
fn local_usb_without_a_usb_stack_is_a_clear_error() {
    let out = dfukit()
        .args(["usb", "list"])
        .env_remove("DFUKIT_USBIP")
        .output()
        .unwrap();
    if Path::new("/sys/bus/usb/devices").exists() {
        assert!(out.status.success(), "{}", text(&out));
    } else {
        assert!(!out.status.success());
        let t = text(&out);
        assert!(
            t.contains("cannot list USB devices") && t.contains("--usbip"),
            "{t}"
        );
    }
}

/// dfukit's own mass erase, and `-R`: the port reset reaches the board over
/// USB/IP (it restarts its ROM bootloader) and the board stays usable.
#[test]
fn dfukit_mass_erase_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let b = Board::start(&dir.path().join("board"));
    let old_bin = dir.path().join("old.bin");
    let old = firmware_file(&old_bin, 40_000, 31);
    // Something in the last sector, far from where the next image goes.
    succeeded(&usb_download(&b, "0x080E0000", &[], &old_bin));
    assert_eq!(&b.flash()[0xE0000..0xE0000 + old.len()], &old[..]);
    let new_bin = dir.path().join("new.bin");
    let new = firmware_file(&new_bin, 10_000, 32);
    let out = usb_download(
        &b,
        "0x08000000:mass-erase:force",
        &["-R", "--verify"],
        &new_bin,
    );
    assert_contains(&succeeded(&out), &["device reset"]);
    let flash = b.flash();
    assert_eq!(&flash[..new.len()], &new[..]);
    assert!(
        erased(&flash[0xE0000..0xE0000 + old.len()]),
        "mass erase left the last sector"
    );
    // After the reset the ROM answers again.
    let list = text(&usb(&b, &["list"]));
    assert!(list.contains("alt=0"), "{list}");
}

/// A file made by dfu-prefix (LPC prefix) and dfu-suffix: dfukit checks the
/// suffix, reports the prefix, and writes a DfuSe raw download as dfu-util
/// does (without the prefix, which is for LPC and Stellaris bootloaders), so
/// both tools leave the same bytes in flash.
#[test]
fn dfu_prefix_files_are_written_as_dfu_util_writes_them() {
    let (Some(prefix), Some(suffix)) = (tool("dfu-prefix"), tool("dfu-suffix")) else {
        return;
    };
    if tool("dfu-util").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lpc.bin");
    std::fs::write(&f, dfukit_sim::synthetic::firmware(5_000, 41)).unwrap();
    succeeded(
        &Command::new(&prefix)
            .args(["-L", "-a"])
            .arg(&f)
            .output()
            .unwrap(),
    );
    succeeded(&Command::new(&suffix).arg("-a").arg(&f).output().unwrap());
    let file = std::fs::read(&f).unwrap();
    let shown = ok(&["usb", "suffix", "check", f.to_str().unwrap()]);
    assert!(shown.contains("Length:\t\t16"), "{shown}");
    assert!(shown.contains("LpcUnencrypted, 16 bytes"), "{shown}");

    let ours = Board::start(&dir.path().join("ours"));
    succeeded(&usb_download(&ours, "0x08000000", &[], &f));
    let theirs = Board::start(&dir.path().join("theirs"));
    succeeded(&dfu_util_download(&theirs, "0x08000000", &f));
    let payload = &file[16..file.len() - 16];
    assert!(
        ours.flash()[..payload.len()] == *payload,
        "dfukit did not write the payload without the prefix"
    );
    assert!(
        ours.flash() == theirs.flash(),
        "dfukit and dfu-util left different flash"
    );
}
