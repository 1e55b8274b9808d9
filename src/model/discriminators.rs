//! Discriminators (`discriminators.py`, §8): the patch image discriminator and the object
//! discriminator with auxiliary classifier over bilinear crops of the object boxes.

use crate::io::model_file::NetState;
use crate::model::bilinear::crop_bbox_batch;
use crate::model::layers::{
    Activation, CnnArch, CnnOptions, Conv2d, Init, Layer, Linear, Normalization, Padding, PoolKind,
    Sequential, build_cnn,
};
use crate::model::losses::cross_entropy;
use crate::model::params::{build_and_load, state_map};
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::{Device, Int, Tensor};
use serde_json::{Value, json};

/// CNN options shared by both discriminators (their kwargs minus vocab and crop size).
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

    /// Reads `arch`, `normalization`, `activation`, `padding`, `pooling` from a kwargs dict;
    /// missing keys take the given class defaults.
    fn from_kwargs(kw: &Value, what: &str, default_norm: &str, default_act: &str) -> Result<Self> {
        let get = |k: &str, d: &str| -> Result<String> {
            match kw.get(k) {
                None | Some(Value::Null) => Ok(d.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Array(a)) if k == "arch" => Ok(a
                    .iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join(",")),
                Some(v) => Err(Error::invalid(format!(
                    "{what}.{k}: expected a string, got {v}"
                ))),
            }
        };
        let ctx = |k: &'static str| move |e: Error| Error::invalid(format!("{what}.{k}: {e}"));
        let arch = kw
            .get("arch")
            .ok_or_else(|| Error::invalid(format!("{what}.arch: missing")))
            .and(get("arch", ""))?;
        Ok(Self {
            arch: CnnArch::parse(&arch).map_err(ctx("arch"))?,
            normalization: get("normalization", default_norm)?
                .parse()
                .map_err(ctx("normalization"))?,
            activation: Activation::from_original(&get("activation", default_act)?)
                .map_err(ctx("activation"))?,
            padding: get("padding", "same")?.parse().map_err(ctx("padding"))?,
            pooling: get("pooling", "avg")?.parse().map_err(ctx("pooling"))?,
        })
    }

    fn to_kwargs(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("arch".into(), json!(self.arch.to_string()));
        m.insert(
            "normalization".into(),
            json!(self.normalization.to_string()),
        );
        m.insert("activation".into(), json!(self.activation.spelling()));
        m.insert("padding".into(), json!(self.padding.to_string()));
        m
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

    /// The original's `d_img_kwargs`.
    pub fn to_kwargs(&self) -> Value {
        Value::Object(self.config.to_kwargs())
    }

    /// Reads `d_img_kwargs` (class defaults: batch norm, leakyrelu-0.2, same padding).
    pub fn config_from_kwargs(kw: &Value) -> Result<DiscriminatorConfig> {
        DiscriminatorConfig::from_kwargs(kw, "d_img_kwargs", "batch", "leakyrelu-0.2")
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

    /// The original's `d_obj_kwargs` (with the vocabulary).
    pub fn to_kwargs(&self) -> Value {
        let mut m = self.config.cnn.to_kwargs();
        m.insert(
            "vocab".into(),
            serde_json::to_value(&self.config.vocab).expect("vocab serialises"),
        );
        m.insert("object_size".into(), json!(self.config.object_size));
        Value::Object(m)
    }

    /// Reads `d_obj_kwargs` (class defaults: no norm, "relu" → LeakyReLU(0.01), same padding,
    /// crops of 64).
    pub fn config_from_kwargs(kw: &Value) -> Result<AcCropDiscriminatorConfig> {
        let cnn = DiscriminatorConfig::from_kwargs(kw, "d_obj_kwargs", "none", "relu")?;
        let vocab: Vocab = serde_json::from_value(
            kw.get("vocab")
                .cloned()
                .ok_or_else(|| Error::invalid("d_obj_kwargs.vocab: missing"))?,
        )
        .map_err(|e| Error::invalid(format!("d_obj_kwargs.vocab: {e}")))?;
        let object_size = match kw.get("object_size") {
            None | Some(Value::Null) => 64,
            Some(v) => v.as_u64().ok_or_else(|| {
                Error::invalid(format!(
                    "d_obj_kwargs.object_size: expected an integer, got {v}"
                ))
            })? as usize,
        };
        Ok(AcCropDiscriminatorConfig {
            vocab,
            cnn,
            object_size,
        })
    }
}

impl PatchDiscriminator {
    /// Rebuilds from `d_img_kwargs` and `d_img_state`.
    pub fn from_net_state(net: &NetState, device: &Device, what: &str) -> Result<Self> {
        let cfg = Self::config_from_kwargs(&net.kwargs)
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        build_and_load(&net.state, device, what, |rng| {
            Self::init(&cfg, device, rng)
        })
    }

    pub fn to_net_state(&self) -> NetState {
        NetState {
            kwargs: self.to_kwargs(),
            state: state_map(self),
        }
    }
}

impl AcCropDiscriminator {
    /// Rebuilds from `d_obj_kwargs` and `d_obj_state`.
    pub fn from_net_state(net: &NetState, device: &Device, what: &str) -> Result<Self> {
        let cfg = Self::config_from_kwargs(&net.kwargs)
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        build_and_load(&net.state, device, what, |rng| {
            Self::init(&cfg, device, rng)
        })
    }

    pub fn to_net_state(&self) -> NetState {
        NetState {
            kwargs: self.to_kwargs(),
            state: state_map(self),
        }
    }
}
