//! The commands in the README and the user guide run as written.
//!
//! Every ```sh block of README.md and docs/user-guide.md is run by bash
//! (`set -euo pipefail`), the blocks of one file in order in one directory,
//! as a reader follows them, from a fresh directory that holds the repository's
//! `examples/` (as a fresh clone has it), with the dfukit under test first
//! on PATH; it must succeed. Boards a block starts in the background (`&`,
//! output redirected) are stopped when the block ends.
//!
//! Two kinds of block are not run, and say so on their first line:
//! - `# hardware: ...` — needs a device, a radio or a serial port this
//!   machine does not have. Each `dfukit` command in it is still run, and
//!   must not be a usage error (exit 2): the options are spelt as the
//!   parser takes them.
//! - blocks whose first command is `cargo ...`: building, testing and
//!   installing dfukit itself, which scripts/test does (running it from a
//!   test would recurse).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A fenced block: the file and line it starts on, and its text.
struct Block {
    at: String,
    text: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every ```sh block of `file`.
fn sh_blocks(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim() == "```sh" => current = Some((i + 1, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => {
                let (start, body) = current.take().unwrap();
                blocks.push(Block {
                    at: format!("{file}:{start}"),
                    text: body,
                });
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(current.is_none(), "{file}: a ```sh block is not closed");
    blocks
}

/// A directory as a fresh clone's root looks to a reader: `examples/`.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo_root().join("examples"), dir.path().join("examples")).unwrap();
    dir
}

/// PATH with the dfukit under test first, and /usr/sbin (usbip) last.
fn path() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_dfukit")).parent().unwrap();
    format!(
        "{}:{}:/usr/sbin",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `script` with bash in `dir`; boards it started with `&` are
/// stopped when it exits, as a reader's Ctrl-C would.
fn bash(dir: &Path, script: &str, limit: Duration) -> std::process::Output {
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n{script}"
    );
    dfukit_testkit::peers::output_within(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("PATH", path())
            .env("XDG_CACHE_HOME", dir.join(".cache"))
            .env_remove("DFUKIT_USBIP"),
        limit,
    )
}

#[test]
fn every_documented_command_runs_as_written() {
    let mut ran = 0;
    for file in ["README.md", "docs/user-guide.md"] {
        let dir = workdir();
        for block in sh_blocks(file) {
            let first = block.text.lines().next().unwrap_or("");
            if first.starts_with("cargo ") {
                continue;
            }
            if first.starts_with("# hardware") {
                for line in block.text.lines().filter(|l| l.starts_with("dfukit ")) {
                    let command = line.split(" #").next().unwrap();
                    let out = bash(dir.path(), command, Duration::from_secs(20));
                    assert_ne!(
                        out.status.code(),
                        Some(2),
                        "{}: `{command}` is not what the parser takes:\n{}",
                        block.at,
                        common::text(&out)
                    );
                }
                continue;
            }
            let out = bash(dir.path(), &block.text, Duration::from_secs(120));
            assert!(
                out.status.success(),
                "{}: the block fails as written:\n{}\n--- output:\n{}",
                block.at,
                block.text,
                common::text(&out)
            );
            ran += 1;
        }
    }
    assert!(
        ran >= 4,
        "only {ran} blocks ran: the guide lost its examples?"
    );
}
