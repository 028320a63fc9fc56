//! The STM32MP1 board's storage devices as image files in the state
//! directory: eMMC (user area and two boot partitions) and SD card as plain
//! sparse disk images, NAND and NOR as flash images that read 0xFF where
//! erased and enforce their programming rules.
//!
//! Images are sized with `set_len` and only written where data goes, so a
//! 4 GiB eMMC or a 512 MiB NAND costs no disk space until it is programmed.
//! An erase unit of NAND or NOR that was never programmed, or was erased
//! since, is a hole in the file: the model reads it as 0xFF, tools see
//! zeros. Which units hold real bytes is kept in `<image>-written.json` so
//! that a stopped board is found as it was.

use super::config::StorageTiming;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A file of a fixed size, read and written at 64-bit offsets.
pub(crate) struct ImageFile {
    file: File,
    size: u64,
}

impl ImageFile {
    /// Opens (creating if missing) `path` and sizes it to `size` bytes; a
    /// new file is all holes.
    pub(crate) fn open(path: &Path, size: u64) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if file.metadata()?.len() != size {
            file.set_len(size)?;
        }
        Ok(ImageFile { file, size })
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The file, for code that writes whole structures (the GPT).
    pub(crate) fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Reads `buf.len()` bytes at `off` (must lie inside the image).
    pub(crate) fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }

    /// Writes `data` at `off` (must lie inside the image).
    pub(crate) fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, off)
    }

    /// Makes `off..off + len` read as zeros: punches a hole (the discard of
    /// an MMC erase, and free on disk), or writes zeros where the file
    /// system cannot punch holes.
    pub(crate) fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        let punched = i64::try_from(off)
            .ok()
            .zip(i64::try_from(len).ok())
            .is_some_and(|(o, l)| fallocate(self.file.as_raw_fd(), flags, o, l).is_ok());
        if punched {
            return Ok(());
        }
        let zeros = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_at(off + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// How a flash accepts a program operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgramRule {
    /// NAND: only an erased (all 0xFF) page may be programmed, once.
    ErasedPage,
    /// NOR: bits go from 1 to 0 only.
    OneToZero,
}

/// A flash image that reads 0xFF where erased (see the module docs).
pub(crate) struct FlashFile {
    img: ImageFile,
    unit: u64,
    rule: ProgramRule,
    written: BTreeSet<u64>,
    meta: PathBuf,
    dirty: bool,
}

impl FlashFile {
    /// Opens `path` of `size` bytes with erase units of `unit` bytes; the
    /// programmed units are listed in `meta`.
    pub(crate) fn open(
        path: &Path,
        meta: PathBuf,
        size: u64,
        unit: u64,
        rule: ProgramRule,
    ) -> io::Result<Self> {
        let img = ImageFile::open(path, size)?;
        let written = match fs::read(&meta) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        Ok(FlashFile {
            img,
            unit,
            rule,
            written,
            meta,
            dirty: false,
        })
    }

    /// Reads `buf.len()` bytes at `off`.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = off + done as u64;
            let unit = at / self.unit;
            let in_unit = (self.unit - at % self.unit) as usize;
            let n = in_unit.min(buf.len() - done);
            if self.written.contains(&unit) {
                self.img.read_at(at, &mut buf[done..done + n])?;
            } else {
                buf[done..done + n].fill(0xFF);
            }
            done += n;
        }
        Ok(())
    }

    /// Erases unit `index`.
    pub(crate) fn erase_unit(&mut self, index: u64) -> io::Result<()> {
        if self.written.remove(&index) {
            self.img.discard(index * self.unit, self.unit)?;
            self.dirty = true;
        }
        Ok(())
    }

    /// Programs `data` at `off` (inside one unit). A program the part would
    /// refuse is not applied and comes back as a model error.
    pub(crate) fn program(&mut self, off: u64, data: &[u8]) -> io::Result<Result<(), String>> {
        let mut cur = vec![0u8; data.len()];
        self.read(off, &mut cur)?;
        let ok = match self.rule {
            ProgramRule::ErasedPage => cur.iter().all(|&b| b == 0xFF),
            ProgramRule::OneToZero => cur.iter().zip(data).all(|(&c, &d)| d & !c == 0),
        };
        if !ok {
            return Ok(Err(format!(
                "program of {} bytes at {off:#x} over data that is not erased",
                data.len()
            )));
        }
        let unit = off / self.unit;
        if !self.written.contains(&unit) {
            // The unit becomes authoritative in the file: fill its hole with
            // the erased value first.
            self.img
                .write_at(unit * self.unit, &vec![0xFF; self.unit as usize])?;
            self.written.insert(unit);
            self.dirty = true;
        }
        let merged: Vec<u8> = match self.rule {
            ProgramRule::ErasedPage => data.to_vec(),
            ProgramRule::OneToZero => cur.iter().zip(data).map(|(&c, &d)| c & d).collect(),
        };
        self.img.write_at(off, &merged)?;
        Ok(Ok(()))
    }

    /// Writes the list of programmed units if it changed.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            let text = serde_json::to_vec(&self.written).map_err(io::Error::other)?;
            let tmp = self.meta.with_extension("json.tmp");
            fs::write(&tmp, text)?;
            fs::rename(&tmp, &self.meta)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// The NAND bad-block table as stored in `nand-bbt.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadBlockTable {
    /// Blocks marked bad at the factory.
    pub factory: BTreeSet<u64>,
    /// Blocks marked bad at run time (an erase failed).
    pub runtime: BTreeSet<u64>,
}

/// Why a NAND or NOR write stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MtdError {
    /// No good block left before the end of the span.
    OutOfGoodBlocks,
    /// The file could not be read or written.
    Io(String),
}

impl From<io::Error> for MtdError {
    fn from(e: io::Error) -> Self {
        MtdError::Io(e.to_string())
    }
}

/// A sequential write into `start..end` of an MTD device, as U-Boot's
/// `dfu_mtd` does it: blocks are erased when the write pointer reaches
/// them, bad blocks are skipped.
#[derive(Debug, Clone)]
pub(crate) struct MtdWriter {
    /// Span end (exclusive).
    end: u64,
    /// Physical write pointer.
    ptr: u64,
    /// Everything below this is erased and ready (a block boundary).
    ready_to: u64,
    /// Bytes of a page not complete yet (NAND).
    pending: Vec<u8>,
}

impl MtdWriter {
    /// A write from `start` (a block boundary) up to `end`.
    pub(crate) fn new(start: u64, end: u64) -> Self {
        MtdWriter {
            end,
            ptr: start,
            ready_to: start,
            pending: Vec::new(),
        }
    }

    /// A write resumed at `ptr` inside a block that an earlier write
    /// erased and filled up to `ptr`: the rest of that block is erased
    /// already, so the next erase is at the following `unit` boundary.
    pub(crate) fn resume(ptr: u64, end: u64, unit: u64) -> Self {
        MtdWriter {
            end,
            ptr,
            ready_to: ptr.div_ceil(unit) * unit,
            pending: Vec::new(),
        }
    }
}

/// The NAND chip: pages, erase blocks, bad blocks, erase-failure fault.
pub(crate) struct Nand {
    flash: FlashFile,
    page: u64,
    block: u64,
    bbt: BadBlockTable,
    bbt_path: PathBuf,
    /// Erases done, for the erase-failure fault.
    erases: u32,
    /// Erases that succeed before every further one fails.
    fail_after: Option<u32>,
    timing: StorageTiming,
}

impl Nand {
    /// Opens the NAND image and its bad-block table; factory bad blocks
    /// from the configuration are added to the table.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        path: &Path,
        meta: PathBuf,
        bbt_path: PathBuf,
        size: u64,
        page: u64,
        block: u64,
        factory_bad: &[u64],
        fail_after: Option<u32>,
        timing: StorageTiming,
    ) -> io::Result<Self> {
        let flash = FlashFile::open(path, meta, size, block, ProgramRule::ErasedPage)?;
        let mut bbt: BadBlockTable = match fs::read(&bbt_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BadBlockTable::default(),
            Err(e) => return Err(e),
        };
        bbt.factory.extend(factory_bad.iter().copied());
        let n = Nand {
            flash,
            page,
            block,
            bbt,
            bbt_path,
            erases: 0,
            fail_after,
            timing,
        };
        n.save_bbt()?;
        Ok(n)
    }

    /// Bad blocks, factory and run-time, ascending.
    pub(crate) fn bad_blocks(&self) -> Vec<u64> {
        self.bbt.factory.union(&self.bbt.runtime).copied().collect()
    }

    fn is_bad(&self, b: u64) -> bool {
        self.bbt.factory.contains(&b) || self.bbt.runtime.contains(&b)
    }

    fn save_bbt(&self) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(&self.bbt).map_err(io::Error::other)?;
        fs::write(&self.bbt_path, text)
    }

    /// Erase-block size.
    pub(crate) fn block_size(&self) -> u64 {
        self.block
    }

    /// Page size.
    pub(crate) fn page_size(&self) -> u64 {
        self.page
    }

    /// The physical address of logical offset `pos` in the span
    /// `start..end`, counting good blocks only (how `dfu_mtd` maps a
    /// stream offset); `None` past the last good block.
    pub(crate) fn physical(&self, start: u64, end: u64, pos: u64) -> Option<u64> {
        let mut left = pos;
        let mut b = start / self.block;
        while (b + 1) * self.block <= end {
            if !self.is_bad(b) {
                if left < self.block {
                    return Some(b * self.block + left);
                }
                left -= self.block;
            }
            b += 1;
        }
        None
    }

    /// Erases block `b`; `Ok(false)` when the erase failed (fault switch),
    /// in which case the block is marked bad, as `dfu_mtd` and `nand_erase`
    /// do.
    pub(crate) fn erase_block(&mut self, b: u64, time: &mut Duration) -> io::Result<bool> {
        self.erases += 1;
        *time += self.timing.nand_block_erase();
        if self.fail_after.is_some_and(|n| self.erases > n) {
            self.bbt.runtime.insert(b);
            self.save_bbt()?;
            return Ok(false);
        }
        self.flash.erase_unit(b)?;
        Ok(true)
    }

    /// Erases the good blocks of `start..end` (a `D` row); failing blocks
    /// are marked bad.
    pub(crate) fn erase_range(&mut self, start: u64, end: u64) -> io::Result<Duration> {
        let mut t = Duration::ZERO;
        let mut b = start / self.block;
        while b * self.block < end {
            if !self.is_bad(b) {
                self.erase_block(b, &mut t)?;
            }
            b += 1;
        }
        Ok(t)
    }

    /// Moves the writer to a good, erased block if it stands on a block
    /// boundary that is not prepared yet.
    fn prepare(&mut self, w: &mut MtdWriter, time: &mut Duration) -> Result<(), MtdError> {
        while w.ptr >= w.ready_to {
            if w.ptr + self.block > w.end {
                return Err(MtdError::OutOfGoodBlocks);
            }
            let b = w.ptr / self.block;
            if self.is_bad(b) || !self.erase_block(b, time)? {
                w.ptr += self.block;
                w.ready_to = w.ptr;
                continue;
            }
            w.ready_to = w.ptr + self.block;
        }
        Ok(())
    }

    fn program_page(
        &mut self,
        w: &mut MtdWriter,
        page: &[u8],
        time: &mut Duration,
        errors: &mut Vec<String>,
    ) -> Result<(), MtdError> {
        self.prepare(w, time)?;
        if let Err(e) = self.flash.program(w.ptr, page)? {
            errors.push(format!("nand: {e}"));
        }
        *time += self.timing.nand_page_program();
        w.ptr += self.page;
        Ok(())
    }

    /// Appends `data` to the write; whole pages are programmed, the rest is
    /// kept for the next call or [`Nand::finish`]. Model errors (a program
    /// over data that is not erased) go to `errors`.
    pub(crate) fn write(
        &mut self,
        w: &mut MtdWriter,
        data: &[u8],
        errors: &mut Vec<String>,
    ) -> Result<Duration, MtdError> {
        let mut time = Duration::ZERO;
        w.pending.extend_from_slice(data);
        let page = self.page as usize;
        let mut used = 0;
        while w.pending.len() - used >= page {
            let p = w.pending[used..used + page].to_vec();
            self.program_page(w, &p, &mut time, errors)?;
            used += page;
        }
        w.pending.drain(..used);
        Ok(time)
    }

    /// Programs the last partial page, padded with 0xFF.
    pub(crate) fn finish(
        &mut self,
        w: &mut MtdWriter,
        errors: &mut Vec<String>,
    ) -> Result<Duration, MtdError> {
        let mut time = Duration::ZERO;
        if !w.pending.is_empty() {
            let mut p = std::mem::take(&mut w.pending);
            p.resize(self.page as usize, 0xFF);
            self.program_page(w, &p, &mut time, errors)?;
        }
        self.flash.flush()?;
        Ok(time)
    }

    /// Reads `buf.len()` bytes at logical offset `off` of the span
    /// `start..end`, skipping bad blocks as `dfu_mtd` does on upload;
    /// returns the bytes read (short at the end of the good blocks).
    pub(crate) fn read_logical(
        &self,
        start: u64,
        end: u64,
        off: u64,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let mut skip = off;
        let mut done = 0usize;
        let mut b = start / self.block;
        while done < buf.len() && (b + 1) * self.block <= end {
            if self.is_bad(b) {
                b += 1;
                continue;
            }
            if skip >= self.block {
                skip -= self.block;
                b += 1;
                continue;
            }
            let at = b * self.block + skip;
            let n = ((self.block - skip) as usize).min(buf.len() - done);
            self.flash.read(at, &mut buf[done..done + n])?;
            done += n;
            skip = 0;
            b += 1;
        }
        Ok(done)
    }

    /// Reads raw bytes (bad blocks included).
    pub(crate) fn read_raw(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.flash.read(off, buf)
    }

    /// Writes the programmed-unit list.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.flash.flush()
    }
}

/// Bytes a NOR page program writes at most (typical serial NOR).
pub(crate) const NOR_PAGE: u64 = 256;

/// The serial NOR chip: sectors erased ahead of the write, 256-byte page
/// programs, bits 1 → 0 only.
pub(crate) struct Nor {
    flash: FlashFile,
    sector: u64,
    timing: StorageTiming,
}

impl Nor {
    /// Opens the NOR image.
    pub(crate) fn open(
        path: &Path,
        meta: PathBuf,
        size: u64,
        sector: u64,
        timing: StorageTiming,
    ) -> io::Result<Self> {
        let flash = FlashFile::open(path, meta, size, sector, ProgramRule::OneToZero)?;
        Ok(Nor {
            flash,
            sector,
            timing,
        })
    }

    /// Sector size.
    pub(crate) fn sector_size(&self) -> u64 {
        self.sector
    }

    /// Erases the sectors covering `start..end`.
    pub(crate) fn erase_range(&mut self, start: u64, end: u64) -> io::Result<Duration> {
        let mut t = Duration::ZERO;
        let mut s = start / self.sector;
        while s * self.sector < end {
            self.flash.erase_unit(s)?;
            t += self.timing.nor_sector_erase();
            s += 1;
        }
        Ok(t)
    }

    /// Writes `data` at the writer's pointer: erases sectors as the write
    /// reaches them, then programs page by page.
    pub(crate) fn write(
        &mut self,
        w: &mut MtdWriter,
        data: &[u8],
        errors: &mut Vec<String>,
    ) -> Result<Duration, MtdError> {
        let mut time = Duration::ZERO;
        let end = w.ptr + data.len() as u64;
        if end > w.end {
            return Err(MtdError::OutOfGoodBlocks);
        }
        while w.ready_to < end {
            time += self.erase_range(w.ready_to, w.ready_to + 1)?;
            w.ready_to = (w.ready_to / self.sector + 1) * self.sector;
        }
        let mut done = 0usize;
        while done < data.len() {
            let at = w.ptr + done as u64;
            let n = ((NOR_PAGE - at % NOR_PAGE) as usize).min(data.len() - done);
            if let Err(e) = self.flash.program(at, &data[done..done + n])? {
                errors.push(format!("nor: {e}"));
            }
            time += self.timing.nor_page_program();
            done += n;
        }
        w.ptr = end;
        Ok(time)
    }

    /// Reads bytes.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.flash.read(off, buf)
    }

    /// Writes the programmed-unit list.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.flash.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> StorageTiming {
        StorageTiming::default()
    }

    #[test]
    fn nand_skips_bad_blocks_and_refuses_double_program() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let mut nand = Nand::open(
            &p("nand.img"),
            p("nand-written.json"),
            p("nand-bbt.json"),
            8 * 1024,
            512,
            2048,
            &[1],
            None,
            timing(),
        )
        .unwrap();
        let mut w = MtdWriter::new(0, 8 * 1024);
        let mut errors = Vec::new();
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let t = nand.write(&mut w, &data, &mut errors).unwrap();
        assert!(t > Duration::ZERO);
        nand.finish(&mut w, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        // Block 1 is bad: the second 2048 bytes went to block 2.
        let mut raw = [0u8; 16];
        nand.read_raw(2048, &mut raw).unwrap();
        assert_eq!(raw, [0xFF; 16]);
        let mut back = vec![0u8; 3000];
        assert_eq!(nand.read_logical(0, 8 * 1024, 0, &mut back).unwrap(), 3000);
        assert_eq!(back, data);
        // Programming a page again without an erase is a model error.
        let mut w2 = MtdWriter::new(0, 8 * 1024);
        w2.ready_to = 2048;
        nand.write(&mut w2, &[0u8; 512], &mut errors).unwrap();
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn nor_programs_only_ones_to_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let mut nor = Nor::open(
            &dir.path().join("nor.img"),
            dir.path().join("nor-written.json"),
            64 * 1024,
            4096,
            timing(),
        )
        .unwrap();
        let mut errors = Vec::new();
        let mut w = MtdWriter::new(0, 64 * 1024);
        nor.write(&mut w, &[0x0F; 300], &mut errors).unwrap();
        assert!(errors.is_empty());
        let mut b = [0u8; 2];
        nor.read(299, &mut b).unwrap();
        assert_eq!(b, [0x0F, 0xFF]);
        let mut w = MtdWriter::new(0, 64 * 1024);
        w.ready_to = 4096;
        nor.write(&mut w, &[0xF0], &mut errors).unwrap();
        assert_eq!(errors.len(), 1);
    }
}
