//! Losses (`losses.py` and the terms of `train.py`, §11).

use crate::{Error, Result};
use burn::tensor::activation::{log_softmax, sigmoid};
use burn::tensor::{Int, Tensor};
use std::fmt;
use std::str::FromStr;

/// `--gan_loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GanLossType {
    /// Binary cross-entropy on logits (default).
    Gan,
    /// Squared error on *sigmoid* scores (the original's non-standard LSGAN, quirk §23.13).
    Lsgan,
    /// Unconstrained WGAN: no clipping, no penalty (quirk §23.13).
    Wgan,
}

impl FromStr for GanLossType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gan" => Ok(Self::Gan),
            "lsgan" => Ok(Self::Lsgan),
            "wgan" => Ok(Self::Wgan),
            _ => Err(Error::invalid(format!(
                "invalid gan_loss_type {s:?}: expected gan, wgan or lsgan"
            ))),
        }
    }
}

impl fmt::Display for GanLossType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gan => "gan",
            Self::Lsgan => "lsgan",
            Self::Wgan => "wgan",
        })
    }
}

fn flat<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let n = x.dims().iter().product::<usize>();
    x.reshape([n])
}

/// Stable BCE on logits against a constant target `t` (§11.1):
/// `mean(max(x, 0) − x·t + log(1 + exp(−|x|)))`.
pub fn bce_logits_const(x: Tensor<1>, t: f32) -> Tensor<1> {
    let neg_abs = x.clone().abs().neg();
    let loss = x.clone().clamp_min(0.0) - x * t + (neg_abs.exp() + 1.0).log();
    loss.mean()
}

impl GanLossType {
    /// Generator loss on the discriminator's scores for fake data (any shape).
    pub fn g_loss<const D: usize>(self, fake: Tensor<D>) -> Tensor<1> {
        let f = flat(fake);
        match self {
            Self::Gan => bce_logits_const(f, 1.0),
            Self::Wgan => f.mean().neg(),
            Self::Lsgan => (sigmoid(f) - 1.0).powf_scalar(2.0).mean(),
        }
    }

    /// Discriminator loss; `real` and `fake` have the same shape.
    pub fn d_loss<const D: usize>(self, real: Tensor<D>, fake: Tensor<D>) -> Tensor<1> {
        let (r, f) = (flat(real), flat(fake));
        match self {
            Self::Gan => bce_logits_const(r, 1.0) + bce_logits_const(f, 0.0),
            Self::Wgan => f.mean() - r.mean(),
            Self::Lsgan => {
                (sigmoid(r) - 1.0).powf_scalar(2.0).mean() + sigmoid(f).powf_scalar(2.0).mean()
            }
        }
    }
}

/// Mean absolute error over all elements.
pub fn l1_loss<const D: usize>(pred: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    flat(pred - target).abs().mean()
}

/// Mean squared error over all elements.
pub fn mse_loss<const D: usize>(pred: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    flat(pred - target).powf_scalar(2.0).mean()
}

/// Binary cross-entropy of probabilities, PyTorch 0.4.0 form:
/// `−mean(t·log(p + 1e−12) + (1 − t)·log(1 − p + 1e−12))` (§11.6).
pub fn mask_bce_loss<const D: usize>(probs: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let (p, t) = (flat(probs), flat(target));
    let pos = t.clone() * (p.clone() + 1e-12).log();
    let neg = (t.neg() + 1.0) * (p.neg() + (1.0 + 1e-12)).log();
    (pos + neg).mean().neg()
}

/// Softmax cross-entropy, mean over rows.
///
/// # Shapes
/// `logits (B, C)`, `targets (B,)` → `(1,)`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    let picked = logp.gather(1, targets.reshape([b, 1])); // (B, 1)
    flat(picked).mean().neg()
}
