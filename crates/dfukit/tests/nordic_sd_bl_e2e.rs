//! SoftDevice and bootloader packages made by real nrfutil, sent with
//! `dfukit nordic dfu serial` to `dfukit sim nrf52840` over its pty and with
//! `nordic dfu ble --sim`: the host waits for the bootloader to come back
//! after each image whose activation resets the device, and sends the next.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The SoftDevice id the board starts with (the build's S140).
const OLD_SD: &str = "0x0100";
/// The id the new SoftDevice's information structure names.
const NEW_SD: u16 = 0x0123;

/// A SoftDevice of `len` bytes at 0x1000 whose information structure (at
/// +0x2000: magic at +4, firmware id at +0xC, as nrf_sdm.h lays it out)
/// names `fwid`, written as Intel HEX.
fn softdevice_hex(path: &Path, len: usize, fwid: u16) {
    let mut sd = dfukit_sim::synthetic::firmware(len, 7);
    sd[0x2004..0x2008].copy_from_slice(&0x51B1_E5DBu32.to_le_bytes());
    sd[0x200C..0x200E].copy_from_slice(&fwid.to_le_bytes());
    std::fs::write(path, dfukit_firmware::to_intel_hex(&[(0x1000, &sd)])).unwrap();
}

/// A bootloader of `len` bytes at 0xF8000, written as Intel HEX.
fn bootloader_hex(path: &Path, len: usize) {
    let bl = dfukit_sim::synthetic::firmware(len, 9);
    std::fs::write(path, dfukit_firmware::to_intel_hex(&[(0xF8000, &bl)])).unwrap();
}

struct Case {
    dir: tempfile::TempDir,
    key: String,
}

impl Case {
    fn new() -> Option<Case> {
        nrfutil()?;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem").to_str().unwrap().to_string();
        ok(&["nordic", "keys", "generate", &key]);
        Some(Case { dir, key })
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
    /// nrfutil's package of the parts asked for: `sd`, `bl`, `app`.
    fn package(&self, sd: bool, bl: bool, app: Option<usize>) -> String {
        let mut cmd = Command::new(nrfutil().unwrap());
        cmd.args(["pkg", "generate", "--hw-version", "52", "--sd-req", OLD_SD]);
        if sd {
            let hex = self.path("sd.hex");
            softdevice_hex(Path::new(&hex), 12 * 1024, NEW_SD);
            cmd.args(["--softdevice", &hex]);
            cmd.args(["--sd-id", &format!("{NEW_SD:#06x}")]);
        }
        if bl {
            let hex = self.path("bl.hex");
            bootloader_hex(Path::new(&hex), 6_000);
            cmd.args(["--bootloader", &hex, "--bootloader-version", "2"]);
        }
        if let Some(len) = app {
            let hex = self.path("app.hex");
            app_hex(Path::new(&hex), len, 5);
            cmd.args(["--application", &hex, "--application-version", "3"]);
        }
        let zip = self.path("pkg.zip");
        cmd.args(["--key-file", &self.key, &zip]);
        let out = cmd.output().unwrap();
        succeeded(&out);
        zip
    }
    fn sim(&self) -> (Sim, std::path::PathBuf) {
        let state = self.dir.path().join("board");
        let sim = Sim::start(&state, &["--public-key", &self.key, "--no-flash-timing"]);
        (sim, state)
    }
}

/// Sends `zip` with `nordic dfu serial` and returns its output.
fn dfu_serial(zip: &str, pty: &str) -> String {
    succeeded(&run(&["nordic", "dfu", "serial", "-pkg", zip, "-p", pty]))
}

/// Waits until the board reports `want` of `key` in `sim inspect`.
fn wait_for(state: &Path, key: &str, want: serde_json::Value) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let v = inspect(state);
        if v[key] == want {
            return v;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "board never reported {key} = {want}: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn softdevice_bootloader_and_app_from_nrfutil_over_the_pty() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(true, true, Some(20_000));
    let (_sim, state) = c.sim();
    let out = dfu_serial(&zip, &_sim.pty);
    assert_contains(
        &out,
        &[
            "softdevice+bootloader (1 of 2)",
            "application (2 of 2)",
            "reconnected after reset",
        ],
    );
    let v = wait_for(&state, "app_version", 3.into());
    assert_eq!(v["app_valid"], true, "{v}");
    assert_eq!(v["softdevice_fwid"], NEW_SD, "{v}");
    assert_eq!(v["bootloader_version"], 2, "{v}");
}

#[test]
fn softdevice_alone_from_nrfutil_over_the_pty() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(true, false, None);
    let (sim, state) = c.sim();
    dfu_serial(&zip, &sim.pty);
    let v = wait_for(&state, "softdevice_fwid", NEW_SD.into());
    assert_eq!(v["bank1_code"], 0, "{v}");
}

#[test]
fn bootloader_alone_from_nrfutil_over_the_pty() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(false, true, None);
    let (sim, state) = c.sim();
    dfu_serial(&zip, &sim.pty);
    let v = wait_for(&state, "bootloader_version", 2.into());
    assert_eq!(v["bank1_code"], 0, "{v}");
}

#[test]
fn softdevice_and_bootloader_from_nrfutil_over_the_pty() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(true, true, None);
    let (sim, state) = c.sim();
    dfu_serial(&zip, &sim.pty);
    let v = wait_for(&state, "bootloader_version", 2.into());
    assert_eq!(v["softdevice_fwid"], NEW_SD, "{v}");
}

#[test]
fn softdevice_bootloader_and_app_from_nrfutil_over_ble_sim() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(true, true, Some(20_000));
    let out = succeeded(&run(&[
        "nordic",
        "dfu",
        "ble",
        "--sim",
        "--package",
        &zip,
        "--public-key",
        &c.key,
    ]));
    assert_contains(
        &out,
        &[
            "softdevice+bootloader (1 of 2)",
            "application (2 of 2)",
            "reconnected after reset",
        ],
    );
}

/// nrfutil's `-fc 1` (RTS/CTS) and `-cd` (connect delay) reach the port:
/// a pty takes the hardware flow control setting and the update runs.
#[test]
fn flow_control_and_connect_delay_as_nrfutil_spells_them() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(false, true, None);
    let (sim, state) = c.sim();
    let start = std::time::Instant::now();
    succeeded(&run(&[
        "nordic", "dfu", "serial", "-pkg", &zip, "-p", &sim.pty, "-fc", "1", "-cd", "0.5",
    ]));
    assert!(start.elapsed() >= std::time::Duration::from_millis(500));
    wait_for(&state, "bootloader_version", 2.into());
}

/// `-snr` with a number no port has names the ports seen and fails.
#[test]
fn unknown_serial_number_lists_the_ports_seen() {
    let Some(c) = Case::new() else { return };
    let zip = c.package(false, true, None);
    let out = failed(&run(&[
        "nordic",
        "dfu",
        "serial",
        "-pkg",
        &zip,
        "-snr",
        "4242424242",
    ]));
    assert_contains(
        &out,
        &[
            "dfukit::nordic::dfu::serial_number",
            "4242424242",
            "ports seen",
        ],
    );
}
