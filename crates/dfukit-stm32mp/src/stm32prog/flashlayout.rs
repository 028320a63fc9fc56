//! The flashlayout as U-Boot's `stm32prog` reads it (`parse_flash_layout`
//! and its column parsers in `stm32prog.c`), rule for rule, including where
//! U-Boot is more lenient or more surprising than the host's checker in
//! [`crate::layout`]:
//!
//! * a layout in an STM32 image header is unwrapped only for header v1, and
//!   only when the header passes U-Boot's own test (magic, version exactly
//!   0x00010000, reserved words and padding zero); its checksum must match
//!   ("Layout: invalid checksum : 0x… expected 0x…");
//! * the text ends at the first NUL byte; a CR is dropped together with the
//!   rest of its column (U-Boot overwrites it with a NUL);
//! * columns are separated by one or more TABs (empty columns are
//!   skipped), a `#` starts a comment only as the first character of a
//!   line, the 7th column (binary) and any further one are ignored;
//! * an empty column before the newline (a trailing TAB) hides that newline:
//!   the next line's first column is taken as one more column of this row,
//!   and at the end of the file the row is dropped;
//! * the Id is read with `strict_strtoul(.., 0)`: decimal, `0x` hex, a
//!   leading `0` octal, wrapping at 32 bits (ARMv7's `unsigned long`);
//!   offsets with `simple_strtoull(.., 10)`: decimal or `0x` hex; `0x`
//!   alone reads as 0;
//! * `Binary(N)` takes N with `dectoul`, which stops at the first non-digit
//!   (`Binary(2x)` is 2, `Binary()` is 0);
//! * the IP is `none`, or `mmc`, `nor`, `nand`, `spi-nand` with exactly one
//!   digit, or anything starting with `ram`;
//! * only the first error is reported, with U-Boot's message and line
//!   number (comment and empty lines counted).
//!
//! Rules across rows (`treat_partition_list`) and against the devices
//! (`init_device`) are applied later, at the DETACH that follows the layout,
//! by [`super::table`].

use super::header;
use super::text::{ErrorText, Lossy, PartName};
use core::fmt;

/// Highest Id a layout row may carry (`PHASE_LAST_USER`).
pub const LAST_USER_ID: u8 = 0xF0;
/// First Id of the user partitions (`PHASE_FIRST_USER`): `Binary(N)` rows
/// must be below it.
pub const FIRST_USER_ID: u8 = 0x10;
/// Most rows U-Boot accepts: more lines than [`LAST_USER_ID`] is "Layout:
/// too many partition".
pub const MAX_ROWS: usize = LAST_USER_ID as usize;
/// Columns U-Boot parses (`COL_NB_STM32`): Opt, Id, Name, Type, IP, Offset.
const PARSED_COLUMNS: usize = 6;

/// The `Opt` column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartOptions {
    /// `P` (`OPT_SELECT`).
    pub select: bool,
    /// `E` (`OPT_EMPTY`): nothing is downloaded.
    pub empty: bool,
    /// `D` (`OPT_DELETE`): erased at initialisation.
    pub delete: bool,
}

impl PartOptions {
    /// Whether stm32prog asks for this row's data (`P` without `E`).
    pub fn downloads(&self) -> bool {
        self.select && !self.empty
    }
}

/// The `Type` column (`enum stm32prog_part_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// `Binary` or `Binary(N)`.
    Binary,
    /// `FIP`.
    Fip,
    /// `FWU_MDATA`.
    FwuMdata,
    /// `ENV`.
    Env,
    /// `System` (GPT entry marked bootable).
    System,
    /// `FileSystem`.
    FileSystem,
    /// `ESP`.
    Esp,
    /// `RawImage`: the whole device, outside the GPT.
    RawImage,
}

/// The kind of device of the `IP` column (`enum stm32prog_target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// `none`: loaded to RAM by the boot stages, not programmed.
    None,
    /// `mmcN`: SD card or eMMC.
    Mmc,
    /// `nandN`: parallel NAND.
    Nand,
    /// `norN`: serial NOR.
    Nor,
    /// `spi-nandN`.
    SpiNand,
    /// `ram…`: DDR.
    Ram,
}

impl Medium {
    /// Whether U-Boot reaches the device through MTD.
    pub fn is_mtd(self) -> bool {
        matches!(self, Medium::Nand | Medium::Nor | Medium::SpiNand)
    }
}

/// One device: kind and instance (`target`, `dev_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediumId {
    /// The kind.
    pub medium: Medium,
    /// The instance digit (0 for `none` and RAM).
    pub instance: u8,
}

impl fmt::Display for MediumId {
    /// U-Boot's device names: `mmc1`, `nand0`, `spi-nand0` (MTD ids as
    /// `get_mtd_by_target` builds them), `ram0`, `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.medium {
            Medium::None => return f.write_str("none"),
            Medium::Mmc => "mmc",
            Medium::Nand => "nand",
            Medium::Nor => "nor",
            Medium::SpiNand => "spi-nand",
            Medium::Ram => "ram",
        };
        write!(f, "{kind}{}", self.instance)
    }
}

/// The `Offset` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A byte address on the device.
    Address(u64),
    /// eMMC hardware boot partition 1 or 2 (`boot1`, `boot2`).
    Boot(u8),
}

/// One layout row (`struct stm32prog_part_t`). The layout fields come from
/// the parser; `addr`, `size` and `number` are set from the device at
/// initialisation ([`super::table`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootPartition {
    /// Line of the row in the file (comment and empty lines counted).
    pub line: u32,
    /// The `Opt` column.
    pub option: PartOptions,
    /// The `Id` column (the phase that asks for it).
    pub id: u8,
    /// The `Name` column.
    pub name: PartName,
    /// The `Type` column.
    pub kind: PartKind,
    /// N of `Binary(N)`: 1 for `Binary`, 0 for the other types (as
    /// `parse_type` sets `bin_nb`).
    pub copies: u32,
    /// The `IP` column.
    pub medium: MediumId,
    /// The `Offset` column.
    pub placement: Placement,
    /// Byte address on the device: the offset, 0 for boot partitions and
    /// `RawImage` rows.
    pub addr: u64,
    /// Size in bytes (0 until initialisation).
    pub size: u64,
    /// Number in the device's partition table (GPT or MTD, from 1, in
    /// address order); 0 for boot partitions and `RawImage` rows.
    pub number: u16,
}

impl UbootPartition {
    /// The eMMC boot partition (1, 2) the row is written to.
    pub fn boot_partition(&self) -> Option<u8> {
        match self.placement {
            Placement::Boot(n) => Some(n),
            Placement::Address(_) => None,
        }
    }

    /// `name (0xID)`, as U-Boot's messages name a partition.
    pub fn label(&self) -> impl fmt::Display + '_ {
        Label(self)
    }
}

struct Label<'a>(&'a UbootPartition);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.0.name, self.0.id)
    }
}

/// A parsed layout: its rows in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashLayout {
    /// The rows.
    pub rows: heapless::Vec<UbootPartition, MAX_ROWS>,
}

/// Parses a received flashlayout (`bytes`: what was downloaded to alt 0)
/// by U-Boot's rules. The error is the message U-Boot puts in phase 0xFF.
pub fn parse_flash_layout(bytes: &[u8]) -> Result<FlashLayout, ErrorText> {
    let body = match header::uboot_image(bytes) {
        // Only `HEADER_STM32IMAGE` (v1) is unwrapped; a v2 header is read
        // as text.
        Some(h) if h.major == 1 => {
            // U-Boot sums `image_length` bytes of RAM; bytes that were never
            // received are counted as absent.
            let len = bytes.len() as u64;
            let start = h.header_len.min(len);
            let end = (start + u64::from(h.image_length)).min(len);
            let payload = &bytes[start as usize..end as usize];
            let (sum, checksum) = (header::checksum(payload), h.checksum);
            if sum != checksum {
                return Err(err(format_args!(
                    "Layout: invalid checksum : {sum:#x} expected {checksum:#x}"
                )));
            }
            payload
        }
        _ => bytes,
    };
    if body.is_empty() {
        return Err(invalid());
    }
    // `*last = 0`, and a NUL inside ends the text as well.
    let text = &body[..body.iter().position(|&b| b == 0).unwrap_or(body.len())];
    let capacity = expected_rows(text);
    if capacity > MAX_ROWS {
        return Err(err(format_args!("Layout: too many partition ({capacity})")));
    }
    let mut layout = FlashLayout::default();
    Scanner {
        text,
        capacity,
        line: 1,
        row: blank_row(),
    }
    .run(&mut layout)?;
    if layout.rows.is_empty() {
        return Err(err(format_args!("Layout: no partition found")));
    }
    Ok(layout)
}

/// What `stm32prog_end_phase` reports when the parser gave no message.
fn invalid() -> ErrorText {
    err(format_args!("Layout: invalid FlashLayout"))
}

fn err(args: fmt::Arguments<'_>) -> ErrorText {
    ErrorText::from_fmt(args)
}

/// U-Boot's estimate of the rows (`part_list_size`): one, plus one per
/// newline not followed by `#`.
fn expected_rows(text: &[u8]) -> usize {
    let mut n = 1;
    for (i, _) in text.iter().enumerate().filter(|(_, &c)| c == b'\n') {
        if text.get(i + 1) != Some(&b'#') {
            n += 1;
        }
    }
    n
}

fn blank_row() -> UbootPartition {
    UbootPartition {
        line: 0,
        option: PartOptions::default(),
        id: 0,
        name: PartName::default(),
        kind: PartKind::Binary,
        copies: 0,
        medium: MediumId {
            medium: Medium::None,
            instance: 0,
        },
        placement: Placement::Address(0),
        addr: 0,
        size: 0,
        number: 0,
    }
}

/// The main loop of `parse_flash_layout`, over `text` (no NUL inside; its
/// end plays the NUL U-Boot writes after the data).
struct Scanner<'a> {
    text: &'a [u8],
    capacity: usize,
    /// U-Boot's line counter `i`.
    line: u32,
    row: UbootPartition,
}

impl Scanner<'_> {
    fn at(&self, p: usize) -> u8 {
        self.text.get(p).copied().unwrap_or(0)
    }

    fn run(mut self, layout: &mut FlashLayout) -> Result<(), ErrorText> {
        let n = self.text.len();
        let (mut p, mut col, mut column) = (0usize, 0usize, 0usize);
        let (mut end_of_line, mut eof) = (false, false);
        while !eof {
            match self.at(p) {
                // Dropped, and its column ends there (see `field`).
                b'\r' => {
                    p += 1;
                    continue;
                }
                0 => (end_of_line, eof) = (true, true),
                b'\n' => end_of_line = true,
                b'\t' => {}
                b'#' if column == 0 && p == col => {
                    while p < n {
                        p += 1;
                        if self.text[p - 1] == b'\n' {
                            break;
                        }
                    }
                    col = p;
                    self.line += 1;
                    if p >= n {
                        (end_of_line, eof) = (true, true);
                    }
                    continue;
                }
                _ => {
                    p += 1;
                    continue;
                }
            }
            let field = field(&self.text[col.min(n)..p.min(n)]);
            p += 1;
            if p >= n {
                (end_of_line, eof) = (true, true);
            }
            if field.is_empty() {
                // Several TABs, or an empty line. A newline after an empty
                // column in the middle of a row is not seen as the row's
                // end (U-Boot's `end_of_line` stays set until the next
                // column ends).
                col = p;
                if column == 0 && end_of_line {
                    end_of_line = false;
                    self.line += 1;
                }
                continue;
            }
            if column < PARSED_COLUMNS {
                self.column(column, field)?;
            }
            column += 1;
            col = p;
            if !end_of_line {
                continue;
            }
            end_of_line = false;
            if column < PARSED_COLUMNS {
                return Err(err(format_args!(
                    "Layout line {}: no enought column",
                    self.line
                )));
            }
            column = 0;
            self.line += 1;
            let row = core::mem::replace(&mut self.row, blank_row());
            let pushed = layout.rows.push(row).is_ok();
            if !pushed || (layout.rows.len() >= self.capacity && !eof) {
                return Err(err(format_args!(
                    "Layout: no enought memory for {} part",
                    layout.rows.len()
                )));
            }
        }
        Ok(())
    }

    fn column(&mut self, column: usize, p: &[u8]) -> Result<(), ErrorText> {
        let i = self.line;
        let s = Lossy(p);
        let row = &mut self.row;
        match column {
            0 => {
                row.line = i;
                parse_option(p, i, &mut row.option)
            }
            1 => {
                // `strict_strtoul(p, 0, ..)` into a 32-bit unsigned long.
                match strict_strtoul(p) {
                    Some(v) if v <= u32::from(LAST_USER_ID) => {
                        row.id = v as u8;
                        Ok(())
                    }
                    _ => Err(err(format_args!(
                        "Layout line {i}: invalid phase value = {s}"
                    ))),
                }
            }
            2 => match PartName::new(p) {
                Some(name) => {
                    row.name = name;
                    Ok(())
                }
                None => Err(err(format_args!(
                    "Layout line {i}: partition name too long [{}]: {s}",
                    p.len()
                ))),
            },
            3 => match parse_type(p) {
                Some((kind, copies)) => {
                    (row.kind, row.copies) = (kind, copies);
                    Ok(())
                }
                None => Err(err(format_args!(
                    "Layout line {i}: type parsing error : '{s}'"
                ))),
            },
            4 => match parse_ip(p) {
                Some(m) => {
                    row.medium = m;
                    Ok(())
                }
                None => Err(err(format_args!(
                    "Layout line {i}: ip parsing error: '{s}'"
                ))),
            },
            _ => parse_offset(p, i, row),
        }
    }
}

/// A column as U-Boot's `strlen` sees it: up to the first CR, which it
/// replaced by a NUL.
fn field(raw: &[u8]) -> &[u8] {
    &raw[..raw.iter().position(|&c| c == b'\r').unwrap_or(raw.len())]
}

fn parse_option(p: &[u8], i: u32, opt: &mut PartOptions) -> Result<(), ErrorText> {
    *opt = PartOptions::default();
    if p == b"-" {
        return Ok(());
    }
    for &c in p {
        match c {
            b'P' => opt.select = true,
            b'E' => opt.empty = true,
            b'D' => opt.delete = true,
            _ => {
                // The stray ')' is U-Boot's.
                return Err(err(format_args!(
                    "Layout line {i}: invalid option '{}' in {})",
                    Lossy(&[c]),
                    Lossy(p)
                )));
            }
        }
    }
    if !opt.select {
        return Err(err(format_args!(
            "Layout line {i}: missing 'P' in option {}",
            Lossy(p)
        )));
    }
    Ok(())
}

/// `Binary`, `Binary(N)` and the other type names; N as `dectoul` reads it.
fn parse_type(p: &[u8]) -> Option<(PartKind, u32)> {
    if let Some(rest) = p.strip_prefix(b"Binary") {
        if rest.is_empty() {
            return Some((PartKind::Binary, 1));
        }
        // "Binary(" alone is refused, "Binary()" is not (N = 0).
        if p.len() < 8 || p[6] != b'(' || p[p.len() - 1] != b')' {
            return None;
        }
        let (n, _) = strtoul(&p[7..], 10, 32);
        return Some((PartKind::Binary, n as u32));
    }
    let kind = match p {
        b"FIP" => PartKind::Fip,
        b"FWU_MDATA" => PartKind::FwuMdata,
        b"ENV" => PartKind::Env,
        b"System" => PartKind::System,
        b"ESP" => PartKind::Esp,
        b"FileSystem" => PartKind::FileSystem,
        b"RawImage" => PartKind::RawImage,
        _ => return None,
    };
    Some((kind, 0))
}

fn parse_ip(p: &[u8]) -> Option<MediumId> {
    let id = |medium, instance| Some(MediumId { medium, instance });
    if p == b"none" {
        return id(Medium::None, 0);
    }
    let (medium, prefix) = [
        (Medium::Mmc, &b"mmc"[..]),
        (Medium::Nor, b"nor"),
        (Medium::Nand, b"nand"),
        (Medium::SpiNand, b"spi-nand"),
    ]
    .into_iter()
    .find(|(_, pre)| p.starts_with(pre))
    .or_else(|| p.starts_with(b"ram").then_some((Medium::Ram, &b""[..])))?;
    if medium == Medium::Ram {
        return id(Medium::Ram, 0);
    }
    // Exactly one digit after the name.
    match p.get(prefix.len()..)? {
        [d @ b'0'..=b'9'] => id(medium, d - b'0'),
        _ => None,
    }
}

fn parse_offset(p: &[u8], i: u32, row: &mut UbootPartition) -> Result<(), ErrorText> {
    row.addr = 0;
    row.size = 0;
    if let Some(rest) = p.strip_prefix(b"boot") {
        row.placement = match rest {
            b"1" => Placement::Boot(1),
            b"2" => Placement::Boot(2),
            _ => {
                return Err(err(format_args!(
                    "Layout line {i}: invalid part '{}'",
                    Lossy(p)
                )))
            }
        };
        return Ok(());
    }
    let (v, end) = strtoul(p, 10, 64);
    if end == 0 || end != p.len() {
        return Err(err(format_args!(
            "Layout line {i}: invalid offset '{}'",
            Lossy(p)
        )));
    }
    row.placement = Placement::Address(v);
    row.addr = v;
    Ok(())
}

/// U-Boot's `simple_strtoul`/`simple_strtoull` (`lib/strto.c`): a `0x`
/// prefix selects hex whatever `base` says, a leading `0` selects octal when
/// `base` is 0, digits are read while they are below the base, and the
/// value wraps at `bits`. Returns the value and where reading stopped.
pub(crate) fn strtoul(s: &[u8], base: u32, bits: u32) -> (u64, usize) {
    let mut base = base;
    let mut i = 0;
    if s.first() == Some(&b'0') {
        if s.get(1).map(u8::to_ascii_lowercase) == Some(b'x') {
            base = 16;
            i = 2;
        } else if base == 0 {
            base = 8;
        }
    }
    if base == 0 {
        base = 10;
    }
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    let mut v: u64 = 0;
    while let Some(d) = s
        .get(i)
        .and_then(|&c| char::from(c).to_digit(16))
        .filter(|&d| d < base)
    {
        v = v.wrapping_mul(u64::from(base)).wrapping_add(u64::from(d)) & mask;
        i += 1;
    }
    (v, i)
}

/// `strict_strtoul(p, 0, ..)` with a 32-bit result: something must be read,
/// and nothing may follow.
fn strict_strtoul(p: &[u8]) -> Option<u32> {
    let (v, end) = strtoul(p, 0, 32);
    (end != 0 && end == p.len()).then_some(v as u32)
}
