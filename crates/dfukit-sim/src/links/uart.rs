//! UART line time for SLIP-framed Secure DFU frames.
//!
//! An asynchronous serial line sends each byte as a start bit, 8 data bits
//! and a stop bit (8N1: 10 bit times per byte), back to back at the baud
//! rate when the sender has data. The Secure DFU serial transport frames
//! every request and response with SLIP (RFC 1055), so a frame costs its
//! bytes plus one for each `0xC0`/`0xDB` escaped and one END byte
//! ([`dfukit_nordic::slip::encode`]).

use std::time::Duration;

/// A UART at a baud rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartModel {
    /// Bit times per second.
    pub baud: u32,
    /// Bit times per byte on the line: 10 for 8N1 (start, 8 data, stop),
    /// the framing nrfutil opens the port with (pyserial's defaults: 8 data
    /// bits, no parity, 1 stop bit).
    pub bits_per_byte: u32,
}

impl UartModel {
    /// An 8N1 line at `baud`.
    pub fn new(baud: u32) -> Self {
        UartModel {
            baud,
            bits_per_byte: 10,
        }
    }

    /// Bytes `frame` occupies on the line once SLIP-encoded.
    pub fn encoded_len(frame: &[u8]) -> usize {
        let mut n = 0;
        dfukit_nordic::slip::encode(frame, &mut |b| n += b.len());
        n
    }

    /// Time `bytes` raw line bytes take: `bytes × bits_per_byte / baud`.
    pub fn bytes_time(&self, bytes: usize) -> Duration {
        let bits = bytes as u128 * u128::from(self.bits_per_byte);
        // Nanosecond resolution: at 1 Mbaud a byte is 10 µs, and sums over
        // thousands of frames must not drift by rounding each one.
        let ns = bits * 1_000_000_000 / u128::from(self.baud.max(1));
        Duration::from_nanos(ns as u64)
    }

    /// Time the SLIP-encoded `frame` (a request or response, opcode first)
    /// occupies the line.
    pub fn frame_time(&self, frame: &[u8]) -> Duration {
        self.bytes_time(Self::encoded_len(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_end_count() {
        // 3 plain bytes + END.
        assert_eq!(UartModel::encoded_len(&[1, 2, 3]), 4);
        // C0 and DB take two bytes each.
        assert_eq!(UartModel::encoded_len(&[0xC0, 0xDB, 7]), 6);
    }

    #[test]
    fn line_time_is_ten_bits_per_byte() {
        let u = UartModel::new(115_200);
        // 64 data bytes + opcode, none escaped, + END = 66 bytes = 660 bits.
        let frame = [0x08u8; 65];
        let t = u.frame_time(&frame);
        assert_eq!(t, Duration::from_nanos(660 * 1_000_000_000 / 115_200));
        assert_eq!(
            UartModel::new(1_000_000).bytes_time(100),
            Duration::from_millis(1)
        );
    }
}
