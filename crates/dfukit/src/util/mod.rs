//! What several commands share: diagnostics, progress output, and the
//! command-line side of inputs and devices that more than one command
//! family reads (key files, packages, USB/IP exports, the libusb shim).

pub mod diag;
pub mod keys;
pub mod nordic;
pub mod num;
pub mod output;
pub mod progress;
pub mod serve;
pub mod shim;
pub mod stm32mp;
pub mod usb;
