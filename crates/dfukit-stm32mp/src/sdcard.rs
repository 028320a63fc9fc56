//! Raw SD-card image builder for STM32MP1 flashlayouts.
//!
//! [`build`] produces the same raw image as ST's
//! `create_sdcard_from_flashlayout.sh` (meta-st-stm32mp,
//! `recipes-devtools/sdcard-raw-tools/`):
//!
//! * a **sparse** file of [`SdImageOptions::size_bytes`] (the script's
//!   `SDCARD_SIZE`, default 5120 MiB);
//! * a GPT as `sgdisk -og -a 1` creates it: protective MBR, 128 entries,
//!   first usable LBA 34, last usable LBA `sectors - 34`, backup header in
//!   the last sector;
//! * one partition per row, numbered from 1 in input order, starting at
//!   `offset / 512` and ending one sector before the next row's offset; the
//!   last one runs to the last usable LBA (the script passes an empty end to
//!   `sgdisk -n`, which means "end of the free block");
//! * the script's type codes (see [`SdKind::type_guid`]), the legacy BIOS
//!   bootable attribute (bit 2, `-A j:set:2`) where asked, and fixed unique
//!   GUIDs where given (the script pins `rootfs`, `fip-a*` and `fip-b*`, see
//!   [`st_default_partuuid`]); other GUIDs are random, as with `sgdisk`;
//! * each programmed row's binary copied at its offset (`dd seek=1
//!   bs=$offset conv=notrunc`); all-zero blocks of a binary are skipped, so
//!   holes stay holes (the file starts out all zeros, so the bytes read back
//!   are identical).
//!
//! Rows are taken as given: callers select the `mmc0` rows whose option is
//! `P`, `E`, `PD`, `DP` or `PED` and set [`SdPartition::program`] for all but
//! `E`. The script's `--force-rootfs` resizing is not reproduced.
//!
//! The GPT is written with the [`gpt`] crate; this module only validates the
//! layout, fills in the entries and copies the binaries.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gpt::partition_types::{OperatingSystem, Type};
use uuid::Uuid;

/// Sector (logical block) size used by the image, in bytes.
pub const SECTOR_SIZE: u64 = 512;

/// First LBA a partition may start at (protective MBR, GPT header and a
/// 128-entry partition array come before it). The SD-card `fsbl1` row sits
/// exactly there, at byte offset `0x4400`.
pub const FIRST_USABLE_LBA: u64 = 34;

/// Number of entries in the GPT partition array (as `sgdisk` writes it).
pub const GPT_ENTRIES: usize = 128;

/// Maximum partition name length in UTF-16 code units (GPT limit).
pub const MAX_NAME_UTF16: usize = 36;

/// Default image size: the script's `SDCARD_SIZE` default of 5120 MiB.
pub const DEFAULT_SIZE_BYTES: u64 = 5120 * 1024 * 1024;

/// Legacy BIOS bootable attribute (GPT attribute bit 2, `sgdisk -A j:set:2`).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Unique partition GUID the script gives `rootfs`
/// (`e91c4e10-16e6-4c0e-bd0e-77becf4a3582`), in textual byte order.
pub const ROOTFS_PARTUUID: [u8; 16] = guid(0xe91c4e10, 0x16e6, 0x4c0e, 0xbd0e, 0x77becf4a3582);

/// Unique partition GUID the script gives `fip-a*`
/// (`4fd84c93-54ef-463f-a7ef-ae25ff887087`), in textual byte order.
pub const FIP_A_PARTUUID: [u8; 16] = guid(0x4fd84c93, 0x54ef, 0x463f, 0xa7ef, 0xae25ff887087);

/// Unique partition GUID the script gives `fip-b*`
/// (`09c54952-d5bf-45af-acee-335303766fb3`), in textual byte order.
pub const FIP_B_PARTUUID: [u8; 16] = guid(0x09c54952, 0xd5bf, 0x45af, 0xacee, 0x335303766fb3);

/// Builds a GUID in textual (big-endian, RFC 4122) byte order from its five
/// dash-separated fields.
const fn guid(a: u32, b: u16, c: u16, d: u16, e: u64) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    let d = d.to_be_bytes();
    let e = e.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], e[2], e[3], e[4], e[5], e[6],
        e[7],
    ]
}

/// Unique partition GUID the script pins for a partition name, if any:
/// `rootfs` → [`ROOTFS_PARTUUID`], names starting with `fip-a` →
/// [`FIP_A_PARTUUID`], with `fip-b` → [`FIP_B_PARTUUID`].
pub fn st_default_partuuid(name: &str) -> Option<[u8; 16]> {
    if name == "rootfs" {
        Some(ROOTFS_PARTUUID)
    } else if name.starts_with("fip-a") {
        Some(FIP_A_PARTUUID)
    } else if name.starts_with("fip-b") {
        Some(FIP_B_PARTUUID)
    } else {
        None
    }
}

/// Whether the script marks a partition of this name legacy BIOS bootable
/// (`boot` and `bootfs`).
pub fn st_bootable_legacy(name: &str) -> bool {
    matches!(name, "boot" | "bootfs")
}

/// Flashlayout partition type, as far as the SD-card image cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SdKind {
    /// `Binary`: GPT code 8301, Linux reserved.
    Binary,
    /// `System`: GPT code 8300, Linux filesystem.
    System,
    /// `FileSystem`: GPT code 8300, Linux filesystem.
    FileSystem,
    /// `FIP`: TF-A firmware image package, `19d5df83-11b0-457b-be2c-7559c13142a5`.
    Fip,
    /// `FWU_MDATA`: TF-A firmware-update metadata, `8a7a84a0-8387-40f6-ab41-a8b9a5a60d23`.
    FwuMdata,
    /// `ENV`: U-Boot environment, `3de21764-95bd-54bd-a5c3-4abe786f38a8`.
    Env,
    /// `ESP`: EFI system partition, GPT code ef00.
    Esp,
}

impl SdKind {
    /// Maps a flashlayout `Type` column (`Binary`, `System`, `FileSystem`,
    /// `FIP`, `FWU_MDATA`, `ENV`, `ESP`) to a kind; `None` for anything the
    /// script rejects ("invalid partition type"), e.g. `RawImage` or
    /// `Binary(N)`.
    pub fn from_layout_type(s: &str) -> Option<Self> {
        Some(match s {
            "Binary" => Self::Binary,
            "System" => Self::System,
            "FileSystem" => Self::FileSystem,
            "FIP" => Self::Fip,
            "FWU_MDATA" => Self::FwuMdata,
            "ENV" => Self::Env,
            "ESP" => Self::Esp,
            _ => return None,
        })
    }

    /// The GPT partition type GUID the script sets, in textual byte order.
    pub fn type_guid(self) -> [u8; 16] {
        match self {
            // sgdisk code 8301
            Self::Binary => guid(0x8da63339, 0x0007, 0x60c0, 0xc436, 0x083ac8230908),
            // sgdisk code 8300
            Self::System | Self::FileSystem => {
                guid(0x0fc63daf, 0x8483, 0x4772, 0x8e79, 0x3d69d8477de4)
            }
            Self::Fip => guid(0x19d5df83, 0x11b0, 0x457b, 0xbe2c, 0x7559c13142a5),
            Self::FwuMdata => guid(0x8a7a84a0, 0x8387, 0x40f6, 0xab41, 0xa8b9a5a60d23),
            Self::Env => guid(0x3de21764, 0x95bd, 0x54bd, 0xa5c3, 0x4abe786f38a8),
            // sgdisk code ef00
            Self::Esp => guid(0xc12a7328, 0xf81f, 0x11d2, 0xba4b, 0x00a0c93ec93b),
        }
    }

    /// The type as the script passes it to `sgdisk -t`: a 4-digit code
    /// (`8301`, `8300`, `ef00`) or a lower-case GUID.
    pub fn sgdisk_code(self) -> String {
        match self {
            Self::Binary => "8301".into(),
            Self::System | Self::FileSystem => "8300".into(),
            Self::Esp => "ef00".into(),
            Self::Fip | Self::FwuMdata | Self::Env => format_guid(&self.type_guid()),
        }
    }
}

/// Formats a GUID given in textual byte order as lower-case
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_guid(g: &[u8; 16]) -> String {
    Uuid::from_bytes(*g).hyphenated().to_string()
}

/// One row of the SD-card layout (an `mmc0` row selected by the script).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdPartition {
    /// GPT partition name (flashlayout `Name`), at most 36 UTF-16 code units.
    pub name: String,
    /// Partition type, which selects the GPT type GUID.
    pub kind: SdKind,
    /// Byte offset of the partition on the card; a multiple of 512, at least
    /// `34 * 512` (`0x4400`), strictly increasing from row to row.
    pub offset: u64,
    /// Whether the row is programmed (its option contains `P`); rows with
    /// only `E` get a partition but no data.
    pub program: bool,
    /// File copied to the partition when [`program`](Self::program) is set;
    /// `None` for `none` (e.g. `PED` rows).
    pub binary: Option<PathBuf>,
    /// Set the legacy BIOS bootable attribute (bit 2); the script does it on
    /// `bootfs` (see [`st_bootable_legacy`]).
    pub bootable_legacy: bool,
    /// Fixed unique partition GUID in textual byte order (see
    /// [`st_default_partuuid`]); `None` = random.
    pub partuuid: Option<[u8; 16]>,
}

/// Image-wide options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdImageOptions {
    /// Total image size in bytes, a multiple of 512. Default 5120 MiB, the
    /// script's `SDCARD_SIZE` default.
    pub size_bytes: u64,
    /// Disk GUID in textual byte order; `None` = random, as `sgdisk -o` does.
    pub disk_guid: Option<[u8; 16]>,
}

impl Default for SdImageOptions {
    fn default() -> Self {
        Self {
            size_bytes: DEFAULT_SIZE_BYTES,
            disk_guid: None,
        }
    }
}

/// What [`build`] did with one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdPartitionSummary {
    /// GPT partition number (1-based).
    pub number: u32,
    /// Partition name.
    pub name: String,
    /// Partition type.
    pub kind: SdKind,
    /// First LBA (inclusive).
    pub start_lba: u64,
    /// Last LBA (inclusive).
    pub end_lba: u64,
    /// GPT attribute bits.
    pub attributes: u64,
    /// Unique partition GUID in textual byte order (random unless pinned).
    pub partuuid: [u8; 16],
    /// Bytes of the binary copied into the partition (0 if none).
    pub bytes_written: u64,
}

impl SdPartitionSummary {
    /// Partition size in bytes.
    pub fn size_bytes(&self) -> u64 {
        (self.end_lba + 1 - self.start_lba) * SECTOR_SIZE
    }
}

/// Result of a successful [`build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdSummary {
    /// Image size in bytes.
    pub size_bytes: u64,
    /// Disk GUID in textual byte order.
    pub disk_guid: [u8; 16],
    /// First usable LBA (always [`FIRST_USABLE_LBA`]).
    pub first_usable_lba: u64,
    /// Last usable LBA (`sectors - 34`).
    pub last_usable_lba: u64,
    /// One entry per partition, in partition-number order.
    pub partitions: Vec<SdPartitionSummary>,
}

/// Why an SD-card image could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdError {
    /// The layout has no partition.
    #[error("SD-card layout has no partition")]
    NoPartitions,
    /// More partitions than the GPT entry array holds.
    #[error("SD-card layout has {count} partitions, the GPT holds at most {max}")]
    TooManyPartitions {
        /// Partitions in the layout.
        count: usize,
        /// Entries in the GPT array.
        max: usize,
    },
    /// A partition name does not fit a GPT entry.
    #[error("partition name {name:?} is longer than {max} UTF-16 code units")]
    NameTooLong {
        /// The name.
        name: String,
        /// Maximum length.
        max: usize,
    },
    /// A partition offset is not a multiple of the sector size.
    #[error("partition {name}: offset {offset:#x} is not a multiple of 512")]
    UnalignedOffset {
        /// Partition name.
        name: String,
        /// Its offset in bytes.
        offset: u64,
    },
    /// A partition starts inside the protective MBR / primary GPT.
    #[error("partition {name}: offset {offset:#x} is below LBA 34 ({min:#x})")]
    OffsetBelowFirstUsable {
        /// Partition name.
        name: String,
        /// Its offset in bytes.
        offset: u64,
        /// Smallest valid offset in bytes.
        min: u64,
    },
    /// Offsets are not strictly increasing (unsorted or overlapping rows).
    #[error(
        "partition {name}: offset {offset:#x} is not after partition {previous} at {previous_offset:#x} (offsets must be strictly increasing)"
    )]
    OffsetNotIncreasing {
        /// Partition name.
        name: String,
        /// Its offset in bytes.
        offset: u64,
        /// The row before it.
        previous: String,
        /// That row's offset in bytes.
        previous_offset: u64,
    },
    /// The image size is not a whole number of sectors.
    #[error("image size {size_bytes} is not a multiple of 512")]
    UnalignedImageSize {
        /// Requested size in bytes.
        size_bytes: u64,
    },
    /// The image cannot hold the layout (partitions plus backup GPT).
    #[error("image of {size_bytes} bytes is too small: partition {name} needs at least {required_bytes} bytes")]
    ImageTooSmall {
        /// Requested size in bytes.
        size_bytes: u64,
        /// Size the layout needs in bytes.
        required_bytes: u64,
        /// Partition that does not fit.
        name: String,
    },
    /// A binary does not fit its partition.
    #[error(
        "partition {name}: binary {} is {binary_bytes} bytes, the partition holds {partition_bytes} bytes",
        path.display()
    )]
    BinaryTooLarge {
        /// Partition name.
        name: String,
        /// The binary.
        path: PathBuf,
        /// Binary size in bytes.
        binary_bytes: u64,
        /// Partition size in bytes.
        partition_bytes: u64,
    },
    /// A binary could not be opened or read.
    #[error("partition {name}: cannot read binary {}: {source}", path.display())]
    BinaryUnreadable {
        /// Partition name.
        name: String,
        /// The binary.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The output image could not be created or written.
    #[error("cannot write image {}: {source}", path.display())]
    Output {
        /// The image path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The GPT library refused the table.
    #[error("cannot write GPT to {}: {message}", path.display())]
    Gpt {
        /// The image path.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
}

/// A validated partition: the input row plus its LBA range.
struct Planned<'a> {
    part: &'a SdPartition,
    start_lba: u64,
    end_lba: u64,
}

/// Checks the layout and computes each partition's LBA range, without
/// touching the output. Binaries of programmed rows are stat'ed here.
fn plan<'a>(parts: &'a [SdPartition], opts: &SdImageOptions) -> Result<Vec<Planned<'a>>, SdError> {
    if parts.is_empty() {
        return Err(SdError::NoPartitions);
    }
    if parts.len() > GPT_ENTRIES {
        return Err(SdError::TooManyPartitions {
            count: parts.len(),
            max: GPT_ENTRIES,
        });
    }
    if !opts.size_bytes.is_multiple_of(SECTOR_SIZE) {
        return Err(SdError::UnalignedImageSize {
            size_bytes: opts.size_bytes,
        });
    }
    let sectors = opts.size_bytes / SECTOR_SIZE;
    // Backup GPT: 32 sectors of entries and the header in the last sector.
    let backup_sectors = 1 + gpt_array_sectors();
    let last_usable = sectors.checked_sub(backup_sectors + 1);

    let mut prev: Option<&SdPartition> = None;
    for p in parts {
        if p.name.encode_utf16().count() > MAX_NAME_UTF16 {
            return Err(SdError::NameTooLong {
                name: p.name.clone(),
                max: MAX_NAME_UTF16,
            });
        }
        if !p.offset.is_multiple_of(SECTOR_SIZE) {
            return Err(SdError::UnalignedOffset {
                name: p.name.clone(),
                offset: p.offset,
            });
        }
        if p.offset < FIRST_USABLE_LBA * SECTOR_SIZE {
            return Err(SdError::OffsetBelowFirstUsable {
                name: p.name.clone(),
                offset: p.offset,
                min: FIRST_USABLE_LBA * SECTOR_SIZE,
            });
        }
        if let Some(q) = prev {
            if p.offset <= q.offset {
                return Err(SdError::OffsetNotIncreasing {
                    name: p.name.clone(),
                    offset: p.offset,
                    previous: q.name.clone(),
                    previous_offset: q.offset,
                });
            }
        }
        prev = Some(p);
    }

    let mut planned = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let start_lba = p.offset / SECTOR_SIZE;
        let binary_bytes = match (&p.program, &p.binary) {
            (true, Some(path)) => std::fs::metadata(path)
                .map_err(|source| SdError::BinaryUnreadable {
                    name: p.name.clone(),
                    path: path.clone(),
                    source,
                })?
                .len(),
            _ => 0,
        };
        let too_small = |need_end_lba: u64| SdError::ImageTooSmall {
            size_bytes: opts.size_bytes,
            required_bytes: (need_end_lba + 1 + backup_sectors) * SECTOR_SIZE,
            name: p.name.clone(),
        };
        let end_lba = match parts.get(i + 1) {
            Some(next) => next.offset / SECTOR_SIZE - 1,
            None => {
                // The script leaves the end empty: sgdisk extends the last
                // partition to the last usable LBA. The binary must fit.
                let need_end = start_lba + binary_bytes.div_ceil(SECTOR_SIZE).max(1) - 1;
                match last_usable {
                    Some(l) if l >= need_end => l,
                    _ => return Err(too_small(need_end)),
                }
            }
        };
        if last_usable.is_none_or(|l| end_lba > l) {
            return Err(too_small(end_lba));
        }
        let partition_bytes = (end_lba + 1 - start_lba) * SECTOR_SIZE;
        if binary_bytes > partition_bytes {
            return Err(SdError::BinaryTooLarge {
                name: p.name.clone(),
                path: p.binary.clone().unwrap_or_default(),
                binary_bytes,
                partition_bytes,
            });
        }
        planned.push(Planned {
            part: p,
            start_lba,
            end_lba,
        });
    }
    Ok(planned)
}

/// Sectors taken by one copy of the 128-entry partition array.
fn gpt_array_sectors() -> u64 {
    (GPT_ENTRIES as u64 * 128).div_ceil(SECTOR_SIZE)
}

/// Builds the SD-card image at `out` (created or truncated) and returns what
/// was laid out.
///
/// The file is sparse: it is sized with `set_len` and only the GPT and the
/// non-zero blocks of the binaries are written, so a 5 GiB image takes
/// little disk space and seconds to build. The layout is fully validated,
/// and every binary's size checked, before `out` is touched.
pub fn build(
    parts: &[SdPartition],
    opts: &SdImageOptions,
    out: &Path,
) -> Result<SdSummary, SdError> {
    let planned = plan(parts, opts)?;
    let out_err = |source: io::Error| SdError::Output {
        path: out.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(out_err)?;
    file.set_len(opts.size_bytes).map_err(out_err)?;

    let disk_guid = opts
        .disk_guid
        .map(Uuid::from_bytes)
        .unwrap_or_else(Uuid::new_v4);
    let mut entries = Vec::with_capacity(planned.len());
    let mut summary = Vec::with_capacity(planned.len());
    for (i, pl) in planned.iter().enumerate() {
        let number = u32::try_from(i + 1).expect("at most 128 partitions");
        let part_guid = pl
            .part
            .partuuid
            .map(Uuid::from_bytes)
            .unwrap_or_else(Uuid::new_v4);
        let attributes = if pl.part.bootable_legacy {
            ATTR_LEGACY_BIOS_BOOTABLE
        } else {
            0
        };
        entries.push(GptEntry {
            name: pl.part.name.clone(),
            first_lba: pl.start_lba,
            last_lba: pl.end_lba,
            type_guid: pl.part.kind.type_guid(),
            attributes,
            partuuid: *part_guid.as_bytes(),
        });
        summary.push(SdPartitionSummary {
            number,
            name: pl.part.name.clone(),
            kind: pl.part.kind,
            start_lba: pl.start_lba,
            end_lba: pl.end_lba,
            attributes,
            partuuid: *part_guid.as_bytes(),
            bytes_written: 0,
        });
    }
    let (first_usable_lba, last_usable_lba) =
        write_gpt(&mut file, opts.size_bytes, *disk_guid.as_bytes(), &entries).map_err(
            |message| SdError::Gpt {
                path: out.to_path_buf(),
                message,
            },
        )?;

    for (pl, s) in planned.iter().zip(summary.iter_mut()) {
        if let (true, Some(path)) = (pl.part.program, &pl.part.binary) {
            let limit = (pl.end_lba + 1 - pl.start_lba) * SECTOR_SIZE;
            s.bytes_written =
                copy_binary(&pl.part.name, path, &mut file, pl.part.offset, limit, out)?;
        }
    }
    file.sync_all().map_err(out_err)?;

    Ok(SdSummary {
        size_bytes: opts.size_bytes,
        disk_guid: *disk_guid.as_bytes(),
        first_usable_lba,
        last_usable_lba,
        partitions: summary,
    })
}

/// One entry of a GPT written by [`write_gpt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// Partition name (at most [`MAX_NAME_UTF16`] UTF-16 code units).
    pub name: String,
    /// First LBA (512-byte sectors).
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// Partition type GUID, in textual byte order.
    pub type_guid: [u8; 16],
    /// Attribute bits (e.g. [`ATTR_LEGACY_BIOS_BOOTABLE`]).
    pub attributes: u64,
    /// Unique partition GUID, in textual byte order.
    pub partuuid: [u8; 16],
}

/// Writes a protective MBR, the primary GPT (header and 128 entries at LBA
/// 1–33) and the backup GPT (in the last 33 sectors) onto `file`, a disk of
/// `size_bytes` (a multiple of 512), with partitions numbered from 1 in the
/// order of `entries`. Nothing else of the file is touched. Returns the
/// first and last usable LBA, or the GPT library's message.
///
/// [`build`] writes SD-card images with it, and the simulated STM32MP1
/// writes the GPT of its eMMC and SD card the same way when `stm32prog`
/// does a full update.
pub fn write_gpt(
    file: &mut File,
    size_bytes: u64,
    disk_guid: [u8; 16],
    entries: &[GptEntry],
) -> Result<(u64, u64), String> {
    // Protective MBR covering the whole disk (capped at 2^32 - 1 sectors).
    let sectors = size_bytes / SECTOR_SIZE;
    let mbr_len = u32::try_from(sectors.saturating_sub(1)).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(mbr_len)
        .overwrite_lba0(&mut *file)
        .map_err(|e| e.to_string())?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(&mut *file, Some(Uuid::from_bytes(disk_guid)))
        .map_err(|e| e.to_string())?;
    let mut table = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let number = u32::try_from(i + 1).map_err(|e| e.to_string())?;
        table.insert(
            number,
            gpt::partition::Partition {
                part_type_guid: Type {
                    guid: Uuid::from_bytes(e.type_guid),
                    os: OperatingSystem::None,
                },
                part_guid: Uuid::from_bytes(e.partuuid),
                first_lba: e.first_lba,
                last_lba: e.last_lba,
                flags: e.attributes,
                name: e.name.clone(),
            },
        );
    }
    disk.update_partitions(table).map_err(|e| e.to_string())?;
    let usable = {
        let h = disk.header();
        (h.first_usable, h.last_usable)
    };
    disk.write().map_err(|e| e.to_string())?;
    Ok(usable)
}

/// Copies `path` into `img` at `offset`, seeking over all-zero blocks.
/// Returns the bytes copied; fails if the file is longer than `limit`, the
/// partition size (it grew since it was stat'ed).
fn copy_binary(
    name: &str,
    path: &Path,
    img: &mut File,
    offset: u64,
    limit: u64,
    out: &Path,
) -> Result<u64, SdError> {
    const CHUNK: usize = 1 << 20;
    let in_err = |source: io::Error| SdError::BinaryUnreadable {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let out_err = |source: io::Error| SdError::Output {
        path: out.to_path_buf(),
        source,
    };
    let mut src = File::open(path).map_err(in_err)?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf).map_err(in_err)?;
        if n == 0 {
            break;
        }
        if done + n as u64 > limit {
            return Err(SdError::BinaryTooLarge {
                name: name.to_string(),
                path: path.to_path_buf(),
                binary_bytes: done + n as u64,
                partition_bytes: limit,
            });
        }
        let chunk = &buf[..n];
        if chunk.iter().any(|&b| b != 0) {
            img.seek(SeekFrom::Start(offset + done)).map_err(out_err)?;
            img.write_all(chunk).map_err(out_err)?;
        }
        done += n as u64;
    }
    Ok(done)
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full(src: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
