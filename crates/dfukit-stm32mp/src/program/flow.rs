//! A run: reaching the board at each enumeration, identifying it, and the
//! bookkeeping shared by the stages (events, stage times, what was
//! written, the context of a failure).

use super::error::{FailureKind, ProgramError};
use super::events::ProgramEvent;
use super::options::ProgramOptions;
use super::stage::{alt_list, identify, ProgramStage};
use super::summary::{Summary, Written};
use super::transport::{DeviceReport, GuardedTransport};
use crate::connect::{ConnectError, Connector};
use crate::layout::{Layout, Partition};
use crate::phase::{self, PhaseRecord, ID_CMD};
use dfukit_core::Clock;
use dfukit_usbdfu::host::probe::probe;
use dfukit_usbdfu::host::{DfuEvent as HostEvent, DfuHost, DfuHostError, TransferError};
use std::time::Duration;

/// Pause between two attempts to reach a device that is starting up or
/// re-enumerating. Long enough that a device which stalls at once does not
/// turn the wait into a busy loop, short enough to add little to a hand-off
/// that takes a few seconds.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How many bytes of the 0xF1 phase record to read: the record is 9 bytes
/// plus an error message, and U-Boot's virtual alt is 512 bytes long.
const PHASE_RECORD_MAX: usize = 512;

/// One opened, probed device.
pub(super) struct Dev<'c, C: Connector> {
    pub(super) host: DfuHost<GuardedTransport<'c, C>>,
    pub(super) alts: Vec<(u8, String)>,
}

impl<'c, C: Connector> Dev<'c, C> {
    /// The transport wrapper under the DFU host.
    pub(super) fn guard(&mut self) -> &mut GuardedTransport<'c, C> {
        self.host.transport()
    }

    /// The run's time.
    pub(super) fn now(&mut self) -> Duration {
        self.guard().elapsed()
    }

    /// Waits [`RETRY_PAUSE`] (bounded by the deadline) before trying again.
    pub(super) fn pause(&mut self) {
        self.guard().sleep(RETRY_PAUSE);
    }

    /// The alternate setting carrying layout Id `id`.
    pub(super) fn alt(&self, id: u8) -> Option<u8> {
        phase::find_alt(self.alts.iter().map(|(n, s)| (*n, s.as_str())), id)
    }
}

/// How a wait for the next enumeration ends when the device does not come.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lost {
    /// TF-A never answered after the ROM code handed over to it.
    TfaSilent,
    /// U-Boot did not enumerate after a DETACH: TF-A's (`after_layout`
    /// false) or the one after the flashlayout.
    UbootNoReconnect { after_layout: bool },
}

/// Waiting for the device to enumerate as `expect`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    pub(super) expect: ProgramStage,
    /// The stage whose enumeration may still be present for a moment.
    pub(super) left: ProgramStage,
    /// When the wait started (what a failure reports as waited).
    pub(super) started: Duration,
    /// When the wait gives up.
    pub(super) deadline: Duration,
    /// The failure if it does.
    pub(super) lost: Lost,
}

/// What serving one enumeration led to.
enum Next {
    /// The device was not ready (still re-enumerating): reach it again.
    Retry,
    /// The stage is done: wait for the board's next enumeration.
    Wait(Wait),
    /// The board is programmed.
    Done,
}

/// The state of one run.
pub(super) struct Run<'a> {
    pub(super) layout: &'a Layout,
    pub(super) layout_bytes: &'a [u8],
    pub(super) opts: &'a ProgramOptions,
    events: &'a mut dyn FnMut(ProgramEvent),
    /// The device's last report, kept here between two enumerations (while
    /// a device is open, its transport wrapper holds it).
    report: Option<DeviceReport>,
    start: Duration,
    /// The stage in progress and when it started.
    current: Option<(ProgramStage, Duration)>,
    stages: Vec<(ProgramStage, Duration)>,
    pub(super) written: Vec<Written>,
    pub(super) partition: Option<(u8, String)>,
    /// The last failed attempt while waiting for a device.
    pub(super) last_error: Option<String>,
}

/// Programs the board behind `conn` with `layout` (loaded and checked:
/// binaries resolved and present), sending `layout_bytes` (the TSV file) to
/// U-Boot. Starts at whatever stage the board is in, reports progress to
/// `events`, and returns what was written, or why it failed.
#[allow(
    clippy::result_large_err,
    reason = "returned once per run of seconds to minutes; callers match on the kind, which a box would only get in the way of"
)]
pub fn program<C: Connector>(
    conn: &mut C,
    layout: &Layout,
    layout_bytes: &[u8],
    opts: &ProgramOptions,
    events: &mut dyn FnMut(ProgramEvent),
) -> Result<Summary, ProgramError> {
    let start = conn.elapsed();
    let mut run = Run {
        layout,
        layout_bytes,
        opts,
        events,
        report: None,
        start,
        current: None,
        stages: Vec::new(),
        written: Vec::new(),
        partition: None,
        last_error: None,
    };
    let result = run.drive(conn);
    let now = conn.elapsed();
    match result {
        Ok(()) => {
            run.close(now);
            Ok(Summary {
                written: run.written,
                stages: run.stages,
                total: now.saturating_sub(start),
            })
        }
        Err(kind) => Err(ProgramError {
            stage: run.stage(),
            partition: run.partition.take(),
            last_report: run.report.as_ref().map(DeviceReport::to_string),
            elapsed: now.saturating_sub(run.start),
            kind,
        }),
    }
}

impl<'a> Run<'a> {
    pub(super) fn emit(&mut self, e: ProgramEvent) {
        (self.events)(e);
    }

    /// Ends the stage in progress at `now`.
    fn close(&mut self, now: Duration) {
        if let Some((s, t)) = self.current.take() {
            self.stages.push((s, now.saturating_sub(t)));
        }
    }

    /// Makes `stage` the stage in progress (nothing if it already is).
    pub(super) fn enter(&mut self, stage: ProgramStage, now: Duration) {
        if self.current.map(|(s, _)| s) == Some(stage) {
            return;
        }
        self.close(now);
        self.current = Some((stage, now));
        self.emit(ProgramEvent::StageStarted { stage });
    }

    /// The stage in progress ([`ProgramStage::Rom`] before any).
    pub(super) fn stage(&self) -> ProgramStage {
        self.current.map_or(ProgramStage::Rom, |(s, _)| s)
    }

    /// The failure of a wait that ran out at `now`.
    fn lost(&self, w: &Wait, now: Duration) -> FailureKind {
        let waited = now.saturating_sub(w.started);
        let last_error = self.last_error.clone();
        match w.lost {
            Lost::TfaSilent => FailureKind::TfaSilent { waited, last_error },
            Lost::UbootNoReconnect { after_layout } => FailureKind::UbootNoReconnect {
                waited,
                after_layout,
                last_error,
            },
        }
    }

    /// Reaches the board at each enumeration and runs its stage, until the
    /// board is programmed.
    fn drive<C: Connector>(&mut self, conn: &mut C) -> Result<(), FailureKind> {
        let mut wait: Option<Wait> = None;
        loop {
            let transport = self.reconnect(conn, wait.as_ref())?;
            // TF-A re-enumerating (STM32MP13) is still within the hand-off
            // budget: keep its deadline on the new device.
            let deadline = wait
                .filter(|w| matches!(w.lost, Lost::TfaSilent))
                .map(|w| w.deadline);
            let link = GuardedTransport::new(transport, &*conn, deadline, self.report.take());
            let Some(mut dev) = self.open(link, wait.is_some())? else {
                continue;
            };
            let next = self.serve(&mut dev, wait.as_ref());
            // What the device said last outlives its enumeration.
            self.report = dev.guard().take_report();
            match next? {
                Next::Retry => {}
                Next::Wait(w) => {
                    let now = dev.now();
                    self.enter(w.expect, now);
                    self.last_error = None;
                    self.emit(ProgramEvent::Reconnecting { stage: w.expect });
                    wait = Some(w);
                }
                Next::Done => return Ok(()),
            }
        }
    }

    /// Opens the device: at the start within the connect timeout, while
    /// waiting within what is left of the wait.
    fn reconnect<C: Connector>(
        &self,
        conn: &mut C,
        wait: Option<&Wait>,
    ) -> Result<C::Transport, FailureKind> {
        let timeout = match wait {
            None => self.opts.connect_timeout,
            Some(w) => {
                let now = conn.elapsed();
                if now >= w.deadline {
                    return Err(self.lost(w, now));
                }
                w.deadline - now
            }
        };
        conn.connect(timeout).map_err(|e| match e {
            ConnectError::NotFound { waited } => match wait {
                None => FailureKind::NoDevice { waited },
                Some(w) => self.lost(w, conn.elapsed()),
            },
            ConnectError::Io(message) => FailureKind::Connect { message },
        })
    }

    /// Reads the USB descriptors behind `link`. While `waiting`, a device
    /// that answers them badly is in the middle of re-enumerating: `None`,
    /// to try again until the wait ends.
    fn open<'c, C: Connector>(
        &mut self,
        mut link: GuardedTransport<'c, C>,
        waiting: bool,
    ) -> Result<Option<Dev<'c, C>>, FailureKind> {
        match probe(&mut link) {
            Ok(iface) => Ok(Some(Dev {
                host: DfuHost::new(
                    link,
                    u16::from(iface.interface),
                    iface.functional,
                    self.opts.host_options(),
                ),
                alts: iface.alts,
            })),
            Err(e) => {
                self.report = link.take_report();
                if !waiting {
                    return Err(FailureKind::Protocol {
                        what: format!("reading the USB descriptors failed: {e}"),
                    });
                }
                self.last_error = Some(format!("reading the USB descriptors: {e}"));
                link.sleep(RETRY_PAUSE);
                Ok(None)
            }
        }
    }

    /// Identifies the device by its phase record and, if it is the stage
    /// the run is at (or waits for), runs that stage.
    fn serve<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        wait: Option<&Wait>,
    ) -> Result<Next, FailureKind> {
        let rec = match self.read_phase(dev) {
            Ok(r) => r,
            Err(e) if wait.is_some() => {
                self.last_error = Some(e.to_string());
                dev.pause();
                return Ok(Next::Retry);
            }
            Err(e) => return Err(e),
        };
        let stage = identify(&dev.alts, &rec)?;
        if let Some(w) = wait {
            if !self.arrived(w, stage, &rec)? {
                dev.pause();
                return Ok(Next::Retry);
            }
        }
        dev.guard().deadline = None;
        let now = dev.now();
        self.enter(stage, now);
        self.emit(ProgramEvent::Connected {
            stage,
            alts: dev.alts.len(),
        });
        self.emit(ProgramEvent::PhaseRead {
            stage,
            record: rec.clone(),
        });
        Ok(match stage {
            ProgramStage::Rom => Next::Wait(self.rom(dev)?),
            ProgramStage::TfA => Next::Wait(self.tfa(dev, rec)?),
            ProgramStage::UBootLayout => Next::Wait(self.send_layout(dev, rec)?),
            ProgramStage::UBootProgram => {
                self.partitions(dev, rec)?;
                Next::Done
            }
        })
    }

    /// Whether the device, identified as `stage` with `rec`, is what `w`
    /// waits for: `false` while the enumeration `w` left is still there,
    /// an error for anything else before the stage expected.
    fn arrived(
        &mut self,
        w: &Wait,
        stage: ProgramStage,
        rec: &PhaseRecord,
    ) -> Result<bool, FailureKind> {
        // An error record ends the wait whatever enumeration serves it:
        // U-Boot resets after reporting, so it will not come back as the
        // stage expected.
        if let Some(message) = rec.error_message() {
            return Err(FailureKind::DeviceReported {
                message,
                transfer: None,
            });
        }
        if stage >= w.expect {
            return Ok(true);
        }
        if stage == w.left {
            // The old enumeration has not gone yet (or the ROM code still
            // answers during the hand-off).
            self.last_error = Some(format!("the device still answers as {} ({rec})", w.left));
            return Ok(false);
        }
        Err(self.unexpected(rec, w.expect))
    }

    /// The error for a phase record that is not the stage expected.
    pub(super) fn unexpected(&self, rec: &PhaseRecord, expected: ProgramStage) -> FailureKind {
        if let Some(message) = rec.error_message() {
            return FailureKind::DeviceReported {
                message,
                transfer: None,
            };
        }
        let expected = match expected {
            ProgramStage::Rom => "0x01 (the ROM code asks for the FSBL)",
            ProgramStage::TfA => "0x03 (TF-A asks for the FIP)",
            ProgramStage::UBootLayout => "0x00 (U-Boot asks for the flashlayout)",
            ProgramStage::UBootProgram => "a partition of the layout (U-Boot programming)",
        };
        FailureKind::UnexpectedPhase {
            phase: rec.phase,
            expected: expected.into(),
        }
    }

    /// Reads the phase record of 0xF1 (without reporting it as an event;
    /// it becomes the device's last report).
    pub(super) fn read_phase<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
    ) -> Result<PhaseRecord, FailureKind> {
        let alt = dev.alt(ID_CMD).ok_or_else(|| FailureKind::Protocol {
            what: format!(
                "the device offers no alternate setting for the virtual partition 0xF1 (alts: {})",
                alt_list(&dev.alts)
            ),
        })?;
        let transfer = |source| FailureKind::Transfer { source };
        dev.host.set_alt(alt).map_err(transfer)?;
        let bytes = dev
            .host
            .upload(Some(PHASE_RECORD_MAX), &mut |_| {})
            .map_err(transfer)?;
        let rec = PhaseRecord::decode(&bytes).map_err(|e| FailureKind::Protocol {
            what: format!("reading the phase record of 0xF1: {e}"),
        })?;
        dev.guard().record_phase(rec.clone());
        Ok(rec)
    }

    /// Reads and reports the phase record.
    pub(super) fn phase<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
    ) -> Result<PhaseRecord, FailureKind> {
        let rec = self.read_phase(dev)?;
        let stage = self.stage();
        self.emit(ProgramEvent::PhaseRead {
            stage,
            record: rec.clone(),
        });
        Ok(rec)
    }

    /// The alt carrying `id`, or a protocol error naming the row.
    pub(super) fn alt_for<C: Connector>(
        dev: &Dev<'_, C>,
        row: &Partition,
    ) -> Result<u8, FailureKind> {
        dev.alt(row.id).ok_or_else(|| FailureKind::Protocol {
            what: format!(
                "the device offers no alternate setting for Id {:#04x} ({}) (alts: {})",
                row.id,
                row.name,
                alt_list(&dev.alts)
            ),
        })
    }

    /// The row with Id `id`, its binary read.
    pub(super) fn load(&self, id: u8) -> Result<(&'a Partition, Vec<u8>), FailureKind> {
        let layout = self.layout;
        let row = layout.by_id(id).ok_or(FailureKind::NotInLayout { id })?;
        let path = row
            .binary
            .as_ref()
            .ok_or_else(|| FailureKind::MissingBinary {
                id,
                name: row.name.clone(),
            })?;
        let bytes = std::fs::read(path).map_err(|e| FailureKind::BinaryUnreadable {
            id,
            path: path.clone(),
            error: e.to_string(),
        })?;
        Ok((row, bytes))
    }

    /// Downloads `bytes[offset..]` of `row` to `alt`, reporting progress.
    /// The [`Written`] record is returned whatever the outcome, so a caller
    /// that tolerates the error (the ROM code leaving during manifestation)
    /// can keep it.
    pub(super) fn send<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        row: &Partition,
        alt: u8,
        bytes: &[u8],
        offset: usize,
    ) -> (Written, Result<(), DfuHostError>) {
        let id = row.id;
        let total = bytes.len() as u64;
        let data = &bytes[offset.min(bytes.len())..];
        self.partition = Some((id, row.name.clone()));
        self.emit(ProgramEvent::PartitionStarted {
            id,
            name: row.name.clone(),
            total,
        });
        let t0 = dev.now();
        let result = dev.host.set_alt(alt).and_then(|()| {
            let base = offset as u64;
            let events = &mut *self.events;
            dev.host.download(data, &mut |e| {
                if let HostEvent::Download { done, .. } = e {
                    events(ProgramEvent::Progress {
                        id,
                        done: base + done,
                        total,
                    });
                }
            })
        });
        let elapsed = dev.now().saturating_sub(t0);
        let written = Written {
            id,
            name: row.name.clone(),
            ip: row.ip,
            offset: row.offset,
            bytes: data.len() as u64,
            elapsed,
        };
        (written, result)
    }

    /// Records `w` as written.
    pub(super) fn done(&mut self, w: Written) {
        self.emit(ProgramEvent::PartitionDone {
            id: w.id,
            bytes: w.bytes,
            elapsed: w.elapsed,
        });
        self.written.push(w);
    }

    /// DETACH; a device that leaves the bus or stops answering while doing
    /// so has done what was asked.
    pub(super) fn detach<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<(), FailureKind> {
        match dev.host.detach() {
            Ok(_) => Ok(()),
            Err(DfuHostError::Transfer {
                source: TransferError::Disconnected | TransferError::Timeout | TransferError::Io(_),
                ..
            }) => Ok(()),
            Err(source) => Err(FailureKind::Transfer { source }),
        }
    }

    /// After a failed download to U-Boot: one attempt to read the message
    /// U-Boot put in the phase record. Only one, because U-Boot resets soon
    /// after an error and every further attempt would cost a timeout.
    fn device_message<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Option<String> {
        // abort_to_idle sends CLRSTATUS only in dfuERROR; U-Boot, like ST's
        // stack, treats CLRSTATUS in any other state as an error.
        dev.host.abort_to_idle().ok()?;
        self.phase(dev).ok()?.error_message()
    }

    /// The error for a failed download to U-Boot: the device's message if
    /// it has one, with the transfer error.
    pub(super) fn download_failure<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        source: DfuHostError,
    ) -> FailureKind {
        match self.device_message(dev) {
            Some(message) => FailureKind::DeviceReported {
                message,
                transfer: Some(source),
            },
            None => FailureKind::Transfer { source },
        }
    }
}
