//! Firmware files as vendors ship them — raw binary, Intel HEX, ELF — read into
//! address-tagged segments, or into one flat image for a caller that sends a single blob.
//!
//! Every family uses this one loader: the Nordic packager applies nrfutil's rules (MBR and
//! UICR dropped) on top of [`segments`], and `dfukit usb pack` writes each segment as its own
//! DfuSe element. What a file cannot mean is refused here, naming the file and the line,
//! address or machine: a truncated HEX (no end-of-file record), records after the end of
//! file, an ELF built for another CPU, and a flat image whose data spans more than
//! [`MAX_FLAT_SPAN`].

mod elf;
mod hex;

pub use elf::parse_elf;
pub use hex::{parse_hex, to_intel_hex};

use std::path::{Path, PathBuf};

/// The largest distance from the lowest to the highest byte a flat image may span: 16 MiB.
///
/// The largest internal flash of any device dfukit programs is 2 MiB (STM32F4/H7 parts;
/// nRF52840 has 1 MiB). 16 MiB leaves room for memory-mapped external NOR behind it, while a
/// HEX whose records are further apart than that is two regions (flash plus option bytes,
/// UICR or a stray record) that no single write can cover: flattening one would allocate and
/// send hundreds of MiB of 0xFF. Callers that can write several regions take [`segments`].
pub const MAX_FLAT_SPAN: u32 = 16 << 20;

/// A firmware image flattened to one contiguous binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Flash address of `data[0]` (0 for `.bin` input).
    pub start_address: u32,
    /// Image bytes, gaps filled with 0xFF.
    pub data: Vec<u8>,
}

/// Input format of a firmware file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Raw binary (name ends in `.bin`): it carries no address.
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
    /// The HEX file ends without its end-of-file record: it was cut short.
    #[error("{path}:{line}: Intel HEX file ends without an end-of-file record (:00000001FF); it is truncated")]
    HexTruncated {
        /// The firmware file.
        path: PathBuf,
        /// 1-based number of the last line read.
        line: usize,
    },
    /// A record follows the end-of-file record.
    #[error("{path}:{line}: record after the end-of-file record on line {eof_line}")]
    HexAfterEof {
        /// The firmware file.
        path: PathBuf,
        /// 1-based line of the record after the end.
        line: usize,
        /// 1-based line of the end-of-file record.
        eof_line: usize,
    },
    /// The data is spread over more than [`MAX_FLAT_SPAN`], too far apart for one image.
    #[error("{path}: data at {low:#010x} and at {high:#010x} are {span} bytes apart, more than the 16 MiB a single flat image may span")]
    Span {
        /// The firmware file.
        path: PathBuf,
        /// Lowest address with data.
        low: u32,
        /// Start of the highest segment.
        high: u32,
        /// Bytes from `low` to the end of the data.
        span: u64,
    },
    /// The ELF file is for another CPU, word size or byte order.
    #[error("{path}: ELF file for {found}; expected EM_ARM (40), 32-bit little-endian")]
    ElfMachine {
        /// The firmware file.
        path: PathBuf,
        /// The machine, class and byte order the header names.
        found: String,
    },
    /// Nothing is left to flash (empty file, or only data the caller drops).
    #[error("{path}: no firmware data (empty, or only MBR/UICR contents)")]
    Empty {
        /// The firmware file.
        path: PathBuf,
    },
}

impl FirmwareError {
    /// A stable code for the CLI's diagnostics.
    pub fn code(&self) -> &'static str {
        match self {
            FirmwareError::Io { .. } => "dfukit::firmware::io",
            FirmwareError::HexRecord { .. } | FirmwareError::NotText { .. } => {
                "dfukit::firmware::hex_record"
            }
            FirmwareError::Overlap { .. } => "dfukit::firmware::overlap",
            FirmwareError::AddressOverflow { .. } => "dfukit::firmware::address_overflow",
            FirmwareError::Elf { .. } => "dfukit::firmware::elf",
            FirmwareError::Empty { .. } => "dfukit::firmware::empty",
            FirmwareError::HexTruncated { .. } => "dfukit::firmware::hex_truncated",
            FirmwareError::HexAfterEof { .. } => "dfukit::firmware::hex_after_eof",
            FirmwareError::Span { .. } => "dfukit::firmware::span",
            FirmwareError::ElfMachine { .. } => "dfukit::firmware::elf_machine",
        }
    }

    /// What the user can do about it.
    pub fn help(&self) -> &'static str {
        match self {
            FirmwareError::Io { .. } => "check the path and that the file is readable",
            FirmwareError::HexRecord { .. } | FirmwareError::NotText { .. } => {
                "the file is damaged or is not Intel HEX; rebuild it or export it again"
            }
            FirmwareError::Overlap { .. } => {
                "two records write the same address; the file was merged wrongly, rebuild it"
            }
            FirmwareError::AddressOverflow { .. } => "the file is damaged; rebuild it",
            FirmwareError::Elf { .. } => "the file is not a valid ELF executable; rebuild it",
            FirmwareError::Empty { .. } => "pass the file that holds the firmware itself",
            FirmwareError::HexTruncated { .. } => {
                "the copy or download was cut short; fetch or rebuild the file"
            }
            FirmwareError::HexAfterEof { .. } => {
                "two HEX files were concatenated; merge them with a HEX tool (e.g. mergehex) instead"
            }
            FirmwareError::Span { .. } => {
                "the file holds separate regions (e.g. flash plus option bytes or UICR); split it, \
                 or use a command that writes several regions (`dfukit usb pack`)"
            }
            FirmwareError::ElfMachine { .. } => {
                "pass the ELF built for the target (arm-none-eabi), not a host or other-core build"
            }
        }
    }
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

/// Reads a firmware file, naming it if that fails.
pub fn read(path: &Path) -> Result<Vec<u8>, FirmwareError> {
    std::fs::read(path).map_err(|source| FirmwareError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The file's data as sorted, non-overlapping segments, contiguous records merged into one
/// segment (as python `intelhex`'s `segments()` does). A `.bin` carries no address: it is one
/// segment at 0, which the caller relocates.
pub fn segments(path: &Path, contents: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, FirmwareError> {
    let chunks = match detect_kind(path, contents) {
        FileKind::Bin => vec![(0, contents.to_vec())],
        FileKind::Hex => {
            let text = std::str::from_utf8(contents).map_err(|e| FirmwareError::NotText {
                path: path.to_owned(),
                offset: e.valid_up_to(),
            })?;
            parse_hex(path, text)?
        }
        FileKind::Elf => parse_elf(path, contents)?,
    };
    let merged = check_and_merge(path, chunks)?;
    if merged.is_empty() {
        return Err(FirmwareError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(merged)
}

/// Sorts the chunks, refuses overlaps and data past 4 GiB (as `intelhex` refuses overlapping
/// data), and merges chunks that touch.
pub fn check_and_merge(
    path: &Path,
    mut chunks: Vec<(u32, Vec<u8>)>,
) -> Result<Vec<(u32, Vec<u8>)>, FirmwareError> {
    chunks.retain(|c| !c.1.is_empty());
    chunks.sort_by_key(|c| c.0);
    let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
    for (addr, bytes) in chunks {
        if u64::from(addr) + bytes.len() as u64 > 1 << 32 {
            return Err(FirmwareError::AddressOverflow {
                path: path.to_owned(),
                address: addr,
            });
        }
        match out.last_mut() {
            Some((prev, data)) if u64::from(addr) < u64::from(*prev) + data.len() as u64 => {
                return Err(FirmwareError::Overlap {
                    path: path.to_owned(),
                    address: addr,
                });
            }
            Some((prev, data)) if u64::from(addr) == u64::from(*prev) + data.len() as u64 => {
                data.extend_from_slice(&bytes)
            }
            _ => out.push((addr, bytes)),
        }
    }
    Ok(out)
}

/// One contiguous image from sorted, non-overlapping segments, gaps filled with 0xFF.
pub fn flatten(path: &Path, segments: &[(u32, &[u8])]) -> Result<Image, FirmwareError> {
    let (Some(first), Some(last)) = (
        segments.first(),
        segments
            .iter()
            .map(|(a, b)| u64::from(*a) + b.len() as u64)
            .max(),
    ) else {
        return Err(FirmwareError::Empty {
            path: path.to_owned(),
        });
    };
    let start = first.0;
    if last - u64::from(start) > u64::from(MAX_FLAT_SPAN) {
        return Err(FirmwareError::Span {
            path: path.to_owned(),
            low: start,
            high: segments.iter().map(|s| s.0).max().unwrap_or(start),
            span: last - u64::from(start),
        });
    }
    let mut data = vec![0xFF; (last - u64::from(start)) as usize];
    for (addr, bytes) in segments {
        let at = (addr - start) as usize;
        data[at..at + bytes.len()].copy_from_slice(bytes);
    }
    Ok(Image {
        start_address: start,
        data,
    })
}

/// Loads a file into one flat image: a `.bin` at 0, HEX and ELF from their lowest address.
pub fn load_flat(path: &Path, contents: &[u8]) -> Result<Image, FirmwareError> {
    let segs = segments(path, contents)?;
    let refs: Vec<(u32, &[u8])> = segs.iter().map(|(a, d)| (*a, d.as_slice())).collect();
    flatten(path, &refs)
}

#[cfg(test)]
mod tests;
