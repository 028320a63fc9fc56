//! Programming an STM32MP over USB DFU, as STM32CubeProgrammer's "TSV
//! flashing service" does, with progress reported as [`Event`]s and every
//! failure turned into a [`ProgramError`] that names the stage, the
//! partition, what the device last said, and the likely causes.
//!
//! # The flow
//!
//! One cable, three USB devices in turn (see the [`connect`](crate::connect)
//! module):
//!
//! 1. **ROM code** ([`Stage::Rom`]): the host downloads the FSBL (the layout
//!    row with Id 0x01, TF-A's USB programmer build) to the alt with Id 0x01.
//!    On manifestation the ROM code runs it; on STM32MP15 TF-A keeps the
//!    ROM's enumeration.
//! 2. **TF-A** ([`Stage::TfA`]): the host waits for TF-A to answer, reads the
//!    phase record of 0xF1 (phase 0x03), downloads the FIP (Id 0x03), reads
//!    0xF1 again (DETACH requested) and sends DETACH. TF-A boots U-Boot.
//! 3. **U-Boot, first enumeration** ([`Stage::UBootLayout`]): the host sends
//!    the flashlayout to alt `@FlashLayout/0x00` and DETACHes; U-Boot
//!    creates the partitions and re-enumerates.
//! 4. **U-Boot, programming** ([`Stage::UBootProgram`]): read 0xF1, download
//!    the row it names, until phase END (0xFE); then DETACH.
//!
//! [`program`] starts wherever the board is: the first phase record and the
//! alternate-setting names tell which of the four it is talking to
//! ([`identify`]), so a run can resume after the ROM code or TF-A stage.
//!
//! # Bounds
//!
//! Every bound is measured with [`Connector::elapsed`], never with the
//! system clock, so the flow runs unchanged against a board simulated in
//! virtual time. The ROM → TF-A hand-off is bounded as a whole by
//! [`Options::tfa_timeout`], counted from the zero-length DNLOAD that makes
//! the ROM code start the FSBL: a board whose TF-A stops answering USB (the
//! field report in the reference, §5.5) fails with
//! [`FailureKind::TfaSilent`] after seconds, where STM32CubeProgrammer loops
//! on CLRSTATUS for three quarters of an hour. The host never sends
//! CLRSTATUS to a device that is not in dfuERROR: ST's stack and TF-A turn
//! that into dfuERROR/errUNKNOWN themselves.

use crate::connect::{ConnectError, Connector};
use crate::image;
use crate::layout::{Ip, Layout, Offset, Partition};
use crate::phase::{
    self, AltName, PhaseRecord, ID_CMD, ID_FLASHLAYOUT, ID_FSBL, ID_SSBL, PHASE_END, PHASE_ERROR,
};
use dfukit_usbdfu::host::probe::probe;
use dfukit_usbdfu::host::{
    ControlTransfer, DfuHost, Event as HostEvent, HostError, Options as HostOptions, TransferError,
};
use dfukit_usbdfu::wire::{GetStatus, Request, SetupPacket, State, Status};
use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// Pause between two attempts to reach a device that is starting up or
/// re-enumerating. Long enough that a device which stalls at once does not
/// turn the wait into a busy loop, short enough to add little to a hand-off
/// that takes a few seconds.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How many bytes of the 0xF1 phase record to read: the record is 9 bytes
/// plus an error message, and U-Boot's virtual alt is 512 bytes long.
const PHASE_RECORD_MAX: usize = 512;

/// Bounds of a programming run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long to wait for the board to be present when the run starts.
    /// Default 5 s: the board is normally plugged in and reset into USB
    /// boot before the run.
    pub connect_timeout: Duration,
    /// Timeout of each control transfer, in every stage. Default 2 s: every
    /// request the ROM code, TF-A and U-Boot answer is answered within
    /// milliseconds (long flash operations are announced with bwPollTimeout
    /// and waited for between requests), so a transfer that takes longer
    /// means the device has stopped answering.
    pub transfer_timeout: Duration,
    /// Longest time from the end of the FSBL download (the zero-length
    /// DNLOAD) until TF-A answers a read of the phase record. Default 10 s:
    /// TF-A's BL2 initialises clocks, PMIC and DDR in well under a second on
    /// ST's boards.
    pub tfa_timeout: Duration,
    /// How long to wait for U-Boot to enumerate after a DETACH (after the
    /// FIP, and after the flashlayout when U-Boot creates the partitions).
    /// Default 15 s: U-Boot boots, probes its storage and writes the GPTs in
    /// a few seconds; erasing a large `D` (delete) partition takes longer on
    /// some boards, so raise it for those.
    pub reenumerate_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            transfer_timeout: Duration::from_secs(2),
            tfa_timeout: Duration::from_secs(10),
            reenumerate_timeout: Duration::from_secs(15),
        }
    }
}

impl Options {
    /// The DFU host options used for every stage: [`Options::transfer_timeout`]
    /// per control transfer, the host's defaults otherwise.
    pub fn host_options(&self) -> HostOptions {
        HostOptions {
            timeout: self.transfer_timeout,
            ..HostOptions::default()
        }
    }
}

/// Which program on the board the host is talking to.
///
/// Ordered as the flow runs: a run only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The ROM code, which receives the FSBL.
    Rom,
    /// TF-A (BL2), which receives the FIP; includes the hand-off from the
    /// ROM code.
    TfA,
    /// U-Boot's first enumeration, which receives the flashlayout.
    UBootLayout,
    /// U-Boot's programming enumeration, which receives the partitions.
    UBootProgram,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Rom => "ROM code (FSBL download)",
            Stage::TfA => "TF-A (FIP download)",
            Stage::UBootLayout => "U-Boot (flashlayout)",
            Stage::UBootProgram => "U-Boot (partitions)",
        })
    }
}

/// Progress of a run, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stage begins (for a stage reached by re-enumeration, before the
    /// device is back).
    StageStarted {
        /// The stage.
        stage: Stage,
    },
    /// The device was opened and identified.
    Connected {
        /// The stage it is in.
        stage: Stage,
        /// How many alternate settings it offers.
        alts: usize,
    },
    /// The phase record of the virtual partition 0xF1 was read.
    PhaseRead {
        /// The stage.
        stage: Stage,
        /// What the device reported.
        record: PhaseRecord,
    },
    /// A binary starts downloading (FSBL, FIP, or a partition).
    PartitionStarted {
        /// Layout Id.
        id: u8,
        /// Layout name.
        name: String,
        /// Size of the binary in bytes.
        total: u64,
    },
    /// Bytes of the current binary acknowledged by the device.
    Progress {
        /// Layout Id.
        id: u8,
        /// Bytes done, counted from the start of the binary (a resumed
        /// download starts above zero).
        done: u64,
        /// Size of the binary in bytes.
        total: u64,
    },
    /// A binary was downloaded and manifested.
    PartitionDone {
        /// Layout Id.
        id: u8,
        /// Bytes sent.
        bytes: u64,
        /// Time from the first request to the end of manifestation.
        elapsed: Duration,
    },
    /// Waiting for the device to enumerate again (after DETACH, or TF-A
    /// re-enumerating on STM32MP13).
    Reconnecting {
        /// The stage expected next.
        stage: Stage,
    },
}

/// One binary written to the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Layout Id.
    pub id: u8,
    /// Layout name.
    pub name: String,
    /// Device (`none` for the FSBL and FIP, which go to RAM).
    pub ip: Ip,
    /// Offset in the device.
    pub offset: Offset,
    /// Bytes sent (the whole binary, unless the device asked to resume at
    /// an offset).
    pub bytes: u64,
    /// Time from the first request to the end of manifestation.
    pub elapsed: Duration,
}

impl Written {
    /// Throughput in bytes per second; `None` when no time passed (an
    /// empty binary, or an instantaneous simulated link).
    pub fn bytes_per_second(&self) -> Option<f64> {
        let s = self.elapsed.as_secs_f64();
        (s > 0.0).then(|| self.bytes as f64 / s)
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Binaries written, in order (FSBL and FIP included).
    pub written: Vec<Written>,
    /// Stages run and the time each took, in order (waits for
    /// re-enumeration count to the stage waited for).
    pub stages: Vec<(Stage, Duration)>,
    /// Time of the whole run.
    pub total: Duration,
}

impl Summary {
    /// Bytes written in total.
    pub fn bytes(&self) -> u64 {
        self.written.iter().map(|w| w.bytes).sum()
    }
}

/// What went wrong, with the facts the diagnosis is built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    /// No DFU device appeared when the run started.
    #[error("no STM32MP DFU device (0483:df11) appeared within {}", secs(.waited))]
    NoDevice {
        /// How long the connector waited.
        waited: Duration,
    },
    /// The device is there but could not be opened.
    #[error("the DFU device could not be opened: {message}")]
    Connect {
        /// The connector's message.
        message: String,
    },
    /// The ROM code refused the FSBL (during the download or its
    /// manifestation, where it checks the STM32 header).
    #[error("the ROM code rejected the FSBL: DFU status {}", .status.name())]
    FsblRejected {
        /// The status the ROM code reported.
        status: Status,
        /// What the host's own check of the file's STM32 header found, if
        /// it fails too.
        header_check: Option<String>,
    },
    /// TF-A never answered after the ROM code handed over to it.
    #[error("the device stopped answering {} after the ROM code handed over to TF-A", secs(.waited))]
    TfaSilent {
        /// Time from the end of the FSBL download to giving up.
        waited: Duration,
        /// The last failed attempt to reach TF-A.
        last_error: Option<String>,
    },
    /// U-Boot did not enumerate (again) after a DETACH.
    #[error("U-Boot did not enumerate within {} after {}", secs(.waited), if *.after_layout { "the flashlayout was sent" } else { "TF-A's DETACH" })]
    UbootNoReconnect {
        /// How long the host waited.
        waited: Duration,
        /// `true`: after the flashlayout (U-Boot creates the partitions and
        /// re-enumerates); `false`: after the FIP (TF-A starts U-Boot).
        after_layout: bool,
        /// The last failed attempt (the old enumeration still present,
        /// descriptors unreadable, …).
        last_error: Option<String>,
    },
    /// The device reported an error in the phase record (phase 0xFF).
    #[error("the device reported \"{message}\"{}", .transfer.as_ref().map(|t| format!(" (after: {t})")).unwrap_or_default())]
    DeviceReported {
        /// U-Boot's message.
        message: String,
        /// The transfer that failed before the message was read, if any.
        #[source]
        transfer: Option<HostError>,
    },
    /// A DFU transfer failed.
    #[error("{source}")]
    Transfer {
        /// The host error.
        #[source]
        source: HostError,
    },
    /// The device asks for a phase the flow does not expect here.
    #[error("the device reports phase {phase:#04x}, expected {expected}")]
    UnexpectedPhase {
        /// The phase reported.
        phase: u8,
        /// What was expected.
        expected: String,
    },
    /// The device asks for a row whose Binary column is `none`.
    #[error("the device asks for partition {id:#04x} ({name}), but its Binary column is `none`")]
    MissingBinary {
        /// Layout Id.
        id: u8,
        /// Layout name.
        name: String,
    },
    /// The device (or the flow) needs an Id the layout has no row for.
    #[error("the device asks for Id {id:#04x}, which is not in the layout")]
    NotInLayout {
        /// The Id.
        id: u8,
    },
    /// The device asks again for the partition it has just accepted.
    #[error("the device asks for partition {id:#04x} ({name}) again right after it was written")]
    PhaseRepeated {
        /// Layout Id.
        id: u8,
        /// Layout name.
        name: String,
    },
    /// U-Boot reported END, but rows of this layout that need a download
    /// were not written in this run.
    #[error("U-Boot reported the end of programming, but these rows were not written: {}", .missing.join(", "))]
    NotAllWritten {
        /// `0xID name` of each row not written.
        missing: Vec<String>,
    },
    /// A binary named in the layout could not be read.
    #[error("cannot read {} (Id {id:#04x}): {error}", .path.display())]
    BinaryUnreadable {
        /// Layout Id.
        id: u8,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: String,
    },
    /// The device does not follow the protocol (missing alternate setting,
    /// malformed phase record, unknown personality).
    #[error("{what}")]
    Protocol {
        /// What was wrong.
        what: String,
    },
}

impl FailureKind {
    /// A stable code for diagnostics (`dfukit::stm32mp::tfa_silent`).
    pub fn code(&self) -> &'static str {
        match self {
            FailureKind::NoDevice { .. } => "dfukit::stm32mp::no_device",
            FailureKind::Connect { .. } => "dfukit::stm32mp::connect",
            FailureKind::FsblRejected { .. } => "dfukit::stm32mp::fsbl_rejected",
            FailureKind::TfaSilent { .. } => "dfukit::stm32mp::tfa_silent",
            FailureKind::UbootNoReconnect { .. } => "dfukit::stm32mp::uboot_no_reconnect",
            FailureKind::DeviceReported { .. } => "dfukit::stm32mp::device_reported",
            FailureKind::Transfer { .. } => "dfukit::stm32mp::transfer",
            FailureKind::UnexpectedPhase { .. } => "dfukit::stm32mp::unexpected_phase",
            FailureKind::MissingBinary { .. } => "dfukit::stm32mp::missing_binary",
            FailureKind::NotInLayout { .. } => "dfukit::stm32mp::not_in_layout",
            FailureKind::PhaseRepeated { .. } => "dfukit::stm32mp::phase_repeated",
            FailureKind::NotAllWritten { .. } => "dfukit::stm32mp::not_all_written",
            FailureKind::BinaryUnreadable { .. } => "dfukit::stm32mp::binary_unreadable",
            FailureKind::Protocol { .. } => "dfukit::stm32mp::protocol",
        }
    }
}

/// "10.0 s": one decimal is what a person compares timeouts with.
fn secs(d: &Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A failed run: the stage, the partition, what the device last said, and
/// what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    /// The stage the run was in (for a wait after DETACH, the stage waited
    /// for; for no device at all, [`Stage::Rom`]).
    pub stage: Stage,
    /// The partition being written, or just written when the device
    /// reported the failure right after it (Id, name).
    pub partition: Option<(u8, String)>,
    /// The last thing the device said: "DFU state dfuMANIFEST, status OK",
    /// or a phase record.
    pub last_report: Option<String>,
    /// Time from the start of the run to the failure.
    pub elapsed: Duration,
    /// What went wrong.
    pub kind: FailureKind,
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stage)?;
        if let Some((id, name)) = &self.partition {
            write!(f, ", partition {id:#04x} ({name})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for ProgramError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind's message is already part of ours; chain to what caused
        // the kind (a host error), so a report does not repeat itself.
        std::error::Error::source(&self.kind)
    }
}

impl ProgramError {
    /// A stable code for diagnostics (`dfukit::stm32mp::tfa_silent`).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Likely causes, most likely first, each with what to check.
    pub fn causes(&self) -> Vec<String> {
        let mut c: Vec<String> = match &self.kind {
            FailureKind::NoDevice { .. } => vec![
                "The board is not in USB boot mode: set the BOOT pins to serial/USB boot (BOOT[2:0] = 000 on STM32MP15; on ST's DK boards both BOOT switches OFF) and press reset. With the pins on a flash boot device the ROM code only falls back to USB when that device holds no valid image.".into(),
                "The cable is on the wrong connector: the ROM code enumerates only on the USB OTG (USB_OTG_HS) port, not on a USB host port or on the ST-LINK connector (that one carries only the UART console).".into(),
                "The link drops the device: use a data cable (not charge-only) straight into the computer without a hub, and power the board from its own supply so it does not brown out.".into(),
                "The device is there but not visible to this program: check that 0483:df11 is listed (`lsusb -d 0483:df11` on Linux); if it is, see the permission causes of dfukit::stm32mp::connect.".into(),
            ],
            FailureKind::Connect { .. } => vec![
                "Permissions: on Linux, add a udev rule for 0483:df11 (SUBSYSTEM==\"usb\", ATTR{idVendor}==\"0483\", ATTR{idProduct}==\"df11\", MODE=\"0666\"), reload the rules and re-plug the board.".into(),
                "Another program holds the DFU interface: close STM32CubeProgrammer, dfu-util or a second dfukit.".into(),
                "Over USB/IP: the server must be running and the device exported; `usbip list -r <server>` must list 0483:df11.".into(),
            ],
            FailureKind::FsblRejected { header_check, .. } => {
                let mut v = Vec::new();
                if let Some(h) = header_check {
                    v.push(format!("The host's own check of the FSBL's STM32 header fails too: {h}. Rebuild or re-copy the file."));
                }
                v.extend([
                    "The file is not an STM32 image: the FSBL row (Id 0x01) must name TF-A with its STM32 header (`tf-a-<board>-usb.stm32`), not a raw `.bin` or an ELF.".into(),
                    "The payload checksum does not match the header: the file was truncated or modified after the header was written; check it with `dfukit stm32mp image-info`.".into(),
                    "Signature mismatch: a signed image on a part that is not closed, or an unsigned one on a closed (secure-boot) part; compare the header's option flags with the part's OTP state.".into(),
                    "The image is for another family: STM32MP15 needs header v1, STM32MP13 and STM32MP25 header v2; and it must fit SYSRAM (256 KiB on STM32MP15).".into(),
                ]);
                v
            }
            FailureKind::TfaSilent { .. } => vec![
                "Read the UART console (UART4 at 115200 8N1 on ST's boards, through the ST-LINK virtual COM port): TF-A reports why it stopped only there, e.g. `PANIC at PC : 0x2fff1a71`, a DDR or PMIC initialisation error. An empty console means TF-A died before its console came up (clock tree, or the console UART/pins in TF-A's device tree).".into(),
                "The FSBL must be TF-A's USB programmer build (`tf-a-<board>-usb.stm32`, the `programmer-usb` configuration built with STM32MP_USB_PROGRAMMER=1), not the `-emmc`, `-sdcard` or `-nand` build: those never answer USB after the ROM code hands over.".into(),
                "The board differs from the board TF-A's device tree describes: DDR type, size and timings (the stm32mp15-ddr*.dtsi include), the PMIC (STPMIC1 present or not, its regulators), the HSE crystal frequency in the clock node. A custom board built from the DK2 or EV1 device tree hangs in BL2 here.".into(),
                "The USB OTG node in TF-A's device tree: `&usbotg_hs` and `&usbphyc` enabled with the PHY (`phys = <&usbphyc_port1 0>`); on boards without VBUS/ID sensing the session must be forced valid. On STM32MP13 and STM32MP25 TF-A enumerates by itself, so this node decides whether it is seen at all.".into(),
                "If the device kept reporting phase 0x01 (see the last report), the ROM code did not start the FSBL, or the board reset while TF-A started (watchdog, brown-out when DDR and PMIC power up): check the supply and the console.".into(),
            ],
            FailureKind::UbootNoReconnect { after_layout, .. } => {
                let mut v = vec![
                    "Boards without VBUS/ID sensing (OTG port on test points, Type-C without a STUSB1600): U-Boot's gadget never sees a session. Add `&usbotg_hs { u-boot,force-b-session-valid; dr_mode = \"peripheral\"; };` to U-Boot's device tree (the board's `-u-boot.dtsi`, as stm32mp135f-dk-u-boot.dtsi does).".into(),
                ];
                if *after_layout {
                    v.push("U-Boot stopped in stm32prog_dfu_init while preparing the devices: read its console for `GPT partitionning fail`, `mmc device N not found`, `MTD device … not found` or erase errors; the flashlayout's IP column must name devices the board has.".into());
                } else {
                    v.push("TF-A could not start U-Boot from the FIP, or U-Boot stopped before `stm32prog usb 0`: read the console; the FIP must be built for this board (its device tree, the OP-TEE/DDR size), and U-Boot with the stm32prog command and the DFU USB gadget (CONFIG_CMD_STM32PROG, CONFIG_USB_GADGET_DWC2_OTG, CONFIG_DFU_*), as ST's trusted/optee configurations are.".into());
                }
                v.push("On Linux, `dmesg` showing `device descriptor read/64, error -110` means U-Boot's gadget appeared but does not answer: the same device-tree fix applies.".into());
                v
            }
            FailureKind::DeviceReported { message, .. } => {
                let mut v = device_message_causes(message);
                v.push("U-Boot resets after reporting an error: after fixing the cause, set the board to USB boot again and restart from the ROM code.".into());
                v
            }
            FailureKind::Transfer { source } => {
                let mut v = vec![source.help()];
                v.push(match self.stage {
                    Stage::Rom => "The ROM code stopped answering during the FSBL download: check the cable and the supply; the ROM code itself does not hang.".into(),
                    Stage::TfA => "TF-A failed while receiving the FIP: read the UART console; the FIP must fit the DDR area TF-A loads it to.".into(),
                    Stage::UBootLayout | Stage::UBootProgram => "U-Boot failed while writing: read its console (MMC or MTD write errors, a reset).".into(),
                });
                if is_gone(source) {
                    v.push("The board disconnected: it reset (watchdog, brown-out while writing flash: power the board from its own supply) or lost the cable.".into());
                }
                v
            }
            FailureKind::UnexpectedPhase { phase, .. } => unexpected_phase_causes(*phase),
            FailureKind::MissingBinary { id, name } => vec![match *id {
                ID_FSBL => "Give the `-` row 0x01 (fsbl-boot) TF-A's USB programmer build, e.g. `arm-trusted-firmware/tf-a-<board>-usb.stm32`.".into(),
                ID_SSBL => "Give the `-` row 0x03 (fip-boot) the FIP, e.g. `fip/fip-<board>-optee.bin`.".into(),
                _ => format!("Row {id:#04x} ({name}) is selected with `P` but its Binary is `none`: give it a file, or make it `PE` (created empty, never downloaded) or `-` (left as it is)."),
            }],
            FailureKind::NotInLayout { id } => vec![match *id {
                ID_FSBL | ID_SSBL => "The layout needs the two RAM-loaded boot rows: `-  0x01  fsbl-boot  Binary  none  0x0  <tf-a-…-usb.stm32>` and `-  0x03  fip-boot  FIP  none  0x0  <fip-….bin>`.".into(),
                _ => "U-Boot works from another layout than the one given here: the board kept a layout from an earlier run, or the file was edited after it was sent. Reset the board into USB boot and run again.".into(),
            }],
            FailureKind::NotAllWritten { .. } => vec![
                "The board was already in U-Boot's programming stage with a layout from an earlier run, so U-Boot programmed that layout's rows, not these.".into(),
                "U-Boot skipped rows it could not program without reporting an error: read the U-Boot console.".into(),
            ],
            FailureKind::PhaseRepeated { .. } => vec![
                "U-Boot asked for the partition again right after accepting it: its end-of-download step (stm32prog_end_phase: eMMC boot-partition switch, NAND FSBL copies) failed without reporting. Read the U-Boot console.".into(),
                "The board's U-Boot and this host disagree on the phase protocol (an old or modified stm32prog): use U-Boot from the same OpenSTLinux release as the layout.".into(),
            ],
            FailureKind::BinaryUnreadable { path, .. } => vec![
                format!("Check that {} exists and is readable: the Binary column is resolved relative to the flashlayout's directory.", path.display()),
                "The file changed after the layout was checked (a build still writing it): run again once the build has finished.".into(),
            ],
            FailureKind::Protocol { .. } => vec![
                "The device does not follow the stm32prog protocol this host implements: ROM code, TF-A and U-Boot must come from one STM32MP release.".into(),
                "Every alternate-setting name must carry `/0x<Id>/` (STM32CubeProgrammer reports a missing one as \"unable to get the associate alternate setting of partition ID\"): list the device's alternate settings (`dfu-util -l`) and compare them with the flashlayout's Ids.".into(),
            ],
        };
        c.dedup();
        c
    }

    /// What to do first, in one line.
    pub fn help(&self) -> String {
        match &self.kind {
            FailureKind::NoDevice { .. } => "set the boot pins to USB boot (BOOT[2:0] = 000 on STM32MP15), connect the USB OTG port and press reset".into(),
            FailureKind::Connect { .. } => "check the permissions on 0483:df11 and that no other program holds the device".into(),
            FailureKind::FsblRejected { .. } => "check the FSBL's STM32 header (magic, checksum, signature flags) with `dfukit stm32mp image-info` and use TF-A's USB programmer build".into(),
            FailureKind::TfaSilent { .. } => "connect the UART console and run again: TF-A prints why it stopped only there; check that the FSBL is the -usb build and that TF-A's device tree matches the board (DDR, PMIC, HSE, USB OTG)".into(),
            FailureKind::UbootNoReconnect { .. } => "read U-Boot's console; on a board without VBUS/ID sensing add `u-boot,force-b-session-valid;` and `dr_mode = \"peripheral\";` to &usbotg_hs in U-Boot's device tree".into(),
            FailureKind::DeviceReported { message, .. } => device_message_causes(message)
                .into_iter()
                .next()
                .unwrap_or_else(|| "read the U-Boot console".into()),
            FailureKind::Transfer { source } => source.help(),
            FailureKind::UnexpectedPhase { .. } => "reset the board into USB boot and run again; if it repeats, read the UART console".into(),
            FailureKind::MissingBinary { .. } => "give the row a file in the Binary column, or do not select it".into(),
            FailureKind::NotInLayout { .. } => "add the row to the flashlayout, or reset the board and run again with the same file".into(),
            FailureKind::PhaseRepeated { .. } => "read the U-Boot console for the error that made it ask again".into(),
            FailureKind::NotAllWritten { .. } => "reset the board into USB boot and run again from the ROM code, so U-Boot gets this layout".into(),
            FailureKind::BinaryUnreadable { .. } => "fix the path in the Binary column".into(),
            FailureKind::Protocol { .. } => "use ROM code, TF-A and U-Boot from one STM32MP release, and compare the device's alternate settings with the layout".into(),
        }
    }
}

/// Causes of an error message U-Boot put in the phase record (phase 0xFF),
/// chosen by keywords of U-Boot's messages (reference §4.3), most specific
/// first. Always at least one.
pub fn device_message_causes(message: &str) -> Vec<String> {
    let m = message.to_ascii_lowercase();
    let mut v: Vec<String> = Vec::new();
    if m.contains("not found") {
        v.push(format!("The device named in \"{message}\" is absent or disabled in U-Boot's device tree: the layout's IP column must name a device the board has (on ST's boards mmc0 is the SD card and mmc1 the eMMC), and its controller node (&sdmmc1, &sdmmc2, &fmc, &qspi) must have status = \"okay\"."));
    }
    if m.contains("too large") || m.contains("bad size") || m.contains("invalid address") {
        v.push("The image does not fit its partition: a partition's size is the next row's Offset minus its own, so enlarge it in the TSV by moving the next row's Offset (and the rows after it), or make the image smaller.".into());
        v.push("The device is smaller than the layout expects: check the capacity of the SD card, eMMC or flash against the last rows' offsets (the SD-card sample's userfs at 0x105984400 needs a card larger than 4 GiB).".into());
    }
    if m.contains("not aligned") {
        v.push("An Offset is not aligned on the device's erase size: align it in the TSV (NAND blocks of 128 or 256 KiB, NOR sectors of 4 or 64 KiB, eMMC erase groups).".into());
    }
    if m.contains("same address") || m.contains("bad address") {
        v.push("Two rows overlap on one device: the Offsets must increase strictly in file order; check the rows named in the message.".into());
    }
    if m.contains("mmc erase") {
        v.push("Erasing the SD card or eMMC failed: the card is write-protected (SD lock switch) or the partition reaches past the end of the device.".into());
    } else if m.contains("erase") || m.contains("mtd") {
        v.push("A NAND or NOR erase failed: the flash is worn or write-protected (WP pin, NOR status-register protection), or the NAND bad-block table is damaged; erase the chip from U-Boot (`mtd erase`, `nand scrub`) and run again.".into());
    }
    if m.contains("good block") || m.contains("bad block") {
        v.push("NAND blocks kept failing to erase or program, were marked bad one after another, and the partition ran out of good blocks: the NAND is worn out or write-protected (WP# held low), or its timings in the device tree (&fmc) are wrong. Check the bad-block count in U-Boot (`mtd list`, `nand bad`) and the WP# signal.".into());
    }
    if m.contains("copy of fsbl") {
        v.push("Copying the FSBL into the following NAND blocks (`Binary(N)`) failed: too many bad blocks at the start of the NAND, or N copies do not fit before the next row.".into());
    }
    if m.contains("gpt") {
        v.push("Writing the GPT failed: the device is smaller than the layout or write-protected; check the U-Boot console for the MMC error.".into());
    }
    if m.contains("layout") {
        v.push("U-Boot rejected the flashlayout: check the line named in the message with `dfukit stm32mp check`; older U-Boot versions know fewer Types (only Binary, FIP, System, FileSystem, RawImage), and writing Offsets with `0x` avoids the 2023 change of their default base.".into());
    }
    if v.is_empty() {
        v.push(format!("U-Boot reported \"{message}\" without a cause this host knows: read the U-Boot console around the message, and check the row named in it."));
    }
    v
}

/// Causes of a phase the flow did not expect, by the phase reported.
fn unexpected_phase_causes(phase: u8) -> Vec<String> {
    match phase {
        ID_FSBL => vec![
            "The ROM code asks for the FSBL again: the board reset (watchdog, brown-out) or it was reset by hand during the run. Check the supply and the UART console, then run again from the start.".into(),
        ],
        ID_SSBL => vec![
            "TF-A asks for the FIP again: it rejected the file. A FIP starts with the ToC header 0xAA640001 (`fip-<board>-<variant>.bin`); check that row 0x03 does not name u-boot.stm32 or a TF-A image, and read the UART console.".into(),
        ],
        ID_FLASHLAYOUT => vec![
            "U-Boot is back at its first enumeration: it did not accept the flashlayout, or it reset. Read the U-Boot console.".into(),
        ],
        _ => vec![
            "The device and the host disagree on the flow: the board runs a different TF-A or U-Boot than expected, or it kept the state of an earlier run. Reset the board into USB boot and run again.".into(),
        ],
    }
}

/// Which stage a device is in, from its alternate settings and the first
/// phase record read from 0xF1:
///
/// - phase 0x01 with an alt of Id 0x01: the ROM code;
/// - phase 0x03: TF-A waiting for the FIP; phase 0x00 with the DETACH
///   request and no `@FlashLayout` alt: TF-A after the FIP;
/// - an `@FlashLayout/0x00` alt (phase 0x00, or 0xFF when U-Boot rejected
///   something): U-Boot's first enumeration;
/// - any other phase (a layout row, END, ERROR): U-Boot's programming
///   enumeration.
pub fn identify(alts: &[(u8, String)], record: &PhaseRecord) -> Result<Stage, FailureKind> {
    let parsed: Vec<AltName> = alts.iter().filter_map(|(_, s)| AltName::parse(s)).collect();
    let has_id = |id: u8| parsed.iter().any(|a| a.id == id);
    let flashlayout = parsed
        .iter()
        .any(|a| a.id == ID_FLASHLAYOUT && a.name.eq_ignore_ascii_case("FlashLayout"));
    match record.phase {
        ID_FSBL if has_id(ID_FSBL) => Ok(Stage::Rom),
        ID_FSBL => Err(FailureKind::Protocol {
            what: format!(
                "the device asks for the FSBL (phase 0x01) but offers no alternate setting with Id 0x01 (alts: {})",
                alt_list(alts)
            ),
        }),
        ID_SSBL => Ok(Stage::TfA),
        ID_FLASHLAYOUT if record.detach_requested() && !flashlayout => Ok(Stage::TfA),
        _ if flashlayout => Ok(Stage::UBootLayout),
        ID_FLASHLAYOUT => Err(FailureKind::Protocol {
            what: format!(
                "the device reports phase 0x00 without a DETACH request and offers no `@FlashLayout/0x00` alternate setting (alts: {})",
                alt_list(alts)
            ),
        }),
        _ => Ok(Stage::UBootProgram),
    }
}

fn alt_list(alts: &[(u8, String)]) -> String {
    alts.iter()
        .map(|(n, s)| format!("{n}: {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a host error means the device left the bus.
fn is_gone(e: &HostError) -> bool {
    matches!(
        e,
        HostError::Transfer {
            source: TransferError::Disconnected,
            ..
        } | HostError::SetAlt {
            source: TransferError::Disconnected,
            ..
        }
    )
}

/// The connector's transport with the run's bookkeeping: transfers are
/// refused past a deadline (the hand-off budget), and every GETSTATUS reply
/// is remembered as "the last thing the device said".
struct Link<'c, C: Connector> {
    inner: C::Transport,
    clock: &'c C,
    /// Budget armed before the FSBL download; it starts running at the
    /// zero-length DNLOAD, where the ROM code starts manifesting.
    arm: Option<Duration>,
    /// When the armed budget started.
    handoff_start: Option<Duration>,
    /// From this time on, transfers fail with a timeout without being sent.
    deadline: Option<Duration>,
    report: Rc<RefCell<Option<String>>>,
}

impl<C: Connector> Link<'_, C> {
    /// The transfer timeout, shortened so no transfer outlasts the
    /// deadline; a timeout once the deadline has passed.
    fn gate(&self, timeout: Duration) -> Result<Duration, TransferError> {
        match self.deadline {
            None => Ok(timeout),
            Some(d) => {
                let now = self.clock.elapsed();
                if now >= d {
                    Err(TransferError::Timeout)
                } else {
                    Ok(timeout.min(d - now))
                }
            }
        }
    }
}

/// A DFU class request (bmRequestType type bits = class).
fn is_class(setup: &SetupPacket, request: Request) -> bool {
    setup.request_type & 0x60 == 0x20 && setup.request == request as u8
}

impl<C: Connector> ControlTransfer for Link<'_, C> {
    fn control_in(
        &mut self,
        setup: SetupPacket,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        let timeout = self.gate(timeout)?;
        let n = self.inner.control_in(setup, buf, timeout)?;
        if is_class(&setup, Request::GetStatus) {
            if let Ok(st) = GetStatus::from_bytes(&buf[..n]) {
                *self.report.borrow_mut() = Some(format!(
                    "DFU state {}, status {}",
                    st.state.name(),
                    st.status.name()
                ));
            }
        }
        Ok(n)
    }

    fn control_out(
        &mut self,
        setup: SetupPacket,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        if is_class(&setup, Request::Dnload) && data.is_empty() {
            if let Some(budget) = self.arm.take() {
                let now = self.clock.elapsed();
                self.handoff_start = Some(now);
                self.deadline = Some(now + budget);
            }
        }
        let timeout = self.gate(timeout)?;
        self.inner.control_out(setup, data, timeout)
    }

    fn sleep(&mut self, d: Duration) {
        let d = match self.deadline {
            Some(end) => d.min(end.saturating_sub(self.clock.elapsed())),
            None => d,
        };
        self.inner.sleep(d)
    }

    fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }
}

/// One opened, probed device.
struct Dev<'c, C: Connector> {
    host: DfuHost<Link<'c, C>>,
    alts: Vec<(u8, String)>,
}

impl<C: Connector> Dev<'_, C> {
    fn now(&mut self) -> Duration {
        self.host.transport().clock.elapsed()
    }

    fn pause(&mut self) {
        self.host.transport().sleep(RETRY_PAUSE);
    }

    fn alt(&self, id: u8) -> Option<u8> {
        phase::find_alt(self.alts.iter().map(|(n, s)| (*n, s.as_str())), id)
    }
}

/// How a wait for the next enumeration ends when the device does not come.
#[derive(Debug, Clone, Copy)]
enum Lost {
    TfaSilent,
    UbootNoReconnect { after_layout: bool },
}

/// Waiting for the device to enumerate as `expect`.
#[derive(Debug, Clone, Copy)]
struct Wait {
    expect: Stage,
    /// The stage whose enumeration may still be present for a moment.
    left: Stage,
    started: Duration,
    deadline: Duration,
    lost: Lost,
}

/// What the ROM → TF-A hand-off on the ROM's enumeration ended with.
enum Handoff {
    /// TF-A answered with this phase record.
    Answered(PhaseRecord),
    /// The device left the bus (TF-A re-enumerates on STM32MP13).
    Gone,
}

/// The state of one run.
struct Run<'a> {
    layout: &'a Layout,
    layout_bytes: &'a [u8],
    opts: &'a Options,
    events: &'a mut dyn FnMut(Event),
    report: Rc<RefCell<Option<String>>>,
    start: Duration,
    /// The stage in progress and when it started.
    current: Option<(Stage, Duration)>,
    stages: Vec<(Stage, Duration)>,
    written: Vec<Written>,
    partition: Option<(u8, String)>,
    /// The last failed attempt while waiting for a device.
    last_error: Option<String>,
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
    opts: &Options,
    events: &mut dyn FnMut(Event),
) -> Result<Summary, ProgramError> {
    let start = conn.elapsed();
    let mut run = Run {
        layout,
        layout_bytes,
        opts,
        events,
        report: Rc::new(RefCell::new(None)),
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
            stage: run.current.map_or(Stage::Rom, |(s, _)| s),
            partition: run.partition.take(),
            last_report: run.report.borrow().clone(),
            elapsed: now.saturating_sub(run.start),
            kind,
        }),
    }
}

impl<'a> Run<'a> {
    fn emit(&mut self, e: Event) {
        (self.events)(e);
    }

    /// Ends the stage in progress at `now`.
    fn close(&mut self, now: Duration) {
        if let Some((s, t)) = self.current.take() {
            self.stages.push((s, now.saturating_sub(t)));
        }
    }

    /// Makes `stage` the stage in progress (nothing if it already is).
    fn enter(&mut self, stage: Stage, now: Duration) {
        if self.current.map(|(s, _)| s) == Some(stage) {
            return;
        }
        self.close(now);
        self.current = Some((stage, now));
        self.emit(Event::StageStarted { stage });
    }

    fn stage(&self) -> Stage {
        self.current.map_or(Stage::Rom, |(s, _)| s)
    }

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

    /// Connects, identifies and runs stages until the board is programmed.
    fn drive<C: Connector>(&mut self, conn: &mut C) -> Result<(), FailureKind> {
        let mut wait: Option<Wait> = None;
        loop {
            let timeout = match &wait {
                None => self.opts.connect_timeout,
                Some(w) => {
                    let now = conn.elapsed();
                    if now >= w.deadline {
                        return Err(self.lost(w, now));
                    }
                    w.deadline - now
                }
            };
            let transport = match conn.connect(timeout) {
                Ok(t) => t,
                Err(ConnectError::NotFound { waited }) => {
                    return Err(match &wait {
                        None => FailureKind::NoDevice { waited },
                        Some(w) => self.lost(w, conn.elapsed()),
                    })
                }
                Err(ConnectError::Io(message)) => return Err(FailureKind::Connect { message }),
            };
            // TF-A re-enumerating (STM32MP13) is still within the hand-off
            // budget: keep its deadline on the new device.
            let deadline = wait
                .filter(|w| matches!(w.lost, Lost::TfaSilent))
                .map(|w| w.deadline);
            let mut link = Link {
                inner: transport,
                clock: &*conn,
                arm: None,
                handoff_start: None,
                deadline,
                report: Rc::clone(&self.report),
            };
            let iface = match probe(&mut link) {
                Ok(i) => i,
                Err(e) if wait.is_some() => {
                    // A device in the middle of re-enumerating answers
                    // descriptor requests badly; try again until the wait
                    // ends.
                    self.last_error = Some(format!("reading the USB descriptors: {e}"));
                    link.sleep(RETRY_PAUSE);
                    continue;
                }
                Err(e) => {
                    return Err(FailureKind::Protocol {
                        what: format!("reading the USB descriptors failed: {e}"),
                    })
                }
            };
            let mut dev = Dev {
                host: DfuHost::new(
                    link,
                    u16::from(iface.interface),
                    iface.functional,
                    self.opts.host_options(),
                ),
                alts: iface.alts,
            };
            let rec = match self.read_phase(&mut dev) {
                Ok(r) => r,
                Err(e) if wait.is_some() => {
                    self.last_error = Some(e.to_string());
                    dev.pause();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let stage = identify(&dev.alts, &rec)?;
            if let Some(w) = &wait {
                // An error record ends the wait whatever enumeration serves
                // it: U-Boot resets after reporting, so it will not come
                // back as the stage expected.
                if let Some(message) = rec.error_message() {
                    return Err(FailureKind::DeviceReported {
                        message,
                        transfer: None,
                    });
                }
                if stage < w.expect {
                    if stage == w.left {
                        // The old enumeration has not gone yet (or the ROM
                        // code still answers during the hand-off).
                        self.last_error =
                            Some(format!("the device still answers as {} ({rec})", w.left));
                        dev.pause();
                        continue;
                    }
                    return Err(self.unexpected(&rec, w.expect));
                }
            }
            dev.host.transport().deadline = None;
            let now = dev.now();
            self.enter(stage, now);
            self.emit(Event::Connected {
                stage,
                alts: dev.alts.len(),
            });
            self.emit(Event::PhaseRead {
                stage,
                record: rec.clone(),
            });
            wait = match stage {
                Stage::Rom => self.rom(&mut dev)?,
                Stage::TfA => Some(self.tfa(&mut dev, rec)?),
                Stage::UBootLayout => Some(self.send_layout(&mut dev, rec)?),
                Stage::UBootProgram => return self.partitions(&mut dev, rec),
            };
            if let Some(w) = &wait {
                let now = dev.now();
                self.enter(w.expect, now);
                self.last_error = None;
                self.emit(Event::Reconnecting { stage: w.expect });
            }
        }
    }

    /// The error for a phase record that is not the stage expected.
    fn unexpected(&self, rec: &PhaseRecord, expected: Stage) -> FailureKind {
        if let Some(message) = rec.error_message() {
            return FailureKind::DeviceReported {
                message,
                transfer: None,
            };
        }
        let expected = match expected {
            Stage::Rom => "0x01 (the ROM code asks for the FSBL)",
            Stage::TfA => "0x03 (TF-A asks for the FIP)",
            Stage::UBootLayout => "0x00 (U-Boot asks for the flashlayout)",
            Stage::UBootProgram => "a partition of the layout (U-Boot programming)",
        };
        FailureKind::UnexpectedPhase {
            phase: rec.phase,
            expected: expected.into(),
        }
    }

    /// Reads the phase record of 0xF1 (without reporting it).
    fn read_phase<C: Connector>(
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
        *self.report.borrow_mut() = Some(format!("phase record: {rec}"));
        Ok(rec)
    }

    /// Reads and reports the phase record.
    fn phase<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<PhaseRecord, FailureKind> {
        let rec = self.read_phase(dev)?;
        let stage = self.stage();
        self.emit(Event::PhaseRead {
            stage,
            record: rec.clone(),
        });
        Ok(rec)
    }

    /// The alt carrying `id`, or a protocol error naming the row.
    fn alt_for<C: Connector>(dev: &Dev<'_, C>, row: &Partition) -> Result<u8, FailureKind> {
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
    fn load(&self, id: u8) -> Result<(&'a Partition, Vec<u8>), FailureKind> {
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
    fn send<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        row: &Partition,
        alt: u8,
        bytes: &[u8],
        offset: usize,
    ) -> (Written, Result<(), HostError>) {
        let id = row.id;
        let total = bytes.len() as u64;
        let data = &bytes[offset.min(bytes.len())..];
        self.partition = Some((id, row.name.clone()));
        self.emit(Event::PartitionStarted {
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
                    events(Event::Progress {
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

    fn done(&mut self, w: Written) {
        self.emit(Event::PartitionDone {
            id: w.id,
            bytes: w.bytes,
            elapsed: w.elapsed,
        });
        self.written.push(w);
    }

    /// ROM code: the FSBL, then the hand-off to TF-A and TF-A's stage when
    /// TF-A keeps the enumeration.
    fn rom<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<Option<Wait>, FailureKind> {
        let (row, bytes) = self.load(ID_FSBL)?;
        let alt = Self::alt_for(dev, row)?;
        dev.host.transport().arm = Some(self.opts.tfa_timeout);
        let (mut written, result) = self.send(dev, row, alt, &bytes, 0);
        let handoff_start = dev.host.transport().handoff_start;
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
            Err(HostError::Device { status, .. }) => {
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
        let started = handoff_start.unwrap_or_else(|| dev.now());
        let deadline = started + self.opts.tfa_timeout;
        dev.host.transport().deadline = Some(deadline);
        self.enter(Stage::TfA, started);
        match self.await_tfa(dev, started, deadline)? {
            Handoff::Answered(rec) => {
                self.emit(Event::PhaseRead {
                    stage: Stage::TfA,
                    record: rec.clone(),
                });
                if identify(&dev.alts, &rec)? != Stage::TfA {
                    return Err(self.unexpected(&rec, Stage::TfA));
                }
                dev.host.transport().deadline = None;
                Ok(Some(self.tfa(dev, rec)?))
            }
            Handoff::Gone => Ok(Some(Wait {
                expect: Stage::TfA,
                left: Stage::Rom,
                started,
                deadline,
                lost: Lost::TfaSilent,
            })),
        }
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
    fn tfa<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        rec: PhaseRecord,
    ) -> Result<Wait, FailureKind> {
        if !rec.detach_requested() {
            if rec.phase != ID_SSBL {
                return Err(self.unexpected(&rec, Stage::TfA));
            }
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
        }
        self.detach(dev)?;
        let now = dev.now();
        Ok(Wait {
            expect: Stage::UBootLayout,
            left: Stage::TfA,
            started: now,
            deadline: now + self.opts.reenumerate_timeout,
            lost: Lost::UbootNoReconnect {
                after_layout: false,
            },
        })
    }

    /// DETACH; a device that leaves the bus or stops answering while doing
    /// so has done what was asked.
    fn detach<C: Connector>(&mut self, dev: &mut Dev<'_, C>) -> Result<(), FailureKind> {
        match dev.host.detach() {
            Ok(_) => Ok(()),
            Err(HostError::Transfer {
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
    fn download_failure<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        source: HostError,
    ) -> FailureKind {
        match self.device_message(dev) {
            Some(message) => FailureKind::DeviceReported {
                message,
                transfer: Some(source),
            },
            None => FailureKind::Transfer { source },
        }
    }

    /// U-Boot's first enumeration: the flashlayout, then DETACH.
    fn send_layout<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        rec: PhaseRecord,
    ) -> Result<Wait, FailureKind> {
        if rec.phase != ID_FLASHLAYOUT {
            return Err(self.unexpected(&rec, Stage::UBootLayout));
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
        self.detach(dev)?;
        let now = dev.now();
        Ok(Wait {
            expect: Stage::UBootProgram,
            left: Stage::UBootLayout,
            started: now,
            deadline: now + self.opts.reenumerate_timeout,
            lost: Lost::UbootNoReconnect { after_layout: true },
        })
    }

    /// At END: every row of the layout that U-Boot must be sent (`P`
    /// without `E`, on a device) was written in this run. A board that kept
    /// an earlier run's layout reports END for that layout, not this one.
    fn check_all_written(&self) -> Result<(), FailureKind> {
        let missing: Vec<String> = self
            .layout
            .partitions
            .iter()
            .filter(|p| p.opt.downloads() && p.ip.kind != crate::layout::IpKind::None)
            .filter(|p| !self.written.iter().any(|w| w.id == p.id))
            .map(|p| format!("{:#04x} {}", p.id, p.name))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(FailureKind::NotAllWritten { missing })
        }
    }

    /// U-Boot's programming enumeration: the rows it asks for, until END,
    /// then DETACH so U-Boot finishes.
    fn partitions<C: Connector>(
        &mut self,
        dev: &mut Dev<'_, C>,
        mut rec: PhaseRecord,
    ) -> Result<(), FailureKind> {
        // Every Id U-Boot asked for and got: asking again for any of them
        // (not only the last) would loop for ever.
        let mut done_ids = std::collections::BTreeSet::new();
        loop {
            match rec.phase {
                PHASE_END => {
                    self.check_all_written()?;
                    break;
                }
                PHASE_ERROR => {
                    return Err(FailureKind::DeviceReported {
                        message: rec.error_message().unwrap_or_default(),
                        transfer: None,
                    })
                }
                id => {
                    if done_ids.contains(&id) {
                        let name = self
                            .layout
                            .by_id(id)
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
                    done_ids.insert(id);
                }
            }
            // The partition stays the context: an error reported now comes
            // from U-Boot's end-of-download step for it.
            rec = self.phase(dev)?;
        }
        self.partition = None;
        self.detach(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::NO_ADDRESS;
    use dfukit_usbdfu::host::Phase;

    fn alts(names: &[&str]) -> Vec<(u8, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u8, s.to_string()))
            .collect()
    }

    fn rom_alts() -> Vec<(u8, String)> {
        alts(&crate::phase::ROM_ALTS)
    }

    fn uboot_program_alts() -> Vec<(u8, String)> {
        alts(&[
            "@fsbl1/0x04/1*256Ke",
            "@fip-a/0x08/1*4Me",
            "@rootfs/0x12/1*3072Me",
            "@virtual/0xf1/1*512Be",
        ])
    }

    fn err(kind: FailureKind, stage: Stage) -> ProgramError {
        ProgramError {
            stage,
            partition: None,
            last_report: None,
            elapsed: Duration::from_secs(12),
            kind,
        }
    }

    #[test]
    fn identifies_rom_and_tf_a_on_the_same_alt_names() {
        let a = rom_alts();
        let rom = PhaseRecord::new(ID_FSBL, NO_ADDRESS, 0);
        assert_eq!(identify(&a, &rom), Ok(Stage::Rom));
        let tfa = PhaseRecord::new(ID_SSBL, 0xC700_0000, 0);
        assert_eq!(identify(&a, &tfa), Ok(Stage::TfA));
        // TF-A after the FIP: phase 0 with the DETACH byte.
        let mut detach = PhaseRecord::new(ID_FLASHLAYOUT, NO_ADDRESS, 0);
        detach.extra.push(1);
        assert_eq!(identify(&a, &detach), Ok(Stage::TfA));
        // Phase 0 on TF-A's alts without the DETACH byte is nobody's state.
        let plain = PhaseRecord::new(ID_FLASHLAYOUT, NO_ADDRESS, 0);
        let e = identify(&a, &plain).unwrap_err();
        assert_eq!(e.code(), "dfukit::stm32mp::protocol");
    }

    #[test]
    fn identifies_u_boot_enumerations() {
        let first = alts(&["@FlashLayout/0x00/1*256Ke", "@virtual/0xf1/1*512Be"]);
        let mut rec = PhaseRecord::new(ID_FLASHLAYOUT, 0xC000_0000, 0);
        rec.extra.push(0);
        assert_eq!(identify(&first, &rec), Ok(Stage::UBootLayout));
        // U-Boot's first enumeration reporting an error is still that stage,
        // so the error is attributed to the flashlayout.
        let e = PhaseRecord::error("Layout line 3: invalid part 'x'");
        assert_eq!(identify(&first, &e), Ok(Stage::UBootLayout));
        // Even with the detach byte, the FlashLayout alt says U-Boot.
        let mut present = PhaseRecord::new(ID_FLASHLAYOUT, 0xC000_0000, 0);
        present.extra.push(1);
        assert_eq!(identify(&first, &present), Ok(Stage::UBootLayout));

        let prog = uboot_program_alts();
        for phase in [0x04, 0x12, PHASE_END, PHASE_ERROR] {
            let r = PhaseRecord::new(phase, NO_ADDRESS, 0);
            assert_eq!(identify(&prog, &r), Ok(Stage::UBootProgram), "{phase:#x}");
        }
    }

    #[test]
    fn fsbl_phase_without_fsbl_alt_is_a_protocol_error() {
        let r = PhaseRecord::new(ID_FSBL, NO_ADDRESS, 0);
        let e = identify(&uboot_program_alts(), &r).unwrap_err();
        assert!(matches!(e, FailureKind::Protocol { .. }));
        assert!(e.to_string().contains("Id 0x01"), "{e}");
        assert!(e.to_string().contains("@fsbl1/0x04"), "{e}");
    }

    #[test]
    fn stages_are_ordered_and_named() {
        assert!(Stage::Rom < Stage::TfA);
        assert!(Stage::TfA < Stage::UBootLayout);
        assert!(Stage::UBootLayout < Stage::UBootProgram);
        assert_eq!(Stage::Rom.to_string(), "ROM code (FSBL download)");
        assert_eq!(Stage::TfA.to_string(), "TF-A (FIP download)");
        assert_eq!(Stage::UBootLayout.to_string(), "U-Boot (flashlayout)");
        assert_eq!(Stage::UBootProgram.to_string(), "U-Boot (partitions)");
    }

    #[test]
    fn tf_a_silence_reads_like_the_field_report() {
        let e = ProgramError {
            last_report: Some("DFU state dfuIDLE, status OK".into()),
            ..err(
                FailureKind::TfaSilent {
                    waited: Duration::from_secs(10),
                    last_error: Some("selecting alt setting 5 failed: timed out".into()),
                },
                Stage::TfA,
            )
        };
        assert_eq!(
            e.to_string(),
            "TF-A (FIP download): the device stopped answering 10.0 s after the ROM code handed over to TF-A"
        );
        assert_eq!(e.code(), "dfukit::stm32mp::tfa_silent");
        let causes = e.causes().join("\n");
        for needle in [
            "PANIC at PC : 0x2fff1a71",
            "tf-a-<board>-usb.stm32",
            "programmer-usb",
            "DDR",
            "PMIC",
            "HSE",
            "&usbotg_hs",
        ] {
            assert!(causes.contains(needle), "missing {needle:?} in {causes}");
        }
        assert!(e.help().contains("UART console"));
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn u_boot_reconnect_causes_depend_on_the_point() {
        let after_fip = err(
            FailureKind::UbootNoReconnect {
                waited: Duration::from_millis(15_000),
                after_layout: false,
                last_error: None,
            },
            Stage::UBootLayout,
        );
        assert_eq!(
            after_fip.to_string(),
            "U-Boot (flashlayout): U-Boot did not enumerate within 15.0 s after TF-A's DETACH"
        );
        let c = after_fip.causes().join("\n");
        assert!(c.contains("u-boot,force-b-session-valid"));
        assert!(c.contains("dr_mode = \"peripheral\""));
        assert!(c.contains("CONFIG_CMD_STM32PROG"));
        let after_layout = err(
            FailureKind::UbootNoReconnect {
                waited: Duration::from_secs(15),
                after_layout: true,
                last_error: None,
            },
            Stage::UBootProgram,
        );
        assert!(after_layout
            .to_string()
            .contains("after the flashlayout was sent"));
        let c = after_layout.causes().join("\n");
        assert!(c.contains("stm32prog_dfu_init"));
        assert!(c.contains("mmc device N not found"));
        assert!(after_layout.help().contains("force-b-session-valid"));
    }

    #[test]
    fn device_messages_choose_their_causes() {
        let c = device_message_causes("mmc device 1 not found").join("\n");
        assert!(c.contains("absent or disabled"), "{c}");
        assert!(c.contains("mmc1 the eMMC"), "{c}");

        for m in [
            "rootfs (0x12): image too large for partition",
            "userfs: Bad size for partition 5 (userfs)",
            "mmc0: invalid address 0x105984400 (max=0xe8000000)",
        ] {
            let c = device_message_causes(m).join("\n");
            assert!(c.contains("enlarge it in the TSV"), "{m}: {c}");
            assert!(c.contains("capacity"), "{m}: {c}");
        }

        let c = device_message_causes("nand0: MTD erase commands failed (-5)").join("\n");
        assert!(c.contains("NAND or NOR erase failed"), "{c}");
        assert!(c.contains("bad-block table"), "{c}");
        let c = device_message_causes("mmc1: MMC erase failed").join("\n");
        assert!(c.contains("write-protected (SD lock switch)"), "{c}");
        assert!(!c.contains("NAND or NOR"), "{c}");

        let c = device_message_causes("Layout line 4: invalid part 'fsbl1'").join("\n");
        assert!(c.contains("rejected the flashlayout"), "{c}");

        let c = device_message_causes("something odd").join("\n");
        assert!(c.contains("\"something odd\""), "{c}");
        assert!(!device_message_causes("").is_empty());
    }

    #[test]
    fn device_reported_names_partition_message_and_transfer() {
        let transfer = HostError::Device {
            phase: Phase::Download,
            state: State::DfuError,
            status: Status::ErrWrite,
            address: None,
        };
        let e = ProgramError {
            partition: Some((0x12, "rootfs".into())),
            last_report: Some(
                "phase record: phase ERROR (0xff): image too large for partition".into(),
            ),
            ..err(
                FailureKind::DeviceReported {
                    message: "image too large for partition".into(),
                    transfer: Some(transfer.clone()),
                },
                Stage::UBootProgram,
            )
        };
        let s = e.to_string();
        assert!(
            s.starts_with("U-Boot (partitions), partition 0x12 (rootfs): the device reported \"image too large for partition\" (after: "),
            "{s}"
        );
        assert!(s.contains("errWRITE"), "{s}");
        assert_eq!(e.code(), "dfukit::stm32mp::device_reported");
        assert!(e.help().contains("enlarge"));
        assert!(e
            .causes()
            .last()
            .unwrap()
            .contains("restart from the ROM code"));
        // The chain leads to the transfer error, not back to our message.
        let src = std::error::Error::source(&e).unwrap();
        assert_eq!(src.to_string(), transfer.to_string());
    }

    #[test]
    fn fsbl_rejection_puts_the_host_check_first() {
        let e = err(
            FailureKind::FsblRejected {
                status: Status::ErrFile,
                header_check: Some("bad magic at offset 0x0".into()),
            },
            Stage::Rom,
        );
        assert_eq!(
            e.to_string(),
            "ROM code (FSBL download): the ROM code rejected the FSBL: DFU status errFILE"
        );
        let c = e.causes();
        assert!(c[0].contains("bad magic"), "{c:?}");
        assert!(c.iter().any(|s| s.contains("signed image")));
        assert_eq!(e.code(), "dfukit::stm32mp::fsbl_rejected");
    }

    #[test]
    fn no_device_and_connect_advice() {
        let e = err(
            FailureKind::NoDevice {
                waited: Duration::from_secs(5),
            },
            Stage::Rom,
        );
        assert_eq!(
            e.to_string(),
            "ROM code (FSBL download): no STM32MP DFU device (0483:df11) appeared within 5.0 s"
        );
        let c = e.causes().join("\n");
        assert!(c.contains("BOOT[2:0] = 000"));
        assert!(c.contains("wrong connector"));
        assert!(e.help().contains("BOOT[2:0] = 000"));
        let e = err(
            FailureKind::Connect {
                message: "permission denied".into(),
            },
            Stage::Rom,
        );
        assert!(e.causes().join("\n").contains("udev"));
        assert_eq!(e.code(), "dfukit::stm32mp::connect");
    }

    #[test]
    fn guards_have_specific_messages() {
        let e = err(
            FailureKind::MissingBinary {
                id: 0x10,
                name: "bootfs".into(),
            },
            Stage::UBootProgram,
        );
        assert!(e.to_string().contains("partition 0x10 (bootfs)"));
        assert!(e.causes()[0].contains("`PE`"));
        let e = err(
            FailureKind::MissingBinary {
                id: ID_FSBL,
                name: "fsbl-boot".into(),
            },
            Stage::Rom,
        );
        assert!(e.causes()[0].contains("-usb.stm32"));
        let e = err(FailureKind::NotInLayout { id: ID_SSBL }, Stage::TfA);
        assert_eq!(
            e.to_string(),
            "TF-A (FIP download): the device asks for Id 0x03, which is not in the layout"
        );
        assert!(e.causes()[0].contains("fip-boot"));
        let e = err(
            FailureKind::PhaseRepeated {
                id: 0x04,
                name: "fsbl1".into(),
            },
            Stage::UBootProgram,
        );
        assert!(e.to_string().contains("again right after it was written"));
        assert_eq!(e.code(), "dfukit::stm32mp::phase_repeated");
        let e = err(
            FailureKind::UnexpectedPhase {
                phase: ID_SSBL,
                expected: "0x00 with the DETACH request (TF-A accepted the FIP)".into(),
            },
            Stage::TfA,
        );
        assert!(e.to_string().contains("phase 0x03, expected 0x00"));
        assert!(e.causes()[0].contains("0xAA640001"));
        let e = err(
            FailureKind::UnexpectedPhase {
                phase: ID_FSBL,
                expected: "0x00".into(),
            },
            Stage::UBootLayout,
        );
        assert!(e.causes()[0].contains("board reset"));
    }

    #[test]
    fn transfer_failures_add_stage_advice() {
        let source = HostError::Transfer {
            phase: Phase::Download,
            request: Request::Dnload,
            address: None,
            source: TransferError::Disconnected,
        };
        let e = err(
            FailureKind::Transfer {
                source: source.clone(),
            },
            Stage::UBootProgram,
        );
        let c = e.causes();
        assert_eq!(c[0], source.help());
        assert!(c.iter().any(|s| s.contains("U-Boot failed while writing")));
        assert!(c.iter().any(|s| s.contains("disconnected")));
        assert_eq!(e.help(), source.help());
    }

    #[test]
    fn every_kind_has_a_code_help_and_causes() {
        let kinds = vec![
            FailureKind::NoDevice {
                waited: Duration::ZERO,
            },
            FailureKind::Connect {
                message: "x".into(),
            },
            FailureKind::FsblRejected {
                status: Status::ErrFile,
                header_check: None,
            },
            FailureKind::TfaSilent {
                waited: Duration::ZERO,
                last_error: None,
            },
            FailureKind::UbootNoReconnect {
                waited: Duration::ZERO,
                after_layout: true,
                last_error: None,
            },
            FailureKind::DeviceReported {
                message: "x".into(),
                transfer: None,
            },
            FailureKind::Transfer {
                source: HostError::Unsupported { what: "download" },
            },
            FailureKind::UnexpectedPhase {
                phase: 0x20,
                expected: "x".into(),
            },
            FailureKind::MissingBinary {
                id: 0x20,
                name: "x".into(),
            },
            FailureKind::NotInLayout { id: 0x20 },
            FailureKind::PhaseRepeated {
                id: 0x20,
                name: "x".into(),
            },
            FailureKind::BinaryUnreadable {
                id: 0x20,
                path: "a/b.bin".into(),
                error: "gone".into(),
            },
            FailureKind::Protocol { what: "x".into() },
        ];
        let mut codes = std::collections::BTreeSet::new();
        for k in kinds {
            let e = err(k, Stage::UBootProgram);
            assert!(e.code().starts_with("dfukit::stm32mp::"));
            assert!(codes.insert(e.code()), "duplicate code {}", e.code());
            assert!(!e.help().is_empty(), "{}", e.code());
            assert!(!e.causes().is_empty(), "{}", e.code());
            assert!(e.to_string().starts_with("U-Boot (partitions): "));
        }
    }

    #[test]
    fn options_defaults_feed_the_host() {
        let o = Options::default();
        assert_eq!(o.transfer_timeout, Duration::from_secs(2));
        assert_eq!(o.tfa_timeout, Duration::from_secs(10));
        assert_eq!(o.reenumerate_timeout, Duration::from_secs(15));
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!(o.host_options().timeout, Duration::from_secs(2));
    }

    #[test]
    fn written_rates() {
        let w = Written {
            id: 0x12,
            name: "rootfs".into(),
            ip: Ip {
                kind: crate::layout::IpKind::Mmc,
                instance: 1,
            },
            offset: Offset::Bytes(0x0580_0000),
            bytes: 8 << 20,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(w.bytes_per_second(), Some(4.0 * 1024.0 * 1024.0));
        let s = Summary {
            written: vec![w.clone(), w],
            stages: vec![],
            total: Duration::from_secs(4),
        };
        assert_eq!(s.bytes(), 16 << 20);
    }
}
