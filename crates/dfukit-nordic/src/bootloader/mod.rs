//! The bootloader: Secure DFU request handler, boot and activation, sans-IO.
//!
//! [`Bootloader`] takes inputs — a request frame, "the flash operation finished",
//! "time is now T" — and produces outputs: response frames, flash operations
//! to start, events such as "reset me". It never touches hardware.
//!
//! All work goes through one FIFO of jobs (`jobs::Job`). A data write becomes program
//! jobs that hold their receive buffer until the flash reports completion;
//! every other request becomes a job that is processed only when everything
//! queued before it has completed. So an offset or CRC the device reports
//! always describes bytes that are in flash — the property whose absence made
//! the QSPI port in the user report lose 4096 bytes — and a completion that
//! never arrives is caught by a deadline and reported with
//! [`ExtError::FlashCompletionTimeout`] instead of wedging the link.

//!
//! The files follow that flow: `rx` takes writes into the transports'
//! receive pools, `jobs` is the queue and its flash bookkeeping, `requests`
//! answers the other requests, `persist` reads and writes the settings
//! pages, `boot` runs the boot sequence and activation, and `validation`
//! checks init packets and images.

mod boot;
mod config;
mod jobs;
mod persist;
mod requests;
mod rx;
mod validation;

/// The key type init packets are verified with.
pub use p256::ecdsa::VerifyingKey;

pub use boot::image_crc;
pub use config::{
    Answers, Bank1Location, BootloaderConfig, EnterDfu, ExternalBank, HardwareInfo, InternalLayout,
    SoftDevice, MBR_SIZE, SD_MAGIC,
};
pub use persist::{load_settings, SettingsSource};
pub use rx::{RxPool, RxTransport, BLE_RX, SERIAL_RX};

use crate::init_packet::FwType;
use crate::proto::{ExtError, ParseError, Response, ResultCode, SecureDfuRequest};
use crate::settings::{Settings, SETTINGS_LEN};
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadFlash};
use heapless::Deque;
use jobs::{InFlight, Job, ShortFrame, Source, Step};
use rx::{rx_bytes, RX_BYTES, RX_SLOTS};

/// Largest data object (`DATA_OBJECT_MAX_SIZE` on nRF52).
pub const DATA_OBJECT_MAX_SIZE: u32 = 4096;
/// Largest init packet (`INIT_COMMAND_MAX_SIZE`, SDK 17.1).
pub const INIT_COMMAND_MAX_SIZE: u32 = 512;
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
pub enum BootloaderEvent {
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
    /// Activation copied a new SoftDevice behind the MBR and it verified.
    SoftDeviceActivated {
        /// Its firmware id, read from its information structure.
        fwid: u16,
        /// Its size.
        size: u32,
    },
    /// Activation copied a new bootloader into its region and it verified;
    /// a [`ResetReason::NewBootloader`] reset follows.
    BootloaderActivated {
        /// Its version, from the init packet.
        version: u32,
        /// Its size.
        size: u32,
    },
    /// A SoftDevice or bootloader copy did not verify; the update is dropped.
    ActivationFailed {
        /// Where the copy went.
        addr: u32,
    },
    /// A flash operation failed or its completion never arrived.
    BootloaderFault {
        /// Which.
        fault: BootloaderFault,
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
    /// A new bootloader was copied into place: start it (the MBR resets
    /// after its bootloader copy).
    NewBootloader,
}

/// A flash path failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootloaderFault {
    /// A completion did not arrive within `flash_timeout`.
    CompletionTimeout,
    /// The flash reported a failed operation.
    OperationFailed,
}

impl BootloaderFault {
    fn ext(self) -> ExtError {
        match self {
            BootloaderFault::CompletionTimeout => ExtError::FlashCompletionTimeout,
            BootloaderFault::OperationFailed => ExtError::FlashOperationFailed,
        }
    }
}

/// The request could not be taken now; offer it again after a flash
/// completion. Serial transports hold the frame (flow control); BLE drops it,
/// as the SDK does when its buffer pool is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

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
pub struct Bootloader {
    cfg: BootloaderConfig,
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
    fault: Option<BootloaderFault>,
    out: Deque<Response, OUT_LEN>,
    events: Deque<BootloaderEvent, 8>,
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
    /// What the accepted image is, and its SoftDevice part's size.
    image_kind: FwType,
    image_sd_size: u32,
    /// The SoftDevice installed now: read from flash at boot, so that an
    /// update's `sd_req` is checked against the one a SoftDevice update
    /// left.
    softdevice: Option<SoftDevice>,
    /// Bank-1 image range `[from, to)` erased ahead, when the previous
    /// object was executed, and not written since. CREATE of an object
    /// inside it needs no erase, so the erase ran while the host was busy
    /// with EXECUTE and CREATE instead of while its writes arrive (over BLE
    /// writes that find every receive buffer waiting for the flash are
    /// lost). RAM only: after a reset everything is erased at CREATE again.
    erased_ahead: Option<(u32, u32)>,
}

impl Bootloader {
    /// A device that has just been reset. The first [`Bootloader::poll`] runs the
    /// boot sequence.
    pub fn new(cfg: BootloaderConfig) -> Self {
        let mut t = Bootloader {
            softdevice: cfg.softdevice,
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
            image_kind: FwType::Application,
            image_sd_size: 0,
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
    pub fn config(&self) -> &BootloaderConfig {
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

    /// The SoftDevice installed now (known after boot).
    pub fn softdevice(&self) -> Option<SoftDevice> {
        self.softdevice
    }

    /// The latched flash fault, if any.
    pub fn fault(&self) -> Option<BootloaderFault> {
        self.fault
    }

    /// Takes one request frame (opcode first) that came in on `transport`.
    pub fn handle_request(
        &mut self,
        now: Instant,
        transport: RxTransport,
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
        let req = match SecureDfuRequest::parse(frame) {
            Ok(r) => r,
            Err(ParseError::Empty) => return Ok(()),
            Err(ParseError::UnknownOpcode(op)) => {
                // Echo the opcode byte we got, as the SDK does.
                return self.queue_step(Step::Respond(Response::unknown_opcode(op)));
            }
            Err(ParseError::TooShort { opcode, .. }) => {
                let mut resp = Response::unknown_opcode(opcode);
                resp.result = ResultCode::InvalidParameter;
                return self.queue_step(Step::Respond(resp));
            }
        };
        match req {
            SecureDfuRequest::Write(data) => self.on_write(transport, data),
            _ => self.queue_step(Step::SecureDfuRequest(ShortFrame::new(frame))),
        }
    }

    /// Reports that the operation last handed out by [`Bootloader::poll_flash`]
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
            FlashOutcome::Failed => self.set_fault(BootloaderFault::OperationFailed, f.job),
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
                self.set_fault(BootloaderFault::CompletionTimeout, f.job);
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
                .push_back(BootloaderEvent::Reset(ResetReason::Inactivity));
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
                Job::Step(
                    Step::SecureDfuRequest(_)
                        | Step::Write { .. }
                        | Step::Respond(_)
                        | Step::PrnCrc
                )
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
    /// [`Bootloader::flash_complete`].
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
    pub fn poll_event(&mut self) -> Option<BootloaderEvent> {
        self.events.pop_front()
    }

    /// When the device next needs [`Bootloader::poll`] without other input.
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
}

#[cfg(test)]
mod tests;
