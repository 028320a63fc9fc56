//! The STM32MP programming protocol's shared vocabulary: partition Ids with a
//! fixed meaning, the phase record of the virtual partition 0xF1, and the
//! alternate-setting names ROM code, TF-A and U-Boot give their partitions.
//!
//! Host and device core ([`crate::stm32prog`]) both use this module, so a
//! change of the wire format is made in one place. The constants, the record
//! and command encodings and the alt-name formatting are no_std; the owned
//! forms the host decodes into ([`PhaseRecord`], [`AltName`]) need the `std`
//! feature. Sources: U-Boot `arch/arm/mach-stm32mp/cmd_stm32prog/
//! stm32prog_usb.c` (`stm32prog_cmd_read`, `stm32prog_cmd_write`) and
//! `stm32prog.c` (`stm32prog_get_alt_name`); TF-A `plat/st/common/
//! stm32cubeprogrammer_usb.c`.

use core::fmt;

/// USB vendor Id of the ROM code, TF-A and U-Boot's DFU gadget.
pub const USB_VID: u16 = 0x0483;
/// USB product Id in all three stages.
pub const USB_PID: u16 = 0xDF11;

/// Id of the flashlayout (U-Boot's first enumeration, alt 0).
pub const ID_FLASHLAYOUT: u8 = 0x00;
/// Id of the FSBL (TF-A) the ROM code loads to SYSRAM.
pub const ID_FSBL: u8 = 0x01;
/// Id of the SSBL / FIP that TF-A loads to DDR.
pub const ID_SSBL: u8 = 0x03;
/// Id of the virtual command partition that holds the phase record.
pub const ID_CMD: u8 = 0xF1;
/// Id of the OTP virtual partition.
pub const ID_OTP: u8 = 0xF2;
/// Id of the SSP virtual partition (ST's TF-A fork).
pub const ID_SSP: u8 = 0xF3;
/// Id of the PMIC NVM virtual partition.
pub const ID_PMIC: u8 = 0xF4;
/// Phase value: everything is programmed.
pub const PHASE_END: u8 = 0xFE;
/// Phase value: error (the record carries the message); U-Boot resets.
pub const PHASE_ERROR: u8 = 0xFF;
/// Address field meaning "no destination".
pub const NO_ADDRESS: u32 = 0xFFFF_FFFF;
/// The ToC header a FIP starts with (TF-A checks it before detaching).
pub const FIP_TOC_HEADER: u32 = 0xAA64_0001;

/// The alternate settings the MP15 ROM code (and TF-A on the same
/// enumeration) offers, alt 0..=5 (TF-A `stm32mp1_usb_dfu.c`): the FSBL
/// goes to alt 1, the FIP to alt 3, the phase record is alt 5 (0xF1).
pub const ROM_ALTS: [&str; 6] = [
    "@Partition0 /0x00/1*256Ke",
    "@FSBL /0x01/1*1Me",
    "@Partition2 /0x02/1*1Me",
    "@Partition3 /0x03/1*16Me",
    "@Partition4 /0x04/1*16Me",
    "@virtual /0xF1/1*512Ba",
];

/// Length of the record's fixed part: phase, address, offset.
pub const RECORD_HEADER_LEN: usize = 9;

/// Writes a phase record into `out` (as much of it as fits) and returns the
/// bytes written: the phase, the little-endian address and offset, then
/// `extra` (`stm32prog_cmd_read`). The device side serves this; the host
/// decodes it with [`PhaseRecord::decode`].
pub fn encode_record(phase: u8, address: u32, offset: u32, extra: &[u8], out: &mut [u8]) -> usize {
    let mut head = [0u8; RECORD_HEADER_LEN];
    head[0] = phase;
    head[1..5].copy_from_slice(&address.to_le_bytes());
    head[5..9].copy_from_slice(&offset.to_le_bytes());
    let mut n = 0;
    for &b in head.iter().chain(extra) {
        let Some(slot) = out.get_mut(n) else { break };
        *slot = b;
        n += 1;
    }
    n
}

/// What the device reports when the host reads block 0 of 0xF1.
#[cfg(feature = "std")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseRecord {
    /// The Id of the partition the device wants next, [`PHASE_END`] or
    /// [`PHASE_ERROR`].
    pub phase: u8,
    /// Destination address ([`NO_ADDRESS`], or the load address).
    pub address: u32,
    /// Offset to resume the download at.
    pub offset: u32,
    /// Bytes after the first nine: phase 0 under U-Boot, one byte "a
    /// layout is present"; phase 0 under TF-A after the FIP, one byte 0x01
    /// "send DETACH"; phase 0xFF, the error message.
    pub extra: Vec<u8>,
}

/// Why a phase record could not be decoded.
#[cfg(feature = "std")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phase record too short: {len} bytes, at least 9 expected")]
pub struct PhaseRecordError {
    /// Bytes received.
    pub len: usize,
}

#[cfg(feature = "std")]
impl PhaseRecord {
    /// A record without extra bytes.
    pub fn new(phase: u8, address: u32, offset: u32) -> Self {
        PhaseRecord {
            phase,
            address,
            offset,
            extra: Vec::new(),
        }
    }

    /// The error record U-Boot serves after `stm32prog_err`.
    pub fn error(message: &str) -> Self {
        PhaseRecord {
            phase: PHASE_ERROR,
            address: NO_ADDRESS,
            offset: 0,
            extra: message.as_bytes().to_vec(),
        }
    }

    /// The wire form (little-endian address and offset).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![0; RECORD_HEADER_LEN + self.extra.len()];
        encode_record(self.phase, self.address, self.offset, &self.extra, &mut v);
        v
    }

    /// Decodes an UPLOAD of 0xF1.
    pub fn decode(b: &[u8]) -> Result<Self, PhaseRecordError> {
        if b.len() < RECORD_HEADER_LEN {
            return Err(PhaseRecordError { len: b.len() });
        }
        Ok(PhaseRecord {
            phase: b[0],
            address: u32::from_le_bytes([b[1], b[2], b[3], b[4]]),
            offset: u32::from_le_bytes([b[5], b[6], b[7], b[8]]),
            extra: b[9..].to_vec(),
        })
    }

    /// Whether the device asks the host to send DETACH (TF-A after the FIP:
    /// phase 0, extra byte 0x01).
    pub fn detach_requested(&self) -> bool {
        self.phase == ID_FLASHLAYOUT && self.extra.first() == Some(&1)
    }

    /// The error message of a [`PHASE_ERROR`] record (NUL and trailing
    /// whitespace stripped).
    pub fn error_message(&self) -> Option<String> {
        if self.phase != PHASE_ERROR {
            return None;
        }
        let end = self
            .extra
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.extra.len());
        Some(
            String::from_utf8_lossy(&self.extra[..end])
                .trim_end()
                .to_string(),
        )
    }
}

#[cfg(feature = "std")]
impl fmt::Display for PhaseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            PHASE_END => f.write_str("phase END (0xfe)"),
            PHASE_ERROR => write!(
                f,
                "phase ERROR (0xff): {}",
                self.error_message().unwrap_or_default()
            ),
            p => {
                write!(f, "phase {p:#04x}")?;
                if self.address != NO_ADDRESS {
                    write!(f, " at {:#010x}", self.address)?;
                }
                if self.offset != 0 {
                    write!(f, ", offset {:#x}", self.offset)?;
                }
                Ok(())
            }
        }
    }
}

/// The 5-byte DNLOAD to 0xF1 that sets the phase and address (big-endian
/// address, as `stm32prog_cmd_write` reads it). Phase 0xFF means "jump to
/// `address`".
pub fn encode_command(phase: u8, address: u32) -> [u8; 5] {
    let a = address.to_be_bytes();
    [phase, a[0], a[1], a[2], a[3]]
}

/// Decodes [`encode_command`]'s bytes.
pub fn decode_command(b: &[u8]) -> Option<(u8, u32)> {
    if b.len() < 5 {
        return None;
    }
    Some((b[0], u32::from_be_bytes([b[1], b[2], b[3], b[4]])))
}

/// Writes one alternate-setting name, `@name/0xID/1*SIZE{M,K,B}{e,a}`, to
/// `w`: the size in MiB when it divides evenly, else in KiB, else in bytes;
/// `a` (read-only) or `e` last. This is the naming of the simulated U-Boot
/// and of [`AltName::format`]; U-Boot's own `stm32prog_alt_add` picks the
/// largest unit the size exceeds and truncates, which differs for sizes
/// such as exactly 1 MiB ("1024K") — see [`crate::stm32prog`].
pub fn write_alt_name(
    w: &mut impl fmt::Write,
    name: impl fmt::Display,
    id: u8,
    size: u64,
    read_only: bool,
) -> fmt::Result {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    let (n, unit) = if size != 0 && size.is_multiple_of(MIB) {
        (size / MIB, 'M')
    } else if size != 0 && size.is_multiple_of(KIB) {
        (size / KIB, 'K')
    } else {
        (size, 'B')
    };
    let kind = if read_only { 'a' } else { 'e' };
    write!(w, "@{name}/0x{id:02x}/1*{n}{unit}{kind}")
}

/// The fields of an alternate-setting name, borrowed from it: name (blanks
/// around it removed), Id, size in bytes, read-only. Any case of the hex
/// Id and blanks around the name are allowed, as in TF-A's
/// `@FSBL /0x01/1*1Me`; a size that does not fit 64 bits is refused.
fn split_alt_name(s: &str) -> Option<(&str, u8, u64, bool)> {
    let s = s.trim().strip_prefix('@')?;
    let mut it = s.splitn(3, '/');
    let name = it.next()?.trim();
    let id_s = it.next()?.trim();
    let id_hex = id_s
        .strip_prefix("0x")
        .or_else(|| id_s.strip_prefix("0X"))?;
    let id = u8::from_str_radix(id_hex, 16).ok()?;
    let sect = it.next()?.trim();
    let (count, rest) = sect.split_once('*')?;
    let count: u64 = count.trim().parse().ok()?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let n: u64 = rest[..digits].parse().ok()?;
    let mut tail = rest[digits..].chars();
    let mult = match tail.next() {
        Some('M') => 1 << 20,
        Some('K') => 1 << 10,
        Some('B') => 1,
        _ => return None,
    };
    let read_only = tail.next()? == 'a';
    Some((
        name,
        id,
        count.checked_mul(n)?.checked_mul(mult)?,
        read_only,
    ))
}

/// One alternate-setting name: `@name/0xID/1*SIZE{M,K,B}{e,a}`.
#[cfg(feature = "std")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltName {
    /// Partition name (may carry trailing blanks in TF-A's names).
    pub name: String,
    /// Partition Id.
    pub id: u8,
    /// Size in bytes.
    pub size: u64,
    /// `a` (read-only: `E` rows and virtual partitions) rather than `e`.
    pub read_only: bool,
}

#[cfg(feature = "std")]
impl AltName {
    /// The name in the form [`write_alt_name`] gives.
    pub fn format(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write_alt_name(&mut s, &self.name, self.id, self.size, self.read_only);
        s
    }

    /// Parses a name in that form (any case of the hex Id, blanks around the
    /// name allowed, as TF-A's `@FSBL /0x01/1*1Me`).
    pub fn parse(s: &str) -> Option<AltName> {
        let (name, id, size, read_only) = split_alt_name(s)?;
        Some(AltName {
            name: name.to_string(),
            id,
            size,
            read_only,
        })
    }
}

/// The alt whose name carries partition Id `id` (the host's lookup, as
/// STM32CubeProgrammer does: "find the alt containing `/0x<id>/`").
pub fn find_alt<'a>(alts: impl IntoIterator<Item = (u8, &'a str)>, id: u8) -> Option<u8> {
    alts.into_iter()
        .find(|(_, name)| split_alt_name(name).is_some_and(|a| a.1 == id))
        .map(|(alt, _)| alt)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_uses_little_endian() {
        let r = PhaseRecord::new(ID_SSBL, 0xC000_0000, 0x1234);
        let b = r.encode();
        assert_eq!(b, [3, 0, 0, 0, 0xC0, 0x34, 0x12, 0, 0]);
        assert_eq!(PhaseRecord::decode(&b).unwrap(), r);
        assert_eq!(
            PhaseRecord::decode(&b[..8]),
            Err(PhaseRecordError { len: 8 })
        );
    }

    #[test]
    fn error_and_detach_records() {
        let mut e = PhaseRecord::error("mmc device 1 not found");
        e.extra.push(0);
        let e = PhaseRecord::decode(&e.encode()).unwrap();
        assert_eq!(e.error_message().as_deref(), Some("mmc device 1 not found"));
        assert!(e.to_string().contains("mmc device 1 not found"));
        let mut d = PhaseRecord::new(0, NO_ADDRESS, 0);
        assert!(!d.detach_requested());
        d.extra.push(1);
        assert!(d.detach_requested());
        assert_eq!(d.error_message(), None);
    }

    #[test]
    fn command_is_big_endian() {
        assert_eq!(encode_command(0x10, 0x0102_0304), [0x10, 1, 2, 3, 4]);
        assert_eq!(
            decode_command(&[0x10, 1, 2, 3, 4]),
            Some((0x10, 0x0102_0304))
        );
        assert_eq!(decode_command(&[1, 2]), None);
    }

    #[test]
    fn alt_names_format_like_u_boot_and_parse_tf_a_names() {
        let alt = |name: &str, id, size, read_only| AltName {
            name: name.into(),
            id,
            size,
            read_only,
        };
        let a = alt("fsbl1", 4, 256 << 10, false);
        assert_eq!(a.format(), "@fsbl1/0x04/1*256Ke");
        assert_eq!(AltName::parse(&a.format()), Some(a));
        let v = alt("virtual", ID_CMD, 512, true);
        assert_eq!(v.format(), "@virtual/0xf1/1*512Ba");
        let rootfs = alt("rootfs", 0x12, 3 << 30, false);
        assert_eq!(rootfs.format(), "@rootfs/0x12/1*3072Me");
        let t = AltName::parse("@FSBL /0x01/1*1Me").unwrap();
        assert_eq!((t.name.as_str(), t.id, t.size), ("FSBL", 1, 1 << 20));
        let t = AltName::parse("@virtual /0xF1/1*512Ba").unwrap();
        assert!(t.read_only);
        assert_eq!(t.id, 0xF1);
        assert_eq!(AltName::parse("@Internal Flash /0x08000000/04*016Kg"), None);
        assert_eq!(AltName::parse("no at sign"), None);
        // A size from the device that does not fit 64 bits is refused, not
        // wrapped.
        assert_eq!(AltName::parse("@x/0x10/99999999*99999999999M e"), None);
    }

    #[test]
    fn find_alt_matches_ids_in_either_case() {
        let alts = [
            (0u8, "@Partition0 /0x00/1*256Ke"),
            (1, "@FSBL /0x01/1*1Me"),
            (5, "@virtual /0xF1/1*512Ba"),
        ];
        assert_eq!(find_alt(alts, ID_CMD), Some(5));
        assert_eq!(find_alt(alts, ID_FSBL), Some(1));
        assert_eq!(find_alt(alts, 0x12), None);
    }
}
