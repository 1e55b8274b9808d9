//! `C (M, N) = A (M, K) · B (K, N)` for the Winograd convolutions' small GEMMs, with `A` (the
//! transformed weights) packed once at load time, on AVX-512.
//!
//! Why not the `gemm` crate there: it packs both operands on every call, and the Winograd blocks
//! are short (64–128 tiles, to stay in L2), so re-packing the weights of every block cost about
//! as much as a fifth of the multiply-adds (measured: 20–25 % of the run in its packing
//! routines). With `A` pre-packed and `B` read in place (copied per strip only when its rows are
//! far apart, see [`gemm`]), what is left is the register-blocked
//! kernel: 8 rows × 32 columns of `C` in 16 zmm accumulators, one FMA per broadcast weight and
//! pair of `B` vectors. Other CPUs keep the `gemm` crate ([`gemm_portable`], the one call of it
//! that the convolutions share).

/// Rows of `C` per register block (8 × 2 accumulators + 2 `B` vectors + a broadcast: 19 of
/// the 32 zmm registers). Every channel count of Inception-v3 is a multiple of 8, so no panel
/// computes padding rows (with 6, the 32- and 64-channel stem layers wasted 11 % and 3 %);
/// measured 1–12 % faster than 6 rows on Inception's shapes.
pub const MR: usize = 8;

/// `a (M, K)` row-major → panels of `MR` rows, each stored `k`-major (`MR` values per `k`),
/// rows past `M` zero.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m.div_ceil(MR) * k * MR];
    pack_a_with(m, k, |i, kk| a[i * k + kk], &mut out);
    out
}

/// [`pack_a`] of the `(m, k)` matrix whose element `(i, kk)` is `at(i, kk)`, into `out`
/// (`⌈m/MR⌉·MR·k` floats, zeroed where rows past `m` go).
pub fn pack_a_with(m: usize, k: usize, at: impl Fn(usize, usize) -> f32, out: &mut [f32]) {
    let panels = m.div_ceil(MR);
    assert_eq!(out.len(), panels * k * MR);
    for p in 0..panels {
        for r in 0..MR.min(m - p * MR) {
            for kk in 0..k {
                out[(p * k + kk) * MR + r] = at(p * MR + r, kk);
            }
        }
    }
}

/// `c (m, n)` (row stride `ldc`) = `a (m, k)` (row stride `lda`) · `b (k, n)` (row stride
/// `ldb`), all row-major, on one thread through the `gemm` crate: the convolutions' GEMM where
/// [`available`] is false.
///
/// # Safety
/// The pointers cover the extents given.
pub unsafe fn gemm_portable(
    (m, n, k): (usize, usize, usize),
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: as the caller promises; `read_dst` false: `c` is only written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            false,
            a,
            1,
            lda as isize,
            b,
            1,
            ldb as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
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

/// Rows of `B` per pass (see [`gemm`]): a packed 32-column strip of 128 rows is 16 KiB, half
/// of Zen 4's L1D, leaving room for the weights streaming through.
const KC: usize = 128;

/// Row strides from which `B` strips are copied to a contiguous buffer first (see [`gemm`]).
const PACK_LDB: usize = 512;

/// `c (m, n)` (row stride `ldc`) = `A · b`, `A` packed by [`pack_a`] from `(m, k)`, `b (k, n)`
/// row stride `ldb`; with `bias (m)`, `c = relu(A · b + bias)` (the convolutions' epilogue,
/// applied in registers).
///
/// `B` is consumed in passes of [`KC`] rows, each 32-column strip reused by every row panel of
/// `A` while it sits in L1; partial sums go through `c`, which does not change the order of
/// the additions. Strips of a `B` with long rows (the 1×1 convolutions read the activations in
/// place) are first copied to a contiguous buffer: with rows 8 KiB apart (Mixed_7's 2048
/// columns) a strip's rows all fall in the same two L1 sets, and the 448 × 2048 × 256 product
/// ran at 38 GFLOP per CPU-second instead of ~100.
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
    let pack = ldb >= PACK_LDB;
    // Only when copying: zeroing 16 KiB on every call cost as much as the smallest Winograd
    // products themselves.
    let mut buf = if pack {
        vec![0.0f32; KC * 32]
    } else {
        Vec::new()
    };
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
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            // SAFETY (whole pass): loads stay inside b's k rows and the masked columns (or the
            // buffer, whose columns past `cols` are zeros), stores inside c's valid rows and
            // columns; the packed panels hold k·MR floats.
            unsafe {
                let (bp, bld, lm0, lm1) = if pack {
                    for kk in 0..kc {
                        let src = b.add((k0 + kk) * ldb + j0);
                        let d = buf.as_mut_ptr().add(kk * 32);
                        _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m0, src));
                        _mm512_storeu_ps(d.add(16), _mm512_maskz_loadu_ps(m1, src.add(16)));
                    }
                    (buf.as_ptr(), 32, 0xffff, 0xffff)
                } else {
                    (b.add(k0 * ldb + j0), ldb, m0, m1)
                };
                for p in 0..m.div_ceil(MR) {
                    let rows = MR.min(m - p * MR);
                    let ap = a_packed.add((p * k + k0) * MR);
                    let mut acc = [_mm512_setzero_ps(); 2 * MR];
                    if k0 > 0 {
                        for r in 0..rows {
                            let crow = c.add((p * MR + r) * ldc + j0);
                            acc[2 * r] = _mm512_maskz_loadu_ps(m0, crow);
                            acc[2 * r + 1] = _mm512_maskz_loadu_ps(m1, crow.add(16));
                        }
                    }
                    for kk in 0..kc {
                        let brow = bp.add(kk * bld);
                        let b0 = _mm512_maskz_loadu_ps(lm0, brow);
                        let b1 = _mm512_maskz_loadu_ps(lm1, brow.add(16));
                        let a = ap.add(kk * MR);
                        for r in 0..MR {
                            let w = _mm512_set1_ps(*a.add(r));
                            acc[2 * r] = _mm512_fmadd_ps(w, b0, acc[2 * r]);
                            acc[2 * r + 1] = _mm512_fmadd_ps(w, b1, acc[2 * r + 1]);
                        }
                    }
                    let last = k0 + kc == k;
                    for r in 0..rows {
                        if let (true, Some(b)) = (last, bias) {
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
            k0 += kc;
        }
        j0 += 32;
    }
}

/// `dst[i] = src[2·i]` (the stride-2 convolutions' im2col rows): two loads and one
/// two-register permute per 16 floats instead of 16 scalar moves (the scalar gather was 4 % of
/// `sg2im metrics`'s time).
///
/// # Safety
/// [`available`] is true; `src.len() ≥ 2·dst.len() − 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn copy_every_other(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::*;
    debug_assert!(src.len() + 1 >= 2 * dst.len());
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut i = 0;
    while i < dst.len() {
        let n = 16.min(dst.len() - i);
        // Floats of `src` this step may read: 2n − 1 from 2i (masked: none past the end).
        let avail = (src.len() - 2 * i).min(32);
        let lo_mask: __mmask16 = if avail >= 16 {
            0xffff
        } else {
            (1 << avail) - 1
        };
        let hi_mask: __mmask16 = if avail >= 32 {
            0xffff
        } else if avail > 16 {
            (1 << (avail - 16)) - 1
        } else {
            0
        };
        // SAFETY: masked loads read only inside `src`, the masked store only inside `dst`.
        unsafe {
            let p = src.as_ptr().add(2 * i);
            let lo = _mm512_maskz_loadu_ps(lo_mask, p);
            let hi = _mm512_maskz_loadu_ps(hi_mask, p.add(16));
            let v = _mm512_permutex2var_ps(lo, evens, hi);
            let store: __mmask16 = if n == 16 { 0xffff } else { (1 << n) - 1 };
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), store, v);
        }
        i += 16;
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn copy_every_other_takes_the_even_floats() {
        if !available() {
            return;
        }
        for n in [1, 5, 15, 16, 17, 31, 32, 33, 75] {
            for extra in [0, 1] {
                let src: Vec<f32> = (0..2 * n - 1 + extra).map(|i| i as f32).collect();
                let mut dst = vec![f32::NAN; n + 1];
                // SAFETY: AVX-512 checked; src holds 2n − 1 floats at least.
                unsafe { copy_every_other(&mut dst[..n], &src) };
                let want: Vec<f32> = (0..n).map(|i| (2 * i) as f32).collect();
                assert_eq!(dst[..n], want[..], "n {n}");
                assert!(dst[n].is_nan(), "wrote past the end (n {n})");
            }
        }
    }

    #[test]
    fn matches_a_plain_product() {
        if !available() {
            return;
        }
        // (m, n, k, ldb): partial panels and strips, several passes over K (k > KC, the bias
        // applied after the last only), `B` rows long enough to be copied (ldb ≥ PACK_LDB).
        for &(m, n, k, ldb) in &[
            (13, 70, 9, 70),
            (6, 32, 1, 32),
            (1, 5, 3, 5),
            (20, 64, 33, 64),
            (19, 45, 2 * KC + 7, 50),
            (11, 70, KC + 3, PACK_LDB + 3),
            (16, 40, 5, PACK_LDB),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * ldb).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
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
                    ldb,
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
                    ldb,
                    cb.as_mut_ptr(),
                    ldc,
                    Some(&bias),
                )
            };
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|kk| a[i * k + kk] * b[kk * ldb + j]).sum();
                    assert_eq!(c[i * ldc + j], want, "({i}, {j}) of {m}x{n}x{k}");
                    assert_eq!(cb[i * ldc + j], (want + bias[i]).max(0.0));
                }
                // Columns past n are untouched.
                assert!(c[i * ldc + n].is_nan() && cb[i * ldc + n].is_nan());
            }
        }
    }
}
