//! Deterministic stand-in firmware for demos, benchmarks and tests.

/// An endless stream of pseudo-random bytes from `seed` (xorshift32): the
/// same seed always gives the same bytes, different seeds give images whose
/// CRCs differ, so a test can tell which image a board holds. Take as many
/// as the image needs: `synthetic::bytes(7).take(len).collect::<Vec<u8>>()`.
pub fn bytes(seed: u32) -> impl Iterator<Item = u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    core::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_seed_same_bytes_and_seeds_differ() {
        let a: [u8; 16] = core::array::from_fn({
            let mut it = super::bytes(1);
            move |_| it.next().unwrap()
        });
        let b: [u8; 16] = core::array::from_fn({
            let mut it = super::bytes(1);
            move |_| it.next().unwrap()
        });
        let c: [u8; 16] = core::array::from_fn({
            let mut it = super::bytes(2);
            move |_| it.next().unwrap()
        });
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Seed 0 is not a stuck generator.
        assert!(super::bytes(0).take(8).any(|x| x != 0));
    }
}
