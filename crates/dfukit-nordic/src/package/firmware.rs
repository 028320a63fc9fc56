//! nrfutil's rules for turning a firmware file (`.hex`, `.bin`, ELF, read by
//! [`dfukit_firmware`]) into the contiguous binary nrfutil sends.
//!
//! Mirrors nrfutil 6.1.7's `nRFHex` (`nrfhex.py`):
//! - `.bin` files load at address 0 unchanged.
//! - Intel HEX (and, as a dfukit extension, ELF loadable segments by physical address) drop
//!   everything at or above 0x10000000 (UICR) and below 0x1000 (MBR); if a SoftDevice info
//!   struct magic (0x51B1E5DB) is found at 0x4004/0x5004/0x6004/0x7004 (the "s132" layout) the
//!   image starts at 0x3000 at the earliest.
//! - The image spans from the lowest to the highest remaining address, gaps filled with 0xFF,
//!   and its length is rounded up to a multiple of 4 with 0xFF ("Round up to nearest word"),
//!   because the device's flash writes need word-sized lengths.

use dfukit_firmware::{FirmwareError, Image};
use std::path::Path;

/// Start of the UICR region; nrfutil drops hex data at or above it.
pub const UICR_START: u32 = 0x1000_0000;
/// End of the MBR; nrfutil drops hex data below it.
pub const MBR_END: u32 = 0x1000;
/// MBR end for SoftDevices with the "s132" info-struct layout.
pub const S132_MBR_END: u32 = 0x3000;
/// SoftDevice info struct magic number.
pub const SD_INFO_MAGIC: u32 = 0x51B1_E5DB;

/// Loads a firmware file into a contiguous, word-padded image.
pub fn load(path: &Path) -> Result<Image, FirmwareError> {
    load_bytes(path, &dfukit_firmware::read(path)?)
}

/// Loads firmware already read into memory; `path` decides the format and names errors.
pub fn load_bytes(path: &Path, contents: &[u8]) -> Result<Image, FirmwareError> {
    let mut image = match dfukit_firmware::detect_kind(path, contents) {
        dfukit_firmware::FileKind::Bin => dfukit_firmware::load_flat(path, contents)?,
        _ => flatten(path, dfukit_firmware::segments(path, contents)?)?,
    };
    image
        .data
        .resize(image.data.len().next_multiple_of(4), 0xFF);
    Ok(image)
}

/// Applies nrfutil's hex rules (drop UICR and MBR, s132 start) to sorted, checked segments.
fn flatten(path: &Path, chunks: Vec<(u32, Vec<u8>)>) -> Result<Image, FirmwareError> {
    // Clip to [MBR_END, UICR_START).
    let kept: Vec<(u32, &[u8])> = chunks
        .iter()
        .filter_map(|(addr, bytes)| {
            let start = u64::from(*addr).max(u64::from(MBR_END));
            let end = (u64::from(*addr) + bytes.len() as u64).min(u64::from(UICR_START));
            (start < end).then(|| {
                let s = (start - u64::from(*addr)) as usize;
                let e = (end - u64::from(*addr)) as usize;
                (start as u32, &bytes[s..e])
            })
        })
        .collect();
    let read_u32 = |at: u32| -> Option<u32> {
        let mut out = [0u8; 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let a = at + i as u32;
            let (ca, cb) = kept
                .iter()
                .find(|(ca, cb)| a >= *ca && a < ca + cb.len() as u32)?;
            *slot = cb[(a - ca) as usize];
        }
        Some(u32::from_le_bytes(out))
    };
    // nrfutil's get_softdevice_variant: magic at 0x3004 means "s1x0" (MBR ends at 0x1000),
    // magic one to four pages higher means "s132" (MBR region extends to 0x3000).
    let mbr_end = if read_u32(0x3004) == Some(SD_INFO_MAGIC) {
        MBR_END
    } else if (1..=4).any(|i| read_u32(0x3004 + i * 0x1000) == Some(SD_INFO_MAGIC)) {
        S132_MBR_END
    } else {
        MBR_END
    };
    let trimmed: Vec<(u32, &[u8])> = kept
        .iter()
        .filter_map(|(addr, bytes)| {
            let end = addr + bytes.len() as u32;
            let s = (*addr).max(mbr_end);
            (s < end).then(|| (s, &bytes[(s - addr) as usize..]))
        })
        .collect();
    // Empty, or only MBR/UICR data, is refused by flatten; so is a span over 16 MiB.
    dfukit_firmware::flatten(path, &trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(segments: &[(u32, &[u8])]) -> String {
        dfukit_firmware::to_intel_hex(segments)
    }

    #[test]
    fn hex_with_gap_is_filled_and_padded() {
        let text = hex_of(&[(0x27000, &[1, 2, 3]), (0x27008, &[9])]);
        let img = load_bytes(Path::new("app.hex"), text.as_bytes()).unwrap();
        assert_eq!(img.start_address, 0x27000);
        assert_eq!(
            img.data,
            vec![1, 2, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 9, 0xFF, 0xFF, 0xFF]
        );
    }

    #[test]
    fn mbr_and_uicr_are_dropped() {
        let text = hex_of(&[
            (0x0, &[0xAA; 16]),
            (0x1000, &[1, 2, 3, 4]),
            (0x1000_1014, &[0x00, 0xE0, 0x0F, 0x00]),
        ]);
        let img = load_bytes(Path::new("sd.hex"), text.as_bytes()).unwrap();
        assert_eq!(img.start_address, 0x1000);
        assert_eq!(img.data, vec![1, 2, 3, 4]);
    }

    #[test]
    fn s132_layout_starts_at_0x3000() {
        let magic = SD_INFO_MAGIC.to_le_bytes();
        let text = hex_of(&[(0x1000, &[7; 8]), (0x3000, &[5; 4]), (0x5004, &magic)]);
        let img = load_bytes(Path::new("sd.hex"), text.as_bytes()).unwrap();
        assert_eq!(img.start_address, 0x3000);
        assert_eq!(img.data.len(), 0x2008);
    }

    #[test]
    fn bin_loads_at_zero_and_pads() {
        let img = load_bytes(Path::new("x.bin"), &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            img,
            Image {
                start_address: 0,
                data: vec![1, 2, 3, 4, 5, 0xFF, 0xFF, 0xFF]
            }
        );
    }

    #[test]
    fn hex_with_a_gap_up_to_uicr_is_refused_not_flattened() {
        let text = hex_of(&[(0x27000, &[1; 16]), (0x0FFF_FFF0, &[2; 16])]);
        let e = load_bytes(Path::new("gap.hex"), text.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                FirmwareError::Span {
                    low: 0x27000,
                    high: 0x0FFF_FFF0,
                    ..
                }
            ),
            "{e}"
        );
    }
}
