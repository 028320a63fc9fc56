//! Replays every seed, corpus and regression file of `fuzz/` through its target on stable,
//! as part of `scripts/test`: what libFuzzer explored stays explored, and a crash it found
//! once, and that was fixed, stays fixed.
//!
//! It also checks that the seeds are worth replaying: every target has seeds, and for each
//! target some seed is accepted by the parser (or, for a device core, reaches the flash), so
//! the replay gets past the first check; seeds refused at byte 0 would exercise nothing.

use dfukit_fuzz::TARGETS;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_seed_corpus_and_regression_file_replays_without_a_crash() {
    let mut replayed = 0;
    for (name, body) in TARGETS {
        let seeds = files("seeds", name);
        assert!(
            !seeds.is_empty(),
            "fuzz/seeds/{name}/ is empty (run fuzz/seed.py)"
        );
        let found = files("corpus", name);
        for path in seeds
            .iter()
            .chain(&found)
            .chain(&files("regressions", name))
        {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(
                outcome.is_ok(),
                "{name}: {} crashes the target",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len());
}

#[test]
fn every_cargo_fuzz_binary_is_a_listed_target_and_back() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut bins: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    bins.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(
        bins, names,
        "fuzz/fuzz_targets/ and dfukit_fuzz::TARGETS disagree"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml lacks [[bin]] {n}"
        );
    }
}

/// Whether `data` is accepted by the parser behind `target`.
fn accepted(target: &str, data: &[u8]) -> bool {
    match target {
        "flashlayout_tsv" => {
            dfukit_stm32mp::layout::parse_bytes(data, Path::new("l.tsv")).is_ok()
                && dfukit_stm32mp::stm32prog::flashlayout::parse_flash_layout(data).is_ok()
        }
        "stm32_image" => dfukit_stm32mp::image::inspect(data).is_ok(),
        "init_packet" => dfukit_nordic::init_packet::decode(data).is_ok(),
        "nordic_package" => {
            dfukit_nordic::package::Package::from_zip_bytes(Path::new("p.zip"), data).is_ok()
        }
        "slip" => data.contains(&0xC0),
        "secure_dfu_messages" => dfukit_nordic::proto::SecureDfuRequest::parse(data).is_ok(),
        "dfu_file" => dfukit_usbdfu::files::DfuseFile::parse(data).is_ok(),
        "firmware_hex" => dfukit_firmware::segments(Path::new("f.hex"), data).is_ok(),
        "firmware_elf" => dfukit_firmware::segments(Path::new("f.elf"), data).is_ok(),
        "usbip_messages" => {
            use dfukit_usbip::wire::*;
            OpRepDevlist::decode(data).is_ok() || CmdSubmit::decode(data).is_ok()
        }
        "dfuse_device" => dfukit_fuzz::dfuse_device::run(data) > 0,
        "secure_dfu_device" => dfukit_fuzz::secure_dfu_device::run(data) > 0,
        "stm32prog_device" => dfukit_fuzz::stm32prog_device::run(data) > 0,
        "libusb_descriptors" => dfukit_libusb::desc::ConfigDescriptor::parse(data).is_ok(),
        other => panic!("no acceptance check for target {other}"),
    }
}

#[test]
fn each_target_has_seeds_its_parser_accepts() {
    for (name, _) in TARGETS {
        let seeds = files("seeds", name);
        let ok = seeds
            .iter()
            .filter(|p| accepted(name, &std::fs::read(p).unwrap()))
            .count();
        assert!(
            ok > 0,
            "{name}: none of its {} seeds is accepted",
            seeds.len()
        );
    }
}
