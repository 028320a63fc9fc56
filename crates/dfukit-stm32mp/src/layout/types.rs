//! The layout's types: rows, their columns (options, types, devices,
//! offsets), the layout itself and what [`check`](super::check) is told
//! about the devices.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use uuid::Uuid;

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

// The columns of a row, as indexes into `Partition::columns`.
pub(super) const COL_OPT: usize = 0;
pub(super) const COL_ID: usize = 1;
pub(super) const COL_NAME: usize = 2;
pub(super) const COL_TYPE: usize = 3;
pub(super) const COL_IP: usize = 4;
pub(super) const COL_OFFSET: usize = 5;
pub(super) const COL_BINARY: usize = 6;
/// The columns' names, for messages.
pub(super) const COLUMN_NAMES: [&str; 7] = ["Opt", "Id", "Name", "Type", "IP", "Offset", "Binary"];

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

    /// The column as written (`-`, or the letters in `PED` order), for
    /// messages.
    pub(super) fn text(&self) -> String {
        if self.skip {
            return "-".into();
        }
        let mut s = String::new();
        if self.program {
            s.push('P');
        }
        if self.empty {
            s.push('E');
        }
        if self.delete {
            s.push('D');
        }
        s
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
    /// The `Binary` column resolved: by [`parse`](super::parse) against
    /// the layout's directory, then by [`check`](super::check) to the first
    /// directory of [`binary_search_dirs`](super::binary_search_dirs) that
    /// holds it; `None` for `none` or when the column is absent.
    pub binary: Option<PathBuf>,
    /// The `Binary` column as written (`None` for `none` or absent): the
    /// path relative to the directories searched.
    pub binary_name: Option<String>,
    /// Size of the binary, filled in by [`check`](super::check) when the file exists.
    pub binary_size: Option<u64>,
    /// Partition size, filled in by [`check`](super::check): the distance to the next
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

    /// Start column of field `c`, 1 for an absent field.
    pub(super) fn col(&self, c: usize) -> usize {
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

/// Options for [`check`](super::check) and [`load`](super::load).
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Known geometry per device; devices not listed use defaults.
    pub devices: BTreeMap<Ip, DeviceGeometry>,
    /// Skip the checks on binaries (existence, size), e.g. when only the
    /// layout is at hand.
    pub skip_files: bool,
    /// Directories searched for binaries before the layout's own ones
    /// (`--binaries DIR`), see [`binary_search_dirs`](super::binary_search_dirs).
    pub binary_dirs: Vec<PathBuf>,
}
