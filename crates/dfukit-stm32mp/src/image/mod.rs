//! STM32 image header ("STM32 header for binary files") as checked by the
//! STM32MP ROM code on the FSBL (TF-A BL2) and by TF-A / U-Boot on the images
//! they load.
//!
//! # Layout
//!
//! All multi-byte fields are little-endian. The header version is stored as
//! the bytes `[variant, minor, major, 0]`, i.e. the LE `u32` `0x00010000` for
//! v1.0 and `0x00020000` for v2.0.
//!
//! Common part (v1 and v2):
//!
//! | Offset | Size | Field |
//! |---:|---:|---|
//! | 0x00 | 4 | magic `'S' 'T' 'M' 0x32` (LE `u32` 0x324D5453) |
//! | 0x04 | 64 | ECDSA signature |
//! | 0x44 | 4 | image checksum: `u32` wrapping sum of the payload bytes |
//! | 0x48 | 4 | header version |
//! | 0x4C | 4 | image (payload) length |
//! | 0x50 | 4 | entry point |
//! | 0x54 | 4 | reserved1 (0) |
//! | 0x58 | 4 | load address |
//! | 0x5C | 4 | reserved2 (0) |
//! | 0x60 | 4 | image version (anti-rollback, compared with OTP) |
//!
//! v1 (STM32MP15x), 256 bytes:
//!
//! | Offset | Size | Field |
//! |---:|---:|---|
//! | 0x64 | 4 | option flags (bit 0 = 1: no signature check) |
//! | 0x68 | 4 | ECDSA algorithm (1 = P-256 NIST, 2 = brainpool 256) |
//! | 0x6C | 64 | ECDSA public key |
//! | 0xAC | 83 | padding (0) |
//! | 0xFF | 1 | binary type |
//!
//! v2 (STM32MP13x, STM32MP25x), 128 bytes plus extension headers:
//!
//! | Offset | Size | Field |
//! |---:|---:|---|
//! | 0x64 | 4 | extension flags (bit 0 authentication, bit 1 encryption, bit 31 padding) |
//! | 0x68 | 4 | length of all extension headers |
//! | 0x6C | 4 | binary type |
//! | 0x70 | 16 | padding (0) |
//! | 0x80 | … | extension headers: `{type: u32, length: u32 (incl. these 8 bytes), params}` |
//!
//! The header length of a v2 image is `0x80 + extension_headers_length`; the
//! tools emit one padding extension (type bytes `'S' 'T' 0xFF 0xFF`, length
//! 0x180) so that the header is 512 bytes.
//!
//! # Sources
//!
//! - TF-A `tools/stm32image/stm32image.c` (`struct stm32_header_v1`,
//!   `struct stm32_header_v2`, `PADDING_HEADER_MAGIC`, `PADDING_HEADER_FLAG`,
//!   `PADDING_HEADER_LENGTH` = 0x180, v1 default option flags 1 and ECDSA
//!   algorithm 1) — ARM-software/arm-trusted-firmware.
//! - TF-A `plat/st/stm32mp1/include/boot_api.h` (`boot_api_image_header_t`,
//!   `BOOT_API_IMAGE_HEADER_MAGIC_NB`, `BOOT_API_PADDING_HEADER_MAGIC_NB`
//!   = 0xFFFF5453, extension flag bits) and `stm32mp_check_header()` declared
//!   in `plat/st/common/include/stm32mp_common.h` (magic, major version,
//!   byte-sum checksum over `image_length` payload bytes).
//! - U-Boot `tools/stm32image.c` (`mkimage -T stm32image`: v1 only, verifies
//!   magic, major version 1, reserved fields and padding zero).
//! - ST's `stm32wrapper4dbg` `stm32image_header_length()`: v2 header length is
//!   `offsetof(v2.extension) + extension_headers_length`.
//! - ST wiki "STM32 header for binary files"; dfukit reference
//!   `usb-dfu-and-stm32mp.md` §4.1 and §5.
//!
//! Header v2.3 (STM32MP21x, 96-byte signature) has a different layout and is
//! reported as [`ImageError::UnknownVersion`].

use std::fmt;

use thiserror::Error;

mod info;
mod write;

pub use info::{inspect, ImageInfo, JsonValue};
pub use write::{write, WriteParams, WriteVersion};

/// Magic number, `'S' 'T' 'M' 0x32` read as a little-endian `u32`.
pub const MAGIC: u32 = 0x324D_5453;
/// Header version 1.0 (STM32MP15x).
pub const HEADER_VERSION_V1: u32 = 0x0001_0000;
/// Header version 2.0 (STM32MP13x, STM32MP25x rev A).
pub const HEADER_VERSION_V2: u32 = 0x0002_0000;
/// Length of a v1 header.
pub const V1_HEADER_LEN: usize = 256;
/// Length of the fixed part of a v2 header (the extension headers follow).
pub const V2_FIXED_LEN: usize = 128;
/// Length of a v2 header as written by TF-A's `stm32image` tool and by
/// [`write()`]: the fixed part plus one padding extension header.
pub const V2_HEADER_LEN: usize = V2_FIXED_LEN + PADDING_EXTENSION_LEN as usize;
/// Extension-header type of the padding extension (`'S' 'T' 0xFF 0xFF`).
pub const PADDING_EXTENSION_MAGIC: u32 = 0xFFFF_5453;
/// Length of the padding extension written by the tools (0x180).
pub const PADDING_EXTENSION_LEN: u32 = 0x180;
/// v2 extension flag announcing a padding extension header.
pub const EXT_FLAG_PADDING: u32 = 1 << 31;
/// v2 extension flag announcing an authentication extension header.
pub const EXT_FLAG_AUTHENTICATION: u32 = 1 << 0;
/// v2 extension flag announcing an encryption extension header.
pub const EXT_FLAG_ENCRYPTION: u32 = 1 << 1;
/// v1 option flag: no signature check requested.
pub const OPT_FLAG_NO_SIGNATURE: u32 = 1 << 0;

/// Byte offsets of the header fields (common part and per version).
pub mod offsets {
    /// Magic number.
    pub const MAGIC: usize = 0x00;
    /// ECDSA signature (64 bytes).
    pub const SIGNATURE: usize = 0x04;
    /// Payload checksum.
    pub const CHECKSUM: usize = 0x44;
    /// Header version.
    pub const HEADER_VERSION: usize = 0x48;
    /// Image (payload) length.
    pub const IMAGE_LENGTH: usize = 0x4C;
    /// Entry point.
    pub const ENTRY_POINT: usize = 0x50;
    /// Reserved word 1.
    pub const RESERVED1: usize = 0x54;
    /// Load address.
    pub const LOAD_ADDRESS: usize = 0x58;
    /// Reserved word 2.
    pub const RESERVED2: usize = 0x5C;
    /// Image version (anti-rollback counter).
    pub const IMAGE_VERSION: usize = 0x60;
    /// v1 option flags / v2 extension flags.
    pub const FLAGS: usize = 0x64;
    /// v1: ECDSA algorithm.
    pub const V1_ECDSA_ALGORITHM: usize = 0x68;
    /// v1: ECDSA public key (64 bytes).
    pub const V1_PUBLIC_KEY: usize = 0x6C;
    /// v1: zero padding (83 bytes).
    pub const V1_PADDING: usize = 0xAC;
    /// v1: binary type (1 byte).
    pub const V1_BINARY_TYPE: usize = 0xFF;
    /// v2: length of all extension headers.
    pub const V2_EXTENSION_HEADERS_LENGTH: usize = 0x68;
    /// v2: binary type (`u32`).
    pub const V2_BINARY_TYPE: usize = 0x6C;
    /// v2: zero padding (16 bytes).
    pub const V2_PADDING: usize = 0x70;
    /// v2: first extension header.
    pub const V2_EXTENSIONS: usize = 0x80;
}

/// Errors from decoding or verifying an STM32 image.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    /// The file ends before the header does.
    #[error("file too short for STM32 header: need {needed} bytes, have {actual} (data ends at offset {offset:#x})")]
    TooShort {
        /// Bytes needed for the header.
        needed: usize,
        /// Bytes available.
        actual: usize,
        /// Offset at which the data ends (equal to `actual`).
        offset: usize,
    },
    /// The magic number is not `'S' 'T' 'M' 0x32`.
    #[error("bad magic at offset {offset:#x}: found {found:#010x}, expected {MAGIC:#010x} (\"STM\\x32\")")]
    BadMagic {
        /// Offset of the magic field (0).
        offset: usize,
        /// The value found, read as a little-endian `u32`.
        found: u32,
    },
    /// The header version is not one this decoder understands.
    #[error("unknown STM32 header version {found:#010x} at offset {offset:#x} (supported: 0x00010000, 0x0002xx00 with x < 3)")]
    UnknownVersion {
        /// Offset of the version field (0x48).
        offset: usize,
        /// The value found.
        found: u32,
    },
    /// A v2 extension header is malformed.
    #[error("bad v2 extension header at offset {offset:#x}: type {kind:#010x}, length {length} (extension area ends at {area_end:#x})")]
    BadExtension {
        /// Offset of the extension header.
        offset: usize,
        /// Its type field.
        kind: u32,
        /// Its length field.
        length: u32,
        /// End offset of the extension area declared by the header.
        area_end: usize,
    },
    /// The image length field points past the end of the file.
    #[error("image length {image_length} (field at offset {offset:#x}) goes beyond the file: header is {header_len} bytes, only {available} payload bytes present")]
    LengthBeyondFile {
        /// Offset of the image-length field (0x4C).
        offset: usize,
        /// The declared payload length.
        image_length: u32,
        /// Header length.
        header_len: usize,
        /// Payload bytes actually present after the header.
        available: usize,
    },
    /// The payload checksum does not match the header.
    #[error("checksum mismatch (field at offset {offset:#x}): header says {expected:#010x}, payload sums to {computed:#010x}")]
    ChecksumMismatch {
        /// Offset of the checksum field (0x44).
        offset: usize,
        /// Checksum stored in the header.
        expected: u32,
        /// Checksum computed over the payload.
        computed: u32,
    },
}

/// One v2 extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionHeader {
    /// Offset of the extension header in the file.
    pub offset: usize,
    /// Type (magic) field, e.g. [`PADDING_EXTENSION_MAGIC`].
    pub kind: u32,
    /// Length in bytes including the 8-byte type/length prefix.
    pub length: u32,
}

impl ExtensionHeader {
    /// Human-readable name of the extension type.
    pub fn kind_name(&self) -> &'static str {
        if self.kind == PADDING_EXTENSION_MAGIC {
            "padding"
        } else {
            "unknown"
        }
    }
}

/// A decoded STM32 image header (v1 or v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHeader {
    /// Header version (`0x00010000` or `0x0002xx00`).
    pub version: u32,
    /// ECDSA signature (all zero when unsigned).
    pub signature: [u8; 64],
    /// Payload checksum stored in the header.
    pub payload_checksum: u32,
    /// Payload length in bytes.
    pub image_length: u32,
    /// Entry point address.
    pub entry_point: u32,
    /// Reserved word at 0x54 (should be 0).
    pub reserved1: u32,
    /// Load address.
    pub load_address: u32,
    /// Reserved word at 0x5C (should be 0).
    pub reserved2: u32,
    /// Image version (anti-rollback counter compared with OTP).
    pub image_version: u32,
    /// v1 option flags, or v2 extension flags.
    pub option_flags: u32,
    /// v1 ECDSA algorithm (1 = P-256 NIST, 2 = brainpool 256); 0 for v2.
    pub ecdsa_algorithm: u32,
    /// v1 ECDSA public key; all zero for v2.
    pub public_key: [u8; 64],
    /// Binary type (v1: byte at 0xFF; v2: `u32` at 0x6C). 0x00 U-Boot,
    /// 0x10–0x1F TF-A, 0x20–0x2F OP-TEE, 0x30 Cortex-M33 image.
    pub binary_type: u32,
    /// v2 length of all extension headers; 0 for v1.
    pub extension_headers_length: u32,
    /// v2 extension headers; empty for v1.
    pub extensions: Vec<ExtensionHeader>,
    /// Header length: the payload starts at this offset.
    pub header_len: usize,
}

fn le32(bytes: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[off..off + 4]);
    u32::from_le_bytes(w)
}

fn arr64(bytes: &[u8], off: usize) -> [u8; 64] {
    let mut a = [0u8; 64];
    a.copy_from_slice(&bytes[off..off + 64]);
    a
}

/// `u32` wrapping sum of all bytes, the STM32 image checksum.
pub fn checksum(payload: &[u8]) -> u32 {
    payload
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

fn too_short(needed: usize, actual: usize) -> ImageError {
    ImageError::TooShort {
        needed,
        actual,
        offset: actual,
    }
}

impl ImageHeader {
    /// Decode the header at the start of `bytes` and check that the
    /// declared payload fits in the file. Does not check the checksum (see
    /// [`ImageHeader::checksum_ok`] and [`verify`]).
    pub fn parse(bytes: &[u8]) -> Result<ImageHeader, ImageError> {
        if bytes.len() < 4 {
            return Err(too_short(V1_HEADER_LEN, bytes.len()));
        }
        let magic = le32(bytes, offsets::MAGIC);
        if magic != MAGIC {
            return Err(ImageError::BadMagic {
                offset: offsets::MAGIC,
                found: magic,
            });
        }
        if bytes.len() < offsets::HEADER_VERSION + 4 {
            return Err(too_short(V1_HEADER_LEN, bytes.len()));
        }
        let version = le32(bytes, offsets::HEADER_VERSION);
        let unknown = ImageError::UnknownVersion {
            offset: offsets::HEADER_VERSION,
            found: version,
        };
        let major = (version >> 16) & 0xFF;
        let minor = (version >> 8) & 0xFF;
        if version & 0xFF00_0000 != 0 {
            return Err(unknown);
        }
        let fixed_len = match (major, minor) {
            (1, _) => V1_HEADER_LEN,
            (2, 0..=2) => V2_FIXED_LEN,
            _ => return Err(unknown),
        };
        if bytes.len() < fixed_len {
            return Err(too_short(fixed_len, bytes.len()));
        }
        let mut h = ImageHeader {
            version,
            signature: arr64(bytes, offsets::SIGNATURE),
            payload_checksum: le32(bytes, offsets::CHECKSUM),
            image_length: le32(bytes, offsets::IMAGE_LENGTH),
            entry_point: le32(bytes, offsets::ENTRY_POINT),
            reserved1: le32(bytes, offsets::RESERVED1),
            load_address: le32(bytes, offsets::LOAD_ADDRESS),
            reserved2: le32(bytes, offsets::RESERVED2),
            image_version: le32(bytes, offsets::IMAGE_VERSION),
            option_flags: le32(bytes, offsets::FLAGS),
            ecdsa_algorithm: 0,
            public_key: [0; 64],
            binary_type: 0,
            extension_headers_length: 0,
            extensions: Vec::new(),
            header_len: fixed_len,
        };
        if major == 1 {
            h.ecdsa_algorithm = le32(bytes, offsets::V1_ECDSA_ALGORITHM);
            h.public_key = arr64(bytes, offsets::V1_PUBLIC_KEY);
            h.binary_type = u32::from(bytes[offsets::V1_BINARY_TYPE]);
        } else {
            h.extension_headers_length = le32(bytes, offsets::V2_EXTENSION_HEADERS_LENGTH);
            h.binary_type = le32(bytes, offsets::V2_BINARY_TYPE);
            let area_end = V2_FIXED_LEN.saturating_add(h.extension_headers_length as usize);
            if bytes.len() < area_end {
                return Err(too_short(area_end, bytes.len()));
            }
            let mut off = V2_FIXED_LEN;
            while off < area_end {
                let bad = |kind, length| ImageError::BadExtension {
                    offset: off,
                    kind,
                    length,
                    area_end,
                };
                if area_end - off < 8 {
                    return Err(bad(0, 0));
                }
                let kind = le32(bytes, off);
                let length = le32(bytes, off + 4);
                if (length as usize) < 8 || length as usize > area_end - off {
                    return Err(bad(kind, length));
                }
                h.extensions.push(ExtensionHeader {
                    offset: off,
                    kind,
                    length,
                });
                off += length as usize;
            }
            h.header_len = area_end;
        }
        let available = bytes.len() - h.header_len;
        if h.image_length as usize > available {
            return Err(ImageError::LengthBeyondFile {
                offset: offsets::IMAGE_LENGTH,
                image_length: h.image_length,
                header_len: h.header_len,
                available,
            });
        }
        Ok(h)
    }

    /// Major header version (1 or 2).
    pub fn major(&self) -> u8 {
        ((self.version >> 16) & 0xFF) as u8
    }

    /// Minor header version.
    pub fn minor(&self) -> u8 {
        ((self.version >> 8) & 0xFF) as u8
    }

    /// Whether the header carries a signature: v1 option flag bit 0 clear,
    /// or v2 authentication extension flag set.
    pub fn is_signed(&self) -> bool {
        if self.major() == 1 {
            self.option_flags & OPT_FLAG_NO_SIGNATURE == 0
        } else {
            self.option_flags & EXT_FLAG_AUTHENTICATION != 0
        }
    }

    /// Whether the signature field holds any non-zero byte.
    pub fn has_signature_bytes(&self) -> bool {
        self.signature.iter().any(|&b| b != 0)
    }

    /// Whether the first [`image_length`](Self::image_length) bytes of
    /// `payload` (the bytes after the header) sum to the stored checksum.
    /// False if `payload` is shorter than `image_length`.
    pub fn checksum_ok(&self, payload: &[u8]) -> bool {
        payload
            .get(..self.image_length as usize)
            .is_some_and(|p| checksum(p) == self.payload_checksum)
    }

    /// The payload bytes of `bytes` (the whole file) described by this
    /// header, or `None` if the file is too short.
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        bytes.get(self.header_len..self.header_len.checked_add(self.image_length as usize)?)
    }

    /// Name of the binary type, as far as the public sources define it.
    pub fn binary_type_name(&self) -> &'static str {
        match self.binary_type {
            0x00 => "U-Boot",
            0x10..=0x1F => "TF-A",
            0x20..=0x2F => "OP-TEE",
            0x30 => "Cortex-M33",
            _ => "unknown",
        }
    }

    fn write_fields(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "magic:            STM\\x32 ({MAGIC:#010x})")?;
        writeln!(
            f,
            "header version:   v{}.{} ({:#010x}), {} bytes",
            self.major(),
            self.minor(),
            self.version,
            self.header_len
        )?;
        writeln!(f, "image length:     {} bytes", self.image_length)?;
        writeln!(f, "entry point:      {:#010x}", self.entry_point)?;
        writeln!(f, "load address:     {:#010x}", self.load_address)?;
        writeln!(f, "image version:    {}", self.image_version)?;
        let flags_name = if self.major() == 1 {
            "options:         "
        } else {
            "extension flags: "
        };
        writeln!(f, "{flags_name} {:#010x}", self.option_flags)?;
        writeln!(
            f,
            "binary type:      {:#04x} ({})",
            self.binary_type,
            self.binary_type_name()
        )?;
        if self.major() == 1 {
            writeln!(f, "ECDSA algorithm:  {}", self.ecdsa_algorithm)?;
        }
        for e in &self.extensions {
            writeln!(
                f,
                "extension:        {} ({:#010x}) at {:#x}, {} bytes",
                e.kind_name(),
                e.kind,
                e.offset,
                e.length
            )?;
        }
        write!(
            f,
            "signature:        {}",
            match (self.is_signed(), self.has_signature_bytes()) {
                (true, true) => "present",
                (true, false) => "requested but empty",
                (false, true) => "bytes present, check not requested",
                (false, false) => "none",
            }
        )
    }
}

impl fmt::Display for ImageHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_fields(f)?;
        write!(
            f,
            "\nchecksum:         {:#010x} (not verified)",
            self.payload_checksum
        )
    }
}

/// Decode the header at the start of `bytes`; same as [`ImageHeader::parse`].
pub fn parse(bytes: &[u8]) -> Result<ImageHeader, ImageError> {
    ImageHeader::parse(bytes)
}

/// A header whose payload checksum matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The decoded header.
    pub header: ImageHeader,
    /// Bytes after the end of the payload (padding some tools leave).
    pub trailing_bytes: usize,
}

impl Verified {
    /// The payload bytes within `bytes` (the same file that was verified).
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        self.header.payload(bytes)
    }
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.header.write_fields(f)?;
        write!(
            f,
            "\nchecksum:         {:#010x} (ok)",
            self.header.payload_checksum
        )
    }
}

/// Decode the header and check the payload checksum, as the ROM and TF-A's
/// `stm32mp_check_header()` do.
pub fn verify(bytes: &[u8]) -> Result<Verified, ImageError> {
    let info = inspect(bytes)?;
    if !info.checksum_ok() {
        return Err(ImageError::ChecksumMismatch {
            offset: offsets::CHECKSUM,
            expected: info.header.payload_checksum,
            computed: info.computed_checksum,
        });
    }
    Ok(Verified {
        trailing_bytes: info.trailing_bytes,
        header: info.header,
    })
}

impl ImageHeader {
    /// Same as [`verify`].
    pub fn verify(bytes: &[u8]) -> Result<Verified, ImageError> {
        verify(bytes)
    }
}
