//! U-Boot's `stm32prog usb 0`: the flashlayout, device initialisation
//! (`stm32prog_dfu_init`), partition downloads and the phase on 0xF1.
//!
//! Follows U-Boot `arch/arm/mach-stm32mp/cmd_stm32prog/stm32prog.c` and
//! `stm32prog_usb.c` as summarised in the reference (§5): the layout is
//! parsed at its manifestation, DETACH creates the devices, erases `D` rows
//! and writes the GPT of fully updated MMC devices, then the board
//! re-enumerates with one alternate setting per partition. Each
//! partition's manifestation runs `stm32prog_end_phase` (boot-partition
//! configuration, NAND FSBL copies) and selects the next phase.

use super::storage::{MtdError, MtdWriter};
use super::{Machine, MmcTarget};
use dfukit_stm32mp::image;
use dfukit_stm32mp::layout::{
    self, CheckOptions, DeviceGeometry, Ip, IpKind, Layout, Offset, Opt, PartType,
};
use dfukit_stm32mp::phase::{self, AltName, PhaseRecord, NO_ADDRESS, PHASE_END, PHASE_ERROR};
use dfukit_stm32mp::sdcard::{self, GptEntry};
use dfukit_usbdfu::wire::Status;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// U-Boot's `CONFIG_SYS_LOAD_ADDR` on STM32MP15, where the flashlayout is
/// received; reported as the address of phase 0.
pub const UBOOT_LOAD_ADDR: u32 = 0xC200_0000;
/// Largest flashlayout U-Boot receives (the `@FlashLayout/0x00/1*256Ke` alt).
pub const LAYOUT_MAX: usize = 256 * 1024;
/// Size of the OTP virtual partition.
pub const OTP_LEN: usize = 1024;
/// Size of the PMIC NVM virtual partition.
pub const PMIC_LEN: usize = 8;

/// The virtual alternate settings U-Boot appends after the partitions.
pub(crate) const VIRTUAL_ALTS: [(u8, &str); 3] = [
    (phase::ID_CMD, "@virtual/0xf1/1*512Ba"),
    (phase::ID_OTP, "@OTP/0xf2/1*1024Be"),
    (phase::ID_PMIC, "@PMIC/0xf4/1*8Be"),
];

/// One partition U-Boot serves in its second enumeration.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: u8,
    pub(crate) name: String,
    pub(crate) kind: PartType,
    pub(crate) ip: Ip,
    pub(crate) offset: Offset,
    pub(crate) size: u64,
    pub(crate) opt: Opt,
}

impl Row {
    /// The alt name (`stm32prog_get_alt_name`).
    pub(crate) fn alt_name(&self) -> String {
        AltName {
            name: self.name.clone(),
            id: self.id,
            size: self.size,
            read_only: self.opt.empty,
        }
        .format()
    }

    /// Bytes the download may take: the partition (for `Binary(N)` the
    /// copies are checked when they are made).
    fn limit(&self) -> u64 {
        self.size
    }

    fn label(&self) -> String {
        format!("{} ({:#04x})", self.name, self.id)
    }
}

/// stm32prog's state.
#[derive(Debug, Default)]
pub(crate) struct Prog {
    /// The checked layout, once received.
    pub(crate) layout: Option<Layout>,
    /// Partitions, ascending Id (after DETACH).
    pub(crate) rows: Vec<Row>,
    /// Current phase (partition Id, [`PHASE_END`] or [`PHASE_ERROR`]).
    pub(crate) phase: u8,
    /// Offset set by a 5-byte command on 0xF1, applied to the next download
    /// of the current phase.
    pub(crate) offset: u32,
    /// The error message of phase 0xFF.
    pub(crate) error: Option<String>,
    /// Ids of the partitions manifested.
    pub(crate) done: BTreeSet<u8>,
    /// Where the current download started in its partition.
    base: u64,
    /// The NAND/NOR write in progress: partition Id and writer.
    mtd: Option<(u8, MtdWriter)>,
}

impl Prog {
    /// The phase record of 0xF1.
    pub(crate) fn record(&self, first_enumeration: bool) -> PhaseRecord {
        if let Some(msg) = &self.error {
            return PhaseRecord::error(msg);
        }
        if first_enumeration {
            let mut r = PhaseRecord::new(phase::ID_FLASHLAYOUT, UBOOT_LOAD_ADDR, 0);
            r.extra = vec![u8::from(self.layout.is_some())];
            return r;
        }
        PhaseRecord::new(self.phase, NO_ADDRESS, self.offset)
    }

    /// Selects the lowest-Id partition still to download
    /// (`stm32prog_next_phase`).
    fn next_phase(&mut self) {
        self.phase = self
            .rows
            .iter()
            .find(|r| r.opt.downloads() && !self.done.contains(&r.id))
            .map_or(PHASE_END, |r| r.id);
        self.offset = 0;
    }
}

/// Unwraps a layout sent inside an STM32 image header (checksum checked).
fn layout_text(bytes: &[u8]) -> Result<String, String> {
    let magic = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let body = if magic == Some(image::MAGIC) {
        let h = image::parse(bytes).map_err(|e| format!("Layout: {e}"))?;
        let payload = h.payload(bytes).ok_or("Layout: truncated STM32 image")?;
        let sum = image::checksum(payload);
        if sum != h.payload_checksum {
            return Err(format!(
                "Layout: invalid checksum : {sum:#x} expected {:#x}",
                h.payload_checksum
            ));
        }
        payload
    } else {
        bytes
    };
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    Ok(String::from_utf8_lossy(&body[..end]).into_owned())
}

impl Machine {
    /// The board's devices as `layout::check` needs them.
    fn geometry(&self) -> CheckOptions {
        let mut devices = BTreeMap::new();
        let ip = |kind, instance| Ip { kind, instance };
        if let Some(e) = &self.cfg.emmc {
            devices.insert(
                ip(IpKind::Mmc, 1),
                DeviceGeometry {
                    size: Some(e.size),
                    erase_size: Some(e.erase_group),
                    boot_size: Some(e.boot_size),
                },
            );
        }
        if let Some(s) = &self.cfg.sdcard {
            devices.insert(
                ip(IpKind::Mmc, 0),
                DeviceGeometry {
                    size: Some(s.size),
                    erase_size: Some(layout::MMC_BLOCK_SIZE),
                    boot_size: None,
                },
            );
        }
        if let Some(n) = &self.cfg.nand {
            devices.insert(
                ip(IpKind::Nand, 0),
                DeviceGeometry {
                    size: Some(n.size),
                    erase_size: Some(n.block_size),
                    boot_size: None,
                },
            );
        }
        if let Some(n) = &self.cfg.nor {
            devices.insert(
                ip(IpKind::Nor, 0),
                DeviceGeometry {
                    size: Some(n.size),
                    erase_size: Some(n.sector_size),
                    boot_size: None,
                },
            );
        }
        CheckOptions {
            devices,
            skip_files: true,
        }
    }

    /// Sets phase 0xFF with `msg` (`stm32prog_err`).
    pub(crate) fn prog_error(&mut self, msg: String) {
        self.log(format!("stm32prog error: {msg}"));
        self.prog.phase = PHASE_ERROR;
        self.prog.error = Some(msg);
    }

    /// Manifestation of the flashlayout (alt 0 of the first enumeration).
    pub(crate) fn uboot_layout_manifest(&mut self) {
        let text = match layout_text(&self.ram) {
            Ok(t) => t,
            Err(msg) => return self.prog_error(msg),
        };
        let mut lay = match layout::parse(&text, Path::new("flashlayout.tsv")) {
            Ok(l) => l,
            Err(errs) => {
                let e = &errs.0[0];
                return self.prog_error(format!("Layout line {}: {}", e.line, e.kind));
            }
        };
        let errs = layout::check(&mut lay, &self.geometry());
        if let Some(e) = errs.first() {
            return self.prog_error(format!("Layout line {}: {}", e.line, e.kind));
        }
        self.log(format!(
            "flashlayout received: {} partitions",
            lay.partitions.len()
        ));
        self.prog.layout = Some(lay);
        self.prog.error = None;
        self.prog.phase = phase::ID_FLASHLAYOUT;
    }

    /// `stm32prog_dfu_init` at the DETACH after the layout: checks the
    /// devices, erases `D` rows, writes GPTs, builds the partition list.
    /// Returns the time the work takes; errors set phase 0xFF.
    pub(crate) fn uboot_init(&mut self) -> Duration {
        match self.try_init() {
            Ok(t) => {
                self.prog.next_phase();
                t
            }
            Err(msg) => {
                self.prog.rows.clear();
                self.prog_error(msg);
                Duration::ZERO
            }
        }
    }

    fn try_init(&mut self) -> Result<Duration, String> {
        let lay = self
            .prog
            .layout
            .clone()
            .ok_or("Layout: no partition found")?;
        for ip in lay.devices() {
            let present = match (ip.kind, ip.instance) {
                (IpKind::Mmc, 0) => self.dev.sd.is_some(),
                (IpKind::Mmc, 1) => self.dev.emmc.is_some(),
                (IpKind::Nand, 0) => self.dev.nand.is_some(),
                (IpKind::Nor, 0) => self.dev.nor.is_some(),
                _ => false,
            };
            if !present {
                return Err(match ip.kind {
                    IpKind::Mmc => format!("mmc device {} not found", ip.instance),
                    // U-Boot's DFU RAM backend (`ram` rows) is not part of
                    // this board model.
                    IpKind::Ram => "ram: RAM partitions are not simulated".to_string(),
                    _ => format!("MTD device {ip} not found"),
                });
            }
        }
        let mut rows = Vec::new();
        for p in lay.partitions.iter().filter(|p| p.ip.kind != IpKind::None) {
            let size = p
                .size()
                .filter(|&s| s > 0)
                .ok_or_else(|| format!("{} ({:#04x}): Bad size for partition", p.name, p.id))?;
            rows.push(Row {
                id: p.id,
                name: p.name.clone(),
                kind: p.kind,
                ip: p.ip,
                offset: p.offset,
                size,
                opt: p.opt,
            });
        }
        rows.sort_by_key(|r| r.id);
        let mut time = Duration::ZERO;
        // RawImage rows are erased before the GPT is written, the others
        // after (it lives outside them).
        for raw_first in [true, false] {
            for r in rows.iter().filter(|r| r.opt.delete) {
                if (r.kind == PartType::RawImage) == raw_first {
                    time += self.erase_row(r)?;
                }
            }
            if raw_first {
                for ip in lay.devices() {
                    if ip.kind == IpKind::Mmc && lay.is_full_update(ip) {
                        self.write_gpt(&lay, ip)?;
                    }
                }
            }
        }
        self.log(format!(
            "stm32prog: {} partitions on {} devices",
            rows.len(),
            lay.devices().len()
        ));
        self.prog.rows = rows;
        self.prog.done.clear();
        Ok(time)
    }

    fn erase_row(&mut self, r: &Row) -> Result<Duration, String> {
        let start = match r.offset {
            Offset::Bytes(b) => b,
            _ => 0,
        };
        let io = |e: std::io::Error| format!("{}: erase failed: {e}", r.label());
        let t = match r.ip.kind {
            IpKind::Mmc => {
                let target = self.mmc_target(r);
                let f = self
                    .dev
                    .mmc(target)
                    .ok_or_else(|| format!("{}: MMC erase failed", r.label()))?;
                f.discard(start, r.size).map_err(io)?;
                self.timing.mmc_erase(r.size)
            }
            IpKind::Nand => {
                let nand = self.dev.nand.as_mut().ok_or("MTD device nand0 not found")?;
                nand.erase_range(start, start + r.size).map_err(io)?
            }
            IpKind::Nor => {
                let nor = self.dev.nor.as_mut().ok_or("MTD device nor0 not found")?;
                nor.erase_range(start, start + r.size).map_err(io)?
            }
            _ => Duration::ZERO,
        };
        self.log(format!("erased {}", r.label()));
        Ok(t)
    }

    /// Which MMC image a row lives in.
    pub(crate) fn mmc_target(&self, r: &Row) -> MmcTarget {
        match (r.ip.instance, r.offset) {
            (0, _) => MmcTarget::Sd,
            (_, Offset::Boot1) => MmcTarget::Boot(0),
            (_, Offset::Boot2) => MmcTarget::Boot(1),
            _ => MmcTarget::EmmcUser,
        }
    }

    /// `gpt write mmc N`: one entry per ordinary row (not boot1/boot2, not
    /// RawImage), in offset order.
    fn write_gpt(&mut self, lay: &Layout, ip: Ip) -> Result<(), String> {
        let bs = layout::MMC_BLOCK_SIZE;
        let entries: Vec<GptEntry> = lay
            .partitions_on(ip)
            .filter(|p| p.kind != PartType::RawImage)
            .filter_map(|p| {
                let off = p.byte_offset()?;
                let size = p.size()?;
                let type_guid = *p.gpt_type_guid()?.as_bytes();
                Some(GptEntry {
                    name: p.name.clone(),
                    first_lba: off / bs,
                    last_lba: (off + size) / bs - 1,
                    type_guid,
                    attributes: if p.kind.bootable() {
                        sdcard::ATTR_LEGACY_BIOS_BOOTABLE
                    } else {
                        0
                    },
                    partuuid: uboot_partuuid(ip.instance, &p.name, p.kind)
                        .unwrap_or_else(|| derived_guid(&format!("{ip}/{}", p.name))),
                })
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let target = if ip.instance == 0 {
            MmcTarget::Sd
        } else {
            MmcTarget::EmmcUser
        };
        let disk_guid = derived_guid(&format!("{}/{ip}", self.cfg.serial));
        let f = self
            .dev
            .mmc(target)
            .ok_or_else(|| format!("mmc device {} not found", ip.instance))?;
        let size = f.size();
        sdcard::write_gpt(f.file_mut(), size, disk_guid, &entries)
            .map_err(|e| format!("GPT partitionning fail: {e}"))?;
        self.log(format!("GPT written on {ip}: {} partitions", entries.len()));
        Ok(())
    }

    /// A block of a partition download.
    pub(crate) fn uboot_write(
        &mut self,
        idx: usize,
        off: u64,
        data: &[u8],
    ) -> Result<Duration, Status> {
        let r = self.prog.rows[idx].clone();
        if r.opt.empty {
            return Err(Status::ErrWrite);
        }
        if off == 0 {
            // `dfu_initiated_callback`: a download of the current phase
            // resumes at the offset the host set on 0xF1.
            self.prog.base = if r.id == self.prog.phase {
                u64::from(self.prog.offset)
            } else {
                0
            };
            self.prog.mtd = None;
        }
        let pos = self.prog.base + off;
        let end = pos + data.len() as u64;
        if end > r.limit() {
            self.prog_error(format!(
                "{}: image too large for partition: {end} > {} bytes",
                r.label(),
                r.limit()
            ));
            return Err(Status::ErrAddress);
        }
        let start = match r.offset {
            Offset::Bytes(b) => b,
            _ => 0,
        };
        match r.ip.kind {
            IpKind::Mmc => {
                let target = self.mmc_target(&r);
                let f = self.dev.mmc(target).ok_or(Status::ErrTarget)?;
                if f.write_at(start + pos, data).is_err() {
                    self.prog_error(format!("{}: MMC write failed", r.label()));
                    return Err(Status::ErrWrite);
                }
                Ok(self.timing.mmc_write(data.len() as u64))
            }
            IpKind::Nand | IpKind::Nor => self.mtd_write(&r, start, pos, data),
            _ => Err(Status::ErrTarget),
        }
    }

    fn mtd_write(
        &mut self,
        r: &Row,
        start: u64,
        pos: u64,
        data: &[u8],
    ) -> Result<Duration, Status> {
        let end = start + r.limit();
        let mut w = match self.prog.mtd.take() {
            Some((id, w)) if id == r.id => w,
            _ if pos == 0 => MtdWriter::new(start, end),
            _ => {
                // A download resumed at the offset set on 0xF1: the stream
                // offset counts good blocks only, and the earlier write
                // left the rest of its last block erased.
                let (phys, unit, align) = match r.ip.kind {
                    IpKind::Nand => {
                        let n = self.dev.nand.as_ref().ok_or(Status::ErrTarget)?;
                        (n.physical(start, end, pos), n.block_size(), n.page_size())
                    }
                    _ => {
                        let n = self.dev.nor.as_ref().ok_or(Status::ErrTarget)?;
                        (Some(start + pos), n.sector_size(), 1)
                    }
                };
                match phys.filter(|p| p % align == 0) {
                    Some(p) => MtdWriter::resume(p, end, unit),
                    None => {
                        self.prog_error(format!("{}: invalid resume offset {pos:#x}", r.label()));
                        return Err(Status::ErrAddress);
                    }
                }
            }
        };
        let res = match r.ip.kind {
            IpKind::Nand => match self.dev.nand.as_mut() {
                Some(n) => n.write(&mut w, data, &mut self.model_errors),
                None => return Err(Status::ErrTarget),
            },
            _ => match self.dev.nor.as_mut() {
                Some(n) => n.write(&mut w, data, &mut self.model_errors),
                None => return Err(Status::ErrTarget),
            },
        };
        match res {
            Ok(t) => {
                self.prog.mtd = Some((r.id, w));
                Ok(t)
            }
            Err(e) => Err(self.mtd_failed(r, e)),
        }
    }

    fn mtd_failed(&mut self, r: &Row, e: MtdError) -> Status {
        match e {
            MtdError::OutOfGoodBlocks => {
                let bad = self.dev.nand.as_ref().map_or(0, |n| n.bad_blocks().len());
                self.prog_error(format!(
                    "{}: out of good blocks in {} ({bad} bad blocks on the device)",
                    r.label(),
                    r.ip
                ));
                Status::ErrWrite
            }
            MtdError::Io(msg) => {
                self.prog_error(format!("{}: MTD write failed: {msg}", r.label()));
                Status::ErrWrite
            }
        }
    }

    /// End of a partition download (`stm32prog_end_phase`, then
    /// `stm32prog_next_phase`).
    pub(crate) fn uboot_manifest(&mut self, idx: usize, total: u64) -> Result<Duration, Status> {
        let r = self.prog.rows[idx].clone();
        let mut time = Duration::ZERO;
        if matches!(r.ip.kind, IpKind::Nand) {
            if let Some((id, mut w)) = self.prog.mtd.take() {
                if id == r.id {
                    let nand = self.dev.nand.as_mut().ok_or(Status::ErrTarget)?;
                    match nand.finish(&mut w, &mut self.model_errors) {
                        Ok(t) => time += t,
                        Err(e) => return Err(self.mtd_failed(&r, e)),
                    }
                }
            }
            if let PartType::Binary { copies } = r.kind {
                time += self.nand_copies(&r, copies, total)?;
            }
        }
        self.prog.mtd = None;
        self.flush_storage();
        if let Offset::Boot1 | Offset::Boot2 = r.offset {
            let part = if r.offset == Offset::Boot1 { 1 } else { 2 };
            if let Some(e) = self.dev.emmc.as_mut() {
                e.select_boot(part).map_err(|_| Status::ErrWrite)?;
            }
            self.log(format!(
                "mmc1: boot partition {part} enabled (partconf 1 {part} 0, bootbus 0 0 0)"
            ));
        }
        self.log(format!(
            "partition {} written: {total} bytes on {}",
            r.label(),
            r.ip
        ));
        self.prog.done.insert(r.id);
        if self.prog.error.is_none() {
            self.prog.next_phase();
        }
        Ok(time)
    }

    /// `Binary(N)` on NAND: the image just written is copied N-1 times,
    /// each copy right after the previous one and rounded up to whole erase
    /// blocks, as U-Boot's `stm32prog_copy_fsbl` does. Copies that would
    /// not fit in the partition fail ("copy of fsbl failed").
    fn nand_copies(&mut self, r: &Row, copies: u32, total: u64) -> Result<Duration, Status> {
        let start = match r.offset {
            Offset::Bytes(b) => b,
            _ => 0,
        };
        let mut time = Duration::ZERO;
        let Some(nand) = self.dev.nand.as_mut() else {
            return Err(Status::ErrTarget);
        };
        let block = nand.block_size();
        let span = (self.prog.base + total).next_multiple_of(block);
        if span * u64::from(copies) > r.size {
            self.prog_error(format!(
                "{}: copy of fsbl failed: {copies} copies of {span} bytes do not fit in {} bytes",
                r.label(),
                r.size
            ));
            return Err(Status::ErrWrite);
        }
        // The whole image, including what an earlier, resumed download
        // wrote before `base`.
        let mut img = vec![0u8; (self.prog.base + total) as usize];
        let n = nand
            .read_logical(start, start + span, 0, &mut img)
            .map_err(|_| Status::ErrWrite)?;
        img.truncate(n);
        for k in 1..u64::from(copies) {
            let s = start + k * span;
            let mut w = MtdWriter::new(s, start + r.size);
            let res = nand
                .write(&mut w, &img, &mut self.model_errors)
                .and_then(|t| Ok(t + nand.finish(&mut w, &mut self.model_errors)?));
            match res {
                Ok(t) => time += t,
                Err(_) => {
                    self.prog_error(format!("{}: copy of fsbl failed", r.label()));
                    return Err(Status::ErrWrite);
                }
            }
        }
        Ok(time)
    }

    /// Upload of a partition (read back).
    pub(crate) fn uboot_read(
        &mut self,
        idx: usize,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, Status> {
        let r = self.prog.rows[idx].clone();
        let n = (r.size.saturating_sub(off)).min(buf.len() as u64) as usize;
        let start = match r.offset {
            Offset::Bytes(b) => b,
            _ => 0,
        };
        let buf = &mut buf[..n];
        let ok = match r.ip.kind {
            IpKind::Mmc => {
                let target = self.mmc_target(&r);
                match self.dev.mmc(target) {
                    Some(f) => f.read_at(start + off, buf).is_ok(),
                    None => false,
                }
            }
            IpKind::Nand => match self.dev.nand.as_ref() {
                Some(nand) => {
                    return nand
                        .read_logical(start, start + r.size, off, buf)
                        .map_err(|_| Status::ErrFile)
                }
                None => false,
            },
            IpKind::Nor => match self.dev.nor.as_ref() {
                Some(nor) => nor.read(start + off, buf).is_ok(),
                None => false,
            },
            _ => false,
        };
        if ok {
            Ok(n)
        } else {
            Err(Status::ErrFile)
        }
    }

    /// A 5-byte DNLOAD to 0xF1: set phase and offset (`stm32prog_cmd_write`).
    pub(crate) fn uboot_command(&mut self, data: &[u8]) -> Result<Duration, Status> {
        let (p, addr) = phase::decode_command(data).ok_or(Status::ErrUnknown)?;
        self.prog.phase = p;
        self.prog.offset = addr;
        self.log(format!("phase set to {p:#04x}, offset {addr:#x}"));
        Ok(Duration::ZERO)
    }

    /// OTP read: the fuse words.
    pub(crate) fn otp_read(&mut self, off: u64, buf: &mut [u8]) -> Result<usize, Status> {
        read_virtual(&self.dev.otp, OTP_LEN, off, buf)
    }

    /// OTP write: fuses only go from 0 to 1, so the data is ORed in.
    pub(crate) fn otp_write(&mut self, off: u64, data: &[u8]) -> Result<Duration, Status> {
        let end = off as usize + data.len();
        if end > OTP_LEN {
            return Err(Status::ErrAddress);
        }
        let mut cur = vec![0u8; data.len()];
        self.dev
            .otp
            .read_at(off, &mut cur)
            .map_err(|_| Status::ErrWrite)?;
        for (c, d) in cur.iter_mut().zip(data) {
            *c |= d;
        }
        self.dev
            .otp
            .write_at(off, &cur)
            .map_err(|_| Status::ErrWrite)?;
        self.log(format!("OTP: {} bytes written at {off:#x}", data.len()));
        Ok(Duration::ZERO)
    }

    /// PMIC NVM read.
    pub(crate) fn pmic_read(&mut self, off: u64, buf: &mut [u8]) -> Result<usize, Status> {
        read_virtual(&self.dev.pmic, PMIC_LEN, off, buf)
    }

    /// PMIC NVM write.
    pub(crate) fn pmic_write(&mut self, off: u64, data: &[u8]) -> Result<Duration, Status> {
        if off as usize + data.len() > PMIC_LEN {
            return Err(Status::ErrAddress);
        }
        self.dev
            .pmic
            .write_at(off, data)
            .map_err(|_| Status::ErrWrite)?;
        self.log(format!("PMIC NVM: {} bytes written", data.len()));
        Ok(Duration::ZERO)
    }
}

fn read_virtual(
    f: &super::storage::ImageFile,
    len: usize,
    off: u64,
    buf: &mut [u8],
) -> Result<usize, Status> {
    let n = len.saturating_sub(off as usize).min(buf.len());
    f.read_at(off, &mut buf[..n]).map_err(|_| Status::ErrFile)?;
    Ok(n)
}

/// A version-4-shaped GUID derived from `seed` (FNV-1a), so that the GPTs
/// the board writes are the same on every run.
pub(crate) fn derived_guid(seed: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (half, chunk) in out.chunks_mut(8).enumerate() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ half as u64;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        chunk.copy_from_slice(&h.to_be_bytes());
    }
    out[6] = (out[6] & 0x0F) | 0x40;
    out[8] = (out[8] & 0x3F) | 0x80;
    out
}

/// The fixed unique GUIDs U-Boot's stm32prog gives partitions so that boot
/// commands can name them: `rootfs` gets one per MMC instance (ROOTFS_MMC0/1/2_UUID,
/// so `root=PARTUUID=` differs between SD card and eMMC), and the FIP rows
/// named exactly `fip-a` and `fip-b` get the FWU bank GUIDs.
fn uboot_partuuid(mmc: u8, name: &str, kind: PartType) -> Option<[u8; 16]> {
    const ROOTFS_MMC: [&str; 3] = [
        "e91c4e10-16e6-4c0e-bd0e-77becf4a3582",
        "491f6117-415d-4f53-88c9-6e0de54deac6",
        "fd58f1c7-be0d-4338-88e9-ad8f050aeb18",
    ];
    let guid = |s: &str| *uuid::Uuid::parse_str(s).expect("constant GUID").as_bytes();
    match (name, kind) {
        ("rootfs", _) => ROOTFS_MMC.get(usize::from(mmc)).map(|s| guid(s)),
        ("fip-a", PartType::Fip) => Some(sdcard::FIP_A_PARTUUID),
        ("fip-b", PartType::Fip) => Some(sdcard::FIP_B_PARTUUID),
        _ => None,
    }
}
