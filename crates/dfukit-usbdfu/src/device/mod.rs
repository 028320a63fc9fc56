//! A sans-IO DFU 1.1 / DfuSe device: the state machine behind EP0.
//!
//! [`DfuDevice`] takes inputs — a control request with its OUT data, "the
//! flash operation finished", "time is now T" — and produces outputs: the
//! reply to the request (IN data, zero-length OK, or STALL), flash operations
//! to start, and events such as "jump to the application". It never touches
//! hardware or reads a clock, so the same core runs on a microcontroller, in
//! the simulator under virtual time and in tests.
//!
//! As on ST, U-Boot and TF-A devices, a downloaded block or command is acted
//! on at the GETSTATUS that follows it (dfuDNLOAD-SYNC → dfuDNBUSY). Flash
//! work is queued and handed out one operation at a time; the device stays
//! in dfuDNBUSY, and tells the host through bwPollTimeout how long the
//! remaining work should take, until every operation has completed. A
//! program is never issued over flash that is not erased: each program
//! operation is preceded by a blank check, and a non-blank target sets
//! dfuERROR/errCHECK_ERASED instead.

mod config;
pub mod stream;

pub use config::{
    AltSetting, ConfigError, DeviceConfig, Dialect, FlashTiming, MAX_ALTS, MAX_TRANSFER_SIZE,
};

use crate::dfuse::{block_address, Access, Command, MemoryLayout};
use crate::wire::{
    DfuSetup, FunctionalDescriptor, GetStatus, Request, SetupPacket, State, Status,
    MAX_POLL_TIMEOUT_MS, REQUEST_TYPE_STANDARD_INTERFACE_OUT, SET_INTERFACE,
};
use core::time::Duration;
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadFlash};
use heapless::Deque;

/// The answer to a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// IN data: the first `n` bytes of the reply buffer.
    In(usize),
    /// OUT request accepted (zero-length status stage).
    Ack,
    /// The request is refused: stall EP0.
    Stall,
}

/// Something the device asks of its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Leave DFU and start the application at `address` (DfuSe `:leave`;
    /// a device that is not manifestation tolerant also disconnects).
    Leave {
        /// Where to jump.
        address: u32,
    },
    /// DETACH arrived.
    Detach {
        /// wValue: how long the host will wait for the device to go, ms.
        timeout_ms: u16,
    },
    /// Disconnect and re-enumerate (bitWillDetach after DETACH, or after
    /// Read Unprotect erased the flash).
    UsbReset,
    /// A download was manifested and the device stays in DFU mode.
    Manifested,
}

/// The DFU class request of `setup`, if it is one this interface must
/// answer: addressed to `interface`, with all its OUT data, and room for its
/// IN data in `reply`. Shared by both device cores.
fn class_request(
    setup: &SetupPacket,
    interface: u16,
    data: &[u8],
    reply: &[u8],
) -> Option<Request> {
    let req = setup.dfu_request()?;
    let framed = if setup.is_in() {
        reply.len() >= setup.length as usize
    } else {
        data.len() == setup.length as usize
    };
    (setup.index == interface && framed).then_some(req)
}

/// GETSTATE: one byte, the state.
fn get_state(state: State, setup: &SetupPacket, reply: &mut [u8]) -> Reply {
    if setup.length == 0 {
        return Reply::Stall;
    }
    reply[0] = state as u8;
    Reply::In(1)
}

/// CLRSTATUS: leaves dfuERROR for dfuIDLE (when `may_leave_error`);
/// outside dfuERROR it is ignored, or, in a strict dialect (ST, TF-A), is
/// itself an error.
fn clear_status(
    dialect: &Dialect,
    may_leave_error: bool,
    state: &mut State,
    status: &mut Status,
) -> Reply {
    if *state == State::DfuError {
        if may_leave_error {
            *state = State::DfuIdle;
            *status = Status::Ok;
        }
    } else if dialect.strict_clrstatus {
        *state = State::DfuError;
        *status = Status::ErrUnknown;
    }
    Reply::Ack
}

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

#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: OpKind,
    addr: u32,
    len: u32,
    expected_done: Instant,
    deadline: Instant,
    handed_out: bool,
}

/// Why an alternate setting cannot be selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltError {
    /// The device has no such alt.
    NoSuchAlt(u8),
    /// Flash work for the current alt is still pending.
    Busy,
}

/// Why the last flash problem happened, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashFault {
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

/// The DFU/DfuSe device core. See the module documentation.
pub struct DfuDevice {
    cfg: DeviceConfig,
    state: State,
    status: Status,
    alt: u8,
    /// DfuSe address pointer.
    pointer: u32,
    pending: Pending,
    buf: [u8; MAX_TRANSFER_SIZE],
    jobs: Deque<Job, 4>,
    in_flight: Option<InFlight>,
    /// Reset once the queued work is done (Read Unprotect).
    reset_after_work: bool,
    /// An operation passed its deadline without a completion; a DMA may
    /// still read the block buffer, so no new block is accepted into it
    /// until the late completion arrives.
    stuck: bool,
    fault: Option<FlashFault>,
    events: Deque<DeviceEvent, 8>,
    /// Plain DFU: next expected block number and byte offset into the alt.
    raw_block: u16,
    raw_offset: u32,
    /// Plain DFU download: everything below this address is erased.
    raw_erased_to: u64,
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
            pointer: cfg.default_address,
            cfg,
            state: State::DfuIdle,
            status: Status::Ok,
            alt: 0,
            pending: Pending::None,
            buf: [0xFF; MAX_TRANSFER_SIZE],
            jobs: Deque::new(),
            in_flight: None,
            reset_after_work: false,
            stuck: false,
            fault: None,
            events: Deque::new(),
            raw_block: 0,
            raw_offset: 0,
            raw_erased_to: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }
    /// Current DFU state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Current status code.
    pub fn status(&self) -> Status {
        self.status
    }
    /// Selected alternate setting.
    pub fn alt(&self) -> u8 {
        self.alt
    }
    /// DfuSe address pointer.
    pub fn address_pointer(&self) -> u32 {
        self.pointer
    }
    /// The last flash problem, if any.
    pub fn fault(&self) -> Option<FlashFault> {
        self.fault
    }
    /// The functional descriptor to put in the configuration descriptor.
    pub fn functional_descriptor(&self) -> FunctionalDescriptor {
        self.cfg.descriptor()
    }
    /// The interface string of alt `alt`.
    pub fn alt_name(&self, alt: u8) -> Option<&'static str> {
        self.cfg.alts.get(alt as usize).map(|a| a.name)
    }
    /// Whether flash work is queued or in flight.
    pub fn is_busy(&self) -> bool {
        !self.jobs.is_empty() || self.in_flight.is_some()
    }

    fn layout(&self) -> &MemoryLayout {
        &self.cfg.alts[self.alt as usize].layout
    }

    /// Selects an alternate setting (SET_INTERFACE). Refused while flash work
    /// is pending, because that work addresses the current alt's memory.
    pub fn select_alt(&mut self, alt: u8) -> Result<(), AltError> {
        if alt as usize >= self.cfg.alts.len() {
            return Err(AltError::NoSuchAlt(alt));
        }
        if self.is_busy() {
            return Err(AltError::Busy);
        }
        self.alt = alt;
        // Selecting an alternate setting starts over on it (U-Boot and ST
        // reset their DFU state); a half-done transfer does not carry over.
        self.state = State::DfuIdle;
        self.status = Status::Ok;
        self.pending = Pending::None;
        self.raw_offset = 0;
        Ok(())
    }

    /// A USB bus reset. Out of dfuMANIFEST-WAIT-RESET the device leaves (to
    /// the application); otherwise it returns to dfuIDLE, as ST's stack does
    /// on re-enumeration.
    pub fn usb_reset(&mut self, _now: Instant) {
        if self.state == State::DfuManifestWaitReset {
            self.push_event(DeviceEvent::Leave {
                address: self.pointer,
            });
            return;
        }
        if !self.is_busy() {
            self.state = State::DfuIdle;
            self.status = Status::Ok;
            self.pending = Pending::None;
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
        self.pump(now, mem);
        if setup.request_type == REQUEST_TYPE_STANDARD_INTERFACE_OUT
            && setup.request == SET_INTERFACE
        {
            return match u8::try_from(setup.value).map(|a| self.select_alt(a)) {
                Ok(Ok(())) => Reply::Ack,
                _ => Reply::Stall,
            };
        }
        let Some(req) = class_request(setup, self.cfg.interface, data, reply) else {
            return Reply::Stall;
        };
        if self.state == State::DfuManifestWaitReset {
            // Only a USB reset gets the device out; it answers nothing else.
            return Reply::Stall;
        }
        match req {
            Request::GetStatus => self.get_status(now, setup, reply, mem),
            Request::GetState => get_state(self.state, setup, reply),
            Request::ClrStatus => {
                // Leaving dfuERROR while a flash operation is still running
                // would let a new block overwrite its buffer: the device
                // stays in dfuERROR until the flash is done.
                let may_leave_error = !self.is_busy();
                clear_status(
                    &self.cfg.dialect,
                    may_leave_error,
                    &mut self.state,
                    &mut self.status,
                )
            }
            Request::Abort => match self.state {
                State::DfuIdle
                | State::DfuDnloadSync
                | State::DfuDnloadIdle
                | State::DfuManifestSync
                | State::DfuUploadIdle => {
                    self.state = State::DfuIdle;
                    self.pending = Pending::None;
                    Reply::Ack
                }
                _ => Reply::Stall,
            },
            Request::Detach => self.detach(setup.value),
            Request::Dnload => self.dnload(setup, data),
            Request::Upload => self.upload(setup, reply, mem),
        }
    }

    /// Reports that the operation last handed out by
    /// [`DfuDevice::poll_flash`] finished. A completion after the device gave
    /// up on it (deadline passed) is ignored.
    pub fn flash_complete(&mut self, now: Instant, outcome: FlashOutcome) {
        let _ = now;
        let Some(f) = self.in_flight.take() else {
            // The late completion of an operation the device gave up on: the
            // block buffer is free again.
            self.stuck = false;
            return;
        };
        if outcome == FlashOutcome::Failed {
            self.fault = Some(FlashFault::Failed { addr: f.addr });
            self.fail(match f.kind {
                OpKind::Erase => Status::ErrErase,
                OpKind::Program => Status::ErrProg,
            });
        }
    }

    /// Advances time: enforces the flash deadline and starts the next queued
    /// operation (blank-checking program targets through `mem`).
    pub fn poll(&mut self, now: Instant, mem: &mut impl ReadFlash) {
        self.pump(now, mem);
    }

    /// The flash operation to start now, if one is waiting. Each operation is
    /// returned once; report its end with [`DfuDevice::flash_complete`]. A
    /// program's data stays in the device's buffer until then.
    pub fn poll_flash(&mut self) -> Option<FlashOp<'_>> {
        let f = self.in_flight.as_mut().filter(|f| !f.handed_out)?;
        f.handed_out = true;
        Some(match f.kind {
            OpKind::Erase => FlashOp::Erase {
                addr: f.addr,
                len: f.len,
            },
            OpKind::Program => FlashOp::Program {
                addr: f.addr,
                data: &self.buf[..f.len as usize],
            },
        })
    }

    /// The next event for the environment.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// When [`DfuDevice::poll`] must be called next (the in-flight
    /// operation's deadline).
    pub fn poll_at(&self) -> Option<Instant> {
        self.in_flight.map(|f| f.deadline)
    }

    fn push_event(&mut self, e: DeviceEvent) {
        push_newest(&mut self.events, e);
    }

    /// Enters dfuERROR and drops any queued work.
    fn fail(&mut self, status: Status) {
        self.state = State::DfuError;
        self.status = status;
        self.pending = Pending::None;
        self.jobs.clear();
        self.reset_after_work = false;
    }

    /// A request that is not valid in this state: STALL and dfuERROR.
    fn stall_error(&mut self) -> Reply {
        if !self.is_busy() {
            self.fail(Status::ErrStalledPkt);
        }
        Reply::Stall
    }

    fn detach(&mut self, timeout_ms: u16) -> Reply {
        match self.state {
            State::AppIdle => {
                self.state = State::AppDetach;
            }
            State::DfuIdle
            | State::DfuDnloadSync
            | State::DfuDnloadIdle
            | State::DfuManifestSync
            | State::DfuUploadIdle => {
                // U-Boot and TF-A leave their DFU loop on DETACH; ST returns
                // to dfuIDLE and re-enumerates.
                self.state = State::DfuIdle;
                self.pending = Pending::None;
            }
            _ => return self.stall_error(),
        }
        self.push_event(DeviceEvent::Detach { timeout_ms });
        if self.cfg.dialect.will_detach {
            self.push_event(DeviceEvent::UsbReset);
        }
        Reply::Ack
    }

    fn dnload(&mut self, setup: &SetupPacket, data: &[u8]) -> Reply {
        if !matches!(self.state, State::DfuIdle | State::DfuDnloadIdle) {
            return self.stall_error();
        }
        // The block buffer is busy until its program completes.
        if data.len() > self.cfg.transfer_size as usize || self.stuck || self.is_busy() {
            return self.stall_error();
        }
        let block = setup.value;
        if data.is_empty() {
            // End of download / DfuSe leave request. ST's ROM also takes the
            // leave request from dfuIDLE (dfu-util returns to idle before
            // `:leave`); plain DFU needs a download first.
            if self.state != State::DfuDnloadIdle
                && !(self.cfg.dialect.dfuse && self.state == State::DfuIdle)
            {
                return self.stall_error();
            }
            self.state = State::DfuManifestSync;
            return Reply::Ack;
        }
        if self.cfg.dialect.dfuse {
            match block {
                0 => match Command::parse(data) {
                    Ok(c) => self.pending = Pending::Command(c),
                    Err(_) => return self.stall_error(),
                },
                1 => return self.stall_error(),
                _ => {
                    let Some(addr) = block_address(self.pointer, block, self.cfg.transfer_size)
                    else {
                        self.fail(self.cfg.dialect.address_error);
                        return Reply::Stall;
                    };
                    self.buf[..data.len()].copy_from_slice(data);
                    self.pending = Pending::Data {
                        addr,
                        len: data.len() as u16,
                    };
                }
            }
        } else {
            if self.state == State::DfuIdle {
                // A new download starts at the beginning of the alt.
                self.raw_block = block;
                self.raw_offset = 0;
                self.raw_erased_to = 0;
            }
            if block != self.raw_block {
                // U-Boot: "dfu_write: Wrong sequence number!".
                self.fail(Status::ErrUnknown);
                return Reply::Stall;
            }
            self.raw_block = block.wrapping_add(1);
            let addr = self.layout().start().wrapping_add(self.raw_offset);
            self.raw_offset = self.raw_offset.saturating_add(data.len() as u32);
            self.buf[..data.len()].copy_from_slice(data);
            self.pending = Pending::Raw {
                addr,
                len: data.len() as u16,
            };
        }
        self.state = State::DfuDnloadSync;
        Reply::Ack
    }

    fn upload(&mut self, setup: &SetupPacket, reply: &mut [u8], mem: &mut impl ReadFlash) -> Reply {
        if !matches!(self.state, State::DfuIdle | State::DfuUploadIdle)
            || !self.cfg.descriptor().can_upload()
        {
            return self.stall_error();
        }
        let want = setup.length as usize;
        if want > self.cfg.transfer_size as usize {
            return self.stall_error();
        }
        if self.cfg.dialect.dfuse {
            match setup.value {
                0 => {
                    let cmds = self.cfg.dialect.get_commands;
                    let n = cmds.len().min(want);
                    reply[..n].copy_from_slice(&cmds[..n]);
                    // ST's stack (usbd_dfu.c) is idle again after a full
                    // Get Commands (wLength > 3): a query, not an upload.
                    self.state = if want > 3 {
                        State::DfuIdle
                    } else {
                        State::DfuUploadIdle
                    };
                    Reply::In(n)
                }
                1 => self.stall_error(),
                block => {
                    let addr = block_address(self.pointer, block, self.cfg.transfer_size);
                    let ok = addr.filter(|&a| self.layout().is_readable(a, want as u32));
                    let Some(addr) = ok else {
                        self.fail(self.cfg.dialect.address_error);
                        return Reply::Stall;
                    };
                    if mem.read(addr, &mut reply[..want]).is_err() {
                        self.fail(Status::ErrUnknown);
                        return Reply::Stall;
                    }
                    self.state = State::DfuUploadIdle;
                    Reply::In(want)
                }
            }
        } else {
            if self.state == State::DfuIdle {
                self.raw_offset = 0;
            }
            let layout = self.layout();
            let size = u32::try_from(layout.total_size()).unwrap_or(u32::MAX);
            let addr = layout.start().wrapping_add(self.raw_offset);
            let n = (size.saturating_sub(self.raw_offset) as usize).min(want);
            if n > 0 && !layout.is_readable(addr, n as u32) {
                self.fail(self.cfg.dialect.address_error);
                return Reply::Stall;
            }
            if mem.read(addr, &mut reply[..n]).is_err() {
                self.fail(Status::ErrUnknown);
                return Reply::Stall;
            }
            self.raw_offset += n as u32;
            // A short frame ends the upload.
            self.state = if n < want {
                State::DfuIdle
            } else {
                State::DfuUploadIdle
            };
            Reply::In(n)
        }
    }

    fn get_status(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        reply: &mut [u8],
        mem: &mut impl ReadFlash,
    ) -> Reply {
        if (setup.length as usize) < GetStatus::LEN {
            return Reply::Stall;
        }
        let mut poll = Duration::ZERO;
        let mut after: Option<State> = None;
        match self.state {
            State::DfuDnloadSync => {
                let pending = core::mem::replace(&mut self.pending, Pending::None);
                self.state = State::DfuDnbusy;
                self.execute(pending);
                self.pump(now, mem);
            }
            State::DfuDnbusy if !self.is_busy() => {
                self.state = State::DfuDnloadIdle;
            }
            State::DfuManifestSync => {
                self.state = State::DfuManifest;
                poll = self.cfg.timing.manifest;
                if self.cfg.dialect.dfuse {
                    // DfuSe leave: report dfuMANIFEST, then jump (AN2662).
                    after = Some(State::DfuManifestWaitReset);
                    self.push_event(DeviceEvent::Leave {
                        address: self.pointer,
                    });
                }
            }
            State::DfuManifest => {
                self.push_event(DeviceEvent::Manifested);
                if self.cfg.dialect.manifestation_tolerant {
                    self.state = State::DfuIdle;
                } else {
                    self.state = State::DfuManifestWaitReset;
                }
            }
            _ => {}
        }
        if self.state == State::DfuDnbusy {
            poll = self.remaining_work(now).max(self.cfg.timing.min_poll);
        }
        let ms = u32::try_from(poll.as_micros().div_ceil(1000)).unwrap_or(u32::MAX);
        let s = GetStatus {
            status: self.status,
            poll_timeout_ms: ms.min(MAX_POLL_TIMEOUT_MS),
            state: self.state,
            string_index: 0,
        };
        reply[..GetStatus::LEN].copy_from_slice(&s.to_bytes());
        if let Some(a) = after {
            self.state = a;
        }
        Reply::In(GetStatus::LEN)
    }

    /// Validates what dfuDNLOAD-SYNC held and queues its flash work.
    fn execute(&mut self, pending: Pending) {
        let addr_err = self.cfg.dialect.address_error;
        match pending {
            Pending::None => {}
            Pending::Command(Command::SetAddress(a)) => {
                if self.layout().segment_at(a).is_none() {
                    self.fail(addr_err);
                } else {
                    self.pointer = a;
                }
            }
            Pending::Command(Command::Erase(a)) => match self.layout().sector_at(a) {
                Some(s) if s.mem.erasable() => {
                    let _ = self.jobs.push_back(Job::Erase {
                        next: s.start,
                        end: s.end(),
                    });
                }
                _ => self.fail(Status::ErrTarget),
            },
            Pending::Command(Command::MassErase) | Pending::Command(Command::ReadUnprotect) => {
                if !self.layout().segments.iter().any(|s| s.mem.erasable()) {
                    self.fail(Status::ErrTarget);
                    return;
                }
                let _ = self.jobs.push_back(Job::MassErase { seg: 0 });
                if pending == Pending::Command(Command::ReadUnprotect) {
                    self.reset_after_work = true;
                }
            }
            Pending::Data { addr, len } => {
                if self
                    .layout()
                    .first_denied(addr, len.into(), Access::Write)
                    .is_some()
                {
                    self.fail(addr_err);
                } else {
                    let _ = self.jobs.push_back(Job::Program { addr, len });
                }
            }
            Pending::Raw { addr, len } => {
                if self
                    .layout()
                    .first_denied(addr, len.into(), Access::Write)
                    .is_some()
                {
                    self.fail(self.cfg.dialect.address_error);
                    return;
                }
                let end = u64::from(addr) + u64::from(len);
                if end > self.raw_erased_to {
                    // Erase the sectors this block reaches into that are not
                    // erased yet; the previous block erased up to a sector end.
                    let from = self.raw_erased_to.max(u64::from(addr)) as u32;
                    let _ = self.jobs.push_back(Job::Erase { next: from, end });
                    self.raw_erased_to = self
                        .layout()
                        .sector_at((end - 1) as u32)
                        .map_or(end, |s| s.end());
                }
                let _ = self.jobs.push_back(Job::Program { addr, len });
            }
        }
    }

    /// Expected time for the queued and in-flight work.
    fn remaining_work(&self, now: Instant) -> Duration {
        let t = self.cfg.timing;
        let per_kib = |d: Duration, bytes: u64| {
            Duration::from_micros((d.as_micros() as u64).saturating_mul(bytes).div_ceil(1024))
        };
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
                        .layout()
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
    fn pump(&mut self, now: Instant, mem: &mut impl ReadFlash) {
        if let Some(f) = self.in_flight {
            if now >= f.deadline {
                self.in_flight = None;
                self.stuck = true;
                self.fault = Some(FlashFault::Timeout { addr: f.addr });
                self.fail(match f.kind {
                    OpKind::Erase => Status::ErrErase,
                    OpKind::Program => Status::ErrProg,
                });
            }
        }
        while self.in_flight.is_none() {
            let Some(job) = self.jobs.pop_front() else {
                break;
            };
            match job {
                Job::MassErase { seg } => {
                    let next = self
                        .layout()
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
                    let Some(s) = self.layout().sector_at(next) else {
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
                        .layout()
                        .sector_at(addr)
                        .is_some_and(|s| s.mem.erasable());
                    if needs_blank {
                        if let Some(bad) = first_non_blank(mem, addr, len.into()) {
                            self.fault = Some(FlashFault::NotErased { addr: bad });
                            self.fail(Status::ErrCheckErased);
                            return;
                        }
                    }
                    self.start(now, OpKind::Program, addr, len.into());
                }
            }
        }
        if self.reset_after_work && !self.is_busy() {
            // Read Unprotect: the flash is erased, the device resets itself.
            self.reset_after_work = false;
            self.push_event(DeviceEvent::UsbReset);
        }
    }

    fn start(&mut self, now: Instant, kind: OpKind, addr: u32, len: u32) {
        let t = self.cfg.timing;
        let per = match kind {
            OpKind::Erase => t.erase_per_kib,
            OpKind::Program => t.program_per_kib,
        };
        let us = (per.as_micros() as u64)
            .saturating_mul(len.into())
            .div_ceil(1024);
        self.in_flight = Some(InFlight {
            kind,
            addr,
            len,
            expected_done: now + Duration::from_micros(us),
            deadline: now + self.cfg.flash_timeout,
            handed_out: false,
        });
    }
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

/// Queues a device event. Events are rare and consumed after every request;
/// on overflow the oldest is dropped, keeping the newest, which describes
/// the current situation.
pub(crate) fn push_newest(events: &mut Deque<DeviceEvent, 8>, e: DeviceEvent) {
    if events.is_full() {
        events.pop_front();
    }
    let _ = events.push_back(e);
}

#[cfg(test)]
mod tests;
