//! USB/IP device searches across the real process boundary: a board that another client
//! has imported is reported as busy (not as "no DFU device matches"), and a server that
//! trickles its reply cannot hold `dfukit usb list` past the search's one deadline.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// `text` with the diagnostic's line wrapping undone: box-drawing margins dropped and
/// whitespace runs made one space.
fn flat(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `dfukit usb` with `args` against the board at `addr`.
fn usb(addr: &str, args: &[&str]) -> std::process::Output {
    dfukit()
        .arg("usb")
        .args(args)
        .args(["--usbip", addr])
        .output()
        .unwrap()
}

#[test]
fn a_board_imported_by_another_client_is_reported_busy() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("board");
    let board = UsbipSim::start("stm32f4", &state, &[]);
    let before = std::fs::read(state.join("flash.bin")).unwrap();
    // The first client keeps the board imported for the whole test, as the kernel's vhci
    // does after `usbip attach`.
    let first = dfukit_usbip::Client::import(board.addr.as_str(), "1-1").unwrap();

    let busy = [
        "busid 1-1 is already imported by another client (ST_DEV_BUSY)",
        "usbip detach -p N",
        "dfukit::usb::usbip_busy",
    ];
    let list = flat(&failed(&usb(&board.addr, &["list"])));
    assert_contains(&list, &busy);
    assert!(!list.contains("no DFU device matches"), "{list}");

    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, dfukit_sim::synthetic::firmware(4096, 7)).unwrap();
    let fw = fw.to_str().unwrap();
    let download = flat(&failed(&usb(
        &board.addr,
        &["download", "-a", "0", "-s", "0x08000000", "-D", fw],
    )));
    assert_contains(&download, &busy);
    assert!(!download.contains("no DFU device matches"), "{download}");
    drop(first);
    assert_eq!(std::fs::read(state.join("flash.bin")).unwrap(), before);

    // Released, the same board is listed again.
    let start = Instant::now();
    loop {
        let out = usb(&board.addr, &["list"]);
        if out.status.success() && text(&out).contains("alt=0") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_trickling_server_cannot_hold_usb_list_past_the_deadline() {
    let addr = dfukit_testkit::servers::usbip_trickler().to_string();
    let limit = dfukit_transport::usb::SEARCH_DEADLINE;
    let t0 = Instant::now();
    let mut child = dfukit()
        .args(["usb", "list", "--usbip", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded here too, so that a regression fails instead of hanging the suite.
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit * 4 {
            child.kill().unwrap();
            panic!("`usb list` still running after {:?}", t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    let out = flat(&failed(&child.wait_with_output().unwrap()));
    assert!(took < limit * 2, "took {took:?} for a {limit:?} deadline");
    assert_contains(
        &out,
        &[
            &addr,
            "listing the exported devices (OP_REQ_DEVLIST)",
            &format!("{limit:?}"),
            "dfukit::usb::usbip_deadline",
        ],
    );
}
