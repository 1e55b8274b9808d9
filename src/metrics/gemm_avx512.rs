//! `C (M, N) = A (M, K) · B (K, N)` for the Winograd convolutions' small GEMMs, with `A` (the
//! transformed weights) packed once at load time, on AVX-512.
//!
//! Why not the `gemm` crate there: it packs both operands on every call, and the Winograd blocks
//! are short (64–128 tiles, to stay in L2), so re-packing the weights of every block cost about
//! as much as a fifth of the multiply-adds (measured: 20–25 % of the run in its packing
//! routines). With `A` pre-packed and `B` read in place, what is left is the register-blocked
//! kernel: 6 rows × 32 columns of `C` in 12 zmm accumulators, one FMA per broadcast weight and
//! pair of `B` vectors. Other CPUs keep the `gemm` crate (see `winograd.rs`).

/// Rows of `C` per register block (6 × 2 accumulators + 2 `B` vectors + a broadcast: 15 of
/// the 32 zmm registers, leaving the compiler room).
pub const MR: usize = 6;

/// `a (M, K)` row-major → panels of `MR` rows, each stored `k`-major (`MR` values per `k`),
/// rows past `M` zero.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = vec![0.0f32; panels * k * MR];
    for p in 0..panels {
        for r in 0..MR.min(m - p * MR) {
            let row = &a[(p * MR + r) * k..][..k];
            for (kk, &v) in row.iter().enumerate() {
                out[(p * k + kk) * MR + r] = v;
            }
        }
    }
    out
}

/// Whether the kernel can run here.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c (m, n)` (row stride `ldc`) = `A · b`, `A` packed by [`pack_a`] from `(m, k)`, `b (k, n)`
/// row stride `ldb`; with `bias (m)`, `c = relu(A · b + bias)` (the convolutions' epilogue,
/// applied in registers).
///
/// # Safety
/// [`available`] is true; the pointers cover the extents given.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a_packed: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    bias: Option<&[f32]>,
) {
    use std::arch::x86_64::*;
    let mut j0 = 0;
    while j0 < n {
        let cols = 32.min(n - j0);
        // Masks for the two 16-column halves of a partial last block.
        let m0: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            (1u16 << cols) - 1
        };
        let m1: __mmask16 = if cols >= 32 {
            0xffff
        } else if cols > 16 {
            (1u16 << (cols - 16)) - 1
        } else {
            0
        };
        for p in 0..m.div_ceil(MR) {
            // SAFETY (whole block): loads stay inside b's k rows and the masked columns,
            // stores inside c's valid rows and columns; the packed panel holds k·MR floats.
            unsafe {
                let ap = a_packed.add(p * k * MR);
                let mut acc = [_mm512_setzero_ps(); 2 * MR];
                for kk in 0..k {
                    let brow = b.add(kk * ldb + j0);
                    let b0 = _mm512_maskz_loadu_ps(m0, brow);
                    let b1 = _mm512_maskz_loadu_ps(m1, brow.add(16));
                    let a = ap.add(kk * MR);
                    for r in 0..MR {
                        let w = _mm512_set1_ps(*a.add(r));
                        acc[2 * r] = _mm512_fmadd_ps(w, b0, acc[2 * r]);
                        acc[2 * r + 1] = _mm512_fmadd_ps(w, b1, acc[2 * r + 1]);
                    }
                }
                for r in 0..MR.min(m - p * MR) {
                    if let Some(b) = bias {
                        let bv = _mm512_set1_ps(b[p * MR + r]);
                        let zero = _mm512_setzero_ps();
                        acc[2 * r] = _mm512_max_ps(_mm512_add_ps(acc[2 * r], bv), zero);
                        acc[2 * r + 1] = _mm512_max_ps(_mm512_add_ps(acc[2 * r + 1], bv), zero);
                    }
                    let crow = c.add((p * MR + r) * ldc + j0);
                    _mm512_mask_storeu_ps(crow, m0, acc[2 * r]);
                    _mm512_mask_storeu_ps(crow.add(16), m1, acc[2 * r + 1]);
                }
            }
        }
        j0 += 32;
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_product() {
        if !available() {
            return;
        }
        for &(m, n, k) in &[(13, 70, 9), (6, 32, 1), (1, 5, 3), (20, 64, 33)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
            let ldc = n + 3;
            let mut c = vec![f32::NAN; m * ldc];
            let ap = pack_a(&a, m, k);
            // SAFETY: AVX-512 checked; buffers of the sizes given.
            unsafe {
                gemm(
                    m,
                    n,
                    k,
                    ap.as_ptr(),
                    b.as_ptr(),
                    n,
                    c.as_mut_ptr(),
                    ldc,
                    None,
                )
            };
            let bias: Vec<f32> = (0..m).map(|i| i as f32 - 6.0).collect();
            let mut cb = vec![f32::NAN; m * ldc];
            // SAFETY: as above.
            unsafe {
                gemm(
                    m,
                    n,
                    k,
                    ap.as_ptr(),
                    b.as_ptr(),
                    n,
                    cb.as_mut_ptr(),
                    ldc,
                    Some(&bias),
                )
            };
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]).sum();
                    assert_eq!(c[i * ldc + j], want, "({i}, {j}) of {m}x{n}x{k}");
                    assert_eq!(cb[i * ldc + j], (want + bias[i]).max(0.0));
                }
                // Columns past n are untouched.
                assert!(c[i * ldc + n].is_nan() && cb[i * ldc + n].is_nan());
            }
        }
    }
}
