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
//!
//! The files follow those stages: the rows and their columns in `types.rs`,
//! the errors and their help texts in `error.rs`, the text stage in
//! `parse.rs` and the device stage in `check.rs`.

use std::path::Path;

mod check;
mod error;
mod parse;
mod types;

pub use check::{binary_search_dirs, check};
pub use error::{LayoutError, LayoutErrorKind, LayoutErrors};
pub use parse::{parse, parse_bytes};
pub use types::{
    CheckOptions, DeviceGeometry, IdClass, Ip, IpKind, Layout, Offset, Opt, PartType, Partition,
    FIRST_USER_ID, GPT_HEADER_BLOCKS, MAX_DEVICES, MAX_ID, MAX_NAME_LEN, MAX_PARTITIONS,
    MMC_BLOCK_SIZE,
};

/// Reads `path`, decodes it as [`parse_bytes`] does (plain or wrapped in an
/// STM32 image header), then [`parse`]s and [`check`]s it, returning every
/// error.
pub fn load(path: &Path, options: &CheckOptions) -> Result<Layout, LayoutErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        LayoutErrors::single(
            path,
            1,
            1,
            LayoutErrorKind::Io {
                message: e.to_string(),
            },
        )
    })?;
    let text = parse::decode(&bytes, path)?;
    let (mut layout, mut errors) = parse::parse_partial(text, path);
    // Rows with errors were dropped, so the device checks still see a
    // consistent list and report their own problems in the same pass.
    errors.extend(check(&mut layout, options));
    error::finish(layout, errors)
}
