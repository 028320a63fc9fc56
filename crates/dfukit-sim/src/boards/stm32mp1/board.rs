//! The simulated board under the STM32MP device core
//! ([`dfukit_stm32mp::stm32prog`]): its RAM, the eMMC, SD card, NAND and
//! NOR image files with their timing and bad blocks, OTP fuses and the
//! PMIC NVM, and the console lines for `events.log`.
//!
//! What the core leaves to the board and how this one answers:
//!
//! * devices: `mmc0` is the SD card, `mmc1` the eMMC, `nand0` and `nor0`
//!   the flashes, each if the configuration fits it; no SPI-NAND, no RAM
//!   partitions;
//! * partitions already there: the GPT read from the MMC image; the NAND
//!   and NOR are not described by a device tree here, so their rows are
//!   taken as the layout gives them (real U-Boot refuses rows that do not
//!   match the device tree's MTD partitions);
//! * NAND and NOR writes go through [`MtdWriter`] as `dfu_mtd` does: blocks
//!   are erased as the write reaches them and bad blocks skipped;
//! * GPT entries without a fixed GUID, and the disk, get one derived from
//!   the serial number and the name, so that every run writes the same
//!   GPT.

use super::config::{Stm32mp1Config, StorageTiming};
use super::storage::{ImageFile, MtdError, MtdWriter, Nand, Nor};
use super::{ExtCsd, NAND_WRITTEN_FILE, NOR_WRITTEN_FILE};
use dfukit_stm32mp::sdcard::{self, GptEntry};
use dfukit_stm32mp::stm32prog::{
    BoardResult, BoardStorageError, ExistingPartition, Geometry, GptPartition, Medium, MediumId,
    Stm32mpBoard, UbootPartition,
};
use dfukit_usbdfu::wire::Status;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// MMC block size (and GPT sector size).
const BLOCK: u64 = 512;

/// Which MMC image a partition lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MmcImage {
    Sd,
    EmmcUser,
    Boot(usize),
}

pub(crate) struct Emmc {
    pub(crate) user: ImageFile,
    pub(crate) boot: [ImageFile; 2],
    pub(crate) ext_csd: ExtCsd,
    pub(crate) ext_csd_path: PathBuf,
}

impl Emmc {
    /// What `mmc bootbus <dev> 0 0 0; mmc partconf <dev> 1 <part> 0`
    /// does: the default boot bus and booting from this partition with boot
    /// acknowledge (so the last boot partition written is the one enabled).
    fn select_boot(&mut self, part: u8) -> io::Result<()> {
        self.ext_csd = ExtCsd {
            partition_config: (1 << 6) | (part << 3),
            boot_bus_conditions: 0,
        };
        let text = serde_json::to_vec_pretty(&self.ext_csd).map_err(io::Error::other)?;
        std::fs::write(&self.ext_csd_path, text)
    }
}

pub(crate) struct Devices {
    pub(crate) emmc: Option<Emmc>,
    pub(crate) sd: Option<ImageFile>,
    pub(crate) nand: Option<Nand>,
    pub(crate) nor: Option<Nor>,
    pub(crate) otp: ImageFile,
    pub(crate) pmic: ImageFile,
}

impl Devices {
    fn mmc(&mut self, t: MmcImage) -> Option<&mut ImageFile> {
        match t {
            MmcImage::Sd => self.sd.as_mut(),
            MmcImage::EmmcUser => self.emmc.as_mut().map(|e| &mut e.user),
            MmcImage::Boot(i) => self.emmc.as_mut().map(|e| &mut e.boot[i]),
        }
    }

    /// The image behind MMC partition `p`; `Absent` when the board has no
    /// such card.
    fn mmc_of(&mut self, p: &UbootPartition) -> Result<&mut ImageFile, BoardStorageError<String>> {
        self.mmc(mmc_image(p)).ok_or(BoardStorageError::Absent)
    }

    fn user_area(&self, instance: u8) -> Option<&ImageFile> {
        match instance {
            0 => self.sd.as_ref(),
            _ => self.emmc.as_ref().map(|e| &e.user),
        }
    }
}

/// The board: see the module documentation.
pub(crate) struct SimBoard {
    pub(crate) cfg: Stm32mp1Config,
    pub(crate) timing: StorageTiming,
    pub(crate) dev: Devices,
    /// SYSRAM (FSBL), DDR (FIP) or U-Boot's load buffer (layout).
    pub(crate) ram: Vec<u8>,
    /// Operations the flash models refused: bugs in the board's logic.
    pub(crate) model_errors: Vec<String>,
    /// Console lines not yet in `events.log`.
    pub(crate) log_lines: Vec<String>,
    /// The NAND/NOR write in progress: partition Id and writer.
    mtd: Option<(u8, MtdWriter)>,
}

fn failed(status: Status, reason: String) -> BoardStorageError<String> {
    BoardStorageError::Failed { status, reason }
}

fn mmc_image(p: &UbootPartition) -> MmcImage {
    match (p.medium.instance, p.boot_partition()) {
        (0, _) => MmcImage::Sd,
        (_, Some(1)) => MmcImage::Boot(0),
        (_, Some(_)) => MmcImage::Boot(1),
        _ => MmcImage::EmmcUser,
    }
}

impl SimBoard {
    pub(crate) fn new(cfg: Stm32mp1Config, dev: Devices) -> Self {
        SimBoard {
            timing: cfg.effective_timing(),
            cfg,
            dev,
            ram: Vec::new(),
            model_errors: Vec::new(),
            log_lines: Vec::new(),
            mtd: None,
        }
    }

    /// Saves the NAND and NOR programmed-unit lists; a failure is logged
    /// (the images themselves are written through already).
    pub(crate) fn flush_storage(&mut self) {
        if let Some(Err(e)) = self.dev.nand.as_mut().map(|n| n.flush()) {
            self.log_lines
                .push(format!("cannot save {NAND_WRITTEN_FILE}: {e}"));
        }
        if let Some(Err(e)) = self.dev.nor.as_mut().map(|n| n.flush()) {
            self.log_lines
                .push(format!("cannot save {NOR_WRITTEN_FILE}: {e}"));
        }
    }

    fn mtd_failed(&self, medium: MediumId, e: MtdError) -> BoardStorageError<String> {
        match e {
            MtdError::OutOfGoodBlocks => {
                let bad = self.dev.nand.as_ref().map_or(0, |n| n.bad_blocks().len());
                failed(
                    Status::ErrWrite,
                    format!("out of good blocks in {medium} ({bad} bad blocks on the device)"),
                )
            }
            MtdError::Io(msg) => failed(Status::ErrWrite, format!("MTD write failed: {msg}")),
        }
    }

    fn mtd_write(
        &mut self,
        p: &UbootPartition,
        pos: u64,
        data: &[u8],
    ) -> BoardResult<Duration, String> {
        let (start, end) = (p.addr, p.addr + p.size);
        let mut w = match self.mtd.take() {
            Some((id, w)) if id == p.id => w,
            _ if pos == 0 => MtdWriter::new(start, end),
            _ => {
                // A download resumed at the offset set on 0xF1: the stream
                // offset counts good blocks only, and the earlier write
                // left the rest of its last block erased.
                let (phys, unit, align) = match p.medium.medium {
                    Medium::Nand => {
                        let n = self.dev.nand.as_ref().ok_or(BoardStorageError::Absent)?;
                        (n.physical(start, end, pos), n.block_size(), n.page_size())
                    }
                    _ => {
                        let n = self.dev.nor.as_ref().ok_or(BoardStorageError::Absent)?;
                        (Some(start + pos), n.sector_size(), 1)
                    }
                };
                match phys.filter(|p| p % align == 0) {
                    Some(at) => MtdWriter::resume(at, end, unit),
                    None => {
                        return Err(failed(
                            Status::ErrAddress,
                            format!("invalid resume offset {pos:#x}"),
                        ))
                    }
                }
            }
        };
        let res = match p.medium.medium {
            Medium::Nand => match self.dev.nand.as_mut() {
                Some(n) => n.write(&mut w, data, &mut self.model_errors),
                None => return Err(BoardStorageError::Absent),
            },
            _ => match self.dev.nor.as_mut() {
                Some(n) => n.write(&mut w, data, &mut self.model_errors),
                None => return Err(BoardStorageError::Absent),
            },
        };
        match res {
            Ok(t) => {
                self.mtd = Some((p.id, w));
                Ok(t)
            }
            Err(e) => Err(self.mtd_failed(p.medium, e)),
        }
    }
}

/// Entry `number` (from 1) of the GPT on `img`, as `part_get_info` finds
/// it: the primary header at LBA 1, an entry with a non-zero type.
fn gpt_entry(img: &ImageFile, number: u16) -> ExistingPartition {
    let le = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let mut h = [0u8; 92];
    if img.read_at(BLOCK, &mut h).is_err() || &h[..8] != b"EFI PART" {
        return ExistingPartition::Missing;
    }
    let (entries_lba, count, entry_size) = (le(&h[72..80]), le(&h[80..84]), le(&h[84..88]));
    if number == 0 || u64::from(number) > count || entry_size < 128 {
        return ExistingPartition::Missing;
    }
    let mut e = [0u8; 128];
    let at = entries_lba * BLOCK + u64::from(number - 1) * entry_size;
    if img.read_at(at, &mut e).is_err() || e[..16].iter().all(|&b| b == 0) {
        return ExistingPartition::Missing;
    }
    let (first, last) = (le(&e[32..40]), le(&e[40..48]));
    let units: Vec<u16> = e[56..128]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let name: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or('\u{FFFD}'))
        .collect();
    ExistingPartition::found(
        first * BLOCK,
        (last + 1).saturating_sub(first) * BLOCK,
        &name,
    )
}

/// A version-4-shaped GUID derived from `seed` (FNV-1a), so that the GPTs
/// the board writes are the same on every run.
fn derived_guid(seed: &str) -> [u8; 16] {
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

impl Stm32mpBoard for SimBoard {
    type Error = String;

    fn ram_write(&mut self, offset: u64, data: &[u8]) {
        self.ram.resize(offset as usize, 0);
        self.ram.extend_from_slice(data);
    }

    fn ram(&self) -> &[u8] {
        &self.ram
    }

    fn fsbl_start_delay(&self) -> Duration {
        self.cfg.tfa_start_delay()
    }

    fn geometry(&self, m: MediumId) -> Option<Geometry> {
        match (m.medium, m.instance) {
            (Medium::Mmc, 0) => self.cfg.sdcard.as_ref().map(|s| Geometry::Mmc {
                block_size: BLOCK,
                blocks: s.size / BLOCK,
                erase_group_blocks: 1,
                boot_size: 0,
            }),
            (Medium::Mmc, 1) => self.cfg.emmc.as_ref().map(|e| Geometry::Mmc {
                block_size: BLOCK,
                blocks: e.size / BLOCK,
                erase_group_blocks: e.erase_group / BLOCK,
                boot_size: e.boot_size,
            }),
            (Medium::Nand, 0) => self.cfg.nand.as_ref().map(|n| Geometry::Mtd {
                size: n.size,
                erase_size: n.block_size,
            }),
            (Medium::Nor, 0) => self.cfg.nor.as_ref().map(|n| Geometry::Mtd {
                size: n.size,
                erase_size: n.sector_size,
            }),
            _ => None,
        }
    }

    fn existing_partition(&mut self, m: MediumId, number: u16) -> ExistingPartition {
        match m.medium {
            Medium::Mmc => self
                .dev
                .user_area(m.instance)
                .map_or(ExistingPartition::Missing, |img| gpt_entry(img, number)),
            _ => ExistingPartition::Unknown,
        }
    }

    fn erase(&mut self, p: &UbootPartition) -> BoardResult<Duration, String> {
        let start = p.addr;
        let io = |e: io::Error| failed(Status::ErrWrite, format!("erase failed: {e}"));
        match p.medium.medium {
            Medium::Mmc => {
                let f = self.dev.mmc_of(p)?;
                f.discard(start, p.size).map_err(io)?;
                Ok(self.timing.mmc_erase(p.size))
            }
            Medium::Nand => {
                let nand = self.dev.nand.as_mut().ok_or(BoardStorageError::Absent)?;
                nand.erase_range(start, start + p.size).map_err(io)
            }
            Medium::Nor => {
                let nor = self.dev.nor.as_mut().ok_or(BoardStorageError::Absent)?;
                nor.erase_range(start, start + p.size).map_err(io)
            }
            _ => Err(BoardStorageError::Absent),
        }
    }

    fn write_gpt(&mut self, mmc: MediumId, entries: &[GptPartition<'_>]) -> Result<(), String> {
        let gpt: Vec<GptEntry> = entries
            .iter()
            .map(|e| {
                let p = e.partition;
                let name = p.name.to_string();
                GptEntry {
                    partuuid: e
                        .partuuid
                        .unwrap_or_else(|| derived_guid(&format!("{mmc}/{name}"))),
                    name,
                    first_lba: p.addr / BLOCK,
                    last_lba: (p.addr + p.size) / BLOCK - 1,
                    type_guid: e.type_guid,
                    attributes: if e.bootable {
                        sdcard::ATTR_LEGACY_BIOS_BOOTABLE
                    } else {
                        0
                    },
                }
            })
            .collect();
        let image = if mmc.instance == 0 {
            MmcImage::Sd
        } else {
            MmcImage::EmmcUser
        };
        let disk_guid = derived_guid(&format!("{}/{mmc}", self.cfg.serial));
        let f = self
            .dev
            .mmc(image)
            .ok_or_else(|| format!("mmc device {} not found", mmc.instance))?;
        let size = f.size();
        sdcard::write_gpt(f.file_mut(), size, disk_guid, &gpt).map(|_| ())
    }

    fn begin_download(&mut self, _part: &UbootPartition) {
        self.mtd = None;
    }

    fn write(&mut self, p: &UbootPartition, at: u64, data: &[u8]) -> BoardResult<Duration, String> {
        match p.medium.medium {
            Medium::Mmc => {
                let f = self.dev.mmc_of(p)?;
                f.write_at(p.addr + at, data)
                    .map_err(|_| failed(Status::ErrWrite, "MMC write failed".into()))?;
                Ok(self.timing.mmc_write(data.len() as u64))
            }
            Medium::Nand | Medium::Nor => self.mtd_write(p, at, data),
            _ => Err(BoardStorageError::Absent),
        }
    }

    fn end_download(&mut self, p: &UbootPartition) -> BoardResult<Duration, String> {
        let mut time = Duration::ZERO;
        if let Some((id, mut w)) = self.mtd.take() {
            if id == p.id && p.medium.medium == Medium::Nand {
                let nand = self.dev.nand.as_mut().ok_or(BoardStorageError::Absent)?;
                match nand.finish(&mut w, &mut self.model_errors) {
                    Ok(t) => time += t,
                    Err(e) => return Err(self.mtd_failed(p.medium, e)),
                }
            }
        }
        self.flush_storage();
        Ok(time)
    }

    fn copy_image(
        &mut self,
        p: &UbootPartition,
        len: u64,
        at: u64,
    ) -> BoardResult<Duration, String> {
        let (start, end) = (p.addr, p.addr + p.size);
        let nand = match p.medium.medium {
            Medium::Nand => self.dev.nand.as_mut().ok_or(BoardStorageError::Absent)?,
            _ => return Err(BoardStorageError::Absent),
        };
        let mut img = vec![0u8; len as usize];
        let n = nand
            .read_logical(start, end, 0, &mut img)
            .map_err(|e| failed(Status::ErrWrite, format!("read failed: {e}")))?;
        img.truncate(n);
        let mut w = MtdWriter::new(start + at, end);
        let res = nand
            .write(&mut w, &img, &mut self.model_errors)
            .and_then(|t| Ok(t + nand.finish(&mut w, &mut self.model_errors)?));
        res.map_err(|e| self.mtd_failed(p.medium, e))
    }

    fn read(&mut self, p: &UbootPartition, off: u64, buf: &mut [u8]) -> BoardResult<usize, String> {
        let (start, end) = (p.addr, p.addr + p.size);
        let io = |e: io::Error| failed(Status::ErrFile, format!("read failed: {e}"));
        match p.medium.medium {
            Medium::Mmc => {
                let f = self.dev.mmc_of(p)?;
                f.read_at(start + off, buf).map_err(io)?;
                Ok(buf.len())
            }
            Medium::Nand => {
                let nand = self.dev.nand.as_ref().ok_or(BoardStorageError::Absent)?;
                nand.read_logical(start, end, off, buf).map_err(io)
            }
            Medium::Nor => {
                let nor = self.dev.nor.as_ref().ok_or(BoardStorageError::Absent)?;
                nor.read(start + off, buf).map_err(io)?;
                Ok(buf.len())
            }
            _ => Err(BoardStorageError::Absent),
        }
    }

    fn select_boot_partition(&mut self, mmc: MediumId, boot: u8) -> Result<(), String> {
        match self.dev.emmc.as_mut() {
            Some(e) if mmc.instance == 1 => e.select_boot(boot).map_err(|e| e.to_string()),
            _ => Err(format!("{mmc} has no boot partitions")),
        }
    }

    fn otp_read(&mut self, off: u64, buf: &mut [u8]) -> Result<(), String> {
        self.dev.otp.read_at(off, buf).map_err(|e| e.to_string())
    }

    /// Fuses only go from 0 to 1: the data is ORed in.
    fn otp_write(&mut self, off: u64, data: &[u8]) -> Result<(), String> {
        let mut cur = vec![0u8; data.len()];
        self.dev
            .otp
            .read_at(off, &mut cur)
            .map_err(|e| e.to_string())?;
        for (c, d) in cur.iter_mut().zip(data) {
            *c |= d;
        }
        self.dev.otp.write_at(off, &cur).map_err(|e| e.to_string())
    }

    fn pmic_read(&mut self, off: u64, buf: &mut [u8]) -> Result<(), String> {
        self.dev.pmic.read_at(off, buf).map_err(|e| e.to_string())
    }

    fn pmic_write(&mut self, off: u64, data: &[u8]) -> Result<(), String> {
        self.dev.pmic.write_at(off, data).map_err(|e| e.to_string())
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.log_lines.push(line.to_string());
    }
}
