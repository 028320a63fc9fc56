//! Where a chip sits in the memory map and how it is organised.

use super::FlashModelError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a chip sits in the memory map and how it is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlashGeometry {
    /// First address of the chip in the device's memory map.
    pub base: u32,
    /// Size in bytes; a multiple of `erase_size`.
    pub size: u32,
    /// Smallest erasable unit (page or sector) in bytes.
    pub erase_size: u32,
    /// Alignment and granularity of programs in bytes; also the unit that a
    /// program interrupted by a power cut completes atomically.
    pub write_unit: u32,
    /// Largest program operation in bytes; a program must stay inside one
    /// aligned block of this size (the 256-byte page of a QSPI NOR part).
    pub max_program: u32,
}

impl FlashGeometry {
    /// nRF52840 internal flash: 1 MiB at 0 in 256 pages of 4 KiB, programmed
    /// in 32-bit words (nRF52840 Product Specification, "Memory" and NVMC).
    /// The NVMC has no program page; one program operation is capped at one
    /// flash page so that an interrupted program never spans two erase units.
    pub const NRF52840_INTERNAL: FlashGeometry = FlashGeometry {
        base: 0,
        size: 1024 * 1024,
        erase_size: 4096,
        write_unit: 4,
        max_program: 4096,
    };

    /// Macronix MX25R6435F (64 Mbit) as mapped by the nRF52840 QSPI
    /// peripheral: 8 MiB at the XIP window 0x1200_0000, 4 KiB sector erase,
    /// 256-byte page program, byte-granular writes.
    pub const MX25R6435F_ON_NRF52840: FlashGeometry = FlashGeometry {
        base: 0x1200_0000,
        size: 8 * 1024 * 1024,
        erase_size: 4096,
        write_unit: 1,
        max_program: 256,
    };

    /// One past the last address (u64, since a chip may end at 4 GiB).
    pub fn end(&self) -> u64 {
        u64::from(self.base) + u64::from(self.size)
    }

    /// True when `addr..addr + len` lies entirely on the chip. An empty range
    /// is contained when `addr` is on the chip or just past its end.
    pub fn contains(&self, addr: u32, len: u32) -> bool {
        addr >= self.base && u64::from(addr) + u64::from(len) <= self.end()
    }

    /// Checks that the numbers describe a possible chip.
    pub fn validate(&self) -> Result<(), FlashModelError> {
        let bad = |reason| Err(FlashModelError::InvalidGeometry { reason });
        if self.size == 0 || self.erase_size == 0 || self.write_unit == 0 || self.max_program == 0 {
            return bad("sizes must be non-zero");
        }
        if self.end() > 1 << 32 {
            return bad("the chip must end within the 32-bit address space");
        }
        if !self.size.is_multiple_of(self.erase_size) {
            return bad("size must be a multiple of erase_size");
        }
        if !self.base.is_multiple_of(self.erase_size) {
            return bad("base must be aligned to erase_size");
        }
        if !self.erase_size.is_multiple_of(self.write_unit)
            || !self.max_program.is_multiple_of(self.write_unit)
        {
            return bad("erase_size and max_program must be multiples of write_unit");
        }
        Ok(())
    }
}

/// One erase sector of a chip with sectors of several sizes (STM32F4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EraseSector {
    /// First address.
    pub start: u32,
    /// Size in bytes.
    pub size: u32,
    /// Typical erase time (datasheets give it per sector size, and it is
    /// not proportional to the size).
    pub erase_typ: Duration,
    /// Maximum erase time.
    pub erase_max: Duration,
}

/// STM32F405/407 1 MiB internal flash (RM0090 "Embedded Flash memory",
/// single bank): four 16 KiB, one 64 KiB and seven 128 KiB sectors at
/// 0x0800_0000. Erase times from the STM32F405xx datasheet, "Flash memory
/// characteristics", x32 parallelism (2.7-3.6 V): 16 KiB 250 ms typ / 500 ms
/// max, 64 KiB 550 ms / 1100 ms, 128 KiB 1 s / 2 s.
pub fn stm32f4_sectors() -> Vec<EraseSector> {
    let mut v = Vec::with_capacity(12);
    let mut start = 0x0800_0000;
    for (count, kib, typ, max) in [
        (4u32, 16u32, 250u64, 500u64),
        (1, 64, 550, 1100),
        (7, 128, 1000, 2000),
    ] {
        for _ in 0..count {
            v.push(EraseSector {
                start,
                size: kib * 1024,
                erase_typ: Duration::from_millis(typ),
                erase_max: Duration::from_millis(max),
            });
            start += kib * 1024;
        }
    }
    v
}
