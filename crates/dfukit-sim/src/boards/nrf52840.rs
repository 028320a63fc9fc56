//! A virtual nRF52840 running the Secure DFU bootloader core.
//!
//! The board owns the flash chips (1 MiB internal NVMC flash and an
//! MX25R6435F-like QSPI NOR), routes each flash operation the core starts to
//! the right chip through the power supply (which can cut power before or
//! part-way through any operation), and reports the completion after the
//! modelled duration. It is driven by time values: tests advance virtual
//! time, the pty server passes wall-clock time.

use crate::flash::{FlashChip, FlashModelError, FlashTiming};
use crate::power::{OpOutcome, PowerCutPlan, PowerSupply};
use crate::state::{EventLog, LogTime, StateDir, StateError};
use crate::storage::Storage;
use dfukit_core::Board;
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadError, ReadFlash};
use dfukit_nordic::bootloader::{
    image_crc, load_settings, Answers, Bank1Location, Bootloader, BootloaderConfig,
    BootloaderEvent, Busy, Mode, RxTransport, SettingsSource, SoftDevice,
};
use dfukit_nordic::proto::Response;
use dfukit_nordic::settings::bank_code;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// Where the board's bootloader caches updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bank1 {
    /// Internal flash (dual bank, single-bank fallback).
    Internal,
    /// External QSPI NOR.
    Qspi,
}

/// A fault switch that reproduces a field failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// After this many QSPI operations, the QSPI driver stops reporting
    /// completions (the operations still take effect): the bootloader port
    /// in the nRF52 user report, whose `nrfx_qspi` callback never reached
    /// `nrf_fstorage`.
    QspiCompletionsStop {
        /// QSPI operations that still complete.
        after: u64,
    },
}

/// What the board is built with; stored in the state directory as `board.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardConfig {
    /// Where bank 1 lives.
    pub bank1: Bank1,
    /// SEC1-encoded public key (hex) the bootloader verifies init packets with.
    pub public_key: Option<String>,
    /// The bootloader's hardware version.
    pub hw_version: u32,
    /// Model flash erase/program times (off: operations complete at once).
    pub flash_timing: bool,
    /// Seed for everything random (partial erases).
    pub seed: u64,
    /// Serial MTU the bootloader reports.
    pub mtu: u16,
    /// Fault switch, if any.
    pub fault: Option<Fault>,
    /// Run the bootloader with the nRF5 SDK's answers
    /// ([`Answers::Received`]) instead of dfukit's: with
    /// [`Fault::QspiCompletionsStop`] this is the user report's port whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sdk_answers: bool,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            bank1: Bank1::Qspi,
            public_key: None,
            hw_version: 52,
            flash_timing: true,
            seed: 1,
            mtu: 2051,
            fault: None,
            sdk_answers: false,
        }
    }
}

/// Why a board could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The state directory or a flash image could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// A flash image has the wrong geometry.
    #[error(transparent)]
    Flash(#[from] FlashModelError),
    /// The stored public key is not a P-256 point.
    #[error("board public key {key:?} is not a SEC1-encoded P-256 point")]
    BadKey {
        /// The hex text.
        key: String,
    },
}

/// The two flash chips, read through the device's memory map.
pub struct Memory {
    /// 1 MiB internal flash at 0.
    pub internal: FlashChip,
    /// 8 MiB QSPI NOR at 0x1200_0000.
    pub qspi: FlashChip,
}

impl Memory {
    fn chip_mut(&mut self, addr: u32) -> Option<&mut FlashChip> {
        if self.internal.contains(addr, 1) {
            Some(&mut self.internal)
        } else if self.qspi.contains(addr, 1) {
            Some(&mut self.qspi)
        } else {
            None
        }
    }
}

impl ReadFlash for Memory {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), ReadError> {
        let len = buf.len() as u32;
        let chip = if self.internal.contains(addr, len) {
            &self.internal
        } else if self.qspi.contains(addr, len) {
            &self.qspi
        } else {
            return Err(ReadError { addr });
        };
        chip.read(addr, buf).map_err(|_| ReadError { addr })
    }
}

/// A completion the board will deliver.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Instant,
    /// `None`: the driver never reports it.
    outcome: Option<FlashOutcome>,
}

/// The board as the bootloader would see it after a boot, without running one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// Which settings copy is valid: "main", "backup" or "none".
    pub settings: &'static str,
    /// Bank 0 holds an application whose CRC matches.
    pub app_valid: bool,
    /// Application version recorded in the settings.
    pub app_version: u32,
    /// Bank 0 size.
    pub app_size: u32,
    /// Bank 0 CRC recorded.
    pub app_crc: u32,
    /// Bank 0 code.
    pub bank0_code: u32,
    /// Bank 1 code (0x01: an image waits for activation).
    pub bank1_code: u32,
    /// Bank 1 image size.
    pub bank1_size: u32,
    /// Activation progress: bytes already copied to bank 0.
    pub activation_offset: u32,
    /// Init packet bytes received / declared.
    pub command_offset: u32,
    /// Declared init packet size.
    pub command_size: u32,
    /// Image bytes persisted as received.
    pub data_offset: u32,
    /// Firmware id of the SoftDevice behind the MBR (at 0x1000), read from
    /// its information structure; `None` when flash holds none (the board
    /// then runs with the build's S140 id).
    pub softdevice_fwid: Option<u16>,
    /// Version of the bootloader in its region: the one the last bootloader
    /// update installed, or the build's; `None` while a received bootloader
    /// waits for its copy (the settings already name the new version).
    pub bootloader_version: Option<u32>,
    /// CRC-32 of the bootloader region (0xF8000..0xFE000), so a test sees
    /// which bootloader image runs.
    pub bootloader_crc: u32,
}

/// A virtual nRF52840 with its bootloader.
pub struct Nrf52840 {
    cfg: BoardConfig,
    bootloader_cfg: BootloaderConfig,
    bootloader: Bootloader,
    mem: Memory,
    power: PowerSupply,
    pending: Option<Pending>,
    qspi_ops: u64,
    now: Instant,
    log: Option<EventLog>,
    model_errors: Vec<FlashModelError>,
    responses: VecDeque<Response>,
    events: Vec<(Instant, BootloaderEvent)>,
    boots: u32,
}

impl Nrf52840 {
    /// A board on the given flash contents.
    pub fn new(cfg: BoardConfig, internal: Storage, qspi: Storage) -> Result<Self, BoardError> {
        let timing = |t: FlashTiming| {
            if cfg.flash_timing {
                t
            } else {
                FlashTiming::instant()
            }
        };
        let mut internal = FlashChip::nrf52840_internal(internal)?;
        internal.set_timing(timing(FlashTiming::nrf52840_internal()));
        let mut qspi = FlashChip::mx25r6435f(qspi)?;
        qspi.set_timing(timing(FlashTiming::mx25r6435f()));
        qspi.set_rng(crate::clock::SimRng::new(cfg.seed));
        internal.set_rng(crate::clock::SimRng::new(cfg.seed ^ 0x5eed));
        let bootloader_cfg = bootloader_config(&cfg)?;
        Ok(Nrf52840 {
            bootloader: Bootloader::new(bootloader_cfg.clone()),
            bootloader_cfg,
            cfg,
            mem: Memory { internal, qspi },
            power: PowerSupply::always_on(),
            pending: None,
            qspi_ops: 0,
            now: Instant::ZERO,
            log: None,
            model_errors: Vec::new(),
            responses: VecDeque::new(),
            events: Vec::new(),
            boots: 1,
        })
    }

    /// A board whose flash lives in `state` (`internal.bin`, `qspi.bin`).
    /// `cfg` replaces the stored configuration when given; otherwise the
    /// stored one (or the default) is used.
    pub fn open(state: &StateDir, cfg: Option<BoardConfig>) -> Result<Self, BoardError> {
        let cfg = match cfg {
            Some(c) => {
                state.save_config(&c)?;
                c
            }
            None => state.load_config()?.unwrap_or_default(),
        };
        let internal = state.open_image(crate::state::INTERNAL_IMAGE, 1 << 20)?;
        let qspi = state.open_image(crate::state::QSPI_IMAGE, 8 << 20)?;
        let mut b = Self::new(cfg, internal, qspi)?;
        b.log = Some(state.event_log()?);
        b.log_line("power on: bootloader starts");
        Ok(b)
    }

    /// The configuration.
    pub fn config(&self) -> &BoardConfig {
        &self.cfg
    }

    /// The bootloader core.
    pub fn bootloader(&self) -> &Bootloader {
        &self.bootloader
    }

    /// The flash chips.
    pub fn memory(&self) -> &Memory {
        &self.mem
    }

    /// The power supply (operation counts, cut plan).
    pub fn power(&self) -> &PowerSupply {
        &self.power
    }

    /// Flash operations the model refused: a core bug (write without erase,
    /// misaligned access). Tests assert this stays empty.
    pub fn model_errors(&self) -> &[FlashModelError] {
        &self.model_errors
    }

    /// Events the core reported, with their times.
    pub fn events(&self) -> &[(Instant, BootloaderEvent)] {
        &self.events
    }

    /// Times the bootloader started.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Arms a power-cut plan, counting operations from now.
    pub fn arm(&mut self, plan: PowerCutPlan) {
        self.power.power_on(plan);
    }

    /// Restores power and restarts the bootloader (after a cut, or a reset
    /// button press), with `plan` armed.
    pub fn power_cycle(&mut self, plan: PowerCutPlan) {
        self.power.power_on(plan);
        self.restart("power cycle");
    }

    fn restart(&mut self, why: &str) {
        // Responses already taken from the core are on the wire; a reset
        // does not call them back.
        self.pending = None;
        self.bootloader = Bootloader::new(self.bootloader_cfg.clone());
        self.boots += 1;
        self.log_line(&format!("reset ({why}): bootloader starts"));
    }

    fn log_line(&mut self, text: &str) {
        if let Some(log) = &mut self.log {
            let t = if self.cfg.flash_timing {
                LogTime::Virtual(self.now)
            } else {
                LogTime::wall_now()
            };
            // The log is a diagnostic aid; a full disk must not stop the board.
            let _ = log.append(t, text);
        }
    }

    /// Offers one request frame that came in on `transport`. `Err(Busy)`:
    /// that transport's receive buffers are all waiting for flash; offer it
    /// again later (serial flow control) or drop it (BLE).
    pub fn receive(
        &mut self,
        now: Instant,
        transport: RxTransport,
        frame: &[u8],
    ) -> Result<(), Busy> {
        if !self.power.is_on() {
            return Ok(());
        }
        self.advance(now);
        let r = self.bootloader.handle_request(self.now, transport, frame);
        self.advance(now);
        r
    }

    /// Starts the operation the core hands out, if any. True if one started.
    fn start_next_op(&mut self) -> bool {
        let Some(op) = self.bootloader.poll_flash() else {
            return false;
        };
        let op_addr = op.addr();
        let is_qspi = self.mem.qspi.contains(op_addr, 1);
        let Some(chip) = self.mem.chip_mut(op_addr) else {
            self.model_errors.push(FlashModelError::OutOfBounds {
                op: match op {
                    FlashOp::Erase { .. } => crate::flash::OpKind::Erase,
                    FlashOp::Program { .. } => crate::flash::OpKind::Program,
                },
                addr: op_addr,
                len: op.len(),
                start: 0,
                end: 0,
            });
            self.pending = Some(Pending {
                at: self.now,
                outcome: Some(FlashOutcome::Failed),
            });
            return true;
        };
        let outcome = self.power.apply(chip, &op);
        match outcome {
            Ok(OpOutcome::Completed(d)) => {
                let never = is_qspi
                    && matches!(self.cfg.fault, Some(Fault::QspiCompletionsStop { after }) if self.qspi_ops >= after);
                if is_qspi {
                    self.qspi_ops += 1;
                }
                self.pending = Some(Pending {
                    at: self.now + d,
                    outcome: if never {
                        None
                    } else {
                        Some(FlashOutcome::Done)
                    },
                });
            }
            Ok(OpOutcome::Interrupted(_)) | Ok(OpOutcome::PowerOff) => {
                self.pending = None;
                self.log_line(&format!(
                    "power cut at flash operation {}",
                    self.power.ops()
                ));
            }
            Err(e) => {
                self.model_errors.push(e);
                self.pending = Some(Pending {
                    at: self.now,
                    outcome: Some(FlashOutcome::Failed),
                });
            }
        }
        true
    }

    fn on_event(&mut self, e: BootloaderEvent) {
        self.events.push((self.now, e));
        self.log_line(&format!("{e:?}"));
        if let BootloaderEvent::Reset(reason) = e {
            self.restart(&format!("{reason:?}"));
        }
    }

    /// The next response the bootloader sent, if any.
    pub fn take_response(&mut self) -> Option<Response> {
        self.responses.pop_front()
    }

    /// Lets the board run without input (booting, activating after the
    /// update's reset) until its bootloader waits idle in DFU mode, power
    /// fails, or `limit` of virtual time has passed.
    pub fn settle(&mut self, limit: Duration) {
        let until = self.now + limit;
        while let Some(t) = self.next_wakeup() {
            if t > until {
                break;
            }
            self.advance(t);
            if self.bootloader.mode() == Mode::Dfu && !self.bootloader.is_busy() {
                break;
            }
        }
    }

    /// The bootloader's mode.
    pub fn mode(&self) -> Mode {
        self.bootloader.mode()
    }

    /// The board's flash as the bootloader would see it, read-only.
    pub fn inspect(&mut self) -> Inspection {
        inspect(&self.bootloader_cfg, &mut self.mem)
    }
}

/// Reads a board's state directory without starting it.
pub fn inspect_state(state: &StateDir) -> Result<(BoardConfig, Inspection), BoardError> {
    let cfg: BoardConfig = state.load_config()?.unwrap_or_default();
    let internal = state.open_image(crate::state::INTERNAL_IMAGE, 1 << 20)?;
    let qspi = state.open_image(crate::state::QSPI_IMAGE, 8 << 20)?;
    let mut b = Nrf52840::new(cfg.clone(), internal, qspi)?;
    Ok((cfg, b.inspect()))
}

/// The bootloader configuration of a board.
pub fn bootloader_config(cfg: &BoardConfig) -> Result<BootloaderConfig, BoardError> {
    let key = match &cfg.public_key {
        None => None,
        Some(hex) => {
            let bytes = decode_hex(hex).ok_or_else(|| BoardError::BadKey { key: hex.clone() })?;
            Some(
                dfukit_nordic::bootloader::VerifyingKey::from_sec1_bytes(&bytes)
                    .map_err(|_| BoardError::BadKey { key: hex.clone() })?,
            )
        }
    };
    let bank1 = match cfg.bank1 {
        Bank1::Internal => Bank1Location::Internal,
        Bank1::Qspi => Bank1Location::External(BootloaderConfig::MX25R6435F_BANK),
    };
    let mut t = BootloaderConfig::nrf52840(key, bank1);
    t.hw_version = cfg.hw_version;
    t.mtu = cfg.mtu;
    // A QSPI sector erase may take 240 ms at worst; 1 s bounds a lost
    // completion without tripping on a slow part.
    t.flash_timeout = Duration::from_millis(1000);
    if cfg.sdk_answers {
        t.answers = Answers::Received;
    }
    Ok(t)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads the settings pages and bank 0 as the bootloader would at boot.
pub fn inspect(cfg: &BootloaderConfig, mem: &mut impl ReadFlash) -> Inspection {
    let (source, s) = load_settings(&cfg.layout, mem);
    let b0 = s.bank_0;
    let app_valid = b0.bank_code == bank_code::VALID_APP
        && image_crc(mem, cfg.layout.app_start, b0.image_size) == Ok(b0.image_crc);
    let (bl_start, bl_len) = cfg.layout.bootloader_region();
    // A bootloader received but not yet copied is not the one running: the
    // settings already name its version.
    let bl_pending = matches!(
        s.bank_1.bank_code,
        bank_code::VALID_BL | bank_code::VALID_SD_BL
    );
    let bootloader_version = if source == SettingsSource::None {
        Some(cfg.bootloader_version)
    } else {
        (!bl_pending).then_some(s.bootloader_version)
    };
    Inspection {
        settings: match source {
            SettingsSource::Main => "main",
            SettingsSource::Backup => "backup",
            SettingsSource::None => "none",
        },
        app_valid,
        app_version: s.app_version,
        app_size: b0.image_size,
        app_crc: b0.image_crc,
        bank0_code: b0.bank_code,
        bank1_code: s.bank_1.bank_code,
        bank1_size: s.bank_1.image_size,
        activation_offset: s.write_offset,
        command_offset: s.progress.command_offset,
        command_size: s.progress.command_size,
        data_offset: s.progress.firmware_image_offset_last,
        softdevice_fwid: SoftDevice::read(mem, cfg.layout.softdevice_region().0).map(|sd| sd.fwid),
        bootloader_version,
        bootloader_crc: image_crc(mem, bl_start, bl_len).unwrap_or(0),
    }
}

fn code_name(c: u32) -> &'static str {
    match c {
        0x00 => "empty",
        0x01 => "valid app",
        0xA5 => "valid SoftDevice",
        0xAA => "valid bootloader",
        0xAC => "valid SoftDevice+bootloader",
        0xB1 => "valid external app",
        _ => "unknown",
    }
}

/// An inspection in words, as `dfukit sim inspect` prints it.
pub fn describe(cfg: &BoardConfig, i: &Inspection) -> String {
    let bank1 = match cfg.bank1 {
        Bank1::Internal => "internal flash",
        Bank1::Qspi => "QSPI NOR (MX25R6435F at 0x12000000)",
    };
    let app = if i.app_valid {
        format!(
            "valid, version {}, {} bytes, CRC {:#010x}",
            i.app_version, i.app_size, i.app_crc
        )
    } else {
        "none valid (the bootloader stays in DFU mode)".to_string()
    };
    let softdevice = match i.softdevice_fwid {
        Some(id) => format!("{id:#06x} (behind the MBR at 0x00001000)"),
        None => "none programmed (the build's S140 id 0x0100 is assumed)".to_string(),
    };
    let bootloader = match i.bootloader_version {
        None => "an update waits for activation".to_string(),
        Some(v) => format!("version {v}, region CRC {:#010x}", i.bootloader_crc),
    };
    let activation = if i.bank1_code != 0x00 {
        format!(
            "pending: {} of {} bytes copied to bank 0",
            i.activation_offset, i.bank1_size
        )
    } else {
        "none pending".to_string()
    };
    format!(
        "board:       nRF52840, bank 1 in {bank1}, hw_version {}\n\
         settings:    {} page valid\n\
         softdevice:  {softdevice}\n\
         bootloader:  {bootloader}\n\
         application: {app}\n\
         bank 0:      {:#04x} ({})\n\
         bank 1:      {:#04x} ({})\n\
         activation:  {activation}\n\
         transfer:    init packet {}/{} bytes, {} image bytes persisted\n",
        cfg.hw_version,
        i.settings,
        i.bank0_code,
        code_name(i.bank0_code),
        i.bank1_code,
        code_name(i.bank1_code),
        i.command_offset,
        i.command_size,
        i.data_offset,
    )
}

/// The board's configuration with its inspection: what [`Board::inspect`]
/// returns, printed as `dfukit sim inspect` prints it.
#[derive(Debug, Clone)]
pub struct Report {
    /// The board's configuration.
    pub config: BoardConfig,
    /// What the bootloader would see.
    pub inspection: Inspection,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.config, &self.inspection))
    }
}

impl Board for Nrf52840 {
    type Inspection = Report;

    fn now(&self) -> Instant {
        self.now
    }
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while self.power.is_on() {
            let mut changed = false;
            if let Some(Pending {
                at,
                outcome: Some(outcome),
            }) = self.pending
            {
                if at <= self.now {
                    self.pending = None;
                    self.bootloader.flash_complete(at, outcome);
                    changed = true;
                }
            }
            self.bootloader.poll(self.now, &mut self.mem);
            if self.pending.is_none() {
                changed |= self.start_next_op();
            }
            while let Some(r) = self.bootloader.poll_response() {
                self.responses.push_back(r);
            }
            while let Some(e) = self.bootloader.poll_event() {
                changed = true;
                self.on_event(e);
            }
            if !changed {
                break;
            }
        }
    }
    fn next_wakeup(&self) -> Option<Instant> {
        if !self.power.is_on() {
            return None;
        }
        let pending = self.pending.and_then(|p| p.outcome.map(|_| p.at));
        super::earliest(pending, self.bootloader.poll_at())
    }
    fn is_powered(&self) -> bool {
        self.power.is_on()
    }
    fn power_cycle(&mut self) {
        Nrf52840::power_cycle(self, PowerCutPlan::Never)
    }
    fn inspect(&mut self) -> Report {
        Report {
            config: self.cfg.clone(),
            inspection: Nrf52840::inspect(self),
        }
    }
}
