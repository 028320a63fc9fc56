//! SD-card image builder: ST's sample SD-card layout checked with the real
//! `sgdisk`/`sfdisk`, compared with the GPT the script's own `sgdisk`
//! commands make, and bad-input errors.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dfukit_stm32mp::sdcard::{
    build, format_guid, st_bootable_legacy, st_default_partuuid, SdError, SdImageOptions, SdKind,
    SdPartition, SdSummary, ATTR_LEGACY_BIOS_BOOTABLE, DEFAULT_SIZE_BYTES, ROOTFS_PARTUUID,
};

const MIB: u64 = 1024 * 1024;

/// `mmc0` rows of `FlashLayout_sdcard_stm32mp157f-ev1_sample.tsv`
/// (reference §4.5): option, name, type, offset, has a binary.
const SAMPLE: &[(&str, &str, &str, u64, bool)] = &[
    ("P", "fsbl1", "Binary", 0x0000_4400, true),
    ("P", "fsbl2", "Binary", 0x0004_4400, true),
    ("P", "metadata1", "FWU_MDATA", 0x0008_4400, true),
    ("P", "metadata2", "FWU_MDATA", 0x000C_4400, true),
    ("P", "fip-a", "FIP", 0x0010_4400, true),
    ("PED", "fip-b", "FIP", 0x0050_4400, false),
    ("PED", "u-boot-env", "ENV", 0x0090_4400, false),
    ("P", "bootfs", "System", 0x0098_4400, true),
    ("P", "vendorfs", "FileSystem", 0x0498_4400, true),
    ("P", "rootfs", "FileSystem", 0x0598_4400, true),
    ("P", "userfs", "FileSystem", 0x1_0598_4400, true),
];

/// Dummy binary contents for row `i`: odd sizes, a non-zero pattern, and
/// for bootfs an all-zero MiB in the middle (exercises hole skipping).
fn dummy(i: usize, name: &str) -> Vec<u8> {
    let len = match name {
        "bootfs" => 3 * MIB as usize + 123,
        "rootfs" => 2 * MIB as usize + 7,
        _ => 4096 * (i + 1) + 17 * i + 1,
    };
    let mut v: Vec<u8> = (0..len)
        .map(|k| ((k * 31 + i * 7) % 251) as u8 | 1)
        .collect();
    if name == "bootfs" {
        v[MIB as usize..2 * MIB as usize].fill(0);
    }
    v
}

/// The sample layout as `SdPartition`s, binaries written under `dir`.
fn sample(dir: &Path) -> Vec<SdPartition> {
    SAMPLE
        .iter()
        .enumerate()
        .map(|(i, &(opt, name, ty, offset, has_bin))| {
            let binary = has_bin.then(|| {
                let p = dir.join(format!("{name}.bin"));
                fs::write(&p, dummy(i, name)).unwrap();
                p
            });
            SdPartition {
                name: name.to_string(),
                kind: SdKind::from_layout_type(ty).unwrap(),
                offset,
                program: opt.contains('P'),
                binary,
                bootable_legacy: st_bootable_legacy(name),
                partuuid: st_default_partuuid(name),
            }
        })
        .collect()
}

/// Whether the peer tools are present; panics if they are required.
fn have_peers() -> bool {
    let missing: Vec<&str> = ["sgdisk", "sfdisk"]
        .into_iter()
        .filter(|t| {
            Command::new(t)
                .arg("--version")
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    dfukit_testkit::peers::missing(
        &format!("{missing:?}"),
        "install Debian packages gdisk and fdisk",
    );
    false
}

fn run(dir: &Path, prog: &str, args: &[String]) -> String {
    dfukit_testkit::peers::stdout_of(Command::new(prog).args(args).current_dir(dir))
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Partition rows of `sgdisk -p`: (number, start, end, code, name).
fn sgdisk_rows(out: &str) -> Vec<(u32, u64, u64, String, String)> {
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[5].to_string(),
                f[6..].join(" "),
            )
        })
        .collect()
}

/// Value of a `Key: value` line of `sgdisk -i`.
fn info_field<'a>(info: &'a str, key: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} missing in {info}"))
        .trim()
}

fn read_at(img: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut v = vec![0u8; len];
    f.read_exact(&mut v).unwrap();
    v
}

fn build_sample(dir: &Path, opts: &SdImageOptions) -> (Vec<SdPartition>, PathBuf, SdSummary) {
    let bins = dir.join("bins");
    fs::create_dir_all(&bins).unwrap();
    let parts = sample(&bins);
    let img = dir.join("sdcard.raw");
    let summary = build(&parts, opts, &img).unwrap();
    (parts, img, summary)
}

#[test]
fn sample_layout_summary_contents_and_sparseness() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let (parts, img, s) = build_sample(dir.path(), &SdImageOptions::default());
    assert!(t0.elapsed().as_secs() < 20, "took {:?}", t0.elapsed());

    let md = fs::metadata(&img).unwrap();
    assert_eq!(md.len(), DEFAULT_SIZE_BYTES);
    assert!(
        md.blocks() * 512 < 64 * MIB,
        "image not sparse: {} bytes allocated",
        md.blocks() * 512
    );

    let sectors = DEFAULT_SIZE_BYTES / 512;
    assert_eq!(s.first_usable_lba, 34);
    assert_eq!(s.last_usable_lba, sectors - 34);
    assert_eq!(s.partitions.len(), SAMPLE.len());
    for (i, (p, ps)) in parts.iter().zip(&s.partitions).enumerate() {
        assert_eq!(ps.number as usize, i + 1);
        assert_eq!(ps.name, p.name);
        assert_eq!(ps.start_lba, p.offset / 512);
        let end = parts
            .get(i + 1)
            .map_or(sectors - 34, |n| n.offset / 512 - 1);
        assert_eq!(ps.end_lba, end, "{}", p.name);
        let want = match &p.binary {
            Some(b) if p.program => fs::metadata(b).unwrap().len(),
            _ => 0,
        };
        assert_eq!(ps.bytes_written, want, "{}", p.name);
        assert_eq!(ps.attributes != 0, p.name == "bootfs");
    }
    assert_eq!(s.partitions[0].start_lba, 34, "fsbl1 at 0x4400");
    assert_eq!(s.partitions[9].partuuid, ROOTFS_PARTUUID);

    // Each programmed partition holds its binary byte for byte; the
    // sector after it and the PED partitions stay zero.
    for p in &parts {
        match &p.binary {
            Some(b) => {
                let want = fs::read(b).unwrap();
                assert_eq!(read_at(&img, p.offset, want.len()), want, "{}", p.name);
                let tail = read_at(&img, p.offset + want.len() as u64, 512);
                assert!(tail.iter().all(|&b| b == 0), "{} tail", p.name);
            }
            None => {
                let head = read_at(&img, p.offset, 4096);
                assert!(head.iter().all(|&b| b == 0), "{} not empty", p.name);
            }
        }
    }
}

#[test]
fn sample_layout_checked_by_sgdisk_and_sfdisk() {
    if !have_peers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (parts, _img, s) = build_sample(dir.path(), &SdImageOptions::default());
    let d = dir.path();

    // sgdisk -v: no problems.
    let v = run(d, "sgdisk", &args(&["-v", "sdcard.raw"]));
    assert!(v.contains("No problems found"), "{v}");

    let p = run(d, "sgdisk", &args(&["-p", "sdcard.raw"]));
    assert!(p.contains("First usable sector is 34"), "{p}");
    assert!(
        p.contains(&format!("last usable sector is {}", s.last_usable_lba)),
        "{p}"
    );
    assert!(
        p.contains(&format!(
            "Disk identifier (GUID): {}",
            format_guid(&s.disk_guid).to_uppercase()
        )),
        "{p}"
    );
    let rows = sgdisk_rows(&p);
    assert_eq!(rows.len(), parts.len(), "{p}");
    for (i, (row, part)) in rows.iter().zip(&parts).enumerate() {
        assert_eq!(row.0 as usize, i + 1);
        assert_eq!(row.1, part.offset / 512, "{p}");
        assert_eq!(row.2, s.partitions[i].end_lba, "{p}");
        assert_eq!(row.4, part.name, "{p}");
        match part.kind {
            SdKind::Binary => assert_eq!(row.3, "8301"),
            SdKind::System | SdKind::FileSystem => assert_eq!(row.3, "8300"),
            _ => {}
        }
        let info = run(
            d,
            "sgdisk",
            &args(&["-i", &(i + 1).to_string(), "sdcard.raw"]),
        );
        let code = info_field(&info, "Partition GUID code:");
        assert!(
            code.to_lowercase()
                .starts_with(&format_guid(&part.kind.type_guid())),
            "{}: {code}",
            part.name
        );
        let attrs = u64::from_str_radix(info_field(&info, "Attribute flags:"), 16).unwrap();
        let want = if part.name == "bootfs" {
            ATTR_LEGACY_BIOS_BOOTABLE
        } else {
            0
        };
        assert_eq!(attrs, want, "{}", part.name);
        assert_eq!(
            info_field(&info, "Partition name:"),
            format!("'{}'", part.name)
        );
        let uniq = info_field(&info, "Partition unique GUID:").to_lowercase();
        assert_eq!(uniq, format_guid(&s.partitions[i].partuuid));
        if part.name == "rootfs" {
            assert_eq!(uniq, "e91c4e10-16e6-4c0e-bd0e-77becf4a3582");
        }
    }

    let json = run(d, "sfdisk", &args(&["--json", "sdcard.raw"]));
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    let pt = &j["partitiontable"];
    assert_eq!(pt["label"], "gpt");
    assert_eq!(pt["firstlba"], 34);
    assert_eq!(pt["lastlba"], s.last_usable_lba);
    let jp = pt["partitions"].as_array().unwrap();
    assert_eq!(jp.len(), parts.len());
    for (i, (e, part)) in jp.iter().zip(&parts).enumerate() {
        assert_eq!(e["start"], part.offset / 512);
        assert_eq!(
            e["size"],
            s.partitions[i].end_lba + 1 - s.partitions[i].start_lba
        );
        assert_eq!(e["name"], part.name.as_str());
        assert_eq!(
            e["type"].as_str().unwrap().to_lowercase(),
            format_guid(&part.kind.type_guid())
        );
        if part.name == "bootfs" {
            assert_eq!(e["attrs"], "LegacyBIOSBootable", "{json}");
        } else {
            assert!(e.get("attrs").is_none(), "{json}");
        }
        if part.name == "rootfs" {
            assert_eq!(e["uuid"], "E91C4E10-16E6-4C0E-BD0E-77BECF4A3582");
        }
    }
}

/// Runs the script's own `sgdisk` commands (section "generate_gpt_partition_
/// table_from_flash_layout") on a fresh sparse file in `dir`, optionally
/// pinning every GUID, and returns the image path.
fn script_reference(
    dir: &Path,
    parts: &[SdPartition],
    size: u64,
    pin: Option<&SdSummary>,
) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let img = dir.join("sdcard.raw");
    File::create(&img).unwrap().set_len(size).unwrap();
    run(dir, "sgdisk", &args(&["-og", "-a", "1", "sdcard.raw"]));
    for (i, p) in parts.iter().enumerate() {
        let j = i + 1;
        let start = p.offset / 512;
        // Last row: the script passes an empty end.
        let end = parts
            .get(j)
            .map_or(String::new(), |n| (n.offset / 512 - 1).to_string());
        let mut a = args(&["-a", "1"]);
        a.push("-n".into());
        a.push(format!("{j}:{start}:{end}"));
        a.push("-c".into());
        a.push(format!("{j}:{}", p.name));
        a.push("-t".into());
        a.push(format!("{j}:{}", p.kind.sgdisk_code()));
        if st_bootable_legacy(&p.name) {
            a.push("-A".into());
            a.push(format!("{j}:set:2"));
        }
        let uuid = match pin {
            Some(s) => Some(s.partitions[i].partuuid),
            None => st_default_partuuid(&p.name),
        };
        if let Some(u) = uuid {
            a.push("-u".into());
            a.push(format!("{j}:{}", format_guid(&u)));
        }
        a.push("sdcard.raw".into());
        run(dir, "sgdisk", &a);
    }
    if let Some(s) = pin {
        run(
            dir,
            "sgdisk",
            &args(&["-U", &format_guid(&s.disk_guid), "sdcard.raw"]),
        );
    }
    img
}

/// The sample built with `opts` in `<tmp>/ours`, and the script's
/// commands run on its rows in `<tmp>/script` (every GUID pinned to ours
/// when `pin`): the directory and the two images, both `sdcard.raw`.
/// `None` when the peer tools are missing.
fn ours_and_script(
    opts: &SdImageOptions,
    pin: bool,
) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !have_peers() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours_dir = dir.path().join("ours");
    fs::create_dir_all(&ours_dir).unwrap();
    let (parts, img, s) = build_sample(&ours_dir, opts);
    let script_dir = dir.path().join("script");
    let ref_img = script_reference(&script_dir, &parts, opts.size_bytes, pin.then_some(&s));
    Some((dir, img, ref_img))
}

#[test]
fn same_table_as_the_script_commands() {
    let Some((_dir, img, ref_img)) = ours_and_script(&SdImageOptions::default(), false) else {
        return;
    };
    // `sgdisk -p` of an image, without the (random) disk GUID.
    let table = |img: &Path| -> String {
        let dir = img.parent().unwrap();
        run(dir, "sgdisk", &args(&["-p", "sdcard.raw"]))
            .lines()
            .filter(|l| !l.starts_with("Disk identifier"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let a = table(&img);
    let b = table(&ref_img);
    assert_eq!(a, b);
    assert_eq!(sgdisk_rows(&a).len(), SAMPLE.len());
}

#[test]
fn gpt_bytes_identical_to_script_with_pinned_guids() {
    let opts = SdImageOptions {
        size_bytes: DEFAULT_SIZE_BYTES,
        disk_guid: Some([0x42; 16]),
    };
    let Some((_dir, img, ref_img)) = ours_and_script(&opts, true) else {
        return;
    };

    // Primary header + entry array (LBA 1..=33) and backup (last 33 sectors).
    let end = opts.size_bytes - 33 * 512;
    assert_eq!(
        read_at(&img, 512, 33 * 512),
        read_at(&ref_img, 512, 33 * 512)
    );
    assert_eq!(
        read_at(&img, end, 33 * 512),
        read_at(&ref_img, end, 33 * 512)
    );
    // Protective MBR: one 0xEE record from LBA 1 over the whole disk.
    let (m, r) = (read_at(&img, 0, 512), read_at(&ref_img, 0, 512));
    assert_eq!(&m[510..], &[0x55, 0xAA]);
    assert_eq!(m[446 + 4], 0xEE);
    assert_eq!(m[446 + 4], r[446 + 4]);
    assert_eq!(
        &m[446 + 8..446 + 16],
        &r[446 + 8..446 + 16],
        "LBA start/size"
    );
}

#[test]
fn small_image_and_e_row_not_filled() {
    // A 256 MiB card with the sample's first rows; `E` rows get a
    // partition but no data even with a binary.
    let dir = tempfile::tempdir().unwrap();
    let mut parts: Vec<SdPartition> = sample(dir.path()).into_iter().take(9).collect();
    parts[4].program = false; // fip-a as an 'E' row
    let img = dir.path().join("small.raw");
    let s = build(&parts, &sized(256 * MIB), &img).unwrap();
    assert_eq!(s.partitions.len(), 9);
    assert_eq!(s.partitions[8].end_lba, 256 * MIB / 512 - 34);
    assert_eq!(s.partitions[4].bytes_written, 0);
    assert!(read_at(&img, parts[4].offset, 4096).iter().all(|&b| b == 0));
    assert_eq!(fs::metadata(&img).unwrap().len(), 256 * MIB);
    if have_peers() {
        let v = run(dir.path(), "sgdisk", &args(&["-v", "small.raw"]));
        assert!(v.contains("No problems found"), "{v}");
    }
}

// ---- bad input ----------------------------------------------------------

fn part(name: &str, offset: u64) -> SdPartition {
    SdPartition {
        name: name.into(),
        kind: SdKind::Binary,
        offset,
        program: true,
        binary: None,
        bootable_legacy: false,
        partuuid: None,
    }
}

/// An image of `size_bytes` with a random disk GUID.
fn sized(size_bytes: u64) -> SdImageOptions {
    SdImageOptions {
        size_bytes,
        disk_guid: None,
    }
}

fn small() -> SdImageOptions {
    sized(8 * MIB)
}

/// Row `name` at `offset` with a binary of `len` bytes written in `dir`.
fn part_with_binary(dir: &Path, name: &str, offset: u64, len: usize) -> SdPartition {
    let bin = dir.join(format!("{name}.bin"));
    fs::write(&bin, vec![1u8; len]).unwrap();
    SdPartition {
        binary: Some(bin),
        ..part(name, offset)
    }
}

fn try_build(parts: &[SdPartition], opts: &SdImageOptions) -> (SdError, bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.raw");
    let e = build(parts, opts, &out).unwrap_err();
    (e, out.exists())
}

#[test]
fn error_no_partitions() {
    let (e, created) = try_build(&[], &small());
    assert!(matches!(e, SdError::NoPartitions), "{e:?}");
    assert!(!created);
}

#[test]
fn error_unsorted_offsets() {
    let (e, created) = try_build(&[part("a", 0x8000), part("b", 0x4400)], &small());
    match e {
        SdError::OffsetNotIncreasing {
            name,
            offset,
            previous,
            previous_offset,
        } => {
            assert_eq!((name.as_str(), offset), ("b", 0x4400));
            assert_eq!((previous.as_str(), previous_offset), ("a", 0x8000));
        }
        e => panic!("{e:?}"),
    }
    assert!(!created, "validation must precede creating the output");
}

#[test]
fn error_overlapping_offsets() {
    let (e, _) = try_build(&[part("a", 0x4400), part("b", 0x4400)], &small());
    assert!(matches!(e, SdError::OffsetNotIncreasing { .. }), "{e:?}");
}

#[test]
fn error_unaligned_offset() {
    let (e, _) = try_build(&[part("a", 0x4400), part("b", 0x4401)], &small());
    match e {
        SdError::UnalignedOffset { name, offset } => {
            assert_eq!((name.as_str(), offset), ("b", 0x4401))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn error_below_lba_34() {
    let (e, _) = try_build(&[part("a", 33 * 512)], &small());
    match e {
        SdError::OffsetBelowFirstUsable { name, offset, min } => {
            assert_eq!((name.as_str(), offset, min), ("a", 33 * 512, 0x4400))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn error_binary_larger_than_partition() {
    let dir = tempfile::tempdir().unwrap();
    let a = part_with_binary(dir.path(), "fsbl1", 0x4400, 4097);
    let bin = a.binary.clone().unwrap();
    let (e, created) = try_build(&[a, part("fsbl2", 0x4400 + 4096)], &small());
    let msg = e.to_string();
    match e {
        SdError::BinaryTooLarge {
            name,
            path,
            binary_bytes,
            partition_bytes,
        } => {
            assert_eq!(name, "fsbl1");
            assert_eq!(path, bin);
            assert_eq!((binary_bytes, partition_bytes), (4097, 4096));
        }
        e => panic!("{e:?}"),
    }
    assert!(msg.contains("4097") && msg.contains("4096"), "{msg}");
    assert!(!created);
}

#[test]
fn error_binary_too_large_is_ignored_for_e_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = part_with_binary(dir.path(), "fsbl1", 0x4400, 4097);
    a.program = false;
    let out = dir.path().join("x.raw");
    build(&[a, part("fsbl2", 0x4400 + 4096)], &small(), &out).unwrap();
}

#[test]
fn error_image_too_small() {
    // Partition starting past the end of the image.
    let (e, _) = try_build(&[part("a", 0x4400), part("b", 16 * MIB)], &small());
    match e {
        SdError::ImageTooSmall {
            size_bytes,
            required_bytes,
            ..
        } => {
            assert_eq!(size_bytes, 8 * MIB);
            assert!(required_bytes > 16 * MIB);
        }
        e => panic!("{e:?}"),
    }
    // Last partition's binary does not fit before the backup GPT.
    let dir = tempfile::tempdir().unwrap();
    let r = part_with_binary(dir.path(), "rootfs", 2 * MIB, 7 * MIB as usize);
    let (e, _) = try_build(&[part("a", 0x4400), r], &small());
    match e {
        SdError::ImageTooSmall {
            name,
            required_bytes,
            ..
        } => {
            assert_eq!(name, "rootfs");
            assert_eq!(required_bytes, 9 * MIB + 33 * 512);
        }
        e => panic!("{e:?}"),
    }
    // Too small even for the GPT itself.
    let (e, _) = try_build(&[part("a", 0x4400)], &sized(60 * 512));
    assert!(matches!(e, SdError::ImageTooSmall { .. }), "{e:?}");
    // Not a whole number of sectors.
    let (e, _) = try_build(&[part("a", 0x4400)], &sized(8 * MIB + 1));
    assert!(matches!(e, SdError::UnalignedImageSize { size_bytes } if size_bytes == 8 * MIB + 1));
}

#[test]
fn error_unreadable_binary_names_path() {
    let mut a = part("fip-a", 0x4400);
    let missing = PathBuf::from("/nonexistent/dfukit/fip.bin");
    a.binary = Some(missing.clone());
    let (e, created) = try_build(&[a], &small());
    assert!(e.to_string().contains("/nonexistent/dfukit/fip.bin"), "{e}");
    match e {
        SdError::BinaryUnreadable { name, path, .. } => {
            assert_eq!(name, "fip-a");
            assert_eq!(path, missing);
        }
        e => panic!("{e:?}"),
    }
    assert!(!created);
}

#[test]
fn error_name_too_long() {
    let (e, _) = try_build(&[part(&"n".repeat(37), 0x4400)], &small());
    assert!(matches!(e, SdError::NameTooLong { max: 36, .. }), "{e:?}");
}

#[test]
fn kinds_and_st_defaults() {
    for (t, k, code) in [
        ("Binary", SdKind::Binary, "8301"),
        ("System", SdKind::System, "8300"),
        ("FileSystem", SdKind::FileSystem, "8300"),
        ("FIP", SdKind::Fip, "19d5df83-11b0-457b-be2c-7559c13142a5"),
        (
            "FWU_MDATA",
            SdKind::FwuMdata,
            "8a7a84a0-8387-40f6-ab41-a8b9a5a60d23",
        ),
        ("ENV", SdKind::Env, "3de21764-95bd-54bd-a5c3-4abe786f38a8"),
        ("ESP", SdKind::Esp, "ef00"),
    ] {
        assert_eq!(SdKind::from_layout_type(t), Some(k));
        assert_eq!(k.sgdisk_code(), code);
    }
    assert_eq!(SdKind::from_layout_type("RawImage"), None);
    assert_eq!(
        format_guid(&SdKind::Binary.type_guid()),
        "8da63339-0007-60c0-c436-083ac8230908"
    );
    assert_eq!(
        format_guid(&SdKind::Esp.type_guid()),
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    );
    assert_eq!(
        st_default_partuuid("fip-b")
            .map(|g| format_guid(&g))
            .as_deref(),
        Some("09c54952-d5bf-45af-acee-335303766fb3")
    );
    assert_eq!(
        st_default_partuuid("fip-a")
            .map(|g| format_guid(&g))
            .as_deref(),
        Some("4fd84c93-54ef-463f-a7ef-ae25ff887087")
    );
    assert_eq!(st_default_partuuid("bootfs"), None);
    assert!(st_bootable_legacy("bootfs") && st_bootable_legacy("boot"));
    assert!(!st_bootable_legacy("rootfs"));
}
