//! Intel HEX: reading records into address-tagged chunks, and writing them as python
//! `intelhex` does.

use crate::FirmwareError;
use std::path::Path;

/// Parses Intel HEX text into (address, bytes) chunks, honouring extended segment (02) and
/// extended linear (04) address records. The end-of-file record must be there (a file
/// without it was cut short) and only blank lines, or the DOS end-of-file byte 0x1A some
/// Windows tools append, may follow it (a record after it is a second file pasted on).
pub fn parse_hex(path: &Path, text: &str) -> Result<Vec<(u32, Vec<u8>)>, FirmwareError> {
    use ihex::Record;
    let mut base: u32 = 0;
    let mut chunks = Vec::new();
    let mut eof_line = None;
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_matches('\u{1a}');
        if line.is_empty() {
            continue;
        }
        last_line = i + 1;
        if let Some(eof_line) = eof_line {
            return Err(FirmwareError::HexAfterEof {
                path: path.to_owned(),
                line: i + 1,
                eof_line,
            });
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
            Record::EndOfFile => eof_line = Some(i + 1),
            Record::ExtendedSegmentAddress(seg) => base = u32::from(seg) << 4,
            Record::ExtendedLinearAddress(hi) => base = u32::from(hi) << 16,
            Record::StartSegmentAddress { .. } | Record::StartLinearAddress(_) => {}
        }
    }
    if eof_line.is_none() {
        return Err(FirmwareError::HexTruncated {
            path: path.to_owned(),
            line: last_line,
        });
    }
    Ok(chunks)
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
