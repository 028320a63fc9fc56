//! Builds dfukit's libusb-1.0 replacement (crates/dfukit-libusb, a cdylib)
//! and embeds it in the dfukit binary, so that `usb shim-dir`, the dfu-util
//! row of `demo` and `bench usb` work on a binary installed with
//! `cargo install --path crates/dfukit` — which installs binaries only, never
//! a package's shared libraries.
//!
//! Cargo cannot depend on a cdylib of the workspace (artifact dependencies
//! are unstable), so this runs a nested `cargo build` of that one library
//! into its own target directory, shared by every profile of the outer
//! build so that it is compiled once and found fresh afterwards.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let crates = manifest_dir.parent().expect("crates/dfukit has a parent");
    let shim_manifest = crates.join("dfukit-libusb/Cargo.toml");
    for dir in ["dfukit-libusb", "dfukit-usbip", "dfukit-core"] {
        println!("cargo:rerun-if-changed={}", crates.join(dir).display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = shim_target_dir(&out_dir);

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "--lib", "--locked", "--manifest-path"])
        .arg(&shim_manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and wrappers are for dfukit's own target and
    // lints (clippy sets a workspace wrapper): the shim is always a plain
    // release build for the host, so that check, clippy, test and release
    // share one fresh copy.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the libusb shim: {e}"));
    assert!(
        status.success(),
        "building the libusb shim ({}) failed",
        shim_manifest.display()
    );
    let built = target_dir.join("release/libdfukit_libusb.so");
    let embedded = out_dir.join("libdfukit_libusb.so");
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}

/// `<target>/libusb-shim` for an OUT_DIR of
/// `<target>[/<triple>]/<profile>/build/dfukit-<hash>/out`.
fn shim_target_dir(out_dir: &Path) -> PathBuf {
    let mut dir = out_dir;
    for _ in 0..4 {
        dir = dir.parent().unwrap_or(dir);
    }
    dir.join("libusb-shim")
}
