//! Winograd minimal filtering for Inception's stride-1 convolutions (3×3, 5×5, 1×7, 7×1, 1×3,
//! 3×1): fewer multiplications than the direct im2col GEMM, which is what the 2-core CPU budget
//! of `sg2im metrics` needs (a direct Inception-v3 forward pass is 5.7 G multiply-adds per image,
//! more than the machine's FMA peak allows for the speed goal; see BENCHMARKS.md).
//!
//! Along each axis a convolution with a kernel of `r` taps producing `m` outputs per tile is
//! F(m, r): a tile of `α = m + r − 1` inputs `d` and the kernel `g` give the outputs
//! `y = Aᵀ[(G g) ⊙ (Bᵀ d)]` with `α` multiplications instead of `m·r`. A 2-D kernel `kh × kw`
//! uses F(mh, kh) along H and F(mw, kw) along W (an axis with one tap keeps `m = α = 1`, so 1×7
//! is a 1-D transform). Summed over input channels, the `α_h·α_w` element-wise products become
//! `α_h·α_w` GEMMs `U_ξ (Co, Ci) · V_ξ (Ci, tiles)`, done here on blocks of tiles so that the
//! transformed inputs and products stay in cache.
//!
//! The matrices are built by the modified Toom-Cook construction from `α − 1` finite
//! interpolation points and the point at infinity, in f64, then rounded to f32. The points
//! 0, ±1, ±2, ±½ keep the transforms' entries small (powers of two mostly), which is what keeps
//! the float32 error close to the direct convolution's (measured in the tests below and in
//! tests/metrics.rs).

use super::gemm_avx512;
use super::inception::{Act, Pool};
use super::linalg;
use crate::kernels::host::SharedMut;
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// Each thread's block buffers (transformed inputs, products), kept across blocks and
    /// calls: allocating and zero-filling them per task showed up as memset in the profile.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Finite interpolation points, in the order they are taken (the first `α − 1`).
const POINTS: [f64; 9] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0];

/// Tiles processed together in the transforms: one SIMD register of f32 lanes on AVX-512, two
/// on AVX2.
const LANES: usize = 16;

/// Block lengths are multiples of the `gemm` crate's AVX-512 f32 micro-kernel height (4
/// registers of 16 along our tile axis): other lengths leave remainders for its narrower,
/// slower kernels (measured 20 % of the run time in them with blocks of 48).
const GEMM_PANEL: usize = 64;

/// Floats of a block's transformed inputs and products (512 KiB: half of a core's L2; measured
/// best of 128 K–4 M floats on Inception's layers, larger blocks spill to L3).
const BLOCK_FLOATS: usize = 1 << 17;

/// F(m, r) along one axis.
#[derive(Clone, Debug)]
struct Axis {
    m: usize,
    r: usize,
    alpha: usize,
    /// `G (α, r)`: kernel transform (f64: applied once, at load time).
    g: Vec<f64>,
    /// `Bᵀ (α, α)` (input transform) and `Aᵀ (m, α)` (output transform) as lists of non-zero
    /// `(column, value)` per row: about half of their entries are zero, and skipping them by a
    /// test per entry cost more than the arithmetic.
    bt_nz: Sparse,
    at_nz: Sparse,
    /// The same transforms exploiting the ± pairs of interpolation points, where the point set
    /// is symmetric (even `α`): see [`Paired`].
    paired: Option<Paired>,
}

type Sparse = Vec<Vec<(usize, f32)>>;

/// With the finite points `0, p₁, −p₁, p₂, −p₂, …` (even `α`), each pair's rows of `Bᵀ` and
/// columns of `Aᵀ` differ only in the sign of their odd-degree terms: `Bᵀ[−p][t] =
/// (−1)ᵗ·Bᵀ[p][t]` and `Aᵀ[i][−p] = (−1)ⁱ·Aᵀ[i][p]`. So a pair's two input-transform rows are
/// `E ± O` (the even and odd parts of one row's dot product), and the output transform needs
/// each pair's inputs only as their sum (even rows) or difference (odd rows): about 35 % fewer
/// multiply-adds for F(6, 3), whose transforms were a fifth of `sg2im metrics`'s time.
#[derive(Clone, Debug)]
struct Paired {
    /// `Bᵀ (α, α)` row-major, dense.
    bt: Vec<f32>,
    /// `Aᵀ[i][1 + 2k] = p_kⁱ`: `(m, pairs)` row-major.
    at: Vec<f32>,
}

impl Paired {
    /// The paired form of `bt (α, α)` and `at (m, α)`, if their entries have its symmetry
    /// (checked exactly: the transforms must stay the same numbers).
    fn new(bt: &[f32], at: &[f32], m: usize, alpha: usize) -> Option<Self> {
        if alpha < 4 || alpha % 2 == 1 {
            return None;
        }
        let pairs = (alpha - 2) / 2;
        let sign = |t: usize| if t.is_multiple_of(2) { 1.0 } else { -1.0 };
        let last = alpha - 1;
        let row = |j: usize| &bt[j * alpha..][..alpha];
        let bt_ok = (0..alpha).all(|t| {
            // Row 0 even, the last row odd, pair rows without the constant and top terms.
            (t % 2 == 0 || row(0)[t] == 0.0)
                && (t % 2 == 1 || row(last)[t] == 0.0)
                && (1..=pairs).all(|k| {
                    let (a, b) = (row(2 * k - 1), row(2 * k));
                    b[t] == sign(t) * a[t] && ((1..last).contains(&t) || a[t] == 0.0)
                })
        });
        let at_ok = (0..m).all(|i| {
            let r = &at[i * alpha..][..alpha];
            (1..=pairs).all(|k| r[2 * k] == sign(i) * r[2 * k - 1])
                && r[0] == if i == 0 { 1.0 } else { 0.0 }
                && r[last] == if i == m - 1 { 1.0 } else { 0.0 }
        });
        (bt_ok && at_ok).then(|| Paired {
            bt: bt.to_vec(),
            at: (0..m)
                .flat_map(|i| (1..=pairs).map(move |k| at[i * alpha + 2 * k - 1]))
                .collect(),
        })
    }
}

fn sparse(mat: &[f32], cols: usize) -> Sparse {
    mat.chunks_exact(cols)
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|&(_, &v)| v != 0.0)
                .map(|(i, &v)| (i, v))
                .collect()
        })
        .collect()
}

/// Coefficients (lowest degree first) of `∏ (x − p)` over `points`.
fn poly_from_roots(points: &[f64]) -> Vec<f64> {
    let mut c = vec![1.0];
    for &p in points {
        let mut next = vec![0.0; c.len() + 1];
        for (i, &v) in c.iter().enumerate() {
            next[i + 1] += v;
            next[i] -= p * v;
        }
        c = next;
    }
    c
}

impl Axis {
    /// F(m, r); `r == 1` must come with `m == 1` (identity transforms).
    fn new(m: usize, r: usize) -> Self {
        let alpha = m + r - 1;
        if alpha == 1 {
            return Axis {
                m,
                r,
                alpha,
                g: vec![1.0],
                bt_nz: vec![vec![(0, 1.0)]],
                at_nz: vec![vec![(0, 1.0)]],
                paired: None,
            };
        }
        assert!(alpha - 1 <= POINTS.len(), "F({m}, {r}) needs more points");
        let pts = &POINTS[..alpha - 1];
        let mut bt = vec![0.0f32; alpha * alpha];
        let mut g = vec![0.0f64; alpha * r];
        let mut at = vec![0.0f32; m * alpha];
        // Linear convolution s = g ∗ h is recovered from s(p_j) = g(p_j)·h(p_j) at the finite
        // points (Lagrange basis L_j = ∏_{l≠j}(x − p_l) / f_j) plus the product of the leading
        // coefficients (the point at infinity, times ∏(x − p_l)). Correlation — what a
        // convolution layer computes — is its transpose: Aᵀ = Vandermonde of the data side,
        // G = Vandermonde of the kernel side with the 1/f_j folded in, Bᵀ = the basis
        // polynomials' coefficients.
        for (j, &pj) in pts.iter().enumerate() {
            let others: Vec<f64> = pts
                .iter()
                .enumerate()
                .filter(|&(l, _)| l != j)
                .map(|(_, &p)| p)
                .collect();
            let f: f64 = others.iter().map(|&p| pj - p).product();
            for (t, c) in poly_from_roots(&others).into_iter().enumerate() {
                bt[j * alpha + t] = c as f32;
            }
            for k in 0..r {
                g[j * r + k] = pj.powi(k as i32) / f;
            }
            for i in 0..m {
                at[i * alpha + j] = pj.powi(i as i32) as f32;
            }
        }
        let last = alpha - 1;
        for (t, c) in poly_from_roots(pts).into_iter().enumerate() {
            bt[last * alpha + t] = c as f32;
        }
        g[last * r + r - 1] = 1.0;
        at[(m - 1) * alpha + last] = 1.0;
        Axis {
            m,
            r,
            alpha,
            bt_nz: sparse(&bt, alpha),
            at_nz: sparse(&at, alpha),
            paired: Paired::new(&bt, &at, m, alpha),
            g,
        }
    }
}

/// A stride-1 convolution (+ bias, ReLU) in Winograd form.
#[derive(Clone, Debug)]
pub struct WinogradConv {
    co: usize,
    ci: usize,
    ph: usize,
    pw: usize,
    y: Axis,
    x: Axis,
    /// The transformed kernels, in the layout of the GEMM that multiplies them.
    u: Kernels,
    b: Vec<f32>,
    /// Transform code to run: 2 AVX-512, 1 AVX2 + FMA, 0 portable ([`simd::level`]; tests
    /// lower it to check every path on one machine).
    simd: u8,
}

/// `U (α_h·α_w, Co, Ci)`: one form only (the weights of the 3×3 layers grow 4× in Winograd
/// form, so keeping both would add ~100 MB to the network's memory).
#[derive(Clone, Debug)]
enum Kernels {
    /// `U_ξ` packed for [`gemm_avx512`], one after the other (where the CPU has AVX-512).
    Packed(Vec<f32>),
    /// Row-major, for the `gemm` crate.
    Plain(Vec<f32>),
}

/// The output geometry of one call.
#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    /// The input's height and width, and how far its patches start before its first row and
    /// column: the padding when it is read in place, 0 for a zero-padded copy.
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
    /// Tiles per column and per row.
    th: usize,
    tw: usize,
}

impl WinogradConv {
    /// `w (Co, Ci, kh, kw)` row-major, bias `b (Co)`, padding `(ph, pw)`, and `mh × mw` outputs
    /// per tile (`mh == 1` when `kh == 1`, likewise for W).
    pub fn new(
        w: &[f32],
        b: &[f32],
        (co, ci): (usize, usize),
        (kh, kw): (usize, usize),
        (ph, pw): (usize, usize),
        (mh, mw): (usize, usize),
    ) -> Self {
        let pack = gemm_avx512::available();
        Self::with_gemm(w, b, (co, ci), (kh, kw), (ph, pw), (mh, mw), pack)
    }

    /// [`new`](Self::new), with the kernels packed for [`gemm_avx512`] or not (`pack` only
    /// where the CPU has AVX-512; tests run both GEMMs on one machine).
    fn with_gemm(
        w: &[f32],
        b: &[f32],
        (co, ci): (usize, usize),
        (kh, kw): (usize, usize),
        (ph, pw): (usize, usize),
        (mh, mw): (usize, usize),
        pack: bool,
    ) -> Self {
        assert_eq!(w.len(), co * ci * kh * kw);
        assert!((kh > 1 || mh == 1) && (kw > 1 || mw == 1));
        // A tile row fits one SIMD register, a patch row one load (the AVX-512 transforms rely
        // on both).
        assert!(mw <= LANES && mw + kw - 1 <= LANES);
        let (y, x) = (Axis::new(mh, kh), Axis::new(mw, kw));
        let (ah, aw) = (y.alpha, x.alpha);
        // U = G_h·g·G_wᵀ for every (o, c) at once: one f64 GEMM `T (ξ, kh·kw)` by the kernels
        // `(Co·Ci, kh·kw)` transposed, `T[(p, q)][(i, j)] = G_h[p][i]·G_w[q][j]` (done at load
        // time; per-kernel loops and a flattening iterator took 0.2 s of the command's wall time).
        let (xi, kk) = (ah * aw, kh * kw);
        let mut t = vec![0.0f64; xi * kk];
        for (pq, row) in t.chunks_exact_mut(kk).enumerate() {
            let (p, q) = (pq / aw, pq % aw);
            for (ij, v) in row.iter_mut().enumerate() {
                *v = y.g[p * kh + ij / kw] * x.g[q * kw + ij % kw];
            }
        }
        let g: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        let uf = linalg::matmul(&t, &g, (xi, kk, co * ci), true); // (ξ, Co·Ci)
        drop(g);
        let at = |e: usize, o: usize, c: usize| uf[(e * co + o) * ci + c] as f32;
        let u = if pack {
            let panel = co.div_ceil(gemm_avx512::MR) * gemm_avx512::MR * ci;
            let mut up = vec![0.0f32; xi * panel];
            up.par_chunks_mut(panel)
                .enumerate()
                .for_each(|(e, dst)| gemm_avx512::pack_a_with(co, ci, |o, c| at(e, o, c), dst));
            Kernels::Packed(up)
        } else {
            let mut u = vec![0.0f32; xi * co * ci];
            u.par_chunks_mut(co * ci).enumerate().for_each(|(e, dst)| {
                for (oc, d) in dst.iter_mut().enumerate() {
                    *d = at(e, oc / ci, oc % ci);
                }
            });
            Kernels::Plain(u)
        };
        WinogradConv {
            co,
            ci,
            ph,
            pw,
            y,
            x,
            u,
            b: b.to_vec(),
            simd: simd::level(),
        }
    }

    /// `relu(conv(x, w) + b)`, stride 1.
    ///
    /// # Shapes
    /// `x (Ci, N, H, W)` → `(Co, N, H + 2·ph − kh + 1, W + 2·pw − kw + 1)`.
    pub fn forward(&self, x: &Act) -> Act {
        let oh = x.h + 2 * self.ph + 1 - self.y.r;
        let ow = x.w + 2 * self.pw + 1 - self.x.r;
        let mut data = vec![0.0; self.co * x.n * oh * ow];
        self.forward_into(x, &mut data, &Pool::default());
        Act {
            c: self.co,
            n: x.n,
            h: oh,
            w: ow,
            data,
        }
    }

    /// [`forward`](Self::forward) into `out (Co, N, H′, W′)`, every element of which is
    /// written; the padded input copy comes from `pool`.
    pub(crate) fn forward_into(&self, x: &Act, out: &mut [f32], pool: &Pool) {
        debug_assert_eq!(x.c, self.ci);
        let oh = x.h + 2 * self.ph + 1 - self.y.r;
        let ow = x.w + 2 * self.pw + 1 - self.x.r;
        assert_eq!(out.len(), self.co * x.n * oh * ow);
        let (th, tw) = (oh.div_ceil(self.y.m), ow.div_ceil(self.x.m));
        // The AVX-512 gather of multi-column patches reads the input in place, with masked
        // loads that leave the padding and the last tiles' overhang zero (the padded copy
        // below was 3–4 % of `sg2im metrics`'s time, memmove and zero fills).
        if self.simd == 2 && self.x.alpha > 1 {
            let g = Geo {
                n: x.n,
                h: x.h,
                w: x.w,
                ph: self.ph,
                pw: self.pw,
                oh,
                ow,
                th,
                tw,
            };
            return self.blocks(x, g, out);
        }
        // Elsewhere: a zero-padded copy of the input covering every tile's whole patch (the
        // padding, and the last tiles' overhang), so that the input transform reads without
        // bounds tests. It is at least `(H + 2·ph) × (W + 2·pw)`; only its border is zeroed (the
        // buffer is recycled, and the interior is overwritten).
        let (hp, wp) = (
            th * self.y.m + self.y.alpha - self.y.m,
            tw * self.x.m + self.x.alpha - self.x.m,
        );
        debug_assert!(hp >= x.h + self.ph && wp >= x.w + self.pw);
        let mut xp = pool.take(x.c * x.n * hp * wp);
        xp.par_chunks_mut(hp * wp)
            .zip(x.data.par_chunks(x.h * x.w))
            .for_each(|(dst, src)| {
                let (top, rows) = dst.split_at_mut(self.ph * wp);
                top.fill(0.0);
                let (mid, bottom) = rows.split_at_mut(x.h * wp);
                bottom.fill(0.0);
                for (d, row) in mid.chunks_exact_mut(wp).zip(src.chunks_exact(x.w)) {
                    let (left, rest) = d.split_at_mut(self.pw);
                    left.fill(0.0);
                    let (inner, right) = rest.split_at_mut(x.w);
                    inner.copy_from_slice(row);
                    right.fill(0.0);
                }
            });
        let xpad = Act {
            c: x.c,
            n: x.n,
            h: hp,
            w: wp,
            data: xp,
        };
        let g = Geo {
            n: x.n,
            h: hp,
            w: wp,
            ph: 0,
            pw: 0,
            oh,
            ow,
            th,
            tw,
        };
        self.blocks(&xpad, g, out);
        pool.give(xpad.data);
    }

    /// Every block of tiles, in parallel, from the input `x` as `g` describes it.
    fn blocks(&self, x: &Act, g: Geo, out: &mut [f32]) {
        let tiles = g.n * g.th * g.tw;
        let xi = self.y.alpha * self.x.alpha;
        let threads = rayon::current_num_threads().max(1);
        // Blocks of whole GEMM column panels: the `gemm` crate's 64, or 32 for the packed
        // kernel (measured 1 % faster than 64 on the whole command; 16 is 8 % slower).
        let panel = match self.u {
            Kernels::Packed(_) => 32,
            Kernels::Plain(_) => GEMM_PANEL,
        };
        // Blocks that fit the cache budget, several per thread, whole SIMD groups.
        let block = (BLOCK_FLOATS / (xi * (self.ci + self.co)))
            .min(tiles.div_ceil(4 * threads))
            .clamp(panel, 4096)
            .div_ceil(panel)
            * panel;
        let dst = SharedMut(out.as_mut_ptr());
        (0..tiles.div_ceil(block)).into_par_iter().for_each(|bi| {
            let t0 = bi * block;
            let len = block.min(tiles - t0);
            SCRATCH.with(|s| {
                let (v, m) = &mut *s.borrow_mut();
                self.block(x, g, (t0, len), v, m, dst);
            });
        });
    }

    /// Tiles `[t0, t0 + len)`: input transform into `v (ξ, Ci, len)`, one GEMM per ξ into
    /// `m (ξ, Co, len)`, output transform (+ bias, ReLU) into `dst (Co, N, H′, W′)`.
    fn block(
        &self,
        x: &Act,
        g: Geo,
        (t0, len): (usize, usize),
        v: &mut Vec<f32>,
        m: &mut Vec<f32>,
        dst: SharedMut,
    ) {
        let xi = self.y.alpha * self.x.alpha;
        // Rows of `v` and `m` hold whole SIMD groups (see `padded`).
        let lenp = padded(len);
        // Every element is written below (the GEMM does not read `m`: β = 0), so the buffers
        // are only grown, never cleared.
        let (sv, sm) = (xi_stride(self.ci * lenp), xi_stride(self.co * lenp));
        grow(v, xi * sv);
        grow(m, xi * sm);
        simd::input_transform(self, x, g, (t0, len), v);
        #[cfg(target_arch = "x86_64")]
        if let Kernels::Packed(up) = &self.u {
            let panel = self.co.div_ceil(gemm_avx512::MR) * gemm_avx512::MR * self.ci;
            for e in 0..xi {
                // SAFETY: packed kernels exist only where AVX-512 does; (Co, Ci) · (Ci, lenp) →
                // (Co, lenp) slices of the buffers above.
                unsafe {
                    gemm_avx512::gemm(
                        self.co,
                        lenp,
                        self.ci,
                        up.as_ptr().add(e * panel),
                        v.as_ptr().add(e * sv),
                        lenp,
                        m.as_mut_ptr().add(e * sm),
                        lenp,
                        None,
                    );
                }
            }
            simd::output_transform(self, m, g, (t0, len), dst);
            return;
        }
        let Kernels::Plain(u) = &self.u else {
            unreachable!("kernels are packed only where AVX-512 runs them")
        };
        for e in 0..xi {
            // SAFETY: row-major (Co, Ci) · (Ci, lenp) → (Co, len) slices of the buffers above.
            unsafe {
                gemm_avx512::gemm_portable(
                    (self.co, lenp, self.ci),
                    u.as_ptr().add(e * self.co * self.ci),
                    self.ci,
                    v.as_ptr().add(e * sv),
                    lenp,
                    m.as_mut_ptr().add(e * sm),
                    lenp,
                );
            }
        }
        simd::output_transform(self, m, g, (t0, len), dst);
    }

    /// Where tile `t` lies: image, first output row, first output column.
    #[inline(always)]
    fn tile_origin(&self, g: Geo, t: usize) -> (usize, usize, usize) {
        let (n, r) = (t / (g.th * g.tw), t % (g.th * g.tw));
        (n, (r / g.tw) * self.y.m, (r % g.tw) * self.x.m)
    }

    /// `V_ξ[c][t] = (Bᵀ_h · d · B_w)[ξ]` for the `α_h × α_w` input patch `d` of each tile, read
    /// from the zero-padded input `x`. Tiles go in groups of `LANES`, one tile per SIMD lane.
    #[inline(always)]
    fn input_transform_impl<const FMA: bool, const AVX512: bool>(
        &self,
        x: &Act,
        g: Geo,
        (t0, len): (usize, usize),
        v: &mut [f32],
    ) {
        let (ah, aw) = (self.y.alpha, self.x.alpha);
        let plane = g.h * g.w;
        let mut patch = vec![[0.0f32; LANES]; ah * aw];
        let mut half = vec![[0.0f32; LANES]; ah * aw];
        let mut res = vec![[0.0f32; LANES]; ah * aw];
        // Offsets of the patch's pixels from its top-left corner.
        let offsets: Vec<usize> = (0..ah * aw).map(|k| (k / aw) * g.w + k % aw).collect();
        let lenp = padded(len);
        let sv = xi_stride(self.ci * lenp);
        // Each group's lanes' patch corners in channel 0 (lanes past the block repeat lane 0;
        // negative where a patch starts in the padding of an input read in place), which of
        // the patch rows lie inside the input and, as a mask, which columns; for one-column
        // patches (always from a padded copy), its runs of side-by-side patches. Channels go
        // in the outer loop so that reads from the input and writes to `v` are sequential.
        let (h, w) = (g.h as isize, g.w as isize);
        let groups: Vec<Group> = (0..len)
            .step_by(LANES)
            .map(|l0| {
                let lanes = LANES.min(len - l0);
                let mut grp = Group {
                    l0,
                    base: [0; LANES],
                    rows: [(0, 0); LANES],
                    cols: [0; LANES],
                };
                for l in 0..LANES {
                    let (n, oy, ox) = self.tile_origin(g, t0 + l0 + if l < lanes { l } else { 0 });
                    let (iy, ix) = (oy as isize - g.ph as isize, ox as isize - g.pw as isize);
                    grp.base[l] = (n * plane) as isize + iy * w + ix;
                    grp.rows[l] = (
                        (-iy).clamp(0, ah as isize) as usize,
                        (h - iy).clamp(0, ah as isize) as usize,
                    );
                    grp.cols[l] = (0..aw)
                        .filter(|&j| (0..w).contains(&(ix + j as isize)))
                        .fold(0, |m, j| m | 1 << j);
                }
                grp
            })
            .collect();
        debug_assert!(
            g.ph + g.pw == 0 || (AVX512 && aw > 1),
            "only the AVX-512 row gather reads an unpadded input"
        );
        #[cfg(target_arch = "x86_64")]
        let runs: Vec<Vec<avx512::Run>> = groups
            .iter()
            .map(|grp| {
                if AVX512 && aw == 1 {
                    let offs: Vec<usize> = grp.base[..LANES.min(len - grp.l0)]
                        .iter()
                        .map(|&b| b as usize)
                        .collect();
                    avx512::segments(&offs, |_| 0)
                } else {
                    Vec::new()
                }
            })
            .collect();
        for c in 0..self.ci {
            for (gi, grp) in groups.iter().enumerate() {
                let l0 = grp.l0;
                #[cfg(target_arch = "x86_64")]
                if AVX512 {
                    // SAFETY: AVX512 is set only where the CPU has AVX-512 (see `simd`); the
                    // masked loads read the pixels of the lanes' patches that lie inside the
                    // input (rows and column masks above), from a padded copy where aw == 1.
                    unsafe {
                        let src = x.data.as_ptr().add(c * g.n * plane);
                        if aw == 1 {
                            avx512::gather_runs(src, &runs[gi], g.w, &mut patch);
                        } else {
                            avx512::gather_rows(src, grp, g.w, (ah, aw), &mut patch);
                        }
                    }
                }
                if !AVX512 {
                    let src = &x.data[c * g.n * plane..][..g.n * plane];
                    for (p, &off) in patch.iter_mut().zip(&offsets) {
                        for (d, &b) in p.iter_mut().zip(&grp.base) {
                            let b = b as usize;
                            debug_assert!(b + off < src.len());
                            // SAFETY: the padded input covers every tile's patch (see
                            // `forward_into`).
                            *d = unsafe { *src.get_unchecked(b + off) };
                        }
                    }
                }
                // Bᵀ_h along H, then Bᵀ_w along W (an axis with one tap needs no transform).
                let rows = if ah > 1 {
                    input_pass::<FMA>(&self.y, aw, |i| &patch[i], &mut half, Dir::Rows);
                    &half
                } else {
                    &patch
                };
                let done = if aw > 1 {
                    input_pass::<FMA>(&self.x, ah, |i| &rows[i], &mut res, Dir::Cols);
                    &res
                } else {
                    rows
                };
                for (e, r) in done.iter().enumerate() {
                    put(&mut v[e * sv + c * lenp + l0..], r);
                }
            }
        }
    }

    /// `out = relu(Aᵀ_h · M · A_w + b)` for each tile, written to the output pixels inside the
    /// image.
    #[inline(always)]
    fn output_transform_impl<const FMA: bool, const AVX512: bool>(
        &self,
        m: &[f32],
        g: Geo,
        (t0, len): (usize, usize),
        dst: SharedMut,
    ) {
        let (ah, aw) = (self.y.alpha, self.x.alpha);
        let (mh, mw) = (self.y.m, self.x.m);
        let mut half = vec![[0.0f32; LANES]; mh * aw];
        let mut res = vec![[0.0f32; LANES]; mh * mw];
        let ohw = g.oh * g.ow;
        let lenp = padded(len);
        let sm = xi_stride(self.co * lenp);
        // Each group's lanes' first output pixel (offset in one output plane of channel 0) and
        // how many of its rows and columns lie inside the image; for one-column tiles, its runs
        // of side-by-side tiles. Channels go in the outer loop so that reads from `m` and
        // writes to the output are sequential streams.
        let groups: Vec<(usize, Vec<Place>)> = (0..len)
            .step_by(LANES)
            .map(|l0| {
                let place = (l0..len.min(l0 + LANES))
                    .map(|t| {
                        let (n, oy, ox) = self.tile_origin(g, t0 + t);
                        (
                            n * ohw + oy * g.ow + ox,
                            mh.min(g.oh - oy),
                            mw.min(g.ow - ox),
                        )
                    })
                    .collect();
                (l0, place)
            })
            .collect();
        #[cfg(target_arch = "x86_64")]
        let runs: Vec<Vec<avx512::Run>> = groups
            .iter()
            .map(|(_, place)| {
                if AVX512 && mw == 1 {
                    let offs: Vec<usize> = place.iter().map(|p| p.0).collect();
                    avx512::segments(&offs, |l| place[l].1)
                } else {
                    Vec::new()
                }
            })
            .collect();
        for o in 0..self.co {
            for (gi, (l0, place)) in groups.iter().enumerate() {
                let l0 = *l0;
                let b = self.b[o];
                // The first pass reads the products in place (copying them out first cost
                // a store and a reload per group).
                let load = |e: usize| group(&m[e * sm + o * lenp + l0..]);
                let res: &mut [[f32; LANES]] = if ah > 1 {
                    output_pass::<FMA>(&self.y, aw, load, &mut half, Dir::Rows);
                    if aw > 1 {
                        output_pass::<FMA>(&self.x, mh, |i| &half[i], &mut res, Dir::Cols);
                        &mut res
                    } else {
                        &mut half
                    }
                } else {
                    output_pass::<FMA>(&self.x, mh, load, &mut res, Dir::Cols);
                    &mut res
                };
                for r in res.iter_mut() {
                    for v in r.iter_mut() {
                        *v = (*v + b).max(0.0);
                    }
                }
                let base = o * g.n * ohw;
                #[cfg(target_arch = "x86_64")]
                if AVX512 {
                    // SAFETY: AVX512 only where the CPU has it; the stores write this block's
                    // tiles' pixels inside the output, which only this task handles.
                    unsafe {
                        let d = dst.ptr().add(base);
                        if mw == 1 {
                            avx512::store_runs(res, &runs[gi], g.ow, d);
                        } else {
                            avx512::store_transposed(res, place, (mh, mw), g.ow, d);
                        }
                    }
                    continue;
                }
                for (l, &(off, rows, cols)) in place.iter().enumerate() {
                    // SAFETY: inside this output's (Co, N, H′, W′) buffer; the pixels belong to
                    // this lane's tile, which only this task handles.
                    let d = unsafe { dst.ptr().add(base + off) };
                    let ext = (rows, cols, mw);
                    match (cols == mw, mw) {
                        (true, 1) => store_tile::<1>(res, l, d, g.ow, ext),
                        (true, 2) => store_tile::<2>(res, l, d, g.ow, ext),
                        (true, 3) => store_tile::<3>(res, l, d, g.ow, ext),
                        (true, 4) => store_tile::<4>(res, l, d, g.ow, ext),
                        _ => store_tile::<0>(res, l, d, g.ow, ext),
                    }
                }
            }
        }
    }
}

/// Where a tile's outputs go: offset of its first pixel in one output plane of channel 0,
/// rows and columns inside the image.
type Place = (usize, usize, usize);

/// One SIMD group of tiles for the input transform: its first tile (in the block), each lane's
/// patch corner as an offset into channel 0 of the input (negative in the padding), the range
/// of patch rows inside the input, and the mask of patch columns inside it.
struct Group {
    l0: usize,
    base: [isize; LANES],
    rows: [(usize, usize); LANES],
    cols: [u16; LANES],
}

/// Row length of a block's `v` and `m` for `len` tiles: whole SIMD groups, so that every group
/// moves as one array (with a partial last group, the compiler merged the whole and partial
/// copies into one `memcpy` call per group: 5 % of the run time). The lanes past `len` hold
/// copies of a real tile and are never stored.
fn padded(len: usize) -> usize {
    len.div_ceil(LANES) * LANES
}

/// Distance between the `ξ` slices of a block's `v` or `m` (`n` floats each). The transforms
/// touch one SIMD group in each of the `α_h·α_w` slices in turn; with slices a multiple of 4 KiB
/// apart (e.g. 32 channels × 64 tiles) those all fall in the same L1 set and evict each other
/// (measured: a quarter of the output transform's time waiting on those loads). Rounding up to
/// 4 KiB and adding an odd number of cache lines spreads them over distinct sets.
fn xi_stride(n: usize) -> usize {
    n.next_multiple_of(1024) + 13 * LANES
}

/// One SIMD group stored to `dst[..LANES]` as an array move.
#[inline(always)]
fn put(dst: &mut [f32], src: &[f32; LANES]) {
    let d: &mut [f32; LANES] = (&mut dst[..LANES]).try_into().expect("LANES floats");
    *d = *src;
}

/// One SIMD group at the start of `src`.
#[inline(always)]
fn group(src: &[f32]) -> &[f32; LANES] {
    src[..LANES].try_into().expect("LANES floats")
}

/// Grows `v` to at least `n` elements (contents unspecified).
fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    /// `dst[p][q] = Σ_i mat[p][i] · src[i][q]` (`src (k, other)`, `dst (rows, other)`).
    Rows,
    /// `dst[p][q] = Σ_j mat[q][j] · src[p][j]` (`src (other, k)`, `dst (other, rows)`).
    Cols,
}

/// `Bᵀ` along one axis of a lane-vectorised 2-D array (see [`apply`] for `other` and `dir`).
// Everything below is plain `#[inline(always)]` functions, no closures doing arithmetic: a
// closure is compiled without the caller's `target_feature`s, and its `mul_add` became a
// library call (measured: the whole command 65 % slower).
#[inline(always)]
fn input_pass<'a, const FMA: bool>(
    axis: &Axis,
    other: usize,
    src: impl Fn(usize) -> &'a [f32; LANES],
    dst: &mut [[f32; LANES]],
    dir: Dir,
) {
    match (&axis.paired, axis.alpha) {
        (Some(p), 6) => along::<6, 6, 0, FMA>(&p.bt, other, src, dst, dir),
        (Some(p), 8) => along::<8, 8, 0, FMA>(&p.bt, other, src, dst, dir),
        _ => apply::<FMA>(&axis.bt_nz, axis.alpha, other, src, dst, dir),
    }
}

/// `Aᵀ` along one axis of a lane-vectorised 2-D array (see [`apply`] for `other` and `dir`).
#[inline(always)]
fn output_pass<'a, const FMA: bool>(
    axis: &Axis,
    other: usize,
    src: impl Fn(usize) -> &'a [f32; LANES],
    dst: &mut [[f32; LANES]],
    dir: Dir,
) {
    match (&axis.paired, axis.alpha, axis.m) {
        (Some(p), 6, 4) => along::<6, 4, 1, FMA>(&p.at, other, src, dst, dir),
        (Some(p), 8, 6) => along::<8, 6, 1, FMA>(&p.at, other, src, dst, dir),
        (Some(p), 8, 4) => along::<8, 4, 1, FMA>(&p.at, other, src, dst, dir),
        _ => apply::<FMA>(&axis.at_nz, axis.alpha, other, src, dst, dir),
    }
}

/// Transforms every line of a lane-vectorised 2-D array along one axis: the columns of
/// `src (K, other)` into `dst (R, other)` (`Dir::Rows`) or the rows of `src (other, K)` into
/// `dst (other, R)` (`Dir::Cols`); `OUT` 0 is [`bt_paired`] (`R == K`), 1 [`at_paired`].
#[inline(always)]
fn along<'a, const K: usize, const R: usize, const OUT: u8, const FMA: bool>(
    coef: &[f32],
    other: usize,
    src: impl Fn(usize) -> &'a [f32; LANES],
    dst: &mut [[f32; LANES]],
    dir: Dir,
) {
    let mut x = [[0.0f32; LANES]; K];
    let mut y = [[0.0f32; LANES]; R];
    for q in 0..other {
        for (i, v) in x.iter_mut().enumerate() {
            *v = match dir {
                Dir::Rows => *src(i * other + q),
                Dir::Cols => *src(q * K + i),
            };
        }
        if OUT == 0 {
            bt_paired::<K, R, FMA>(coef, &x, &mut y);
        } else {
            at_paired::<K, R, FMA>(coef, &x, &mut y);
        }
        for (p, v) in y.iter().enumerate() {
            match dir {
                Dir::Rows => dst[p * other + q] = *v,
                Dir::Cols => dst[q * R + p] = *v,
            }
        }
    }
}

/// `acc += c·x` lane by lane.
#[inline(always)]
fn axpy<const FMA: bool>(acc: &mut [f32; LANES], c: f32, x: &[f32; LANES]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = if FMA { c.mul_add(v, *a) } else { *a + c * v };
    }
}

/// `(a, b) ← (a + b, a − b)` lane by lane.
#[inline(always)]
fn butterfly(a: &mut [f32; LANES], b: &mut [f32; LANES]) {
    for (u, v) in a.iter_mut().zip(b.iter_mut()) {
        (*u, *v) = (*u + *v, *u - *v);
    }
}

/// `out = Bᵀ·d` for one line of `A` vectors (`A == R`), `Bᵀ` dense with [`Paired`]'s symmetry.
#[inline(always)]
fn bt_paired<const A: usize, const R: usize, const FMA: bool>(
    bt: &[f32],
    d: &[[f32; LANES]; A],
    out: &mut [[f32; LANES]; R],
) {
    let last = A - 1;
    for o in out.iter_mut() {
        *o = [0.0; LANES];
    }
    for t in (0..last).step_by(2) {
        axpy::<FMA>(&mut out[0], bt[t], &d[t]);
    }
    for t in (1..A).step_by(2) {
        axpy::<FMA>(&mut out[last], bt[last * A + t], &d[t]);
    }
    for k in 1..=(A - 2) / 2 {
        let row = &bt[(2 * k - 1) * A..][..A];
        // The even part into the pair's first row, the odd part into its second.
        let (head, tail) = out.split_at_mut(2 * k);
        let (even, odd) = (&mut head[2 * k - 1], &mut tail[0]);
        for t in (2..last).step_by(2) {
            axpy::<FMA>(even, row[t], &d[t]);
        }
        for t in (1..last).step_by(2) {
            axpy::<FMA>(odd, row[t], &d[t]);
        }
        butterfly(even, odd);
    }
}

/// `y = Aᵀ·x` for one line of `A` vectors into `M`, from [`Paired::at`].
#[inline(always)]
fn at_paired<const A: usize, const M: usize, const FMA: bool>(
    at: &[f32],
    x: &[[f32; LANES]; A],
    y: &mut [[f32; LANES]; M],
) {
    let pairs = (A - 2) / 2;
    // Sums in the pairs' first slots, differences in their second.
    let mut sd = *x;
    for k in 0..pairs {
        let (head, tail) = sd.split_at_mut(2 * k + 2);
        butterfly(&mut head[2 * k + 1], &mut tail[0]);
    }
    for (i, yi) in y.iter_mut().enumerate() {
        *yi = if i == 0 { x[0] } else { [0.0; LANES] };
        for k in 0..pairs {
            axpy::<FMA>(yi, at[i * pairs + k], &sd[2 * k + 1 + i % 2]);
        }
        if i == M - 1 {
            for (a, &v) in yi.iter_mut().zip(&x[A - 1]) {
                *a += v;
            }
        }
    }
}

/// Applies a small transform matrix (`rows` non-zero lists over `k` columns) along one axis of
/// a lane-vectorised 2-D array; `other` is the length of the untouched axis. `FMA` only where
/// the CPU has it (`mul_add` is a slow library call otherwise).
#[inline(always)]
fn apply<'a, const FMA: bool>(
    mat: &Sparse,
    k: usize,
    other: usize,
    src: impl Fn(usize) -> &'a [f32; LANES],
    dst: &mut [[f32; LANES]],
    dir: Dir,
) {
    let rows = mat.len();
    for (p, nz) in mat.iter().enumerate() {
        for q in 0..other {
            let mut acc = [0.0f32; LANES];
            for &(i, c) in nz {
                let s = match dir {
                    Dir::Rows => src(i * other + q),
                    Dir::Cols => src(q * k + i),
                };
                for (a, &x) in acc.iter_mut().zip(s) {
                    *a = if FMA { c.mul_add(x, *a) } else { *a + c * x };
                }
            }
            match dir {
                Dir::Rows => dst[p * other + q] = acc,
                Dir::Cols => dst[q * rows + p] = acc,
            }
        }
    }
}

/// Writes lane `l`'s `rows × cols` output pixels (row stride `ow`) from `res (mh·mw, LANES)`;
/// `MW` is the tile width when the whole tile is inside the image (unrolled stores), 0 for a
/// partial tile.
#[inline(always)]
fn store_tile<const MW: usize>(
    res: &[[f32; LANES]],
    l: usize,
    dst: *mut f32,
    ow: usize,
    (rows, cols, mw): (usize, usize, usize),
) {
    for i in 0..rows {
        // SAFETY: the caller passes the tile's first pixel and its extent inside the image.
        unsafe {
            let d = dst.add(i * ow);
            if MW > 0 {
                for j in 0..MW {
                    *d.add(j) = res[i * MW + j][l];
                }
            } else {
                for j in 0..cols {
                    *d.add(j) = res[i * mw + j][l];
                }
            }
        }
    }
}

/// AVX-512 data movement of the transforms: moving each tile's pixels between its own SIMD lane
/// and the images one float at a time (16 lanes × 36 pixels per channel for a 6×6 patch) cost
/// more than the transforms' arithmetic.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// A run of lanes whose pixels are consecutive floats: lane mask, offset of lane 0's
    /// (virtual) pixel, and a per-run value (rows inside the image, for the output).
    pub(super) type Run = (__mmask16, isize, usize);

    /// Splits lanes into runs where `off[l] = off[l − 1] + 1` and `tag` is equal.
    pub(super) fn segments(off: &[usize], tag: impl Fn(usize) -> usize) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (l, &o) in off.iter().enumerate() {
            let joins = l > 0 && o == off[l - 1] + 1 && tag(l) == tag(l - 1);
            match runs.last_mut() {
                Some(r) if joins => r.0 |= 1 << l,
                _ => runs.push((1 << l, o as isize - l as isize, tag(l))),
            }
        }
        runs
    }

    /// Transposes a 16×16 block: `r[k][i]` becomes `r[i][k]`.
    #[inline(always)]
    unsafe fn transpose16(r: &mut [__m512; 16]) {
        // SAFETY (whole function): register shuffles only.
        unsafe {
            let mut t = [_mm512_setzero_ps(); 16];
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            let pd = _mm512_castps_pd;
            let ps = _mm512_castpd_ps;
            for b in 0..4 {
                let (a0, a1, a2, a3) = (t[4 * b], t[4 * b + 1], t[4 * b + 2], t[4 * b + 3]);
                r[4 * b] = ps(_mm512_unpacklo_pd(pd(a0), pd(a2)));
                r[4 * b + 1] = ps(_mm512_unpackhi_pd(pd(a0), pd(a2)));
                r[4 * b + 2] = ps(_mm512_unpacklo_pd(pd(a1), pd(a3)));
                r[4 * b + 3] = ps(_mm512_unpackhi_pd(pd(a1), pd(a3)));
            }
            for i in 0..2 {
                for j in 0..4 {
                    let (a, b) = (r[8 * i + j], r[8 * i + j + 4]);
                    t[8 * i + j] = _mm512_shuffle_f32x4::<0x88>(a, b);
                    t[8 * i + j + 4] = _mm512_shuffle_f32x4::<0xdd>(a, b);
                }
            }
            for j in 0..8 {
                r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[j + 8]);
                r[j + 8] = _mm512_shuffle_f32x4::<0xdd>(t[j], t[j + 8]);
            }
        }
    }

    /// `patch[i·aw + j][l] = src[base[l] + i·w + j]` for the pixels inside the input, 0 for the
    /// others: each lane's patch row is one masked load, then a transpose puts the pixels in
    /// lanes.
    ///
    /// # Safety
    /// AVX-512F; `src + base[l] + i·w + j` is inside the input for every row `i` in
    /// `grp.rows[l]` and column `j` in `grp.cols[l]`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_rows(
        src: *const f32,
        grp: &super::Group,
        w: usize,
        (ah, aw): (usize, usize),
        patch: &mut [[f32; LANES]],
    ) {
        // SAFETY: as the caller promises; masked-off floats are neither read nor can fault.
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for i in 0..ah {
                for (l, v) in r.iter_mut().enumerate() {
                    let (lo, hi) = grp.rows[l];
                    let mask = if (lo..hi).contains(&i) {
                        grp.cols[l]
                    } else {
                        0
                    };
                    let p = src.wrapping_offset(grp.base[l] + (i * w) as isize);
                    *v = _mm512_maskz_loadu_ps(mask, p);
                }
                transpose16(&mut r);
                for j in 0..aw {
                    _mm512_storeu_ps(patch[i * aw + j].as_mut_ptr(), r[j]);
                }
            }
        }
    }

    /// One-column patches: `patch[i][l] = src[base[l] + i·w]`, one masked load per run.
    ///
    /// # Safety
    /// AVX-512F; the runs' lanes address pixels of `src` for every row `i < patch.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_runs(
        src: *const f32,
        runs: &[Run],
        w: usize,
        patch: &mut [[f32; LANES]],
    ) {
        for (i, p) in patch.iter_mut().enumerate() {
            let mut v = _mm512_setzero_ps();
            for &(mask, off, _) in runs {
                // SAFETY: masked-off lanes are not read (nor can they fault); the others
                // address the runs' pixels.
                v = unsafe {
                    _mm512_mask_loadu_ps(v, mask, src.wrapping_offset(off + (i * w) as isize))
                };
            }
            // SAFETY: 16 floats.
            unsafe { _mm512_storeu_ps(p.as_mut_ptr(), v) };
        }
    }

    /// One-column tiles: row `i` of every run's tiles (`res[i]`) to `dst + off + i·ow`, one
    /// masked store per run and row inside the image.
    ///
    /// # Safety
    /// AVX-512F; the runs address the tiles' output pixels from `dst`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store_runs(res: &[[f32; LANES]], runs: &[Run], ow: usize, dst: *mut f32) {
        for &(mask, off, rows) in runs {
            for (i, r) in res.iter().enumerate().take(rows) {
                // SAFETY: as the caller promises; masked-off lanes are not written.
                unsafe {
                    let v = _mm512_loadu_ps(r.as_ptr());
                    _mm512_mask_storeu_ps(dst.wrapping_offset(off + (i * ow) as isize), mask, v);
                }
            }
        }
    }

    /// Tiles of `mw ≥ 2` columns: transposes give each lane's pixels (row-major) in one
    /// register, as many whole tile rows per transpose as fit in 16 lanes, stored a row at a
    /// time; `place[l]` = (offset of the tile's first pixel, rows, columns inside the image).
    ///
    /// # Safety
    /// AVX-512F; `res.len() == mh·mw`, `2 ≤ mw ≤ 16`; `place` addresses the tiles' output
    /// pixels from `dst`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store_transposed(
        res: &[[f32; LANES]],
        place: &[(usize, usize, usize)],
        (mh, mw): (usize, usize),
        ow: usize,
        dst: *mut f32,
    ) {
        let per = (LANES / mw).min(mh);
        // SAFETY: as the caller promises; masked-off lanes are not written.
        unsafe {
            for r0 in (0..mh).step_by(per) {
                let nr = per.min(mh - r0);
                let mut r = [_mm512_setzero_ps(); 16];
                for (v, p) in r.iter_mut().zip(&res[r0 * mw..(r0 + nr) * mw]) {
                    *v = _mm512_loadu_ps(p.as_ptr());
                }
                transpose16(&mut r);
                for (&(off, rows, cols), &v) in place.iter().zip(&r) {
                    let d = dst.add(off + r0 * ow);
                    let rows = rows.saturating_sub(r0).min(nr);
                    if mw == 4 && cols == 4 {
                        // Whole rows of 4: plain 128-bit stores (masked stores cost about half
                        // of this function's time on Zen 4).
                        for i in 0..rows {
                            let q = match i {
                                0 => _mm512_castps512_ps128(v),
                                1 => _mm512_extractf32x4_ps::<1>(v),
                                2 => _mm512_extractf32x4_ps::<2>(v),
                                _ => _mm512_extractf32x4_ps::<3>(v),
                            };
                            _mm_storeu_ps(d.add(i * ow), q);
                        }
                        continue;
                    }
                    let row_mask = (1u32 << cols) - 1;
                    for i in 0..rows {
                        let at = d.add(i * ow).wrapping_sub(i * mw);
                        _mm512_mask_storeu_ps(at, (row_mask << (i * mw)) as __mmask16, v);
                    }
                }
            }
        }
    }
}

/// The transforms compiled for the widest SIMD the CPU has, chosen at run time (the crate is
/// built for the baseline x86-64 target, where they would use 4-wide SSE without FMA).
mod simd {
    use super::{Act, Geo, SharedMut, WinogradConv};

    /// The widest transform code the CPU can run.
    pub(super) fn level() -> u8 {
        #[cfg(not(target_arch = "x86_64"))]
        return 0;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            2
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            1
        } else {
            0
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn input_avx512(w: &WinogradConv, x: &Act, g: Geo, r: (usize, usize), v: &mut [f32]) {
        w.input_transform_impl::<true, true>(x, g, r, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn input_avx2(w: &WinogradConv, x: &Act, g: Geo, r: (usize, usize), v: &mut [f32]) {
        w.input_transform_impl::<true, false>(x, g, r, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn output_avx512(w: &WinogradConv, m: &[f32], g: Geo, r: (usize, usize), d: SharedMut) {
        w.output_transform_impl::<true, true>(m, g, r, d)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn output_avx2(w: &WinogradConv, m: &[f32], g: Geo, r: (usize, usize), d: SharedMut) {
        w.output_transform_impl::<true, false>(m, g, r, d)
    }

    pub(super) fn input_transform(
        w: &WinogradConv,
        x: &Act,
        g: Geo,
        r: (usize, usize),
        v: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        match w.simd {
            // SAFETY: the CPU has the features (`simd` ≤ `level()`).
            2 => return unsafe { input_avx512(w, x, g, r, v) },
            1 => return unsafe { input_avx2(w, x, g, r, v) },
            _ => {}
        }
        w.input_transform_impl::<false, false>(x, g, r, v)
    }

    pub(super) fn output_transform(
        w: &WinogradConv,
        m: &[f32],
        g: Geo,
        r: (usize, usize),
        d: SharedMut,
    ) {
        #[cfg(target_arch = "x86_64")]
        match w.simd {
            // SAFETY: the CPU has the features (`simd` ≤ `level()`).
            2 => return unsafe { output_avx512(w, m, g, r, d) },
            1 => return unsafe { output_avx2(w, m, g, r, d) },
            _ => {}
        }
        w.output_transform_impl::<false, false>(m, g, r, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct stride-1 convolution in f64 (+ bias, ReLU).
    #[allow(clippy::too_many_arguments)]
    fn direct(
        x: &Act,
        w: &[f32],
        b: &[f32],
        co: usize,
        (kh, kw): (usize, usize),
        (ph, pw): (usize, usize),
    ) -> Vec<f64> {
        let (oh, ow) = (x.h + 2 * ph + 1 - kh, x.w + 2 * pw + 1 - kw);
        let mut out = vec![0.0; co * x.n * oh * ow];
        for o in 0..co {
            for n in 0..x.n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = f64::from(b[o]);
                        for c in 0..x.c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy = (oy + i) as isize - ph as isize;
                                    let ix = (ox + j) as isize - pw as isize;
                                    if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize
                                    {
                                        continue;
                                    }
                                    s += f64::from(
                                        x.data[((c * x.n + n) * x.h + iy as usize) * x.w
                                            + ix as usize],
                                    ) * f64::from(w[((o * x.c + c) * kh + i) * kw + j]);
                                }
                            }
                        }
                        out[((o * x.n + n) * oh + oy) * ow + ox] = s.max(0.0);
                    }
                }
            }
        }
        out
    }

    fn pseudo(i: usize) -> f32 {
        ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0
    }

    fn dense(mat: &Sparse, cols: usize) -> Vec<f32> {
        let mut d = vec![0.0; mat.len() * cols];
        for (p, row) in mat.iter().enumerate() {
            for &(i, v) in row {
                d[p * cols + i] = v;
            }
        }
        d
    }

    #[test]
    fn symmetric_point_sets_get_the_paired_transforms() {
        // Inception's axes: the even-α ones (points 0, ±1, ±2, ±½) take the paired form, whose
        // results `winograd_matches_direct_convolution` checks; F(3, 7) (α = 9, an unpaired
        // point) keeps the sparse matrices.
        for (m, r) in [(4, 3), (6, 3), (4, 5), (2, 3)] {
            assert!(Axis::new(m, r).paired.is_some(), "F({m}, {r})");
        }
        for (m, r) in [(3, 7), (1, 1), (2, 2)] {
            assert!(Axis::new(m, r).paired.is_none(), "F({m}, {r})");
        }
    }

    #[test]
    fn transforms_reproduce_one_dimensional_correlation() {
        for &(m, r) in &[(2, 3), (4, 3), (2, 5), (4, 5), (2, 7), (3, 7), (4, 7)] {
            let a = Axis::new(m, r);
            let (bt, at) = (dense(&a.bt_nz, a.alpha), dense(&a.at_nz, a.alpha));
            let d: Vec<f64> = (0..a.alpha).map(|i| f64::from(pseudo(i))).collect();
            let g: Vec<f64> = (0..r).map(|i| f64::from(pseudo(i + 11))).collect();
            let gg: Vec<f64> = (0..a.alpha)
                .map(|p| (0..r).map(|k| a.g[p * r + k] * g[k]).sum())
                .collect();
            let bd: Vec<f64> = (0..a.alpha)
                .map(|p| {
                    (0..a.alpha)
                        .map(|i| f64::from(bt[p * a.alpha + i]) * d[i])
                        .sum()
                })
                .collect();
            for i in 0..m {
                let want: f64 = (0..r).map(|k| d[i + k] * g[k]).sum();
                let got: f64 = (0..a.alpha)
                    .map(|p| f64::from(at[i * a.alpha + p]) * gg[p] * bd[p])
                    .sum();
                assert!(
                    (got - want).abs() < 1e-9,
                    "F({m},{r}) y{i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn winograd_matches_direct_convolution() {
        // Kernel, padding, tile, input size: every axis combination Inception uses, partial
        // last tiles, and blocks that end mid-way through a SIMD group.
        for &(ci, co, k, pad, tile, h, w) in &[
            (5, 7, (3, 3), (1, 1), (4, 4), 9, 11),
            (5, 7, (3, 3), (0, 0), (2, 2), 10, 9),
            (5, 7, (3, 3), (1, 1), (6, 6), 13, 17),
            (2, 3, (3, 3), (1, 1), (6, 6), 7, 75),
            (3, 4, (3, 3), (0, 0), (6, 4), 11, 9),
            (3, 4, (5, 5), (2, 2), (2, 2), 7, 8),
            (3, 4, (5, 5), (2, 2), (4, 4), 9, 11),
            (4, 6, (1, 7), (0, 3), (1, 2), 9, 10),
            (4, 6, (7, 1), (3, 0), (2, 1), 9, 10),
            (4, 6, (1, 3), (0, 1), (1, 4), 8, 8),
            (4, 6, (3, 1), (1, 0), (4, 1), 8, 8),
            // Rows wide enough for whole SIMD groups of interior tiles (the gather's fast path).
            (2, 3, (3, 3), (1, 1), (4, 4), 6, 75),
            (2, 3, (1, 7), (0, 3), (1, 2), 4, 41),
            (2, 3, (7, 1), (3, 0), (2, 1), 9, 35),
            // One-column tiles on narrow maps: lane runs broken by row and image ends.
            (3, 4, (7, 1), (3, 0), (3, 1), 8, 8),
            (3, 4, (3, 1), (1, 0), (4, 1), 17, 17),
            (3, 4, (1, 7), (0, 3), (1, 3), 17, 17),
        ] {
            let n = 3;
            let x = Act {
                c: ci,
                n,
                h,
                w,
                data: (0..ci * n * h * w).map(pseudo).collect(),
            };
            let wt: Vec<f32> = (0..co * ci * k.0 * k.1).map(|i| pseudo(i + 7)).collect();
            let b: Vec<f32> = (0..co).map(|i| pseudo(i + 3) * 0.1).collect();
            let want = direct(&x, &wt, &b, co, k, pad);
            // The pre-packed AVX-512 GEMM (where the CPU has it), then the `gemm` crate.
            // Every transform code path this CPU can run (AVX-512, AVX2, portable), each with
            // the pre-packed AVX-512 GEMM (where the CPU has it) and the `gemm` crate; the
            // padded input copy comes from a pool holding a NaN-filled buffer and the output
            // starts as NaN, so a pixel or padding left unwritten shows.
            let mut outs = Vec::new();
            for level in (0..=simd::level()).rev() {
                for pack in [gemm_avx512::available(), false] {
                    let mut wc = WinogradConv::with_gemm(&wt, &b, (co, ci), k, pad, tile, pack);
                    wc.simd = level;
                    let pool = Pool::default();
                    pool.give(vec![f32::NAN; 1 << 16]);
                    let mut got = vec![f32::NAN; want.len()];
                    wc.forward_into(&x, &mut got, &pool);
                    outs.push((level, got));
                }
            }
            assert!(outs.len() >= 2);
            for (level, got) in outs {
                let max = got
                    .iter()
                    .zip(&want)
                    // NaN (a pixel never written) counts as an infinite difference.
                    .map(|(&a, &b)| {
                        let d = (f64::from(a) - b).abs();
                        if d.is_nan() { f64::INFINITY } else { d }
                    })
                    .fold(0.0, f64::max);
                // f32 transforms and GEMM against an f64 sum of ≤ 49·5 products of magnitude ≤ 1.
                assert!(
                    max < 1e-4,
                    "{k:?} tile {tile:?} simd {level}: max |diff| {max}"
                );
            }
        }
    }
}
