//! The peer tools the tests run against (nrfutil, dfu-util, dfu-suffix,
//! dfuse-pack, usbip, mkimage, sgdisk, sfdisk), found as a user's shell would.
//!
//! A missing peer skips its test with a notice on a developer's machine,
//! and fails it when `DFUKIT_REQUIRE_PEERS=1`, which `scripts/test` (and
//! so CI) sets: a peer test never passes silently without its peer.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing peer must fail the test (`DFUKIT_REQUIRE_PEERS=1`).
pub fn required() -> bool {
    std::env::var("DFUKIT_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// What to do about a peer that is not there: fail when peers are
/// required, else print a skip notice. `install` says how to get it.
pub fn missing(what: &str, install: &str) {
    assert!(
        !required(),
        "DFUKIT_REQUIRE_PEERS=1 but {what} is missing: {install}"
    );
    eprintln!("SKIP: {what} is missing ({install})");
}

/// `name` on `PATH` or in `/usr/sbin` (where Debian puts usbip), or
/// `None` after [`missing`].
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        missing(name, install);
    }
    found
}

/// The nrfutil 6.1.7 executable `DFUKIT_NRFUTIL` names, or `None` after
/// [`missing`].
pub fn nrfutil() -> Option<PathBuf> {
    let found = std::env::var_os("DFUKIT_NRFUTIL")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    if found.is_none() {
        missing(
            "nrfutil (DFUKIT_NRFUTIL)",
            "scripts/install-peers installs nrfutil 6.1.7; point DFUKIT_NRFUTIL at it",
        );
    }
    found
}

/// Runs `cmd` with no input and its output captured, killing it after
/// `limit`: a hung peer fails its test, with what it printed, instead of
/// hanging the suite.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for the peer").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("peer output");
            panic!(
                "{cmd:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("peer output")
}

/// Runs `cmd` to completion and returns its stdout; a failure fails the
/// test with everything the peer printed.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the peer prints UTF-8")
}

/// `dfuse-pack` (Debian's dfu-util package ships it) run by a Python that has the
/// `intelhex` module it needs for `-i`: `DFUKIT_PYTHON`, else the Python of the nrfutil venv
/// (`scripts/install-peers` installs intelhex there). `None` after [`missing`].
pub fn dfuse_pack() -> Option<Command> {
    let script = tool("dfuse-pack", "apt-get install dfu-util")?;
    let python = std::env::var_os("DFUKIT_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("DFUKIT_NRFUTIL").map(|n| PathBuf::from(n).with_file_name("python"))
        })
        .filter(|p| {
            Command::new(p)
                .args(["-c", "import intelhex"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    let Some(python) = python else {
        missing(
            "a Python with intelhex for dfuse-pack (DFUKIT_PYTHON or DFUKIT_NRFUTIL's venv)",
            "scripts/install-peers installs intelhex into the nrfutil venv",
        );
        return None;
    };
    let mut cmd = Command::new(python);
    cmd.arg(script);
    Some(cmd)
}
