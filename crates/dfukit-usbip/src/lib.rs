//! USB/IP (protocol 1.1.1) in userspace Rust: a server that exports simulated USB devices over
//! TCP and a client that imports them, with no kernel USB support.
//!
//! * [`wire`]: encode/decode of every message (`OP_REQ/REP_DEVLIST`, `OP_REQ/REP_IMPORT`,
//!   `USBIP_CMD/RET_SUBMIT`, `USBIP_CMD/RET_UNLINK`), big-endian, strictly length-checked.
//! * [`UsbDevice`]: what a device implements (identity + control transfers on endpoint 0);
//!   [`Descriptors`] answers the standard requests from descriptor blobs.
//! * [`Server`]: accepts list and import connections on background threads; the Linux tool
//!   lists its devices with `usbip --tcp-port PORT list -r HOST`.
//! * [`Client`]: [`Client::list`], [`Client::import`] → [`Imported::control`].
//!
//! Only control transfers on endpoint 0 are implemented; submissions to other endpoints
//! complete with `-EPIPE`.
#![warn(missing_docs)]

pub mod client;
pub mod descriptors;
pub mod device;
pub mod server;
mod stream;
pub mod wire;

pub use client::{Client, ControlError, ImportError, Imported, Unlinked};
pub use descriptors::{DescriptorError, Descriptors};
pub use device::{ControlReply, DeviceInfo, InterfaceClass, SetupPacket, UsbDevice};
pub use server::{Server, ServerError, SharedDevice};
pub use wire::{DeviceRecord, Direction, ExportedDevice, InterfaceRecord, Speed, UsbipWireError};
