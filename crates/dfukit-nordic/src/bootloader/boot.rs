//! Boot and activation: the boot sequence, the copy of a validated image
//! from bank 1 into bank 0 in power-cut-safe steps, and the choice between
//! the application and DFU mode.

use super::jobs::{Job, Source, Step};
use super::persist::{load_settings, SettingsSource};
use super::validation;
use super::{
    Bank1Location, Bootloader, BootloaderEvent, EnterDfu, Mode, SoftDevice, COPY_STEP_PAGES,
};
use crate::settings::{bank_code, Settings, SETTINGS_LEN};
use dfukit_core::ReadFlash;

impl Bootloader {
    /// The first step after a reset: load the settings (repairing a torn
    /// page from its twin), then resume an activation or finish booting.
    pub(super) fn boot(&mut self, mem: &mut impl ReadFlash) {
        let (source, settings) = load_settings(&self.cfg.layout, mem);
        self.settings = settings;
        if source == SettingsSource::None {
            self.settings.settings_version = 2;
            self.settings.bootloader_version = self.cfg.bootloader_version;
        }
        let mut holds_settings = |addr| {
            let mut page = [0u8; SETTINGS_LEN];
            mem.read(addr, &mut page).is_ok() && Settings::from_bytes(&page) == self.settings
        };
        // A main page that loaded but whose bonding data or name was torn
        // (repaired in RAM by `load_settings`) is written again, so the
        // torn bytes do not stay in flash.
        let main_ok =
            source == SettingsSource::Main && holds_settings(self.cfg.layout.settings_addr);
        // A cut during the last backup write leaves main good and the backup
        // torn: repair it now, or the next cut in a main write leaves no copy.
        let backup_ok = holds_settings(self.cfg.layout.backup_addr);
        let next = match self.settings.bank_1.bank_code {
            bank_code::VALID_APP
            | bank_code::VALID_SD
            | bank_code::VALID_BL
            | bank_code::VALID_SD_BL => Job::Step(Step::Activate),
            _ => Job::Step(Step::BootDone),
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

    /// Where the image in bank 1 goes, and how many of its bytes: an
    /// application to bank 0; a SoftDevice (alone, or the first part of
    /// SoftDevice+bootloader) behind the MBR; a bootloader to its region.
    fn activation_target(&self) -> (u32, u32) {
        let l = self.cfg.layout;
        let b1 = self.settings.bank_1;
        match b1.bank_code {
            bank_code::VALID_SD | bank_code::VALID_SD_BL => {
                (l.softdevice_region().0, self.settings.sd_size)
            }
            bank_code::VALID_BL => (l.bootloader_region().0, b1.image_size),
            _ => (l.app_start, b1.image_size),
        }
    }

    /// One step of `app_activate`, or of the MBR's SoftDevice and bootloader
    /// copies (`sd_activate`, `bl_activate`): copy up to
    /// [`COPY_STEP_PAGES`] pages from bank 1 to their place, then record the
    /// progress (main and backup page), so that a power cut repeats at most
    /// one step.
    pub(super) fn activate_step(&mut self, mem: &mut impl ReadFlash) {
        let l = self.cfg.layout;
        let (target, size) = self.activation_target();
        let done = self.settings.write_offset;
        let src = self.settings.progress.update_start_address() + done;
        let dst = target + done;
        if done >= size || src == dst {
            match self.settings.bank_1.bank_code {
                bank_code::VALID_APP => self.finish_activation(mem),
                _ => self.finish_sd_bl(mem, target, size),
            }
            return;
        }
        let remaining = size - done;
        let mut step = COPY_STEP_PAGES * l.page_size;
        let internal_src = matches!(self.cfg.bank1, Bank1Location::Internal);
        // Only an application copy can overlap its source (single bank
        // over the app area); SoftDevice and bootloader regions lie
        // outside the app area that holds bank 1.
        if internal_src && src > dst {
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

    /// The end of a SoftDevice or bootloader copy: verify it against its
    /// source (bank 1 is left intact by these copies), then go on with the
    /// bootloader part of a SoftDevice+bootloader image, or finish. A cut
    /// before the settings write below repeats this check, which holds
    /// again, so the end of a copy is as resumable as its steps.
    fn finish_sd_bl(&mut self, mem: &mut impl ReadFlash, target: u32, size: u32) {
        let src = self.settings.progress.update_start_address();
        let copied = validation::crc_of(mem, target, size);
        let ok = copied.is_ok() && copied == validation::crc_of(mem, src, size);
        let code = self.settings.bank_1.bank_code;
        let mut then = Job::Step(Step::BootDone);
        if !ok {
            let _ = self
                .events
                .push_back(BootloaderEvent::ActivationFailed { addr: target });
            self.settings.bank_1 = Default::default();
        } else if code == bank_code::VALID_BL {
            let _ = self.events.push_back(BootloaderEvent::BootloaderActivated {
                version: self.settings.bootloader_version,
                size,
            });
            self.settings.bank_1 = Default::default();
            then = Job::Step(Step::NewBootloader);
        } else {
            let fwid = SoftDevice::read(mem, target).map_or(0, |sd| sd.fwid);
            let _ = self
                .events
                .push_back(BootloaderEvent::SoftDeviceActivated { fwid, size });
            if code == bank_code::VALID_SD_BL {
                // The bootloader part follows the SoftDevice in bank 1.
                let b1 = &mut self.settings.bank_1;
                b1.bank_code = bank_code::VALID_BL;
                b1.image_size -= size;
                b1.image_crc = validation::crc_of(mem, src + size, b1.image_size).unwrap_or(0);
                self.settings.progress.firmware_image_crc = src + size;
                self.settings.write_offset = 0;
                self.write_settings_then(&[Job::Step(Step::Activate)]);
                return;
            }
            self.settings.bank_1 = Default::default();
        }
        self.settings.write_offset = 0;
        self.settings.progress = Default::default();
        self.write_settings_then(&[then]);
    }

    fn finish_activation(&mut self, mem: &mut impl ReadFlash) {
        let l = self.cfg.layout;
        let b1 = self.settings.bank_1;
        let crc = validation::crc_of(mem, l.app_start, b1.image_size).unwrap_or(!b1.image_crc);
        if crc == b1.image_crc {
            self.settings.bank_0.image_size = b1.image_size;
            self.settings.bank_0.image_crc = crc;
            self.settings.bank_0.bank_code = bank_code::VALID_APP;
            let _ = self.events.push_back(BootloaderEvent::Activated {
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

    pub(super) fn boot_done(&mut self, mem: &mut impl ReadFlash) {
        // The SoftDevice's own information structure names it; a flash
        // without one is taken to hold the one the build expects.
        self.softdevice =
            SoftDevice::read(mem, self.cfg.layout.softdevice_region().0).or(self.cfg.softdevice);
        let app_valid = self.app_valid(mem);
        if app_valid && self.cfg.enter_dfu == EnterDfu::WhenNoValidApp {
            self.mode = Mode::AppStarted;
            let _ = self.events.push_back(BootloaderEvent::StartApp);
        } else {
            self.mode = Mode::Dfu;
            self.last_activity = self.now;
            let _ = self
                .events
                .push_back(BootloaderEvent::DfuMode { app_valid });
        }
    }

    /// Whether bank 0 holds an application whose CRC matches the settings
    /// (the SDK's boot validation with the CRC method).
    pub fn app_valid(&self, mem: &mut impl ReadFlash) -> bool {
        let b0 = self.settings.bank_0;
        b0.bank_code == bank_code::VALID_APP
            && image_crc(mem, self.cfg.layout.app_start, b0.image_size) == Ok(b0.image_crc)
    }
}

/// CRC-32 of `len` bytes of flash at `addr`.
pub fn image_crc(
    mem: &mut impl ReadFlash,
    addr: u32,
    len: u32,
) -> Result<u32, dfukit_core::ReadError> {
    validation::crc_of(mem, addr, len)
}
