//! The flash-memory back end: DfuSe (or plain DFU) over erase/program
//! operations that complete asynchronously. See [`DfuDevice`].

use super::state::{
    AltError, Backend, Frame, Machine, Manifestation, Refusal, Sequence, Signal, Uploaded, Work,
};
use super::{ConfigError, DeviceConfig, DeviceEvent, Reply, MAX_TRANSFER_SIZE};
use crate::dfuse::{block_address, Access, Command, MemoryLayout};
use crate::wire::{FunctionalDescriptor, SetupPacket, State, Status};
use core::time::Duration;
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadFlash};
use heapless::Deque;

/// What dfuDNLOAD-SYNC will do at the next GETSTATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Command(Command),
    /// DfuSe data block (in the block buffer) at this address.
    Data {
        addr: u32,
        len: u16,
    },
    /// Plain DFU block appended at this address.
    Raw {
        addr: u32,
        len: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Erase the sectors from `next` until `end` (exclusive); sectors that
    /// are not erasable (RAM, option bytes) are skipped.
    Erase { next: u32, end: u64 },
    /// Erase every erasable segment from index `seg` on.
    MassErase { seg: u8 },
    /// Program `len` bytes of the block buffer at `addr`.
    Program { addr: u32, len: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Erase,
    Program,
}

impl OpKind {
    fn error(self) -> Status {
        match self {
            OpKind::Erase => Status::ErrErase,
            OpKind::Program => Status::ErrProg,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: OpKind,
    addr: u32,
    len: u32,
    expected_done: Instant,
    deadline: Instant,
    handed_out: bool,
}

/// Why the last flash problem happened, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfuFlashFault {
    /// The flash reported a failed operation.
    Failed {
        /// Address of the operation.
        addr: u32,
    },
    /// A completion did not arrive within `flash_timeout`.
    Timeout {
        /// Address of the operation.
        addr: u32,
    },
    /// A program target was not erased; the program was not issued.
    NotErased {
        /// First non-blank address.
        addr: u32,
    },
}

/// What answers an UPLOAD frame.
enum Source {
    /// `len` bytes of memory at `addr`; `last` ends the upload.
    Memory { addr: u32, len: usize, last: bool },
    /// The frame is filled in already (DfuSe Get Commands).
    Answered(Uploaded),
}

/// The flash work: the DfuSe address pointer, the decoded block, the job
/// queue and the operation in flight.
struct FlashWork {
    cfg: DeviceConfig,
    /// DfuSe address pointer.
    pointer: u32,
    pending: Pending,
    jobs: Deque<Job, 4>,
    in_flight: Option<InFlight>,
    /// Reset once the queued work is done (Read Unprotect).
    reset_after_work: bool,
    /// An operation passed its deadline without a completion; a DMA may
    /// still read the block buffer, so no new block is accepted into it
    /// until the late completion arrives.
    stuck: bool,
    fault: Option<DfuFlashFault>,
    /// Plain DFU: block numbers and the offset into the alt.
    raw: Sequence,
    /// Plain DFU download: everything below this address is erased.
    raw_erased_to: u64,
}

/// The DFU/DfuSe device core over flash memory.
///
/// [`DfuDevice`] takes inputs — a control request with its OUT data, "the
/// flash operation finished", "time is now T" — and produces outputs: the
/// reply to the request (IN data, zero-length OK, or STALL), flash operations
/// to start, and events such as "jump to the application". It never touches
/// hardware or reads a clock, so the same core runs on a microcontroller, in
/// the simulator under virtual time and in tests.
///
/// As on ST, U-Boot and TF-A devices, a downloaded block or command is acted
/// on at the GETSTATUS that follows it (dfuDNLOAD-SYNC → dfuDNBUSY). Flash
/// work is queued and handed out one operation at a time; the device stays
/// in dfuDNBUSY, and tells the host through bwPollTimeout how long the
/// remaining work should take, until every operation has completed. A
/// program is never issued over flash that is not erased: each program
/// operation is preceded by a blank check, and a non-blank target sets
/// dfuERROR/errCHECK_ERASED instead.
pub struct DfuDevice {
    m: Machine,
    flash: FlashWork,
}

/// The back end for one call: the flash work and the memory it reads.
struct FlashCtx<'a, M: ReadFlash> {
    flash: &'a mut FlashWork,
    mem: &'a mut M,
}

impl DfuDevice {
    /// A device in dfuIDLE on alt 0.
    pub fn new(cfg: DeviceConfig) -> Result<Self, ConfigError> {
        if cfg.transfer_size == 0 || cfg.transfer_size as usize > MAX_TRANSFER_SIZE {
            return Err(ConfigError::TransferSize(cfg.transfer_size));
        }
        if cfg.alts.is_empty() {
            return Err(ConfigError::NoAlts);
        }
        Ok(DfuDevice {
            m: Machine::new(
                cfg.dialect,
                cfg.interface,
                cfg.transfer_size,
                cfg.detach_timeout_ms,
            ),
            flash: FlashWork {
                pointer: cfg.default_address,
                cfg,
                pending: Pending::None,
                jobs: Deque::new(),
                in_flight: None,
                reset_after_work: false,
                stuck: false,
                fault: None,
                raw: Sequence::default(),
                raw_erased_to: 0,
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.flash.cfg
    }
    /// Current DFU state.
    pub fn state(&self) -> State {
        self.m.state()
    }
    /// Current status code.
    pub fn status(&self) -> Status {
        self.m.status()
    }
    /// Selected alternate setting.
    pub fn alt(&self) -> u8 {
        self.m.alt()
    }
    /// DfuSe address pointer.
    pub fn address_pointer(&self) -> u32 {
        self.flash.pointer
    }
    /// The last flash problem, if any.
    pub fn fault(&self) -> Option<DfuFlashFault> {
        self.flash.fault
    }
    /// The functional descriptor to put in the configuration descriptor.
    pub fn functional_descriptor(&self) -> FunctionalDescriptor {
        self.m.descriptor()
    }
    /// The interface string of alt `alt`.
    pub fn alt_name(&self, alt: u8) -> Option<&'static str> {
        self.flash.cfg.alts.get(alt as usize).map(|a| a.name)
    }
    /// Whether flash work is queued or in flight.
    pub fn is_busy(&self) -> bool {
        self.flash.is_busy()
    }

    /// Selects an alternate setting (SET_INTERFACE). Refused while flash work
    /// is pending, because that work addresses the current alt's memory.
    pub fn select_alt(&mut self, alt: u8) -> Result<(), AltError> {
        if alt as usize >= self.flash.cfg.alts.len() {
            return Err(AltError::NoSuchAlt(alt));
        }
        if self.is_busy() {
            return Err(AltError::Busy);
        }
        self.m.select(alt);
        Ok(())
    }

    /// A USB bus reset. Out of dfuMANIFEST-WAIT-RESET the device leaves (to
    /// the application); otherwise it returns to dfuIDLE on alt 0, as ST's
    /// stack does on re-enumeration.
    pub fn usb_reset(&mut self, _now: Instant) {
        if self.m.state() == State::DfuManifestWaitReset {
            self.m.push_event(DeviceEvent::Leave {
                address: self.flash.pointer,
            });
            return;
        }
        if !self.is_busy() {
            self.m.reset();
        }
    }

    /// Handles one control request addressed to the DFU interface (class
    /// requests and SET_INTERFACE). `data` is the OUT data stage; IN data is
    /// written to `reply`, which must hold `setup.length` bytes. Reads for
    /// UPLOAD and blank checks go through `mem`.
    pub fn control(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        data: &[u8],
        reply: &mut [u8],
        mem: &mut impl ReadFlash,
    ) -> Reply {
        let mut ctx = FlashCtx {
            flash: &mut self.flash,
            mem,
        };
        self.m.control(now, setup, data, reply, &mut ctx)
    }

    /// Reports that the operation last handed out by
    /// [`DfuDevice::poll_flash`] finished. A completion after the device gave
    /// up on it (deadline passed) is ignored.
    pub fn flash_complete(&mut self, now: Instant, outcome: FlashOutcome) {
        let _ = now;
        let Some(f) = self.flash.in_flight.take() else {
            // The late completion of an operation the device gave up on: the
            // block buffer is free again.
            self.flash.stuck = false;
            return;
        };
        if outcome == FlashOutcome::Failed {
            self.flash.fault = Some(DfuFlashFault::Failed { addr: f.addr });
            let s = self.flash.fail(f.kind.error());
            self.m.signal(Some(s));
        }
    }

    /// Advances time: enforces the flash deadline and starts the next queued
    /// operation (blank-checking program targets through `mem`).
    pub fn poll(&mut self, now: Instant, mem: &mut impl ReadFlash) {
        let s = self.flash.pump(now, self.m.alt(), mem);
        self.m.signal(s);
    }

    /// The flash operation to start now, if one is waiting. Each operation is
    /// returned once; report its end with [`DfuDevice::flash_complete`]. A
    /// program's data stays in the device's buffer until then.
    pub fn poll_flash(&mut self) -> Option<FlashOp<'_>> {
        let f = self.flash.in_flight.as_mut().filter(|f| !f.handed_out)?;
        f.handed_out = true;
        Some(match f.kind {
            OpKind::Erase => FlashOp::Erase {
                addr: f.addr,
                len: f.len,
            },
            OpKind::Program => FlashOp::Program {
                addr: f.addr,
                data: &self.m.buffer()[..f.len as usize],
            },
        })
    }

    /// The next event for the environment.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.m.poll_event()
    }

    /// When [`DfuDevice::poll`] must be called next (the in-flight
    /// operation's deadline).
    pub fn poll_at(&self) -> Option<Instant> {
        self.flash.in_flight.map(|f| f.deadline)
    }
}

impl FlashWork {
    fn is_busy(&self) -> bool {
        !self.jobs.is_empty() || self.in_flight.is_some()
    }

    fn layout(&self, alt: u8) -> &MemoryLayout {
        &self.cfg.alts[alt as usize].layout
    }

    /// Drops the queued work after a flash fault; returns the signal that
    /// puts the device into dfuERROR.
    fn fail(&mut self, status: Status) -> Signal {
        self.pending = Pending::None;
        self.jobs.clear();
        self.reset_after_work = false;
        Signal::Fault(status)
    }

    /// Validates what dfuDNLOAD-SYNC held and queues its flash work.
    fn execute(&mut self, alt: u8, pending: Pending) -> Result<(), Status> {
        let addr_err = self.cfg.dialect.address_error;
        match pending {
            Pending::None => {}
            Pending::Command(Command::SetAddress(a)) => {
                if self.layout(alt).segment_at(a).is_none() {
                    return Err(addr_err);
                }
                self.pointer = a;
            }
            Pending::Command(Command::Erase(a)) => match self.layout(alt).sector_at(a) {
                Some(s) if s.mem.erasable() => {
                    let _ = self.jobs.push_back(Job::Erase {
                        next: s.start,
                        end: s.end(),
                    });
                }
                _ => return Err(Status::ErrTarget),
            },
            Pending::Command(Command::MassErase) | Pending::Command(Command::ReadUnprotect) => {
                if !self.layout(alt).segments.iter().any(|s| s.mem.erasable()) {
                    return Err(Status::ErrTarget);
                }
                let _ = self.jobs.push_back(Job::MassErase { seg: 0 });
                if pending == Pending::Command(Command::ReadUnprotect) {
                    self.reset_after_work = true;
                }
            }
            Pending::Data { addr, len } | Pending::Raw { addr, len } => {
                if self
                    .layout(alt)
                    .first_denied(addr, len.into(), Access::Write)
                    .is_some()
                {
                    return Err(addr_err);
                }
                let end = u64::from(addr) + u64::from(len);
                if matches!(pending, Pending::Raw { .. }) && end > self.raw_erased_to {
                    // Plain DFU: erase the sectors this block reaches into
                    // that are not erased yet; the previous block erased up
                    // to a sector end.
                    let from = self.raw_erased_to.max(u64::from(addr)) as u32;
                    let _ = self.jobs.push_back(Job::Erase { next: from, end });
                    self.raw_erased_to = self
                        .layout(alt)
                        .sector_at((end - 1) as u32)
                        .map_or(end, |s| s.end());
                }
                let _ = self.jobs.push_back(Job::Program { addr, len });
            }
        }
        Ok(())
    }

    /// Expected time for the queued and in-flight work.
    fn remaining_work(&self, now: Instant, alt: u8) -> Duration {
        let t = self.cfg.timing;
        let mut total = Duration::ZERO;
        if let Some(f) = self.in_flight {
            total += f.expected_done.saturating_duration_since(now);
        }
        for j in self.jobs.iter() {
            total += match *j {
                Job::Erase { next, end } => {
                    per_kib(t.erase_per_kib, end.saturating_sub(u64::from(next)))
                }
                Job::MassErase { seg } => {
                    let bytes: u64 = self
                        .layout(alt)
                        .segments
                        .iter()
                        .skip(seg as usize)
                        .filter(|s| s.mem.erasable())
                        .map(|s| s.end() - u64::from(s.start))
                        .sum();
                    per_kib(t.erase_per_kib, bytes)
                }
                Job::Program { len, .. } => per_kib(t.program_per_kib, len.into()),
            };
        }
        total
    }

    /// Deadline check, then start queued work while nothing is in flight.
    fn pump(&mut self, now: Instant, alt: u8, mem: &mut impl ReadFlash) -> Option<Signal> {
        if let Some(f) = self.in_flight {
            if now >= f.deadline {
                self.in_flight = None;
                self.stuck = true;
                self.fault = Some(DfuFlashFault::Timeout { addr: f.addr });
                // The queue is dropped: nothing else starts.
                return Some(self.fail(f.kind.error()));
            }
        }
        while self.in_flight.is_none() {
            let Some(job) = self.jobs.pop_front() else {
                break;
            };
            match job {
                Job::MassErase { seg } => {
                    let next = self
                        .layout(alt)
                        .segments
                        .iter()
                        .enumerate()
                        .skip(seg as usize)
                        .find(|(_, s)| s.mem.erasable())
                        .map(|(i, s)| (i, s.start, s.end()));
                    if let Some((i, start, end)) = next {
                        let _ = self.jobs.push_front(Job::MassErase { seg: i as u8 + 1 });
                        let _ = self.jobs.push_front(Job::Erase { next: start, end });
                    }
                }
                Job::Erase { next, end } => {
                    if u64::from(next) >= end {
                        continue;
                    }
                    let Some(s) = self.layout(alt).sector_at(next) else {
                        continue;
                    };
                    if s.end() < end {
                        let _ = self.jobs.push_front(Job::Erase {
                            next: s.end() as u32,
                            end,
                        });
                    }
                    if s.mem.erasable() {
                        self.start(now, OpKind::Erase, s.start, s.size);
                    }
                }
                Job::Program { addr, len } => {
                    let needs_blank = self
                        .layout(alt)
                        .sector_at(addr)
                        .is_some_and(|s| s.mem.erasable());
                    if needs_blank {
                        if let Some(bad) = first_non_blank(mem, addr, len.into()) {
                            self.fault = Some(DfuFlashFault::NotErased { addr: bad });
                            return Some(self.fail(Status::ErrCheckErased));
                        }
                    }
                    self.start(now, OpKind::Program, addr, len.into());
                }
            }
        }
        if self.reset_after_work && !self.is_busy() {
            // Read Unprotect: the flash is erased, the device resets itself.
            self.reset_after_work = false;
            return Some(Signal::Reset);
        }
        None
    }

    fn start(&mut self, now: Instant, kind: OpKind, addr: u32, len: u32) {
        let t = self.cfg.timing;
        let per = match kind {
            OpKind::Erase => t.erase_per_kib,
            OpKind::Program => t.program_per_kib,
        };
        self.in_flight = Some(InFlight {
            kind,
            addr,
            len,
            expected_done: now + per_kib(per, len.into()),
            deadline: now + self.cfg.flash_timeout,
            handed_out: false,
        });
    }

    /// A DfuSe DNLOAD: block 0 is a command, block 1 is reserved, blocks
    /// from 2 are data at the address they map to.
    fn dfuse_block(&mut self, block: u16, data: &[u8]) -> Result<(), Refusal> {
        self.pending = match block {
            0 => Pending::Command(Command::parse(data).map_err(|_| Refusal::Stall)?),
            1 => return Err(Refusal::Stall),
            _ => {
                let addr = block_address(self.pointer, block, self.cfg.transfer_size)
                    .ok_or(Refusal::Error(self.cfg.dialect.address_error))?;
                Pending::Data {
                    addr,
                    len: data.len() as u16,
                }
            }
        };
        Ok(())
    }

    /// What an UPLOAD frame of `buf.len()` bytes answers. DfuSe: block 0
    /// is Get Commands, block 1 is reserved, blocks from 2 read the memory
    /// they map to. Plain DFU: the alt's memory from its first address on,
    /// until a short frame.
    fn upload_source(&mut self, at: Frame, buf: &mut [u8]) -> Result<Source, Refusal> {
        let want = buf.len();
        let address_error = Refusal::Error(self.cfg.dialect.address_error);
        if !self.cfg.dialect.dfuse {
            let offset = clamp_u32(self.raw.read_from(at.starting));
            let layout = self.layout(at.alt);
            let size = u32::try_from(layout.total_size()).unwrap_or(u32::MAX);
            let addr = layout.start().wrapping_add(offset);
            let len = (size.saturating_sub(offset) as usize).min(want);
            if len > 0 && !layout.is_readable(addr, len as u32) {
                return Err(address_error);
            }
            return Ok(Source::Memory {
                addr,
                len,
                last: len < want,
            });
        }
        match at.block {
            0 => {
                let cmds = self.cfg.dialect.get_commands;
                let n = cmds.len().min(want);
                buf[..n].copy_from_slice(&cmds[..n]);
                // ST's stack (usbd_dfu.c) is idle again after a full Get
                // Commands (wLength > 3): a query, not an upload.
                Ok(Source::Answered(Uploaded {
                    len: n,
                    last: want > 3,
                }))
            }
            1 => Err(Refusal::Stall),
            _ => block_address(self.pointer, at.block, self.cfg.transfer_size)
                .filter(|&a| self.layout(at.alt).is_readable(a, want as u32))
                .map(|addr| Source::Memory {
                    addr,
                    len: want,
                    last: false,
                })
                .ok_or(address_error),
        }
    }
}

impl<M: ReadFlash> Backend for FlashCtx<'_, M> {
    const TIMED: bool = false;

    fn alt_count(&self) -> u8 {
        self.flash.cfg.alts.len() as u8
    }
    fn poll(&mut self, now: Instant, alt: u8) -> Option<Signal> {
        self.flash.pump(now, alt, self.mem)
    }
    fn work_pending(&self) -> bool {
        self.flash.is_busy()
    }
    fn done(&self, _now: Instant) -> bool {
        !self.flash.is_busy()
    }
    fn remaining(&self, now: Instant, alt: u8) -> Duration {
        let min = self.flash.cfg.timing.min_poll;
        self.flash.remaining_work(now, alt).max(min)
    }
    fn accepts_block(&self) -> bool {
        !self.flash.stuck && !self.flash.is_busy()
    }
    fn leave_from_idle(&self) -> bool {
        // ST's ROM takes the DfuSe leave request from dfuIDLE.
        self.flash.cfg.dialect.dfuse
    }
    fn dnload(&mut self, at: Frame, data: &[u8]) -> Result<(), Refusal> {
        let f = &mut *self.flash;
        if f.cfg.dialect.dfuse {
            return f.dfuse_block(at.block, data);
        }
        if at.starting {
            // A new download starts at the beginning of the alt.
            f.raw_erased_to = 0;
        }
        let offset = f.raw.block(at.block, data.len(), at.starting)?;
        f.pending = Pending::Raw {
            addr: f.layout(at.alt).start().wrapping_add(clamp_u32(offset)),
            len: data.len() as u16,
        };
        Ok(())
    }
    fn execute(&mut self, _now: Instant, alt: u8, _data: &[u8]) -> Result<Work, Status> {
        let pending = core::mem::replace(&mut self.flash.pending, Pending::None);
        self.flash.execute(alt, pending)?;
        // Even work that needs no flash operation (Set Address) reports
        // dfuDNBUSY first, as ST's ROM does and dfu-util expects.
        Ok(Work::Pending)
    }
    fn manifest(&mut self, _now: Instant, _alt: u8) -> Result<Manifestation, Status> {
        let poll = self.flash.cfg.timing.manifest;
        Ok(if self.flash.cfg.dialect.dfuse {
            Manifestation::Leave {
                address: self.flash.pointer,
                poll,
            }
        } else {
            Manifestation::Busy(poll)
        })
    }
    fn upload(&mut self, at: Frame, buf: &mut [u8]) -> Result<Uploaded, Refusal> {
        let (addr, len, last) = match self.flash.upload_source(at, buf)? {
            Source::Memory { addr, len, last } => (addr, len, last),
            Source::Answered(u) => return Ok(u),
        };
        self.mem
            .read(addr, &mut buf[..len])
            .map_err(|_| Refusal::Error(Status::ErrUnknown))?;
        if !self.flash.cfg.dialect.dfuse {
            self.flash.raw.uploaded(len);
        }
        Ok(Uploaded { len, last })
    }
}

/// `d` per KiB, for `bytes`.
fn per_kib(d: Duration, bytes: u64) -> Duration {
    Duration::from_micros((d.as_micros() as u64).saturating_mul(bytes).div_ceil(1024))
}

/// A stream offset as a 32-bit address offset (saturating).
fn clamp_u32(offset: u64) -> u32 {
    u32::try_from(offset).unwrap_or(u32::MAX)
}

/// The first address in `addr..addr + len` that does not read 0xFF (or
/// cannot be read).
fn first_non_blank(mem: &mut impl ReadFlash, addr: u32, len: u32) -> Option<u32> {
    let mut chunk = [0u8; 64];
    let mut off = 0u32;
    while off < len {
        let n = (len - off).min(chunk.len() as u32) as usize;
        let a = addr.wrapping_add(off);
        if mem.read(a, &mut chunk[..n]).is_err() {
            return Some(a);
        }
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0xFF) {
            return Some(a + i as u32);
        }
        off += n as u32;
    }
    None
}
