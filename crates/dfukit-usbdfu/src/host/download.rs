//! DfuSe downloads: the whole `dfukit usb download` policy as one call.
//!
//! [`DfuHost::dfuse_download_job`] takes a raw image with its address, or a
//! `.dfu` file, plus the `:mass-erase` / `:leave` modifiers and `--verify`,
//! and does, in this order:
//!
//! 1. check everything before the first request: the device can download
//!    and speaks DfuSe; a `.dfu` file has targets and each target bytes to
//!    write; every element lies in a writeable region of its alt's memory
//!    layout; and every sector to erase is written from its first byte
//!    (see `plan_erases`), so no old bytes are erased that the download
//!    does not rewrite;
//! 2. mass erase, if asked: the selected alt for a raw image, every alt
//!    with erasable memory that a `.dfu` targets; no sector is erased after
//!    it;
//! 3. otherwise erase every erasable sector any element of any target
//!    touches, once per alt, before any element is written (elements and
//!    targets may share a sector);
//! 4. write every element of every target (a `.dfu` target is announced
//!    with [`DfuEvent::Target`] and its alt selected), then, with verify,
//!    read every element back after the last write of the last target, so
//!    a later write that disturbed an earlier element is caught;
//! 5. leave DFU mode, if asked: to the raw image's address, or (`.dfu`)
//!    the first element of the first target, on its alt.
//!
//! Writes send SET_ADDRESS + one block (at block number 2) per
//! transfer-size chunk, as dfu-util does, but set the address only once per
//! run of consecutive blocks.

use super::{ControlTransfer, DfuEvent, DfuHost, DfuHostError, DfuPhase, Ev, LeaveOutcome};
use crate::dfuse::{Access, Command, MemoryLayout, FIRST_DATA_BLOCK};
use crate::files::DfuseFile;
use crate::wire::{DfuRequest, State};

/// What a DfuSe download writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfuseImage<'a> {
    /// A raw image, written at `address` on alt `alt`, which the caller has
    /// selected (SET_INTERFACE) already, as `dfukit usb download -a` does.
    Raw {
        /// The selected alt setting (its memory layout is checked).
        alt: u8,
        /// Load address (`-s ADDRESS`).
        address: u32,
        /// The bytes (without DFU suffix or prefix).
        data: &'a [u8],
    },
    /// A DfuSe `.dfu` file: every element of every target, each target on
    /// its own alt setting.
    File(&'a DfuseFile),
}

/// A DfuSe download with its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfuseDownload<'a> {
    /// What to write.
    pub image: DfuseImage<'a>,
    /// Erase all erasable memory of the selected alt setting first
    /// (`:mass-erase`; the CLI also demands `:force` before setting this).
    pub mass_erase: bool,
    /// Read every element back after the last write and compare.
    pub verify: bool,
    /// Leave DFU mode at the end (`:leave`).
    pub leave: bool,
}

/// One target of a checked download: where it goes and what it erases.
struct Planned<'a> {
    /// The alt setting the target is written through.
    alt: u8,
    /// Announce and select the alt (a `.dfu` target, with its name); a raw
    /// image goes to the alt the caller selected.
    select: Option<Option<String>>,
    layout: MemoryLayout,
    /// Sectors to erase before the first write: start and size.
    erase: Vec<(u32, u32)>,
    /// Load address and bytes of every element, in file order.
    elements: Vec<(u32, &'a [u8])>,
}

/// Refuses a range that reaches past 4 GiB or into memory the layout does
/// not let the host write.
fn check_writeable(layout: &MemoryLayout, address: u32, len: usize) -> Result<(), DfuHostError> {
    let end = u64::from(address) + len as u64;
    let not_writeable = |a| DfuHostError::NotWriteable {
        address: a,
        start: address,
        end,
    };
    if end > 1 << 32 {
        return Err(not_writeable(u32::MAX));
    }
    if let Some(bad) = layout.first_denied(address, len as u32, Access::Write) {
        return Err(not_writeable(bad));
    }
    Ok(())
}

/// Checks every target of `file` against its alt's layout; a file without
/// targets, or a target without a byte to write, is refused (it would
/// "succeed" writing nothing).
fn plan_file<'a>(
    file: &'a DfuseFile,
    layout_for: &dyn Fn(u8) -> Option<MemoryLayout>,
) -> Result<Vec<Planned<'a>>, DfuHostError> {
    if file.targets.is_empty() {
        return Err(DfuHostError::EmptyFile);
    }
    file.targets
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let layout = layout_for(t.alt).ok_or(DfuHostError::NoLayout { alt: t.alt })?;
            if t.elements.iter().all(|e| e.data.is_empty()) {
                return Err(DfuHostError::EmptyTarget { index, alt: t.alt });
            }
            let elements: Vec<_> = t
                .elements
                .iter()
                .map(|e| (e.address, &e.data[..]))
                .collect();
            for &(address, data) in &elements {
                check_writeable(&layout, address, data.len())?;
            }
            Ok(Planned {
                alt: t.alt,
                select: Some(t.name.clone()),
                layout,
                erase: Vec::new(),
                elements,
            })
        })
        .collect()
}

/// Plans the sector erases of all targets together: every erasable sector
/// any element touches, once per alt, in the order the elements reach
/// them, so a later target never erases what an earlier one wrote.
///
/// The rule that keeps old firmware from being lost by a write the device
/// then refuses, or by an image that starts part way into a sector: every
/// sector to erase must be written from its first byte by some element of
/// the download. An element may end part way into a sector (the rest of it
/// is left erased, as dfu-util leaves it), but may not start part way into
/// one that nothing else covers from its start: erasing it would wipe the
/// bytes before the element, which the download does not rewrite.
fn plan_erases(plan: &mut [Planned<'_>]) -> Result<(), DfuHostError> {
    let mut planned: Vec<(u8, u32)> = Vec::new();
    for i in 0..plan.len() {
        let mut erase = Vec::new();
        for &(address, data) in &plan[i].elements {
            for s in plan[i].layout.sectors_in(address, data.len() as u32) {
                if !s.mem.erasable() || planned.contains(&(plan[i].alt, s.start)) {
                    continue;
                }
                let sector_end = u64::from(s.start) + u64::from(s.size);
                let first_written = plan
                    .iter()
                    .filter(|t| t.alt == plan[i].alt)
                    .flat_map(|t| t.elements.iter())
                    .filter(|(a, d)| {
                        !d.is_empty()
                            && u64::from(*a) < sector_end
                            && u64::from(*a) + d.len() as u64 > u64::from(s.start)
                    })
                    .map(|(a, _)| (*a).max(s.start))
                    .min()
                    .unwrap_or(s.start);
                if first_written != s.start {
                    return Err(DfuHostError::PartialSector {
                        address: first_written,
                        sector: s.start,
                        sector_end,
                    });
                }
                planned.push((plan[i].alt, s.start));
                erase.push((s.start, s.size));
            }
        }
        plan[i].erase = erase;
    }
    Ok(())
}

impl<T: ControlTransfer> DfuHost<T> {
    /// Checks a raw image for the selected alt; an empty one plans nothing.
    fn plan_raw<'a>(
        &self,
        alt: u8,
        layout: &MemoryLayout,
        address: u32,
        data: &'a [u8],
    ) -> Result<Vec<Planned<'a>>, DfuHostError> {
        check_writeable(layout, address, data.len())?;
        if data.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Planned {
            alt,
            select: None,
            layout: layout.clone(),
            erase: Vec::new(),
            elements: vec![(address, data)],
        }])
    }

    /// Selects the alt of target `t` unless it is the current one.
    fn select(&mut self, t: &Planned<'_>, current: &mut Option<u8>) -> Result<(), DfuHostError> {
        if t.select.is_some() && *current != Some(t.alt) {
            self.set_alt(t.alt)?;
            *current = Some(t.alt);
        }
        Ok(())
    }

    /// Runs checked targets: every erase of every target, then every
    /// write, then (with `verify`) every read-back, so that verify sees
    /// the flash as the whole download left it. `current` is the alt the
    /// device has selected, if known.
    fn run_plan(
        &mut self,
        plan: &[Planned<'_>],
        verify: bool,
        current: &mut Option<u8>,
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        for t in plan.iter().filter(|t| !t.erase.is_empty()) {
            self.select(t, current)?;
            self.abort_to_idle()?;
            for &(addr, len) in &t.erase {
                events(DfuEvent::Erase { addr, len });
                self.dfuse_command(Command::Erase(addr))?;
            }
        }
        for t in plan {
            if let Some(name) = &t.select {
                events(DfuEvent::Target {
                    alt: t.alt,
                    name: name.clone(),
                });
            }
            self.select(t, current)?;
            self.abort_to_idle()?;
            for &(address, data) in &t.elements {
                self.write_blocks(address, data, events)?;
            }
        }
        if verify {
            for t in plan {
                self.select(t, current)?;
                for &(address, data) in &t.elements {
                    self.verify(&t.layout, address, data, events)?;
                }
            }
        }
        Ok(())
    }

    /// A whole DfuSe download (see the module documentation): checks, mass
    /// erase, erase, write, verify, leave. Nothing is sent unless every
    /// check passes. `layout_for` gives the memory layout of an alt
    /// setting. Returns how the device left, if asked to.
    pub fn dfuse_download_job(
        &mut self,
        job: &DfuseDownload<'_>,
        layout_for: &dyn Fn(u8) -> Option<MemoryLayout>,
        events: Ev<'_>,
    ) -> Result<Option<LeaveOutcome>, DfuHostError> {
        if !self.desc.can_download() {
            return Err(DfuHostError::Unsupported { what: "download" });
        }
        if !self.desc.is_dfuse() {
            return Err(DfuHostError::NotDfuse {
                request: "a DfuSe download",
            });
        }
        let (mut plan, raw_alt) = match job.image {
            DfuseImage::Raw { alt, address, data } => {
                let layout = layout_for(alt).ok_or(DfuHostError::NoLayout { alt })?;
                (self.plan_raw(alt, &layout, address, data)?, Some(alt))
            }
            DfuseImage::File(file) => (plan_file(file, layout_for)?, None),
        };
        // Leave to the first element of the first target: where a `.dfu`
        // file's image (its vector table) starts. dfu-util sets the address
        // given with -s, which a `.dfu` download has none of (it sends 0).
        let leave_to = match job.image {
            DfuseImage::Raw { address, .. } => Some((raw_alt, address)),
            DfuseImage::File(_) => plan.first().and_then(|t| {
                let first = t.elements.iter().find(|(_, d)| !d.is_empty())?;
                Some((Some(t.alt), first.0))
            }),
        };
        if !job.mass_erase {
            plan_erases(&mut plan)?;
        }
        let mut current = raw_alt;
        if job.mass_erase {
            // A raw image: the selected alt. A `.dfu` file: every alt it
            // targets that has erasable memory, each once, so no target is
            // written over old contents; its sectors are not erased again.
            match raw_alt {
                Some(_) => self.dfuse_mass_erase(events)?,
                None => {
                    let mut done: Vec<u8> = Vec::new();
                    for t in &plan {
                        if done.contains(&t.alt)
                            || !t.layout.segments.iter().any(|s| s.mem.erasable())
                        {
                            continue;
                        }
                        done.push(t.alt);
                        self.select(t, &mut current)?;
                        self.dfuse_mass_erase(events)?;
                    }
                }
            }
        }
        self.run_plan(&plan, job.verify, &mut current, events)?;
        if !job.leave {
            return Ok(None);
        }
        let address = match leave_to {
            Some((Some(alt), address)) => {
                if current != Some(alt) {
                    self.set_alt(alt)?;
                }
                Some(address)
            }
            Some((None, address)) => Some(address),
            None => None,
        };
        self.dfuse_leave(address).map(Some)
    }

    /// Writes `data` at `address` on a DfuSe device whose alt setting has
    /// `layout`: refuses ranges that are not writeable (or that start part
    /// way into a sector, see [`DfuHost::dfuse_download_job`]) before
    /// sending anything, erases only the erasable sectors the range
    /// touches, then downloads per transfer-size chunk. With `verify`,
    /// reads the range back and compares.
    pub fn dfuse_download(
        &mut self,
        layout: &MemoryLayout,
        address: u32,
        data: &[u8],
        verify: bool,
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        if !self.desc.can_download() {
            return Err(DfuHostError::Unsupported { what: "download" });
        }
        let mut plan = self.plan_raw(0, layout, address, data)?;
        plan_erases(&mut plan)?;
        self.run_plan(&plan, verify, &mut None, events)
    }

    /// Downloads every target of a `.dfu` file. `layout_for` gives the memory
    /// layout of an alt setting; every element of every target is checked
    /// against its layout before anything is sent.
    pub fn dfuse_download_file(
        &mut self,
        file: &DfuseFile,
        layout_for: &dyn Fn(u8) -> Option<MemoryLayout>,
        verify: bool,
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        if !self.desc.can_download() {
            return Err(DfuHostError::Unsupported { what: "download" });
        }
        let mut plan = plan_file(file, layout_for)?;
        plan_erases(&mut plan)?;
        self.run_plan(&plan, verify, &mut None, events)
    }

    /// Downloads `data` at `address`, already erased, block by block.
    fn write_blocks(
        &mut self,
        address: u32,
        data: &[u8],
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        let xfer = self.desc.transfer_size.max(1) as usize;
        let total = data.len() as u64;
        // DfuSe maps block n to pointer + (n - 2) * wTransferSize, so one Set
        // Address Pointer serves a run of consecutive blocks; dfu-util sets
        // it before every block, which doubles the control transfers. The
        // pointer is set again before the 16-bit block number would wrap.
        let mut block = FIRST_DATA_BLOCK;
        for (i, chunk) in data.chunks(xfer).enumerate() {
            let a = address + (i * xfer) as u32;
            if i == 0 || block == u16::MAX {
                self.dfuse_command(Command::SetAddress(a))?;
                block = FIRST_DATA_BLOCK;
            }
            self.out(
                DfuPhase::Download,
                Some(a),
                DfuRequest::Dnload,
                block,
                chunk,
            )?;
            block += 1;
            let st = self.wait_ready(DfuPhase::Download, Some(a), None)?;
            Self::expect(st, DfuPhase::Download, Some(a), State::DfuDnloadIdle)?;
            events(DfuEvent::Download {
                done: (i * xfer + chunk.len()) as u64,
                total,
            });
        }
        Ok(())
    }

    fn verify(
        &mut self,
        layout: &MemoryLayout,
        address: u32,
        data: &[u8],
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        let back = self.dfuse_upload(layout, address, data.len(), &mut |_| {})?;
        if let Some(i) = back.iter().zip(data).position(|(a, b)| a != b) {
            return Err(DfuHostError::Verify {
                address: address + i as u32,
                expected: data[i],
                found: back[i],
            });
        }
        events(DfuEvent::Verify {
            done: data.len() as u64,
            total: data.len() as u64,
        });
        Ok(())
    }
}
