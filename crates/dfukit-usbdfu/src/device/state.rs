//! The DFU 1.1 state table, shared by both device cores.
//!
//! [`Machine`] owns what DFU 1.1 defines: the state and status, the selected
//! alternate setting, the one block buffer, request framing, which request
//! is allowed in which state and what state follows, dfuERROR handling,
//! GETSTATE / CLRSTATUS / ABORT / DETACH, manifestation and the dialect
//! flags. What a block *means*, where it goes and how long the work takes
//! belongs to a [`Backend`]:
//!
//! * [`super::DfuDevice`]: DfuSe (or plain DFU) over flash memory; the work
//!   is erase and program operations whose completions arrive later;
//! * [`super::stream::StreamDevice`]: alternates as byte streams; a
//!   [`super::stream::StreamBackend`] stores each block at once and says how
//!   long the device is then busy for.
//!
//! The two kinds of work end differently, and that is the one rule that
//! follows the back end rather than the dialect ([`Backend::TIMED`]): timed
//! work ends by itself once bwPollTimeout has passed, as in the DFU 1.1 state
//! diagram, and until then the device takes nothing but GETSTATUS; flash
//! work ends with its last completion, which the device notices at the next
//! GETSTATUS, and in between other requests get their usual checks.

use super::{DeviceEvent, Dialect, Reply, MAX_TRANSFER_SIZE};
use crate::wire::{
    DfuRequest, DfuSetup, FunctionalDescriptor, GetStatus, SetupPacket, State, Status,
    MAX_POLL_TIMEOUT_MS, REQUEST_TYPE_STANDARD_INTERFACE_OUT, SET_INTERFACE,
};
use core::time::Duration;
use dfukit_core::Instant;
use heapless::Deque;

/// Why a back end refuses a DNLOAD block or an UPLOAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a valid request here: STALL, dfuERROR/errSTALLEDPKT.
    Stall,
    /// STALL, dfuERROR with this status.
    Error(Status),
}

/// What a block's work left behind at the GETSTATUS that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Still running: dfuDNBUSY until [`Backend::done`].
    Pending,
    /// Finished already: dfuDNLOAD-IDLE.
    Finished,
}

/// How the end of a download is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manifestation {
    /// dfuMANIFEST, reported with this bwPollTimeout, until
    /// [`Backend::done`].
    Busy(Duration),
    /// DfuSe leave (AN2662): report dfuMANIFEST with this bwPollTimeout,
    /// then jump to `address` and wait for a reset.
    Leave {
        /// Where to jump.
        address: u32,
        /// bwPollTimeout of the one status reported.
        poll: Duration,
    },
}

/// Where a DNLOAD or UPLOAD frame belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The selected alternate setting.
    pub(crate) alt: u8,
    /// wValue: the block number.
    pub(crate) block: u16,
    /// The device was in dfuIDLE: the frame starts a transfer.
    pub(crate) starting: bool,
}

/// One UPLOAD frame a back end filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Uploaded {
    /// Bytes in the frame.
    pub(crate) len: usize,
    /// The upload is over: back to dfuIDLE.
    pub(crate) last: bool,
}

/// Something a back end reports from its own work, outside any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The work failed: dfuERROR with this status.
    Fault(Status),
    /// The work asks for a disconnect (Read Unprotect erased the flash).
    Reset,
}

/// What the alternate settings of a device are connected to. Calls come
/// from [`Machine`] only, at the points its state table defines.
pub(crate) trait Backend {
    /// Work is timed (see the module documentation) rather than completed.
    const TIMED: bool;

    /// Number of alternate settings (alts `0..n`).
    fn alt_count(&self) -> u8;
    /// Advances the back end's own work to `now`; called first for every
    /// request.
    fn poll(&mut self, now: Instant, alt: u8) -> Option<Signal>;
    /// Work still addresses the current alt and the block buffer: the alt
    /// may not change, dfuERROR may not be left, and a refused request does
    /// not turn into dfuERROR (which would drop that work).
    fn work_pending(&self) -> bool;
    /// The work of the last block or manifestation is over.
    fn done(&self, now: Instant) -> bool;
    /// bwPollTimeout while the work runs.
    fn remaining(&self, now: Instant, alt: u8) -> Duration;
    /// The block buffer may take a new block.
    fn accepts_block(&self) -> bool;
    /// A zero-length DNLOAD in dfuIDLE starts manifestation (the DfuSe leave
    /// request; dfu-util returns to dfuIDLE before `:leave`). Plain DFU needs
    /// a download first.
    fn leave_from_idle(&self) -> bool;
    /// A DNLOAD block arrived; its data goes to the block buffer if this
    /// accepts it.
    fn dnload(&mut self, at: Frame, data: &[u8]) -> Result<(), Refusal>;
    /// The GETSTATUS after a block: act on it. `data` is the block.
    fn execute(&mut self, now: Instant, alt: u8, data: &[u8]) -> Result<Work, Status>;
    /// The GETSTATUS after the zero-length DNLOAD: manifest.
    fn manifest(&mut self, now: Instant, alt: u8) -> Result<Manifestation, Status>;
    /// An UPLOAD: fill `buf`.
    fn upload(&mut self, at: Frame, buf: &mut [u8]) -> Result<Uploaded, Refusal>;
}

/// Plain DFU 1.1 block numbering and the position in an alt, as U-Boot's
/// `f_dfu` keeps them: a download starts at block 0 from dfuIDLE and block
/// numbers follow each other (wrapping at 65535), any other number is
/// refused with errUNKNOWN ("dfu_write: Wrong sequence number!"); UPLOAD
/// block numbers are not checked, the position advances by what was
/// returned. A transfer from dfuIDLE starts at the alt's beginning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sequence {
    next_block: u16,
    offset: u64,
}

impl Sequence {
    /// Checks DNLOAD block `block` of `len` bytes and returns its offset.
    pub(crate) fn block(&mut self, block: u16, len: usize, starting: bool) -> Result<u64, Refusal> {
        if starting {
            *self = Sequence::default();
        }
        if block != self.next_block {
            return Err(Refusal::Error(Status::ErrUnknown));
        }
        self.next_block = block.wrapping_add(1);
        let at = self.offset;
        self.offset += len as u64;
        Ok(at)
    }

    /// Where the next UPLOAD frame reads from; count it with
    /// [`Sequence::uploaded`].
    pub(crate) fn read_from(&mut self, starting: bool) -> u64 {
        if starting {
            *self = Sequence::default();
        }
        self.offset
    }

    /// `n` bytes were uploaded.
    pub(crate) fn uploaded(&mut self, n: usize) {
        self.offset += n as u64;
    }

    /// Bytes downloaded (or uploaded) since the transfer started.
    pub(crate) fn total(&self) -> u64 {
        self.offset
    }
}

/// Why an alternate setting cannot be selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltError {
    /// The device has no such alt.
    NoSuchAlt(u8),
    /// Flash work for the current alt is still pending.
    Busy,
}

/// What dfuDNLOAD-SYNC / dfuMANIFEST-SYNC hands to the next GETSTATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Nothing.
    None,
    /// A block of this many bytes is in the buffer.
    Block(u16),
    /// The download ended; manifest it.
    Manifest,
}

/// The DFU 1.1 state machine of one DFU interface. See the module
/// documentation.
pub(crate) struct Machine {
    dialect: Dialect,
    interface: u16,
    transfer_size: u16,
    detach_timeout_ms: u16,
    state: State,
    status: Status,
    alt: u8,
    sync: Sync,
    buf: [u8; MAX_TRANSFER_SIZE],
    events: Deque<DeviceEvent, 8>,
}

impl Machine {
    /// dfuIDLE on alt 0. `transfer_size` must be at most
    /// [`MAX_TRANSFER_SIZE`].
    pub(crate) fn new(
        dialect: Dialect,
        interface: u16,
        transfer_size: u16,
        detach_timeout_ms: u16,
    ) -> Self {
        Machine {
            dialect,
            interface,
            transfer_size,
            detach_timeout_ms,
            state: State::DfuIdle,
            status: Status::Ok,
            alt: 0,
            sync: Sync::None,
            buf: [0; MAX_TRANSFER_SIZE],
            events: Deque::new(),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }
    pub(crate) fn status(&self) -> Status {
        self.status
    }
    pub(crate) fn alt(&self) -> u8 {
        self.alt
    }
    /// The block buffer (a program reads its data from here).
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buf
    }
    pub(crate) fn descriptor(&self) -> FunctionalDescriptor {
        self.dialect
            .descriptor(self.transfer_size, self.detach_timeout_ms)
    }
    pub(crate) fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// Queues a device event. Events are rare and consumed after every
    /// request; on overflow the oldest is dropped, keeping the newest, which
    /// describes the current situation.
    pub(crate) fn push_event(&mut self, e: DeviceEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    /// Applies what a back end reported from its own work.
    pub(crate) fn signal(&mut self, s: Option<Signal>) {
        match s {
            Some(Signal::Fault(status)) => self.fail(status),
            Some(Signal::Reset) => self.push_event(DeviceEvent::UsbReset),
            None => {}
        }
    }

    /// Selects alt `alt` and starts over on it (U-Boot and ST reset their
    /// DFU state on SET_INTERFACE); a half-done transfer does not carry
    /// over. The caller checked that the alt exists and is free.
    pub(crate) fn select(&mut self, alt: u8) {
        self.alt = alt;
        self.state = State::DfuIdle;
        self.status = Status::Ok;
        self.sync = Sync::None;
    }

    /// A USB bus reset: back to dfuIDLE on alt 0 (a reset also resets the
    /// configuration, hence the alternate setting).
    pub(crate) fn reset(&mut self) {
        self.select(0);
    }

    /// Enters dfuERROR; a pending block or manifestation is dropped.
    pub(crate) fn fail(&mut self, status: Status) {
        self.state = State::DfuError;
        self.status = status;
        self.sync = Sync::None;
    }

    /// Handles one control request addressed to the DFU interface (class
    /// requests and SET_INTERFACE). `data` is the OUT data stage; IN data is
    /// written to `reply`, which must hold `setup.length` bytes.
    pub(crate) fn control<B: Backend>(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        data: &[u8],
        reply: &mut [u8],
        b: &mut B,
    ) -> Reply {
        let s = b.poll(now, self.alt);
        self.signal(s);
        if B::TIMED {
            self.settle(now, b);
        }
        let busy = B::TIMED && matches!(self.state, State::DfuDnbusy | State::DfuManifest);
        if setup.request_type == REQUEST_TYPE_STANDARD_INTERFACE_OUT
            && setup.request == SET_INTERFACE
        {
            if busy {
                return self.stall_error(b);
            }
            return self.set_interface(setup, b);
        }
        let Some(req) = self.class_request(setup, data, reply) else {
            return Reply::Stall;
        };
        if busy && req != DfuRequest::GetStatus {
            return self.stall_error(b);
        }
        if self.state == State::DfuManifestWaitReset {
            // Only a USB reset gets the device out; it answers nothing else.
            return Reply::Stall;
        }
        match req {
            DfuRequest::GetStatus => self.get_status(now, setup, reply, b),
            DfuRequest::GetState => {
                if setup.length == 0 {
                    return Reply::Stall;
                }
                reply[0] = self.state as u8;
                Reply::In(1)
            }
            DfuRequest::ClrStatus => self.clear_status(b),
            DfuRequest::Abort => self.abort(b),
            DfuRequest::Detach => self.detach(setup.value, b),
            DfuRequest::Dnload => self.dnload(setup, data, b),
            DfuRequest::Upload => self.upload(setup, reply, b),
        }
    }

    /// The DFU class request of `setup`, if it is one this interface must
    /// answer: addressed to it, with all its OUT data, and room for its IN
    /// data in `reply`.
    fn class_request(&self, setup: &SetupPacket, data: &[u8], reply: &[u8]) -> Option<DfuRequest> {
        let req = setup.dfu_request()?;
        let framed = if setup.is_in() {
            reply.len() >= setup.length as usize
        } else {
            data.len() == setup.length as usize
        };
        (setup.index == self.interface && framed).then_some(req)
    }

    /// Timed work that is over ends as the DFU 1.1 state diagram has it
    /// once bwPollTimeout has elapsed: dfuDNBUSY → dfuDNLOAD-SYNC,
    /// dfuMANIFEST → dfuMANIFEST-SYNC (tolerant) or dfuMANIFEST-WAIT-RESET.
    fn settle(&mut self, now: Instant, b: &impl Backend) {
        if !b.done(now) {
            return;
        }
        match self.state {
            State::DfuDnbusy => {
                self.state = State::DfuDnloadSync;
                self.sync = Sync::None;
            }
            State::DfuManifest => {
                self.sync = Sync::None;
                if self.dialect.manifestation_tolerant {
                    self.state = State::DfuManifestSync;
                } else {
                    self.state = State::DfuManifestWaitReset;
                    self.push_event(DeviceEvent::Manifested);
                }
            }
            _ => {}
        }
    }

    fn set_interface(&mut self, setup: &SetupPacket, b: &impl Backend) -> Reply {
        if self.state == State::DfuManifestWaitReset {
            return Reply::Stall;
        }
        let alt = u8::try_from(setup.value)
            .ok()
            .filter(|&a| setup.index == self.interface && a < b.alt_count());
        match alt {
            // Pending work addresses the current alt's memory.
            Some(a) if !b.work_pending() => {
                self.select(a);
                Reply::Ack
            }
            _ => Reply::Stall,
        }
    }

    /// A request that is not valid in this state: STALL and dfuERROR. In
    /// dfuERROR already, the status that explains the error is kept; while
    /// work is pending the device stalls without dropping it.
    fn stall_error(&mut self, b: &impl Backend) -> Reply {
        if !b.work_pending() && self.state != State::DfuError {
            self.fail(Status::ErrStalledPkt);
        }
        Reply::Stall
    }

    fn frame(&self, setup: &SetupPacket, starting: bool) -> Frame {
        Frame {
            alt: self.alt,
            block: setup.value,
            starting,
        }
    }

    fn refuse(&mut self, r: Refusal, b: &impl Backend) -> Reply {
        match r {
            Refusal::Stall => self.stall_error(b),
            Refusal::Error(s) => {
                self.fail(s);
                Reply::Stall
            }
        }
    }

    /// CLRSTATUS leaves dfuERROR for dfuIDLE; outside dfuERROR it is
    /// ignored, or, in a strict dialect (ST, TF-A), is itself an error.
    /// Leaving dfuERROR while work is pending would let a new block
    /// overwrite the buffer it uses: the device stays in dfuERROR until the
    /// work is done.
    fn clear_status(&mut self, b: &impl Backend) -> Reply {
        if self.state == State::DfuError {
            if !b.work_pending() {
                self.state = State::DfuIdle;
                self.status = Status::Ok;
            }
        } else if self.dialect.strict_clrstatus {
            self.state = State::DfuError;
            self.status = Status::ErrUnknown;
        }
        Reply::Ack
    }

    /// ABORT: back to dfuIDLE from an idle state, and in a lenient dialect
    /// also from the sync states, dropping what they held (see
    /// [`Dialect::lenient_abort`]).
    fn abort(&mut self, b: &impl Backend) -> Reply {
        let allowed = match self.state {
            State::DfuIdle | State::DfuDnloadIdle | State::DfuUploadIdle => true,
            State::DfuDnloadSync | State::DfuManifestSync => self.dialect.lenient_abort,
            _ => false,
        };
        if allowed {
            self.state = State::DfuIdle;
            self.sync = Sync::None;
            Reply::Ack
        } else if self.dialect.lenient_abort {
            Reply::Stall
        } else {
            self.stall_error(b)
        }
    }

    /// DETACH: honoured in dfuIDLE, and in a lenient dialect wherever ABORT
    /// is (U-Boot and TF-A leave their DFU loop; ST returns to dfuIDLE and
    /// re-enumerates).
    fn detach(&mut self, timeout_ms: u16, b: &impl Backend) -> Reply {
        let allowed = match self.state {
            State::DfuIdle => true,
            State::DfuDnloadSync
            | State::DfuDnloadIdle
            | State::DfuManifestSync
            | State::DfuUploadIdle => self.dialect.lenient_abort,
            _ => false,
        };
        if !allowed {
            return self.stall_error(b);
        }
        self.state = State::DfuIdle;
        self.sync = Sync::None;
        self.push_event(DeviceEvent::Detach { timeout_ms });
        if self.dialect.will_detach {
            self.push_event(DeviceEvent::UsbReset);
        }
        Reply::Ack
    }

    fn dnload(&mut self, setup: &SetupPacket, data: &[u8], b: &mut impl Backend) -> Reply {
        if !matches!(self.state, State::DfuIdle | State::DfuDnloadIdle) {
            return self.stall_error(b);
        }
        // The block buffer is busy until the back end is done with it.
        if data.len() > self.transfer_size as usize || !b.accepts_block() {
            return self.stall_error(b);
        }
        let starting = self.state == State::DfuIdle;
        if data.is_empty() {
            // End of download; plain DFU needs a download first.
            if starting && !b.leave_from_idle() {
                return self.stall_error(b);
            }
            self.sync = Sync::Manifest;
            self.state = State::DfuManifestSync;
            return Reply::Ack;
        }
        if let Err(r) = b.dnload(self.frame(setup, starting), data) {
            return self.refuse(r, b);
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.sync = Sync::Block(data.len() as u16);
        self.state = State::DfuDnloadSync;
        Reply::Ack
    }

    fn upload(&mut self, setup: &SetupPacket, reply: &mut [u8], b: &mut impl Backend) -> Reply {
        if !matches!(self.state, State::DfuIdle | State::DfuUploadIdle) {
            return self.stall_error(b);
        }
        let want = setup.length as usize;
        if want > self.transfer_size as usize {
            return self.stall_error(b);
        }
        let at = self.frame(setup, self.state == State::DfuIdle);
        match b.upload(at, &mut reply[..want]) {
            Ok(u) => {
                self.state = if u.last {
                    State::DfuIdle
                } else {
                    State::DfuUploadIdle
                };
                Reply::In(u.len)
            }
            Err(r) => self.refuse(r, b),
        }
    }

    /// GETSTATUS: where a downloaded block or the end of a download is
    /// acted on (dfuDNLOAD-SYNC → dfuDNBUSY, dfuMANIFEST-SYNC →
    /// dfuMANIFEST), and where finished work is noticed.
    fn get_status(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        reply: &mut [u8],
        b: &mut impl Backend,
    ) -> Reply {
        if (setup.length as usize) < GetStatus::LEN {
            return Reply::Stall;
        }
        // bwPollTimeout fixed by the transition itself, and the state that
        // follows the reply.
        let mut poll = None;
        let mut after = None;
        match (self.state, self.sync) {
            (State::DfuDnloadSync, Sync::Block(len)) => {
                self.sync = Sync::None;
                match b.execute(now, self.alt, &self.buf[..len as usize]) {
                    Ok(Work::Pending) => self.state = State::DfuDnbusy,
                    Ok(Work::Finished) => self.state = State::DfuDnloadIdle,
                    Err(s) => self.fail(s),
                }
                let s = b.poll(now, self.alt);
                self.signal(s);
            }
            (State::DfuDnloadSync, _) => self.state = State::DfuDnloadIdle,
            (State::DfuDnbusy, _) if b.done(now) => self.state = State::DfuDnloadIdle,
            (State::DfuManifestSync, Sync::Manifest) => {
                self.sync = Sync::None;
                match b.manifest(now, self.alt) {
                    // DFU 1.1 always passes through dfuMANIFEST, even for
                    // instant work (bwPollTimeout 0).
                    Ok(Manifestation::Busy(d)) => {
                        self.state = State::DfuManifest;
                        poll = Some(d);
                    }
                    Ok(Manifestation::Leave { address, poll: d }) => {
                        self.state = State::DfuManifest;
                        poll = Some(d);
                        after = Some(State::DfuManifestWaitReset);
                        self.push_event(DeviceEvent::Leave { address });
                    }
                    Err(s) => self.fail(s),
                }
            }
            (State::DfuManifestSync, _) => {
                self.state = State::DfuIdle;
                self.push_event(DeviceEvent::Manifested);
            }
            (State::DfuManifest, _) if b.done(now) => {
                self.push_event(DeviceEvent::Manifested);
                self.state = if self.dialect.manifestation_tolerant {
                    State::DfuIdle
                } else {
                    State::DfuManifestWaitReset
                };
            }
            _ => {}
        }
        let poll = match self.state {
            State::DfuDnbusy | State::DfuManifest => {
                poll.unwrap_or_else(|| b.remaining(now, self.alt))
            }
            _ => Duration::ZERO,
        };
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
}
