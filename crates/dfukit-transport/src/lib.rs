//! dfukit's real transports: the adapters between the host drivers' link
//! traits and the operating system.
//!
//! - [`usb`]: DFU devices over USB/IP ([`usb::UsbipTransfer`]) or on this
//!   machine's USB through nusb ([`usb::NusbTransfer`], feature `usb`),
//!   found and probed by [`usb::find_dfu_devices`]; both are
//!   `dfukit_usbdfu::host::ControlTransfer`s.
//! - [`stm32mp`]: a `dfukit_stm32mp::connect::Connector` that finds an
//!   STM32MP board again after each re-enumeration.
//! - [`serial`] (feature `serial`): a serial port for the Secure DFU SLIP
//!   host.
//! - [`ble`] (feature `ble`): the Nordic DFU service through a Bluetooth
//!   adapter (BlueZ, by btleplug), as a Secure DFU link.
//!
//! The protocol logic lives in the family crates; nothing here decides
//! what to send, only how it reaches the device. The simulated boards are
//! reached through the same adapters (USB/IP, a pseudo-terminal), so the
//! code here is exercised by the end-to-end tests.
#![warn(missing_docs)]

#[cfg(feature = "ble")]
pub mod ble;
#[cfg(feature = "serial")]
pub mod serial;
pub mod stm32mp;
pub mod usb;
