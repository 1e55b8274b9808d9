//! BatchNorm followed by its (leaky) ReLU as one operation on the CPU (`flex`): one pass over
//! the activations for the statistics and one for the output, and in training a backward of two
//! passes. Burn records the same computation as about a dozen elementary operations each way,
//! every one a pass over memory; at the refinement network's 64×64 maps those passes cost more
//! than the arithmetic. Results equal the composed operations up to float summation order
//! (statistics are accumulated in f64, as PyTorch's CPU kernel does).
//!
//! [`batch_norm_act`] and [`leaky_relu`] return `None` where they do not apply (another device,
//! mixed plain and autodiff tensors, a negative slope): the caller then composes Burn's
//! operations.

use super::host::{AdFlex, dense, filled, flex_tensor, host, on_cpu};
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_dispatch::backends::Flex;
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Which statistics normalise the batch.
#[derive(Debug, Clone, Copy)]
pub enum BnStats<'a> {
    /// Training mode: the batch's own mean and biased variance (gradients flow through them).
    Batch,
    /// Evaluation mode: the running mean and variance `(C,)` (constants; read to the host only
    /// when the kernel applies).
    Running {
        mean: &'a Tensor<1>,
        var: &'a Tensor<1>,
    },
}

/// What [`batch_norm_act`] returns.
pub struct BnOutput {
    /// `act(γ·(x − μ)/√(σ² + ε) + β)`.
    pub y: Tensor<4>,
    /// With [`BnStats::Batch`]: the batch mean and biased variance per channel, for the
    /// running statistics.
    pub batch_stats: Option<(Vec<f32>, Vec<f32>)>,
}

/// BatchNorm2d (`eps`) then, with `slope`, LeakyReLU of that negative slope (0 = ReLU).
///
/// # Shapes
/// `x (N, C, H, W)`, `gamma (C,)`, `beta (C,)` → `(N, C, H, W)`.
pub fn batch_norm_act(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    stats: BnStats<'_>,
    eps: f64,
    slope: Option<f32>,
) -> Option<BnOutput> {
    if !(on_cpu(x) && on_cpu(gamma) && on_cpu(beta))
        || slope.is_some_and(|s| s < 0.0)
        || x.shape().num_elements() == 0
    {
        return None;
    }
    let tracked =
        x.device().is_autodiff() || gamma.device().is_autodiff() || beta.device().is_autodiff();
    if !tracked {
        let xp = x.clone().try_into_primitive::<Flex>().ok()?;
        let gp = gamma.clone().try_into_primitive::<Flex>().ok()?;
        let bp = beta.clone().try_into_primitive::<Flex>().ok()?;
        let (y, norm) = forward(&xp, &dense(&gp), &dense(&bp), stats, eps, slope);
        return Some(BnOutput {
            y: Tensor::from_primitive::<Flex>(y),
            batch_stats: norm.batch_stats(),
        });
    }
    let xa = x.clone().try_into_primitive::<AdFlex>().ok()?;
    let ga = gamma.clone().try_into_primitive::<AdFlex>().ok()?;
    let ba = beta.clone().try_into_primitive::<AdFlex>().ok()?;
    let gamma_v = dense(ga.primitive()).into_owned();
    let (y, norm) = forward(
        xa.primitive(),
        &gamma_v,
        &dense(ba.primitive()),
        stats,
        eps,
        slope,
    );
    let batch_stats = norm.batch_stats();
    let prep = BnActBackward
        .prepare::<NoCheckpointing>([xa.node(), ga.node(), ba.node()])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => {
            let state = BnState {
                x: xa.primitive().clone(),
                y: slope.map(|_| y.clone()),
                slope: slope.unwrap_or(1.0),
                gamma: gamma_v,
                norm,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(BnOutput {
        y: Tensor::from_primitive::<AdFlex>(out),
        batch_stats,
    })
}

/// LeakyReLU with negative slope `slope ≥ 0` (0 = ReLU), any rank.
pub fn leaky_relu<const D: usize>(x: &Tensor<D>, slope: f32) -> Option<Tensor<D>> {
    if !on_cpu(x) || slope < 0.0 || x.shape().num_elements() == 0 {
        return None;
    }
    if !x.device().is_autodiff() {
        let xp = x.clone().try_into_primitive::<Flex>().ok()?;
        return Some(Tensor::from_primitive::<Flex>(act_host(&xp, slope)));
    }
    let xa = x.clone().try_into_primitive::<AdFlex>().ok()?;
    let y = act_host(xa.primitive(), slope);
    let prep = ActBackward
        .prepare::<NoCheckpointing>([xa.node()])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), slope), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::from_primitive::<AdFlex>(out))
}

/// `(N, C, spatial)` sizes of a `(N, C, …)` tensor.
fn ncs(t: &FlexTensor) -> (usize, usize, usize) {
    let d = t.layout().shape();
    (d[0], d[1], d[2..].iter().product())
}

/// The normalisation applied, per channel.
#[derive(Debug, Clone)]
struct Norm {
    mean: Vec<f64>,
    var: Vec<f64>,
    inv_std: Vec<f64>,
    batch: bool,
}

impl Norm {
    fn batch_stats(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect();
        self.batch.then(|| (f(&self.mean), f(&self.var)))
    }
}

/// Per channel, `Σ over images of f(channel, offset of that image's channel block)`; the
/// channels in parallel.
fn per_channel(
    (n, c, s): (usize, usize, usize),
    f: impl Fn(usize, usize) -> f64 + Sync,
) -> Vec<f64> {
    (0..c)
        .into_par_iter()
        .map(|ch| (0..n).map(|b| f(ch, (b * c + ch) * s)).sum())
        .collect()
}

/// [`per_channel`] for a pair of sums.
fn per_channel_pair(
    (n, c, s): (usize, usize, usize),
    f: impl Fn(usize, usize) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n)
                .map(|b| f(ch, (b * c + ch) * s))
                .fold((0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1))
        })
        .collect()
}

/// f32 lanes per partial sum: enough independent accumulators for the compiler to vectorise
/// (a single running sum is one long dependency chain).
const LANES: usize = 16;

/// `Σ f(v)` over `xs`, in [`LANES`] f32 partial sums added up in f64 (a fixed order: the
/// result does not depend on threading).
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + rest.iter().map(|&v| f(v) as f64).sum::<f64>()
}

/// `(Σ gz, Σ gz·(x − μ))` over one block, `gz = g` where `y > 0`, else `slope·g`.
fn grad_sums(g: &[f32], y: &[f32], x: &[f32], mu: f32, slope: f32) -> (f64, f64) {
    let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
    let gz = |gv: f32, yv: f32| if yv > 0.0 { gv } else { gv * slope };
    let full = g.len() / LANES * LANES;
    for ((gc, yc), xc) in g[..full]
        .chunks_exact(LANES)
        .zip(y[..full].chunks_exact(LANES))
        .zip(x[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let z = gz(gc[l], yc[l]);
            a[l] += z;
            b[l] += z * (xc[l] - mu);
        }
    }
    let mut sa: f64 = a.iter().map(|&v| v as f64).sum();
    let mut sb: f64 = b.iter().map(|&v| v as f64).sum();
    for i in full..g.len() {
        let z = gz(g[i], y[i]);
        sa += z as f64;
        sb += (z * (x[i] - mu)) as f64;
    }
    (sa, sb)
}

fn forward(
    x: &FlexTensor,
    gamma: &[f32],
    beta: &[f32],
    stats: BnStats<'_>,
    eps: f64,
    slope: Option<f32>,
) -> (FlexTensor, Norm) {
    let shape = x.layout().shape().to_vec();
    let (n, c, s) = ncs(x);
    let xs = dense(x);
    let (mean, var) = match stats {
        BnStats::Batch => {
            let m = (n * s) as f64;
            let mean: Vec<f64> = per_channel((n, c, s), |_, at| lane_sum(&xs[at..at + s], |v| v))
                .into_iter()
                .map(|v| v / m)
                .collect();
            // Two passes (sum of squared deviations), not E[x²] − E[x]².
            let var: Vec<f64> = per_channel((n, c, s), |ch, at| {
                let mu = mean[ch] as f32;
                lane_sum(&xs[at..at + s], |v| (v - mu) * (v - mu))
            })
            .into_iter()
            .map(|v| v / m)
            .collect();
            (mean, var)
        }
        BnStats::Running { mean, var } => (
            host(mean.clone()).iter().map(|&v| v as f64).collect(),
            host(var.clone()).iter().map(|&v| v as f64).collect(),
        ),
    };
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
    // y = x·α + β' per channel, as PyTorch's CPU kernel computes it.
    let alpha: Vec<f32> = (0..c)
        .map(|ch| (gamma[ch] as f64 * inv_std[ch]) as f32)
        .collect();
    let shift: Vec<f32> = (0..c)
        .map(|ch| (beta[ch] as f64 - mean[ch] * alpha[ch] as f64) as f32)
        .collect();
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(s)
            .zip(xs.par_chunks(s))
            .enumerate()
            .for_each(|(bc, (out, inp))| {
                let (a, b) = (alpha[bc % c], shift[bc % c]);
                match slope {
                    Some(k) => {
                        for (o, &v) in out.iter_mut().zip(inp) {
                            let z = v * a + b;
                            o.write(if z > 0.0 { z } else { z * k });
                        }
                    }
                    None => {
                        for (o, &v) in out.iter_mut().zip(inp) {
                            o.write(v * a + b);
                        }
                    }
                }
            });
    };
    // SAFETY: the (image, channel) blocks cover y and each is written whole.
    let y = unsafe { filled(n * c * s, fill) };
    let batch = matches!(stats, BnStats::Batch);
    (
        flex_tensor(y, &shape),
        Norm {
            mean,
            var,
            inv_std,
            batch,
        },
    )
}

fn act_host(x: &FlexTensor, slope: f32) -> FlexTensor {
    let shape = x.layout().shape().to_vec();
    let xs = dense(x);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(1 << 14)
            .zip(xs.par_chunks(1 << 14))
            .for_each(|(out, inp)| {
                for (o, &v) in out.iter_mut().zip(inp) {
                    o.write(if v > 0.0 { v } else { v * slope });
                }
            });
    };
    // SAFETY: the chunks cover y, each written whole.
    flex_tensor(unsafe { filled(xs.len(), fill) }, &shape)
}

/// What [`BnActBackward`] keeps: the input, the output (only with an activation: its sign is
/// the pre-activation's, since the slope is not negative), γ and the normalisation.
#[derive(Clone, Debug)]
struct BnState {
    x: FlexTensor,
    y: Option<FlexTensor>,
    slope: f32,
    gamma: Vec<f32>,
    norm: Norm,
}

/// Parents `[x, γ, β]`.
#[derive(Debug)]
struct BnActBackward;

impl Backward<Flex, 3> for BnActBackward {
    type State = BnState;

    fn backward(self, ops: Ops<BnState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_g, node_b] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let BnState {
            x,
            y,
            slope,
            gamma,
            norm,
        } = ops.state;
        let shape = x.layout().shape().to_vec();
        let (n, c, s) = ncs(&x);
        let (xs, gs) = (dense(&x), dense(&g));
        let ys = y.as_ref().map(dense);
        // dL/dz (z: the normalised, scaled and shifted value before the activation) is
        // `g` where `y > 0`, else `slope·g`; without an activation `slope` is 1, so it is `g`.
        let ys: &[f32] = ys.as_deref().unwrap_or(&gs);
        let sums = per_channel_pair((n, c, s), |ch, at| {
            let mu = norm.mean[ch] as f32;
            grad_sums(&gs[at..at + s], &ys[at..at + s], &xs[at..at + s], mu, slope)
        });
        let dbeta: Vec<f64> = sums.iter().map(|p| p.0).collect();
        let dgamma: Vec<f64> = sums
            .iter()
            .enumerate()
            .map(|(ch, p)| p.1 * norm.inv_std[ch])
            .collect();
        if let Some(node) = node_x {
            let m = (n * s) as f64;
            // dx = k1·dL/dz + k2·x + k3 per channel (k2 = k3 = 0 with running statistics).
            let coef: Vec<[f32; 3]> = (0..c)
                .map(|ch| {
                    let (mu, is) = (norm.mean[ch], norm.inv_std[ch]);
                    let scale = gamma[ch] as f64 * is;
                    if norm.batch {
                        let (mb, mg) = (dbeta[ch] / m, dgamma[ch] / m);
                        let k2 = -scale * is * mg;
                        [scale as f32, k2 as f32, (-scale * mb - k2 * mu) as f32]
                    } else {
                        [scale as f32, 0.0, 0.0]
                    }
                })
                .collect();
            let fill = |dx: &mut [MaybeUninit<f32>]| {
                dx.par_chunks_mut(s).enumerate().for_each(|(bc, out)| {
                    let [k1, k2, k3] = coef[bc % c];
                    let at = bc * s;
                    let (g, y, x) = (&gs[at..at + s], &ys[at..at + s], &xs[at..at + s]);
                    for (((o, &gv), &yv), &xv) in out.iter_mut().zip(g).zip(y).zip(x) {
                        let gz = if yv > 0.0 { gv } else { gv * slope };
                        o.write(k1 * gz + k2 * xv + k3);
                    }
                });
            };
            // SAFETY: the (image, channel) blocks cover dx, each written whole.
            let dx = unsafe { filled(n * c * s, fill) };
            grads.register::<Flex>(node.id, flex_tensor(dx, &shape));
        }
        let to32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, flex_tensor(to32(&dgamma), &[c]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex_tensor(to32(&dbeta), &[c]));
        }
    }
}

/// Parent `[x]`; state: the output and the slope.
#[derive(Debug)]
struct ActBackward;

impl Backward<Flex, 1> for ActBackward {
    type State = (FlexTensor, f32);

    fn backward(self, ops: Ops<(FlexTensor, f32), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let (y, slope) = ops.state;
        let shape = y.layout().shape().to_vec();
        let (ys, gs) = (dense(&y), dense(&g));
        let fill = |dx: &mut [MaybeUninit<f32>]| {
            dx.par_chunks_mut(1 << 14)
                .zip(ys.par_chunks(1 << 14).zip(gs.par_chunks(1 << 14)))
                .for_each(|(out, (yc, gc))| {
                    for ((o, &yv), &gv) in out.iter_mut().zip(yc).zip(gc) {
                        o.write(if yv > 0.0 { gv } else { gv * slope });
                    }
                });
        };
        // SAFETY: the chunks cover dx, each written whole.
        let dx = unsafe { filled(ys.len(), fill) };
        grads.register::<Flex>(node.id, flex_tensor(dx, &shape));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
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

    /// The textbook composition in Burn's operations (independent of this file's formulas).
    fn reference(
        x: Tensor<4>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        running: Option<(&[f32], &[f32])>,
        slope: Option<f32>,
    ) -> Tensor<4> {
        let [_, c, _, _] = x.dims();
        let dev = x.device();
        let (mean, var) = match running {
            None => {
                let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                let d = x.clone() - mean.clone();
                (mean, (d.clone() * d).mean_dim(0).mean_dim(2).mean_dim(3))
            }
            Some((m, v)) => (
                Tensor::<1>::from_data(TensorData::new(m.to_vec(), [c]), &dev)
                    .reshape([1, c, 1, 1]),
                Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &dev)
                    .reshape([1, c, 1, 1]),
            ),
        };
        let z = (x - mean) / (var + 1e-5).sqrt() * gamma.reshape([1, c, 1, 1])
            + beta.reshape([1, c, 1, 1]);
        match slope {
            Some(s) => burn::tensor::activation::leaky_relu(z, s as f64),
            None => z,
        }
    }

    /// Training and evaluation statistics, with ReLU, LeakyReLU or no activation, 4-D maps and
    /// BatchNorm1d-like `(B, C, 1, 1)` input: the output and the gradients of x, γ and β equal
    /// the composed operations' (1e-4 abs + rel: summation order and f64 statistics only), and
    /// the returned batch statistics are the batch's.
    #[test]
    fn fused_equals_composed() {
        let dev = Device::flex().autodiff();
        let running_mean = [0.3f32, -0.2, 0.1, 0.0, 0.5];
        let running_var = [1.5f32, 0.7, 2.0, 1.0, 0.9];
        for &(n, c, h, w) in &[(4usize, 5usize, 6usize, 7usize), (8, 5, 1, 1), (2, 3, 3, 3)] {
            for eval in [false, true] {
                for slope in [None, Some(0.0f32), Some(0.2)] {
                    let x: Tensor<4> =
                        Tensor::random([n, c, h, w], Distribution::Normal(0.5, 2.0), &dev)
                            .require_grad();
                    let gamma: Tensor<1> =
                        Tensor::random([c], Distribution::Uniform(0.0, 1.0), &dev).require_grad();
                    let beta: Tensor<1> =
                        Tensor::random([c], Distribution::Normal(0.0, 0.5), &dev).require_grad();
                    let weights: Tensor<4> =
                        Tensor::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &dev);
                    let running = eval.then(|| (&running_mean[..c], &running_var[..c]));
                    let to_tensor = |v: &[f32]| {
                        Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &Device::flex())
                    };
                    let running_t = running.map(|(m, v)| (to_tensor(m), to_tensor(v)));
                    let stats = match &running_t {
                        Some((mean, var)) => BnStats::Running { mean, var },
                        None => BnStats::Batch,
                    };
                    let fused = batch_norm_act(&x, &gamma, &beta, stats, 1e-5, slope)
                        .expect("CPU autodiff tensors take the fused path");
                    let want = reference(x.clone(), gamma.clone(), beta.clone(), running, slope);
                    let case = format!("{n}x{c}x{h}x{w} eval {eval} slope {slope:?}");
                    assert_close(
                        &format!("y {case}"),
                        &vec(fused.y.clone()),
                        &vec(want.clone()),
                        1e-4,
                    );
                    let grads_of = |y: Tensor<4>| {
                        let g = (y * weights.clone()).sum().backward();
                        (
                            vec(x.grad(&g).unwrap()),
                            vec(gamma.grad(&g).unwrap()),
                            vec(beta.grad(&g).unwrap()),
                        )
                    };
                    let got = grads_of(fused.y);
                    let exp = grads_of(want);
                    assert_close(&format!("dx {case}"), &got.0, &exp.0, 1e-4);
                    assert_close(&format!("dgamma {case}"), &got.1, &exp.1, 1e-4);
                    assert_close(&format!("dbeta {case}"), &got.2, &exp.2, 1e-4);
                    assert_eq!(fused.batch_stats.is_some(), !eval, "{case}");
                    if let Some((mean, var)) = fused.batch_stats {
                        let xd = x.clone().detach();
                        let m = xd.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                        let d = xd - m.clone();
                        let v = (d.clone() * d).mean_dim(0).mean_dim(2).mean_dim(3);
                        assert_close("mean", &mean, &vec(m), 1e-5);
                        assert_close("var", &var, &vec(v), 1e-5);
                    }
                }
            }
        }
    }

    /// Without autodiff (inference) the same values come back as a plain tensor.
    #[test]
    fn plain_device_forward() {
        let dev = Device::flex();
        let x: Tensor<4> = Tensor::random([3, 4, 5, 5], Distribution::Normal(0.0, 1.0), &dev);
        let gamma: Tensor<1> = Tensor::random([4], Distribution::Uniform(0.0, 1.0), &dev);
        let beta: Tensor<1> = Tensor::random([4], Distribution::Normal(0.0, 0.5), &dev);
        let out = batch_norm_act(&x, &gamma, &beta, BnStats::Batch, 1e-5, Some(0.2)).unwrap();
        assert!(!out.y.device().is_autodiff());
        let want = reference(x.clone(), gamma, beta, None, Some(0.2));
        assert_close("y", &vec(out.y), &vec(want), 1e-4);
        let y = leaky_relu(&x, 0.01).unwrap();
        let want = burn::tensor::activation::leaky_relu(x, 0.01);
        assert_eq!(vec(y), vec(want));
    }

    /// The activation alone: output and input gradient equal Burn's for ReLU and LeakyReLU,
    /// on a 2-D tensor (rank-generic); a negative slope is left to Burn.
    #[test]
    fn activation_equals_burns() {
        let dev = Device::flex().autodiff();
        for slope in [0.0f32, 0.01, 0.2] {
            let x: Tensor<2> =
                Tensor::random([37, 11], Distribution::Normal(0.0, 1.0), &dev).require_grad();
            let weights: Tensor<2> = Tensor::random([37, 11], Distribution::Normal(0.0, 1.0), &dev);
            let ours = leaky_relu(&x, slope).unwrap();
            let burns = burn::tensor::activation::leaky_relu(x.clone(), slope as f64);
            assert_eq!(vec(ours.clone()), vec(burns.clone()), "slope {slope}");
            let g1 = (ours * weights.clone()).sum().backward();
            let g2 = (burns * weights.clone()).sum().backward();
            assert_eq!(
                vec(x.grad(&g1).unwrap()),
                vec(x.grad(&g2).unwrap()),
                "slope {slope}"
            );
        }
        let x: Tensor<2> = Tensor::ones([2, 2], &dev);
        assert!(leaky_relu(&x, -0.1).is_none());
    }
}
