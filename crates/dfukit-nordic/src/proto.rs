//! Secure DFU control-point messages as they travel on the wire.
//!
//! Requests are an opcode byte followed by little-endian fields; responses are
//! `60 <request opcode> <result> [payload]`, with one extra byte after an
//! extended error. The layouts follow `nrf_dfu_req_handler.h` and
//! `nrf_dfu_serial.c` of nRF5 SDK 17.1. The same types serve the device core,
//! which parses requests and builds responses, and the host, which does the
//! opposite, so that both ends agree by construction.

use core::fmt;

/// Control-point opcodes (`nrf_dfu_op_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Ask for the protocol version.
    ProtocolVersion = 0x00,
    /// Create a command or data object.
    ObjectCreate = 0x01,
    /// Set the packet receipt notification interval.
    ReceiptNotifSet = 0x02,
    /// Ask for the offset and CRC of the current object.
    CrcGet = 0x03,
    /// Execute the current object.
    ObjectExecute = 0x04,
    /// Select an object type and ask for its state.
    ObjectSelect = 0x06,
    /// Ask for the transport MTU (serial only).
    MtuGet = 0x07,
    /// Object data.
    ObjectWrite = 0x08,
    /// Ping with an id that is echoed.
    Ping = 0x09,
    /// Ask for hardware information.
    HardwareVersion = 0x0A,
    /// Ask for the version of an installed image.
    FirmwareVersion = 0x0B,
    /// Abort the update and reset.
    Abort = 0x0C,
    /// The first byte of every response.
    Response = 0x60,
}

impl Opcode {
    /// Decodes an opcode byte.
    pub fn from_u8(b: u8) -> Option<Opcode> {
        Some(match b {
            0x00 => Opcode::ProtocolVersion,
            0x01 => Opcode::ObjectCreate,
            0x02 => Opcode::ReceiptNotifSet,
            0x03 => Opcode::CrcGet,
            0x04 => Opcode::ObjectExecute,
            0x06 => Opcode::ObjectSelect,
            0x07 => Opcode::MtuGet,
            0x08 => Opcode::ObjectWrite,
            0x09 => Opcode::Ping,
            0x0A => Opcode::HardwareVersion,
            0x0B => Opcode::FirmwareVersion,
            0x0C => Opcode::Abort,
            0x60 => Opcode::Response,
            _ => return None,
        })
    }
}

/// The two object kinds of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectType {
    /// The init packet.
    Command = 1,
    /// Firmware image data.
    Data = 2,
}

impl ObjectType {
    /// Decodes an object type byte.
    pub fn from_u8(b: u8) -> Option<ObjectType> {
        match b {
            1 => Some(ObjectType::Command),
            2 => Some(ObjectType::Data),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectType::Command => "command (init packet)",
            ObjectType::Data => "data",
        })
    }
}

/// Result codes (`nrf_dfu_result_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResultCode {
    /// Never sent by a correct device.
    Invalid = 0x00,
    /// The request succeeded.
    Success = 0x01,
    /// Unknown opcode.
    OpCodeNotSupported = 0x02,
    /// A field of the request is out of range.
    InvalidParameter = 0x03,
    /// Not enough memory or space.
    InsufficientResources = 0x04,
    /// The object is malformed, or its signature does not verify.
    InvalidObject = 0x05,
    /// Listed by nrfutil; the SDK never sends it.
    InvalidSignature = 0x06,
    /// Unsupported object type.
    UnsupportedType = 0x07,
    /// The request is not allowed in the current state.
    OperationNotPermitted = 0x08,
    /// The device could not carry the request out (a flash or settings write failed).
    OperationFailed = 0x0A,
    /// An extended error code follows.
    ExtError = 0x0B,
}

impl ResultCode {
    /// Decodes a result byte.
    pub fn from_u8(b: u8) -> Option<ResultCode> {
        Some(match b {
            0x00 => ResultCode::Invalid,
            0x01 => ResultCode::Success,
            0x02 => ResultCode::OpCodeNotSupported,
            0x03 => ResultCode::InvalidParameter,
            0x04 => ResultCode::InsufficientResources,
            0x05 => ResultCode::InvalidObject,
            0x06 => ResultCode::InvalidSignature,
            0x07 => ResultCode::UnsupportedType,
            0x08 => ResultCode::OperationNotPermitted,
            0x0A => ResultCode::OperationFailed,
            0x0B => ResultCode::ExtError,
            _ => return None,
        })
    }

    /// What the code means, in words.
    pub fn describe(self) -> &'static str {
        match self {
            ResultCode::Invalid => "invalid result code",
            ResultCode::Success => "success",
            ResultCode::OpCodeNotSupported => "opcode not supported",
            ResultCode::InvalidParameter => "invalid parameter",
            ResultCode::InsufficientResources => "insufficient resources",
            ResultCode::InvalidObject => "invalid object (malformed init packet or bad signature)",
            ResultCode::InvalidSignature => "invalid signature",
            ResultCode::UnsupportedType => "unsupported object type",
            ResultCode::OperationNotPermitted => "operation not permitted in this state",
            ResultCode::OperationFailed => "operation failed on the device",
            ResultCode::ExtError => "extended error",
        }
    }
}

/// Extended error codes (`nrf_dfu_ext_error_code_t`), plus dfukit's own
/// flash-path codes, which the SDK lacks: its flash callback swallows failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExtError {
    /// No extended error was latched.
    NoError = 0x00,
    /// Development-only code.
    InvalidErrorCode = 0x01,
    /// The command was malformed.
    WrongCommandFormat = 0x02,
    /// The command is not known.
    UnknownCommand = 0x03,
    /// The init command is invalid or lacks a field its type needs.
    InitCommandInvalid = 0x04,
    /// The firmware version is lower than the installed one.
    FwVersionFailure = 0x05,
    /// The hardware version does not match.
    HwVersionFailure = 0x06,
    /// The installed SoftDevice is not in `sd_req`.
    SdVersionFailure = 0x07,
    /// The init packet is unsigned but a signature is required.
    SignatureMissing = 0x08,
    /// The hash type is not supported.
    WrongHashType = 0x09,
    /// The hash could not be computed.
    HashFailed = 0x0A,
    /// The signature type is not supported.
    WrongSignatureType = 0x0B,
    /// The received image does not match the hash in the init packet.
    VerificationFailed = 0x0C,
    /// The image does not fit.
    InsufficientSpace = 0x0D,
    /// dfukit: a flash operation was started but its completion never arrived.
    FlashCompletionTimeout = 0x20,
    /// dfukit: the flash controller reported a failed erase or program.
    FlashOperationFailed = 0x21,
}

impl ExtError {
    /// Decodes an extended error byte.
    pub fn from_u8(b: u8) -> Option<ExtError> {
        Some(match b {
            0x00 => ExtError::NoError,
            0x01 => ExtError::InvalidErrorCode,
            0x02 => ExtError::WrongCommandFormat,
            0x03 => ExtError::UnknownCommand,
            0x04 => ExtError::InitCommandInvalid,
            0x05 => ExtError::FwVersionFailure,
            0x06 => ExtError::HwVersionFailure,
            0x07 => ExtError::SdVersionFailure,
            0x08 => ExtError::SignatureMissing,
            0x09 => ExtError::WrongHashType,
            0x0A => ExtError::HashFailed,
            0x0B => ExtError::WrongSignatureType,
            0x0C => ExtError::VerificationFailed,
            0x0D => ExtError::InsufficientSpace,
            0x20 => ExtError::FlashCompletionTimeout,
            0x21 => ExtError::FlashOperationFailed,
            _ => return None,
        })
    }

    /// What the code means, in words.
    pub fn describe(self) -> &'static str {
        match self {
            ExtError::NoError => "no extended error latched",
            ExtError::InvalidErrorCode => "invalid error code",
            ExtError::WrongCommandFormat => "wrong command format",
            ExtError::UnknownCommand => "unknown command",
            ExtError::InitCommandInvalid => "init command invalid for its update type",
            ExtError::FwVersionFailure => "firmware version too low (downgrade refused)",
            ExtError::HwVersionFailure => "hardware version does not match",
            ExtError::SdVersionFailure => "installed SoftDevice not in sd_req",
            ExtError::SignatureMissing => "init packet not signed",
            ExtError::WrongHashType => "hash type not supported",
            ExtError::HashFailed => "hash could not be computed",
            ExtError::WrongSignatureType => "signature type not supported",
            ExtError::VerificationFailed => "image hash does not match the init packet",
            ExtError::InsufficientSpace => "image does not fit in the update bank",
            ExtError::FlashCompletionTimeout => "flash write completion not received",
            ExtError::FlashOperationFailed => "flash operation failed",
        }
    }
}

/// A control-point request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// 0x00.
    ProtocolVersion,
    /// 0x01: create an object of `obj_type` (raw byte, validated by the device) and `size` bytes.
    Create {
        /// Object type byte.
        obj_type: u8,
        /// Declared object size.
        size: u32,
    },
    /// 0x02: packet receipt notification every `n` writes (0 = off).
    SetPrn(u16),
    /// 0x03.
    CrcGet,
    /// 0x04.
    Execute,
    /// 0x06: select an object type (raw byte).
    Select(u8),
    /// 0x07.
    MtuGet,
    /// 0x08: object data.
    Write(&'a [u8]),
    /// 0x09.
    Ping(u8),
    /// 0x0A.
    HardwareVersion,
    /// 0x0B: version of image number `n`.
    FirmwareVersion(u8),
    /// 0x0C.
    Abort,
}

/// Why a request frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The frame was empty.
    Empty,
    /// The opcode byte is unknown; the device answers "opcode not supported".
    UnknownOpcode(u8),
    /// The frame is shorter than the opcode's fields.
    TooShort {
        /// The opcode.
        opcode: u8,
        /// Bytes needed after the opcode.
        needed: usize,
        /// Bytes present after the opcode.
        got: usize,
    },
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Request<'a> {
    /// The opcode of this request.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::ProtocolVersion => Opcode::ProtocolVersion,
            Request::Create { .. } => Opcode::ObjectCreate,
            Request::SetPrn(_) => Opcode::ReceiptNotifSet,
            Request::CrcGet => Opcode::CrcGet,
            Request::Execute => Opcode::ObjectExecute,
            Request::Select(_) => Opcode::ObjectSelect,
            Request::MtuGet => Opcode::MtuGet,
            Request::Write(_) => Opcode::ObjectWrite,
            Request::Ping(_) => Opcode::Ping,
            Request::HardwareVersion => Opcode::HardwareVersion,
            Request::FirmwareVersion(_) => Opcode::FirmwareVersion,
            Request::Abort => Opcode::Abort,
        }
    }

    /// Parses a request frame (opcode first), as received over serial.
    pub fn parse(frame: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let (&op, body) = frame.split_first().ok_or(ParseError::Empty)?;
        let need = |n: usize| {
            if body.len() < n {
                Err(ParseError::TooShort {
                    opcode: op,
                    needed: n,
                    got: body.len(),
                })
            } else {
                Ok(())
            }
        };
        let opcode = Opcode::from_u8(op).ok_or(ParseError::UnknownOpcode(op))?;
        Ok(match opcode {
            Opcode::ProtocolVersion => Request::ProtocolVersion,
            Opcode::ObjectCreate => {
                need(5)?;
                Request::Create {
                    obj_type: body[0],
                    size: le_u32(&body[1..5]),
                }
            }
            Opcode::ReceiptNotifSet => {
                need(2)?;
                Request::SetPrn(le_u16(body))
            }
            Opcode::CrcGet => Request::CrcGet,
            Opcode::ObjectExecute => Request::Execute,
            Opcode::ObjectSelect => {
                need(1)?;
                Request::Select(body[0])
            }
            Opcode::MtuGet => Request::MtuGet,
            Opcode::ObjectWrite => Request::Write(body),
            Opcode::Ping => {
                need(1)?;
                Request::Ping(body[0])
            }
            Opcode::HardwareVersion => Request::HardwareVersion,
            Opcode::FirmwareVersion => {
                need(1)?;
                Request::FirmwareVersion(body[0])
            }
            Opcode::Abort => Request::Abort,
            Opcode::Response => return Err(ParseError::UnknownOpcode(op)),
        })
    }

    /// Encodes the request, passing the bytes to `out` in order.
    pub fn encode(&self, out: &mut impl FnMut(&[u8])) {
        out(&[self.opcode() as u8]);
        match *self {
            Request::Create { obj_type, size } => {
                out(&[obj_type]);
                out(&size.to_le_bytes());
            }
            Request::SetPrn(n) => out(&n.to_le_bytes()),
            Request::Select(t) => out(&[t]),
            Request::Write(data) => out(data),
            Request::Ping(id) => out(&[id]),
            Request::FirmwareVersion(n) => out(&[n]),
            Request::ProtocolVersion
            | Request::CrcGet
            | Request::Execute
            | Request::MtuGet
            | Request::HardwareVersion
            | Request::Abort => {}
        }
    }
}

/// The payload of a successful response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// No payload.
    None,
    /// PROTOCOL_VERSION.
    ProtocolVersion(u8),
    /// CRC_GET, and the packet receipt notification.
    Crc {
        /// Bytes of the object type stored so far (the whole image for data).
        offset: u32,
        /// CRC-32 of those bytes.
        crc: u32,
    },
    /// SELECT.
    Select {
        /// Largest object the device accepts.
        max_size: u32,
        /// Bytes stored so far.
        offset: u32,
        /// CRC-32 of those bytes.
        crc: u32,
    },
    /// MTU_GET.
    Mtu(u16),
    /// PING.
    Ping(u8),
    /// HARDWARE_VERSION.
    HardwareVersion {
        /// Part number (0x52840).
        part: u32,
        /// Variant code.
        variant: u32,
        /// Flash size.
        rom_size: u32,
        /// RAM size.
        ram_size: u32,
        /// Flash page size.
        rom_page_size: u32,
    },
    /// FIRMWARE_VERSION.
    FirmwareVersion {
        /// 0 SoftDevice, 1 application, 2 bootloader, 0xFF unknown.
        image_type: u8,
        /// Version number.
        version: u32,
        /// Start address.
        addr: u32,
        /// Length in bytes.
        len: u32,
    },
}

/// A control-point response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The opcode byte of the request answered: raw, because a device
    /// answers an unknown opcode by echoing it.
    pub request: u8,
    /// The result.
    pub result: ResultCode,
    /// The extended error, when `result` is [`ResultCode::ExtError`].
    pub ext: Option<ExtError>,
    /// The payload, for a success.
    pub payload: Payload,
}

/// Why a response frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The frame does not start with 0x60 or is shorter than three bytes.
    NotAResponse,
    /// The response answers another request than the one expected.
    UnexpectedOpcode {
        /// Opcode the host waited for.
        expected: u8,
        /// Opcode in the response.
        got: u8,
    },
    /// The result byte is unknown.
    UnknownResult(u8),
    /// The payload is shorter than the opcode's response needs.
    Truncated,
}

impl Response {
    /// A success with a payload.
    pub fn ok(request: Opcode, payload: Payload) -> Self {
        Response {
            request: request as u8,
            result: ResultCode::Success,
            ext: None,
            payload,
        }
    }

    /// A failure with a plain result code.
    pub fn error(request: Opcode, result: ResultCode) -> Self {
        Response {
            request: request as u8,
            result,
            ext: None,
            payload: Payload::None,
        }
    }

    /// A failure with an extended error code.
    pub fn ext_error(request: Opcode, ext: ExtError) -> Self {
        Response {
            request: request as u8,
            result: ResultCode::ExtError,
            ext: Some(ext),
            payload: Payload::None,
        }
    }

    /// "Opcode not supported" for an opcode byte the device does not know.
    pub fn unknown_opcode(op: u8) -> Self {
        Response {
            request: op,
            result: ResultCode::OpCodeNotSupported,
            ext: None,
            payload: Payload::None,
        }
    }

    /// The opcode answered, if it is a known one.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.request)
    }

    /// Encodes the response as the serial transport sends it (payloads included).
    pub fn encode(&self, out: &mut impl FnMut(&[u8])) {
        out(&[Opcode::Response as u8, self.request, self.result as u8]);
        if self.result == ResultCode::ExtError {
            out(&[self.ext.unwrap_or(ExtError::NoError) as u8]);
            return;
        }
        if self.result != ResultCode::Success {
            return;
        }
        match self.payload {
            Payload::None => {}
            Payload::ProtocolVersion(v) => out(&[v]),
            Payload::Crc { offset, crc } => {
                out(&offset.to_le_bytes());
                out(&crc.to_le_bytes());
            }
            Payload::Select {
                max_size,
                offset,
                crc,
            } => {
                out(&max_size.to_le_bytes());
                out(&offset.to_le_bytes());
                out(&crc.to_le_bytes());
            }
            Payload::Mtu(m) => out(&m.to_le_bytes()),
            Payload::Ping(id) => out(&[id]),
            Payload::HardwareVersion {
                part,
                variant,
                rom_size,
                ram_size,
                rom_page_size,
            } => {
                for v in [part, variant, rom_size, ram_size, rom_page_size] {
                    out(&v.to_le_bytes());
                }
            }
            Payload::FirmwareVersion {
                image_type,
                version,
                addr,
                len,
            } => {
                out(&[image_type]);
                for v in [version, addr, len] {
                    out(&v.to_le_bytes());
                }
            }
        }
    }

    /// Parses a serial response to `expected`.
    pub fn parse(frame: &[u8], expected: Opcode) -> Result<Response, ResponseError> {
        if frame.len() < 3 || frame[0] != Opcode::Response as u8 {
            return Err(ResponseError::NotAResponse);
        }
        if frame[1] != expected as u8 {
            return Err(ResponseError::UnexpectedOpcode {
                expected: expected as u8,
                got: frame[1],
            });
        }
        let result = ResultCode::from_u8(frame[2]).ok_or(ResponseError::UnknownResult(frame[2]))?;
        let body = &frame[3..];
        if result == ResultCode::ExtError {
            let code = *body.first().ok_or(ResponseError::Truncated)?;
            return Ok(Response {
                request: expected as u8,
                result,
                // Unknown extended codes are kept visible as "invalid error code".
                ext: Some(ExtError::from_u8(code).unwrap_or(ExtError::InvalidErrorCode)),
                payload: Payload::None,
            });
        }
        if result != ResultCode::Success {
            return Ok(Response::error(expected, result));
        }
        let need = |n: usize| {
            if body.len() < n {
                Err(ResponseError::Truncated)
            } else {
                Ok(())
            }
        };
        let payload = match expected {
            Opcode::ProtocolVersion => {
                need(1)?;
                Payload::ProtocolVersion(body[0])
            }
            Opcode::CrcGet | Opcode::ObjectWrite => {
                need(8)?;
                Payload::Crc {
                    offset: le_u32(body),
                    crc: le_u32(&body[4..]),
                }
            }
            Opcode::ObjectSelect => {
                need(12)?;
                Payload::Select {
                    max_size: le_u32(body),
                    offset: le_u32(&body[4..]),
                    crc: le_u32(&body[8..]),
                }
            }
            Opcode::MtuGet => {
                need(2)?;
                Payload::Mtu(le_u16(body))
            }
            Opcode::Ping => {
                need(1)?;
                Payload::Ping(body[0])
            }
            Opcode::HardwareVersion => {
                need(20)?;
                Payload::HardwareVersion {
                    part: le_u32(body),
                    variant: le_u32(&body[4..]),
                    rom_size: le_u32(&body[8..]),
                    ram_size: le_u32(&body[12..]),
                    rom_page_size: le_u32(&body[16..]),
                }
            }
            Opcode::FirmwareVersion => {
                need(13)?;
                Payload::FirmwareVersion {
                    image_type: body[0],
                    version: le_u32(&body[1..]),
                    addr: le_u32(&body[5..]),
                    len: le_u32(&body[9..]),
                }
            }
            _ => Payload::None,
        };
        Ok(Response {
            request: expected as u8,
            result,
            ext: None,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(f: impl FnOnce(&mut dyn FnMut(&[u8]))) -> heapless::Vec<u8, 64> {
        let mut v = heapless::Vec::new();
        f(&mut |b: &[u8]| v.extend_from_slice(b).unwrap());
        v
    }

    #[test]
    fn create_request_matches_nrfutil_trace() {
        // `01 01 d2000000`: create command object of 210 bytes (reference trace).
        let v = bytes_of(|o| {
            Request::Create {
                obj_type: 1,
                size: 210,
            }
            .encode(&mut |b| o(b))
        });
        assert_eq!(&v[..], &[0x01, 0x01, 0xd2, 0, 0, 0]);
        assert_eq!(
            Request::parse(&v).unwrap(),
            Request::Create {
                obj_type: 1,
                size: 210
            }
        );
    }

    #[test]
    fn select_response_is_max_offset_crc() {
        let r = Response::ok(
            Opcode::ObjectSelect,
            Payload::Select {
                max_size: 4096,
                offset: 0x10,
                crc: 0xB473C829,
            },
        );
        let v = bytes_of(|o| r.encode(&mut |b| o(b)));
        assert_eq!(
            &v[..],
            &[0x60, 0x06, 0x01, 0, 0x10, 0, 0, 0x10, 0, 0, 0, 0x29, 0xC8, 0x73, 0xB4]
        );
        assert_eq!(Response::parse(&v, Opcode::ObjectSelect).unwrap(), r);
    }

    #[test]
    fn ext_error_carries_its_code() {
        let r = Response::ext_error(Opcode::ObjectExecute, ExtError::FlashCompletionTimeout);
        let v = bytes_of(|o| r.encode(&mut |b| o(b)));
        assert_eq!(&v[..], &[0x60, 0x04, 0x0B, 0x20]);
        assert_eq!(Response::parse(&v, Opcode::ObjectExecute).unwrap(), r);
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        assert_eq!(Request::parse(&[]), Err(ParseError::Empty));
        assert!(matches!(
            Request::parse(&[0x01, 0x01]),
            Err(ParseError::TooShort { opcode: 1, .. })
        ));
        assert_eq!(Request::parse(&[0x05]), Err(ParseError::UnknownOpcode(5)));
        assert_eq!(
            Response::parse(&[0x60, 0x03, 0x01, 1, 2], Opcode::CrcGet),
            Err(ResponseError::Truncated)
        );
        assert_eq!(
            Response::parse(&[0x60, 0x04, 0x01], Opcode::CrcGet),
            Err(ResponseError::UnexpectedOpcode {
                expected: 3,
                got: 4
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_frame_parses_without_panicking(frame in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = Request::parse(&frame);
            for op in [Opcode::CrcGet, Opcode::ObjectSelect, Opcode::HardwareVersion, Opcode::FirmwareVersion] {
                let _ = Response::parse(&frame, op);
            }
        }
    }
}
