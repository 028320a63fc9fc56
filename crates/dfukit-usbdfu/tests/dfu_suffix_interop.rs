//! Interop with Debian's `dfu-suffix` (dfu-util 0.11): suffixes dfukit adds
//! pass `dfu-suffix -c`, and suffixes `dfu-suffix -a` adds read back in
//! dfukit with the same fields. Skipped (with a notice) when the tool is not
//! installed, unless `DFUKIT_REQUIRE_PEERS=1`.

use dfukit_usbdfu::files::{
    add_suffix, check_suffix, remove_suffix, DfuseFile, Element, Suffix, Target, BCD_DFUSE,
    BCD_DFU_1_0,
};
use std::path::PathBuf;
use std::process::Command;

fn tool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("dfu-suffix"))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("DFUKIT_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("dfu-suffix not found on PATH and DFUKIT_REQUIRE_PEERS=1");
        }
        eprintln!("SKIP: dfu-suffix not found on PATH (install dfu-util to run this test)");
    }
    found
}

fn run(tool: &PathBuf, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .expect("run dfu-suffix");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn payload() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn dfukit_suffix_passes_dfu_suffix_check() {
    let Some(tool) = tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let suffix = Suffix {
        bcd_device: 0x2200,
        id_product: 0xDF11,
        id_vendor: 0x0483,
        bcd_dfu: BCD_DFU_1_0,
    };
    let f = dir.path().join("fw.bin");
    std::fs::write(&f, add_suffix(&payload(), &suffix)).unwrap();
    let (ok, text) = run(&tool, &["-c", f.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("Vendor ID:\t0x0483"), "{text}");
    assert!(text.contains("Product ID:\t0xDF11"), "{text}");
    assert!(text.contains("BCD device:\t0x2200"), "{text}");
    let crc = check_suffix(&std::fs::read(&f).unwrap()).unwrap().crc;
    assert!(text.contains(&format!("CRC:\t\t0x{crc:08X}")), "{text}");

    // dfu-suffix -D leaves exactly the payload dfukit removes.
    let (ok, text) = run(&tool, &["-D", f.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert_eq!(std::fs::read(&f).unwrap(), payload());

    // A corrupted CRC is rejected by both.
    let mut bad = add_suffix(&payload(), &suffix);
    bad[100] ^= 0x40;
    std::fs::write(&f, &bad).unwrap();
    let (ok, _) = run(&tool, &["-c", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(check_suffix(&bad).is_err());
}

#[test]
fn dfuse_file_passes_dfu_suffix_check() {
    let Some(tool) = tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = DfuseFile {
        targets: vec![Target {
            alt: 0,
            name: Some("ST...".into()),
            elements: vec![Element {
                address: 0x0800_0000,
                data: payload(),
            }],
        }],
        suffix: Suffix {
            bcd_device: 0x2200,
            id_product: 0xDF11,
            id_vendor: 0x0483,
            bcd_dfu: BCD_DFUSE,
        },
    };
    let f = dir.path().join("fw.dfu");
    std::fs::write(&f, file.to_bytes().unwrap()).unwrap();
    let (ok, text) = run(&tool, &["-c", f.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("BCD DFU:\t0x011A"), "{text}");
}

#[test]
fn dfu_suffix_added_file_reads_in_dfukit() {
    let Some(tool) = tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("fw.bin");
    std::fs::write(&f, payload()).unwrap();
    let (ok, text) = run(
        &tool,
        &[
            "-a",
            f.to_str().unwrap(),
            "-v",
            "0483",
            "-p",
            "df11",
            "-d",
            "0x2200",
        ],
    );
    assert!(ok, "{text}");
    let bytes = std::fs::read(&f).unwrap();
    let s = check_suffix(&bytes).unwrap();
    assert_eq!(
        s.suffix,
        Suffix {
            bcd_device: 0x2200,
            id_product: 0xDF11,
            id_vendor: 0x0483,
            bcd_dfu: BCD_DFU_1_0,
        }
    );
    assert_eq!(s.length, 16);
    assert_eq!(s.payload, payload());
    assert_eq!(remove_suffix(&bytes).unwrap(), payload());
    // Re-suffixing the payload with the same fields gives the same bytes.
    assert_eq!(add_suffix(s.payload, &s.suffix), bytes);

    // Defaults: all wildcards.
    let g = dir.path().join("plain.bin");
    std::fs::write(&g, b"abc").unwrap();
    let (ok, text) = run(&tool, &["-a", g.to_str().unwrap()]);
    assert!(ok, "{text}");
    let bytes = std::fs::read(&g).unwrap();
    assert_eq!(check_suffix(&bytes).unwrap().suffix, Suffix::default());
}
