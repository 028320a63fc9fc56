//! Operations (`OP_*`): exchanged right after a TCP connection opens, each an 8-byte common
//! header followed by a body.

use super::codec::{put_string, Reader};
use super::{
    DeviceRecord, ExportedDevice, InterfaceRecord, UsbipWireError, BUSID_FIELD_LEN,
    DEVICE_RECORD_LEN, INTERFACE_RECORD_LEN, MAX_DEVLIST_DEVICES, OP_HEADER_LEN, OP_REP_DEVLIST,
    OP_REP_IMPORT, OP_REQ_DEVLIST, OP_REQ_IMPORT, OP_REQ_IMPORT_LEN, ST_OK, USBIP_VERSION,
};

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
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        let mut r = Reader::new("op_common", buf);
        let version = r.u16("version")?;
        let code = r.u16("code")?;
        let status = r.u32("status")?;
        r.finish()?;
        if version != USBIP_VERSION {
            return Err(UsbipWireError::BadVersion {
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

    /// Read a header and check its version and code (the status is the caller's).
    pub(super) fn decode_expect(r: &mut Reader<'_>, code: u16) -> Result<OpHeader, UsbipWireError> {
        let version = r.u16("version")?;
        if version != USBIP_VERSION {
            return Err(UsbipWireError::BadVersion {
                message: r.message,
                found: version,
            });
        }
        let found = r.u16("code")?;
        if found != code {
            return Err(UsbipWireError::UnexpectedValue {
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

/// `OP_REQ_DEVLIST`: the 8-byte header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpReqDevlist;

impl OpReqDevlist {
    /// Encode the 8 bytes.
    pub fn encode(&self) -> [u8; OP_HEADER_LEN] {
        OpHeader::new(OP_REQ_DEVLIST, 0).encode()
    }

    /// Decode exactly 8 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        Reader::whole("OP_REQ_DEVLIST", buf, |r| {
            OpHeader::decode_expect(r, OP_REQ_DEVLIST).map(|_| OpReqDevlist)
        })
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
    pub fn encode(&self) -> Result<Vec<u8>, UsbipWireError> {
        let mut out = Vec::with_capacity(
            12 + self.devices.len() * (DEVICE_RECORD_LEN + 4 * INTERFACE_RECORD_LEN),
        );
        out.extend_from_slice(&OpHeader::new(OP_REP_DEVLIST, ST_OK).encode());
        out.extend_from_slice(&(self.devices.len() as u32).to_be_bytes());
        for d in &self.devices {
            if usize::from(d.device.num_interfaces) != d.interfaces.len() {
                return Err(UsbipWireError::OutOfRange {
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
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        let mut r = Reader::new("OP_REP_DEVLIST", buf);
        let h = OpHeader::decode_expect(&mut r, OP_REP_DEVLIST)?;
        if h.status != ST_OK {
            return Err(UsbipWireError::UnexpectedValue {
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
            return Err(UsbipWireError::OutOfRange {
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
    pub fn encode(&self) -> Result<Vec<u8>, UsbipWireError> {
        let mut out = Vec::with_capacity(OP_REQ_IMPORT_LEN);
        out.extend_from_slice(&OpHeader::new(OP_REQ_IMPORT, 0).encode());
        put_string(&mut out, "busid", &self.busid, BUSID_FIELD_LEN)?;
        Ok(out)
    }

    /// Decode exactly 40 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        Reader::whole("OP_REQ_IMPORT", buf, |r| {
            OpHeader::decode_expect(r, OP_REQ_IMPORT)?;
            Self::read_busid(r)
        })
    }

    /// Decode the 32-byte body that follows an already-read header.
    pub fn decode_body(body: &[u8]) -> Result<Self, UsbipWireError> {
        Reader::whole("OP_REQ_IMPORT busid", body, Self::read_busid)
    }

    fn read_busid(r: &mut Reader<'_>) -> Result<Self, UsbipWireError> {
        let busid = r.string("busid", BUSID_FIELD_LEN)?;
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
    pub fn encode(&self) -> Result<Vec<u8>, UsbipWireError> {
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
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
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
