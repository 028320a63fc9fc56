//! DFU devices imported from a USB/IP server (a simulated board, or usbipd
//! on the machine the device is plugged into).

use super::{DeviceFilter, FindError, Found, FoundDevice, SkipReason, Skipped, UsbTransfer};
use dfukit_core::WallTime;
use dfukit_usbdfu::host::probe::{probe, ProbeError};
use dfukit_usbdfu::host::{ControlRequest, ControlTransfer, DataStage, TransferError};
use dfukit_usbip::wire::ST_DEV_BUSY;
use dfukit_usbip::{Client, ControlError, ImportError, Imported};
use std::io;
use std::time::{Duration, Instant};

/// The limit for one whole device search over USB/IP: listing, importing and probing every
/// device share it, so a slow or trickling server cannot hold a command longer.
pub const SEARCH_DEADLINE: Duration = Duration::from_secs(5);

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

/// The probe's control transfers, each cut to the time left before the search's deadline.
struct Bounded<'a> {
    transfer: &'a mut UsbipTransfer,
    deadline: Instant,
}

impl WallTime for Bounded<'_> {}

impl ControlTransfer for Bounded<'_> {
    fn control(&mut self, mut req: ControlRequest<'_>) -> Result<usize, TransferError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TransferError::Timeout);
        }
        req.timeout = req.timeout.min(left);
        self.transfer.control(req)
    }
}

/// A `TimedOut` I/O error as the search's deadline error; anything else as `other`.
fn past_deadline(
    e: &io::Error,
    addr: &str,
    operation: impl FnOnce() -> String,
) -> Option<FindError> {
    (e.kind() == io::ErrorKind::TimedOut).then(|| FindError::Deadline {
        addr: addr.to_string(),
        operation: operation(),
        limit: SEARCH_DEADLINE,
    })
}

/// The exported devices of the server at `addr` that match `filter`, found within
/// [`SEARCH_DEADLINE`]; devices that matched the filter's busid and ids but could not be
/// imported or probed are in [`Found::skipped`].
pub(super) fn find(addr: &str, filter: &DeviceFilter) -> Result<Found, FindError> {
    let addr = with_default_port(addr);
    let deadline = Instant::now() + SEARCH_DEADLINE;
    let devices = Client::list_until(addr.as_str(), deadline).map_err(|e| {
        past_deadline(&e, &addr, || {
            "listing the exported devices (OP_REQ_DEVLIST)".into()
        })
        .unwrap_or_else(|| FindError::NoServer {
            addr: addr.clone(),
            reason: e.to_string(),
        })
    })?;
    let mut found = Found::default();
    for d in devices {
        let busid = d.device.busid.clone();
        if filter.path.as_deref().is_some_and(|p| p != busid)
            || !filter.wants_ids(d.device.vendor_id, d.device.product_id)
        {
            continue;
        }
        let imported = match Client::import_until(addr.as_str(), &busid, deadline) {
            Ok(i) => i,
            Err(ImportError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(FindError::Deadline {
                    addr,
                    operation: format!("importing busid {busid} (OP_REQ_IMPORT)"),
                    limit: SEARCH_DEADLINE,
                });
            }
            Err(ImportError::Refused { status, .. }) if status == ST_DEV_BUSY => {
                found.skipped.push(Skipped {
                    busid,
                    reason: SkipReason::Busy,
                });
                continue;
            }
            Err(e) => {
                found.skipped.push(Skipped {
                    busid,
                    reason: SkipReason::Import(e.to_string()),
                });
                continue;
            }
        };
        let mut transfer = UsbipTransfer(imported);
        let probed = probe(&mut Bounded {
            transfer: &mut transfer,
            deadline,
        });
        let dfu = match probed {
            Ok(dfu) => dfu,
            Err(ProbeError::Transfer {
                source: TransferError::Timeout,
                ..
            }) if Instant::now() >= deadline => {
                return Err(FindError::Deadline {
                    addr,
                    operation: format!("probing busid {busid} (descriptors)"),
                    limit: SEARCH_DEADLINE,
                });
            }
            Err(e) => {
                found.skipped.push(Skipped {
                    busid,
                    reason: SkipReason::Probe(e.to_string()),
                });
                continue;
            }
        };
        if !filter.wants(&dfu) {
            continue;
        }
        found.devices.push(FoundDevice {
            busid,
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
