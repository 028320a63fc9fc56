//! The real Linux `usbip` tool lists the server's devices (pure TCP, no kernel modules).
//!
//! Skipped with a notice when the tool is missing, unless `DFUKIT_REQUIRE_PEERS=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use dfukit_usbip::Server;

fn tool_or_skip() -> Option<PathBuf> {
    dfukit_testkit::peers::tool("usbip", "install Debian package `usbip`")
}

/// Run with a hard time limit.
fn run(tool: &Path, args: &[&str]) -> Output {
    dfukit_testkit::peers::output_within(Command::new(tool).args(args), Duration::from_secs(20))
}

#[test]
fn usbip_list_remote_shows_devices() {
    let Some(tool) = tool_or_skip() else {
        return;
    };
    let server = Server::bind("127.0.0.1:0").unwrap();
    server
        .add_device("1-1", Box::new(TestDevice::new()))
        .unwrap();
    server
        .add_device("3-2", Box::new(TestDevice::new()))
        .unwrap();
    server.spawn().unwrap();
    let port = server.local_addr().port().to_string();

    // `--tcp-port` is an option of `usbip` itself, so it goes before the sub-command.
    let out = run(&tool, &["--tcp-port", &port, "list", "-r", "127.0.0.1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("usbip stdout:\n{stdout}\nusbip stderr:\n{stderr}");
    assert!(out.status.success(), "usbip list failed: {stderr}");
    assert!(stdout.contains("Exportable USB devices"), "{stdout}");
    assert!(stdout.contains(" - 127.0.0.1"), "{stdout}");
    for busid in ["1-1", "3-2"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{busid}: "))
                    && l.contains("(1209:d0f0)")),
            "busid {busid} with VID:PID missing:\n{stdout}"
        );
    }
    // Device class triple and both interfaces' class triples.
    assert!(stdout.contains("(00/00/00)"), "{stdout}");
    let if0 = stdout
        .lines()
        .filter(|l| l.contains(" 0 - ") && l.contains("(ff/42/01)"));
    let if1 = stdout
        .lines()
        .filter(|l| l.contains(" 1 - ") && l.contains("(fe/01/02)"));
    assert_eq!(if0.count(), 2, "{stdout}");
    assert_eq!(if1.count(), 2, "{stdout}");
    assert!(
        stdout.contains("/sys/devices/platform/dfukit-usbip/usb1/3-2"),
        "{stdout}"
    );

    // The server keeps serving after the tool's connection.
    assert_eq!(
        dfukit_usbip::Client::list(server.local_addr())
            .unwrap()
            .len(),
        2
    );
    server.stop();
}

#[test]
fn usbip_list_remote_with_no_devices() {
    let Some(tool) = tool_or_skip() else {
        return;
    };
    let server = Server::bind("127.0.0.1:0").unwrap();
    server.spawn().unwrap();
    let port = server.local_addr().port().to_string();
    let out = run(&tool, &["--tcp-port", &port, "list", "-r", "127.0.0.1"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("no exportable devices found on 127.0.0.1"),
        "{all}"
    );
    server.stop();
}
