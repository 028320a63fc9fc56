//! The partition table U-Boot builds at the DETACH after the layout
//! (`stm32prog_devices_init`): the rules across rows
//! (`treat_partition_list`), each device's checks and the partition sizes
//! (`init_device`), the erase of `D` rows (`part_delete`) and the GPT of
//! fully updated MMC devices (`create_gpt_partitions`).
//!
//! Where U-Boot's rules differ from the host's checker ([`crate::layout`]):
//! rows are sorted by address per device before sizes are computed (the
//! host wants them in increasing order in the file); a row on IP `none`
//! before a device row with the same Id is not a duplicate (U-Boot compares
//! each device row with the rows after it only); devices are checked one
//! after the other, each one's rows before the next device is looked at.

use super::board::{BoardStorageError, ExistingPartition, Geometry, GptPartition, Stm32mpBoard};
use super::flashlayout::{
    FlashLayout, Medium, MediumId, PartKind, Placement, UbootPartition, FIRST_USER_ID,
    LAST_USER_ID, MAX_ROWS,
};
use super::text::ErrorText;
use core::fmt;
use core::time::Duration;

/// Most devices a layout may address (`STM32PROG_MAX_DEV`).
pub const MAX_DEVICES: usize = 5;
/// Blocks a GPT takes at the start of an MMC (`GPT_HEADER_SZ`).
pub const GPT_HEADER_BLOCKS: u64 = 34;

const fn guid(a: u32, b: u16, c: u16, d: u16, e: u64) -> [u8; 16] {
    let (a, b, c, d, e) = (
        a.to_be_bytes(),
        b.to_be_bytes(),
        c.to_be_bytes(),
        d.to_be_bytes(),
        e.to_be_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], e[2], e[3], e[4], e[5], e[6],
        e[7],
    ]
}

/// `LINUX_RESERVED_UUID`, the type of `Binary` rows.
pub const TYPE_LINUX_RESERVED: [u8; 16] =
    guid(0x8DA6_3339, 0x0007, 0x60C0, 0xC436, 0x083A_C823_0908);
/// `FIP_TYPE_UUID`.
pub const TYPE_FIP: [u8; 16] = guid(0x19D5_DF83, 0x11B0, 0x457B, 0xBE2C, 0x7559_C131_42A5);
/// `FWU_MDATA_UUID`.
pub const TYPE_FWU_MDATA: [u8; 16] = guid(0x8A7A_84A0, 0x8387, 0x40F6, 0xAB41, 0xA8B9_A5A6_0D23);
/// U-Boot's `u-boot-env` type.
pub const TYPE_UBOOT_ENV: [u8; 16] = guid(0x3DE2_1764, 0x95BD, 0x54BD, 0xA5C3, 0x4ABE_786F_38A8);
/// U-Boot's `system` type: the EFI system partition.
pub const TYPE_ESP: [u8; 16] = guid(0xC12A_7328, 0xF81F, 0x11D2, 0xBA4B, 0x00A0_C93E_C93B);
/// U-Boot's `linux` type (Linux filesystem data).
pub const TYPE_LINUX: [u8; 16] = guid(0x0FC6_3DAF, 0x8483, 0x4772, 0x8E79, 0x3D69_D847_7DE4);
/// The unique GUID of the first `rootfs` (or `rootfs-a`) on `mmc0`,
/// `mmc1`, `mmc2` (`ROOTFS_MMC0_UUID`…), so that `root=PARTUUID=` is fixed.
pub const ROOTFS_PARTUUIDS: [[u8; 16]; 3] = [
    guid(0xE91C_4E10, 0x16E6, 0x4C0E, 0xBD0E, 0x77BE_CF4A_3582),
    guid(0x491F_6117, 0x415D, 0x4F53, 0x88C9, 0x6E0D_E54D_EAC6),
    guid(0xFD58_F1C7, 0xBE0D, 0x4338, 0x88E9, 0xAD8F_050A_EB18),
];
/// The unique GUIDs of the FIP rows named `fip-a` and `fip-b`.
pub const FIP_PARTUUIDS: [(&str, [u8; 16]); 2] = [
    (
        "fip-a",
        guid(0x4FD8_4C93, 0x54EF, 0x463F, 0xA7EF, 0xAE25_FF88_7087),
    ),
    (
        "fip-b",
        guid(0x09C5_4952, 0xD5BF, 0x45AF, 0xACEE, 0x3353_0376_6FB3),
    ),
];

/// One device of the layout (`struct stm32prog_dev_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutDevice {
    /// Which device.
    pub medium: MediumId,
    /// Every row on it is selected (`P`): its GPT is rewritten.
    pub full_update: bool,
}

/// The devices of a layout, in order of first appearance.
pub type LayoutDevices = heapless::Vec<LayoutDevice, MAX_DEVICES>;

fn err(args: fmt::Arguments<'_>) -> ErrorText {
    ErrorText::from_fmt(args)
}

/// `treat_partition_list`: rows on `none` must not be selected, Ids are
/// 0x01..=0xF0 and unique, at most [`MAX_DEVICES`] devices.
pub fn layout_devices(layout: &FlashLayout) -> Result<LayoutDevices, ErrorText> {
    let mut devices = LayoutDevices::new();
    for (i, p) in layout.rows.iter().enumerate() {
        if p.medium.medium == Medium::None {
            if p.option.select {
                return Err(err(format_args!(
                    "Layout: selected none phase = {:#x} for part {}",
                    p.id, p.name
                )));
            }
            continue;
        }
        if p.id == 0 || p.id > LAST_USER_ID {
            return Err(err(format_args!(
                "Layout: invalid phase = {:#x} for part {}",
                p.id, p.name
            )));
        }
        if let Some(q) = layout.rows[i + 1..].iter().find(|q| q.id == p.id) {
            return Err(err(format_args!(
                "Layout: duplicated phase {:#x} for part {} and {}",
                p.id, p.name, q.name
            )));
        }
        let dev = match devices.iter_mut().find(|d| d.medium == p.medium) {
            Some(d) => d,
            None => {
                let new = LayoutDevice {
                    medium: p.medium,
                    full_update: true,
                };
                devices
                    .push(new)
                    .map_err(|_| err(format_args!("Layout: too many device")))?;
                devices.last_mut().expect("just pushed")
            }
        };
        dev.full_update &= p.option.select;
    }
    Ok(devices)
}

/// The usable span of a device and what `init_device` reads from it.
struct Span {
    first: u64,
    last: u64,
    erase: u64,
    /// MMC: the whole user area and the boot partition size.
    mmc: Option<(u64, u64)>,
}

fn span(medium: MediumId, geometry: Option<Geometry>) -> Result<Span, ErrorText> {
    match (medium.medium, geometry) {
        (
            Medium::Mmc,
            Some(Geometry::Mmc {
                block_size: bs,
                blocks,
                erase_group_blocks: eg,
                boot_size,
            }),
        ) => {
            // A GPT copy at each end: a whole erase group each when that
            // is larger than the GPT.
            let (first, last) = if eg > GPT_HEADER_BLOCKS {
                (eg * bs, blocks.saturating_sub(eg) * bs)
            } else {
                (
                    GPT_HEADER_BLOCKS * bs,
                    blocks.saturating_sub(GPT_HEADER_BLOCKS + 1) * bs,
                )
            };
            Ok(Span {
                first,
                last,
                erase: eg * bs,
                mmc: Some((blocks * bs, boot_size)),
            })
        }
        (Medium::Mmc, _) => Err(err(format_args!(
            "mmc device {} not found",
            medium.instance
        ))),
        (m, Some(Geometry::Mtd { size, erase_size })) if m.is_mtd() => Ok(Span {
            first: 0,
            last: size,
            erase: erase_size,
            mmc: None,
        }),
        (m, _) if m.is_mtd() => Err(err(format_args!("MTD device {medium} not found"))),
        (Medium::Ram, Some(Geometry::Ram { start, size })) => Ok(Span {
            first: start,
            last: start.saturating_add(size),
            erase: 1,
            mmc: None,
        }),
        (Medium::Ram, _) => Err(err(format_args!("RAM device {medium} not found"))),
        _ => Err(err(format_args!("unknown device type = {medium}"))),
    }
}

/// U-Boot's `part_id` before numbering: -1 for boot1, -2 for boot2, 0
/// otherwise; rows sort on it, then on their address.
fn sort_key(p: &UbootPartition) -> (i8, u64) {
    match p.placement {
        Placement::Boot(n) => (-(n as i8), p.addr),
        Placement::Address(a) => (0, a),
    }
}

/// `init_device`: checks `dev` is fitted and each of its rows, and sets
/// their address, size and partition number.
fn init_device<B: Stm32mpBoard>(
    layout: &mut FlashLayout,
    dev: LayoutDevice,
    board: &mut B,
) -> Result<(), ErrorText> {
    let m = dev.medium;
    let span = span(m, board.geometry(m))?;
    // The device's rows by (part_id, address); insertion sort keeps rows
    // with equal keys in file order, as the kernel's list_sort does.
    let mut order = heapless::Vec::<usize, MAX_ROWS>::new();
    for (i, _) in layout
        .rows
        .iter()
        .enumerate()
        .filter(|(_, p)| p.medium == m)
    {
        let at = order
            .iter()
            .position(|&j| sort_key(&layout.rows[j]) > sort_key(&layout.rows[i]))
            .unwrap_or(order.len());
        // Never full: the layout has at most MAX_ROWS rows.
        let _ = order.insert(at, i);
    }
    let mut counter: u16 = 1;
    for (k, &i) in order.iter().enumerate() {
        let next = order.get(k + 1).map(|&j| {
            let n = &layout.rows[j];
            (n.addr, n.name.clone(), n.id)
        });
        let p = &mut layout.rows[i];
        if p.copies > 1
            && (!matches!(m.medium, Medium::Nand | Medium::SpiNand)
                || p.id >= FIRST_USER_ID
                || !p.name.as_bytes().starts_with(b"fsbl"))
        {
            return Err(err(format_args!(
                "{}: multiple binary {} not supported",
                p.label(),
                p.copies
            )));
        }
        if p.kind == PartKind::RawImage {
            p.number = 0;
            p.addr = 0;
            p.size = span.mmc.map_or(span.last, |(whole, _)| whole);
            continue;
        }
        if let Placement::Boot(n) = p.placement {
            match span.mmc {
                Some((_, boot_size)) => p.size = boot_size,
                None => {
                    return Err(err(format_args!(
                        "{}: hw partition not expected : -{n}",
                        p.label()
                    )))
                }
            }
        } else {
            p.number = counter;
            counter += 1;
            p.size = match next {
                Some((na, _, _)) if p.addr < na => na - p.addr,
                Some((na, nname, nid)) => {
                    return Err(err(format_args!(
                        "{}: same address : {:#x} == {nname} ({nid:#x}): {na:#x}",
                        p.label(),
                        p.addr
                    )))
                }
                None if p.addr <= span.last => span.last - p.addr,
                None => {
                    return Err(err(format_args!(
                        "{}: invalid address {:#x} (max={:#x})",
                        p.label(),
                        p.addr,
                        span.last
                    )))
                }
            };
            if p.addr < span.first {
                return Err(err(format_args!(
                    "{}: invalid address {:#x} (min={:#x})",
                    p.label(),
                    p.addr,
                    span.first
                )));
            }
        }
        if p.addr & span.erase.wrapping_sub(1) != 0 {
            return Err(err(format_args!(
                "{}: not aligned address : {:#x} on erase size {:#x}",
                p.label(),
                p.addr,
                span.erase
            )));
        }
        // Coherency with what is on the device: the GPT of an MMC that is
        // updated in part, the MTD partitions always.
        let (number, addr, size) = (p.number, p.addr, p.size);
        let checked = match m.medium {
            Medium::Mmc => !dev.full_update && p.boot_partition().is_none(),
            _ => m.medium.is_mtd(),
        };
        if !checked {
            continue;
        }
        let label = ErrorText::from_fmt(format_args!("{}", p.label()));
        match board.existing_partition(m, number) {
            ExistingPartition::Unknown => {}
            // U-Boot names the MMC partition by its counter, which has
            // moved on already.
            ExistingPartition::Missing if m.medium == Medium::Mmc => {
                return Err(err(format_args!(
                    "{label}:Couldn't find part {counter} on device mmc {}",
                    m.instance
                )))
            }
            ExistingPartition::Missing => {
                return Err(err(format_args!(
                    "{label}:Couldn't find part {number} on device mtd {m}"
                )))
            }
            ExistingPartition::Found {
                start,
                size: found,
                name,
            } => {
                if start != addr {
                    return Err(err(format_args!(
                        "{label}: Bad address for partition {number} ({name}) = {addr:#x} <> {start:#x} expected"
                    )));
                }
                if found != size {
                    return Err(err(format_args!(
                        "{label}: Bad size for partition {number} ({name}) at {addr:#x} = {size:#x} <> {found:#x} expected"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// `stm32prog_devices_init` after the layout was parsed: checks the
/// devices, sets each row's address and size, erases the `D` rows
/// (`RawImage` ones before the GPT is written, the others after) and
/// writes the GPT of each fully updated MMC. Returns the devices and the
/// time the erases take.
pub fn devices_init<B: Stm32mpBoard>(
    layout: &mut FlashLayout,
    board: &mut B,
) -> Result<(LayoutDevices, Duration), ErrorText> {
    let devices = layout_devices(layout)?;
    for &d in &devices {
        init_device(layout, d, board)?;
    }
    let mut time = Duration::ZERO;
    for raw in [true, false] {
        for p in layout.rows.iter() {
            if (p.kind == PartKind::RawImage) == raw && p.option.select && p.option.delete {
                time += erase(board, p)?;
            }
        }
        if raw {
            for d in devices
                .iter()
                .filter(|d| d.medium.medium == Medium::Mmc && d.full_update)
            {
                write_gpt(layout, d.medium, board)?;
            }
        }
    }
    Ok((devices, time))
}

fn erase<B: Stm32mpBoard>(board: &mut B, p: &UbootPartition) -> Result<Duration, ErrorText> {
    match board.erase(p) {
        Ok(t) => {
            board.log(format_args!("erased {}", p.label()));
            Ok(t)
        }
        Err(BoardStorageError::Absent) => Err(err(format_args!("{}: erase invalid", p.label()))),
        Err(BoardStorageError::Failed { reason, .. }) => {
            Err(err(format_args!("{}: {reason}", p.label())))
        }
    }
}

/// `create_gpt_partitions` for one MMC: an entry per numbered row (boot
/// partitions and `RawImage` rows stay outside the GPT).
fn write_gpt<B: Stm32mpBoard>(
    layout: &FlashLayout,
    mmc: MediumId,
    board: &mut B,
) -> Result<(), ErrorText> {
    let mut entries = heapless::Vec::<GptPartition<'_>, MAX_ROWS>::new();
    let mut rootfs_found = false;
    for number in 1..=MAX_ROWS as u16 {
        let Some(p) = layout
            .rows
            .iter()
            .find(|p| p.medium == mmc && p.number == number)
        else {
            break;
        };
        let type_guid = match p.kind {
            PartKind::Binary => TYPE_LINUX_RESERVED,
            PartKind::Env => TYPE_UBOOT_ENV,
            PartKind::Fip => TYPE_FIP,
            PartKind::FwuMdata => TYPE_FWU_MDATA,
            PartKind::Esp => TYPE_ESP,
            _ => TYPE_LINUX,
        };
        let mut partuuid = None;
        if !rootfs_found && (p.name.is("rootfs") || p.name.is("rootfs-a")) {
            rootfs_found = true;
            partuuid = ROOTFS_PARTUUIDS.get(usize::from(mmc.instance)).copied();
        }
        if p.kind == PartKind::Fip {
            if let Some((_, g)) = FIP_PARTUUIDS.iter().find(|(n, _)| p.name.is(n)) {
                partuuid = Some(*g);
            }
        }
        // Never full: one entry per row.
        let _ = entries.push(GptPartition {
            partition: p,
            type_guid,
            bootable: p.kind == PartKind::System,
            partuuid,
        });
    }
    if entries.is_empty() {
        return Ok(());
    }
    board
        .write_gpt(mmc, &entries)
        .map_err(|e| err(format_args!("GPT partitionning fail: {e}")))?;
    board.log(format_args!(
        "GPT written on {mmc}: {} partitions",
        entries.len()
    ));
    Ok(())
}
