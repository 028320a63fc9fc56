//! The bootloader: Secure DFU request handler, boot and activation, sans-IO.
//!
//! [`Target`] takes inputs — a request frame, "the flash operation finished",
//! "time is now T" — and produces outputs: response frames, flash operations
//! to start, events such as "reset me". It never touches hardware.
//!
//! All work goes through one FIFO of [`Job`]s. A data write becomes program
//! jobs that hold their receive buffer until the flash reports completion;
//! every other request becomes a job that is processed only when everything
//! queued before it has completed. So an offset or CRC the device reports
//! always describes bytes that are in flash — the property whose absence made
//! the QSPI port in the user report lose 4096 bytes — and a completion that
//! never arrives is caught by a deadline and reported with
//! [`ExtError::FlashCompletionTimeout`] instead of wedging the link.

mod config;
mod validation;

/// The key type init packets are verified with.
pub use p256::ecdsa::VerifyingKey;

pub use config::{
    Answers, Bank1Location, EnterDfu, ExternalBank, HardwareInfo, InternalLayout, SoftDevice,
    TargetConfig,
};

use crate::proto::{ExtError, ObjectType, Opcode, Payload, Request, Response, ResultCode};
use crate::settings::{bank_code, Settings, SETTINGS_LEN};
use dfukit_core::crc::crc32;
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadFlash};
use heapless::Deque;

/// Largest data object (`DATA_OBJECT_MAX_SIZE` on nRF52).
pub const DATA_OBJECT_MAX_SIZE: u32 = 4096;
/// Largest init packet (`INIT_COMMAND_MAX_SIZE`, SDK 17.1).
pub const INIT_COMMAND_MAX_SIZE: u32 = 512;
/// The serial transport's receive pool: 4 buffers of 1024 bytes (USB CDC
/// `RX_BUF_SIZE`; the SDK's serial default is 3 buffers, one more lets a
/// write be received while the previous object's last page is programmed).
pub const SERIAL_RX: RxPool = RxPool {
    buffers: 4,
    size: 1024,
};
/// The BLE transport's receive pool, as `nrf_dfu_ble.c` sizes it:
/// `MAX_DFU_BUFFERS = CODE_PAGE_SIZE / MAX_DFU_PKT_LEN + 1` buffers of
/// `MAX_DFU_PKT_LEN = NRF_SDH_BLE_GATT_MAX_MTU_SIZE - 3` bytes; with the
/// SDK's ATT MTU of 247 that is 4096 / 244 + 1 = 17 buffers of 244 bytes,
/// one data object and one write more.
pub const BLE_RX: RxPool = RxPool {
    buffers: 17,
    size: 244,
};
const RX_SLOTS: usize = SERIAL_RX.buffers as usize + BLE_RX.buffers as usize;
const RX_BYTES: usize = SERIAL_RX.bytes() + BLE_RX.bytes();
/// Pages copied between two progress records during activation
/// (`NRF_BL_FW_COPY_PROGRESS_STORE_STEP`).
pub const COPY_STEP_PAGES: u32 = 8;
/// Jobs: a full BLE pool's writes waiting as steps behind an object's
/// erases and the requests around them (with [`Answers::Received`], their
/// page programs and releases queued behind a stalled flash), with the
/// reserve below.
const QUEUE_LEN: usize = 128;
/// Queue slots kept free of requests, so that a step can always expand into
/// the jobs it needs (the largest is an activation step: 16 copy jobs, a
/// 4-job settings write and the next step). Without it a host that floods
/// the queue could make the device overflow it.
const RESERVED_JOBS: usize = 2 * COPY_STEP_PAGES as usize + 4 + 4;
const OUT_LEN: usize = 8;
/// Activation copies through a one-page buffer.
const COPY_BUF: usize = 4096;

/// Something the device asks of its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetEvent {
    /// Reset the device (after a completed update, ABORT, or inactivity).
    Reset(ResetReason),
    /// The boot sequence finished and the bootloader now serves DFU.
    DfuMode {
        /// Whether bank 0 holds an application whose CRC matches.
        app_valid: bool,
    },
    /// The boot sequence finished and jumps to the application.
    StartApp,
    /// Activation copied a new image into bank 0 and it verified.
    Activated {
        /// Size of the new application.
        size: u32,
        /// Its CRC-32.
        crc: u32,
    },
    /// A flash operation failed or its completion never arrived.
    FlashFault {
        /// Which.
        fault: FlashFault,
        /// Address of the operation.
        addr: u32,
    },
}

/// Why the device wants a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The last data object executed and verified: reset to activate.
    UpdateComplete,
    /// The host sent ABORT.
    Abort,
    /// No DFU traffic for the inactivity timeout.
    Inactivity,
}

/// A flash path failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashFault {
    /// A completion did not arrive within `flash_timeout`.
    CompletionTimeout,
    /// The flash reported a failed operation.
    OperationFailed,
}

impl FlashFault {
    fn ext(self) -> ExtError {
        match self {
            FlashFault::CompletionTimeout => ExtError::FlashCompletionTimeout,
            FlashFault::OperationFailed => ExtError::FlashOperationFailed,
        }
    }
}

/// A transport's pool of receive buffers. Each transport of an SDK
/// bootloader allocates its own (`nrf_balloc` pools in `nrf_dfu_serial.c`
/// and `nrf_dfu_ble.c`); a data write holds one buffer until its flash
/// write completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPool {
    /// Number of buffers.
    pub buffers: u8,
    /// Bytes per buffer: the largest write the transport takes.
    pub size: u16,
}

impl RxPool {
    const fn bytes(self) -> usize {
        self.buffers as usize * self.size as usize
    }
}

/// The transport a request came in on: it decides which receive pool a
/// data write is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UART or USB CDC ACM, SLIP framed ([`SERIAL_RX`]).
    Serial,
    /// BLE, the DFU Packet characteristic ([`BLE_RX`]).
    Ble,
}

impl Transport {
    /// The pool this transport receives into.
    pub const fn pool(self) -> RxPool {
        match self {
            Transport::Serial => SERIAL_RX,
            Transport::Ble => BLE_RX,
        }
    }

    /// The pool's slots in the target's buffer table, and the byte offset
    /// of its first buffer in the RX memory.
    const fn slots(self) -> (core::ops::Range<usize>, usize) {
        let serial = SERIAL_RX.buffers as usize;
        match self {
            Transport::Serial => (0..serial, 0),
            Transport::Ble => (serial..RX_SLOTS, SERIAL_RX.bytes()),
        }
    }
}

/// Where receive buffer `slot` starts in the RX memory.
fn rx_at(slot: u8) -> usize {
    let slot = slot as usize;
    let t = if slot < SERIAL_RX.buffers as usize {
        Transport::Serial
    } else {
        Transport::Ble
    };
    let (range, base) = t.slots();
    base + (slot - range.start) * t.pool().size as usize
}

/// `len` bytes from `start` of receive buffer `slot`. A free function, so
/// that callers can borrow other fields of the target mutably meanwhile.
fn rx_bytes(rx: &[u8; RX_BYTES], slot: u8, start: u16, len: usize) -> &[u8] {
    let at = rx_at(slot) + start as usize;
    &rx[at..at + len]
}

/// The programs that store `len` bytes of receive buffer `buf` at `addr`,
/// split at `page` boundaries (a program never crosses one), in address
/// order.
fn page_programs(buf: u8, addr: u32, len: u32, page: u32) -> impl Iterator<Item = Job> {
    let end = addr + len;
    let mut a = addr;
    core::iter::from_fn(move || {
        (a < end).then(|| {
            let n = (page - a % page).min(end - a);
            let job = Job::Program {
                addr: a,
                len: n,
                src: Source::Rx {
                    buf,
                    start: (a - addr) as u16,
                },
            };
            a += n;
            job
        })
    })
}

/// The request could not be taken now; offer it again after a flash
/// completion. Serial transports hold the frame (flow control); BLE drops it,
/// as the SDK does when its buffer pool is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Where the bytes of a program job come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Received data: RX buffer `buf`, bytes `start..start + len`. Counts
    /// towards the transfer's offset and CRC when it completes.
    Rx { buf: u8, start: u16 },
    /// The settings page image, serialized when the job starts.
    Settings,
    /// Memory at this address (activation copies bank 1 to bank 0).
    Copy { from: u32 },
}

/// A step the device takes when every job before it has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Process a request other than WRITE.
    Request(ShortFrame),
    /// Send the CRC response a packet receipt notification calls for.
    PrnCrc,
    /// Send a fixed response.
    Respond(Response),
    /// Send a success that claims the flash work queued before it is
    /// stored; a flash fault in between turns it into the fault's error.
    RespondIfStored(Response),
    /// Process a WRITE held in RX buffer `buf` (`len` bytes).
    Write { buf: u8, len: u16 },
    /// Return an RX buffer to the pool.
    Release(u8),
    /// Boot: read settings, then resume any activation.
    Boot,
    /// Copy the next activation step, or finish activation.
    Activate,
    /// Boot finished: decide between the app and DFU mode.
    BootDone,
    /// The update is complete; ask for a reset once its response is out.
    ResetAfterUpdate,
}

/// A request other than WRITE, kept as its frame (at most six bytes) until
/// its turn comes, then parsed by the same [`Request::parse`] as on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortFrame {
    bytes: [u8; 8],
    len: u8,
}

impl ShortFrame {
    fn new(frame: &[u8]) -> Self {
        // Bytes beyond the request's fields are ignored by the parser.
        let len = frame.len().min(8);
        let mut bytes = [0; 8];
        bytes[..len].copy_from_slice(&frame[..len]);
        ShortFrame {
            bytes,
            len: len as u8,
        }
    }

    fn request(&self) -> Request<'_> {
        Request::parse(&self.bytes[..self.len as usize]).expect("parsed on arrival")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Erase { addr: u32, len: u32 },
    Program { addr: u32, len: u32, src: Source },
    Step(Step),
}

/// The operation currently handed to the flash.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    job: Job,
    deadline: Instant,
    handed_out: bool,
}

/// Which object SELECT or CREATE made current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    None,
    Command,
    Data,
}

/// Mode of the bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reading settings and activating.
    Booting,
    /// Serving DFU requests.
    Dfu,
    /// Handed over to the application; requests are ignored.
    AppStarted,
}

/// The Secure DFU bootloader core. See the module documentation.
pub struct Target {
    cfg: TargetConfig,
    /// RAM copy of the settings page; written to flash at the SDK's points.
    settings: Settings,
    mode: Mode,
    now: Instant,
    last_activity: Instant,
    jobs: Deque<Job, QUEUE_LEN>,
    in_flight: Option<InFlight>,
    /// An operation whose completion never came; its buffer stays reserved
    /// because a DMA may still read it.
    stuck: Option<Job>,
    fault: Option<FlashFault>,
    out: Deque<Response, OUT_LEN>,
    events: Deque<TargetEvent, 8>,
    /// Receive buffers of every transport's pool, back to back.
    rx: [u8; RX_BYTES],
    rx_used: [bool; RX_SLOTS],
    settings_buf: [u8; SETTINGS_LEN],
    copy_buf: [u8; COPY_BUF],
    current: Current,
    prn: u16,
    prn_count: u16,
    /// Bytes of the image queued for flash (received), and the end of the
    /// data object being received.
    recv_offset: u32,
    object_end: u32,
    /// An init command was executed and accepted since boot.
    init_accepted: bool,
    /// Where the accepted image is being written. RAM only during the
    /// transfer: the settings word that records it (`update_start_address`)
    /// shares storage with the transfer CRC, so it is written at the end.
    bank1_addr: u32,
    /// Size and hash of the accepted image.
    image_size: u32,
    image_hash: [u8; 32],
    fw_version: u32,
    /// Bank-1 image range `[from, to)` erased ahead, when the previous
    /// object was executed, and not written since. CREATE of an object
    /// inside it needs no erase, so the erase ran while the host was busy
    /// with EXECUTE and CREATE instead of while its writes arrive (over BLE
    /// writes that find every receive buffer waiting for the flash are
    /// lost). RAM only: after a reset everything is erased at CREATE again.
    erased_ahead: Option<(u32, u32)>,
}

impl Target {
    /// A device that has just been reset. The first [`Target::poll`] runs the
    /// boot sequence.
    pub fn new(cfg: TargetConfig) -> Self {
        let mut t = Target {
            cfg,
            settings: Settings::default(),
            mode: Mode::Booting,
            now: Instant::ZERO,
            last_activity: Instant::ZERO,
            jobs: Deque::new(),
            in_flight: None,
            stuck: None,
            fault: None,
            out: Deque::new(),
            events: Deque::new(),
            rx: [0; RX_BYTES],
            rx_used: [false; RX_SLOTS],
            settings_buf: [0xFF; SETTINGS_LEN],
            copy_buf: [0xFF; COPY_BUF],
            current: Current::None,
            prn: 0,
            prn_count: 0,
            recv_offset: 0,
            object_end: 0,
            init_accepted: false,
            bank1_addr: 0,
            image_size: 0,
            image_hash: [0; 32],
            fw_version: 0,
            erased_ahead: None,
        };
        // A write's expansion (its page programs, release and receipt
        // notification) comes out of the reserve: the largest write must
        // fit in it.
        let page = match t.cfg.bank1 {
            Bank1Location::External(e) => e.program_page,
            Bank1Location::Internal => t.cfg.layout.page_size,
        };
        assert!(
            page > 0 && SERIAL_RX.size as usize / page as usize + 3 <= RESERVED_JOBS,
            "bank 1 program page of {page} B splits a write into more jobs than the queue reserves"
        );
        t.push(Job::Step(Step::Boot));
        t
    }

    /// The configuration.
    pub fn config(&self) -> &TargetConfig {
        &self.cfg
    }

    /// The RAM copy of the settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The latched flash fault, if any.
    pub fn fault(&self) -> Option<FlashFault> {
        self.fault
    }

    /// Takes one request frame (opcode first) that came in on `transport`.
    pub fn handle_request(
        &mut self,
        now: Instant,
        transport: Transport,
        frame: &[u8],
    ) -> Result<(), Busy> {
        self.now = now;
        if self.mode != Mode::Dfu {
            // Booting (activating) or running the app: the DFU transport is
            // not up, so nothing is received, as on the real device. Queueing
            // would answer requests long after the host gave up on them.
            return Ok(());
        }
        self.last_activity = now;
        let req = match Request::parse(frame) {
            Ok(r) => r,
            Err(crate::proto::ParseError::Empty) => return Ok(()),
            Err(crate::proto::ParseError::UnknownOpcode(op)) => {
                // Echo the opcode byte we got, as the SDK does.
                return self.queue_step(Step::Respond(Response::unknown_opcode(op)));
            }
            Err(crate::proto::ParseError::TooShort { opcode, .. }) => {
                let mut resp = Response::unknown_opcode(opcode);
                resp.result = ResultCode::InvalidParameter;
                return self.queue_step(Step::Respond(resp));
            }
        };
        match req {
            Request::Write(data) => self.on_write(transport, data),
            _ => self.queue_step(Step::Request(ShortFrame::new(frame))),
        }
    }

    /// Reports that the operation last handed out by [`Target::poll_flash`]
    /// finished.
    pub fn flash_complete(&mut self, now: Instant, outcome: FlashOutcome) {
        self.now = now;
        let Some(f) = self.in_flight.take() else {
            // A completion after its deadline: the buffer can finally go back.
            if let Some(Job::Program {
                src: Source::Rx { buf, .. },
                ..
            }) = self.stuck.take()
            {
                self.release_if_unreferenced(buf);
            }
            return;
        };
        match outcome {
            FlashOutcome::Done => self.on_job_done(f.job),
            FlashOutcome::Failed => self.set_fault(FlashFault::OperationFailed, f.job),
        }
    }

    /// Advances time and runs every job that can run. Reads flash through
    /// `mem` where a step needs to (settings at boot, hashes, activation).
    pub fn poll(&mut self, now: Instant, mem: &mut impl ReadFlash) {
        self.now = now;
        if self.cfg.answers == Answers::Received {
            self.run_requests_now(mem);
        }
        if let Some(f) = self
            .in_flight
            .filter(|_| self.cfg.answers == Answers::Stored)
        {
            if now >= f.deadline {
                self.in_flight = None;
                self.stuck = Some(f.job);
                self.set_fault(FlashFault::CompletionTimeout, f.job);
            }
        }
        if self.mode == Mode::Dfu
            && self.jobs.is_empty()
            && self.in_flight.is_none()
            && now.saturating_duration_since(self.last_activity) >= self.cfg.inactivity_timeout
        {
            self.last_activity = now;
            let _ = self
                .events
                .push_back(TargetEvent::Reset(ResetReason::Inactivity));
        }
        while self.in_flight.is_none() {
            let Some(job) = self.jobs.pop_front() else {
                break;
            };
            match job {
                Job::Step(step) => self.run_step(step, mem),
                Job::Erase { .. } | Job::Program { .. } => self.start(job, mem),
            }
            if self.out.is_full() {
                break;
            }
        }
    }

    /// [`Answers::Received`]: requests and writes run in arrival order as
    /// soon as they come, as the SDK's scheduler runs them; flash jobs and
    /// the steps tied to them (buffer releases, answers that wait for a
    /// settings write) keep their own order behind the flash.
    fn run_requests_now(&mut self, mem: &mut impl ReadFlash) {
        let runs_now = |j: &Job| {
            matches!(
                j,
                Job::Step(Step::Request(_) | Step::Write { .. } | Step::Respond(_) | Step::PrnCrc)
            )
        };
        while !self.out.is_full() {
            let Some(i) = self.jobs.iter().position(runs_now) else {
                break;
            };
            let mut rest: Deque<Job, QUEUE_LEN> = Deque::new();
            let mut picked = None;
            for (k, j) in core::mem::take(&mut self.jobs).into_iter().enumerate() {
                if k == i {
                    picked = Some(j);
                } else {
                    let _ = rest.push_back(j);
                }
            }
            self.jobs = rest;
            if let Some(Job::Step(step)) = picked {
                self.run_step(step, mem);
            }
        }
    }

    /// The flash operation to start now, if one is waiting. Returns the same
    /// operation only once; its completion is reported with
    /// [`Target::flash_complete`].
    pub fn poll_flash(&mut self) -> Option<FlashOp<'_>> {
        let f = self.in_flight.as_mut().filter(|f| !f.handed_out)?;
        f.handed_out = true;
        Some(match f.job {
            Job::Erase { addr, len } => FlashOp::Erase { addr, len },
            Job::Program { addr, len, src } => {
                let data = match src {
                    Source::Rx { buf, start } => rx_bytes(&self.rx, buf, start, len as usize),
                    Source::Settings => &self.settings_buf[..len as usize],
                    Source::Copy { .. } => &self.copy_buf[..len as usize],
                };
                FlashOp::Program { addr, data }
            }
            Job::Step(_) => unreachable!("steps never go to the flash"),
        })
    }

    /// The next response to send, if any.
    pub fn poll_response(&mut self) -> Option<Response> {
        self.out.pop_front()
    }

    /// The next event for the environment, if any.
    pub fn poll_event(&mut self) -> Option<TargetEvent> {
        self.events.pop_front()
    }

    /// When the device next needs [`Target::poll`] without other input.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.in_flight {
            Some(f) if f.handed_out => Some(f.deadline),
            Some(_) => Some(self.now),
            None if !self.jobs.is_empty() && !self.out.is_full() => Some(self.now),
            None if self.mode == Mode::Dfu => {
                Some(self.last_activity + self.cfg.inactivity_timeout)
            }
            None => None,
        }
    }

    /// True while flash work or steps are queued or running.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some() || !self.jobs.is_empty()
    }

    // ---- queueing ------------------------------------------------------

    fn push(&mut self, job: Job) {
        // Internal pushes happen only with room reserved by the caller's
        // capacity check; losing one would corrupt the sequence.
        self.jobs.push_back(job).expect("job queue overflow");
    }

    /// Room for `n` more jobs from a request, leaving the reserve.
    fn has_room(&self, n: usize) -> bool {
        self.jobs.len() + n + RESERVED_JOBS <= QUEUE_LEN
    }

    fn queue_step(&mut self, step: Step) -> Result<(), Busy> {
        if !self.has_room(1) {
            return Err(Busy);
        }
        self.push(Job::Step(step));
        Ok(())
    }

    /// Pushes jobs to the front in the given order (they run next).
    fn push_front_all(&mut self, jobs: &[Job]) {
        for job in jobs.iter().rev() {
            self.push_front(*job);
        }
    }

    /// Pushes a job to run next. Steps that expand into jobs draw on the
    /// reserve that requests leave free, so this fits.
    fn push_front(&mut self, job: Job) {
        self.jobs.push_front(job).expect("job queue overflow");
    }

    fn respond(&mut self, r: Response) {
        // `poll` stops running steps while `out` is full, so this fits.
        let _ = self.out.push_back(r);
    }

    fn start(&mut self, job: Job, mem: &mut impl ReadFlash) {
        if self.fault.is_some() {
            // Flash work queued behind a fault is dropped; the release steps
            // behind it return its buffers.
            return;
        }
        if let Job::Program {
            len,
            src: Source::Copy { from },
            ..
        } = job
        {
            if mem.read(from, &mut self.copy_buf[..len as usize]).is_err() {
                self.set_fault(FlashFault::OperationFailed, job);
                return;
            }
        }
        if let Job::Program {
            src: Source::Settings,
            ..
        } = job
        {
            self.settings.update_crcs();
            self.settings_buf = self.settings.to_bytes();
        }
        self.in_flight = Some(InFlight {
            job,
            deadline: self.now + self.cfg.flash_timeout,
            handed_out: false,
        });
    }

    fn on_job_done(&mut self, job: Job) {
        if let Job::Program {
            len,
            src: Source::Rx { buf, start },
            ..
        } = job
        {
            if self.cfg.answers == Answers::Received {
                // Counted when handed to the flash (`run_write`).
                return;
            }
            let data = rx_bytes(&self.rx, buf, start, len as usize);
            let p = &mut self.settings.progress;
            p.firmware_image_crc = crc32(p.firmware_image_crc, data);
            p.firmware_image_offset += len;
        }
    }

    fn set_fault(&mut self, fault: FlashFault, job: Job) {
        let addr = match job {
            Job::Erase { addr, .. } | Job::Program { addr, .. } => addr,
            Job::Step(_) => 0,
        };
        if self.fault.is_none() {
            let _ = self
                .events
                .push_back(TargetEvent::FlashFault { fault, addr });
        }
        self.fault = Some(fault);
        // Queued erases are dropped with the rest of the work: whatever was
        // erased ahead is no longer known to be erased.
        self.erased_ahead = None;
        // Undo what was received but not stored: the object must be resent.
        self.recv_offset = self.settings.progress.firmware_image_offset;
        if let Job::Program {
            src: Source::Rx { buf, .. },
            ..
        } = job
        {
            if fault == FlashFault::OperationFailed {
                self.release_if_unreferenced(buf);
            }
        }
        // Flash work queued behind the fault cannot be trusted: drop it and
        // free its buffers. Steps stay, so every request still gets an answer.
        let mut kept: Deque<Job, QUEUE_LEN> = Deque::new();
        while let Some(j) = self.jobs.pop_front() {
            match j {
                Job::Step(_) => {
                    let _ = kept.push_back(j);
                }
                Job::Erase { .. } | Job::Program { .. } => {}
            }
        }
        self.jobs = kept;
    }

    fn release_if_unreferenced(&mut self, buf: u8) {
        let referenced = self
            .jobs
            .iter()
            .any(|j| matches!(j, Job::Program { src: Source::Rx { buf: b, .. }, .. } if *b == buf))
            || matches!(self.stuck, Some(Job::Program { src: Source::Rx { buf: b, .. }, .. }) if b == buf);
        if !referenced {
            self.rx_used[buf as usize] = false;
        }
    }

    // ---- writes --------------------------------------------------------

    /// A WRITE arrives: its bytes go into a receive buffer of its
    /// transport's pool now, and it is processed in order with the requests
    /// around it ([`Step::Write`]). A host may send an object's writes right
    /// behind its CREATE, which runs only when the work before it is done.
    fn on_write(&mut self, transport: Transport, data: &[u8]) -> Result<(), Busy> {
        if data.len() > usize::from(transport.pool().size) {
            return self.queue_step(Step::Respond(Response::error(
                Opcode::ObjectWrite,
                ResultCode::InsufficientResources,
            )));
        }
        let (slots, _) = transport.slots();
        let Some(buf) = slots.clone().find(|&i| !self.rx_used[i]) else {
            return Err(Busy);
        };
        // The step itself; its expansion (page programs, release, receipt
        // notification) comes out of the reserve when it runs.
        if !self.has_room(1) {
            return Err(Busy);
        }
        self.rx_used[buf] = true;
        let at = rx_at(buf as u8);
        self.rx[at..at + data.len()].copy_from_slice(data);
        self.push(Job::Step(Step::Write {
            buf: buf as u8,
            len: data.len() as u16,
        }));
        Ok(())
    }

    /// A WRITE's turn: check it against the object it belongs to, then
    /// queue its page programs (holding its buffer) to run next.
    fn run_write(&mut self, buf: u8, len: u16) {
        let len32 = u32::from(len);
        let reject = match self.current {
            _ if self.mode != Mode::Dfu => Some(ResultCode::OperationNotPermitted),
            Current::None => Some(ResultCode::OperationNotPermitted),
            Current::Command => {
                // The init packet is kept in RAM (the settings copy) until EXECUTE.
                let p = &mut self.settings.progress;
                let end = p.command_offset as usize + usize::from(len);
                if end > p.command_size as usize {
                    Some(ResultCode::InvalidParameter)
                } else {
                    let data = rx_bytes(&self.rx, buf, 0, usize::from(len));
                    self.settings.init_command[p.command_offset as usize..end]
                        .copy_from_slice(data);
                    p.command_crc = crc32(p.command_crc, data);
                    p.command_offset = end as u32;
                    self.done_without_flash(buf);
                    return;
                }
            }
            Current::Data if !self.init_accepted => Some(ResultCode::OperationNotPermitted),
            Current::Data if self.recv_offset + len32 > self.object_end => {
                Some(ResultCode::InvalidParameter)
            }
            Current::Data if !len32.is_multiple_of(self.bank1_write_unit()) => {
                Some(ResultCode::InvalidParameter)
            }
            Current::Data => None,
        };
        if let Some(code) = reject {
            self.rx_used[buf as usize] = false;
            self.respond(Response::error(Opcode::ObjectWrite, code));
            return;
        }
        if self.fault.is_some() {
            // Nothing can be stored. CRC_GET and EXECUTE report the fault, and
            // so does the receipt notification a PRN host is waiting for.
            self.done_without_flash(buf);
            return;
        }
        // Data is going into bank 1: nothing there counts as erased ahead
        // any more (CREATE consumed the range already; this covers a host
        // that writes without a CREATE after EXECUTE).
        self.erased_ahead = None;
        let page = self.bank1_program_page();
        let addr = self.bank1_addr + self.recv_offset;
        self.recv_offset += len32;
        // The page programs, then the buffer's release. `Target::new`
        // checks that the largest write's jobs fit in the reserve.
        let mut jobs: heapless::Vec<Job, RESERVED_JOBS> = heapless::Vec::new();
        for job in page_programs(buf, addr, len32, page).chain([Job::Step(Step::Release(buf))]) {
            jobs.push(job).expect("a write's jobs fit the reserve");
        }
        match self.cfg.answers {
            Answers::Stored => {
                // To run next, with a receipt notification behind them if
                // this write completes a PRN interval: sent once it is stored.
                if let Some(notify) = self.count_prn() {
                    jobs.push(notify).expect("a write's jobs fit the reserve");
                }
                self.push_front_all(&jobs);
            }
            Answers::Received => {
                // The write counts now (offset and CRC, as the SDK's
                // `on_data_obj_write_request` computes them before handing
                // the data to the flash); its jobs go to the back of the
                // flash queue; a receipt notification goes out at once.
                let data = rx_bytes(&self.rx, buf, 0, usize::from(len));
                let p = &mut self.settings.progress;
                p.firmware_image_crc = crc32(p.firmware_image_crc, data);
                p.firmware_image_offset += len32;
                for job in jobs {
                    self.push(job);
                }
                if let Some(notify) = self.count_prn() {
                    self.push_front(notify);
                }
            }
        }
    }

    /// A write that needs no flash (the init packet, or nothing can be
    /// stored): its buffer is free at once; a receipt notification it
    /// completes is sent next.
    fn done_without_flash(&mut self, buf: u8) {
        self.rx_used[buf as usize] = false;
        if let Some(notify) = self.count_prn() {
            self.push_front(notify);
        }
    }

    /// Counts a write towards the packet receipt notification; the
    /// notification step when one is due.
    fn count_prn(&mut self) -> Option<Job> {
        self.prn_count = self.prn_count.wrapping_add(1);
        if self.prn == 0 || self.prn_count < self.prn {
            return None;
        }
        self.prn_count = 0;
        Some(Job::Step(Step::PrnCrc))
    }

    // ---- steps ---------------------------------------------------------

    fn run_step(&mut self, step: Step, mem: &mut impl ReadFlash) {
        match step {
            Step::Request(r) => self.on_request(r, mem),
            Step::PrnCrc => {
                let payload = self.crc_payload();
                let r = match self.fault {
                    Some(f) if self.current == Current::Data => {
                        Response::ext_error(Opcode::CrcGet, f.ext())
                    }
                    _ => Response::ok(Opcode::CrcGet, payload),
                };
                self.respond(r);
            }
            Step::Respond(r) => self.respond(r),
            Step::RespondIfStored(r) => {
                let r = match (self.fault, r.opcode()) {
                    (Some(f), Some(op)) => Response::ext_error(op, f.ext()),
                    _ => r,
                };
                self.respond(r);
            }
            Step::Write { buf, len } => self.run_write(buf, len),
            Step::Release(buf) => self.release_if_unreferenced(buf),
            Step::Boot => self.boot(mem),
            Step::Activate => self.activate_step(mem),
            Step::BootDone => self.boot_done(mem),
            Step::ResetAfterUpdate => {
                // Only an update whose settings reached flash is complete.
                if self.fault.is_none() {
                    let _ = self
                        .events
                        .push_back(TargetEvent::Reset(ResetReason::UpdateComplete));
                }
            }
        }
    }

    fn crc_payload(&self) -> Payload {
        let p = &self.settings.progress;
        match self.current {
            Current::Command => Payload::Crc {
                offset: p.command_offset,
                crc: p.command_crc,
            },
            _ => Payload::Crc {
                offset: p.firmware_image_offset,
                crc: p.firmware_image_crc,
            },
        }
    }

    fn on_request(&mut self, frame: ShortFrame, mem: &mut impl ReadFlash) {
        if self.mode != Mode::Dfu {
            return;
        }
        let resp = match frame.request() {
            Request::Execute => match self.current {
                Current::Command => self.execute_command(),
                Current::Data => self.execute_data(mem),
                Current::None => Some(Response::error(
                    Opcode::ObjectExecute,
                    ResultCode::OperationNotPermitted,
                )),
            },
            Request::ProtocolVersion => Some(Response::ok(
                Opcode::ProtocolVersion,
                Payload::ProtocolVersion(1),
            )),
            Request::Ping(id) => Some(Response::ok(Opcode::Ping, Payload::Ping(id))),
            Request::MtuGet => Some(Response::ok(Opcode::MtuGet, Payload::Mtu(self.cfg.mtu))),
            Request::SetPrn(n) => {
                self.prn = n;
                self.prn_count = 0;
                Some(Response::ok(Opcode::ReceiptNotifSet, Payload::None))
            }
            Request::HardwareVersion => {
                let h = self.cfg.hardware;
                Some(Response::ok(
                    Opcode::HardwareVersion,
                    Payload::HardwareVersion {
                        part: h.part,
                        variant: h.variant,
                        rom_size: h.rom_size,
                        ram_size: h.ram_size,
                        rom_page_size: self.cfg.layout.page_size,
                    },
                ))
            }
            Request::FirmwareVersion(n) => Some(self.firmware_version(n)),
            Request::Abort => {
                let _ = self
                    .events
                    .push_back(TargetEvent::Reset(ResetReason::Abort));
                Some(Response::ok(Opcode::Abort, Payload::None))
            }
            Request::Write(_) => unreachable!("writes are handled on arrival"),
            Request::Select(t) => Some(self.on_select(t)),
            Request::Create { obj_type, size } => Some(self.on_create(obj_type, size)),
            Request::CrcGet => Some(match (self.current, self.fault) {
                (Current::Data, Some(f)) => Response::ext_error(Opcode::CrcGet, f.ext()),
                _ => Response::ok(Opcode::CrcGet, self.crc_payload()),
            }),
        };
        // `None`: the response is a job queued behind the work it waits for.
        if let Some(resp) = resp {
            self.respond(resp);
        }
    }

    fn firmware_version(&self, n: u8) -> Response {
        let s = &self.settings;
        let l = self.cfg.layout;
        let payload = match n {
            0 => Payload::FirmwareVersion {
                image_type: 0,
                version: self.cfg.softdevice.map_or(0, |sd| sd.fwid as u32),
                addr: 0x1000,
                len: l.app_start - 0x1000,
            },
            1 if s.bank_0.bank_code == bank_code::VALID_APP => Payload::FirmwareVersion {
                image_type: 1,
                version: s.app_version,
                addr: l.app_start,
                len: s.bank_0.image_size,
            },
            2 => Payload::FirmwareVersion {
                image_type: 2,
                version: self.cfg.bootloader_version,
                addr: l.app_end + 3 * l.page_size,
                len: l.backup_addr - (l.app_end + 3 * l.page_size),
            },
            _ => Payload::FirmwareVersion {
                image_type: 0xFF,
                version: 0,
                addr: 0,
                len: 0,
            },
        };
        Response::ok(Opcode::FirmwareVersion, payload)
    }

    fn on_select(&mut self, t: u8) -> Response {
        let p = &self.settings.progress;
        match ObjectType::from_u8(t) {
            Some(ObjectType::Command) => {
                self.current = Current::Command;
                Response::ok(
                    Opcode::ObjectSelect,
                    Payload::Select {
                        max_size: INIT_COMMAND_MAX_SIZE,
                        offset: p.command_offset,
                        crc: p.command_crc,
                    },
                )
            }
            Some(ObjectType::Data) => {
                self.current = Current::Data;
                if let Some(f) = self.fault {
                    return Response::ext_error(Opcode::ObjectSelect, f.ext());
                }
                Response::ok(
                    Opcode::ObjectSelect,
                    Payload::Select {
                        max_size: DATA_OBJECT_MAX_SIZE,
                        offset: p.firmware_image_offset,
                        crc: p.firmware_image_crc,
                    },
                )
            }
            None => Response::error(Opcode::ObjectSelect, ResultCode::InvalidObject),
        }
    }

    fn on_create(&mut self, t: u8, size: u32) -> Response {
        const OP: Opcode = Opcode::ObjectCreate;
        match ObjectType::from_u8(t) {
            None => Response::error(OP, ResultCode::InvalidObject),
            Some(ObjectType::Command) => {
                if size == 0 {
                    return Response::error(OP, ResultCode::InvalidParameter);
                }
                if size > INIT_COMMAND_MAX_SIZE {
                    return Response::error(OP, ResultCode::InsufficientResources);
                }
                // A new init packet restarts the whole update.
                self.current = Current::Command;
                self.init_accepted = false;
                self.erased_ahead = None;
                self.fault = self.fault.filter(|f| *f == FlashFault::CompletionTimeout);
                self.settings.progress = Default::default();
                self.settings.progress.command_size = size;
                self.prn_count = 0;
                Response::ok(OP, Payload::None)
            }
            Some(ObjectType::Data) => {
                if !self.init_accepted {
                    return Response::error(OP, ResultCode::OperationNotPermitted);
                }
                if size == 0 {
                    return Response::error(OP, ResultCode::InvalidParameter);
                }
                if size > DATA_OBJECT_MAX_SIZE {
                    return Response::error(OP, ResultCode::InsufficientResources);
                }
                if self.fault == Some(FlashFault::CompletionTimeout) {
                    return Response::ext_error(OP, ExtError::FlashCompletionTimeout);
                }
                // A failed write is retried by re-creating its object.
                self.fault = None;
                let p = &mut self.settings.progress;
                // Anything received after the last executed object is dropped.
                p.firmware_image_offset = p.firmware_image_offset_last;
                p.firmware_image_crc = p.firmware_image_crc_last;
                let start = p.firmware_image_offset_last;
                if start + size > self.image_size {
                    return Response::error(OP, ResultCode::OperationNotPermitted);
                }
                if !size.is_multiple_of(self.cfg.layout.page_size)
                    && start + size != self.image_size
                {
                    return Response::error(OP, ResultCode::InvalidParameter);
                }
                p.data_object_size = size;
                self.current = Current::Data;
                self.recv_offset = start;
                self.object_end = start + size;
                self.prn_count = 0;
                // Erased ahead when the previous object was executed, and
                // untouched since: nothing to erase.
                let ahead = self.erased_ahead.take();
                if ahead.is_some_and(|(from, to)| from == start && to >= start + size) {
                    return Response::ok(OP, Payload::None);
                }
                // Erase the pages the object covers; the response does not wait.
                let erase = self.bank1_erase_size();
                let first = (self.bank1_addr + start) / erase * erase;
                let end = (self.bank1_addr + start + size).div_ceil(erase) * erase;
                // Objects start on page boundaries (all but the last are whole
                // pages), so no page is shared with the previous object.
                let mut a = first;
                let mut jobs: heapless::Vec<Job, 8> = heapless::Vec::new();
                while a < end {
                    // ExternalBank documents erase sizes of 512 B to 4 KiB.
                    jobs.push(Job::Erase {
                        addr: a,
                        len: erase,
                    })
                    .expect("at most 8 erases per 4 KiB object");
                    a += erase;
                }
                self.push_front_all(&jobs);
                Response::ok(OP, Payload::None)
            }
        }
    }

    fn execute_command(&mut self) -> Option<Response> {
        const OP: Opcode = Opcode::ObjectExecute;
        let p = self.settings.progress;
        if p.command_size == 0 || p.command_offset != p.command_size {
            return Some(Response::error(OP, ResultCode::OperationNotPermitted));
        }
        let init = &self.settings.init_command[..p.command_size as usize];
        let accepted = match validation::validate(&self.cfg, &self.settings, init) {
            Ok(a) => a,
            Err(r) => return Some(r.into_response(OP)),
        };
        // Where does the image go?
        let bank1 = match self.prepare_bank1(accepted.size) {
            Ok(addr) => addr,
            Err(r) => return Some(r),
        };
        // A second EXECUTE of the same packet (hosts resuming do it) needs
        // no new settings write. Data progress is never reset here: CREATE
        // of a command object already did that for a new packet.
        let again = self.init_accepted && self.bank1_addr == bank1;
        self.bank1_addr = bank1;
        self.image_size = accepted.size;
        self.image_hash = accepted.hash;
        self.fw_version = accepted.fw_version;
        self.init_accepted = true;
        if again {
            return Some(Response::ok(OP, Payload::None));
        }
        self.settings.bank_1 = Default::default();
        self.settings.write_offset = 0;
        // Persist the accepted init packet (and any bank decision) so that a
        // reset resumes here; answer once both pages are written.
        self.write_settings_then(&[Job::Step(Step::RespondIfStored(Response::ok(
            OP,
            Payload::None,
        )))]);
        // The first data object's pages, erased while the host reads the
        // answer and creates the object. Queued behind the settings write:
        // on a single-bank update the old app is given up in the settings
        // before any of its pages is erased.
        self.erase_ahead(self.settings.progress.firmware_image_offset_last);
        None
    }

    /// Picks bank 1 for an image of `size` bytes, as `nrf_dfu_cache_prepare`
    /// does for internal flash (dual bank, else single bank over the app).
    fn prepare_bank1(&mut self, size: u32) -> Result<u32, Response> {
        let l = self.cfg.layout;
        match self.cfg.bank1 {
            Bank1Location::External(ext) => {
                // The image is copied into bank 0 at activation: it must fit
                // there as well as in the external bank.
                if size > ext.size || size > l.app_area() {
                    return Err(Response::ext_error(
                        Opcode::ObjectExecute,
                        ExtError::InsufficientSpace,
                    ));
                }
                // bank 0 (the running app) is left alone: dual bank.
                self.settings.bank_layout = 0;
                Ok(ext.base)
            }
            Bank1Location::Internal => {
                if size > l.app_area() {
                    return Err(Response::ext_error(
                        Opcode::ObjectExecute,
                        ExtError::InsufficientSpace,
                    ));
                }
                let app_len = if self.settings.bank_0.bank_code == bank_code::VALID_APP {
                    self.settings.bank_0.image_size
                } else {
                    0
                };
                let dual = l.app_start + app_len.div_ceil(l.page_size) * l.page_size;
                if dual + size <= l.app_end {
                    self.settings.bank_layout = 0;
                    Ok(dual)
                } else {
                    // Single bank: the current app is given up for the update.
                    self.settings.bank_layout = 1;
                    self.settings.bank_0 = Default::default();
                    Ok(l.app_start)
                }
            }
        }
    }

    fn execute_data(&mut self, mem: &mut impl ReadFlash) -> Option<Response> {
        const OP: Opcode = Opcode::ObjectExecute;
        if let Some(f) = self.fault {
            return Some(Response::ext_error(OP, f.ext()));
        }
        let p = self.settings.progress;
        // The SDK's check: the bytes received since the last EXECUTE must be
        // the size CREATE announced. EXECUTE zeroes that size, so executing
        // an executed object again passes (hosts resuming at an object
        // boundary do it, Android DFU #252; the last one is validated
        // again), while an object created and left short, its writes
        // dropped, is refused: a host that pipelines EXECUTE behind its
        // writes relies on hearing so.
        let received = p.firmware_image_offset - p.firmware_image_offset_last;
        if !self.init_accepted || received != p.data_object_size || p.firmware_image_offset == 0 {
            return Some(Response::error(OP, ResultCode::OperationNotPermitted));
        }
        if p.firmware_image_offset != self.image_size {
            let sp = &mut self.settings.progress;
            sp.firmware_image_offset_last = sp.firmware_image_offset;
            sp.firmware_image_crc_last = sp.firmware_image_crc;
            sp.data_object_size = 0;
            self.erase_ahead(p.firmware_image_offset);
            if self.cfg.save_progress_in_flash {
                self.write_settings_then(&[Job::Step(Step::RespondIfStored(Response::ok(
                    OP,
                    Payload::None,
                )))]);
                return None;
            }
            return Some(Response::ok(OP, Payload::None));
        }
        // The last object: check what is *in flash* against the init packet.
        let verdict = match validation::hash_image(mem, self.bank1_addr, self.image_size) {
            Ok(h) if h == self.image_hash => None,
            Ok(_) => Some(ExtError::VerificationFailed),
            Err(_) => Some(ExtError::HashFailed),
        };
        if let Some(e) = verdict {
            // What is in bank 1 cannot be trusted: the transfer starts over.
            let sp = &mut self.settings.progress;
            sp.firmware_image_offset = 0;
            sp.firmware_image_crc = 0;
            sp.firmware_image_offset_last = 0;
            sp.firmware_image_crc_last = 0;
            self.recv_offset = 0;
            return Some(Response::ext_error(OP, e));
        }
        let s = &mut self.settings;
        s.bank_1.image_size = self.image_size;
        s.bank_1.image_crc = p.firmware_image_crc;
        s.bank_1.bank_code = bank_code::VALID_APP;
        s.app_version = self.fw_version;
        s.write_offset = 0;
        // From here the union word means "activate from this address".
        s.progress = Default::default();
        s.progress.firmware_image_crc = self.bank1_addr;
        self.write_settings_then(&[
            Job::Step(Step::RespondIfStored(Response::ok(OP, Payload::None))),
            Job::Step(Step::ResetAfterUpdate),
        ]);
        None
    }

    /// Queues, to run next: the settings page, then its backup (as
    /// `nrf_dfu_settings_write_and_backup` does), then `then`. The page image
    /// is serialized when its program starts, so it records everything done
    /// by the jobs before it.
    fn write_settings_then(&mut self, then: &[Job]) {
        let l = self.cfg.layout;
        self.write_pages_then(&[l.settings_addr, l.backup_addr], then);
    }

    /// Writes the settings image to each of `pages` in order, then `then`.
    fn write_pages_then(&mut self, pages: &[u32], then: &[Job]) {
        let l = self.cfg.layout;
        let len = (SETTINGS_LEN as u32).div_ceil(l.write_unit) * l.write_unit;
        let mut jobs: heapless::Vec<Job, 8> = heapless::Vec::new();
        for &addr in pages {
            let _ = jobs.push(Job::Erase {
                addr,
                len: l.page_size,
            });
            let _ = jobs.push(Job::Program {
                addr,
                len,
                src: Source::Settings,
            });
        }
        for j in then {
            jobs.push(*j).expect("settings tail fits");
        }
        self.push_front_all(&jobs);
    }

    // ---- boot and activation ------------------------------------------

    fn boot(&mut self, mem: &mut impl ReadFlash) {
        let (source, settings) = load_settings(&self.cfg.layout, mem);
        self.settings = settings;
        if source == SettingsSource::None {
            self.settings.settings_version = 2;
            self.settings.bootloader_version = self.cfg.bootloader_version;
        }
        let main_ok = source == SettingsSource::Main;
        // A cut during the last backup write leaves main good and the backup
        // torn: repair it now, or the next cut in a main write leaves no copy.
        let backup_ok = {
            let mut page = [0u8; SETTINGS_LEN];
            mem.read(self.cfg.layout.backup_addr, &mut page).is_ok()
                && Settings::from_bytes(&page) == self.settings
        };
        let next = if self.settings.bank_1.bank_code == bank_code::VALID_APP {
            Job::Step(Step::Activate)
        } else {
            Job::Step(Step::BootDone)
        };
        if main_ok && backup_ok {
            self.push_front_all(&[next]);
        } else if main_ok {
            self.write_pages_then(&[self.cfg.layout.backup_addr], &[next]);
        } else {
            // The main page was cut mid-write (restore it from the backup),
            // or neither page was ever written.
            self.write_settings_then(&[next]);
        }
    }

    /// One step of `app_activate`: copy up to [`COPY_STEP_PAGES`] pages from
    /// bank 1 to bank 0, then record the progress (main and backup page), so
    /// that a power cut repeats at most one step.
    fn activate_step(&mut self, mem: &mut impl ReadFlash) {
        let l = self.cfg.layout;
        let size = self.settings.bank_1.image_size;
        let done = self.settings.write_offset;
        let src = self.settings.progress.update_start_address() + done;
        let dst = l.app_start + done;
        if done >= size || src == dst {
            self.finish_activation(mem);
            return;
        }
        let remaining = size - done;
        let mut step = COPY_STEP_PAGES * l.page_size;
        let internal_src = matches!(self.cfg.bank1, Bank1Location::Internal);
        if internal_src {
            // Never overwrite source bytes that are still to be copied.
            step = step.min((src - dst) / l.page_size * l.page_size);
        }
        let step = step.min(remaining.div_ceil(l.page_size) * l.page_size);
        let mut jobs: heapless::Vec<Job, { 2 * COPY_STEP_PAGES as usize }> = heapless::Vec::new();
        let mut off = 0;
        while off < step {
            let n = l.page_size.min(remaining - off.min(remaining));
            let _ = jobs.push(Job::Erase {
                addr: dst + off,
                len: l.page_size,
            });
            if n > 0 {
                let n = n.div_ceil(l.write_unit) * l.write_unit;
                let _ = jobs.push(Job::Program {
                    addr: dst + off,
                    len: n,
                    src: Source::Copy { from: src + off },
                });
            }
            off += l.page_size;
        }
        self.settings.write_offset = (done + step).min(size);
        // The progress record is written *after* the copy it records, so
        // the settings write goes between the copy and the next step.
        self.write_settings_then(&[Job::Step(Step::Activate)]);
        self.push_front_all(&jobs);
    }

    fn finish_activation(&mut self, mem: &mut impl ReadFlash) {
        let l = self.cfg.layout;
        let b1 = self.settings.bank_1;
        let crc = validation::crc_of(mem, l.app_start, b1.image_size).unwrap_or(!b1.image_crc);
        if crc == b1.image_crc {
            self.settings.bank_0.image_size = b1.image_size;
            self.settings.bank_0.image_crc = crc;
            self.settings.bank_0.bank_code = bank_code::VALID_APP;
            let _ = self.events.push_back(TargetEvent::Activated {
                size: b1.image_size,
                crc,
            });
        } else {
            self.settings.bank_0 = Default::default();
        }
        self.settings.bank_1 = Default::default();
        self.settings.write_offset = 0;
        self.settings.progress = Default::default();
        self.write_settings_then(&[Job::Step(Step::BootDone)]);
    }

    fn boot_done(&mut self, mem: &mut impl ReadFlash) {
        let app_valid = self.app_valid(mem);
        if app_valid && self.cfg.enter_dfu == EnterDfu::WhenNoValidApp {
            self.mode = Mode::AppStarted;
            let _ = self.events.push_back(TargetEvent::StartApp);
        } else {
            self.mode = Mode::Dfu;
            self.last_activity = self.now;
            let _ = self.events.push_back(TargetEvent::DfuMode { app_valid });
        }
    }

    /// Whether bank 0 holds an application whose CRC matches the settings
    /// (the SDK's boot validation with the CRC method).
    pub fn app_valid(&self, mem: &mut impl ReadFlash) -> bool {
        let b0 = self.settings.bank_0;
        b0.bank_code == bank_code::VALID_APP
            && image_crc(mem, self.cfg.layout.app_start, b0.image_size) == Ok(b0.image_crc)
    }

    fn bank1_program_page(&self) -> u32 {
        match self.cfg.bank1 {
            Bank1Location::External(e) => e.program_page,
            Bank1Location::Internal => self.cfg.layout.page_size,
        }
    }

    /// Queues the erase of the next data object's pages, from image offset
    /// `start`, behind the work already queued. Objects are whole pages
    /// (all but the last), so these pages hold nothing of the image yet.
    /// Skipped, and CREATE then erases as usual, when the queue lacks room
    /// or when requests the host sent behind EXECUTE (the next CREATE, its
    /// writes) are already queued: erases behind them would wipe those
    /// writes.
    fn erase_ahead(&mut self, start: u32) {
        if self
            .jobs
            .iter()
            .any(|j| matches!(j, Job::Step(Step::Request(_) | Step::Write { .. })))
        {
            return;
        }
        let end = (start + DATA_OBJECT_MAX_SIZE).min(self.image_size);
        let erase = self.bank1_erase_size();
        let first = (self.bank1_addr + start) / erase * erase;
        let last = (self.bank1_addr + end).div_ceil(erase) * erase;
        let n = ((last - first) / erase) as usize;
        if start >= end || first != self.bank1_addr + start || !self.has_room(n) {
            return;
        }
        let mut a = first;
        while a < last {
            self.push(Job::Erase {
                addr: a,
                len: erase,
            });
            a += erase;
        }
        self.erased_ahead = Some((start, end));
    }

    fn bank1_erase_size(&self) -> u32 {
        match self.cfg.bank1 {
            Bank1Location::External(e) => e.erase_size,
            Bank1Location::Internal => self.cfg.layout.page_size,
        }
    }

    fn bank1_write_unit(&self) -> u32 {
        match self.cfg.bank1 {
            Bank1Location::External(_) => 1,
            Bank1Location::Internal => self.cfg.layout.write_unit,
        }
    }
}

/// Which copy of the settings a boot found valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsSource {
    /// The settings page.
    Main,
    /// The backup page: the main page was cut mid-write.
    Backup,
    /// Neither: a blank or corrupted device starts from defaults.
    None,
}

/// Reads the settings as `nrf_dfu_settings_reinit` does: the main page if
/// it is intact ([`Settings::is_intact`]), else the backup page, else defaults.
pub fn load_settings(
    layout: &InternalLayout,
    mem: &mut impl ReadFlash,
) -> (SettingsSource, Settings) {
    let mut page = [0u8; SETTINGS_LEN];
    let mut load = |addr| {
        mem.read(addr, &mut page)
            .ok()
            .map(|_| Settings::from_bytes(&page))
            .filter(Settings::is_intact)
    };
    if let Some(s) = load(layout.settings_addr) {
        return (SettingsSource::Main, s);
    }
    if let Some(s) = load(layout.backup_addr) {
        return (SettingsSource::Backup, s);
    }
    (SettingsSource::None, Settings::default())
}

/// CRC-32 of `len` bytes of flash at `addr`.
pub fn image_crc(
    mem: &mut impl ReadFlash,
    addr: u32,
    len: u32,
) -> Result<u32, dfukit_core::ReadError> {
    validation::crc_of(mem, addr, len)
}

#[cfg(test)]
mod tests;
