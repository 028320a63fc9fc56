//! Standard-request handling from descriptor blobs.
//!
//! A [`Descriptors`] holds a device descriptor, one configuration descriptor (with its
//! interfaces, alternate settings, class and endpoint descriptors) and string descriptors, and
//! answers the standard requests a host sends during enumeration and interface selection. A
//! device calls [`Descriptors::handle`] first and handles the requests it returns `None` for.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::device::{
    ControlReply, DeviceInfo, InterfaceClass, SetupPacket, RECIPIENT_DEVICE, RECIPIENT_ENDPOINT,
    RECIPIENT_INTERFACE, REQUEST_TYPE_STANDARD,
};
use crate::wire::Speed;

/// Standard request GET_STATUS.
pub const GET_STATUS: u8 = 0;
/// Standard request CLEAR_FEATURE.
pub const CLEAR_FEATURE: u8 = 1;
/// Standard request SET_FEATURE.
pub const SET_FEATURE: u8 = 3;
/// Standard request SET_ADDRESS.
pub const SET_ADDRESS: u8 = 5;
/// Standard request GET_DESCRIPTOR.
pub const GET_DESCRIPTOR: u8 = 6;
/// Standard request SET_DESCRIPTOR.
pub const SET_DESCRIPTOR: u8 = 7;
/// Standard request GET_CONFIGURATION.
pub const GET_CONFIGURATION: u8 = 8;
/// Standard request SET_CONFIGURATION.
pub const SET_CONFIGURATION: u8 = 9;
/// Standard request GET_INTERFACE.
pub const GET_INTERFACE: u8 = 10;
/// Standard request SET_INTERFACE.
pub const SET_INTERFACE: u8 = 11;

/// Descriptor type: device.
pub const DT_DEVICE: u8 = 1;
/// Descriptor type: configuration.
pub const DT_CONFIGURATION: u8 = 2;
/// Descriptor type: string.
pub const DT_STRING: u8 = 3;
/// Descriptor type: interface.
pub const DT_INTERFACE: u8 = 4;
/// Descriptor type: endpoint.
pub const DT_ENDPOINT: u8 = 5;

/// Language id of the string descriptors: English (United States).
pub const LANGID_EN_US: u16 = 0x0409;

/// Invalid descriptor input to [`Descriptors::new`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DescriptorError {
    /// The device descriptor is not an 18-byte descriptor of type 1.
    #[error("device descriptor must be 18 bytes of type 1 (got {len} bytes, bLength {b_length}, type {descriptor_type})")]
    BadDeviceDescriptor {
        /// Length of the blob given.
        len: usize,
        /// Its bLength byte (0 if absent).
        b_length: u8,
        /// Its bDescriptorType byte (0 if absent).
        descriptor_type: u8,
    },
    /// The configuration blob does not start with a 9-byte configuration descriptor, or its
    /// `wTotalLength` differs from the blob's length.
    #[error("configuration descriptor is invalid: {len} bytes, wTotalLength {total_length}")]
    BadConfigurationDescriptor {
        /// Length of the blob given.
        len: usize,
        /// Its wTotalLength (0 if absent).
        total_length: u16,
    },
    /// A descriptor inside the configuration blob has bLength 0 or runs past its end.
    #[error("descriptor at offset {offset} of the configuration blob has bLength {b_length} and does not fit")]
    BadDescriptorLength {
        /// Offset in the blob.
        offset: usize,
        /// Its bLength.
        b_length: u8,
    },
    /// `bNumInterfaces` disagrees with the interface numbers found.
    #[error("configuration declares {declared} interfaces but contains {found}")]
    InterfaceCount {
        /// bNumInterfaces.
        declared: u8,
        /// Distinct interface numbers found.
        found: usize,
    },
    /// A string is too long for a descriptor (at most 126 UTF-16 code units).
    #[error("string {index} is {units} UTF-16 code units long; at most 126 fit")]
    StringTooLong {
        /// String index (1-based).
        index: usize,
        /// Its length in UTF-16 code units.
        units: usize,
    },
    /// More than 255 strings were given.
    #[error("{count} strings given; at most 255 fit")]
    TooManyStrings {
        /// Number of strings.
        count: usize,
    },
}

/// Fields of an 18-byte USB device descriptor, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDescriptor {
    /// bcdUSB, e.g. 0x0200.
    pub usb_version: u16,
    /// bDeviceClass (0 = per interface).
    pub class: u8,
    /// bDeviceSubClass.
    pub subclass: u8,
    /// bDeviceProtocol.
    pub protocol: u8,
    /// bMaxPacketSize0 (8, 16, 32 or 64).
    pub max_packet_size0: u8,
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// iManufacturer (0 = none).
    pub manufacturer: u8,
    /// iProduct (0 = none).
    pub product: u8,
    /// iSerialNumber (0 = none).
    pub serial_number: u8,
    /// bNumConfigurations.
    pub num_configurations: u8,
}

impl DeviceDescriptor {
    /// The 18 bytes.
    pub fn to_bytes(&self) -> [u8; 18] {
        let u = self.usb_version.to_le_bytes();
        let v = self.vendor_id.to_le_bytes();
        let p = self.product_id.to_le_bytes();
        let d = self.bcd_device.to_le_bytes();
        [
            18,
            DT_DEVICE,
            u[0],
            u[1],
            self.class,
            self.subclass,
            self.protocol,
            self.max_packet_size0,
            v[0],
            v[1],
            p[0],
            p[1],
            d[0],
            d[1],
            self.manufacturer,
            self.product,
            self.serial_number,
            self.num_configurations,
        ]
    }
}

/// Interface number → (alternate setting → class triple).
type InterfaceMap = BTreeMap<u8, BTreeMap<u8, InterfaceClass>>;

/// Answers the standard control requests of a single-configuration device from its descriptors
/// and keeps the state they set (configuration value, alternate setting per interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptors {
    device: [u8; 18],
    config: Vec<u8>,
    strings: Vec<Vec<u8>>,
    interfaces: InterfaceMap,
    configuration: u8,
    alt_settings: BTreeMap<u8, u8>,
}

impl Descriptors {
    /// Build from the device descriptor (18 bytes), the full configuration descriptor blob
    /// (`wTotalLength` bytes: configuration, interface/alt-setting, class and endpoint
    /// descriptors) and the strings for indices 1, 2, … (served as UTF-16LE, langid 0x0409;
    /// index 0 is the language table).
    ///
    /// The device starts configured with the blob's `bConfigurationValue` (a USB/IP export is
    /// always configured) and every interface at alternate setting 0.
    pub fn new(
        device: &[u8],
        configuration: &[u8],
        strings: &[&str],
    ) -> Result<Self, DescriptorError> {
        if device.len() != 18 || device[0] != 18 || device[1] != DT_DEVICE {
            return Err(DescriptorError::BadDeviceDescriptor {
                len: device.len(),
                b_length: device.first().copied().unwrap_or(0),
                descriptor_type: device.get(1).copied().unwrap_or(0),
            });
        }
        let total_length = if configuration.len() >= 4 {
            u16::from_le_bytes([configuration[2], configuration[3]])
        } else {
            0
        };
        if configuration.len() < 9
            || configuration[0] < 9
            || configuration[1] != DT_CONFIGURATION
            || usize::from(total_length) != configuration.len()
        {
            return Err(DescriptorError::BadConfigurationDescriptor {
                len: configuration.len(),
                total_length,
            });
        }
        let mut interfaces: InterfaceMap = BTreeMap::new();
        let mut offset = 0;
        while offset < configuration.len() {
            let b_length = configuration[offset];
            if b_length < 2 || offset + usize::from(b_length) > configuration.len() {
                return Err(DescriptorError::BadDescriptorLength { offset, b_length });
            }
            if configuration[offset + 1] == DT_INTERFACE {
                if b_length < 9 {
                    return Err(DescriptorError::BadDescriptorLength { offset, b_length });
                }
                let d = &configuration[offset..offset + 9];
                interfaces.entry(d[2]).or_default().insert(
                    d[3],
                    InterfaceClass {
                        class: d[5],
                        subclass: d[6],
                        protocol: d[7],
                    },
                );
            }
            offset += usize::from(b_length);
        }
        let declared = configuration[4];
        if usize::from(declared) != interfaces.len() {
            return Err(DescriptorError::InterfaceCount {
                declared,
                found: interfaces.len(),
            });
        }
        if strings.len() > 255 {
            return Err(DescriptorError::TooManyStrings {
                count: strings.len(),
            });
        }
        let mut encoded = Vec::with_capacity(strings.len());
        for (i, s) in strings.iter().enumerate() {
            let units: Vec<u16> = s.encode_utf16().collect();
            if units.len() > 126 {
                return Err(DescriptorError::StringTooLong {
                    index: i + 1,
                    units: units.len(),
                });
            }
            let mut d = vec![(2 + 2 * units.len()) as u8, DT_STRING];
            for u in units {
                d.extend_from_slice(&u.to_le_bytes());
            }
            encoded.push(d);
        }
        let mut dev = [0u8; 18];
        dev.copy_from_slice(device);
        let alt_settings = interfaces.keys().map(|&i| (i, 0)).collect();
        Ok(Descriptors {
            device: dev,
            config: configuration.to_vec(),
            strings: encoded,
            interfaces,
            configuration: configuration[5],
            alt_settings,
        })
    }

    /// The 18-byte device descriptor.
    pub fn device_descriptor(&self) -> &[u8] {
        &self.device
    }

    /// The full configuration descriptor blob.
    pub fn configuration_descriptor(&self) -> &[u8] {
        &self.config
    }

    /// The current configuration value (0 = unconfigured).
    pub fn configuration(&self) -> u8 {
        self.configuration
    }

    /// The current alternate setting of `interface`, or `None` if there is no such interface.
    pub fn alt_setting(&self, interface: u8) -> Option<u8> {
        self.alt_settings.get(&interface).copied()
    }

    /// Interface numbers with their alternate settings and class triples.
    pub fn interfaces(&self) -> impl Iterator<Item = (u8, u8, InterfaceClass)> + '_ {
        self.interfaces
            .iter()
            .flat_map(|(&i, alts)| alts.iter().map(move |(&a, &c)| (i, a, c)))
    }

    /// Reset the state to just-imported: configured, every interface at alternate setting 0.
    pub fn reset(&mut self) {
        self.configuration = self.config[5];
        for v in self.alt_settings.values_mut() {
            *v = 0;
        }
    }

    /// The [`DeviceInfo`] these descriptors describe, at `speed`: ids, class triple and
    /// configuration count from the device descriptor, the current configuration value, and the
    /// class triple of every interface at alternate setting 0 (as the Linux `usbip` tool shows).
    pub fn info(&self, speed: Speed) -> DeviceInfo {
        let d = &self.device;
        DeviceInfo {
            vendor_id: u16::from_le_bytes([d[8], d[9]]),
            product_id: u16::from_le_bytes([d[10], d[11]]),
            bcd_device: u16::from_le_bytes([d[12], d[13]]),
            class: d[4],
            subclass: d[5],
            protocol: d[6],
            configuration_value: self.configuration,
            num_configurations: d[17],
            interfaces: self
                .interfaces
                .values()
                .map(|alts| {
                    alts.get(&0)
                        .or_else(|| alts.values().next())
                        .copied()
                        .unwrap_or_default()
                })
                .collect(),
            speed,
        }
    }

    /// Answer a standard request this helper owns, or return `None` for the device to handle
    /// (class and vendor requests, GET_DESCRIPTOR addressed to an interface or endpoint such as
    /// a HID report descriptor, SET_DESCRIPTOR).
    ///
    /// Owned, device recipient: GET_DESCRIPTOR of device, configuration (index 0) and string
    /// descriptors (truncated to wLength; other types and indices stall), GET_STATUS,
    /// GET_CONFIGURATION, SET_CONFIGURATION (0 or this configuration's value; resets alternate
    /// settings), SET_ADDRESS, CLEAR/SET_FEATURE (acknowledged). Interface recipient:
    /// GET_STATUS, GET_INTERFACE, SET_INTERFACE (unknown interface or alternate setting
    /// stalls). Endpoint recipient: GET_STATUS (never halted), CLEAR/SET_FEATURE (acknowledged).
    pub fn handle(&mut self, setup: &SetupPacket, _data_out: &[u8]) -> Option<ControlReply> {
        if setup.kind() != REQUEST_TYPE_STANDARD {
            return None;
        }
        let reply = match (setup.recipient(), setup.request, setup.is_in()) {
            (RECIPIENT_DEVICE, GET_DESCRIPTOR, true) => self.get_descriptor(setup),
            (RECIPIENT_DEVICE, GET_STATUS, true) => {
                let self_powered = self.config[7] & 0x40 != 0;
                ControlReply::Data(vec![u8::from(self_powered), 0])
            }
            (RECIPIENT_DEVICE, GET_CONFIGURATION, true) => {
                ControlReply::Data(vec![self.configuration])
            }
            (RECIPIENT_DEVICE, SET_CONFIGURATION, false) => {
                let value = (setup.value & 0xff) as u8;
                if value == 0 || value == self.config[5] {
                    self.configuration = value;
                    for v in self.alt_settings.values_mut() {
                        *v = 0;
                    }
                    ControlReply::ack()
                } else {
                    ControlReply::Stall
                }
            }
            (RECIPIENT_DEVICE, SET_ADDRESS, false)
            | (RECIPIENT_DEVICE | RECIPIENT_ENDPOINT, CLEAR_FEATURE | SET_FEATURE, false) => {
                ControlReply::ack()
            }
            (RECIPIENT_INTERFACE, GET_STATUS, true) | (RECIPIENT_ENDPOINT, GET_STATUS, true) => {
                ControlReply::Data(vec![0, 0])
            }
            (RECIPIENT_INTERFACE, GET_INTERFACE, true) => {
                match self.configured_interface(setup.index) {
                    Some(i) => ControlReply::Data(vec![self.alt_settings[&i]]),
                    None => ControlReply::Stall,
                }
            }
            (RECIPIENT_INTERFACE, SET_INTERFACE, false) => {
                let alt = setup.value;
                match self.configured_interface(setup.index) {
                    Some(i) if alt <= 0xff && self.interfaces[&i].contains_key(&(alt as u8)) => {
                        self.alt_settings.insert(i, alt as u8);
                        ControlReply::ack()
                    }
                    _ => ControlReply::Stall,
                }
            }
            _ => return None,
        };
        Some(truncate(reply, setup.length))
    }

    fn configured_interface(&self, index: u16) -> Option<u8> {
        if self.configuration == 0 || index > 0xff {
            return None;
        }
        let i = index as u8;
        self.interfaces.contains_key(&i).then_some(i)
    }

    fn get_descriptor(&self, setup: &SetupPacket) -> ControlReply {
        let kind = (setup.value >> 8) as u8;
        let index = (setup.value & 0xff) as usize;
        match kind {
            DT_DEVICE => ControlReply::Data(self.device.to_vec()),
            DT_CONFIGURATION if index == 0 => ControlReply::Data(self.config.clone()),
            DT_STRING if index == 0 => {
                let l = LANGID_EN_US.to_le_bytes();
                ControlReply::Data(vec![4, DT_STRING, l[0], l[1]])
            }
            DT_STRING => match self.strings.get(index - 1) {
                Some(s) => ControlReply::Data(s.clone()),
                None => ControlReply::Stall,
            },
            _ => ControlReply::Stall,
        }
    }
}

fn truncate(reply: ControlReply, length: u16) -> ControlReply {
    match reply {
        ControlReply::Data(mut d) => {
            d.truncate(length.into());
            ControlReply::Data(d)
        }
        s => s,
    }
}
