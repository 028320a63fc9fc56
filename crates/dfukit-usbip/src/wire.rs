//! USB/IP wire format (protocol version 1.1.1, `0x0111`).
//!
//! Every integer on the wire is big-endian, except the 8-byte USB setup packet carried inside
//! `USBIP_CMD_SUBMIT`, which is copied verbatim in USB order (its `wValue`, `wIndex` and `wLength`
//! are little-endian). Layouts follow Linux `Documentation/usb/usbip_protocol.rst`.
//!
//! Two families of messages exist:
//!
//! * *operations* (`OP_*`), exchanged right after a TCP connection opens: an 8-byte common
//!   header (`version`, `code`, `status`) followed by a body;
//! * *URB messages* (`USBIP_CMD_*` / `USBIP_RET_*`), exchanged on a connection after a successful
//!   import: a 48-byte header followed by the transfer buffer, if any.
//!
//! Each message type has `encode` (to a complete byte vector) and `decode` (from a complete
//! message, rejecting short *and* long input). Readers of a byte stream use the `*_LEN`
//! constants and the `body_len` / `payload_len` helpers to learn how many bytes to read next.

use thiserror::Error;

/// Protocol version carried in every operation header: USB/IP 1.1.1.
pub const USBIP_VERSION: u16 = 0x0111;

/// Operation code: request the list of exported devices.
pub const OP_REQ_DEVLIST: u16 = 0x8005;
/// Operation code: reply with the list of exported devices.
pub const OP_REP_DEVLIST: u16 = 0x0005;
/// Operation code: request to import (attach) a device.
pub const OP_REQ_IMPORT: u16 = 0x8003;
/// Operation code: reply to an import request.
pub const OP_REP_IMPORT: u16 = 0x0003;

/// URB command: submit a URB (client → server).
pub const USBIP_CMD_SUBMIT: u32 = 1;
/// URB command: unlink a previously submitted URB (client → server).
pub const USBIP_CMD_UNLINK: u32 = 2;
/// URB reply to `USBIP_CMD_SUBMIT` (server → client).
pub const USBIP_RET_SUBMIT: u32 = 3;
/// URB reply to `USBIP_CMD_UNLINK` (server → client).
pub const USBIP_RET_UNLINK: u32 = 4;

/// Operation status: success.
pub const ST_OK: u32 = 0;
/// Operation status: request not available / generic failure (the spec's "1 for error").
pub const ST_NA: u32 = 1;
/// Operation status used by the Linux tools: the device is busy (already imported).
pub const ST_DEV_BUSY: u32 = 2;
/// Operation status used by the Linux tools: the device is in an error state.
pub const ST_DEV_ERR: u32 = 3;
/// Operation status used by the Linux tools: no such device (unknown busid).
pub const ST_NODEV: u32 = 4;
/// Operation status used by the Linux tools: unexpected response.
pub const ST_ERROR: u32 = 5;

/// Linux `-EPIPE`: URB status of a stalled transfer.
pub const STATUS_STALL: i32 = -32;
/// Linux `-ECONNRESET`: status of a URB that was unlinked before it completed.
pub const STATUS_UNLINKED: i32 = -104;
/// Linux `-ENODEV`: the device is gone.
pub const STATUS_NO_DEVICE: i32 = -19;
/// Linux `-ESHUTDOWN`: the device or its host controller shut down.
pub const STATUS_SHUTDOWN: i32 = -108;
/// Linux `-ENOENT`: URB was killed synchronously.
pub const STATUS_NO_ENTRY: i32 = -2;

/// Length of the common operation header (`version`, `code`, `status`).
pub const OP_HEADER_LEN: usize = 8;
/// Length of one `usbip_usb_device` record in `OP_REP_DEVLIST` / `OP_REP_IMPORT`.
pub const DEVICE_RECORD_LEN: usize = 312;
/// Length of one `usbip_usb_interface` record in `OP_REP_DEVLIST`.
pub const INTERFACE_RECORD_LEN: usize = 4;
/// Length of the `path` field of a device record (NUL-terminated, zero-padded).
pub const PATH_FIELD_LEN: usize = 256;
/// Length of a `busid` field (NUL-terminated, zero-padded), so at most 31 characters.
pub const BUSID_FIELD_LEN: usize = 32;
/// Length of every URB message header (`usbip_header`), before the transfer buffer.
pub const URB_HEADER_LEN: usize = 48;
/// Total length of `OP_REQ_IMPORT`.
pub const OP_REQ_IMPORT_LEN: usize = OP_HEADER_LEN + BUSID_FIELD_LEN;

/// Largest transfer buffer accepted in a URB message (a sanity bound against corrupt headers;
/// control transfers never exceed 65 535 bytes).
pub const MAX_TRANSFER_LEN: u32 = 16 * 1024 * 1024;
/// Largest device count accepted in `OP_REP_DEVLIST` (a sanity bound against corrupt headers).
pub const MAX_DEVLIST_DEVICES: u32 = 4096;
/// `number_of_packets` value of a non-isochronous transfer, as the spec requires.
pub const NOT_ISO: u32 = 0xffff_ffff;

/// A malformed or unexpected USB/IP message.
///
/// Offsets are byte offsets from the start of the message being decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input ended before a field.
    #[error("{message}: truncated at `{field}` (offset {offset}): need {needed} bytes, have {available}")]
    Truncated {
        /// Message being decoded.
        message: &'static str,
        /// Field that did not fit.
        field: &'static str,
        /// Offset of that field.
        offset: usize,
        /// Bytes needed from `offset` on.
        needed: usize,
        /// Bytes available from `offset` on.
        available: usize,
    },
    /// The input is longer than the message it should contain.
    #[error("{message}: {extra} unexpected trailing bytes at offset {offset}")]
    TrailingBytes {
        /// Message being decoded.
        message: &'static str,
        /// Offset where the message ends.
        offset: usize,
        /// Number of bytes past the end.
        extra: usize,
    },
    /// The `version` field is not `0x0111`.
    #[error("{message}: unsupported USB/IP version {found:#06x} at offset 0 (expected 0x0111)")]
    BadVersion {
        /// Message being decoded.
        message: &'static str,
        /// Version found.
        found: u16,
    },
    /// A code, command or constant field holds an unexpected value.
    #[error("{message}: field `{field}` at offset {offset} is {found:#x}, expected {expected:#x}")]
    UnexpectedValue {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Value expected.
        expected: u32,
        /// Value found.
        found: u32,
    },
    /// A field holds a value outside its allowed range.
    #[error("{message}: field `{field}` at offset {offset} is out of range: {found:#x}")]
    OutOfRange {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Value found.
        found: u32,
    },
    /// A fixed-size string field has no terminating NUL byte.
    #[error("{message}: string field `{field}` at offset {offset} is not NUL-terminated")]
    Unterminated {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{message}: string field `{field}` at offset {offset} is not UTF-8")]
    NotUtf8 {
        /// Message being decoded.
        message: &'static str,
        /// Field name.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A string is too long for its fixed-size field (which also holds the NUL) when encoding.
    #[error("string for field `{field}` is {len} bytes; at most {max} fit")]
    StringTooLong {
        /// Field name.
        field: &'static str,
        /// Length of the string in bytes.
        len: usize,
        /// Largest length that fits.
        max: usize,
    },
    /// Isochronous transfers (`number_of_packets` other than 0 or `0xffffffff`) are not supported.
    #[error(
        "{message}: isochronous transfer with {packets} packets is not supported (offset 0x20)"
    )]
    IsochronousUnsupported {
        /// Message being decoded.
        message: &'static str,
        /// `number_of_packets` found.
        packets: u32,
    },
}

impl From<WireError> for std::io::Error {
    fn from(e: WireError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Bounds-checked big-endian reader over one message.
struct Reader<'a> {
    message: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(message: &'static str, buf: &'a [u8]) -> Self {
        Reader {
            message,
            buf,
            pos: 0,
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        let available = self.buf.len().saturating_sub(self.pos);
        if available < n {
            return Err(WireError::Truncated {
                message: self.message,
                field,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(field, 1)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, field: &'static str, len: usize) -> Result<String, WireError> {
        let offset = self.pos;
        let raw = self.take(field, len)?;
        let end = raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Unterminated {
                message: self.message,
                field,
                offset,
            })?;
        std::str::from_utf8(&raw[..end])
            .map(str::to_owned)
            .map_err(|_| WireError::NotUtf8 {
                message: self.message,
                field,
                offset,
            })
    }

    fn skip(&mut self, field: &'static str, n: usize) -> Result<(), WireError> {
        self.take(field, n).map(|_| ())
    }

    fn finish(self) -> Result<(), WireError> {
        if self.pos != self.buf.len() {
            return Err(WireError::TrailingBytes {
                message: self.message,
                offset: self.pos,
                extra: self.buf.len() - self.pos,
            });
        }
        Ok(())
    }
}

fn put_string(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
    len: usize,
) -> Result<(), WireError> {
    if s.len() >= len {
        return Err(WireError::StringTooLong {
            field,
            len: s.len(),
            max: len - 1,
        });
    }
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + (len - s.len()), 0);
    Ok(())
}

/// The 8-byte header that starts every operation (`op_common`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpHeader {
    /// Protocol version; [`USBIP_VERSION`] on everything this crate sends.
    pub version: u16,
    /// Operation code (`OP_REQ_*` / `OP_REP_*`).
    pub code: u16,
    /// Status: [`ST_OK`] or an `ST_*` error.
    pub status: u32,
}

impl OpHeader {
    /// A header with version 0x0111.
    pub fn new(code: u16, status: u32) -> Self {
        OpHeader {
            version: USBIP_VERSION,
            code,
            status,
        }
    }

    /// Encode the 8 bytes.
    pub fn encode(&self) -> [u8; OP_HEADER_LEN] {
        let mut b = [0u8; OP_HEADER_LEN];
        b[0..2].copy_from_slice(&self.version.to_be_bytes());
        b[2..4].copy_from_slice(&self.code.to_be_bytes());
        b[4..8].copy_from_slice(&self.status.to_be_bytes());
        b
    }

    /// Decode exactly 8 bytes. The version is checked (must be 0x0111); the code is not.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("op_common", buf);
        let version = r.u16("version")?;
        let code = r.u16("code")?;
        let status = r.u32("status")?;
        r.finish()?;
        if version != USBIP_VERSION {
            return Err(WireError::BadVersion {
                message: "op_common",
                found: version,
            });
        }
        Ok(OpHeader {
            version,
            code,
            status,
        })
    }

    fn decode_expect(r: &mut Reader<'_>, code: u16) -> Result<OpHeader, WireError> {
        let version = r.u16("version")?;
        if version != USBIP_VERSION {
            return Err(WireError::BadVersion {
                message: r.message,
                found: version,
            });
        }
        let found = r.u16("code")?;
        if found != code {
            return Err(WireError::UnexpectedValue {
                message: r.message,
                field: "code",
                offset: 2,
                expected: code.into(),
                found: found.into(),
            });
        }
        let status = r.u32("status")?;
        Ok(OpHeader {
            version,
            code,
            status,
        })
    }
}

/// USB speed as reported in device records (Linux `enum usb_device_speed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Speed {
    /// Unknown speed (0).
    Unknown,
    /// Low speed, 1.5 Mbit/s (1).
    Low,
    /// Full speed, 12 Mbit/s (2).
    #[default]
    Full,
    /// High speed, 480 Mbit/s (3).
    High,
    /// Wireless USB (4).
    Wireless,
    /// SuperSpeed, 5 Gbit/s (5).
    Super,
    /// SuperSpeed+, 10 Gbit/s (6).
    SuperPlus,
}

impl Speed {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Speed::Unknown => 0,
            Speed::Low => 1,
            Speed::Full => 2,
            Speed::High => 3,
            Speed::Wireless => 4,
            Speed::Super => 5,
            Speed::SuperPlus => 6,
        }
    }

    /// From the wire value; unknown values map to [`Speed::Unknown`].
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => Speed::Low,
            2 => Speed::Full,
            3 => Speed::High,
            4 => Speed::Wireless,
            5 => Speed::Super,
            6 => Speed::SuperPlus,
            _ => Speed::Unknown,
        }
    }
}

/// One `usbip_usb_device` record (312 bytes), as found in `OP_REP_DEVLIST` and `OP_REP_IMPORT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceRecord {
    /// Path of the device on the exporting host (informational), at most 255 bytes.
    pub path: String,
    /// Bus id used to import the device (e.g. `"1-1"`), at most 31 bytes.
    pub busid: String,
    /// Bus number.
    pub busnum: u32,
    /// Device number on that bus.
    pub devnum: u32,
    /// Device speed.
    pub speed: Speed,
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// bDeviceClass.
    pub device_class: u8,
    /// bDeviceSubClass.
    pub device_subclass: u8,
    /// bDeviceProtocol.
    pub device_protocol: u8,
    /// bConfigurationValue of the current configuration.
    pub configuration_value: u8,
    /// bNumConfigurations.
    pub num_configurations: u8,
    /// bNumInterfaces of the current configuration.
    pub num_interfaces: u8,
}

impl DeviceRecord {
    /// The `devid` a client puts in URB headers: `(busnum << 16) | devnum`.
    pub fn devid(&self) -> u32 {
        (self.busnum << 16) | (self.devnum & 0xffff)
    }

    /// Append the 312-byte encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_string(out, "path", &self.path, PATH_FIELD_LEN)?;
        put_string(out, "busid", &self.busid, BUSID_FIELD_LEN)?;
        out.extend_from_slice(&self.busnum.to_be_bytes());
        out.extend_from_slice(&self.devnum.to_be_bytes());
        out.extend_from_slice(&self.speed.to_u32().to_be_bytes());
        out.extend_from_slice(&self.vendor_id.to_be_bytes());
        out.extend_from_slice(&self.product_id.to_be_bytes());
        out.extend_from_slice(&self.bcd_device.to_be_bytes());
        out.extend_from_slice(&[
            self.device_class,
            self.device_subclass,
            self.device_protocol,
            self.configuration_value,
            self.num_configurations,
            self.num_interfaces,
        ]);
        Ok(())
    }

    /// Decode exactly one 312-byte record.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("usbip_usb_device", buf);
        let rec = Self::read(&mut r)?;
        r.finish()?;
        Ok(rec)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DeviceRecord {
            path: r.string("path", PATH_FIELD_LEN)?,
            busid: r.string("busid", BUSID_FIELD_LEN)?,
            busnum: r.u32("busnum")?,
            devnum: r.u32("devnum")?,
            speed: Speed::from_u32(r.u32("speed")?),
            vendor_id: r.u16("idVendor")?,
            product_id: r.u16("idProduct")?,
            bcd_device: r.u16("bcdDevice")?,
            device_class: r.u8("bDeviceClass")?,
            device_subclass: r.u8("bDeviceSubClass")?,
            device_protocol: r.u8("bDeviceProtocol")?,
            configuration_value: r.u8("bConfigurationValue")?,
            num_configurations: r.u8("bNumConfigurations")?,
            num_interfaces: r.u8("bNumInterfaces")?,
        })
    }
}

/// One `usbip_usb_interface` record (4 bytes: class, subclass, protocol, padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterfaceRecord {
    /// bInterfaceClass.
    pub class: u8,
    /// bInterfaceSubClass.
    pub subclass: u8,
    /// bInterfaceProtocol.
    pub protocol: u8,
}

impl InterfaceRecord {
    /// The 4-byte encoding (padding zero).
    pub fn encode(&self) -> [u8; INTERFACE_RECORD_LEN] {
        [self.class, self.subclass, self.protocol, 0]
    }

    /// Decode exactly 4 bytes; the padding byte is ignored.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("usbip_usb_interface", buf);
        let rec = Self::read(&mut r)?;
        r.finish()?;
        Ok(rec)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let rec = InterfaceRecord {
            class: r.u8("bInterfaceClass")?,
            subclass: r.u8("bInterfaceSubClass")?,
            protocol: r.u8("bInterfaceProtocol")?,
        };
        r.skip("padding", 1)?;
        Ok(rec)
    }
}

/// One device as listed by `OP_REP_DEVLIST`: its record plus one record per interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportedDevice {
    /// The device record. `num_interfaces` must equal `interfaces.len()` on encode.
    pub device: DeviceRecord,
    /// Interface class triples of the current configuration (alternate setting 0).
    pub interfaces: Vec<InterfaceRecord>,
}

/// `OP_REQ_DEVLIST`: the 8-byte header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpReqDevlist;

impl OpReqDevlist {
    /// Encode the 8 bytes.
    pub fn encode(&self) -> [u8; OP_HEADER_LEN] {
        OpHeader::new(OP_REQ_DEVLIST, 0).encode()
    }

    /// Decode exactly 8 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("OP_REQ_DEVLIST", buf);
        OpHeader::decode_expect(&mut r, OP_REQ_DEVLIST)?;
        r.finish()?;
        Ok(OpReqDevlist)
    }
}

/// `OP_REP_DEVLIST`: header, device count, then each device record followed by its interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpRepDevlist {
    /// The exported devices.
    pub devices: Vec<ExportedDevice>,
}

impl OpRepDevlist {
    /// Encode the whole reply.
    ///
    /// Fails if a string does not fit or a device's `num_interfaces` disagrees with its interface
    /// list (the Linux tool reads exactly `bNumInterfaces` interface records).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(
            12 + self.devices.len() * (DEVICE_RECORD_LEN + 4 * INTERFACE_RECORD_LEN),
        );
        out.extend_from_slice(&OpHeader::new(OP_REP_DEVLIST, ST_OK).encode());
        out.extend_from_slice(&(self.devices.len() as u32).to_be_bytes());
        for d in &self.devices {
            if usize::from(d.device.num_interfaces) != d.interfaces.len() {
                return Err(WireError::OutOfRange {
                    message: "OP_REP_DEVLIST",
                    field: "bNumInterfaces",
                    offset: out.len() + 0x137,
                    found: d.device.num_interfaces.into(),
                });
            }
            d.device.encode_into(&mut out)?;
            for i in &d.interfaces {
                out.extend_from_slice(&i.encode());
            }
        }
        Ok(out)
    }

    /// Decode a complete reply. A non-zero status is reported as
    /// [`WireError::UnexpectedValue`] on field `status`.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("OP_REP_DEVLIST", buf);
        let h = OpHeader::decode_expect(&mut r, OP_REP_DEVLIST)?;
        if h.status != ST_OK {
            return Err(WireError::UnexpectedValue {
                message: "OP_REP_DEVLIST",
                field: "status",
                offset: 4,
                expected: ST_OK,
                found: h.status,
            });
        }
        let count_offset = r.pos;
        let n = r.u32("ndev")?;
        if n > MAX_DEVLIST_DEVICES {
            return Err(WireError::OutOfRange {
                message: "OP_REP_DEVLIST",
                field: "ndev",
                offset: count_offset,
                found: n,
            });
        }
        let mut devices = Vec::new();
        for _ in 0..n {
            let device = DeviceRecord::read(&mut r)?;
            let mut interfaces = Vec::with_capacity(device.num_interfaces.into());
            for _ in 0..device.num_interfaces {
                interfaces.push(InterfaceRecord::read(&mut r)?);
            }
            devices.push(ExportedDevice { device, interfaces });
        }
        r.finish()?;
        Ok(OpRepDevlist { devices })
    }
}

/// `OP_REQ_IMPORT`: header plus the 32-byte busid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpReqImport {
    /// Bus id of the device to import, at most 31 bytes.
    pub busid: String,
}

impl OpReqImport {
    /// Encode the 40 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(OP_REQ_IMPORT_LEN);
        out.extend_from_slice(&OpHeader::new(OP_REQ_IMPORT, 0).encode());
        put_string(&mut out, "busid", &self.busid, BUSID_FIELD_LEN)?;
        Ok(out)
    }

    /// Decode exactly 40 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("OP_REQ_IMPORT", buf);
        OpHeader::decode_expect(&mut r, OP_REQ_IMPORT)?;
        let busid = r.string("busid", BUSID_FIELD_LEN)?;
        r.finish()?;
        Ok(OpReqImport { busid })
    }

    /// Decode the 32-byte body that follows an already-read header.
    pub fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("OP_REQ_IMPORT busid", body);
        let busid = r.string("busid", BUSID_FIELD_LEN)?;
        r.finish()?;
        Ok(OpReqImport { busid })
    }
}

/// `OP_REP_IMPORT`: header, then the device record if and only if the status is [`ST_OK`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpRepImport {
    /// Import accepted; the connection now carries URB traffic for this device.
    Ok(DeviceRecord),
    /// Import refused with this non-zero `ST_*` status; the reply is the 8-byte header alone.
    Refused {
        /// The status.
        status: u32,
    },
}

impl OpRepImport {
    /// Encode the reply (320 bytes on success, 8 on refusal).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        match self {
            OpRepImport::Ok(dev) => {
                let mut out = Vec::with_capacity(OP_HEADER_LEN + DEVICE_RECORD_LEN);
                out.extend_from_slice(&OpHeader::new(OP_REP_IMPORT, ST_OK).encode());
                dev.encode_into(&mut out)?;
                Ok(out)
            }
            OpRepImport::Refused { status } => {
                Ok(OpHeader::new(OP_REP_IMPORT, *status).encode().to_vec())
            }
        }
    }

    /// Decode a complete reply (its length must match its status).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("OP_REP_IMPORT", buf);
        let h = OpHeader::decode_expect(&mut r, OP_REP_IMPORT)?;
        let rep = if h.status == ST_OK {
            OpRepImport::Ok(DeviceRecord::read(&mut r)?)
        } else {
            OpRepImport::Refused { status: h.status }
        };
        r.finish()?;
        Ok(rep)
    }
}

/// Transfer direction in URB headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Host to device (`USBIP_DIR_OUT`, 0).
    #[default]
    Out,
    /// Device to host (`USBIP_DIR_IN`, 1).
    In,
}

impl Direction {
    /// Wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Direction::Out => 0,
            Direction::In => 1,
        }
    }
}

/// The 20-byte `usbip_header_basic` shared by all URB messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderBasic {
    /// `USBIP_CMD_*` or `USBIP_RET_*`.
    pub command: u32,
    /// Sequence number of the request (replies echo it).
    pub seqnum: u32,
    /// `(busnum << 16) | devnum` from the client; 0 from the server.
    pub devid: u32,
    /// Direction (client only; 0 from the server).
    pub direction: Direction,
    /// Endpoint number without the direction bit (client only; 0 from the server and in UNLINK).
    pub ep: u32,
}

impl HeaderBasic {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.command.to_be_bytes());
        out.extend_from_slice(&self.seqnum.to_be_bytes());
        out.extend_from_slice(&self.devid.to_be_bytes());
        out.extend_from_slice(&self.direction.to_u32().to_be_bytes());
        out.extend_from_slice(&self.ep.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let command = r.u32("command")?;
        let seqnum = r.u32("seqnum")?;
        let devid = r.u32("devid")?;
        let dir_offset = r.pos;
        let direction = match r.u32("direction")? {
            0 => Direction::Out,
            1 => Direction::In,
            found => {
                return Err(WireError::OutOfRange {
                    message: r.message,
                    field: "direction",
                    offset: dir_offset,
                    found,
                })
            }
        };
        let ep_offset = r.pos;
        let ep = r.u32("ep")?;
        if ep > 15 {
            return Err(WireError::OutOfRange {
                message: r.message,
                field: "ep",
                offset: ep_offset,
                found: ep,
            });
        }
        Ok(HeaderBasic {
            command,
            seqnum,
            devid,
            direction,
            ep,
        })
    }

    /// Decode the basic header from the first 20 bytes of a URB message header (at least 20
    /// bytes must be given; the rest is ignored). Useful to dispatch on `command`.
    pub fn peek(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("usbip_header_basic", buf);
        Self::read(&mut r)
    }
}

fn check_command(r: &Reader<'_>, h: &HeaderBasic, expected: u32) -> Result<(), WireError> {
    if h.command != expected {
        return Err(WireError::UnexpectedValue {
            message: r.message,
            field: "command",
            offset: 0,
            expected,
            found: h.command,
        });
    }
    Ok(())
}

fn check_not_iso(message: &'static str, packets: u32) -> Result<(), WireError> {
    if packets != 0 && packets != NOT_ISO {
        return Err(WireError::IsochronousUnsupported { message, packets });
    }
    Ok(())
}

fn check_len(
    message: &'static str,
    field: &'static str,
    offset: usize,
    len: u32,
) -> Result<(), WireError> {
    if len > MAX_TRANSFER_LEN {
        return Err(WireError::OutOfRange {
            message,
            field,
            offset,
            found: len,
        });
    }
    Ok(())
}

/// `USBIP_CMD_SUBMIT`: submit a URB. Isochronous transfers are not supported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdSubmit {
    /// Sequence number, increasing per connection.
    pub seqnum: u32,
    /// `(busnum << 16) | devnum` of the imported device.
    pub devid: u32,
    /// Transfer direction.
    pub direction: Direction,
    /// Endpoint number (0 = control).
    pub ep: u32,
    /// URB transfer flags (Linux `URB_*`).
    pub transfer_flags: u32,
    /// Transfer buffer length: bytes sent (OUT) or the most bytes wanted (IN).
    pub transfer_buffer_length: u32,
    /// Start frame (ISO only; 0 otherwise).
    pub start_frame: u32,
    /// Number of ISO packets; [`NOT_ISO`] (or 0, as Linux' vhci sends) otherwise.
    pub number_of_packets: u32,
    /// Polling interval.
    pub interval: u32,
    /// The 8-byte USB setup packet, in USB (little-endian) order; zero if not a control transfer.
    pub setup: [u8; 8],
    /// OUT data (`transfer_buffer_length` bytes); empty for IN.
    pub data: Vec<u8>,
}

impl CmdSubmit {
    /// Encode header and data. `data.len()` must equal `transfer_buffer_length` for OUT and be
    /// zero for IN; this is the caller's job and not re-checked here.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(URB_HEADER_LEN + self.data.len());
        HeaderBasic {
            command: USBIP_CMD_SUBMIT,
            seqnum: self.seqnum,
            devid: self.devid,
            direction: self.direction,
            ep: self.ep,
        }
        .put(&mut out);
        for v in [
            self.transfer_flags,
            self.transfer_buffer_length,
            self.start_frame,
            self.number_of_packets,
            self.interval,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.setup);
        out.extend_from_slice(&self.data);
        out
    }

    /// Bytes that follow a `CMD_SUBMIT` header: `transfer_buffer_length` for OUT, 0 for IN.
    /// `header` must hold the 48-byte header.
    pub fn payload_len(header: &[u8]) -> Result<usize, WireError> {
        let mut r = Reader::new("USBIP_CMD_SUBMIT", header);
        let h = HeaderBasic::read(&mut r)?;
        check_command(&r, &h, USBIP_CMD_SUBMIT)?;
        r.skip("transfer_flags", 4)?;
        let len = r.u32("transfer_buffer_length")?;
        check_len("USBIP_CMD_SUBMIT", "transfer_buffer_length", 0x18, len)?;
        r.skip("start_frame", 4)?;
        check_not_iso("USBIP_CMD_SUBMIT", r.u32("number_of_packets")?)?;
        Ok(match h.direction {
            Direction::Out => len as usize,
            Direction::In => 0,
        })
    }

    /// Decode a complete message (header plus OUT data).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("USBIP_CMD_SUBMIT", buf);
        let h = HeaderBasic::read(&mut r)?;
        check_command(&r, &h, USBIP_CMD_SUBMIT)?;
        let transfer_flags = r.u32("transfer_flags")?;
        let transfer_buffer_length = r.u32("transfer_buffer_length")?;
        check_len(
            "USBIP_CMD_SUBMIT",
            "transfer_buffer_length",
            0x18,
            transfer_buffer_length,
        )?;
        let start_frame = r.u32("start_frame")?;
        let number_of_packets = r.u32("number_of_packets")?;
        check_not_iso("USBIP_CMD_SUBMIT", number_of_packets)?;
        let interval = r.u32("interval")?;
        let mut setup = [0u8; 8];
        setup.copy_from_slice(r.take("setup", 8)?);
        let data = match h.direction {
            Direction::Out => r
                .take("transfer_buffer", transfer_buffer_length as usize)?
                .to_vec(),
            Direction::In => Vec::new(),
        };
        r.finish()?;
        Ok(CmdSubmit {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            transfer_flags,
            transfer_buffer_length,
            start_frame,
            number_of_packets,
            interval,
            setup,
            data,
        })
    }
}

/// `USBIP_RET_SUBMIT`: the result of a submitted URB.
///
/// The server sends `direction` 0 and `ep` 0, so whether data follows the header depends on the
/// direction of the *request*: decoding needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetSubmit {
    /// Sequence number of the `CMD_SUBMIT` this answers.
    pub seqnum: u32,
    /// 0 from a server.
    pub devid: u32,
    /// 0 from a server.
    pub direction: Direction,
    /// 0 from a server.
    pub ep: u32,
    /// 0 on success, else a negative Linux errno (`-EPIPE` = stall, see `STATUS_*`).
    pub status: i32,
    /// Bytes transferred.
    pub actual_length: u32,
    /// Start frame (ISO only).
    pub start_frame: u32,
    /// [`NOT_ISO`] for non-isochronous transfers.
    pub number_of_packets: u32,
    /// ISO error count.
    pub error_count: u32,
    /// IN data (`actual_length` bytes); empty for OUT.
    pub data: Vec<u8>,
}

impl RetSubmit {
    /// Encode header and data. For IN requests `data.len()` must equal `actual_length`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(URB_HEADER_LEN + self.data.len());
        HeaderBasic {
            command: USBIP_RET_SUBMIT,
            seqnum: self.seqnum,
            devid: self.devid,
            direction: self.direction,
            ep: self.ep,
        }
        .put(&mut out);
        for v in [
            self.status as u32,
            self.actual_length,
            self.start_frame,
            self.number_of_packets,
            self.error_count,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&self.data);
        out
    }

    /// Bytes following a `RET_SUBMIT` header answering a request in `request_direction`:
    /// `actual_length` for IN, 0 for OUT.
    pub fn payload_len(header: &[u8], request_direction: Direction) -> Result<usize, WireError> {
        let mut r = Reader::new("USBIP_RET_SUBMIT", header);
        let h = HeaderBasic::read(&mut r)?;
        check_command(&r, &h, USBIP_RET_SUBMIT)?;
        r.skip("status", 4)?;
        let len = r.u32("actual_length")?;
        check_len("USBIP_RET_SUBMIT", "actual_length", 0x18, len)?;
        r.skip("start_frame", 4)?;
        check_not_iso("USBIP_RET_SUBMIT", r.u32("number_of_packets")?)?;
        Ok(match request_direction {
            Direction::In => len as usize,
            Direction::Out => 0,
        })
    }

    /// Decode a complete message answering a request in `request_direction`.
    pub fn decode(buf: &[u8], request_direction: Direction) -> Result<Self, WireError> {
        let mut r = Reader::new("USBIP_RET_SUBMIT", buf);
        let h = HeaderBasic::read(&mut r)?;
        check_command(&r, &h, USBIP_RET_SUBMIT)?;
        let status = r.u32("status")? as i32;
        let actual_length = r.u32("actual_length")?;
        check_len("USBIP_RET_SUBMIT", "actual_length", 0x18, actual_length)?;
        let start_frame = r.u32("start_frame")?;
        let number_of_packets = r.u32("number_of_packets")?;
        check_not_iso("USBIP_RET_SUBMIT", number_of_packets)?;
        let error_count = r.u32("error_count")?;
        r.skip("padding", 8)?;
        let data = match request_direction {
            Direction::In => r.take("transfer_buffer", actual_length as usize)?.to_vec(),
            Direction::Out => Vec::new(),
        };
        r.finish()?;
        Ok(RetSubmit {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            status,
            actual_length,
            start_frame,
            number_of_packets,
            error_count,
            data,
        })
    }
}

/// `USBIP_CMD_UNLINK`: cancel the URB submitted with `unlink_seqnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmdUnlink {
    /// Sequence number of this command (a fresh one, not the target's).
    pub seqnum: u32,
    /// `(busnum << 16) | devnum`.
    pub devid: u32,
    /// Direction (Linux' vhci copies the target URB's; informational).
    pub direction: Direction,
    /// Endpoint; 0 per the spec.
    pub ep: u32,
    /// Sequence number of the `CMD_SUBMIT` to cancel.
    pub unlink_seqnum: u32,
}

impl CmdUnlink {
    /// Encode the 48 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(URB_HEADER_LEN);
        HeaderBasic {
            command: USBIP_CMD_UNLINK,
            seqnum: self.seqnum,
            devid: self.devid,
            direction: self.direction,
            ep: self.ep,
        }
        .put(&mut out);
        out.extend_from_slice(&self.unlink_seqnum.to_be_bytes());
        out.extend_from_slice(&[0u8; 24]);
        out
    }

    /// Decode exactly 48 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("USBIP_CMD_UNLINK", buf);
        let h = HeaderBasic::read(&mut r)?;
        check_command(&r, &h, USBIP_CMD_UNLINK)?;
        let unlink_seqnum = r.u32("unlink_seqnum")?;
        r.skip("padding", 24)?;
        r.finish()?;
        Ok(CmdUnlink {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            unlink_seqnum,
        })
    }
}

/// `USBIP_RET_UNLINK`: the answer to `CMD_UNLINK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetUnlink {
    /// Sequence number of the `CMD_UNLINK` this answers.
    pub seqnum: u32,
    /// 0 from a server.
    pub devid: u32,
    /// 0 from a server.
    pub direction: Direction,
    /// 0 from a server.
    pub ep: u32,
    /// [`STATUS_UNLINKED`] (`-ECONNRESET`) if the URB was cancelled (no `RET_SUBMIT` follows for
    /// it); 0 if it had already completed.
    pub status: i32,
}

impl RetUnlink {
    /// Encode the 48 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(URB_HEADER_LEN);
        HeaderBasic {
            command: USBIP_RET_UNLINK,
            seqnum: self.seqnum,
            devid: self.devid,
            direction: self.direction,
            ep: self.ep,
        }
        .put(&mut out);
        out.extend_from_slice(&(self.status as u32).to_be_bytes());
        out.extend_from_slice(&[0u8; 24]);
        out
    }

    /// Decode exactly 48 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("USBIP_RET_UNLINK", buf);
        let h = HeaderBasic::read(&mut r)?;
        check_command(&r, &h, USBIP_RET_UNLINK)?;
        let status = r.u32("status")? as i32;
        r.skip("padding", 24)?;
        r.finish()?;
        Ok(RetUnlink {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            status,
        })
    }
}
