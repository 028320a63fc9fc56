//! Output files, written one way by every command that makes one: never over one of
//! the command's inputs, never half-written, private keys private.
//!
//! The bytes go to a temporary file in the output's own directory (so the rename
//! cannot cross file systems), are synced, and are renamed into place: a failed or
//! interrupted run leaves the old file or none, never a partial one. Used by the
//! Nordic commands (`pkg generate`, `keys generate`, `keys display --out_file`,
//! `settings generate`), `usb upload` and the STM32MP outputs; it takes a path, bytes
//! and [`Output`] options, each family passing its own [`OutputCodes`].

use super::diag::Diag;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The diagnostic codes a command family reports output errors under.
pub struct OutputCodes {
    /// The output path is one of the inputs.
    pub same_as_input: &'static str,
    /// The output exists and overwriting was not asked for.
    pub exists: &'static str,
    /// A private output's path is a symbolic link.
    pub symlink: &'static str,
    /// Creating, writing or renaming failed.
    pub write: &'static str,
}

impl OutputCodes {
    /// The Nordic commands' codes.
    pub const NORDIC: OutputCodes = OutputCodes {
        same_as_input: "dfukit::nordic::output::same_as_input",
        exists: "dfukit::nordic::output::exists",
        symlink: "dfukit::nordic::output::symlink",
        write: "dfukit::nordic::output::write",
    };
    /// The USB commands' codes.
    pub const USB: OutputCodes = OutputCodes {
        same_as_input: "dfukit::usb::output::same_as_input",
        exists: "dfukit::usb::output::exists",
        symlink: "dfukit::usb::output::symlink",
        write: "dfukit::usb::output::write",
    };
    /// The STM32MP commands' codes.
    pub const STM32MP: OutputCodes = OutputCodes {
        same_as_input: "dfukit::stm32mp::output::same_as_input",
        exists: "dfukit::stm32mp::output::exists",
        symlink: "dfukit::stm32mp::output::symlink",
        write: "dfukit::stm32mp::output::write",
    };
}

/// How an output file may be written.
pub struct Output<'a> {
    /// Codes for the diagnostics.
    pub codes: &'static OutputCodes,
    /// The command's input files: the output may be none of them (compared after
    /// resolving symbolic links and `..`).
    pub inputs: Vec<&'a Path>,
    /// Replace an existing file (`--overwrite`). Without it an existing file is refused.
    pub overwrite: bool,
    /// A secret (a private key): created with mode 0600, and never through a symbolic
    /// link, which could point anywhere another user chose.
    pub private: bool,
}

impl<'a> Output<'a> {
    /// A public output that replaces an existing file (as the peer tools do: scripts rerun
    /// them), but is never one of `inputs`.
    pub fn replacing(codes: &'static OutputCodes, inputs: Vec<&'a Path>) -> Self {
        Output {
            codes,
            inputs,
            overwrite: true,
            private: false,
        }
    }
}

/// The path with its directory resolved, for comparing with inputs; the file itself
/// need not exist.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let dir = parent(path).canonicalize().ok()?;
    Some(dir.join(path.file_name()?))
}

/// Whether `a` and `b` name the same existing file (same device and inode,
/// so hard links count too).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically under the rules of `opts`.
pub fn write_output(path: &Path, bytes: &[u8], opts: &Output<'_>) -> Result<(), Diag> {
    let c = opts.codes;
    write_output_with(path, opts, |tmp| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(tmp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| {
                Diag::new(
                    c.write,
                    format!("cannot write {} (writing): {e}", path.display()),
                    "check the disk is not full; nothing was written",
                )
            })
    })
}

/// Like [`write_output`], for outputs another function writes (a sparse
/// SD-card image): `write` fills the temporary file at the path it is
/// given, and only when it succeeds is the file synced and renamed to
/// `path`.
pub fn write_output_with<T>(
    path: &Path,
    opts: &Output<'_>,
    write: impl FnOnce(&Path) -> Result<T, Diag>,
) -> Result<T, Diag> {
    let c = opts.codes;
    let shown = path.display();
    if let Some(out) = resolved(path) {
        for input in &opts.inputs {
            if input.canonicalize().is_ok_and(|i| i == out) || same_file(path, input) {
                return Err(Diag::new(
                    c.same_as_input,
                    format!("output {shown} is the input {}", input.display()),
                    "choose another output file name; the input would be destroyed",
                ));
            }
        }
    }
    let meta = std::fs::symlink_metadata(path).ok();
    if opts.private && meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        return Err(Diag::new(
            c.symlink,
            format!("{shown} is a symbolic link; a private key is not written through one"),
            "remove the link or name a regular file",
        ));
    }
    if meta.is_some() && !opts.overwrite {
        return Err(Diag::new(
            c.exists,
            format!("{shown} already exists"),
            "remove it, choose another file name, or pass --overwrite to replace it",
        ));
    }
    let fail = |what: &str, e: std::io::Error| {
        Diag::new(
            c.write,
            format!("cannot write {shown} ({what}): {e}"),
            "check the directory exists and is writable and the disk is not full; nothing was written",
        )
    };
    let mode = if opts.private { 0o600 } else { 0o666 };
    let tmp = tempfile::Builder::new()
        .prefix(".dfukit-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(parent(path))
        .map_err(|e| fail("creating a temporary file beside it", e))?;
    let value = write(tmp.path())?;
    tmp.as_file().sync_all().map_err(|e| fail("writing", e))?;
    // Without --overwrite, the rename itself refuses a file that appeared meanwhile.
    let placed = if opts.overwrite {
        tmp.persist(path).map(drop)
    } else {
        tmp.persist_noclobber(path).map(drop)
    };
    placed.map_err(|e| fail("renaming into place", e.error))?;
    // The rename is durable once the directory is synced; a failure here loses nothing
    // the rename did not already do, so it is not an error.
    let _ = std::fs::File::open(parent(path)).and_then(|d| d.sync_all());
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts<'a>(inputs: Vec<&'a Path>, overwrite: bool, private: bool) -> Output<'a> {
        Output {
            codes: &OutputCodes::NORDIC,
            inputs,
            overwrite,
            private,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_input_is_never_the_output_however_it_is_spelled() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("app.hex");
        std::fs::write(&input, b"firmware").unwrap();
        std::os::unix::fs::symlink(&input, d.path().join("link.zip")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        for out in ["app.hex", "sub/../app.hex", "./link.zip"] {
            let out = d.path().join(out);
            let e = write_output(&out, b"zip", &opts(vec![&input], true, false)).unwrap_err();
            assert_eq!(
                e.code,
                OutputCodes::NORDIC.same_as_input,
                "{}",
                out.display()
            );
        }
        assert_eq!(std::fs::read(&input).unwrap(), b"firmware");
    }

    #[test]
    fn private_outputs_are_0600_never_through_a_link_and_never_replaced_unasked() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k.pem");
        write_output(&key, b"secret", &opts(vec![], false, true)).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = write_output(&key, b"other", &opts(vec![], false, true)).unwrap_err();
        assert_eq!(e.code, OutputCodes::NORDIC.exists);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        write_output(&key, b"other", &opts(vec![], true, true)).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"other");
        // A dangling link would otherwise create its target, wherever it points.
        let target = d.path().join("elsewhere.pem");
        let link = d.path().join("link.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_output(&link, b"secret", &opts(vec![], true, true)).unwrap_err();
        assert_eq!(e.code, OutputCodes::NORDIC.symlink);
        assert!(!target.exists());
    }

    #[test]
    fn a_failed_write_leaves_no_file_behind() {
        let d = tempfile::tempdir().unwrap();
        // The rename fails: a directory is in the way.
        let out = d.path().join("out.zip");
        std::fs::create_dir(&out).unwrap();
        let e = write_output(&out, &[0u8; 4096], &opts(vec![], true, false)).unwrap_err();
        assert_eq!(e.code, OutputCodes::NORDIC.write);
        assert!(e.message.contains("out.zip"), "{}", e.message);
        assert_eq!(names(d.path()), ["out.zip"]);
        assert!(out.is_dir());
        // A public output gets the usual mode (the umask's), not the temporary file's 0600.
        let ok = d.path().join("ok.zip");
        write_output(&ok, b"zip", &opts(vec![], false, false)).unwrap();
        let mode = std::fs::metadata(&ok).unwrap().permissions().mode();
        assert_ne!(mode & 0o077, 0, "{mode:o}");
        assert_eq!(names(d.path()), ["ok.zip", "out.zip"]);
    }
}
