//! What `stm32mp image-info` reports, in words and as JSON.

use super::{checksum, ImageError, ImageHeader};
use std::fmt;

/// Everything `image-info` reports: the header plus the computed checksum.
/// Unlike [`super::verify`], a checksum mismatch is not an error here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The decoded header.
    pub header: ImageHeader,
    /// Checksum computed over the payload.
    pub computed_checksum: u32,
    /// Bytes after the end of the payload.
    pub trailing_bytes: usize,
}

/// A value in [`ImageInfo::to_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonValue {
    /// A string.
    Str(String),
    /// An unsigned number.
    Num(u64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for JsonValue {
    /// Writes the value as JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonValue::Num(n) => write!(f, "{n}"),
            JsonValue::Bool(b) => write!(f, "{b}"),
            JsonValue::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
        }
    }
}

fn hex32(v: u32) -> JsonValue {
    JsonValue::Str(format!("{v:#010x}"))
}

impl ImageInfo {
    /// Whether the stored checksum equals the computed one.
    pub fn checksum_ok(&self) -> bool {
        self.computed_checksum == self.header.payload_checksum
    }

    /// Flat key/value list for JSON output. Addresses, flags and checksums
    /// are `"0x%08x"` strings; lengths and versions are numbers.
    pub fn to_json(&self) -> Vec<(&'static str, JsonValue)> {
        let h = &self.header;
        let mut v = vec![
            ("magic", JsonValue::Str("STM\\x32".into())),
            ("header_version", hex32(h.version)),
            ("header_major", JsonValue::Num(h.major().into())),
            ("header_minor", JsonValue::Num(h.minor().into())),
            ("header_len", JsonValue::Num(h.header_len as u64)),
            ("image_length", JsonValue::Num(h.image_length.into())),
            ("checksum", hex32(h.payload_checksum)),
            ("computed_checksum", hex32(self.computed_checksum)),
            ("checksum_ok", JsonValue::Bool(self.checksum_ok())),
            ("entry_point", hex32(h.entry_point)),
            ("load_address", hex32(h.load_address)),
            ("image_version", JsonValue::Num(h.image_version.into())),
            ("option_flags", hex32(h.option_flags)),
            ("binary_type", hex32(h.binary_type)),
            (
                "binary_type_name",
                JsonValue::Str(h.binary_type_name().into()),
            ),
            ("signed", JsonValue::Bool(h.is_signed())),
            (
                "signature_present",
                JsonValue::Bool(h.has_signature_bytes()),
            ),
            ("trailing_bytes", JsonValue::Num(self.trailing_bytes as u64)),
        ];
        if h.major() == 1 {
            v.push(("ecdsa_algorithm", JsonValue::Num(h.ecdsa_algorithm.into())));
        } else {
            v.push((
                "extension_headers_length",
                JsonValue::Num(h.extension_headers_length.into()),
            ));
            v.push((
                "extensions",
                JsonValue::Str(
                    h.extensions
                        .iter()
                        .map(|e| format!("{}@{:#x}+{}", e.kind_name(), e.offset, e.length))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ));
        }
        v
    }

    /// [`to_json`](Self::to_json) rendered as a one-line JSON object.
    pub fn to_json_string(&self) -> String {
        let body: Vec<String> = self
            .to_json()
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", JsonValue::Str(k.into())))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

impl fmt::Display for ImageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.header.write_fields(f)?;
        if self.checksum_ok() {
            write!(
                f,
                "\nchecksum:         {:#010x} (ok)",
                self.header.payload_checksum
            )?;
        } else {
            write!(
                f,
                "\nchecksum:         {:#010x} (BAD: payload sums to {:#010x})",
                self.header.payload_checksum, self.computed_checksum
            )?;
        }
        if self.trailing_bytes > 0 {
            write!(
                f,
                "\ntrailing bytes:   {} after the payload",
                self.trailing_bytes
            )?;
        }
        Ok(())
    }
}

/// Decode the header and compute the payload checksum without failing on a
/// mismatch (for `dfukit stm32mp image-info`).
pub fn inspect(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let header = ImageHeader::parse(bytes)?;
    let end = header.header_len + header.image_length as usize;
    Ok(ImageInfo {
        computed_checksum: checksum(&bytes[header.header_len..end]),
        trailing_bytes: bytes.len() - end,
        header,
    })
}
