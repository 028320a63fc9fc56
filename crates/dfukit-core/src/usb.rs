//! The USB control-transfer setup packet, shared by every USB layer: the
//! DFU host and device cores, the USB/IP server and client, and the
//! simulated boards.

/// bmRequestType direction bit: device to host.
pub const REQUEST_TYPE_IN: u8 = 0x80;
/// bmRequestType type field: standard request.
pub const REQUEST_TYPE_STANDARD: u8 = 0x00;
/// bmRequestType type field: class request.
pub const REQUEST_TYPE_CLASS: u8 = 0x20;
/// bmRequestType type field: vendor request.
pub const REQUEST_TYPE_VENDOR: u8 = 0x40;
/// bmRequestType recipient: interface.
pub const RECIPIENT_INTERFACE: u8 = 0x01;
/// Standard request SET_INTERFACE.
pub const SET_INTERFACE: u8 = 11;

/// The 8-byte setup stage of a control transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SetupPacket {
    /// bmRequestType: direction (bit 7), type (bits 6..5), recipient (bits 4..0).
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
    /// wLength: bytes of the data stage (the most wanted for IN, exactly sent for OUT).
    pub length: u16,
}

impl SetupPacket {
    /// Length on the wire.
    pub const LEN: usize = 8;

    /// Standard SET_INTERFACE selecting `alt` on `interface`.
    pub fn set_interface(interface: u16, alt: u8) -> Self {
        SetupPacket {
            request_type: REQUEST_TYPE_STANDARD | RECIPIENT_INTERFACE,
            request: SET_INTERFACE,
            value: alt as u16,
            index: interface,
            length: 0,
        }
    }

    /// The 8 bytes in USB order (multi-byte fields little-endian).
    pub fn to_bytes(&self) -> [u8; 8] {
        let v = self.value.to_le_bytes();
        let i = self.index.to_le_bytes();
        let l = self.length.to_le_bytes();
        [
            self.request_type,
            self.request,
            v[0],
            v[1],
            i[0],
            i[1],
            l[0],
            l[1],
        ]
    }

    /// Parses the 8 bytes in USB order.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        SetupPacket {
            request_type: b[0],
            request: b[1],
            value: u16::from_le_bytes([b[2], b[3]]),
            index: u16::from_le_bytes([b[4], b[5]]),
            length: u16::from_le_bytes([b[6], b[7]]),
        }
    }

    /// Parses the first 8 bytes of `b`, or `None` if it is shorter.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let head: [u8; 8] = b.get(..Self::LEN)?.try_into().ok()?;
        Some(Self::from_bytes(head))
    }

    /// Whether the data stage goes device to host (bit 7 of bmRequestType).
    pub fn is_in(&self) -> bool {
        self.request_type & REQUEST_TYPE_IN != 0
    }

    /// The type field (bits 6..5): standard, class or vendor.
    pub fn kind(&self) -> u8 {
        self.request_type & 0x60
    }

    /// The recipient field (bits 4..0).
    pub fn recipient(&self) -> u8 {
        self.request_type & 0x1f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_usb_byte_order() {
        // (bmRequestType, bRequest, wValue, wIndex, wLength), the wire bytes,
        // and (type, recipient): a DFU class request to an interface, and the
        // standard GET_DESCRIPTOR(string) every host sends first.
        let cases = [
            (
                (0xA1, 3, 0x1234, 2, 6),
                [0xA1, 3, 0x34, 0x12, 2, 0, 6, 0],
                (REQUEST_TYPE_CLASS, RECIPIENT_INTERFACE),
            ),
            (
                (0x80, 6, 0x0302, 0x0409, 255),
                [0x80, 6, 0x02, 0x03, 0x09, 0x04, 0xff, 0x00],
                (REQUEST_TYPE_STANDARD, 0),
            ),
        ];
        for ((request_type, request, value, index, length), wire, kind) in cases {
            let s = SetupPacket {
                request_type,
                request,
                value,
                index,
                length,
            };
            let b = s.to_bytes();
            assert_eq!(b, wire, "{s:?}");
            assert_eq!(SetupPacket::from_bytes(b), s);
            assert_eq!(SetupPacket::from_slice(&b[..7]), None);
            assert!(s.is_in());
            assert_eq!((s.kind(), s.recipient()), kind, "{s:?}");
        }
    }
}
