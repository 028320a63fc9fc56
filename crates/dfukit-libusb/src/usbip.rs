//! [`Backend`] over USB/IP, with `dfukit_usbip`'s client.

use crate::backend::{Backend, BackendImportError, Exported, ImportLink, SetupPacket, XferError};
use dfukit_usbip::wire::ST_DEV_BUSY;
use dfukit_usbip::{Client, ControlError, Imported};
use std::io;
use std::time::Duration;

/// Environment variable naming the USB/IP server, `HOST:PORT`.
pub const ENV_SERVER: &str = "DFUKIT_USBIP";
/// The server used when [`ENV_SERVER`] is unset: the standard USB/IP port on loopback.
pub const DEFAULT_SERVER: &str = "127.0.0.1:3240";

/// A USB/IP server.
#[derive(Debug, Clone)]
pub struct UsbipBackend {
    addr: String,
}

impl UsbipBackend {
    /// The server at `addr` (`HOST:PORT`; a bare host gets port 3240).
    pub fn new(addr: &str) -> Self {
        let addr = addr.trim();
        let addr = if addr.is_empty() {
            DEFAULT_SERVER.to_owned()
        } else if !addr.contains(':') {
            format!("{addr}:3240")
        } else {
            addr.to_owned()
        };
        UsbipBackend { addr }
    }

    /// The server named by `DFUKIT_USBIP`, or [`DEFAULT_SERVER`].
    pub fn from_env() -> Self {
        Self::new(&std::env::var(ENV_SERVER).unwrap_or_default())
    }

    /// `HOST:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Backend for UsbipBackend {
    fn name(&self) -> String {
        format!("usbip://{}", self.addr)
    }

    fn list(&self) -> io::Result<Vec<Exported>> {
        Ok(Client::list(self.addr.as_str())?
            .into_iter()
            .map(|e| {
                let d = e.device;
                Exported {
                    busid: d.busid,
                    busnum: d.busnum,
                    devnum: d.devnum,
                    speed: d.speed.to_u32(),
                    vendor_id: d.vendor_id,
                    product_id: d.product_id,
                    bcd_device: d.bcd_device,
                    class: (d.device_class, d.device_subclass, d.device_protocol),
                    configuration_value: d.configuration_value,
                    num_configurations: d.num_configurations,
                    interfaces: e
                        .interfaces
                        .iter()
                        .map(|i| (i.class, i.subclass, i.protocol))
                        .collect(),
                }
            })
            .collect())
    }

    fn import(&self, busid: &str) -> Result<Box<dyn ImportLink>, BackendImportError> {
        match Client::import(self.addr.as_str(), busid) {
            Ok(imp) => Ok(Box::new(UsbipLink(imp))),
            Err(dfukit_usbip::ImportError::Refused { status, .. }) if status == ST_DEV_BUSY => {
                Err(BackendImportError::Busy)
            }
            Err(dfukit_usbip::ImportError::Refused { .. }) => Err(BackendImportError::NotFound),
            Err(e) => Err(BackendImportError::Io(e.to_string())),
        }
    }
}

struct UsbipLink(Imported);

impl ImportLink for UsbipLink {
    fn control(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, XferError> {
        self.0
            .control(setup, data_out, timeout)
            .map_err(|e| match e {
                ControlError::Stall => XferError::Stall,
                ControlError::Timeout => XferError::Timeout,
                ControlError::Disconnected => XferError::Disconnected,
                other => XferError::Io(other.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(UsbipBackend::new("").addr(), "127.0.0.1:3240");
        assert_eq!(UsbipBackend::new("10.0.0.2").addr(), "10.0.0.2:3240");
        assert_eq!(UsbipBackend::new(" 127.0.0.1:9 ").addr(), "127.0.0.1:9");
        assert_eq!(UsbipBackend::new("[::1]:3240").addr(), "[::1]:3240");
    }
}
