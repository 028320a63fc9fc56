//! dfukit's libusb-1.0 replacement, for unmodified libusb programs
//! (dfu-util) that should reach USB/IP devices: `usb shim-dir` prints
//! where it is, and the USB benchmark runs dfu-util through it.
//!
//! The shim is built with dfukit (see build.rs) and carried inside the
//! binary, so an installed dfukit has it too: the first call writes it to a
//! cache directory named after its contents, later calls find it there.

use super::diag::Diag;
use std::io::Write;
use std::path::PathBuf;

/// The shared library, as built by build.rs.
static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libdfukit_libusb.so"));

/// A directory where the shim is `libusb-1.0.so.0`: under
/// `$XDG_CACHE_HOME/dfukit` (or `~/.cache/dfukit`, or the temporary
/// directory), named after the shim's CRC so that two dfukit versions never
/// share one.
pub fn shim_dir() -> Result<PathBuf, Diag> {
    let fail = |what: String| {
        Diag::new(
            "dfukit::usb::shim",
            what,
            "set XDG_CACHE_HOME to a writeable directory; dfukit writes its libusb replacement there",
        )
    };
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base
        .join("dfukit")
        .join(format!("libusb-shim-{:08x}", crc32fast::hash(SHIM)));
    let lib = dir.join("libusb-1.0.so.0");
    if std::fs::read(&lib).is_ok_and(|have| have == SHIM) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    // Written beside and renamed: a program that loads the library while
    // another dfukit writes it sees the whole file or none.
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))?;
    tmp.write_all(SHIM)
        .map_err(|e| fail(format!("cannot write {}: {e}", tmp.path().display())))?;
    // A shared library others load: readable by all, like one in /usr/lib.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|e| {
        fail(format!(
            "cannot set the mode of {}: {e}",
            tmp.path().display()
        ))
    })?;
    tmp.persist(&lib)
        .map_err(|e| fail(format!("cannot write {}: {}", lib.display(), e.error)))?;
    Ok(dir)
}
