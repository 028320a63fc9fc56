//! A libusb-1.0 compatible shared library over USB/IP.
//!
//! Built as `libdfukit_libusb.so` and installed as `libusb-1.0.so.0` in a
//! directory put on `LD_LIBRARY_PATH`, it lets unmodified libusb programs
//! (Debian's dfu-util 0.11 first) reach devices exported by a USB/IP server
//! — dfukit's simulated boards or a remote `usbipd` — with no kernel USB
//! support. The server is `DFUKIT_USBIP=HOST:PORT` (default
//! `127.0.0.1:3240`); `DFUKIT_LIBUSB_DEBUG=1` prints what the library does.
//!
//! - [`ffi`]: libusb 1.0.26 `libusb.h` layouts and constants;
//! - [`desc`]: descriptor parsing into the C structures (`extra` included);
//! - [`model`]: contexts, devices (one import per device), handles;
//! - [`api`]: the exported `libusb_*` functions;
//! - [`backend`], [`usbip`]: the transport, and its USB/IP implementation.
//!
//! Only control transfers are carried (USB/IP in dfukit implements endpoint
//! 0); bulk, interrupt and asynchronous transfers report
//! `LIBUSB_ERROR_NOT_SUPPORTED`.
#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod desc;
pub mod ffi;
pub mod model;
pub mod usbip;
