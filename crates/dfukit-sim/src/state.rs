//! A board's state directory: flash images, options, event log.
//!
//! ```text
//! <state dir>/
//!   board.json     the board kind's options (serde JSON, written atomically)
//!   internal.bin   chip images, one per chip, exactly the chip's size
//!   qspi.bin
//!   events.log     one line per event: "<clock> <time> <text>"
//! ```
//!
//! Everything is plain files so that a stopped board can be inspected with
//! ordinary tools (`xxd internal.bin`, `cmp`, `tail -f events.log`) and a
//! board can be power-cut, restarted and found as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dfukit_core::Instant;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::storage::{Storage, StorageError};

/// Image name of a microcontroller's internal flash.
pub const INTERNAL_IMAGE: &str = "internal";
/// Image name of an external QSPI NOR chip.
pub const QSPI_IMAGE: &str = "qspi";
/// File name of the board options.
pub const CONFIG_FILE: &str = "board.json";
/// File name of the event log.
pub const EVENT_LOG_FILE: &str = "events.log";

/// A state-directory failure, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be created, read or written.
    #[error("board state {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },
    /// `board.json` could not be parsed as (or written from) the board's options.
    #[error("board options {}: {source}", path.display())]
    Config {
        /// The options file.
        path: PathBuf,
        /// What serde reported (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A chip image name that is not a plain file name.
    #[error("chip image name {name:?} must be non-empty and contain no path separators or dots")]
    BadImageName {
        /// The name given.
        name: String,
    },
    /// A chip image could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An open board state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens the directory at `path`, creating it (and its parents) if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let root = path.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|source| StateError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(StateDir { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Path of the image of chip `name` (`<dir>/<name>.bin`).
    pub fn image_path(&self, name: &str) -> Result<PathBuf, StateError> {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            return Err(StateError::BadImageName {
                name: name.to_string(),
            });
        }
        Ok(self.root.join(format!("{name}.bin")))
    }

    /// File-backed storage for chip `name` of `size` bytes: created erased if
    /// missing, refused if of another size.
    pub fn open_image(&self, name: &str, size: u32) -> Result<Storage, StateError> {
        Ok(Storage::open_file(self.image_path(name)?, size)?)
    }

    /// Path of `board.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// Reads the board options; `None` when there is no `board.json` yet.
    pub fn load_config<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        let path = self.config_path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| StateError::Config { path, source })
    }

    /// Writes the board options as pretty JSON, through a temporary file and
    /// a rename so that a crash never leaves half a `board.json`.
    pub fn save_config<T: Serialize>(&self, config: &T) -> Result<(), StateError> {
        let path = self.config_path();
        let mut text = serde_json::to_vec_pretty(config).map_err(|source| StateError::Config {
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        let tmp = self.root.join(format!("{CONFIG_FILE}.tmp"));
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io { path: p, source }
        };
        fs::write(&tmp, &text).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Path of `events.log`.
    pub fn event_log_path(&self) -> PathBuf {
        self.root.join(EVENT_LOG_FILE)
    }

    /// Opens `events.log` for appending (created if missing).
    pub fn event_log(&self) -> Result<EventLog, StateError> {
        EventLog::open(self.event_log_path())
    }
}

/// The clock an event's time was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTime {
    /// Simulated time (tests, virtual-time runs).
    Virtual(Instant),
    /// Host time (boards served on a pseudo-terminal or USB/IP).
    Wall(SystemTime),
}

impl LogTime {
    /// The host clock now.
    pub fn wall_now() -> Self {
        LogTime::Wall(SystemTime::now())
    }
}

impl std::fmt::Display for LogTime {
    /// `virtual 12.000345s` or `wall 1712345678.123456` (Unix seconds), so
    /// that both sort and `awk` easily.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTime::Virtual(t) => write!(f, "virtual {t}"),
            LogTime::Wall(t) => {
                let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                write!(f, "wall {}.{:06}", d.as_secs(), d.subsec_micros())
            }
        }
    }
}

/// An append-only, line-per-event log.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
}

impl EventLog {
    /// Opens (creating if needed) the log at `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(EventLog { path, file })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line `"<time> <text>"`. Line breaks in `text` are written
    /// as `\n` so that one event stays one line. Each line goes out in one
    /// `write` on an append-mode file, so a killed process leaves whole lines.
    pub fn append(&mut self, time: LogTime, text: &str) -> Result<(), StateError> {
        let mut line = format!("{time} ");
        for c in text.chars() {
            match c {
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                c => line.push(c),
            }
        }
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| StateError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Opts {
        kind: String,
        qspi: bool,
    }

    #[test]
    fn config_roundtrip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::open(dir.path().join("a/b")).unwrap();
        assert!(st.path().is_dir());
        assert_eq!(st.load_config::<Opts>().unwrap(), None);
        let o = Opts {
            kind: "nrf52840dk".into(),
            qspi: true,
        };
        st.save_config(&o).unwrap();
        assert_eq!(st.load_config::<Opts>().unwrap(), Some(o));
        assert!(!st.path().join("board.json.tmp").exists());
        fs::write(st.config_path(), "{ nope").unwrap();
        let e = st.load_config::<Opts>().unwrap_err();
        assert!(matches!(e, StateError::Config { .. }));
        assert!(e.to_string().contains("board.json"));
    }

    #[test]
    fn image_names() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::open(dir.path()).unwrap();
        assert_eq!(
            st.image_path(INTERNAL_IMAGE).unwrap(),
            dir.path().join("internal.bin")
        );
        assert_eq!(
            st.image_path(QSPI_IMAGE).unwrap(),
            dir.path().join("qspi.bin")
        );
        for bad in ["", "../x", "a/b", "x.bin"] {
            assert!(
                matches!(st.image_path(bad), Err(StateError::BadImageName { .. })),
                "{bad}"
            );
        }
        let s = st.open_image(QSPI_IMAGE, 256).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("qspi.bin")).unwrap().len(),
            256
        );
        drop(s);
        assert!(matches!(
            st.open_image(QSPI_IMAGE, 512),
            Err(StateError::Storage(_))
        ));
    }

    #[test]
    fn event_log_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::open(dir.path()).unwrap();
        let mut log = st.event_log().unwrap();
        log.append(LogTime::Virtual(Instant::from_micros(1_500_000)), "boot")
            .unwrap();
        log.append(
            LogTime::Wall(UNIX_EPOCH + std::time::Duration::from_micros(2_000_001)),
            "two\nlines",
        )
        .unwrap();
        drop(log);
        let mut log = st.event_log().unwrap();
        log.append(LogTime::wall_now(), "again").unwrap();
        let text = fs::read_to_string(st.event_log_path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "virtual 1.500000s boot");
        assert_eq!(lines[1], "wall 2.000001 two\\nlines");
        assert!(lines[2].starts_with("wall ") && lines[2].ends_with(" again"));
        assert_eq!(lines.len(), 3);
    }
}
