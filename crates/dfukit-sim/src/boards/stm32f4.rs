//! A virtual STM32F405 in its ROM system bootloader (USB DFU, DfuSe).
//!
//! The board presents what the real ROM presents on USB (0483:df11,
//! "STM32  BOOTLOADER", an Internal Flash and an Option Bytes alternate
//! setting with their memory-layout strings, the DfuSe functional
//! descriptor), runs the [`DfuDevice`] core in the ST ROM dialect, and
//! applies its flash operations to an STM32F4 flash model with per-sector
//! erase times. It is a [`UsbDevice`], so a USB/IP server exports it to
//! dfukit's host, to the Linux `usbip` tool, and through the libusb shim to
//! unmodified dfu-util.

use crate::clock::BoardClock;
use crate::clock::SimRng;
use crate::flash::{FlashChip, FlashModelError, FlashTiming};
use crate::power::{OpOutcome, PowerCutPlan, PowerSupply};
use crate::state::{StateDir, StateError};
use crate::storage::Storage;
use dfukit_core::Board;
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadError, ReadFlash};
use dfukit_usbdfu::device::{DeviceConfig, DeviceEvent, DfuDevice, Reply};
use dfukit_usbip::{ControlReply, Descriptors, DeviceInfo, SetupPacket, Speed, UsbDevice};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Option bytes of an STM32F405 (RM0090 "Option bytes"): 16 bytes at
/// 0x1FFF_C000, written through OPTCR rather than erased and programmed.
pub const OPTION_BYTES: u32 = 0x1FFF_C000;
const OPTION_BYTES_LEN: usize = 16;
/// Factory option bytes: RDP level 0 (0xAA), no write protection.
const OPTION_BYTES_DEFAULT: [u8; OPTION_BYTES_LEN] = [
    0xAA, 0xEF, 0x55, 0x10, 0xFF, 0xFF, 0x00, 0x00, 0xFF, 0x0F, 0x00, 0xF0, 0xFF, 0xFF, 0x00, 0x00,
];
/// File names in the state directory.
const FLASH_IMAGE: &str = "flash";
const OPTION_BYTES_IMAGE: &str = "option-bytes";

/// A fault switch that reproduces a field failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum UsbFault {
    /// After this many data blocks the device stalls every request (a
    /// firmware that crashed with the USB core still answering).
    StallAfterBlocks {
        /// Blocks accepted first.
        blocks: u32,
    },
    /// After this many data blocks the device drops off the bus (a reset or
    /// brown-out in the middle of a download).
    VanishAfterBlocks {
        /// Blocks accepted first.
        blocks: u32,
    },
}

/// What the board is built with; stored as `board.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stm32f4Config {
    /// Model flash erase/program times (off: operations complete at once).
    pub flash_timing: bool,
    /// USB serial number string.
    pub serial: String,
    /// Fault switch, if any.
    #[serde(default)]
    pub fault: Option<UsbFault>,
}

impl Default for Stm32f4Config {
    fn default() -> Self {
        Stm32f4Config {
            flash_timing: true,
            serial: "3574364C3034".into(),
            fault: None,
        }
    }
}

/// Why a board could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Stm32f4Error {
    /// The state directory or an image could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The flash image has the wrong size.
    #[error(transparent)]
    Flash(#[from] FlashModelError),
}

/// The board's memory map as the ROM sees it.
struct Memory {
    flash: FlashChip,
    option_bytes: Storage,
}

impl ReadFlash for Memory {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), ReadError> {
        let len = buf.len() as u32;
        if self.flash.contains(addr, len) {
            return self.flash.read(addr, buf).map_err(|_| ReadError { addr });
        }
        let end = OPTION_BYTES + OPTION_BYTES_LEN as u32;
        if addr >= OPTION_BYTES && addr.checked_add(len).is_some_and(|e| e <= end) {
            self.option_bytes.read((addr - OPTION_BYTES) as usize, buf);
            return Ok(());
        }
        Err(ReadError { addr })
    }
}

/// A completion the board will deliver.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Instant,
    outcome: FlashOutcome,
}

/// The virtual STM32F405 in DFU mode.
pub struct Stm32f4 {
    cfg: Stm32f4Config,
    dev: DfuDevice,
    mem: Memory,
    descriptors: Descriptors,
    pending: Option<Pending>,
    clock: BoardClock,
    /// Set when the ROM has left DFU (`:leave`): the device is gone from
    /// the bus until [`Stm32f4::reattach`] (a reset with BOOT0 held).
    left: Option<u32>,
    model_errors: Vec<FlashModelError>,
    reply: Vec<u8>,
    /// DfuSe data blocks received (for the fault switches).
    blocks: u32,
    /// The fault switch fired.
    faulted: bool,
    /// Counts the main flash's operations and cuts power where a campaign
    /// asks (the option bytes, written through OPTCR, are not counted).
    power: PowerSupply,
}

impl Stm32f4 {
    /// A board on the given flash (1 MiB) and option-byte (16 B) storage.
    pub fn new(
        cfg: Stm32f4Config,
        flash: Storage,
        option_bytes: Storage,
    ) -> Result<Self, Stm32f4Error> {
        let mut chip = FlashChip::stm32f4_internal(flash)?;
        if !cfg.flash_timing {
            chip.set_timing(FlashTiming::instant());
        }
        let descriptors = descriptors(&cfg.serial);
        Ok(Stm32f4 {
            dev: DfuDevice::new(device_config(cfg.flash_timing))
                .expect("built-in configuration is valid"),
            mem: Memory {
                flash: chip,
                option_bytes,
            },
            descriptors,
            pending: None,
            clock: BoardClock::wall(),
            left: None,
            model_errors: Vec::new(),
            reply: vec![0; 4096],
            blocks: 0,
            faulted: false,
            power: PowerSupply::always_on(),
            cfg,
        })
    }

    /// A board whose flash lives in `state` (`flash.bin`, `option-bytes.bin`).
    pub fn open(state: &StateDir, cfg: Option<Stm32f4Config>) -> Result<Self, Stm32f4Error> {
        let cfg = match cfg {
            Some(c) => {
                state.save_config(&c)?;
                c
            }
            None => state.load_config()?.unwrap_or_default(),
        };
        let fresh = !state.image_path(OPTION_BYTES_IMAGE)?.exists();
        let flash = state.open_image(FLASH_IMAGE, 1 << 20)?;
        let mut ob = state.open_image(OPTION_BYTES_IMAGE, OPTION_BYTES_LEN as u32)?;
        if fresh {
            ob.write(0, &OPTION_BYTES_DEFAULT)
                .map_err(StateError::from)?;
        }
        Self::new(cfg, flash, ob)
    }

    /// A board in memory, erased, with factory option bytes.
    pub fn in_memory(cfg: Stm32f4Config) -> Self {
        let ob = Storage::from_vec(OPTION_BYTES_DEFAULT.to_vec());
        Self::new(cfg, Storage::in_memory(1 << 20), ob).expect("sizes match")
    }

    /// Runs the board in virtual time from now on, starting at `t`.
    pub fn use_virtual_time(&mut self, t: Instant) {
        self.clock = BoardClock::Virtual(t);
    }

    /// The flash contents (1 MiB from 0x0800_0000).
    pub fn flash(&self) -> &[u8] {
        self.mem.flash.contents()
    }

    /// The option bytes.
    pub fn option_bytes(&self) -> &[u8] {
        self.mem.option_bytes.bytes()
    }

    /// The flash chip (counters, sectors).
    pub fn flash_chip(&self) -> &FlashChip {
        &self.mem.flash
    }

    /// Flash operations the model refused: a device-core bug. Tests assert
    /// this stays empty.
    pub fn model_errors(&self) -> &[FlashModelError] {
        &self.model_errors
    }

    /// Where the ROM jumped when it left DFU mode, if it did.
    pub fn left_to(&self) -> Option<u32> {
        self.left
    }

    /// Resets the board with BOOT0 held: the ROM bootloader enumerates again.
    pub fn reattach(&mut self) {
        self.left = None;
        self.pending = None;
        self.blocks = 0;
        self.faulted = false;
        self.dev = DfuDevice::new(device_config(self.cfg.flash_timing))
            .expect("built-in configuration is valid");
        self.descriptors = descriptors(&self.cfg.serial);
    }

    /// Seeds the generator behind the bits a cut erase or program leaves
    /// (so a power-cut trial replays exactly).
    pub fn seed_flash(&mut self, seed: u64) {
        self.mem.flash.set_rng(SimRng::new(seed));
    }

    /// The power supply (operation counts, cut plan).
    pub fn power(&self) -> &PowerSupply {
        &self.power
    }

    /// Arms a power-cut plan, counting operations from now.
    pub fn arm(&mut self, plan: PowerCutPlan) {
        self.power.power_on(plan);
    }

    /// Restores power with `plan` armed and resets with BOOT0 held: the ROM
    /// enumerates again; an operation in flight is lost.
    pub fn power_cycle_with(&mut self, plan: PowerCutPlan) {
        self.power.power_on(plan);
        self.reattach();
    }

    /// The DFU core.
    pub fn device(&self) -> &DfuDevice {
        &self.dev
    }

    /// Delivers due completions and starts the operations the core asks for.
    fn run_due(&mut self) {
        if !self.power.is_on() {
            return;
        }
        let now = self.now();
        // The next operation starts when the previous one finished, not at
        // the request that happens to observe it: the flash runs back to
        // back while the host waits.
        let mut start = now;
        loop {
            if let Some(p) = self.pending {
                if p.at > now {
                    self.dev.poll(now, &mut self.mem);
                    return;
                }
                self.pending = None;
                self.dev.flash_complete(p.at, p.outcome);
                start = p.at;
            }
            self.dev.poll(start, &mut self.mem);
            let Some(op) = self.dev.poll_flash() else {
                break;
            };
            let outcome = if op.addr() >= OPTION_BYTES {
                // OPTCR writes the option bytes in place; no erase exists.
                match op {
                    FlashOp::Program { addr, data } => {
                        match self
                            .mem
                            .option_bytes
                            .write((addr - OPTION_BYTES) as usize, data)
                        {
                            Ok(()) => Ok(Duration::from_millis(10)),
                            Err(e) => Err(FlashModelError::Storage(e)),
                        }
                    }
                    FlashOp::Erase { .. } => Ok(Duration::ZERO),
                }
            } else {
                match self.power.apply(&mut self.mem.flash, &op) {
                    Ok(OpOutcome::Completed(d)) => Ok(d),
                    Ok(OpOutcome::Interrupted(_) | OpOutcome::PowerOff) => {
                        // The chip lost power with the operation applied in
                        // part or not at all; the ROM stops with it.
                        self.pending = None;
                        return;
                    }
                    Err(e) => Err(e),
                }
            };
            self.pending = Some(match outcome {
                Ok(d) => Pending {
                    at: start + d,
                    outcome: FlashOutcome::Done,
                },
                Err(e) => {
                    self.model_errors.push(e);
                    Pending {
                        at: start,
                        outcome: FlashOutcome::Failed,
                    }
                }
            });
        }
        while let Some(e) = self.dev.poll_event() {
            if let DeviceEvent::Leave { address } = e {
                // The ROM is not manifestation tolerant: it jumps to the
                // application and drops off the bus.
                self.left = Some(address);
            }
        }
    }
}

impl UsbDevice for Stm32f4 {
    fn info(&self) -> DeviceInfo {
        self.descriptors.info(Speed::Full)
    }

    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply {
        self.run_due();
        if !self.power.is_on() {
            return ControlReply::Disconnected;
        }
        if self.faulted {
            return ControlReply::Stall;
        }
        // A DfuSe data block: DNLOAD (class, interface, OUT) with wValue >= 2.
        if setup.request_type == 0x21 && setup.request == 1 && setup.value >= 2 {
            self.blocks += 1;
            match self.cfg.fault {
                Some(UsbFault::StallAfterBlocks { blocks }) if self.blocks > blocks => {
                    self.faulted = true;
                    return ControlReply::Stall;
                }
                Some(UsbFault::VanishAfterBlocks { blocks }) if self.blocks > blocks => {
                    self.faulted = true;
                    self.left = Some(0);
                    return ControlReply::Disconnected;
                }
                _ => {}
            }
        }
        let is_set_interface = setup.request_type == 0x01 && setup.request == 11;
        if !is_set_interface {
            if let Some(r) = self.descriptors.handle(setup, data_out) {
                return r;
            }
        }
        let now = self.now();
        let reply = self
            .dev
            .control(now, setup, data_out, &mut self.reply, &mut self.mem);
        if is_set_interface && reply == Reply::Ack {
            // Keep the standard-request bookkeeping (GET_INTERFACE) in step.
            let _ = self.descriptors.handle(setup, data_out);
        }
        self.run_due();
        match reply {
            Reply::In(n) => ControlReply::Data(self.reply[..n].to_vec()),
            Reply::Ack => ControlReply::Data(Vec::new()),
            Reply::Stall => ControlReply::Stall,
        }
    }

    fn attached(&self) -> bool {
        self.left.is_none() && self.power.is_on()
    }

    /// A bus reset with BOOT0 held: the ROM bootloader starts again.
    fn reset(&mut self) {
        self.reattach();
    }
}

/// The ROM's DFU core. With flash timing off the flash completes at once,
/// so the ROM's bwPollTimeout estimates must say so too, or hosts would
/// sleep for work that is already done.
fn device_config(flash_timing: bool) -> DeviceConfig {
    let mut c = DeviceConfig::stm32f4_rom();
    if !flash_timing {
        c.timing.erase_per_kib = Duration::ZERO;
        c.timing.program_per_kib = Duration::ZERO;
    }
    c
}

/// The descriptors of the STM32F4 system bootloader (as `lsusb -v` shows
/// them for an STM32F4-Discovery in DFU mode).
fn descriptors(serial: &str) -> Descriptors {
    let device = super::st_dfu_device_descriptor(0x2200);
    let cfg = DeviceConfig::stm32f4_rom();
    let mut config = vec![9, 2, 0, 0, 1, 1, 0, 0xC0, 50];
    for (i, _) in cfg.alts.iter().enumerate() {
        // Interface 0, alt i, no endpoints, DFU class in DFU mode, string 4 + i.
        config.extend_from_slice(&[9, 4, 0, i as u8, 0, 0xFE, 0x01, 0x02, 4 + i as u8]);
    }
    // The DFU functional descriptor follows the last alternate setting.
    config.extend_from_slice(&cfg.descriptor().to_bytes());
    let total = config.len() as u16;
    config[2..4].copy_from_slice(&total.to_le_bytes());
    let mut strings = vec!["STMicroelectronics", "STM32  BOOTLOADER", serial];
    strings.extend(cfg.alts.iter().map(|a| a.name));
    Descriptors::new(&device, &config, &strings).expect("built-in descriptors are valid")
}

/// What [`Board::inspect`] tells of the STM32F405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stm32f4Report {
    /// The ROM's DFU state.
    pub dfu_state: &'static str,
    /// Where the ROM jumped when it left DFU mode, if it did.
    pub left_to: Option<u32>,
    /// Sector erases and programs the flash has applied.
    pub erases: u64,
    /// Program operations applied.
    pub programs: u64,
    /// Flash operations the model refused (a device-core bug).
    pub model_errors: usize,
}

impl std::fmt::Display for Stm32f4Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "board:       STM32F405 ROM bootloader (USB DFU, DfuSe)")?;
        match self.left_to {
            Some(a) => writeln!(f, "DFU:         left DFU mode, jumped to {a:#010x}")?,
            None => writeln!(f, "DFU:         {}", self.dfu_state)?,
        }
        writeln!(
            f,
            "flash:       {} erases, {} programs, {} refused by the model",
            self.erases, self.programs, self.model_errors
        )
    }
}

impl Board for Stm32f4 {
    type Inspection = Stm32f4Report;

    fn now(&self) -> Instant {
        self.clock.now()
    }
    fn advance(&mut self, now: Instant) {
        self.clock.advance_to(now);
        self.run_due();
    }
    fn is_powered(&self) -> bool {
        self.power.is_on()
    }
    fn next_wakeup(&self) -> Option<Instant> {
        if !self.power.is_on() {
            return None;
        }
        super::earliest(self.pending.map(|p| p.at), self.dev.poll_at())
    }
    /// A power cycle with BOOT0 held: the ROM bootloader enumerates again,
    /// and an operation in flight is lost.
    fn power_cycle(&mut self) {
        self.power_cycle_with(PowerCutPlan::Never)
    }
    fn inspect(&mut self) -> Stm32f4Report {
        let c = self.mem.flash.counters();
        Stm32f4Report {
            dfu_state: self.dev.state().name(),
            left_to: self.left,
            erases: c.erases,
            programs: c.programs,
            model_errors: self.model_errors.len(),
        }
    }
}
