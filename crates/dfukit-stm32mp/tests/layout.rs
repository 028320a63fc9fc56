//! Flashlayout parser and validator: ST's sample layouts, malformed
//! layouts with exact positions, and a no-panic property.

use std::fs;
use std::path::{Path, PathBuf};

use dfukit_stm32mp::image::{self as stm32image, WriteParams};
use dfukit_stm32mp::layout::{
    self, CheckOptions, DeviceGeometry, Ip, IpKind, Layout, LayoutErrorKind, Offset, PartType,
};
use proptest::prelude::*;

const EMMC: &str = include_str!("fixtures/layout/FlashLayout_emmc_stm32mp157f-ev1_sample.tsv");
const SDCARD: &str = include_str!("fixtures/layout/FlashLayout_sdcard_stm32mp157f-ev1_sample.tsv");

/// Writes `tsv` into a fresh directory with every binary it names (small
/// files), then loads it.
fn load_sample(tsv: &str, options: &CheckOptions) -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    for line in tsv.lines().filter(|l| !l.starts_with('#')) {
        let bin = line.split('\t').nth(6).unwrap();
        if bin != "none" {
            let p = dir.path().join(bin);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, vec![0xA5u8; 4096]).unwrap();
        }
    }
    let path = dir.path().join("FlashLayout.tsv");
    fs::write(&path, tsv).unwrap();
    let layout = layout::load(&path, options).unwrap_or_else(|e| panic!("{e}"));
    (dir, layout)
}

fn mmc(n: u8) -> Ip {
    Ip {
        kind: IpKind::Mmc,
        instance: n,
    }
}

/// Check options that know the geometry of `ip`.
fn with_geometry(ip: Ip, geometry: DeviceGeometry) -> CheckOptions {
    let mut o = CheckOptions::default();
    o.devices.insert(ip, geometry);
    o
}

#[test]
fn emmc_sample() {
    let (dir, l) = load_sample(EMMC, &CheckOptions::default());
    assert_eq!(l.partitions.len(), 13);
    assert_eq!(l.devices(), vec![mmc(1)]);
    assert!(l.is_full_update(mmc(1)));
    assert!(!l.is_full_update(mmc(0)));

    let boot = &l.partitions[0];
    assert_eq!(boot.line, 2);
    assert!(boot.opt.skip && !boot.opt.program);
    assert_eq!(boot.id, 0x01);
    assert_eq!(boot.ip.kind, IpKind::None);
    assert_eq!(
        boot.binary.as_deref(),
        Some(
            dir.path()
                .join("arm-trusted-firmware/tf-a-stm32mp157f-ev1-usb.stm32")
                .as_path()
        )
    );

    let fsbl1 = l.by_id(0x04).unwrap();
    assert_eq!(fsbl1.name, "fsbl1");
    assert_eq!(fsbl1.offset, Offset::Boot1);
    assert_eq!(fsbl1.ip, mmc(1));
    assert_eq!(fsbl1.binary_size, Some(4096));
    assert_eq!(l.by_id(0x05).unwrap().offset, Offset::Boot2);

    let md1 = l.by_id(0x06).unwrap();
    assert_eq!(md1.kind, PartType::FwuMdata);
    assert_eq!(md1.offset, Offset::Bytes(0x80000));
    assert_eq!(md1.size(), Some(0x80000));

    let fipb = l.by_id(0x09).unwrap();
    assert!(fipb.opt.program && fipb.opt.empty && fipb.opt.delete);
    assert!(!fipb.opt.downloads());
    assert_eq!(fipb.binary, None);
    assert_eq!(fipb.size(), Some(0x400000));

    let env = l.by_id(0x0A).unwrap();
    assert_eq!(env.kind, PartType::Env);
    assert_eq!(
        env.gpt_type_guid().unwrap().to_string(),
        "3de21764-95bd-54bd-a5c3-4abe786f38a8"
    );
    let bootfs = l.by_id(0x10).unwrap();
    assert_eq!(bootfs.kind, PartType::System);
    assert!(bootfs.kind.bootable());
    assert_eq!(bootfs.size(), Some(0x4000000));

    let userfs = l.by_id(0x13).unwrap();
    assert_eq!(userfs.offset, Offset::Bytes(0xC5A0_0000));
    assert_eq!(userfs.size(), None, "device size unknown");
    assert_eq!(l.partitions_on(mmc(1)).count(), 11);
}

#[test]
fn emmc_sample_with_geometry() {
    // eMMC with 512 KiB erase groups: the first partition must start at
    // one erase group (0x80000), which ST's layout does.
    let o = with_geometry(
        mmc(1),
        DeviceGeometry {
            size: Some(8 << 30),
            erase_size: Some(512 * 1024),
            boot_size: Some(4 << 20),
        },
    );
    let (_d, l) = load_sample(EMMC, &o);
    assert_eq!(l.by_id(0x04).unwrap().size(), Some(4 << 20));
    assert_eq!(
        l.by_id(0x13).unwrap().size(),
        Some((8u64 << 30) - 512 * 1024 - 0xC5A0_0000)
    );
}

#[test]
fn sdcard_sample() {
    let (_d, l) = load_sample(SDCARD, &CheckOptions::default());
    assert_eq!(l.partitions.len(), 13);
    assert_eq!(l.devices(), vec![mmc(0)]);
    let fsbl1 = l.by_id(0x04).unwrap();
    assert_eq!(fsbl1.offset, Offset::Bytes(0x4400));
    assert_eq!(fsbl1.size(), Some(0x40000));
    assert_eq!(
        fsbl1.gpt_type_guid().unwrap().to_string().to_uppercase(),
        "8DA63339-0007-60C0-C436-083AC8230908"
    );
    let fip = l.by_id(0x08).unwrap();
    assert_eq!(fip.kind, PartType::Fip);
    assert_eq!(
        fip.gpt_type_guid().unwrap().to_string().to_uppercase(),
        "19D5DF83-11B0-457B-BE2C-7559C13142A5"
    );
    // Offsets above 4 GiB are kept as 64-bit values.
    let userfs = l.by_id(0x13).unwrap();
    assert_eq!(userfs.offset, Offset::Bytes(0x1_0598_4400));
    assert_eq!(
        l.by_id(0x12).unwrap().size(),
        Some(0x1_0598_4400 - 0x0598_4400)
    );
    assert_eq!(
        userfs.gpt_type_guid().unwrap().to_string().to_uppercase(),
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    );
}

#[test]
fn parse_alone_and_quirks() {
    // 6 columns, CRLF, repeated tabs, comment after leading tab, blank
    // lines, decimal offsets and a delete-all RawImage row.
    let text = "\t# comment\r\n\r\n-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\r\n\
                PED\t0x11\tall\tRawImage\tnor0\t0\r\n\
                P\t\t16\t\tboot\tFileSystem\tmmc0\t17408\r\n";
    let l = layout::parse(text, Path::new("/x/l.tsv")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.partitions.len(), 3);
    assert_eq!(l.partitions[1].kind, PartType::RawImage);
    assert_eq!(l.partitions[2].id, 16);
    assert_eq!(l.partitions[2].offset, Offset::Bytes(0x4400));
    assert_eq!(l.partitions[2].columns[1], 4);
    assert_eq!(l.partitions[2].binary, None);
    // A leading 0 in an Id is octal, as U-Boot's strtoul(.., 0) reads it.
    let l = layout::parse("P\t020\ta\tBinary\tmmc0\t0x4400\n", Path::new("l.tsv")).unwrap();
    assert_eq!(l.partitions[0].id, 0x10);
    // Binary(N) is fine for NAND FSBL rows.
    let l = layout::parse(
        "P\t0x04\tfsbl1\tBinary(2)\tnand0\t0x0\tnone\n",
        Path::new("l.tsv"),
    )
    .unwrap();
    assert_eq!(l.partitions[0].kind, PartType::Binary { copies: 2 });
}

const H: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary\n";
/// A valid row on mmc0: columns 1 (Opt), 3 (Id), 8 (Name), 11 (Type),
/// 22 (IP), 27 (Offset), 34 (Binary).
const ROW: &str = "P\t0x10\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n";

struct Case {
    what: &'static str,
    text: String,
    line: usize,
    column: usize,
    phrase: &'static str,
}

fn case(what: &'static str, body: &str, line: usize, column: usize, phrase: &'static str) -> Case {
    Case {
        what,
        text: format!("{H}{body}"),
        line,
        column,
        phrase,
    }
}

fn run_case(c: &Case) -> layout::LayoutErrors {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.bin"), vec![1u8; 1024]).unwrap();
    fs::write(dir.path().join("big.bin"), vec![1u8; 0x10000]).unwrap();
    let o = with_geometry(
        mmc(0),
        DeviceGeometry {
            size: Some(0x100000),
            ..Default::default()
        },
    );
    match load_bytes(dir.path(), "bad.tsv", c.text.as_bytes(), &o) {
        Ok(l) => panic!("{}: accepted: {l:?}", c.what),
        Err(e) => e,
    }
}

#[test]
fn malformed_layouts() {
    let cases = vec![
        case("missing P", "E\t0x10\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 1, "missing 'P' in option 'E'"),
        case("bad option char", "PX\t0x10\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 2, "invalid option 'X'"),
        case("dash combined", "-P\t0x10\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 1, "invalid option '-'"),
        case("bad Id", "P\t0xZZ\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 3, "invalid Id '0xZZ'"),
        case("bad octal Id", "P\t08\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 3, "invalid Id '08'"),
        case("Id > 0xF0", "P\t0xF1\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 3, "is above 0xf0"),
        case("Id 0 on a device", "P\t0x00\tfs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 3, "Id 0x00 is the flashlayout"),
        case("duplicate Id", &format!("{ROW}P\t0x10\tgs\tFileSystem\tmmc0\t0x8400\ta.bin\n"), 3, 3, "duplicated Id 0x10: already used by 'fs' on line 2"),
        case("name too long", "P\t0x10\tabcdefghijklmnopq\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 8, "partition name too long (17 bytes"),
        case("bad type", "P\t0x10\tfs\tFilesystem\tmmc0\t0x4400\ta.bin\n", 2, 11, "unknown type 'Filesystem'"),
        case("Binary(0)", "P\t0x10\tfs\tBinary(0)\tmmc0\t0x4400\ta.bin\n", 2, 11, "unknown type 'Binary(0)'"),
        case("Binary(x", "P\t0x10\tfs\tBinary(2\tmmc0\t0x4400\ta.bin\n", 2, 11, "unknown type"),
        case("Binary(N) on mmc", "P\t0x04\tfsbl1\tBinary(2)\tmmc0\t0x4400\ta.bin\n", 2, 14, "only on nandN or spi-nandN"),
        case("Binary(N) on a user Id", "P\t0x10\tfsbl1\tBinary(2)\tnand0\t0x0\ta.bin\n", 2, 14, "only for Ids below 0x10"),
        case("Binary(N) not fsbl", "P\t0x04\tboot\tBinary(2)\tnand0\t0x0\ta.bin\n", 2, 13, "only for partitions named fsbl*"),
        case("bad IP", "P\t0x10\tfs\tFileSystem\temmc0\t0x4400\ta.bin\n", 2, 22, "unknown IP 'emmc0'"),
        case("two-digit IP", "P\t0x10\tfs\tFileSystem\tmmc10\t0x4400\ta.bin\n", 2, 22, "unknown IP 'mmc10'"),
        case(
            "too many devices",
            "P\t0x10\ta\tBinary\tmmc0\t0x4400\ta.bin\n\
             P\t0x11\tb\tBinary\tmmc1\t0x4400\ta.bin\n\
             P\t0x12\tc\tBinary\tmmc2\t0x4400\ta.bin\n\
             P\t0x13\td\tBinary\tnor0\t0x0\ta.bin\n\
             P\t0x14\te\tBinary\tnand0\t0x0\ta.bin\n\
             P\t0x15\tf\tBinary\tspi-nand0\t0x0\ta.bin\n",
            7, 17, "too many devices: 'spi-nand0' would be device 6",
        ),
        case("bad offset", "P\t0x10\tfs\tFileSystem\tmmc0\t0x44G0\ta.bin\n", 2, 27, "invalid offset '0x44G0'"),
        case("bare 0x offset", "P\t0x10\tfs\tFileSystem\tmmc0\t0x\ta.bin\n", 2, 27, "invalid offset '0x'"),
        case("boot3", "P\t0x04\tfsbl1\tBinary\tmmc1\tboot3\ta.bin\n", 2, 26, "invalid boot partition 'boot3'"),
        case("boot1 on nor", "P\t0x04\tfsbl1\tBinary\tnor0\tboot1\ta.bin\n", 2, 26, "boot1 is an eMMC hardware boot partition, not available on 'nor0'"),
        case("boot1 twice", "P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\ta.bin\nP\t0x05\tfsbl2\tBinary\tmmc1\tboot1\ta.bin\n", 3, 26, "boot1 already used by 'fsbl1' on line 2"),
        case("selected none", "P\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ta.bin\n", 2, 1, "row on IP 'none' is selected ('P')"),
        case("RawImage offset", "PED\t0x10\tall\tRawImage\tmmc0\t0x4400\tnone\n", 2, 28, "must be at offset 0, not 0x4400"),
        case("unordered offsets", "P\t0x10\tfs\tFileSystem\tmmc0\t0x8400\ta.bin\nP\t0x11\tgs\tFileSystem\tmmc0\t0x4400\ta.bin\n", 3, 27, "offset 0x4400 is below 0x8400 of 'fs' on line 2"),
        case("same offset (overlap)", &format!("{ROW}P\t0x11\tgs\tFileSystem\tmmc0\t0x4400\ta.bin\n"), 3, 27, "offset 0x4400 is the same as 'fs' on line 2"),
        case("misaligned mmc", "P\t0x10\tfs\tFileSystem\tmmc0\t0x4401\ta.bin\n", 2, 27, "not aligned on the erase size 0x200 of 'mmc0'"),
        case("misaligned nand", "P\t0x10\tfs\tFileSystem\tnand0\t0x1000\ta.bin\n", 2, 28, "not aligned on the erase size 0x20000 of 'nand0'"),
        case("misaligned nor", "P\t0x10\tfs\tFileSystem\tnor0\t0x200\ta.bin\n", 2, 27, "not aligned on the erase size 0x1000 of 'nor0'"),
        case("below 34 LBA", "P\t0x10\tfs\tFileSystem\tmmc0\t0x200\ta.bin\n", 2, 27, "overlaps the GPT of 'mmc0': the first partition starts at 0x4400"),
        case("beyond device", "P\t0x10\tfs\tFileSystem\tmmc0\t0x100000\ta.bin\n", 2, 27, "beyond the usable end 0xfba00 of 'mmc0'"),
        case("missing binary", "P\t0x10\tfs\tFileSystem\tmmc0\t0x4400\tmissing.bin\n", 2, 34, "missing.bin' not found"),
        case("binary too large", "P\t0x10\tfs\tFileSystem\tmmc0\t0x4400\tbig.bin\nP\t0x11\tgs\tFileSystem\tmmc0\t0x8400\ta.bin\n", 2, 34, "(65536 bytes) is larger than partition 'fs' (16384 bytes up to 'gs' on line 3)"),
        case("binary too large for device", "P\t0x10\tfs\tFileSystem\tmmc0\t0xF0000\tbig.bin\n", 2, 35, "up to the end of 'mmc0'"),
        case("too few columns", "P\t0x10\tfs\tFileSystem\tmmc0\n", 2, 26, "not enough columns: found 5"),
        case("empty field shifts columns", "P\t0x10\tfs\t\tmmc0\t0x4400\ta.bin\n", 2, 12, "unknown type 'mmc0'"),
        case("empty layout", "# nothing\n\n", 1, 1, "no partition found"),
        case("empty field shifts columns (7)", "P\t0x10\t\tFileSystem\tmmc0\t0x4400\ta.bin\n", 2, 20, "unknown type 'mmc0'"),
        case("P row with Binary none", "P\t0x10\tfs\tFileSystem\tmmc0\t0x4400\tnone\n", 2, 34, "partition 'fs' has option 'P', so a file is written to it, but its Binary is 'none'"),
        case("PD row without Binary column", "PD\t0x10\tfs\tFileSystem\tmmc0\t0x4400\t\r\n", 2, 34, "option 'PD', so a file is written to it, but the Binary column is missing"),
        case("RawImage P row with Binary none", "P\t0x10\tall\tRawImage\tmmc0\t0x0\tnone\n", 2, 30, "but its Binary is 'none'"),
        case(
            "Binary(3) copies do not fit",
            "P\t0x04\tfsbl1\tBinary(3)\tnand0\t0x0\tbig.bin\nP\t0x10\tfs\tFileSystem\tnand0\t0x20000\ta.bin\n",
            2, 34,
            "(65536 bytes) does not fit 3 times in partition 'fsbl1': 131072 bytes up to 'fs' on line 3 / 3 copies, each in whole erase blocks = 0 bytes per copy",
        ),
    ];
    assert!(cases.len() >= 25);
    for c in &cases {
        let errs = run_case(c);
        let found = errs.0.iter().any(|e| {
            e.line == c.line && e.column == c.column && e.kind.to_string().contains(c.phrase)
        });
        assert!(
            found,
            "{}: expected {}:{} '{}', got:\n{errs}",
            c.what, c.line, c.column, c.phrase
        );
        for e in &errs.0 {
            assert!(!e.help().is_empty());
        }
    }
}

#[test]
fn all_errors_are_reported_with_locations() {
    let text = format!(
        "{H}PX\t0x10\ta\tBinary\tmmc0\t0x4400\tnone\n\
         P\t0xF5\tb\tBinary\tmmc0\t0x8400\tnone\n\
         P\t0x12\tc\tBinaire\tmmc0\t0xC400\tnone\n\
         P\t0x13\td\tBinary\tmmc0\t0xC401\tnone\n"
    );
    let path = PathBuf::from("dir/FlashLayout.tsv");
    let errs = layout::parse(&text, &path).unwrap_err();
    assert_eq!(errs.0.len(), 3, "{errs}");
    let display = errs.to_string();
    assert!(
        display.starts_with("dir/FlashLayout.tsv:2:2: invalid option 'X' in 'PX'\n  help: "),
        "{display}"
    );
    assert!(
        display.contains("dir/FlashLayout.tsv:3:3: Id 0xF5 is above 0xf0"),
        "{display}"
    );
    assert!(
        display.contains("dir/FlashLayout.tsv:4:10: unknown type 'Binaire'"),
        "{display}"
    );

    // load also runs the device checks on the rows that parsed.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.tsv");
    fs::write(&p, &text).unwrap();
    let errs = layout::load(&p, &CheckOptions::default()).unwrap_err();
    assert_eq!(errs.0.len(), 5, "{errs}");
    assert_eq!((errs.0[3].line, errs.0[3].column), (5, 22));
    // Row 'd' is 'P' with Binary 'none': nothing to download.
    assert_eq!((errs.0[4].line, errs.0[4].column), (5, 29));
    assert!(
        matches!(&errs.0[4].kind, LayoutErrorKind::NoBinary { name, absent: false, .. } if name == "d"),
        "{errs}"
    );
}

#[test]
fn skip_files_option() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.tsv");
    fs::write(&p, format!("{H}{ROW}")).unwrap();
    assert!(layout::load(&p, &CheckOptions::default()).is_err());
    let o = CheckOptions {
        skip_files: true,
        ..Default::default()
    };
    let l = layout::load(&p, &o).unwrap();
    assert_eq!(l.partitions[0].binary_size, None);
}

/// Writes `bytes` as `name` in `dir` and loads it.
fn load_bytes(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    o: &CheckOptions,
) -> Result<Layout, layout::LayoutErrors> {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    layout::load(&p, o)
}

#[test]
fn download_rows_need_a_binary() {
    // '-' rows (RAM-loaded, or kept on a partial update), PE and PED rows
    // download nothing, so 'none' or no Binary column is fine there.
    let text = format!(
        "{H}-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\tnone\n\
         -\t0x03\tfip-boot\tFIP\tnone\t0x0\n\
         PE\t0x10\ta\tBinary\tmmc0\t0x4400\tnone\n\
         PED\t0x11\tb\tFileSystem\tmmc0\t0x8400\n\
         -\t0x12\tc\tFileSystem\tmmc0\t0xC400\tnone\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let l = load_bytes(
        dir.path(),
        "ok.tsv",
        text.as_bytes(),
        &CheckOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.partitions.len(), 5);
    assert!(l.partitions.iter().all(|p| p.binary.is_none()));

    // P and PD rows do; every such row is reported, at its Binary column
    // or, when the column is missing, just past the end of the row.
    let bad = format!(
        "{H}P\t0x10\ta\tBinary\tmmc0\t0x4400\tnone\n\
         PD\t0x11\tb\tFileSystem\tmmc0\t0x8400\n"
    );
    let errs = load_bytes(
        dir.path(),
        "bad.tsv",
        bad.as_bytes(),
        &CheckOptions::default(),
    )
    .unwrap_err();
    let got: Vec<_> = errs
        .0
        .iter()
        .map(|e| (e.line, e.column, e.kind.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                2,
                29,
                LayoutErrorKind::NoBinary {
                    name: "a".into(),
                    opt: "P".into(),
                    absent: false
                }
            ),
            (
                3,
                33,
                LayoutErrorKind::NoBinary {
                    name: "b".into(),
                    opt: "PD".into(),
                    absent: true
                }
            ),
        ],
        "{errs}"
    );
    assert_eq!(
        errs.0[0].help(),
        "give the file to write, or add E to create the partition empty"
    );
    // Only the layout at hand: no file checks, so no complaint.
    let o = CheckOptions {
        skip_files: true,
        ..Default::default()
    };
    assert!(load_bytes(dir.path(), "bad.tsv", bad.as_bytes(), &o).is_ok());
    // parse alone never looks at binaries.
    assert!(layout::parse(&bad, Path::new("bad.tsv")).is_ok());
}

#[test]
fn binary_copies_must_fit_one_nth_of_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("fsbl.bin"), vec![0u8; 0x40000]).unwrap();
    fs::write(dir.path().join("fsbl1.bin"), vec![0u8; 0x40001]).unwrap();
    // fsbl1 spans 0x80000 (four 128 KiB NAND blocks, up to fs). U-Boot
    // writes each copy in whole erase blocks, so a copy gets two blocks.
    let layout_with = |copies: u32, bin: &str| {
        format!(
            "{H}P\t0x04\tfsbl1\tBinary({copies})\tnand0\t0x0\t{bin}\n\
             PE\t0x10\tfs\tFileSystem\tnand0\t0x80000\tnone\n"
        )
    };
    let o = CheckOptions::default();
    // Exactly half the partition: two copies fit.
    let l = load_bytes(
        dir.path(),
        "l.tsv",
        layout_with(2, "fsbl.bin").as_bytes(),
        &o,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.partitions[0].size(), Some(0x80000));
    assert_eq!(l.partitions[0].binary_size, Some(0x40000));
    // One byte more does not, although it fits the whole partition.
    let errs = load_bytes(
        dir.path(),
        "l.tsv",
        layout_with(2, "fsbl1.bin").as_bytes(),
        &o,
    )
    .unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!((e.line, e.column), (2, 34));
    assert_eq!(
        e.kind,
        LayoutErrorKind::BinaryCopiesTooLarge {
            path: dir.path().join("fsbl1.bin"),
            size: 0x40001,
            name: "fsbl1".into(),
            copies: 2,
            space: 0x80000,
            per_copy: 0x40000,
            erase_size: 0x20000,
            until: " up to 'fs' on line 3".into(),
        }
    );
    let msg = e.kind.to_string();
    assert!(
        msg.contains("(262145 bytes) does not fit 2 times")
            && msg.contains("524288 bytes up to 'fs' on line 3 / 2 copies, each in whole erase blocks = 262144 bytes per copy"),
        "{msg}"
    );
    // Two copies of three 128 KiB blocks each.
    assert!(e.help().contains("at least 786432 bytes"), "{}", e.help());
    // Plain Binary keeps the whole-partition rule.
    let text = layout_with(1, "fsbl1.bin").replace("Binary(1)", "Binary");
    assert!(load_bytes(dir.path(), "l.tsv", text.as_bytes(), &o).is_ok());
    // Unknown partition size (last row of a device of unknown size):
    // nothing to check against.
    let last = format!("{H}P\t0x04\tfsbl1\tBinary(4)\tnand0\t0x0\tfsbl1.bin\n");
    assert!(load_bytes(dir.path(), "l.tsv", last.as_bytes(), &o).is_ok());
}

#[test]
fn wrapped_layout_round_trip() {
    for params in [WriteParams::v1(0), WriteParams::v2(0)] {
        let wrapped = stm32image::write(&params, SDCARD.as_bytes());
        let path = Path::new("/boards/FlashLayout.stm32");
        let from_image = layout::parse_bytes(&wrapped, path).unwrap_or_else(|e| panic!("{e}"));
        let from_text = layout::parse(SDCARD, path).unwrap();
        assert_eq!(from_image, from_text);
        assert_eq!(from_image.partitions.len(), 13);
        // Bytes after the payload (padding some tools add) are ignored.
        let mut padded = wrapped.clone();
        padded.extend_from_slice(&[0xFF; 16]);
        assert_eq!(layout::parse_bytes(&padded, path).unwrap(), from_text);
    }
    // Plain text goes straight to the parser.
    assert_eq!(
        layout::parse_bytes(SDCARD.as_bytes(), Path::new("l.tsv")).unwrap(),
        layout::parse(SDCARD, Path::new("l.tsv")).unwrap()
    );

    // load reads a wrapped file too, and runs the file checks.
    let dir = tempfile::tempdir().unwrap();
    let wrapped = stm32image::write(&WriteParams::v1(0), format!("{H}{ROW}").as_bytes());
    let o = CheckOptions::default();
    let errs = load_bytes(dir.path(), "l.stm32", &wrapped, &o).unwrap_err();
    assert!(
        matches!(&errs.0[..], [e] if e.line == 2 && e.column == 34
            && matches!(e.kind, LayoutErrorKind::MissingBinary { .. })),
        "{errs}"
    );
    fs::write(dir.path().join("a.bin"), b"data").unwrap();
    let l = load_bytes(dir.path(), "l.stm32", &wrapped, &o).unwrap();
    assert_eq!(l.partitions[0].binary_size, Some(4));
    assert_eq!(l.path, dir.path().join("l.stm32"));
}

#[test]
fn wrapped_layout_with_bad_checksum() {
    let mut wrapped = stm32image::write(&WriteParams::v1(0), SDCARD.as_bytes());
    let stored = stm32image::checksum(SDCARD.as_bytes());
    // Corrupt one payload byte: 'P' (0x50) becomes 'Q', one more in the sum.
    let at = stm32image::V1_HEADER_LEN + SDCARD.find("\nP\t").unwrap() + 1;
    assert_eq!(wrapped[at], b'P');
    wrapped[at] = b'Q';
    let path = Path::new("FlashLayout.stm32");
    let errs = layout::parse_bytes(&wrapped, path).unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!(
        e.kind,
        LayoutErrorKind::InvalidChecksum {
            computed: stored + 1,
            expected: stored,
        }
    );
    assert_eq!((e.line, e.column), (1, 1));
    assert_eq!(
        e.to_string(),
        format!(
            "FlashLayout.stm32:1:1: Layout: invalid checksum : {:#x} expected {stored:#x}",
            stored + 1
        )
    );
    assert!(!e.help().is_empty());

    // A corrupted checksum field is the same error, through load as well.
    let mut wrapped = stm32image::write(&WriteParams::v1(0), SDCARD.as_bytes());
    let field = stm32image::offsets::CHECKSUM;
    wrapped[field..field + 4].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let errs = load_bytes(dir.path(), "l.stm32", &wrapped, &CheckOptions::default()).unwrap_err();
    assert_eq!(
        errs.0.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        vec![LayoutErrorKind::InvalidChecksum {
            computed: stored,
            expected: 0xDEAD_BEEF
        }]
    );
    assert!(
        errs.to_string().contains(&format!(
            "invalid checksum : {stored:#x} expected 0xdeadbeef"
        )),
        "{errs}"
    );
}

#[test]
fn wrapped_layout_with_bad_header() {
    let wrapped = stm32image::write(&WriteParams::v1(0), SDCARD.as_bytes());
    // Truncated: the declared payload goes past the end of the file.
    let errs = layout::parse_bytes(&wrapped[..wrapped.len() - 1], Path::new("l")).unwrap_err();
    assert!(
        matches!(&errs.0[..], [e] if (e.line, e.column) == (1, 1)
            && matches!(&e.kind, LayoutErrorKind::InvalidHeader { message } if message.contains("goes beyond the file"))),
        "{errs}"
    );
    // Only the magic.
    let errs = layout::parse_bytes(b"STM\x32", Path::new("l")).unwrap_err();
    assert!(
        errs.to_string()
            .starts_with("l:1:1: Layout: invalid STM32 image header: file too short"),
        "{errs}"
    );
}

#[test]
fn non_utf8_layouts() {
    // 0xFF in the Name column of line 3, after the "g" at column 8.
    let mut bytes = format!("{H}{ROW}").into_bytes();
    let row3 = bytes.len();
    bytes.extend_from_slice(b"P\t0x11\tg\xFFs\tFileSystem\tmmc0\t0x8400\ta.bin\n");
    let errs = layout::parse_bytes(&bytes, Path::new("l.tsv")).unwrap_err();
    let offset = row3 + 8;
    assert_eq!(bytes[offset], 0xFF);
    assert_eq!(errs.0.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!(e.kind, LayoutErrorKind::NotUtf8 { offset });
    assert_eq!((e.line, e.column), (3, 9));
    assert!(
        e.to_string().contains(&format!(
            "invalid UTF-8 at byte offset {offset} ({offset:#x})"
        )),
        "{e}"
    );
    // load reports it instead of parsing a lossy copy.
    let dir = tempfile::tempdir().unwrap();
    let errs = load_bytes(dir.path(), "l.tsv", &bytes, &CheckOptions::default()).unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].kind, LayoutErrorKind::NotUtf8 { offset });

    // Inside a wrapped layout, the offset counts from the start of the
    // file and the line and column from the start of the text.
    let wrapped = stm32image::write(&WriteParams::v1(0), &bytes);
    let errs = layout::parse_bytes(&wrapped, Path::new("l.stm32")).unwrap_err();
    assert_eq!(
        errs.0[0].kind,
        LayoutErrorKind::NotUtf8 {
            offset: stm32image::V1_HEADER_LEN + offset
        }
    );
    assert_eq!((errs.0[0].line, errs.0[0].column), (3, 9));
}

#[test]
fn too_many_partitions() {
    let mut text = String::new();
    for i in 0..241u32 {
        text.push_str(&format!(
            "P\t{}\tp{i}\tBinary\tnor0\t{}\tnone\n",
            (i % 0xF0) + 1,
            u64::from(i) * 0x1000
        ));
    }
    let errs = layout::parse(&text, Path::new("l.tsv")).unwrap_err();
    assert!(
        errs.0
            .iter()
            .any(|e| e.line == 241 && e.kind.to_string().contains("too many partitions")),
        "{errs}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics(text in "\\PC*") {
        let _ = layout::parse(&text, Path::new("x.tsv"));
    }

    #[test]
    fn parse_never_panics_on_tsv_like(rows in prop::collection::vec(
        prop::collection::vec(
            prop_oneof![
                Just("P".to_string()), Just("-".to_string()), Just("PED".to_string()),
                Just("0x10".to_string()), Just("boot1".to_string()), Just("mmc0".to_string()),
                Just("Binary(3)".to_string()), Just("RawImage".to_string()), Just("nand0".to_string()),
                "[ -~]{0,12}",
            ],
            0..9,
        ),
        0..12,
    )) {
        let text: String = rows.iter().map(|r| r.join("\t") + "\n").collect();
        let mut l = match layout::parse(&text, Path::new("x.tsv")) {
            Ok(l) => l,
            Err(e) => { prop_assert!(!e.0.is_empty()); return Ok(()); }
        };
        let _ = layout::check(&mut l, &CheckOptions { skip_files: true, ..Default::default() });
    }
}

#[test]
fn binaries_are_searched_as_st_scripts_do() {
    let dirs = layout::binary_search_dirs(
        Path::new("pkg/flashlayout_x/optee/FlashLayout.tsv"),
        &[PathBuf::from("mine")],
    );
    let want: Vec<PathBuf> = [
        "mine",
        "pkg/flashlayout_x/optee",
        "pkg/flashlayout_x/optee/..",
        "pkg/flashlayout_x/optee/../..",
        "pkg/flashlayout_x/optee/../../..",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(dirs, want);
    // The first hit wins: a copy beside the layout beats the one two
    // levels up; with none anywhere, every place is listed.
    let dir = tempfile::tempdir().unwrap();
    let tsv_dir = dir.path().join("flashlayout_x/optee");
    fs::create_dir_all(&tsv_dir).unwrap();
    fs::write(dir.path().join("fip.bin"), [1u8; 100]).unwrap();
    let row = "P\t0x10\tdata\tBinary\tmmc0\t0x4400\tfip.bin\n";
    let o = CheckOptions::default();
    let l = load_bytes(&tsv_dir, "l.tsv", row.as_bytes(), &o).unwrap();
    assert_eq!(l.partitions[0].binary, Some(tsv_dir.join("../../fip.bin")));
    assert_eq!(l.partitions[0].binary_name.as_deref(), Some("fip.bin"));
    fs::write(tsv_dir.join("fip.bin"), [2u8; 50]).unwrap();
    let l = load_bytes(&tsv_dir, "l.tsv", row.as_bytes(), &o).unwrap();
    assert_eq!(l.partitions[0].binary, Some(tsv_dir.join("fip.bin")));
    assert_eq!(l.partitions[0].binary_size, Some(50));
    let gone = row.replace("fip.bin", "gone.bin");
    let errs = load_bytes(&tsv_dir, "l.tsv", gone.as_bytes(), &o).unwrap_err();
    let LayoutErrorKind::MissingBinary { looked, .. } = &errs.0[0].kind else {
        panic!("{errs}")
    };
    assert_eq!(looked.len(), 4);
    assert_eq!(looked[3], tsv_dir.join("../../../gone.bin"));
    assert_eq!(errs.0[0].line, 1);
    assert_eq!(
        errs.0[0].kind.code(),
        "dfukit::stm32mp::layout::missing_binary"
    );
}

#[test]
fn bom_is_dropped_and_nul_refused() {
    let row = "P\t0x10\tdata\tBinary\tmmc0\t0x4400\tnone\n";
    let o = CheckOptions {
        skip_files: true,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let bom = format!("\u{FEFF}{row}");
    let l = load_bytes(dir.path(), "bom.tsv", bom.as_bytes(), &o).unwrap();
    assert_eq!(l.partitions[0].name, "data");
    assert_eq!(l.partitions[0].columns[0], 1);
    let nul = row.replace("data", "da\0ta");
    let errs = load_bytes(dir.path(), "nul.tsv", nul.as_bytes(), &o).unwrap_err();
    assert_eq!((errs.0[0].line, errs.0[0].column), (1, 10));
    assert!(matches!(
        &errs.0[0].kind,
        LayoutErrorKind::NulInField { field: "Name", text } if text == "da\\0ta"
    ));
}
