//! STM32MP programming across real boundaries: a `dfukit sim stm32mp1`
//! process exports the simulated STM32MP157 over USB/IP; `dfukit stm32mp
//! flash` programs it from a TSV layout; `sfdisk --json` reads the GPT U-Boot
//! wrote on the eMMC image; unmodified dfu-util drives the ROM code and TF-A
//! through dfukit's libusb shim, as ST documents for loading U-Boot without
//! STM32CubeProgrammer.

mod common;

use common::*;
use dfukit_stm32mp::image::{self, WriteParams};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The USB vendor:product the ROM code and TF-A enumerate with.
const ST_ROM: &str = "0483:df11";

/// The simulated STM32MP157 exported over USB/IP.
fn mp1(state: &Path, extra: &[&str]) -> UsbipSim {
    UsbipSim::start("stm32mp1", state, extra)
}

fn data(seed: u32, len: usize) -> Vec<u8> {
    dfukit_core::synthetic::bytes(seed).take(len).collect()
}

const TSV: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ttf-a-usb.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\ttf-a-emmc.stm32
P\t0x05\tfsbl2\tBinary\tmmc1\tboot2\ttf-a-emmc.stm32
P\t0x08\tfip-a\tFIP\tmmc1\t0x00080000\tfip.bin
PED\t0x09\tu-boot-env\tENV\tmmc1\t0x00480000\tnone
P\t0x10\tbootfs\tSystem\tmmc1\t0x00500000\tbootfs.ext4
P\t0x12\trootfs\tFileSystem\tmmc1\t0x02500000\trootfs.ext4
";

/// The layout and its binaries in `dir`; returns the layout's path.
fn layout(dir: &Path) -> PathBuf {
    let mut fip = dfukit_stm32mp::phase::FIP_TOC_HEADER.to_le_bytes().to_vec();
    fip.extend(data(3, 600 * 1024));
    let files: [(&str, Vec<u8>); 5] = [
        (
            "tf-a-usb.stm32",
            image::write(&WriteParams::v1(0x2FFC_2500), &data(1, 96 * 1024)),
        ),
        (
            "tf-a-emmc.stm32",
            image::write(&WriteParams::v1(0x2FFC_2500), &data(2, 110 * 1024)),
        ),
        ("fip.bin", fip),
        ("bootfs.ext4", data(4, 2 * 1024 * 1024 + 5)),
        ("rootfs.ext4", data(5, 3 * 1024 * 1024 + 11)),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let p = dir.join("FlashLayout_emmc.tsv");
    std::fs::write(&p, TSV).unwrap();
    p
}

fn flash(board: &UsbipSim, tsv: &Path, extra: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = dfukit()
        .args(["stm32mp", "flash"])
        .arg(tsv)
        .args(["--usbip", &board.addr])
        .args(extra)
        .output()
        .unwrap();
    (out, t.elapsed())
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0; len];
    f.read_exact_at(&mut b, offset).unwrap();
    b
}

#[test]
fn emmc_layout_flashed_over_usbip_matches_sfdisk_and_the_binaries() {
    let Some(sfdisk) = tool("sfdisk") else { return };
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    let state = dir.path().join("board");
    let board = mp1(&state, &[]);
    let (out, _) = flash(&board, &tsv, &[]);
    let t = succeeded(&out);
    // The summary names every partition.
    let names = ["fsbl-boot", "fip-boot", "fsbl1", "fsbl2", "fip-a", "bootfs"];
    assert_contains(&t, &names);
    assert_contains(&t, &["rootfs", "done: "]);

    // The GPT U-Boot wrote, as Linux tools read it.
    let json = Command::new(sfdisk)
        .arg("--json")
        .arg(state.join("emmc-user.img"))
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", text(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let parts = v["partitiontable"]["partitions"].as_array().unwrap();
    let got: Vec<(String, u64, u64)> = parts
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let lba = |b: u64| b / 512;
    assert_eq!(v["partitiontable"]["label"], "gpt");
    assert_eq!(
        got[..3],
        [
            ("fip-a".to_string(), lba(0x80000), lba(0x480000 - 0x80000)),
            (
                "u-boot-env".to_string(),
                lba(0x480000),
                lba(0x500000 - 0x480000)
            ),
            (
                "bootfs".to_string(),
                lba(0x500000),
                lba(0x2500000 - 0x500000)
            ),
        ]
    );
    assert_eq!(got[3].0, "rootfs");
    assert_eq!(got[3].1, lba(0x2500000));
    assert_eq!(got.len(), 4);
    assert_eq!(
        parts[0]["type"].as_str().unwrap().to_uppercase(),
        "19D5DF83-11B0-457B-BE2C-7559C13142A5"
    );

    // Every partition holds its binary byte for byte.
    for (file, image_name, offset) in [
        ("tf-a-emmc.stm32", "emmc-boot1.img", 0u64),
        ("tf-a-emmc.stm32", "emmc-boot2.img", 0),
        ("fip.bin", "emmc-user.img", 0x80000),
        ("bootfs.ext4", "emmc-user.img", 0x500000),
        ("rootfs.ext4", "emmc-user.img", 0x2500000),
    ] {
        let want = std::fs::read(dir.path().join(file)).unwrap();
        assert_eq!(
            read_at(&state.join(image_name), offset, want.len()),
            want,
            "{file} in {image_name} at {offset:#x}"
        );
    }
}

/// The user report: TF-A stops serving USB after the ROM hands over. dfukit
/// stops within its bounds and names the phase and the causes.
#[test]
fn tf_a_silent_after_the_rom_hand_over_is_diagnosed_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    let board = mp1(&dir.path().join("board"), &["--fault", "tfa-no-usb"]);
    let (out, took) = flash(
        &board,
        &tsv,
        &["--tfa-timeout", "3", "--transfer-timeout", "1"],
    );
    let t = failed(&out);
    assert_contains(&t, &["dfukit::stm32mp::tfa_silent", "TF-A"]);
    assert_contains(&t, &["UART", "usb", "DDR", "OTG"]);
    assert_contains(&t, &["last device report"]);
    // 3 s budget + one 1 s transfer + process start and the FSBL download.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(took >= Duration::from_secs(3), "took {took:?}");
}

#[test]
fn u_boot_that_never_reconnects_is_diagnosed_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    let board = mp1(
        &dir.path().join("board"),
        &["--fault", "uboot-no-reconnect"],
    );
    let (out, took) = flash(&board, &tsv, &["--reenumerate-timeout", "2"]);
    let t = failed(&out);
    assert_contains(&t, &["dfukit::stm32mp::uboot_no_reconnect"]);
    assert_contains(&t, &["force-b-session-valid"]);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn partition_too_small_on_a_smaller_emmc_is_reported_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    // rootfs at 37 MiB gets about 1 MiB on a 38 MiB eMMC: less than its image.
    let board = mp1(&dir.path().join("board"), &["--emmc-size-mib", "38"]);
    let (out, _) = flash(&board, &tsv, &[]);
    let t = failed(&out);
    let words = [
        "rootfs",
        "U-Boot (partitions)",
        "does not fit its partition",
    ];
    assert_contains(&t, &words);
}

#[test]
fn malformed_layout_is_refused_before_the_board_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    let bad = std::fs::read_to_string(&tsv)
        .unwrap()
        .replace("0x00500000\tbootfs.ext4", "0x00480000\tbootfs.ext4");
    std::fs::write(&tsv, bad).unwrap();
    let state = dir.path().join("board");
    let board = mp1(&state, &[]);
    let (out, _) = flash(&board, &tsv, &[]);
    let t = failed(&out);
    assert_contains(&t, &["FlashLayout_emmc.tsv:8:", "nothing was sent"]);
    // The board is still in its ROM code, untouched.
    let listed = run(&["usb", "list", "--usbip", &board.addr]);
    assert_contains(&text(&listed), &["@FSBL /0x01/1*1Me"]);
}

/// ST's "How to load U-Boot with dfu-util": the FSBL to alt 1 (ROM code),
/// the FIP to alt 3 (TF-A), DETACH; then U-Boot's stm32prog enumerates.
/// The phase the board asks for: block 0 of alt 5 (0xF1), read by
/// dfu-util through the shim into a file under `dir`.
fn phase_via_dfu_util(board: &UsbipSim, dir: &std::path::Path) -> u8 {
    let phase_file = dir.join("phase.bin");
    // dfu-util refuses to overwrite an existing upload file.
    let _ = std::fs::remove_file(&phase_file);
    let phase_arg = phase_file.to_str().unwrap();
    succeeded(&dfu_util(
        board,
        &["-d", ST_ROM, "-a", "5", "-U", phase_arg],
    ));
    std::fs::read(&phase_file).unwrap()[0]
}

/// dfu-util's download of `file` to alternate setting `alt`, which must succeed.
fn download_via_dfu_util(board: &UsbipSim, alt: &str, file: &Path) {
    let file = file.to_str().unwrap();
    succeeded(&dfu_util(board, &["-d", ST_ROM, "-a", alt, "-D", file]));
}

#[test]
fn dfu_util_loads_tf_a_and_the_fip_through_the_shim() {
    if tool("dfu-util").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let board = mp1(&dir.path().join("board"), &[]);
    let listed = text(&dfu_util(&board, &["-l"]));
    assert!(listed.contains("name=\"@FSBL /0x01/1*1Me\""), "{listed}");
    assert!(
        listed.contains("name=\"@virtual /0xF1/1*512Ba\""),
        "{listed}"
    );

    // The ROM's phase record: it wants the FSBL (phase 1).
    assert_eq!(phase_via_dfu_util(&board, dir.path()), 0x01);

    download_via_dfu_util(&board, "1", &dir.path().join("tf-a-usb.stm32"));

    // TF-A now answers on the ROM's enumeration and wants the FIP.
    assert_eq!(phase_via_dfu_util(&board, dir.path()), 0x03);

    download_via_dfu_util(&board, "3", &dir.path().join("fip.bin"));
    succeeded(&dfu_util(&board, &["-d", ST_ROM, "-a", "3", "-e"]));

    // U-Boot's stm32prog enumerates with the flashlayout alternate.
    let start = Instant::now();
    loop {
        let l = text(&dfu_util(&board, &["-l"]));
        if l.contains("@FlashLayout/0x00/1*256Ke") {
            assert!(
                l.contains("USB download gadget") || l.contains("0483:df11"),
                "{l}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "U-Boot never enumerated: {l}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A USB device that is not the board: a DFU interface under another
/// vendor:product, stalling every request.
struct OtherDfuDevice;

impl dfukit_usbip::UsbDevice for OtherDfuDevice {
    fn info(&self) -> dfukit_usbip::DeviceInfo {
        dfukit_usbip::DeviceInfo {
            vendor_id: 0x1234,
            product_id: 0x5678,
            configuration_value: 1,
            num_configurations: 1,
            interfaces: vec![dfukit_usbip::InterfaceClass {
                class: 0xFE,
                subclass: 0x01,
                protocol: 0x02,
            }],
            ..Default::default()
        }
    }

    fn control(&mut self, _: &dfukit_usbip::SetupPacket, _: &[u8]) -> dfukit_usbip::ControlReply {
        dfukit_usbip::ControlReply::Stall
    }
}

#[test]
fn no_board_says_what_is_on_the_bus_then_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    let server = dfukit_usbip::Server::bind("127.0.0.1:0").unwrap();
    server.spawn().unwrap();
    let addr = server.local_addr().to_string();
    let run = || {
        dfukit()
            .args(["stm32mp", "flash"])
            .arg(&tsv)
            .args(["--usbip", &addr, "--connect-timeout", "0.3"])
            .output()
            .unwrap()
    };
    let t = failed(&run());
    let seen = format!("seen on the USB/IP server {addr}: nothing");
    assert_contains(&t, &["dfukit::stm32mp::no_device", &seen]);
    // What was seen, then the boot pins, the OTG port and reset, and the
    // permissions only last.
    let at = |s: &str| t.find(s).unwrap_or_else(|| panic!("lacks {s:?}:\n{t}"));
    assert!(at(&seen) < at("BOOT[2:0]"));
    assert!(at("BOOT[2:0]") < at("USB OTG"));
    assert!(at("USB OTG") < at("permission"));
    // Another DFU device on the bus is listed, marked DFU.
    server.add_device("1-1", Box::new(OtherDfuDevice)).unwrap();
    let t = failed(&run());
    assert_contains(
        &t,
        &[
            "dfukit::stm32mp::no_device",
            &format!("seen on the USB/IP server {addr}:"),
            "1-1  1234:5678  DFU",
        ],
    );
    server.stop();
}

#[test]
fn a_bus_that_cannot_be_listed_is_not_a_permission_problem() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    // A port nothing listens on: the server is not running.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = dfukit()
        .args(["stm32mp", "flash"])
        .arg(&tsv)
        .args(["--usbip", &addr, "--connect-timeout", "0.3"])
        .output()
        .unwrap();
    let t = failed(&out);
    assert_contains(&t, &["dfukit::stm32mp::no_bus", "start the USB/IP server"]);
    assert!(!t.contains("udev"), "{t}");
}

#[test]
fn layout_saved_with_a_bom_is_sent_to_u_boot_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = layout(dir.path());
    // U-Boot's parser takes a BOM as part of the first Opt column (the
    // simulated board runs its rules), so the host must strip it.
    let text = std::fs::read(&tsv).unwrap();
    std::fs::write(&tsv, [b"\xEF\xBB\xBF".as_slice(), &text].concat()).unwrap();
    let board = mp1(&dir.path().join("board"), &[]);
    let (out, _) = flash(&board, &tsv, &[]);
    let t = succeeded(&out);
    assert_contains(&t, &["rootfs", "done: "]);
}
