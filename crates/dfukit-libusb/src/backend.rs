//! What the shim needs from a USB transport: list the exported devices,
//! import one, and run control transfers on it. [`crate::usbip`] implements
//! it over USB/IP; unit tests implement it in memory.

use std::fmt;
use std::io;
use std::time::Duration;

pub use dfukit_usbip::SetupPacket;

/// USB speed as USB/IP reports it (Linux `enum usb_device_speed` values).
pub type LinuxSpeed = u32;

/// One device the server exports (its `OP_REP_DEVLIST` record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exported {
    /// Bus id, e.g. `1-1` or `1-1.2`.
    pub busid: String,
    /// Bus number.
    pub busnum: u32,
    /// Device number on the bus.
    pub devnum: u32,
    /// Linux `usb_device_speed`.
    pub speed: LinuxSpeed,
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// bDeviceClass, bDeviceSubClass, bDeviceProtocol.
    pub class: (u8, u8, u8),
    /// bConfigurationValue of the active configuration.
    pub configuration_value: u8,
    /// bNumConfigurations.
    pub num_configurations: u8,
    /// Class triples of the active configuration's interfaces.
    pub interfaces: Vec<(u8, u8, u8)>,
}

/// A control transfer that did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XferError {
    /// The device stalled (`LIBUSB_ERROR_PIPE`).
    Stall,
    /// No answer in time (`LIBUSB_ERROR_TIMEOUT`).
    Timeout,
    /// The device or the connection is gone (`LIBUSB_ERROR_NO_DEVICE`).
    Disconnected,
    /// Anything else (`LIBUSB_ERROR_IO`).
    Io(String),
}

impl fmt::Display for XferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XferError::Stall => f.write_str("stall"),
            XferError::Timeout => f.write_str("timeout"),
            XferError::Disconnected => f.write_str("device disconnected"),
            XferError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// An import that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendImportError {
    /// The server no longer exports the device.
    NotFound,
    /// Another connection holds it.
    Busy,
    /// Connection or protocol failure.
    Io(String),
}

impl fmt::Display for BackendImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendImportError::NotFound => f.write_str("not exported"),
            BackendImportError::Busy => f.write_str("imported by another connection"),
            BackendImportError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// An imported device: endpoint 0 of one import connection.
pub trait ImportLink: Send {
    /// Runs one control transfer. IN transfers return at most
    /// `setup.length` bytes; OUT transfers send `data_out` (exactly
    /// `setup.length` bytes) and return nothing.
    fn control(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, XferError>;
}

/// A server of devices.
pub trait Backend: Send + Sync {
    /// A name for messages and for the import registry (e.g. `usbip://host:port`).
    fn name(&self) -> String;
    /// The devices exported now.
    fn list(&self) -> io::Result<Vec<Exported>>;
    /// Imports one device by bus id.
    fn import(&self, busid: &str) -> Result<Box<dyn ImportLink>, BackendImportError>;
}
