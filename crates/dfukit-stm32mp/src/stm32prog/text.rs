//! Bounded text for a core without a heap: U-Boot's error buffer and the
//! partition names of a layout.

use core::fmt;

/// Longest error message kept, as U-Boot's `char error[255]` (plus NUL).
pub const ERROR_TEXT_MAX: usize = 254;

/// The message of phase 0xFF (`stm32prog_err`), cut at
/// [`ERROR_TEXT_MAX`] bytes on a character boundary.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ErrorText {
    text: heapless::String<ERROR_TEXT_MAX>,
    /// A character did not fit: later, shorter ones are dropped too, so the
    /// message is a prefix of what was written.
    full: bool,
}

impl ErrorText {
    /// The message formatted from `args` (cut if too long).
    pub fn from_fmt(args: fmt::Arguments<'_>) -> Self {
        let mut t = ErrorText::default();
        // Writing never fails: what does not fit is dropped.
        let _ = fmt::write(&mut t, args);
        t
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl fmt::Write for ErrorText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.full || self.text.push(c).is_err() {
                self.full = true;
                break;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Longest partition name (`char name[16 + 1]` in `stm32prog_part_t`).
pub const NAME_MAX: usize = 16;

/// A partition name as the layout spells it: up to [`NAME_MAX`] bytes,
/// not necessarily UTF-8 (U-Boot copies the bytes; they are shown with
/// invalid sequences replaced).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PartName(heapless::Vec<u8, NAME_MAX>);

impl PartName {
    /// The name, if it fits.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        heapless::Vec::from_slice(bytes).ok().map(PartName)
    }

    /// The bytes of the name.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the name is exactly `s`.
    pub fn is(&self, s: &str) -> bool {
        self.0.as_slice() == s.as_bytes()
    }
}

impl fmt::Display for PartName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Lossy(&self.0).fmt(f)
    }
}

impl fmt::Debug for PartName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Bytes shown as text, invalid UTF-8 replaced by U+FFFD.
pub(crate) struct Lossy<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}
