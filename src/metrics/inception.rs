//! torch-fidelity's `inception-v3-compat` feature extractor (`FeatureExtractorInceptionV3`,
//! torch-fidelity 0.4.0 `feature_extractor_inceptionv3.py`): the PyTorch port of TensorFlow's
//! `inception-2015-12-05` graph that improved-gan's Inception Score and TTUR's FID use, for
//! inference on the CPU.
//!
//! Weights: `weights-inception-2015-12-05-6726825d.pth` (torch-fidelity) or pytorch-fid's
//! `pt_inception-2015-12-05-6726825d.pth` (same keys), read with the project's `torch.save`
//! reader. Every eval-mode BatchNorm (eps 0.001) is folded into its bias-free convolution at load
//! time: `w′ = w·γ/√(σ²+ε)`, `b′ = β − μ·γ/√(σ²+ε)` (the scale computed in f64, then rounded to
//! f32), and the ReLU is applied on the GEMM's output tile while it is in cache. Folding changes
//! the rounding of each layer's output by a few float32 ulps, nothing more.
//!
//! Speed: activations of a whole batch are kept channel-major, `(C, N, H, W)`, so that
//! - a convolution is one GEMM `W (Co, Ci·kh·kw) · col (Ci·kh·kw, N·H′·W′)` whose columns (all
//!   images' output positions) are cut into tiles, each tile's im2col block built and multiplied
//!   on one thread (1×1 stride-1 convolutions multiply the activations in place, no im2col);
//! - stride-1 convolutions with a kernel larger than 1×1 (3×3, 5×5, 1×7, 7×1, 1×3, 3×1: 70 % of
//!   the network's 5.7 G multiply-adds per image) use Winograd's minimal filtering instead
//!   (`winograd.rs`), which brings the network to about 2.9 G multiply-adds per image — the direct
//!   form needs more than this 2-core CPU's FMA peak for the speed goal (BENCHMARKS.md);
//! - the Inception blocks' channel concatenations cost nothing: each branch writes its channel
//!   range of the block's output buffer;
//! - activation buffers are recycled (`Pool`) rather than allocated per layer;
//! - pooling works on contiguous `H×W` planes.
//!
//! The GEMMs run on `gemm_avx512.rs` (weights packed once at load, bias + ReLU in registers)
//! where the CPU has AVX-512, else on the `gemm` crate (which re-packs both operands per call);
//! [`conv_gemm_tile`] handles Inception's asymmetric kernels and paddings (1×7, 7×1, 1×3, 3×1).

use super::gemm_avx512;
use super::winograd::WinogradConv;
use crate::io::torch::{self, TorchTensor};
use crate::kernels::host::SharedMut;
use crate::{Error, Result};
use indexmap::IndexMap;
use rayon::join;
use rayon::prelude::*;
use std::path::Path;
use std::sync::Mutex;

/// Features of one batch, row-major `(N, D)`, as torch-fidelity names them.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// `"64"`: global average pool after `MaxPool_1`.
    pub f64: Vec<f32>,
    /// `"192"`: after `MaxPool_2`.
    pub f192: Vec<f32>,
    /// `"768"`: after `Mixed_6e`.
    pub f768: Vec<f32>,
    /// `"2048"`: after `Mixed_7c` (FID, KID).
    pub f2048: Vec<f32>,
    /// `"logits_unbiased"`: `f2048 · fc.weightᵀ` (Inception Score), 1008 classes.
    pub logits_unbiased: Vec<f32>,
}

impl Features {
    /// Appends another batch's features.
    pub fn extend(&mut self, other: Features) {
        self.f64.extend(other.f64);
        self.f192.extend(other.f192);
        self.f768.extend(other.f768);
        self.f2048.extend(other.f2048);
        self.logits_unbiased.extend(other.logits_unbiased);
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.f2048.len() / 2048
    }

    pub fn is_empty(&self) -> bool {
        self.f2048.is_empty()
    }
}

/// A batch of activations, channel-major: `data[((c·N + n)·H + y)·W + x]`.
#[derive(Clone, Debug)]
pub struct Act {
    pub c: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Act {
    /// Global average pool, `(N, C)` row-major (sums in f64). Parallel: it sits between
    /// layers, where one thread alone would leave the other idle.
    fn global_avg(&self) -> Vec<f32> {
        let hw = self.h * self.w;
        let means: Vec<f32> = self
            .data
            .par_chunks_exact(hw)
            .map(|plane| {
                let s: f64 = plane.iter().map(|&v| f64::from(v)).sum();
                (s / hw as f64) as f32
            })
            .collect();
        // Planes are (C, N); the features (N, C).
        let mut out = vec![0.0f32; self.n * self.c];
        for (cn, &m) in means.iter().enumerate() {
            out[(cn % self.n) * self.c + cn / self.n] = m;
        }
        out
    }
}

/// Activation buffers recycled across layers and batches.
///
/// Why: a batch's activations are tens to hundreds of MiB each. Freshly allocated, every one
/// costs page faults and the kernel's page zeroing on first touch, and a recycled heap chunk
/// costs `calloc`'s memset (rayon's threads allocate from glibc's per-thread arenas, which
/// cannot keep chunks above 64 MiB at all): together ≈ 10 % of the command's CPU time. Every
/// layer overwrites its whole output, so a buffer needs no clearing between uses.
#[derive(Default)]
pub(crate) struct Pool(Mutex<Vec<Vec<f32>>>);

/// Buffers kept at most (a forward pass has a handful alive at once; the cap only bounds
/// memory should a caller's pattern change).
const POOL_MAX: usize = 24;

impl Pool {
    /// A buffer of `n` floats; contents unspecified (old activations or zeros).
    pub(crate) fn take(&self, n: usize) -> Vec<f32> {
        let found = {
            let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest buffer that fits, so that large ones stay for large requests.
            let best = (0..free.len())
                .filter(|&i| free[i].capacity() >= n)
                .min_by_key(|&i| free[i].capacity());
            best.map(|i| free.swap_remove(i))
        };
        let mut v = found.unwrap_or_else(|| Vec::with_capacity(n));
        v.truncate(n);
        v.resize(n, 0.0);
        v
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&self, v: Vec<f32>) {
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        free.push(v);
        if free.len() > POOL_MAX {
            let smallest = (0..free.len())
                .min_by_key(|&i| free[i].capacity())
                .expect("non-empty");
            free.swap_remove(smallest);
        }
    }
}

/// `BasicConv2d` with its BatchNorm folded in: conv (+bias) → ReLU.
#[derive(Clone, Debug)]
struct Conv {
    /// `(Co, Ci·kh·kw)` row-major; empty where `wino` or `packed` replaces it (kept, it would
    /// only add to the memory the weights occupy).
    w: Vec<f32>,
    b: Vec<f32>,
    co: usize,
    ci: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    ph: usize,
    pw: usize,
    /// Outputs per Winograd tile ([`winograd_tile`]), for stride-1 kernels larger than 1×1.
    tile: Option<(usize, usize)>,
    /// The same convolution in Winograd form, used instead of im2col + GEMM when set.
    wino: Option<WinogradConv>,
    /// `w` packed for [`gemm_avx512`], where the CPU has AVX-512 (else the `gemm` crate).
    packed: Option<Vec<f32>>,
}

impl Conv {
    /// Builds the fast forms (Winograd kernels, or the weights packed for [`gemm_avx512`]) and
    /// drops the plain weights they replace. Separate from reading the file so that all
    /// layers are prepared in parallel.
    fn prepare(&mut self) {
        if let Some(tile) = self.tile {
            self.wino = Some(WinogradConv::new(
                &self.w,
                &self.b,
                (self.co, self.ci),
                (self.kh, self.kw),
                (self.ph, self.pw),
                tile,
            ));
        } else if gemm_avx512::available() {
            let k = self.ci * self.kh * self.kw;
            self.packed = Some(gemm_avx512::pack_a(&self.w, self.co, k));
        } else {
            return;
        }
        self.w = Vec::new();
    }
}

/// Reads the weights file's tensors, checking every key and shape; unknown keys (other than
/// BatchNorm's `num_batches_tracked`) are errors, as in `load_state_dict(strict=True)`.
struct Loader {
    tensors: IndexMap<String, TorchTensor>,
    what: String,
    /// Input side (H = W) of the layers being read, at the network's 299×299 input: picks the
    /// Winograd tile with the fewest multiplications at that size.
    size: usize,
    /// Convolutions read so far.
    convs: usize,
}

impl Loader {
    /// The layers read next take inputs of `size × size`.
    fn at(&mut self, size: usize) -> &mut Self {
        self.size = size;
        self
    }

    /// The tensor at `key` as f32, removed from the file's tensors: its bytes are freed at
    /// once, so the next tensor's conversion reuses that memory instead of faulting in new pages.
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.tensors.shift_remove(key).ok_or_else(|| {
            Error::invalid(format!(
                "{}: missing key '{key}' (expected an Inception-v3 state dict as in weights-inception-2015-12-05-6726825d.pth)",
                self.what
            ))
        })?;
        if t.shape != shape {
            return Err(Error::invalid(format!(
                "{}: '{key}' has shape {:?}, expected {:?}",
                self.what, t.shape, shape
            )));
        }
        Ok(t.to_f32())
    }

    /// `BasicConv2d(ci, co, kernel_size=(kh, kw), stride, padding=(ph, pw))` at `prefix`.
    fn conv(
        &mut self,
        prefix: &str,
        ci: usize,
        co: usize,
        (kh, kw): (usize, usize),
        stride: usize,
        (ph, pw): (usize, usize),
    ) -> Result<Conv> {
        let w = self.take(&format!("{prefix}.conv.weight"), &[co, ci, kh, kw])?;
        let gamma = self.take(&format!("{prefix}.bn.weight"), &[co])?;
        let beta = self.take(&format!("{prefix}.bn.bias"), &[co])?;
        let mean = self.take(&format!("{prefix}.bn.running_mean"), &[co])?;
        let var = self.take(&format!("{prefix}.bn.running_var"), &[co])?;
        let k = ci * kh * kw;
        let mut wf = vec![0.0f32; co * k];
        let mut b = vec![0.0f32; co];
        for o in 0..co {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + 0.001).sqrt();
            for (d, s) in wf[o * k..][..k].iter_mut().zip(&w[o * k..][..k]) {
                *d = (f64::from(*s) * scale) as f32;
            }
            b[o] = (f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32;
        }
        let out = (self.size + 2 * ph + 1 - kh, self.size + 2 * pw + 1 - kw);
        self.convs += 1;
        Ok(Conv {
            w: wf,
            b,
            co,
            ci,
            kh,
            kw,
            stride,
            ph,
            pw,
            tile: winograd_tile((kh, kw), stride, out),
            wino: None,
            packed: None,
        })
    }

    /// Fails on the first key the network does not use (every used one has been taken).
    fn finish(&self) -> Result<()> {
        let extra = self
            .tensors
            .keys()
            .find(|k| !k.ends_with(".num_batches_tracked"));
        match extra {
            Some(k) => Err(Error::invalid(format!(
                "{}: unexpected key '{k}' for torch-fidelity's Inception-v3",
                self.what
            ))),
            None => Ok(()),
        }
    }
}

/// Outputs per Winograd tile along H and W for a `kh × kw` kernel producing `oh × ow` outputs
/// (stride 1), or `None` for the direct GEMM (1×1 convolutions, strided ones).
///
/// Along each axis, of the tiles F(m, r) whose float32 error was measured acceptable, the one
/// needing the fewest multiplications over the whole axis, `⌈size / m⌉ · (m + r − 1)` (a
/// partial last tile costs as much as a whole one): F(6, 3) or F(4, 3) for 3 taps (F(6, 3) at
/// Inception's 147, 71 and 35: 20 % fewer products; F(4, 3) at 8, where F(6, 3) would compute
/// 12 outputs for 8), F(4, 5) for 5 taps, F(3, 7) for 7 (F(4, 7) needs the interpolation points
/// ±3, which cost accuracy). Every choice uses the points 0, ±1, ±2, ±½ at most: features stay
/// within 6.3e-5 of torch-fidelity's, relative to each layer's largest value (tests/metrics.rs
/// allows 2e-4; the direct convolution gives 4e-5).
fn winograd_tile(
    (kh, kw): (usize, usize),
    stride: usize,
    (oh, ow): (usize, usize),
) -> Option<(usize, usize)> {
    let m = |r: usize, size: usize| {
        let candidates: &[usize] = match r {
            1 => &[1],
            3 => &[6, 4],
            5 => &[4],
            _ => &[3],
        };
        *candidates
            .iter()
            .min_by_key(|&&m| size.div_ceil(m) * (m + r - 1))
            .expect("a candidate")
    };
    (stride == 1 && kh * kw > 1).then(|| (m(kh, oh), m(kw, ow)))
}

fn c1(l: &mut Loader, p: &str, ci: usize, co: usize) -> Result<Conv> {
    l.conv(p, ci, co, (1, 1), 1, (0, 0))
}

/// `InceptionA` (Mixed_5b/5c/5d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1.
struct BlockA {
    b1: Conv,
    b5: [Conv; 2],
    b3: [Conv; 3],
    pool: Conv,
}

/// `InceptionB` (Mixed_6a): 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2.
struct BlockB {
    b3: Conv,
    b3dbl: [Conv; 3],
}

/// `InceptionC` (Mixed_6b–6e): 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | avgpool→1×1.
struct BlockC {
    b1: Conv,
    b7: [Conv; 3],
    b7dbl: [Conv; 5],
    pool: Conv,
}

/// `InceptionD` (Mixed_7a): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2.
struct BlockD {
    b3: [Conv; 2],
    b7: [Conv; 4],
}

/// `InceptionE_1` / `InceptionE_2` (Mixed_7b / 7c); they differ only in the pooling branch
/// (average without padded zeros / max).
struct BlockE {
    b1: Conv,
    b3_1: Conv,
    b3_2a: Conv,
    b3_2b: Conv,
    bd_1: Conv,
    bd_2: Conv,
    bd_3a: Conv,
    bd_3b: Conv,
    pool: Conv,
    max_pool: bool,
}

/// The network with folded BatchNorms.
pub struct InceptionV3 {
    stem: [Conv; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7: [BlockE; 2],
    /// `fc.weight (1008, 2048)`; the bias is not used by any feature we compute.
    fc: Vec<f32>,
    pool: Pool,
}

fn block_a(l: &mut Loader, p: &str, ci: usize, pool: usize) -> Result<BlockA> {
    Ok(BlockA {
        b1: c1(l, &format!("{p}.branch1x1"), ci, 64)?,
        b5: [
            c1(l, &format!("{p}.branch5x5_1"), ci, 48)?,
            l.conv(&format!("{p}.branch5x5_2"), 48, 64, (5, 5), 1, (2, 2))?,
        ],
        b3: [
            c1(l, &format!("{p}.branch3x3dbl_1"), ci, 64)?,
            l.conv(&format!("{p}.branch3x3dbl_2"), 64, 96, (3, 3), 1, (1, 1))?,
            l.conv(&format!("{p}.branch3x3dbl_3"), 96, 96, (3, 3), 1, (1, 1))?,
        ],
        pool: c1(l, &format!("{p}.branch_pool"), ci, pool)?,
    })
}

fn block_c(l: &mut Loader, p: &str, c7: usize) -> Result<BlockC> {
    let (r, c) = ((1, 7), (7, 1));
    let (pr, pc) = ((0, 3), (3, 0));
    Ok(BlockC {
        b1: c1(l, &format!("{p}.branch1x1"), 768, 192)?,
        b7: [
            c1(l, &format!("{p}.branch7x7_1"), 768, c7)?,
            l.conv(&format!("{p}.branch7x7_2"), c7, c7, r, 1, pr)?,
            l.conv(&format!("{p}.branch7x7_3"), c7, 192, c, 1, pc)?,
        ],
        b7dbl: [
            c1(l, &format!("{p}.branch7x7dbl_1"), 768, c7)?,
            l.conv(&format!("{p}.branch7x7dbl_2"), c7, c7, c, 1, pc)?,
            l.conv(&format!("{p}.branch7x7dbl_3"), c7, c7, r, 1, pr)?,
            l.conv(&format!("{p}.branch7x7dbl_4"), c7, c7, c, 1, pc)?,
            l.conv(&format!("{p}.branch7x7dbl_5"), c7, 192, r, 1, pr)?,
        ],
        pool: c1(l, &format!("{p}.branch_pool"), 768, 192)?,
    })
}

fn block_e(l: &mut Loader, p: &str, ci: usize, max_pool: bool) -> Result<BlockE> {
    Ok(BlockE {
        b1: c1(l, &format!("{p}.branch1x1"), ci, 320)?,
        b3_1: c1(l, &format!("{p}.branch3x3_1"), ci, 384)?,
        b3_2a: l.conv(&format!("{p}.branch3x3_2a"), 384, 384, (1, 3), 1, (0, 1))?,
        b3_2b: l.conv(&format!("{p}.branch3x3_2b"), 384, 384, (3, 1), 1, (1, 0))?,
        bd_1: c1(l, &format!("{p}.branch3x3dbl_1"), ci, 448)?,
        bd_2: l.conv(&format!("{p}.branch3x3dbl_2"), 448, 384, (3, 3), 1, (1, 1))?,
        bd_3a: l.conv(&format!("{p}.branch3x3dbl_3a"), 384, 384, (1, 3), 1, (0, 1))?,
        bd_3b: l.conv(&format!("{p}.branch3x3dbl_3b"), 384, 384, (3, 1), 1, (1, 0))?,
        pool: c1(l, &format!("{p}.branch_pool"), ci, 192)?,
        max_pool,
    })
}

impl InceptionV3 {
    /// Loads `weights-inception-2015-12-05-6726825d.pth` (or a file with its keys and shapes).
    /// A missing key or a wrong shape is an error naming the key.
    pub fn load(path: &Path) -> Result<Self> {
        let what = path.display().to_string();
        let value = torch::load(path)?;
        let tensors = torch::state_dict(&value, &what)?;
        let mut loader = Loader {
            tensors,
            what,
            size: 299,
            convs: 0,
        };
        let l = &mut loader;
        let stem = [
            l.at(299).conv("Conv2d_1a_3x3", 3, 32, (3, 3), 2, (0, 0))?,
            l.at(149).conv("Conv2d_2a_3x3", 32, 32, (3, 3), 1, (0, 0))?,
            l.at(147).conv("Conv2d_2b_3x3", 32, 64, (3, 3), 1, (1, 1))?,
            c1(l.at(73), "Conv2d_3b_1x1", 64, 80)?,
            l.at(73).conv("Conv2d_4a_3x3", 80, 192, (3, 3), 1, (0, 0))?,
        ];
        l.at(35);
        let mixed_5 = [
            block_a(l, "Mixed_5b", 192, 32)?,
            block_a(l, "Mixed_5c", 256, 64)?,
            block_a(l, "Mixed_5d", 288, 64)?,
        ];
        let mixed_6a = BlockB {
            b3: l.conv("Mixed_6a.branch3x3", 288, 384, (3, 3), 2, (0, 0))?,
            b3dbl: [
                c1(l, "Mixed_6a.branch3x3dbl_1", 288, 64)?,
                l.conv("Mixed_6a.branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1))?,
                l.conv("Mixed_6a.branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0))?,
            ],
        };
        l.at(17);
        let mixed_6 = [
            block_c(l, "Mixed_6b", 128)?,
            block_c(l, "Mixed_6c", 160)?,
            block_c(l, "Mixed_6d", 160)?,
            block_c(l, "Mixed_6e", 192)?,
        ];
        let mixed_7a = BlockD {
            b3: [
                c1(l, "Mixed_7a.branch3x3_1", 768, 192)?,
                l.conv("Mixed_7a.branch3x3_2", 192, 320, (3, 3), 2, (0, 0))?,
            ],
            b7: [
                c1(l, "Mixed_7a.branch7x7x3_1", 768, 192)?,
                l.conv("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3))?,
                l.conv("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0))?,
                l.conv("Mixed_7a.branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0))?,
            ],
        };
        l.at(8);
        let mixed_7 = [
            block_e(l, "Mixed_7b", 1280, false)?,
            block_e(l, "Mixed_7c", 2048, true)?,
        ];
        let fc = l.take("fc.weight", &[1008, 2048])?;
        l.take("fc.bias", &[1008])?;
        loader.finish()?;
        let mut net = Self {
            stem,
            mixed_5,
            mixed_6a,
            mixed_6,
            mixed_7a,
            mixed_7,
            fc,
            pool: Pool::default(),
        };
        let mut convs = net.convs_mut();
        assert_eq!(convs.len(), loader.convs, "every convolution gets prepared");
        convs.par_iter_mut().for_each(|c| c.prepare());
        Ok(net)
    }

    /// Every convolution of the network.
    fn convs_mut(&mut self) -> Vec<&mut Conv> {
        let mut all: Vec<&mut Conv> = self.stem.iter_mut().collect();
        for b in &mut self.mixed_5 {
            all.push(&mut b.b1);
            all.extend(&mut b.b5);
            all.extend(&mut b.b3);
            all.push(&mut b.pool);
        }
        all.push(&mut self.mixed_6a.b3);
        all.extend(&mut self.mixed_6a.b3dbl);
        for b in &mut self.mixed_6 {
            all.push(&mut b.b1);
            all.extend(&mut b.b7);
            all.extend(&mut b.b7dbl);
            all.push(&mut b.pool);
        }
        all.extend(&mut self.mixed_7a.b3);
        all.extend(&mut self.mixed_7a.b7);
        for b in &mut self.mixed_7 {
            all.extend([
                &mut b.b1,
                &mut b.b3_1,
                &mut b.b3_2a,
                &mut b.b3_2b,
                &mut b.bd_1,
                &mut b.bd_2,
                &mut b.bd_3a,
                &mut b.bd_3b,
                &mut b.pool,
            ]);
        }
        all
    }

    /// A buffer of `len` floats (contents unspecified) from the network's pool of activation
    /// buffers, for the next batch's input: [`forward`](Self::forward) returns its input's
    /// buffer there.
    pub fn recycled_buffer(&self, len: usize) -> Vec<f32> {
        self.pool.take(len)
    }

    /// All features of a batch of resized, normalised images.
    ///
    /// # Shapes
    /// `x (3, N, 299, 299)` channel-major ([`Act`]) → [`Features`] with `N` rows each.
    pub fn forward(&self, x: Act) -> Features {
        let pool = &self.pool;
        let [c1a, c2a, c2b, c3b, c4a] = &self.stem;
        // Each layer's input goes back to the pool once the layer is done.
        let step = |x: Act, f: &dyn Fn(&Act) -> Act| {
            let y = f(&x);
            pool.give(x.data);
            y
        };
        let x = step(x, &|x| conv(c1a, x, pool)); // 32 × 149²
        let x = step(x, &|x| conv(c2a, x, pool)); // 32 × 147²
        let x = step(x, &|x| conv(c2b, x, pool)); // 64 × 147²
        let x = step(x, &|x| max_pool_3x3(x, 2, false, pool)); // 64 × 73²
        let f64 = x.global_avg();
        let x = step(x, &|x| conv(c3b, x, pool)); // 80 × 73²
        let x = step(x, &|x| conv(c4a, x, pool)); // 192 × 71²
        let mut x = step(x, &|x| max_pool_3x3(x, 2, false, pool)); // 192 × 35²
        let f192 = x.global_avg();
        for b in &self.mixed_5 {
            x = step(x, &|x| b.forward(x, pool)); // 256, 288, 288 × 35²
        }
        x = step(x, &|x| self.mixed_6a.forward(x, pool)); // 768 × 17²
        for b in &self.mixed_6 {
            x = step(x, &|x| b.forward(x, pool));
        }
        let f768 = x.global_avg();
        x = step(x, &|x| self.mixed_7a.forward(x, pool)); // 1280 × 8²
        for b in &self.mixed_7 {
            x = step(x, &|x| b.forward(x, pool)); // 2048 × 8²
        }
        let f2048 = x.global_avg();
        let n = x.n;
        pool.give(x.data);
        let mut logits_unbiased = vec![0.0f32; n * 1008];
        logits_unbiased
            .par_chunks_mut(1008)
            .zip(f2048.par_chunks(2048))
            .for_each(|(dst, f)| {
                for (d, w) in dst.iter_mut().zip(self.fc.chunks_exact(2048)) {
                    let s: f64 = f.iter().zip(w).map(|(a, b)| f64::from(a * b)).sum();
                    *d = s as f32;
                }
            });
        Features {
            f64,
            f192,
            f768,
            f2048,
            logits_unbiased,
        }
    }
}

// The branches of a block are independent: running them as parallel tasks lets a thread that
// finished its share of one convolution take work from another branch instead of waiting at
// the convolution's end (with 2 threads that wait cost ~6 % of the command's wall time). Each
// branch writes its channels straight into the block's output (`torch.cat(…, 1)` of
// channel-major activations is a split of one buffer), so there is no concatenation copy.

/// A block's output of `c` channels at `h × w`, and its buffer cut into the branches'
/// channel ranges (`chans`, in order).
fn block_out<'a>(
    x: &Act,
    (h, w): (usize, usize),
    chans: &[usize],
    data: &'a mut [f32],
) -> Vec<&'a mut [f32]> {
    let plane = x.n * h * w;
    let mut parts = Vec::with_capacity(chans.len());
    let mut rest = data;
    for &c in chans {
        let (head, tail) = rest.split_at_mut(c * plane);
        parts.push(head);
        rest = tail;
    }
    debug_assert!(rest.is_empty());
    parts
}

/// Runs `f` with a pooled buffer of `c × N × h × w` floats cut by `block_out`.
fn with_block_out(
    x: &Act,
    (h, w): (usize, usize),
    chans: &[usize],
    pool: &Pool,
    f: impl FnOnce(Vec<&mut [f32]>),
) -> Act {
    let c: usize = chans.iter().sum();
    let mut data = pool.take(c * x.n * h * w);
    f(block_out(x, (h, w), chans, &mut data));
    Act {
        c,
        n: x.n,
        h,
        w,
        data,
    }
}

impl BlockA {
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        one_by_one_two_chains_pool(x, pool, &self.b1, &self.b5, &self.b3, &self.pool)
    }
}

impl BlockB {
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        two_chains_max_pool(x, pool, std::slice::from_ref(&self.b3), &self.b3dbl)
    }
}

impl BlockC {
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        one_by_one_two_chains_pool(x, pool, &self.b1, &self.b7, &self.b7dbl, &self.pool)
    }
}

/// The branch layout `InceptionA` and `InceptionC` share, at the input's size: 1×1 | a chain |
/// another chain | 3×3 average pool → 1×1, concatenated in that order; the four branches run
/// as parallel tasks writing their parts of the block output.
fn one_by_one_two_chains_pool(
    x: &Act,
    pool: &Pool,
    b1: &Conv,
    chain_a: &[Conv],
    chain_b: &[Conv],
    pooled: &Conv,
) -> Act {
    let last = |c: &[Conv]| c.last().expect("a convolution").co;
    let chans = [b1.co, last(chain_a), last(chain_b), pooled.co];
    with_block_out(x, (x.h, x.w), &chans, pool, |parts| {
        let [o1, oa, ob, op]: [&mut [f32]; 4] = parts.try_into().expect("4 branches");
        join(
            || {
                join(
                    || conv_into(b1, x, o1, pool),
                    || chain_into(chain_a, x, oa, pool),
                )
            },
            || {
                join(
                    || chain_into(chain_b, x, ob, pool),
                    || pooled_conv(pooled, x, false, op, pool),
                )
            },
        );
    })
}

impl BlockD {
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        two_chains_max_pool(x, pool, &self.b3, &self.b7)
    }
}

/// The branch layout `InceptionB` and `InceptionD` share, halving the size: a chain ending in a
/// stride-2 convolution | another | 3×3 stride-2 max pool, concatenated in that order; the three
/// branches run as parallel tasks writing their parts of the block output.
fn two_chains_max_pool(x: &Act, pool: &Pool, chain_a: &[Conv], chain_b: &[Conv]) -> Act {
    let (oh, ow) = ((x.h - 3) / 2 + 1, (x.w - 3) / 2 + 1);
    let last = |c: &[Conv]| c.last().expect("a convolution").co;
    let chans = [last(chain_a), last(chain_b), x.c];
    with_block_out(x, (oh, ow), &chans, pool, |parts| {
        let [oa, ob, om]: [&mut [f32]; 3] = parts.try_into().expect("3 branches");
        join(
            || {
                join(
                    || chain_into(chain_a, x, oa, pool),
                    || chain_into(chain_b, x, ob, pool),
                )
            },
            || max_pool_3x3_into(x, 2, false, om),
        );
    })
}

impl BlockE {
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        let chans = [
            self.b1.co,
            self.b3_2a.co,
            self.b3_2b.co,
            self.bd_3a.co,
            self.bd_3b.co,
            self.pool.co,
        ];
        with_block_out(x, (x.h, x.w), &chans, pool, |parts| {
            let [o1, o3a, o3b, oda, odb, op]: [&mut [f32]; 6] =
                parts.try_into().expect("6 branches");
            join(
                || {
                    join(
                        || conv_into(&self.b1, x, o1, pool),
                        || {
                            let t = conv(&self.b3_1, x, pool);
                            join(
                                || conv_into(&self.b3_2a, &t, o3a, pool),
                                || conv_into(&self.b3_2b, &t, o3b, pool),
                            );
                            pool.give(t.data);
                        },
                    )
                },
                || {
                    join(
                        || {
                            let t1 = conv(&self.bd_1, x, pool);
                            let t = conv(&self.bd_2, &t1, pool);
                            pool.give(t1.data);
                            join(
                                || conv_into(&self.bd_3a, &t, oda, pool),
                                || conv_into(&self.bd_3b, &t, odb, pool),
                            );
                            pool.give(t.data);
                        },
                        || pooled_conv(&self.pool, x, self.max_pool, op, pool),
                    )
                },
            );
        })
    }
}

/// The pooling branch: 3×3 stride-1 pool (max, or average without the padded zeros), then
/// the 1×1 convolution `cv` into `out`.
fn pooled_conv(cv: &Conv, x: &Act, max: bool, out: &mut [f32], pool: &Pool) {
    let mut p = pool.take(x.data.len());
    if max {
        max_pool_3x3_into(x, 1, true, &mut p);
    } else {
        avg_pool_3x3_same_into(x, &mut p);
    }
    let p = Act {
        c: x.c,
        n: x.n,
        h: x.h,
        w: x.w,
        data: p,
    };
    conv_into(cv, &p, out, pool);
    pool.give(p.data);
}

/// `convs` one after the other, the last one into `out`.
fn chain_into(convs: &[Conv], x: &Act, out: &mut [f32], pool: &Pool) {
    let (last, first) = convs.split_last().expect("a convolution");
    let mut y: Option<Act> = None;
    for c in first {
        let next = conv(c, y.as_ref().unwrap_or(x), pool);
        if let Some(prev) = y.replace(next) {
            pool.give(prev.data);
        }
    }
    conv_into(last, y.as_ref().unwrap_or(x), out, pool);
    if let Some(prev) = y {
        pool.give(prev.data);
    }
}

/// Floats of one im2col tile (2 MiB: stays in L2 while the GEMM packs it).
const TILE_FLOATS: usize = 512 << 10;

/// `BasicConv2d` with folded BatchNorm: `relu(conv(x, w′) + b′)`, into a pooled buffer.
///
/// # Shapes
/// `x (Ci, N, H, W)` → `(Co, N, H′, W′)`.
fn conv(cv: &Conv, x: &Act, pool: &Pool) -> Act {
    let (oh, ow) = cv.out_size(x);
    let mut data = pool.take(cv.co * x.n * oh * ow);
    conv_into(cv, x, &mut data, pool);
    Act {
        c: cv.co,
        n: x.n,
        h: oh,
        w: ow,
        data,
    }
}

impl Conv {
    /// Output height and width on `x`.
    fn out_size(&self, x: &Act) -> (usize, usize) {
        (
            (x.h + 2 * self.ph - self.kh) / self.stride + 1,
            (x.w + 2 * self.pw - self.kw) / self.stride + 1,
        )
    }
}

/// [`conv`] into `out (Co, N, H′, W′)`, every element of which is written.
fn conv_into(cv: &Conv, x: &Act, out: &mut [f32], pool: &Pool) {
    debug_assert_eq!(x.c, cv.ci);
    let (oh, ow) = cv.out_size(x);
    assert_eq!(out.len(), cv.co * x.n * oh * ow);
    if let Some(w) = &cv.wino {
        return w.forward_into(x, out, pool);
    }
    let p = x.n * oh * ow;
    let k = cv.ci * cv.kh * cv.kw;
    let threads = rayon::current_num_threads().max(1);
    // Enough tiles for every thread to get several; columns in multiples of 16 (SIMD width).
    let tile = (TILE_FLOATS / k)
        .min(p.div_ceil(4 * threads))
        .clamp(64, 8192)
        .div_ceil(16)
        * 16;
    let dst = SharedMut(out.as_mut_ptr());
    let geo = Geo {
        n: x.n,
        h: x.h,
        w: x.w,
        oh,
        ow,
    };
    (0..p.div_ceil(tile))
        .into_par_iter()
        .for_each_init(Vec::new, |col, t| {
            let t0 = t * tile;
            let len = tile.min(p - t0);
            conv_gemm_tile(cv, x, geo, (t0, len), p, col, dst);
        });
}

#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

/// Output columns `[t0, t0 + len)` of a convolution: im2col block (unless 1×1/stride 1), one
/// GEMM into `dst (Co, P)`, then bias and ReLU on the tile.
fn conv_gemm_tile(
    cv: &Conv,
    x: &Act,
    g: Geo,
    (t0, len): (usize, usize),
    p: usize,
    col: &mut Vec<f32>,
    dst: SharedMut,
) {
    let k = cv.ci * cv.kh * cv.kw;
    let direct = cv.kh == 1 && cv.kw == 1 && cv.stride == 1 && cv.ph == 0 && cv.pw == 0;
    let (rhs, rhs_rs) = if direct {
        // SAFETY: t0 < P = N·H·W, the row length of x's (Ci, P) matrix.
        (unsafe { x.data.as_ptr().add(t0) }, p)
    } else {
        im2col(cv, x, g, (t0, len), col);
        (col.as_ptr(), len)
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(ap) = &cv.packed {
        // SAFETY: `packed` exists only where AVX-512 does; this task alone owns columns
        // [t0, t0 + len) of every row of the (Co, P) output; the operands cover (Co, K) and
        // (K, len) with the strides given.
        unsafe {
            gemm_avx512::gemm(
                cv.co,
                len,
                k,
                ap.as_ptr(),
                rhs,
                rhs_rs,
                dst.ptr().add(t0),
                p,
                Some(&cv.b),
            );
        }
        return;
    }
    // SAFETY: this task alone owns columns [t0, t0 + len) of every row of the (Co, P) output;
    // the row-major operands cover (Co, K) and (K, len) with the strides given.
    unsafe {
        let d = dst.ptr().add(t0);
        gemm_avx512::gemm_portable((cv.co, len, k), cv.w.as_ptr(), k, rhs, rhs_rs, d, p);
        // Bias and ReLU in one pass over the tile while it is in cache.
        for o in 0..cv.co {
            let b = cv.b[o];
            for v in std::slice::from_raw_parts_mut(d.add(o * p), len) {
                *v = (*v + b).max(0.0);
            }
        }
    }
}

/// The `(Ci·kh·kw, len)` column block of output positions `[t0, t0 + len)`; rows ordered as the
/// weight's `(Ci, kh, kw)`, zeros where the window reaches into the padding.
fn im2col(cv: &Conv, x: &Act, g: Geo, (t0, len): (usize, usize), col: &mut Vec<f32>) {
    let k = cv.ci * cv.kh * cv.kw;
    if cv.ph > 0 || cv.pw > 0 {
        col.clear();
        col.resize(k * len, 0.0);
    } else {
        // Without padding every entry is written below: no need to clear the recycled block
        // (its memset was 1 % of the command's time).
        col.resize(k * len, 0.0);
    }
    let stride2 = cv.stride == 2 && gemm_avx512::available();
    // Runs of output positions sharing (image, output row): (n, oy, ox0, ox1, offset in tile).
    let mut runs = Vec::new();
    let (mut q, ohw) = (t0, g.oh * g.ow);
    while q < t0 + len {
        let (n, r) = (q / ohw, q % ohw);
        let (oy, ox0) = (r / g.ow, r % g.ow);
        let ox1 = g.ow.min(ox0 + (t0 + len - q));
        runs.push((n, oy, ox0, ox1, q - t0));
        q += ox1 - ox0;
    }
    let s = cv.stride;
    for c in 0..cv.ci {
        for i in 0..cv.kh {
            for j in 0..cv.kw {
                let row = &mut col[((c * cv.kh + i) * cv.kw + j) * len..][..len];
                // Output columns whose input column ox·s + j − pw lies inside [0, W).
                let lo = cv.pw.saturating_sub(j).div_ceil(s);
                let hi = if g.w + cv.pw > j {
                    ((g.w + cv.pw - j - 1) / s + 1).min(g.ow)
                } else {
                    0
                };
                for &(n, oy, ox0, ox1, off) in &runs {
                    let iy = (oy * s + i) as isize - cv.ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue; // stays zero
                    }
                    let src = &x.data[((c * g.n + n) * g.h + iy as usize) * g.w..][..g.w];
                    let (a, b) = (ox0.max(lo), ox1.min(hi));
                    if b <= a {
                        continue;
                    }
                    let dst = &mut row[off + a - ox0..][..b - a];
                    let from = &src[a * s + j - cv.pw..][..(b - a - 1) * s + 1];
                    #[cfg(target_arch = "x86_64")]
                    if stride2 {
                        // SAFETY: AVX-512 checked; `from` holds 2·len − 1 floats.
                        unsafe { gemm_avx512::copy_every_other(dst, from) };
                        continue;
                    }
                    for (d, v) in dst.iter_mut().zip(from.iter().step_by(s)) {
                        *d = *v;
                    }
                }
            }
        }
    }
}

/// Max pool 3×3 with stride `s`; `pad` = padding 1 with −∞ (`F.max_pool2d(x, 3, 1, 1)`), else
/// none (`nn.MaxPool2d(3, 2)`). Separable (the maximum of three rows, then of three columns):
/// the same result in any order, and the row pass vectorises.
fn max_pool_3x3(x: &Act, s: usize, pad: bool, pool: &Pool) -> Act {
    let p = usize::from(pad);
    let oh = (x.h + 2 * p - 3) / s + 1;
    let ow = (x.w + 2 * p - 3) / s + 1;
    let mut data = pool.take(x.c * x.n * oh * ow);
    max_pool_3x3_into(x, s, pad, &mut data);
    Act {
        c: x.c,
        n: x.n,
        h: oh,
        w: ow,
        data,
    }
}

/// [`max_pool_3x3`] into `out (C, N, H′, W′)`.
fn max_pool_3x3_into(x: &Act, s: usize, pad: bool, out: &mut [f32]) {
    let p = usize::from(pad);
    let oh = (x.h + 2 * p - 3) / s + 1;
    let ow = (x.w + 2 * p - 3) / s + 1;
    let (h, w) = (x.h, x.w);
    assert_eq!(out.len(), x.c * x.n * oh * ow);
    let simd = gemm_avx512::available();
    out.par_chunks_mut(oh * ow)
        .zip(x.data.par_chunks(h * w))
        .for_each_init(Vec::new, |rowmax, (dst, src)| {
            if rowmax.len() < w {
                rowmax.resize(w, 0.0f32);
            }
            let g = PoolGeo { h, w, oh, ow, s, p };
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the CPU has AVX-512 (`available`).
                return unsafe { max_pool_plane_avx512(src, dst, g, rowmax) };
            }
            let _ = simd;
            max_pool_plane(src, dst, g, rowmax);
        });
}

/// One plane's pooling geometry: input and output size, stride, padding.
#[derive(Clone, Copy)]
struct PoolGeo {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    s: usize,
    p: usize,
}

/// The pooling loops compiled for AVX-512 (the crate targets baseline x86-64, where they run
/// 4 floats wide and the average's division one float at a time: ≈ 7 % of the command's CPU
/// time before).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn max_pool_plane_avx512(src: &[f32], dst: &mut [f32], g: PoolGeo, rowmax: &mut [f32]) {
    max_pool_plane(src, dst, g, rowmax)
}

/// [`max_pool_3x3`] of one `h × w` plane. Each output row: the maximum of the window's rows,
/// then of three neighbouring columns as shifted whole-row maxima (vectorisable), read at the
/// stride.
#[inline(always)]
fn max_pool_plane(src: &[f32], dst: &mut [f32], g: PoolGeo, rowmax: &mut [f32]) {
    let PoolGeo { h, w, oh, ow, s, p } = g;
    let rowmax = &mut rowmax[..w];
    for oy in 0..oh {
        // Input rows of the window that lie inside the image.
        let y0 = (oy * s).saturating_sub(p);
        let y1 = (oy * s + 3 - p).min(h);
        rowmax.copy_from_slice(&src[y0 * w..][..w]);
        for yy in y0 + 1..y1 {
            for (m, &v) in rowmax.iter_mut().zip(&src[yy * w..][..w]) {
                *m = m.max(v);
            }
        }
        let d = &mut dst[oy * ow..][..ow];
        if w < 3 {
            // Windows clipped on both sides (tiny inputs only).
            for (ox, d) in d.iter_mut().enumerate() {
                let x0 = (ox * s).saturating_sub(p);
                let x1 = (ox * s + 3 - p).min(w);
                *d = rowmax[x0..x1]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            }
            continue;
        }
        // Full windows: column x covers x..x+3 of `rowmax`.
        let full = |x: usize| rowmax[x].max(rowmax[x + 1]).max(rowmax[x + 2]);
        if p == 1 {
            // Stride 1 (Mixed_7c): padding clips the first and last windows.
            debug_assert_eq!((s, ow), (1, w));
            d[0] = rowmax[0].max(rowmax[1]);
            d[w - 1] = rowmax[w - 2].max(rowmax[w - 1]);
            for (x, o) in d[1..w - 1].iter_mut().enumerate() {
                *o = full(x);
            }
        } else if s == 1 {
            for (x, o) in d.iter_mut().enumerate() {
                *o = full(x);
            }
        } else {
            for (ox, o) in d.iter_mut().enumerate() {
                *o = full(ox * s);
            }
        }
    }
}

/// `F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)`: the mean over the
/// window's positions inside the image. Separable (sums of three columns, then of three rows,
/// both vectorised); the summation order differs from PyTorch's by float32 rounding only.
#[cfg(test)]
fn avg_pool_3x3_same(x: &Act) -> Act {
    let mut data = vec![0.0; x.data.len()];
    avg_pool_3x3_same_into(x, &mut data);
    Act {
        c: x.c,
        n: x.n,
        h: x.h,
        w: x.w,
        data,
    }
}

/// [`avg_pool_3x3_same`] into `out (C, N, H, W)`.
fn avg_pool_3x3_same_into(x: &Act, out: &mut [f32]) {
    let (h, w) = (x.h, x.w);
    assert_eq!(out.len(), x.data.len());
    // Window positions inside the image along one axis of length `len`.
    let inside = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i + 2).min(len) - i.saturating_sub(1)) as f32)
            .collect()
    };
    let (ny, nx) = (inside(h), inside(w));
    let simd = gemm_avx512::available();
    out.par_chunks_mut(h * w)
        .zip(x.data.par_chunks(h * w))
        .for_each_init(Vec::new, |hsum, (dst, src)| {
            // Every element is overwritten: grown, never cleared.
            if hsum.len() < h * w {
                hsum.resize(h * w, 0.0f32);
            }
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the CPU has AVX-512 (`available`).
                return unsafe { avg_pool_plane_avx512(src, dst, (h, w), (&ny, &nx), hsum) };
            }
            let _ = simd;
            avg_pool_plane(src, dst, (h, w), (&ny, &nx), hsum);
        });
}

/// [`avg_pool_plane`] compiled for AVX-512 (see [`max_pool_plane_avx512`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avg_pool_plane_avx512(
    src: &[f32],
    dst: &mut [f32],
    hw: (usize, usize),
    counts: (&[f32], &[f32]),
    hsum: &mut [f32],
) {
    avg_pool_plane(src, dst, hw, counts, hsum)
}

/// [`avg_pool_3x3_same`] of one `h × w` plane; `counts` = window positions inside the image
/// per row and per column.
#[inline(always)]
fn avg_pool_plane(
    src: &[f32],
    dst: &mut [f32],
    (h, w): (usize, usize),
    (ny, nx): (&[f32], &[f32]),
    hsum: &mut [f32],
) {
    let hsum = &mut hsum[..h * w];
    // One pass per axis, each output written once (separate `+=` passes were store-bound);
    // the additions are grouped as `(centre + left) + right`, `(above + centre) + below`.
    for (hs, row) in hsum.chunks_exact_mut(w).zip(src.chunks_exact(w)) {
        if w == 1 {
            hs[0] = row[0];
            continue;
        }
        hs[0] = row[0] + row[1];
        for (d, ((&c, &l), &r)) in hs[1..w - 1]
            .iter_mut()
            .zip(row[1..].iter().zip(&row[..w - 2]).zip(&row[2..]))
        {
            *d = (c + l) + r;
        }
        hs[w - 1] = row[w - 1] + row[w - 2];
    }
    for oy in 0..h {
        let (y0, y1) = (oy.saturating_sub(1), (oy + 2).min(h));
        let d = &mut dst[oy * w..][..w];
        let r0 = &hsum[y0 * w..][..w];
        let cy = ny[oy];
        match y1 - y0 {
            3 => {
                let (r1, r2) = (&hsum[(y0 + 1) * w..][..w], &hsum[(y0 + 2) * w..][..w]);
                for (o, (((&a, &b), &c), &n)) in d.iter_mut().zip(r0.iter().zip(r1).zip(r2).zip(nx))
                {
                    *o = ((a + b) + c) / (cy * n);
                }
            }
            2 => {
                let r1 = &hsum[(y0 + 1) * w..][..w];
                for (o, ((&a, &b), &n)) in d.iter_mut().zip(r0.iter().zip(r1).zip(nx)) {
                    *o = (a + b) / (cy * n);
                }
            }
            _ => {
                for (o, (&a, &n)) in d.iter_mut().zip(r0.iter().zip(nx)) {
                    *o = a / (cy * n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution on `(Ci, N, H, W)` for checking the tiled im2col/GEMM path.
    fn naive(cv: &Conv, x: &Act) -> Act {
        let oh = (x.h + 2 * cv.ph - cv.kh) / cv.stride + 1;
        let ow = (x.w + 2 * cv.pw - cv.kw) / cv.stride + 1;
        let mut out = vec![0.0f32; cv.co * x.n * oh * ow];
        for o in 0..cv.co {
            for n in 0..x.n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = f64::from(cv.b[o]);
                        for c in 0..cv.ci {
                            for i in 0..cv.kh {
                                for j in 0..cv.kw {
                                    let iy = (oy * cv.stride + i) as isize - cv.ph as isize;
                                    let ix = (ox * cv.stride + j) as isize - cv.pw as isize;
                                    if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x.data
                                        [((c * x.n + n) * x.h + iy as usize) * x.w + ix as usize];
                                    let wv = cv.w[((o * cv.ci + c) * cv.kh + i) * cv.kw + j];
                                    s += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        out[((o * x.n + n) * oh + oy) * ow + ox] = (s as f32).max(0.0);
                    }
                }
            }
        }
        Act {
            c: cv.co,
            n: x.n,
            h: oh,
            w: ow,
            data: out,
        }
    }

    fn pseudo(i: usize) -> f32 {
        ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0
    }

    #[test]
    fn winograd_tiles_follow_the_layer_size() {
        // Inception's stride-1 layers: (kernel, output size) → tile.
        for (k, size, want) in [
            ((3, 3), 147, Some((6, 6))),
            ((3, 3), 71, Some((6, 6))),
            ((3, 3), 35, Some((6, 6))),
            ((3, 3), 8, Some((4, 4))),
            ((1, 3), 8, Some((1, 4))),
            ((3, 1), 8, Some((4, 1))),
            ((5, 5), 35, Some((4, 4))),
            ((1, 7), 17, Some((1, 3))),
            ((7, 1), 17, Some((3, 1))),
            ((1, 1), 35, None),
        ] {
            assert_eq!(winograd_tile(k, 1, (size, size)), want, "{k:?} at {size}");
        }
        assert_eq!(winograd_tile((3, 3), 2, (35, 35)), None);
    }

    #[test]
    fn tiled_conv_matches_direct_convolution() {
        for &(ci, co, kh, kw, s, ph, pw, h, w) in &[
            (3, 5, 3, 3, 2, 0, 0, 11, 9),
            (4, 6, 1, 7, 1, 0, 3, 9, 10),
            (4, 6, 7, 1, 1, 3, 0, 9, 10),
            (5, 3, 1, 1, 1, 0, 0, 6, 6),
            (3, 4, 5, 5, 1, 2, 2, 7, 8),
            (2, 3, 3, 3, 2, 1, 1, 8, 8),
        ] {
            let n = 3;
            let x = Act {
                c: ci,
                n,
                h,
                w,
                data: (0..ci * n * h * w).map(pseudo).collect(),
            };
            let mut cv = Conv {
                w: (0..co * ci * kh * kw).map(|i| pseudo(i + 7)).collect(),
                b: (0..co).map(|i| pseudo(i + 3) * 0.1).collect(),
                co,
                ci,
                kh,
                kw,
                stride: s,
                ph,
                pw,
                tile: None,
                wino: None,
                packed: None,
            };
            let want = naive(&cv, &x);
            // The `gemm` crate, then (on AVX-512) the pre-packed kernel.
            let mut got = vec![conv(&cv, &x, &Pool::default())];
            if gemm_avx512::available() {
                cv.packed = Some(gemm_avx512::pack_a(&cv.w, co, ci * kh * kw));
                got.push(conv(&cv, &x, &Pool::default()));
            }
            for got in got {
                assert_eq!((got.c, got.h, got.w), (want.c, want.h, want.w));
                // f32 GEMM against an f64 sum of ≤ 75 products of magnitude ≤ 1.
                for (a, b) in got.data.iter().zip(&want.data) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn pools() {
        let x = Act {
            c: 1,
            n: 1,
            h: 3,
            w: 3,
            data: (1..=9).map(|v| v as f32).collect(),
        };
        let pool = Pool::default();
        let a = avg_pool_3x3_same(&x);
        // Corner: mean of 1, 2, 4, 5 (padding not counted); centre: mean of all nine.
        assert_eq!(a.data[0], 3.0);
        assert_eq!(a.data[4], 5.0);
        let m = max_pool_3x3(&x, 1, true, &pool);
        assert_eq!(m.data, [5.0, 6.0, 6.0, 8.0, 9.0, 9.0, 8.0, 9.0, 9.0]);
        let m2 = max_pool_3x3(&x, 2, false, &pool);
        assert_eq!(m2.data, [9.0]);
    }

    /// The pools' planes against window-by-window definitions, on odd and even sizes, through
    /// the dispatching functions (AVX-512 where present) and the portable plane functions.
    #[test]
    fn pools_match_windowed_definitions() {
        for &(h, w) in &[(7, 9), (8, 8), (17, 17), (2, 5), (3, 2)] {
            let x = Act {
                c: 2,
                n: 3,
                h,
                w,
                data: (0..6 * h * w).map(|i| pseudo(i + 1)).collect(),
            };
            let at = |pl: usize, y: isize, xx: isize| {
                (y >= 0 && xx >= 0 && y < h as isize && xx < w as isize)
                    .then(|| x.data[pl * h * w + y as usize * w + xx as usize])
            };
            let window = |pl: usize, y0: isize, x0: isize| -> Vec<f32> {
                (0..3)
                    .flat_map(|i| (0..3).filter_map(move |j| at(pl, y0 + i, x0 + j)))
                    .collect()
            };
            for (s, pad) in [(1, true), (2, false)] {
                if !pad && (h < 3 || w < 3) {
                    continue;
                }
                let p = usize::from(pad);
                let (oh, ow) = ((h + 2 * p - 3) / s + 1, (w + 2 * p - 3) / s + 1);
                let got = max_pool_3x3(&x, s, pad, &Pool::default());
                let mut portable = vec![f32::NAN; got.data.len()];
                let g = PoolGeo { h, w, oh, ow, s, p };
                for (d, src) in portable.chunks_mut(oh * ow).zip(x.data.chunks(h * w)) {
                    max_pool_plane(src, d, g, &mut vec![0.0; w]);
                }
                for pl in 0..6 {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let win = window(
                                pl,
                                (oy * s) as isize - p as isize,
                                (ox * s) as isize - p as isize,
                            );
                            let want = win.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                            let i = (pl * oh + oy) * ow + ox;
                            assert_eq!(got.data[i], want, "max s{s} {h}x{w}");
                            assert_eq!(portable[i], want, "portable max s{s} {h}x{w}");
                        }
                    }
                }
            }
            let got = avg_pool_3x3_same(&x);
            let inside = |len: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| ((i + 2).min(len) - i.saturating_sub(1)) as f32)
                    .collect()
            };
            let (ny, nx) = (inside(h), inside(w));
            let mut portable = vec![f32::NAN; x.data.len()];
            for (d, src) in portable.chunks_mut(h * w).zip(x.data.chunks(h * w)) {
                avg_pool_plane(src, d, (h, w), (&ny, &nx), &mut vec![0.0; h * w]);
            }
            for pl in 0..6 {
                for y in 0..h {
                    for xx in 0..w {
                        let win = window(pl, y as isize - 1, xx as isize - 1);
                        let want = win.iter().sum::<f32>() / win.len() as f32;
                        let i = (pl * h + y) * w + xx;
                        assert!((got.data[i] - want).abs() < 1e-6, "avg {h}x{w}");
                        assert_eq!(portable[i], got.data[i]);
                    }
                }
            }
        }
    }
}
