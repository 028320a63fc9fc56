//! ST's DfuSe extension: special commands, block → address mapping and the
//! memory-layout strings DfuSe devices put in their alt-setting names.
//!
//! Layout parsing follows dfu-util's `dfuse_mem.c` (UM0424 §4.3.2) including
//! its quirks, because device strings were tuned against that parser: a
//! space where the size multiplier belongs means bytes (`01*016 e`), a type
//! letter in the multiplier position is taken as the type, and the STM32F4
//! "Device Feature" alt is always read/write. Where dfu-util silently drops
//! the rest of a malformed string, this parser reports where it stopped.

use core::fmt;

/// DfuSe command byte: Get Commands (the reply to UPLOAD at block 0 starts
/// with it).
pub const CMD_GET_COMMANDS: u8 = 0x00;
/// DfuSe command byte: Set Address Pointer.
pub const CMD_SET_ADDRESS: u8 = 0x21;
/// DfuSe command byte: Erase (with an address: one page/sector; alone: mass erase).
pub const CMD_ERASE: u8 = 0x41;
/// DfuSe command byte: Read Unprotect (erases everything and resets).
pub const CMD_READ_UNPROTECT: u8 = 0x92;

/// First block number that carries data; blocks 0 and 1 are reserved
/// (0 = commands, 1 = unused).
pub const FIRST_DATA_BLOCK: u16 = 2;

/// A DfuSe special command, sent as DNLOAD with `wValue` = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Set the address pointer that data blocks are relative to.
    SetAddress(u32),
    /// Erase the page/sector containing the address.
    Erase(u32),
    /// Erase all erasable memory of the alt setting.
    MassErase,
    /// Remove read protection (the device erases its flash and resets).
    ReadUnprotect,
}

/// A DNLOAD at block 0 that is not a DfuSe command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// No bytes.
    Empty,
    /// An unknown command byte.
    Unknown(u8),
    /// A known command with the wrong payload length.
    BadLength {
        /// Command byte.
        command: u8,
        /// Total length received.
        len: usize,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("empty DfuSe command"),
            CommandError::Unknown(c) => write!(f, "unknown DfuSe command {c:#04x}"),
            CommandError::BadLength { command, len } => {
                write!(f, "DfuSe command {command:#04x} with {len} bytes")
            }
        }
    }
}

impl Command {
    /// The command's name as dfu-util prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::SetAddress(_) => "SET_ADDRESS",
            Command::Erase(_) => "ERASE_PAGE",
            Command::MassErase => "MASS_ERASE",
            Command::ReadUnprotect => "READ_UNPROTECT",
        }
    }

    /// Encodes the command into `buf`; returns the used prefix.
    pub fn encode<'b>(&self, buf: &'b mut [u8; 5]) -> &'b [u8] {
        let (c, a) = match *self {
            Command::SetAddress(a) => (CMD_SET_ADDRESS, Some(a)),
            Command::Erase(a) => (CMD_ERASE, Some(a)),
            Command::MassErase => (CMD_ERASE, None),
            Command::ReadUnprotect => (CMD_READ_UNPROTECT, None),
        };
        buf[0] = c;
        match a {
            Some(a) => {
                buf[1..5].copy_from_slice(&a.to_le_bytes());
                &buf[..5]
            }
            None => &buf[..1],
        }
    }

    /// Decodes a DNLOAD block 0 payload.
    pub fn parse(b: &[u8]) -> Result<Self, CommandError> {
        let (&c, rest) = b.split_first().ok_or(CommandError::Empty)?;
        let addr = || -> Result<u32, CommandError> {
            <[u8; 4]>::try_from(rest)
                .map(u32::from_le_bytes)
                .map_err(|_| CommandError::BadLength {
                    command: c,
                    len: b.len(),
                })
        };
        match c {
            CMD_SET_ADDRESS => Ok(Command::SetAddress(addr()?)),
            CMD_ERASE if rest.is_empty() => Ok(Command::MassErase),
            CMD_ERASE => Ok(Command::Erase(addr()?)),
            CMD_READ_UNPROTECT if rest.is_empty() => Ok(Command::ReadUnprotect),
            CMD_READ_UNPROTECT => Err(CommandError::BadLength {
                command: c,
                len: b.len(),
            }),
            _ => Err(CommandError::Unknown(c)),
        }
    }
}

/// The address a DfuSe data block addresses:
/// `pointer + (block − 2) × transfer_size`.
///
/// `transfer_size` must be the device's *fixed* wTransferSize, never the
/// length of the current request: dfu-util's last upload chunk is shorter,
/// and a device that multiplies by wLength returns a corrupt read-back.
/// `None` for blocks 0 and 1 (commands) and on 32-bit overflow.
pub fn block_address(pointer: u32, block: u16, transfer_size: u16) -> Option<u32> {
    let n = block.checked_sub(FIRST_DATA_BLOCK)?;
    pointer.checked_add(u32::from(n).checked_mul(u32::from(transfer_size))?)
}

/// Memory attribute bits of a layout segment: the type letter `& 7`
/// (a = R, b = E, c = RE, d = W, e = RW, f = EW, g = REW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemType(pub u8);

impl MemType {
    /// Readable (UPLOAD allowed).
    pub fn readable(self) -> bool {
        self.0 & 1 != 0
    }
    /// Erasable (ERASE allowed).
    pub fn erasable(self) -> bool {
        self.0 & 2 != 0
    }
    /// Writeable (DNLOAD allowed).
    pub fn writeable(self) -> bool {
        self.0 & 4 != 0
    }
    /// The canonical type letter (`a`..`g`; `` ` `` for no access).
    pub fn letter(self) -> char {
        (b'`' + (self.0 & 7)) as char
    }
    /// Whether this type allows `access`.
    pub fn allows(self, access: Access) -> bool {
        match access {
            Access::Read => self.readable(),
            Access::Erase => self.erasable(),
            Access::Write => self.writeable(),
        }
    }
}

/// A kind of access to check against a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// UPLOAD.
    Read,
    /// ERASE.
    Erase,
    /// DNLOAD.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "readable",
            Access::Erase => "erasable",
            Access::Write => "writeable",
        })
    }
}

/// `count` equal sectors starting at `start` (one `NN*SSST` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First address.
    pub start: u32,
    /// Number of sectors.
    pub count: u32,
    /// Size of each sector in bytes.
    pub sector_size: u32,
    /// Access flags.
    pub mem: MemType,
}

impl Segment {
    /// One past the last address (64-bit: a segment may end at 4 GiB).
    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.count) * u64::from(self.sector_size)
    }

    /// Whether `addr` falls inside.
    pub fn contains(&self, addr: u32) -> bool {
        addr >= self.start && u64::from(addr) < self.end()
    }
}

/// One erase unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sector {
    /// First address.
    pub start: u32,
    /// Size in bytes.
    pub size: u32,
    /// Access flags.
    pub mem: MemType,
}

impl Sector {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.size)
    }
}

/// Longest alt-setting name kept.
pub const MAX_NAME: usize = 64;
/// Most `NN*SSST` entries kept.
pub const MAX_SEGMENTS: usize = 32;

/// A parsed memory-layout string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    /// The name between `@` and the first `/`, as given (ST pads it with
    /// spaces: `"Internal Flash  "`).
    pub name: heapless::String<MAX_NAME>,
    /// Segments in string order.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
}

/// Why a memory-layout string could not be parsed. `at` is a byte offset
/// into the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLayoutError {
    /// The string does not start with `@`.
    MissingAt,
    /// The name is empty or longer than [`MAX_NAME`].
    BadName,
    /// No `/0xADDR/NN*SSST` segment follows the name.
    NoSegments,
    /// An address after `/0x` is not hexadecimal or does not fit 32 bits.
    BadAddress {
        /// Byte offset.
        at: usize,
    },
    /// `NN*SSS` is not two decimal numbers, or one of them is zero.
    BadSectors {
        /// Byte offset.
        at: usize,
    },
    /// A segment has no type letter, or more than one character of type.
    BadType {
        /// Byte offset.
        at: usize,
    },
    /// A segment extends past the 32-bit address space.
    Overflow {
        /// Byte offset.
        at: usize,
    },
    /// More than [`MAX_SEGMENTS`] segments.
    TooManySegments,
}

impl fmt::Display for MemoryLayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryLayoutError::MissingAt => f.write_str("memory layout does not start with '@'"),
            MemoryLayoutError::BadName => write!(
                f,
                "memory layout name is empty or longer than {MAX_NAME} bytes"
            ),
            MemoryLayoutError::NoSegments => {
                f.write_str("memory layout has no /0xADDRESS/NN*SIZE segment")
            }
            MemoryLayoutError::BadAddress { at } => write!(f, "bad segment address at byte {at}"),
            MemoryLayoutError::BadSectors { at } => {
                write!(f, "bad sector count or size at byte {at}")
            }
            MemoryLayoutError::BadType { at } => {
                write!(f, "missing or bad memory type letter at byte {at}")
            }
            MemoryLayoutError::Overflow { at } => {
                write!(f, "segment at byte {at} extends past 4 GiB")
            }
            MemoryLayoutError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} segments"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MemoryLayoutError {}

/// A tiny cursor with sscanf-like primitives.
struct Cur<'a> {
    s: &'a [u8],
    p: usize,
}

impl Cur<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.p).copied()
    }
    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.p..].starts_with(lit) {
            self.p += lit.len();
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(
            self.peek(),
            Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
        ) {
            self.p += 1;
        }
    }
    /// `%d` without sign support for negatives (a negative count is an error).
    fn decimal(&mut self) -> Option<u64> {
        self.skip_ws();
        self.eat(b"+");
        let start = self.p;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.saturating_mul(10).saturating_add(u64::from(c - b'0'));
            self.p += 1;
        }
        (self.p > start).then_some(v)
    }
    /// `%x`.
    fn hex(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.p;
        let mut v: u64 = 0;
        while let Some(c) = self.peek().and_then(|c| (c as char).to_digit(16)) {
            v = v.saturating_mul(16).saturating_add(u64::from(c));
            self.p += 1;
        }
        (self.p > start).then_some(v)
    }
}

impl MemoryLayout {
    /// Parses a DfuSe alt-setting name such as
    /// `@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg`.
    pub fn parse(s: &str) -> Result<Self, MemoryLayoutError> {
        let b = s.as_bytes();
        if b.first() != Some(&b'@') {
            return Err(MemoryLayoutError::MissingAt);
        }
        let name_end = b.iter().position(|&c| c == b'/').unwrap_or(b.len());
        // The name ends at a byte boundary that is ASCII '/', so slicing is safe.
        let name_str = &s[1..name_end];
        let mut name = heapless::String::new();
        if name_str.is_empty() || name.push_str(name_str).is_err() {
            return Err(MemoryLayoutError::BadName);
        }
        // dfu-util's STM32F4 quirk: this alt's segments are read/write
        // whatever the string says.
        let forced = (name_str == "Device Feature").then_some(b'e');
        let mut segments = heapless::Vec::new();
        let mut c = Cur { s: b, p: name_end };
        while c.eat(b"/0x") {
            let at = c.p;
            let mut addr = match c.hex() {
                Some(a) if a <= u64::from(u32::MAX) => a,
                _ => return Err(MemoryLayoutError::BadAddress { at }),
            };
            if !c.eat(b"/") {
                return Err(MemoryLayoutError::BadAddress { at });
            }
            loop {
                let at = c.p;
                let count = c.decimal().ok_or(MemoryLayoutError::BadSectors { at })?;
                if !c.eat(b"*") {
                    return Err(MemoryLayoutError::BadSectors { at });
                }
                let size = c.decimal().ok_or(MemoryLayoutError::BadSectors { at })?;
                if count == 0 || size == 0 {
                    return Err(MemoryLayoutError::BadSectors { at });
                }
                let mult_at = c.p;
                let mult = c.peek().ok_or(MemoryLayoutError::BadType { at: mult_at })?;
                c.p += 1;
                let type_at = c.p;
                while c.peek().is_some_and(|ch| ch != b',' && ch != b'/') {
                    c.p += 1;
                }
                let type_str = &b[type_at..c.p];
                let mut mem = match type_str {
                    [] => None,
                    [t] => Some(*t),
                    _ => return Err(MemoryLayoutError::BadType { at: type_at }),
                };
                let factor: u64 = match mult {
                    b'K' => 1024,
                    b'M' => 1024 * 1024,
                    // A type letter where the multiplier belongs, with no type
                    // after it: dfu-util takes it as the type, size in bytes.
                    b'a'..=b'g' if mem.is_none() => {
                        mem = Some(mult);
                        1
                    }
                    // 'B', and dfu-util's "assuming bytes" for anything else
                    // (ST strings use a space: `01*016 e`).
                    _ => 1,
                };
                if let Some(f) = forced {
                    mem = Some(f);
                }
                let mem = mem.ok_or(MemoryLayoutError::BadType { at: type_at })?;
                let sector_size = size.saturating_mul(factor);
                let end = addr.saturating_add(count.saturating_mul(sector_size));
                if sector_size > u64::from(u32::MAX) || end > 1 << 32 {
                    return Err(MemoryLayoutError::Overflow { at });
                }
                segments
                    .push(Segment {
                        start: addr as u32,
                        count: count as u32,
                        sector_size: sector_size as u32,
                        mem: MemType(mem & 7),
                    })
                    .map_err(|_| MemoryLayoutError::TooManySegments)?;
                addr = end;
                if !c.eat(b",") {
                    break;
                }
            }
        }
        if segments.is_empty() {
            return Err(MemoryLayoutError::NoSegments);
        }
        Ok(MemoryLayout { name, segments })
    }

    /// The segment containing `addr`.
    pub fn segment_at(&self, addr: u32) -> Option<&Segment> {
        self.segments.iter().find(|s| s.contains(addr))
    }

    /// The sector containing `addr`.
    pub fn sector_at(&self, addr: u32) -> Option<Sector> {
        let s = self.segment_at(addr)?;
        let i = (addr - s.start) / s.sector_size;
        Some(Sector {
            start: s.start + i * s.sector_size,
            size: s.sector_size,
            mem: s.mem,
        })
    }

    /// The sectors `addr..addr + len` touches, in address order. Stops at the
    /// first unmapped address (check with [`MemoryLayout::first_denied`]).
    pub fn sectors_in(&self, addr: u32, len: u32) -> SectorIter<'_> {
        SectorIter {
            layout: self,
            next: u64::from(addr),
            end: u64::from(addr) + u64::from(len),
        }
    }

    /// The first address in `addr..addr + len` that is unmapped or does not
    /// allow `access`; `None` if the whole range does.
    pub fn first_denied(&self, addr: u32, len: u32, access: Access) -> Option<u32> {
        let end = u64::from(addr) + u64::from(len);
        let mut a = u64::from(addr);
        while a < end {
            // `a` < end ≤ 2^32 + len; it only exceeds u32 when the range does.
            let Ok(a32) = u32::try_from(a) else {
                return Some(u32::MAX);
            };
            match self.segment_at(a32) {
                Some(s) if s.mem.allows(access) => a = s.end(),
                _ => return Some(a32),
            }
        }
        None
    }

    /// Whether the whole range is mapped and writeable.
    pub fn is_writeable(&self, addr: u32, len: u32) -> bool {
        self.first_denied(addr, len, Access::Write).is_none()
    }

    /// Whether the whole range is mapped and readable.
    pub fn is_readable(&self, addr: u32, len: u32) -> bool {
        self.first_denied(addr, len, Access::Read).is_none()
    }

    /// First mapped address.
    pub fn start(&self) -> u32 {
        self.segments.iter().map(|s| s.start).min().unwrap_or(0)
    }

    /// Total mapped bytes.
    pub fn total_size(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| u64::from(s.count) * u64::from(s.sector_size))
            .sum()
    }
}

impl fmt::Display for MemoryLayout {
    /// Writes the canonical string form (hex address per contiguous run,
    /// sizes in the largest exact unit).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.name)?;
        let mut next: Option<u64> = None;
        for s in &self.segments {
            if next == Some(u64::from(s.start)) {
                f.write_str(",")?;
            } else {
                write!(f, "/0x{:08X}/", s.start)?;
            }
            let (n, m) = if s.sector_size % (1024 * 1024) == 0 {
                (s.sector_size / (1024 * 1024), 'M')
            } else if s.sector_size % 1024 == 0 {
                (s.sector_size / 1024, 'K')
            } else {
                (s.sector_size, 'B')
            };
            write!(f, "{:02}*{:03}{}{}", s.count, n, m, s.mem.letter())?;
            next = Some(s.end());
        }
        Ok(())
    }
}

/// Iterator over the sectors a range touches.
#[derive(Debug, Clone)]
pub struct SectorIter<'a> {
    layout: &'a MemoryLayout,
    next: u64,
    end: u64,
}

impl Iterator for SectorIter<'_> {
    type Item = Sector;
    fn next(&mut self) -> Option<Sector> {
        if self.next >= self.end {
            return None;
        }
        let s = self.layout.sector_at(u32::try_from(self.next).ok()?)?;
        self.next = s.end();
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F4: &str = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg";

    #[test]
    fn stm32f4_internal_flash() {
        let l = MemoryLayout::parse(F4).unwrap();
        assert_eq!(l.name.as_str(), "Internal Flash  ");
        assert_eq!(l.segments.len(), 3);
        assert_eq!(
            l.segments[0],
            Segment {
                start: 0x0800_0000,
                count: 4,
                sector_size: 16 * 1024,
                mem: MemType(7)
            }
        );
        assert_eq!(l.segments[1].start, 0x0801_0000);
        assert_eq!(l.segments[2].start, 0x0802_0000);
        assert_eq!(l.segments[2].end(), 0x0810_0000);
        assert_eq!(l.total_size(), 1024 * 1024);
        let s = l.sector_at(0x0802_0001).unwrap();
        assert_eq!((s.start, s.size), (0x0802_0000, 128 * 1024));
        assert_eq!(l.sector_at(0x0810_0000), None);
        assert_eq!(l.sector_at(0x07FF_FFFF), None);
        assert_eq!(
            l.to_string(),
            "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg"
        );
    }

    #[test]
    fn option_bytes_with_space_multiplier() {
        let l = MemoryLayout::parse("@Option Bytes  /0x1FFFC000/01*016 e").unwrap();
        assert_eq!(l.segments.len(), 1);
        let s = l.segments[0];
        assert_eq!((s.start, s.count, s.sector_size), (0x1FFF_C000, 1, 16));
        assert!(s.mem.readable() && s.mem.writeable() && !s.mem.erasable());
    }

    #[test]
    fn multiple_address_segments_and_otp() {
        let l = MemoryLayout::parse("@OTP Memory /0x1FFF7800/01*512 e,01*016 e/0x20000000/1*4Ma")
            .unwrap();
        assert_eq!(l.segments.len(), 3);
        assert_eq!(l.segments[1].start, 0x1FFF_7A00);
        assert_eq!(l.segments[2].start, 0x2000_0000);
        assert_eq!(l.segments[2].sector_size, 4 * 1024 * 1024);
        assert_eq!(l.segments[2].mem.letter(), 'a');
    }

    #[test]
    fn type_letters() {
        let letters = ["a", "b", "c", "d", "e", "f", "g"];
        for (i, t) in letters.iter().enumerate() {
            let l = MemoryLayout::parse(&format!("@X/0x0/1*1K{t}")).unwrap();
            let m = l.segments[0].mem;
            let v = (i + 1) as u8;
            assert_eq!(m.readable(), v & 1 != 0, "{t}");
            assert_eq!(m.erasable(), v & 2 != 0, "{t}");
            assert_eq!(m.writeable(), v & 4 != 0, "{t}");
        }
    }

    #[test]
    fn quirks() {
        // Type letter in the multiplier position: bytes, type g.
        let l = MemoryLayout::parse("@X/0x100/2*8g").unwrap();
        assert_eq!(
            (l.segments[0].sector_size, l.segments[0].mem),
            (8, MemType(7))
        );
        // STM32F4 Device Feature is forced to read/write.
        let l = MemoryLayout::parse("@Device Feature/0xFFFF0000/01*004 a").unwrap();
        assert_eq!(l.segments[0].mem.letter(), 'e');
        // B multiplier.
        let l = MemoryLayout::parse("@X/0x0/3*512Bf").unwrap();
        assert_eq!(l.segments[0].sector_size, 512);
        // Segment reaching exactly 4 GiB.
        let l = MemoryLayout::parse("@X/0xFFFF0000/1*64Ka").unwrap();
        assert_eq!(l.segments[0].end(), 1 << 32);
        assert!(l.is_readable(0xFFFF_0000, 0x1_0000));
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("Internal", MemoryLayoutError::MissingAt),
            ("@Name", MemoryLayoutError::NoSegments),
            ("@/0x0/1*1Kg", MemoryLayoutError::BadName),
            ("@N/0xZZ/1*1Kg", MemoryLayoutError::BadAddress { at: 5 }),
            ("@N/0x0/1*1Kgg", MemoryLayoutError::BadType { at: 11 }),
            ("@N/0x0/1*1K", MemoryLayoutError::BadType { at: 11 }),
            ("@N/0x0/0*1Kg", MemoryLayoutError::BadSectors { at: 7 }),
            (
                "@N/0xFFFFFFFF/2*1Kg",
                MemoryLayoutError::Overflow { at: 14 },
            ),
        ];
        for (text, err) in cases {
            assert_eq!(MemoryLayout::parse(text), Err(err), "{text}");
        }
    }

    #[test]
    fn range_helpers() {
        let l =
            MemoryLayout::parse("@Mixed/0x08000000/02*016Ka,02*016Kg/0x08100000/01*016Kb").unwrap();
        // First two sectors are read-only.
        assert_eq!(
            l.first_denied(0x0800_0000, 16, Access::Write),
            Some(0x0800_0000)
        );
        assert!(l.is_writeable(0x0800_8000, 0x8000));
        assert_eq!(
            l.first_denied(0x0800_8000, 0x8001, Access::Write),
            Some(0x0801_0000)
        );
        assert_eq!(l.first_denied(0x0800_0000, 0x1_0000, Access::Read), None);
        let touched: Vec<_> = l.sectors_in(0x0800_3FFF, 0x4002).map(|s| s.start).collect();
        assert_eq!(touched, [0x0800_0000, 0x0800_4000, 0x0800_8000]);
        assert_eq!(l.sectors_in(0x0800_0000, 0).count(), 0);
        // A range running into a hole stops the iterator.
        assert_eq!(l.sectors_in(0x0800_C000, 0x8000).count(), 1);
        assert!(l.sector_at(0x0810_0000).unwrap().mem.erasable());
    }

    #[test]
    fn commands_encode_and_parse() {
        let mut buf = [0; 5];
        let cases = [
            (Command::SetAddress(0x0800_0000), &[0x21, 0, 0, 0, 8][..]),
            (Command::Erase(0x0801_0000), &[0x41, 0, 0, 1, 8][..]),
            (Command::MassErase, &[0x41][..]),
            (Command::ReadUnprotect, &[0x92][..]),
        ];
        for (c, bytes) in cases {
            assert_eq!(c.encode(&mut buf), bytes);
            assert_eq!(Command::parse(bytes), Ok(c));
        }
        assert_eq!(Command::parse(&[]), Err(CommandError::Empty));
        assert_eq!(Command::parse(&[0x55]), Err(CommandError::Unknown(0x55)));
        assert_eq!(
            Command::parse(&[0x21, 1, 2]),
            Err(CommandError::BadLength {
                command: 0x21,
                len: 3
            })
        );
    }

    #[test]
    fn block_mapping_uses_fixed_transfer_size() {
        assert_eq!(block_address(0x0800_0000, 2, 2048), Some(0x0800_0000));
        assert_eq!(block_address(0x0800_0000, 5, 2048), Some(0x0800_1800));
        assert_eq!(block_address(0x0800_0000, 1, 2048), None);
        assert_eq!(block_address(0xFFFF_F000, 4, 2048), None);
    }
}
