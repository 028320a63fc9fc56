//! DFU 1.1 wire types: class requests, states, status codes, the GETSTATUS
//! reply, the functional descriptor and the 8-byte setup packet.
//!
//! Names and texts follow dfu-util (`dfu.c`, `usb_dfu.h`) so that messages
//! read the same as the tool users already know.

use core::fmt;

/// `bmRequestType` of a DFU class request from host to device
/// (class, interface recipient, OUT).
pub const REQUEST_TYPE_OUT: u8 = 0x21;
/// `bmRequestType` of a DFU class request from device to host
/// (class, interface recipient, IN).
pub const REQUEST_TYPE_IN: u8 = 0xA1;
/// `bmRequestType` of the standard SET_INTERFACE request.
pub const REQUEST_TYPE_STANDARD_INTERFACE_OUT: u8 = 0x01;
/// `bRequest` of the standard SET_INTERFACE request (selects an alternate
/// setting; DFU uses one alt per memory).
pub const SET_INTERFACE: u8 = 0x0B;

/// A DFU class request (`bRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DfuRequest {
    /// Leave run-time mode (or, on U-Boot and TF-A, leave the DFU loop);
    /// `wValue` is a timeout in ms.
    Detach = 0,
    /// Send one block (`wValue` = block number); zero length ends a download.
    Dnload = 1,
    /// Read one block (`wValue` = block number); a short reply ends it.
    Upload = 2,
    /// Read the 6-byte status; also the trigger that makes a device act on a
    /// downloaded block.
    GetStatus = 3,
    /// Leave dfuERROR.
    ClrStatus = 4,
    /// Read the state byte without side effects.
    GetState = 5,
    /// Return to dfuIDLE.
    Abort = 6,
}

impl DfuRequest {
    /// Decodes `bRequest`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => DfuRequest::Detach,
            1 => DfuRequest::Dnload,
            2 => DfuRequest::Upload,
            3 => DfuRequest::GetStatus,
            4 => DfuRequest::ClrStatus,
            5 => DfuRequest::GetState,
            6 => DfuRequest::Abort,
            _ => return None,
        })
    }

    /// Whether the data stage (if any) flows device → host.
    pub fn is_in(self) -> bool {
        matches!(
            self,
            DfuRequest::Upload | DfuRequest::GetStatus | DfuRequest::GetState
        )
    }

    /// The name dfu-util and the specification use.
    pub fn name(self) -> &'static str {
        match self {
            DfuRequest::Detach => "DFU_DETACH",
            DfuRequest::Dnload => "DFU_DNLOAD",
            DfuRequest::Upload => "DFU_UPLOAD",
            DfuRequest::GetStatus => "DFU_GETSTATUS",
            DfuRequest::ClrStatus => "DFU_CLRSTATUS",
            DfuRequest::GetState => "DFU_GETSTATE",
            DfuRequest::Abort => "DFU_ABORT",
        }
    }
}

impl fmt::Display for DfuRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A DFU state (`bState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Run-time mode, application running.
    AppIdle = 0,
    /// Run-time mode, DETACH received, waiting for a USB reset.
    AppDetach = 1,
    /// DFU mode, waiting for requests.
    DfuIdle = 2,
    /// A block arrived; waiting for GETSTATUS to act on it.
    DfuDnloadSync = 3,
    /// Programming or erasing; poll again after bwPollTimeout.
    DfuDnbusy = 4,
    /// Block done; expecting the next DNLOAD.
    DfuDnloadIdle = 5,
    /// Download ended; waiting for GETSTATUS to start manifestation.
    DfuManifestSync = 6,
    /// Manifesting (applying the image).
    DfuManifest = 7,
    /// Manifested; only a USB reset gets the device out (not tolerant).
    DfuManifestWaitReset = 8,
    /// Upload in progress.
    DfuUploadIdle = 9,
    /// An error occurred; CLRSTATUS returns to dfuIDLE.
    DfuError = 10,
}

impl State {
    /// Decodes `bState`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => State::AppIdle,
            1 => State::AppDetach,
            2 => State::DfuIdle,
            3 => State::DfuDnloadSync,
            4 => State::DfuDnbusy,
            5 => State::DfuDnloadIdle,
            6 => State::DfuManifestSync,
            7 => State::DfuManifest,
            8 => State::DfuManifestWaitReset,
            9 => State::DfuUploadIdle,
            10 => State::DfuError,
            _ => return None,
        })
    }

    /// dfu-util's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            State::AppIdle => "appIDLE",
            State::AppDetach => "appDETACH",
            State::DfuIdle => "dfuIDLE",
            State::DfuDnloadSync => "dfuDNLOAD-SYNC",
            State::DfuDnbusy => "dfuDNBUSY",
            State::DfuDnloadIdle => "dfuDNLOAD-IDLE",
            State::DfuManifestSync => "dfuMANIFEST-SYNC",
            State::DfuManifest => "dfuMANIFEST",
            State::DfuManifestWaitReset => "dfuMANIFEST-WAIT-RESET",
            State::DfuUploadIdle => "dfuUPLOAD-IDLE",
            State::DfuError => "dfuERROR",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u8)
    }
}

/// A DFU status code (`bStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// No error.
    Ok = 0,
    /// File is not targeted for use by this device.
    ErrTarget = 1,
    /// File fails a vendor-specific test.
    ErrFile = 2,
    /// Device is unable to write memory.
    ErrWrite = 3,
    /// Memory erase function failed.
    ErrErase = 4,
    /// Memory erase check failed.
    ErrCheckErased = 5,
    /// Program memory function failed.
    ErrProg = 6,
    /// Programmed memory failed verification.
    ErrVerify = 7,
    /// Address out of range.
    ErrAddress = 8,
    /// Zero-length DNLOAD before all data arrived.
    ErrNotDone = 9,
    /// Firmware corrupt; cannot return to run-time mode.
    ErrFirmware = 10,
    /// Vendor-specific error (see iString).
    ErrVendor = 11,
    /// Unexpected USB reset.
    ErrUsbr = 12,
    /// Unexpected power-on reset.
    ErrPor = 13,
    /// Unknown error.
    ErrUnknown = 14,
    /// Device stalled an unexpected request.
    ErrStalledPkt = 15,
}

impl Status {
    /// Decodes `bStatus`.
    pub fn from_u8(v: u8) -> Option<Self> {
        use Status::*;
        const ALL: [Status; 16] = [
            Ok,
            ErrTarget,
            ErrFile,
            ErrWrite,
            ErrErase,
            ErrCheckErased,
            ErrProg,
            ErrVerify,
            ErrAddress,
            ErrNotDone,
            ErrFirmware,
            ErrVendor,
            ErrUsbr,
            ErrPor,
            ErrUnknown,
            ErrStalledPkt,
        ];
        ALL.get(v as usize).copied()
    }

    /// The short code name (`errTARGET`, …).
    pub fn name(self) -> &'static str {
        use Status::*;
        match self {
            Ok => "OK",
            ErrTarget => "errTARGET",
            ErrFile => "errFILE",
            ErrWrite => "errWRITE",
            ErrErase => "errERASE",
            ErrCheckErased => "errCHECK_ERASED",
            ErrProg => "errPROG",
            ErrVerify => "errVERIFY",
            ErrAddress => "errADDRESS",
            ErrNotDone => "errNOTDONE",
            ErrFirmware => "errFIRMWARE",
            ErrVendor => "errVENDOR",
            ErrUsbr => "errUSBR",
            ErrPor => "errPOR",
            ErrUnknown => "errUNKNOWN",
            ErrStalledPkt => "errSTALLEDPKT",
        }
    }

    /// dfu-util's description (`dfu_status_names[]`), so messages match the
    /// tool users compare against.
    pub fn text(self) -> &'static str {
        use Status::*;
        match self {
            Ok => "No error condition is present",
            ErrTarget => "File is not targeted for use by this device",
            ErrFile => "File is for this device but fails some vendor-specific test",
            ErrWrite => "Device is unable to write memory",
            ErrErase => "Memory erase function failed",
            ErrCheckErased => "Memory erase check failed",
            ErrProg => "Program memory function failed",
            ErrVerify => "Programmed memory failed verification",
            ErrAddress => "Cannot program memory due to received address that is out of range",
            ErrNotDone => "Received DFU_DNLOAD with wLength = 0, but device does not think that it has all data yet",
            ErrFirmware => "Device's firmware is corrupt. It cannot return to run-time (non-DFU) operations",
            ErrVendor => "iString indicates a vendor specific error",
            ErrUsbr => "Device detected unexpected USB reset signalling",
            ErrPor => "Device detected unexpected power on reset",
            ErrUnknown => "Something went wrong, but the device does not know what it was",
            ErrStalledPkt => "Device stalled an unexpected request",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.text())
    }
}

/// Largest bwPollTimeout the 24-bit field carries, in ms.
pub const MAX_POLL_TIMEOUT_MS: u32 = 0x00FF_FFFF;

/// A decoding error for fixed-size wire structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfuWireError {
    /// Fewer bytes than the structure needs.
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// `bState` is not one of the 11 states.
    BadState(u8),
    /// `bStatus` is not one of the 16 codes.
    BadStatus(u8),
    /// The descriptor type is not 0x21 (DFU functional).
    BadDescriptorType(u8),
    /// `bLength` is neither 7 (DFU 1.0) nor 9.
    BadDescriptorLength(u8),
}

impl fmt::Display for DfuWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DfuWireError::TooShort { need, got } => write!(f, "{got} bytes, need {need}"),
            DfuWireError::BadState(s) => write!(f, "invalid bState {s}"),
            DfuWireError::BadStatus(s) => write!(f, "invalid bStatus {s}"),
            DfuWireError::BadDescriptorType(t) => {
                write!(f, "descriptor type {t:#04x} is not DFU functional (0x21)")
            }
            DfuWireError::BadDescriptorLength(l) => {
                write!(f, "functional descriptor bLength {l}, expected 7 or 9")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DfuWireError {}

/// The 6-byte GETSTATUS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetStatus {
    /// Status code.
    pub status: Status,
    /// Minimum time before the next GETSTATUS, ms (24 bits on the wire).
    pub poll_timeout_ms: u32,
    /// State the device is in (after the transition this request caused).
    pub state: State,
    /// Index of a status description string, 0 for none.
    pub string_index: u8,
}

impl GetStatus {
    /// Length on the wire.
    pub const LEN: usize = 6;

    /// Encodes; a poll timeout above 24 bits saturates rather than wraps, so a
    /// long erase never reads as a short one.
    pub fn to_bytes(&self) -> [u8; 6] {
        let t = self.poll_timeout_ms.min(MAX_POLL_TIMEOUT_MS).to_le_bytes();
        [
            self.status as u8,
            t[0],
            t[1],
            t[2],
            self.state as u8,
            self.string_index,
        ]
    }

    /// Decodes; extra bytes are ignored.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DfuWireError> {
        if b.len() < Self::LEN {
            return Err(DfuWireError::TooShort {
                need: Self::LEN,
                got: b.len(),
            });
        }
        Ok(GetStatus {
            status: Status::from_u8(b[0]).ok_or(DfuWireError::BadStatus(b[0]))?,
            poll_timeout_ms: u32::from_le_bytes([b[1], b[2], b[3], 0]),
            state: State::from_u8(b[4]).ok_or(DfuWireError::BadState(b[4]))?,
            string_index: b[5],
        })
    }
}

/// `bDescriptorType` of the DFU functional descriptor.
pub const FUNCTIONAL_DESCRIPTOR_TYPE: u8 = 0x21;

/// `bmAttributes` bit: the device accepts DNLOAD.
pub const ATTR_CAN_DNLOAD: u8 = 1 << 0;
/// `bmAttributes` bit: the device answers UPLOAD.
pub const ATTR_CAN_UPLOAD: u8 = 1 << 1;
/// `bmAttributes` bit: the device still talks after manifestation.
pub const ATTR_MANIFESTATION_TOLERANT: u8 = 1 << 2;
/// `bmAttributes` bit (DFU 1.1): the device detaches and re-attaches by
/// itself after DETACH; the host must not reset it.
pub const ATTR_WILL_DETACH: u8 = 1 << 3;

/// The DFU functional descriptor (DFU 1.1 §4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionalDescriptor {
    /// Attribute bits (`ATTR_*`).
    pub attributes: u8,
    /// Longest wait for a USB reset after DETACH, ms.
    pub detach_timeout_ms: u16,
    /// Most bytes per DNLOAD/UPLOAD control transfer.
    pub transfer_size: u16,
    /// DFU version, BCD (0x0110; DfuSe 0x011A). A 7-byte (DFU 1.0)
    /// descriptor has no such field and decodes as 0x0100.
    pub dfu_version: u16,
}

impl FunctionalDescriptor {
    /// Length of the DFU 1.1 descriptor.
    pub const LEN: usize = 9;
    /// Length of the DFU 1.0 descriptor (no `bcdDFUVersion`).
    pub const LEN_1_0: usize = 7;

    /// The STM32 system-memory bootloader's descriptor (STM32F4 ROM:
    /// attributes 0x0B, 255 ms, 2048 bytes, DfuSe 1.1a).
    pub const STM32_ROM: FunctionalDescriptor = FunctionalDescriptor {
        attributes: ATTR_CAN_DNLOAD | ATTR_CAN_UPLOAD | ATTR_WILL_DETACH,
        detach_timeout_ms: 255,
        transfer_size: 2048,
        dfu_version: 0x011A,
    };

    /// Whether DNLOAD is supported.
    pub fn can_download(&self) -> bool {
        self.attributes & ATTR_CAN_DNLOAD != 0
    }
    /// Whether UPLOAD is supported.
    pub fn can_upload(&self) -> bool {
        self.attributes & ATTR_CAN_UPLOAD != 0
    }
    /// Whether the device stays in DFU mode after manifestation.
    pub fn manifestation_tolerant(&self) -> bool {
        self.attributes & ATTR_MANIFESTATION_TOLERANT != 0
    }
    /// Whether the device detaches by itself after DETACH.
    pub fn will_detach(&self) -> bool {
        self.attributes & ATTR_WILL_DETACH != 0
    }
    /// Whether the device speaks ST's DfuSe extension (bcdDFUVersion 0x011A).
    pub fn is_dfuse(&self) -> bool {
        self.dfu_version == 0x011A
    }

    /// Encodes the 9-byte DFU 1.1 form.
    pub fn to_bytes(&self) -> [u8; 9] {
        let d = self.detach_timeout_ms.to_le_bytes();
        let t = self.transfer_size.to_le_bytes();
        let v = self.dfu_version.to_le_bytes();
        [
            9,
            FUNCTIONAL_DESCRIPTOR_TYPE,
            self.attributes,
            d[0],
            d[1],
            t[0],
            t[1],
            v[0],
            v[1],
        ]
    }

    /// Decodes the 9-byte form or the 7-byte DFU 1.0 form (which dfu-util
    /// treats as version 1.0).
    pub fn from_bytes(b: &[u8]) -> Result<Self, DfuWireError> {
        if b.len() < Self::LEN_1_0 {
            return Err(DfuWireError::TooShort {
                need: Self::LEN_1_0,
                got: b.len(),
            });
        }
        if b[1] != FUNCTIONAL_DESCRIPTOR_TYPE {
            return Err(DfuWireError::BadDescriptorType(b[1]));
        }
        let dfu_version = match b[0] {
            7 => 0x0100,
            9 => {
                if b.len() < Self::LEN {
                    return Err(DfuWireError::TooShort {
                        need: Self::LEN,
                        got: b.len(),
                    });
                }
                u16::from_le_bytes([b[7], b[8]])
            }
            l => return Err(DfuWireError::BadDescriptorLength(l)),
        };
        Ok(FunctionalDescriptor {
            attributes: b[2],
            detach_timeout_ms: u16::from_le_bytes([b[3], b[4]]),
            transfer_size: u16::from_le_bytes([b[5], b[6]]),
            dfu_version,
        })
    }
}

pub use dfukit_core::usb::SetupPacket;

/// DFU class requests on a [`SetupPacket`].
pub trait DfuSetup: Sized {
    /// A DFU class request to interface `interface`; the direction follows
    /// the request.
    fn dfu(req: DfuRequest, value: u16, interface: u16, length: u16) -> Self;
    /// The DFU request, if this is a DFU class request to an interface.
    fn dfu_request(&self) -> Option<DfuRequest>;
}

impl DfuSetup for SetupPacket {
    fn dfu(req: DfuRequest, value: u16, interface: u16, length: u16) -> Self {
        SetupPacket {
            request_type: if req.is_in() {
                REQUEST_TYPE_IN
            } else {
                REQUEST_TYPE_OUT
            },
            request: req as u8,
            value,
            index: interface,
            length,
        }
    }

    fn dfu_request(&self) -> Option<DfuRequest> {
        if self.request_type & 0x7F != REQUEST_TYPE_OUT {
            return None;
        }
        let r = DfuRequest::from_u8(self.request)?;
        (r.is_in() == self.is_in()).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getstatus_round_trip_with_24_bit_timeout() {
        let s = GetStatus {
            status: Status::ErrAddress,
            poll_timeout_ms: 0x12_3456,
            state: State::DfuError,
            string_index: 0,
        };
        let b = s.to_bytes();
        assert_eq!(b, [8, 0x56, 0x34, 0x12, 10, 0]);
        assert_eq!(GetStatus::from_bytes(&b).unwrap(), s);
    }

    #[test]
    fn getstatus_timeout_saturates() {
        let s = GetStatus {
            status: Status::Ok,
            poll_timeout_ms: 0x0100_0000,
            state: State::DfuDnbusy,
            string_index: 0,
        };
        assert_eq!(
            GetStatus::from_bytes(&s.to_bytes())
                .unwrap()
                .poll_timeout_ms,
            MAX_POLL_TIMEOUT_MS
        );
    }

    #[test]
    fn getstatus_rejects_bad_fields() {
        assert_eq!(
            GetStatus::from_bytes(&[0, 0, 0, 0, 11, 0]),
            Err(DfuWireError::BadState(11))
        );
        assert_eq!(
            GetStatus::from_bytes(&[16, 0, 0, 0, 2, 0]),
            Err(DfuWireError::BadStatus(16))
        );
        assert!(matches!(
            GetStatus::from_bytes(&[0; 5]),
            Err(DfuWireError::TooShort { need: 6, got: 5 })
        ));
    }

    #[test]
    fn all_codes_round_trip() {
        for v in 0..=255u8 {
            if let Some(s) = Status::from_u8(v) {
                assert_eq!(s as u8, v);
            }
            if let Some(s) = State::from_u8(v) {
                assert_eq!(s as u8, v);
            }
            if let Some(r) = DfuRequest::from_u8(v) {
                assert_eq!(r as u8, v);
            }
        }
        assert_eq!(Status::from_u8(15), Some(Status::ErrStalledPkt));
        assert_eq!(State::from_u8(10), Some(State::DfuError));
        assert_eq!(State::DfuDnloadSync.name(), "dfuDNLOAD-SYNC");
    }

    #[test]
    fn stm32_functional_descriptor() {
        // From dfu-util's device-logs/stm32f4discovery.lsusb.
        let b = [0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x08, 0x1A, 0x01];
        let d = FunctionalDescriptor::from_bytes(&b).unwrap();
        assert_eq!(d, FunctionalDescriptor::STM32_ROM);
        assert!(d.can_download() && d.can_upload() && d.will_detach());
        assert!(!d.manifestation_tolerant());
        assert!(d.is_dfuse());
        assert_eq!(d.to_bytes(), b);
    }

    #[test]
    fn dfu_1_0_descriptor_has_no_version() {
        let d = FunctionalDescriptor::from_bytes(&[7, 0x21, 0x07, 0, 0, 0, 0x10]).unwrap();
        assert_eq!(d.dfu_version, 0x0100);
        assert_eq!(d.transfer_size, 4096);
        assert!(d.manifestation_tolerant());
        assert_eq!(
            FunctionalDescriptor::from_bytes(&[8, 0x21, 0, 0, 0, 0, 0, 0]),
            Err(DfuWireError::BadDescriptorLength(8))
        );
    }

    #[test]
    fn setup_packet_round_trip() {
        let s = SetupPacket::dfu(DfuRequest::Dnload, 2, 0, 2048);
        assert_eq!(s.to_bytes(), [0x21, 1, 2, 0, 0, 0, 0, 8]);
        assert_eq!(SetupPacket::from_bytes(s.to_bytes()), s);
        assert_eq!(s.dfu_request(), Some(DfuRequest::Dnload));
        let g = SetupPacket::dfu(DfuRequest::GetStatus, 0, 0, 6);
        assert_eq!(g.request_type, 0xA1);
        assert_eq!(g.dfu_request(), Some(DfuRequest::GetStatus));
        // A GETSTATUS sent as OUT is not a valid DFU request.
        let bad = SetupPacket {
            request_type: 0x21,
            ..g
        };
        assert_eq!(bad.dfu_request(), None);
    }
}
