//! What a simulated STM32MP157 is built with (`board.json`).

use serde::{Deserialize, Serialize};
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The eMMC on SDMMC2 (`mmc1` in layouts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmmcConfig {
    /// User-area size in bytes.
    pub size: u64,
    /// Size of each hardware boot partition (boot1, boot2) in bytes.
    pub boot_size: u64,
    /// Erase-group size in bytes: partition offsets must be multiples of
    /// it (U-Boot's "not aligned address").
    pub erase_group: u64,
}

impl Default for EmmcConfig {
    /// 4 GiB user area, 4 MiB boot partitions, 512 KiB erase groups (the
    /// EV1's 4 GB eMMC; ST's eMMC layouts place partitions on 512 KiB).
    fn default() -> Self {
        EmmcConfig {
            size: 4 * GIB,
            boot_size: 4 * MIB,
            erase_group: 512 * KIB,
        }
    }
}

/// The SD card on SDMMC1 (`mmc0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SdCardConfig {
    /// Card size in bytes.
    pub size: u64,
}

impl Default for SdCardConfig {
    /// 8 GiB: ST's SD-card sample layout puts `userfs` at 0x105984400,
    /// above 4 GiB.
    fn default() -> Self {
        SdCardConfig { size: 8 * GIB }
    }
}

/// The parallel NAND on the FMC (`nand0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NandConfig {
    /// Size in bytes.
    pub size: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Erase-block size in bytes.
    pub block_size: u64,
    /// Blocks marked bad at the factory (block numbers).
    pub factory_bad_blocks: Vec<u64>,
}

impl Default for NandConfig {
    /// The EV1's 4-256 NAND: 4 KiB pages, 256 KiB blocks, 512 MiB, no
    /// factory bad block.
    fn default() -> Self {
        NandConfig {
            size: 512 * MIB,
            page_size: 4 * KIB,
            block_size: 256 * KIB,
            factory_bad_blocks: Vec::new(),
        }
    }
}

/// The QSPI NOR (`nor0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NorConfig {
    /// Size in bytes.
    pub size: u64,
    /// Sector (erase unit) size in bytes.
    pub sector_size: u64,
}

impl Default for NorConfig {
    /// 64 MiB with 64 KiB sectors (the EV1's two 512 Mbit QSPI parts are
    /// used as one).
    fn default() -> Self {
        NorConfig {
            size: 64 * MIB,
            sector_size: 64 * KIB,
        }
    }
}

/// How long storage operations take. Typical datasheet figures for an
/// eMMC 5.1 part (sequential write), an SLC 4 Gbit NAND with 4 KiB pages
/// (tPROG, tBERS) and a serial NOR such as the MX25L51245G (tPP for a
/// 256-byte page, tSE for a 64 KiB block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageTiming {
    /// eMMC and SD sequential write speed, bytes per second.
    pub mmc_write_bytes_per_s: u64,
    /// eMMC and SD erase (discard) speed, bytes per second.
    pub mmc_erase_bytes_per_s: u64,
    /// NAND page program time (one page), µs.
    pub nand_page_program_us: u64,
    /// NAND block erase time, µs.
    pub nand_block_erase_us: u64,
    /// NOR page program time (256 bytes), µs.
    pub nor_page_program_us: u64,
    /// NOR sector erase time, µs.
    pub nor_sector_erase_us: u64,
}

impl Default for StorageTiming {
    /// 40 MB/s eMMC writes and 1 GB/s discards; NAND 300 µs per page and
    /// 3.5 ms per block erase; NOR 0.7 ms per 256-byte page and 0.5 s per
    /// 64 KiB sector.
    fn default() -> Self {
        StorageTiming {
            mmc_write_bytes_per_s: 40_000_000,
            mmc_erase_bytes_per_s: 1_000_000_000,
            nand_page_program_us: 300,
            nand_block_erase_us: 3_500,
            nor_page_program_us: 700,
            nor_sector_erase_us: 500_000,
        }
    }
}

impl StorageTiming {
    /// Everything instant (`flash_timing` off).
    pub fn instant() -> Self {
        StorageTiming {
            mmc_write_bytes_per_s: 0,
            mmc_erase_bytes_per_s: 0,
            nand_page_program_us: 0,
            nand_block_erase_us: 0,
            nor_page_program_us: 0,
            nor_sector_erase_us: 0,
        }
    }

    /// Time to write `len` bytes to an MMC (0 bytes/s = instant).
    pub fn mmc_write(&self, len: u64) -> Duration {
        per_rate(len, self.mmc_write_bytes_per_s)
    }

    /// Time to discard `len` bytes of an MMC.
    pub fn mmc_erase(&self, len: u64) -> Duration {
        per_rate(len, self.mmc_erase_bytes_per_s)
    }

    /// One NAND page program.
    pub fn nand_page_program(&self) -> Duration {
        Duration::from_micros(self.nand_page_program_us)
    }

    /// One NAND block erase.
    pub fn nand_block_erase(&self) -> Duration {
        Duration::from_micros(self.nand_block_erase_us)
    }

    /// One NOR page program.
    pub fn nor_page_program(&self) -> Duration {
        Duration::from_micros(self.nor_page_program_us)
    }

    /// One NOR sector erase.
    pub fn nor_sector_erase(&self) -> Duration {
        Duration::from_micros(self.nor_sector_erase_us)
    }
}

fn per_rate(len: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros((u128::from(len) * 1_000_000 / u128::from(rate)) as u64)
}

/// A fault switch that reproduces a field failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Stm32mp1Fault {
    /// After the ROM hands over to the FSBL, every control request goes
    /// unanswered: TF-A hung with the USB core still clocked (ST community
    /// report "A dfu error occurs when downloading an image").
    TfaNoUsb,
    /// After the DETACH that follows the flashlayout, U-Boot leaves the bus
    /// and never comes back ("unable to reconnect the target device" on
    /// boards without VBUS sensing).
    UbootNoReconnect,
    /// Every NAND block erase after the first `after` fails; the block is
    /// marked bad and skipped, until the partition runs out of good blocks.
    NandEraseFailure {
        /// Erases that succeed first.
        after: u32,
    },
}

/// What the board is built with; stored as `board.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stm32mp1Config {
    /// The eMMC (`mmc1`), if fitted.
    pub emmc: Option<EmmcConfig>,
    /// The SD card (`mmc0`), if inserted.
    pub sdcard: Option<SdCardConfig>,
    /// The NAND (`nand0`), if fitted.
    pub nand: Option<NandConfig>,
    /// The NOR (`nor0`), if fitted.
    pub nor: Option<NorConfig>,
    /// Model storage timing (off: everything completes at once).
    pub flash_timing: bool,
    /// The timing model used when `flash_timing` is on.
    pub timing: StorageTiming,
    /// Fault switch, if any.
    pub fault: Option<Stm32mp1Fault>,
    /// USB serial number string.
    pub serial: String,
    /// How long the board is off the bus between two USB personalities, ms.
    pub reenumerate_delay_ms: u64,
    /// ROM → TF-A: how long the ROM reports dfuMANIFEST (its bwPollTimeout)
    /// before the FSBL answers, ms.
    pub tfa_start_delay_ms: u64,
}

impl Default for Stm32mp1Config {
    /// An STM32MP157F-EV1: eMMC, SD card, NAND and NOR, timing on, no fault.
    fn default() -> Self {
        Stm32mp1Config {
            emmc: Some(EmmcConfig::default()),
            sdcard: Some(SdCardConfig::default()),
            nand: Some(NandConfig::default()),
            nor: Some(NorConfig::default()),
            flash_timing: true,
            timing: StorageTiming::default(),
            fault: None,
            serial: "004A00323037511238363934".into(),
            reenumerate_delay_ms: 300,
            tfa_start_delay_ms: 100,
        }
    }
}

impl Stm32mp1Config {
    /// The board with no storage at all (tests add what they need).
    pub fn bare() -> Self {
        Stm32mp1Config {
            emmc: None,
            sdcard: None,
            nand: None,
            nor: None,
            ..Stm32mp1Config::default()
        }
    }

    /// The timing in effect.
    pub fn effective_timing(&self) -> StorageTiming {
        if self.flash_timing {
            self.timing
        } else {
            StorageTiming::instant()
        }
    }

    /// [`Stm32mp1Config::reenumerate_delay_ms`] as a duration.
    pub fn reenumerate_delay(&self) -> Duration {
        Duration::from_millis(self.reenumerate_delay_ms)
    }

    /// [`Stm32mp1Config::tfa_start_delay_ms`] as a duration.
    pub fn tfa_start_delay(&self) -> Duration {
        Duration::from_millis(self.tfa_start_delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_and_round_trip() {
        let cfg = Stm32mp1Config {
            fault: Some(Stm32mp1Fault::NandEraseFailure { after: 3 }),
            ..Stm32mp1Config::default()
        };
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            v["fault"],
            serde_json::json!({"kind": "nand-erase-failure", "after": 3})
        );
        assert_eq!(v["nand"]["block_size"], 256 * 1024);
        let back: Stm32mp1Config = serde_json::from_value(v).unwrap();
        assert_eq!(back, cfg);
        let f: Stm32mp1Fault = serde_json::from_str(r#"{"kind":"tfa-no-usb"}"#).unwrap();
        assert_eq!(f, Stm32mp1Fault::TfaNoUsb);
        let f: Stm32mp1Fault = serde_json::from_str(r#"{"kind":"uboot-no-reconnect"}"#).unwrap();
        assert_eq!(f, Stm32mp1Fault::UbootNoReconnect);
        // Missing fields take the EV1 defaults; null removes a device.
        let c: Stm32mp1Config = serde_json::from_str(r#"{"nand": null}"#).unwrap();
        assert_eq!(c.nand, None);
        assert_eq!(c.emmc, Some(EmmcConfig::default()));
        assert_eq!(c.reenumerate_delay(), Duration::from_millis(300));
    }

    #[test]
    fn timing_model() {
        let t = StorageTiming::default();
        assert_eq!(t.mmc_write(40_000_000), Duration::from_secs(1));
        assert_eq!(StorageTiming::instant().mmc_write(1 << 30), Duration::ZERO);
        assert_eq!(t.nand_block_erase(), Duration::from_micros(3_500));
    }
}
