//! STM32 image header: round trips, error reporting, and interop with
//! U-Boot's `mkimage -T stm32image` (Debian package `u-boot-tools`).
//!
//! The interop tests print a skip notice when `mkimage` is missing, unless
//! `DFUKIT_REQUIRE_PEERS=1`, in which case they fail.

use std::path::PathBuf;
use std::process::Command;

use dfukit_stm32mp::image::{
    self, checksum, offsets, ImageError, ImageHeader, WriteParams, WriteVersion, EXT_FLAG_PADDING,
    HEADER_VERSION_V1, HEADER_VERSION_V2, MAGIC, PADDING_EXTENSION_MAGIC, V1_HEADER_LEN,
    V2_HEADER_LEN,
};
use proptest::prelude::*;

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn full_params(version: WriteVersion) -> WriteParams {
    WriteParams {
        version,
        entry_point: 0x2ffc_2500,
        load_address: 0x2ffc_2400,
        image_version: 3,
        binary_type: 0x10,
        signature: [0xA5; 64],
        public_key: [0x5A; 64],
        ..WriteParams::default()
    }
}

#[test]
fn round_trip_v1() {
    let p = payload(1000);
    let img = image::write(&full_params(WriteVersion::V1), &p);
    assert_eq!(img.len(), V1_HEADER_LEN + p.len());
    assert_eq!(&img[..4], b"STM\x32");
    let h = ImageHeader::parse(&img).unwrap();
    assert_eq!(h.version, HEADER_VERSION_V1);
    assert_eq!((h.major(), h.minor()), (1, 0));
    assert_eq!(h.header_len, 256);
    assert_eq!(h.image_length, 1000);
    assert_eq!(h.entry_point, 0x2ffc_2500);
    assert_eq!(h.load_address, 0x2ffc_2400);
    assert_eq!(h.image_version, 3);
    assert_eq!(h.option_flags, 1);
    assert_eq!(h.ecdsa_algorithm, 1);
    assert_eq!(h.binary_type, 0x10);
    assert_eq!(h.signature, [0xA5; 64]);
    assert_eq!(h.public_key, [0x5A; 64]);
    assert!(h.extensions.is_empty());
    assert_eq!(h.payload_checksum, checksum(&p));
    assert!(h.checksum_ok(&p));
    assert!(!h.is_signed());
    let v = image::verify(&img).unwrap();
    assert_eq!(v.payload(&img).unwrap(), &p[..]);
    assert_eq!(v.trailing_bytes, 0);
    assert_eq!(img[offsets::V1_BINARY_TYPE], 0x10);
}

#[test]
fn round_trip_v2() {
    let p = payload(4097);
    let img = image::write(&full_params(WriteVersion::V2), &p);
    assert_eq!(img.len(), V2_HEADER_LEN + p.len());
    assert_eq!(V2_HEADER_LEN, 512);
    let h = ImageHeader::parse(&img).unwrap();
    assert_eq!(h.version, HEADER_VERSION_V2);
    assert_eq!((h.major(), h.minor()), (2, 0));
    assert_eq!(h.header_len, 512);
    assert_eq!(h.extension_headers_length, 0x180);
    assert_eq!(h.option_flags, EXT_FLAG_PADDING);
    assert_eq!(h.binary_type, 0x10);
    assert_eq!(h.ecdsa_algorithm, 0);
    assert_eq!(h.public_key, [0; 64]);
    assert_eq!(h.extensions.len(), 1);
    assert_eq!(h.extensions[0].offset, 0x80);
    assert_eq!(h.extensions[0].kind, PADDING_EXTENSION_MAGIC);
    assert_eq!(h.extensions[0].length, 0x180);
    assert_eq!(&img[0x80..0x84], b"ST\xff\xff");
    assert!(h.checksum_ok(&p));
    let v = h.clone();
    assert_eq!(image::verify(&img).unwrap().header, v);
}

#[test]
fn trailing_padding_allowed() {
    let p = payload(100);
    let mut img = image::write(&WriteParams::v1(0x2ffc_2500), &p);
    img.extend_from_slice(&[0xFF; 28]);
    let v = image::verify(&img).unwrap();
    assert_eq!(v.trailing_bytes, 28);
    assert_eq!(v.payload(&img).unwrap(), &p[..]);
}

#[test]
fn checksum_mismatch_reports_both_values() {
    let p = payload(300);
    let mut img = image::write(&WriteParams::v2(0x2ffe_0000), &p);
    let good = checksum(&p);
    let last = img.len() - 1;
    img[last] = img[last].wrapping_add(1);
    let err = image::verify(&img).unwrap_err();
    assert_eq!(
        err,
        ImageError::ChecksumMismatch {
            offset: 0x44,
            expected: good,
            computed: good.wrapping_add(1),
        }
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("{good:#010x}")), "{msg}");
    assert!(msg.contains(&format!("{:#010x}", good + 1)), "{msg}");
    // inspect does not fail, and reports BAD
    let info = image::inspect(&img).unwrap();
    assert!(!info.checksum_ok());
    assert!(info.to_string().contains("BAD"));
    let json = info.to_json_string();
    assert!(json.contains("\"checksum_ok\":false"), "{json}");
}

#[test]
fn truncated_errors_have_offsets() {
    // A header cut at `len` bytes, `needed` long: reported at its end.
    let assert_too_short = |img: &[u8], len: usize, needed: usize| {
        assert_eq!(
            image::parse(&img[..len]).unwrap_err(),
            ImageError::TooShort {
                needed,
                actual: len,
                offset: len
            }
        );
    };
    let img = image::write(&WriteParams::v1(0x2ffc_2500), &payload(64));
    assert_too_short(&img, 100, 256);
    assert!(matches!(
        image::parse(&img[..2]).unwrap_err(),
        ImageError::TooShort { actual: 2, .. }
    ));
    assert_eq!(
        image::parse(&img[..256 + 10]).unwrap_err(),
        ImageError::LengthBeyondFile {
            offset: 0x4C,
            image_length: 64,
            header_len: 256,
            available: 10,
        }
    );
    let v2 = image::write(&WriteParams::v2(0x2ffe_0000), &payload(8));
    assert_too_short(&v2, 300, 512);
}

#[test]
fn bad_magic_and_version() {
    let mut img = image::write(&WriteParams::v1(0x2ffc_2500), &payload(16));
    img[3] = 0x33;
    assert_eq!(
        image::parse(&img).unwrap_err(),
        ImageError::BadMagic {
            offset: 0,
            found: 0x334D_5453
        }
    );
    img[3] = 0x32;
    img[offsets::HEADER_VERSION + 2] = 3;
    let err = image::parse(&img).unwrap_err();
    assert_eq!(
        err,
        ImageError::UnknownVersion {
            offset: 0x48,
            found: 0x0003_0000
        }
    );
    assert!(err.to_string().contains("0x00030000"));
    // v2.3 (STM32MP21x) has another layout
    img[offsets::HEADER_VERSION + 2] = 2;
    img[offsets::HEADER_VERSION + 1] = 3;
    assert!(matches!(
        image::parse(&img).unwrap_err(),
        ImageError::UnknownVersion {
            found: 0x0002_0300,
            ..
        }
    ));
    assert_eq!(MAGIC.to_le_bytes(), *b"STM\x32");
}

#[test]
fn bad_extension_header() {
    let mut img = image::write(&WriteParams::v2(0x2ffe_0000), &payload(16));
    img[0x84..0x88].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(
        image::parse(&img).unwrap_err(),
        ImageError::BadExtension {
            offset: 0x80,
            kind: PADDING_EXTENSION_MAGIC,
            length: 4,
            area_end: 512,
        }
    );
}

#[test]
fn display_and_json() {
    let p = payload(100);
    let img = image::write(&full_params(WriteVersion::V1), &p);
    let info = image::inspect(&img).unwrap();
    let s = info.to_string();
    for needle in [
        "STM\\x32",
        "v1.0",
        "100 bytes",
        "entry point:      0x2ffc2500",
        "load address:     0x2ffc2400",
        "image version:    3",
        "options:          0x00000001",
        "TF-A",
        "(ok)",
        "signature:        bytes present, check not requested",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
    let v = image::verify(&img).unwrap().to_string();
    assert!(v.contains("(ok)"));
    let h = image::parse(&img).unwrap().to_string();
    assert!(h.contains("not verified"));
    let json = info.to_json_string();
    assert!(json.starts_with('{') && json.ends_with('}'));
    assert!(json.contains("\"entry_point\":\"0x2ffc2500\""), "{json}");
    assert!(json.contains("\"image_length\":100"), "{json}");
    assert!(json.contains("\"checksum_ok\":true"), "{json}");
    let unsigned = image::write(&WriteParams::v2(0x2ffe_0000), &p);
    let s2 = image::inspect(&unsigned).unwrap().to_string();
    assert!(s2.contains("signature:        none"), "{s2}");
    assert!(s2.contains("extension:        padding"), "{s2}");
}

// ---- interop with U-Boot mkimage ----

fn mkimage() -> Option<PathBuf> {
    let ok = Command::new("mkimage")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(PathBuf::from("mkimage"));
    }
    if std::env::var("DFUKIT_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("mkimage not found but DFUKIT_REQUIRE_PEERS=1: install Debian package u-boot-tools");
    }
    eprintln!(
        "SKIP: mkimage (Debian package u-boot-tools) not found; STM32 image interop not tested"
    );
    None
}

#[test]
fn mkimage_images_parse_and_verify() {
    let Some(mk) = mkimage() else { return };
    let dir = tempfile::tempdir().unwrap();
    for n in [1usize, 255, 4096, 70001] {
        let p = payload(n);
        let input = dir.path().join(format!("in{n}.bin"));
        let output = dir.path().join(format!("out{n}.stm32"));
        std::fs::write(&input, &p).unwrap();
        let out = Command::new(&mk)
            .args([
                "-T",
                "stm32image",
                "-a",
                "0x2ffc2500",
                "-e",
                "0x2ffc2500",
                "-d",
            ])
            .arg(&input)
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkimage failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let img = std::fs::read(&output).unwrap();
        let v = image::verify(&img).unwrap_or_else(|e| panic!("n={n}: {e}"));
        let h = &v.header;
        assert_eq!(h.version, HEADER_VERSION_V1);
        assert_eq!(h.header_len, 256);
        assert_eq!(h.image_length as usize, n);
        assert_eq!(h.entry_point, 0x2ffc_2500);
        assert_eq!(h.load_address, 0x2ffc_2500);
        assert_eq!(h.option_flags, 1);
        assert_eq!(h.ecdsa_algorithm, 1);
        assert_eq!(h.binary_type, 0);
        assert_eq!(v.payload(&img).unwrap(), &p[..]);
        // byte-identical to what dfukit writes with the same fields
        assert_eq!(image::write(&WriteParams::v1(0x2ffc_2500), &p), img);
    }
}

#[test]
fn dfukit_v1_images_accepted_by_mkimage_list() {
    let Some(mk) = mkimage() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (i, params) in [
        WriteParams::v1(0x2ffc_2500),
        full_params(WriteVersion::V1),
        WriteParams {
            image_version: 7,
            ..WriteParams::v1(0xc010_0000)
        },
    ]
    .iter()
    .enumerate()
    {
        let p = payload(1234 + i);
        let path = dir.path().join(format!("dfukit{i}.stm32"));
        std::fs::write(&path, image::write(params, &p)).unwrap();
        let out = Command::new(&mk).arg("-l").arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "mkimage -l failed:\n{text}");
        assert!(text.contains("STM32 V1.0"), "{text}");
        assert!(
            text.contains(&format!("Image Size   : {} bytes", p.len())),
            "{text}"
        );
        assert!(
            text.contains(&format!("Image Load   : {:#010x}", params.load_address)),
            "{text}"
        );
        assert!(
            text.contains(&format!("Entry Point  : {:#010x}", params.entry_point)),
            "{text}"
        );
        assert!(
            text.contains(&format!("Checksum     : {:#010x}", checksum(&p))),
            "{text}"
        );
    }
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = image::parse(&bytes);
        let _ = image::inspect(&bytes);
        let _ = image::verify(&bytes);
    }

    #[test]
    fn parse_never_panics_with_valid_prefix(
        v2 in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..700),
        cut in 0usize..1200,
        len_field in any::<u32>(),
        ext_len in any::<u32>(),
    ) {
        let mut img = Vec::new();
        img.extend_from_slice(&MAGIC.to_le_bytes());
        img.resize(offsets::HEADER_VERSION, 0);
        img.extend_from_slice(&(if v2 { HEADER_VERSION_V2 } else { HEADER_VERSION_V1 }).to_le_bytes());
        img.extend_from_slice(&len_field.to_le_bytes());
        img.resize(offsets::V2_EXTENSION_HEADERS_LENGTH, 0);
        img.extend_from_slice(&ext_len.to_le_bytes());
        img.extend_from_slice(&tail);
        img.truncate(cut.min(img.len()));
        let _ = image::parse(&img);
        let _ = image::verify(&img);
        if let Ok(info) = image::inspect(&img) {
            let _ = info.to_string();
            let _ = info.to_json_string();
        }
    }

    #[test]
    fn round_trip_any(
        v2 in any::<bool>(),
        p in proptest::collection::vec(any::<u8>(), 0..2000),
        entry in any::<u32>(),
        load in any::<u32>(),
        ver in any::<u32>(),
    ) {
        let params = WriteParams {
            version: if v2 { WriteVersion::V2 } else { WriteVersion::V1 },
            entry_point: entry,
            load_address: load,
            image_version: ver,
            ..WriteParams::default()
        };
        let img = image::write(&params, &p);
        let v = image::verify(&img).unwrap();
        prop_assert_eq!(v.header.entry_point, entry);
        prop_assert_eq!(v.header.load_address, load);
        prop_assert_eq!(v.header.image_version, ver);
        prop_assert_eq!(v.payload(&img).unwrap(), &p[..]);
    }
}
