//! The text stage: decoding the file (plain or wrapped in an STM32 image
//! header), the per-column syntax and the cross-row rules U-Boot applies
//! before it looks at a device.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;

use super::error::{finish, LayoutError, LayoutErrorKind, LayoutErrors, Sink};
use super::types::*;
use crate::image::{self, ImageError};

/// Parses `text` (the content of `path`) and applies the rules that need
/// no device or file (see the module documentation). Binaries are resolved
/// against `path`'s directory but not opened.
pub fn parse(text: &str, path: &Path) -> Result<Layout, LayoutErrors> {
    let (layout, errors) = parse_partial(text, path);
    finish(layout, errors)
}

/// Parses the content of a layout file (`bytes`, read from `path`) the
/// way U-Boot's `parse_flash_layout` takes it, then as [`parse`].
///
/// Bytes starting with the STM32 image magic are an STM32 image: the
/// header (v1, the one U-Boot documents for layouts; a v2 header that
/// [`image::parse`] reads is taken too) must be complete and its checksum
/// must match the payload, which is the layout text; bytes after the
/// payload are ignored. Anything else is the text
/// itself. The text must be UTF-8; a byte-order mark at its start is
/// dropped. A bad header, checksum or encoding is a
/// single error located at line 1, column 1 (or, for bad UTF-8, where the
/// invalid byte is); line and column of the other errors count in the text.
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Layout, LayoutErrors> {
    let text = decode(bytes, path)?;
    parse(text, path)
}

/// The layout text inside `bytes` (see [`parse_bytes`]); the error is
/// always a single one.
pub(super) fn decode<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, LayoutErrors> {
    let error = |line, column, kind| LayoutErrors::single(path, line, column, kind);
    // A valid layout's text never starts with "STM2" (that would be its
    // Opt column), so the magic alone decides whether a header is there.
    let (text, text_start) = if bytes.starts_with(&image::MAGIC.to_le_bytes()) {
        match image::verify(bytes) {
            Ok(v) => (v.payload(bytes).unwrap_or_default(), v.header.header_len),
            Err(ImageError::ChecksumMismatch {
                expected, computed, ..
            }) => {
                return Err(error(
                    1,
                    1,
                    LayoutErrorKind::InvalidChecksum { computed, expected },
                ))
            }
            Err(e) => {
                return Err(error(
                    1,
                    1,
                    LayoutErrorKind::InvalidHeader {
                        message: e.to_string(),
                    },
                ))
            }
        }
    } else {
        (bytes, 0)
    };
    let text = std::str::from_utf8(text).map_err(|e| {
        let good = e.valid_up_to();
        // The prefix before the first bad byte is valid UTF-8 by definition.
        let prefix = std::str::from_utf8(&text[..good]).unwrap_or_default();
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        error(
            line,
            column,
            LayoutErrorKind::NotUtf8 {
                offset: text_start + good,
            },
        )
    })?;
    // Editors on Windows save UTF-8 with a byte-order mark; it is not part
    // of the first column. (U-Boot would read it as one: `flash` sends the
    // board the text without it.)
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(text))
}

/// Splits a line into its non-empty tab-separated fields with their
/// 1-based columns. CRs are dropped anywhere (U-Boot replaces them by NUL)
/// and empty fields skipped (U-Boot skips repeated tabs), so an empty field
/// shifts the following ones left, exactly as on the board.
fn fields(line: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, ch) in line.chars().enumerate() {
        match ch {
            '\t' => {
                if !cur.is_empty() {
                    out.push((start, std::mem::take(&mut cur)));
                }
            }
            '\r' => {}
            c => {
                if cur.is_empty() {
                    start = i + 1;
                }
                cur.push(c);
            }
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

/// `strtoul(.., 0)` as U-Boot's `strict_strtoul` does it: `0x` hex, a
/// leading `0` octal, else decimal; the whole string must be consumed.
/// Unlike U-Boot, a bare `0x` is rejected.
fn parse_c_number(s: &str, default_base: u32) -> Option<u64> {
    let (digits, base) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if default_base == 0 && s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else if default_base == 0 {
        (s, 10)
    } else {
        (s, default_base)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    u64::from_str_radix(digits, base).ok()
}

fn parse_opt(s: &str, line: usize, col: usize, sink: &mut Sink<'_>) -> Option<Opt> {
    // parse_option: "-" alone is "not selected"; otherwise only P, E, D.
    if s == "-" {
        return Some(Opt {
            skip: true,
            ..Opt::default()
        });
    }
    let mut opt = Opt::default();
    for (i, ch) in s.chars().enumerate() {
        match ch {
            'P' => opt.program = true,
            'E' => opt.empty = true,
            'D' => opt.delete = true,
            _ => {
                sink.push(
                    line,
                    col + i,
                    LayoutErrorKind::InvalidOptionChar {
                        ch,
                        opt: s.to_string(),
                    },
                );
                return None;
            }
        }
    }
    if !opt.program {
        sink.push(line, col, LayoutErrorKind::MissingP { opt: s.to_string() });
        return None;
    }
    Some(opt)
}

fn parse_id(s: &str, line: usize, col: usize, sink: &mut Sink<'_>) -> Option<u8> {
    // parse_id: strict_strtoul(p, 0) then value > PHASE_LAST_USER rejected.
    match parse_c_number(s, 0) {
        None => {
            sink.push(line, col, LayoutErrorKind::InvalidId { text: s.into() });
            None
        }
        Some(v) if v > u64::from(MAX_ID) => {
            sink.push(line, col, LayoutErrorKind::IdOutOfRange { text: s.into() });
            None
        }
        Some(v) => Some(v as u8),
    }
}

fn parse_type(s: &str) -> Option<PartType> {
    // parse_type: "Binary" prefix, optionally "(N)"; others exact.
    if let Some(rest) = s.strip_prefix("Binary") {
        if rest.is_empty() {
            return Some(PartType::Binary { copies: 1 });
        }
        let n = rest.strip_prefix('(')?.strip_suffix(')')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // U-Boot's dectoul would take Binary(0) as 0 copies; refuse it.
        let copies: u32 = n.parse().ok().filter(|&c| c >= 1)?;
        return Some(PartType::Binary { copies });
    }
    Some(match s {
        "FIP" => PartType::Fip,
        "FWU_MDATA" => PartType::FwuMdata,
        "ENV" => PartType::Env,
        "System" => PartType::System,
        "ESP" => PartType::Esp,
        "FileSystem" => PartType::FileSystem,
        "RawImage" => PartType::RawImage,
        _ => return None,
    })
}

fn parse_ip(s: &str) -> Option<Ip> {
    // parse_ip: prefix then exactly one digit. U-Boot accepts anything
    // after "ram"; only "ram" and "ramN" are accepted here.
    if s == "none" {
        return Some(Ip {
            kind: IpKind::None,
            instance: 0,
        });
    }
    if s == "ram" {
        return Some(Ip {
            kind: IpKind::Ram,
            instance: 0,
        });
    }
    let (kind, rest) = if let Some(r) = s.strip_prefix("mmc") {
        (IpKind::Mmc, r)
    } else if let Some(r) = s.strip_prefix("nor") {
        (IpKind::Nor, r)
    } else if let Some(r) = s.strip_prefix("nand") {
        (IpKind::Nand, r)
    } else if let Some(r) = s.strip_prefix("spi-nand") {
        (IpKind::SpiNand, r)
    } else if let Some(r) = s.strip_prefix("ram") {
        (IpKind::Ram, r)
    } else {
        return None;
    };
    let b = rest.as_bytes();
    if b.len() != 1 || !b[0].is_ascii_digit() {
        return None;
    }
    Some(Ip {
        kind,
        instance: b[0] - b'0',
    })
}

fn parse_offset(s: &str, line: usize, col: usize, sink: &mut Sink<'_>) -> Option<Offset> {
    // parse_offset: "bootN" is an eMMC hardware partition (N = 1 or 2);
    // otherwise simple_strtoull(p, 10): 0x = hex, else decimal (since
    // U-Boot commit bd087f62c9f; a leading 0 is not octal here).
    if s.starts_with("boot") {
        return match s {
            "boot1" => Some(Offset::Boot1),
            "boot2" => Some(Offset::Boot2),
            _ => {
                sink.push(
                    line,
                    col,
                    LayoutErrorKind::InvalidBootPart { text: s.into() },
                );
                None
            }
        };
    }
    match parse_c_number(s, 10) {
        Some(v) => Some(Offset::Bytes(v)),
        None => {
            sink.push(line, col, LayoutErrorKind::InvalidOffset { text: s.into() });
            None
        }
    }
}

/// Parses every row of `text` and applies the row rules, returning the rows
/// that passed and every error found (unsorted). Rows with an error are
/// left out, so [`check`](super::check) still sees a consistent list.
pub(super) fn parse_partial(text: &str, path: &Path) -> (Layout, Vec<LayoutError>) {
    let mut sink = Sink::new(path);
    let base = path.parent().unwrap_or(Path::new(""));
    let mut parts: Vec<Partition> = Vec::new();
    let mut rows = 0usize;
    let mut too_many_at = 0;

    for (idx, raw) in text.split('\n').enumerate() {
        let line = idx + 1;
        let f = fields(raw);
        if f.is_empty() {
            continue;
        }
        // parse_flash_layout: '#' at the start of the first field makes
        // the whole line a comment (leading tabs are skipped first).
        if f[0].1.starts_with('#') {
            continue;
        }
        rows += 1;
        if rows == MAX_PARTITIONS + 1 {
            too_many_at = line;
        }
        parts.extend(parse_row(raw, line, &f, base, &mut sink));
    }

    if rows == 0 {
        sink.push(1, 1, LayoutErrorKind::Empty);
    } else if too_many_at > 0 {
        sink.push(
            too_many_at,
            1,
            LayoutErrorKind::TooManyPartitions { count: rows },
        );
    }

    let mut rules = RowRules::default();
    let keep: Vec<bool> = (0..parts.len())
        .map(|i| rules.apply(&parts, i, &mut sink))
        .collect();
    let mut k = keep.into_iter();
    parts.retain(|_| k.next().unwrap_or(false));

    (
        Layout {
            path: path.to_path_buf(),
            partitions: parts,
        },
        sink.errors,
    )
}

/// One row from its fields `f` (of the text `raw` of line `line`), or
/// `None` when a column is wrong (each wrong column is reported).
fn parse_row(
    raw: &str,
    line: usize,
    f: &[(usize, String)],
    base: &Path,
    sink: &mut Sink<'_>,
) -> Option<Partition> {
    if f.len() < 6 {
        let end = raw.trim_end_matches('\r').chars().count() + 1;
        sink.push(line, end, LayoutErrorKind::TooFewColumns { found: f.len() });
        return None;
    }
    let before = sink.errors.len();
    // U-Boot reads each field as a C string, so a NUL cuts it short
    // without a word: the board would use another name or path than the
    // one the file shows.
    for (field, (column, text)) in COLUMN_NAMES.into_iter().zip(f) {
        if let Some(at) = text.chars().position(|c| c == '\0') {
            let text = text.replace('\0', "\\0");
            sink.push(
                line,
                column + at,
                LayoutErrorKind::NulInField { field, text },
            );
        }
    }
    let mut columns = [0usize; 7];
    for (i, c) in columns.iter_mut().enumerate() {
        *c = f.get(i).map_or(0, |x| x.0);
    }
    let get = |c: usize| f[c].1.as_str();

    let opt = parse_opt(get(COL_OPT), line, columns[COL_OPT], sink);
    let id = parse_id(get(COL_ID), line, columns[COL_ID], sink);
    let name = get(COL_NAME);
    if name.len() > MAX_NAME_LEN {
        sink.push(
            line,
            columns[COL_NAME],
            LayoutErrorKind::NameTooLong {
                name: name.into(),
                len: name.len(),
            },
        );
    }
    // parse_type and parse_ip only say whether the text is valid: the
    // unknown text is reported here, at its column.
    let mut unknown = |c: usize, kind: fn(String) -> LayoutErrorKind| {
        sink.push(line, columns[c], kind(get(c).into()));
    };
    let kind = parse_type(get(COL_TYPE));
    if kind.is_none() {
        unknown(COL_TYPE, |text| LayoutErrorKind::InvalidType { text });
    }
    let ip = parse_ip(get(COL_IP));
    if ip.is_none() {
        unknown(COL_IP, |text| LayoutErrorKind::InvalidIp { text });
    }
    let offset = parse_offset(get(COL_OFFSET), line, columns[COL_OFFSET], sink);
    // Columns after Binary are ignored, as U-Boot ignores all after
    // Offset.
    let binary_name = f
        .get(COL_BINARY)
        .map(|x| x.1.clone())
        .filter(|b| b != "none");
    let binary = binary_name.as_ref().map(|b| base.join(b));

    if sink.errors.len() != before {
        return None;
    }
    Some(Partition {
        line,
        columns,
        end_column: raw.trim_end_matches(['\r', '\t']).chars().count() + 1,
        opt: opt?,
        id: id?,
        name: name.into(),
        kind: kind?,
        ip: ip?,
        offset: offset?,
        binary,
        binary_name,
        binary_size: None,
        size: None,
    })
}

/// The row rules of `treat_partition_list` and the device-independent part
/// of `init_device`, applied row by row in file order: what the rows seen
/// so far used.
#[derive(Default)]
struct RowRules {
    /// Index of the first row with each Id.
    seen_ids: HashMap<u8, usize>,
    /// The devices, in order of first appearance.
    devices: Vec<Ip>,
    /// Index of the row using each eMMC boot partition (device, boot1?).
    boot_used: HashMap<(Ip, bool), usize>,
}

impl RowRules {
    /// Whether row `i` of `parts` passes every rule; each rule it breaks is
    /// reported.
    fn apply(&mut self, parts: &[Partition], i: usize, sink: &mut Sink<'_>) -> bool {
        let p = &parts[i];
        let mut ok = selection(p, sink);
        ok &= self.unique_id(parts, i, sink);
        ok &= self.device_count(p, sink);
        ok &= binary_copies(p, sink);
        ok &= self.boot_partition(parts, i, sink);
        ok &= raw_image_at_zero(p, sink);
        ok
    }

    /// U-Boot only compares device rows with later rows; any duplicate is
    /// refused here since the host looks alternate settings up by Id.
    fn unique_id(&mut self, parts: &[Partition], i: usize, sink: &mut Sink<'_>) -> bool {
        let p = &parts[i];
        let at = (p.line, p.col(COL_ID));
        first_use(&mut self.seen_ids, p.id, (parts, i), at, sink, |o| {
            LayoutErrorKind::DuplicateId {
                id: p.id,
                other_line: o.line,
                other_name: o.name.clone(),
            }
        })
    }

    /// At most [`MAX_DEVICES`] devices (`STM32PROG_MAX_DEV`).
    fn device_count(&mut self, p: &Partition, sink: &mut Sink<'_>) -> bool {
        if p.ip.kind == IpKind::None || self.devices.contains(&p.ip) {
            return true;
        }
        if self.devices.len() < MAX_DEVICES {
            self.devices.push(p.ip);
            return true;
        }
        sink.push(
            p.line,
            p.col(COL_IP),
            LayoutErrorKind::TooManyDevices {
                ip: p.ip,
                count: self.devices.len() + 1,
            },
        );
        false
    }

    /// `boot1`/`boot2` only on MMC, each once per device.
    fn boot_partition(&mut self, parts: &[Partition], i: usize, sink: &mut Sink<'_>) -> bool {
        let p = &parts[i];
        if !matches!(p.offset, Offset::Boot1 | Offset::Boot2) {
            return true;
        }
        if p.ip.kind != IpKind::Mmc {
            sink.push(
                p.line,
                p.col(COL_OFFSET),
                LayoutErrorKind::BootPartNotMmc {
                    offset: p.offset,
                    ip: p.ip,
                },
            );
            return false;
        }
        let key = (p.ip, p.offset == Offset::Boot1);
        let at = (p.line, p.col(COL_OFFSET));
        first_use(&mut self.boot_used, key, (parts, i), at, sink, |o| {
            LayoutErrorKind::DuplicateBootPart {
                offset: p.offset,
                other_line: o.line,
                other_name: o.name.clone(),
            }
        })
    }
}

/// Row `i` of `rows` uses `key`, which only one row may use. The first user
/// is recorded in `seen`; a later one is refused at `at` (line, column) with
/// `dup(first user)`. Returns whether row `i` passed.
fn first_use<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    (rows, i): (&[Partition], usize),
    (line, column): (usize, usize),
    sink: &mut Sink<'_>,
    dup: impl FnOnce(&Partition) -> LayoutErrorKind,
) -> bool {
    match seen.entry(key) {
        Entry::Vacant(e) => {
            e.insert(i);
            true
        }
        Entry::Occupied(e) => {
            sink.push(line, column, dup(&rows[*e.get()]));
            false
        }
    }
}

/// Rows on IP `none` are loaded to RAM, never selected; Id 0x00 is the
/// layout itself, never a device row.
fn selection(p: &Partition, sink: &mut Sink<'_>) -> bool {
    if p.ip.kind == IpKind::None {
        if p.opt.program {
            sink.push(
                p.line,
                p.col(COL_OPT),
                LayoutErrorKind::SelectedNone { opt: p.opt.text() },
            );
            return false;
        }
    } else if p.id == 0 {
        sink.push(p.line, p.col(COL_ID), LayoutErrorKind::IdReserved);
        return false;
    }
    true
}

/// `Binary(N)` with N > 1 only for NAND FSBL rows, the only ones U-Boot
/// copies (`init_device`).
fn binary_copies(p: &Partition, sink: &mut Sink<'_>) -> bool {
    let PartType::Binary { copies } = p.kind else {
        return true;
    };
    if copies <= 1 {
        return true;
    }
    let reason = if !matches!(p.ip.kind, IpKind::Nand | IpKind::SpiNand) {
        "only on nandN or spi-nandN"
    } else if p.id >= FIRST_USER_ID {
        "only for Ids below 0x10"
    } else if !p.name.starts_with("fsbl") {
        "only for partitions named fsbl*"
    } else {
        return true;
    };
    sink.push(
        p.line,
        p.col(COL_TYPE),
        LayoutErrorKind::MultipleBinaryNotSupported { copies, reason },
    );
    false
}

/// `RawImage` covers the whole device; U-Boot silently moves it to 0, the
/// host refuses any other offset.
fn raw_image_at_zero(p: &Partition, sink: &mut Sink<'_>) -> bool {
    match (p.kind, p.offset) {
        (PartType::RawImage, Offset::Bytes(b)) if b != 0 => {
            sink.push(
                p.line,
                p.col(COL_OFFSET),
                LayoutErrorKind::RawImageNotAtZero { offset: b },
            );
            false
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_uboot() {
        assert_eq!(parse_c_number("0x10", 0), Some(16));
        assert_eq!(parse_c_number("010", 0), Some(8));
        assert_eq!(parse_c_number("010", 10), Some(10));
        assert_eq!(parse_c_number("16", 0), Some(16));
        assert_eq!(parse_c_number("0x", 0), None);
        assert_eq!(parse_c_number("0", 0), Some(0));
        assert_eq!(parse_c_number("0x105984400", 10), Some(0x1_0598_4400));
    }

    #[test]
    fn fields_skip_empty_and_cr() {
        let f = fields("P\t\t0x04\tfsbl1\r");
        assert_eq!(
            f,
            vec![(1, "P".into()), (4, "0x04".into()), (9, "fsbl1".into())]
        );
    }
}
