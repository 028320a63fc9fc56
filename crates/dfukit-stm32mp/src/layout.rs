//! STM32MP1 flashlayout (`.tsv`) parser and validator.
//!
//! A flashlayout tells STM32CubeProgrammer and U-Boot's `stm32prog` what to
//! write where. Each non-comment line has the tab-separated columns
//! `Opt Id Name Type IP Offset Binary`. The rules below follow U-Boot's
//! `arch/arm/mach-stm32mp/cmd_stm32prog/stm32prog.c` (functions named in
//! brackets) so a layout accepted here is accepted by the board, plus a few
//! host-side checks U-Boot cannot do (the binaries exist and fit).
//!
//! Two stages:
//!
//! * [`parse`] checks the text alone: the per-column syntax
//!   (`parse_option`, `parse_id`, `parse_name`, `parse_type`, `parse_ip`,
//!   `parse_offset`, `parse_flash_layout`) and the cross-row rules of
//!   `treat_partition_list` (IP `none` rows not selected, unique Ids, at most
//!   5 devices), plus the device-independent rules of `init_device`
//!   (`Binary(N)` only for NAND `fsbl*` rows, `boot1`/`boot2` only on MMC).
//! * [`check`] checks each device: offsets strictly increasing in file order,
//!   aligned, clear of the GPT on MMC, inside the device when its size is
//!   known (`init_device`), each row that downloads something naming a
//!   binary, and each binary present and small enough for its partition
//!   (for `Binary(N)`, for one N-th of it).
//!
//! [`parse_bytes`] accepts the file as U-Boot does: plain text, or text
//! wrapped in an STM32 image header whose checksum must match
//! (`stm32prog_header_check` in `parse_flash_layout`). [`load`] reads a
//! file, decodes it with the same rules and runs both stages, reporting
//! every error found (not just the first, unlike U-Boot) with its file,
//! line and column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::image::{self, ImageError};

/// Highest Id allowed in a layout (`PHASE_LAST_USER`); 0xF1.. are virtual
/// alternate settings (command, OTP, PMIC, ...).
pub const MAX_ID: u8 = 0xF0;
/// First user-partition Id (`PHASE_FIRST_USER`).
pub const FIRST_USER_ID: u8 = 0x10;
/// Longest partition name U-Boot accepts (`char name[16 + 1]`).
pub const MAX_NAME_LEN: usize = 16;
/// Most devices one layout may address (`STM32PROG_MAX_DEV`).
pub const MAX_DEVICES: usize = 5;
/// Most partition rows U-Boot accepts (`part_list_size > PHASE_LAST_USER`
/// is rejected with "too many partition").
pub const MAX_PARTITIONS: usize = MAX_ID as usize;
/// Blocks reserved for a GPT at each end of an MMC device
/// (`GPT_HEADER_SZ`: protective MBR + header + 32 blocks of entries).
pub const GPT_HEADER_BLOCKS: u64 = 34;
/// MMC block size assumed by U-Boot's GPT handling.
pub const MMC_BLOCK_SIZE: u64 = 512;

const COL_OPT: usize = 0;
const COL_ID: usize = 1;
const COL_NAME: usize = 2;
const COL_TYPE: usize = 3;
const COL_IP: usize = 4;
const COL_OFFSET: usize = 5;
const COL_BINARY: usize = 6;

/// The `Opt` column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opt {
    /// `P`: the partition is selected (created and, unless `E`, written).
    pub program: bool,
    /// `E`: create the partition empty; nothing is downloaded for it.
    pub empty: bool,
    /// `D`: erase the partition before use.
    pub delete: bool,
    /// `-`: the row is not selected (RAM-loaded boot stages on IP `none`,
    /// or partitions kept as they are on a partial update).
    pub skip: bool,
}

impl Opt {
    /// Whether the host downloads a binary for this row (`P` without `E`),
    /// as `stm32prog_next_phase` selects rows.
    pub fn downloads(&self) -> bool {
        self.program && !self.empty
    }
}

/// The `Type` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartType {
    /// `Binary` or `Binary(N)`: raw data; `copies` > 1 only for NAND FSBL
    /// rows, where U-Boot duplicates the image into the following blocks.
    Binary {
        /// Number of copies (`N` in `Binary(N)`, 1 for plain `Binary`).
        copies: u32,
    },
    /// `FIP`: a TF-A firmware image package.
    Fip,
    /// `FWU_MDATA`: firmware-update metadata.
    FwuMdata,
    /// `ENV`: the U-Boot environment.
    Env,
    /// `System`: a bootable file system (GPT legacy-bootable attribute).
    System,
    /// `ESP`: an EFI system partition.
    Esp,
    /// `FileSystem`: any other file system.
    FileSystem,
    /// `RawImage`: the whole device, written from offset 0.
    RawImage,
}

impl PartType {
    /// The GPT partition type GUID U-Boot gives this type when it writes
    /// the GPT of a fully updated MMC device (`create_gpt_partitions`):
    /// `Binary` → Linux reserved, `FIP` and `FWU_MDATA` → their own GUIDs,
    /// `ENV` → `u-boot-env`, `ESP` → `system` (EFI system partition),
    /// everything else → `linux` (Linux file-system data). `RawImage` rows
    /// get no GPT entry, hence `None`.
    pub fn gpt_type_guid(&self) -> Option<Uuid> {
        Some(match self {
            PartType::Binary { .. } => uuid::uuid!("8DA63339-0007-60C0-C436-083AC8230908"),
            PartType::Fip => uuid::uuid!("19D5DF83-11B0-457B-BE2C-7559C13142A5"),
            PartType::FwuMdata => uuid::uuid!("8a7a84a0-8387-40f6-ab41-a8b9a5a60d23"),
            PartType::Env => uuid::uuid!("3de21764-95bd-54bd-a5c3-4abe786f38a8"),
            PartType::Esp => uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
            PartType::System | PartType::FileSystem => {
                uuid::uuid!("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
            }
            PartType::RawImage => return None,
        })
    }

    /// Whether U-Boot marks the GPT entry bootable (only `System`).
    pub fn bootable(&self) -> bool {
        matches!(self, PartType::System)
    }
}

impl fmt::Display for PartType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartType::Binary { copies: 1 } => f.write_str("Binary"),
            PartType::Binary { copies } => write!(f, "Binary({copies})"),
            PartType::Fip => f.write_str("FIP"),
            PartType::FwuMdata => f.write_str("FWU_MDATA"),
            PartType::Env => f.write_str("ENV"),
            PartType::System => f.write_str("System"),
            PartType::Esp => f.write_str("ESP"),
            PartType::FileSystem => f.write_str("FileSystem"),
            PartType::RawImage => f.write_str("RawImage"),
        }
    }
}

/// The kind of device in the `IP` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpKind {
    /// `none`: not written to a device (boot stages loaded to RAM by the
    /// ROM code and TF-A).
    None,
    /// `mmcN`: SD card or eMMC.
    Mmc,
    /// `norN`: SPI NOR.
    Nor,
    /// `nandN`: parallel NAND (FMC).
    Nand,
    /// `spi-nandN`: SPI NAND.
    SpiNand,
    /// `ram`: DRAM; offsets are addresses.
    Ram,
}

/// The `IP` column: device kind and instance (the single digit after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ip {
    /// Device kind.
    pub kind: IpKind,
    /// Device number (0 for `none` and `ram`).
    pub instance: u8,
}

impl Ip {
    /// Whether this is a flash device U-Boot partitions (MMC or MTD).
    pub fn is_flash(&self) -> bool {
        matches!(
            self.kind,
            IpKind::Mmc | IpKind::Nor | IpKind::Nand | IpKind::SpiNand
        )
    }

    /// Erase-unit size assumed when the real one is not given: the smallest
    /// value the device kind can have, so a misalignment reported with it
    /// is certain. MMC: one 512-byte block (SD cards; eMMC erase groups are
    /// larger, pass them in [`DeviceGeometry::erase_size`]). NOR: 4 KiB
    /// sectors. NAND and SPI NAND: 128 KiB blocks (2 KiB pages × 64, the
    /// smallest on STM32MP boards; ST's 4-256 layouts use 256 KiB).
    pub fn default_erase_size(&self) -> u64 {
        match self.kind {
            IpKind::Mmc => MMC_BLOCK_SIZE,
            IpKind::Nor => 4 * 1024,
            IpKind::Nand | IpKind::SpiNand => 128 * 1024,
            IpKind::None | IpKind::Ram => 1,
        }
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, numbered) = match self.kind {
            IpKind::None => ("none", false),
            IpKind::Ram => ("ram", false),
            IpKind::Mmc => ("mmc", true),
            IpKind::Nor => ("nor", true),
            IpKind::Nand => ("nand", true),
            IpKind::SpiNand => ("spi-nand", true),
        };
        if numbered {
            write!(f, "{name}{}", self.instance)
        } else {
            f.write_str(name)
        }
    }
}

/// The `Offset` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// A byte offset in the device (or an address for `ram`).
    Bytes(u64),
    /// `boot1`: the first eMMC hardware boot partition.
    Boot1,
    /// `boot2`: the second eMMC hardware boot partition.
    Boot2,
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offset::Bytes(b) => write!(f, "{b:#x}"),
            Offset::Boot1 => f.write_str("boot1"),
            Offset::Boot2 => f.write_str("boot2"),
        }
    }
}

/// What an Id means, from the ranges in meta-st's `flashlayout-stm32mp`
/// bbclass and U-Boot's `PHASE_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdClass {
    /// 0x00: the flashlayout itself.
    FlashLayout,
    /// 0x01: the FSBL (TF-A) loaded by the ROM code.
    Fsbl,
    /// 0x03: the SSBL / FIP loaded by TF-A.
    Ssbl,
    /// 0x02 and 0x04–0x0F: boot partitions (images with an STM32 header).
    Boot,
    /// 0x10–0xF0: user partitions.
    User,
    /// Above 0xF0: virtual alternate settings, not allowed in a layout.
    Reserved,
}

impl IdClass {
    /// The class of `id`.
    pub fn of(id: u8) -> IdClass {
        match id {
            0x00 => IdClass::FlashLayout,
            0x01 => IdClass::Fsbl,
            0x03 => IdClass::Ssbl,
            0x02 | 0x04..=0x0F => IdClass::Boot,
            0x10..=MAX_ID => IdClass::User,
            _ => IdClass::Reserved,
        }
    }
}

/// One row of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based line number in the file.
    pub line: usize,
    /// 1-based start column of each of the 7 fields (0 when absent: the
    /// `Binary` column of a 6-column layout). Columns count characters.
    pub columns: [usize; 7],
    /// 1-based column just past the end of the row (trailing tabs and CR
    /// excluded): where a missing `Binary` column is reported.
    pub end_column: usize,
    /// The `Opt` column.
    pub opt: Opt,
    /// The `Id` column (the DFU alternate setting is looked up by it).
    pub id: u8,
    /// The `Name` column (the GPT or MTD partition name).
    pub name: String,
    /// The `Type` column.
    pub kind: PartType,
    /// The `IP` column.
    pub ip: Ip,
    /// The `Offset` column.
    pub offset: Offset,
    /// The `Binary` column resolved against the layout's directory; `None`
    /// for `none` or when the column is absent.
    pub binary: Option<PathBuf>,
    /// Size of the binary, filled in by [`check`] when the file exists.
    pub binary_size: Option<u64>,
    /// Partition size, filled in by [`check`]: the distance to the next
    /// partition on the same device, or to the device end (last partition,
    /// boot partitions, `RawImage`) when the device size is known.
    pub size: Option<u64>,
}

impl Partition {
    /// The size of the partition if known (see [`Partition::size`] field):
    /// `None` for the last partition of a device of unknown size.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Byte offset, or `None` for eMMC boot partitions.
    pub fn byte_offset(&self) -> Option<u64> {
        match self.offset {
            Offset::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Class of the Id.
    pub fn id_class(&self) -> IdClass {
        IdClass::of(self.id)
    }

    /// GPT type GUID of the partition (see [`PartType::gpt_type_guid`]).
    pub fn gpt_type_guid(&self) -> Option<Uuid> {
        self.kind.gpt_type_guid()
    }

    fn col(&self, c: usize) -> usize {
        self.columns[c].max(1)
    }
}

/// A parsed flashlayout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The file the layout came from (used in error messages and to
    /// resolve binaries).
    pub path: PathBuf,
    /// The rows, in file order.
    pub partitions: Vec<Partition>,
}

impl Layout {
    /// The devices addressed by the layout (IP `none` excluded), in order
    /// of first appearance, as U-Boot numbers them.
    pub fn devices(&self) -> Vec<Ip> {
        let mut out: Vec<Ip> = Vec::new();
        for p in &self.partitions {
            if p.ip.kind != IpKind::None && !out.contains(&p.ip) {
                out.push(p.ip);
            }
        }
        out
    }

    /// The rows on device `ip`, in file order.
    pub fn partitions_on(&self, ip: Ip) -> impl Iterator<Item = &Partition> + '_ {
        self.partitions.iter().filter(move |p| p.ip == ip)
    }

    /// Whether U-Boot treats `ip` as a full update (and rewrites its GPT on
    /// MMC): every row on it is selected (`treat_partition_list` clears
    /// `full_update` on any row without `P`). False if no row uses `ip`.
    pub fn is_full_update(&self, ip: Ip) -> bool {
        let mut any = false;
        for p in self.partitions_on(ip) {
            any = true;
            if !p.opt.program {
                return false;
            }
        }
        any
    }

    /// The row with Id `id`.
    pub fn by_id(&self, id: u8) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.id == id)
    }
}

/// What is known about a device, to check offsets and sizes against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceGeometry {
    /// Device size in bytes (MMC user area, MTD size).
    pub size: Option<u64>,
    /// Erase unit in bytes (eMMC erase group, NOR sector, NAND block);
    /// defaults to [`Ip::default_erase_size`].
    pub erase_size: Option<u64>,
    /// Size of each eMMC hardware boot partition in bytes.
    pub boot_size: Option<u64>,
}

/// Options for [`check`] and [`load`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Known geometry per device; devices not listed use defaults.
    pub devices: BTreeMap<Ip, DeviceGeometry>,
    /// Skip the checks on binaries (existence, size), e.g. when only the
    /// layout is at hand.
    pub skip_files: bool,
}

/// What is wrong, without the location (see [`LayoutError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutErrorKind {
    /// The file could not be read.
    #[error("cannot read layout: {message}")]
    Io {
        /// The OS error.
        message: String,
    },
    /// No partition row in the file (U-Boot: "no partition found").
    #[error("no partition found")]
    Empty,
    /// More rows than U-Boot accepts (U-Boot: "too many partition").
    #[error("too many partitions ({count}, at most {MAX_PARTITIONS})")]
    TooManyPartitions {
        /// Number of rows.
        count: usize,
    },
    /// Fewer than 6 columns (U-Boot: "no enought column").
    #[error("not enough columns: found {found}, expected Opt Id Name Type IP Offset [Binary]")]
    TooFewColumns {
        /// Number of non-empty fields found.
        found: usize,
    },
    /// A character other than P, E, D in `Opt` (U-Boot: "invalid option").
    #[error("invalid option '{ch}' in '{opt}'")]
    InvalidOptionChar {
        /// The offending character.
        ch: char,
        /// The whole column.
        opt: String,
    },
    /// `Opt` is neither `-` nor contains `P` (U-Boot: "missing 'P'").
    #[error("missing 'P' in option '{opt}'")]
    MissingP {
        /// The whole column.
        opt: String,
    },
    /// `Id` is not a number (U-Boot: "invalid phase value").
    #[error("invalid Id '{text}'")]
    InvalidId {
        /// The column.
        text: String,
    },
    /// `Id` above 0xF0 (U-Boot: "invalid phase value").
    #[error("Id {text} is above {MAX_ID:#04x}: 0xF1 and up are reserved")]
    IdOutOfRange {
        /// The column.
        text: String,
    },
    /// Id 0x00 on a device row (U-Boot: "invalid phase").
    #[error("Id 0x00 is the flashlayout itself and cannot be a partition")]
    IdReserved,
    /// Two rows with the same Id (U-Boot: "duplicated phase").
    #[error("duplicated Id {id:#04x}: already used by '{other_name}' on line {other_line}")]
    DuplicateId {
        /// The Id.
        id: u8,
        /// Line of the first row using it.
        other_line: usize,
        /// Name of the first row using it.
        other_name: String,
    },
    /// Name longer than 16 bytes (U-Boot: "partition name too long").
    #[error("partition name too long ({len} bytes, at most {MAX_NAME_LEN}): '{name}'")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Unknown `Type` (U-Boot: "type parsing error").
    #[error("unknown type '{text}'")]
    InvalidType {
        /// The column.
        text: String,
    },
    /// `Binary(N)` with N > 1 where U-Boot cannot make copies
    /// (U-Boot: "multiple binary %d not supported").
    #[error("multiple binary copies ({copies}) not supported here: {reason}")]
    MultipleBinaryNotSupported {
        /// N.
        copies: u32,
        /// Which condition failed.
        reason: &'static str,
    },
    /// Unknown `IP` (U-Boot: "ip parsing error").
    #[error("unknown IP '{text}'")]
    InvalidIp {
        /// The column.
        text: String,
    },
    /// A sixth device (U-Boot: "too many device").
    #[error("too many devices: '{ip}' would be device {count}, at most {MAX_DEVICES}")]
    TooManyDevices {
        /// The new device.
        ip: Ip,
        /// Its number (1-based).
        count: usize,
    },
    /// `P` on IP `none` (U-Boot: "selected none phase").
    #[error("row on IP 'none' is selected ('{opt}')")]
    SelectedNone {
        /// The `Opt` column.
        opt: String,
    },
    /// `bootN` other than boot1/boot2 (U-Boot: "invalid part").
    #[error("invalid boot partition '{text}'")]
    InvalidBootPart {
        /// The column.
        text: String,
    },
    /// Not a number (U-Boot: "invalid offset").
    #[error("invalid offset '{text}'")]
    InvalidOffset {
        /// The column.
        text: String,
    },
    /// boot1/boot2 on a non-MMC device (U-Boot: "hw partition not
    /// expected").
    #[error("{offset} is an eMMC hardware boot partition, not available on '{ip}'")]
    BootPartNotMmc {
        /// boot1 or boot2.
        offset: Offset,
        /// The device.
        ip: Ip,
    },
    /// The same boot partition used twice on a device.
    #[error("{offset} already used by '{other_name}' on line {other_line}")]
    DuplicateBootPart {
        /// boot1 or boot2.
        offset: Offset,
        /// Line of the first row using it.
        other_line: usize,
        /// Name of the first row using it.
        other_name: String,
    },
    /// `RawImage` not at offset 0 (U-Boot silently moves it to 0).
    #[error("RawImage covers the whole device and must be at offset 0, not {offset:#x}")]
    RawImageNotAtZero {
        /// The offset given.
        offset: u64,
    },
    /// Same offset as the previous partition (U-Boot: "same address").
    #[error("offset {offset:#x} is the same as '{other_name}' on line {other_line}")]
    SameOffset {
        /// The offset.
        offset: u64,
        /// Line of the other row.
        other_line: usize,
        /// Name of the other row.
        other_name: String,
    },
    /// Offset below the previous partition's on the same device.
    #[error("offset {offset:#x} is below {prev_offset:#x} of '{prev_name}' on line {prev_line}: offsets must increase")]
    UnorderedOffset {
        /// The offset.
        offset: u64,
        /// The previous row's offset.
        prev_offset: u64,
        /// Line of the previous row.
        prev_line: usize,
        /// Name of the previous row.
        prev_name: String,
    },
    /// Offset not a multiple of the erase size (U-Boot: "not aligned
    /// address").
    #[error("offset {offset:#x} is not aligned on the erase size {erase_size:#x} of '{ip}'")]
    Misaligned {
        /// The offset.
        offset: u64,
        /// The erase size.
        erase_size: u64,
        /// The device.
        ip: Ip,
    },
    /// Offset inside the primary GPT on MMC (U-Boot: "invalid address
    /// (min=...)").
    #[error("offset {offset:#x} overlaps the GPT of '{ip}': the first partition starts at {min:#x} or later")]
    InGptArea {
        /// The offset.
        offset: u64,
        /// The lowest allowed offset.
        min: u64,
        /// The device.
        ip: Ip,
    },
    /// Offset past the usable end of the device (U-Boot: "invalid address
    /// (max=...)").
    #[error("offset {offset:#x} is beyond the usable end {max:#x} of '{ip}'")]
    BeyondDevice {
        /// The offset.
        offset: u64,
        /// The last usable offset.
        max: u64,
        /// The device.
        ip: Ip,
    },
    /// The binary does not exist or is not a readable file.
    #[error("binary '{path}' not found: {message}")]
    MissingBinary {
        /// The resolved path.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The binary is larger than its partition.
    #[error(
        "binary '{path}' ({size} bytes) is larger than partition '{name}' ({space} bytes{until})"
    )]
    BinaryTooLarge {
        /// The resolved path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The partition name.
        name: String,
        /// The room available.
        space: u64,
        /// What limits it (e.g. " up to 'rootfs' on line 12").
        until: String,
    },
    /// A `Binary(N)` image larger than one N-th of its partition: U-Boot
    /// writes it N times, one copy after the other, inside the partition
    /// (`stm32prog_copy_fsbl`).
    #[error(
        "binary '{path}' ({size} bytes) does not fit {copies} times in partition '{name}': {space} bytes{until} / {copies} copies, each in whole erase blocks = {per_copy} bytes per copy"
    )]
    BinaryCopiesTooLarge {
        /// The resolved path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The partition name.
        name: String,
        /// N in `Binary(N)`.
        copies: u32,
        /// The whole partition size.
        space: u64,
        /// Room for one copy: `space / copies`, rounded down to whole erase
        /// blocks.
        per_copy: u64,
        /// The device's erase-block size the copies are aligned on.
        erase_size: u64,
        /// What limits the partition (e.g. " up to 'fsbl2' on line 4").
        until: String,
    },
    /// A row that downloads a file (`Opt` has `P` but not `E`) has no
    /// binary: `Binary` is `none` or the column is absent. The host would
    /// have nothing to send for the partition U-Boot waits for.
    #[error(
        "partition '{name}' has option '{opt}', so a file is written to it, but {}",
        if *absent { "the Binary column is missing" } else { "its Binary is 'none'" }
    )]
    NoBinary {
        /// The partition name.
        name: String,
        /// The `Opt` column.
        opt: String,
        /// True when the row has no `Binary` column (6 columns), false for
        /// an explicit `none`.
        absent: bool,
    },
    /// The layout starts with the STM32 image magic but the header around
    /// it is unusable (truncated, unknown version, length beyond the file).
    #[error("Layout: invalid STM32 image header: {message}")]
    InvalidHeader {
        /// What [`image::parse`] found wrong.
        message: String,
    },
    /// The payload of a layout wrapped in an STM32 image header does not
    /// sum to the header's checksum (U-Boot's message, same wording).
    #[error("Layout: invalid checksum : {computed:#x} expected {expected:#x}")]
    InvalidChecksum {
        /// Checksum of the payload bytes.
        computed: u32,
        /// Checksum stored in the header.
        expected: u32,
    },
    /// The layout text is not UTF-8.
    #[error("invalid UTF-8 at byte offset {offset} ({offset:#x}) of the file")]
    NotUtf8 {
        /// Offset of the first invalid byte in the file (header included
        /// for a wrapped layout).
        offset: usize,
    },
}

impl LayoutErrorKind {
    /// How to fix it.
    pub fn help(&self) -> String {
        use LayoutErrorKind::*;
        match self {
            Io { .. } => "check the path and the file's permissions".into(),
            Empty => "add at least one row: Opt, Id, Name, Type, IP, Offset, Binary separated by tabs; lines starting with '#' are comments".into(),
            TooManyPartitions { .. } => format!("split the layout: U-Boot accepts at most {MAX_PARTITIONS} rows"),
            TooFewColumns { .. } => "separate the 7 columns Opt, Id, Name, Type, IP, Offset, Binary with tabs (not spaces); empty fields are skipped, so use '-' or 'none' instead".into(),
            InvalidOptionChar { .. } => "use '-' (not selected) or a combination of P (program), E (create empty) and D (delete), e.g. P, PD, PE, PED".into(),
            MissingP { .. } => "add 'P': E and D only apply to a selected partition; use '-' to leave the row out".into(),
            InvalidId { .. } => "write the Id in hexadecimal with 0x, e.g. 0x10 (a leading 0 without x means octal, as in U-Boot)".into(),
            IdOutOfRange { .. } => "use 0x01 (FSBL), 0x03 (SSBL/FIP), 0x04-0x0F (boot partitions) or 0x10-0xF0 (user partitions)".into(),
            IdReserved => "Id 0x00 is the flashlayout; use 0x04-0x0F for boot partitions or 0x10-0xF0 for user partitions".into(),
            DuplicateId { .. } => "give each row its own Id: the host finds the DFU alternate setting by Id".into(),
            NameTooLong { .. } => format!("shorten the name to {MAX_NAME_LEN} characters; it becomes the GPT/MTD partition name"),
            InvalidType { .. } => "use one of Binary, Binary(N), FIP, FWU_MDATA, ENV, System, ESP, FileSystem, RawImage (case-sensitive)".into(),
            MultipleBinaryNotSupported { .. } => "use plain 'Binary'; Binary(N) is only for FSBL rows (name fsbl*, Id below 0x10) on nandN or spi-nandN".into(),
            InvalidIp { .. } => "use none, ram, or mmcN, norN, nandN, spi-nandN with a single digit N, e.g. mmc0".into(),
            TooManyDevices { .. } => format!("address at most {MAX_DEVICES} devices in one layout; split it"),
            SelectedNone { .. } => "rows on IP 'none' are loaded to RAM by the ROM code and TF-A, not programmed: set Opt to '-'".into(),
            InvalidBootPart { .. } => "use boot1 or boot2 for the eMMC hardware boot partitions".into(),
            InvalidOffset { .. } => "write the offset in hexadecimal with 0x (e.g. 0x00080000) or in decimal; 64-bit values are allowed".into(),
            BootPartNotMmc { .. } => "boot1/boot2 exist only on eMMC (mmcN); give a byte offset instead".into(),
            DuplicateBootPart { .. } => "put the second copy in the other boot partition (boot1/boot2)".into(),
            RawImageNotAtZero { .. } => "set the offset to 0x0; for a partition at an offset use Binary or FileSystem".into(),
            SameOffset { .. } => "give each partition its own offset; the partition ends where the next one starts".into(),
            UnorderedOffset { .. } => "list the partitions of a device in increasing offset order; sizes are taken from the next row".into(),
            Misaligned { erase_size, .. } => format!("round the offset to a multiple of {erase_size:#x}; partitions start on an erase-unit boundary"),
            InGptArea { min, .. } => format!("move the partition to {min:#x} or later (the SD-card FSBL sits at 0x4400 = LBA 34)"),
            BeyondDevice { .. } => "move the partition below the end of the device, or check the device size given".into(),
            MissingBinary { .. } => "check the path, relative to the layout's directory, or write 'none' with option PE to create the partition empty".into(),
            BinaryTooLarge { .. } => "move the following partition up, or shrink the image".into(),
            BinaryCopiesTooLarge { copies, size, erase_size, .. } => format!("Binary({copies}) writes the image {copies} times into the partition, each copy in whole erase blocks: make the partition at least {} bytes (move the next one up), shrink the image, or lower the number of copies", size.next_multiple_of((*erase_size).max(1)).saturating_mul(u64::from(*copies))),
            NoBinary { .. } => "give the file to write, or add E to create the partition empty".into(),
            InvalidHeader { .. } => "wrap the layout with a complete STM32 image header (e.g. `mkimage -T stm32image`), or give the plain TSV text".into(),
            InvalidChecksum { .. } => "the file is corrupted or was edited after wrapping: wrap the layout again, or give the plain TSV text".into(),
            NotUtf8 { .. } => "save the layout as plain text (ASCII or UTF-8); names and paths must not contain other encodings".into(),
        }
    }
}

/// One error with its location. Display: `path:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    /// The layout file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong.
    pub kind: LayoutErrorKind,
}

impl LayoutError {
    /// How to fix it.
    pub fn help(&self) -> String {
        self.kind.help()
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.kind
        )
    }
}

impl std::error::Error for LayoutError {}

/// All errors found in a layout, sorted by position. Display lists one per
/// line, each followed by its help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutErrors(pub Vec<LayoutError>);

impl fmt::Display for LayoutErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}\n  help: {}", e.help())?;
        }
        Ok(())
    }
}

impl std::error::Error for LayoutErrors {}

/// Collects errors for one file.
struct Sink<'a> {
    path: &'a Path,
    errors: Vec<LayoutError>,
}

impl Sink<'_> {
    fn push(&mut self, line: usize, column: usize, kind: LayoutErrorKind) {
        self.errors.push(LayoutError {
            path: self.path.to_path_buf(),
            line,
            column,
            kind,
        });
    }
}

/// Parses `text` (the content of `path`) and applies the rules that need
/// no device or file (see the module documentation). Binaries are resolved
/// against `path`'s directory but not opened.
pub fn parse(text: &str, path: &Path) -> Result<Layout, LayoutErrors> {
    let (layout, mut errors) = parse_partial(text, path);
    if errors.is_empty() {
        Ok(layout)
    } else {
        sort(&mut errors);
        Err(LayoutErrors(errors))
    }
}

/// Parses the content of a layout file (`bytes`, read from `path`) the
/// way U-Boot's `parse_flash_layout` takes it, then as [`parse`].
///
/// Bytes starting with the STM32 image magic are an STM32 image: the
/// header (v1, the one U-Boot documents for layouts; a v2 header that
/// [`image::parse`] reads is taken too) must be complete and its checksum
/// must match the payload, which is the layout text; bytes after the
/// payload are ignored. Anything else is the text
/// itself. The text must be UTF-8. A bad header, checksum or encoding is a
/// single error located at line 1, column 1 (or, for bad UTF-8, where the
/// invalid byte is); line and column of the other errors count in the text.
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Layout, LayoutErrors> {
    let text = decode(bytes, path)?;
    parse(text, path)
}

/// The layout text inside `bytes` (see [`parse_bytes`]); the error is
/// always a single one.
fn decode<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, LayoutErrors> {
    let error = |line, column, kind| {
        LayoutErrors(vec![LayoutError {
            path: path.to_path_buf(),
            line,
            column,
            kind,
        }])
    };
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
    std::str::from_utf8(text).map_err(|e| {
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
    })
}

/// Reads `path`, decodes it as [`parse_bytes`] does (plain or wrapped in an
/// STM32 image header), then [`parse`]s and [`check`]s it, returning every
/// error.
pub fn load(path: &Path, options: &CheckOptions) -> Result<Layout, LayoutErrors> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Err(LayoutErrors(vec![LayoutError {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                kind: LayoutErrorKind::Io {
                    message: e.to_string(),
                },
            }]))
        }
    };
    let text = decode(&bytes, path)?;
    let (mut layout, mut errors) = parse_partial(text, path);
    // Rows with errors were dropped, so the device checks still see a
    // consistent list and report their own problems in the same pass.
    errors.extend(check(&mut layout, options));
    if errors.is_empty() {
        Ok(layout)
    } else {
        sort(&mut errors);
        Err(LayoutErrors(errors))
    }
}

fn sort(errors: &mut [LayoutError]) {
    errors.sort_by_key(|e| (e.line, e.column));
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

fn parse_partial(text: &str, path: &Path) -> (Layout, Vec<LayoutError>) {
    let mut sink = Sink {
        path,
        errors: Vec::new(),
    };
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
        if f.len() < 6 {
            let end = raw.trim_end_matches('\r').chars().count() + 1;
            sink.push(line, end, LayoutErrorKind::TooFewColumns { found: f.len() });
            continue;
        }
        let before = sink.errors.len();
        let mut columns = [0usize; 7];
        for (i, c) in columns.iter_mut().enumerate() {
            *c = f.get(i).map_or(0, |x| x.0);
        }
        let get = |c: usize| f[c].1.as_str();

        let opt = parse_opt(get(COL_OPT), line, columns[COL_OPT], &mut sink);
        let id = parse_id(get(COL_ID), line, columns[COL_ID], &mut sink);
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
        let kind = parse_type(get(COL_TYPE));
        if kind.is_none() {
            sink.push(
                line,
                columns[COL_TYPE],
                LayoutErrorKind::InvalidType {
                    text: get(COL_TYPE).into(),
                },
            );
        }
        let ip = parse_ip(get(COL_IP));
        if ip.is_none() {
            sink.push(
                line,
                columns[COL_IP],
                LayoutErrorKind::InvalidIp {
                    text: get(COL_IP).into(),
                },
            );
        }
        let offset = parse_offset(get(COL_OFFSET), line, columns[COL_OFFSET], &mut sink);
        // Columns after Binary are ignored, as U-Boot ignores all after
        // Offset.
        let binary = f
            .get(COL_BINARY)
            .map(|x| x.1.as_str())
            .filter(|b| *b != "none")
            .map(|b| base.join(b));

        if sink.errors.len() != before {
            continue;
        }
        let (Some(opt), Some(id), Some(kind), Some(ip), Some(offset)) = (opt, id, kind, ip, offset)
        else {
            continue;
        };
        parts.push(Partition {
            line,
            columns,
            end_column: raw.trim_end_matches(['\r', '\t']).chars().count() + 1,
            opt,
            id,
            name: name.into(),
            kind,
            ip,
            offset,
            binary,
            binary_size: None,
            size: None,
        });
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

    // Row rules from treat_partition_list and the device-independent part
    // of init_device. Rows failing them are dropped from the layout.
    let mut keep = vec![true; parts.len()];
    let mut seen_ids: HashMap<u8, usize> = HashMap::new();
    let mut devices: Vec<Ip> = Vec::new();
    let mut boot_used: HashMap<(Ip, bool), usize> = HashMap::new();
    for (i, p) in parts.iter().enumerate() {
        let mut ok = true;
        if p.ip.kind == IpKind::None {
            if p.opt.program {
                sink.push(
                    p.line,
                    p.col(COL_OPT),
                    LayoutErrorKind::SelectedNone {
                        opt: opt_text(&p.opt),
                    },
                );
                ok = false;
            }
        } else if p.id == 0 {
            sink.push(p.line, p.col(COL_ID), LayoutErrorKind::IdReserved);
            ok = false;
        }
        // U-Boot only compares device rows with later rows; any duplicate
        // is refused here since the host looks alternate settings up by Id.
        if let Some(&first) = seen_ids.get(&p.id) {
            let o = &parts[first];
            sink.push(
                p.line,
                p.col(COL_ID),
                LayoutErrorKind::DuplicateId {
                    id: p.id,
                    other_line: o.line,
                    other_name: o.name.clone(),
                },
            );
            ok = false;
        } else {
            seen_ids.insert(p.id, i);
        }
        if p.ip.kind != IpKind::None && !devices.contains(&p.ip) {
            if devices.len() == MAX_DEVICES {
                sink.push(
                    p.line,
                    p.col(COL_IP),
                    LayoutErrorKind::TooManyDevices {
                        ip: p.ip,
                        count: devices.len() + 1,
                    },
                );
                ok = false;
            } else {
                devices.push(p.ip);
            }
        }
        if let PartType::Binary { copies } = p.kind {
            if copies > 1 {
                let reason = if !matches!(p.ip.kind, IpKind::Nand | IpKind::SpiNand) {
                    Some("only on nandN or spi-nandN")
                } else if p.id >= FIRST_USER_ID {
                    Some("only for Ids below 0x10")
                } else if !p.name.starts_with("fsbl") {
                    Some("only for partitions named fsbl*")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    sink.push(
                        p.line,
                        p.col(COL_TYPE),
                        LayoutErrorKind::MultipleBinaryNotSupported { copies, reason },
                    );
                    ok = false;
                }
            }
        }
        if matches!(p.offset, Offset::Boot1 | Offset::Boot2) {
            if p.ip.kind != IpKind::Mmc {
                sink.push(
                    p.line,
                    p.col(COL_OFFSET),
                    LayoutErrorKind::BootPartNotMmc {
                        offset: p.offset,
                        ip: p.ip,
                    },
                );
                ok = false;
            } else {
                let key = (p.ip, p.offset == Offset::Boot1);
                if let Some(&first) = boot_used.get(&key) {
                    let o = &parts[first];
                    sink.push(
                        p.line,
                        p.col(COL_OFFSET),
                        LayoutErrorKind::DuplicateBootPart {
                            offset: p.offset,
                            other_line: o.line,
                            other_name: o.name.clone(),
                        },
                    );
                    ok = false;
                } else {
                    boot_used.insert(key, i);
                }
            }
        }
        if p.kind == PartType::RawImage {
            if let Offset::Bytes(b) = p.offset {
                if b != 0 {
                    sink.push(
                        p.line,
                        p.col(COL_OFFSET),
                        LayoutErrorKind::RawImageNotAtZero { offset: b },
                    );
                    ok = false;
                }
            }
        }
        keep[i] = ok;
    }
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

fn opt_text(o: &Opt) -> String {
    if o.skip {
        return "-".into();
    }
    let mut s = String::new();
    if o.program {
        s.push('P');
    }
    if o.empty {
        s.push('E');
    }
    if o.delete {
        s.push('D');
    }
    s
}

/// Checks each device of `layout` (offsets, alignment, GPT area, device
/// end) and each binary (exists, fits), filling in
/// [`Partition::binary_size`] and [`Partition::size`]. Returns every
/// problem found; an empty list means the layout is usable.
///
/// Rules, per device, on rows other than `boot1`/`boot2` and `RawImage`:
///
/// * offsets strictly increase in file order — U-Boot sorts by offset
///   (`part_cmp`) and refuses equal ones ("same address"), while ST's
///   `create_sdcard_from_flashlayout.sh` sizes each partition up to the
///   next row, so a row out of order would overlap;
/// * offsets are multiples of the erase size (`init_device`, "not aligned
///   address"; see [`Ip::default_erase_size`]);
/// * on MMC, offsets are at least 34 blocks, or one erase group when it is
///   larger (`init_device`, "invalid address (min=..)"), leaving room for
///   the primary GPT;
/// * with a known size, offsets are at most the last usable byte: the size
///   minus 35 blocks (or one erase group) on MMC, the size on MTD
///   ("invalid address (max=..)").
///
/// `ram` and `none` rows are not checked (their offsets are addresses).
///
/// Unless [`CheckOptions::skip_files`] is set, on every row:
///
/// * a row that downloads a file ([`Opt::downloads`]: `P` without `E`)
///   names one — `none` or no `Binary` column is an error there, while
///   `-`, `PE` and `PED` rows need none;
/// * the binary exists and fits its partition; a `Binary(N)` image must
///   fit in one N-th of the partition, since U-Boot writes N copies of it
///   one after the other (`stm32prog_copy_fsbl`).
pub fn check(layout: &mut Layout, options: &CheckOptions) -> Vec<LayoutError> {
    let mut sink = Sink {
        path: &layout.path,
        errors: Vec::new(),
    };
    let devices: BTreeSet<Ip> = layout.partitions.iter().map(|p| p.ip).collect();
    let mut sizes: Vec<(usize, Option<u64>, String)> = Vec::new();

    for ip in devices {
        let geo = options.devices.get(&ip).copied().unwrap_or_default();
        let erase = geo
            .erase_size
            .unwrap_or_else(|| ip.default_erase_size())
            .max(1);
        let (first, last) = match ip.kind {
            IpKind::Mmc => {
                let gpt_blocks = GPT_HEADER_BLOCKS * MMC_BLOCK_SIZE;
                if erase > gpt_blocks {
                    (erase, geo.size.map(|s| s.saturating_sub(erase)))
                } else {
                    (
                        gpt_blocks,
                        geo.size
                            .map(|s| s.saturating_sub(gpt_blocks + MMC_BLOCK_SIZE)),
                    )
                }
            }
            IpKind::Nor | IpKind::Nand | IpKind::SpiNand => (0, geo.size),
            IpKind::None | IpKind::Ram => {
                // Addresses, not partitions: only the size of RAM loads
                // could be checked, and the DRAM map is not known here.
                for (i, p) in layout.partitions.iter().enumerate() {
                    if p.ip == ip {
                        sizes.push((i, None, String::new()));
                    }
                }
                continue;
            }
        };

        // (index, offset) of the ordinary rows, in file order.
        let rows: Vec<(usize, u64)> = layout
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.ip == ip && p.kind != PartType::RawImage)
            .filter_map(|(i, p)| p.byte_offset().map(|o| (i, o)))
            .collect();

        let mut prev: Option<(usize, u64)> = None;
        for (n, &(i, off)) in rows.iter().enumerate() {
            let p = &layout.partitions[i];
            let (line, col) = (p.line, p.col(COL_OFFSET));
            if let Some((pi, poff)) = prev {
                let pp = &layout.partitions[pi];
                if off == poff {
                    sink.push(
                        line,
                        col,
                        LayoutErrorKind::SameOffset {
                            offset: off,
                            other_line: pp.line,
                            other_name: pp.name.clone(),
                        },
                    );
                } else if off < poff {
                    sink.push(
                        line,
                        col,
                        LayoutErrorKind::UnorderedOffset {
                            offset: off,
                            prev_offset: poff,
                            prev_line: pp.line,
                            prev_name: pp.name.clone(),
                        },
                    );
                }
            }
            if off % erase != 0 {
                sink.push(
                    line,
                    col,
                    LayoutErrorKind::Misaligned {
                        offset: off,
                        erase_size: erase,
                        ip,
                    },
                );
            }
            if off < first {
                sink.push(
                    line,
                    col,
                    LayoutErrorKind::InGptArea {
                        offset: off,
                        min: first,
                        ip,
                    },
                );
            }
            if let Some(max) = last {
                if off > max {
                    sink.push(
                        line,
                        col,
                        LayoutErrorKind::BeyondDevice {
                            offset: off,
                            max,
                            ip,
                        },
                    );
                }
            }
            // Size: up to the next row, or to the usable end.
            let (size, until) = match rows.get(n + 1) {
                Some(&(ni, noff)) => {
                    let np = &layout.partitions[ni];
                    (
                        noff.checked_sub(off).filter(|&s| s > 0),
                        format!(" up to '{}' on line {}", np.name, np.line),
                    )
                }
                None => (
                    last.and_then(|m| m.checked_sub(off)),
                    format!(" up to the end of '{ip}'"),
                ),
            };
            sizes.push((i, size, until));
            prev = Some((i, off));
        }
        for (i, p) in layout.partitions.iter().enumerate() {
            if p.ip != ip {
                continue;
            }
            if p.kind == PartType::RawImage {
                sizes.push((i, geo.size, format!(", the whole of '{ip}'")));
            } else if p.byte_offset().is_none() {
                sizes.push((i, geo.boot_size, format!(", the size of {}", p.offset)));
            }
        }
    }

    for (i, size, until) in sizes {
        let p = &mut layout.partitions[i];
        p.size = size;
        if options.skip_files {
            continue;
        }
        let Some(bin) = p.binary.clone() else {
            // stm32prog_next_phase stops on this row waiting for data the
            // host cannot send; only E rows are created without a file.
            if p.opt.downloads() {
                let absent = p.columns[COL_BINARY] == 0;
                sink.push(
                    p.line,
                    if absent {
                        p.end_column.max(1)
                    } else {
                        p.col(COL_BINARY)
                    },
                    LayoutErrorKind::NoBinary {
                        name: p.name.clone(),
                        opt: opt_text(&p.opt),
                        absent,
                    },
                );
            }
            continue;
        };
        let col = p.col(COL_BINARY);
        let copies = match p.kind {
            PartType::Binary { copies } => copies.max(1),
            _ => 1,
        };
        match std::fs::metadata(&bin) {
            Ok(m) if m.is_file() => {
                let len = m.len();
                p.binary_size = Some(len);
                if let Some(space) = size {
                    // U-Boot's stm32prog_copy_fsbl writes each copy right after
                    // the previous one, rounded up to whole erase blocks: a
                    // copy gets the whole erase blocks of space / N.
                    let erase = options
                        .devices
                        .get(&p.ip)
                        .and_then(|g| g.erase_size)
                        .unwrap_or_else(|| p.ip.default_erase_size())
                        .max(1);
                    let per_copy = space / u64::from(copies) / erase * erase;
                    if copies > 1 && len > per_copy {
                        sink.push(
                            p.line,
                            col,
                            LayoutErrorKind::BinaryCopiesTooLarge {
                                path: bin,
                                size: len,
                                name: p.name.clone(),
                                copies,
                                space,
                                per_copy,
                                erase_size: erase,
                                until,
                            },
                        );
                    } else if len > space {
                        sink.push(
                            p.line,
                            col,
                            LayoutErrorKind::BinaryTooLarge {
                                path: bin,
                                size: len,
                                name: p.name.clone(),
                                space,
                                until,
                            },
                        );
                    }
                }
            }
            Ok(_) => sink.push(
                p.line,
                col,
                LayoutErrorKind::MissingBinary {
                    path: bin,
                    message: "not a regular file".into(),
                },
            ),
            Err(e) => sink.push(
                p.line,
                col,
                LayoutErrorKind::MissingBinary {
                    path: bin,
                    message: e.to_string(),
                },
            ),
        }
    }
    let mut errors = sink.errors;
    sort(&mut errors);
    errors
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
