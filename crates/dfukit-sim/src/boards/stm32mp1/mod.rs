//! A simulated STM32MP157 in serial-boot (USB) mode.
//!
//! Programming an STM32MP1 over USB crosses three firmwares on one cable
//! (reference §5.3). What they do with the DFU requests is the device core
//! [`dfukit_stm32mp::stm32prog::Stm32mpDevice`] (ROM code, TF-A, U-Boot's
//! `stm32prog` with its own flashlayout parser); this board runs it and
//! adds what is board-specific:
//!
//! 1. **ROM code** ([`BootStage::Rom`]): 0483:df11, six alternate settings.
//!    A good FSBL is started: the ROM reports dfuMANIFEST for
//!    `tfa_start_delay`, then TF-A answers.
//! 2. **TF-A** ([`BootStage::TfA`]): keeps the ROM's enumeration (MP15); on
//!    DETACH it leaves the bus and U-Boot enumerates `reenumerate_delay`
//!    later.
//! 3. **U-Boot `stm32prog usb 0`** ([`BootStage::UBootLayout`], then
//!    [`BootStage::UBootProgram`]): first the flashlayout, then, after
//!    DETACH, the device initialisation and a re-enumeration, one
//!    alternate setting per partition, written to the eMMC, SD card, NAND
//!    or NOR models (see `board.rs`).
//!
//! Storage lives in the state directory as image files (see
//! [`EMMC_USER_IMAGE`] and the other constants), readable with ordinary
//! tools. Fault switches ([`Stm32mp1Fault`]) reproduce field failures.
//! Like [`crate::boards::stm32f4::Stm32f4`], the board runs on the wall clock
//! (served over USB/IP) or in virtual time ([`Stm32mp1::use_virtual_time`]).

mod board;
mod config;
pub mod sample;
mod storage;

pub use config::{
    EmmcConfig, NandConfig, NorConfig, SdCardConfig, Stm32mp1Config, Stm32mp1Fault, StorageTiming,
};
pub use dfukit_stm32mp::stm32prog::{
    BootStage, DDR_BASE, FIP_MAX, FSBL_LOAD_ADDR, FSBL_MAX, LAYOUT_MAX, OTP_LEN, PMIC_LEN,
    ROM_TRANSFER_SIZE, UBOOT_LAYOUT_ALT, UBOOT_LOAD_ADDR, UBOOT_TRANSFER_SIZE,
};
pub use storage::BadBlockTable;

use crate::clock::BoardClock;
use crate::links::usb::VirtualUsbDevice;
use crate::state::{EventLog, LogTime, StateDir, StateError};
use board::{Devices, Emmc, SimBoard};
use dfukit_core::Board;
use dfukit_core::Instant;
use dfukit_stm32mp::phase::{self, PhaseRecord};
use dfukit_stm32mp::stm32prog::{AfterDetach, Stm32mpDevice};
use dfukit_usbdfu::device::stream::StreamDevice;
use dfukit_usbdfu::device::{DeviceEvent, Reply};
use dfukit_usbip::{ControlReply, Descriptors, DeviceInfo, SetupPacket, Speed, UsbDevice};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use storage::{ImageFile, Nand, Nor};

/// eMMC user area image.
pub const EMMC_USER_IMAGE: &str = "emmc-user.img";
/// eMMC boot partition 1 image.
pub const EMMC_BOOT1_IMAGE: &str = "emmc-boot1.img";
/// eMMC boot partition 2 image.
pub const EMMC_BOOT2_IMAGE: &str = "emmc-boot2.img";
/// eMMC EXT_CSD fields stm32prog sets (boot partition, boot bus), JSON.
pub const EMMC_EXT_CSD_FILE: &str = "emmc-ext-csd.json";
/// SD card image.
pub const SDCARD_IMAGE: &str = "sdcard.img";
/// NAND image (erased blocks are holes; see `nand-written.json`).
pub const NAND_IMAGE: &str = "nand.img";
/// Erase blocks of `nand.img` that hold data (the others read 0xFF).
pub const NAND_WRITTEN_FILE: &str = "nand-written.json";
/// NAND bad-block table ([`BadBlockTable`]), JSON.
pub const NAND_BBT_FILE: &str = "nand-bbt.json";
/// NOR image (erased sectors are holes; see `nor-written.json`).
pub const NOR_IMAGE: &str = "nor.img";
/// Sectors of `nor.img` that hold data (the others read 0xFF).
pub const NOR_WRITTEN_FILE: &str = "nor-written.json";
/// OTP fuse words (1024 bytes).
pub const OTP_IMAGE: &str = "otp.bin";
/// PMIC NVM (8 bytes).
pub const PMIC_IMAGE: &str = "pmic-nvm.bin";

/// Product string of the ROM code and TF-A.
pub const ROM_PRODUCT: &str = "DFU in HS Mode @Device ID /0x500, @Revision ID /0x2000";
/// Product string of U-Boot's DFU gadget.
pub const UBOOT_PRODUCT: &str =
    "USB download gadget@Device ID /0x500, @Revision ID /0x2000, @Name /STM32MP157F Rev.Z,";

/// eMMC EXT_CSD fields set by stm32prog, stored in [`EMMC_EXT_CSD_FILE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtCsd {
    /// PARTITION_CONFIG (byte 179): boot ack (bit 6) and the boot partition
    /// enabled (bits 5..3: 1 = boot1, 2 = boot2).
    pub partition_config: u8,
    /// BOOT_BUS_CONDITIONS (byte 177); stm32prog writes 0 (1-bit SDR bus,
    /// the ROM code's setting).
    pub boot_bus_conditions: u8,
}

impl ExtCsd {
    /// The boot partition enabled (1, 2), or 0.
    pub fn boot_partition(&self) -> u8 {
        (self.partition_config >> 3) & 7
    }
}

/// The USB side of one enumeration.
struct UsbSide {
    descriptors: Descriptors,
    dev: StreamDevice,
}

/// Why a board could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Stm32mp1Error {
    /// The state directory could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// A storage image could not be created or opened.
    #[error("board storage {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },
}

/// The simulated STM32MP157. See the module documentation.
pub struct Stm32mp1 {
    m: Stm32mpDevice<SimBoard>,
    usb: Option<UsbSide>,
    /// The next enumeration: when, and as what.
    enumerate_at: Option<(Instant, BootStage)>,
    /// When the FSBL the ROM accepted starts answering.
    handover: Option<Instant>,
    clock: BoardClock,
    log: Option<EventLog>,
    root: PathBuf,
    reply: Vec<u8>,
    /// The identity of the last enumeration, reported while off the bus
    /// for good (booted, lost).
    last_info: DeviceInfo,
}

impl Stm32mp1 {
    /// A board whose storage lives in `state`; `cfg` is saved as
    /// `board.json`, or read from it when `None` (defaults if missing).
    /// The board starts in the ROM code, attached.
    pub fn open(state: &StateDir, cfg: Option<Stm32mp1Config>) -> Result<Self, Stm32mp1Error> {
        let cfg = match cfg {
            Some(c) => {
                state.save_config(&c)?;
                c
            }
            None => state.load_config()?.unwrap_or_default(),
        };
        let root = state.path().to_path_buf();
        let timing = cfg.effective_timing();
        let p = |n: &str| root.join(n);
        let io_err = |n: &str| {
            let path = root.join(n);
            move |source| Stm32mp1Error::Io { path, source }
        };
        let emmc = match &cfg.emmc {
            Some(e) => {
                let ext_csd_path = p(EMMC_EXT_CSD_FILE);
                let ext_csd = std::fs::read(&ext_csd_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                Some(Emmc {
                    user: ImageFile::open(&p(EMMC_USER_IMAGE), e.size)
                        .map_err(io_err(EMMC_USER_IMAGE))?,
                    boot: [
                        ImageFile::open(&p(EMMC_BOOT1_IMAGE), e.boot_size)
                            .map_err(io_err(EMMC_BOOT1_IMAGE))?,
                        ImageFile::open(&p(EMMC_BOOT2_IMAGE), e.boot_size)
                            .map_err(io_err(EMMC_BOOT2_IMAGE))?,
                    ],
                    ext_csd,
                    ext_csd_path,
                })
            }
            None => None,
        };
        let sd = match &cfg.sdcard {
            Some(s) => {
                Some(ImageFile::open(&p(SDCARD_IMAGE), s.size).map_err(io_err(SDCARD_IMAGE))?)
            }
            None => None,
        };
        let fail_after = match cfg.fault {
            Some(Stm32mp1Fault::NandEraseFailure { after }) => Some(after),
            _ => None,
        };
        let nand = match &cfg.nand {
            Some(n) => Some(
                Nand::open(
                    &p(NAND_IMAGE),
                    p(NAND_WRITTEN_FILE),
                    p(NAND_BBT_FILE),
                    n.size,
                    n.page_size,
                    n.block_size,
                    &n.factory_bad_blocks,
                    fail_after,
                    timing,
                )
                .map_err(io_err(NAND_IMAGE))?,
            ),
            None => None,
        };
        let nor = match &cfg.nor {
            Some(n) => Some(
                Nor::open(
                    &p(NOR_IMAGE),
                    p(NOR_WRITTEN_FILE),
                    n.size,
                    n.sector_size,
                    timing,
                )
                .map_err(io_err(NOR_IMAGE))?,
            ),
            None => None,
        };
        let otp = ImageFile::open(&p(OTP_IMAGE), OTP_LEN as u64).map_err(io_err(OTP_IMAGE))?;
        let pmic = ImageFile::open(&p(PMIC_IMAGE), PMIC_LEN as u64).map_err(io_err(PMIC_IMAGE))?;
        let log = state.event_log()?;
        let devices = Devices {
            emmc,
            sd,
            nand,
            nor,
            otp,
            pmic,
        };
        let mut board = Stm32mp1 {
            m: Stm32mpDevice::new(SimBoard::new(cfg, devices)),
            usb: None,
            enumerate_at: None,
            handover: None,
            clock: BoardClock::wall(),
            log: Some(log),
            root,
            reply: vec![0; UBOOT_TRANSFER_SIZE as usize],
            last_info: DeviceInfo::default(),
        };
        board.enumerate(BootStage::Rom);
        Ok(board)
    }

    /// Runs the board in virtual time from now on, starting at `t`.
    pub fn use_virtual_time(&mut self, t: Instant) {
        self.clock = BoardClock::Virtual(t);
        self.run_due();
    }

    /// The firmware running.
    pub fn stage(&self) -> BootStage {
        self.m.stage()
    }

    /// U-Boot's current phase (partition Id, 0xFE END, 0xFF error).
    pub fn phase(&self) -> u8 {
        self.m.phase()
    }

    /// The phase record 0xF1 would return now.
    pub fn phase_record(&self) -> PhaseRecord {
        let mut b = [0u8; phase::RECORD_HEADER_LEN + 255];
        let n = self.m.phase_record(&mut b);
        PhaseRecord::decode(&b[..n]).expect("the device writes whole records")
    }

    /// The message of phase 0xFF, if U-Boot reported an error.
    pub fn phase_error(&self) -> Option<&str> {
        self.m.error()
    }

    /// Operations the storage models refused (e.g. a NAND page programmed
    /// twice without an erase): bugs in the board's logic. Tests assert
    /// this stays empty.
    pub fn model_errors(&self) -> &[String] {
        &self.m.board().model_errors
    }

    /// Path of a file in the state directory (e.g. [`EMMC_USER_IMAGE`]).
    pub fn image_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The state directory.
    pub fn state_path(&self) -> &Path {
        &self.root
    }

    /// NAND bad blocks, factory and run-time (empty without NAND).
    pub fn nand_bad_blocks(&self) -> Vec<u64> {
        self.m
            .board()
            .dev
            .nand
            .as_ref()
            .map(|n| n.bad_blocks())
            .unwrap_or_default()
    }

    /// `len` bytes of the NAND at raw offset `off`, bad blocks included,
    /// erased bytes as 0xFF (the image file holds zeros there).
    pub fn read_nand(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let nand = self
            .m
            .board()
            .dev
            .nand
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the board has no NAND"))?;
        let mut buf = vec![0u8; len];
        nand.read_raw(off, &mut buf)?;
        Ok(buf)
    }

    /// The eMMC EXT_CSD fields stm32prog set (None without eMMC).
    pub fn ext_csd(&self) -> Option<ExtCsd> {
        self.m.board().dev.emmc.as_ref().map(|e| e.ext_csd)
    }

    /// The configuration.
    pub fn config(&self) -> &Stm32mp1Config {
        &self.m.board().cfg
    }

    /// The alternate-setting names of the current enumeration (empty off
    /// the bus).
    pub fn alt_names(&self) -> Vec<String> {
        self.alt_table(self.m.stage())
    }

    /// The name of each alt a stage enumerates with.
    fn alt_table(&self, stage: BootStage) -> Vec<String> {
        self.m
            .alt_names(stage)
            .map(|(_, n)| n.to_string())
            .collect()
    }

    fn usb_side(&self, stage: BootStage) -> UsbSide {
        let dev = stage.dfu_stack();
        let product = if stage.is_uboot() {
            UBOOT_PRODUCT
        } else {
            ROM_PRODUCT
        };
        let names = self.alt_table(stage);
        let descriptors = descriptors(product, &self.m.board().cfg.serial, &names, &dev);
        UsbSide { descriptors, dev }
    }

    /// Comes onto the bus as `stage` (the ROM code after a reset).
    fn enumerate(&mut self, stage: BootStage) {
        if stage == BootStage::Rom {
            // A reset: everything in RAM is gone, storage stays.
            self.m.board_mut().ram.clear();
            self.handover = None;
        }
        self.m.enter(stage);
        let usb = self.usb_side(stage);
        self.last_info = usb.descriptors.info(Speed::High);
        self.usb = Some(usb);
        self.enumerate_at = None;
        let what = match stage {
            BootStage::Rom => "ROM code enumerated (serial boot)",
            BootStage::UBootLayout => "U-Boot stm32prog enumerated: waiting for the flashlayout",
            BootStage::UBootProgram => "U-Boot stm32prog re-enumerated with the partitions",
            _ => "enumerated",
        };
        self.log_line(what);
    }

    fn log_line(&mut self, line: &str) {
        self.m.board_mut().log_lines.push(line.to_string());
    }

    /// Leaves the bus; `next` enumerates after `after`.
    fn leave(&mut self, next: Option<BootStage>, after: Duration) {
        self.usb = None;
        self.m.board_mut().flush_storage();
        self.enumerate_at = next.map(|s| (self.now() + after, s));
    }

    /// Applies what is due at the current time.
    fn run_due(&mut self) {
        let now = self.now();
        if self.handover.is_some_and(|t| now >= t) {
            self.handover = None;
            self.m.board_mut().ram.clear();
            if self.m.board().cfg.fault == Some(Stm32mp1Fault::TfaNoUsb) {
                self.m.enter(BootStage::Hung);
                self.log_line("TF-A started but stopped servicing USB (fault tfa-no-usb)");
            } else {
                // MP15: TF-A keeps the ROM's enumeration and descriptors;
                // its DFU stack starts afresh in dfuIDLE.
                self.m.enter(BootStage::TfA);
                if let Some(u) = self.usb.as_mut() {
                    u.dev = BootStage::TfA.dfu_stack();
                }
                self.log_line("TF-A answering on the ROM's enumeration");
            }
        }
        if let Some((t, stage)) = self.enumerate_at {
            if now >= t {
                self.enumerate(stage);
            }
        }
        self.flush_log();
    }

    fn flush_log(&mut self) {
        if self.m.board().log_lines.is_empty() {
            return;
        }
        let time = match self.clock {
            BoardClock::Wall(_) => LogTime::wall_now(),
            BoardClock::Virtual(t) => LogTime::Virtual(t),
        };
        for line in std::mem::take(&mut self.m.board_mut().log_lines) {
            if let Some(log) = self.log.as_mut() {
                // The log is for people; a full disk must not stop the board.
                let _ = log.append(time, &line);
            }
        }
    }

    /// DETACH: what the firmware does, then the board's share (the
    /// re-enumeration delay, the fault that keeps U-Boot off the bus).
    fn on_detach(&mut self) {
        let delay = self.m.board().cfg.reenumerate_delay();
        match self.m.detach() {
            AfterDetach::Stay => {}
            AfterDetach::Reenumerate {
                next: BootStage::UBootProgram,
                ..
            } if self.m.board().cfg.fault == Some(Stm32mp1Fault::UbootNoReconnect) => {
                self.log_line(
                    "U-Boot left the bus and does not reconnect (fault uboot-no-reconnect)",
                );
                self.m.enter(BootStage::Lost);
                self.leave(None, Duration::ZERO);
            }
            AfterDetach::Reenumerate { next, work } => self.leave(Some(next), delay + work),
            AfterDetach::Boot => self.leave(None, Duration::ZERO),
        }
    }
}

impl UsbDevice for Stm32mp1 {
    fn info(&self) -> DeviceInfo {
        match (&self.usb, self.enumerate_at) {
            (Some(u), _) => u.descriptors.info(Speed::High),
            (None, Some((_, stage))) => self.usb_side(stage).descriptors.info(Speed::High),
            (None, None) => self.last_info.clone(),
        }
    }

    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply {
        self.run_due();
        if self.m.stage() == BootStage::Hung {
            return ControlReply::NoResponse;
        }
        let now = self.now();
        let Some(usb) = self.usb.as_mut() else {
            return ControlReply::Disconnected;
        };
        let is_set_interface = setup.request_type == 0x01 && setup.request == 11;
        if !is_set_interface {
            if let Some(r) = usb.descriptors.handle(setup, data_out) {
                return r;
            }
        }
        let want = usize::from(setup.length);
        if self.reply.len() < want {
            self.reply.resize(want, 0);
        }
        let reply = usb
            .dev
            .control(now, setup, data_out, &mut self.reply, &mut self.m);
        if is_set_interface && reply == Reply::Ack {
            // Keep the standard-request bookkeeping (GET_INTERFACE) in step.
            let _ = usb.descriptors.handle(setup, data_out);
        }
        if let Some(d) = self.m.take_fsbl_start() {
            self.handover = Some(now + d);
        }
        let reply_at = usb.dev.reply_at();
        if self.clock.is_wall() && reply_at > now {
            // Served over USB/IP: hold the reply as the busy device NAKs.
            std::thread::sleep(reply_at.saturating_duration_since(now));
        }
        let mut detach = false;
        while let Some(e) = usb.dev.poll_event() {
            detach |= matches!(e, DeviceEvent::Detach { .. });
        }
        let out = match reply {
            Reply::In(n) => ControlReply::Data(self.reply[..n].to_vec()),
            Reply::Ack => ControlReply::ack(),
            Reply::Stall => ControlReply::Stall,
        };
        if detach {
            self.on_detach();
        }
        self.flush_log();
        out
    }

    fn attached(&self) -> bool {
        self.usb.is_some() || self.enumerate_at.is_some_and(|(t, _)| self.now() >= t)
    }

    /// A USB bus reset: the DFU state machine returns to dfuIDLE, alt 0.
    fn reset(&mut self) {
        if let Some(u) = self.usb.as_mut() {
            u.dev.usb_reset();
            u.descriptors.reset();
        }
    }
}

/// What [`Board::inspect`] tells of the STM32MP157.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stm32mp1Report {
    /// The firmware running.
    pub stage: BootStage,
    /// U-Boot's current phase (partition Id, 0xFE END, 0xFF error).
    pub phase: u8,
    /// The message of phase 0xFF, if U-Boot reported one.
    pub error: Option<String>,
    /// The alternate settings enumerated now (none while off the bus).
    pub alts: Vec<String>,
}

impl std::fmt::Display for Stm32mp1Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "board:       STM32MP157 in USB boot")?;
        writeln!(f, "firmware:    {:?}", self.stage)?;
        writeln!(f, "phase:       {:#04x}", self.phase)?;
        if let Some(e) = &self.error {
            writeln!(f, "error:       {e}")?;
        }
        writeln!(f, "alternates:  {}", self.alts.join(", "))
    }
}

impl Board for Stm32mp1 {
    type Inspection = Stm32mp1Report;

    board_on_board_clock!();
    fn next_wakeup(&self) -> Option<Instant> {
        super::earliest(self.handover, self.enumerate_at.map(|(t, _)| t))
    }
    /// A power cycle in USB boot: RAM is lost, storage kept, and the ROM
    /// code enumerates again.
    fn power_cycle(&mut self) {
        self.handover = None;
        self.enumerate_at = None;
        self.m.board_mut().flush_storage();
        self.m.board_mut().ram.clear();
        self.m.enter(BootStage::Rom);
        self.enumerate(BootStage::Rom);
    }
    fn inspect(&mut self) -> Stm32mp1Report {
        Stm32mp1Report {
            stage: self.stage(),
            phase: self.phase(),
            error: self.phase_error().map(str::to_string),
            alts: self.alt_names(),
        }
    }
}

impl VirtualUsbDevice for Stm32mp1 {
    fn reply_at(&self) -> Option<Instant> {
        self.usb.as_ref().map(|u| u.dev.reply_at())
    }
}

/// Device, configuration and string descriptors of one enumeration: one
/// DFU interface (class 0xFE/0x01, protocol 2) with an alt per name.
fn descriptors(product: &str, serial: &str, alts: &[String], dev: &StreamDevice) -> Descriptors {
    let device = super::st_dfu_device_descriptor(0x0200);
    let mut config = vec![9, 2, 0, 0, 1, 1, 0, 0xC0, 50];
    for i in 0..alts.len() {
        let string = u8::try_from(4 + i).unwrap_or(0);
        config.extend_from_slice(&[9, 4, 0, i as u8, 0, 0xFE, 0x01, 0x02, string]);
    }
    config.extend_from_slice(&dev.functional_descriptor().to_bytes());
    let total = config.len() as u16;
    config[2..4].copy_from_slice(&total.to_le_bytes());
    let mut strings = vec!["STMicroelectronics", product, serial];
    strings.extend(alts.iter().map(String::as_str));
    Descriptors::new(&device, &config, &strings).expect("built-in descriptors are valid")
}
