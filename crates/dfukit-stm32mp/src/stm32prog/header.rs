//! The two STM32 image header tests of the boot chain, each by its own
//! firmware's rule (the host's full decoder is [`crate::image`]):
//!
//! * the ROM code's on the FSBL (as TF-A's `stm32mp_check_header`: magic,
//!   a known header version, the payload present and its byte sum equal
//!   to the header's checksum);
//! * U-Boot's (`stm32prog_header_check`), on a received flashlayout and on
//!   the FSBL it copies on NAND: magic, version exactly 0x00010000 or
//!   0x00020000, reserved words and padding zero, and no length check at
//!   all (it reads RAM or flash).

use core::fmt;

/// `'S' 'T' 'M' 0x32` as a little-endian word.
const MAGIC: u32 = 0x324D_5453;
/// Length of a v1 header (`struct stm32_header_v1`).
const V1_LEN: usize = 256;
/// Fixed part of a v2 header, before its extension headers.
const V2_FIXED_LEN: usize = 128;
const OFF_CHECKSUM: usize = 0x44;
const OFF_VERSION: usize = 0x48;
const OFF_LENGTH: usize = 0x4C;
const OFF_ENTRY: usize = 0x50;
const OFF_RESERVED1: usize = 0x54;
const OFF_RESERVED2: usize = 0x5C;
const OFF_V2_EXT_LEN: usize = 0x68;
/// `u8 padding[83]` of the v1 header, before the binary type byte.
const V1_PADDING: core::ops::Range<usize> = 0xAC..0xFF;
/// `u8 padding[16]` of the v2 header, before its extension headers.
const V2_PADDING: core::ops::Range<usize> = 0x70..0x80;

fn le32(b: &[u8], off: usize) -> Option<u32> {
    let w = b.get(off..off + 4)?;
    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// The STM32 image checksum: the wrapping byte sum of the payload.
pub(crate) fn checksum(payload: &[u8]) -> u32 {
    payload
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

/// An image header as U-Boot's `stm32prog_header_check` accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UbootImage {
    /// Header version 1 or 2.
    pub(crate) major: u8,
    /// Header length as U-Boot counts it: 256 for v1, and for v2 the
    /// size of a *v1* header plus the extension headers (U-Boot's sum).
    pub(crate) header_len: u64,
    /// Payload length.
    pub(crate) image_length: u32,
    /// Payload checksum.
    pub(crate) checksum: u32,
}

/// U-Boot's header test (`stm32prog_is_stm32_header_v1`/`_v2`): magic,
/// version exactly 0x00010000 or 0x00020000, reserved words zero, the
/// header's padding zero (83 bytes in v1, 16 in v2). `None` for anything
/// else, including a FIP, which U-Boot tells apart but never unwraps.
pub(crate) fn uboot_image(bytes: &[u8]) -> Option<UbootImage> {
    let word = |off| le32(bytes, off);
    if word(0)? != MAGIC || word(OFF_RESERVED1)? != 0 || word(OFF_RESERVED2)? != 0 {
        return None;
    }
    let (major, padding, header_len) = match word(OFF_VERSION)? {
        0x0001_0000 => (1, V1_PADDING, V1_LEN as u64),
        0x0002_0000 => (
            2,
            V2_PADDING,
            V1_LEN as u64 + u64::from(word(OFF_V2_EXT_LEN)?),
        ),
        _ => return None,
    };
    if !bytes.get(padding)?.iter().all(|&b| b == 0) {
        return None;
    }
    Some(UbootImage {
        major,
        header_len,
        image_length: word(OFF_LENGTH)?,
        checksum: word(OFF_CHECKSUM)?,
    })
}

/// An FSBL the ROM code accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fsbl {
    /// Major header version (1 or 2).
    pub(crate) major: u32,
    /// Entry point.
    pub(crate) entry: u32,
}

/// Why the ROM code refused an FSBL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsblRefusal {
    /// Fewer bytes than the header.
    TooShort(usize),
    /// Not `STM2`.
    BadMagic(u32),
    /// A header version the ROM does not know.
    UnknownVersion(u32),
    /// The payload length goes past the received bytes.
    LengthBeyondImage { length: u32, available: usize },
    /// The byte sum differs from the header's checksum.
    Checksum { expected: u32, computed: u32 },
}

impl fmt::Display for FsblRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FsblRefusal::TooShort(n) => write!(f, "{n} bytes, too short for an STM32 header"),
            FsblRefusal::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            FsblRefusal::UnknownVersion(v) => write!(f, "unknown STM32 header version {v:#010x}"),
            FsblRefusal::LengthBeyondImage { length, available } => write!(
                f,
                "image length {length} goes beyond the {available} payload bytes received"
            ),
            FsblRefusal::Checksum { expected, computed } => write!(
                f,
                "checksum mismatch: header says {expected:#010x}, payload sums to {computed:#010x}"
            ),
        }
    }
}

/// The ROM code's check of the FSBL in SYSRAM: magic, header v1 (256
/// bytes) or v2.0–v2.2 (128 bytes plus its extension headers), the payload
/// present, its checksum right.
pub(crate) fn rom_check(img: &[u8]) -> Result<Fsbl, FsblRefusal> {
    let short = FsblRefusal::TooShort(img.len());
    let magic = le32(img, 0).ok_or(short)?;
    if magic != MAGIC {
        return Err(FsblRefusal::BadMagic(magic));
    }
    let version = le32(img, OFF_VERSION).ok_or(short)?;
    let (major, minor) = ((version >> 16) & 0xFF, (version >> 8) & 0xFF);
    let header_len = match (version >> 24, major, minor) {
        (0, 1, _) => V1_LEN,
        (0, 2, 0..=2) => {
            V2_FIXED_LEN.saturating_add(le32(img, OFF_V2_EXT_LEN).ok_or(short)? as usize)
        }
        _ => return Err(FsblRefusal::UnknownVersion(version)),
    };
    if img.len() < header_len {
        return Err(short);
    }
    let length = le32(img, OFF_LENGTH).ok_or(short)?;
    let available = img.len() - header_len;
    let payload = img
        .get(header_len..header_len.saturating_add(length as usize))
        .ok_or(FsblRefusal::LengthBeyondImage { length, available })?;
    let expected = le32(img, OFF_CHECKSUM).ok_or(short)?;
    let computed = checksum(payload);
    if computed != expected {
        return Err(FsblRefusal::Checksum { expected, computed });
    }
    Ok(Fsbl {
        major,
        entry: le32(img, OFF_ENTRY).ok_or(short)?,
    })
}
