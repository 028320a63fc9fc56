//! `dfukit stm32mp`: flashlayout checks, STM32 image headers, SD-card
//! images, through the binary, with the real sfdisk reading the card.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// ST's STM32MP157F-EV1 SD-card layout with small stand-in binaries.
fn sample(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../dfukit-stm32mp/tests/fixtures/layout/FlashLayout_sdcard_stm32mp157f-ev1_sample.tsv",
    );
    let text = std::fs::read_to_string(src).unwrap();
    for (i, line) in text.lines().enumerate() {
        let bin = line.split('\t').nth(6).unwrap_or("none");
        if line.starts_with('#') || bin == "none" {
            continue;
        }
        let p = dir.join(bin);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            dfukit_sim::synthetic::firmware(3000 + i * 100, i as u32),
        )
        .unwrap();
    }
    let tsv = dir.join("FlashLayout_sdcard.tsv");
    std::fs::write(&tsv, text).unwrap();
    tsv
}

#[test]
fn check_accepts_st_sample_and_reports_errors_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = sample(dir.path());
    let out = ok(&["stm32mp", "check", tsv.to_str().unwrap()]);
    assert!(out.contains("13 partitions, valid"), "{out}");
    assert!(
        out.contains("userfs") && out.contains("0x105984400"),
        "{out}"
    );
    // Two mistakes: a P on a RAM-loaded row, and a name over 16 characters.
    let bad = std::fs::read_to_string(&tsv)
        .unwrap()
        .replacen("-\t0x01\tfsbl-boot", "P\t0x01\tfsbl-boot", 1)
        .replacen("\trootfs\t", "\trootfs-with-a-long-name\t", 1);
    let bad_path = dir.path().join("bad.tsv");
    std::fs::write(&bad_path, bad).unwrap();
    let out = run(&["stm32mp", "check", bad_path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_contains(
        &err,
        &["bad.tsv:2:1:", "bad.tsv:13:8:", "help:", "2 error(s)"],
    );
}

#[test]
fn image_info_decodes_and_checks_the_header() {
    use dfukit_stm32mp::image::{write, WriteParams};
    let dir = tempfile::tempdir().unwrap();
    let img = write(
        &WriteParams::v1(0x2FFC_2500),
        &dfukit_sim::synthetic::firmware(9000, 5),
    );
    let f = dir.path().join("tf-a.stm32");
    std::fs::write(&f, &img).unwrap();
    let out = ok(&["stm32mp", "image-info", f.to_str().unwrap()]);
    assert!(out.contains("0x2ffc2500") && out.contains("(ok)"), "{out}");
    let json = ok(&["stm32mp", "image-info", "--json", f.to_str().unwrap()]);
    assert!(json.contains("\"checksum_ok\":true"), "{json}");
    // One flipped payload byte: reported, non-zero exit.
    let mut bad = img.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    std::fs::write(&f, bad).unwrap();
    let out = run(&["stm32mp", "image-info", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("image_checksum"));
    // Not an STM32 image at all.
    std::fs::write(&f, b"not an image").unwrap();
    let out = run(&["stm32mp", "image-info", f.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn sdcard_image_matches_the_layout_for_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = sample(dir.path());
    let img = dir.path().join("sdcard.raw");
    let out = ok(&[
        "stm32mp",
        "sdcard",
        tsv.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
    ]);
    assert!(out.contains("11 partitions"), "{out}");
    // The binaries are in place at their offsets. Only that range is read:
    // the card is a 5 GiB sparse file.
    let fsbl1 = std::fs::read(
        dir.path()
            .join("arm-trusted-firmware/tf-a-stm32mp157f-ev1-sdcard.stm32"),
    )
    .unwrap();
    let mut at_fsbl1 = vec![0; fsbl1.len()];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&img).unwrap();
        f.seek(SeekFrom::Start(0x4400)).unwrap();
        f.read_exact(&mut at_fsbl1).unwrap();
    }
    assert_eq!(at_fsbl1, fsbl1);
    let Some(sfdisk) = dfukit_testkit::peers::tool("sfdisk", "apt-get install fdisk") else {
        return;
    };
    let out = Command::new(sfdisk)
        .arg("--json")
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = v["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 11);
    assert_eq!(parts[0]["start"], 0x4400 / 512);
    assert_eq!(parts[0]["name"], "fsbl1");
    assert_eq!(parts[9]["name"], "rootfs");
    assert_eq!(parts[9]["uuid"], "E91C4E10-16E6-4C0E-BD0E-77BECF4A3582");
}
