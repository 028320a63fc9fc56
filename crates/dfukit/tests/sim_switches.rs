//! A simulated board's command-line switches (`--fault`, `--no-flash-timing`,
//! `--public-key`) apply to the run they are given for; its state directory
//! keeps the flash and the hardware, not last run's switches.

mod common;

use common::{run, text, UsbipSim};
use std::path::Path;

fn download(board: &UsbipSim, file: &Path) -> std::process::Output {
    run(&[
        "usb",
        "download",
        "--usbip",
        &board.addr,
        "-a",
        "0",
        "-s",
        "0x08000000",
        "-D",
        file.to_str().unwrap(),
    ])
}

#[test]
fn a_fault_given_for_one_run_is_gone_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("board");
    let fw: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, &fw).unwrap();

    let faulty = UsbipSim::start("stm32f4", &state, &["--fault", "stall-after-blocks=2"]);
    let out = download(&faulty, &file);
    assert!(
        !out.status.success(),
        "the fault did not apply:\n{}",
        text(&out)
    );
    drop(faulty);

    let board = UsbipSim::start("stm32f4", &state, &[]);
    let out = download(&board, &file);
    assert!(
        out.status.success(),
        "last run's fault is still on:\n{}",
        text(&out)
    );
    drop(board);
    // The flash is the state: what the second run wrote is kept.
    assert_eq!(
        &std::fs::read(state.join("flash.bin")).unwrap()[..fw.len()],
        &fw[..]
    );
    let json = std::fs::read_to_string(state.join(dfukit_sim::state::CONFIG_FILE)).unwrap();
    assert!(
        !json.contains("stall"),
        "board.json keeps the switch:\n{json}"
    );
}

#[test]
fn the_nrf52840_forgets_last_runs_public_key_and_fault() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("board");
    let key = dir.path().join("key.pem");
    common::ok(&["nordic", "keys", "generate", key.to_str().unwrap()]);
    drop(common::Sim::start(
        &state,
        &[
            "--public-key",
            key.to_str().unwrap(),
            "--fault",
            "qspi-completions-stop=3",
        ],
    ));
    drop(common::Sim::start(&state, &[]));
    let json = std::fs::read_to_string(state.join(dfukit_sim::state::CONFIG_FILE)).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(cfg["fault"].is_null(), "{json}");
    assert!(cfg["public_key"].is_null(), "{json}");
}
