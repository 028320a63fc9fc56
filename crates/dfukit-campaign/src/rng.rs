//! The generator behind a campaign's choices (cut points, nested cuts):
//! SplitMix64, so the trial list for a seed is the same on every machine
//! and every run, and a failing trial can be named by its seed alone.

/// A small, fast, seeded generator for trial plans (not for the flash's
/// torn bits, which the simulator draws from its own seeded generator).
#[derive(Debug, Clone)]
pub struct TrialRng(u64);

impl TrialRng {
    /// A generator for `seed` mixed with `stream` (one stream per scenario
    /// and operation, so adding a scenario does not change the others).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = TrialRng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A fraction in (0, 1).
    pub fn fraction(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..4).map(|_| TrialRng::new(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            TrialRng::new(7, 1).next_u64(),
            TrialRng::new(7, 2).next_u64()
        );
        let mut r = TrialRng::new(1, 0);
        for _ in 0..1000 {
            let v = r.range(3, 5);
            assert!((3..=5).contains(&v));
            let f = r.fraction();
            assert!(f > 0.0 && f < 1.0);
        }
    }
}
