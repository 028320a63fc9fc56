//! What decoding (and, for strings, encoding) a USB/IP message reports.

use thiserror::Error;

/// A malformed or unexpected USB/IP message.
///
/// Offsets are byte offsets from the start of the message being decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsbipWireError {
    /// The input ended before a field.
    #[error("{message}: truncated at `{field}` (offset {offset}): need {needed} bytes, have {available}")]
    Truncated {
        /// Message being decoded.
        message: &'static str,
        /// Field that did not fit.
        field: &'static str,
        /// Offset of that field.
        offset: usize,
        /// Bytes needed from `offset` on.
        needed: usize,
        /// Bytes available from `offset` on.
        available: usize,
    },
    /// The input is longer than the message it should contain.
    #[error("{message}: {extra} unexpected trailing bytes at offset {offset}")]
    TrailingBytes {
        /// Message being decoded.
        message: &'static str,
        /// Offset where the message ends.
        offset: usize,
        /// Number of bytes past the end.
        extra: usize,
    },
    /// The `version` field is not `0x0111`.
    #[error("{message}: unsupported USB/IP version {found:#06x} at offset 0 (expected 0x0111)")]
    BadVersion {
        /// Message being decoded.
        message: &'static str,
        /// Version found.
        found: u16,
    },
    /// A code, command or constant field holds an unexpected value.
    #[error("{message}: field `{field}` at offset {offset} is {found:#x}, expected {expected:#x}")]
    UnexpectedValue {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Value expected.
        expected: u32,
        /// Value found.
        found: u32,
    },
    /// A field holds a value outside its allowed range.
    #[error("{message}: field `{field}` at offset {offset} is out of range: {found:#x}")]
    OutOfRange {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Value found.
        found: u32,
    },
    /// A fixed-size string field has no terminating NUL byte.
    #[error("{message}: string field `{field}` at offset {offset} is not NUL-terminated")]
    Unterminated {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{message}: string field `{field}` at offset {offset} is not UTF-8")]
    NotUtf8 {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A string is too long for its fixed-size field (which also holds the NUL) when encoding.
    #[error("string for field `{field}` is {len} bytes; at most {max} fit")]
    StringTooLong {
        /// Field name.
        field: &'static str,
        /// Length of the string in bytes.
        len: usize,
        /// Largest length that fits.
        max: usize,
    },
    /// Isochronous transfers (`number_of_packets` other than 0 or `0xffffffff`) are not supported.
    #[error(
        "{message}: isochronous transfer with {packets} packets is not supported (offset 0x20)"
    )]
    IsochronousUnsupported {
        /// Message being decoded.
        message: &'static str,
        /// `number_of_packets` found.
        packets: u32,
    },
}

impl From<UsbipWireError> for std::io::Error {
    fn from(e: UsbipWireError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}
