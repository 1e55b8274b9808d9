//! Discriminators (`discriminators.py`, §8): the patch image discriminator and the object
//! discriminator with auxiliary classifier over bilinear crops of the object boxes.

use crate::Result;
use crate::model::bilinear::crop_bbox_batch;
use crate::model::layers::{
    Activation, CnnArch, CnnOptions, Conv2d, Init, Layer, Linear, Normalization, Padding, PoolKind,
    Sequential, build_cnn,
};
use crate::model::losses::cross_entropy;
use crate::vocab::Vocab;
use burn::tensor::{Device, Int, Tensor};

/// CNN options shared by both discriminators (their kwargs minus vocab and crop size). The
/// original's `d_obj_kwargs` / `d_img_kwargs` dicts are read and written in
/// [`crate::io::kwargs`].
#[derive(Debug, Clone, PartialEq)]
pub struct DiscriminatorConfig {
    pub arch: CnnArch,
    pub normalization: Normalization,
    pub activation: Activation,
    pub padding: Padding,
    pub pooling: PoolKind,
}

impl DiscriminatorConfig {
    /// What `train.py` passes with its default flags (§8.4).
    pub fn train_defaults() -> Self {
        Self {
            arch: CnnArch::parse("C4-64-2,C4-128-2,C4-256-2").expect("valid default"),
            normalization: Normalization::Batch,
            activation: Activation::from_original("leakyrelu-0.2").expect("valid default"),
            padding: Padding::Valid,
            pooling: PoolKind::Avg,
        }
    }

    fn options(&self) -> CnnOptions {
        CnnOptions {
            normalization: self.normalization,
            activation: self.activation.clone(),
            padding: self.padding,
            pooling: self.pooling,
        }
    }
}

/// `PatchDiscriminator` (§8.1). Its scores are the raw multi-channel output map of the last
/// convolution; the 1×1 `classifier` is saved but never applied (quirk §23.12).
#[derive(Debug, Clone)]
pub struct PatchDiscriminator {
    pub config: DiscriminatorConfig,
    pub cnn: Sequential,
    pub classifier: Conv2d,
}

crate::impl_params!(PatchDiscriminator { cnn => "cnn", classifier => "classifier" });

impl PatchDiscriminator {
    pub fn init(
        config: &DiscriminatorConfig,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Result<Self> {
        let arch = config.arch.clone().with_input_channels(3);
        let (cnn, out) = build_cnn(&arch, &config.options(), device, rng)?;
        let classifier = Conv2d::init(out, 1, 1, 1, 0, Init::Default, device, rng);
        Ok(Self {
            config: config.clone(),
            cnn,
            classifier,
        })
    }

    /// # Shapes
    /// `(N, 3, H, W)` → `(N, C, H', W')` (e.g. `(N, 256, 6, 6)` at 64×64 with the defaults).
    pub fn forward(&mut self, imgs: Tensor<4>) -> Tensor<4> {
        self.cnn.forward_map(imgs)
    }
}

/// `AcDiscriminator` (§8.2): CNN → global average pool → Linear(→1024), then a real/fake score
/// and class logits over `num_objects` classes (not +1, unlike the generator's embedding).
#[derive(Debug, Clone)]
pub struct AcDiscriminator {
    pub cnn: Sequential,
    pub real_classifier: Linear,
    pub obj_classifier: Linear,
}

crate::impl_params!(AcDiscriminator {
    cnn => "cnn",
    real_classifier => "real_classifier",
    obj_classifier => "obj_classifier",
});

/// Configuration of the object discriminator (`d_obj_kwargs`).
#[derive(Debug, Clone, PartialEq)]
pub struct AcCropDiscriminatorConfig {
    pub vocab: Vocab,
    pub cnn: DiscriminatorConfig,
    /// Side of the square crops (`--crop_size`, 32 in training).
    pub object_size: usize,
}

/// `AcCropDiscriminator` (§8.3): crops every object at its box and classifies the crops.
#[derive(Debug, Clone)]
pub struct AcCropDiscriminator {
    pub config: AcCropDiscriminatorConfig,
    pub discriminator: AcDiscriminator,
}

crate::impl_params!(AcCropDiscriminator { discriminator => "discriminator" });

impl AcCropDiscriminator {
    pub fn init(
        config: &AcCropDiscriminatorConfig,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Result<Self> {
        let arch = config.cnn.arch.clone().with_input_channels(3);
        let (inner, out) = build_cnn(&arch, &config.cnn.options(), device, rng)?;
        let cnn = Sequential {
            layers: vec![
                Layer::Seq(inner),
                Layer::GlobalAvgPool,
                Layer::Linear(Linear::init(out, 1024, Init::Default, device, rng)),
            ],
        };
        let real_classifier = Linear::init(1024, 1, Init::Default, device, rng);
        let obj_classifier =
            Linear::init(1024, config.vocab.num_objects(), Init::Default, device, rng);
        Ok(Self {
            config: config.clone(),
            discriminator: AcDiscriminator {
                cnn,
                real_classifier,
                obj_classifier,
            },
        })
    }

    /// Crops every object at `boxes` (ground truth in training) and scores the crops.
    ///
    /// # Shapes
    /// `imgs (N, 3, H, W)`, `objs (O,)`, `boxes (O, 4)`, `obj_to_img (O,)` →
    /// real scores `(O, 1)` and the AC cross-entropy `(1,)`.
    pub fn forward(
        &mut self,
        imgs: Tensor<4>,
        objs: Tensor<1, Int>,
        boxes: &[[f32; 4]],
        obj_to_img: Tensor<1, Int>,
    ) -> (Tensor<2>, Tensor<1>) {
        let s = self.config.object_size;
        let crops = crop_bbox_batch(imgs, boxes, obj_to_img, s, s);
        self.forward_crops(crops, objs)
    }

    /// `AcDiscriminator.forward` on ready crops `(O, 3, S, S)` with labels `(O,)`.
    pub fn forward_crops(
        &mut self,
        crops: Tensor<4>,
        objs: Tensor<1, Int>,
    ) -> (Tensor<2>, Tensor<1>) {
        let d = &mut self.discriminator;
        let vecs = d
            .cnn
            .forward_map(crops.clone())
            .reshape([crops.dims()[0], 1024]);
        let real_scores = d.real_classifier.forward(vecs.clone());
        let obj_scores = d.obj_classifier.forward(vecs);
        (real_scores, cross_entropy(obj_scores, objs))
    }
}
