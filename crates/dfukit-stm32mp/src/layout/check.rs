//! The device stage: host checks stricter than U-Boot's on offsets against
//! each device's geometry, and on the binaries against their partitions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{sort, LayoutError, LayoutErrorKind, Sink};
use super::types::*;

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
/// * the binary exists in one of [`binary_search_dirs`] (the first that
///   holds it is used: [`Partition::binary`] is set to it) and fits its
///   partition; a `Binary(N)` image must
///   fit in one N-th of the partition, since U-Boot writes N copies of it
///   one after the other (`stm32prog_copy_fsbl`).
pub fn check(layout: &mut Layout, options: &CheckOptions) -> Vec<LayoutError> {
    let mut sink = Sink::new(&layout.path);
    let dirs = binary_search_dirs(&layout.path, &options.binary_dirs);
    let devices: BTreeSet<Ip> = layout.partitions.iter().map(|p| p.ip).collect();
    let mut rooms: Vec<Room> = Vec::new();
    for ip in devices {
        rooms.extend(check_device(&layout.partitions, ip, options, &mut sink));
    }
    for room in rooms {
        let p = &mut layout.partitions[room.index];
        p.size = room.size;
        if !options.skip_files {
            check_binary(p, room, erase_size(options, p.ip), &dirs, &mut sink);
        }
    }
    let mut errors = sink.errors;
    sort(&mut errors);
    errors
}

/// Where the binaries of the layout at `layout` are looked for, in order:
/// each of `extra` (`--binaries DIR`), then the layout's directory and the
/// three above it. ST's starter packages keep the layout in
/// `flashlayout_<image>/<bootscheme>/` and the binaries two levels up, and
/// ST's `create_sdcard_from_flashlayout.sh` probes `.`, `..`, `../..` and
/// `../../..` from the layout's directory in that order.
pub fn binary_search_dirs(layout: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dir = layout.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut dirs = extra.to_vec();
    for _ in 0..4 {
        dirs.push(dir.clone());
        dir.push("..");
    }
    dirs
}

/// The first of `dirs` joined with `name` that is a regular file, with its
/// size, or every path tried. An absolute `name` is only itself.
fn find_binary(name: &str, dirs: &[PathBuf]) -> Result<(PathBuf, u64), Vec<PathBuf>> {
    let tried: Vec<PathBuf> = if Path::new(name).is_absolute() {
        vec![PathBuf::from(name)]
    } else {
        dirs.iter().map(|d| d.join(name)).collect()
    };
    for p in &tried {
        if let Some(m) = std::fs::metadata(p).ok().filter(|m| m.is_file()) {
            return Ok((p.clone(), m.len()));
        }
    }
    Err(tried)
}

/// The room a row has on its device.
struct Room {
    /// The row's index in the layout.
    index: usize,
    /// Its size, when known.
    size: Option<u64>,
    /// What limits it, for messages (e.g. " up to 'rootfs' on line 12").
    until: String,
}

/// The erase unit of `ip`: as given, else the device kind's default.
fn erase_size(options: &CheckOptions, ip: Ip) -> u64 {
    options
        .devices
        .get(&ip)
        .and_then(|g| g.erase_size)
        .unwrap_or_else(|| ip.default_erase_size())
        .max(1)
}

/// The lowest and highest offsets a partition may start at on `ip` (the
/// highest when the size is known); `None` for `ram` and `none`, whose
/// offsets are addresses.
fn usable_range(ip: Ip, geo: &DeviceGeometry, erase: u64) -> Option<(u64, Option<u64>)> {
    match ip.kind {
        IpKind::Mmc => {
            let gpt_blocks = GPT_HEADER_BLOCKS * MMC_BLOCK_SIZE;
            Some(if erase > gpt_blocks {
                (erase, geo.size.map(|s| s.saturating_sub(erase)))
            } else {
                (
                    gpt_blocks,
                    geo.size
                        .map(|s| s.saturating_sub(gpt_blocks + MMC_BLOCK_SIZE)),
                )
            })
        }
        IpKind::Nor | IpKind::Nand | IpKind::SpiNand => Some((0, geo.size)),
        IpKind::None | IpKind::Ram => None,
    }
}

/// Checks the offsets of the rows on `ip` and returns the room of each
/// row on it: the ordinary rows in file order, then `RawImage` and the
/// eMMC boot partitions.
fn check_device(
    parts: &[Partition],
    ip: Ip,
    options: &CheckOptions,
    sink: &mut Sink<'_>,
) -> Vec<Room> {
    let geo = options.devices.get(&ip).copied().unwrap_or_default();
    let erase = erase_size(options, ip);
    let Some((first, last)) = usable_range(ip, &geo, erase) else {
        // Addresses, not partitions: only the size of RAM loads could be
        // checked, and the DRAM map is not known here.
        return (parts.iter().enumerate())
            .filter(|(_, p)| p.ip == ip)
            .map(|(index, _)| Room {
                index,
                size: None,
                until: String::new(),
            })
            .collect();
    };

    // (index, offset) of the ordinary rows, in file order.
    let rows: Vec<(usize, u64)> = (parts.iter().enumerate())
        .filter(|(_, p)| p.ip == ip && p.kind != PartType::RawImage)
        .filter_map(|(i, p)| p.byte_offset().map(|o| (i, o)))
        .collect();

    let mut rooms = Vec::new();
    for (n, &(i, off)) in rows.iter().enumerate() {
        let p = &parts[i];
        let prev = n.checked_sub(1).map(|m| (&parts[rows[m].0], rows[m].1));
        for kind in offset_problems(off, prev, ip, erase, first, last) {
            sink.push(p.line, p.col(COL_OFFSET), kind);
        }
        // Size: up to the next row, or to the usable end.
        let (size, until) = match rows.get(n + 1) {
            Some(&(ni, noff)) => (
                noff.checked_sub(off).filter(|&s| s > 0),
                format!(" up to '{}' on line {}", parts[ni].name, parts[ni].line),
            ),
            None => (
                last.and_then(|m| m.checked_sub(off)),
                format!(" up to the end of '{ip}'"),
            ),
        };
        rooms.push(Room {
            index: i,
            size,
            until,
        });
    }
    for (index, p) in parts.iter().enumerate().filter(|(_, p)| p.ip == ip) {
        if p.kind == PartType::RawImage {
            let until = format!(", the whole of '{ip}'");
            rooms.push(Room {
                index,
                size: geo.size,
                until,
            });
        } else if p.byte_offset().is_none() {
            let until = format!(", the size of {}", p.offset);
            rooms.push(Room {
                index,
                size: geo.boot_size,
                until,
            });
        }
    }
    rooms
}

/// What is wrong with offset `off` on `ip`, after the previous ordinary
/// row `prev` (the row and its offset), given the erase size and the
/// usable range `first..=last`.
fn offset_problems(
    off: u64,
    prev: Option<(&Partition, u64)>,
    ip: Ip,
    erase: u64,
    first: u64,
    last: Option<u64>,
) -> Vec<LayoutErrorKind> {
    let mut problems = Vec::new();
    match prev {
        Some((pp, poff)) if off == poff => problems.push(LayoutErrorKind::SameOffset {
            offset: off,
            other_line: pp.line,
            other_name: pp.name.clone(),
        }),
        Some((pp, poff)) if off < poff => problems.push(LayoutErrorKind::UnorderedOffset {
            offset: off,
            prev_offset: poff,
            prev_line: pp.line,
            prev_name: pp.name.clone(),
        }),
        _ => {}
    }
    if !off.is_multiple_of(erase) {
        problems.push(LayoutErrorKind::Misaligned {
            offset: off,
            erase_size: erase,
            ip,
        });
    }
    if off < first {
        problems.push(LayoutErrorKind::InGptArea {
            offset: off,
            min: first,
            ip,
        });
    }
    if let Some(max) = last.filter(|&max| off > max) {
        problems.push(LayoutErrorKind::BeyondDevice {
            offset: off,
            max,
            ip,
        });
    }
    problems
}

/// Finds the binary of row `p` in `dirs` and checks it against its
/// `room`, filling in [`Partition::binary`] and [`Partition::binary_size`];
/// `erase` is the device's erase unit.
fn check_binary(p: &mut Partition, room: Room, erase: u64, dirs: &[PathBuf], sink: &mut Sink<'_>) {
    let Some(name) = p.binary_name.clone() else {
        // stm32prog_next_phase stops on this row waiting for data the
        // host cannot send; only E rows are created without a file.
        if p.opt.downloads() {
            let absent = p.columns[COL_BINARY] == 0;
            let column = if absent {
                p.end_column.max(1)
            } else {
                p.col(COL_BINARY)
            };
            let kind = LayoutErrorKind::NoBinary {
                name: p.name.clone(),
                opt: p.opt.text(),
                absent,
            };
            sink.push(p.line, column, kind);
        }
        return;
    };
    let col = p.col(COL_BINARY);
    let (bin, len) = match find_binary(&name, dirs) {
        Ok(found) => found,
        Err(looked) => {
            sink.push(p.line, col, LayoutErrorKind::MissingBinary { name, looked });
            return;
        }
    };
    p.binary = Some(bin.clone());
    p.binary_size = Some(len);
    let Some(space) = room.size else {
        return;
    };
    let copies = match p.kind {
        PartType::Binary { copies } => copies.max(1),
        _ => 1,
    };
    // U-Boot's stm32prog_copy_fsbl writes each copy right after the
    // previous one, rounded up to whole erase blocks: a copy gets the
    // whole erase blocks of space / N.
    let per_copy = space / u64::from(copies) / erase * erase;
    let name = p.name.clone();
    let until = room.until;
    if copies > 1 && len > per_copy {
        let kind = LayoutErrorKind::BinaryCopiesTooLarge {
            path: bin,
            size: len,
            name,
            copies,
            space,
            per_copy,
            erase_size: erase,
            until,
        };
        sink.push(p.line, col, kind);
    } else if len > space {
        let kind = LayoutErrorKind::BinaryTooLarge {
            path: bin,
            size: len,
            name,
            space,
            until,
        };
        sink.push(p.line, col, kind);
    }
}
