//! Adam's update as one pass over the parameter, its gradient and both moments (the tensor-op
//! version in `train::adam` is five passes, each allocating).

use super::host::{dense, flex_tensor, on_cpu};
use burn::tensor::Tensor;
use burn_dispatch::backends::Flex;
use rayon::prelude::*;

/// One Adam step over flat f32 CPU tensors in a single pass, the same f32 operations in the
/// same order as the tensor-op version in `train::adam` (so bit-identical):
/// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `θ ← θ − (m / (√v + ε))·step_size`.
/// The scalars come in as the optimizer holds them (f64) and are rounded to f32 here exactly
/// as the tensor-op version rounds them. Returns the new `(θ, m, v)`, or `None` where the
/// kernel does not apply (off the CPU, autodiff tensors).
///
/// # Shapes
/// All `(n,)`.
pub(crate) fn adam_update(
    value: &Tensor<1>,
    grad: &Tensor<1>,
    m: &Tensor<1>,
    v: &Tensor<1>,
    (beta1, beta2): (f64, f64),
    eps: f64,
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
    let (b1, b2) = (beta1 as f32, beta2 as f32);
    let (c1, c2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
    let eps = eps as f32;
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
    use crate::kernels::host::host;
    use burn::tensor::{Device, Distribution};

    /// The fused Adam step equals the tensor-op composition bit for bit, over a length that is
    /// not a multiple of the chunk size.
    #[test]
    fn fused_adam_is_bit_identical() {
        let dev = Device::flex();
        let n = (1 << 14) * 3 + 17;
        let r = |s: f64| Tensor::<1>::random([n], Distribution::Normal(0.0, s), &dev);
        let (value, grad, m) = (r(1.0), r(0.1), r(0.01));
        let v = r(0.001).abs();
        // PyTorch's default betas and eps, as `train::adam::AdamConfig` holds them.
        let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let step_size = 0.37e-4f32;
        let (t1, m1, v1) =
            adam_update(&value, &grad, &m, &v, (beta1, beta2), eps, step_size).unwrap();
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let m2 = m.mul_scalar(b1) + grad.clone().mul_scalar((1.0 - beta1) as f32);
        let v2 = v.mul_scalar(b2) + (grad.clone() * grad).mul_scalar((1.0 - beta2) as f32);
        let denom = v2.clone().sqrt().add_scalar(eps as f32);
        let t2 = value - (m2.clone() / denom).mul_scalar(step_size);
        for (name, a, b) in [("theta", t1, t2), ("m", m1, m2), ("v", v1, v2)] {
            assert_eq!(host(a), host(b), "{name}");
        }
        // Autodiff tensors are not taken.
        let ad = Tensor::<1>::zeros([4], &dev.autodiff());
        assert!(adam_update(&ad, &ad, &ad, &ad, (beta1, beta2), eps, 1.0).is_none());
    }
}
