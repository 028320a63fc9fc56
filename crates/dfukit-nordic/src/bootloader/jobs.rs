//! The job queue: every request, write, flash operation and boot step is a
//! [`Job`] in one FIFO, run in order, so that an answer is sent only once the
//! work queued before it is done.

use super::rx::rx_bytes;
use super::{Answers, Bootloader, BootloaderEvent, BootloaderFault, Busy, Current, ResetReason};
use super::{QUEUE_LEN, RESERVED_JOBS};
use crate::proto::{Opcode, Response, SecureDfuRequest};
use dfukit_core::crc::crc32;
use dfukit_core::{Instant, ReadFlash};
use heapless::Deque;

/// Where the bytes of a program job come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
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
pub(super) enum Step {
    /// Process a request other than WRITE.
    SecureDfuRequest(ShortFrame),
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
    /// A new bootloader is in place: ask for the reset that starts it.
    NewBootloader,
}

/// A request other than WRITE, kept as its frame (at most six bytes) until
/// its turn comes, then parsed by the same [`Request::parse`] as on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ShortFrame {
    bytes: [u8; 8],
    len: u8,
}

impl ShortFrame {
    pub(super) fn new(frame: &[u8]) -> Self {
        // Bytes beyond the request's fields are ignored by the parser.
        let len = frame.len().min(8);
        let mut bytes = [0; 8];
        bytes[..len].copy_from_slice(&frame[..len]);
        ShortFrame {
            bytes,
            len: len as u8,
        }
    }

    pub(super) fn request(&self) -> SecureDfuRequest<'_> {
        SecureDfuRequest::parse(&self.bytes[..self.len as usize]).expect("parsed on arrival")
    }
}

/// One entry of the queue: a flash operation, or a step that runs once
/// everything before it has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    Erase { addr: u32, len: u32 },
    Program { addr: u32, len: u32, src: Source },
    Step(Step),
}

/// The operation currently handed to the flash.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) job: Job,
    pub(super) deadline: Instant,
    /// [`Bootloader::poll_flash`] gave it out: only its completion or its
    /// deadline is awaited now.
    pub(super) handed_out: bool,
}

impl Bootloader {
    pub(super) fn push(&mut self, job: Job) {
        // Internal pushes happen only with room reserved by the caller's
        // capacity check; losing one would corrupt the sequence.
        self.jobs.push_back(job).expect("job queue overflow");
    }

    /// Room for `n` more jobs from a request, leaving the reserve.
    pub(super) fn has_room(&self, n: usize) -> bool {
        self.jobs.len() + n + RESERVED_JOBS <= QUEUE_LEN
    }

    pub(super) fn queue_step(&mut self, step: Step) -> Result<(), Busy> {
        if !self.has_room(1) {
            return Err(Busy);
        }
        self.push(Job::Step(step));
        Ok(())
    }

    /// Pushes jobs to the front in the given order (they run next).
    pub(super) fn push_front_all(&mut self, jobs: &[Job]) {
        for job in jobs.iter().rev() {
            self.push_front(*job);
        }
    }

    /// Pushes a job to run next. Steps that expand into jobs draw on the
    /// reserve that requests leave free, so this fits.
    pub(super) fn push_front(&mut self, job: Job) {
        self.jobs.push_front(job).expect("job queue overflow");
    }

    pub(super) fn respond(&mut self, r: Response) {
        // `poll` stops running steps while `out` is full, so this fits.
        let _ = self.out.push_back(r);
    }

    pub(super) fn start(&mut self, job: Job, mem: &mut impl ReadFlash) {
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
                self.set_fault(BootloaderFault::OperationFailed, job);
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

    pub(super) fn on_job_done(&mut self, job: Job) {
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

    pub(super) fn set_fault(&mut self, fault: BootloaderFault, job: Job) {
        let addr = match job {
            Job::Erase { addr, .. } | Job::Program { addr, .. } => addr,
            Job::Step(_) => 0,
        };
        if self.fault.is_none() {
            let _ = self
                .events
                .push_back(BootloaderEvent::BootloaderFault { fault, addr });
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
            if fault == BootloaderFault::OperationFailed {
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

    pub(super) fn release_if_unreferenced(&mut self, buf: u8) {
        let referenced = self
            .jobs
            .iter()
            .any(|j| matches!(j, Job::Program { src: Source::Rx { buf: b, .. }, .. } if *b == buf))
            || matches!(self.stuck, Some(Job::Program { src: Source::Rx { buf: b, .. }, .. }) if b == buf);
        if !referenced {
            self.rx_used[buf as usize] = false;
        }
    }

    pub(super) fn run_step(&mut self, step: Step, mem: &mut impl ReadFlash) {
        match step {
            Step::SecureDfuRequest(r) => self.on_request(r, mem),
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
            Step::NewBootloader => {
                let _ = self
                    .events
                    .push_back(BootloaderEvent::Reset(ResetReason::NewBootloader));
            }
            Step::ResetAfterUpdate => {
                // Only an update whose settings reached flash is complete.
                if self.fault.is_none() {
                    let _ = self
                        .events
                        .push_back(BootloaderEvent::Reset(ResetReason::UpdateComplete));
                }
            }
        }
    }
}
