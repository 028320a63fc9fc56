//! What can be wrong with a layout ([`LayoutErrorKind`], with the help
//! text for each), where ([`LayoutError`]), and every error of a file
//! ([`LayoutErrors`]).

use std::fmt;
use std::path::{Path, PathBuf};

use super::types::{Ip, Layout, Offset, MAX_DEVICES, MAX_ID, MAX_NAME_LEN, MAX_PARTITIONS};

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
    /// A NUL byte inside a field: U-Boot would silently cut the field
    /// there.
    #[error("NUL byte in the {field} column '{text}'")]
    NulInField {
        /// The column's name (`Name`, `Binary`, ...).
        field: &'static str,
        /// The field, the NUL shown as `\0`.
        text: String,
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
    /// The binary is in none of the directories searched (see
    /// [`binary_search_dirs`](super::binary_search_dirs)).
    #[error(
        "binary '{name}' not found; looked for {}",
        looked.iter().map(|p| format!("'{}'", p.display())).collect::<Vec<_>>().join(", ")
    )]
    MissingBinary {
        /// The `Binary` column.
        name: String,
        /// Every path tried, in order.
        looked: Vec<PathBuf>,
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
        /// What [`image::parse`](crate::image::parse) found wrong.
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
    /// A stable code for diagnostics, e.g.
    /// `dfukit::stm32mp::layout::missing_binary`.
    pub fn code(&self) -> &'static str {
        use LayoutErrorKind::*;
        match self {
            Io { .. } => "dfukit::stm32mp::layout::io",
            Empty => "dfukit::stm32mp::layout::empty",
            TooManyPartitions { .. } => "dfukit::stm32mp::layout::too_many_partitions",
            TooFewColumns { .. } => "dfukit::stm32mp::layout::too_few_columns",
            InvalidOptionChar { .. } => "dfukit::stm32mp::layout::invalid_option_char",
            MissingP { .. } => "dfukit::stm32mp::layout::missing_p",
            InvalidId { .. } => "dfukit::stm32mp::layout::invalid_id",
            IdOutOfRange { .. } => "dfukit::stm32mp::layout::id_out_of_range",
            IdReserved => "dfukit::stm32mp::layout::id_reserved",
            DuplicateId { .. } => "dfukit::stm32mp::layout::duplicate_id",
            NameTooLong { .. } => "dfukit::stm32mp::layout::name_too_long",
            NulInField { .. } => "dfukit::stm32mp::layout::nul_in_field",
            InvalidType { .. } => "dfukit::stm32mp::layout::invalid_type",
            MultipleBinaryNotSupported { .. } => {
                "dfukit::stm32mp::layout::multiple_binary_not_supported"
            }
            InvalidIp { .. } => "dfukit::stm32mp::layout::invalid_ip",
            TooManyDevices { .. } => "dfukit::stm32mp::layout::too_many_devices",
            SelectedNone { .. } => "dfukit::stm32mp::layout::selected_none",
            InvalidBootPart { .. } => "dfukit::stm32mp::layout::invalid_boot_part",
            InvalidOffset { .. } => "dfukit::stm32mp::layout::invalid_offset",
            BootPartNotMmc { .. } => "dfukit::stm32mp::layout::boot_part_not_mmc",
            DuplicateBootPart { .. } => "dfukit::stm32mp::layout::duplicate_boot_part",
            RawImageNotAtZero { .. } => "dfukit::stm32mp::layout::raw_image_not_at_zero",
            SameOffset { .. } => "dfukit::stm32mp::layout::same_offset",
            UnorderedOffset { .. } => "dfukit::stm32mp::layout::unordered_offset",
            Misaligned { .. } => "dfukit::stm32mp::layout::misaligned",
            InGptArea { .. } => "dfukit::stm32mp::layout::in_gpt_area",
            BeyondDevice { .. } => "dfukit::stm32mp::layout::beyond_device",
            MissingBinary { .. } => "dfukit::stm32mp::layout::missing_binary",
            BinaryTooLarge { .. } => "dfukit::stm32mp::layout::binary_too_large",
            BinaryCopiesTooLarge { .. } => "dfukit::stm32mp::layout::binary_copies_too_large",
            NoBinary { .. } => "dfukit::stm32mp::layout::no_binary",
            InvalidHeader { .. } => "dfukit::stm32mp::layout::invalid_header",
            InvalidChecksum { .. } => "dfukit::stm32mp::layout::invalid_checksum",
            NotUtf8 { .. } => "dfukit::stm32mp::layout::not_utf8",
        }
    }

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
            NulInField { .. } => "remove the NUL byte (the file was saved in UTF-16 or edited with a binary tool?): U-Boot reads each field as a C string and would cut it there".into(),
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
            MissingBinary { .. } => "the Binary column is relative to the layout's directory or up to three levels above it (as in ST's starter packages); give the binaries' directory with --binaries DIR, fix the path, or write 'none' with option PE to create the partition empty".into(),
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

impl LayoutErrors {
    /// The one error of a file that cannot be parsed at all (unreadable,
    /// bad header, not text).
    pub(super) fn single(path: &Path, line: usize, column: usize, kind: LayoutErrorKind) -> Self {
        LayoutErrors(vec![LayoutError {
            path: path.to_path_buf(),
            line,
            column,
            kind,
        }])
    }
}

/// `layout` if no error was found, else every error sorted by position.
pub(super) fn finish(layout: Layout, mut errors: Vec<LayoutError>) -> Result<Layout, LayoutErrors> {
    if errors.is_empty() {
        Ok(layout)
    } else {
        sort(&mut errors);
        Err(LayoutErrors(errors))
    }
}

/// Sorts by line, then column; errors at one place keep the order in which
/// they were found.
pub(super) fn sort(errors: &mut [LayoutError]) {
    errors.sort_by_key(|e| (e.line, e.column));
}

/// Collects errors for one file.
pub(super) struct Sink<'a> {
    path: &'a Path,
    pub(super) errors: Vec<LayoutError>,
}

impl<'a> Sink<'a> {
    /// No errors yet for `path`.
    pub(super) fn new(path: &'a Path) -> Self {
        Sink {
            path,
            errors: Vec::new(),
        }
    }

    /// Records `kind` at `line`:`column`.
    pub(super) fn push(&mut self, line: usize, column: usize, kind: LayoutErrorKind) {
        self.errors.push(LayoutError {
            path: self.path.to_path_buf(),
            line,
            column,
            kind,
        });
    }
}
