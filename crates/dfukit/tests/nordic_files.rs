//! Nordic files as users have them, and the outputs dfukit writes: keys written by shell
//! redirection, with CRLF line ends, or by nrfutil; output paths that are inputs, links or
//! existing keys; debug-mode packages; nrfutil's `dfu serial` spellings; a link lost
//! mid-transfer. Each runs the dfukit binary as a user would.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

/// `dfukit ARGS > out`, as a shell redirection writes it.
fn redirect(args: &[&str], out: &str) {
    let file = std::fs::File::create(out).unwrap();
    let st = dfukit()
        .args(args)
        .stdout(Stdio::from(file))
        .status()
        .unwrap();
    assert!(st.success(), "{args:?}");
}

/// `pkg generate` of an app of `len` bytes at `version`, signed with `key` if given.
fn package(dir: &Path, name: &str, key: Option<&str>, len: usize, version: &str) -> Vec<u8> {
    let hex = path(dir, &format!("{name}.hex"));
    let image = app_hex(Path::new(&hex), len, 5);
    let zip = path(dir, &format!("{name}.zip"));
    ok(&app_package_args(&hex, version, key, &zip));
    image
}

/// The text with CRLF line ends.
fn crlf(file: &str, out: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    std::fs::write(out, text.replace('\n', "\r\n")).unwrap();
}

/// `dfu ble --sim` of `zip` to a board trusting `public_key`: succeeds.
fn ble_sim_ok(zip: &str, public_key: &str) {
    ok(&[
        "nordic",
        "dfu",
        "ble",
        "--sim",
        "--package",
        zip,
        "--public-key",
        public_key,
    ]);
}

/// A public key redirected from `keys display` (it ends in a blank line), its CRLF copy,
/// a private key redirected from `keys display --key sk` (nrfutil's warning text before
/// it) and a CRLF private key: every command that reads a key takes them. The board is
/// started with the redirected key and updated with nrfutil's `-pkg`/`-p` spellings.
#[test]
fn keys_as_people_have_them_are_accepted_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = path(dir, "k.pem");
    ok(&["nordic", "keys", "generate", &key]);
    let public = path(dir, "pub.pem");
    redirect(
        &[
            "nordic", "keys", "display", "--key", "pk", "--format", "pem", &key,
        ],
        &public,
    );
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .ends_with("-----\n\n"));
    let public_crlf = path(dir, "pub-crlf.pem");
    crlf(&public, &public_crlf);
    let shown_sk = path(dir, "sk.pem");
    redirect(
        &[
            "nordic", "keys", "display", "--key", "sk", "--format", "pem", &key,
        ],
        &shown_sk,
    );
    let key_crlf = path(dir, "k-crlf.pem");
    crlf(&key, &key_crlf);
    // Private keys as --key-file; public keys as the simulated board's key.
    package(dir, "a", Some(&shown_sk), 9_000, "3");
    let image = package(dir, "b", Some(&key_crlf), 9_000, "4");
    for k in [&public, &public_crlf] {
        ble_sim_ok(&path(dir, "a.zip"), k);
    }
    let state = dir.join("board");
    let sim = Sim::start(&state, &["--public-key", &public_crlf, "--no-flash-timing"]);
    let zip = path(dir, "b.zip");
    ok(&[
        "nordic", "dfu", "serial", "-pkg", &zip, "-p", &sim.pty, "-b", "115200", "-fc", "0",
        "-prn", "4",
    ]);
    let v = wait_for_version(&state, 4);
    assert_eq!(v["app_crc"], crc(&image) as u64);
}

/// Keys nrfutil wrote: its private key signs dfukit's package, and its `keys display
/// --key pk --format pem` redirected to a file is the key a simulated board trusts.
#[test]
fn nrfutil_written_keys_are_accepted() {
    let Some(nrfutil) = nrfutil() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = path(dir, "nk.pem");
    assert!(Command::new(&nrfutil)
        .args(["keys", "generate", &key])
        .status()
        .unwrap()
        .success());
    let public = path(dir, "npub.pem");
    let out = Command::new(&nrfutil)
        .args(["keys", "display", "--key", "pk", "--format", "pem", &key])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&public, &out.stdout).unwrap();
    package(dir, "n", Some(&key), 5_000, "2");
    ble_sim_ok(&path(dir, "n.zip"), &public);
}

fn mode(p: &str) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// No output path overwrites an input; a failed command leaves its input intact.
#[test]
fn an_output_that_is_an_input_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let hex = path(dir, "app.hex");
    app_hex(Path::new(&hex), 3_000, 1);
    let before = std::fs::read(&hex).unwrap();
    let key = path(dir, "k.pem");
    ok(&["nordic", "keys", "generate", &key]);
    let key_before = std::fs::read(&key).unwrap();
    let gen = |out: &str| run(&app_package_args(&hex, "1", Some(&key), out));
    let other_spelling = format!("{}/./app.hex", dir.display());
    for out in [&hex, &other_spelling, &key] {
        let err = failed(&gen(out));
        let name = Path::new(out).file_name().unwrap().to_str().unwrap();
        assert_contains(&err, &["dfukit::nordic::output::same_as_input", name]);
    }
    let settings = run(&[
        "nordic",
        "settings",
        "generate",
        "--family",
        "NRF52840",
        "--application",
        &hex,
        "--application-version",
        "1",
        "--bootloader-version",
        "1",
        "--bl-settings-version",
        "2",
        &hex,
    ]);
    assert_contains(&failed(&settings), &["same_as_input"]);
    let display = run(&[
        "nordic",
        "keys",
        "display",
        "--key",
        "pk",
        "--format",
        "pem",
        "--out_file",
        &key,
        &key,
    ]);
    assert_contains(&failed(&display), &["same_as_input"]);
    assert_eq!(std::fs::read(&hex).unwrap(), before);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
    // A real output is made, and only it: no temporary file is left beside it.
    succeeded(&gen(&path(dir, "app.zip")));
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["app.hex", "app.zip", "k.pem"]);
}

/// Private keys: mode 0600, never through a symbolic link, never over an existing file
/// unless --overwrite (nrfutil asks before overwriting).
#[test]
fn private_keys_are_private_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = path(dir, "k.pem");
    ok(&["nordic", "keys", "generate", &key]);
    assert_eq!(mode(&key), 0o600);
    let first = std::fs::read(&key).unwrap();
    let err = failed(&run(&["nordic", "keys", "generate", &key]));
    assert_contains(&err, &["dfukit::nordic::output::exists", "--overwrite"]);
    assert_eq!(std::fs::read(&key).unwrap(), first);
    ok(&["nordic", "keys", "generate", "--overwrite", &key]);
    assert_ne!(std::fs::read(&key).unwrap(), first);
    assert_eq!(mode(&key), 0o600);
    // A dangling link would have had its target created wherever it points.
    let target = dir.join("elsewhere.pem");
    let link = path(dir, "link.pem");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = failed(&run(&["nordic", "keys", "generate", "--force", &link]));
    assert_contains(&err, &["dfukit::nordic::output::symlink"]);
    assert!(!target.exists());
    // `keys display --key sk --out_file` writes a private key the same way.
    let shown = path(dir, "shown.pem");
    ok(&[
        "nordic",
        "keys",
        "display",
        "--key",
        "sk",
        "--format",
        "pem",
        "--out_file",
        &shown,
        &key,
    ]);
    assert_eq!(mode(&shown), 0o600);
}

/// A `--debug-mode` package without versions: `pkg generate`, `pkg display` and `dfu`
/// each warn once that the version stored is 0xFFFFFFFF, before the update starts.
#[test]
fn debug_mode_packages_warn_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let hex = path(dir, "app.hex");
    app_hex(Path::new(&hex), 4_000, 2);
    let zip = path(dir, "dbg.zip");
    let out = run(&[
        "nordic",
        "pkg",
        "generate",
        "--debug-mode",
        "--application",
        &hex,
        &zip,
    ]);
    let warning = "app.dat: debug-mode package, application version 0xFFFFFFFF";
    for text in [
        succeeded(&out),
        succeeded(&run(&["nordic", "pkg", "display", &zip])),
        text(&run(&["nordic", "dfu", "ble", "--sim", "--package", &zip])),
        text(&run(&[
            "nordic",
            "dfu",
            "serial",
            "-pkg",
            &zip,
            "-p",
            "/nonexistent/tty",
        ])),
    ] {
        assert_eq!(text.matches(warning).count(), 1, "{text}");
        assert_contains(&text, &["downgrade", "settings generate"]);
    }
    // The warning comes before the port is even opened.
    let serial = text(&run(&[
        "nordic",
        "dfu",
        "serial",
        "-pkg",
        &zip,
        "-p",
        "/nonexistent/tty",
    ]));
    assert!(
        serial.find(warning) < serial.find("as a serial port"),
        "{serial}"
    );
    let plain = path(dir, "plain.zip");
    let out = run(&app_package_args(&hex, "1", None, &plain));
    assert!(!succeeded(&out).contains("debug-mode"));
}

/// The board loses power mid-transfer: the error names the data object and the image
/// offset the update reached, under a dfukit::nordic::dfu code, and exits non-zero.
#[test]
fn a_link_lost_mid_transfer_names_the_object_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    package(dir, "big", None, 600_000, "2");
    let state: PathBuf = dir.join("board");
    let sim = Sim::start(&state, &[]);
    let zip = path(dir, "big.zip");
    let child = dfukit()
        .args([
            "nordic", "dfu", "serial", "-pkg", &zip, "-p", &sim.pty, "-t", "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Flash timing is on: 600 kB take the board seconds; pull its power after one.
    std::thread::sleep(Duration::from_millis(1500));
    sim.kill();
    let out = child.wait_with_output().unwrap();
    let err = failed(&out);
    assert_contains(
        &err,
        &[
            "data transfer",
            "data object",
            "at image offset",
            "dfukit::nordic::dfu::",
        ],
    );
}
