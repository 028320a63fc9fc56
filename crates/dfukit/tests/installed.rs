//! The binary as `cargo install` leaves it: alone in a `bin` directory, with
//! no target/ tree beside it. `usb shim-dir` must still give a working
//! libusb replacement (it is carried inside the binary), and unmodified
//! dfu-util must reach a simulated board through it.

mod common;

use common::assert_contains;
use dfukit_testkit::peers::tool;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The installed binary alone in `<dir>/bin`: the one `cargo install`
/// made when `DFUKIT_INSTALLED` names it (scripts/test does), else the
/// binary under test.
fn installed(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("dfukit");
    let from = std::env::var_os("DFUKIT_INSTALLED").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_dfukit")),
        PathBuf::from,
    );
    std::fs::copy(&from, &exe).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    exe
}

#[test]
fn an_installed_binary_carries_its_libusb_shim_and_dfu_util_reaches_a_board_through_it() {
    let Some(dfu_util) = tool("dfu-util", "apt-get install dfu-util") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = installed(dir.path());
    let cache = dir.path().join("cache");
    let dfukit = |args: &[&str]| {
        let mut c = Command::new(&exe);
        c.args(args).env("XDG_CACHE_HOME", &cache);
        c
    };

    let out = dfukit(&["usb", "shim-dir"]).output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let shim = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        shim.starts_with(&cache),
        "{} is not under {}",
        shim.display(),
        cache.display()
    );
    let lib = std::fs::read(shim.join("libusb-1.0.so.0")).unwrap();
    assert_eq!(&lib[..4], b"\x7fELF", "not a shared object");
    // A second call finds the same file and leaves it alone.
    let again = dfukit(&["usb", "shim-dir"]).output().unwrap();
    assert_eq!(
        String::from_utf8(again.stdout).unwrap().trim(),
        shim.to_str().unwrap()
    );

    let mut sim = dfukit(&[
        "sim",
        "stm32f4",
        "--usbip",
        "127.0.0.1:0",
        "--no-flash-timing",
        "--state",
    ])
    .arg(dir.path().join("board"))
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("usbip: ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    let listed = Command::new(dfu_util)
        .arg("-l")
        .env("LD_LIBRARY_PATH", &shim)
        .env("DFUKIT_USBIP", &addr)
        .output()
        .unwrap();
    let _ = sim.kill();
    let _ = sim.wait();
    assert_contains(
        &common::text(&listed),
        &["Found DFU: [0483:df11]", "@Internal Flash"],
    );
}
