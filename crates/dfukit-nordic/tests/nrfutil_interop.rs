//! Interoperability with the real nrfutil 6.1.7.
//!
//! Set `DFUKIT_NRFUTIL` to the nrfutil executable. Without it the tests print a skip notice and
//! pass, unless `DFUKIT_REQUIRE_PEERS=1`, in which case they fail.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use dfukit_nordic::init_packet::{self, ValidationType};
use dfukit_nordic::package::firmware::to_intel_hex;
use dfukit_nordic::package::keys::{self, Format, KeyPart};
use dfukit_nordic::package::{self, Package, PackageOptions};
use dfukit_nordic::settings::{self, Family, SettingsHexOptions};

fn nrfutil() -> Option<PathBuf> {
    match std::env::var_os("DFUKIT_NRFUTIL") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            if std::env::var("DFUKIT_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("DFUKIT_NRFUTIL is not set but DFUKIT_REQUIRE_PEERS=1: point it at the nrfutil 6.1.7 executable");
            }
            eprintln!("SKIP: DFUKIT_NRFUTIL not set; nrfutil interop test skipped");
            None
        }
    }
}

/// Runs nrfutil in `dir` (it leaves temp files in the working and temp directories) and
/// returns stdout; panics with stderr on failure.
fn run(exe: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .output()
        .expect("cannot start nrfutil");
    assert!(
        out.status.success(),
        "nrfutil {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift32).
fn prng(seed: u32, len: usize) -> Vec<u8> {
    dfukit_core::synthetic::bytes(seed).take(len).collect()
}

struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn new() -> Self {
        let f = Fixtures {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = f.dir.path();
        // Application at 0x27000 with a gap and an odd length (exercises 0xFF fill and padding).
        let a1 = prng(1, 3000);
        let a2 = prng(2, 2001);
        std::fs::write(
            d.join("app.hex"),
            to_intel_hex(&[(0x27000, &a1), (0x27000 + 3100, &a2)]),
        )
        .unwrap();
        std::fs::write(d.join("app2.bin"), prng(3, 4099)).unwrap();
        // SoftDevice with an MBR (dropped) and the info-struct magic at 0x3004.
        let mut sd = prng(4, 0x3000);
        sd[0x2004..0x2008].copy_from_slice(&0x51B1_E5DBu32.to_le_bytes());
        let mbr = prng(5, 0x1000);
        std::fs::write(d.join("sd.hex"), to_intel_hex(&[(0, &mbr), (0x1000, &sd)])).unwrap();
        // Bootloader at 0xF8000 plus a UICR word (dropped).
        let bl = prng(6, 6002);
        std::fs::write(
            d.join("bl.hex"),
            to_intel_hex(&[(0xF8000, &bl), (0x1000_1014, &[0, 0x80, 0x0F, 0])]),
        )
        .unwrap();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        out.insert(f.name().to_string(), v);
    }
    out
}

/// Owned copies of command-line arguments.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Has nrfutil generate `k.pem` in the fixture directory, and loads it.
fn nrfutil_key(exe: &Path, f: &Fixtures) -> p256::ecdsa::SigningKey {
    run(exe, f.dir.path(), &["keys", "generate", &f.s("k.pem")]);
    keys::load(&f.path("k.pem")).unwrap()
}

/// `nrfutil keys display --key KEY --format FORMAT FILE`.
fn nrfutil_keys_display(exe: &Path, f: &Fixtures, key: &str, format: &str, file: &str) -> String {
    run(
        exe,
        f.dir.path(),
        &[
            "keys",
            "display",
            "--key",
            key,
            "--format",
            format,
            &f.s(file),
        ],
    )
}

#[test]
fn keys_from_nrfutil_load_and_display_identically() {
    let Some(exe) = nrfutil() else { return };
    let f = Fixtures::new();
    let key = nrfutil_key(&exe, &f);
    // The file nrfutil wrote is exactly what dfukit would write for the same key.
    assert_eq!(
        std::fs::read_to_string(f.path("k.pem")).unwrap(),
        keys::private_pem(&key).unwrap()
    );
    for (kname, part) in [("pk", KeyPart::Public), ("sk", KeyPart::Private)] {
        for (fname, format) in [
            ("pem", Format::Pem),
            ("hex", Format::Hex),
            ("code", Format::Code),
            ("dbgcode", Format::DbgCode),
        ] {
            if part == KeyPart::Private && matches!(format, Format::Code | Format::DbgCode) {
                continue;
            }
            let theirs = nrfutil_keys_display(&exe, &f, kname, fname, "k.pem");
            // Code output embeds a timestamp; reuse nrfutil's so the rest must match byte for byte.
            let stamp = theirs
                .split("generated by nrfutil on ")
                .nth(1)
                .and_then(|t| t.split(" */").next())
                .unwrap_or("");
            let ours = keys::display_at(&key, part, format, stamp).unwrap();
            assert_eq!(ours, theirs, "keys display --key {kname} --format {fname}");
        }
    }
}

#[test]
fn dfukit_key_is_accepted_by_nrfutil() {
    let Some(exe) = nrfutil() else { return };
    let f = Fixtures::new();
    let key = keys::generate(&f.path("ours.pem")).unwrap();
    for (kname, part, fname, format) in [
        ("pk", KeyPart::Public, "hex", Format::Hex),
        ("sk", KeyPart::Private, "pem", Format::Pem),
        ("pk", KeyPart::Public, "pem", Format::Pem),
    ] {
        let theirs = nrfutil_keys_display(&exe, &f, kname, fname, "ours.pem");
        assert_eq!(theirs, keys::display(&key, part, format).unwrap());
    }
}

/// One `pkg generate` case: nrfutil arguments and the equivalent dfukit options.
struct PkgCase {
    name: &'static str,
    args: Vec<String>,
    opts: PackageOptions,
    signed: bool,
}

fn pkg_cases(f: &Fixtures, key: &p256::ecdsa::SigningKey) -> Vec<PkgCase> {
    let app_args = strings(&[
        "--hw-version",
        "52",
        "--sd-req",
        "0x100,0xCA",
        "--application-version",
        "3",
        "--application",
        &f.s("app.hex"),
    ]);
    let app = PackageOptions {
        application: Some(f.path("app.hex")),
        application_version: Some(3),
        hw_version: Some(52),
        sd_req: Some(vec![0x100, 0xCA]),
        ..Default::default()
    };
    // SoftDevice and bootloader together: one sd_bl image.
    let sd_bl_args = strings(&[
        "--bootloader-version",
        "2",
        "--bootloader",
        &f.s("bl.hex"),
        "--softdevice",
        &f.s("sd.hex"),
    ]);
    let sd_bl = PackageOptions {
        bootloader: Some(f.path("bl.hex")),
        bootloader_version: Some(2),
        softdevice: Some(f.path("sd.hex")),
        hw_version: Some(52),
        ..Default::default()
    };
    vec![
        PkgCase {
            name: "app-unsigned",
            args: app_args.clone(),
            opts: app.clone(),
            signed: false,
        },
        PkgCase {
            name: "app-bin-debug-sha256",
            args: strings(&[
                "--debug-mode",
                "--application",
                &f.s("app2.bin"),
                "--app-boot-validation",
                "VALIDATE_GENERATED_SHA256",
            ]),
            opts: PackageOptions {
                application: Some(f.path("app2.bin")),
                debug_mode: true,
                app_boot_validation: Some(ValidationType::ValidateSha256),
                ..Default::default()
            },
            signed: false,
        },
        PkgCase {
            name: "app-signed-ecdsa",
            args: [
                app_args,
                strings(&[
                    "--key-file",
                    &f.s("k.pem"),
                    "--app-boot-validation",
                    "VALIDATE_ECDSA_P256_SHA256",
                ]),
            ]
            .concat(),
            opts: PackageOptions {
                key: Some(key.clone()),
                app_boot_validation: Some(ValidationType::ValidateEcdsaP256Sha256),
                ..app.clone()
            },
            signed: true,
        },
        PkgCase {
            name: "sd-bl-app-unsigned",
            args: [
                strings(&[
                    "--hw-version",
                    "52",
                    "--sd-req",
                    "0xB6,0x100,0xFFFE",
                    "--sd-id",
                    "0x101,0xCE",
                    "--application-version",
                    "9",
                    "--application",
                    &f.s("app.hex"),
                ]),
                sd_bl_args.clone(),
                strings(&["--sd-boot-validation", "NO_VALIDATION"]),
            ]
            .concat(),
            opts: PackageOptions {
                application: Some(f.path("app.hex")),
                application_version: Some(9),
                sd_req: Some(vec![0xB6, 0x100, 0xFFFE]),
                sd_id: Some(vec![0x101, 0xCE]),
                sd_boot_validation: Some(ValidationType::NoValidation),
                ..sd_bl.clone()
            },
            signed: false,
        },
        PkgCase {
            name: "sd-bl-signed",
            args: [
                strings(&["--hw-version", "52", "--sd-req", "0x100"]),
                sd_bl_args,
                strings(&[
                    "--key-file",
                    &f.s("k.pem"),
                    "--sd-boot-validation",
                    "VALIDATE_ECDSA_P256_SHA256",
                ]),
            ]
            .concat(),
            opts: PackageOptions {
                sd_req: Some(vec![0x100]),
                key: Some(key.clone()),
                sd_boot_validation: Some(ValidationType::ValidateEcdsaP256Sha256),
                ..sd_bl
            },
            signed: true,
        },
        PkgCase {
            name: "bl-only",
            args: strings(&[
                "--hw-version",
                "0x34",
                "--sd-req",
                "0",
                "--bootloader-version",
                "010",
                "--bootloader",
                &f.s("bl.hex"),
            ]),
            opts: PackageOptions {
                bootloader: Some(f.path("bl.hex")),
                bootloader_version: Some(8),
                hw_version: Some(52),
                sd_req: Some(vec![0]),
                ..Default::default()
            },
            signed: false,
        },
        PkgCase {
            name: "sd-only",
            args: strings(&[
                "--hw-version",
                "52",
                "--sd-req",
                "0x100,1,9,17",
                "--softdevice",
                &f.s("sd.hex"),
            ]),
            opts: PackageOptions {
                softdevice: Some(f.path("sd.hex")),
                hw_version: Some(52),
                sd_req: Some(vec![0x100, 1, 9, 17]),
                ..Default::default()
            },
            signed: false,
        },
    ]
}

/// Generates every case with both tools; returns (case, nrfutil zip, dfukit zip).
fn generate_both(exe: &Path, f: &Fixtures) -> Vec<(PkgCase, PathBuf, PathBuf)> {
    let key = nrfutil_key(exe, f);
    pkg_cases(f, &key)
        .into_iter()
        .map(|case| {
            let theirs = f.path(&format!("{}-nrfutil.zip", case.name));
            let ours = f.path(&format!("{}-dfukit.zip", case.name));
            let mut args: Vec<&str> = vec!["pkg", "generate"];
            args.extend(case.args.iter().map(String::as_str));
            let theirs_s = theirs.to_string_lossy().into_owned();
            args.push(&theirs_s);
            run(exe, f.dir.path(), &args);
            package::generate_to_file(&case.opts, &ours)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            (case, theirs, ours)
        })
        .collect()
}

#[test]
fn pkg_generate_matches_nrfutil() {
    let Some(exe) = nrfutil() else { return };
    let f = Fixtures::new();
    for (case, theirs, ours) in generate_both(&exe, &f) {
        let key = keys::load(&f.path("k.pem")).unwrap();
        let t = unzip(&theirs);
        let o = unzip(&ours);
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            o.keys().collect::<Vec<_>>(),
            "{}: file names",
            case.name
        );
        for (name, tb) in &t {
            let ob = &o[name];
            if !name.ends_with(".dat") {
                assert_eq!(tb, ob, "{}: {name} differs", case.name);
                continue;
            }
            if !case.signed {
                assert_eq!(tb, ob, "{}: {name} differs", case.name);
                continue;
            }
            // Signed: identical except the randomized ECDSA bytes (init packet signature and
            // ECDSA boot-validation signatures), which must verify.
            assert_eq!(tb.len(), ob.len(), "{}: {name} length", case.name);
            let td = init_packet::decode(tb).unwrap();
            let od = init_packet::decode(ob).unwrap();
            let strip = |mut c: init_packet::InitCommand| {
                for bv in c.boot_validation.iter_mut() {
                    if bv.kind == ValidationType::ValidateEcdsaP256Sha256 {
                        assert_eq!(bv.bytes.len(), 64);
                        bv.bytes.clear();
                    }
                }
                c
            };
            let od_cmd = od.command.clone();
            assert_eq!(
                strip(td.command.clone()),
                strip(od.command.clone()),
                "{}: {name} InitCommand",
                case.name
            );
            assert_eq!(td.signature_type, od.signature_type);
            assert!(
                keys::verify(
                    key.verifying_key(),
                    od.init_command_bytes,
                    od.signature.unwrap()
                ),
                "{}: our signature",
                case.name
            );
            assert!(
                keys::verify(
                    key.verifying_key(),
                    td.init_command_bytes,
                    td.signature.unwrap()
                ),
                "{}: nrfutil signature",
                case.name
            );
            assert!(!keys::verify(
                key.verifying_key(),
                ob,
                od.signature.unwrap()
            ));
            // Byte positions outside the signatures are identical.
            let diff: Vec<usize> = (0..tb.len()).filter(|&i| tb[i] != ob[i]).collect();
            let sig_start = ob.len() - 64;
            for i in diff {
                let in_sig = i >= sig_start;
                let in_bv = od_cmd.boot_validation.iter().any(|bv| {
                    let pos = ob
                        .windows(bv.bytes.len().max(1))
                        .position(|w| w == &bv.bytes[..]);
                    bv.kind == ValidationType::ValidateEcdsaP256Sha256
                        && pos.is_some_and(|p| i >= p && i < p + 64)
                });
                assert!(
                    in_sig || in_bv,
                    "{}: {name} byte {i} differs outside signatures",
                    case.name
                );
            }
            // The boot-validation signature covers the .bin (or the SoftDevice part of sd_bl).
            for bv in &od_cmd.boot_validation {
                if bv.kind == ValidationType::ValidateEcdsaP256Sha256 {
                    let bin = &o[&name.replace(".dat", ".bin")];
                    let signed = match od_cmd.sd_size {
                        Some(sd) if od_cmd.bl_size.unwrap_or(0) > 0 && sd > 0 => {
                            &bin[..sd as usize]
                        }
                        _ => &bin[..],
                    };
                    assert!(
                        keys::verify(key.verifying_key(), signed, &bv.bytes),
                        "{}: boot validation signature",
                        case.name
                    );
                }
            }
        }
    }
}

#[test]
fn pkg_display_agrees_both_ways() {
    let Some(exe) = nrfutil() else { return };
    let f = Fixtures::new();
    for (case, theirs, ours) in generate_both(&exe, &f) {
        for zip in [&theirs, &ours] {
            let shown = run(
                &exe,
                f.dir.path(),
                &["pkg", "display", &zip.to_string_lossy()],
            );
            let pkg = Package::open(zip).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(
                format!("{}\n", pkg.display()),
                shown,
                "{}: pkg display of {}",
                case.name,
                zip.display()
            );
            // The JSON view carries the same values.
            let j = pkg.to_json();
            for (img, ji) in pkg.images.iter().zip(j["images"].as_array().unwrap()) {
                assert_eq!(ji["fw_version"], img.command.fw_version.unwrap());
                assert_eq!(ji["app_size"], img.command.app_size.unwrap());
                let line = format!(
                    "|- fw_version: 0x{0:08X} ({0})",
                    img.command.fw_version.unwrap()
                );
                assert!(shown.contains(&line));
            }
        }
    }
}

#[test]
fn settings_generate_matches_nrfutil() {
    let Some(exe) = nrfutil() else { return };
    let f = Fixtures::new();
    let base = |bl: u32| SettingsHexOptions::new(Family::Nrf52840, bl);
    let cases: Vec<(&str, Vec<String>, SettingsHexOptions)> = vec![
        (
            "app",
            strings(&[
                "--application",
                &f.s("app.hex"),
                "--application-version",
                "3",
                "--bootloader-version",
                "2",
            ]),
            SettingsHexOptions {
                application: Some(f.path("app.hex")),
                application_version: Some(3),
                ..base(2)
            },
        ),
        (
            "app-bin-nobackup-sha",
            strings(&[
                "--application",
                &f.s("app2.bin"),
                "--application-version",
                "0x10",
                "--bootloader-version",
                "5",
                "--no-backup",
                "--app-boot-validation",
                "VALIDATE_GENERATED_SHA256",
            ]),
            SettingsHexOptions {
                application: Some(f.path("app2.bin")),
                application_version: Some(16),
                no_backup: true,
                app_boot_validation: Some(ValidationType::ValidateSha256),
                ..base(5)
            },
        ),
        (
            "app-sd",
            strings(&[
                "--application",
                &f.s("app.hex"),
                "--application-version",
                "1",
                "--bootloader-version",
                "1",
                "--softdevice",
                &f.s("sd.hex"),
            ]),
            SettingsHexOptions {
                application: Some(f.path("app.hex")),
                application_version: Some(1),
                softdevice: Some(f.path("sd.hex")),
                ..base(1)
            },
        ),
        (
            "sd-only-novalidation",
            strings(&[
                "--bootloader-version",
                "7",
                "--softdevice",
                &f.s("sd.hex"),
                "--sd-boot-validation",
                "NO_VALIDATION",
            ]),
            SettingsHexOptions {
                softdevice: Some(f.path("sd.hex")),
                sd_boot_validation: Some(ValidationType::NoValidation),
                ..base(7)
            },
        ),
        ("empty", strings(&["--bootloader-version", "1"]), base(1)),
        (
            "v1",
            strings(&[
                "--application",
                &f.s("app.hex"),
                "--application-version",
                "4",
                "--bootloader-version",
                "3",
                "--bl-settings-version",
                "1",
            ]),
            SettingsHexOptions {
                application: Some(f.path("app.hex")),
                application_version: Some(4),
                bl_settings_version: 1,
                ..base(3)
            },
        ),
    ];
    for (name, args, opts) in cases {
        let out = f.path(&format!("{name}-nrfutil.hex"));
        let mut a = vec!["settings", "generate", "--family", "NRF52840"];
        if !args.iter().any(|x| x == "--bl-settings-version") {
            a.extend(["--bl-settings-version", "2"]);
        }
        a.extend(args.iter().map(String::as_str));
        let out_s = out.to_string_lossy().into_owned();
        a.push(&out_s);
        run(&exe, f.dir.path(), &a);
        let theirs = std::fs::read_to_string(&out).unwrap();
        let ours = settings::generate_settings_hex(&opts).unwrap();
        assert_eq!(ours, theirs, "settings case {name}");
        // nrfutil's own reader accepts ours.
        let ours_path = f.path(&format!("{name}-dfukit.hex"));
        std::fs::write(&ours_path, &ours).unwrap();
        run(
            &exe,
            f.dir.path(),
            &["settings", "display", &ours_path.to_string_lossy()],
        );
    }
}

#[test]
fn settings_ecdsa_boot_validation_verifies() {
    let Some(exe) = nrfutil() else { return };
    let f = Fixtures::new();
    let key = nrfutil_key(&exe, &f);
    let out = f.path("e-nrfutil.hex");
    run(
        &exe,
        f.dir.path(),
        &[
            "settings",
            "generate",
            "--family",
            "NRF52840",
            "--bl-settings-version",
            "2",
            "--application",
            &f.s("app.hex"),
            "--application-version",
            "1",
            "--bootloader-version",
            "1",
            "--app-boot-validation",
            "VALIDATE_ECDSA_P256_SHA256",
            "--key-file",
            &f.s("k.pem"),
            "--no-backup",
            &out.to_string_lossy(),
        ],
    );
    let opts = SettingsHexOptions {
        application: Some(f.path("app.hex")),
        application_version: Some(1),
        app_boot_validation: Some(ValidationType::ValidateEcdsaP256Sha256),
        key: Some(key.clone()),
        no_backup: true,
        ..SettingsHexOptions::new(Family::Nrf52840, 1)
    };
    let ours = settings::generate_settings(&opts).unwrap();
    let theirs_text = std::fs::read_to_string(&out).unwrap();
    let chunks =
        dfukit_nordic::package::firmware::parse_hex(Path::new("t.hex"), &theirs_text).unwrap();
    let mut page = vec![0u8; 0x324];
    for (addr, bytes) in chunks {
        let off = (addr - 0xFF000) as usize;
        page[off..off + bytes.len()].copy_from_slice(&bytes);
    }
    let theirs = settings::Settings::from_bytes(&page);
    let app = dfukit_nordic::package::firmware::load(&f.path("app.hex")).unwrap();
    for s in [&theirs, &ours.settings] {
        assert_eq!(s.boot_validation_app.kind, 3);
        assert!(keys::verify(
            key.verifying_key(),
            &app.data,
            &s.boot_validation_app.bytes
        ));
        assert!(s.crc_ok());
        assert_eq!(s.boot_validation_crc, s.compute_boot_validation_crc());
    }
    assert_eq!(theirs.bank_0, ours.settings.bank_0);
}
