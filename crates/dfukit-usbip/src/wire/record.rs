//! The `usbip_usb_device` and `usbip_usb_interface` records carried by `OP_REP_DEVLIST` and
//! `OP_REP_IMPORT`.

use super::codec::{put_string, Reader};
use super::{UsbipWireError, BUSID_FIELD_LEN, INTERFACE_RECORD_LEN, PATH_FIELD_LEN};

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
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), UsbipWireError> {
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
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        Reader::whole("usbip_usb_device", buf, Self::read)
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, UsbipWireError> {
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
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        Reader::whole("usbip_usb_interface", buf, Self::read)
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, UsbipWireError> {
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
