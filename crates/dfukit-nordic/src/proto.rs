//! Secure DFU control-point messages as they travel on the wire.
//!
//! Requests are an opcode byte followed by little-endian fields; responses are
//! `60 <request opcode> <result> [payload]`, with one extra byte after an
//! extended error. The layouts follow `nrf_dfu_req_handler.h` and
//! `nrf_dfu_serial.c` of nRF5 SDK 17.1. The same types serve the device core,
//! which parses requests and builds responses, and the host, which does the
//! opposite, so that both ends agree by construction.

use core::fmt;

/// A `#[repr(u8)]` wire enum and its `from_u8`, from one list of values, so
/// that a value cannot be declared and then left out of the decoder. With a
/// description after each value (`Name = 0x01 => "words"`) it also gets
/// `describe`.
macro_rules! byte_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vm])* $var = $val,)*
        }
        impl $name {
            /// Decodes a wire byte; `None` for a value the protocol does not define.
            pub fn from_u8(b: u8) -> Option<$name> {
                match b {
                    $($val => Some($name::$var),)*
                    _ => None,
                }
            }
        }
    };
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal => $desc:literal,)* }) => {
        byte_enum!($(#[$m])* $name { $($(#[$vm])* $var = $val,)* });
        impl $name {
            /// What the code means, in words.
            pub fn describe(self) -> &'static str {
                match self {
                    $($name::$var => $desc,)*
                }
            }
        }
    };
}

byte_enum!(
    /// Control-point opcodes (`nrf_dfu_op_t`).
    Opcode {
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
);

byte_enum!(
    /// The two object kinds of an update.
    ObjectType {
        /// The init packet.
        Command = 1,
        /// Firmware image data.
        Data = 2,
    }
);

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectType::Command => "command (init packet)",
            ObjectType::Data => "data",
        })
    }
}

byte_enum!(
    /// Result codes (`nrf_dfu_result_t`).
    ResultCode {
        /// Never sent by a correct device.
        Invalid = 0x00 => "invalid result code",
        /// The request succeeded.
        Success = 0x01 => "success",
        /// Unknown opcode.
        OpCodeNotSupported = 0x02 => "opcode not supported",
        /// A field of the request is out of range.
        InvalidParameter = 0x03 => "invalid parameter",
        /// Not enough memory or space.
        InsufficientResources = 0x04 => "insufficient resources",
        /// The object is malformed, or its signature does not verify.
        InvalidObject = 0x05 => "invalid object (malformed init packet or bad signature)",
        /// Listed by nrfutil; the SDK never sends it.
        InvalidSignature = 0x06 => "invalid signature",
        /// Unsupported object type.
        UnsupportedType = 0x07 => "unsupported object type",
        /// The request is not allowed in the current state.
        OperationNotPermitted = 0x08 => "operation not permitted in this state",
        /// The device could not carry the request out (a flash or settings write failed).
        OperationFailed = 0x0A => "operation failed on the device",
        /// An extended error code follows.
        ExtError = 0x0B => "extended error",
    }
);

byte_enum!(
    /// Extended error codes (`nrf_dfu_ext_error_code_t`), plus dfukit's own
    /// flash-path codes, which the SDK lacks: its flash callback swallows failures.
    ExtError {
        /// No extended error was latched.
        NoError = 0x00 => "no extended error latched",
        /// Development-only code.
        InvalidErrorCode = 0x01 => "invalid error code",
        /// The command was malformed.
        WrongCommandFormat = 0x02 => "wrong command format",
        /// The command is not known.
        UnknownCommand = 0x03 => "unknown command",
        /// The init command is invalid or lacks a field its type needs.
        InitCommandInvalid = 0x04 => "init command invalid for its update type",
        /// The firmware version is lower than the installed one.
        FwVersionFailure = 0x05 => "firmware version too low (downgrade refused)",
        /// The hardware version does not match.
        HwVersionFailure = 0x06 => "hardware version does not match",
        /// The installed SoftDevice is not in `sd_req`.
        SdVersionFailure = 0x07 => "installed SoftDevice not in sd_req",
        /// The init packet is unsigned but a signature is required.
        SignatureMissing = 0x08 => "init packet not signed",
        /// The hash type is not supported.
        WrongHashType = 0x09 => "hash type not supported",
        /// The hash could not be computed.
        HashFailed = 0x0A => "hash could not be computed",
        /// The signature type is not supported.
        WrongSignatureType = 0x0B => "signature type not supported",
        /// The received image does not match the hash in the init packet.
        VerificationFailed = 0x0C => "image hash does not match the init packet",
        /// The image does not fit.
        InsufficientSpace = 0x0D => "image does not fit in the update bank",
        /// dfukit: a flash operation was started but its completion never arrived.
        FlashCompletionTimeout = 0x20 => "flash write completion not received",
        /// dfukit: the flash controller reported a failed erase or program.
        FlashOperationFailed = 0x21 => "flash operation failed",
    }
);

/// A control-point request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureDfuRequest<'a> {
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

impl<'a> SecureDfuRequest<'a> {
    /// The opcode of this request.
    pub fn opcode(&self) -> Opcode {
        match self {
            SecureDfuRequest::ProtocolVersion => Opcode::ProtocolVersion,
            SecureDfuRequest::Create { .. } => Opcode::ObjectCreate,
            SecureDfuRequest::SetPrn(_) => Opcode::ReceiptNotifSet,
            SecureDfuRequest::CrcGet => Opcode::CrcGet,
            SecureDfuRequest::Execute => Opcode::ObjectExecute,
            SecureDfuRequest::Select(_) => Opcode::ObjectSelect,
            SecureDfuRequest::MtuGet => Opcode::MtuGet,
            SecureDfuRequest::Write(_) => Opcode::ObjectWrite,
            SecureDfuRequest::Ping(_) => Opcode::Ping,
            SecureDfuRequest::HardwareVersion => Opcode::HardwareVersion,
            SecureDfuRequest::FirmwareVersion(_) => Opcode::FirmwareVersion,
            SecureDfuRequest::Abort => Opcode::Abort,
        }
    }

    /// Parses a request frame (opcode first), as received over serial.
    pub fn parse(frame: &'a [u8]) -> Result<SecureDfuRequest<'a>, ParseError> {
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
            Opcode::ProtocolVersion => SecureDfuRequest::ProtocolVersion,
            Opcode::ObjectCreate => {
                need(5)?;
                SecureDfuRequest::Create {
                    obj_type: body[0],
                    size: le_u32(&body[1..5]),
                }
            }
            Opcode::ReceiptNotifSet => {
                need(2)?;
                SecureDfuRequest::SetPrn(le_u16(body))
            }
            Opcode::CrcGet => SecureDfuRequest::CrcGet,
            Opcode::ObjectExecute => SecureDfuRequest::Execute,
            Opcode::ObjectSelect => {
                need(1)?;
                SecureDfuRequest::Select(body[0])
            }
            Opcode::MtuGet => SecureDfuRequest::MtuGet,
            Opcode::ObjectWrite => SecureDfuRequest::Write(body),
            Opcode::Ping => {
                need(1)?;
                SecureDfuRequest::Ping(body[0])
            }
            Opcode::HardwareVersion => SecureDfuRequest::HardwareVersion,
            Opcode::FirmwareVersion => {
                need(1)?;
                SecureDfuRequest::FirmwareVersion(body[0])
            }
            Opcode::Abort => SecureDfuRequest::Abort,
            Opcode::Response => return Err(ParseError::UnknownOpcode(op)),
        })
    }

    /// Encodes the request, passing the bytes to `out` in order.
    pub fn encode(&self, out: &mut impl FnMut(&[u8])) {
        out(&[self.opcode() as u8]);
        match *self {
            SecureDfuRequest::Create { obj_type, size } => {
                out(&[obj_type]);
                out(&size.to_le_bytes());
            }
            SecureDfuRequest::SetPrn(n) => out(&n.to_le_bytes()),
            SecureDfuRequest::Select(t) => out(&[t]),
            SecureDfuRequest::Write(data) => out(data),
            SecureDfuRequest::Ping(id) => out(&[id]),
            SecureDfuRequest::FirmwareVersion(n) => out(&[n]),
            SecureDfuRequest::ProtocolVersion
            | SecureDfuRequest::CrcGet
            | SecureDfuRequest::Execute
            | SecureDfuRequest::MtuGet
            | SecureDfuRequest::HardwareVersion
            | SecureDfuRequest::Abort => {}
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
            SecureDfuRequest::Create {
                obj_type: 1,
                size: 210,
            }
            .encode(&mut |b| o(b))
        });
        assert_eq!(&v[..], &[0x01, 0x01, 0xd2, 0, 0, 0]);
        assert_eq!(
            SecureDfuRequest::parse(&v).unwrap(),
            SecureDfuRequest::Create {
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
        assert_eq!(SecureDfuRequest::parse(&[]), Err(ParseError::Empty));
        assert!(matches!(
            SecureDfuRequest::parse(&[0x01, 0x01]),
            Err(ParseError::TooShort { opcode: 1, .. })
        ));
        assert_eq!(
            SecureDfuRequest::parse(&[0x05]),
            Err(ParseError::UnknownOpcode(5))
        );
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
            let _ = SecureDfuRequest::parse(&frame);
            for op in [Opcode::CrcGet, Opcode::ObjectSelect, Opcode::HardwareVersion, Opcode::FirmwareVersion] {
                let _ = Response::parse(&frame, op);
            }
        }
    }
}
