//! CRC-32/IEEE (the zlib CRC) as Nordic Secure DFU and DFU suffixes use it.

/// A running CRC-32/IEEE that can be resumed from a previously reported value,
/// as the Secure DFU protocol does when it reports `(offset, crc)` pairs.
#[derive(Debug, Clone)]
pub struct Crc32 {
    hasher: crc32fast::Hasher,
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub fn new() -> Self {
        Self::resume(0)
    }

    /// Continues a CRC whose value over the bytes seen so far is `crc`.
    pub fn resume(crc: u32) -> Self {
        Crc32 {
            hasher: crc32fast::Hasher::new_with_initial(crc),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The CRC of everything fed so far.
    pub fn value(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32/IEEE of `bytes`, continuing from `crc` (0 for a fresh CRC).
pub fn crc32(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = Crc32::resume(crc);
    c.update(bytes);
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_zlib_check_value() {
        // The CRC-32/IEEE check value from the CRC catalogue.
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn resumes_across_splits() {
        let whole = crc32(0, b"hello, world");
        let first = crc32(0, b"hello");
        assert_eq!(crc32(first, b", world"), whole);
    }
}
