//! The STM32MP device side over USB, sans-IO and no_std: what the ROM code,
//! TF-A and U-Boot's `stm32prog usb 0` do with the DFU requests of
//! STM32CubeProgrammer (or dfukit's host, [`crate::program`]).
//!
//! [`Stm32mpDevice`] is a [`StreamBackend`] for dfukit-usbdfu's
//! [`StreamDevice`]: each alternate setting is a stream, and the device
//! decides what a block means in the current [`BootStage`]:
//!
//! 1. **ROM code**: the FSBL (TF-A) into SYSRAM on alt 1; its STM32 header
//!    checked at manifestation; the board starts TF-A after
//!    [`Stm32mpDevice::take_fsbl_start`].
//! 2. **TF-A** (on the ROM's enumeration, MP15): the FIP into DDR on alt 3,
//!    its ToC checked; then the phase record asks for DETACH.
//! 3. **U-Boot stm32prog**: the flashlayout on alt 0, parsed by U-Boot's own
//!    rules ([`flashlayout`]); at DETACH the partition table is built, `D`
//!    rows erased and GPTs written ([`table`]); after the re-enumeration, one
//!    alternate setting per partition, written through the board's
//!    [`Stm32mpBoard`] requests; the phase record on 0xF1 names the next
//!    partition, END, or the error (phase 0xFF, first error only, with
//!    U-Boot's message).
//!
//! Time and storage are the board's: every request returns how long it
//! takes, and the board decides when the next firmware answers
//! ([`Stm32mpDevice::detach`], [`Stm32mpDevice::enter`]).
//!
//! Sources: U-Boot `arch/arm/mach-stm32mp/cmd_stm32prog/stm32prog.c` and
//! `stm32prog_usb.c`; TF-A `plat/st/common/stm32cubeprogrammer_usb.c`.
//!
//! Where this core keeps the behaviour dfukit's simulated board always had
//! rather than U-Boot's (host tests rely on it):
//!
//! * alt names give the size in MiB when it divides evenly, else KiB
//!   ([`crate::phase::write_alt_name`]; U-Boot: the largest unit the size
//!   exceeds, truncated), and the virtual alts are `@virtual/0xf1/1*512Ba`,
//!   `@OTP/0xf2/1*1024Be` and `@PMIC/0xf4/1*8Be` on every board;
//! * the next phase is the lowest Id not written yet, and the end of any
//!   partition's download completes it (U-Boot: upwards from the current
//!   phase, and only the current partition's end counts);
//! * after a failed initialisation the second enumeration offers only the
//!   virtual alts (U-Boot: `@FlashLayout` again), and a DETACH before END
//!   resets the board to the ROM code;
//! * a download past a partition's end is refused with "`name (0xID)`:
//!   image too large for partition: `end` > `size` bytes".
//!
//! Not modelled: a U-Boot script sent instead of a layout
//! (`CONFIG_LEGACY_IMAGE_FORMAT`), the 8 KiB limit of the `gpt write`
//! command line, the start of an application by phase command 0xFF (logged
//! only) and the boot of RAM-loaded images.

mod board;
// Without a heap, an error carries its message inline (U-Boot's 255-byte
// buffer); it is returned once per layout or DETACH, not on a hot path.
#[allow(clippy::result_large_err)]
pub mod flashlayout;
mod header;
#[allow(clippy::result_large_err)]
pub mod table;
#[cfg(all(test, feature = "std"))]
mod tests;
mod text;
mod uboot;

pub use board::{
    BoardResult, BoardStorageError, ExistingPartition, Geometry, GptPartition, Stm32mpBoard,
};
pub use flashlayout::{
    parse_flash_layout, FlashLayout, Medium, MediumId, PartKind, PartOptions, Placement,
    UbootPartition,
};
pub use text::{ErrorText, PartName, ERROR_TEXT_MAX, NAME_MAX};

use crate::phase::{
    encode_record, write_alt_name, FIP_TOC_HEADER, ID_CMD, ID_FLASHLAYOUT, ID_FSBL, ID_OTP,
    ID_PMIC, ID_SSBL, NO_ADDRESS, PHASE_END, PHASE_ERROR, ROM_ALTS,
};
use core::fmt;
use core::time::Duration;
use dfukit_usbdfu::device::stream::{StreamBackend, StreamDevice};
use dfukit_usbdfu::device::Dialect;
use dfukit_usbdfu::wire::Status;
use flashlayout::MAX_ROWS;

/// Where the ROM loads the FSBL (header included) in SYSRAM.
pub const FSBL_LOAD_ADDR: u32 = 0x2FFC_2400;
/// Largest FSBL the ROM accepts: the 256 KiB of SYSRAM.
pub const FSBL_MAX: usize = 256 * 1024;
/// Where TF-A loads the FIP: the start of DDR.
pub const DDR_BASE: u32 = 0xC000_0000;
/// Largest FIP TF-A accepts (its `@Partition3 /0x03/1*16Me` alt).
pub const FIP_MAX: usize = 16 * 1024 * 1024;
/// U-Boot's `CONFIG_SYS_LOAD_ADDR` on STM32MP15, where the flashlayout is
/// received; reported as the address of phase 0.
pub const UBOOT_LOAD_ADDR: u32 = 0xC200_0000;
/// Largest flashlayout U-Boot receives (the `@FlashLayout/0x00/1*256Ke` alt).
pub const LAYOUT_MAX: usize = 256 * 1024;
/// Size of the OTP virtual partition (`OTP_SIZE_SMC` on MP15).
pub const OTP_LEN: usize = 1024;
/// Size of the PMIC NVM virtual partition (`PMIC_SIZE`).
pub const PMIC_LEN: usize = 8;
/// wTransferSize of the ROM code and TF-A (one enumeration on MP15).
pub const ROM_TRANSFER_SIZE: u16 = 1024;
/// wTransferSize of U-Boot's DFU gadget.
pub const UBOOT_TRANSFER_SIZE: u16 = 4096;
/// U-Boot's first alternate setting.
pub const UBOOT_LAYOUT_ALT: &str = "@FlashLayout/0x00/1*256Ke";
/// The virtual alternate settings U-Boot appends after the partitions.
pub const VIRTUAL_ALTS: [(u8, &str); 3] = [
    (ID_CMD, "@virtual/0xf1/1*512Ba"),
    (ID_OTP, "@OTP/0xf2/1*1024Be"),
    (ID_PMIC, "@PMIC/0xf4/1*8Be"),
];
/// Partition Id of each of [`ROM_ALTS`].
const ROM_ALT_IDS: [u8; 6] = [0x00, ID_FSBL, 0x02, ID_SSBL, 0x04, ID_CMD];

/// The ROM and TF-A speak ST's DFU stack: plain DFU, manifestation
/// tolerant (the host reads the phase after each image), CLRSTATUS outside
/// dfuERROR is an error.
const ROM_DIALECT: Dialect = Dialect {
    name: "STM32MP ROM/TF-A",
    ..Dialect::TF_A
};

/// Which firmware runs (and answers on USB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootStage {
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
    /// TF-A hung with USB still clocked (a board failure; entered by the
    /// board with [`Stm32mpDevice::enter`]).
    Hung,
    /// U-Boot left the bus and never came back (a board failure, likewise).
    Lost,
}

impl BootStage {
    /// Whether U-Boot's stm32prog answers.
    pub fn is_uboot(self) -> bool {
        matches!(self, BootStage::UBootLayout | BootStage::UBootProgram)
    }

    /// A fresh DFU stack of this stage's firmware, in dfuIDLE: U-Boot's
    /// `f_dfu` (4 KiB blocks, each written in the request's completion
    /// handler) or the ROM's and TF-A's (1 KiB blocks).
    pub fn dfu_stack(self) -> StreamDevice {
        if self.is_uboot() {
            let mut d = StreamDevice::new(Dialect::U_BOOT, 0, UBOOT_TRANSFER_SIZE, 255);
            d.set_synchronous_writes(true);
            d
        } else {
            StreamDevice::new(ROM_DIALECT, 0, ROM_TRANSFER_SIZE, 255)
        }
    }
}

/// The name of one alternate setting.
#[derive(Debug, Clone, Copy)]
pub enum AltLabel<'a> {
    /// A fixed name (ROM, TF-A, U-Boot's layout and virtual alts).
    Fixed(&'static str),
    /// A layout partition's alt (`stm32prog_get_alt_name`), read-only
    /// (`a`) unless the row is `P` without `E`.
    UbootPartition(&'a UbootPartition),
}

impl fmt::Display for AltLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AltLabel::Fixed(s) => f.write_str(s),
            AltLabel::UbootPartition(p) => {
                write_alt_name(f, &p.name, p.id, p.size, !p.option.downloads())
            }
        }
    }
}

/// What the firmware does after a DFU DETACH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDetach {
    /// Nothing: DETACH means nothing in this stage.
    Stay,
    /// It leaves the bus; `next` enumerates once the board's re-enumeration
    /// delay and `work` (erases at U-Boot's initialisation) have passed.
    Reenumerate {
        /// The stage to [`Stm32mpDevice::enter`] then.
        next: BootStage,
        /// Device work before it enumerates.
        work: Duration,
    },
    /// Programming is over: the board boots ([`BootStage::Done`]).
    Boot,
}

/// The device side of the boot chain. See the module documentation.
pub struct Stm32mpDevice<B> {
    board: B,
    stage: BootStage,
    fip_ok: bool,
    fsbl_start: Option<Duration>,
    /// The layout U-Boot received (`part_array`), once parsed.
    layout: Option<FlashLayout>,
    /// Row of each partition alt of the second enumeration, ascending Id.
    alts: heapless::Vec<usize, MAX_ROWS>,
    /// Current phase (partition Id, [`PHASE_END`] or [`PHASE_ERROR`]).
    phase: u8,
    /// Offset set by a phase command, applied to the next download of the
    /// current phase.
    offset: u32,
    /// The message of phase 0xFF.
    error: ErrorText,
    /// Ids whose download ended (a bit per Id).
    done: [u32; 8],
    /// Where the current download started in its partition.
    base: u64,
}

impl<B: Stm32mpBoard> Stm32mpDevice<B> {
    /// A board just reset into serial boot: the ROM code answers.
    pub fn new(board: B) -> Self {
        Stm32mpDevice {
            board,
            stage: BootStage::Rom,
            fip_ok: false,
            fsbl_start: None,
            layout: None,
            alts: heapless::Vec::new(),
            phase: ID_FLASHLAYOUT,
            offset: 0,
            error: ErrorText::default(),
            done: [0; 8],
            base: 0,
        }
    }

    /// The board.
    pub fn board(&self) -> &B {
        &self.board
    }

    /// The board, to change.
    pub fn board_mut(&mut self) -> &mut B {
        &mut self.board
    }

    /// The firmware running.
    pub fn stage(&self) -> BootStage {
        self.stage
    }

    /// Makes `stage` the running firmware: [`BootStage::Rom`] is a reset
    /// (everything in RAM is lost; storage stays), [`BootStage::TfA`]
    /// starts TF-A's DFU afresh.
    pub fn enter(&mut self, stage: BootStage) {
        match stage {
            BootStage::Rom => {
                self.fip_ok = false;
                self.fsbl_start = None;
                self.layout = None;
                self.alts.clear();
                self.phase = ID_FLASHLAYOUT;
                self.offset = 0;
                self.error = ErrorText::default();
                self.done = [0; 8];
                self.base = 0;
            }
            BootStage::TfA => self.fip_ok = false,
            _ => {}
        }
        self.stage = stage;
    }

    /// Once, after the ROM accepted the FSBL: how long until TF-A answers
    /// (the board then calls [`Stm32mpDevice::enter`] with
    /// [`BootStage::TfA`]).
    pub fn take_fsbl_start(&mut self) -> Option<Duration> {
        self.fsbl_start.take()
    }

    /// U-Boot's phase: partition Id, [`PHASE_END`] or [`PHASE_ERROR`].
    pub fn phase(&self) -> u8 {
        self.phase
    }

    /// The message of phase 0xFF (`stm32prog_get_error`: "Unspecified"
    /// when none was given).
    pub fn error(&self) -> Option<&str> {
        (self.phase == PHASE_ERROR).then(|| {
            if self.error.is_empty() {
                "Unspecified"
            } else {
                self.error.as_str()
            }
        })
    }

    /// The layout U-Boot holds (rows in file order, with their sizes once
    /// initialised).
    pub fn layout(&self) -> Option<&FlashLayout> {
        self.layout.as_ref()
    }

    /// Writes the phase record block 0 of 0xF1 returns now into `out`;
    /// returns its length.
    pub fn phase_record(&self, out: &mut [u8]) -> usize {
        match self.stage {
            BootStage::Rom => encode_record(ID_FSBL, FSBL_LOAD_ADDR, 0, &[], out),
            BootStage::TfA | BootStage::Hung if self.fip_ok => {
                encode_record(ID_FLASHLAYOUT, NO_ADDRESS, 0, &[1], out)
            }
            BootStage::TfA | BootStage::Hung => encode_record(ID_SSBL, DDR_BASE, 0, &[], out),
            _ => match (self.phase, self.error()) {
                (_, Some(msg)) => encode_record(PHASE_ERROR, NO_ADDRESS, 0, msg.as_bytes(), out),
                (ID_FLASHLAYOUT, None) => {
                    let present = [u8::from(self.layout.is_some())];
                    encode_record(ID_FLASHLAYOUT, UBOOT_LOAD_ADDR, self.offset, &present, out)
                }
                (p, None) => encode_record(p, NO_ADDRESS, self.offset, &[], out),
            },
        }
    }

    /// Number of alternate settings `stage` enumerates with.
    pub fn alt_count(&self, stage: BootStage) -> usize {
        match stage {
            BootStage::Rom | BootStage::TfA | BootStage::Hung => ROM_ALTS.len(),
            BootStage::UBootLayout => 1 + VIRTUAL_ALTS.len(),
            BootStage::UBootProgram => self.alts.len() + VIRTUAL_ALTS.len(),
            BootStage::Done | BootStage::Lost => 0,
        }
    }

    /// Partition Id and name of alt `alt` in `stage`'s enumeration (the
    /// second U-Boot enumeration's once the layout's DETACH was handled).
    pub fn alt(&self, stage: BootStage, alt: usize) -> Option<(u8, AltLabel<'_>)> {
        let fixed = |(id, name): &(u8, &'static str)| (*id, AltLabel::Fixed(name));
        match stage {
            BootStage::Rom | BootStage::TfA | BootStage::Hung => ROM_ALT_IDS
                .get(alt)
                .map(|&id| (id, AltLabel::Fixed(ROM_ALTS[alt]))),
            BootStage::UBootLayout if alt == 0 => {
                Some((ID_FLASHLAYOUT, AltLabel::Fixed(UBOOT_LAYOUT_ALT)))
            }
            BootStage::UBootLayout => VIRTUAL_ALTS.get(alt - 1).map(fixed),
            BootStage::UBootProgram => match self.alts.get(alt) {
                Some(&row) => {
                    let p = self.row(row);
                    Some((p.id, AltLabel::UbootPartition(p)))
                }
                None => VIRTUAL_ALTS.get(alt - self.alts.len()).map(fixed),
            },
            BootStage::Done | BootStage::Lost => None,
        }
    }

    /// (Id, name) of each alt of `stage`'s enumeration.
    pub fn alt_names(&self, stage: BootStage) -> impl Iterator<Item = (u8, AltLabel<'_>)> + '_ {
        (0..self.alt_count(stage)).filter_map(move |i| self.alt(stage, i))
    }

    /// DFU DETACH arrived (see [`AfterDetach`]).
    pub fn detach(&mut self) -> AfterDetach {
        let reenumerate = |next, work| AfterDetach::Reenumerate { next, work };
        match self.stage {
            BootStage::TfA if self.fip_ok => {
                self.board
                    .log(format_args!("TF-A: DETACH, booting U-Boot from the FIP"));
                reenumerate(BootStage::UBootLayout, Duration::ZERO)
            }
            BootStage::UBootLayout if self.layout.is_some() && self.phase != PHASE_ERROR => {
                let work = self.init_devices();
                reenumerate(BootStage::UBootProgram, work)
            }
            BootStage::UBootProgram if self.phase == PHASE_END => {
                self.board
                    .log(format_args!("stm32prog: download done, booting"));
                self.stage = BootStage::Done;
                AfterDetach::Boot
            }
            BootStage::UBootLayout | BootStage::UBootProgram => {
                // stm32prog ends without PHASE_END: U-Boot resets, and with
                // the boot pins still on USB the ROM comes back.
                self.board
                    .log(format_args!("stm32prog: DETACH before the end, resetting"));
                reenumerate(BootStage::Rom, Duration::ZERO)
            }
            _ => AfterDetach::Stay,
        }
    }

    fn row(&self, row: usize) -> &UbootPartition {
        &self
            .layout
            .as_ref()
            .expect("alts come from the layout")
            .rows[row]
    }

    /// A block for the RAM the current image is loaded to.
    fn load(&mut self, offset: u64, data: &[u8], max: usize) -> Result<Duration, Status> {
        if offset + data.len() as u64 > max as u64 {
            self.board.log(format_args!(
                "{:?}: image larger than the {max} bytes of RAM it is loaded to",
                self.stage
            ));
            return Err(Status::ErrAddress);
        }
        self.board.ram_write(offset, data);
        Ok(Duration::ZERO)
    }

    fn received(&self, total: u64) -> &[u8] {
        let ram = self.board.ram();
        &ram[..ram.len().min(total as usize)]
    }

    /// Manifestation in the ROM code and TF-A.
    fn rom_manifest(&mut self, id: u8, total: u64) -> Result<Duration, Status> {
        match (self.stage, id) {
            (BootStage::Rom, ID_FSBL) => match header::rom_check(self.received(total)) {
                Ok(f) => {
                    let len = self.received(total).len();
                    self.board.log(format_args!(
                        "ROM: FSBL accepted ({len} bytes, header v{}, entry {:#010x}); starting it",
                        f.major, f.entry
                    ));
                    let d = self.board.fsbl_start_delay();
                    self.fsbl_start = Some(d);
                    Ok(d)
                }
                Err(e) => {
                    self.board.log(format_args!("ROM: FSBL rejected: {e}"));
                    Err(Status::ErrVerify)
                }
            },
            (BootStage::TfA, ID_SSBL) => {
                let img = self.received(total);
                let len = img.len();
                if img.get(..4) == Some(&FIP_TOC_HEADER.to_le_bytes()[..]) {
                    self.fip_ok = true;
                    self.board
                        .log(format_args!("TF-A: FIP received ({len} bytes)"));
                    Ok(Duration::ZERO)
                } else {
                    self.board
                        .log(format_args!("TF-A: FIP rejected: no ToC header"));
                    Err(Status::ErrVerify)
                }
            }
            (_, ID_CMD) => Ok(Duration::ZERO),
            _ => Err(Status::ErrTarget),
        }
    }

    fn alt_id(&self, alt: u8) -> Result<u8, Status> {
        self.alt(self.stage, usize::from(alt))
            .map(|(id, _)| id)
            .ok_or(Status::ErrTarget)
    }

    /// Whether `alt` is a partition of the second enumeration.
    fn partition_alt(&self, alt: u8) -> Option<usize> {
        (self.stage == BootStage::UBootProgram && usize::from(alt) < self.alts.len())
            .then_some(usize::from(alt))
    }
}

impl<B: Stm32mpBoard> StreamBackend for Stm32mpDevice<B> {
    fn alt_count(&self) -> u8 {
        self.alt_count(self.stage).min(255) as u8
    }

    fn write(&mut self, alt: u8, offset: u64, data: &[u8]) -> Result<Duration, Status> {
        let id = self.alt_id(alt)?;
        if let Some(k) = self.partition_alt(alt) {
            return self.partition_write(k, offset, data);
        }
        match (self.stage, id) {
            (BootStage::Rom, ID_FSBL) => self.load(offset, data, FSBL_MAX),
            (BootStage::TfA, ID_SSBL) => self.load(offset, data, FIP_MAX),
            (BootStage::UBootLayout, ID_FLASHLAYOUT) => self.load(offset, data, LAYOUT_MAX),
            (s, ID_CMD) if s.is_uboot() => self.command(offset, data),
            (s, ID_OTP | ID_PMIC) if s.is_uboot() => self.virtual_write(id, offset, data),
            _ => Err(Status::ErrTarget),
        }
    }

    fn manifest(&mut self, alt: u8, total: u64) -> Result<Duration, Status> {
        let id = self.alt_id(alt)?;
        if let Some(k) = self.partition_alt(alt) {
            return self.partition_manifest(k, total);
        }
        match self.stage {
            BootStage::Rom | BootStage::TfA => self.rom_manifest(id, total),
            BootStage::UBootLayout if id == ID_FLASHLAYOUT => {
                self.layout_manifest(total);
                Ok(Duration::ZERO)
            }
            BootStage::UBootLayout | BootStage::UBootProgram => Ok(Duration::ZERO),
            _ => Err(Status::ErrTarget),
        }
    }

    fn read(&mut self, alt: u8, offset: u64, buf: &mut [u8]) -> Result<usize, Status> {
        let id = self.alt_id(alt)?;
        if let Some(k) = self.partition_alt(alt) {
            return self.partition_read(k, offset, buf);
        }
        match id {
            // Block 0 holds the record; later blocks are EOF.
            ID_CMD if offset > 0 => Ok(0),
            ID_CMD => Ok(self.phase_record(buf)),
            ID_OTP | ID_PMIC if self.stage.is_uboot() => self.virtual_read(id, offset, buf),
            _ => Err(Status::ErrTarget),
        }
    }
}
