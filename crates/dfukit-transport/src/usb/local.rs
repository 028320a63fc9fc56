//! DFU devices on this machine's USB, through nusb (usbfs on Linux; no
//! libusb).

use super::{DeviceFilter, FindError, FoundDevice, UsbTransfer};
use dfukit_core::WallTime;
use dfukit_usbdfu::host::probe::probe;
use dfukit_usbdfu::host::{ControlRequest, ControlTransfer, DataStage, TransferError};
use dfukit_usbdfu::wire::SetupPacket;
use nusb::MaybeFuture;
use std::time::Duration;

/// Control transfers to a device on this machine's USB.
pub struct NusbTransfer {
    device: nusb::Device,
    interface: Option<nusb::Interface>,
}

fn nusb_err(e: nusb::transfer::TransferError) -> TransferError {
    use nusb::transfer::TransferError as E;
    match e {
        E::Stall => TransferError::Stall,
        E::Cancelled => TransferError::Timeout,
        E::Disconnected => TransferError::Disconnected,
        other => TransferError::Io(other.to_string()),
    }
}

fn nusb_kind(s: &SetupPacket) -> (nusb::transfer::ControlType, nusb::transfer::Recipient) {
    use nusb::transfer::{ControlType, Recipient};
    let kind = match s.kind() {
        0x00 => ControlType::Standard,
        0x20 => ControlType::Class,
        _ => ControlType::Vendor,
    };
    let recipient = match s.recipient() {
        0 => Recipient::Device,
        1 => Recipient::Interface,
        2 => Recipient::Endpoint,
        _ => Recipient::Other,
    };
    (kind, recipient)
}

impl NusbTransfer {
    /// Claims `interface` (detaching a kernel driver if one holds it), so
    /// that class requests and alternate-setting changes go through it.
    fn claim(&mut self, interface: u8) -> Result<(), TransferError> {
        if self.interface.is_none() {
            let i = self
                .device
                .detach_and_claim_interface(interface)
                .wait()
                .map_err(|e| {
                    TransferError::Io(format!("cannot claim interface {interface}: {e}"))
                })?;
            self.interface = Some(i);
        }
        Ok(())
    }

    /// A USB bus reset of the device's port.
    pub fn reset(&mut self) -> Result<(), TransferError> {
        self.device
            .reset()
            .wait()
            .map_err(|e| TransferError::Io(format!("USB reset: {e}")))
    }
}

/// This machine's USB runs in real time.
impl WallTime for NusbTransfer {}

impl ControlTransfer for NusbTransfer {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        match req.data {
            DataStage::In(buf) => {
                let data = self.read(req.setup, req.timeout)?;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(n)
            }
            DataStage::Out(data) => self.write(req.setup, data, req.timeout),
        }
    }
}

impl NusbTransfer {
    /// The IN data stage of `s`, as the device sent it.
    fn read(&self, s: SetupPacket, t: Duration) -> Result<Vec<u8>, TransferError> {
        let (control_type, recipient) = nusb_kind(&s);
        let req = nusb::transfer::ControlIn {
            control_type,
            recipient,
            request: s.request,
            value: s.value,
            index: s.index,
            length: s.length,
        };
        match &self.interface {
            Some(i) => i.control_in(req, t).wait(),
            None => self.device.control_in(req, t).wait(),
        }
        .map_err(nusb_err)
    }

    /// Sends `s` with the OUT data stage `data`; returns the bytes sent.
    fn write(&mut self, s: SetupPacket, data: &[u8], t: Duration) -> Result<usize, TransferError> {
        if s.kind() == 0 && s.recipient() == 1 && s.request == dfukit_core::usb::SET_INTERFACE {
            // The OS owns SET_INTERFACE: ask it, through the claimed interface.
            self.claim(s.index as u8)?;
            let i = self.interface.as_ref().expect("claimed above");
            i.set_alt_setting(s.value as u8)
                .wait()
                .map_err(|e| TransferError::Io(format!("SET_INTERFACE {}: {e}", s.value)))?;
            return Ok(0);
        }
        let (control_type, recipient) = nusb_kind(&s);
        let req = nusb::transfer::ControlOut {
            control_type,
            recipient,
            request: s.request,
            value: s.value,
            index: s.index,
            data,
        };
        match &self.interface {
            Some(i) => i.control_out(req, t).wait(),
            None => self.device.control_out(req, t).wait(),
        }
        .map_err(nusb_err)?;
        Ok(data.len())
    }
}

/// DFU devices on this machine's USB. A device that cannot be opened (no
/// permission) is reported if nothing else matches.
pub(super) fn find(filter: &DeviceFilter) -> Result<Vec<FoundDevice>, FindError> {
    let list = nusb::list_devices()
        .wait()
        .map_err(|e| FindError::CannotList(e.to_string()))?;
    let mut found = Vec::new();
    let mut refused = Vec::new();
    for info in list {
        let path = format!(
            "{}-{}",
            info.bus_id(),
            info.port_chain()
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(".")
        );
        if filter.path.as_deref().is_some_and(|p| p != path) {
            continue;
        }
        // Filter on the IDs before opening: devices the user may not open
        // (hubs, other people's gadgets) must not turn into an error.
        if !filter.wants_ids(info.vendor_id(), info.product_id()) {
            continue;
        }
        let device = match info.open().wait() {
            Ok(d) => d,
            Err(e) => {
                refused.push(format!(
                    "{path} ({:04x}:{:04x}): {e}",
                    info.vendor_id(),
                    info.product_id()
                ));
                continue;
            }
        };
        let mut transfer = NusbTransfer {
            device,
            interface: None,
        };
        let Ok(dfu) = probe(&mut transfer) else {
            continue;
        };
        if !filter.wants(&dfu) {
            continue;
        }
        if let Err(e) = transfer.claim(dfu.interface) {
            refused.push(format!("{path}: {e}"));
            continue;
        }
        found.push(FoundDevice {
            busid: path,
            devnum: u32::from(info.device_address()),
            dfu,
            transfer: UsbTransfer::Local(transfer),
        });
    }
    if found.is_empty() && !refused.is_empty() {
        return Err(FindError::Refused(refused));
    }
    Ok(found)
}
