//! Finding a device's DFU interface from its descriptors, as dfu-util's
//! `probe_devices` does: the alternate settings with their names, and the
//! DFU functional descriptor.

use super::{ControlTransfer, TransferError};
use crate::wire::{FunctionalDescriptor, SetupPacket};
use std::time::Duration;

const GET_DESCRIPTOR: u8 = 6;
const DT_DEVICE: u8 = 1;
const DT_CONFIG: u8 = 2;
const DT_STRING: u8 = 3;
const DT_INTERFACE: u8 = 4;
const DT_DFU_FUNCTIONAL: u8 = 0x21;
const LANG_EN_US: u16 = 0x0409;

/// A device's DFU interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DfuInterface {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// Serial number string (empty when the device has none).
    pub serial: String,
    /// The interface number.
    pub interface: u8,
    /// 1 run-time, 2 DFU mode.
    pub protocol: u8,
    /// Alternate settings with their name strings, in alt order.
    pub alts: Vec<(u8, String)>,
    /// The DFU functional descriptor.
    pub functional: FunctionalDescriptor,
}

impl DfuInterface {
    /// The alt setting whose number, or name, is `which` (dfu-util's `-a`).
    pub fn find_alt(&self, which: &str) -> Option<(u8, &str)> {
        if let Ok(n) = which.parse::<u8>() {
            return self
                .alts
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(a, s)| (*a, s.as_str()));
        }
        self.alts
            .iter()
            .find(|(_, s)| s == which)
            .map(|(a, s)| (*a, s.as_str()))
    }
}

/// Why a device's DFU interface could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A descriptor request failed.
    #[error("reading the {what} descriptor failed: {source}")]
    Transfer {
        /// Which descriptor.
        what: &'static str,
        /// The transport error.
        #[source]
        source: TransferError,
    },
    /// A descriptor is malformed.
    #[error("malformed {what} descriptor at byte {offset}")]
    Malformed {
        /// Which descriptor.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// The device has no DFU interface.
    #[error("the device has no DFU interface (class 0xFE, subclass 0x01)")]
    NotDfu,
}

fn get(
    t: &mut impl ControlTransfer,
    kind: u8,
    index: u8,
    lang: u16,
    len: u16,
    what: &'static str,
) -> Result<Vec<u8>, ProbeError> {
    let setup = SetupPacket {
        request_type: 0x80,
        request: GET_DESCRIPTOR,
        value: u16::from(kind) << 8 | u16::from(index),
        index: lang,
        length: len,
    };
    let mut buf = vec![0u8; len as usize];
    let n = t
        .control_in(setup, &mut buf, Duration::from_secs(5))
        .map_err(|source| ProbeError::Transfer { what, source })?;
    buf.truncate(n);
    Ok(buf)
}

/// A string descriptor as text (UTF-16LE), or empty for index 0.
pub fn string(t: &mut impl ControlTransfer, index: u8) -> Result<String, ProbeError> {
    if index == 0 {
        return Ok(String::new());
    }
    let b = get(t, DT_STRING, index, LANG_EN_US, 255, "string")?;
    if b.len() < 2 || b[1] != DT_STRING {
        return Err(ProbeError::Malformed {
            what: "string",
            offset: 0,
        });
    }
    // A bLength below 2 (malformed) reads as an empty string, as libusb does.
    let n = (b[0] as usize).clamp(2, b.len());
    let units: Vec<u16> = b[2..n]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// Reads the device and configuration descriptors and returns the first
/// DFU interface with its alternate settings.
pub fn probe(t: &mut impl ControlTransfer) -> Result<DfuInterface, ProbeError> {
    let dev = get(t, DT_DEVICE, 0, 0, 18, "device")?;
    if dev.len() < 18 || dev[1] != DT_DEVICE {
        return Err(ProbeError::Malformed {
            what: "device",
            offset: 0,
        });
    }
    let head = get(t, DT_CONFIG, 0, 0, 9, "configuration")?;
    if head.len() < 4 || head[1] != DT_CONFIG {
        return Err(ProbeError::Malformed {
            what: "configuration",
            offset: 0,
        });
    }
    let total = u16::from_le_bytes([head[2], head[3]]);
    let cfg = get(t, DT_CONFIG, 0, 0, total, "configuration")?;
    let mut alts = Vec::new();
    let mut iface: Option<(u8, u8)> = None;
    let mut functional = None;
    // Inside the DFU interface's descriptors (between its interface
    // descriptors and the next other interface).
    let mut in_dfu = false;
    let mut at = 0;
    while at + 2 <= cfg.len() {
        let len = cfg[at] as usize;
        if len < 2 || at + len > cfg.len() {
            return Err(ProbeError::Malformed {
                what: "configuration",
                offset: at,
            });
        }
        let d = &cfg[at..at + len];
        match d[1] {
            // The first DFU interface's alternate settings.
            DT_INTERFACE if !(len >= 9 && d[5] == 0xFE && d[6] == 0x01) => in_dfu = false,
            DT_INTERFACE
                if len >= 9
                    && d[5] == 0xFE
                    && d[6] == 0x01
                    && iface.is_none_or(|(n, _)| n == d[2]) =>
            {
                iface = Some((d[2], d[7]));
                alts.push((d[3], d[8]));
                in_dfu = true;
            }
            // HID uses 0x21 too: only the class descriptor that follows
            // the DFU interface's alternate settings is the DFU one.
            DT_DFU_FUNCTIONAL if functional.is_none() && in_dfu => {
                functional = Some(FunctionalDescriptor::from_bytes(d).map_err(|_| {
                    ProbeError::Malformed {
                        what: "DFU functional",
                        offset: at,
                    }
                })?);
            }
            _ => {}
        }
        at += len;
    }
    let (interface, protocol) = iface.ok_or(ProbeError::NotDfu)?;
    let functional = functional.ok_or(ProbeError::NotDfu)?;
    let mut named = Vec::with_capacity(alts.len());
    for (alt, idx) in alts {
        named.push((alt, string(t, idx)?));
    }
    Ok(DfuInterface {
        vendor_id: u16::from_le_bytes([dev[8], dev[9]]),
        product_id: u16::from_le_bytes([dev[10], dev[11]]),
        bcd_device: u16::from_le_bytes([dev[12], dev[13]]),
        serial: string(t, dev[16])?,
        interface,
        protocol,
        alts: named,
        functional,
    })
}
