//! DfuSe downloads: the whole `dfukit usb download` policy as one call.
//!
//! [`DfuHost::dfuse_download_job`] takes a raw image with its address, or a
//! `.dfu` file, plus the `:mass-erase` / `:leave` modifiers and `--verify`,
//! and does, in this order:
//!
//! 1. check everything before the first request: every element lies in a
//!    writeable region of its alt's memory layout (a raw image also needs a
//!    device that can download);
//! 2. mass erase the selected alt, if asked;
//! 3. per target (a raw image is one target on the selected alt; a `.dfu`
//!    target is announced with [`Event::Target`] and its alt is selected):
//!    return to dfuIDLE, erase every erasable sector any of its elements
//!    touches, once, before any element is written (elements may share a
//!    sector), write every element, then, with verify, read every element
//!    back after the last write, so a later write that disturbed an earlier
//!    element is caught;
//! 4. leave DFU mode, if asked: to the raw image's address, or (`.dfu`)
//!    wherever the device's address pointer is.
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
    /// Alt setting to announce and select; `None` for a raw image (the
    /// caller's alt).
    select: Option<(u8, Option<String>)>,
    layout: MemoryLayout,
    /// Sectors to erase before the first write: start and size.
    erase: Vec<(u32, u32)>,
    /// Load address and bytes of every element, in file order.
    elements: Vec<(u32, &'a [u8])>,
}

impl<'a> Planned<'a> {
    /// Checks every element against `layout` and plans the erases: every
    /// erasable sector any element touches, once, in the order the elements
    /// reach them.
    fn new(
        select: Option<(u8, Option<String>)>,
        layout: MemoryLayout,
        elements: Vec<(u32, &'a [u8])>,
    ) -> Result<Self, DfuHostError> {
        let mut erase: Vec<(u32, u32)> = Vec::new();
        for &(address, data) in &elements {
            check_writeable(&layout, address, data.len())?;
            for s in layout.sectors_in(address, data.len() as u32) {
                if s.mem.erasable() && !erase.iter().any(|e| e.0 == s.start) {
                    erase.push((s.start, s.size));
                }
            }
        }
        Ok(Planned {
            select,
            layout,
            erase,
            elements,
        })
    }
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

/// Checks every target of `file` against its alt's layout.
fn plan_file<'a>(
    file: &'a DfuseFile,
    layout_for: &dyn Fn(u8) -> Option<MemoryLayout>,
) -> Result<Vec<Planned<'a>>, DfuHostError> {
    file.targets
        .iter()
        .map(|t| {
            let layout = layout_for(t.alt).ok_or(DfuHostError::NoLayout { alt: t.alt })?;
            let elements = t
                .elements
                .iter()
                .map(|e| (e.address, &e.data[..]))
                .collect();
            Planned::new(Some((t.alt, t.name.clone())), layout, elements)
        })
        .collect()
}

impl<T: ControlTransfer> DfuHost<T> {
    /// Checks a raw image for the selected alt; an empty one plans nothing.
    fn plan_raw<'a>(
        &self,
        layout: &MemoryLayout,
        address: u32,
        data: &'a [u8],
    ) -> Result<Vec<Planned<'a>>, DfuHostError> {
        check_writeable(layout, address, data.len())?;
        if !self.desc.can_download() {
            return Err(DfuHostError::Unsupported { what: "download" });
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Planned::new(
            None,
            layout.clone(),
            vec![(address, data)],
        )?])
    }

    /// Runs checked targets: select, erase, write, verify.
    fn run_plan(
        &mut self,
        plan: &[Planned<'_>],
        verify: bool,
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        for t in plan {
            if let Some((alt, name)) = &t.select {
                events(DfuEvent::Target {
                    alt: *alt,
                    name: name.clone(),
                });
                self.set_alt(*alt)?;
            }
            self.abort_to_idle()?;
            for &(addr, len) in &t.erase {
                events(DfuEvent::Erase { addr, len });
                self.dfuse_command(Command::Erase(addr))?;
            }
            for &(address, data) in &t.elements {
                self.write_blocks(address, data, events)?;
            }
            if verify {
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
        let (plan, leave_to) = match job.image {
            DfuseImage::Raw { alt, address, data } => {
                let layout = layout_for(alt).ok_or(DfuHostError::NoLayout { alt })?;
                (self.plan_raw(&layout, address, data)?, Some(address))
            }
            DfuseImage::File(file) => (plan_file(file, layout_for)?, None),
        };
        if job.mass_erase {
            self.dfuse_mass_erase(events)?;
        }
        self.run_plan(&plan, job.verify, events)?;
        if !job.leave {
            return Ok(None);
        }
        self.dfuse_leave(leave_to).map(Some)
    }

    /// Writes `data` at `address` on a DfuSe device whose alt setting has
    /// `layout`: refuses ranges that are not writeable before sending
    /// anything, erases only the erasable sectors the range touches, then
    /// downloads per transfer-size chunk. With `verify`, reads the range back
    /// and compares.
    pub fn dfuse_download(
        &mut self,
        layout: &MemoryLayout,
        address: u32,
        data: &[u8],
        verify: bool,
        events: Ev<'_>,
    ) -> Result<(), DfuHostError> {
        let plan = self.plan_raw(layout, address, data)?;
        self.run_plan(&plan, verify, events)
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
        let plan = plan_file(file, layout_for)?;
        self.run_plan(&plan, verify, events)
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
