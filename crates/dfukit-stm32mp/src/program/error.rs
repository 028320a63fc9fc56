//! The failures of a run: what went wrong ([`FailureKind`], with a stable
//! code), where ([`ProgramError`]), the likely causes and what to do first.

use super::stage::ProgramStage;
use crate::phase::{ID_FLASHLAYOUT, ID_FSBL, ID_SSBL};
use dfukit_usbdfu::host::{DfuHostError, TransferError};
use dfukit_usbdfu::wire::Status;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
        transfer: Option<DfuHostError>,
    },
    /// A DFU transfer failed.
    #[error("{source}")]
    Transfer {
        /// The host error.
        #[source]
        source: DfuHostError,
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
    /// for; for no device at all, [`ProgramStage::Rom`]).
    pub stage: ProgramStage,
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
                    ProgramStage::Rom => "The ROM code stopped answering during the FSBL download: check the cable and the supply; the ROM code itself does not hang.".into(),
                    ProgramStage::TfA => "TF-A failed while receiving the FIP: read the UART console; the FIP must fit the DDR area TF-A loads it to.".into(),
                    ProgramStage::UBootLayout | ProgramStage::UBootProgram => "U-Boot failed while writing: read its console (MMC or MTD write errors, a reset).".into(),
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

/// Whether a host error means the device left the bus.
pub(super) fn is_gone(e: &DfuHostError) -> bool {
    matches!(
        e,
        DfuHostError::Transfer {
            source: TransferError::Disconnected,
            ..
        } | DfuHostError::SetAlt {
            source: TransferError::Disconnected,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfukit_usbdfu::host::DfuPhase;
    use dfukit_usbdfu::wire::{DfuRequest, State};

    fn err(kind: FailureKind, stage: ProgramStage) -> ProgramError {
        ProgramError {
            stage,
            partition: None,
            last_report: None,
            elapsed: Duration::from_secs(12),
            kind,
        }
    }

    /// The error of `kind` in `stage`, and its causes as one text.
    fn with_causes(kind: FailureKind, stage: ProgramStage) -> (ProgramError, String) {
        let e = err(kind, stage);
        let causes = e.causes().join("\n");
        (e, causes)
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
                ProgramStage::TfA,
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
        let no_reconnect = |waited, after_layout| FailureKind::UbootNoReconnect {
            waited,
            after_layout,
            last_error: None,
        };
        let (after_fip, c) = with_causes(
            no_reconnect(Duration::from_millis(15_000), false),
            ProgramStage::UBootLayout,
        );
        assert_eq!(
            after_fip.to_string(),
            "U-Boot (flashlayout): U-Boot did not enumerate within 15.0 s after TF-A's DETACH"
        );
        assert!(c.contains("u-boot,force-b-session-valid"));
        assert!(c.contains("dr_mode = \"peripheral\""));
        assert!(c.contains("CONFIG_CMD_STM32PROG"));
        let (after_layout, c) = with_causes(
            no_reconnect(Duration::from_secs(15), true),
            ProgramStage::UBootProgram,
        );
        assert!(after_layout
            .to_string()
            .contains("after the flashlayout was sent"));
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
        let transfer = DfuHostError::Device {
            phase: DfuPhase::Download,
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
                ProgramStage::UBootProgram,
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
            ProgramStage::Rom,
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
        let waited = Duration::from_secs(5);
        let (e, c) = with_causes(FailureKind::NoDevice { waited }, ProgramStage::Rom);
        assert_eq!(
            e.to_string(),
            "ROM code (FSBL download): no STM32MP DFU device (0483:df11) appeared within 5.0 s"
        );
        assert!(c.contains("BOOT[2:0] = 000"));
        assert!(c.contains("wrong connector"));
        assert!(e.help().contains("BOOT[2:0] = 000"));
        let message = "permission denied".into();
        let (e, c) = with_causes(FailureKind::Connect { message }, ProgramStage::Rom);
        assert!(c.contains("udev"));
        assert_eq!(e.code(), "dfukit::stm32mp::connect");
    }

    #[test]
    fn guards_have_specific_messages() {
        let missing = |id, name: &str| FailureKind::MissingBinary {
            id,
            name: name.into(),
        };
        let unexpected = |phase, expected: &str| FailureKind::UnexpectedPhase {
            phase,
            expected: expected.into(),
        };
        let repeated = FailureKind::PhaseRepeated {
            id: 0x04,
            name: "fsbl1".into(),
        };
        let tfa_detach = "0x00 with the DETACH request (TF-A accepted the FIP)";
        // (kind, stage, part of the message, part of the first cause)
        #[rustfmt::skip]
        let cases = [
            (missing(0x10, "bootfs"), ProgramStage::UBootProgram, "partition 0x10 (bootfs)", "`PE`"),
            (missing(ID_FSBL, "fsbl-boot"), ProgramStage::Rom, "", "-usb.stm32"),
            (FailureKind::NotInLayout { id: ID_SSBL }, ProgramStage::TfA, "", "fip-boot"),
            (repeated.clone(), ProgramStage::UBootProgram, "again right after it was written", ""),
            (unexpected(ID_SSBL, tfa_detach), ProgramStage::TfA, "phase 0x03, expected 0x00", "0xAA640001"),
            (unexpected(ID_FSBL, "0x00"), ProgramStage::UBootLayout, "", "board reset"),
        ];
        for (kind, stage, message, cause) in cases {
            let e = err(kind, stage);
            assert!(e.to_string().contains(message), "{e}");
            assert!(e.causes()[0].contains(cause), "{e}: {:?}", e.causes());
        }
        let e = err(FailureKind::NotInLayout { id: ID_SSBL }, ProgramStage::TfA);
        assert_eq!(
            e.to_string(),
            "TF-A (FIP download): the device asks for Id 0x03, which is not in the layout"
        );
        let e = err(repeated, ProgramStage::UBootProgram);
        assert_eq!(e.code(), "dfukit::stm32mp::phase_repeated");
    }

    #[test]
    fn transfer_failures_add_stage_advice() {
        let source = DfuHostError::Transfer {
            phase: DfuPhase::Download,
            request: DfuRequest::Dnload,
            address: None,
            source: TransferError::Disconnected,
        };
        let e = err(
            FailureKind::Transfer {
                source: source.clone(),
            },
            ProgramStage::UBootProgram,
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
                source: DfuHostError::Unsupported { what: "download" },
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
            let e = err(k, ProgramStage::UBootProgram);
            assert!(e.code().starts_with("dfukit::stm32mp::"));
            assert!(codes.insert(e.code()), "duplicate code {}", e.code());
            assert!(!e.help().is_empty(), "{}", e.code());
            assert!(!e.causes().is_empty(), "{}", e.code());
            assert!(e.to_string().starts_with("U-Boot (partitions): "));
        }
    }
}
