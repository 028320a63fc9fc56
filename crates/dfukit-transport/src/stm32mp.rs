//! Finding an STM32MP board again after each re-enumeration.

use crate::usb::{find_dfu_devices, DeviceFilter, UsbTransfer};
use dfukit_core::{Clock, WallTime};
use dfukit_stm32mp::connect::{ConnectError, Connector};
use dfukit_stm32mp::phase::{USB_PID, USB_VID};
use std::time::Duration;

/// Finds the board (0483:df11) by polling the USB/IP server's device list
/// or the local bus, each time the programming flow asks for it.
pub struct UsbConnector {
    filter: DeviceFilter,
}

/// The board is found on a real bus, in real time.
impl WallTime for UsbConnector {}

impl UsbConnector {
    /// A connector for the STM32MP DFU device on `usbip` (or local USB
    /// when `None`), with serial number `serial` when several are present.
    pub fn new(usbip: Option<String>, serial: Option<String>) -> Self {
        UsbConnector {
            filter: DeviceFilter {
                usbip,
                vid_pid: Some(format!("{USB_VID:04x}:{USB_PID:04x}")),
                serial,
                path: None,
            },
        }
    }
}

impl Connector for UsbConnector {
    type Transport = UsbTransfer;

    fn connect(&mut self, timeout: Duration) -> Result<UsbTransfer, ConnectError> {
        // The connector's own clock: the flow measures its bounds with it too.
        let deadline = self.now() + timeout;
        let mut last_error: Option<String>;
        loop {
            // An error can be passing (the server restarting, udev not yet
            // done with a re-enumerated device's permissions): retried
            // until the deadline, then reported.
            match find_dfu_devices(&self.filter) {
                Ok(mut found) if !found.devices.is_empty() => {
                    return Ok(found.devices.remove(0).transfer)
                }
                Ok(_) => last_error = None,
                Err(e) => last_error = Some(e.to_string()),
            }
            if self.now() >= deadline {
                return Err(match last_error {
                    Some(m) => ConnectError::Io(m),
                    None => ConnectError::NotFound { waited: timeout },
                });
            }
            // Enumeration takes hundreds of milliseconds; polling faster
            // only loads the server.
            self.sleep(Duration::from_millis(50));
        }
    }
}
