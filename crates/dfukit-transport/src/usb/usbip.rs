//! DFU devices imported from a USB/IP server (a simulated board, or usbipd
//! on the machine the device is plugged into).

use super::{DeviceFilter, FindError, FoundDevice, UsbTransfer};
use dfukit_core::WallTime;
use dfukit_usbdfu::host::probe::probe;
use dfukit_usbdfu::host::{ControlRequest, ControlTransfer, DataStage, TransferError};
use dfukit_usbip::{Client, ControlError, Imported};
use std::time::Duration;

/// Control transfers to a device imported over USB/IP.
pub struct UsbipTransfer(pub Imported);

fn map_err(e: ControlError) -> TransferError {
    match e {
        ControlError::Stall => TransferError::Stall,
        ControlError::Timeout => TransferError::Timeout,
        ControlError::Disconnected => TransferError::Disconnected,
        other => TransferError::Io(other.to_string()),
    }
}

impl UsbipTransfer {
    /// A USB bus reset of the device's port.
    pub fn reset(&mut self) -> Result<(), TransferError> {
        self.0.port_reset(Duration::from_secs(5)).map_err(map_err)
    }
}

/// A USB/IP device runs in real time.
impl WallTime for UsbipTransfer {}

impl ControlTransfer for UsbipTransfer {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        match req.data {
            DataStage::In(buf) => {
                let data = self
                    .0
                    .control(req.setup, &[], req.timeout)
                    .map_err(map_err)?;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(n)
            }
            DataStage::Out(data) => {
                self.0
                    .control(req.setup, data, req.timeout)
                    .map_err(map_err)?;
                Ok(data.len())
            }
        }
    }
}

/// `HOST[:PORT]` with the USB/IP port (3240, as the usbip tools assume)
/// filled in.
pub fn with_default_port(addr: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        // "[::1]:3240" or "host:3240"; a bare IPv6 address has colons but no port.
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        addr.to_string()
    } else {
        format!("{addr}:3240")
    }
}

/// The exported devices of the server at `addr` that match `filter`.
pub(super) fn find(addr: &str, filter: &DeviceFilter) -> Result<Vec<FoundDevice>, FindError> {
    let addr = with_default_port(addr);
    let devices = Client::list(addr.as_str()).map_err(|e| FindError::NoServer {
        addr: addr.clone(),
        reason: e.to_string(),
    })?;
    let mut found = Vec::new();
    for d in devices {
        if filter.path.as_deref().is_some_and(|p| p != d.device.busid) {
            continue;
        }
        let Ok(imported) = Client::import(addr.as_str(), &d.device.busid) else {
            continue;
        };
        let mut transfer = UsbipTransfer(imported);
        let Ok(dfu) = probe(&mut transfer) else {
            continue;
        };
        if !filter.wants(&dfu) {
            continue;
        }
        found.push(FoundDevice {
            busid: d.device.busid.clone(),
            devnum: d.device.devnum,
            dfu,
            transfer: UsbTransfer::Usbip(transfer),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::with_default_port;

    #[test]
    fn usbip_address_gets_the_default_port() {
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:3240");
        assert_eq!(with_default_port("127.0.0.1:4000"), "127.0.0.1:4000");
        assert_eq!(with_default_port("localhost"), "localhost:3240");
        assert_eq!(with_default_port("[::1]:5000"), "[::1]:5000");
    }
}
