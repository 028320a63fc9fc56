//! The work of each stage: the FSBL and the ROM → TF-A hand-off, the FIP,
//! the flashlayout, and the partitions U-Boot asks for until END.

use super::error::{is_gone, FailureKind};
use super::events::ProgramEvent;
use super::flow::{Dev, Lost, Run, Wait};
use super::stage::{alt_list, identify, ProgramStage};
use crate::connect::Connector;
use crate::image;
use crate::layout::IpKind;
use crate::phase::{PhaseRecord, ID_FLASHLAYOUT, ID_FSBL, ID_SSBL, PHASE_END, PHASE_ERROR};
use dfukit_usbdfu::host::DfuHostError;
use dfukit_usbdfu::wire::State;
use std::collections::BTreeSet;
use std::time::Duration;

/// What the ROM → TF-A hand-off on the ROM's enumeration ended with.
enum Handoff {
    /// TF-A answered with this phase record.
    Answered(PhaseRecord),
    /// The device left the bus (TF-A re-enumerates on STM32MP13).
    Gone,
}

impl Run<'_> {
    /// ROM code: the FSBL, then the hand-off to TF-A, and TF-A's stage
    /// when TF-A keeps the enumeration.
    pub(super) fn rom<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<Wait, FailureKind> {
        let handoff_start = self.send_fsbl(dev)?;
        let started = handoff_start.unwrap_or_else(|| dev.now());
        let deadline = started + self.opts.tfa_timeout;
        dev.guard().deadline = Some(deadline);
        self.enter(ProgramStage::TfA, started);
        match self.await_tfa(dev, started, deadline)? {
            Handoff::Answered(rec) => {
                self.emit(ProgramEvent::PhaseRead {
                    stage: ProgramStage::TfA,
                    record: rec.clone(),
                });
                if identify(&dev.alts, &rec)? != ProgramStage::TfA {
                    return Err(self.unexpected(&rec, ProgramStage::TfA));
                }
                dev.guard().deadline = None;
                self.tfa(dev, rec)
            }
            Handoff::Gone => Ok(Wait {
                expect: ProgramStage::TfA,
                left: ProgramStage::Rom,
                started,
                deadline,
                lost: Lost::TfaSilent,
            }),
        }
    }

    /// Downloads the FSBL with the hand-off budget armed. Returns when the
    /// hand-off started (the zero-length DNLOAD), if the download got that
    /// far.
    fn send_fsbl<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
    ) -> Result<Option<Duration>, FailureKind> {
        let (row, bytes) = self.load(ID_FSBL)?;
        let alt = Self::alt_for(dev, row)?;
        dev.guard().arm_handoff(self.opts.tfa_timeout);
        let (mut written, result) = self.send(dev, row, alt, &bytes, 0);
        let handoff_start = dev.guard().handoff_start();
        // The download ends where the hand-off starts: the status polls
        // that TF-A answers late belong to the hand-off, and counting them
        // here would distort the FSBL's throughput.
        if let Some(h) = handoff_start {
            let end = dev.now();
            let t0 = end.saturating_sub(written.elapsed);
            written.elapsed = h.saturating_sub(t0).min(written.elapsed);
        }
        match result {
            Ok(()) => {}
            Err(DfuHostError::Device { status, .. }) => {
                return Err(FailureKind::FsblRejected {
                    status,
                    header_check: image::verify(&bytes).err().map(|e| e.to_string()),
                })
            }
            // Once the zero-length DNLOAD went out the ROM code may already
            // be running TF-A, which answers only when it is ready: a
            // failed status poll belongs to the hand-off, not to the ROM.
            Err(e) if handoff_start.is_some() => {
                // Kept: if TF-A never answers, this is what the ROM code
                // said last (a stall here can be the ROM refusing the image).
                self.last_error = Some(e.to_string());
            }
            Err(source) => return Err(FailureKind::Transfer { source }),
        }
        self.done(written);
        self.partition = None;
        Ok(handoff_start)
    }

    /// Polls the ROM's enumeration until TF-A answers a phase read, the
    /// device leaves the bus, or the hand-off budget runs out. Each attempt
    /// is bounded by the transfer timeout (clipped to the deadline); a
    /// device in dfuERROR is cleared only by the host's abort-to-idle, which
    /// sends CLRSTATUS in that state alone.
    fn await_tfa<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        started: Duration,
        deadline: Duration,
    ) -> Result<Handoff, FailureKind> {
        loop {
            let now = dev.now();
            if now >= deadline {
                return Err(FailureKind::TfaSilent {
                    waited: now.saturating_sub(started),
                    last_error: self.last_error.clone(),
                });
            }
            match dev.host.get_status() {
                Ok(st)
                    if matches!(
                        st.state,
                        State::DfuManifestSync
                            | State::DfuManifest
                            | State::DfuManifestWaitReset
                            | State::DfuDnbusy
                            | State::DfuDnloadSync
                    ) =>
                {
                    // Still the ROM code finishing manifestation.
                    self.last_error = Some(format!("the device stays in {}", st.state.name()));
                }
                Ok(_) => match self.read_phase(dev) {
                    Ok(rec) if rec.phase == ID_FSBL => {
                        self.last_error =
                            Some("the ROM code still asks for the FSBL (phase 0x01)".into());
                    }
                    Ok(rec) => return Ok(Handoff::Answered(rec)),
                    Err(FailureKind::Transfer { source }) if is_gone(&source) => {
                        return Ok(Handoff::Gone)
                    }
                    Err(e) => self.last_error = Some(e.to_string()),
                },
                Err(e) if is_gone(&e) => return Ok(Handoff::Gone),
                Err(e) => self.last_error = Some(e.to_string()),
            }
            dev.pause();
        }
    }

    /// TF-A: the FIP (unless TF-A already has it), then DETACH.
    pub(super) fn tfa<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        rec: PhaseRecord,
    ) -> Result<Wait, FailureKind> {
        if !rec.detach_requested() {
            if rec.phase != ID_SSBL {
                return Err(self.unexpected(&rec, ProgramStage::TfA));
            }
            self.send_fip(dev)?;
        }
        self.detach_to_uboot(dev, false)
    }

    /// Downloads the FIP and checks that TF-A took it (it asks for DETACH).
    fn send_fip<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<(), FailureKind> {
        let (row, bytes) = self.load(ID_SSBL)?;
        let alt = Self::alt_for(dev, row)?;
        let (written, result) = self.send(dev, row, alt, &bytes, 0);
        result.map_err(|source| FailureKind::Transfer { source })?;
        self.done(written);
        let rec = self.phase(dev)?;
        if let Some(message) = rec.error_message() {
            return Err(FailureKind::DeviceReported {
                message,
                transfer: None,
            });
        }
        if !rec.detach_requested() {
            return Err(FailureKind::UnexpectedPhase {
                phase: rec.phase,
                expected: "0x00 with the DETACH request (TF-A accepted the FIP)".into(),
            });
        }
        self.partition = None;
        Ok(())
    }

    /// U-Boot's first enumeration: the flashlayout, then DETACH.
    pub(super) fn send_layout<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        rec: PhaseRecord,
    ) -> Result<Wait, FailureKind> {
        if rec.phase != ID_FLASHLAYOUT {
            return Err(self.unexpected(&rec, ProgramStage::UBootLayout));
        }
        let alt = dev
            .alt(ID_FLASHLAYOUT)
            .ok_or_else(|| FailureKind::Protocol {
                what: format!(
                    "U-Boot offers no alternate setting for the flashlayout (Id 0x00) (alts: {})",
                    alt_list(&dev.alts)
                ),
            })?;
        let sent = dev
            .host
            .set_alt(alt)
            .and_then(|()| dev.host.download(self.layout_bytes, &mut |_| {}));
        if let Err(source) = sent {
            return Err(self.download_failure(dev, source));
        }
        let rec = self.phase(dev)?;
        if let Some(message) = rec.error_message() {
            return Err(FailureKind::DeviceReported {
                message,
                transfer: None,
            });
        }
        self.detach_to_uboot(dev, true)
    }

    /// DETACH, then the wait for U-Boot to enumerate: its first
    /// enumeration after TF-A, or (`after_layout`) its programming one.
    fn detach_to_uboot<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        after_layout: bool,
    ) -> Result<Wait, FailureKind> {
        self.detach(dev)?;
        let (expect, left) = if after_layout {
            (ProgramStage::UBootProgram, ProgramStage::UBootLayout)
        } else {
            (ProgramStage::UBootLayout, ProgramStage::TfA)
        };
        let now = dev.now();
        Ok(Wait {
            expect,
            left,
            started: now,
            deadline: now + self.opts.reenumerate_timeout,
            lost: Lost::UbootNoReconnect { after_layout },
        })
    }

    /// U-Boot's programming enumeration: the rows it asks for, until END.
    pub(super) fn partitions<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        mut rec: PhaseRecord,
    ) -> Result<(), FailureKind> {
        // Every Id U-Boot asked for and got: asking again for any of them
        // (not only the last) would loop for ever.
        let mut done_ids = BTreeSet::new();
        loop {
            match rec.phase {
                PHASE_END => return self.end(dev),
                PHASE_ERROR => {
                    return Err(FailureKind::DeviceReported {
                        message: rec.error_message().unwrap_or_default(),
                        transfer: None,
                    })
                }
                id => {
                    self.write_partition(dev, &rec, &done_ids)?;
                    done_ids.insert(id);
                }
            }
            // The partition stays the context: an error reported now comes
            // from U-Boot's end-of-download step for it.
            rec = self.phase(dev)?;
        }
    }

    /// Writes the row `rec` asks for, from the offset it asks to resume
    /// at; `done_ids` are the rows already written in this enumeration.
    fn write_partition<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        rec: &PhaseRecord,
        done_ids: &BTreeSet<u8>,
    ) -> Result<(), FailureKind> {
        let id = rec.phase;
        if done_ids.contains(&id) {
            let name = (self.layout.by_id(id))
                .map(|p| p.name.clone())
                .unwrap_or_default();
            return Err(FailureKind::PhaseRepeated { id, name });
        }
        self.partition = None;
        let (row, bytes) = self.load(id)?;
        let alt = Self::alt_for(dev, row)?;
        let offset = rec.offset as usize;
        if offset > bytes.len() {
            return Err(FailureKind::Protocol {
                what: format!(
                    "U-Boot asks to resume partition {id:#04x} ({}) at offset {offset:#x}, past the end of its {}-byte binary",
                    row.name,
                    bytes.len()
                ),
            });
        }
        let (written, result) = self.send(dev, row, alt, &bytes, offset);
        if let Err(source) = result {
            return Err(self.download_failure(dev, source));
        }
        self.done(written);
        Ok(())
    }

    /// END: checks that this run wrote the layout, then DETACH so U-Boot
    /// finishes.
    fn end<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<(), FailureKind> {
        self.check_all_written()?;
        self.partition = None;
        self.detach(dev)
    }

    /// At END: every row of the layout that U-Boot must be sent (`P`
    /// without `E`, on a device) was written in this run. A board that kept
    /// an earlier run's layout reports END for that layout, not this one.
    fn check_all_written(&self) -> Result<(), FailureKind> {
        let missing: Vec<String> = (self.layout.partitions.iter())
            .filter(|p| p.opt.downloads() && p.ip.kind != IpKind::None)
            .filter(|p| !self.written.iter().any(|w| w.id == p.id))
            .map(|p| format!("{:#04x} {}", p.id, p.name))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(FailureKind::NotAllWritten { missing })
        }
    }
}
