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
//! constants and the `payload_len` helpers to learn how many bytes to read next.
//!
//! One module per concern: [`error`] (what decoding reports), `codec` (the bounds-checked
//! reader and the writers every message uses), [`op`] (the `OP_*` operations),
//! [`record`] (the device and interface records they carry) and [`urb`] (the `USBIP_CMD_*` /
//! `USBIP_RET_*` messages). Everything is re-exported here, at `dfukit_usbip::wire::*`.

mod codec;
pub mod error;
pub mod op;
pub mod record;
pub mod urb;

pub use error::UsbipWireError;
pub use op::{OpHeader, OpRepDevlist, OpRepImport, OpReqDevlist, OpReqImport};
pub use record::{DeviceRecord, ExportedDevice, InterfaceRecord, Speed};
pub use urb::{CmdSubmit, CmdUnlink, Direction, HeaderBasic, RetSubmit, RetUnlink};

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
