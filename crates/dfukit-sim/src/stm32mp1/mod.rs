//! A simulated STM32MP157 in serial-boot (USB) mode.
//!
//! Programming an STM32MP1 over USB crosses three firmwares on one cable
//! (reference §5.3), and the board walks through them the same way:
//!
//! 1. **ROM code** ([`Stage::Rom`]): 0483:df11, six alternate settings,
//!    accepts the FSBL (TF-A) into SYSRAM on alt 1 and checks its STM32
//!    header at manifestation. A good image is started: the ROM reports
//!    dfuMANIFEST for `tfa_start_delay`, then TF-A answers.
//! 2. **TF-A** ([`Stage::TfA`]): keeps the ROM's enumeration (MP15), takes
//!    the FIP into DDR on alt 3, checks its ToC header, then asks for DETACH
//!    through the phase record; on DETACH it leaves the bus and U-Boot
//!    enumerates `reenumerate_delay` later.
//! 3. **U-Boot `stm32prog usb 0`** ([`Stage::UBootLayout`], then
//!    [`Stage::UBootProgram`]): first the flashlayout, then, after DETACH
//!    and a re-enumeration, one alternate setting per partition, written to
//!    the eMMC, SD card, NAND or NOR models (see `uboot.rs`).
//!
//! Storage lives in the state directory as image files (see
//! [`EMMC_USER_IMAGE`] and the other constants), readable with ordinary
//! tools. Fault switches ([`Stm32mp1Fault`]) reproduce field failures.
//! Like [`crate::stm32f4::Stm32f4`], the board runs on the wall clock
//! (served over USB/IP) or in virtual time ([`Stm32mp1::use_virtual_time`]).

mod config;
pub mod sample;
mod storage;
mod uboot;

pub use config::{
    EmmcConfig, NandConfig, NorConfig, SdCardConfig, Stm32mp1Config, Stm32mp1Fault, StorageTiming,
};
pub use storage::BadBlockTable;
pub use uboot::{LAYOUT_MAX, OTP_LEN, PMIC_LEN, UBOOT_LOAD_ADDR};

use crate::clock::BoardClock;
use crate::state::{EventLog, LogTime, StateDir, StateError};
use crate::usb_link::VirtualUsbDevice;
use dfukit_core::Instant;
use dfukit_stm32mp::image;
use dfukit_stm32mp::phase::{
    self, PhaseRecord, FIP_TOC_HEADER, ID_FLASHLAYOUT, ID_FSBL, ID_SSBL, NO_ADDRESS,
};
use dfukit_usbdfu::device::stream::{StreamBackend, StreamDevice};
use dfukit_usbdfu::device::{DeviceEvent, Dialect, Reply};
use dfukit_usbdfu::wire::Status;
use dfukit_usbip::descriptors::DeviceDescriptor;
use dfukit_usbip::{ControlReply, Descriptors, DeviceInfo, SetupPacket, Speed, UsbDevice};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use storage::{ImageFile, Nand, Nor};
use uboot::{Prog, VIRTUAL_ALTS};

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

const ROM_ALT_IDS: [u8; 6] = [0x00, ID_FSBL, 0x02, ID_SSBL, 0x04, phase::ID_CMD];
/// U-Boot's first alternate setting.
pub const UBOOT_LAYOUT_ALT: &str = "@FlashLayout/0x00/1*256Ke";
/// Product string of the ROM code and TF-A.
pub const ROM_PRODUCT: &str = "DFU in HS Mode @Device ID /0x500, @Revision ID /0x2000";
/// Product string of U-Boot's DFU gadget.
pub const UBOOT_PRODUCT: &str =
    "USB download gadget@Device ID /0x500, @Revision ID /0x2000, @Name /STM32MP157F Rev.Z,";
/// Where the ROM loads the FSBL (header included) in SYSRAM.
pub const FSBL_LOAD_ADDR: u32 = 0x2FFC_2400;
/// Largest FSBL the ROM accepts: the 256 KiB of SYSRAM.
pub const FSBL_MAX: usize = 256 * 1024;
/// Where TF-A loads the FIP: the start of DDR.
pub const DDR_BASE: u32 = 0xC000_0000;
/// Largest FIP TF-A accepts (its `@Partition3 /0x03/1*16Me` alt).
pub const FIP_MAX: usize = 16 * 1024 * 1024;

/// The ROM and TF-A speak ST's DFU stack: plain DFU, manifestation
/// tolerant (the host reads the phase after each image), CLRSTATUS outside
/// dfuERROR is an error.
const ROM_DIALECT: Dialect = Dialect {
    name: "STM32MP ROM/TF-A",
    ..Dialect::TF_A
};
/// wTransferSize of the ROM code and TF-A (one enumeration on MP15).
pub const ROM_TRANSFER_SIZE: u16 = 1024;
/// wTransferSize of U-Boot's DFU gadget.
pub const UBOOT_TRANSFER_SIZE: u16 = 4096;

/// Which firmware is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The ROM code waits for the FSBL.
    Rom,
    /// TF-A waits for the FIP.
    TfA,
    /// U-Boot's first enumeration: waits for the flashlayout.
    UBootLayout,
    /// U-Boot's second enumeration: one alt per partition.
    UBootProgram,
    /// Programming ended and the board booted from its storage.
    Done,
    /// TF-A hung with USB still clocked (fault [`Stm32mp1Fault::TfaNoUsb`]).
    Hung,
    /// U-Boot left the bus and never came back
    /// ([`Stm32mp1Fault::UbootNoReconnect`]).
    Lost,
}

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

/// Which MMC image a partition lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MmcTarget {
    Sd,
    EmmcUser,
    Boot(usize),
}

pub(crate) struct Emmc {
    user: ImageFile,
    boot: [ImageFile; 2],
    ext_csd: ExtCsd,
    ext_csd_path: PathBuf,
}

impl Emmc {
    /// What `stm32prog_end_phase` does after writing a boot partition:
    /// `mmc bootbus <dev> 0 0 0; mmc partconf <dev> 1 <part> 0`, i.e. the
    /// default boot bus and booting from this partition with boot
    /// acknowledge (so the last boot partition written is the one enabled).
    pub(crate) fn select_boot(&mut self, part: u8) -> io::Result<()> {
        self.ext_csd = ExtCsd {
            partition_config: (1 << 6) | (part << 3),
            boot_bus_conditions: 0,
        };
        let text = serde_json::to_vec_pretty(&self.ext_csd).map_err(io::Error::other)?;
        std::fs::write(&self.ext_csd_path, text)
    }
}

pub(crate) struct Devices {
    pub(crate) emmc: Option<Emmc>,
    pub(crate) sd: Option<ImageFile>,
    pub(crate) nand: Option<Nand>,
    pub(crate) nor: Option<Nor>,
    pub(crate) otp: ImageFile,
    pub(crate) pmic: ImageFile,
}

impl Devices {
    pub(crate) fn mmc(&mut self, t: MmcTarget) -> Option<&mut ImageFile> {
        match t {
            MmcTarget::Sd => self.sd.as_mut(),
            MmcTarget::EmmcUser => self.emmc.as_mut().map(|e| &mut e.user),
            MmcTarget::Boot(i) => self.emmc.as_mut().map(|e| &mut e.boot[i]),
        }
    }
}

/// Everything the alternate settings reach: the [`StreamBackend`].
pub(crate) struct Machine {
    stage: Stage,
    now: Instant,
    pub(crate) cfg: Stm32mp1Config,
    pub(crate) timing: StorageTiming,
    pub(crate) dev: Devices,
    /// SYSRAM (FSBL), DDR (FIP) or U-Boot's load buffer (layout).
    pub(crate) ram: Vec<u8>,
    fip_ok: bool,
    pub(crate) prog: Prog,
    /// Partition Id of each alternate setting.
    alts: Vec<u8>,
    pub(crate) model_errors: Vec<String>,
    log_lines: Vec<String>,
    /// When the FSBL the ROM accepted starts answering.
    handover: Option<Instant>,
}

impl Machine {
    pub(crate) fn log(&mut self, line: String) {
        self.log_lines.push(line);
    }

    /// Saves the NAND and NOR programmed-unit lists; a failure is logged
    /// (the images themselves are written through already).
    pub(crate) fn flush_storage(&mut self) {
        let mut failed = Vec::new();
        if let Some(Err(e)) = self.dev.nand.as_mut().map(|n| n.flush()) {
            failed.push(format!("cannot save {NAND_WRITTEN_FILE}: {e}"));
        }
        if let Some(Err(e)) = self.dev.nor.as_mut().map(|n| n.flush()) {
            failed.push(format!("cannot save {NOR_WRITTEN_FILE}: {e}"));
        }
        self.log_lines.extend(failed);
    }

    fn ram_write(&mut self, offset: u64, data: &[u8], max: usize) -> Result<Duration, Status> {
        let end = offset as usize + data.len();
        if end > max {
            self.log(format!(
                "{:?}: image larger than the {max} bytes of RAM it is loaded to",
                self.stage
            ));
            return Err(Status::ErrAddress);
        }
        self.ram.truncate(offset as usize);
        self.ram.extend_from_slice(data);
        Ok(Duration::ZERO)
    }

    fn record(&self) -> PhaseRecord {
        match self.stage {
            Stage::Rom => PhaseRecord::new(ID_FSBL, FSBL_LOAD_ADDR, 0),
            Stage::TfA if self.fip_ok => {
                let mut r = PhaseRecord::new(ID_FLASHLAYOUT, NO_ADDRESS, 0);
                r.extra = vec![1];
                r
            }
            Stage::TfA => PhaseRecord::new(ID_SSBL, DDR_BASE, 0),
            Stage::UBootLayout => self.prog.record(true),
            _ => self.prog.record(false),
        }
    }

    fn rom_manifest(&mut self, id: u8) -> Result<Duration, Status> {
        match (self.stage, id) {
            (Stage::Rom, ID_FSBL) => match image::verify(&self.ram) {
                Ok(v) => {
                    self.log(format!(
                        "ROM: FSBL accepted ({} bytes, header v{}, entry {:#010x}); starting it",
                        self.ram.len(),
                        v.header.major(),
                        v.header.entry_point
                    ));
                    let d = self.cfg.tfa_start_delay();
                    self.handover = Some(self.now + d);
                    Ok(d)
                }
                Err(e) => {
                    self.log(format!("ROM: FSBL rejected: {e}"));
                    Err(Status::ErrVerify)
                }
            },
            (Stage::TfA, ID_SSBL) => {
                let toc = self
                    .ram
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                if toc == Some(FIP_TOC_HEADER) {
                    self.fip_ok = true;
                    self.log(format!("TF-A: FIP received ({} bytes)", self.ram.len()));
                    Ok(Duration::ZERO)
                } else {
                    self.log("TF-A: FIP rejected: no ToC header".into());
                    Err(Status::ErrVerify)
                }
            }
            (_, phase::ID_CMD) => Ok(Duration::ZERO),
            _ => Err(Status::ErrTarget),
        }
    }
}

impl StreamBackend for Machine {
    fn alt_count(&self) -> u8 {
        self.alts.len().min(255) as u8
    }

    fn write(&mut self, alt: u8, offset: u64, data: &[u8]) -> Result<Duration, Status> {
        let id = *self.alts.get(alt as usize).ok_or(Status::ErrTarget)?;
        match (self.stage, id) {
            (Stage::Rom, ID_FSBL) => self.ram_write(offset, data, FSBL_MAX),
            (Stage::TfA, ID_SSBL) => self.ram_write(offset, data, FIP_MAX),
            (Stage::UBootLayout, ID_FLASHLAYOUT) => self.ram_write(offset, data, LAYOUT_MAX),
            (Stage::UBootLayout | Stage::UBootProgram, phase::ID_CMD) => self.uboot_command(data),
            (Stage::UBootLayout | Stage::UBootProgram, phase::ID_OTP) => {
                self.otp_write(offset, data)
            }
            (Stage::UBootLayout | Stage::UBootProgram, phase::ID_PMIC) => {
                self.pmic_write(offset, data)
            }
            (Stage::UBootProgram, _) if (alt as usize) < self.prog.rows.len() => {
                self.uboot_write(alt as usize, offset, data)
            }
            _ => Err(Status::ErrTarget),
        }
    }

    fn manifest(&mut self, alt: u8, total: u64) -> Result<Duration, Status> {
        let id = *self.alts.get(alt as usize).ok_or(Status::ErrTarget)?;
        match self.stage {
            Stage::Rom | Stage::TfA => self.rom_manifest(id),
            Stage::UBootLayout if id == ID_FLASHLAYOUT => {
                self.uboot_layout_manifest();
                Ok(Duration::ZERO)
            }
            Stage::UBootProgram if (alt as usize) < self.prog.rows.len() => {
                self.uboot_manifest(alt as usize, total)
            }
            Stage::UBootLayout | Stage::UBootProgram => Ok(Duration::ZERO),
            _ => Err(Status::ErrTarget),
        }
    }

    fn read(&mut self, alt: u8, offset: u64, buf: &mut [u8]) -> Result<usize, Status> {
        let id = *self.alts.get(alt as usize).ok_or(Status::ErrTarget)?;
        let uboot = matches!(self.stage, Stage::UBootLayout | Stage::UBootProgram);
        match id {
            phase::ID_CMD => {
                // Block 0 holds the record; later blocks are EOF.
                if offset > 0 {
                    return Ok(0);
                }
                let b = self.record().encode();
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                Ok(n)
            }
            phase::ID_OTP if uboot => self.otp_read(offset, buf),
            phase::ID_PMIC if uboot => self.pmic_read(offset, buf),
            _ if self.stage == Stage::UBootProgram && (alt as usize) < self.prog.rows.len() => {
                self.uboot_read(alt as usize, offset, buf)
            }
            _ => Err(Status::ErrTarget),
        }
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
    m: Machine,
    usb: Option<UsbSide>,
    /// The next enumeration: when, and as what.
    enumerate_at: Option<(Instant, Stage)>,
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
        let mut board = Stm32mp1 {
            m: Machine {
                stage: Stage::Rom,
                now: Instant::ZERO,
                timing,
                dev: Devices {
                    emmc,
                    sd,
                    nand,
                    nor,
                    otp,
                    pmic,
                },
                ram: Vec::new(),
                fip_ok: false,
                prog: Prog::default(),
                alts: Vec::new(),
                model_errors: Vec::new(),
                log_lines: Vec::new(),
                handover: None,
                cfg,
            },
            usb: None,
            enumerate_at: None,
            clock: BoardClock::wall(),
            log: Some(log),
            root,
            reply: vec![0; UBOOT_TRANSFER_SIZE as usize],
            last_info: DeviceInfo::default(),
        };
        board.enumerate(Stage::Rom);
        Ok(board)
    }

    /// Runs the board in virtual time from now on, starting at `t`.
    pub fn use_virtual_time(&mut self, t: Instant) {
        self.clock = BoardClock::Virtual(t);
        self.advance();
    }

    /// Advances virtual time (no effect in wall-clock mode) and applies
    /// what is due: the ROM → TF-A hand-over, a re-enumeration.
    pub fn set_time(&mut self, t: Instant) {
        self.clock.advance_to(t);
        self.advance();
    }

    /// Board time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// When the board next changes by itself.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match (self.m.handover, self.enumerate_at.map(|(t, _)| t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The firmware running.
    pub fn stage(&self) -> Stage {
        self.m.stage
    }

    /// U-Boot's current phase (partition Id, 0xFE END, 0xFF error).
    pub fn phase(&self) -> u8 {
        self.m.prog.phase
    }

    /// The phase record 0xF1 would return now.
    pub fn phase_record(&self) -> PhaseRecord {
        self.m.record()
    }

    /// The message of phase 0xFF, if U-Boot reported an error.
    pub fn phase_error(&self) -> Option<&str> {
        self.m.prog.error.as_deref()
    }

    /// Operations the storage models refused (e.g. a NAND page programmed
    /// twice without an erase): bugs in the board's logic. Tests assert
    /// this stays empty.
    pub fn model_errors(&self) -> &[String] {
        &self.m.model_errors
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
        self.m.dev.emmc.as_ref().map(|e| e.ext_csd)
    }

    /// The configuration.
    pub fn config(&self) -> &Stm32mp1Config {
        &self.m.cfg
    }

    /// The alternate-setting names of the current enumeration (empty off
    /// the bus).
    pub fn alt_names(&self) -> Vec<String> {
        self.alt_table(self.m.stage)
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    /// (Id, name) of each alt a stage enumerates with.
    fn alt_table(&self, stage: Stage) -> Vec<(u8, String)> {
        match stage {
            Stage::Rom | Stage::TfA | Stage::Hung => ROM_ALT_IDS
                .iter()
                .zip(phase::ROM_ALTS)
                .map(|(&i, n)| (i, n.to_string()))
                .collect(),
            Stage::UBootLayout => std::iter::once((ID_FLASHLAYOUT, UBOOT_LAYOUT_ALT.to_string()))
                .chain(VIRTUAL_ALTS.iter().map(|&(i, n)| (i, n.to_string())))
                .collect(),
            Stage::UBootProgram => self
                .m
                .prog
                .rows
                .iter()
                .map(|r| (r.id, r.alt_name()))
                .chain(VIRTUAL_ALTS.iter().map(|&(i, n)| (i, n.to_string())))
                .collect(),
            Stage::Done | Stage::Lost => Vec::new(),
        }
    }

    fn usb_side(&self, stage: Stage) -> UsbSide {
        let uboot = matches!(stage, Stage::UBootLayout | Stage::UBootProgram);
        let dev = if uboot {
            let mut d = StreamDevice::new(Dialect::U_BOOT, 0, UBOOT_TRANSFER_SIZE, 255);
            // f_dfu writes each block in the request's completion handler.
            d.set_synchronous_writes(true);
            d
        } else {
            StreamDevice::new(ROM_DIALECT, 0, ROM_TRANSFER_SIZE, 255)
        };
        let product = if uboot { UBOOT_PRODUCT } else { ROM_PRODUCT };
        let names: Vec<String> = self.alt_table(stage).into_iter().map(|(_, n)| n).collect();
        let descriptors = descriptors(product, &self.m.cfg.serial, &names, &dev);
        UsbSide { descriptors, dev }
    }

    /// Comes onto the bus as `stage`.
    fn enumerate(&mut self, stage: Stage) {
        if stage == Stage::Rom {
            // A reset: everything in RAM is gone, storage stays.
            self.m.ram.clear();
            self.m.fip_ok = false;
            self.m.prog = Prog::default();
            self.m.handover = None;
        }
        self.m.stage = stage;
        self.m.alts = self.alt_table(stage).into_iter().map(|(i, _)| i).collect();
        let usb = self.usb_side(stage);
        self.last_info = usb.descriptors.info(Speed::High);
        self.usb = Some(usb);
        self.enumerate_at = None;
        let what = match stage {
            Stage::Rom => "ROM code enumerated (serial boot)",
            Stage::UBootLayout => "U-Boot stm32prog enumerated: waiting for the flashlayout",
            Stage::UBootProgram => "U-Boot stm32prog re-enumerated with the partitions",
            _ => "enumerated",
        };
        self.m.log(what.into());
    }

    /// Leaves the bus; `next` enumerates after `after`.
    fn leave(&mut self, next: Option<Stage>, after: Duration) {
        self.usb = None;
        self.m.flush_storage();
        self.enumerate_at = next.map(|s| (self.now() + after, s));
    }

    /// Applies what is due at the current time.
    fn advance(&mut self) {
        let now = self.now();
        self.m.now = now;
        if self.m.handover.is_some_and(|t| now >= t) {
            self.m.handover = None;
            self.m.ram.clear();
            if self.m.cfg.fault == Some(Stm32mp1Fault::TfaNoUsb) {
                self.m.stage = Stage::Hung;
                self.m
                    .log("TF-A started but stopped servicing USB (fault tfa-no-usb)".into());
            } else {
                // MP15: TF-A keeps the ROM's enumeration and descriptors;
                // its DFU stack starts afresh in dfuIDLE.
                self.m.stage = Stage::TfA;
                if let Some(u) = self.usb.as_mut() {
                    u.dev = StreamDevice::new(ROM_DIALECT, 0, ROM_TRANSFER_SIZE, 255);
                }
                self.m.log("TF-A answering on the ROM's enumeration".into());
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
        if self.m.log_lines.is_empty() {
            return;
        }
        let time = match self.clock {
            BoardClock::Wall(_) => LogTime::wall_now(),
            BoardClock::Virtual(t) => LogTime::Virtual(t),
        };
        for line in std::mem::take(&mut self.m.log_lines) {
            if let Some(log) = self.log.as_mut() {
                // The log is for people; a full disk must not stop the board.
                let _ = log.append(time, &line);
            }
        }
    }

    /// DETACH, per firmware.
    fn on_detach(&mut self) {
        let delay = self.m.cfg.reenumerate_delay();
        match self.m.stage {
            Stage::TfA if self.m.fip_ok => {
                self.m
                    .log("TF-A: DETACH, booting U-Boot from the FIP".into());
                self.leave(Some(Stage::UBootLayout), delay);
            }
            Stage::UBootLayout if self.m.prog.layout.is_some() && self.m.prog.error.is_none() => {
                let work = self.m.uboot_init();
                if self.m.cfg.fault == Some(Stm32mp1Fault::UbootNoReconnect) {
                    self.m.log(
                        "U-Boot left the bus and does not reconnect (fault uboot-no-reconnect)"
                            .into(),
                    );
                    self.m.stage = Stage::Lost;
                    self.leave(None, Duration::ZERO);
                } else {
                    self.leave(Some(Stage::UBootProgram), delay + work);
                }
            }
            Stage::UBootProgram if self.m.prog.phase == phase::PHASE_END => {
                self.m.log("stm32prog: download done, booting".into());
                self.m.stage = Stage::Done;
                self.leave(None, Duration::ZERO);
            }
            Stage::UBootLayout | Stage::UBootProgram => {
                // stm32prog ends without PHASE_END: U-Boot resets, and
                // with the boot pins still on USB the ROM comes back.
                self.m
                    .log("stm32prog: DETACH before the end, resetting".into());
                self.leave(Some(Stage::Rom), delay);
            }
            _ => {}
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
        self.advance();
        if self.m.stage == Stage::Hung {
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

impl VirtualUsbDevice for Stm32mp1 {
    fn set_time(&mut self, t: Instant) {
        Stm32mp1::set_time(self, t)
    }
    fn now(&self) -> Instant {
        Stm32mp1::now(self)
    }
    fn next_wakeup(&self) -> Option<Instant> {
        Stm32mp1::next_wakeup(self)
    }
    fn reply_at(&self) -> Option<Instant> {
        self.usb.as_ref().map(|u| u.dev.reply_at())
    }
}

/// Device, configuration and string descriptors of one enumeration: one
/// DFU interface (class 0xFE/0x01, protocol 2) with an alt per name.
fn descriptors(product: &str, serial: &str, alts: &[String], dev: &StreamDevice) -> Descriptors {
    let device = DeviceDescriptor {
        usb_version: 0x0200,
        class: 0,
        subclass: 0,
        protocol: 0,
        max_packet_size0: 64,
        vendor_id: phase::USB_VID,
        product_id: phase::USB_PID,
        bcd_device: 0x0200,
        manufacturer: 1,
        product: 2,
        serial_number: 3,
        num_configurations: 1,
    }
    .to_bytes();
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
