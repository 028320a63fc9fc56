//! `dfukit usb pack` and `usb info` against dfuse-pack (Debian's dfu-util package), and the
//! packed file downloaded to the simulated STM32F405 over USB/IP by dfukit and by dfu-util.

mod common;

use common::*;
use dfukit_testkit::peers;
use std::path::Path;

fn firmware(len: usize, seed: u32) -> Vec<u8> {
    dfukit_sim::synthetic::firmware(len, seed)
}

/// Runs dfuse-pack with `args` in `dir`; `None` when the peer is missing (and not required).
fn dfuse_pack(dir: &Path, args: &[&str]) -> Option<String> {
    let mut cmd = peers::dfuse_pack()?;
    let out = cmd.args(args).current_dir(dir).output().unwrap();
    Some(succeeded(&out))
}

fn pack(dir: &Path, args: &[&str]) -> std::process::Output {
    dfukit()
        .args(["usb", "pack"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Binaries at addresses on two alts, and a HEX with two segments: dfukit and dfuse-pack
/// write the same bytes, each reads the other's file, and dfuse-pack's dump of dfukit's file
/// gives back the inputs.
#[test]
fn pack_matches_dfuse_pack_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b, o) = (firmware(4096, 1), firmware(257, 2), firmware(16, 3));
    std::fs::write(d.join("a.bin"), &a).unwrap();
    std::fs::write(d.join("b.bin"), &b).unwrap();
    std::fs::write(d.join("o.bin"), &o).unwrap();
    let bins = [
        "-b",
        "0x08000000:a.bin",
        "-b",
        "0x08002000:b.bin",
        "-b",
        "0x1fffc000@1:o.bin",
    ];
    succeeded(&pack(d, &[&bins[..], &["mine.dfu"]].concat()));
    let Some(_) = dfuse_pack(d, &[&bins[..], &["theirs.dfu"]].concat()) else {
        return;
    };
    let mine = std::fs::read(d.join("mine.dfu")).unwrap();
    assert_eq!(mine, std::fs::read(d.join("theirs.dfu")).unwrap());

    // dfuse-pack reads dfukit's file: no parse or CRC error, and its dump is the inputs.
    let listing = dfuse_pack(d, &["-d", "mine.dfu"]).unwrap();
    assert!(!listing.contains("ERROR"), "{listing}");
    assert_contains(
        &listing,
        &[
            "targets: 2",
            "address: 0x08002000, size: 257",
            "alt setting: 1",
        ],
    );
    for (dump, input) in [
        ("mine.dfu.target0.image0.bin", &a),
        ("mine.dfu.target0.image1.bin", &b),
        ("mine.dfu.target1.image0.bin", &o),
    ] {
        assert_eq!(&std::fs::read(d.join(dump)).unwrap(), input, "{dump}");
    }

    // dfukit reads dfuse-pack's file.
    let info = succeeded(
        &dfukit()
            .args(["usb", "info", "theirs.dfu"])
            .current_dir(d)
            .output()
            .unwrap(),
    );
    let crc_b = format!("CRC-32 {:#010x}", crc32fast::hash(&b));
    assert_contains(
        &info,
        &[
            "idVendor 0x0483, idProduct 0xdf11",
            "target 0: alt 0, name \"ST...\", 2 element(s), 4353 bytes",
            "element 1: 0x08002000..0x08002101, 257 bytes",
            &crc_b,
            "target 1: alt 1",
            "element 0: 0x1fffc000..0x1fffc010, 16 bytes",
        ],
    );

    // An Intel HEX: one element per contiguous segment, as dfuse-pack makes them.
    let hex = dfukit_firmware::to_intel_hex(&[(0x0800_0000, &a), (0x0800_8000, &b)]);
    std::fs::write(d.join("fw.hex"), hex).unwrap();
    succeeded(&pack(d, &["-i", "fw.hex", "mine-hex.dfu"]));
    dfuse_pack(d, &["-i", "fw.hex", "theirs-hex.dfu"]).unwrap();
    assert_eq!(
        std::fs::read(d.join("mine-hex.dfu")).unwrap(),
        std::fs::read(d.join("theirs-hex.dfu")).unwrap()
    );
}

/// The packed file, elements sharing the first 16 KiB sector, downloaded over USB/IP by
/// dfukit and then by unmodified dfu-util through the libusb shim: both elements land.
#[test]
fn packed_file_downloads_to_the_simulated_board() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (firmware(4096, 7), firmware(300, 8));
    std::fs::write(d.join("a.bin"), &a).unwrap();
    std::fs::write(d.join("b.bin"), &b).unwrap();
    succeeded(&pack(
        d,
        &[
            "-b",
            "0x08000000:a.bin",
            "-b",
            "0x08002000:b.bin",
            "app.dfu",
        ],
    ));
    let state = d.join("board");
    let board = UsbipSim::start("stm32f4", &state, &[]);
    let flash = || std::fs::read(state.join("flash.bin")).unwrap();
    let check = |f: &[u8], who: &str| {
        assert_eq!(&f[..a.len()], &a[..], "{who}: first element");
        assert_eq!(
            &f[0x2000..0x2000 + b.len()],
            &b[..],
            "{who}: second element"
        );
        assert!(f[0x1000..0x2000].iter().all(|&x| x == 0xFF), "{who}: gap");
    };
    succeeded(
        &dfukit()
            .args(["usb", "download", "-a", "0", "-D"])
            .arg(d.join("app.dfu"))
            .env("DFUKIT_USBIP", &board.addr)
            .output()
            .unwrap(),
    );
    check(&flash(), "dfukit");
    // Wipe the element with a raw write, then let dfu-util put the .dfu back.
    std::fs::write(d.join("blank.bin"), vec![0u8; 16]).unwrap();
    succeeded(
        &dfukit()
            .args(["usb", "download", "-a", "0", "-s", "0x08000000", "-D"])
            .arg(d.join("blank.bin"))
            .env("DFUKIT_USBIP", &board.addr)
            .output()
            .unwrap(),
    );
    assert_eq!(&flash()[..16], &[0u8; 16]);
    if tool("dfu-util").is_none() {
        return;
    }
    succeeded(&dfu_util(
        &board,
        &["-a", "0", "-D", d.join("app.dfu").to_str().unwrap()],
    ));
    check(&flash(), "dfu-util");
}

/// Inputs that cannot make a correct `.dfu` are refused with what is wrong, exit non-zero,
/// and leave no output file.
#[test]
fn refused_inputs_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.bin"), firmware(4096, 1)).unwrap();
    std::fs::write(d.join("b.bin"), firmware(16, 2)).unwrap();
    std::fs::write(d.join("empty.bin"), b"").unwrap();
    std::fs::write(
        d.join("fw.hex"),
        dfukit_firmware::to_intel_hex(&[(0x0800_0000, &firmware(64, 3))]),
    )
    .unwrap();
    let suffixed = dfukit_usbdfu::files::add_suffix(
        &firmware(64, 4),
        &dfukit_usbdfu::files::Suffix::default(),
    );
    std::fs::write(d.join("suffixed.bin"), suffixed).unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "overlap",
            &["-b", "0x08000000:a.bin", "-b", "0x08000ff8:b.bin"],
            &["b.bin (0x08000ff8..0x08001008) overlaps a.bin (0x08000000..0x08001000) on alt 0"],
        ),
        (
            "suffixed binary",
            &["-b", "0x08000000:suffixed.bin"],
            &["already has a DFU suffix", "suffix remove"],
        ),
        (
            "HEX given as a binary",
            &["-b", "0x08000000:fw.hex"],
            &["Intel HEX file, not a raw binary", "-i FILE"],
        ),
        (
            "binary given as a HEX",
            &["-i", "a.bin"],
            &["carries no address", "-b ADDRESS:FILE"],
        ),
        (
            "no address",
            &["-b", "a.bin"],
            &["no ':'", "-b ADDRESS[@ALT]:FILE"],
        ),
        (
            "bad address",
            &["-b", "0x1_0000_0000:a.bin"],
            &["-b \"0x1_0000_0000:a.bin\""],
        ),
        (
            "bad alt",
            &["-b", "0x08000000@256:a.bin"],
            &["the alt is not 0..=255"],
        ),
        (
            "empty input",
            &["-b", "0x08000000:empty.bin"],
            &["empty.bin is empty"],
        ),
        (
            "missing input",
            &["-b", "0x08000000:nope.bin"],
            &["nope.bin"],
        ),
        (
            "past 4 GiB",
            &["-b", "0xfffff000:a.bin", "-b", "0xffffffff:b.bin"],
            &["run past 0xffffffff"],
        ),
        ("nothing", &[], &["nothing to pack"]),
        (
            "bad device",
            &["-D", "0x10000:0xdf11", "-b", "0x08000000:a.bin"],
            &["-D VENDOR:PRODUCT"],
        ),
    ];
    for (what, args, needles) in cases {
        let out = pack(d, &[args, &["out.dfu"][..]].concat());
        let t = failed(&out);
        assert_contains(&t, needles);
        assert!(!d.join("out.dfu").exists(), "{what}: an output was written");
    }
    // The output may not be an input.
    let t = failed(&pack(d, &["-b", "0x08000000:a.bin", "a.bin"]));
    assert_contains(&t, &["is the input"]);
    assert_eq!(std::fs::read(d.join("a.bin")).unwrap(), firmware(4096, 1));
}

/// `usb info` says what is wrong with a damaged file, and where.
#[test]
fn info_names_what_is_wrong_with_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.bin"), firmware(64, 1)).unwrap();
    succeeded(&pack(d, &["-b", "0x08000000:a.bin", "app.dfu"]));
    let good = std::fs::read(d.join("app.dfu")).unwrap();
    let info = |name: &str, bytes: &[u8]| {
        std::fs::write(d.join(name), bytes).unwrap();
        failed(
            &dfukit()
                .args(["usb", "info", name])
                .current_dir(d)
                .output()
                .unwrap(),
        )
    };
    let mut flipped = good.clone();
    flipped[300] ^= 1;
    assert_contains(&info("flipped.dfu", &flipped), &["flipped.dfu", "CRC"]);
    assert_contains(
        &info("raw.bin", &firmware(64, 1)),
        &["raw.bin", "not a DFU file", "usb pack"],
    );
    // A file whose target size disagrees with its elements, resealed with a valid CRC.
    let mut bad = good[..good.len() - 16].to_vec();
    bad[11 + 266] ^= 1; // dwTargetSize of target 0
    let resealed = dfukit_usbdfu::files::add_suffix(
        &bad,
        &dfukit_usbdfu::files::check_suffix(&good).unwrap().suffix,
    );
    assert_contains(
        &info("target.dfu", &resealed),
        &["target 0 at byte 11", "dwTargetSize", "rebuild it"],
    );
}
