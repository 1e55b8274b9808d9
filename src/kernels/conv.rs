//! Convolutions as long strided GEMMs on the CPU, where Burn 0.22's `flex` backend is slow:
//! forward, input gradient and weight gradient. Results equal Burn's up to float summation
//! order.
//!
//! Why: `flex` convolves image by image through im2col tiles, and its weight gradient is a
//! convolution whose "kernel" is the output gradient (per input channel one GEMM with only
//! `k×k` output columns). On this project's 2-core machine those reached 38–100 GFLOP/s on the
//! refinement network's and the object discriminator's shapes, against 110–250 GFLOP/s for the
//! long GEMMs used here. Two layouts: for large maps no im2col matrix at all (with the
//! zero-padded input laid out `(Ci, N, Hp, Wp)`, tap `(i, j)` of a channel over every image and
//! position is one strided row, see `conv_host`); for small maps, where most padded positions
//! would be wasted, and for many output channels, explicit column tiles (`Im2col`).
//!
//! In training the convolution is a custom autodiff operation on `Autodiff<Flex>` (Burn's
//! backend-extension API): `ConvBackward` computes the input gradient as the same kind of
//! convolution (the output gradient with the flipped, transposed kernel), the weight gradient
//! with `weight_grad_host` and the bias gradient as a sum. Strided convolutions (the
//! discriminators' downsampling layers) become stride-1 ones over the input's phases
//! (`Geometry`). Other devices (GPU backends) and other autodiff configurations get `None` and
//! keep Burn's own code (`model::layers::Conv2d`).

use super::host::{AdFlex, SharedMut, dense, filled, flex_tensor, host, on_cpu};
use burn::tensor::{Device, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_dispatch::backends::Flex;
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// `conv2d(x, weight, bias)` with stride and symmetric zero padding, square kernels, on the CPU
/// (`flex`): directly without autodiff (inference), as a custom autodiff operation with
/// autodiff (training). Strided convolutions become stride-1 ones over the input's phases
/// (`Geometry`). `None` for anything else (other devices, mixed plain and autodiff tensors,
/// unusual or wrong shapes, which Burn then reports).
///
/// # Shapes
/// `x (N, Ci, H, W)`, `weight (Co, Ci, k, k)`, `bias (Co,)` → `(N, Co, H', W')`.
pub fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: &Tensor<1>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<4>> {
    let [_, ci, h, w] = x.dims();
    let [co, wci, kh, kw] = weight.dims();
    // `padding < k` keeps the input gradient's "full" padding `k − 1 − p` non-negative.
    let ours = stride >= 1
        && kh == kw
        && padding < kh
        && wci == ci
        && bias.dims() == [co]
        && kh <= h + 2 * padding
        && kw <= w + 2 * padding
        && on_cpu(x)
        && on_cpu(weight)
        && on_cpu(bias);
    if !ours {
        return None;
    }
    // A plain input with an autodiff weight still records a graph.
    let tracked = [x.device(), weight.device(), bias.device()]
        .iter()
        .any(Device::is_autodiff);
    if !tracked {
        return Some(forward_host(
            x.clone(),
            weight.clone(),
            bias.clone(),
            stride,
            padding,
        ));
    }
    autodiff_conv(x.clone(), weight.clone(), bias.clone(), stride, padding)
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let d = t.layout().shape();
    [d[0], d[1], d[2], d[3]]
}

/// How a convolution maps onto the stride-1 kernels. Stride 1: as it is. Stride `s > 1`: with
/// `Xₐᵦ[c, y, x] = Xpad[c, s·y + a, s·x + b]` (the `s²` phases of the zero-padded input as
/// channels `c·s² + a·s + b`) and the kernel zero-padded to `s·kq`, `kq = ⌈k/s⌉`, and split the
/// same way, `out[o, y, x] = Σ W[o, c, s·i′ + a, s·j′ + b] · Xₐᵦ[c, y + i′, x + j′]`: a stride-1,
/// unpadded convolution with a `kq × kq` kernel over `Ci·s²` channels. Burn's own strided
/// convolution runs image by image through narrow GEMMs; this costs no extra FLOPs when `s`
/// divides `k` (the discriminators' `C4-…-2` layers).
#[derive(Clone, Copy, Debug)]
struct Geometry {
    x: [usize; 4],
    co: usize,
    k: usize,
    s: usize,
    p: usize,
    /// Kernel size of the stride-1 convolution.
    kq: usize,
    /// Phase grid (`H' + kq − 1`, `W' + kq − 1`): just large enough for the output.
    ph: usize,
    pw: usize,
}

impl Geometry {
    fn new(x: [usize; 4], [co, _, k, _]: [usize; 4], s: usize, p: usize) -> Self {
        let [_, _, h, w] = x;
        let kq = k.div_ceil(s);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        Self {
            x,
            co,
            k,
            s,
            p,
            kq,
            ph: oh + kq - 1,
            pw: ow + kq - 1,
        }
    }

    /// Input dimensions of the stride-1 convolution.
    fn inner_x(&self) -> [usize; 4] {
        let [n, ci, ..] = self.x;
        match self.s {
            1 => self.x,
            s => [n, ci * s * s, self.ph, self.pw],
        }
    }

    /// Kernel dimensions of the stride-1 convolution.
    fn inner_w(&self) -> [usize; 4] {
        let ci = self.x[1];
        match self.s {
            1 => [self.co, ci, self.k, self.k],
            s => [self.co, ci * s * s, self.kq, self.kq],
        }
    }

    fn inner_padding(&self) -> usize {
        if self.s == 1 { self.p } else { 0 }
    }

    /// Output dimensions (the phase grid less the kernel's reach; for stride 1 the grid is the
    /// padded input).
    fn out(&self) -> [usize; 4] {
        let k = self.kq;
        [self.x[0], self.co, self.ph + 1 - k, self.pw + 1 - k]
    }

    /// For each phase `a` and phase-grid row `y < len_out`, the row `s·y + a − p` of the
    /// unpadded input of `len` rows, if inside it (flattened `a·len_out + y`; also columns).
    fn sources(&self, len_out: usize, len: usize) -> Vec<Option<usize>> {
        (0..self.s)
            .flat_map(|a| (0..len_out).map(move |y| (a, y)))
            .map(|(a, y)| (self.s * y + a).checked_sub(self.p).filter(|&r| r < len))
            .collect()
    }

    /// The input as the stride-1 convolution reads it (phases for `s > 1`).
    fn split_input<'a>(&self, x: &'a [f32]) -> Cow<'a, [f32]> {
        let s = self.s;
        if s == 1 {
            return x.into();
        }
        let [n, ci, h, w] = self.x;
        let (ph, pw) = (self.ph, self.pw);
        let (rows, cols) = (self.sources(ph, h), self.sources(pw, w));
        let mut out = vec![0f32; n * ci * s * s * ph * pw];
        out.par_chunks_mut(s * s * ph * pw)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (ab, plane) in dst.chunks_mut(ph * pw).enumerate() {
                    let cols = &cols[(ab % s) * pw..][..pw];
                    for (row, r) in plane.chunks_mut(pw).zip(&rows[(ab / s) * ph..][..ph]) {
                        let Some(r) = r else { continue };
                        for (d, q) in row.iter_mut().zip(cols) {
                            if let Some(q) = q {
                                *d = src[r * w + q];
                            }
                        }
                    }
                }
            });
        out.into()
    }

    /// `dL/dx` from the stride-1 convolution's input gradient (inverse of [`Self::split_input`];
    /// padding and rows no tap reads get nothing).
    fn merge_input_grad(&self, d: Vec<f32>) -> Vec<f32> {
        let s = self.s;
        if s == 1 {
            return d;
        }
        let [n, ci, h, w] = self.x;
        let (ph, pw) = (self.ph, self.pw);
        let (rows, cols) = (self.sources(ph, h), self.sources(pw, w));
        let mut dx = vec![0f32; n * ci * h * w];
        dx.par_chunks_mut(h * w)
            .zip(d.par_chunks(s * s * ph * pw))
            .for_each(|(dst, src)| {
                for (ab, plane) in src.chunks(ph * pw).enumerate() {
                    let cols = &cols[(ab % s) * pw..][..pw];
                    for (row, r) in plane.chunks(pw).zip(&rows[(ab / s) * ph..][..ph]) {
                        let Some(r) = r else { continue };
                        for (v, q) in row.iter().zip(cols) {
                            if let Some(q) = q {
                                dst[r * w + q] = *v;
                            }
                        }
                    }
                }
            });
        dx
    }

    /// Position of kernel tap `(i, j)` within one `(o, c)` block of the split kernel
    /// (`s² · kq²` values), for every tap in row-major order.
    fn kernel_taps(&self) -> Vec<usize> {
        let (s, k, kq) = (self.s, self.k, self.kq);
        (0..k * k)
            .map(|ij| {
                let (i, j) = (ij / k, ij % k);
                ((i % s) * s + j % s) * kq * kq + (i / s) * kq + j / s
            })
            .collect()
    }

    /// The kernel as the stride-1 convolution uses it.
    fn split_kernel<'a>(&self, wt: &'a [f32]) -> Cow<'a, [f32]> {
        let s = self.s;
        if s == 1 {
            return wt.into();
        }
        let (k, kq) = (self.k, self.kq);
        let taps = self.kernel_taps();
        let block = s * s * kq * kq;
        let mut out = vec![0f32; wt.len() / (k * k) * block];
        out.par_chunks_mut(block)
            .zip(wt.par_chunks(k * k))
            .for_each(|(dst, src)| {
                for (&t, &v) in taps.iter().zip(src) {
                    dst[t] = v;
                }
            });
        out.into()
    }

    /// `dL/dW` from the stride-1 convolution's kernel gradient (taps past `k` dropped).
    fn merge_kernel_grad(&self, d: Vec<f32>) -> Vec<f32> {
        let s = self.s;
        if s == 1 {
            return d;
        }
        let (k, kq) = (self.k, self.kq);
        let taps = self.kernel_taps();
        let block = s * s * kq * kq;
        let mut dw = vec![0f32; d.len() / block * k * k];
        dw.par_chunks_mut(k * k)
            .zip(d.par_chunks(block))
            .for_each(|(dst, src)| {
                for (o, &t) in dst.iter_mut().zip(&taps) {
                    *o = src[t];
                }
            });
        dw
    }

    /// The forward pass on host data (`(N, Co, H', W')`), with the input and kernel as the
    /// stride-1 convolution read them (borrowed for stride 1), for the backward pass to keep.
    fn forward<'a>(
        &self,
        x: &'a [f32],
        wt: &'a [f32],
        bias: &[f32],
    ) -> (Vec<f32>, Cow<'a, [f32]>, Cow<'a, [f32]>) {
        let (x_in, w_in) = (self.split_input(x), self.split_kernel(wt));
        let out = conv_host(
            &x_in,
            self.inner_x(),
            &w_in,
            self.inner_w(),
            Some(bias),
            self.inner_padding(),
        );
        (out, x_in, w_in)
    }
}

/// What [`ConvBackward`] keeps from the forward pass: the input and kernel as the stride-1
/// convolution saw them (for stride 1 the caller's buffers, shared, not copied).
#[derive(Clone, Debug)]
struct ConvState {
    x: FlexTensor,
    weight: FlexTensor,
    geo: Geometry,
}

/// Backward of the convolution: parents `[x, weight, bias]`.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let ConvState { x, weight, geo } = ops.state;
        let g_dims = dims4(&g);
        let gs = dense(&g);
        let (xi, wi, q) = (geo.inner_x(), geo.inner_w(), geo.inner_padding());
        if let Some(node) = node_x {
            let dx = geo.merge_input_grad(input_grad_host(&gs, g_dims, &dense(&weight), wi, q));
            grads.register::<Flex>(node.id, flex_tensor(dx, &geo.x));
        }
        if let Some(node) = node_w {
            let dw = geo.merge_kernel_grad(weight_grad_host(&dense(&x), xi, &gs, g_dims, wi, q));
            let [_, ci, ..] = geo.x;
            grads.register::<Flex>(node.id, flex_tensor(dw, &[geo.co, ci, geo.k, geo.k]));
        }
        if let Some(node) = node_b {
            let [n, co, oh, ow] = g_dims;
            // Accumulated in f64: a sequential f32 sum over thousands of positions drifts by
            // ~1e-4 relative where the terms cancel.
            let mut db = vec![0f64; co];
            for b in 0..n {
                for (o, acc) in db.iter_mut().enumerate() {
                    let block = &gs[(b * co + o) * oh * ow..][..oh * ow];
                    *acc += block.iter().map(|&v| v as f64).sum::<f64>();
                }
            }
            let db = db.into_iter().map(|v| v as f32).collect();
            grads.register::<Flex>(node.id, flex_tensor(db, &[co]));
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Convolutions this thread ran as the custom autodiff operation (tests check it engaged).
    static OPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The convolution as an autodiff operation; `None` when a tensor is not an `Autodiff<Flex>`
/// one (e.g. mixed with a plain tensor), for Burn to handle.
fn autodiff_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<4>> {
    let x = x.try_into_primitive::<AdFlex>().ok()?;
    let weight = weight.try_into_primitive::<AdFlex>().ok()?;
    let bias = bias.try_into_primitive::<AdFlex>().ok()?;
    #[cfg(test)]
    OPS.with(|c| c.set(c.get() + 1));
    let (xp, wp, bp) = (x.primitive(), weight.primitive(), bias.primitive());
    let geo = Geometry::new(dims4(xp), dims4(wp), stride, padding);
    let (xs, ws) = (dense(xp), dense(wp));
    let (out, x_in, w_in) = geo.forward(&xs, &ws, &dense(bp));
    let out = flex_tensor(out, &geo.out());
    let prep = ConvBackward
        .prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful();
    let result = match prep {
        OpsKind::Tracked(prep) => {
            // Stride 1: the caller's buffers themselves (shared); else the split copies.
            let keep = |t: &FlexTensor, split: Cow<'_, [f32]>, dims: [usize; 4]| match split {
                Cow::Owned(v) => flex_tensor(v, &dims),
                Cow::Borrowed(_) => t.clone(),
            };
            let state = ConvState {
                x: keep(xp, x_in, geo.inner_x()),
                weight: keep(wp, w_in, geo.inner_w()),
                geo,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive::<AdFlex>(result))
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
    let zero = MaybeUninit::new(0f32);
    // One pass: every element is written once, zeros around each image.
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let (planes, tail) = out.split_at_mut(c * plane);
        tail.fill(zero);
        planes
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(ch, dst)| {
                for b in 0..n {
                    let img = &src[(b * c + ch) * h * w..][..h * w];
                    let dst = &mut dst[b * hp * wp..][..hp * wp];
                    for (yp, row) in dst.chunks_mut(wp).enumerate() {
                        match yp.checked_sub(offset).filter(|&y| y < h) {
                            Some(y) => {
                                row[..offset].fill(zero);
                                for (d, &v) in
                                    row[offset..offset + w].iter_mut().zip(&img[y * w..][..w])
                                {
                                    d.write(v);
                                }
                                row[offset + w..].fill(zero);
                            }
                            None => row.fill(zero),
                        }
                    }
                }
            });
    };
    // SAFETY: `fill` writes the slack and every position of every plane.
    unsafe { filled(c * plane + slack, fill) }
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

/// The output `rows × positions` cut into one block `((row0, rows), (col0, cols))` per thread:
/// by positions when each thread gets enough of them for the GEMM to run at speed, else by
/// rows in multiples of the 64-row micro-kernel (the small maps of the refinement network's
/// first modules and the discriminators at batch 8).
fn blocks(rows: usize, positions: usize) -> Vec<((usize, usize), (usize, usize))> {
    let threads = rayon::current_num_threads().clamp(1, 8);
    if positions >= threads * MIN_COLS_PER_THREAD || rows < 2 * 64 {
        return thread_ranges(positions)
            .into_iter()
            .map(|cols| ((0, rows), cols))
            .collect();
    }
    let part = rows.div_ceil(threads).div_ceil(64) * 64;
    (0..rows)
        .step_by(part)
        .map(|r0| ((r0, part.min(rows - r0)), (0, positions)))
        .collect()
}

/// Below this many positions per thread the convolution GEMMs split by rows instead.
const MIN_COLS_PER_THREAD: usize = 1024;

/// The convolution for tensors on a device without autodiff (inference).
///
/// # Shapes
/// `x (N, Ci, H, W)`, `weight (Co, Ci, k, k)`, `bias (Co,)` → `(N, Co, H', W')`.
pub fn forward_host(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
) -> Tensor<4> {
    let geo = Geometry::new(x.dims(), weight.dims(), stride, padding);
    let device = x.device();
    let (out, ..) = geo.forward(&host(x), &host(weight), &host(bias));
    Tensor::<4>::from_data(TensorData::new(out, geo.out()), &device)
}

/// Floats of padded input plus padded output `conv_host` handles at once (256 MiB).
pub const HOST_CHUNK_FLOATS: usize = 64 << 20;

/// Stride-1 convolution on host data: with the input laid out as in [`weight_grad_host`],
/// `Out (Co, N·Hp·Wp) = Σᵢⱼ Wᵢⱼ (Co, Ci) · Xᵢⱼ (Ci, N·Hp·Wp)` (k² accumulating GEMMs; the
/// positions are split between the threads), then the valid `H'×W'` window of each image is
/// kept and the bias added; small maps and many output channels go through [`Im2col`] instead
/// (see [`conv_host_batch`]). Large batches go through in chunks of images so the padded copies
/// stay under [`HOST_CHUNK_FLOATS`].
///
/// # Shapes
/// `x (N, Ci, H, W)`, `wt (Co, Ci, kh, kw)`, `bias (Co,)` → `(N, Co, H', W')`, row-major.
fn conv_host(
    x: &[f32],
    [n, ci, h, w]: [usize; 4],
    wt: &[f32],
    w_dims: [usize; 4],
    bias: Option<&[f32]>,
    padding: usize,
) -> Vec<f32> {
    let [co, _, kh, kw] = w_dims;
    let (hp, wp) = (h + 2 * padding, w + 2 * padding);
    let (oh, ow) = (hp + 1 - kh, wp + 1 - kw);
    let per_image = (ci + co) * hp * wp;
    let chunk = (HOST_CHUNK_FLOATS / per_image.max(1)).clamp(1, n.max(1));
    let fill = |out: &mut [MaybeUninit<f32>]| {
        for (c, dst) in out.chunks_mut(chunk * co * oh * ow).enumerate() {
            let b0 = c * chunk;
            let nb = dst.len() / (co * oh * ow);
            let src = &x[b0 * ci * h * w..][..nb * ci * h * w];
            conv_host_batch(src, [nb, ci, h, w], wt, w_dims, bias, padding, dst);
        }
    };
    // SAFETY: the chunks cover the output and `conv_host_batch` writes all of its part.
    unsafe { filled(n * co * oh * ow, fill) }
}

fn conv_host_batch(
    x: &[f32],
    [n, ci, h, w]: [usize; 4],
    wt: &[f32],
    [co, _, kh, kw]: [usize; 4],
    bias: Option<&[f32]>,
    padding: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let (hp, wp) = (h + 2 * padding, w + 2 * padding);
    let (oh, ow) = (hp + 1 - kh, wp + 1 - kw);
    if im2col_pays((hp, wp), (oh, ow)) || co >= IM2COL_ROWS {
        let cols = Im2col::new([n, ci, h, w], (kh, kw), padding);
        return cols.forward(x, wt, co, bias, out);
    }
    let plane = n * hp * wp;
    let xpad = to_planes(x, [n, ci, h, w], (hp, wp), padding, (kh - 1) * wp + kw);
    let k2 = kh * kw;
    let fill = |out_pad: &mut [MaybeUninit<f32>]| {
        let dst = SharedMut(out_pad.as_mut_ptr().cast());
        blocks(co, plane)
            .into_par_iter()
            .for_each(|((o0, rows), (t0, len))| {
                for ij in 0..k2 {
                    let (i, j) = (ij / kw, ij % kw);
                    // SAFETY: the block rows [o0, o0 + rows) × columns [t0, t0 + len) of the
                    // Co×plane output belong to this task alone; lhs is W[o0.., :, i, j] inside
                    // `wt`; rhs element (c, t) = xpad[c·plane + i·Wp + j + t0 + t] stays inside
                    // `xpad` thanks to the slack.
                    unsafe {
                        matmul_into(
                            (rows, len, ci),
                            dst.ptr().add(o0 * plane + t0),
                            plane,
                            ij > 0,
                            Mat::new(wt.as_ptr().add(o0 * ci * k2 + ij), ci * k2, k2),
                            Mat::new(xpad.as_ptr().add(i * wp + j + t0), plane, 1),
                        );
                    }
                }
            });
    };
    // SAFETY: the blocks tile the output and the first tap (`read_dst` false) writes each.
    let out_pad = unsafe { filled(co * plane, fill) };
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(bo, dst)| {
            let (b, o) = (bo / co, bo % co);
            let src = &out_pad[o * plane + b * hp * wp..];
            let add = bias.map_or(0.0, |bs| bs[o]);
            for y in 0..oh {
                for (d, v) in dst[y * ow..][..ow].iter_mut().zip(&src[y * wp..][..ow]) {
                    d.write(v + add);
                }
            }
        });
}

/// Whether the small-map path pays: the plane layout computes every padded position, of which
/// only `H'·W'` of `Hp·Wp` are kept (44 % at 4×4 with padding 1, 94 % at 64×64).
fn im2col_pays((hp, wp): (usize, usize), (oh, ow): (usize, usize)) -> bool {
    (hp * wp) as f64 > IM2COL_WASTE * (oh * ow) as f64
}

/// Padded-to-valid position ratio above which small maps go through [`Im2col`].
const IM2COL_WASTE: f64 = 1.2;

/// Output channels from which the forward (and input-gradient) GEMM goes through [`Im2col`] at
/// any map size: with one `Co × Ci·k²` GEMM instead of k² accumulating `Co × Ci` ones it ran at
/// 200–250 GFLOP/s against the plane layout's 155–190 on the refinement network's 32×32 and
/// 64×64 shapes; with 64 output channels it ran at half the plane layout's speed. (The weight
/// gradient measured faster in the plane layout at every large map.)
const IM2COL_ROWS: usize = 128;

/// Column-matrix tiles of [`Im2col`] stay under this many floats (32 MiB).
const COL_TILE_FLOATS: usize = 8 << 20;

/// Stride-1 convolution through explicit column matrices, for small maps: `col (Ci·k², P)`
/// with `P` = the valid output positions of a tile of images, then one GEMM
/// `W (Co, Ci·k²) · col`. Unlike the plane layout nothing is computed at padded positions.
struct Im2col {
    x: [usize; 4],
    k: (usize, usize),
    p: usize,
    out: (usize, usize),
}

impl Im2col {
    fn new(x: [usize; 4], (kh, kw): (usize, usize), p: usize) -> Self {
        let [_, _, h, w] = x;
        let out = (h + 2 * p + 1 - kh, w + 2 * p + 1 - kw);
        Self {
            x,
            k: (kh, kw),
            p,
            out,
        }
    }

    /// Images per tile.
    fn tile(&self) -> usize {
        let [n, ci, ..] = self.x;
        let per_image = ci * self.k.0 * self.k.1 * self.out.0 * self.out.1;
        (COL_TILE_FLOATS / per_image.max(1)).clamp(1, n.max(1))
    }

    /// `col (Ci·k², nb·H'·W')` for images `b0..b0 + nb`: row `c·k² + i·kw + j`, column
    /// `(b·H' + y)·W' + x` holds `xpad[b, c, y + i, x + j]`.
    fn columns(&self, x: &[f32], b0: usize, nb: usize) -> Vec<f32> {
        let [_, ci, h, w] = self.x;
        let (kh, kw) = self.k;
        let (oh, ow) = self.out;
        let p = self.p;
        let len = nb * oh * ow;
        let zero = MaybeUninit::new(0f32);
        let fill = |col: &mut [MaybeUninit<f32>]| {
            col.par_chunks_mut(len).enumerate().for_each(|(r, row)| {
                let (c, ij) = (r / (kh * kw), r % (kh * kw));
                let (i, j) = (ij / kw, ij % kw);
                // Output columns x whose input column x + j − p lies inside [0, w).
                let x_lo = p.saturating_sub(j).min(ow);
                let x_hi = (w + p).saturating_sub(j).clamp(x_lo, ow);
                for (bl, img_row) in row.chunks_mut(oh * ow).enumerate() {
                    let img = &x[((b0 + bl) * ci + c) * h * w..][..h * w];
                    for (y, dst) in img_row.chunks_mut(ow).enumerate() {
                        match (y + i).checked_sub(p).filter(|&yy| yy < h) {
                            Some(yy) => {
                                dst[..x_lo].fill(zero);
                                let src = &img[yy * w + x_lo + j - p..][..x_hi - x_lo];
                                for (d, &v) in dst[x_lo..x_hi].iter_mut().zip(src) {
                                    d.write(v);
                                }
                                dst[x_hi..].fill(zero);
                            }
                            None => dst.fill(zero),
                        }
                    }
                }
            });
        };
        // SAFETY: every row, image and output row of the column matrix is written.
        unsafe { filled(ci * kh * kw * len, fill) }
    }

    fn forward(
        &self,
        x: &[f32],
        wt: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let [n, ci, ..] = self.x;
        let kdim = ci * self.k.0 * self.k.1;
        let per_image = self.out.0 * self.out.1;
        let tile = self.tile();
        for b0 in (0..n).step_by(tile) {
            let nb = tile.min(n - b0);
            let len = nb * per_image;
            let col = self.columns(x, b0, nb);
            let fill = |mat: &mut [MaybeUninit<f32>]| {
                // SAFETY: `mat` is Co×len; W is Co×kdim and col kdim×len, both in range.
                unsafe {
                    par_matmul(
                        (co, len, kdim),
                        mat.as_mut_ptr().cast(),
                        false,
                        Mat::new(wt.as_ptr(), kdim, 1),
                        Mat::new(col.as_ptr(), len, 1),
                    )
                };
            };
            // SAFETY: the blocks tile the Co×len result and each GEMM writes its block.
            let mat = unsafe { filled(co * len, fill) };
            // (Co, nb·H'·W') → (nb, Co, H', W') plus bias.
            out[b0 * co * per_image..][..nb * co * per_image]
                .par_chunks_mut(per_image)
                .enumerate()
                .for_each(|(bo, dst)| {
                    let (b, o) = (bo / co, bo % co);
                    let add = bias.map_or(0.0, |bs| bs[o]);
                    let src = &mat[o * len + b * per_image..][..per_image];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        d.write(v + add);
                    }
                });
        }
    }

    /// `dL/dW (Co, Ci, kh, kw) = Σ_tiles G (Co, P) · colᵀ (P, Ci·k²)`.
    fn weight_grad(&self, x: &[f32], g: &[f32], co: usize) -> Vec<f32> {
        let [n, ci, ..] = self.x;
        let kdim = ci * self.k.0 * self.k.1;
        let per_image = self.out.0 * self.out.1;
        let tile = self.tile();
        let mut dw = vec![0f32; co * kdim];
        for b0 in (0..n).step_by(tile) {
            let nb = tile.min(n - b0);
            let len = nb * per_image;
            let col = self.columns(x, b0, nb);
            // G of these images as (Co, P).
            let mut gm = vec![0f32; co * len];
            gm.par_chunks_mut(len).enumerate().for_each(|(o, row)| {
                for (b, dst) in row.chunks_mut(per_image).enumerate() {
                    dst.copy_from_slice(&g[((b0 + b) * co + o) * per_image..][..per_image]);
                }
            });
            // SAFETY: dW is Co×kdim; gm is Co×len and colᵀ len×kdim, both in range.
            unsafe {
                par_matmul(
                    (co, kdim, len),
                    dw.as_mut_ptr(),
                    b0 > 0,
                    Mat::new(gm.as_ptr(), len, 1),
                    Mat::new(col.as_ptr(), 1, len),
                )
            };
        }
        dw
    }
}

/// `dL/dx` of a stride-1 convolution (square kernel `k`, padding `p < k`): the "full"
/// convolution of the output gradient with the kernel flipped in space and transposed in
/// channels, `dx = conv(g, W̃, padding k − 1 − p)` with `W̃[c, o, i, j] = W[o, c, k−1−i, k−1−j]`.
///
/// # Shapes
/// `g (N, Co, H', W')`, `wt (Co, Ci, k, k)` → `(N, Ci, H, W)`, row-major.
fn input_grad_host(
    g: &[f32],
    g_dims: [usize; 4],
    wt: &[f32],
    [co, ci, kh, kw]: [usize; 4],
    padding: usize,
) -> Vec<f32> {
    let k2 = kh * kw;
    let mut flipped = vec![0f32; co * ci * k2];
    for o in 0..co {
        for c in 0..ci {
            for ij in 0..k2 {
                flipped[(c * co + o) * k2 + (k2 - 1 - ij)] = wt[(o * ci + c) * k2 + ij];
            }
        }
    }
    conv_host(
        g,
        g_dims,
        &flipped,
        [ci, co, kh, kw],
        None,
        kh - 1 - padding,
    )
}

/// `dL/dW` of a stride-1 convolution (symmetric zero padding `p`) from its input `x` and
/// output gradient `g`.
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
/// `x (N, Ci, H, W)`, `g (N, Co, H', W')` → `(Co, Ci, k, k)` (`w_dims`), row-major.
fn weight_grad_host(
    x: &[f32],
    [n, ci, h, w]: [usize; 4],
    g: &[f32],
    [_, co, oh, ow]: [usize; 4],
    w_dims: [usize; 4],
    padding: usize,
) -> Vec<f32> {
    let [_, _, kh, kw] = w_dims;
    let (hp, wp) = (h + 2 * padding, w + 2 * padding);
    debug_assert!(oh + kh == hp + 1 && ow + kw == wp + 1);
    if im2col_pays((hp, wp), (oh, ow)) {
        return Im2col::new([n, ci, h, w], (kh, kw), padding).weight_grad(x, g, co);
    }
    let plane = n * hp * wp; // one channel of every image
    // Reads run up to (k−1)·Wp + (k−1) past the last plane; they meet zero gradients.
    let xpad = to_planes(x, [n, ci, h, w], (hp, wp), padding, (kh - 1) * wp + kw);
    let gpad = to_planes(g, [n, co, oh, ow], (hp, wp), 0, 0);
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
                // dw[ij] (Co×Ci) = Gpad (Co×len) · Xᵢⱼᵀ (len×Ci).
                unsafe {
                    matmul_into(
                        (co, ci, len),
                        dw[ij * co * ci..][..co * ci].as_mut_ptr(),
                        ci,
                        false,
                        Mat::new(gpad.as_ptr().add(t0), plane, 1),
                        Mat::new(xpad.as_ptr().add(i * wp + j + t0), 1, plane),
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
    dw
}

/// A strided matrix operand: element `(r, c)` at `ptr + r·rs + c·cs`.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

// SAFETY: a read-only view; the threads sharing it only read through it.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    fn new(ptr: *const f32, rs: usize, cs: usize) -> Self {
        Self { ptr, rs, cs }
    }

    /// The sub-matrix starting at row `r`, column `c`.
    ///
    /// # Safety
    /// `(r, c)` must lie inside the matrix the view was made from.
    unsafe fn at(self, r: usize, c: usize) -> Self {
        // SAFETY: the caller's contract.
        Self::new(
            unsafe { self.ptr.add(r * self.rs + c * self.cs) },
            self.rs,
            self.cs,
        )
    }
}

/// `dst (m×n, row-major, contiguous) = [dst +] lhs (m×k) · rhs (k×n)`, the output cut into one
/// block per thread ([`blocks`]).
///
/// # Safety
/// As [`matmul_into`] for the whole matrices.
unsafe fn par_matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    let dst = SharedMut(dst);
    blocks(m, n)
        .into_par_iter()
        .for_each(|((r0, rows), (c0, cols))| {
            // SAFETY: the blocks are disjoint parts of `dst`; the operands' rows r0.. and columns
            // c0.. lie inside the caller's matrices.
            unsafe {
                matmul_into(
                    (rows, cols, k),
                    dst.ptr().add(r0 * n + c0),
                    n,
                    accumulate,
                    lhs.at(r0, 0),
                    rhs.at(0, c0),
                )
            }
        });
}

/// `dst (m×n, row-major with row stride dst_rs) = [dst +] lhs (m×k) · rhs (k×n)` on the calling
/// thread (the callers split the work between threads themselves).
///
/// # Safety
/// Every element addressed through `dst`, `lhs` and `rhs` must be valid, and no one else may
/// access `dst`'s elements meanwhile.
unsafe fn matmul_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
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
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;

    /// What `layers::Conv2d` does: this module's convolution where it applies, else Burn's.
    fn conv_or_burn(
        x: Tensor<4>,
        w: Tensor<4>,
        b: Tensor<1>,
        stride: usize,
        padding: usize,
    ) -> Tensor<4> {
        conv2d(&x, &w, &b, stride, padding).unwrap_or_else(|| {
            let opts = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
            burn_conv2d(x, w, Some(b), opts)
        })
    }

    fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{name}: length");
        for (i, (u, v)) in got.iter().zip(want).enumerate() {
            assert!(
                (u - v).abs() <= tol + tol * v.abs(),
                "{name}[{i}]: {u} vs {v}"
            );
        }
    }

    /// In training (autodiff device) the outputs and the input, weight and bias gradients equal
    /// those of Burn's own convolution, for the kernel/stride/padding combinations sg2im uses
    /// (strided ones through the phase split, including a kernel the stride does not divide,
    /// stride 3 and odd sizes), both layouts (im2col for small maps, planes for large ones),
    /// non-square inputs and a weight used twice (gradients accumulated). Tolerance 1e-4 abs +
    /// rel: summation order only.
    #[test]
    fn training_convolution_equals_burns() {
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
            (2, 3, 7, 9, 4, 3, 2, 0),
            (3, 4, 8, 8, 5, 4, 2, 0),
            (2, 3, 15, 15, 4, 4, 2, 0),
            (2, 3, 10, 11, 4, 3, 3, 1),
            // Few positions, many output channels: the GEMMs split by rows (128 + 2).
            (2, 3, 4, 4, 130, 3, 1, 1),
            // Large enough maps for the plane layout (the others take im2col).
            (2, 3, 30, 34, 4, 3, 1, 1),
            (2, 3, 33, 31, 4, 1, 1, 0),
            // A large map with many output channels: im2col by channel count.
            (1, 2, 30, 30, 128, 3, 1, 1),
            (3, 5, 8, 8, 200, 4, 2, 1),
        ] {
            let x0: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Normal(0., 1.), &dev);
            let x1: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Normal(0., 1.), &dev);
            let wt: Tensor<4> =
                Tensor::random([co, ci, k, k], Distribution::Normal(0., 0.3), &dev).require_grad();
            let b: Tensor<1> =
                Tensor::random([co], Distribution::Normal(0., 0.3), &dev).require_grad();
            let xi = x0.require_grad();
            let run = |ours: bool| {
                let before = OPS.with(|c| c.get());
                let conv = |x: Tensor<4>| {
                    if ours {
                        conv2d(&x, &wt, &b, s, p).expect("ours")
                    } else {
                        let opts = ConvOptions::new([s; 2], [p; 2], [1, 1], 1);
                        burn_conv2d(x, wt.clone(), Some(b.clone()), opts)
                    }
                };
                let y0 = conv(xi.clone());
                let y1 = conv(x1.clone());
                let engaged = OPS.with(|c| c.get()) - before;
                assert_eq!(engaged, if ours { 2 } else { 0 }, "custom op used");
                let out = vec(y0.clone());
                let loss =
                    (y0.clone() * y0).sum() + (y1.clone() * y1.clone()).sum() * 0.5 + y1.sum();
                let grads = loss.backward();
                let grad4 = |t: &Tensor<4>| vec(t.grad(&grads).unwrap());
                (out, grad4(&wt), grad4(&xi), vec(b.grad(&grads).unwrap()))
            };
            let want = run(false);
            let got = run(true);
            let case = format!("n{n} ci{ci} {h}x{w} co{co} k{k} s{s} p{p}");
            assert_close(&format!("output {case}"), &got.0, &want.0, 1e-5);
            assert_close(&format!("weight grad {case}"), &got.1, &want.1, 1e-4);
            assert_close(&format!("input grad {case}"), &got.2, &want.2, 1e-4);
            assert_close(&format!("bias grad {case}"), &got.3, &want.3, 1e-4);
        }
    }

    /// Only the tensors that require a gradient get one, and an input mixed from a plain
    /// device (a constant) leaves the convolution to Burn rather than failing.
    #[test]
    fn frozen_parents_and_mixed_devices() {
        let dev = Device::flex().autodiff();
        let x: Tensor<4> = Tensor::random([2, 3, 5, 5], Distribution::Normal(0., 1.), &dev);
        let w: Tensor<4> = Tensor::random([4, 3, 3, 3], Distribution::Normal(0., 1.), &dev);
        let b: Tensor<1> = Tensor::zeros([4], &dev).require_grad();
        let xg = x.clone().require_grad();
        let y = conv_or_burn(xg.clone(), w.clone(), b.clone(), 1, 1);
        let grads = y.sum().backward();
        assert!(w.grad(&grads).is_none(), "frozen weight got a gradient");
        assert_eq!(xg.grad(&grads).unwrap().dims(), [2, 3, 5, 5]);
        // d(sum)/d(bias) = number of output positions per channel.
        assert_eq!(vec(b.grad(&grads).unwrap()), vec![50.0; 4]);

        let plain: Tensor<4> = Tensor::ones([1, 1, 4, 4], &Device::flex());
        let w1: Tensor<4> = Tensor::ones([1, 1, 3, 3], &dev).require_grad();
        let b1: Tensor<1> = Tensor::zeros([1], &dev).require_grad();
        let before = OPS.with(|c| c.get());
        assert!(
            conv2d(&plain, &w1, &b1, 1, 1).is_none(),
            "mixed tensors taken"
        );
        let y = conv_or_burn(plain.clone(), w1.clone(), b1.clone(), 1, 1);
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let y2 = burn_conv2d(plain, w1.clone(), Some(b1), opts);
        assert!(y.is_tracked() && y2.is_tracked());
        assert_close("mixed", &vec(y.clone()), &vec(y2), 1e-6);
        assert_eq!(OPS.with(|c| c.get()), before, "mixed tensors went to Burn");
        let g = vec(w1.grad(&y.sum().backward()).unwrap());
        assert_eq!(g, vec![9., 12., 9., 12., 16., 12., 9., 12., 9.]);
    }

    /// The inference forward equals Burn's convolution (1e-5 abs + rel: summation order only),
    /// strided ones included, and [`conv2d`] takes it on a plain CPU device.
    #[test]
    fn host_forward_equals_burns() {
        let dev = Device::flex();
        for &(n, ci, h, w, co, k, s, p) in &[
            (
                2usize, 5usize, 8usize, 8usize, 4usize, 3usize, 1usize, 1usize,
            ),
            (3, 3, 9, 7, 6, 3, 1, 1),
            (1, 6, 5, 11, 5, 1, 1, 0),
            (2, 2, 6, 10, 3, 3, 1, 0),
            (4, 7, 4, 4, 9, 3, 1, 1),
            (3, 3, 32, 32, 8, 4, 2, 0),
            (2, 4, 15, 13, 5, 4, 2, 1),
            (2, 3, 10, 11, 4, 3, 3, 1),
            (2, 3, 30, 34, 4, 3, 1, 1),
        ] {
            let x: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Normal(0., 1.), &dev);
            let wt: Tensor<4> = Tensor::random([co, ci, k, k], Distribution::Normal(0., 0.3), &dev);
            let b: Tensor<1> = Tensor::random([co], Distribution::Normal(0., 0.3), &dev);
            let want = burn_conv2d(
                x.clone(),
                wt.clone(),
                Some(b.clone()),
                ConvOptions::new([s, s], [p, p], [1, 1], 1),
            );
            let got = forward_host(x.clone(), wt.clone(), b.clone(), s, p);
            let via_layer = conv2d(&x, &wt, &b, s, p).expect("a plain CPU convolution is ours");
            assert_eq!(got.dims(), want.dims());
            let want = vec(want);
            assert_close(&format!("forward k{k} s{s} p{p}"), &vec(got), &want, 1e-5);
            assert_close(
                &format!("layer k{k} s{s} p{p}"),
                &vec(via_layer),
                &want,
                1e-5,
            );
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
        let want = burn_conv2d(
            x.clone(),
            wt.clone(),
            Some(b.clone()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let got = forward_host(x, wt, b, 1, 1);
        let diff = (got - want).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "max difference {diff}");
    }
}
