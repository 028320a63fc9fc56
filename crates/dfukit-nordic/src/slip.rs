//! SLIP framing (RFC 1055) as the Secure DFU serial transport uses it.
//!
//! Each frame ends with a single `0xC0`; no leading END is sent, because the
//! SDK's decoder reports a frame on *every* END and then underflows on an
//! empty one. This decoder therefore ignores empty frames instead of handing
//! them on.

/// Frame delimiter.
pub const END: u8 = 0xC0;
/// Escape byte.
pub const ESC: u8 = 0xDB;
/// Escaped END.
pub const ESC_END: u8 = 0xDC;
/// Escaped ESC.
pub const ESC_ESC: u8 = 0xDD;

/// Encodes `payload` as one SLIP frame, passing the bytes to `out`.
pub fn encode(payload: &[u8], out: &mut impl FnMut(&[u8])) {
    let mut start = 0;
    for (i, &b) in payload.iter().enumerate() {
        let esc: &[u8] = match b {
            END => &[ESC, ESC_END],
            ESC => &[ESC, ESC_ESC],
            _ => continue,
        };
        out(&payload[start..i]);
        out(esc);
        start = i + 1;
    }
    out(&payload[start..]);
    out(&[END]);
}

/// Largest request payload (after the opcode byte) a device whose MTU is
/// `mtu` — the size of its SLIP-*encoded* frame buffer — can take: every byte
/// may need escaping, so `(mtu - 1) / 2 - 1` (nrfutil's rule).
pub const fn max_payload(mtu: u16) -> usize {
    ((mtu as usize).saturating_sub(1) / 2).saturating_sub(1)
}

/// Largest encoded size of a payload of `len` bytes.
pub const fn max_encoded_len(len: usize) -> usize {
    2 * len + 1
}

/// What feeding one byte produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Nothing yet.
    Pending,
    /// A frame of this many bytes is complete in the buffer.
    Frame(usize),
    /// A frame was dropped: it overflowed the buffer or had a bad escape.
    Dropped,
}

/// An incremental SLIP decoder writing into a caller-provided buffer.
#[derive(Debug)]
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    escaped: bool,
    /// Set after an error: everything up to the next END is discarded.
    discarding: bool,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Decoder {
            buf: [0; N],
            len: 0,
            escaped: false,
            discarding: false,
        }
    }

    /// Feeds one byte. After [`Decoded::Frame`], the frame is in
    /// [`Decoder::frame`] until the next call.
    pub fn push(&mut self, b: u8) -> Decoded {
        if b == END {
            let len = core::mem::take(&mut self.len);
            let was_discarding = core::mem::take(&mut self.discarding);
            self.escaped = false;
            return if was_discarding {
                Decoded::Dropped
            } else if len == 0 {
                Decoded::Pending
            } else {
                Decoded::Frame(len)
            };
        }
        if self.discarding {
            return Decoded::Pending;
        }
        let byte = if self.escaped {
            self.escaped = false;
            match b {
                ESC_END => END,
                ESC_ESC => ESC,
                _ => {
                    self.discarding = true;
                    return Decoded::Pending;
                }
            }
        } else if b == ESC {
            self.escaped = true;
            return Decoded::Pending;
        } else {
            b
        };
        if self.len == N {
            self.discarding = true;
            return Decoded::Pending;
        }
        self.buf[self.len] = byte;
        self.len += 1;
        Decoded::Pending
    }

    /// The bytes of the frame just completed (`len` from [`Decoded::Frame`]).
    pub fn frame(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: &[u8]) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        encode(p, &mut |b| v.extend_from_slice(b));
        v
    }

    extern crate std;

    #[test]
    fn escapes_end_and_esc() {
        assert_eq!(
            enc(&[1, END, 2, ESC, 3]),
            [1, ESC, ESC_END, 2, ESC, ESC_ESC, 3, END]
        );
    }

    #[test]
    fn empty_frames_are_ignored() {
        let mut d = Decoder::<8>::new();
        assert_eq!(d.push(END), Decoded::Pending);
        assert_eq!(d.push(7), Decoded::Pending);
        assert_eq!(d.push(END), Decoded::Frame(1));
        assert_eq!(d.frame(1), &[7]);
    }

    #[test]
    fn overflow_drops_the_frame_and_recovers() {
        let mut d = Decoder::<2>::new();
        for b in [1, 2, 3] {
            d.push(b);
        }
        assert_eq!(d.push(END), Decoded::Dropped);
        d.push(9);
        assert_eq!(d.push(END), Decoded::Frame(1));
        assert_eq!(d.frame(1), &[9]);
    }

    #[test]
    fn bad_escape_drops_the_frame() {
        let mut d = Decoder::<8>::new();
        for b in [1, ESC, 0x42, 3] {
            d.push(b);
        }
        assert_eq!(d.push(END), Decoded::Dropped);
    }

    proptest::proptest! {
        #[test]
        fn round_trips(p in proptest::collection::vec(proptest::num::u8::ANY, 1..300)) {
            let mut d = Decoder::<300>::new();
            let mut got = None;
            for b in enc(&p) {
                if let Decoded::Frame(n) = d.push(b) {
                    got = Some(d.frame(n).to_vec());
                }
            }
            proptest::prop_assert_eq!(got, Some(p));
        }
    }
}
