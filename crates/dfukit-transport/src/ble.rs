//! Secure DFU over Bluetooth LE through the host's adapter (BlueZ on Linux,
//! by btleplug): the Nordic DFU service's Control Point and Packet
//! characteristics as a [`SecureDfuLink`] for dfukit's host core, plus buttonless
//! entry into the bootloader.
//!
//! The same host core runs over the simulated BLE link in tests; this module
//! is only the adapter side, which needs a radio and cannot run on machines
//! without one.

use btleplug::api::{
    BDAddr, Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    ValueNotification, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral};
use dfukit_core::WallTime;
use dfukit_nordic::host::SecureDfuLink;
use dfukit_nordic::proto::SecureDfuRequest;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::io;
use std::str::FromStr;
use std::time::Duration;
use tokio::runtime::Runtime;
use uuid::Uuid;

/// The Secure DFU service (16-bit UUID 0xFE59, assigned to Nordic).
pub const DFU_SERVICE: Uuid = Uuid::from_u128(0x0000_FE59_0000_1000_8000_0080_5F9B_34FB);
/// DFU Control Point: write with response, notify.
pub const CONTROL_POINT: Uuid = Uuid::from_u128(0x8EC9_0001_F315_4F60_9FB8_8388_30DA_EA50);
/// DFU Packet: write without response.
pub const PACKET: Uuid = Uuid::from_u128(0x8EC9_0002_F315_4F60_9FB8_8388_30DA_EA50);
/// Buttonless DFU without bonds: indicate, write 0x01 to enter the bootloader.
pub const BUTTONLESS: Uuid = Uuid::from_u128(0x8EC9_0003_F315_4F60_9FB8_8388_30DA_EA50);

/// Why the BLE side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    /// No Bluetooth adapter, or BlueZ is not running.
    #[error("no Bluetooth adapter: {0}")]
    NoAdapter(String),
    /// The address is not `AA:BB:CC:DD:EE:FF`.
    #[error("{0:?} is not a Bluetooth address (AA:BB:CC:DD:EE:FF)")]
    BadAddress(String),
    /// The device was not seen advertising.
    #[error("{address} was not found within {waited:?} of scanning")]
    NotFound {
        /// The address looked for.
        address: String,
        /// How long the scan ran.
        waited: Duration,
    },
    /// The device has no DFU service or characteristic.
    #[error("{address} has no Secure DFU {what}")]
    NoDfu {
        /// The address.
        address: String,
        /// What is missing.
        what: &'static str,
    },
    /// The application refused to enter the bootloader (buttonless reply
    /// other than success, e.g. bonds required).
    #[error("{address} refused to enter the bootloader: reply {reply:02x?}")]
    Refused {
        /// The address.
        address: String,
        /// The indication received.
        reply: Vec<u8>,
    },
    /// A BLE operation failed.
    #[error("{0}")]
    Ble(#[from] btleplug::Error),
    /// The async runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(io::Error),
}

/// A connected DFU target: Control Point writes and notifications, Packet
/// writes without response.
pub struct BleLink {
    rt: Runtime,
    peripheral: Peripheral,
    control: Characteristic,
    packet: Characteristic,
    notifications: BoxStream<'static, ValueNotification>,
    att_mtu: u16,
}

fn parse_address(s: &str) -> Result<BDAddr, BleError> {
    BDAddr::from_str(s).map_err(|_| BleError::BadAddress(s.to_string()))
}

/// `addr + 1`: the address a buttonless bootloader advertises under when it
/// has no bond (the SDK's `NRF_DFU_BLE_BUTTONLESS_SUPPORTS_BONDS` off).
pub fn next_address(addr: &str) -> Result<String, BleError> {
    let a = parse_address(addr)?;
    let v = u64::from(a) + 1;
    BDAddr::try_from(v & 0xFFFF_FFFF_FFFF)
        .map(|a| a.to_string())
        .map_err(|_| BleError::BadAddress(addr.to_string()))
}

async fn adapter() -> Result<Adapter, BleError> {
    let manager = Manager::new()
        .await
        .map_err(|e| BleError::NoAdapter(e.to_string()))?;
    manager
        .adapters()
        .await
        .map_err(|e| BleError::NoAdapter(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| BleError::NoAdapter("the system lists none".into()))
}

async fn find(adapter: &Adapter, addr: BDAddr, scan: Duration) -> Result<Peripheral, BleError> {
    let mut events = adapter.events().await?;
    adapter.start_scan(ScanFilter::default()).await?;
    let found = tokio::time::timeout(scan, async {
        // A device seen before the scan started is already listed.
        for p in adapter.peripherals().await? {
            if p.address() == addr {
                return Ok::<_, btleplug::Error>(Some(p));
            }
        }
        while let Some(e) = events.next().await {
            if let CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id) = e {
                let p = adapter.peripheral(&id).await?;
                if p.address() == addr {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    })
    .await;
    let _ = adapter.stop_scan().await;
    match found {
        Ok(Ok(Some(p))) => Ok(p),
        Ok(Err(e)) => Err(e.into()),
        _ => Err(BleError::NotFound {
            address: addr.to_string(),
            waited: scan,
        }),
    }
}

fn characteristic(p: &Peripheral, uuid: Uuid) -> Option<Characteristic> {
    p.characteristics().into_iter().find(|c| c.uuid == uuid)
}

impl BleLink {
    /// Scans for `address` (up to `scan`), connects and subscribes to the
    /// Control Point. `att_mtu` is the MTU to size Packet writes by: BlueZ
    /// negotiates it without telling btleplug, and the nRF5 SDK's DFU
    /// bootloader accepts 247.
    pub fn connect(address: &str, scan: Duration, att_mtu: u16) -> Result<BleLink, BleError> {
        let addr = parse_address(address)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BleError::Runtime)?;
        let (peripheral, control, packet, notifications) = rt.block_on(async {
            let adapter = adapter().await?;
            let p = find(&adapter, addr, scan).await?;
            p.connect().await?;
            p.discover_services().await?;
            let missing = |what| BleError::NoDfu {
                address: address.to_string(),
                what,
            };
            if !p.services().iter().any(|s| s.uuid == DFU_SERVICE) {
                return Err(missing("service (0xFE59)"));
            }
            let control =
                characteristic(&p, CONTROL_POINT).ok_or_else(|| missing("Control Point"))?;
            let packet =
                characteristic(&p, PACKET).ok_or_else(|| missing("Packet characteristic"))?;
            p.subscribe(&control).await?;
            let n = p.notifications().await?;
            Ok::<_, BleError>((p, control, packet, n))
        })?;
        Ok(BleLink {
            rt,
            peripheral,
            control,
            packet,
            notifications,
            att_mtu,
        })
    }

    /// Buttonless entry: connects to the application at `address`, writes
    /// "enter bootloader" (0x01) to 8EC90003 and waits for its indication;
    /// the device then resets into the bootloader.
    pub fn enter_bootloader(address: &str, scan: Duration) -> Result<(), BleError> {
        let addr = parse_address(address)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BleError::Runtime)?;
        rt.block_on(async {
            let adapter = adapter().await?;
            let p = find(&adapter, addr, scan).await?;
            p.connect().await?;
            p.discover_services().await?;
            let b = characteristic(&p, BUTTONLESS).ok_or_else(|| BleError::NoDfu {
                address: address.to_string(),
                what: "buttonless characteristic (8EC90003)",
            })?;
            p.subscribe(&b).await?;
            let mut n = p.notifications().await?;
            p.write(&b, &[0x01], WriteType::WithResponse).await?;
            // Response: 0x20 (response code), 0x01 (request), 0x01 (success).
            let reply = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(v) = n.next().await {
                    if v.uuid == BUTTONLESS {
                        return Some(v.value);
                    }
                }
                None
            })
            .await;
            match reply {
                Ok(Some(v)) if v.starts_with(&[0x20, 0x01, 0x01]) => {}
                // No indication: the device may have reset at once, which
                // some applications do; the scan for the bootloader decides.
                Err(_) | Ok(None) => {}
                Ok(Some(v)) => {
                    return Err(BleError::Refused {
                        address: address.to_string(),
                        reply: v,
                    })
                }
            }
            // The device disconnects as it resets; an error here is expected.
            let _ = p.disconnect().await;
            Ok(())
        })
    }
}

fn io_err(e: btleplug::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// A radio runs in real time.
impl WallTime for BleLink {}

impl SecureDfuLink for BleLink {
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> io::Result<()> {
        let (ch, data, kind) = match req {
            // Firmware and init-packet bytes go raw to the Packet
            // characteristic; every other request is a Control Point write.
            SecureDfuRequest::Write(data) => {
                (&self.packet, data.to_vec(), WriteType::WithoutResponse)
            }
            other => {
                let mut v = Vec::new();
                other.encode(&mut |b| v.extend_from_slice(b));
                (&self.control, v, WriteType::WithResponse)
            }
        };
        self.rt
            .block_on(self.peripheral.write(ch, &data, kind))
            .map_err(io_err)
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        // The D-Bus reader runs on this single-threaded runtime only inside
        // block_on: a poll (zero timeout) gets a millisecond so that
        // notifications already on the bus are taken.
        let timeout = timeout.max(Duration::from_millis(1));
        let control = self.control.uuid;
        let stream = &mut self.notifications;
        self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => return Ok(None),
                    Ok(None) => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the device disconnected",
                        ))
                    }
                    Ok(Some(n)) if n.uuid == control => return Ok(Some(n.value)),
                    Ok(Some(_)) => continue,
                }
            }
        })
    }

    fn max_write(&self, _device_mtu: u16) -> usize {
        // ATT Write Without Response: MTU minus the 3-byte ATT header.
        usize::from(self.att_mtu.saturating_sub(3))
    }

    fn is_serial(&self) -> bool {
        false
    }
}

impl Drop for BleLink {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.peripheral.disconnect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttonless_bootloader_address_is_one_higher() {
        assert_eq!(
            next_address("C0:11:22:33:44:55").unwrap(),
            "C0:11:22:33:44:56"
        );
        assert_eq!(
            next_address("C0:11:22:33:44:FF").unwrap(),
            "C0:11:22:33:45:00"
        );
        assert!(matches!(next_address("nope"), Err(BleError::BadAddress(_))));
    }

    #[test]
    fn uuids_are_nordics() {
        assert_eq!(
            DFU_SERVICE.to_string(),
            "0000fe59-0000-1000-8000-00805f9b34fb"
        );
        assert_eq!(
            CONTROL_POINT.to_string(),
            "8ec90001-f315-4f60-9fb8-838830daea50"
        );
        assert_eq!(PACKET.to_string(), "8ec90002-f315-4f60-9fb8-838830daea50");
        assert_eq!(
            BUTTONLESS.to_string(),
            "8ec90003-f315-4f60-9fb8-838830daea50"
        );
    }
}
