//! Host errors: what failed, in which phase, at which object and offset, and
//! what to do about it.

use crate::proto::{ExtError, Opcode, ResultCode};
use std::fmt;
use std::time::Duration;

/// The phase of an update an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePhase {
    /// Opening the link: PING, PRN, MTU.
    Connect,
    /// Sending and executing the init packet.
    InitPacket,
    /// Sending data objects.
    Data,
    /// Executing the last object: the device checks the hash and stores the result.
    Validate,
}

impl fmt::Display for UpdatePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpdatePhase::Connect => "connect",
            UpdatePhase::InitPacket => "init packet",
            UpdatePhase::Data => "data transfer",
            UpdatePhase::Validate => "image validation",
        })
    }
}

fn obj_suffix(o: &Option<u32>) -> String {
    o.map_or(String::new(), |i| format!(" (data object {i})"))
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Reading or writing the link failed (a port closed, a cable pulled).
    #[error("{phase}: link error{obj} at image offset {offset}: {source}", obj = obj_suffix(.object))]
    Link {
        /// Phase.
        phase: UpdatePhase,
        /// Data object index.
        object: Option<u32>,
        /// Image offset reached.
        offset: u32,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Nothing answered PING: the port is not a Secure DFU bootloader.
    #[error("no Secure DFU bootloader answered PING within {waited:?}")]
    NotADfuTarget {
        /// How long the host tried.
        waited: Duration,
    },
    /// A request got no response in time.
    #[error("{phase}: no response to {request:?} within {waited:?}{obj} at image offset {offset}", obj = obj_suffix(.object))]
    Timeout {
        /// Phase.
        phase: UpdatePhase,
        /// The request.
        request: Opcode,
        /// Data object index.
        object: Option<u32>,
        /// Image offset reached.
        offset: u32,
        /// How long the host waited.
        waited: Duration,
    },
    /// The device refused a request.
    #[error("{phase}: device refused {request:?}{obj} at image offset {offset}: {}{}", result.describe(), ext.map_or(String::new(), |e| format!(": {} (0x{:02X})", e.describe(), e as u8)), obj = obj_suffix(.object))]
    Rejected {
        /// Phase.
        phase: UpdatePhase,
        /// The request refused.
        request: Opcode,
        /// Result code.
        result: ResultCode,
        /// Extended error, if any.
        ext: Option<ExtError>,
        /// Data object index.
        object: Option<u32>,
        /// Image offset.
        offset: u32,
    },
    /// The device's offset or CRC differs from what was sent.
    #[error("{phase}: checksum mismatch{obj}: sent {sent} bytes with CRC {crc:#010x}, device has {device_offset} bytes with CRC {device_crc:#010x}{after}", obj = obj_suffix(.object), after = if *.executed { " (found after the device executed the object)" } else { "" })]
    CrcMismatch {
        /// Phase.
        phase: UpdatePhase,
        /// Data object index.
        object: Option<u32>,
        /// Bytes sent so far.
        sent: u32,
        /// CRC of the bytes sent.
        crc: u32,
        /// Device's offset.
        device_offset: u32,
        /// Device's CRC.
        device_crc: u32,
        /// The device had already executed the object (a pipelined EXECUTE
        /// overtook the receipt notification that showed the mismatch), so
        /// it cannot be sent again.
        executed: bool,
    },
    /// The device kept dropping writes: after the allowed number of resends
    /// it still held fewer bytes than were sent.
    #[error("{phase}: the device dropped written data{obj}: sent up to image offset {sent}, device holds up to {device_offset} ({lost} bytes lost) after {recoveries} resends", obj = obj_suffix(.object), lost = .sent - .device_offset)]
    BytesLost {
        /// Phase.
        phase: UpdatePhase,
        /// Data object index.
        object: Option<u32>,
        /// Offset the host had sent up to.
        sent: u32,
        /// Offset the device holds.
        device_offset: u32,
        /// Resends made for this object before giving up.
        recoveries: u32,
    },
    /// A response did not have the expected form.
    #[error("{phase}: malformed response to {request:?}: {detail}")]
    BadResponse {
        /// Phase.
        phase: UpdatePhase,
        /// The request.
        request: Opcode,
        /// What was wrong.
        detail: String,
    },
    /// The init packet is larger than the device accepts.
    #[error("init packet is {size} bytes, the device accepts at most {max}")]
    InitPacketTooLarge {
        /// Size of the packet.
        size: u32,
        /// Device limit.
        max: u32,
    },
}

impl UpdateError {
    /// Whether a link fault explains the error, so that starting the
    /// exchange again may get through: no answer in time, an answer that
    /// does not fit the request (a late or repeated one), data that did not
    /// match, or a device in another state than the host thought. Refusals
    /// of the package, a gone port and a device that lost writes after
    /// every resend are not.
    pub fn is_transient(&self) -> bool {
        match self {
            UpdateError::Timeout { .. }
            | UpdateError::BadResponse { .. }
            | UpdateError::CrcMismatch { .. } => true,
            UpdateError::Rejected { result, ext, .. } => {
                *result == ResultCode::OperationNotPermitted && ext.is_none()
            }
            _ => false,
        }
    }

    /// A stable code for diagnostics.
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::Link { .. } => "dfukit::nordic::dfu::link",
            UpdateError::NotADfuTarget { .. } => "dfukit::nordic::dfu::not_a_dfu_target",
            UpdateError::Timeout { .. } => "dfukit::nordic::dfu::timeout",
            UpdateError::Rejected { .. } => "dfukit::nordic::dfu::rejected",
            UpdateError::CrcMismatch { .. } => "dfukit::nordic::dfu::crc_mismatch",
            UpdateError::BytesLost { .. } => "dfukit::nordic::dfu::bytes_lost",
            UpdateError::BadResponse { .. } => "dfukit::nordic::dfu::bad_response",
            UpdateError::InitPacketTooLarge { .. } => "dfukit::nordic::dfu::init_packet_too_large",
        }
    }

    /// The likely cause and what to do.
    pub fn help(&self) -> String {
        match self {
            UpdateError::Link { .. } => "the port closed or failed (the device reset or was unplugged, or another program took the port): check the cable, then run the same command again; it resumes from what the device holds".into(),
            UpdateError::NotADfuTarget { .. } => "is the device in its DFU bootloader (hold the DFU button while resetting, or use buttonless entry)? Is this the right port? A running application or another program on the port does not answer Secure DFU PING".into(),
            UpdateError::Timeout { request: Opcode::ObjectExecute, phase: UpdatePhase::Validate, .. } => "the device did not finish validating the image in time: it may still be hashing a large image (raise --timeout), or its flash driver stopped reporting completions".into(),
            UpdateError::Timeout { .. } => "the device stopped answering: it may have reset (watchdog, brown-out), or its flash driver never reported a completion (a bootloader port to new flash that does not call the completion callback). Run the same command again to resume from what the device holds".into(),
            UpdateError::Rejected { ext: Some(e), .. } => ext_help(*e).into(),
            UpdateError::Rejected { result, .. } => result_help(*result).into(),
            UpdateError::CrcMismatch { executed: true, .. } => "the device holds an object that differs from the image although it received every byte (corruption the link's own CRC missed, or faulty RAM or flash on the device). It will refuse the image at validation, so nothing runs from it; run the update again: the host sees the device's data does not match and restarts from the init packet".into(),
            UpdateError::CrcMismatch { .. } => "bytes were lost or corrupted on the way to flash (link noise, a receive buffer pool that ran dry, or a flash write that never completed); the object was retried and still did not match".into(),
            UpdateError::BytesLost { .. } => "the device's receive buffers keep running out (BLE drops Packet writes it cannot buffer): use a packet receipt notification interval (--prn) so the host paces its writes, or allow more resends (Options::max_recoveries); if the device's flash driver is slow or stalls, check its completion callback".into(),
            UpdateError::BadResponse { .. } => "the device does not speak nRF5 SDK Secure DFU as expected: check the bootloader version and that this is not a legacy-DFU bootloader".into(),
            UpdateError::InitPacketTooLarge { .. } => "the bootloader was built with a smaller INIT_COMMAND_MAX_SIZE: remove boot validation entries or sd_req entries from the package".into(),
        }
    }
}

fn ext_help(e: ExtError) -> &'static str {
    match e {
        ExtError::FwVersionFailure => "the package's application version is lower than the installed one: build with a higher --application-version (downgrades are refused)",
        ExtError::HwVersionFailure => "the package was made for another board: regenerate it with the --hw-version this bootloader was built with",
        ExtError::SdVersionFailure => "the installed SoftDevice is not in the package's --sd-req list: add its firmware id (see `dfukit nordic pkg display`)",
        ExtError::SignatureMissing => "this bootloader only accepts signed packages: generate the package with --key-file",
        ExtError::WrongSignatureType | ExtError::WrongHashType => "the package uses a signature or hash type this bootloader does not support: regenerate it with dfukit or nrfutil",
        ExtError::VerificationFailed => "the image in flash does not match the package's hash: data was corrupted on the way or in flash; run the update again",
        ExtError::InsufficientSpace => "the image does not fit in the update bank: make the application smaller or move bank 1 to external flash",
        ExtError::FlashCompletionTimeout => "flash write completion not received: the device started a flash write but its driver never reported completion (on a QSPI port, the nrf_fstorage event handler must be called from the nrfx_qspi completion callback). Reset the device and check its flash driver",
        ExtError::FlashOperationFailed => "the device's flash reported an error: the sector may be worn or protected; run again, and check the flash if it repeats",
        ExtError::InitCommandInvalid => "the init packet lacks a field its update type needs, or asks for an update type this bootloader does not perform",
        _ => "see the nRF5 SDK's nrf_dfu_ext_error_code_t for this code",
    }
}

fn result_help(r: ResultCode) -> &'static str {
    match r {
        ResultCode::InvalidObject => "the init packet did not decode, or its signature does not verify with the bootloader's public key: sign the package with the key the bootloader was built with",
        ResultCode::OperationNotPermitted => "the device is in another state than the host expected (an earlier update was interrupted): run the command again, it resumes or restarts cleanly",
        ResultCode::InsufficientResources => "the object is larger than the device accepts",
        ResultCode::InvalidParameter => "a request field was out of range for the device",
        ResultCode::OperationFailed => "the device could not write its settings or flash",
        _ => "see the nRF5 SDK's nrf_dfu_result_t for this code",
    }
}
