//! How hosts reach the simulated boards: the way hardware is reached (a
//! pseudo-terminal), or in process under virtual time with the link's
//! physics modelled (UART line time, BLE connection events, USB frames).

pub mod ble;
pub mod ble_link;
pub mod faults;
pub mod pty;
pub mod serial;
pub mod uart;
pub mod usb;
