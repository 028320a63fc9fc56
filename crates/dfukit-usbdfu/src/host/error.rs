//! Host errors: what failed, in which phase, at which address, what the
//! device reported, and what to do about it.

use crate::wire::{DfuRequest, DfuWireError, State, Status};
use std::fmt;
use std::time::Duration;

/// A control transfer that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The device stalled the request (refused it).
    #[error("request stalled")]
    Stall,
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The device is gone from the bus (reset, left DFU, unplugged).
    #[error("device disconnected")]
    Disconnected,
    /// Any other transport failure.
    #[error("I/O error: {0}")]
    Io(String),
}

/// The phase of an operation an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfuPhase {
    /// Getting the device to dfuIDLE, selecting the alt.
    Setup,
    /// Erasing sectors.
    Erase,
    /// Sending image blocks.
    Download,
    /// Ending the download and waiting for manifestation.
    Manifest,
    /// Reading memory.
    Upload,
    /// Comparing a read-back with the image.
    Verify,
    /// DfuSe `:leave`.
    Leave,
    /// DETACH.
    Detach,
    /// A DfuSe special command (SET_ADDRESS, GET_COMMANDS, …).
    Command,
}

impl fmt::Display for DfuPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DfuPhase::Setup => "setup",
            DfuPhase::Erase => "erase",
            DfuPhase::Download => "download",
            DfuPhase::Manifest => "manifestation",
            DfuPhase::Upload => "upload",
            DfuPhase::Verify => "verify",
            DfuPhase::Leave => "leave",
            DfuPhase::Detach => "detach",
            DfuPhase::Command => "DfuSe command",
        })
    }
}

/// " at 0x08000000", or nothing.
pub(crate) fn at(address: &Option<u32>) -> String {
    address.map_or(String::new(), |a| format!(" at {a:#010x}"))
}

/// Why a host operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DfuHostError {
    /// A control transfer failed.
    #[error("{phase}: {request}{} failed: {source}", at(.address))]
    Transfer {
        /// Phase.
        phase: DfuPhase,
        /// The request.
        request: DfuRequest,
        /// Address concerned, if any.
        address: Option<u32>,
        /// The transport error.
        #[source]
        source: TransferError,
    },
    /// SET_INTERFACE (alt-setting selection) failed.
    #[error("selecting alt setting {alt} failed: {source}")]
    SetAlt {
        /// The alt setting.
        alt: u8,
        /// The transport error.
        #[source]
        source: TransferError,
    },
    /// The device reported an error status (usually in dfuERROR).
    #[error("{phase}{}: device reports {status} in state {state}", at(.address))]
    Device {
        /// Phase.
        phase: DfuPhase,
        /// State reported.
        state: State,
        /// Status reported.
        status: Status,
        /// Address concerned, if any.
        address: Option<u32>,
    },
    /// The device is in a state the protocol does not allow here.
    #[error("{phase}{}: device is in {state} (status {status}), expected {expected}", at(.address))]
    UnexpectedState {
        /// Phase.
        phase: DfuPhase,
        /// What the host expected.
        expected: State,
        /// State reported.
        state: State,
        /// Status reported.
        status: Status,
        /// Address concerned, if any.
        address: Option<u32>,
    },
    /// The device stayed busy too long.
    #[error("{phase}{}: device still busy after {waited:?} ({polls} status polls)", at(.address))]
    Stuck {
        /// Phase.
        phase: DfuPhase,
        /// Address concerned, if any.
        address: Option<u32>,
        /// Time spent waiting.
        waited: Duration,
        /// GETSTATUS requests sent.
        polls: u32,
    },
    /// A GETSTATUS reply did not decode.
    #[error("{phase}: malformed GETSTATUS reply: {detail}")]
    BadStatus {
        /// Phase.
        phase: DfuPhase,
        /// What was wrong.
        detail: DfuWireError,
    },
    /// Part of the requested range is not writeable in the device's memory
    /// map. Nothing was sent to the device.
    #[error("cannot write {start:#010x}..{end:#010x}: {address:#010x} is not writeable in the memory layout")]
    NotWriteable {
        /// First address that is not writeable.
        address: u32,
        /// Start of the requested range.
        start: u32,
        /// End (exclusive) of the requested range.
        end: u64,
    },
    /// Part of the requested range is not readable. Nothing was sent.
    #[error("cannot read {start:#010x}..{end:#010x}: {address:#010x} is not readable in the memory layout")]
    NotReadable {
        /// First address that is not readable.
        address: u32,
        /// Start of the requested range.
        start: u32,
        /// End (exclusive) of the requested range.
        end: u64,
    },
    /// The device does not offer the operation (functional descriptor).
    #[error("the device does not support {what}")]
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// No memory layout is known for an alt setting a file targets.
    #[error("no memory layout for alt setting {alt}")]
    NoLayout {
        /// The alt setting.
        alt: u8,
    },
    /// The read-back differs from the image.
    #[error("verify: byte at {address:#010x} reads {found:#04x}, expected {expected:#04x}")]
    Verify {
        /// First differing address.
        address: u32,
        /// Byte in the image.
        expected: u8,
        /// Byte read back.
        found: u8,
    },
    /// A `.dfu` file holds no targets: nothing would be written. Nothing
    /// was sent.
    #[error("the .dfu file has no targets: there is nothing to download")]
    EmptyFile,
    /// A `.dfu` target holds no element with data. Nothing was sent.
    #[error("target {index} (alt setting {alt}) of the .dfu file has no elements with data")]
    EmptyTarget {
        /// Target index in the file.
        index: usize,
        /// Its alt setting.
        alt: u8,
    },
    /// The first byte written in a sector to erase is not the sector's
    /// first: erasing would wipe bytes the download does not rewrite.
    /// Nothing was sent.
    #[error("erase: the image starts at {address:#010x}, inside the sector {sector:#010x}..{sector_end:#010x}; erasing it would wipe {sector:#010x}..{address:#010x}, which the image does not rewrite")]
    PartialSector {
        /// First address written in the sector.
        address: u32,
        /// Start of the sector.
        sector: u32,
        /// End (exclusive) of the sector.
        sector_end: u64,
    },
    /// A DfuSe request to a plain DFU 1.1 device (bcdDFU not 0x011A).
    /// Nothing was sent.
    #[error("{request} is a DfuSe request, and the device speaks plain DFU 1.1 (not DfuSe)")]
    NotDfuse {
        /// What was asked for.
        request: &'static str,
    },
    /// An upload returned fewer bytes than requested.
    #[error("upload at {address:#010x}: got {got} bytes, requested {requested}")]
    ShortUpload {
        /// Address of the chunk.
        address: u32,
        /// Bytes requested.
        requested: usize,
        /// Bytes received.
        got: usize,
    },
}

impl DfuHostError {
    /// A stable code for diagnostics.
    pub fn code(&self) -> &'static str {
        match self {
            DfuHostError::Transfer { .. } => "dfukit::usbdfu::transfer",
            DfuHostError::SetAlt { .. } => "dfukit::usbdfu::set_alt",
            DfuHostError::Device { .. } => "dfukit::usbdfu::device_error",
            DfuHostError::UnexpectedState { .. } => "dfukit::usbdfu::unexpected_state",
            DfuHostError::Stuck { .. } => "dfukit::usbdfu::stuck",
            DfuHostError::BadStatus { .. } => "dfukit::usbdfu::bad_status",
            DfuHostError::NotWriteable { .. } => "dfukit::usbdfu::not_writeable",
            DfuHostError::NotReadable { .. } => "dfukit::usbdfu::not_readable",
            DfuHostError::Unsupported { .. } => "dfukit::usbdfu::unsupported",
            DfuHostError::NoLayout { .. } => "dfukit::usbdfu::no_layout",
            DfuHostError::Verify { .. } => "dfukit::usbdfu::verify",
            DfuHostError::ShortUpload { .. } => "dfukit::usbdfu::short_upload",
            DfuHostError::EmptyFile => "dfukit::usbdfu::empty_file",
            DfuHostError::EmptyTarget { .. } => "dfukit::usbdfu::empty_target",
            DfuHostError::PartialSector { .. } => "dfukit::usbdfu::partial_sector",
            DfuHostError::NotDfuse { .. } => "dfukit::usbdfu::not_dfuse",
        }
    }

    /// The likely cause and what to do, in one line.
    pub fn help(&self) -> String {
        match self {
            DfuHostError::Transfer { source: TransferError::Stall, request: DfuRequest::GetStatus, .. } => "the device stalled GETSTATUS: some STM32 parts do this when polled before bwPollTimeout has passed; retry, or raise the poll timeout".into(),
            DfuHostError::Transfer { source: TransferError::Stall, .. } => "the device refused the request in its current state: run again (the host returns it to dfuIDLE first); if it repeats, the device's DFU dialect differs (check the alt setting and transfer size)".into(),
            DfuHostError::Transfer { source: TransferError::Disconnected, .. } => "the device left the bus: it may have reset (watchdog, brown-out, option-byte write) or jumped to the application; reconnect it in DFU mode".into(),
            DfuHostError::Transfer { source: TransferError::Timeout, .. } => "the device stopped answering on EP0: its bootloader may have hung (check its UART console), or a USB hub/cable is unreliable".into(),
            DfuHostError::Transfer { .. } => "the USB transfer failed: check permissions (udev rules) and that no other program holds the interface".into(),
            DfuHostError::SetAlt { .. } => "the device refused the alt setting: list the device's alt settings and pick an existing one (it also refuses while it is busy)".into(),
            DfuHostError::Device { status, .. } => status_help(*status).into(),
            DfuHostError::UnexpectedState { state: State::AppIdle, .. } => "the device runs its application, not the DFU bootloader: detach it first (or use the boot pins)".into(),
            DfuHostError::UnexpectedState { .. } => "the device does not follow the DFU state sequence the host expects; a DfuSe command must be answered with dfuDNBUSY first".into(),
            DfuHostError::Stuck { .. } => "the device never finished its flash operation: a mass erase can take tens of seconds (raise the busy limit); a bootloader whose flash driver never completes stays in dfuDNBUSY forever".into(),
            DfuHostError::BadStatus { .. } => "the interface does not answer like a DFU device: check the interface and alt setting".into(),
            DfuHostError::NotWriteable { .. } => "the image does not fit the device's memory layout (alt-setting string): check the load address (-s) and the alt setting, and that the image is for this chip".into(),
            DfuHostError::NotReadable { .. } => "the range is not readable in the memory layout: check the address, length and alt setting".into(),
            DfuHostError::Unsupported { .. } => "the functional descriptor does not advertise this capability".into(),
            DfuHostError::NoLayout { .. } => "the file targets an alt setting the device does not describe: is the file for this chip?".into(),
            DfuHostError::Verify { .. } => "flash content differs from the image: the sector may be write-protected or worn, or was not erased; run again".into(),
            DfuHostError::ShortUpload { .. } => "the device ended the read early: the range may reach past the end of its memory".into(),
            DfuHostError::EmptyFile | DfuHostError::EmptyTarget { .. } => "the file was packed without the firmware: rebuild it from the firmware image (the device was not touched)".into(),
            DfuHostError::PartialSector { sector, .. } => format!("start the image at the sector boundary {sector:#010x} (pad the front with the bytes to keep), or add :mass-erase:force if the whole memory may go; the device was not touched"),
            DfuHostError::NotDfuse { .. } => "drop :leave and :mass-erase for this device (a plain DFU device runs the new firmware after manifestation or a USB reset, -R); the device was not touched".into(),
        }
    }
}

fn status_help(s: Status) -> &'static str {
    match s {
        Status::ErrTarget | Status::ErrAddress => "the address is outside the device's memory or the region is protected: check the load address and the alt setting's memory layout",
        Status::ErrErase | Status::ErrCheckErased => "erasing failed or a write hit flash that was not erased: the sector may be write-protected (check option bytes / read protection)",
        Status::ErrProg => "errPROG: the device failed to program the memory (DFU 1.1 gives no cause); check the address and alignment against its memory layout, that the range was erased first, and its write protection (option bytes)",
        Status::ErrWrite => "errWRITE: the device could not write the memory (DFU 1.1 gives no cause); check the address against its memory layout and its write protection (option bytes)",
        Status::ErrVerify => "errVERIFY: the device read back something else than it programmed (DFU 1.1 gives no cause); check that the range was erased first and its write protection, then run again",
        Status::ErrUnknown => "the device reports an unspecified error; a CLRSTATUS sent outside dfuERROR causes exactly this on ST and TF-A devices (our host never does that)",
        Status::ErrStalledPkt => "the device refused a request it did not expect in its state",
        Status::ErrNotDone => "the device expected more data before the end of the download",
        Status::ErrFile | Status::ErrFirmware => "the device rejected the image: is it built for this device?",
        _ => "see the DFU 1.1 status code description",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// errPROG says what it means and what to check, without asserting
    /// write protection or wear as the cause.
    #[test]
    fn errprog_help_names_checks_not_a_cause() {
        let e = DfuHostError::Device {
            phase: DfuPhase::Download,
            state: State::DfuError,
            status: Status::ErrProg,
            address: Some(0x0800_0000),
        };
        let h = e.help();
        assert!(h.contains("errPROG") && h.contains("no cause"), "{h}");
        for check in ["alignment", "erased", "protection"] {
            assert!(h.contains(check), "lacks {check:?}: {h}");
        }
        assert!(
            !h.contains("worn") && !h.contains("may be write-protected"),
            "{h}"
        );
    }
}
