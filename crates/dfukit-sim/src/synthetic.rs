//! Deterministic stand-in firmware for demos, benchmarks and tests (see
//! [`dfukit_core::synthetic`]).

/// `len` bytes of pseudo-random firmware from `seed` (xorshift32): the same
/// seed always gives the same image, and different seeds give images whose
/// CRCs differ, so a test can tell which image a board holds.
pub fn firmware(len: usize, seed: u32) -> Vec<u8> {
    dfukit_core::synthetic::bytes(seed).take(len).collect()
}
