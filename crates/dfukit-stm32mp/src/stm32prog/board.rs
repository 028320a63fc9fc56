//! What the device core asks of the board it runs on: RAM, the storage
//! devices and their geometry, OTP and PMIC, a log. Every operation is a
//! request that returns how long the hardware takes; the core does no I/O.

use super::flashlayout::{MediumId, UbootPartition};
use core::fmt;
use core::time::Duration;
use dfukit_usbdfu::wire::Status;

/// A device as U-Boot's `init_device` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// An SD card or eMMC (`struct mmc`, `struct blk_desc`).
    Mmc {
        /// Block size in bytes (`blksz`, `read_bl_len`).
        block_size: u64,
        /// Blocks of the user area (`lba`).
        blocks: u64,
        /// Erase group in blocks (`erase_grp_size`); partitions must be
        /// aligned on it, and a GPT reserves one at each end when it is
        /// larger than the GPT's 34 blocks.
        erase_group_blocks: u64,
        /// Size of each hardware boot partition in bytes
        /// (`capacity_boot`; 0 on an SD card).
        boot_size: u64,
    },
    /// A NAND, SPI-NAND or NOR (`struct mtd_info`).
    Mtd {
        /// Size in bytes.
        size: u64,
        /// Erase block size in bytes.
        erase_size: u64,
    },
    /// DDR (`gd->dram[0]`).
    Ram {
        /// First address.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
}

/// What the board knows of a partition already on a device, for the
/// coherency check of `init_device`: on an MMC that is not fully updated,
/// the GPT entry (`part_get_info`); on MTD devices, the partitions the
/// device tree declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExistingPartition {
    /// The board keeps no such table: the check is skipped.
    Unknown,
    /// There is a table, without this partition.
    Missing,
    /// The partition is there.
    Found {
        /// First byte.
        start: u64,
        /// Size in bytes.
        size: u64,
        /// Its name in the table (cut to 32 bytes, U-Boot's
        /// `PART_NAME_LEN`).
        name: heapless::String<32>,
    },
}

impl ExistingPartition {
    /// A partition found at `start`, `size` bytes, named `name` (cut to 32
    /// bytes on a character boundary).
    pub fn found(start: u64, size: u64, name: &str) -> Self {
        let mut kept = heapless::String::new();
        for c in name.chars() {
            if kept.push(c).is_err() {
                break;
            }
        }
        ExistingPartition::Found {
            start,
            size,
            name: kept,
        }
    }
}

/// What a [`Stm32mpBoard`] storage call returns.
pub type BoardResult<T, E> = Result<T, BoardStorageError<E>>;

/// A storage request that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardStorageError<E> {
    /// The device (or its image) is not there: DFU errTARGET, the phase is
    /// left as it is.
    Absent,
    /// The operation failed: DFU `status`, and phase 0xFF with
    /// "`name (0xID)`: `reason`".
    Failed {
        /// The DFU status the host sees.
        status: Status,
        /// Why, in the board's words.
        reason: E,
    },
}

/// One entry of the GPT stm32prog writes on a fully updated MMC (`gpt
/// write mmc N` in `create_gpt_partitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition<'a> {
    /// The layout row.
    pub partition: &'a UbootPartition,
    /// Partition type GUID, in textual byte order.
    pub type_guid: [u8; 16],
    /// Whether the entry is marked bootable (`System` rows).
    pub bootable: bool,
    /// The fixed unique GUID U-Boot gives it, if any (`rootfs` and the FIP
    /// banks); the board picks one otherwise, as `gpt write` generates one.
    pub partuuid: Option<[u8; 16]>,
}

/// The board under the device core (the simulator's image files, or real
/// hardware).
pub trait Stm32mpBoard {
    /// Why a storage operation failed, shown after the partition's name in
    /// the phase 0xFF message.
    type Error: fmt::Display;

    /// Stores `data` at `offset` of the RAM the firmware loads the current
    /// image to (SYSRAM for the FSBL, DDR for the FIP and the layout);
    /// what was stored at or after `offset` before is dropped.
    fn ram_write(&mut self, offset: u64, data: &[u8]);

    /// The bytes stored in that RAM since its last write at offset 0.
    fn ram(&self) -> &[u8];

    /// How long the ROM code reports dfuMANIFEST between accepting the
    /// FSBL and TF-A answering (its bwPollTimeout).
    fn fsbl_start_delay(&self) -> Duration;

    /// The device, if fitted.
    fn geometry(&self, medium: MediumId) -> Option<Geometry>;

    /// Partition `number` (from 1) already on `medium`.
    fn existing_partition(&mut self, medium: MediumId, number: u16) -> ExistingPartition;

    /// Erases the partition (a `D` row, `part_delete`).
    fn erase(&mut self, part: &UbootPartition) -> BoardResult<Duration, Self::Error>;

    /// Writes the GPT of an MMC: `entries` in partition-number order.
    fn write_gpt(&mut self, mmc: MediumId, entries: &[GptPartition<'_>])
        -> Result<(), Self::Error>;

    /// A download of the partition starts (its first block follows).
    fn begin_download(&mut self, part: &UbootPartition);

    /// Writes `data` at byte `pos` of the partition (inside it: the core
    /// checks the bounds).
    fn write(
        &mut self,
        part: &UbootPartition,
        pos: u64,
        data: &[u8],
    ) -> BoardResult<Duration, Self::Error>;

    /// The download of the partition ended: complete what is pending (a
    /// last NAND page) and make the data durable.
    fn end_download(&mut self, part: &UbootPartition) -> BoardResult<Duration, Self::Error>;

    /// Writes the first `len` bytes of the partition again, `at` bytes
    /// from its start, as one fresh sequential write (`Binary(N)` copies,
    /// `stm32prog_copy_fsbl`).
    fn copy_image(
        &mut self,
        part: &UbootPartition,
        len: u64,
        at: u64,
    ) -> BoardResult<Duration, Self::Error>;

    /// Reads the partition from byte `offset` into `buf` (inside it);
    /// returns the bytes read.
    fn read(
        &mut self,
        part: &UbootPartition,
        offset: u64,
        buf: &mut [u8],
    ) -> BoardResult<usize, Self::Error>;

    /// `mmc bootbus N 0 0 0; mmc partconf N 1 <boot> 0`: boot from
    /// hardware boot partition `boot` (1, 2) with boot acknowledge.
    fn select_boot_partition(&mut self, mmc: MediumId, boot: u8) -> Result<(), Self::Error>;

    /// Reads the OTP words from byte `offset` (inside the OTP area).
    fn otp_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Programs OTP words from byte `offset` (fuses only go from 0 to 1).
    fn otp_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Reads the PMIC NVM from byte `offset`.
    fn pmic_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes the PMIC NVM from byte `offset`.
    fn pmic_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// One line of what the firmware reports (its console).
    fn log(&mut self, line: fmt::Arguments<'_>);
}
