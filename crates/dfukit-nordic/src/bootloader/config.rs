//! What a bootloader build fixes: memory map, keys, versions, timeouts.

use core::time::Duration;

/// Where bank 1 (the update cache) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bank1Location {
    /// In internal flash after the current application (dual bank), or over
    /// it when the image does not fit (single bank), as the SDK does.
    Internal,
    /// In external NOR flash reached through QSPI (the SDK has no such mode).
    External(ExternalBank),
}

/// An external NOR bank in the device's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalBank {
    /// First address (the QSPI XIP window on nRF52840: 0x1200_0000).
    pub base: u32,
    /// Bytes available for the update cache.
    pub size: u32,
    /// Sector erase size: 512 B to 4 KiB, dividing 4096 (a data object
    /// is erased with at most eight erases).
    pub erase_size: u32,
    /// Page program size; a program never crosses such a page.
    pub program_page: u32,
}

/// The internal flash map the bootloader was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalLayout {
    /// Flash page (erase unit) size.
    pub page_size: u32,
    /// Smallest program unit; writes are aligned and sized to it.
    pub write_unit: u32,
    /// Start of bank 0: the end of the SoftDevice, or the MBR when there is none.
    pub app_start: u32,
    /// First address above the application area (bootloader start minus the
    /// reserved application data pages).
    pub app_end: u32,
    /// Start of the bootloader region (it ends at the settings backup page).
    pub bootloader_start: u32,
    /// The settings page.
    pub settings_addr: u32,
    /// The settings backup page (the MBR parameters page).
    pub backup_addr: u32,
}

impl InternalLayout {
    /// nRF52840 with S140 7.x (MBR + SoftDevice end at 0x27000), the BLE
    /// bootloader at 0xF8000 and the SDK's default three pages of
    /// application data (`NRF_DFU_APP_DATA_AREA_SIZE` = 12288).
    pub const NRF52840_S140: InternalLayout = InternalLayout {
        page_size: 4096,
        write_unit: 4,
        app_start: 0x0002_7000,
        app_end: 0x000F_8000 - 3 * 4096,
        bootloader_start: 0x000F_8000,
        settings_addr: 0x000F_F000,
        backup_addr: 0x000F_E000,
    };

    /// The application area size.
    pub fn app_area(&self) -> u32 {
        self.app_end - self.app_start
    }

    /// The SoftDevice region: from the end of the MBR to bank 0. A new
    /// SoftDevice must fit in it, since bank 0 stays where it was built.
    pub fn softdevice_region(&self) -> (u32, u32) {
        (MBR_SIZE, self.app_start - MBR_SIZE)
    }

    /// The bootloader region: start and size.
    pub fn bootloader_region(&self) -> (u32, u32) {
        (
            self.bootloader_start,
            self.backup_addr - self.bootloader_start,
        )
    }
}

/// Size of the Master Boot Record at address 0 (`MBR_SIZE`): the
/// SoftDevice starts right after it.
pub const MBR_SIZE: u32 = 0x1000;

/// Where the SoftDevice information structure starts in a SoftDevice image
/// (`SOFTDEVICE_INFO_STRUCT_OFFSET`, nrf_sdm.h).
const SD_INFO_OFFSET: u32 = 0x2000;
/// `SD_MAGIC_NUMBER_VALUE`, at `SD_INFO_OFFSET + 4`.
pub const SD_MAGIC: u32 = 0x51B1_E5DB;

impl SoftDevice {
    /// Offset of the magic number in a SoftDevice image.
    pub const MAGIC_OFFSET: u32 = SD_INFO_OFFSET + 4;
    /// Offset of the firmware id (a `u16`) in a SoftDevice image.
    pub const FWID_OFFSET: u32 = SD_INFO_OFFSET + 0xC;
    /// Bytes an image needs to hold the information structure up to the id.
    pub const MIN_IMAGE: u32 = SD_INFO_OFFSET + 0x10;

    /// Reads the information structure of the SoftDevice image at `base`
    /// (`SD_MAGIC_NUMBER_GET`, `SD_FWID_GET`): `None` without the magic.
    pub fn read(mem: &mut impl dfukit_core::ReadFlash, base: u32) -> Option<SoftDevice> {
        let mut w = [0u8; 4];
        mem.read(base + Self::MAGIC_OFFSET, &mut w).ok()?;
        if u32::from_le_bytes(w) != SD_MAGIC {
            return None;
        }
        mem.read(base + Self::FWID_OFFSET, &mut w).ok()?;
        Some(SoftDevice {
            fwid: u16::from_le_bytes([w[0], w[1]]),
        })
    }
}

/// A SoftDevice present on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftDevice {
    /// Its firmware id, as listed in `sd_req`.
    pub fwid: u16,
}

/// What HARDWARE_VERSION reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardwareInfo {
    /// Part number.
    pub part: u32,
    /// Variant code.
    pub variant: u32,
    /// Flash size.
    pub rom_size: u32,
    /// RAM size.
    pub ram_size: u32,
}

impl HardwareInfo {
    /// nRF52840 QIAA: 1 MiB flash, 256 KiB RAM.
    pub const NRF52840: HardwareInfo = HardwareInfo {
        part: 0x52840,
        variant: 0x4141_4141, // "AAAA"
        rom_size: 0x10_0000,
        ram_size: 0x4_0000,
    };
}

/// When the bootloader stays in DFU mode rather than starting the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterDfu {
    /// Always (the DFU button is held): the board waits for an update.
    Always,
    /// Only when there is no valid application.
    WhenNoValidApp,
}

/// When the bootloader counts a write, and what its answers describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// dfukit's core: a write counts once the flash reports it stored, a
    /// request is answered once the flash work queued before it is done,
    /// and a started flash operation has a deadline
    /// ([`BootloaderConfig::flash_timeout`]). An offset or CRC the device
    /// reports describes bytes in flash.
    Stored,
    /// The nRF5 SDK's request handler as the nRF52 user report's port ran
    /// it: a write counts when it is handed to the flash
    /// (`on_data_obj_write_request`), requests are answered in arrival
    /// order without waiting for the flash (the port's QSPI writes bypass
    /// `nrf_fstorage`, so EXECUTE does not wait either), and a receive
    /// buffer returns to its pool only in the completion callback, which
    /// has no deadline. A driver that never calls back leaks every buffer,
    /// and every later write is dropped. Kept to reproduce that failure; do
    /// not build a bootloader this way.
    Received,
}

/// The build-time configuration of the bootloader.
#[derive(Debug, Clone)]
pub struct BootloaderConfig {
    /// Public key that init packets must be signed with; `None` accepts
    /// unsigned packets (an open bootloader).
    pub public_key: Option<p256::ecdsa::VerifyingKey>,
    /// The hardware version init packets must name.
    pub hw_version: u32,
    /// The SoftDevice the build expects when flash holds no SoftDevice
    /// information structure after the MBR (a board image without the
    /// SoftDevice programmed); when flash holds one, its id wins.
    pub softdevice: Option<SoftDevice>,
    /// The internal flash map.
    pub layout: InternalLayout,
    /// Where updates are cached.
    pub bank1: Bank1Location,
    /// The bootloader's own version, recorded in blank settings; after a
    /// bootloader update the settings hold the new one.
    pub bootloader_version: u32,
    /// Serial MTU reported by MTU_GET: the largest SLIP-encoded frame.
    pub mtu: u16,
    /// How long a started flash operation may take before its completion is
    /// declared lost and reported. Bounded so that a silent driver becomes an
    /// error the host can name instead of a wedged link.
    pub flash_timeout: Duration,
    /// Reset after this long without DFU traffic (SDK default 120 s).
    pub inactivity_timeout: Duration,
    /// Persist transfer progress after every executed data object, so that a
    /// reset resumes the data instead of restarting it (costs two page erases
    /// per object; the SDK's default is off).
    pub save_progress_in_flash: bool,
    /// Whether to stay in DFU mode.
    pub enter_dfu: EnterDfu,
    /// HARDWARE_VERSION answer.
    pub hardware: HardwareInfo,
    /// What answers describe ([`Answers::Stored`] unless reproducing the
    /// SDK's failure).
    pub answers: Answers,
}

impl BootloaderConfig {
    /// An nRF52840 with S140 7.2.0 and the given key, bank 1 where asked.
    pub fn nrf52840(public_key: Option<p256::ecdsa::VerifyingKey>, bank1: Bank1Location) -> Self {
        BootloaderConfig {
            public_key,
            hw_version: 52,
            softdevice: Some(SoftDevice { fwid: 0x0100 }),
            layout: InternalLayout::NRF52840_S140,
            bank1,
            bootloader_version: 1,
            mtu: 2051,
            flash_timeout: Duration::from_millis(1000),
            inactivity_timeout: Duration::from_secs(120),
            save_progress_in_flash: false,
            enter_dfu: EnterDfu::Always,
            hardware: HardwareInfo::NRF52840,
            answers: Answers::Stored,
        }
    }

    /// The MX25R6435F on the nRF52840 DK's QSPI pins, as bank 1.
    pub const MX25R6435F_BANK: ExternalBank = ExternalBank {
        base: 0x1200_0000,
        size: 8 * 1024 * 1024,
        erase_size: 4096,
        program_page: 256,
    };
}
