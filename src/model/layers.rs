//! Building blocks of `layers.py` (§3): normalisation and activation choices, Linear / Conv2d /
//! BatchNorm / Embedding layers in PyTorch's weight layout, a `Sequential` that numbers its
//! slots exactly like `nn.Sequential`, the MLP builder and the CNN builder with its
//! architecture-string grammar (`I3,C4-64-2,C4-128-2,…`).

use crate::kernels;
use crate::kernels::norm_act::{BnStats, batch_norm_act};
use crate::model::params::{
    ParamKind, ParamMut, ParamRef, Params, impl_leaf_params, key, placeholder,
};
use crate::{Error, Result};
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::module::{avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{
    AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand_distr::{Distribution, Normal, Uniform};
use std::fmt;
use std::str::FromStr;

/// Normalisation layer choice (`"batch"`, `"instance"`, `"none"`; §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    Batch,
    Instance,
    None,
}

impl FromStr for Normalization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "batch" => Ok(Self::Batch),
            "instance" => Ok(Self::Instance),
            "none" => Ok(Self::None),
            _ => Err(Error::invalid(format!(
                "invalid normalization {s:?}: expected batch, instance or none"
            ))),
        }
    }
}

impl fmt::Display for Normalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Batch => "batch",
            Self::Instance => "instance",
            Self::None => "none",
        })
    }
}

/// An activation function.
///
/// The original's activation factory (§3.2) turns *every* name into a LeakyReLU: slope `S` for
/// `leakyrelu-S`, PyTorch's default 0.01 for anything else — `"relu"` included. We reproduce that
/// in [`Activation::from_original`] and keep the spelling so it can be written back unchanged.
/// True ReLU is used only where the original hard-codes it (MLPs, the mask network).
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu { slope: f64, spelling: String },
}

impl Activation {
    /// Interprets an activation string exactly as `layers.get_activation` does (quirk §23.11),
    /// with one difference: a `leakyrelu-S` whose `S` is not a finite number is an error here
    /// (the original would build a LeakyReLU of slope NaN or inf, or crash on the `float()`).
    pub fn from_original(name: &str) -> Result<Self> {
        let mut slope = 0.01;
        if name.to_lowercase().starts_with("leakyrelu") && name.contains('-') {
            let text = name.split('-').nth(1).unwrap_or("");
            slope = text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "invalid activation {name:?}: the slope after '-' must be a finite number (e.g. leakyrelu-0.2)"
                    ))
                })?;
        }
        Ok(Self::LeakyRelu {
            slope,
            spelling: name.to_string(),
        })
    }

    /// The string this activation was created from (`"relu"` for true ReLU).
    pub fn spelling(&self) -> &str {
        match self {
            Self::Relu => "relu",
            Self::LeakyRelu { spelling, .. } => spelling,
        }
    }

    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        kernels::norm_act::leaky_relu(&x, self.slope() as f32).unwrap_or_else(|| match self {
            Self::Relu => relu(x),
            Self::LeakyRelu { slope, .. } => leaky_relu(x, *slope),
        })
    }

    /// The negative slope (0 for ReLU).
    pub fn slope(&self) -> f64 {
        match self {
            Self::Relu => 0.0,
            Self::LeakyRelu { slope, .. } => *slope,
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    /// [`Activation::from_original`].
    fn from_str(s: &str) -> Result<Self> {
        Self::from_original(s)
    }
}

impl fmt::Display for Activation {
    /// The spelling it was created from, so it is written back unchanged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spelling())
    }
}

/// Convolution padding of the CNN builder: `"same"` (odd kernels only) or `"valid"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Same,
    Valid,
}

impl FromStr for Padding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "same" => Ok(Self::Same),
            "valid" => Ok(Self::Valid),
            _ => Err(Error::invalid(format!(
                "invalid padding {s:?}: expected same or valid"
            ))),
        }
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Same => "same",
            Self::Valid => "valid",
        })
    }
}

impl Padding {
    fn amount(self, kernel: usize) -> Result<usize> {
        match self {
            Self::Valid => Ok(0),
            Self::Same if kernel % 2 == 1 => Ok((kernel - 1) / 2),
            Self::Same => Err(Error::invalid(format!(
                "padding \"same\" needs an odd kernel size, got {kernel} (the original asserts here; use --d_padding valid)"
            ))),
        }
    }
}

/// Pooling used by `P<F>` tokens of the CNN builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

impl FromStr for PoolKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "max" => Ok(Self::Max),
            "avg" => Ok(Self::Avg),
            _ => Err(Error::invalid(format!(
                "invalid pooling {s:?}: expected max or avg"
            ))),
        }
    }
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Max => "max",
            Self::Avg => "avg",
        })
    }
}

/// One token of the CNN architecture grammar (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchToken {
    /// `C<K>-<X>[-<S>]`: K×K convolution to X channels with stride S.
    Conv {
        kernel: usize,
        out: usize,
        stride: usize,
    },
    /// `R`: residual block.
    Residual,
    /// `U<F>`: nearest upsampling by F.
    Upsample(usize),
    /// `P<F>`: pooling with kernel = stride = F.
    Pool(usize),
    /// `FC-<Din>-<Dout>`.
    Fc { input: usize, output: usize },
}

/// A parsed architecture string: input channels (`I<C>`, default 3) and layer tokens, and the
/// string as it was given (written back unchanged, as the original stores its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnnArch {
    pub input_channels: usize,
    pub tokens: Vec<ArchToken>,
    spelling: String,
}

impl CnnArch {
    /// Parses the original's grammar, e.g. `"I3,C4-64-2,C4-128-2,C4-256-2"`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |tok: &str, why: &str| {
            Error::invalid(format!("invalid architecture {s:?}: token {tok:?} {why}"))
        };
        let num = |tok: &str, text: &str| -> Result<usize> {
            text.parse::<usize>()
                .map_err(|_| bad(tok, &format!("has {text:?} where a number is expected")))
        };
        let mut input_channels = 3;
        let mut tokens = Vec::new();
        for (i, tok) in s.split(',').enumerate() {
            if let Some(rest) = tok.strip_prefix("FC") {
                let parts: Vec<&str> = rest.split('-').collect();
                if parts.len() != 3 || !parts[0].is_empty() {
                    return Err(bad(tok, "must look like FC-<Din>-<Dout>"));
                }
                tokens.push(ArchToken::Fc {
                    input: num(tok, parts[1])?,
                    output: num(tok, parts[2])?,
                });
            } else if let Some(rest) = tok.strip_prefix('I') {
                if i != 0 {
                    return Err(bad(
                        tok,
                        "(input channels) is only allowed as the first token",
                    ));
                }
                input_channels = num(tok, rest)?;
            } else if let Some(rest) = tok.strip_prefix('C') {
                let v: Vec<&str> = rest.split('-').collect();
                let (kernel, out, stride) = match v.as_slice() {
                    [k, x] => (num(tok, k)?, num(tok, x)?, 1),
                    [k, x, st] => (num(tok, k)?, num(tok, x)?, num(tok, st)?),
                    _ => return Err(bad(tok, "must look like C<K>-<X> or C<K>-<X>-<S>")),
                };
                if kernel == 0 || stride == 0 {
                    return Err(bad(tok, "needs a positive kernel size and stride"));
                }
                tokens.push(ArchToken::Conv {
                    kernel,
                    out,
                    stride,
                });
            } else if tok == "R" {
                tokens.push(ArchToken::Residual);
            } else if let Some(rest) = tok.strip_prefix('U') {
                tokens.push(ArchToken::Upsample(num(tok, rest)?));
            } else if let Some(rest) = tok.strip_prefix('P') {
                tokens.push(ArchToken::Pool(num(tok, rest)?));
            } else {
                return Err(bad(
                    tok,
                    "is not one of I<C>, C<K>-<X>[-<S>], R, U<F>, P<F>, FC-<Din>-<Dout>",
                ));
            }
        }
        Ok(Self {
            input_channels,
            tokens,
            spelling: s.to_string(),
        })
    }

    /// The string this architecture was parsed from ([`Display`](fmt::Display) writes the
    /// tokens in their shortest form, without the `I<C>` prefix).
    pub fn spelling(&self) -> &str {
        &self.spelling
    }

    /// The same architecture with a different input channel count (`I<C>` prefix).
    pub fn with_input_channels(mut self, c: usize) -> Self {
        self.input_channels = c;
        self
    }
}

impl FromStr for CnnArch {
    type Err = Error;
    /// [`CnnArch::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for CnnArch {
    /// Writes the architecture without the `I<C>` prefix, as the training flags spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .tokens
            .iter()
            .map(|t| match t {
                ArchToken::Conv {
                    kernel,
                    out,
                    stride: 1,
                } => format!("C{kernel}-{out}"),
                ArchToken::Conv {
                    kernel,
                    out,
                    stride,
                } => format!("C{kernel}-{out}-{stride}"),
                ArchToken::Residual => "R".to_string(),
                ArchToken::Upsample(k) => format!("U{k}"),
                ArchToken::Pool(k) => format!("P{k}"),
                ArchToken::Fc { input, output } => format!("FC-{input}-{output}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

// ---------------------------------------------------------------------------------------------
// Initialisation (PyTorch 0.4 defaults, §21.5.6), drawn on the CPU from a seeded RNG so that a
// model built from a seed is identical on every backend.

fn uniform_data(rng: &mut dyn rand::RngCore, shape: &[usize], bound: f64) -> TensorData {
    if let Some(zeros) = placeholder(shape) {
        return zeros;
    }
    let n: usize = shape.iter().product();
    let dist = Uniform::new_inclusive(-bound as f32, bound as f32).expect("finite bound");
    let v: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    TensorData::new(v, shape.to_vec())
}

fn normal_data(rng: &mut dyn rand::RngCore, shape: &[usize], std: f64) -> TensorData {
    if let Some(zeros) = placeholder(shape) {
        return zeros;
    }
    let n: usize = shape.iter().product();
    let dist = Normal::new(0.0f32, std as f32).expect("finite std");
    let v: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    TensorData::new(v, shape.to_vec())
}

/// How a layer's weight is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// PyTorch 0.4 default: `U(±1/√fan_in)` for weight and bias.
    Default,
    /// Kaiming normal (fan-in, gain √2) for the weight, default bias.
    KaimingNormal,
}

// ---------------------------------------------------------------------------------------------

/// `nn.Linear` with PyTorch's `(out, in)` weight.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Tensor<1>,
}

impl Linear {
    pub fn init(
        d_in: usize,
        d_out: usize,
        init: Init,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let weight = match init {
            Init::Default => uniform_data(rng, &[d_out, d_in], bound),
            Init::KaimingNormal => normal_data(rng, &[d_out, d_in], (2.0 / d_in as f64).sqrt()),
        };
        let bias = uniform_data(rng, &[d_out], bound);
        Self {
            weight: Tensor::from_data(weight, device),
            bias: Tensor::from_data(bias, device),
        }
    }

    /// `(B, Din) → (B, Dout)`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [out, d_in] = self.weight.dims();
        crate::flops::linear(x.dims()[0], d_in, out);
        x.matmul(self.weight.clone().transpose()) + self.bias.clone().unsqueeze_dim(0)
    }
}

impl_leaf_params!(Linear { weight, bias });

/// `nn.Conv2d` with PyTorch's `(out, in, kh, kw)` weight, square kernel.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn init(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        init: Init,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let fan_in = c_in * kernel * kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let shape = [c_out, c_in, kernel, kernel];
        let weight = match init {
            Init::Default => uniform_data(rng, &shape, bound),
            Init::KaimingNormal => normal_data(rng, &shape, (2.0 / fan_in as f64).sqrt()),
        };
        let bias = uniform_data(rng, &[c_out], bound);
        Self {
            weight: Tensor::from_data(weight, device),
            bias: Tensor::from_data(bias, device),
            stride,
            padding,
        }
    }

    /// `(N, Cin, H, W) → (N, Cout, H', W')`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::flops::conv2d(x.dims(), self.weight.dims(), self.stride, self.padding);
        let (s, p) = (self.stride, self.padding);
        kernels::conv::conv2d(&x, &self.weight, &self.bias, s, p).unwrap_or_else(|| {
            let opts = ConvOptions::new([s; 2], [p; 2], [1, 1], 1);
            conv2d(x, self.weight.clone(), Some(self.bias.clone()), opts)
        })
    }
}

impl_leaf_params!(Conv2d { weight, bias });

/// `nn.BatchNorm1d` / `nn.BatchNorm2d` (eps 1e-5, momentum 0.1, §21.5.4).
///
/// Train mode normalises with the biased batch variance and moves the running variance towards
/// the *unbiased* one; eval mode uses the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub running_mean: Tensor<1>,
    pub running_var: Tensor<1>,
    /// PyTorch ≥ 0.4.1 counts updates; kept for completeness, never used (fixed momentum).
    pub num_batches_tracked: i64,
    pub training: bool,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm {
    /// PyTorch 0.4 init: `γ ~ U(0, 1)`, `β = 0`, running mean 0 and variance 1.
    pub fn init(c: usize, device: &Device, rng: &mut dyn rand::RngCore) -> Self {
        let dist = Uniform::new(0.0f32, 1.0f32).expect("valid range");
        let gamma: Vec<f32> = (0..c).map(|_| dist.sample(rng)).collect();
        Self {
            weight: Tensor::from_data(TensorData::new(gamma, [c]), device),
            bias: Tensor::zeros([c], device),
            running_mean: Tensor::zeros([c], device),
            running_var: Tensor::ones([c], device),
            num_batches_tracked: 0,
            training: true,
        }
    }

    /// BatchNorm1d or BatchNorm2d by the feature's rank, then `act` if given.
    pub fn forward(&mut self, x: Feature, act: Option<&Activation>) -> Feature {
        match x {
            Feature::Vec(t) => Feature::Vec(self.forward2(t, act)),
            Feature::Map(t) => Feature::Map(self.forward4(t, act)),
        }
    }

    /// `(B, C)` (BatchNorm1d), then `act` if given.
    pub fn forward2(&mut self, x: Tensor<2>, act: Option<&Activation>) -> Tensor<2> {
        let [b, c] = x.dims();
        self.forward4(x.reshape([b, c, 1, 1]), act).reshape([b, c])
    }

    /// `(N, C, H, W)` (BatchNorm2d), then `act` if given: on the CPU one fused operation
    /// ([`kernels::norm_act`]), elsewhere Burn's operations.
    pub fn forward4(&mut self, x: Tensor<4>, act: Option<&Activation>) -> Tensor<4> {
        let stats = if self.training {
            BnStats::Batch
        } else {
            BnStats::Running {
                mean: &self.running_mean,
                var: &self.running_var,
            }
        };
        let slope = act.map(|a| a.slope() as f32);
        let Some(out) = batch_norm_act(&x, &self.weight, &self.bias, stats, BN_EPS, slope) else {
            let y = self.forward4_composed(x);
            return match act {
                Some(a) => a.apply(y),
                None => y,
            };
        };
        if let Some((mean, var)) = out.batch_stats {
            let [n, c, h, w] = x.dims();
            let device = self.running_mean.device();
            let mean = Tensor::<1>::from_data(TensorData::new(mean, [c]), &device);
            let var = Tensor::<1>::from_data(TensorData::new(var, [c]), &device);
            self.update_running(mean, var, n * h * w);
        }
        out.y
    }

    /// Moves the running statistics towards a batch's mean and (biased) variance over `count`
    /// values per channel (both `(C,)`, no gradient); the variance enters unbiased, as in
    /// PyTorch.
    fn update_running(&mut self, mean: Tensor<1>, var: Tensor<1>, count: usize) {
        let unbiased = if count > 1 {
            var * (count as f64 / (count - 1) as f64)
        } else {
            var
        };
        self.running_mean = self.running_mean.clone() * (1.0 - BN_MOMENTUM) + mean * BN_MOMENTUM;
        self.running_var = self.running_var.clone() * (1.0 - BN_MOMENTUM) + unbiased * BN_MOMENTUM;
        self.num_batches_tracked += 1;
    }

    /// The same normalisation from Burn's elementary operations (GPU devices).
    fn forward4_composed(&mut self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let shape = [1, c, 1, 1];
        // Both modes apply `x·α + β` per channel with `α = γ/√(σ²+ε)`, `β = b − μ·α`: the form
        // PyTorch's CPU kernel uses, and two passes over the activations instead of four.
        let (centered_or_x, mean, var) = if self.training {
            let count = n * h * w;
            let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3); // (1, C, 1, 1)
            let centered = x - mean.clone();
            let var = (centered.clone() * centered.clone())
                .mean_dim(0)
                .mean_dim(2)
                .mean_dim(3);
            self.update_running(
                mean.clone().detach().reshape([c]),
                var.clone().detach().reshape([c]),
                count,
            );
            // The batch mean is already subtracted: β is the bias alone.
            (centered, None, var)
        } else {
            (
                x,
                Some(self.running_mean.clone().reshape(shape)),
                self.running_var.clone().reshape(shape),
            )
        };
        let alpha = (var + BN_EPS).sqrt().recip() * self.weight.clone().reshape(shape);
        let beta = match mean {
            Some(mean) => self.bias.clone().reshape(shape) - mean * alpha.clone(),
            None => self.bias.clone().reshape(shape),
        };
        centered_or_x * alpha + beta
    }
}

impl_leaf_params!(BatchNorm { weight, bias; buffers: running_mean, running_var; mode: training });

/// `nn.InstanceNorm2d` as in PyTorch 0.4: no affine parameters, no running statistics.
/// `(N, C, H, W) → (N, C, H, W)`.
pub fn instance_norm(x: Tensor<4>) -> Tensor<4> {
    let mean = x.clone().mean_dim(2).mean_dim(3);
    let centered = x - mean;
    let var = centered.clone().powf_scalar(2.0).mean_dim(2).mean_dim(3);
    centered * (var + BN_EPS).sqrt().recip()
}

/// `nn.Embedding`: `(rows, D)` table.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Tensor<2>,
}

impl Embedding {
    /// PyTorch init: `N(0, 1)`.
    pub fn init(rows: usize, dim: usize, device: &Device, rng: &mut dyn rand::RngCore) -> Self {
        Self {
            weight: Tensor::from_data(normal_data(rng, &[rows, dim], 1.0), device),
        }
    }

    /// `(K,) → (K, D)`.
    pub fn forward(&self, idx: Tensor<1, Int>) -> Tensor<2> {
        self.weight.clone().select(0, idx)
    }
}

impl_leaf_params!(Embedding { weight });

/// A tensor flowing through a [`Sequential`]: feature vectors or feature maps.
#[derive(Debug, Clone)]
pub enum Feature {
    /// `(B, D)`.
    Vec(Tensor<2>),
    /// `(N, C, H, W)`.
    Map(Tensor<4>),
}

impl Feature {
    pub fn into_map(self) -> Tensor<4> {
        match self {
            Feature::Map(t) => t,
            Feature::Vec(t) => {
                let [b, d] = t.dims();
                t.reshape([b, d, 1, 1])
            }
        }
    }

    pub fn into_vec(self) -> Tensor<2> {
        match self {
            Feature::Vec(t) => t,
            Feature::Map(t) => {
                let [n, c, h, w] = t.dims();
                t.reshape([n, c * h * w])
            }
        }
    }
}

/// One slot of a [`Sequential`]. Parameter-free slots (activations, instance norm, pooling)
/// still take an index, exactly like in `nn.Sequential`, so state-dict keys line up.
#[derive(Debug, Clone)]
// A handful of these exist per model, built once: boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum Layer {
    Linear(Linear),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    InstanceNorm,
    Act(Activation),
    /// Nearest-neighbour upsampling by an integer factor.
    Upsample(usize),
    Pool(PoolKind, usize),
    GlobalAvgPool,
    Flatten,
    Residual(ResidualBlock),
    Seq(Sequential),
}

impl Layer {
    pub fn forward(&mut self, x: Feature) -> Feature {
        match self {
            Layer::Linear(l) => Feature::Vec(l.forward(x.into_vec())),
            Layer::Conv2d(c) => Feature::Map(c.forward(x.into_map())),
            Layer::BatchNorm(bn) => bn.forward(x, None),
            Layer::InstanceNorm => Feature::Map(instance_norm(x.into_map())),
            Layer::Act(a) => match x {
                Feature::Vec(t) => Feature::Vec(a.apply(t)),
                Feature::Map(t) => Feature::Map(a.apply(t)),
            },
            Layer::Upsample(f) => Feature::Map(upsample_nearest(x.into_map(), *f)),
            Layer::Pool(kind, f) => {
                let x = x.into_map();
                Feature::Map(match kind {
                    PoolKind::Avg => avg_pool2d(x, AvgPoolOptions::new([*f, *f])),
                    PoolKind::Max => max_pool2d(x, MaxPoolOptions::new([*f, *f])),
                })
            }
            Layer::GlobalAvgPool => {
                let x = x.into_map();
                let [n, c, _, _] = x.dims();
                Feature::Vec(x.mean_dim(2).mean_dim(3).reshape([n, c]))
            }
            Layer::Flatten => Feature::Vec(x.into_vec()),
            Layer::Residual(r) => Feature::Map(r.forward(x.into_map())),
            Layer::Seq(s) => s.forward(x),
        }
    }
}

impl Params for Layer {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
        match self {
            Layer::Linear(l) => l.visit(prefix, f),
            Layer::Conv2d(c) => c.visit(prefix, f),
            Layer::BatchNorm(b) => b.visit(prefix, f),
            Layer::Residual(r) => r.visit(prefix, f),
            Layer::Seq(s) => s.visit(prefix, f),
            _ => {}
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
        match self {
            Layer::Linear(l) => l.visit_mut(prefix, f),
            Layer::Conv2d(c) => c.visit_mut(prefix, f),
            Layer::BatchNorm(b) => b.visit_mut(prefix, f),
            Layer::Residual(r) => r.visit_mut(prefix, f),
            Layer::Seq(s) => s.visit_mut(prefix, f),
            _ => {}
        }
    }
    fn set_training(&mut self, training: bool) {
        match self {
            Layer::BatchNorm(b) => b.set_training(training),
            Layer::Residual(r) => r.set_training(training),
            Layer::Seq(s) => s.set_training(training),
            _ => {}
        }
    }
}

/// `nn.Sequential`: slot `i` has state-dict prefix `i`.
#[derive(Debug, Clone, Default)]
pub struct Sequential {
    pub layers: Vec<Layer>,
}

impl Sequential {
    pub fn forward(&mut self, mut x: Feature) -> Feature {
        let mut i = 0;
        while i < self.layers.len() {
            // A BatchNorm and the activation after it run as one operation
            // (`kernels::norm_act`).
            if let [Layer::BatchNorm(bn), Layer::Act(act), ..] = &mut self.layers[i..] {
                x = bn.forward(x, Some(act));
                i += 2;
            } else {
                x = self.layers[i].forward(x);
                i += 1;
            }
        }
        x
    }

    pub fn forward_map(&mut self, x: Tensor<4>) -> Tensor<4> {
        self.forward(Feature::Map(x)).into_map()
    }

    pub fn forward_vec(&mut self, x: Tensor<2>) -> Tensor<2> {
        self.forward(Feature::Vec(x)).into_vec()
    }

    fn push(&mut self, layer: Layer) {
        self.layers.push(layer);
    }
}

impl Params for Sequential {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.visit(&key(prefix, &i.to_string()), f);
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_mut(&key(prefix, &i.to_string()), f);
        }
    }
    fn set_training(&mut self, training: bool) {
        for l in &mut self.layers {
            l.set_training(training);
        }
    }
}

/// Nearest-neighbour upsampling by an integer factor: output `(i, j)` ← input `(i/f, j/f)`.
/// `(N, C, H, W) → (N, C, fH, fW)`.
pub fn upsample_nearest(x: Tensor<4>, factor: usize) -> Tensor<4> {
    if factor == 1 {
        return x;
    }
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest)
            .with_output_size([h * factor, w * factor]),
    )
}

/// The normalisation slot for `c` channels, or nothing for `"none"` (which removes the slot).
fn push_norm(
    seq: &mut Sequential,
    norm: Normalization,
    c: usize,
    device: &Device,
    rng: &mut dyn rand::RngCore,
) {
    match norm {
        Normalization::Batch => seq.push(Layer::BatchNorm(BatchNorm::init(c, device, rng))),
        Normalization::Instance => seq.push(Layer::InstanceNorm),
        Normalization::None => {}
    }
}

/// `build_mlp(dims, activation="relu", batch_norm=…, final_nonlinearity=True)` as every sg2im MLP
/// is built (§3.3): `Linear [BatchNorm1d] ReLU` per layer, the last one included. With
/// `Init::KaimingNormal` the Linear weights are re-initialised as the graph convolution does.
pub fn build_mlp(
    dims: &[usize],
    batch_norm: bool,
    init: Init,
    device: &Device,
    rng: &mut dyn rand::RngCore,
) -> Sequential {
    let mut seq = Sequential::default();
    for pair in dims.windows(2) {
        seq.push(Layer::Linear(Linear::init(
            pair[0], pair[1], init, device, rng,
        )));
        if batch_norm {
            seq.push(Layer::BatchNorm(BatchNorm::init(pair[1], device, rng)));
        }
        seq.push(Layer::Act(Activation::Relu));
    }
    seq
}

/// Options of the CNN builder (§3.4).
#[derive(Debug, Clone)]
pub struct CnnOptions {
    pub normalization: Normalization,
    pub activation: Activation,
    pub padding: Padding,
    pub pooling: PoolKind,
}

/// `build_cnn(arch, …)`: returns the network and its output width (§3.4). Every convolution but
/// the first is preceded by `[norm, activation]`; nothing follows the last one.
pub fn build_cnn(
    arch: &CnnArch,
    opts: &CnnOptions,
    device: &Device,
    rng: &mut dyn rand::RngCore,
) -> Result<(Sequential, usize)> {
    let mut seq = Sequential::default();
    let mut cur = arch.input_channels;
    let mut first_conv = true;
    let mut flat = false;
    for (i, tok) in arch.tokens.iter().enumerate() {
        match *tok {
            ArchToken::Conv {
                kernel,
                out,
                stride,
            } => {
                if !first_conv {
                    push_norm(&mut seq, opts.normalization, cur, device, rng);
                    seq.push(Layer::Act(opts.activation.clone()));
                }
                first_conv = false;
                let pad = opts.padding.amount(kernel)?;
                seq.push(Layer::Conv2d(Conv2d::init(
                    cur,
                    out,
                    kernel,
                    stride,
                    pad,
                    Init::Default,
                    device,
                    rng,
                )));
                cur = out;
            }
            ArchToken::Residual => {
                let norm = if first_conv {
                    Normalization::None
                } else {
                    opts.normalization
                };
                let block =
                    ResidualBlock::init(cur, norm, &opts.activation, opts.padding, device, rng)?;
                seq.push(Layer::Residual(block));
                first_conv = false;
            }
            ArchToken::Upsample(f) => seq.push(Layer::Upsample(f)),
            ArchToken::Pool(f) => seq.push(Layer::Pool(opts.pooling, f)),
            ArchToken::Fc { input, output } => {
                if !flat {
                    seq.push(Layer::Flatten);
                }
                flat = true;
                seq.push(Layer::Linear(Linear::init(
                    input,
                    output,
                    Init::Default,
                    device,
                    rng,
                )));
                if i + 1 < arch.tokens.len() {
                    seq.push(Layer::Act(opts.activation.clone()));
                }
                cur = output;
            }
        }
    }
    Ok((seq, cur))
}

/// `ResidualBlock` (§3.5): `shortcut + body(x)` with body `[norm, act, conv, norm, act, conv]`.
///
/// Faithful to the original, the body is evaluated twice per forward (the first result is
/// discarded, but in train mode BatchNorm running statistics are updated twice), and "valid"
/// padding is refused because the original's shortcut slicing breaks with it.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    pub net: Sequential,
}

impl ResidualBlock {
    pub fn init(
        c: usize,
        norm: Normalization,
        act: &Activation,
        padding: Padding,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Result<Self> {
        if padding == Padding::Valid {
            return Err(Error::invalid(
                "residual blocks (R) need padding \"same\": the original's shortcut is empty with \"valid\" padding",
            ));
        }
        let pad = padding.amount(3)?;
        let mut net = Sequential::default();
        for _ in 0..2 {
            push_norm(&mut net, norm, c, device, rng);
            net.push(Layer::Act(act.clone()));
            net.push(Layer::Conv2d(Conv2d::init(
                c,
                c,
                3,
                1,
                pad,
                Init::Default,
                device,
                rng,
            )));
        }
        Ok(Self { net })
    }

    /// `(N, C, H, W) → (N, C, H, W)`.
    pub fn forward(&mut self, x: Tensor<4>) -> Tensor<4> {
        let _discarded = self.net.forward_map(x.clone());
        x.clone() + self.net.forward_map(x)
    }
}

crate::impl_params!(ResidualBlock { net => "net" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_factory_quirk() {
        assert_eq!(
            Activation::from_original("leakyrelu-0.2").unwrap(),
            Activation::LeakyRelu {
                slope: 0.2,
                spelling: "leakyrelu-0.2".into()
            }
        );
        // "relu" is a LeakyReLU(0.01) in the original.
        match Activation::from_original("relu").unwrap() {
            Activation::LeakyRelu { slope, .. } => assert_eq!(slope, 0.01),
            other => panic!("{other:?}"),
        }
        match Activation::from_original("tanh").unwrap() {
            Activation::LeakyRelu { slope, .. } => assert_eq!(slope, 0.01),
            other => panic!("{other:?}"),
        }
        let err = Activation::from_original("leakyrelu-x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("leakyrelu-x"), "{err}");
    }

    /// A slope that parses as a float but is not finite would make every activation NaN or
    /// infinite; it is rejected with the value named. Other strings keep the 0.01 quirk.
    #[test]
    fn activation_slope_must_be_finite() {
        for bad in [
            "leakyrelu-nan",
            "LeakyReLU-NaN",
            "leakyrelu-inf",
            "leakyrelu-infinity",
        ] {
            let err = Activation::from_original(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("finite number"),
                "{bad}: {err}"
            );
            assert!(bad.parse::<Activation>().is_err(), "{bad}");
        }
        assert_eq!("nan".parse::<Activation>().unwrap().slope(), 0.01);
        assert_eq!(
            "leakyrelu-0.001".parse::<Activation>().unwrap().slope(),
            1e-3
        );
        let a: Activation = "leakyrelu-0.2".parse().unwrap();
        assert_eq!(a.to_string(), "leakyrelu-0.2");
    }

    #[test]
    fn arch_grammar() {
        let a = CnnArch::parse("I3,C4-64-2,C4-128-2,C4-256-2").unwrap();
        assert_eq!(a.input_channels, 3);
        assert_eq!(
            a.tokens[0],
            ArchToken::Conv {
                kernel: 4,
                out: 64,
                stride: 2
            }
        );
        assert_eq!(a.to_string(), "C4-64-2,C4-128-2,C4-256-2");
        let b = CnnArch::parse("C3-32,R,P2,U2,FC-128-10").unwrap();
        assert_eq!(b.input_channels, 3);
        assert_eq!(
            b.tokens[4],
            ArchToken::Fc {
                input: 128,
                output: 10
            }
        );
        assert_eq!(
            b.tokens[0],
            ArchToken::Conv {
                kernel: 3,
                out: 32,
                stride: 1
            }
        );
        for bad in ["C4", "C4-x", "X3", "C4-64,I3", "FC-10", "C0-3"] {
            let err = CnnArch::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid architecture"), "{bad}: {err}");
        }
    }

    #[test]
    fn norm_and_padding_parse() {
        assert_eq!(
            "instance".parse::<Normalization>().unwrap(),
            Normalization::Instance
        );
        assert!("layer".parse::<Normalization>().is_err());
        assert!("reflect".parse::<Padding>().is_err());
        assert!(Padding::Same.amount(4).is_err());
        assert_eq!(Padding::Same.amount(3).unwrap(), 1);
    }

    #[test]
    fn cnn_builder_slots_match_pytorch_numbering() {
        let device = Device::flex();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let arch = CnnArch::parse("I3,C4-64-2,C4-128-2,C4-256-2").unwrap();
        let opts = CnnOptions {
            normalization: Normalization::Batch,
            activation: Activation::from_original("leakyrelu-0.2").unwrap(),
            padding: Padding::Valid,
            pooling: PoolKind::Avg,
        };
        let (seq, out) = build_cnn(&arch, &opts, &device, &mut rng).unwrap();
        assert_eq!(out, 256);
        let keys: Vec<String> = crate::model::params::shapes(&seq)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(&keys[..2], ["0.weight", "0.bias"]);
        assert!(keys.contains(&"3.weight".to_string()) && keys.contains(&"6.weight".to_string()));
        assert!(keys.contains(&"4.running_var".to_string()));
        let none = CnnOptions {
            normalization: Normalization::None,
            ..opts
        };
        let (seq, _) = build_cnn(&arch, &none, &device, &mut rng).unwrap();
        let keys: Vec<String> = crate::model::params::shapes(&seq)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"
            ]
        );
    }
}
