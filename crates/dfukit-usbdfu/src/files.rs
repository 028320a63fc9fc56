//! DFU files: the 16-byte DFU suffix and ST's DfuSe `.dfu` container.
//!
//! The suffix CRC is computed the way dfu-util's `dfu_file.c` does it — the
//! reflected CRC-32 with initial value 0xFFFFFFFF and *no* final XOR over
//! everything but the CRC field itself — so files interoperate with
//! `dfu-suffix` and `dfu-util` byte for byte.

use dfukit_core::crc::crc32;

/// Length of the standard DFU suffix.
pub const SUFFIX_LEN: usize = 16;
/// `bcdDFU` of a plain DFU 1.0 file.
pub const BCD_DFU_1_0: u16 = 0x0100;
/// `bcdDFU` of a DfuSe file.
pub const BCD_DFUSE: u16 = 0x011A;
/// Wildcard for `bcdDevice`, `idProduct` and `idVendor`.
pub const WILDCARD: u16 = 0xFFFF;

/// The suffix CRC over `bytes`: CRC-32 without its final XOR (equivalently
/// zlib's CRC-32 XOR 0xFFFFFFFF).
pub fn suffix_crc(bytes: &[u8]) -> u32 {
    crc32(0, bytes) ^ 0xFFFF_FFFF
}

/// The identification fields of a DFU suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suffix {
    /// Device release (`bcdDevice`), [`WILDCARD`] for any.
    pub bcd_device: u16,
    /// Product ID, [`WILDCARD`] for any.
    pub id_product: u16,
    /// Vendor ID, [`WILDCARD`] for any.
    pub id_vendor: u16,
    /// DFU specification release: [`BCD_DFU_1_0`] or [`BCD_DFUSE`].
    pub bcd_dfu: u16,
}

impl Default for Suffix {
    /// All wildcards, DFU 1.0 — what `dfu-suffix -a` writes without options.
    fn default() -> Self {
        Suffix {
            bcd_device: WILDCARD,
            id_product: WILDCARD,
            id_vendor: WILDCARD,
            bcd_dfu: BCD_DFU_1_0,
        }
    }
}

/// Why a DFU suffix is missing or invalid. Offsets are from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuffixError {
    /// The file is shorter than a suffix.
    #[error("file is {len} bytes, too short for a {SUFFIX_LEN}-byte DFU suffix")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// The `UFD` signature is not there: the file has no suffix.
    #[error("invalid DFU suffix signature at byte {offset}: found {found:02x?}, expected \"UFD\"")]
    BadSignature {
        /// Offset of the signature field.
        offset: usize,
        /// The three bytes found.
        found: [u8; 3],
    },
    /// `bLength` is below 16 or longer than the file.
    #[error("DFU suffix length {value} at byte {offset} is invalid (16..={max})")]
    BadLength {
        /// Offset of the bLength field.
        offset: usize,
        /// The value found.
        value: u8,
        /// The largest value the file allows.
        max: usize,
    },
    /// The CRC does not match the file's contents.
    #[error("DFU suffix CRC does not match: stored {stored:#010x} at byte {offset}, computed {computed:#010x}")]
    CrcMismatch {
        /// Offset of the dwCRC field.
        offset: usize,
        /// The CRC in the file.
        stored: u32,
        /// The CRC of the contents.
        computed: u32,
    },
}

/// A file split into payload and suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suffixed<'a> {
    /// The bytes before the suffix.
    pub payload: &'a [u8],
    /// The suffix fields.
    pub suffix: Suffix,
    /// `bLength` (16 unless the suffix carries vendor extensions).
    pub length: u8,
    /// The stored CRC (already checked).
    pub crc: u32,
}

/// Appends a suffix to `payload`.
pub fn add_suffix(payload: &[u8], suffix: &Suffix) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + SUFFIX_LEN);
    out.extend_from_slice(payload);
    out.extend_from_slice(&suffix.bcd_device.to_le_bytes());
    out.extend_from_slice(&suffix.id_product.to_le_bytes());
    out.extend_from_slice(&suffix.id_vendor.to_le_bytes());
    out.extend_from_slice(&suffix.bcd_dfu.to_le_bytes());
    out.extend_from_slice(b"UFD");
    out.push(SUFFIX_LEN as u8);
    let crc = suffix_crc(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Splits a file into payload and a suffix whose signature and CRC are valid.
pub fn check_suffix(file: &[u8]) -> Result<Suffixed<'_>, SuffixError> {
    let len = file.len();
    if len < SUFFIX_LEN {
        return Err(SuffixError::TooShort { len });
    }
    let tail = &file[len - SUFFIX_LEN..];
    // The signature is stored reversed, "UFD", as the suffix is read backwards.
    if &tail[8..11] != b"UFD" {
        return Err(SuffixError::BadSignature {
            offset: len - 8,
            found: [tail[8], tail[9], tail[10]],
        });
    }
    let length = tail[11];
    if (length as usize) < SUFFIX_LEN || length as usize > len {
        return Err(SuffixError::BadLength {
            offset: len - 5,
            value: length,
            max: len.min(255),
        });
    }
    let stored = u32::from_le_bytes([tail[12], tail[13], tail[14], tail[15]]);
    let computed = suffix_crc(&file[..len - 4]);
    if stored != computed {
        return Err(SuffixError::CrcMismatch {
            offset: len - 4,
            stored,
            computed,
        });
    }
    let u16_at = |i: usize| u16::from_le_bytes([tail[i], tail[i + 1]]);
    Ok(Suffixed {
        payload: &file[..len - length as usize],
        suffix: Suffix {
            bcd_device: u16_at(0),
            id_product: u16_at(2),
            id_vendor: u16_at(4),
            bcd_dfu: u16_at(6),
        },
        length,
        crc: stored,
    })
}

/// The payload of a file with a valid suffix (what `dfu-suffix -D` leaves).
pub fn remove_suffix(file: &[u8]) -> Result<&[u8], SuffixError> {
    check_suffix(file).map(|s| s.payload)
}

/// One contiguous piece of a DfuSe target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Load address.
    pub address: u32,
    /// Bytes.
    pub data: Vec<u8>,
}

/// The images for one alt setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Alternate setting (`bAlternateSetting`).
    pub alt: u8,
    /// Target name (at most 255 bytes), if named.
    pub name: Option<String>,
    /// Elements in file order.
    pub elements: Vec<Element>,
}

/// A DfuSe `.dfu` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DfuseFile {
    /// Targets in file order.
    pub targets: Vec<Target>,
    /// Suffix fields; `bcd_dfu` is [`BCD_DFUSE`].
    pub suffix: Suffix,
}

/// Why a `.dfu` file could not be read or written. Offsets are from the
/// start of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The suffix is missing or invalid.
    #[error(transparent)]
    Suffix(#[from] SuffixError),
    /// The suffix says the file is not DfuSe.
    #[error("DFU suffix bcdDFU is {found:#06x}, a DfuSe file has 0x011a")]
    NotDfuse {
        /// bcdDFU found.
        found: u16,
    },
    /// A structure runs past the end of the data.
    #[error("{what} at byte {offset} needs {need} bytes, only {have} left")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left before the suffix.
        have: usize,
    },
    /// A signature (`DfuSe`, `Target`) is wrong.
    #[error("expected signature {expected:?} at byte {offset}")]
    BadSignature {
        /// The expected signature.
        expected: &'static str,
        /// Where.
        offset: usize,
    },
    /// The DfuSe prefix version is not 1.
    #[error("DfuSe prefix version {version} at byte {offset}, expected 1")]
    BadVersion {
        /// Where.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// DFUImageSize disagrees with the file length.
    #[error(
        "DfuSe image size {stored} at byte 6 does not match the file ({actual} bytes with suffix)"
    )]
    ImageSize {
        /// Stored size.
        stored: u32,
        /// File length.
        actual: usize,
    },
    /// dwTargetSize disagrees with the target's elements.
    #[error("target {index} at byte {offset}: dwTargetSize {stored} but its elements take {actual} bytes")]
    TargetSize {
        /// Target index.
        index: usize,
        /// Target prefix offset.
        offset: usize,
        /// Stored size.
        stored: u32,
        /// Size of the elements.
        actual: usize,
    },
    /// Bytes between the last target and the suffix.
    #[error("{count} unexpected bytes at byte {offset} after the last target")]
    Trailing {
        /// Where.
        offset: usize,
        /// How many.
        count: usize,
    },
    /// Something does not fit its field when writing.
    #[error("cannot write: {what}")]
    TooLarge {
        /// What does not fit.
        what: String,
    },
}

const PREFIX_LEN: usize = 11;
const TARGET_PREFIX_LEN: usize = 274;
const NAME_LEN: usize = 255;

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FileError> {
        let have = self.b.len() - self.p;
        if n > have {
            return Err(FileError::Truncated {
                what,
                offset: self.p,
                need: n,
                have,
            });
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FileError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

impl DfuseFile {
    /// Reads a `.dfu` file (suffix required, as dfu-util requires for DfuSe).
    pub fn parse(file: &[u8]) -> Result<Self, FileError> {
        let s = check_suffix(file)?;
        if s.suffix.bcd_dfu != BCD_DFUSE {
            return Err(FileError::NotDfuse {
                found: s.suffix.bcd_dfu,
            });
        }
        let mut r = Reader { b: s.payload, p: 0 };
        let prefix = r.take(PREFIX_LEN, "DfuSe prefix")?;
        if &prefix[..5] != b"DfuSe" {
            return Err(FileError::BadSignature {
                expected: "DfuSe",
                offset: 0,
            });
        }
        if prefix[5] != 1 {
            return Err(FileError::BadVersion {
                offset: 5,
                version: prefix[5],
            });
        }
        let image_size = u32::from_le_bytes([prefix[6], prefix[7], prefix[8], prefix[9]]);
        // dfuse-pack stores the whole file length; accept the length without
        // the suffix too, which other packers write.
        if image_size as usize != file.len() && image_size as usize != s.payload.len() {
            return Err(FileError::ImageSize {
                stored: image_size,
                actual: file.len(),
            });
        }
        let n_targets = prefix[10];
        let mut targets = Vec::with_capacity(n_targets as usize);
        for index in 0..n_targets as usize {
            let offset = r.p;
            let tp = r.take(TARGET_PREFIX_LEN, "target prefix")?;
            if &tp[..6] != b"Target" {
                return Err(FileError::BadSignature {
                    expected: "Target",
                    offset,
                });
            }
            let alt = tp[6];
            let named = u32::from_le_bytes([tp[7], tp[8], tp[9], tp[10]]) != 0;
            let raw_name = &tp[11..11 + NAME_LEN];
            let name_len = raw_name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
            let name = named.then(|| String::from_utf8_lossy(&raw_name[..name_len]).into_owned());
            let at = 11 + NAME_LEN;
            let target_size = u32::from_le_bytes([tp[at], tp[at + 1], tp[at + 2], tp[at + 3]]);
            let n_elements = u32::from_le_bytes([tp[at + 4], tp[at + 5], tp[at + 6], tp[at + 7]]);
            let start = r.p;
            let mut elements = Vec::new();
            for _ in 0..n_elements {
                let address = r.u32("element address")?;
                let size = r.u32("element size")?;
                let data = r.take(size as usize, "element data")?.to_vec();
                elements.push(Element { address, data });
            }
            if r.p - start != target_size as usize {
                return Err(FileError::TargetSize {
                    index,
                    offset,
                    stored: target_size,
                    actual: r.p - start,
                });
            }
            targets.push(Target {
                alt,
                name,
                elements,
            });
        }
        if r.p != s.payload.len() {
            return Err(FileError::Trailing {
                offset: r.p,
                count: s.payload.len() - r.p,
            });
        }
        Ok(DfuseFile {
            targets,
            suffix: s.suffix,
        })
    }

    /// Writes the file, suffix included (bcdDFU forced to 0x011A).
    pub fn to_bytes(&self) -> Result<Vec<u8>, FileError> {
        let too_large = |what: String| FileError::TooLarge { what };
        let n_targets = u8::try_from(self.targets.len())
            .map_err(|_| too_large(format!("{} targets (at most 255)", self.targets.len())))?;
        let mut out = Vec::new();
        out.extend_from_slice(b"DfuSe");
        out.push(1);
        out.extend_from_slice(&[0; 4]); // image size, patched below
        out.push(n_targets);
        for (i, t) in self.targets.iter().enumerate() {
            out.extend_from_slice(b"Target");
            out.push(t.alt);
            out.extend_from_slice(&u32::from(t.name.is_some()).to_le_bytes());
            let mut name = [0u8; NAME_LEN];
            if let Some(n) = &t.name {
                // Keep a NUL terminator, as C readers expect.
                if n.len() >= NAME_LEN {
                    return Err(too_large(format!(
                        "target {i} name is {} bytes (at most 254)",
                        n.len()
                    )));
                }
                name[..n.len()].copy_from_slice(n.as_bytes());
            }
            out.extend_from_slice(&name);
            let mut size: u64 = 0;
            for e in &t.elements {
                size += 8 + e.data.len() as u64;
            }
            let size = u32::try_from(size)
                .map_err(|_| too_large(format!("target {i} is larger than 4 GiB")))?;
            let n = u32::try_from(t.elements.len())
                .map_err(|_| too_large(format!("target {i} has too many elements")))?;
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            for e in &t.elements {
                out.extend_from_slice(&e.address.to_le_bytes());
                out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
                out.extend_from_slice(&e.data);
            }
        }
        let total = u32::try_from(out.len() + SUFFIX_LEN)
            .map_err(|_| too_large("file larger than 4 GiB".into()))?;
        out[6..10].copy_from_slice(&total.to_le_bytes());
        Ok(add_suffix(
            &out,
            &Suffix {
                bcd_dfu: BCD_DFUSE,
                ..self.suffix
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_zlib_without_final_xor() {
        // CRC-32 check value 0xCBF43926 before the final XOR is its complement.
        assert_eq!(suffix_crc(b"123456789"), !0xCBF4_3926u32);
    }

    #[test]
    fn suffix_matches_dfu_suffix_sample() {
        // The reference's example suffix from dfu-suffix 0.11 for
        // 0483:DF11 bcdDevice 0x2200 (CRC bytes depend on the content).
        let s = Suffix {
            bcd_device: 0x2200,
            id_product: 0xDF11,
            id_vendor: 0x0483,
            bcd_dfu: BCD_DFU_1_0,
        };
        let f = add_suffix(b"hello", &s);
        assert_eq!(
            &f[5..17],
            &[0x00, 0x22, 0x11, 0xdf, 0x83, 0x04, 0x00, 0x01, 0x55, 0x46, 0x44, 0x10]
        );
        let c = check_suffix(&f).unwrap();
        assert_eq!(c.payload, b"hello");
        assert_eq!(c.suffix, s);
        assert_eq!(remove_suffix(&f).unwrap(), b"hello");
    }

    #[test]
    fn suffix_errors_point_at_fields() {
        assert_eq!(check_suffix(&[0; 3]), Err(SuffixError::TooShort { len: 3 }));
        let mut f = add_suffix(&[1, 2, 3, 4], &Suffix::default());
        let n = f.len();
        f[n - 1] ^= 1;
        assert!(matches!(
            check_suffix(&f),
            Err(SuffixError::CrcMismatch { offset, .. }) if offset == n - 4
        ));
        f[n - 8] = b'X';
        assert!(matches!(
            check_suffix(&f),
            Err(SuffixError::BadSignature { offset, .. }) if offset == n - 8
        ));
    }

    fn sample() -> DfuseFile {
        DfuseFile {
            targets: vec![
                Target {
                    alt: 0,
                    name: Some("ST...".into()),
                    elements: vec![
                        Element {
                            address: 0x0800_0000,
                            data: (0..=255u8).cycle().take(70000).collect(),
                        },
                        Element {
                            address: 0x0802_0000,
                            data: vec![0xAA; 3],
                        },
                    ],
                },
                Target {
                    alt: 1,
                    name: None,
                    elements: vec![Element {
                        address: 0x1FFF_C000,
                        data: vec![0xEF, 0xAA, 0x10, 0x55],
                    }],
                },
            ],
            suffix: Suffix {
                bcd_device: 0x2200,
                id_product: 0xDF11,
                id_vendor: 0x0483,
                bcd_dfu: BCD_DFUSE,
            },
        }
    }

    #[test]
    fn dfuse_round_trip() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        assert_eq!(&bytes[..5], b"DfuSe");
        let size = u32::from_le_bytes(bytes[6..10].try_into().unwrap());
        assert_eq!(size as usize, bytes.len());
        assert_eq!(DfuseFile::parse(&bytes).unwrap(), f);
    }

    #[test]
    fn dfuse_pack_layout_size() {
        // One 70000-byte element: 11 + 274 + 8 + 70000 + 16 = 70309.
        let f = DfuseFile {
            targets: vec![Target {
                alt: 0,
                name: Some("ST...".into()),
                elements: vec![Element {
                    address: 0x0800_0000,
                    data: vec![0; 70000],
                }],
            }],
            suffix: Suffix::default(),
        };
        assert_eq!(f.to_bytes().unwrap().len(), 70309);
    }

    /// Rewrites the suffix CRC of a file a test has edited, so that only
    /// the edit is wrong.
    fn reseal(file: &mut [u8]) {
        let n = file.len();
        let crc = suffix_crc(&file[..n - 4]);
        file[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn dfuse_errors_say_where() {
        let bytes = sample().to_bytes().unwrap();
        // Corrupt the second target's signature; fix the CRC so the suffix passes.
        let second = 11 + 274 + 8 + 70000 + 8 + 3;
        let mut b = bytes.clone();
        b[second] = b'X';
        reseal(&mut b);
        assert_eq!(
            DfuseFile::parse(&b),
            Err(FileError::BadSignature {
                expected: "Target",
                offset: second
            })
        );
        // A plain DFU file is not DfuSe.
        let plain = add_suffix(b"xyz", &Suffix::default());
        assert_eq!(
            DfuseFile::parse(&plain),
            Err(FileError::NotDfuse { found: 0x0100 })
        );
        // Truncated element.
        let mut t = bytes[..11 + 274 + 8 + 100].to_vec();
        t = add_suffix(
            &t,
            &Suffix {
                bcd_dfu: BCD_DFUSE,
                ..Suffix::default()
            },
        );
        let size = t.len() as u32;
        t[6..10].copy_from_slice(&size.to_le_bytes());
        reseal(&mut t);
        assert_eq!(
            DfuseFile::parse(&t),
            Err(FileError::Truncated {
                what: "element data",
                offset: 11 + 274 + 8,
                need: 70000,
                have: 100
            })
        );
    }
}

/// A vendor prefix that dfu-prefix adds before the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixKind {
    /// TI Stellaris (LM DFU): 8 bytes, `01 00`, flash address / 1024, length.
    Stellaris {
        /// Load address the prefix names.
        address: u32,
    },
    /// NXP LPC, unencrypted image: 16 bytes.
    LpcUnencrypted,
}

impl PrefixKind {
    /// Bytes the prefix takes.
    pub fn len(&self) -> usize {
        match self {
            PrefixKind::Stellaris { .. } => 8,
            PrefixKind::LpcUnencrypted => 16,
        }
    }

    /// Never empty; for symmetry with [`PrefixKind::len`].
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Recognizes a dfu-prefix prefix at the start of `payload` (the file
/// without its suffix), with dfu-util's signatures.
pub fn probe_prefix(payload: &[u8]) -> Option<PrefixKind> {
    let kind = match payload {
        [0x01, 0x00, lo, hi, ..] => PrefixKind::Stellaris {
            address: 1024 * u32::from(u16::from_le_bytes([*lo, *hi])),
        },
        [a, b, ..] if a & 0x3f == 0x1a && b & 0x3f == 0x3f => PrefixKind::LpcUnencrypted,
        _ => return None,
    };
    (payload.len() >= kind.len()).then_some(kind)
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn recognizes_dfu_prefix_signatures() {
        assert_eq!(
            probe_prefix(&[0x1a, 0x3f, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1]),
            Some(PrefixKind::LpcUnencrypted)
        );
        assert_eq!(
            probe_prefix(&[0x01, 0x00, 0x02, 0x00, 0, 0, 0, 0, 9]),
            Some(PrefixKind::Stellaris { address: 2048 })
        );
        assert_eq!(
            probe_prefix(&[0x00, 0x20, 0x00, 0x20]),
            None,
            "a Cortex-M vector table"
        );
        assert_eq!(probe_prefix(&[0x1a, 0x3f]), None, "too short");
    }
}
