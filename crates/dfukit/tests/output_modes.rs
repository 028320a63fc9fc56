//! What a host command prints when its output is a pipe, as in CI logs:
//! every event as one plain line and progress as a line every few seconds,
//! or, with `--json`, one JSON object per line on stdout, ending with the
//! error when the command fails.

mod common;

use common::{app_hex, app_package_args, assert_contains, ok, run, stderr};
use serde_json::Value;
use std::path::Path;

/// A signed package of a `len`-byte app and its key, in `dir`.
fn package(dir: &Path, len: usize) -> (String, String) {
    let key = dir.join("key.pem").to_str().unwrap().to_string();
    ok(&["nordic", "keys", "generate", &key]);
    let hex = dir.join("app.hex");
    app_hex(&hex, len, 3);
    let pkg = dir.join("app.zip").to_str().unwrap().to_string();
    ok(&app_package_args(
        hex.to_str().unwrap(),
        "3",
        Some(&key),
        &pkg,
    ));
    (pkg, key)
}

#[test]
fn into_a_pipe_each_event_and_the_progress_are_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (pkg, key) = package(dir.path(), 50_000);
    let out = run(&[
        "nordic",
        "dfu",
        "ble",
        "--sim",
        "--package",
        &pkg,
        "--public-key",
        &key,
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let err = stderr(&out);
    assert_contains(
        &err,
        &[
            "application: connected: MTU",
            "application: init packet sent",
            "application: 50000/50000 bytes (100%)",
            "application: 50000 bytes sent and accepted",
        ],
    );
    // No terminal escape codes (a bar drawn into a log).
    assert!(!err.contains('\u{1b}'), "escape codes in a pipe:\n{err}");
    assert_contains(
        &String::from_utf8_lossy(&out.stdout),
        &["50000 bytes in", "activated in"],
    );
}

#[test]
fn json_gives_one_object_per_line_with_progress_and_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (pkg, key) = package(dir.path(), 20_000);
    let out = run(&[
        "--json",
        "nordic",
        "dfu",
        "ble",
        "--sim",
        "--package",
        &pkg,
        "--public-key",
        &key,
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    for k in [
        "connected",
        "init_packet",
        "progress",
        "done",
        "image",
        "link",
    ] {
        assert!(kinds.contains(&k), "no {k:?} event in {kinds:?}");
    }
    let last_progress = lines
        .iter()
        .rev()
        .find(|l| l["event"] == "progress")
        .unwrap();
    assert_eq!(last_progress["done"], 20_000);
    assert_eq!(last_progress["total"], 20_000);
    let image = lines.iter().find(|l| l["event"] == "image").unwrap();
    assert_eq!(image["bytes"], 20_000);
}

#[test]
fn a_failed_json_run_ends_with_the_error_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, [0u8; 16]).unwrap();
    // Nothing listens on port 1.
    let out = run(&[
        "--json",
        "usb",
        "download",
        "--usbip",
        "127.0.0.1:1",
        "-s",
        "0x08000000",
        "-D",
        fw.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["code"], "dfukit::usb::usbip");
    assert!(
        last["help"]
            .as_str()
            .unwrap()
            .contains("dfukit sim stm32f4"),
        "{last}"
    );
}
