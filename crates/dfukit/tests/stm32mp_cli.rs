//! `dfukit stm32mp`: flashlayout checks, STM32 image headers, SD-card
//! images, through the binary, with the real sfdisk reading the card.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

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

/// ST's STM32MP157F-EV1 SD-card layout text.
fn sample_text() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../dfukit-stm32mp/tests/fixtures/layout/FlashLayout_sdcard_stm32mp157f-ev1_sample.tsv",
    );
    std::fs::read_to_string(src).unwrap()
}

/// Writes the binaries `tsv` names under `base`: `.stm32` files as STM32
/// images (v1 header, valid checksum), the others as small filler.
fn write_binaries(tsv: &str, base: &Path) {
    use dfukit_stm32mp::image::{write, WriteParams};
    for (i, line) in tsv.lines().enumerate() {
        let bin = line.split('\t').nth(6).unwrap_or("none");
        if line.starts_with('#') || bin == "none" {
            continue;
        }
        let p = base.join(bin);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let body = dfukit_sim::synthetic::firmware(3000 + i * 100, i as u32);
        let bytes = if bin.ends_with(".stm32") {
            write(&WriteParams::v1(0x2FFC_2500), &body)
        } else {
            body
        };
        std::fs::write(&p, bytes).unwrap();
    }
}

/// The layout as ST's starter packages ship it: the TSV in
/// `flashlayout_st-image-weston/optee/`, the binaries two levels up.
fn st_tree(root: &Path) -> std::path::PathBuf {
    let text = sample_text();
    write_binaries(&text, root);
    let dir = root.join("flashlayout_st-image-weston/optee");
    std::fs::create_dir_all(&dir).unwrap();
    let tsv = dir.join("FlashLayout_sdcard_stm32mp157f-ev1-optee.tsv");
    std::fs::write(&tsv, text).unwrap();
    tsv
}

/// `sgdisk -p` of `img` without the lines naming the file or the random
/// disk GUID: the partition table as ST's script prints it.
fn sgdisk_table(sgdisk: &Path, img: &Path) -> String {
    let out = Command::new(sgdisk).arg("-p").arg(img).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("Disk ") && !l.starts_with("Disk identifier"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sdcard(tsv: &Path, img: &Path, extra: &[&str]) -> Output {
    dfukit()
        .args(["stm32mp", "sdcard"])
        .arg(tsv)
        .arg("-o")
        .arg(img)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn st_tree_finds_binaries_up_the_tree_and_gives_the_same_card() {
    let dir = tempfile::tempdir().unwrap();
    let tree = st_tree(&dir.path().join("tree"));
    let flat = sample(&dir.path().join("flat"));
    std::fs::create_dir_all(dir.path().join("flat")).unwrap();
    let out = ok(&["stm32mp", "check", tree.to_str().unwrap()]);
    assert!(out.contains("13 partitions, valid"), "{out}");
    // The binaries were found two levels up, where ST puts them.
    assert!(
        out.contains("optee/../../arm-trusted-firmware/tf-a-stm32mp157f-ev1-sdcard.stm32"),
        "{out}"
    );
    let (a, b) = (dir.path().join("tree.raw"), dir.path().join("flat.raw"));
    succeeded(&sdcard(&tree, &a, &[]));
    succeeded(&sdcard(&flat, &b, &[]));
    let fsbl1 = std::fs::read(
        dir.path()
            .join("tree/arm-trusted-firmware/tf-a-stm32mp157f-ev1-sdcard.stm32"),
    )
    .unwrap();
    let mut at = vec![0; fsbl1.len()];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&a).unwrap(), &mut at, 0x4400)
        .unwrap();
    assert_eq!(at, fsbl1);
    let Some(sgdisk) = tool("sgdisk") else { return };
    let (ta, tb) = (sgdisk_table(&sgdisk, &a), sgdisk_table(&sgdisk, &b));
    assert!(ta.contains("fsbl1") && ta.contains("userfs"), "{ta}");
    assert_eq!(ta, tb);
}

#[test]
fn binaries_dir_is_searched_first_and_a_missing_binary_lists_every_place() {
    let dir = tempfile::tempdir().unwrap();
    let tree = st_tree(&dir.path().join("tree"));
    // --binaries DIR wins over the tree.
    let other = dir.path().join("other");
    write_binaries(&sample_text(), &other);
    let out = ok(&[
        "stm32mp",
        "check",
        tree.to_str().unwrap(),
        "--binaries",
        other.to_str().unwrap(),
    ]);
    let want = other.join("fip/fip-stm32mp157f-ev1-optee.bin");
    assert!(out.contains(want.to_str().unwrap()), "{out}");
    // One binary gone: its first row (line 3, fip-boot) and the five
    // places looked, in order.
    std::fs::remove_file(dir.path().join("tree/fip/fip-stm32mp157f-ev1-optee.bin")).unwrap();
    std::fs::remove_file(&want).unwrap();
    let out = dfukit()
        .args(["stm32mp", "check"])
        .arg(&tree)
        .arg("--binaries")
        .arg(&other)
        .output()
        .unwrap();
    let err = failed(&out);
    let row = format!("{}:3:", tree.display());
    assert_contains(
        &err,
        &[
            &row,
            "[dfukit::stm32mp::layout::missing_binary]",
            "--binaries DIR",
        ],
    );
    let line = err.lines().find(|l| l.starts_with(&row)).unwrap();
    let places = [
        other.clone(),
        tree.parent().unwrap().to_path_buf(),
        tree.parent().unwrap().join(".."),
        tree.parent().unwrap().join("../.."),
        tree.parent().unwrap().join("../../.."),
    ];
    let mut at = 0;
    for p in places {
        let p = format!(
            "'{}'",
            p.join("fip/fip-stm32mp157f-ev1-optee.bin").display()
        );
        let found = line[at..]
            .find(&p)
            .unwrap_or_else(|| panic!("{p} not in {line}"));
        at += found + p.len();
    }
    // sdcard refuses the same way, before writing anything.
    let img = dir.path().join("card.raw");
    let err = failed(&sdcard(&tree, &img, &[]));
    assert!(err.contains(&row), "{err}");
    assert!(!img.exists());
}

/// The examples tree, with the commands the README gives, run from the
/// repository root.
#[test]
fn examples_tree_passes_check_and_sdcard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tsv = "examples/stm32mp/images/stm32mp1/flashlayout_st-image-weston/optee/FlashLayout_sdcard_stm32mp157f-dk2-optee.tsv";
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("sdcard.raw");
    let run_here = |args: &[&str]| dfukit().current_dir(&root).args(args).output().unwrap();
    let out = succeeded(&run_here(&["stm32mp", "check", tsv]));
    assert!(out.contains("13 partitions, valid"), "{out}");
    let out = succeeded(&run_here(&[
        "stm32mp",
        "sdcard",
        tsv,
        "-o",
        img.to_str().unwrap(),
    ]));
    assert!(out.contains("11 partitions"), "{out}");
    for tfa in ["usb", "sdcard"] {
        let f = format!("examples/stm32mp/images/stm32mp1/arm-trusted-firmware/tf-a-stm32mp157f-dk2-{tfa}.stm32");
        let out = succeeded(&run_here(&["stm32mp", "image-info", &f]));
        assert!(out.contains("(ok)"), "{out}");
    }
    // Small enough to keep in the repository.
    let mut total = 0;
    let mut stack = vec![root.join("examples/stm32mp")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                total += e.metadata().unwrap().len();
            }
        }
    }
    assert!(total < 200 * 1024, "{total} bytes");
}

#[test]
fn card_sizes_are_checked_as_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = sample(dir.path());
    let img = dir.path().join("card.raw");
    // 2^44 MiB is 2^64 bytes: used to panic (debug) or wrap (release).
    for (size, says) in [
        ("17592186044416", "out of range: 1 to 2097152"),
        ("0", "out of range"),
        ("12x", "not a whole number"),
    ] {
        let out = sdcard(&tsv, &img, &["--size-mib", size]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says) && !err.contains("panicked"), "{err}");
        assert!(!img.exists());
    }
    // The simulated board's eMMC size too: 0 MiB used to make a board with
    // no eMMC at all.
    let out = dfukit()
        .args([
            "sim",
            "stm32mp1",
            "--usbip",
            "127.0.0.1:0",
            "--emmc-size-mib",
            "0",
        ])
        .arg("--state")
        .arg(dir.path().join("board"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("out of range"));
}

/// Writes `text` beside the sample's binaries and runs `check` on it.
fn check_text(dir: &Path, name: &str, bytes: &[u8]) -> Output {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    dfukit()
        .args(["stm32mp", "check"])
        .arg(&p)
        .output()
        .unwrap()
}

#[test]
fn bom_accepted_nul_refused_and_none_on_a_p_row_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let _ = sample(dir.path());
    let text = sample_text();
    // A UTF-8 BOM, as Windows editors save: accepted.
    let bom = [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
    let out = succeeded(&check_text(dir.path(), "bom.tsv", &bom));
    assert!(out.contains("13 partitions, valid"), "{out}");
    // A NUL in a name: refused where it is (line 13, column 8 + 6).
    let nul = text.replacen("\trootfs\t", "\trootfs\0x\t", 1);
    let err = failed(&check_text(dir.path(), "nul.tsv", nul.as_bytes()));
    assert_contains(
        &err,
        &[
            "nul.tsv:13:14:",
            "NUL byte in the Name column",
            "layout::nul_in_field",
            "help:",
        ],
    );
    // A P row whose binary is `none`: nothing to send for it.
    let none = text.replacen(
        "P\t0x11\tvendorfs\tFileSystem\tmmc0\t0x04984400\tst-image-vendorfs-openstlinux-weston-stm32mp1.ext4",
        "P\t0x11\tvendorfs\tFileSystem\tmmc0\t0x04984400\tnone",
        1,
    );
    assert_ne!(none, text);
    let err = failed(&check_text(dir.path(), "none.tsv", none.as_bytes()));
    assert_contains(&err, &["none.tsv:12:", "'vendorfs'", "add E"]);
}

#[test]
fn layout_wrapped_in_an_stm32_header_is_unwrapped() {
    use dfukit_stm32mp::image::{write, WriteParams};
    let dir = tempfile::tempdir().unwrap();
    let _ = sample(dir.path());
    let wrapped = write(&WriteParams::v1(0xC000_0000), sample_text().as_bytes());
    let out = succeeded(&check_text(dir.path(), "FlashLayout.tsv.stm32", &wrapped));
    assert!(out.contains("13 partitions, valid"), "{out}");
    let img = dir.path().join("card.raw");
    let out = succeeded(&sdcard(
        &dir.path().join("FlashLayout.tsv.stm32"),
        &img,
        &[],
    ));
    assert!(out.contains("11 partitions"), "{out}");
    // A damaged one is refused with U-Boot's words.
    let mut bad = wrapped;
    let n = bad.len();
    bad[n - 2] ^= 1;
    let err = failed(&check_text(dir.path(), "bad.tsv.stm32", &bad));
    assert!(err.contains("invalid checksum"), "{err}");
}

#[test]
fn sdcard_output_is_whole_or_untouched_and_never_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = sample(dir.path());
    let img = dir.path().join("card.raw");
    std::fs::write(&img, b"the card from yesterday").unwrap();
    // A file-size limit the card exceeds: the run fails after the output
    // was opened (EFBIG; the signal that would kill it is ignored); the old
    // file used to be left truncated to 0.
    let limited = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_dfukit"))
        .args(["stm32mp", "sdcard"])
        .arg(&tsv)
        .arg("-o")
        .arg(&img)
        .output()
        .unwrap();
    let err = failed(&limited);
    assert!(err.contains("dfukit::stm32mp::sdcard"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), b"the card from yesterday");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".partial") || n.ends_with(".tmp")),
        "{names:?}"
    );
    // The output may not be the layout or a binary, under any name.
    let fsbl = dir
        .path()
        .join("arm-trusted-firmware/tf-a-stm32mp157f-ev1-sdcard.stm32");
    let before = std::fs::read(&fsbl).unwrap();
    let alias = dir
        .path()
        .join("arm-trusted-firmware/../arm-trusted-firmware/tf-a-stm32mp157f-ev1-sdcard.stm32");
    for out in [tsv.clone(), alias] {
        let err = failed(&sdcard(&tsv, &out, &[]));
        assert!(
            err.contains("dfukit::stm32mp::output::same_as_input"),
            "{err}"
        );
        assert!(err.contains("is the input"), "{err}");
    }
    assert_eq!(std::fs::read(&fsbl).unwrap(), before);
    // A good run replaces the old card in one step.
    succeeded(&sdcard(&tsv, &img, &["--size-mib", "5120"]));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 5120 << 20);
}
