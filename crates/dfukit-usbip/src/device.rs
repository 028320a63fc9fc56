//! The device model the server exports: setup packets, control replies and the [`UsbDevice`]
//! trait.

use crate::wire::{DeviceRecord, ExportedDevice, InterfaceRecord, Speed};

/// `bmRequestType` direction bit: device to host.
pub const REQUEST_TYPE_IN: u8 = 0x80;
/// `bmRequestType` type field: standard.
pub const REQUEST_TYPE_STANDARD: u8 = 0x00;
/// `bmRequestType` type field: class.
pub const REQUEST_TYPE_CLASS: u8 = 0x20;
/// `bmRequestType` type field: vendor.
pub const REQUEST_TYPE_VENDOR: u8 = 0x40;
/// `bmRequestType` recipient: device.
pub const RECIPIENT_DEVICE: u8 = 0x00;
/// `bmRequestType` recipient: interface.
pub const RECIPIENT_INTERFACE: u8 = 0x01;
/// `bmRequestType` recipient: endpoint.
pub const RECIPIENT_ENDPOINT: u8 = 0x02;

pub use dfukit_core::usb::SetupPacket;

/// A device's answer to a control transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// Success. For IN transfers, the data (the server truncates it to wLength); for OUT
    /// transfers, empty = the data was accepted.
    Data(Vec<u8>),
    /// The device stalls the request (`-EPIPE` on the wire, `LIBUSB_ERROR_PIPE` for libusb).
    Stall,
    /// The device dropped off the bus during the request: it fails with
    /// `-ENODEV` (`LIBUSB_ERROR_NO_DEVICE`). The device should also report
    /// itself detached, so that the server ends the import.
    Disconnected,
    /// The device never completes the request: it NAKs the data or status
    /// stage forever (firmware that hung with the USB core still clocked).
    /// The URB stays pending until the host unlinks it, which libusb does
    /// when its timeout expires (`LIBUSB_ERROR_TIMEOUT`).
    NoResponse,
}

impl ControlReply {
    /// Acknowledge an OUT (or zero-length) request.
    pub fn ack() -> Self {
        ControlReply::Data(Vec::new())
    }
}

/// Class triple of one interface (alternate setting 0) in a [`DeviceInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InterfaceClass {
    /// bInterfaceClass.
    pub class: u8,
    /// bInterfaceSubClass.
    pub subclass: u8,
    /// bInterfaceProtocol.
    pub protocol: u8,
}

/// The identity the server advertises for a device in `OP_REP_DEVLIST` and `OP_REP_IMPORT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// bDeviceClass.
    pub class: u8,
    /// bDeviceSubClass.
    pub subclass: u8,
    /// bDeviceProtocol.
    pub protocol: u8,
    /// bConfigurationValue of the current configuration (1 for a configured single-config device).
    pub configuration_value: u8,
    /// bNumConfigurations.
    pub num_configurations: u8,
    /// One entry per interface of the current configuration, in interface-number order.
    pub interfaces: Vec<InterfaceClass>,
    /// Bus speed.
    pub speed: Speed,
}

impl DeviceInfo {
    /// The wire records for this device, under the given bus location.
    pub fn to_exported(&self, path: &str, busid: &str, busnum: u32, devnum: u32) -> ExportedDevice {
        ExportedDevice {
            device: DeviceRecord {
                path: path.to_owned(),
                busid: busid.to_owned(),
                busnum,
                devnum,
                speed: self.speed,
                vendor_id: self.vendor_id,
                product_id: self.product_id,
                bcd_device: self.bcd_device,
                device_class: self.class,
                device_subclass: self.subclass,
                device_protocol: self.protocol,
                configuration_value: self.configuration_value,
                num_configurations: self.num_configurations,
                num_interfaces: self.interfaces.len().min(255) as u8,
            },
            interfaces: self
                .interfaces
                .iter()
                .take(255)
                .map(|i| InterfaceRecord {
                    class: i.class,
                    subclass: i.subclass,
                    protocol: i.protocol,
                })
                .collect(),
        }
    }
}

/// A USB device the [`Server`](crate::Server) can export.
///
/// The server calls these from its connection threads with the device locked, so an
/// implementation needs no locking of its own.
pub trait UsbDevice: Send {
    /// Identity for `OP_REP_DEVLIST`/`OP_REP_IMPORT` (ids, bcdDevice, class triple,
    /// configuration value, interface class triples, speed). Called on every list and import,
    /// so it may change as the device re-enumerates (e.g. run-time → DFU mode).
    fn info(&self) -> DeviceInfo;

    /// Every control transfer on endpoint 0, standard ones included (a
    /// [`Descriptors`](crate::Descriptors) answers GET_DESCRIPTOR and friends). For IN transfers
    /// `data_out` is empty and `setup.length` is the most bytes the host wants; for OUT transfers
    /// `data_out` holds the `setup.length` bytes of the data stage.
    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply;

    /// Whether the device is still attached. Once it returns false the server closes the import
    /// connection (after sending the reply to the request in progress) and stops listing the
    /// device — a device that re-enumerates or resets on DFU `:leave` returns false.
    fn attached(&self) -> bool {
        true
    }

    /// A USB bus reset of the device's port (what `libusb_reset_device` and
    /// dfu-util's `-R` ask for). The server takes the hub-class
    /// SET_FEATURE(PORT_RESET) request, which `usbip-host` handles the same
    /// way, and calls this instead of passing it to [`UsbDevice::control`].
    fn reset(&mut self) {}
}

impl<T: UsbDevice + ?Sized> UsbDevice for Box<T> {
    fn info(&self) -> DeviceInfo {
        (**self).info()
    }

    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply {
        (**self).control(setup, data_out)
    }

    fn attached(&self) -> bool {
        (**self).attached()
    }

    fn reset(&mut self) {
        (**self).reset()
    }
}
