//! The bootloader settings page (`nrf_dfu_settings_t`, settings version 2).
//!
//! The [`Settings`] codec is `no_std` and allocation-free so the device side can use it; the
//! Intel HEX generator matching `nrfutil settings generate` is behind the `std` feature.
//!
//! # Layout
//!
//! `#pragma pack(4)`, little-endian. The SDK's Makefiles build with `-fshort-enums`, so
//! `boot_validation_t { boot_validation_type_t type; uint8_t bytes[64]; }` is 65 bytes with a
//! one-byte `type`; nrfutil 6.1.7 (`bl_dfu_sett.py`) writes exactly that (type byte at 0x260,
//! bytes at 0x261, app entry at 0x2A1, boot-validation CRC over 0x260..=0x322). This module
//! follows that layout, which puts `peer_data` at 0x324, `adv_name` at 0x364 and makes the
//! structure 0x380 (896) bytes. A build with 4-byte enums would instead place the entries at
//! 0x260/0x2A4/0x2E8 and total 904 bytes; nrfutil's output would not fit such a bootloader.
//!
//! | Offset | Field |
//! |---|---|
//! | 0x000 | crc (CRC32 over `[0x004, 0x05C)`) |
//! | 0x004 | settings_version |
//! | 0x008 | app_version |
//! | 0x00C | bootloader_version |
//! | 0x010 | bank_layout |
//! | 0x014 | bank_current |
//! | 0x018 | bank_0 {image_size, image_crc, bank_code} |
//! | 0x024 | bank_1 |
//! | 0x030 | write_offset |
//! | 0x034 | sd_size |
//! | 0x038 | progress (32 bytes) |
//! | 0x058 | enter_buttonless_dfu |
//! | 0x05C | init_command\[512\] |
//! | 0x25C | boot_validation_crc (CRC32 over the three entries, 195 bytes) |
//! | 0x260 / 0x2A1 / 0x2E2 | boot_validation_{softdevice, app, bootloader} {u8 type, u8\[64\]} |
//! | 0x324 | peer_data\[64\] |
//! | 0x364 | adv_name\[28\] |

use dfukit_core::crc::crc32;

/// Settings layout version described by this module.
pub const SETTINGS_VERSION: u32 = 2;
/// Size of `nrf_dfu_settings_t` (version 2, `-fshort-enums`).
pub const SETTINGS_LEN: usize = 0x380;
/// Number of leading bytes nrfutil writes (everything up to the end of the boot-validation
/// entries).
pub const NRFUTIL_SETTINGS_BYTES: usize = 0x323;
/// Offset of `init_command`; the settings CRC covers `[4, OFFSET_INIT_COMMAND)`.
pub const OFFSET_INIT_COMMAND: usize = 0x5C;
/// Size of the stored init command.
pub const INIT_COMMAND_MAX_SIZE: usize = 512;
/// Offset of `boot_validation_crc`.
pub const OFFSET_BOOT_VALIDATION_CRC: usize = 0x25C;
/// Offset of the SoftDevice boot-validation entry.
pub const OFFSET_BOOT_VALIDATION_SD: usize = 0x260;
/// Offset of the application boot-validation entry.
pub const OFFSET_BOOT_VALIDATION_APP: usize = 0x2A1;
/// Offset of the bootloader boot-validation entry.
pub const OFFSET_BOOT_VALIDATION_BL: usize = 0x2E2;
/// Size of one boot-validation entry (one type byte plus 64 bytes).
pub const BOOT_VALIDATION_ENTRY_LEN: usize = 65;
/// Offset of `peer_data`.
pub const OFFSET_PEER_DATA: usize = 0x324;
/// Length of `peer_data`.
pub const PEER_DATA_LEN: usize = 64;
/// Offset of `adv_name`.
pub const OFFSET_ADV_NAME: usize = 0x364;
/// Length of `adv_name`.
pub const ADV_NAME_LEN: usize = 28;

/// nRF52840 flash page size.
pub const NRF52840_PAGE_SIZE: u32 = 4096;
/// nRF52840 settings page address.
pub const NRF52840_SETTINGS_ADDR: u32 = 0xFF000;
/// nRF52840 settings backup page address (MBR parameter page).
pub const NRF52840_BACKUP_ADDR: u32 = 0xFE000;

/// Bank codes (`nrf_dfu_bank_t.bank_code`).
pub mod bank_code {
    /// No valid image.
    pub const INVALID: u32 = 0x00;
    /// Valid application.
    pub const VALID_APP: u32 = 0x01;
    /// Valid SoftDevice.
    pub const VALID_SD: u32 = 0xA5;
    /// Valid bootloader.
    pub const VALID_BL: u32 = 0xAA;
    /// Valid SoftDevice + bootloader.
    pub const VALID_SD_BL: u32 = 0xAC;
    /// Valid external application.
    pub const VALID_EXT_APP: u32 = 0xB1;
}

/// `nrf_dfu_bank_t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    /// Image size in bytes.
    pub image_size: u32,
    /// CRC32 of the image.
    pub image_crc: u32,
    /// One of [`bank_code`].
    pub bank_code: u32,
}

/// `dfu_progress_t`. The last four words are a union with `update_start_address`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Size of the received init command.
    pub command_size: u32,
    /// Bytes of the init command received.
    pub command_offset: u32,
    /// CRC of the init command received so far.
    pub command_crc: u32,
    /// Size of the data object being received.
    pub data_object_size: u32,
    /// CRC of the firmware received (also `update_start_address`).
    pub firmware_image_crc: u32,
    /// CRC of the firmware at the last completed object.
    pub firmware_image_crc_last: u32,
    /// Firmware bytes received.
    pub firmware_image_offset: u32,
    /// Firmware bytes received at the last completed object.
    pub firmware_image_offset_last: u32,
}

impl Progress {
    /// The union view: where an update is being written (shares storage with
    /// `firmware_image_crc`).
    pub fn update_start_address(&self) -> u32 {
        self.firmware_image_crc
    }
}

/// `boot_validation_t` with a one-byte type (`-fshort-enums`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootValidationEntry {
    /// `boot_validation_type_t`: 0 none, 1 CRC, 2 SHA-256, 3 ECDSA P-256.
    pub kind: u8,
    /// CRC (little-endian u32), SHA-256 digest, or signature.
    pub bytes: [u8; 64],
}

impl Default for BootValidationEntry {
    fn default() -> Self {
        BootValidationEntry {
            kind: 0,
            bytes: [0; 64],
        }
    }
}

/// `nrf_dfu_settings_t`, settings version 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// CRC32 over `[4, 0x5C)`.
    pub crc: u32,
    /// Layout version (2).
    pub settings_version: u32,
    /// Application version.
    pub app_version: u32,
    /// Bootloader version.
    pub bootloader_version: u32,
    /// Bank layout (single/dual).
    pub bank_layout: u32,
    /// Current bank.
    pub bank_current: u32,
    /// Bank 0.
    pub bank_0: Bank,
    /// Bank 1.
    pub bank_1: Bank,
    /// Write offset of the current operation.
    pub write_offset: u32,
    /// SoftDevice size.
    pub sd_size: u32,
    /// DFU progress.
    pub progress: Progress,
    /// Buttonless DFU request flag.
    pub enter_buttonless_dfu: u32,
    /// Stored init command.
    pub init_command: [u8; INIT_COMMAND_MAX_SIZE],
    /// CRC32 over the three boot-validation entries.
    pub boot_validation_crc: u32,
    /// SoftDevice boot validation.
    pub boot_validation_softdevice: BootValidationEntry,
    /// Application boot validation.
    pub boot_validation_app: BootValidationEntry,
    /// Bootloader boot validation.
    pub boot_validation_bootloader: BootValidationEntry,
    /// BLE peer data (not covered by `crc`).
    pub peer_data: [u8; PEER_DATA_LEN],
    /// Advertising name (not covered by `crc`).
    pub adv_name: [u8; ADV_NAME_LEN],
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            crc: 0,
            settings_version: SETTINGS_VERSION,
            app_version: 0,
            bootloader_version: 0,
            bank_layout: 0,
            bank_current: 0,
            bank_0: Bank::default(),
            bank_1: Bank::default(),
            write_offset: 0,
            sd_size: 0,
            progress: Progress::default(),
            enter_buttonless_dfu: 0,
            init_command: [0; INIT_COMMAND_MAX_SIZE],
            boot_validation_crc: 0,
            boot_validation_softdevice: BootValidationEntry::default(),
            boot_validation_app: BootValidationEntry::default(),
            boot_validation_bootloader: BootValidationEntry::default(),
            peer_data: [0; PEER_DATA_LEN],
            adv_name: [0; ADV_NAME_LEN],
        }
    }
}

fn put(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = buf.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// A structure whose first word is the CRC-32 of its other bytes.
fn own_crc_ok(part: &[u8]) -> bool {
    let (crc, rest) = part.split_at(4);
    u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) == crc32(0, rest)
}

fn get_bytes<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = buf.get(at + i).copied().unwrap_or(0);
    }
    out
}

impl Settings {
    /// Serializes to the flash image of the structure. The padding byte at 0x323 is 0.
    pub fn to_bytes(&self) -> [u8; SETTINGS_LEN] {
        let mut b = [0u8; SETTINGS_LEN];
        put(&mut b, 0x00, self.crc);
        put(&mut b, 0x04, self.settings_version);
        put(&mut b, 0x08, self.app_version);
        put(&mut b, 0x0C, self.bootloader_version);
        put(&mut b, 0x10, self.bank_layout);
        put(&mut b, 0x14, self.bank_current);
        for (at, bank) in [(0x18, &self.bank_0), (0x24, &self.bank_1)] {
            put(&mut b, at, bank.image_size);
            put(&mut b, at + 4, bank.image_crc);
            put(&mut b, at + 8, bank.bank_code);
        }
        put(&mut b, 0x30, self.write_offset);
        put(&mut b, 0x34, self.sd_size);
        let p = &self.progress;
        let words = [
            p.command_size,
            p.command_offset,
            p.command_crc,
            p.data_object_size,
            p.firmware_image_crc,
            p.firmware_image_crc_last,
            p.firmware_image_offset,
            p.firmware_image_offset_last,
        ];
        for (i, w) in words.iter().enumerate() {
            put(&mut b, 0x38 + 4 * i, *w);
        }
        put(&mut b, 0x58, self.enter_buttonless_dfu);
        b[OFFSET_INIT_COMMAND..OFFSET_INIT_COMMAND + INIT_COMMAND_MAX_SIZE]
            .copy_from_slice(&self.init_command);
        put(&mut b, OFFSET_BOOT_VALIDATION_CRC, self.boot_validation_crc);
        for (at, e) in self.boot_validation_entries_at() {
            b[at] = e.kind;
            b[at + 1..at + BOOT_VALIDATION_ENTRY_LEN].copy_from_slice(&e.bytes);
        }
        b[OFFSET_PEER_DATA..OFFSET_PEER_DATA + PEER_DATA_LEN].copy_from_slice(&self.peer_data);
        b[OFFSET_ADV_NAME..OFFSET_ADV_NAME + ADV_NAME_LEN].copy_from_slice(&self.adv_name);
        b
    }

    fn boot_validation_entries_at(&self) -> [(usize, &BootValidationEntry); 3] {
        [
            (OFFSET_BOOT_VALIDATION_SD, &self.boot_validation_softdevice),
            (OFFSET_BOOT_VALIDATION_APP, &self.boot_validation_app),
            (OFFSET_BOOT_VALIDATION_BL, &self.boot_validation_bootloader),
        ]
    }

    /// Parses a settings page. Bytes beyond the end of `bytes` read as 0, so a shorter
    /// (e.g. version 1) page can be read too; nothing is validated (see [`Settings::crc_ok`]).
    pub fn from_bytes(bytes: &[u8]) -> Settings {
        let bank = |at: usize| Bank {
            image_size: get(bytes, at),
            image_crc: get(bytes, at + 4),
            bank_code: get(bytes, at + 8),
        };
        let entry = |at: usize| BootValidationEntry {
            kind: bytes.get(at).copied().unwrap_or(0),
            bytes: get_bytes::<64>(bytes, at + 1),
        };
        Settings {
            crc: get(bytes, 0x00),
            settings_version: get(bytes, 0x04),
            app_version: get(bytes, 0x08),
            bootloader_version: get(bytes, 0x0C),
            bank_layout: get(bytes, 0x10),
            bank_current: get(bytes, 0x14),
            bank_0: bank(0x18),
            bank_1: bank(0x24),
            write_offset: get(bytes, 0x30),
            sd_size: get(bytes, 0x34),
            progress: Progress {
                command_size: get(bytes, 0x38),
                command_offset: get(bytes, 0x3C),
                command_crc: get(bytes, 0x40),
                data_object_size: get(bytes, 0x44),
                firmware_image_crc: get(bytes, 0x48),
                firmware_image_crc_last: get(bytes, 0x4C),
                firmware_image_offset: get(bytes, 0x50),
                firmware_image_offset_last: get(bytes, 0x54),
            },
            enter_buttonless_dfu: get(bytes, 0x58),
            init_command: get_bytes::<INIT_COMMAND_MAX_SIZE>(bytes, OFFSET_INIT_COMMAND),
            boot_validation_crc: get(bytes, OFFSET_BOOT_VALIDATION_CRC),
            boot_validation_softdevice: entry(OFFSET_BOOT_VALIDATION_SD),
            boot_validation_app: entry(OFFSET_BOOT_VALIDATION_APP),
            boot_validation_bootloader: entry(OFFSET_BOOT_VALIDATION_BL),
            peer_data: get_bytes::<PEER_DATA_LEN>(bytes, OFFSET_PEER_DATA),
            adv_name: get_bytes::<ADV_NAME_LEN>(bytes, OFFSET_ADV_NAME),
        }
    }

    /// CRC32 over bytes `[4, 0x5C)` of the serialized settings (what `crc` must hold).
    pub fn compute_crc(&self) -> u32 {
        let b = self.to_bytes();
        crc32(0, &b[4..OFFSET_INIT_COMMAND])
    }

    /// True if `crc` matches [`Settings::compute_crc`]. 0xFFFFFFFF means "never written" and
    /// never matches.
    pub fn crc_ok(&self) -> bool {
        self.crc != 0xFFFF_FFFF && self.crc == self.compute_crc()
    }

    /// True when every part of the page that the bootloader relies on is
    /// whole: the main CRC, the boot-validation CRC, and the stored init
    /// packet against its running CRC. The SDK's main CRC stops at 0x5C, so a
    /// program cut past that point leaves a page whose CRC holds but whose
    /// init packet is torn; the other two checks catch that.
    pub fn is_intact(&self) -> bool {
        let p = &self.progress;
        let init_ok = (p.command_offset as usize) <= INIT_COMMAND_MAX_SIZE
            && p.command_offset <= p.command_size
            && (p.command_offset == 0
                || crc32(0, &self.init_command[..p.command_offset as usize]) == p.command_crc);
        self.crc_ok() && self.boot_validation_crc == self.compute_boot_validation_crc() && init_ok
    }

    /// True when the bonding data's own CRC holds: its first word is the
    /// CRC-32 of the rest (`nrf_dfu_settings_peer_data_is_valid`). A page
    /// with no bonding data (zeros, or erased) fails it.
    pub fn peer_data_valid(&self) -> bool {
        own_crc_ok(&self.peer_data)
    }

    /// True when the advertising name's own CRC holds, as for
    /// [`Settings::peer_data_valid`] (`nrf_dfu_settings_adv_name_is_valid`).
    pub fn adv_name_valid(&self) -> bool {
        own_crc_ok(&self.adv_name)
    }

    /// CRC32 over the three boot-validation entries (what `boot_validation_crc` must hold).
    pub fn compute_boot_validation_crc(&self) -> u32 {
        let b = self.to_bytes();
        crc32(
            0,
            &b[OFFSET_BOOT_VALIDATION_SD
                ..OFFSET_BOOT_VALIDATION_SD + 3 * BOOT_VALIDATION_ENTRY_LEN],
        )
    }

    /// Alias of [`Settings::compute_boot_validation_crc`].
    pub fn boot_validation_crc(&self) -> u32 {
        self.compute_boot_validation_crc()
    }

    /// Recomputes `boot_validation_crc` and then `crc`.
    pub fn update_crcs(&mut self) {
        self.boot_validation_crc = self.compute_boot_validation_crc();
        self.crc = self.compute_crc();
    }
}

#[cfg(feature = "std")]
pub use host::*;

#[cfg(feature = "std")]
mod host {
    use super::*;
    use crate::init_packet::ValidationType;
    use crate::package::firmware;
    use crate::package::keys;
    use dfukit_firmware::FirmwareError;
    use p256::ecdsa::SigningKey;
    use sha2::{Digest, Sha256};
    use std::path::PathBuf;

    /// Chip family (`--family`), deciding the default settings address and page size.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Family {
        /// nRF51 (settings at 0x3FC00, 1 KiB pages).
        Nrf51,
        /// nRF52832 (settings at 0x7F000).
        Nrf52,
        /// nRF52832-QFAB (settings at 0x3F000).
        Nrf52Qfab,
        /// nRF52810 (settings at 0x2F000).
        Nrf52810,
        /// nRF52840 (settings at 0xFF000).
        Nrf52840,
    }

    impl Family {
        /// Default settings page address.
        pub fn settings_address(self) -> u32 {
            match self {
                Family::Nrf51 => 0x3FC00,
                Family::Nrf52 => 0x7F000,
                Family::Nrf52Qfab => 0x3F000,
                Family::Nrf52810 => 0x2F000,
                Family::Nrf52840 => NRF52840_SETTINGS_ADDR,
            }
        }

        /// The `--family` spelling.
        pub fn name(self) -> &'static str {
            match self {
                Family::Nrf51 => "NRF51",
                Family::Nrf52 => "NRF52",
                Family::Nrf52Qfab => "NRF52QFAB",
                Family::Nrf52810 => "NRF52810",
                Family::Nrf52840 => "NRF52840",
            }
        }
    }

    /// Options of `settings generate`, named after nrfutil's.
    #[derive(Clone, Debug)]
    pub struct SettingsHexOptions {
        /// `--family`.
        pub family: Family,
        /// `--application`.
        pub application: Option<PathBuf>,
        /// `--application-version` (0 when absent, as nrfutil).
        pub application_version: Option<u32>,
        /// `--bootloader-version`.
        pub bootloader_version: u32,
        /// `--bl-settings-version` (1 or 2).
        pub bl_settings_version: u32,
        /// `--start-address` (default: the family's settings page).
        pub start_address: Option<u32>,
        /// `--no-backup`.
        pub no_backup: bool,
        /// `--backup-address` (default: settings address − 0x1000).
        pub backup_address: Option<u32>,
        /// `--app-boot-validation` (default CRC when an application is given, version 2).
        pub app_boot_validation: Option<ValidationType>,
        /// `--sd-boot-validation` (default CRC when a SoftDevice is given, version 2).
        pub sd_boot_validation: Option<ValidationType>,
        /// `--softdevice`.
        pub softdevice: Option<PathBuf>,
        /// `--key-file`, loaded (needed for ECDSA boot validation).
        pub key: Option<SigningKey>,
    }

    impl SettingsHexOptions {
        /// Options for `family` with the given bootloader version and settings version 2.
        pub fn new(family: Family, bootloader_version: u32) -> Self {
            SettingsHexOptions {
                family,
                application: None,
                application_version: None,
                bootloader_version,
                bl_settings_version: 2,
                start_address: None,
                no_backup: false,
                backup_address: None,
                app_boot_validation: None,
                sd_boot_validation: None,
                softdevice: None,
                key: None,
            }
        }
    }

    /// Why a settings hex could not be generated.
    #[derive(Debug, thiserror::Error)]
    pub enum SettingsError {
        /// A firmware file could not be loaded.
        #[error(transparent)]
        Firmware(#[from] FirmwareError),
        /// The options are inconsistent (nrfutil refuses the same combinations).
        #[error("invalid settings options: {reason}")]
        InvalidOptions {
            /// What is wrong.
            reason: String,
        },
    }

    /// The computed settings, as `generate_settings` returns them.
    #[derive(Clone, Debug)]
    pub struct GeneratedSettings {
        /// Settings page address.
        pub address: u32,
        /// Backup page address, `None` with `--no-backup`.
        pub backup_address: Option<u32>,
        /// The settings structure.
        pub settings: Settings,
        /// How many leading bytes of the structure are written (92 for version 1, 0x323 for
        /// version 2), before padding to a word with 0xFF.
        pub written_len: usize,
    }

    fn validation_entry(
        kind: ValidationType,
        image: &[u8],
        key: Option<&SigningKey>,
    ) -> Result<BootValidationEntry, SettingsError> {
        let mut e = BootValidationEntry {
            kind: kind.as_u32() as u8,
            bytes: [0; 64],
        };
        match kind {
            ValidationType::NoValidation => {}
            ValidationType::ValidateGeneratedCrc => {
                e.bytes[..4].copy_from_slice(&crc32(0, image).to_le_bytes())
            }
            // Plain digest order here (nrfutil reverses its reversed hash back).
            ValidationType::ValidateSha256 => e.bytes[..32].copy_from_slice(&Sha256::digest(image)),
            ValidationType::ValidateEcdsaP256Sha256 => {
                let key = key.ok_or_else(|| SettingsError::InvalidOptions {
                    reason: "--key-file is required for VALIDATE_ECDSA_P256_SHA256 boot validation"
                        .into(),
                })?;
                e.bytes.copy_from_slice(&keys::sign(key, image));
            }
        }
        Ok(e)
    }

    /// Computes the settings nrfutil's `settings generate` would write.
    pub fn generate_settings(
        opts: &SettingsHexOptions,
    ) -> Result<GeneratedSettings, SettingsError> {
        let invalid = |reason: &str| {
            Err(SettingsError::InvalidOptions {
                reason: reason.into(),
            })
        };
        if opts.bl_settings_version != 1 && opts.bl_settings_version != 2 {
            return invalid("--bl-settings-version must be 1 or 2");
        }
        if opts.application.is_some() && opts.application_version.is_none() {
            return invalid("--application-version is required with --application");
        }
        if opts.no_backup && opts.backup_address.is_some() {
            return invalid("--backup-address cannot be used with --no-backup");
        }
        if opts.bl_settings_version == 1
            && (opts.app_boot_validation.is_some() || opts.sd_boot_validation.is_some())
        {
            return invalid("bootloader settings version 1 does not support boot validation");
        }
        if opts.app_boot_validation.is_some() && opts.application.is_none() {
            return invalid("--application must be given with --app-boot-validation");
        }
        if opts.sd_boot_validation.is_some() && opts.softdevice.is_none() {
            return invalid("--softdevice must be given with --sd-boot-validation");
        }
        let v2 = opts.bl_settings_version == 2;
        let address = opts.start_address.unwrap_or(opts.family.settings_address());
        let mut s = Settings {
            settings_version: opts.bl_settings_version,
            app_version: opts.application_version.unwrap_or(0),
            bootloader_version: opts.bootloader_version,
            ..Settings::default()
        };
        if let Some(app) = &opts.application {
            let img = firmware::load(app)?;
            s.bank_0 = Bank {
                image_size: img.data.len() as u32,
                image_crc: crc32(0, &img.data),
                bank_code: bank_code::VALID_APP,
            };
            if v2 {
                let kind = opts
                    .app_boot_validation
                    .unwrap_or(ValidationType::ValidateGeneratedCrc);
                s.boot_validation_app = validation_entry(kind, &img.data, opts.key.as_ref())?;
            }
        }
        if let Some(sd) = &opts.softdevice {
            let img = firmware::load(sd)?;
            s.sd_size = img.data.len() as u32;
            if v2 {
                let kind = opts
                    .sd_boot_validation
                    .unwrap_or(ValidationType::ValidateGeneratedCrc);
                s.boot_validation_softdevice =
                    validation_entry(kind, &img.data, opts.key.as_ref())?;
            }
        }
        let written_len = if v2 {
            s.boot_validation_crc = s.compute_boot_validation_crc();
            NRFUTIL_SETTINGS_BYTES
        } else {
            OFFSET_INIT_COMMAND
        };
        s.crc = s.compute_crc();
        let backup_address =
            (!opts.no_backup).then(|| opts.backup_address.unwrap_or(address.wrapping_sub(0x1000)));
        Ok(GeneratedSettings {
            address,
            backup_address,
            settings: s,
            written_len,
        })
    }

    impl GeneratedSettings {
        /// The bytes written at each page: the structure's first `written_len` bytes, then
        /// 0xFF up to a multiple of 4.
        pub fn page_bytes(&self) -> Vec<u8> {
            let mut bytes = self.settings.to_bytes()[..self.written_len].to_vec();
            bytes.resize(bytes.len().next_multiple_of(4), 0xFF);
            bytes
        }

        /// Intel HEX text with the settings page and, unless disabled, its backup copy.
        pub fn to_hex(&self) -> String {
            let bytes = self.page_bytes();
            let mut segs: Vec<(u32, &[u8])> = vec![(self.address, &bytes)];
            if let Some(b) = self.backup_address {
                segs.push((b, &bytes));
            }
            dfukit_firmware::to_intel_hex(&segs)
        }

        /// A summary in the shape of nrfutil's `settings generate` report.
        pub fn summary(&self, file: &str, family: Family) -> String {
            let s = &self.settings;
            format!(
                "\nBootloader DFU Settings:\n* File:                     {file}\n* Family:                   {}\n* Start Address:            0x{:08X}\n* CRC:                      0x{:08X}\n* Settings Version:         0x{:08X} ({})\n* App Version:              0x{:08X} ({})\n* Bootloader Version:       0x{:08X} ({})\n* Bank Layout:              0x{:08X}\n* Current Bank:             0x{:08X}\n* Application Size:         0x{:08X} ({} bytes)\n* Application CRC:          0x{:08X}\n* Bank0 Bank Code:          0x{:08X}\n* Softdevice Size:          0x{:08X} ({} bytes)\n* Boot Validation CRC:      0x{:08X}\n* SD Boot Validation Type:  0x{:08X} ({})\n* App Boot Validation Type: 0x{:08X} ({})\n",
                family.name(),
                self.address,
                s.crc,
                s.settings_version,
                s.settings_version,
                s.app_version,
                s.app_version,
                s.bootloader_version,
                s.bootloader_version,
                s.bank_layout,
                s.bank_current,
                s.bank_0.image_size,
                s.bank_0.image_size,
                s.bank_0.image_crc,
                s.bank_0.bank_code,
                s.sd_size,
                s.sd_size,
                s.boot_validation_crc,
                s.boot_validation_softdevice.kind,
                s.boot_validation_softdevice.kind,
                s.boot_validation_app.kind,
                s.boot_validation_app.kind,
            )
        }
    }

    /// Intel HEX text identical to `nrfutil settings generate` for the same options (except
    /// ECDSA boot-validation signatures, which are randomized).
    pub fn generate_settings_hex(opts: &SettingsHexOptions) -> Result<String, SettingsError> {
        Ok(generate_settings(opts)?.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets() {
        let mut s = Settings {
            crc: 0x11111111,
            sd_size: 0x22222222,
            enter_buttonless_dfu: 0x33333333,
            boot_validation_crc: 0x44444444,
            ..Settings::default()
        };
        s.boot_validation_app.kind = 3;
        s.boot_validation_app.bytes[0] = 0x55;
        s.boot_validation_bootloader.bytes[63] = 0x66;
        s.peer_data[0] = 0x77;
        s.adv_name[27] = 0x88;
        s.init_command[0] = 0x99;
        let b = s.to_bytes();
        assert_eq!(b.len(), 896);
        assert_eq!(&b[0..4], &[0x11; 4]);
        assert_eq!(&b[4..8], &2u32.to_le_bytes());
        assert_eq!(&b[0x34..0x38], &[0x22; 4]);
        assert_eq!(&b[0x58..0x5C], &[0x33; 4]);
        assert_eq!(b[0x5C], 0x99);
        assert_eq!(&b[0x25C..0x260], &[0x44; 4]);
        assert_eq!(b[0x2A1], 3);
        assert_eq!(b[0x2A2], 0x55);
        assert_eq!(b[0x322], 0x66);
        assert_eq!(b[0x324], 0x77);
        assert_eq!(b[0x37F], 0x88);
        assert_eq!(Settings::from_bytes(&b), s);
    }

    #[test]
    fn crc_covers_header_only() {
        let mut s = Settings {
            app_version: 5,
            ..Settings::default()
        };
        s.bank_0 = Bank {
            image_size: 4096,
            image_crc: 0xDEADBEEF,
            bank_code: bank_code::VALID_APP,
        };
        s.update_crcs();
        assert!(s.crc_ok());
        let b = s.to_bytes();
        assert_eq!(s.crc, crc32(0, &b[4..0x5C]));
        assert_eq!(s.boot_validation_crc, crc32(0, &b[0x260..0x323]));
        // Changing the init command, peer data or adv name leaves the CRC valid.
        s.init_command[10] = 1;
        s.peer_data[3] = 1;
        s.adv_name[3] = 1;
        assert!(s.crc_ok());
        s.app_version = 6;
        assert!(!s.crc_ok());
        s.crc = 0xFFFF_FFFF;
        assert!(!s.crc_ok());
    }

    #[test]
    fn from_short_slice_reads_zeros() {
        let s = Settings::from_bytes(&[1, 0, 0, 0, 2]);
        assert_eq!(s.crc, 1);
        // A partial word reads as 0.
        assert_eq!(s.settings_version, 0);
        assert_eq!(s.app_version, 0);
    }
}
