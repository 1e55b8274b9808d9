//! SplitMix64 (Steele, Lea & Flood; Vigna's constants): the synthetic scenes' generator and the
//! seed expander of [`super::TrainRng`]. Fixed here rather than taken from a crate, whose stream
//! may change between versions and would silently change every generated dataset and run.

/// One SplitMix64 step on `state`: advances it and returns the mixed output.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A SplitMix64 stream with the draws the synthetic scenes make.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator for a tuple of integers (e.g. dataset seed, image index, attempt).
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut rng = SplitMix64(0x243F_6A88_85A3_08D3);
        for &p in parts {
            let mixed = rng.next_u64() ^ p;
            rng = SplitMix64(mixed);
            rng.next_u64();
        }
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn int_in(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_stream() {
        // Pinned (splitmix64.c, x = 1): a change here changes every synthetic dataset and
        // every training stream; make it deliberate.
        let mut r = SplitMix64::new(1);
        assert_eq!(r.next_u64(), 0x910a_2dec_8902_5cc1);
        let mut state = 1;
        assert_eq!(splitmix64(&mut state), 0x910a_2dec_8902_5cc1);
    }
}
