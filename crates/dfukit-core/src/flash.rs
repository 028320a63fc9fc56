//! Flash work described as values, so that completion can be asynchronous.
//!
//! A device core *starts* an operation by handing out a [`FlashOp`]; the
//! operation is *done* only when the owner reports a [`FlashOutcome`] for it.
//! Until then the core must not count the bytes as stored, answer a checksum
//! with them, or free their buffer. Reads are synchronous ([`ReadFlash`]):
//! internal flash is memory-mapped and QSPI NOR can be read in place (XIP) or
//! with a short blocking transfer.

/// One flash operation, addressed in the device's memory map (internal flash
/// at its physical addresses, external QSPI NOR at its XIP window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashOp<'a> {
    /// Erase `len` bytes from `addr`; both aligned to the chip's erase unit.
    Erase {
        /// First byte to erase.
        addr: u32,
        /// Number of bytes, a multiple of the erase unit.
        len: u32,
    },
    /// Program `data` at `addr`; the range must have been erased.
    Program {
        /// First byte to program.
        addr: u32,
        /// The bytes; the buffer stays reserved until the outcome arrives.
        data: &'a [u8],
    },
}

impl FlashOp<'_> {
    /// First address the operation touches.
    pub fn addr(&self) -> u32 {
        match *self {
            FlashOp::Erase { addr, .. } | FlashOp::Program { addr, .. } => addr,
        }
    }

    /// Number of bytes the operation touches.
    pub fn len(&self) -> u32 {
        match *self {
            FlashOp::Erase { len, .. } => len,
            FlashOp::Program { data, .. } => data.len() as u32,
        }
    }

    /// True for an operation that touches no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a flash operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashOutcome {
    /// The operation completed and the bytes are in flash.
    Done,
    /// The flash controller reported an error.
    Failed,
}

/// A read that could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError {
    /// The first address that could not be read.
    pub addr: u32,
}

/// Synchronous reads of the device's memory map.
pub trait ReadFlash {
    /// Fills `buf` with the bytes at `addr..addr + buf.len()`.
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), ReadError>;
}
