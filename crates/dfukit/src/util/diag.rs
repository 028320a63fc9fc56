//! Diagnostics: what failed, a stable code, and a help line that says what to do.

use std::fmt;

/// An error as the CLI reports it.
#[derive(Debug)]
pub struct Diag {
    /// What went wrong, with where (phase, file, offset).
    pub message: String,
    /// A stable code, e.g. `dfukit::nordic::dfu::timeout`.
    pub code: &'static str,
    /// The likely cause and what to do.
    pub help: Option<String>,
}

impl Diag {
    /// A diagnostic with a code and a help line.
    pub fn new(code: &'static str, message: impl Into<String>, help: impl Into<String>) -> Self {
        Diag {
            message: message.into(),
            code,
            help: Some(help.into()),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diag {}

impl miette::Diagnostic for Diag {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
}

impl From<dfukit_nordic::host::UpdateError> for Diag {
    fn from(e: dfukit_nordic::host::UpdateError) -> Self {
        Diag::new(e.code(), e.to_string(), e.help())
    }
}

/// Reads the file the user named, or says which file could not be read and
/// why, under `code` with `help`.
pub fn read_input(path: &std::path::Path, code: &'static str, help: &str) -> Result<Vec<u8>, Diag> {
    std::fs::read(path)
        .map_err(|e| Diag::new(code, format!("cannot read {}: {e}", path.display()), help))
}
