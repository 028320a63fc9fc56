//! What the device-core targets share: the fuzzer's bytes read as a script of operations,
//! and the flash operation a core handed out that the script completes later (flash
//! completes asynchronously on the real parts, so the script decides when, and whether it
//! fails).

use dfukit_core::FlashOp;
use dfukit_testkit::flash::TestFlash;

/// Bytes taken one at a time from the fuzzer's input; zeros after its end, so that every
/// input is a complete script.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// A script over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// A flash operation a core handed out, owned, until the script completes it.
pub enum Pending {
    /// An erase of `len` bytes at `addr`.
    Erase {
        /// First byte.
        addr: u32,
        /// Length.
        len: u32,
    },
    /// A program of `data` at `addr`.
    Program {
        /// First byte.
        addr: u32,
        /// The bytes.
        data: Vec<u8>,
    },
}

impl Pending {
    /// A copy of `op` (which borrows the core's buffer).
    pub fn of(op: FlashOp<'_>) -> Self {
        match op {
            FlashOp::Erase { addr, len } => Pending::Erase { addr, len },
            FlashOp::Program { addr, data } => Pending::Program {
                addr,
                data: data.to_vec(),
            },
        }
    }

    /// Applies it to `flash`, which panics on a program over unerased bytes; panics too when
    /// it touches unmapped memory. Returns whether it was a program.
    pub fn apply(&self, flash: &mut TestFlash) -> bool {
        let applied = match self {
            Pending::Erase { addr, len } => flash.apply(&FlashOp::Erase {
                addr: *addr,
                len: *len,
            }),
            Pending::Program { addr, data } => flash.apply(&FlashOp::Program { addr: *addr, data }),
        };
        assert!(
            applied,
            "the device core handed out an operation on unmapped memory"
        );
        matches!(self, Pending::Program { .. })
    }
}
