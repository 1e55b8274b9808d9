//! Inception Score, Fréchet Inception Distance and Kernel Inception Distance as torch-fidelity
//! 0.4.0 computes them (`metric_isc.py`, `metric_fid.py`, `metric_kid.py`), in f64.

use super::linalg::{matmul, sqrtm_psd, symmetric_eigen, symmetrize};
use crate::rng::RandomState;
use crate::{Error, Result};
use std::sync::OnceLock;

/// `isc_features_to_metric`: `(inception_score_mean, inception_score_std)`.
///
/// `logits (N, C)` row-major (torch-fidelity's `logits_unbiased`). With `shuffle_seed` the rows
/// are first permuted by `RandomState(seed).permutation(N)`; then softmax in f64, `splits`
/// chunks `[i·N/splits, (i+1)·N/splits)`, per chunk `exp(mean KL(p ‖ mean p))`; mean and
/// population standard deviation (`np.std`) of the chunk scores.
pub fn inception_score(
    logits: &[f32],
    classes: usize,
    splits: usize,
    shuffle_seed: Option<u32>,
) -> Result<(f64, f64)> {
    let n = logits.len() / classes.max(1);
    if splits == 0 || n < splits {
        return Err(Error::invalid(format!(
            "Inception Score: {n} images cannot be cut into --isc_splits {splits} non-empty splits"
        )));
    }
    let order: Vec<usize> = match shuffle_seed {
        Some(seed) => RandomState::new(seed).permutation(n),
        None => (0..n).collect(),
    };
    // p and log p per (permuted) row, as torch's softmax / log_softmax in double.
    let mut p = vec![0.0f64; n * classes];
    let mut logp = vec![0.0f64; n * classes];
    for (r, &src) in order.iter().enumerate() {
        let row = &logits[src * classes..][..classes];
        let max = row
            .iter()
            .map(|&v| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let lse = sum.ln();
        for c in 0..classes {
            let z = f64::from(row[c]) - max;
            p[r * classes + c] = z.exp() / sum;
            logp[r * classes + c] = z - lse;
        }
    }
    let mut scores = Vec::with_capacity(splits);
    for i in 0..splits {
        let (a, b) = (i * n / splits, (i + 1) * n / splits);
        let m = (b - a) as f64;
        let mut q = vec![0.0f64; classes];
        for r in a..b {
            for (qc, pc) in q.iter_mut().zip(&p[r * classes..][..classes]) {
                *qc += pc;
            }
        }
        let logq: Vec<f64> = q.iter().map(|v| (v / m).ln()).collect();
        let mut kl_sum = 0.0;
        for r in a..b {
            let kl: f64 = (0..classes)
                .map(|c| p[r * classes + c] * (logp[r * classes + c] - logq[c]))
                .sum();
            kl_sum += kl;
        }
        scores.push((kl_sum / m).exp());
    }
    Ok(mean_std(&scores))
}

/// `(np.mean(x), np.std(x))` (population standard deviation).
fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// FID statistics of one input: `mu (D,)`, `sigma (D, D)` (`np.cov`, N−1 normalisation), plus,
/// when they come from features, the centred features scaled by `1/√(N−1)` (`A (N, D)`,
/// `sigma = AᵀA`), which give FID's trace term through an `N×N` matrix when `N < D`. Then
/// `sigma` itself is computed only if asked for (`--save_stats`, or FID against an `.npz`): a
/// `D×N×D` product that FID between two folders does not need.
#[derive(Clone, Debug)]
pub struct FidStats {
    pub dim: usize,
    pub mu: Vec<f64>,
    sigma: OnceLock<Vec<f64>>,
    scaled_centered: Option<(usize, Vec<f64>)>,
}

impl FidStats {
    /// Statistics of `features (N, D)` row-major; `N ≥ 2`.
    pub fn from_features(features: &[f32], dim: usize) -> Result<Self> {
        let n = features.len() / dim.max(1);
        if n < 2 {
            return Err(Error::invalid(format!(
                "FID needs at least 2 images per input to estimate a covariance, got {n}"
            )));
        }
        let mut mu = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &v) in mu.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        for m in &mut mu {
            *m /= n as f64;
        }
        let scale = 1.0 / ((n - 1) as f64).sqrt();
        let a: Vec<f64> = features
            .chunks_exact(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(&mu)
                    .map(|(&v, m)| (f64::from(v) - m) * scale)
            })
            .collect();
        Ok(Self {
            dim,
            mu,
            sigma: OnceLock::new(),
            scaled_centered: Some((n, a)),
        })
    }

    /// `sigma (D, D)` row-major.
    pub fn sigma(&self) -> &[f64] {
        self.sigma.get_or_init(|| {
            let (n, a) = self
                .scaled_centered
                .as_ref()
                .expect("statistics without sigma come from features");
            // Aᵀ·A: pass A as the left operand transposed by viewing it as (D, N) column-major.
            let at: Vec<f64> = transpose(a, *n, self.dim);
            let mut sigma = matmul(&at, &at, (self.dim, *n, self.dim), true);
            symmetrize(&mut sigma, self.dim);
            sigma
        })
    }

    /// `tr(sigma)`: from `A` (`‖A‖²`) while `sigma` has not been computed.
    fn trace(&self) -> f64 {
        match (self.sigma.get(), &self.scaled_centered) {
            (None, Some((_, a))) => a.iter().map(|v| v * v).sum(),
            _ => {
                let (s, d) = (self.sigma(), self.dim);
                (0..d).map(|i| s[i * d + i]).sum()
            }
        }
    }

    /// Statistics given as `mu (D,)` and `sigma (D, D)` (e.g. from an `.npz`).
    pub fn from_mu_sigma(mu: Vec<f64>, sigma: Vec<f64>) -> Result<Self> {
        let dim = mu.len();
        if sigma.len() != dim * dim {
            return Err(Error::invalid(format!(
                "sigma has {} values, expected {dim}×{dim} for mu of length {dim}",
                sigma.len()
            )));
        }
        Ok(Self {
            dim,
            mu,
            sigma: OnceLock::from(sigma),
            scaled_centered: None,
        })
    }
}

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// `tr((Σ₁Σ₂)^½)`: the sum of the square roots of the eigenvalues of `Σ₁Σ₂`, which equal those
/// of the symmetric PSD `Σ₁^½ Σ₂ Σ₁^½`; with `Σ₁ = AᵀA` (A: N×D) its non-zero ones are also
/// those of `A Σ₂ Aᵀ` (N×N) and with `Σ₂ = BᵀB` of `(ABᵀ)(ABᵀ)ᵀ`. Eigenvalues at rounding
/// level count as 0. (torch-fidelity takes `np.linalg.eigvals` of the non-symmetric `Σ₁Σ₂` and
/// sums the real parts of their complex square roots, so its zero eigenvalues contribute their
/// rounding noise's square roots: the ~1e-3 relative difference on rank-deficient 2048-d
/// covariances.)
fn trace_sqrt_product(s1: &FidStats, s2: &FidStats) -> f64 {
    let d = s1.dim;
    let sym = |m: Vec<f64>, n: usize| -> f64 {
        let mut m = m;
        symmetrize(&mut m, n);
        let (vals, _) = symmetric_eigen(&m, n, false);
        // Eigenvalues below the decomposition's rounding level (n·ε·λmax) are zeros of a
        // rank-deficient product; their square roots would add ~√ε noise each.
        let cut = n as f64 * f64::EPSILON * vals.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        vals.iter()
            .map(|&v| if v > cut { v.sqrt() } else { 0.0 })
            .sum()
    };
    fn low(s: &FidStats) -> Option<&(usize, Vec<f64>)> {
        s.scaled_centered.as_ref().filter(|(n, _)| *n < s.dim)
    }
    match (low(s1), low(s2)) {
        (Some((n1, a)), Some((n2, b))) => {
            let c = matmul(a, b, (*n1, d, *n2), true); // A·Bᵀ (N1, N2)
            if n1 <= n2 {
                sym(matmul(&c, &c, (*n1, *n2, *n1), true), *n1)
            } else {
                let ct = transpose(&c, *n1, *n2);
                sym(matmul(&ct, &ct, (*n2, *n1, *n2), true), *n2)
            }
        }
        (Some((n, a)), None) | (None, Some((n, a))) => {
            let other = if low(s1).is_some() { s2 } else { s1 };
            let as_ = matmul(a, other.sigma(), (*n, d, d), false);
            sym(matmul(&as_, a, (*n, d, *n), true), *n)
        }
        (None, None) => {
            let s = sqrtm_psd(s1.sigma(), d);
            let t = matmul(&s, s2.sigma(), (d, d, d), false);
            sym(matmul(&t, &s, (d, d, d), false), d)
        }
    }
}

/// `fid_statistics_to_metric`: `‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr((Σ₁Σ₂)^½)`.
pub fn frechet_distance(s1: &FidStats, s2: &FidStats) -> Result<f64> {
    if s1.dim != s2.dim {
        return Err(Error::invalid(format!(
            "FID: the two inputs' statistics have dimensions {} and {}",
            s1.dim, s2.dim
        )));
    }
    let diff: f64 = s1
        .mu
        .iter()
        .zip(&s2.mu)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let (tr1, tr2) = (s1.trace(), s2.trace());
    Ok(diff + tr1 + tr2 - 2.0 * trace_sqrt_product(s1, s2))
}

/// KID parameters (torch-fidelity's defaults: 100 subsets of 1000, polynomial kernel of degree
/// 3, `gamma = 1/D`, `coef0 = 1`, seed 2020).
#[derive(Clone, Copy, Debug)]
pub struct KidOptions {
    pub subsets: usize,
    pub subset_size: usize,
    pub seed: u32,
}

/// `kid_features_to_metric`: `(kernel_inception_distance_mean, kernel_inception_distance_std)`,
/// the unbiased MMD² of the polynomial kernel over `subsets` pairs of subsets, drawn per subset
/// with `choice(N₁, m, replace=False)` then `choice(N₂, m, replace=False)` from one
/// `RandomState(seed)`. torch-fidelity computes the kernel matrices in float32 (numpy on float32
/// features); here they are f64.
pub fn kernel_inception_distance(
    f1: &[f32],
    f2: &[f32],
    dim: usize,
    opts: KidOptions,
) -> Result<(f64, f64)> {
    let (n1, n2) = (f1.len() / dim, f2.len() / dim);
    let m = opts.subset_size;
    if n1 < m || n2 < m {
        return Err(Error::invalid(format!(
            "KID subset size {m} is larger than the number of images (input1: {n1}, input2: {n2}); lower --kid_subset_size"
        )));
    }
    if m < 2 || opts.subsets == 0 {
        return Err(Error::invalid(format!(
            "KID needs --kid_subset_size ≥ 2 and --kid_subsets ≥ 1 (got {m} and {})",
            opts.subsets
        )));
    }
    let gamma = 1.0 / dim as f64;
    let mut rng = RandomState::new(opts.seed);
    let gather = |f: &[f32], idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| f[i * dim..][..dim].iter().map(|&v| f64::from(v)))
            .collect()
    };
    let kernel_sum = |x: &[f64], y: &[f64], skip_diag: bool| -> f64 {
        let g = matmul(x, y, (m, dim, m), true);
        g.iter()
            .enumerate()
            .filter(|(i, _)| !skip_diag || i / m != i % m)
            .map(|(_, &v)| (v * gamma + 1.0).powi(3))
            .sum()
    };
    let mut mmds = Vec::with_capacity(opts.subsets);
    for _ in 0..opts.subsets {
        let i1 = rng.choice_without_replacement(n1, m).unwrap_or_default();
        let i2 = rng.choice_without_replacement(n2, m).unwrap_or_default();
        let (x, y) = (gather(f1, &i1), gather(f2, &i2));
        let kxx = kernel_sum(&x, &x, true);
        let kyy = kernel_sum(&y, &y, true);
        let kxy = kernel_sum(&x, &y, false);
        let mf = m as f64;
        mmds.push((kxx + kyy) / (mf * (mf - 1.0)) - 2.0 * kxy / (mf * mf));
    }
    Ok(mean_std(&mmds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize) -> f32 {
        ((i * 2_654_435_761) % 10_007) as f32 / 5003.5 - 1.0
    }

    #[test]
    fn inception_score_of_uniform_and_one_hot_predictions() {
        // Identical rows: p = q, KL = 0, score 1.
        let same = vec![0.3f32; 4 * 10];
        let (m, s) = inception_score(&same, 10, 2, None).unwrap();
        assert!((m - 1.0).abs() < 1e-12 && s.abs() < 1e-12);
        // Confident, distinct classes: score → number of classes per split.
        let mut one_hot = vec![0.0f32; 4 * 4];
        for r in 0..4 {
            one_hot[r * 4 + r] = 60.0;
        }
        let (m, _) = inception_score(&one_hot, 4, 1, Some(2020)).unwrap();
        assert!((m - 4.0).abs() < 1e-9, "{m}");
        assert!(inception_score(&one_hot, 4, 5, None).is_err());
    }

    #[test]
    fn fid_paths_agree_with_the_full_matrix_path() {
        let d = 6;
        let f1: Vec<f32> = (0..4 * d).map(pseudo).collect(); // 4 samples < d: low rank
        let f2: Vec<f32> = (0..5 * d).map(|i| pseudo(i + 999) * 1.5 + 0.2).collect();
        let s1 = FidStats::from_features(&f1, d).unwrap();
        let s2 = FidStats::from_features(&f2, d).unwrap();
        let full1 = FidStats::from_mu_sigma(s1.mu.clone(), s1.sigma().to_vec()).unwrap();
        let full2 = FidStats::from_mu_sigma(s2.mu.clone(), s2.sigma().to_vec()).unwrap();
        let both = frechet_distance(&s1, &s2).unwrap();
        let one = frechet_distance(&s1, &full2).unwrap();
        let other = frechet_distance(&full1, &s2).unwrap();
        let none = frechet_distance(&full1, &full2).unwrap();
        // Same value through the three ways of computing the trace term, to rounding (f64).
        for (v, tol) in [(one, 1e-10), (other, 1e-10), (none, 1e-10)] {
            assert!(
                (v - both).abs() < tol * both.abs().max(1.0),
                "{v} vs {both}"
            );
        }
        // FID of a set with itself is 0 (up to rounding of the square roots).
        assert!(frechet_distance(&s1, &s1).unwrap().abs() < 1e-6);
        assert!(FidStats::from_features(&f1[..d], d).is_err());
    }

    #[test]
    fn kid_is_near_zero_for_identical_sets_and_checks_sizes() {
        let d = 8;
        let f: Vec<f32> = (0..30 * d).map(pseudo).collect();
        let opts = KidOptions {
            subsets: 3,
            subset_size: 30,
            seed: 2020,
        };
        // The same 30 samples on both sides: unbiased MMD² = (2·ΣKt − 2·ΣK)/… small but not 0.
        let (m, _) = kernel_inception_distance(&f, &f, d, opts).unwrap();
        assert!(m.abs() < 0.1, "{m}");
        let too_big = KidOptions {
            subset_size: 31,
            ..opts
        };
        let err = kernel_inception_distance(&f, &f, d, too_big).unwrap_err();
        assert!(err.to_string().contains("subset size 31"));
    }
}
