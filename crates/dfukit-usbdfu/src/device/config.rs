//! Device configuration: dialect, alternate settings, flash timing.

use crate::dfuse::{MemoryLayout, MemoryLayoutError};
use crate::wire::{
    FunctionalDescriptor, Status, ATTR_CAN_DNLOAD, ATTR_CAN_UPLOAD, ATTR_MANIFESTATION_TOLERANT,
    ATTR_WILL_DETACH,
};
use core::time::Duration;

/// Largest wTransferSize the device core buffers (dfu-util caps transfers at
/// 4096 on Linux, and one block buffer of this size is held in RAM).
pub const MAX_TRANSFER_SIZE: usize = 4096;
/// Most alternate settings.
pub const MAX_ALTS: usize = 8;

/// How a DFU implementation deviates from the others, as explicit flags.
///
/// The DFU 1.1 text leaves room and implementations filled it differently;
/// hosts that assume one behaviour break on another (dfu-libusb#4: a CLRSTATUS
/// sent to an STM32 in dfuIDLE put it into dfuERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// A short name for logs.
    pub name: &'static str,
    /// CLRSTATUS outside dfuERROR sets dfuERROR/errUNKNOWN (ST `usbd_dfu.c`,
    /// TF-A) instead of being ignored (U-Boot).
    pub strict_clrstatus: bool,
    /// After manifestation the device returns to dfuIDLE and keeps talking
    /// (bitManifestationTolerant). The ST ROM is not: it leaves DFU.
    pub manifestation_tolerant: bool,
    /// After DETACH the device disconnects and re-attaches by itself
    /// (bitWillDetach).
    pub will_detach: bool,
    /// Speaks DfuSe (bcdDFUVersion 0x011A, commands at block 0, addressed
    /// blocks from 2).
    pub dfuse: bool,
    /// The reply to DfuSe Get Commands (UPLOAD block 0).
    pub get_commands: &'static [u8],
    /// Status for a write, read or Set Address outside the memory map. ST
    /// reports errTARGET, others errADDRESS.
    pub address_error: Status,
    /// ABORT is also taken in dfuDNLOAD-SYNC and dfuMANIFEST-SYNC (dropping
    /// the block or the manifestation they hold), DETACH in every state
    /// ABORT is taken in, and an ABORT refused elsewhere only stalls (ST
    /// `usbd_dfu.c`). Otherwise the DFU 1.1 state table holds (U-Boot's
    /// `f_dfu`): ABORT in the idle states only, DETACH in dfuIDLE only, and
    /// refusing either is an error.
    pub lenient_abort: bool,
}

impl Dialect {
    /// The STM32 system-memory (ROM) DfuSe bootloader, per AN3156/AN2662 and
    /// ST's `usbd_dfu.c`.
    pub const ST_ROM: Dialect = Dialect {
        name: "ST ROM",
        strict_clrstatus: true,
        manifestation_tolerant: false,
        will_detach: true,
        dfuse: true,
        get_commands: &[0x00, 0x21, 0x41, 0x92],
        address_error: Status::ErrTarget,
        lenient_abort: true,
    };

    /// U-Boot's `f_dfu` gadget (bmAttributes 0x0F): CLRSTATUS is harmless,
    /// manifestation tolerant, plain DFU 1.1.
    pub const U_BOOT: Dialect = Dialect {
        name: "U-Boot",
        strict_clrstatus: false,
        manifestation_tolerant: true,
        will_detach: true,
        dfuse: false,
        get_commands: &[0x00, 0x21, 0x41],
        address_error: Status::ErrAddress,
        lenient_abort: false,
    };

    /// TF-A's `usb_dfu.c` on STM32MP: plain DFU, stays in DFU after
    /// manifesting an image (the host reads the phase next), and treats
    /// CLRSTATUS outside dfuERROR as an error like the ST stack it derives from.
    pub const TF_A: Dialect = Dialect {
        name: "TF-A",
        strict_clrstatus: true,
        manifestation_tolerant: true,
        will_detach: false,
        dfuse: false,
        get_commands: &[0x00, 0x21, 0x41],
        address_error: Status::ErrAddress,
        lenient_abort: false,
    };

    /// The functional descriptor this dialect implies.
    pub fn descriptor(&self, transfer_size: u16, detach_timeout_ms: u16) -> FunctionalDescriptor {
        let mut attributes = ATTR_CAN_DNLOAD | ATTR_CAN_UPLOAD;
        if self.manifestation_tolerant {
            attributes |= ATTR_MANIFESTATION_TOLERANT;
        }
        if self.will_detach {
            attributes |= ATTR_WILL_DETACH;
        }
        FunctionalDescriptor {
            attributes,
            detach_timeout_ms,
            transfer_size,
            dfu_version: if self.dfuse { 0x011A } else { 0x0110 },
        }
    }
}

/// One alternate setting: its name string and the memory it addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltConfig {
    /// The interface string (for DfuSe the memory-layout string itself).
    pub name: &'static str,
    /// The memory this alt addresses. A plain DFU alt writes its image from
    /// the layout's first address on, erasing sectors as it reaches them.
    pub layout: MemoryLayout,
}

impl AltConfig {
    /// An alt whose name is a memory-layout string (DfuSe, U-Boot, TF-A all
    /// use that form).
    pub fn from_layout(name: &'static str) -> Result<Self, MemoryLayoutError> {
        Ok(AltConfig {
            name,
            layout: MemoryLayout::parse(name)?,
        })
    }
}

/// Expected flash timings, used to tell the host how long to wait
/// (bwPollTimeout). Real completion still comes from the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFlashTiming {
    /// Erase time per KiB.
    pub erase_per_kib: Duration,
    /// Program time per KiB.
    pub program_per_kib: Duration,
    /// Smallest poll timeout reported while work is pending (also used
    /// once an operation has overrun its estimate).
    pub min_poll: Duration,
    /// Poll timeout reported in dfuMANIFEST.
    pub manifest: Duration,
}

impl DeviceFlashTiming {
    /// Rough STM32F4 figures: ~1 s per 128 KiB sector erase, ~4 ms per KiB
    /// programmed.
    pub const STM32F4: DeviceFlashTiming = DeviceFlashTiming {
        erase_per_kib: Duration::from_micros(8_000),
        program_per_kib: Duration::from_micros(4_000),
        min_poll: Duration::from_millis(1),
        manifest: Duration::from_millis(1),
    };
}

/// Everything [`super::DfuDevice`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Behavioural flags.
    pub dialect: Dialect,
    /// The DFU interface number (`wIndex` of class requests).
    pub interface: u16,
    /// wTransferSize: the fixed block size, also the DfuSe address stride.
    pub transfer_size: u16,
    /// wDetachTimeOut, ms.
    pub detach_timeout_ms: u16,
    /// Alternate settings, in alt-number order.
    pub alts: heapless::Vec<AltConfig, MAX_ALTS>,
    /// Flash timing estimates.
    pub timing: DeviceFlashTiming,
    /// Longest a flash operation may take before the device gives up on its
    /// completion and reports an error (a driver that never completes must
    /// not wedge the device in dfuDNBUSY).
    pub flash_timeout: Duration,
    /// The initial DfuSe address pointer, and where `:leave` jumps if no
    /// address was set.
    pub default_address: u32,
}

impl DeviceConfig {
    /// The STM32F405/407 system bootloader: internal flash at 0x08000000
    /// (4×16K, 1×64K, 7×128K) and option bytes at 0x1FFFC000, 2048-byte
    /// transfers.
    pub fn stm32f4_rom() -> Self {
        let mut alts = heapless::Vec::new();
        for name in [
            "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg",
            "@Option Bytes  /0x1FFFC000/01*016 e",
        ] {
            // Both strings are constants that parse; a failure is a bug here.
            let alt = AltConfig::from_layout(name).expect("built-in layout parses");
            let _ = alts.push(alt);
        }
        DeviceConfig {
            dialect: Dialect::ST_ROM,
            interface: 0,
            transfer_size: 2048,
            detach_timeout_ms: 255,
            alts,
            timing: DeviceFlashTiming::STM32F4,
            flash_timeout: Duration::from_secs(10),
            default_address: 0x0800_0000,
        }
    }

    /// The functional descriptor the device reports.
    pub fn descriptor(&self) -> FunctionalDescriptor {
        self.dialect
            .descriptor(self.transfer_size, self.detach_timeout_ms)
    }
}

/// A configuration the device core cannot run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// wTransferSize is 0 or above [`MAX_TRANSFER_SIZE`].
    TransferSize(u16),
    /// No alternate settings.
    NoAlts,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::TransferSize(s) => {
                write!(f, "wTransferSize {s} is outside 1..={MAX_TRANSFER_SIZE}")
            }
            ConfigError::NoAlts => f.write_str("no alternate settings"),
        }
    }
}
