//! The allocation-free decoder: a wire reader and one function per message, each
//! reporting absolute offsets.

use super::{
    BootValidation, FwType, Hash, HashType, InitCommand, InitPacket, SignatureType, ValidationType,
    MAX_BOOT_VALIDATION, MAX_BOOT_VALIDATION_BYTES, MAX_HASH_LEN, MAX_SD_REQ, MAX_SIGNATURE_LEN,
    OP_CODE_INIT, WT_I32, WT_I64, WT_LEN, WT_VARINT,
};
use core::fmt;

/// Why an init packet could not be decoded. `offset` is the byte offset in the packet where
/// the problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet ends inside a varint, a key, or a length-delimited field.
    Truncated {
        /// Offset of the element that runs past the end.
        offset: usize,
    },
    /// A varint is longer than 10 bytes.
    VarintTooLong {
        /// Offset of the varint.
        offset: usize,
    },
    /// A key has field number 0 or a field number above 2^29-1.
    InvalidFieldNumber {
        /// Offset of the key.
        offset: usize,
    },
    /// A known field was encoded with the wrong wire type, or an unsupported wire type
    /// (groups, or the reserved types 6 and 7) was found.
    WrongWireType {
        /// Offset of the key.
        offset: usize,
        /// Message and field, e.g. `"InitCommand.hash"`.
        field: &'static str,
        /// The wire type found.
        wire_type: u8,
    },
    /// A bytes field or repeated field exceeds the bootloader's nanopb limit.
    TooLong {
        /// Offset of the field.
        offset: usize,
        /// Message and field.
        field: &'static str,
        /// Length (or entry count) found.
        len: usize,
        /// Maximum the bootloader accepts.
        max: usize,
    },
    /// An enum field holds a value that `dfu-cc.proto` does not define.
    UnknownEnumValue {
        /// Offset of the value.
        offset: usize,
        /// Message and field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A required proto2 field is missing from a message.
    MissingField {
        /// Offset of the message that lacks the field.
        offset: usize,
        /// Message and field.
        field: &'static str,
    },
    /// A sub-message that must appear once appeared twice; rejected because it would make the
    /// signed span ambiguous.
    DuplicateField {
        /// Offset of the second occurrence.
        offset: usize,
        /// Message and field.
        field: &'static str,
    },
    /// A field the schema does not define, in a wrapper around the InitCommand (`Packet`,
    /// `SignedCommand`, `Command`). The signature covers the InitCommand only, so nothing
    /// vouches for these wrappers; nrfutil writes none, and a packet that has one was
    /// damaged or extended after it was signed.
    UnknownField {
        /// Offset of the field's key.
        offset: usize,
        /// The message it appeared in.
        message: &'static str,
        /// Its field number.
        number: u32,
    },
    /// The command's `op_code` is not INIT.
    UnsupportedOpCode {
        /// Offset of the value.
        offset: usize,
        /// The op code found.
        op_code: u64,
    },
    /// The packet carries neither `command` nor `signed_command`, or both.
    NoCommand {
        /// Offset where the problem was detected (end of packet).
        offset: usize,
    },
}

impl DecodeError {
    /// Byte offset in the packet where the problem was found.
    pub fn offset(&self) -> usize {
        match *self {
            DecodeError::Truncated { offset }
            | DecodeError::VarintTooLong { offset }
            | DecodeError::InvalidFieldNumber { offset }
            | DecodeError::WrongWireType { offset, .. }
            | DecodeError::TooLong { offset, .. }
            | DecodeError::UnknownEnumValue { offset, .. }
            | DecodeError::MissingField { offset, .. }
            | DecodeError::DuplicateField { offset, .. }
            | DecodeError::UnknownField { offset, .. }
            | DecodeError::UnsupportedOpCode { offset, .. }
            | DecodeError::NoCommand { offset } => offset,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Truncated { offset } => {
                write!(f, "init packet truncated: element at offset {offset} runs past the end")
            }
            DecodeError::VarintTooLong { offset } => {
                write!(f, "varint at offset {offset} is longer than 10 bytes")
            }
            DecodeError::InvalidFieldNumber { offset } => {
                write!(f, "invalid protobuf field number in key at offset {offset}")
            }
            DecodeError::WrongWireType { offset, field, wire_type } => write!(
                f,
                "field {field} at offset {offset} has unexpected or unsupported wire type {wire_type}"
            ),
            DecodeError::TooLong { offset, field, len, max } => write!(
                f,
                "field {field} at offset {offset} has {len} bytes/entries, the bootloader accepts at most {max}"
            ),
            DecodeError::UnknownEnumValue { offset, field, value } => {
                write!(f, "field {field} at offset {offset} has undefined enum value {value}")
            }
            DecodeError::MissingField { offset, field } => {
                write!(f, "required field {field} missing in message at offset {offset}")
            }
            DecodeError::DuplicateField { offset, field } => {
                write!(f, "field {field} appears twice (second at offset {offset})")
            }
            DecodeError::UnknownField {
                offset,
                message,
                number,
            } => write!(
                f,
                "unknown field {number} in {message} at offset {offset}: the signature does not cover it, and no generator writes one (damaged or appended after signing?)"
            ),
            DecodeError::UnsupportedOpCode { offset, op_code } => {
                write!(f, "command at offset {offset} has op_code {op_code}, expected INIT (1)")
            }
            DecodeError::NoCommand { offset } => write!(
                f,
                "packet (length {offset}) must contain exactly one of command or signed_command"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// A cursor over one message's bytes; `base` is the message's offset in the whole packet so
/// errors name absolute offsets.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

struct Field<'a> {
    number: u32,
    wire_type: u8,
    /// Absolute offset of the key.
    key_offset: usize,
    /// Absolute offset of the value (after key, and after the length for WT_LEN).
    value_offset: usize,
    value: Value<'a>,
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn abs(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.abs();
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated { offset: start });
            };
            self.pos += 1;
            // The tenth byte may only contribute bit 63; ignore excess bits as protobuf does.
            value |= u64::from(b & 0x7F).checked_shl(7 * i).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong { offset: start })
    }

    fn next_field(&mut self) -> Option<Result<Field<'a>, DecodeError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<Field<'a>, DecodeError> {
        let key_offset = self.abs();
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > 0x1FFF_FFFF {
            return Err(DecodeError::InvalidFieldNumber { offset: key_offset });
        }
        let wire_type = (key & 7) as u8;
        let number = number as u32;
        let value = match wire_type {
            WT_VARINT => {
                let value_offset = self.abs();
                let v = self.varint()?;
                return Ok(Field {
                    number,
                    wire_type,
                    key_offset,
                    value_offset,
                    value: Value::Varint(v),
                });
            }
            WT_LEN => {
                let len_offset = self.abs();
                let len = self.varint()?;
                let value_offset = self.abs();
                let remaining = (self.buf.len() - self.pos) as u64;
                if len > remaining {
                    return Err(DecodeError::Truncated { offset: len_offset });
                }
                let len = len as usize;
                let bytes = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                return Ok(Field {
                    number,
                    wire_type,
                    key_offset,
                    value_offset,
                    value: Value::Bytes(bytes),
                });
            }
            WT_I64 => 8,
            WT_I32 => 4,
            _ => {
                return Err(DecodeError::WrongWireType {
                    offset: key_offset,
                    field: "(unknown)",
                    wire_type,
                })
            }
        };
        let value_offset = self.abs();
        if self.buf.len() - self.pos < value {
            return Err(DecodeError::Truncated {
                offset: value_offset,
            });
        }
        self.pos += value;
        Ok(Field {
            number,
            wire_type,
            key_offset,
            value_offset,
            value: Value::Fixed,
        })
    }
}

impl<'a> Field<'a> {
    fn varint(&self, field: &'static str) -> Result<u64, DecodeError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wrong(field)),
        }
    }

    /// proto2 `uint32`: the wire carries a varint; values above 32 bits are truncated as the
    /// protobuf specification requires.
    fn uint32(&self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(self.varint(field)? as u32)
    }

    fn bytes(&self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.value {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.wrong(field)),
        }
    }

    fn enumeration<T>(
        &self,
        field: &'static str,
        conv: fn(u32) -> Option<T>,
    ) -> Result<T, DecodeError> {
        let v = self.varint(field)?;
        u32::try_from(v)
            .ok()
            .and_then(conv)
            .ok_or(DecodeError::UnknownEnumValue {
                offset: self.value_offset,
                field,
                value: v,
            })
    }

    fn wrong(&self, field: &'static str) -> DecodeError {
        DecodeError::WrongWireType {
            offset: self.key_offset,
            field,
            wire_type: self.wire_type,
        }
    }
}

fn copy_limited<const N: usize>(
    bytes: &[u8],
    max: usize,
    field: &'static str,
    offset: usize,
) -> Result<heapless::Vec<u8, N>, DecodeError> {
    if bytes.len() > max.min(N) {
        return Err(DecodeError::TooLong {
            offset,
            field,
            len: bytes.len(),
            max: max.min(N),
        });
    }
    let mut v = heapless::Vec::new();
    // Cannot fail: length checked above.
    let _ = v.extend_from_slice(bytes);
    Ok(v)
}

/// Decodes a `Hash` or `BootValidation`: both are an enum (field 1) and
/// bytes of at most `max` (field 2), both required; `names` are the two
/// fields' names, for errors.
fn decode_kind_bytes<K, const N: usize>(
    buf: &[u8],
    base: usize,
    names: [&'static str; 2],
    conv: fn(u32) -> Option<K>,
    max: usize,
) -> Result<(K, heapless::Vec<u8, N>), DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut kind = None;
    let mut bytes = None;
    while let Some(f) = r.next_field() {
        let f = f?;
        match f.number {
            1 => kind = Some(f.enumeration(names[0], conv)?),
            2 => {
                let b = f.bytes(names[1])?;
                bytes = Some(copy_limited(b, max, names[1], f.value_offset)?);
            }
            _ => {}
        }
    }
    let missing = |field| DecodeError::MissingField {
        offset: base,
        field,
    };
    Ok((
        kind.ok_or(missing(names[0]))?,
        bytes.ok_or(missing(names[1]))?,
    ))
}

fn decode_hash(buf: &[u8], base: usize) -> Result<Hash, DecodeError> {
    let (hash_type, hash) = decode_kind_bytes(
        buf,
        base,
        ["Hash.hash_type", "Hash.hash"],
        HashType::from_u32,
        MAX_HASH_LEN,
    )?;
    Ok(Hash { hash_type, hash })
}

fn decode_boot_validation(buf: &[u8], base: usize) -> Result<BootValidation, DecodeError> {
    let (kind, bytes) = decode_kind_bytes(
        buf,
        base,
        ["BootValidation.type", "BootValidation.bytes"],
        ValidationType::from_u32,
        MAX_BOOT_VALIDATION_BYTES,
    )?;
    Ok(BootValidation { kind, bytes })
}

fn push_sd_req(cmd: &mut InitCommand, v: u32, offset: usize) -> Result<(), DecodeError> {
    cmd.sd_req.push(v).map_err(|_| DecodeError::TooLong {
        offset,
        field: "InitCommand.sd_req",
        len: MAX_SD_REQ + 1,
        max: MAX_SD_REQ,
    })
}

fn decode_init_command(buf: &[u8], base: usize) -> Result<InitCommand, DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut cmd = InitCommand::default();
    while let Some(f) = r.next_field() {
        let f = f?;
        match f.number {
            1 => cmd.fw_version = Some(f.uint32("InitCommand.fw_version")?),
            2 => cmd.hw_version = Some(f.uint32("InitCommand.hw_version")?),
            3 => match f.value {
                // Parsers must accept both packed and unpacked encodings of a repeated scalar.
                Value::Varint(v) => push_sd_req(&mut cmd, v as u32, f.value_offset)?,
                Value::Bytes(b) => {
                    let mut inner = Reader::new(b, f.value_offset);
                    while inner.pos < b.len() {
                        let at = inner.abs();
                        let v = inner.varint()?;
                        push_sd_req(&mut cmd, v as u32, at)?;
                    }
                }
                Value::Fixed => return Err(f.wrong("InitCommand.sd_req")),
            },
            4 => cmd.fw_type = Some(f.enumeration("InitCommand.type", FwType::from_u32)?),
            5 => cmd.sd_size = Some(f.uint32("InitCommand.sd_size")?),
            6 => cmd.bl_size = Some(f.uint32("InitCommand.bl_size")?),
            7 => cmd.app_size = Some(f.uint32("InitCommand.app_size")?),
            8 => {
                let b = f.bytes("InitCommand.hash")?;
                if cmd.hash.is_some() {
                    return Err(DecodeError::DuplicateField {
                        offset: f.key_offset,
                        field: "InitCommand.hash",
                    });
                }
                cmd.hash = Some(decode_hash(b, f.value_offset)?);
            }
            9 => cmd.is_debug = Some(f.varint("InitCommand.is_debug")? != 0),
            10 => {
                let b = f.bytes("InitCommand.boot_validation")?;
                let bv = decode_boot_validation(b, f.value_offset)?;
                cmd.boot_validation
                    .push(bv)
                    .map_err(|_| DecodeError::TooLong {
                        offset: f.key_offset,
                        field: "InitCommand.boot_validation",
                        len: MAX_BOOT_VALIDATION + 1,
                        max: MAX_BOOT_VALIDATION,
                    })?;
            }
            _ => {}
        }
    }
    Ok(cmd)
}

/// Decodes a `dfu.Command`, returning the InitCommand and its exact byte span.
///
/// `op_code` is required although protobuf would default it: the signature covers the
/// InitCommand only (as nrfutil signs it), so the op_code is the one part of a signed
/// packet nobody vouches for. nrfutil always writes it; a packet without it (one whose tag
/// was damaged into an unknown field) is refused rather than read as INIT.
fn decode_command<'a>(buf: &'a [u8], base: usize) -> Result<(InitCommand, &'a [u8]), DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut init: Option<(InitCommand, &'a [u8])> = None;
    let mut op_code = false;
    while let Some(f) = r.next_field() {
        let f = f?;
        match f.number {
            1 => {
                let op = f.varint("Command.op_code")?;
                if op != u64::from(OP_CODE_INIT) {
                    return Err(DecodeError::UnsupportedOpCode {
                        offset: f.value_offset,
                        op_code: op,
                    });
                }
                op_code = true;
            }
            2 => {
                let b = f.bytes("Command.init")?;
                if init.is_some() {
                    return Err(DecodeError::DuplicateField {
                        offset: f.key_offset,
                        field: "Command.init",
                    });
                }
                init = Some((decode_init_command(b, f.value_offset)?, b));
            }
            n => {
                return Err(DecodeError::UnknownField {
                    offset: f.key_offset,
                    message: "Command",
                    number: n,
                })
            }
        }
    }
    if !op_code {
        return Err(DecodeError::MissingField {
            offset: base,
            field: "Command.op_code",
        });
    }
    init.ok_or(DecodeError::MissingField {
        offset: base,
        field: "Command.init",
    })
}

/// Decodes an init packet (`dfu.Packet`) without allocating.
///
/// Unknown fields inside the InitCommand are skipped as protobuf requires (they are signed:
/// a newer generator's field is vouched for); in the unsigned wrappers around it they are
/// refused ([`DecodeError::UnknownField`]). Known fields with the wrong wire type,
/// undefined enum values, oversize fields (nanopb limits) and truncation are errors.
pub fn decode(packet: &[u8]) -> Result<InitPacket<'_>, DecodeError> {
    let mut r = Reader::new(packet, 0);
    let mut result: Option<InitPacket<'_>> = None;
    while let Some(f) = r.next_field() {
        let f = f?;
        match f.number {
            1 => {
                let b = f.bytes("Packet.command")?;
                if result.is_some() {
                    return Err(DecodeError::DuplicateField {
                        offset: f.key_offset,
                        field: "Packet.command",
                    });
                }
                let (command, span) = decode_command(b, f.value_offset)?;
                result = Some(InitPacket {
                    command,
                    init_command_bytes: span,
                    signature_type: None,
                    signature: None,
                });
            }
            2 => {
                let b = f.bytes("Packet.signed_command")?;
                if result.is_some() {
                    return Err(DecodeError::DuplicateField {
                        offset: f.key_offset,
                        field: "Packet.signed_command",
                    });
                }
                result = Some(decode_signed_command(b, f.value_offset)?);
            }
            n => {
                return Err(DecodeError::UnknownField {
                    offset: f.key_offset,
                    message: "Packet",
                    number: n,
                })
            }
        }
    }
    result.ok_or(DecodeError::NoCommand {
        offset: packet.len(),
    })
}

fn decode_signed_command(buf: &[u8], base: usize) -> Result<InitPacket<'_>, DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut command = None;
    let mut signature_type = None;
    let mut signature = None;
    while let Some(f) = r.next_field() {
        let f = f?;
        match f.number {
            1 => {
                let b = f.bytes("SignedCommand.command")?;
                if command.is_some() {
                    return Err(DecodeError::DuplicateField {
                        offset: f.key_offset,
                        field: "SignedCommand.command",
                    });
                }
                command = Some(decode_command(b, f.value_offset)?);
            }
            2 => {
                signature_type =
                    Some(f.enumeration("SignedCommand.signature_type", SignatureType::from_u32)?)
            }
            3 => {
                let b = f.bytes("SignedCommand.signature")?;
                if b.len() > MAX_SIGNATURE_LEN {
                    return Err(DecodeError::TooLong {
                        offset: f.value_offset,
                        field: "SignedCommand.signature",
                        len: b.len(),
                        max: MAX_SIGNATURE_LEN,
                    });
                }
                signature = Some(b);
            }
            n => {
                return Err(DecodeError::UnknownField {
                    offset: f.key_offset,
                    message: "SignedCommand",
                    number: n,
                })
            }
        }
    }
    let (command, span) = command.ok_or(DecodeError::MissingField {
        offset: base,
        field: "SignedCommand.command",
    })?;
    let signature_type = signature_type.ok_or(DecodeError::MissingField {
        offset: base,
        field: "SignedCommand.signature_type",
    })?;
    let signature = signature.ok_or(DecodeError::MissingField {
        offset: base,
        field: "SignedCommand.signature",
    })?;
    Ok(InitPacket {
        command,
        init_command_bytes: span,
        signature_type: Some(signature_type),
        signature: Some(signature),
    })
}
