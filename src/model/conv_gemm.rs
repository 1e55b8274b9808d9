//! Convolutions as long strided GEMMs on the CPU, where Burn 0.22's `flex` backend is slow:
//! the whole forward pass when no gradient is recorded (inference), and the weight gradient in
//! training. Results equal Burn's up to float summation order.
//!
//! Why: Burn's default `conv2d_weight_backward`, which `flex` uses, runs a convolution whose
//! "kernel" is the output gradient: per input channel one GEMM with only `k×k` output columns.
//! On this project's 2-core machine that reached 38–76 GFLOP/s on the refinement network's
//! shapes, against 100–220 GFLOP/s for plain GEMMs of the same work, which [`weight_grad`] uses;
//! `flex`'s forward (per-image im2col tiles) is likewise slower than [`forward_host`]'s k² GEMMs
//! over the zero-padded input, which build no im2col matrix at all.
//!
//! Weight gradients without a custom autodiff op: while a [`Tape`] is open on this thread,
//! every [`conv2d_gemm`] whose weight requires a gradient convolves with the *frozen* weight
//! (autodiff then computes only the input and bias gradients) and adds a zero "tap" leaf to its
//! output, whose gradient after `backward()` is the output gradient. [`Tape::finish`] turns each
//! tap into `dL/dW` and stores it in the `Gradients` under the weight, where the optimiser finds
//! it. Only stride-1 convolutions on the CPU (`flex`) device: GPU backends keep their own code.

use burn::tensor::Gradients;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the GEMM convolutions (inference forward and training weight gradients) on or off
/// process-wide (on by default). Off, every convolution is Burn's; useful to compare the two.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

struct Tap {
    /// The parameter (an autodiff leaf): its node receives the gradient.
    weight: Tensor<4>,
    /// The convolution input, without autodiff.
    x: Tensor<4>,
    /// Zero leaf added to the output: its gradient is the output gradient.
    tap: Tensor<4>,
    padding: usize,
}

thread_local! {
    static TAPS: RefCell<Option<Vec<Tap>>> = const { RefCell::new(None) };
}

/// Records the convolutions of one forward pass on this thread until [`Tape::finish`]; dropping
/// it unfinished (e.g. a skipped non-finite step) discards the records.
pub struct Tape(());

impl Tape {
    /// Opens the tape (replacing any unfinished one on this thread).
    pub fn begin() -> Self {
        TAPS.with(|t| *t.borrow_mut() = enabled().then(Vec::new));
        Tape(())
    }

    /// Computes `dL/dW` of every recorded convolution from `grads` (the result of the
    /// `backward()` of the loss whose forward pass was recorded) and adds it to the weight's
    /// entry in `grads`. A weight used by several recorded convolutions (a discriminator on fake
    /// then real images) receives the sum.
    pub fn finish(self, grads: &mut Gradients) {
        let taps = TAPS.with(|t| t.borrow_mut().take()).unwrap_or_default();
        for tap in taps {
            let Some(g) = tap.tap.grad(grads) else {
                continue;
            };
            let dims = tap.weight.dims();
            let dw = weight_grad(tap.x, g, dims, tap.padding);
            let total = match tap.weight.grad(grads) {
                Some(prev) => prev + dw,
                None => dw,
            };
            tap.weight.grad_replace(grads, total);
        }
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        TAPS.with(|t| *t.borrow_mut() = None);
    }
}

/// `conv2d(x, weight, bias)` with stride and symmetric zero padding. On a plain CPU device
/// (no autodiff) stride-1 convolutions run as [`forward_host`]; while a [`Tape`] is open and
/// `weight` requires a gradient, its weight gradient is left to [`Tape::finish`].
///
/// # Shapes
/// `x (N, Ci, H, W)`, `weight (Co, Ci, k, k)`, `bias (Co,)` → `(N, Co, H', W')`.
pub fn conv2d_gemm(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
) -> Tensor<4> {
    let opts = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
    let device = x.device();
    let [_, _, h, w] = x.dims();
    let [_, _, kh, kw] = weight.dims();
    let fits = kh <= h + 2 * padding && kw <= w + 2 * padding; // else Burn reports the error
    if stride == 1 && fits && !device.is_autodiff() && device == Device::flex() && enabled() {
        // Inference on the CPU: no graph to record, so the whole convolution can be ours.
        return forward_host(x, weight, bias, padding);
    }
    // The GEMMs run on the host: only worth it where the tensors already live there (`flex`;
    // device equality ignores autodiff); GPU backends keep their own backward. Strided
    // convolutions (the discriminators' small downsampling layers) measured no faster with
    // per-tap column copies, so they keep Burn's backward too.
    let taping = stride == 1
        && weight.is_require_grad()
        && TAPS.with(|t| t.borrow().is_some())
        && device == Device::flex();
    if !taping {
        return conv2d(x, weight, Some(bias), opts);
    }
    // Burn's `detach` keeps a leaf's require-grad flag: clear it, or Burn computes the weight
    // gradient anyway.
    let frozen = weight.clone().detach().set_require_grad(false);
    let out = conv2d(x.clone(), frozen, Some(bias), opts);
    let tap = Tensor::<4>::zeros(out.dims(), &out.device()).require_grad();
    TAPS.with(|t| {
        if let Some(list) = t.borrow_mut().as_mut() {
            list.push(Tap {
                weight,
                x: x.detach(),
                tap: tap.clone(),
                padding,
            })
        }
    });
    out + tap
}

/// A raw pointer the threads may share: each writes only its own columns.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: used only for disjoint writes (see `forward_host`).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// A method, so closures capture the whole (Send) wrapper rather than its raw pointer field.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `src (N, C, H, W)` laid out as `C` planes of `(N, Hp, Wp)` zeros with each `H×W` image at row
/// and column `offset`, plus `slack` zeros after the last plane: the zero-padded input
/// (`offset = p`) or the output gradient padded to the input's planes (`offset = 0`).
fn to_planes(
    src: &[f32],
    [n, c, h, w]: [usize; 4],
    (hp, wp): (usize, usize),
    offset: usize,
    slack: usize,
) -> Vec<f32> {
    let plane = n * hp * wp;
    let mut out = vec![0f32; c * plane + slack];
    out[..c * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(ch, dst)| {
            for b in 0..n {
                let img = &src[(b * c + ch) * h * w..][..h * w];
                for y in 0..h {
                    dst[b * hp * wp + (y + offset) * wp + offset..][..w]
                        .copy_from_slice(&img[y * w..][..w]);
                }
            }
        });
    out
}

/// One contiguous range `(t0, len)` of `positions` per thread, in order (empty ranges dropped).
/// The GEMMs here are short and wide, which gemm's own threading, over output blocks, does not
/// split well; splitting the positions does.
fn thread_ranges(positions: usize) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().clamp(1, 8);
    let part = positions.div_ceil(threads).max(1);
    (0..threads)
        .map(|th| (th * part, part.min(positions.saturating_sub(th * part))))
        .filter(|&(_, len)| len > 0)
        .collect()
}

/// A tensor's values on the host, as f32.
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert")
}

/// Stride-1 convolution forward on host data, for devices without autodiff: with the input
/// laid out as in [`weight_grad`], `Out (Co, N·Hp·Wp) = Σᵢⱼ Wᵢⱼ (Co, Ci) · Xᵢⱼ (Ci, N·Hp·Wp)`
/// (k² accumulating GEMMs; the positions are split between the threads), then the valid
/// `H'×W'` window of each image is kept and the bias added.
///
/// Large batches go through in chunks of images so the padded copies stay under
/// [`HOST_CHUNK_FLOATS`].
///
/// # Shapes
/// `x (N, Ci, H, W)`, `weight (Co, Ci, k, k)`, `bias (Co,)` → `(N, Co, H', W')`.
pub fn forward_host(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, padding: usize) -> Tensor<4> {
    let [n, ci, h, w] = x.dims();
    let [co, ..] = weight.dims();
    let per_image = (ci + co) * (h + 2 * padding) * (w + 2 * padding);
    let chunk = (HOST_CHUNK_FLOATS / per_image.max(1)).max(1);
    if n <= chunk {
        return forward_host_batch(x, weight, bias, padding);
    }
    let parts: Vec<Tensor<4>> = (0..n)
        .step_by(chunk)
        .map(|b0| {
            let b1 = (b0 + chunk).min(n);
            let xs = x.clone().slice([b0..b1, 0..ci, 0..h, 0..w]);
            forward_host_batch(xs, weight.clone(), bias.clone(), padding)
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// Floats of padded input plus padded output [`forward_host`] handles at once (256 MiB).
pub const HOST_CHUNK_FLOATS: usize = 64 << 20;

fn forward_host_batch(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    padding: usize,
) -> Tensor<4> {
    let [n, ci, h, w] = x.dims();
    let [co, _, kh, kw] = weight.dims();
    let device = x.device();
    let (hp, wp) = (h + 2 * padding, w + 2 * padding);
    let (oh, ow) = (hp + 1 - kh, wp + 1 - kw);
    let xs = host(x);
    let ws = host(weight);
    let bs = host(bias);
    let plane = n * hp * wp;
    let xpad = to_planes(&xs, [n, ci, h, w], (hp, wp), padding, (kh - 1) * wp + kw);
    let k2 = kh * kw;
    let mut out_pad = vec![0f32; co * plane];
    let dst = SharedMut(out_pad.as_mut_ptr());
    thread_ranges(plane).into_par_iter().for_each(|(t0, len)| {
        for ij in 0..k2 {
            let (i, j) = (ij / kw, ij % kw);
            // SAFETY: dst columns [t0, t0 + len) of the Co×plane output belong to this thread
            // alone; lhs is W[:, :, i, j] inside `ws`; rhs element (c, t) =
            // xpad[c·plane + i·Wp + j + t0 + t] stays inside `xpad` thanks to the slack.
            unsafe {
                gemm::gemm(
                    co,
                    len,
                    ci,
                    dst.ptr().add(t0),
                    1,
                    plane as isize,
                    ij > 0,
                    ws.as_ptr().add(ij),
                    k2 as isize,
                    (ci * k2) as isize,
                    xpad.as_ptr().add(i * wp + j + t0),
                    1,
                    plane as isize,
                    1.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    });
    let mut out = vec![0f32; n * co * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(bo, dst)| {
            let (b, o) = (bo / co, bo % co);
            let src = &out_pad[o * plane + b * hp * wp..];
            for y in 0..oh {
                for (d, v) in dst[y * ow..][..ow].iter_mut().zip(&src[y * wp..][..ow]) {
                    *d = v + bs[o];
                }
            }
        });
    Tensor::<4>::from_data(TensorData::new(out, [n, co, oh, ow]), &device)
}

/// `dL/dW` of a stride-1 convolution (symmetric zero padding `p`) from its input
/// `x (N, Ci, H, W)` and output gradient `g (N, Co, H', W')`.
///
/// No im2col matrix is built: with the input zero-padded and laid out `(Ci, N, Hp, Wp)`, the
/// tap `(i, j)` of every input channel, over all images and output positions, is one strided
/// row: position `t = n·Hp·Wp + y·Wp + x` reads element `i·Wp + j + t` of the channel's plane.
/// The output gradient laid out `(Co, N, Hp, Wp)` with zeros where `y ≥ H'` or `x ≥ W'` makes
/// the positions that wrap into the next row or image contribute nothing, so
/// `dW[:, :, i, j] = Gpad (Co, N·Hp·Wp) · Xᵢⱼᵀ (N·Hp·Wp, Ci)`: k² GEMMs with long inner
/// dimensions, the positions split between the threads (each with its own partial dW, summed
/// in order, so the result is deterministic).
///
/// # Shapes
/// → `(Co, Ci, k, k)` (`w_dims`), on `x`'s device without autodiff (what `Gradients` hold).
pub fn weight_grad(x: Tensor<4>, g: Tensor<4>, w_dims: [usize; 4], padding: usize) -> Tensor<4> {
    let [n, ci, h, w] = x.dims();
    let [_, co, oh, ow] = g.dims();
    let [_, _, kh, kw] = w_dims;
    let (hp, wp) = (h + 2 * padding, w + 2 * padding);
    assert!(
        oh + kh == hp + 1 && ow + kw == wp + 1,
        "weight_grad (stride 1): output {oh}x{ow} does not match input {h}x{w}, kernel {kh}x{kw}, padding {padding}"
    );
    let x = x.inner();
    let device = x.device();
    let plane = n * hp * wp; // one channel of every image
    // Reads run up to (k−1)·Wp + (k−1) past the last plane; they meet zero gradients.
    let xpad = to_planes(
        &host(x),
        [n, ci, h, w],
        (hp, wp),
        padding,
        (kh - 1) * wp + kw,
    );
    let gpad = to_planes(&host(g.inner()), [n, co, oh, ow], (hp, wp), 0, 0);
    let k2 = kh * kw;
    // Per thread: (k·k, Co, Ci) blocks, one per tap.
    let partials: Vec<Vec<f32>> = thread_ranges(plane)
        .into_par_iter()
        .map(|(t0, len)| {
            let mut dw = vec![0f32; co * ci * k2];
            for ij in 0..k2 {
                let (i, j) = (ij / kw, ij % kw);
                // SAFETY: rhs element (t, c) = xpad[c·plane + i·Wp + j + t0 + t] with
                // t0 + t < plane stays inside `xpad` thanks to the slack.
                unsafe {
                    gemm_block(
                        &mut dw,
                        ij,
                        (co, ci, len),
                        gpad.as_ptr().add(t0),
                        plane,
                        xpad.as_ptr().add(i * wp + j + t0),
                        plane,
                    )
                };
            }
            dw
        })
        .collect();
    // Sum the partials and move from (k·k, Co, Ci) to the weight's (Co, Ci, k, k).
    let mut dw = vec![0f32; co * ci * k2];
    for (o, row) in dw.chunks_mut(ci * k2).enumerate() {
        for c in 0..ci {
            for ij in 0..k2 {
                row[c * k2 + ij] = partials.iter().map(|p| p[(ij * co + o) * ci + c]).sum();
            }
        }
    }
    Tensor::<4>::from_data(TensorData::new(dw, w_dims), &device)
}

/// `dw[ij] (Co×Ci, row-major) = lhs (Co×K, row stride lhs_rs) · rhs (K×Ci: element (t, c) at
/// rhs + c·rhs_cs + t)`, single-threaded.
///
/// # Safety
/// Every element addressed through `lhs` and `rhs` must be readable.
unsafe fn gemm_block(
    dw: &mut [f32],
    ij: usize,
    (co, ci, k): (usize, usize, usize),
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_cs: usize,
) {
    let dst = &mut dw[ij * co * ci..][..co * ci];
    // SAFETY: dst is a Co×Ci row-major block of `dw`; the caller vouches for lhs and rhs.
    unsafe {
        gemm::gemm(
            co,
            ci,
            k,
            dst.as_mut_ptr(),
            1,
            ci as isize,
            false,
            lhs,
            1,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The tape's gradients equal Burn's own (its convolution-based weight backward) for the
    /// kernel/stride/padding combinations sg2im uses, non-square inputs, and a weight used
    /// twice (accumulated). Tolerance 1e-4 abs + rel: only the summation order differs.
    #[test]
    fn tape_gradients_equal_burns() {
        let dev = Device::flex().autodiff();
        for &(n, ci, h, w, co, k, s, p) in &[
            (
                3usize, 5usize, 8usize, 8usize, 4usize, 3usize, 1usize, 1usize,
            ),
            (2, 3, 9, 7, 6, 3, 1, 1),
            (4, 6, 8, 8, 5, 1, 1, 0),
            (1, 2, 6, 10, 3, 3, 1, 0),
            (2, 4, 4, 4, 3, 3, 1, 1),
            (2, 3, 9, 7, 6, 4, 2, 1),
            (3, 4, 8, 8, 5, 4, 2, 1),
            (2, 3, 7, 9, 4, 3, 2, 0),
        ] {
            let x0: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Normal(0., 1.), &dev);
            let x1: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Normal(0., 1.), &dev);
            let wt: Tensor<4> =
                Tensor::random([co, ci, k, k], Distribution::Normal(0., 0.3), &dev).require_grad();
            let b: Tensor<1> =
                Tensor::random([co], Distribution::Normal(0., 0.3), &dev).require_grad();
            let xi = x0.clone().require_grad();
            let run = |taped: bool| {
                let tape = taped.then(Tape::begin);
                let y0 = conv2d_gemm(xi.clone(), wt.clone(), b.clone(), s, p);
                let y1 = conv2d_gemm(x1.clone(), wt.clone(), b.clone(), s, p);
                let loss =
                    (y0.clone() * y0).sum() + (y1.clone() * y1.clone()).sum() * 0.5 + y1.sum();
                let recorded = TAPS.with(|t| t.borrow().as_ref().map_or(0, Vec::len));
                let expected = if taped && s == 1 { 2 } else { 0 };
                assert_eq!(recorded, expected, "tape engaged");
                let mut grads = loss.backward();
                if let Some(t) = tape {
                    t.finish(&mut grads);
                }
                let get4 = |t: &Tensor<4>| {
                    t.grad(&grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap()
                };
                let gb = b
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                (get4(&wt), get4(&xi), gb)
            };
            let (w_ref, x_ref, b_ref) = run(false);
            let (w_new, x_new, b_new) = run(true);
            for (name, a, e) in [
                ("weight", &w_new, &w_ref),
                ("input", &x_new, &x_ref),
                ("bias", &b_new, &b_ref),
            ] {
                assert_eq!(a.len(), e.len());
                for (u, v) in a.iter().zip(e.iter()) {
                    assert!(
                        (u - v).abs() <= 1e-4 + 1e-4 * v.abs(),
                        "{name} grad k{k} s{s} p{p}: {u} vs {v}"
                    );
                }
            }
        }
    }

    /// The inference forward equals Burn's convolution (1e-5 abs + rel: summation order only),
    /// and `conv2d_gemm` takes it on a plain CPU device.
    #[test]
    fn host_forward_equals_burns() {
        let dev = Device::flex();
        for &(n, ci, h, w, co, k, p) in &[
            (2usize, 5usize, 8usize, 8usize, 4usize, 3usize, 1usize),
            (3, 3, 9, 7, 6, 3, 1),
            (1, 6, 5, 11, 5, 1, 0),
            (2, 2, 6, 10, 3, 3, 0),
            (4, 7, 4, 4, 9, 3, 1),
        ] {
            let x: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Normal(0., 1.), &dev);
            let wt: Tensor<4> = Tensor::random([co, ci, k, k], Distribution::Normal(0., 0.3), &dev);
            let b: Tensor<1> = Tensor::random([co], Distribution::Normal(0., 0.3), &dev);
            let want = conv2d(
                x.clone(),
                wt.clone(),
                Some(b.clone()),
                ConvOptions::new([1, 1], [p, p], [1, 1], 1),
            );
            let got = forward_host(x.clone(), wt.clone(), b.clone(), p);
            let via_layer = conv2d_gemm(x, wt, b, 1, p);
            assert_eq!(got.dims(), want.dims());
            let want = want.into_data().try_to_vec::<f32>().unwrap();
            for t in [got, via_layer] {
                for (u, v) in t.into_data().try_to_vec::<f32>().unwrap().iter().zip(&want) {
                    assert!(
                        (u - v).abs() <= 1e-5 + 1e-5 * v.abs(),
                        "k{k} p{p}: {u} vs {v}"
                    );
                }
            }
        }
    }

    /// A batch larger than one chunk gives the same result as Burn's convolution.
    #[test]
    fn host_forward_in_chunks() {
        let dev = Device::flex();
        // (Ci + Co)·Hp·Wp = 8·66·66 floats per image: 2 000 images exceed one chunk.
        let n = HOST_CHUNK_FLOATS / (8 * 66 * 66) + 3;
        let x: Tensor<4> = Tensor::random([n, 4, 64, 64], Distribution::Normal(0., 1.), &dev);
        let wt: Tensor<4> = Tensor::random([4, 4, 3, 3], Distribution::Normal(0., 0.3), &dev);
        let b: Tensor<1> = Tensor::random([4], Distribution::Normal(0., 0.3), &dev);
        let want = conv2d(
            x.clone(),
            wt.clone(),
            Some(b.clone()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let got = forward_host(x, wt, b, 1);
        let diff = (got - want).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "max difference {diff}");
    }

    #[test]
    fn no_tape_no_taps() {
        let dev = Device::flex().autodiff();
        let x: Tensor<4> = Tensor::ones([1, 1, 4, 4], &dev);
        let w: Tensor<4> = Tensor::ones([1, 1, 3, 3], &dev).require_grad();
        let b: Tensor<1> = Tensor::zeros([1], &dev).require_grad();
        let y = conv2d_gemm(x, w.clone(), b, 1, 1);
        let grads = y.sum().backward();
        // Burn's own backward ran: the weight has its gradient without any tape.
        let g = w
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(g, vec![9., 12., 9., 12., 16., 12., 9., 12., 9.]);
        assert!(TAPS.with(|t| t.borrow().is_none()));
    }
}
