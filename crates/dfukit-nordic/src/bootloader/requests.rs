//! Requests other than WRITE, in their turn: SELECT, CREATE, EXECUTE (init
//! packet validation, bank 1 choice, the final hash check) and the simple
//! queries.

use super::jobs::{Job, ShortFrame, Step};
use super::validation;
use super::{
    Bank1Location, Bootloader, BootloaderEvent, BootloaderFault, Current, Mode, ResetReason,
    SoftDevice, DATA_OBJECT_MAX_SIZE, INIT_COMMAND_MAX_SIZE,
};
use crate::init_packet::FwType;
use crate::proto::{ExtError, ObjectType, Opcode, Payload, Response, ResultCode, SecureDfuRequest};
use crate::settings::bank_code;
use dfukit_core::ReadFlash;

impl Bootloader {
    pub(super) fn crc_payload(&self) -> Payload {
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

    pub(super) fn on_request(&mut self, frame: ShortFrame, mem: &mut impl ReadFlash) {
        if self.mode != Mode::Dfu {
            return;
        }
        let resp = match frame.request() {
            SecureDfuRequest::Execute => match self.current {
                Current::Command => self.execute_command(),
                Current::Data => self.execute_data(mem),
                Current::None => Some(Response::error(
                    Opcode::ObjectExecute,
                    ResultCode::OperationNotPermitted,
                )),
            },
            SecureDfuRequest::ProtocolVersion => Some(Response::ok(
                Opcode::ProtocolVersion,
                Payload::ProtocolVersion(1),
            )),
            SecureDfuRequest::Ping(id) => Some(Response::ok(Opcode::Ping, Payload::Ping(id))),
            SecureDfuRequest::MtuGet => {
                Some(Response::ok(Opcode::MtuGet, Payload::Mtu(self.cfg.mtu)))
            }
            SecureDfuRequest::SetPrn(n) => {
                self.prn = n;
                self.prn_count = 0;
                Some(Response::ok(Opcode::ReceiptNotifSet, Payload::None))
            }
            SecureDfuRequest::HardwareVersion => {
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
            SecureDfuRequest::FirmwareVersion(n) => Some(self.firmware_version(n)),
            SecureDfuRequest::Abort => {
                let _ = self
                    .events
                    .push_back(BootloaderEvent::Reset(ResetReason::Abort));
                Some(Response::ok(Opcode::Abort, Payload::None))
            }
            SecureDfuRequest::Write(_) => unreachable!("writes are handled on arrival"),
            SecureDfuRequest::Select(t) => Some(self.on_select(t)),
            SecureDfuRequest::Create { obj_type, size } => Some(self.on_create(obj_type, size)),
            SecureDfuRequest::CrcGet => Some(match (self.current, self.fault) {
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
                version: self.softdevice.map_or(0, |sd| sd.fwid as u32),
                addr: l.softdevice_region().0,
                len: l.softdevice_region().1,
            },
            1 if s.bank_0.bank_code == bank_code::VALID_APP => Payload::FirmwareVersion {
                image_type: 1,
                version: s.app_version,
                addr: l.app_start,
                len: s.bank_0.image_size,
            },
            2 => Payload::FirmwareVersion {
                image_type: 2,
                version: s.bootloader_version,
                addr: l.bootloader_region().0,
                len: l.bootloader_region().1,
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
                self.fault = self
                    .fault
                    .filter(|f| *f == BootloaderFault::CompletionTimeout);
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
                if self.fault == Some(BootloaderFault::CompletionTimeout) {
                    return Response::ext_error(OP, ExtError::FlashCompletionTimeout);
                }
                // The whole request is checked before anything changes: a
                // refused CREATE leaves the object, and any fault that stops
                // its writes, as they were (clearing a failed erase's fault
                // here once let writes program a page that was not erased).
                let start = self.settings.progress.firmware_image_offset_last;
                if start + size > self.image_size {
                    return Response::error(OP, ResultCode::OperationNotPermitted);
                }
                if !size.is_multiple_of(self.cfg.layout.page_size)
                    && start + size != self.image_size
                {
                    return Response::error(OP, ResultCode::InvalidParameter);
                }
                // A failed write is retried by re-creating its object.
                self.fault = None;
                let p = &mut self.settings.progress;
                // Anything received after the last executed object is dropped.
                p.firmware_image_offset = p.firmware_image_offset_last;
                p.firmware_image_crc = p.firmware_image_crc_last;
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
        let accepted = match validation::validate(&self.cfg, self.softdevice, &self.settings, init)
        {
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
        self.image_kind = accepted.kind;
        self.image_sd_size = accepted.sd_size;
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
                // A single-bank update resumed after a reset finds bank 0
                // already given up, so the image would fit "beside" it, at
                // the same address: it is the same single-bank update, and
                // the settings go on saying so, as an uninterrupted one's do.
                let resumed_single = self.settings.bank_layout == 1 && app_len == 0;
                if dual + size <= l.app_end && !resumed_single {
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
        // The last object: check what is *in flash* against the init packet,
        // and that a SoftDevice carries its information structure
        // (`softdevice_info_ok`).
        let with_sd = matches!(
            self.image_kind,
            FwType::Softdevice | FwType::SoftdeviceBootloader
        );
        let verdict = match validation::hash_image(mem, self.bank1_addr, self.image_size) {
            Ok(h) if h != self.image_hash => Some(ExtError::VerificationFailed),
            Ok(_) if with_sd && SoftDevice::read(mem, self.bank1_addr).is_none() => {
                Some(ExtError::VerificationFailed)
            }
            Ok(_) => None,
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
        // `postvalidate_app` / `postvalidate_sd_bl`: the bank code says what
        // activation copies where. An application built for the old
        // SoftDevice may not run on the new one: bank 0 is given up (the
        // SDK does so on a major SoftDevice update; dfukit on every one).
        s.bank_1.bank_code = match self.image_kind {
            FwType::Softdevice => bank_code::VALID_SD,
            FwType::Bootloader => bank_code::VALID_BL,
            FwType::SoftdeviceBootloader => bank_code::VALID_SD_BL,
            _ => bank_code::VALID_APP,
        };
        match self.image_kind {
            FwType::Application => s.app_version = self.fw_version,
            FwType::Bootloader => s.bootloader_version = self.fw_version,
            _ => {}
        }
        if with_sd {
            s.sd_size = self.image_sd_size;
            s.bank_0 = Default::default();
        }
        if self.image_kind == FwType::SoftdeviceBootloader {
            s.bootloader_version = self.fw_version;
        }
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

    pub(super) fn bank1_program_page(&self) -> u32 {
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
            .any(|j| matches!(j, Job::Step(Step::SecureDfuRequest(_) | Step::Write { .. })))
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

    pub(super) fn bank1_write_unit(&self) -> u32 {
        match self.cfg.bank1 {
            Bank1Location::External(_) => 1,
            Bank1Location::Internal => self.cfg.layout.write_unit,
        }
    }
}
