//! numpy's legacy `RandomState` — only the calls torch-fidelity makes: `permutation(n)` (IS
//! shuffling) and `choice(n, size, replace=False)` (KID subsets).
//!
//! Followed from numpy's source (`numpy/random/_mt19937.pyx` `_legacy_seeding`,
//! `numpy/random/mtrand.pyx` `shuffle`/`permutation`/`choice`,
//! `numpy/random/src/distributions/distributions.c` `random_interval`):
//! - `RandomState(seed)` with an integer seed is the reference `init_genrand(seed)` (not
//!   Python's `init_by_array`), followed by the plain MT19937 32-bit output;
//! - `permutation(n)` is `arange(n)` shuffled by Fisher–Yates from the end, each
//!   `j ∈ [0, i]` drawn by `random_interval(i)`: masked rejection sampling on 32-bit words
//!   (`max ≤ 0xffffffff`) with the smallest all-ones mask ≥ `max`;
//! - `choice(n, size, replace=False)` without `p` is `permutation(n)[:size]`.

use crate::rng::PyRandom;

/// numpy's `np.random.RandomState(seed)` (legacy seeding, MT19937).
#[derive(Clone, Debug)]
pub struct RandomState {
    mt: PyRandom,
}

impl RandomState {
    /// `np.random.RandomState(seed)` for an integer seed in `[0, 2³²)`.
    pub fn new(seed: u32) -> Self {
        Self {
            mt: PyRandom::from_init_genrand(seed),
        }
    }

    /// `random_interval(bitgen, max)`: a uniform integer in `[0, max]`.
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        if max <= 0xffff_ffff {
            loop {
                let v = u64::from(self.mt.genrand_uint32()) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            // numpy's next_uint64 for MT19937: two words, the first one high.
            let hi = u64::from(self.mt.genrand_uint32());
            let lo = u64::from(self.mt.genrand_uint32());
            let v = ((hi << 32) | lo) & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `permutation(n)`: `arange(n)` shuffled in place.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut x: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            x.swap(i, j);
        }
        x
    }

    /// `choice(n, size, replace=False)` (no probabilities): the first `size` entries of
    /// `permutation(n)`. `None` when `size > n` (numpy raises).
    pub fn choice_without_replacement(&mut self, n: usize, size: usize) -> Option<Vec<usize>> {
        if size > n {
            return None;
        }
        let mut p = self.permutation(n);
        p.truncate(size);
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded with numpy 2.4.6:
    // `r = np.random.RandomState(7); r.permutation(10).tolist(), r.choice(1000, 5, replace=False).tolist()`
    // `np.random.RandomState(0).permutation(5)`, `np.random.RandomState(2**32-1).permutation(12)`.
    #[test]
    fn matches_numpy_sequences() {
        let mut r = RandomState::new(7);
        assert_eq!(r.permutation(10), [8, 5, 0, 2, 1, 9, 7, 3, 6, 4]);
        assert_eq!(
            r.choice_without_replacement(1000, 5).unwrap(),
            [113, 796, 712, 510, 492]
        );
        assert_eq!(RandomState::new(0).permutation(5), [2, 0, 1, 3, 4]);
        assert_eq!(
            RandomState::new(u32::MAX).permutation(12),
            [11, 8, 5, 9, 1, 10, 6, 0, 4, 7, 2, 3]
        );
    }

    #[test]
    fn permutation_is_a_permutation_and_choice_a_prefix() {
        let p = RandomState::new(2020).permutation(1000);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &v)| i == v));
        let c = RandomState::new(2020)
            .choice_without_replacement(1000, 17)
            .unwrap();
        assert_eq!(c, p[..17]);
        assert!(
            RandomState::new(1)
                .choice_without_replacement(3, 4)
                .is_none()
        );
        // Degenerate sizes draw nothing.
        assert_eq!(RandomState::new(3).permutation(1), [0]);
        assert!(RandomState::new(3).permutation(0).is_empty());
    }

    #[test]
    fn interval_stays_in_range() {
        let mut r = RandomState::new(5);
        for max in [1u64, 2, 3, 7, 8, 1000, (1 << 33) + 5] {
            for _ in 0..200 {
                assert!(r.interval(max) <= max);
            }
        }
    }
}
