//! Nordic Secure DFU end to end across real boundaries: the dfukit binary
//! and nrfutil as separate processes, a simulated board on a pseudo-terminal,
//! packages as files, board state in a directory read back after a restart.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
    /// A new signing key `name` made by dfukit; returns its path.
    fn key(&self, name: &str) -> String {
        let key = self.path(name);
        ok(&["nordic", "keys", "generate", &key]);
        key
    }
    /// A key, and a signed package of an app of `len` bytes at `version`.
    fn package(&self, name: &str, key: &str, len: usize, version: u32) -> Vec<u8> {
        let hex = self.path(&format!("{name}.hex"));
        let image = app_hex(Path::new(&hex), len, version);
        let (version, zip) = (version.to_string(), self.path(&format!("{name}.zip")));
        ok(&app_package_args(&hex, &version, Some(key), &zip));
        image
    }
}

/// `dfukit nordic dfu serial` of `package` to the board on `port`.
fn dfu_serial<'a>(package: &'a str, port: &'a str) -> [&'a str; 7] {
    [
        "nordic",
        "dfu",
        "serial",
        "--package",
        package,
        "--port",
        port,
    ]
}

/// `dfukit nordic dfu ble --sim` of `package` to a board trusting `key`.
fn dfu_ble_sim<'a>(package: &'a str, key: &'a str) -> [&'a str; 8] {
    [
        "nordic",
        "dfu",
        "ble",
        "--sim",
        "--package",
        package,
        "--public-key",
        key,
    ]
}

/// nrfutil's `pkg generate` of the app in `hex` at `version`, signed with
/// `key`, into `pkg`.
fn nrfutil_pkg(nrfutil: &Path, hex: &str, version: &str, key: &str, pkg: &str) -> Output {
    Command::new(nrfutil)
        .args(["pkg", "generate"])
        .args(["--hw-version", "52", "--sd-req", "0x0100"])
        .args(["--application-version", version, "--application", hex])
        .args(["--key-file", key, pkg])
        .output()
        .unwrap()
}

/// The JSON object a `--json` command prints on its last line.
fn last_line_json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn flash(w: &Work, bank1: &str) {
    let key = w.key("key.pem");
    let v1 = w.package("v1", &key, 30_001, 1);
    let v2 = w.package("v2", &key, 120_002, 2);
    let state = w.dir.path().join(format!("board-{bank1}"));
    let sim = Sim::start(
        &state,
        &["--bank1", bank1, "--public-key", &key, "--no-flash-timing"],
    );
    ok(&dfu_serial(&w.path("v1.zip"), &sim.pty));
    wait_for_version(&state, 1);
    ok(&dfu_serial(&w.path("v2.zip"), &sim.pty));
    wait_for_version(&state, 2);
    sim.kill();
    // Power the board up again from its state: it boots the new app.
    let sim = Sim::start(&state, &[]);
    let v = wait_for_version(&state, 2);
    assert_eq!(v["app_size"], v2.len() as u64);
    assert_eq!(v["app_crc"], crc(&v2) as u64);
    assert_eq!(v["bank1_code"], 0);
    // The flash image file holds the app byte for byte.
    let internal = std::fs::read(state.join("internal.bin")).unwrap();
    assert_eq!(&internal[0x27000..0x27000 + v2.len()], &v2[..]);
    drop(sim);
    assert_ne!(crc(&v1), crc(&v2));
}

#[test]
fn dfukit_flashes_a_qspi_bank1_board_over_a_pty() {
    flash(&Work::new(), "qspi");
}

#[test]
fn dfukit_flashes_an_internal_bank1_board_over_a_pty() {
    flash(&Work::new(), "internal");
}

#[test]
fn nrfutil_flashes_the_simulated_board() {
    let Some(nrfutil) = nrfutil() else { return };
    let w = Work::new();
    let key = w.path("key.pem");
    let st = Command::new(&nrfutil)
        .args(["keys", "generate", &key])
        .status()
        .unwrap();
    assert!(st.success());
    let hex = w.path("app.hex");
    let image = app_hex(Path::new(&hex), 50_003, 7);
    let pkg = w.path("app.zip");
    succeeded(&nrfutil_pkg(&nrfutil, &hex, "3", &key, &pkg));
    let state = w.dir.path().join("board");
    let sim = Sim::start(&state, &["--public-key", &key, "--no-flash-timing"]);
    let out = Command::new(&nrfutil)
        .args([
            "dfu", "serial", "-pkg", &pkg, "-p", &sim.pty, "-t", "1", "-fc", "0", "-prn", "8",
        ])
        .output()
        .unwrap();
    assert_contains(&succeeded(&out), &["Device programmed"]);
    let v = wait_for_version(&state, 3);
    assert_eq!(v["app_crc"], crc(&image) as u64);

    // And dfukit flashes a package nrfutil made, to a board trusting nrfutil's key.
    let hex2 = w.path("app2.hex");
    let image2 = app_hex(Path::new(&hex2), 70_001, 8);
    let pkg2 = w.path("app2.zip");
    succeeded(&nrfutil_pkg(&nrfutil, &hex2, "4", &key, &pkg2));
    ok(&dfu_serial(&pkg2, &sim.pty));
    let v = wait_for_version(&state, 4);
    assert_eq!(v["app_crc"], crc(&image2) as u64);
}

/// Bad input: a clear error naming the problem, a non-zero exit, and the
/// board keeps its valid app.
#[test]
fn bad_input_is_refused_and_the_board_keeps_its_app() {
    let w = Work::new();
    let key = w.key("key.pem");
    let other = w.key("other.pem");
    w.package("v1", &key, 20_000, 1);
    let state = w.dir.path().join("board");
    let sim = Sim::start(&state, &["--public-key", &key, "--no-flash-timing"]);
    ok(&dfu_serial(&w.path("v1.zip"), &sim.pty));
    wait_for_version(&state, 1);
    // The flash as the refused packages must leave it, byte for byte.
    let flash = || ["internal.bin", "qspi.bin"].map(|f| std::fs::read(state.join(f)).unwrap());
    let before = flash();

    // Each case: files to make, the package to send, words the error must contain.
    let good = std::fs::read(w.path("v1.zip")).unwrap();
    std::fs::write(w.path("truncated.zip"), &good[..good.len() / 2]).unwrap();
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 3;
    corrupt[mid..mid + 64].fill(0x55);
    std::fs::write(w.path("corrupt.zip"), &corrupt).unwrap();
    w.package("otherkey", &other, 20_000, 2);
    let hex = w.path("hw.hex");
    app_hex(Path::new(&hex), 20_000, 3);
    let pkg = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "nordic",
            "pkg",
            "generate",
            "--application",
            &hex,
            "--key-file",
            &key,
        ];
        args.extend_from_slice(extra);
        let out = w.path(name);
        args.push(&out);
        ok(&args);
    };
    pkg(
        "hw53.zip",
        &[
            "--application-version",
            "2",
            "--hw-version",
            "53",
            "--sd-req",
            "0x0100",
        ],
    );
    pkg(
        "sdreq.zip",
        &[
            "--application-version",
            "2",
            "--hw-version",
            "52",
            "--sd-req",
            "0xAE",
        ],
    );
    w.package("downgrade", &key, 20_000, 0);
    let cases: &[(&str, &[&str])] = &[
        ("truncated.zip", &["zip"]),
        ("corrupt.zip", &["corrupt"]),
        ("otherkey.zip", &["signature", "key"]),
        ("hw53.zip", &["hardware version"]),
        ("sdreq.zip", &["SoftDevice"]),
        ("downgrade.zip", &["downgrade"]),
    ];
    for (file, words) in cases {
        let out = run(&dfu_serial(&w.path(file), &sim.pty));
        let err = stderr(&out);
        assert!(!out.status.success(), "{file}: exit 0");
        for word in *words {
            assert!(
                err.to_lowercase().contains(&word.to_lowercase()),
                "{file}: error lacks {word:?}:\n{err}"
            );
        }
        assert!(
            err.contains("dfukit::"),
            "{file}: no diagnostic code:\n{err}"
        );
        let v = inspect(&state);
        assert!(
            v["app_valid"] == true && v["app_version"] == 1,
            "{file}: board lost its app: {v}"
        );
        assert!(
            flash() == before,
            "{file}: the refused package changed the flash"
        );
    }
    drop(sim);

    // A manifest naming a file that is not in the zip.
    let pkg_bytes = std::fs::read(w.path("v1.zip")).unwrap();
    let text = String::from_utf8_lossy(&pkg_bytes);
    assert!(text.contains("v1.bin"));
    let renamed: Vec<u8> = replace_all(&pkg_bytes, b"v1.bin", b"v9.bin");
    std::fs::write(w.path("missing.zip"), renamed).unwrap();
    let out = run(&dfu_serial(&w.path("missing.zip"), "/dev/null"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("missing.zip"), "{err}");
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// A port with no bootloader behind it: a bounded, clear error.
#[test]
fn a_port_that_is_not_a_dfu_target() {
    let w = Work::new();
    let key = w.key("key.pem");
    w.package("v1", &key, 4_000, 1);
    // A pty nobody serves, like a USB serial adapter with nothing attached.
    let silent = dfukit_sim::links::pty::Pty::open().unwrap();
    let port = silent.path().to_str().unwrap().to_string();
    let start = Instant::now();
    let out = run(&dfu_serial(&w.path("v1.zip"), &port));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("no Secure DFU bootloader answered"), "{err}");
    assert!(err.contains("not_a_dfu_target"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Not a serial port at all.
    let out = run(&dfu_serial(&w.path("v1.zip"), &w.path("v1.hex")));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("as a serial port"), "{err}");
}

/// The benchmark command runs both hosts and reports its figures as JSON
/// (its own checks fail it if either host did not install the image).
#[test]
fn bench_serial_reports_figures() {
    let Some(nrfutil) = nrfutil() else { return };
    let out = ok(&[
        "bench",
        "serial",
        "--size-kib",
        "16",
        "--runs",
        "1",
        "--json",
        "--nrfutil",
        nrfutil.to_str().unwrap(),
    ]);
    let v = last_line_json(&out);
    assert_eq!(v["image_bytes"], 16 * 1024);
    for field in ["dfukit_s", "nrfutil_s", "ratio", "board_cpu_ms_per_mib"] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {v}");
    }
}

/// `dfu ble --sim`: the same host core over the BLE link model to a
/// simulated board that trusts the package's key; the app is activated.
/// Another key is refused, and says so.
#[test]
fn ble_sim_update_runs_and_a_foreign_key_is_refused() {
    let w = Work::new();
    let key = w.key("key.pem");
    w.package("app", &key, 20_000, 2);
    let pkg = w.path("app.zip");
    let out = ok(&dfu_ble_sim(&pkg, &key));
    assert_contains(&out, &["20000 bytes in", "activated in", "0 dropped"]);
    let other = w.key("other.pem");
    let r = run(&dfu_ble_sim(&pkg, &other));
    assert!(!r.status.success());
    let err = stderr(&r);
    assert!(err.to_lowercase().contains("signature"), "{err}");
}

/// `bench ble --json`: one object with an entry per link setting holding the
/// fields the issue names; each ratio is a fraction of the bound (a transfer
/// cannot beat its link's bound) and every run activated the app.
#[test]
fn bench_ble_reports_an_entry_per_link() {
    let out = ok(&["bench", "ble", "--size", "40000", "--json"]);
    let v = last_line_json(&out);
    for link in [
        "ble-2m-ci15ms",
        "ble-2m-ci7.5ms",
        "ble-phone-report",
        "uart-115200",
        "uart-1000000",
    ] {
        let e = &v[link];
        assert_eq!(e["image_bytes"], 40000, "{link}: {e}");
        for field in [
            "transfer_s",
            "bound_s",
            "baseline_transfer_s",
            "activation_s",
        ] {
            assert!(
                e[field].as_f64().is_some_and(|x| x > 0.0),
                "{link}.{field}: {e}"
            );
        }
        let ratio = e["ratio"].as_f64().unwrap();
        assert!(ratio > 0.0 && ratio <= 1.0, "{link}: ratio {ratio}");
        assert!(e["link"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            e["baseline_transfer_s"].as_f64() > e["transfer_s"].as_f64(),
            "{link}: the phone profile cannot be faster: {e}"
        );
    }
}
