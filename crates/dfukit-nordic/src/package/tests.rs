//! Package tests: nrfutil's orders and names, round trips through zip, and refusals.

use super::*;
use crate::init_packet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[test]
fn python_set_order_matches_cpython() {
    // Expected values printed by CPython 3.11.7: list(set([...])).
    let cases: &[(&[u32], &[u32])] = &[
        (&[0x100, 0xCA], &[256, 202]),
        (&[0xCA, 0x100], &[256, 202]),
        (&[9, 1, 17], &[9, 1, 17]),
        (&[17, 9, 1], &[17, 9, 1]),
        (&[5, 4, 3, 2, 1, 0], &[0, 1, 2, 3, 4, 5]),
        (&[1, 9, 17, 25, 33, 2, 10], &[1, 33, 2, 9, 10, 17, 25]),
        (
            &[0xB6, 0xFFFE, 0x100, 0xCE, 0x8, 0x10],
            &[256, 8, 206, 16, 182, 65534],
        ),
        (
            &[257, 256, 513, 769, 1025, 1281, 1537],
            &[256, 257, 1025, 513, 769, 1281, 1537],
        ),
        (&[3, 3, 3], &[3]),
    ];
    for (input, expected) in cases {
        assert_eq!(&python_set_order(input)[..], *expected, "input {input:?}");
    }
    let seventeen: Vec<u32> = (100..117).collect();
    assert_eq!(python_set_order(&seventeen), seventeen);
    // list(set(a) - set(b)), both the plain and the copy-and-discard path.
    assert_eq!(
        merge_sd_id(&[3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        vec![3, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!(
        merge_sd_id(&[16], &[64, 8, 0x100, 0x200, 0x1000, 16, 32, 0xCA, 0xB6]),
        vec![16, 64, 4096, 256, 512, 32, 8, 202, 182]
    );
}

#[test]
fn nrfutil_int_parsing() {
    assert_eq!(parse_nrfutil_int("0x100"), Some(256));
    assert_eq!(parse_nrfutil_int("0X1f"), Some(31));
    assert_eq!(parse_nrfutil_int("010"), Some(8));
    assert_eq!(parse_nrfutil_int("0"), Some(0));
    assert_eq!(parse_nrfutil_int("52"), Some(52));
    assert_eq!(parse_nrfutil_int("x"), None);
}

#[test]
fn file_names_follow_nrfutil() {
    assert_eq!(bin_file_name(Path::new("/a/app.hex")), "app.bin");
    assert_eq!(bin_file_name(Path::new("app.bin")), "app.bin");
    assert_eq!(bin_file_name(Path::new("app.elf")), "app.elf.bin");
    assert_eq!(dat_file_name("app.bin"), "app.dat");
}

#[test]
fn manifest_format() {
    let img = |kind, name: &str, sizes| GeneratedImage {
        kind,
        bin_file: format!("{name}.bin"),
        dat_file: format!("{name}.dat"),
        bin: vec![],
        dat: vec![],
        sd_bl_sizes: sizes,
    };
    let m = manifest_json(&[
        img(ImageKind::SoftdeviceBootloader, "sd_bl", Some((8, 4))),
        img(ImageKind::Application, "app", None),
    ]);
    let expected = "{\n    \"manifest\": {\n        \"application\": {\n            \"bin_file\": \"app.bin\",\n            \"dat_file\": \"app.dat\"\n        },\n        \"softdevice_bootloader\": {\n            \"bin_file\": \"sd_bl.bin\",\n            \"dat_file\": \"sd_bl.dat\",\n            \"info_read_only_metadata\": {\n                \"bl_size\": 4,\n                \"sd_size\": 8\n            }\n        }\n    }\n}";
    assert_eq!(m, expected);
}

fn write_app(dir: &Path) -> PathBuf {
    let p = dir.join("app.bin");
    std::fs::write(&p, (0..1001u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()).unwrap();
    p
}

#[test]
fn generate_open_round_trip_and_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = write_app(dir.path());
    let key = keys::generate_key();
    let opts = PackageOptions {
        application: Some(app),
        application_version: Some(7),
        hw_version: Some(52),
        sd_req: Some(vec![0x100]),
        key: Some(key.clone()),
        ..Default::default()
    };
    let pkg = build(&opts).unwrap();
    assert_eq!(pkg.images[0].bin.len(), 1004);
    assert_eq!(&pkg.images[0].bin[1001..], &[0xFF; 3]);
    let zip = pkg.to_zip().unwrap();
    let p = Package::from_zip_bytes(Path::new("t.zip"), &zip).unwrap();
    let img = &p.images[0];
    assert_eq!(img.command.app_size, Some(1004));
    assert_eq!(img.command.fw_version, Some(7));
    assert!(img.verify_signature(key.verifying_key()));
    assert!(!img.verify_signature(keys::generate_key().verifying_key()));

    // Truncated zip.
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), &zip[..zip.len() / 2]),
        Err(PackageError::NotZip { .. })
    ));
    // Not a zip at all.
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), b"hello"),
        Err(PackageError::NotZip { .. })
    ));

    let rezip = |files: &[(&str, &[u8])]| {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (n, d) in files {
            w.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(d).unwrap();
        }
        w.finish().unwrap().into_inner()
    };
    let im = &pkg.images[0];
    let m = pkg.manifest.as_bytes();
    let no_manifest = rezip(&[("app.bin", &im.bin), ("app.dat", &im.dat)]);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), &no_manifest),
        Err(PackageError::MissingManifest { .. })
    ));
    let no_bin = rezip(&[(MANIFEST_FILENAME, m), ("app.dat", &im.dat)]);
    match Package::from_zip_bytes(Path::new("t.zip"), &no_bin) {
        Err(PackageError::MissingFile {
            entry: "application",
            name,
            ..
        }) => assert_eq!(name, "app.bin"),
        other => panic!("{other:?}"),
    }
    let bad_dat = rezip(&[
        (MANIFEST_FILENAME, m),
        ("app.dat", &im.dat[..20]),
        ("app.bin", &im.bin),
    ]);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), &bad_dat),
        Err(PackageError::InitPacket { .. })
    ));
    let short_bin = rezip(&[
        (MANIFEST_FILENAME, m),
        ("app.dat", &im.dat),
        ("app.bin", &im.bin[..1000]),
    ]);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), &short_bin),
        Err(PackageError::SizeMismatch {
            field: "app_size",
            expected: 1004,
            actual: 1000,
            ..
        })
    ));
    let mut flipped = im.bin.clone();
    flipped[0] ^= 1;
    let bad_hash = rezip(&[
        (MANIFEST_FILENAME, m),
        ("app.dat", &im.dat),
        ("app.bin", &flipped),
    ]);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), &bad_hash),
        Err(PackageError::HashMismatch { .. })
    ));
    let bad_json = rezip(&[
        (MANIFEST_FILENAME, b"{"),
        ("app.dat", &im.dat),
        ("app.bin", &im.bin),
    ]);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("t.zip"), &bad_json),
        Err(PackageError::BadManifest { .. })
    ));
}

#[test]
fn option_checks() {
    let dir = tempfile::tempdir().unwrap();
    let app = write_app(dir.path());
    let base = PackageOptions {
        application: Some(app.clone()),
        application_version: Some(1),
        hw_version: Some(52),
        sd_req: Some(vec![0x100]),
        ..Default::default()
    };
    assert!(build(&base).is_ok());
    assert!(matches!(
        build(&PackageOptions {
            hw_version: None,
            ..base.clone()
        }),
        Err(GenerateError::InvalidOptions { .. })
    ));
    assert!(matches!(
        build(&PackageOptions {
            sd_req: None,
            ..base.clone()
        }),
        Err(GenerateError::InvalidOptions { .. })
    ));
    assert!(matches!(
        build(&PackageOptions {
            app_boot_validation: Some(ValidationType::ValidateEcdsaP256Sha256),
            ..base.clone()
        }),
        Err(GenerateError::MissingKey {
            image: "application"
        })
    ));
    // Debug mode fills in defaults.
    let dbg = build(&PackageOptions {
        application: Some(app),
        debug_mode: true,
        ..Default::default()
    })
    .unwrap();
    let d = init_packet::decode(&dbg.images[0].dat).unwrap();
    assert_eq!(d.command.hw_version, Some(0xFFFF_FFFF));
    assert_eq!(d.command.sd_req.as_slice(), &[SD_REQ_ANY]);
    assert_eq!(d.command.is_debug, Some(true));
}

/// A package of `files`, each member deflated (as zip tools other than nrfutil store them).
fn deflated_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (n, d) in files {
        w.start_file(*n, o).unwrap();
        w.write_all(d).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Sets the uncompressed size `name`'s local and central headers declare.
fn declare_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for i in 0..zip.len().saturating_sub(46) {
        let sig = u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
        let (name_at, size_at) = match sig {
            0x0403_4b50 => (30, 22),
            0x0201_4b50 => (46, 24),
            _ => continue,
        };
        let len_at = if sig == 0x0403_4b50 { 26 } else { 28 };
        let n = u16::from_le_bytes([zip[i + len_at], zip[i + len_at + 1]]) as usize;
        if zip.get(i + name_at..i + name_at + n) == Some(name.as_bytes()) {
            zip[i + size_at..i + size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "{name}: local and central header");
}

fn app_package() -> GeneratedPackage {
    let dir = tempfile::tempdir().unwrap();
    build(&PackageOptions {
        application: Some(write_app(dir.path())),
        application_version: Some(7),
        hw_version: Some(52),
        sd_req: Some(vec![0x100]),
        ..Default::default()
    })
    .unwrap()
}

/// A 20 MiB run of zeros deflates to a few KiB: its declared size is refused before a
/// byte of it is inflated, naming the member and the limit.
#[test]
fn a_deflate_bomb_is_refused_by_its_declared_size() {
    let pkg = app_package();
    let im = &pkg.images[0];
    let zeros = vec![0u8; 20 << 20];
    let zip = deflated_zip(&[
        (MANIFEST_FILENAME, pkg.manifest.as_bytes()),
        ("app.dat", &im.dat),
        ("app.bin", &zeros),
    ]);
    assert!(zip.len() < 100_000, "{}", zip.len());
    match Package::from_zip_bytes(Path::new("bomb.zip"), &zip) {
        Err(e @ PackageError::MemberTooLarge { .. }) => {
            let PackageError::MemberTooLarge {
                name,
                declared,
                limit,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((name.as_str(), *declared), ("app.bin", 20 << 20));
            assert_eq!(*limit, MAX_IMAGE_BYTES);
            let text = e.to_string();
            assert!(
                text.contains("bomb.zip") && text.contains("app.bin"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A manifest or init packet is held to the metadata limit.
    let big = vec![b' '; MAX_METADATA_BYTES as usize + 1];
    let zip = deflated_zip(&[(MANIFEST_FILENAME, &big)]);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("m.zip"), &zip),
        Err(PackageError::MemberTooLarge {
            limit: MAX_METADATA_BYTES,
            ..
        })
    ));
}

/// A header that declares 4 GiB for a member is refused before reading; one that declares
/// 1004 bytes for a member inflating to 20 MiB stops at byte 1004.
#[test]
fn lying_zip_headers_are_refused() {
    let pkg = app_package();
    let im = &pkg.images[0];
    let mut zip = deflated_zip(&[
        (MANIFEST_FILENAME, pkg.manifest.as_bytes()),
        ("app.dat", &im.dat),
        ("app.bin", &im.bin),
    ]);
    declare_size(&mut zip, "app.bin", u32::MAX);
    assert!(matches!(
        Package::from_zip_bytes(Path::new("huge.zip"), &zip),
        Err(PackageError::MemberTooLarge {
            declared: 0xFFFF_FFFF,
            ..
        })
    ));
    let zeros = vec![0u8; 20 << 20];
    let mut zip = deflated_zip(&[
        (MANIFEST_FILENAME, pkg.manifest.as_bytes()),
        ("app.dat", &im.dat),
        ("app.bin", &zeros),
    ]);
    declare_size(&mut zip, "app.bin", 1004);
    match Package::from_zip_bytes(Path::new("lie.zip"), &zip) {
        Err(PackageError::MemberLongerThanDeclared { name, declared, .. }) => {
            assert_eq!((name.as_str(), declared), ("app.bin", 1004));
        }
        other => panic!("{other:?}"),
    }
}

/// An application image listed under `softdevice_bootloader`: refused naming the slot, the
/// member and both types, before any size or hash check.
#[test]
fn manifest_slot_and_init_packet_type_must_agree() {
    let pkg = app_package();
    let im = &pkg.images[0];
    let manifest = pkg
        .manifest
        .replace("\"application\"", "\"softdevice_bootloader\"");
    let zip = deflated_zip(&[
        (MANIFEST_FILENAME, manifest.as_bytes()),
        ("app.dat", &im.dat),
        ("app.bin", &im.bin),
    ]);
    let e = Package::from_zip_bytes(Path::new("slot.zip"), &zip).unwrap_err();
    assert!(matches!(e, PackageError::SlotTypeMismatch { .. }), "{e:?}");
    let text = e.to_string();
    for word in [
        "softdevice_bootloader",
        "app.dat",
        "APPLICATION",
        "SOFTDEVICE_BOOTLOADER",
    ] {
        assert!(text.contains(word), "lacks {word}: {text}");
    }
    for slot in ["bootloader", "softdevice"] {
        let manifest = pkg
            .manifest
            .replace("\"application\"", &format!("\"{slot}\""));
        let zip = deflated_zip(&[
            (MANIFEST_FILENAME, manifest.as_bytes()),
            ("app.dat", &im.dat),
            ("app.bin", &im.bin),
        ]);
        assert!(
            matches!(
                Package::from_zip_bytes(Path::new("slot.zip"), &zip),
                Err(PackageError::SlotTypeMismatch { .. })
            ),
            "{slot}"
        );
    }
}

/// `--debug-mode` without versions stores 0xFFFFFFFF: the package and the generator both
/// warn, once per versioned image, naming the member, the version and the way back.
#[test]
fn debug_mode_packages_warn_about_the_stored_version() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PackageOptions {
        application: Some(write_app(dir.path())),
        debug_mode: true,
        ..Default::default()
    };
    let generated = build(&opts).unwrap();
    let opened =
        Package::from_zip_bytes(Path::new("dbg.zip"), &generated.to_zip().unwrap()).unwrap();
    assert_eq!(opened.images[0].command.fw_version, Some(0xFFFF_FFFF));
    for warnings in [generated.warnings(), opened.warnings()] {
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        for word in [
            "app.dat",
            "0xFFFFFFFF",
            "downgrade",
            "settings generate",
            "--debug-mode",
        ] {
            assert!(warnings[0].contains(word), "lacks {word}: {}", warnings[0]);
        }
    }
    // An explicit version with --debug-mode, or no debug mode: nothing to warn about.
    for opts in [
        PackageOptions {
            application_version: Some(5),
            ..opts.clone()
        },
        PackageOptions {
            debug_mode: false,
            application_version: Some(0xFFFF_FFFF),
            hw_version: Some(52),
            sd_req: Some(vec![0x100]),
            ..opts.clone()
        },
    ] {
        assert_eq!(build(&opts).unwrap().warnings(), Vec::<String>::new());
    }
}
