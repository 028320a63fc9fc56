//! Loading firmware images (`.hex`, `.bin`, ELF) into the contiguous binary nrfutil sends.
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

use std::path::{Path, PathBuf};

/// Start of the UICR region; nrfutil drops hex data at or above it.
pub const UICR_START: u32 = 0x1000_0000;
/// End of the MBR; nrfutil drops hex data below it.
pub const MBR_END: u32 = 0x1000;
/// MBR end for SoftDevices with the "s132" info-struct layout.
pub const S132_MBR_END: u32 = 0x3000;
/// SoftDevice info struct magic number.
pub const SD_INFO_MAGIC: u32 = 0x51B1_E5DB;

/// A firmware image flattened to one contiguous, word-padded binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Flash address of `data[0]` (0 for `.bin` input).
    pub start_address: u32,
    /// Image bytes, gaps filled with 0xFF, length a multiple of 4.
    pub data: Vec<u8>,
}

/// Input format of a firmware file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Raw binary (name ends in `.bin`).
    Bin,
    /// Intel HEX.
    Hex,
    /// ELF executable.
    Elf,
}

/// Why a firmware file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The file could not be read.
    #[error("cannot read firmware file {path}: {source}")]
    Io {
        /// The firmware file.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A line of an Intel HEX file is not a valid record.
    #[error("{path}:{line}: invalid Intel HEX record: {source}")]
    HexRecord {
        /// The firmware file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong with the record.
        source: ihex::ReaderError,
    },
    /// The HEX file is not text.
    #[error("{path}: not an Intel HEX text file (invalid UTF-8 at byte {offset})")]
    NotText {
        /// The firmware file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Two records or segments write the same address.
    #[error("{path}: data overlap at address {address:#010x}")]
    Overlap {
        /// The firmware file.
        path: PathBuf,
        /// First address written twice.
        address: u32,
    },
    /// A record or segment extends past the 32-bit address space.
    #[error("{path}: data at {address:#010x} runs past the end of the 32-bit address space")]
    AddressOverflow {
        /// The firmware file.
        path: PathBuf,
        /// Start address of the offending data.
        address: u32,
    },
    /// The ELF file could not be parsed.
    #[error("{path}: invalid ELF file: {reason}")]
    Elf {
        /// The firmware file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// Nothing is left to flash (empty file, or only MBR/UICR data).
    #[error("{path}: no firmware data (empty, or only MBR/UICR contents)")]
    Empty {
        /// The firmware file.
        path: PathBuf,
    },
}

/// Picks the format the way nrfutil does (`.bin` suffix → binary, otherwise HEX), with ELF
/// detected by its magic number first.
pub fn detect_kind(path: &Path, contents: &[u8]) -> FileKind {
    if path.to_string_lossy().ends_with(".bin") {
        FileKind::Bin
    } else if contents.starts_with(b"\x7fELF") {
        FileKind::Elf
    } else {
        FileKind::Hex
    }
}

/// Loads a firmware file into a contiguous image.
pub fn load(path: &Path) -> Result<Image, FirmwareError> {
    let contents = std::fs::read(path).map_err(|source| FirmwareError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_bytes(path, &contents)
}

/// Loads firmware already read into memory; `path` decides the format and names errors.
pub fn load_bytes(path: &Path, contents: &[u8]) -> Result<Image, FirmwareError> {
    match detect_kind(path, contents) {
        FileKind::Bin => {
            if contents.is_empty() {
                return Err(FirmwareError::Empty {
                    path: path.to_owned(),
                });
            }
            let mut data = contents.to_vec();
            pad_to_word(&mut data);
            Ok(Image {
                start_address: 0,
                data,
            })
        }
        FileKind::Hex => {
            let text = std::str::from_utf8(contents).map_err(|e| FirmwareError::NotText {
                path: path.to_owned(),
                offset: e.valid_up_to(),
            })?;
            let chunks = parse_hex(path, text)?;
            flatten(path, chunks)
        }
        FileKind::Elf => flatten(path, parse_elf(path, contents)?),
    }
}

fn pad_to_word(data: &mut Vec<u8>) {
    data.resize(data.len().next_multiple_of(4), 0xFF);
}

/// Parses Intel HEX text into (address, bytes) chunks, honouring extended segment (02) and
/// extended linear (04) address records, stopping at the end-of-file record.
pub fn parse_hex(path: &Path, text: &str) -> Result<Vec<(u32, Vec<u8>)>, FirmwareError> {
    use ihex::Record;
    let mut base: u32 = 0;
    let mut chunks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let record =
            Record::from_record_string(line).map_err(|source| FirmwareError::HexRecord {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?;
        match record {
            Record::Data { offset, value } => {
                let addr = base.wrapping_add(u32::from(offset));
                chunks.push((addr, value));
            }
            Record::EndOfFile => break,
            Record::ExtendedSegmentAddress(seg) => base = u32::from(seg) << 4,
            Record::ExtendedLinearAddress(hi) => base = u32::from(hi) << 16,
            Record::StartSegmentAddress { .. } | Record::StartLinearAddress(_) => {}
        }
    }
    Ok(chunks)
}

fn parse_elf(path: &Path, data: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, FirmwareError> {
    use object::elf::{FileHeader32, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::Endianness;
    let err = |e: object::Error| FirmwareError::Elf {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let header = FileHeader32::<Endianness>::parse(data).map_err(err)?;
    let endian = header.endian().map_err(err)?;
    let mut chunks = Vec::new();
    for ph in header.program_headers(endian, data).map_err(err)? {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let bytes = ph.data(endian, data).map_err(|()| FirmwareError::Elf {
            path: path.to_owned(),
            reason: format!(
                "segment at {:#010x} lies outside the file",
                ph.p_paddr(endian)
            ),
        })?;
        chunks.push((ph.p_paddr(endian), bytes.to_vec()));
    }
    Ok(chunks)
}

/// Applies nrfutil's hex rules (drop UICR and MBR, s132 start, 0xFF gaps, word padding).
fn flatten(path: &Path, mut chunks: Vec<(u32, Vec<u8>)>) -> Result<Image, FirmwareError> {
    chunks.sort_by_key(|c| c.0);
    // Overlap and overflow checks on the raw records, as intelhex refuses overlapping data.
    let mut end_prev: u64 = 0;
    for (addr, bytes) in &chunks {
        let end = u64::from(*addr) + bytes.len() as u64;
        if end > 1 << 32 {
            return Err(FirmwareError::AddressOverflow {
                path: path.to_owned(),
                address: *addr,
            });
        }
        if u64::from(*addr) < end_prev && !bytes.is_empty() {
            return Err(FirmwareError::Overlap {
                path: path.to_owned(),
                address: *addr,
            });
        }
        end_prev = end_prev.max(end);
    }
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
    let (Some(first), Some(last)) = (
        kept.first(),
        kept.iter().map(|(a, b)| a + b.len() as u32).max(),
    ) else {
        return Err(FirmwareError::Empty {
            path: path.to_owned(),
        });
    };
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
    let start = first.0.max(mbr_end);
    if last <= start {
        return Err(FirmwareError::Empty {
            path: path.to_owned(),
        });
    }
    let mut data = vec![0xFF; (last - start) as usize];
    for (addr, bytes) in &kept {
        let s = addr.max(&start);
        let e = addr + bytes.len() as u32;
        if *s >= e {
            continue;
        }
        data[(s - start) as usize..(e - start) as usize]
            .copy_from_slice(&bytes[(s - addr) as usize..]);
    }
    pad_to_word(&mut data);
    Ok(Image {
        start_address: start,
        data,
    })
}

/// Writes `data` at `address` as Intel HEX text the way python `intelhex` formats it:
/// 16-byte data records, an extended linear address record before the first record when the
/// data reaches above 64 KiB and whenever the upper 16 bits change, upper-case hex, LF line
/// ends, `:00000001FF` last.
pub fn to_intel_hex(segments: &[(u32, &[u8])]) -> String {
    use ihex::Record;
    let mut records = Vec::new();
    let mut bytes: Vec<(u32, u8)> = Vec::new();
    for (addr, data) in segments {
        bytes.extend(data.iter().enumerate().map(|(i, b)| (addr + i as u32, *b)));
    }
    bytes.sort_by_key(|b| b.0);
    bytes.dedup_by_key(|b| b.0);
    let need_ela = bytes.last().is_some_and(|b| b.0 > 0xFFFF);
    let mut high: Option<u32> = None;
    let mut i = 0;
    while i < bytes.len() {
        let addr = bytes[i].0;
        if need_ela && high != Some(addr >> 16) {
            high = Some(addr >> 16);
            records.push(Record::ExtendedLinearAddress((addr >> 16) as u16));
        }
        // One record: up to 16 consecutive addresses, not crossing a 64 KiB boundary.
        let mut value = vec![bytes[i].1];
        let mut j = i + 1;
        while j < bytes.len()
            && value.len() < 16
            && bytes[j].0 == addr + value.len() as u32
            && (bytes[j].0 & 0xFFFF) != 0
        {
            value.push(bytes[j].1);
            j += 1;
        }
        records.push(Record::Data {
            offset: (addr & 0xFFFF) as u16,
            value,
        });
        i = j;
    }
    records.push(Record::EndOfFile);
    // Cannot fail: records are at most 16 bytes and end with exactly one EOF record.
    ihex::create_object_file_representation(&records).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(segments: &[(u32, &[u8])]) -> String {
        to_intel_hex(segments)
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
    fn bad_record_names_line() {
        let text = ":020000040002F8\n:10000000ZZ\n";
        match load_bytes(Path::new("bad.hex"), text.as_bytes()) {
            Err(e @ FirmwareError::HexRecord { line: 2, .. }) => {
                assert!(e.to_string().starts_with("bad.hex:2:"))
            }
            other => panic!("{other:?}"),
        }
        let text = ":0400000001020304F2\n:0400020001020304F0\n:00000001FF\n";
        assert!(matches!(
            load_bytes(Path::new("o.hex"), text.as_bytes()),
            Err(FirmwareError::Overlap { address: 2, .. })
        ));
        assert!(matches!(
            load_bytes(Path::new("e.hex"), b":00000001FF\n"),
            Err(FirmwareError::Empty { .. })
        ));
    }

    #[test]
    fn intel_hex_writer_round_trips() {
        let data: Vec<u8> = (0..100u8).collect();
        let text = to_intel_hex(&[(0xFFF0, &data)]);
        assert!(text.starts_with(":020000040000FA\n"));
        assert!(text.ends_with(":00000001FF\n"));
        let chunks = parse_hex(Path::new("t.hex"), &text).unwrap();
        let flat: Vec<u8> = chunks.iter().flat_map(|c| c.1.clone()).collect();
        assert_eq!(flat, data);
        assert_eq!(chunks[1].0, 0x10000);
    }

    #[test]
    fn elf_segments_by_physical_address() {
        // Minimal little-endian ELF32 with one PT_LOAD segment (vaddr 0x20000000, paddr 0x27000).
        let mut elf = vec![0u8; 52 + 32];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 1; // ELFCLASS32
        elf[5] = 1; // little endian
        elf[6] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&40u16.to_le_bytes()); // EM_ARM
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
        elf[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
        elf[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
        elf[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 52;
        elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf[ph + 4..ph + 8].copy_from_slice(&84u32.to_le_bytes()); // p_offset
        elf[ph + 8..ph + 12].copy_from_slice(&0x2000_0000u32.to_le_bytes());
        elf[ph + 12..ph + 16].copy_from_slice(&0x27000u32.to_le_bytes());
        elf[ph + 16..ph + 20].copy_from_slice(&6u32.to_le_bytes());
        elf[ph + 20..ph + 24].copy_from_slice(&6u32.to_le_bytes());
        elf.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let img = load_bytes(Path::new("app.elf"), &elf).unwrap();
        assert_eq!(img.start_address, 0x27000);
        assert_eq!(img.data, vec![1, 2, 3, 4, 5, 6, 0xFF, 0xFF]);
        assert!(matches!(
            load_bytes(Path::new("x.elf"), b"\x7fELFjunk"),
            Err(FirmwareError::Elf { .. })
        ));
    }
}
