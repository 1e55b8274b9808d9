//! An exact port of CPython 3.11's `random` module (Mersenne Twister MT19937), for the draws the
//! original data loaders make with Python's global RNG.
//!
//! The COCO loader draws relationship partners with `random.choice`/`random.random` (§15.4) and
//! the VG loader subsamples objects with `random.sample` (§16.2). Reproducing those samples
//! given the same seed needs the same generator *and* the same way of turning its 32-bit words
//! into integers and floats, so every method below follows `Modules/_randommodule.c` and
//! `Lib/random.py` of CPython 3.11 line by line.

/// Degree of recurrence of MT19937.
const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's `random.Random`: MT19937 state plus Python's integer/float conversions.
#[derive(Clone)]
pub struct PyRandom {
    mt: Box<[u32; N]>,
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// A generator in the state `random.seed(seed)` leaves it in (an `int` seed).
    pub fn seed(seed: u64) -> Self {
        let mut rng = PyRandom {
            mt: Box::new([0; N]),
            index: N,
        };
        rng.reseed(seed);
        rng
    }

    /// `random.seed(seed)` on an existing generator.
    ///
    /// CPython feeds `abs(seed)` to `init_by_array` as little-endian 32-bit words, with at
    /// least one word (so 0 becomes `[0]`) and no leading zero words beyond that.
    pub fn reseed(&mut self, seed: u64) {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        if hi == 0 {
            self.init_by_array(&[lo]);
        } else {
            self.init_by_array(&[lo, hi]);
        }
    }

    /// A generator seeded with the reference `init_genrand(seed)` alone (no `init_by_array`):
    /// the state numpy's legacy `RandomState(seed)` starts from for an integer seed.
    pub fn from_init_genrand(seed: u32) -> Self {
        let mut rng = PyRandom {
            mt: Box::new([0; N]),
            index: N,
        };
        rng.init_genrand(seed);
        rng
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mt = &mut self.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] =
                (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        // Assures a non-zero initial state.
        mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        let mt = &mut self.mt;
        let mag = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
        for kk in 0..N - M {
            let y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag(y);
        }
        for kk in N - M..N - 1 {
            let y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + M - N] ^ (y >> 1) ^ mag(y);
        }
        let y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
        mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag(y);
        self.index = 0;
    }

    /// One tempered 32-bit output (`genrand_uint32`).
    pub fn genrand_uint32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.random()`: a float in `[0, 1)` with 53 random bits from two 32-bit words.
    pub fn random(&mut self) -> f64 {
        let a = (self.genrand_uint32() >> 5) as f64;
        let b = (self.genrand_uint32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `random.getrandbits(k)` for `k ≤ 64`: whole words, least significant word first, the
    /// last word keeping only its top bits.
    ///
    /// # Panics
    /// If `k > 64` (Python supports any `k`; no caller here needs more).
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits({k}): at most 64 bits supported");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return (self.genrand_uint32() >> (32 - k)) as u64;
        }
        let lo = self.genrand_uint32() as u64;
        let hi = (self.genrand_uint32() >> (64 - k)) as u64;
        lo | (hi << 32)
    }

    /// `random._randbelow(n)` (the getrandbits variant): rejection sampling of
    /// `n.bit_length()`-bit numbers until one is below `n`.
    ///
    /// # Panics
    /// If `n == 0` (Python raises there too).
    pub fn randbelow(&mut self, n: u64) -> u64 {
        assert!(n > 0, "randbelow(0)");
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.choice(seq)`; `None` for an empty slice (Python raises `IndexError`).
    pub fn choice<'a, T>(&mut self, seq: &'a [T]) -> Option<&'a T> {
        if seq.is_empty() {
            return None;
        }
        Some(&seq[self.randbelow(seq.len() as u64) as usize])
    }

    /// `random.sample(population, k)` of CPython 3.11: the pool method when a list of `n` is
    /// smaller than a set of `k`, else rejection with a set of picked indices. Both consume the
    /// generator differently, so the switch point is reproduced exactly.
    ///
    /// # Panics
    /// If `k > population.len()` (Python raises `ValueError`).
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Vec<T> {
        let n = population.len();
        assert!(k <= n, "sample larger than population ({k} > {n})");
        let mut setsize = 21usize;
        if k > 5 {
            // `4 ** _ceil(_log(k * 3, 4))`; math.log(x, 4) is log(x) / log(4) in doubles.
            let e = ((k as f64 * 3.0).ln() / 4f64.ln()).ceil() as u32;
            setsize += 4usize.saturating_pow(e);
        }
        let mut result = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<T> = population.to_vec();
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                result.push(pool[j].clone());
                pool[j] = pool[n - i - 1].clone();
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while selected.contains(&j) {
                    j = self.randbelow(n as u64) as usize;
                }
                selected.insert(j);
                result.push(population[j].clone());
            }
        }
        result
    }

    /// `random.shuffle(x)` (in place, Fisher–Yates from the end).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by CPython 3.11 (`random.seed(s); random.random()` etc.).
    #[test]
    fn random_matches_cpython() {
        assert_eq!(PyRandom::seed(0).random(), 0.8444218515250481);
        assert_eq!(PyRandom::seed(1).random(), 0.13436424411240122);
        assert_eq!(PyRandom::seed(42).random(), 0.6394267984578837);
    }

    #[test]
    fn integer_draws_match_cpython() {
        let mut r = PyRandom::seed(5000);
        assert_eq!(r.getrandbits(3), 1);
        assert_eq!(r.getrandbits(33), 5_866_761_897);
        assert_eq!(r.getrandbits(64), 8_398_897_261_581_496_225);
        assert_eq!(r.randbelow(7), 0);
        // n = 100 > setsize for k = 10 (rejection method); n = 10 and 40 use the pool method.
        let mut r = PyRandom::seed(99);
        let range = |n: usize| (0..n).collect::<Vec<_>>();
        assert_eq!(
            r.sample(&range(100), 10),
            [51, 48, 25, 76, 22, 29, 31, 17, 97, 11]
        );
        assert_eq!(r.sample(&range(10), 7), [4, 6, 1, 9, 3, 7, 5]);
        assert_eq!(r.sample(&range(40), 6), [39, 37, 13, 23, 24, 38]);
        assert_eq!(PyRandom::seed((1 << 40) + 5).random(), 0.5043802970418443);
        let mut x = range(10);
        PyRandom::seed(11).shuffle(&mut x);
        assert_eq!(x, [2, 6, 0, 1, 5, 4, 3, 9, 8, 7]);
    }

    #[test]
    fn reseed_restarts_the_sequence() {
        let mut rng = PyRandom::seed(7);
        let a: Vec<u32> = (0..700).map(|_| rng.genrand_uint32()).collect();
        rng.reseed(7);
        let b: Vec<u32> = (0..700).map(|_| rng.genrand_uint32()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn seeds_above_32_bits_use_two_key_words() {
        // 2^32 and 0 must differ (two words [0, 1] versus one word [0]).
        assert_ne!(PyRandom::seed(1 << 32).random(), PyRandom::seed(0).random());
    }

    #[test]
    fn sample_and_choice_stay_in_range() {
        let mut rng = PyRandom::seed(3);
        let pop: Vec<usize> = (0..100).collect();
        for k in [0, 1, 5, 6, 30, 100] {
            let s = rng.sample(&pop, k);
            let mut d = s.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), k);
        }
        assert_eq!(rng.choice::<u8>(&[]), None);
        assert!(rng.randbelow(1) == 0);
    }
}
