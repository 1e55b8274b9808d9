//! Plumbing shared by the CPU kernels that stand in for Burn's on the `flex` device
//! ([`conv_gemm`](super::conv_gemm), [`norm_act`](super::norm_act)): the process-wide switch,
//! access to a tensor's host buffer, and the `Autodiff<Flex>` type their custom autodiff
//! operations are written for (Burn's backend-extension API).
//!
//! Why custom operations at all: Burn 0.22's autodiff records every elementary tensor operation
//! and `flex` runs each as its own pass over memory, so a BatchNorm + LeakyReLU costs about
//! twenty passes over the activations in training where the arithmetic needs four, and its
//! convolutions run image by image. These kernels keep the same results (up to float summation
//! order) with fewer passes and longer GEMMs.

use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_dispatch::backends::{Autodiff, Flex};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns this crate's CPU kernels (GEMM convolutions, fused BatchNorm + activation) on or off
/// process-wide (on by default). Off, every operation is Burn's own; the benchmarks and tests
/// use it to compare the two.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The training backend as Burn's dispatch layer holds it (no gradient checkpointing, which is
/// what `Device::flex().autodiff()` gives).
pub(crate) type AdFlex = Autodiff<Flex, NoCheckpointing>;

/// Whether the kernels may take `t`: switched on, an f32 tensor on the CPU (`flex`) device,
/// with or without autodiff (device equality ignores autodiff).
pub(crate) fn on_cpu<const D: usize>(t: &Tensor<D>) -> bool {
    enabled() && t.dtype() == DType::F32 && t.device() == Device::flex()
}

/// The tensor's values as one contiguous f32 slice (borrowed when already laid out so).
pub(crate) fn dense(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 after convert"),
        ),
    }
}

/// A tensor's values on the host, as f32.
pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert")
}

/// A contiguous f32 `flex` tensor owning `values` (no copy).
pub(crate) fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// A vector of `len` floats whose storage `fill` initialises, with no zeroing pass first
/// (at the refinement network's sizes the zeroing `vec![0.0; len]` does is a pass over tens of
/// megabytes that the kernels overwrite anyway).
///
/// # Safety
/// `fill` must write every one of the `len` elements (through the slice or a pointer into it).
pub(crate) unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's contract: all `len` elements are initialised.
    unsafe { v.set_len(len) };
    v
}

/// A raw pointer the threads may share: each writes only its own disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: used only for disjoint writes (each user documents its partition).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// A method, so closures capture the whole (Send) wrapper rather than its raw pointer field.
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// One Adam step over flat f32 CPU tensors in a single pass, the same f32 operations in the
/// same order as the tensor-op version in `train::adam` (so bit-identical):
/// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `θ ← θ − (m / (√v + ε))·step_size`.
/// Returns the new `(θ, m, v)`, or `None` off the CPU (the caller then uses tensor ops).
///
/// # Shapes
/// All `(n,)`.
pub(crate) fn adam_update(
    value: &Tensor<1>,
    grad: &Tensor<1>,
    m: &Tensor<1>,
    v: &Tensor<1>,
    cfg: crate::train::adam::AdamConfig,
    step_size: f32,
) -> Option<(Tensor<1>, Tensor<1>, Tensor<1>)> {
    let all = [value, grad, m, v];
    if !all.iter().all(|t| on_cpu(*t) && !t.device().is_autodiff()) {
        return None;
    }
    let prim = |t: &Tensor<1>| t.clone().try_into_primitive::<Flex>().ok();
    let (tp, gp, mp, vp) = (prim(value)?, prim(grad)?, prim(m)?, prim(v)?);
    let (ts, gs, ms, vs) = (dense(&tp), dense(&gp), dense(&mp), dense(&vp));
    let n = ts.len();
    let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
    let (c1, c2) = ((1.0 - cfg.beta1) as f32, (1.0 - cfg.beta2) as f32);
    let eps = cfg.eps as f32;
    let mut new_m = Vec::with_capacity(n);
    let mut new_v = Vec::with_capacity(n);
    let mut new_t = Vec::with_capacity(n);
    const CHUNK: usize = 1 << 14;
    new_t
        .spare_capacity_mut()
        .par_chunks_mut(CHUNK)
        .zip(new_m.spare_capacity_mut().par_chunks_mut(CHUNK))
        .zip(new_v.spare_capacity_mut().par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(ci, ((tc, mc), vc))| {
            let at = ci * CHUNK;
            for i in 0..tc.len() {
                let g = gs[at + i];
                let m1 = ms[at + i] * b1 + g * c1;
                let v1 = vs[at + i] * b2 + (g * g) * c2;
                let denom = v1.sqrt() + eps;
                mc[i].write(m1);
                vc[i].write(v1);
                tc[i].write(ts[at + i] - (m1 / denom) * step_size);
            }
        });
    // SAFETY: the three chunkings are identical and cover 0..n; each element was written.
    unsafe {
        new_t.set_len(n);
        new_m.set_len(n);
        new_v.set_len(n);
    }
    let wrap = |vals: Vec<f32>| Tensor::<1>::from_primitive::<Flex>(flex_tensor(vals, &[n]));
    Some((wrap(new_t), wrap(new_m), wrap(new_v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The fused Adam step equals the tensor-op composition bit for bit, over a length that is
    /// not a multiple of the chunk size.
    #[test]
    fn fused_adam_is_bit_identical() {
        let dev = Device::flex();
        let n = (1 << 14) * 3 + 17;
        let r = |s: f64| Tensor::<1>::random([n], Distribution::Normal(0.0, s), &dev);
        let (value, grad, m) = (r(1.0), r(0.1), r(0.01));
        let v = r(0.001).abs();
        let cfg = crate::train::adam::AdamConfig::with_lr(1e-4);
        let step_size = 0.37e-4f32;
        let (t1, m1, v1) = adam_update(&value, &grad, &m, &v, cfg, step_size).unwrap();
        let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
        let m2 = m.mul_scalar(b1) + grad.clone().mul_scalar((1.0 - cfg.beta1) as f32);
        let v2 = v.mul_scalar(b2) + (grad.clone() * grad).mul_scalar((1.0 - cfg.beta2) as f32);
        let denom = v2.clone().sqrt().add_scalar(cfg.eps as f32);
        let t2 = value - (m2.clone() / denom).mul_scalar(step_size);
        for (name, a, b) in [("theta", t1, t2), ("m", m1, m2), ("v", v1, v2)] {
            assert_eq!(host(a), host(b), "{name}");
        }
        // Autodiff tensors are not taken.
        let ad = Tensor::<1>::zeros([4], &dev.autodiff());
        assert!(adam_update(&ad, &ad, &ad, &ad, cfg, 1.0).is_none());
    }
}
