//! Shell completions and man pages come from the same clap definitions as
//! the parser: every command the CLI has appears in them.

mod common;

use common::{assert_contains, ok};
use std::process::Command;

#[test]
fn bash_completion_is_valid_bash_and_knows_every_family_and_option() {
    let script = ok(&["completions", "bash"]);
    assert_contains(
        &script,
        &[
            "nordic",
            "stm32mp",
            "usb",
            "sim",
            "download",
            "--dfuse-address",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dfukit.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(checked.status.success(), "{}", common::text(&checked));
}

#[test]
fn zsh_and_fish_completions_name_the_commands() {
    assert_contains(
        &ok(&["completions", "zsh"]),
        &["#compdef dfukit", "download"],
    );
    assert_contains(
        &ok(&["completions", "fish"]),
        &["complete -c dfukit", "download"],
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = common::run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert_contains(&common::stderr(&out), &["invalid value 'tcsh'", "bash"]);
}

#[test]
fn man_pages_cover_every_command() {
    let top = ok(&["man"]);
    assert_contains(&top, &[".TH dfukit 1", "stm32mp"]);
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    for page in [
        "dfukit.1",
        "dfukit-usb-download.1",
        "dfukit-nordic-dfu-serial.1",
        "dfukit-stm32mp-flash.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") && text.contains(".TH"),
            "{page} is not a man page"
        );
    }
    let download = std::fs::read_to_string(dir.path().join("dfukit-usb-download.1")).unwrap();
    assert_contains(&download, &["dfuse\\-address"]);
}
