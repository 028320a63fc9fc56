//! The README's first command, `dfukit demo`, as CI runs it (output piped):
//! every row of its summary says what the README says it does.

mod common;

use common::{assert_contains, run, text};

#[test]
fn the_demo_runs_every_workflow_and_says_what_happened() {
    let out = run(&["demo"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.split("\nsummary\n").nth(1).expect("a summary table");
    let row = |board: &str, step: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(board) && l.contains(step))
            .unwrap_or_else(|| panic!("no row {board:?} / {step:?} in:\n{summary}"))
            .to_string()
    };
    for (board, step) in [
        ("nRF52840, bank 1 qspi", "install v1"),
        ("nRF52840, bank 1 qspi", "update to v2"),
        ("nRF52840, bank 1 internal", "update to v2"),
        ("STM32F405 ROM, USB/IP", "DfuSe download"),
        ("STM32MP157, USB/IP", "TSV flashing"),
    ] {
        assert!(
            row(board, step).ends_with("accepted"),
            "{}",
            row(board, step)
        );
    }
    assert!(row("nRF52840, QSPI callback lost", "update to v2")
        .ends_with("refused: flash write completion not received"));
    assert!(row("STM32MP157, TF-A hung", "TSV flashing").contains("diagnosed: TF-A silent"));
    // dfu-util through the shim the binary carries; scripts/test installs dfu-util.
    let dfu_util = row("STM32F405 ROM, USB/IP", "dfu-util upload");
    if dfukit_testkit::peers::tool("dfu-util", "apt-get install dfu-util").is_some() {
        assert!(dfu_util.ends_with("accepted"), "{dfu_util}");
    } else {
        assert!(dfu_util.ends_with("skipped: no dfu-util"), "{dfu_util}");
    }
    // Into a pipe, progress is lines, not a bar.
    assert_contains(&common::stderr(&out), &["bytes written in"]);
}
