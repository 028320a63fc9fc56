//! The bytes behind a flash chip: in memory, or in a file that outlives the
//! simulator process.
//!
//! A file-backed chip keeps a full copy in memory for reads and writes every
//! change through to the file at once (a positioned write of just the changed
//! range). A simulator killed at any moment therefore leaves an image that
//! holds exactly the operations the model had applied, and the image can be
//! inspected with `xxd` or compared with `cmp` while the board is stopped.
//! No `fsync` is issued per operation: surviving the *process* dying is the
//! goal, not surviving the host losing power; [`Storage::sync`] is there for
//! callers that want the latter at a checkpoint.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Erased NOR flash reads as all ones.
pub const ERASED: u8 = 0xFF;

/// A storage failure, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading, writing, creating or syncing the image file failed.
    #[error("flash image {}: {source}", path.display())]
    Io {
        /// The image file.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },
    /// The image file exists but its size is not the chip's size; it was
    /// probably made for another board kind or chip. It is left untouched.
    #[error(
        "flash image {} is {actual} bytes but the chip holds {expected}; \
         remove it to start from an erased chip, or use the board it was made for",
        path.display()
    )]
    WrongSize {
        /// The image file.
        path: PathBuf,
        /// The chip's size in bytes.
        expected: u64,
        /// The file's size in bytes.
        actual: u64,
    },
}

#[derive(Debug)]
struct Backing {
    path: PathBuf,
    file: File,
}

/// The contents of one chip, indexed from the chip's first byte (offset 0),
/// not by bus address.
#[derive(Debug)]
pub struct Storage {
    bytes: Vec<u8>,
    backing: Option<Backing>,
}

impl Storage {
    /// `size` bytes of erased flash in memory, gone when dropped.
    pub fn in_memory(size: u32) -> Self {
        Self::from_vec(vec![ERASED; size as usize])
    }

    /// In-memory contents given in full (a prepared image, or random bytes to
    /// model a chip fresh from the factory that nobody erased).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Storage {
            bytes,
            backing: None,
        }
    }

    /// Contents backed by the file at `path`.
    ///
    /// A missing file is created full of [`ERASED`] at `size` bytes (written to
    /// a temporary name and renamed, so a crash never leaves a short image);
    /// an existing file must be exactly `size` bytes.
    pub fn open_file(path: impl AsRef<Path>, size: u32) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| StorageError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            create_erased(&path, size).map_err(io_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        let actual = file.metadata().map_err(io_err)?.len();
        if actual != u64::from(size) {
            return Err(StorageError::WrongSize {
                path,
                expected: u64::from(size),
                actual,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).map_err(io_err)?;
        if bytes.len() != size as usize {
            // The file changed size under us between the check and the read.
            return Err(StorageError::WrongSize {
                path,
                expected: u64::from(size),
                actual: bytes.len() as u64,
            });
        }
        Ok(Storage {
            bytes,
            backing: Some(Backing { path, file }),
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for a zero-sized storage.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// All bytes, as the model last applied them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The image file, for a file-backed storage.
    pub fn path(&self) -> Option<&Path> {
        self.backing.as_ref().map(|b| b.path.as_path())
    }

    /// Copies `buf.len()` bytes from `offset`.
    ///
    /// # Panics
    /// If the range is outside the storage; the flash model checks bounds
    /// against its geometry before calling.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.bytes[offset..offset + buf.len()]);
    }

    /// Replaces the bytes at `offset` with `data`: the file first, then the
    /// in-memory copy, so that a failed write leaves the copy matching what
    /// the model last applied successfully.
    ///
    /// # Panics
    /// If the range is outside the storage (see [`read`](Self::read)).
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), StorageError> {
        let end = offset + data.len();
        assert!(end <= self.bytes.len(), "storage write out of range");
        if let Some(b) = &self.backing {
            write_at(&b.file, offset as u64, data).map_err(|source| StorageError::Io {
                path: b.path.clone(),
                source,
            })?;
        }
        self.bytes[offset..end].copy_from_slice(data);
        Ok(())
    }

    /// Flushes a file-backed image to the disk (no-op in memory).
    pub fn sync(&self) -> Result<(), StorageError> {
        match &self.backing {
            Some(b) => b.file.sync_data().map_err(|source| StorageError::Io {
                path: b.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

fn create_erased(path: &Path, size: u32) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        let chunk = vec![ERASED; 64 * 1024];
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n])?;
            left -= n;
        }
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

#[cfg(unix)]
fn write_at(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_is_erased_and_writes_go_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chip.bin");
        let mut s = Storage::open_file(&path, 4096).unwrap();
        assert_eq!(s.path(), Some(path.as_path()));
        assert!(s.bytes().iter().all(|&b| b == ERASED));
        s.write(10, &[1, 2, 3]).unwrap();
        // Visible in the file before anything is dropped or synced.
        let on_disk = fs::read(&path).unwrap();
        assert_eq!(&on_disk[9..14], &[0xFF, 1, 2, 3, 0xFF]);
        assert_eq!(on_disk.len(), 4096);
        let mut buf = [0; 3];
        s.read(10, &mut buf);
        assert_eq!(buf, [1, 2, 3]);
        assert!(!dir.path().join("chip.bin.tmp").exists());
    }

    #[test]
    fn wrong_size_names_path_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qspi.bin");
        fs::write(&path, [0u8; 100]).unwrap();
        let err = Storage::open_file(&path, 4096).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            StorageError::WrongSize {
                expected: 4096,
                actual: 100,
                ..
            }
        ));
        assert!(
            msg.contains("qspi.bin") && msg.contains("100") && msg.contains("4096"),
            "{msg}"
        );
        // The file is left as it was.
        assert_eq!(fs::read(&path).unwrap().len(), 100);
    }

    #[test]
    fn in_memory_is_erased() {
        let s = Storage::in_memory(16);
        assert_eq!(s.len(), 16);
        assert!(s.path().is_none());
        assert!(s.bytes().iter().all(|&b| b == ERASED));
        s.sync().unwrap();
    }
}
