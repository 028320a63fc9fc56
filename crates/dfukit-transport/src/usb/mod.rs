//! DFU devices over USB/IP or on this machine's USB, found, probed and
//! opened as `ControlTransfer`s for the DFU host.

#[cfg(feature = "usb")]
mod local;
mod usbip;

#[cfg(feature = "usb")]
pub use local::NusbTransfer;
pub use usbip::{with_default_port, UsbipTransfer, SEARCH_DEADLINE};

use dfukit_core::WallTime;
use dfukit_usbdfu::host::probe::DfuInterface;
use dfukit_usbdfu::host::{ControlRequest, ControlTransfer, TransferError};

/// Which devices are wanted, as dfu-util's -d, -S and -p select them.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// USB/IP server `HOST[:PORT]`; `None` for this machine's USB.
    pub usbip: Option<String>,
    /// `VID:PID` in hex.
    pub vid_pid: Option<String>,
    /// The serial-number string.
    pub serial: Option<String>,
    /// The bus path: a USB/IP busid (`1-1`), or `BUS-PORT.PORT` locally.
    pub path: Option<String>,
}

impl DeviceFilter {
    /// Where the devices are looked for, in words ("local USB" or the server).
    pub fn place(&self) -> &str {
        self.usbip.as_deref().unwrap_or("local USB")
    }

    /// Whether a probed device passes the -d and -S filters.
    fn wants(&self, dfu: &DfuInterface) -> bool {
        self.wants_ids(dfu.vendor_id, dfu.product_id)
            && self.serial.as_deref().is_none_or(|s| s == dfu.serial)
    }

    /// Whether `vid:pid` passes the -d filter.
    fn wants_ids(&self, vid: u16, pid: u16) -> bool {
        self.vid_pid
            .as_ref()
            .is_none_or(|want| format!("{vid:04x}:{pid:04x}") == want.to_lowercase())
    }
}

/// A device that matched, opened and probed.
pub struct FoundDevice {
    /// Its bus path (USB/IP busid, or the local port chain).
    pub busid: String,
    /// Its device number on the bus.
    pub devnum: u32,
    /// The DFU interface the probe found.
    pub dfu: DfuInterface,
    /// Control transfers to it.
    pub transfer: UsbTransfer,
}

/// The outcome of a device search: the devices that matched, and those that matched the
/// filter's busid and ids but could not be used.
#[derive(Default)]
pub struct Found {
    /// Matched, opened and probed.
    pub devices: Vec<FoundDevice>,
    /// Matched the busid/ids but could not be imported or probed, with why.
    pub skipped: Vec<Skipped>,
}

/// A device passed over by a search, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("busid {busid} {reason}")]
pub struct Skipped {
    /// Its USB/IP busid.
    pub busid: String,
    /// Why it could not be used.
    pub reason: SkipReason,
}

/// Why a device that matched could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// The server answered `OP_REQ_IMPORT` with `ST_DEV_BUSY`: another client (the kernel's
    /// vhci after `usbip attach`, or another dfukit) has it imported.
    #[error("is already imported by another client (ST_DEV_BUSY): detach it (`usbip detach -p N` on the machine that attached it) or stop the other dfukit")]
    Busy,
    /// The import failed otherwise (refused with another status, I/O, malformed reply).
    #[error("could not be imported: {0}")]
    Import(String),
    /// Imported, but reading its descriptors failed.
    #[error("was imported but could not be probed: {0}")]
    Probe(String),
}

/// Why the devices could not be looked for.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The USB/IP server did not answer the device list.
    #[error("cannot reach the USB/IP server at {addr}: {reason}")]
    NoServer {
        /// The server address, port included.
        addr: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// This machine's USB devices could not be listed.
    #[error("cannot list USB devices: {0}")]
    CannotList(String),
    /// The search did not finish within its deadline.
    #[error("the USB/IP server at {addr} did not finish {operation} within the search deadline of {limit:?}")]
    Deadline {
        /// The server address, port included.
        addr: String,
        /// What was under way, e.g. "listing the exported devices (OP_REQ_DEVLIST)".
        operation: String,
        /// The deadline of the whole search.
        limit: std::time::Duration,
    },
    /// No device could be used, and these matched but could not be imported or probed.
    #[error("no DFU device could be used on {addr}: {}", .skipped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unusable {
        /// The server address, port included.
        addr: String,
        /// The devices that matched and why each could not be used (never empty).
        skipped: Vec<Skipped>,
    },
    /// Nothing matched that could be opened, and these devices could not be.
    #[error("no DFU device could be used; these could not be opened: {}", .0.join("; "))]
    Refused(Vec<String>),
}

/// The DFU devices that match `filter`, over USB/IP or on local USB. When none can be used
/// but some matched and were skipped (busy, failed import or probe), the error is
/// [`FindError::Unusable`]; skipped devices beside usable ones are in [`Found::skipped`].
pub fn find_dfu_devices(filter: &DeviceFilter) -> Result<Found, FindError> {
    let found = match &filter.usbip {
        Some(addr) => usbip::find(addr, filter)?,
        None => Found {
            devices: find_local(filter)?,
            skipped: Vec::new(),
        },
    };
    if found.devices.is_empty() && !found.skipped.is_empty() {
        return Err(FindError::Unusable {
            addr: with_default_port(filter.place()),
            skipped: found.skipped,
        });
    }
    Ok(found)
}

#[cfg(feature = "usb")]
fn find_local(filter: &DeviceFilter) -> Result<Vec<FoundDevice>, FindError> {
    local::find(filter)
}

#[cfg(not(feature = "usb"))]
fn find_local(_: &DeviceFilter) -> Result<Vec<FoundDevice>, FindError> {
    Err(FindError::CannotList(
        "this dfukit was built without local USB support (feature `usb`)".into(),
    ))
}

/// A device reached over USB/IP or on local USB.
pub enum UsbTransfer {
    /// Over USB/IP.
    Usbip(UsbipTransfer),
    /// On this machine's USB.
    #[cfg(feature = "usb")]
    Local(NusbTransfer),
}

impl UsbTransfer {
    /// A USB bus reset of the device's port.
    pub fn reset(&mut self) -> Result<(), TransferError> {
        match self {
            UsbTransfer::Usbip(u) => u.reset(),
            #[cfg(feature = "usb")]
            UsbTransfer::Local(l) => l.reset(),
        }
    }
}

/// USB runs in real time, over USB/IP or locally.
impl WallTime for UsbTransfer {}

impl ControlTransfer for UsbTransfer {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        match self {
            UsbTransfer::Usbip(u) => u.control(req),
            #[cfg(feature = "usb")]
            UsbTransfer::Local(l) => l.control(req),
        }
    }
}
