//! dfukit's libusb-1.0 replacement, for unmodified libusb programs
//! (dfu-util) that should reach USB/IP devices: `usb shim-dir` prints
//! where it is, and the USB benchmark runs dfu-util through it.

use super::diag::Diag;
use std::path::PathBuf;

/// Finds the shim built next to this executable (`cargo build --release`
/// builds both) and returns a directory where it is `libusb-1.0.so.0`.
pub fn shim_dir() -> Result<PathBuf, Diag> {
    let missing = |what: String| {
        Diag::new(
            "dfukit::usb::shim_missing",
            what,
            "build it: `cargo build --release` (or `cargo build -p dfukit-libusb`) builds libdfukit_libusb.so next to the dfukit binary",
        )
    };
    let exe = std::env::current_exe()
        .map_err(|e| missing(format!("cannot locate dfukit itself: {e}")))?;
    let bin_dir = exe
        .parent()
        .ok_or_else(|| missing("dfukit has no parent directory".into()))?;
    // Test binaries live in target/<profile>/deps; the library may be in either.
    let candidates = [
        bin_dir.to_path_buf(),
        bin_dir.join(".."),
        bin_dir.join("deps"),
    ];
    let lib = candidates
        .iter()
        .map(|d| d.join("libdfukit_libusb.so"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            missing(format!(
                "libdfukit_libusb.so not found next to {}",
                exe.display()
            ))
        })?;
    let dir = bin_dir.join("libusb-shim");
    std::fs::create_dir_all(&dir)
        .map_err(|e| missing(format!("cannot create {}: {e}", dir.display())))?;
    let link = dir.join("libusb-1.0.so.0");
    let target =
        std::fs::canonicalize(&lib).map_err(|e| missing(format!("{}: {e}", lib.display())))?;
    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| missing(format!("cannot link {}: {e}", link.display())))?;
    }
    Ok(dir)
}
