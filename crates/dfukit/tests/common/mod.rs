//! Helpers for tests that run the dfukit binary and peer tools as processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The dfukit binary under test.
pub fn dfukit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dfukit"))
}

/// Runs dfukit with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    dfukit().args(args).output().expect("dfukit runs")
}

/// Runs dfukit and requires success.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "dfukit {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The nrfutil peer (see `dfukit_testkit::peers`).
pub fn nrfutil() -> Option<PathBuf> {
    dfukit_testkit::peers::nrfutil()
}

/// `dfukit nordic pkg generate` arguments for the app in `hex` at `version`, for the
/// nRF52840 the simulated board models (hw_version 52, sd_req 0x0100), signed with `key` if
/// given, into `zip`.
pub fn app_package_args<'a>(
    hex: &'a str,
    version: &'a str,
    key: Option<&'a str>,
    zip: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["nordic", "pkg", "generate", "--application", hex];
    args.extend(["--application-version", version, "--hw-version", "52"]);
    args.extend(["--sd-req", "0x0100"]);
    if let Some(k) = key {
        args.extend(["--key-file", k]);
    }
    args.push(zip);
    args
}

/// Deterministic firmware of `len` bytes written as Intel HEX at 0x27000.
pub fn app_hex(path: &Path, len: usize, seed: u32) -> Vec<u8> {
    let fw = dfukit_sim::synthetic::firmware(len, seed);
    std::fs::write(path, dfukit_firmware::to_intel_hex(&[(0x27000, &fw)])).unwrap();
    let mut padded = fw;
    while !padded.len().is_multiple_of(4) {
        padded.push(0xFF);
    }
    padded
}

/// A process that announces where it serves on its first stdout line;
/// killed when dropped.
struct Announcing {
    child: Child,
    /// Kept open: the board prints more lines after the first.
    _stdout: BufReader<ChildStdout>,
}

impl Announcing {
    /// Spawns `cmd` and reads its first line, which must be `PREFIX VALUE`;
    /// returns the process and VALUE.
    fn spawn(cmd: &mut Command, prefix: &str) -> (Announcing, String) {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("sim starts");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        let value = first
            .trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("first line is not `{prefix}…`: {first:?}"))
            .to_string();
        let process = Announcing {
            child,
            _stdout: stdout,
        };
        (process, value)
    }
}

impl Drop for Announcing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `dfukit sim nrf52840 --pty` process; killed when dropped.
pub struct Sim {
    _process: Announcing,
    /// The pty path it printed.
    pub pty: String,
}

impl Sim {
    /// Starts a simulated board on `state` with extra options.
    pub fn start(state: &Path, extra: &[&str]) -> Sim {
        let (process, pty) = Announcing::spawn(
            dfukit()
                .args(["sim", "nrf52840", "--pty", "--state"])
                .arg(state)
                .args(extra)
                .stderr(Stdio::inherit()),
            "pty: ",
        );
        assert!(pty.starts_with("/dev/pts/"), "{pty}");
        Sim {
            _process: process,
            pty,
        }
    }

    /// Stops the board (as pulling its power would).
    pub fn kill(self) {
        drop(self);
    }
}

/// `dfukit sim inspect --json` of a board's state.
pub fn inspect(state: &Path) -> serde_json::Value {
    let out = ok(&[
        "sim",
        "inspect",
        "--json",
        "--state",
        state.to_str().unwrap(),
    ]);
    serde_json::from_str(&out).unwrap()
}

/// Waits until the board in `state` runs `version` (activation finished).
pub fn wait_for_version(state: &Path, version: u64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = inspect(state);
        if v["app_valid"] == true && v["app_version"] == version {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "board never ran version {version}: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CRC-32 as the bootloader records it.
pub fn crc(b: &[u8]) -> u32 {
    let mut c = dfukit_core::Crc32::new();
    c.update(b);
    c.value()
}

/// A peer tool (see `dfukit_testkit::peers`).
pub fn tool(name: &str) -> Option<PathBuf> {
    dfukit_testkit::peers::tool(name, "scripts/install-peers installs it")
}

/// A `dfukit sim KIND --usbip 127.0.0.1:0` process (flash timing off);
/// killed when dropped.
pub struct UsbipSim {
    _process: Announcing,
    /// `127.0.0.1:PORT` it printed.
    pub addr: String,
    /// The port alone.
    pub port: u16,
}

impl UsbipSim {
    /// Starts board `kind` (`stm32f4`, `stm32mp1`) on `state` with extra options.
    pub fn start(kind: &str, state: &Path, extra: &[&str]) -> UsbipSim {
        let (process, addr) = Announcing::spawn(
            dfukit()
                .args([
                    "sim",
                    kind,
                    "--usbip",
                    "127.0.0.1:0",
                    "--no-flash-timing",
                    "--state",
                ])
                .arg(state)
                .args(extra),
            "usbip: ",
        );
        let port = addr
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a local address: {addr}"));
        UsbipSim {
            _process: process,
            addr,
            port,
        }
    }
}

/// dfu-util, unmodified, with dfukit's libusb shim reaching `board`.
pub fn dfu_util(board: &UsbipSim, args: &[&str]) -> Output {
    let shim = ok(&["usb", "shim-dir"]);
    Command::new("dfu-util")
        .args(args)
        .env("LD_LIBRARY_PATH", shim.trim())
        .env("DFUKIT_USBIP", &board.addr)
        .output()
        .unwrap()
}

/// A process's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process's stdout and stderr together.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// Asserts the process succeeded; returns its stdout and stderr together.
pub fn succeeded(o: &Output) -> String {
    let t = text(o);
    assert!(o.status.success(), "{t}");
    t
}

/// Asserts the process failed; returns its stdout and stderr together.
pub fn failed(o: &Output) -> String {
    let t = text(o);
    assert!(!o.status.success(), "{t}");
    t
}

/// Asserts `text` contains every one of `needles`.
pub fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}
