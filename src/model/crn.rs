//! Cascaded refinement network (`crn.py`, §7): the image decoder.

use crate::model::layers::{
    Activation, BatchNorm, Conv2d, Init, Layer, Normalization, Sequential, upsample_nearest,
};
use crate::{Error, Result};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor};

/// One `RefinementModule` (§7.1): `conv3×3 [norm] act conv3×3 [norm] act` on
/// `[pooled layout, upsampled features]`.
#[derive(Debug, Clone)]
pub struct RefinementModule {
    pub net: Sequential,
}

crate::impl_params!(RefinementModule { net => "net" });

impl RefinementModule {
    pub fn init(
        layout_dim: usize,
        input_dim: usize,
        output_dim: usize,
        norm: Normalization,
        act: &Activation,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let mut net = Sequential::default();
        let mut c_in = layout_dim + input_dim;
        for _ in 0..2 {
            net.layers.push(Layer::Conv2d(Conv2d::init(
                c_in,
                output_dim,
                3,
                1,
                1,
                Init::KaimingNormal,
                device,
                rng,
            )));
            match norm {
                Normalization::Batch => net
                    .layers
                    .push(Layer::BatchNorm(BatchNorm::init(output_dim, device, rng))),
                Normalization::Instance => net.layers.push(Layer::InstanceNorm),
                Normalization::None => {}
            }
            net.layers.push(Layer::Act(act.clone()));
            c_in = output_dim;
        }
        Self { net }
    }

    /// # Shapes
    /// `layout (N, L, HH, WW)`, `feats (N, Cin, H, W)` with `HH = f·H`, `WW = f·W` → `(N, Cout, H, W)`.
    pub fn forward(&mut self, layout: Tensor<4>, feats: Tensor<4>) -> Tensor<4> {
        let [_, _, hh, _] = layout.dims();
        let [_, _, h, _] = feats.dims();
        let layout = if hh > h {
            let f = hh / h;
            avg_pool2d(layout, AvgPoolOptions::new([f, f]))
        } else {
            layout
        };
        self.net.forward_map(Tensor::cat(vec![layout, feats], 1))
    }
}

/// `RefinementNetwork(dims = (L, d1, …, dK))` (§7.2).
#[derive(Debug, Clone)]
pub struct RefinementNetwork {
    pub refinement_modules: Vec<RefinementModule>,
    pub output_conv: Sequential,
}

crate::impl_params!(RefinementNetwork {
    refinement_modules => "refinement_modules",
    output_conv => "output_conv",
});

impl RefinementNetwork {
    pub fn init(
        dims: &[usize],
        norm: Normalization,
        act: &Activation,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let layout_dim = dims[0];
        let mut refinement_modules = Vec::new();
        for m in 1..dims.len() {
            let input_dim = if m == 1 { 1 } else { dims[m - 1] };
            refinement_modules.push(RefinementModule::init(
                layout_dim, input_dim, dims[m], norm, act, device, rng,
            ));
        }
        let last = *dims.last().expect("at least one refinement dim");
        let output_conv = Sequential {
            layers: vec![
                Layer::Conv2d(Conv2d::init(
                    last,
                    last,
                    3,
                    1,
                    1,
                    Init::KaimingNormal,
                    device,
                    rng,
                )),
                Layer::Act(act.clone()),
                Layer::Conv2d(Conv2d::init(
                    last,
                    3,
                    1,
                    1,
                    0,
                    Init::KaimingNormal,
                    device,
                    rng,
                )),
            ],
        };
        Self {
            refinement_modules,
            output_conv,
        }
    }

    /// Checks that an `H×W` layout can be decoded by `k` modules: both sides must be divisible by
    /// `2^k` (the original asserts deep inside the forward pass instead).
    pub fn check_size(k: usize, (h, w): (usize, usize)) -> Result<()> {
        let f = 1usize << k;
        if h == 0 || w == 0 || h % f != 0 || w % f != 0 {
            return Err(Error::invalid(format!(
                "image_size {h}x{w} cannot be decoded by {k} refinement modules: height and width must be positive multiples of 2^{k} = {f}"
            )));
        }
        Ok(())
    }

    /// # Shapes
    /// `layout (N, L, H, W)` → `(N, 3, H, W)`.
    pub fn forward(&mut self, layout: Tensor<4>) -> Tensor<4> {
        let [n, _, h, w] = layout.dims();
        let k = self.refinement_modules.len();
        let (h0, w0) = (h >> k, w >> k);
        let mut feats = Tensor::<4>::zeros([n, 1, h0, w0], &layout.device());
        for module in &mut self.refinement_modules {
            feats = upsample_nearest(feats, 2);
            feats = module.forward(layout.clone(), feats);
        }
        self.output_conv.forward_map(feats)
    }
}
