//! Deterministic stand-in firmware for demos, benchmarks and tests.

/// `len` bytes of pseudo-random firmware from `seed` (xorshift32): the same
/// seed always gives the same image, and different seeds give images whose
/// CRCs differ, so a test can tell which image a board holds.
pub fn firmware(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
