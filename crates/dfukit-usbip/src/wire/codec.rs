//! The encode/decode helpers every message uses: a bounds-checked big-endian reader that names
//! the field and offset of whatever does not fit, and the writers for fixed-size fields.

use super::UsbipWireError;

/// Bounds-checked big-endian reader over one message.
pub(super) struct Reader<'a> {
    /// Message name, for errors.
    pub(super) message: &'static str,
    buf: &'a [u8],
    /// Offset of the next field.
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(message: &'static str, buf: &'a [u8]) -> Self {
        Reader {
            message,
            buf,
            pos: 0,
        }
    }

    pub(super) fn take(
        &mut self,
        field: &'static str,
        n: usize,
    ) -> Result<&'a [u8], UsbipWireError> {
        let available = self.buf.len().saturating_sub(self.pos);
        if available < n {
            return Err(UsbipWireError::Truncated {
                message: self.message,
                field,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, UsbipWireError> {
        Ok(self.take(field, 1)?[0])
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, UsbipWireError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, UsbipWireError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn string(
        &mut self,
        field: &'static str,
        len: usize,
    ) -> Result<String, UsbipWireError> {
        let offset = self.pos;
        let raw = self.take(field, len)?;
        let end = raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(UsbipWireError::Unterminated {
                message: self.message,
                field,
                offset,
            })?;
        std::str::from_utf8(&raw[..end])
            .map(str::to_owned)
            .map_err(|_| UsbipWireError::NotUtf8 {
                message: self.message,
                field,
                offset,
            })
    }

    pub(super) fn skip(&mut self, field: &'static str, n: usize) -> Result<(), UsbipWireError> {
        self.take(field, n).map(|_| ())
    }

    /// Decode all of `buf` as one `message` with `read`: what `read` leaves over is an error.
    pub(super) fn whole<T>(
        message: &'static str,
        buf: &'a [u8],
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, UsbipWireError>,
    ) -> Result<T, UsbipWireError> {
        let mut r = Reader::new(message, buf);
        let value = read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    pub(super) fn finish(self) -> Result<(), UsbipWireError> {
        if self.pos != self.buf.len() {
            return Err(UsbipWireError::TrailingBytes {
                message: self.message,
                offset: self.pos,
                extra: self.buf.len() - self.pos,
            });
        }
        Ok(())
    }
}

/// Append `s` as a NUL-terminated, zero-padded field of `len` bytes.
pub(super) fn put_string(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
    len: usize,
) -> Result<(), UsbipWireError> {
    if s.len() >= len {
        return Err(UsbipWireError::StringTooLong {
            field,
            len: s.len(),
            max: len - 1,
        });
    }
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + (len - s.len()), 0);
    Ok(())
}

/// Append each word big-endian, in order.
pub(super) fn put_u32s(out: &mut Vec<u8>, words: &[u32]) {
    for w in words {
        out.extend_from_slice(&w.to_be_bytes());
    }
}
