//! Flashlayout parser and validator: ST's sample layouts, malformed
//! layouts with exact positions, and a no-panic property.

use std::fs;
use std::path::{Path, PathBuf};

use dfukit_stm32mp::layout::{
    self, CheckOptions, DeviceGeometry, Ip, IpKind, Layout, Offset, PartType,
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
    let mut o = CheckOptions::default();
    o.devices.insert(
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
    let path = dir.path().join("bad.tsv");
    fs::write(&path, &c.text).unwrap();
    let mut o = CheckOptions::default();
    o.devices.insert(
        mmc(0),
        DeviceGeometry {
            size: Some(0x100000),
            ..Default::default()
        },
    );
    match layout::load(&path, &o) {
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
    assert_eq!(errs.0.len(), 4, "{errs}");
    assert_eq!((errs.0[3].line, errs.0[3].column), (5, 22));
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
