//! The original's constructor-argument dicts (`model_kwargs`, `d_obj_kwargs`, `d_img_kwargs`):
//! the one place where they are read into the typed configurations of [`crate::model`] and
//! written back, and where a network and its [`NetState`] (kwargs + state dict, as model files
//! and checkpoints hold them) are converted into each other.
//!
//! Reading follows the original's constructors: a missing key takes the class default (not
//! `train.py`'s), `null` counts as missing. The generator's `**kwargs` accepted anything with a
//! printed warning; we keep that only for the four keys old checkpoints are known to carry
//! ([`DEPRECATED_KWARGS`]) and reject any other key, so a renamed key cannot silently fall back
//! to a default.

use crate::io::model_file::NetState;
use crate::model::discriminators::{
    AcCropDiscriminator, AcCropDiscriminatorConfig, DiscriminatorConfig, PatchDiscriminator,
};
use crate::model::generator::{Sg2Im, Sg2ImConfig};
use crate::model::layers::{Activation, CnnArch};
use crate::model::params::{Params, build_and_load, state_map};
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::Device;
use serde_json::{Map, Value, json};

/// Keys of old checkpoints that the original ignores with a warning (§5.1, §19.5).
pub const DEPRECATED_KWARGS: [&str; 4] = [
    "vec_noise_dim",
    "gconv_mode",
    "box_anchor",
    "decouple_obj_predictions",
];

/// The keys `Sg2ImModel.__init__` takes.
const MODEL_KWARGS: [&str; 13] = [
    "vocab",
    "image_size",
    "embedding_dim",
    "gconv_dim",
    "gconv_hidden_dim",
    "gconv_pooling",
    "gconv_num_layers",
    "mlp_normalization",
    "refinement_dims",
    "normalization",
    "activation",
    "mask_size",
    "layout_noise_dim",
];

fn vocab_of(kw: &Map<String, Value>, what: &str) -> Result<Vocab> {
    let v = kw
        .get("vocab")
        .ok_or_else(|| Error::invalid(format!("{what}.vocab: missing")))?;
    let vocab: Vocab = serde_json::from_value(v.clone())
        .map_err(|e| Error::invalid(format!("{what}.vocab: {e}")))?;
    vocab
        .validate()
        .map_err(|m| Error::invalid(format!("{what}.vocab: {m}")))?;
    Ok(vocab)
}

/// Builds a network from `net`'s kwargs (read by `config`) with placeholder weights, then loads
/// its state dict; errors name `what`.
fn rebuild<C, M: Params>(
    net: &NetState,
    device: &Device,
    what: &str,
    config: impl FnOnce(&Value) -> Result<C>,
    init: impl FnOnce(&C, &Device, &mut dyn rand::RngCore) -> Result<M>,
) -> Result<M> {
    let cfg = config(&net.kwargs).map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    build_and_load(&net.state, device, what, |rng| init(&cfg, device, rng))
}

impl Sg2ImConfig {
    /// Reads the original's `model_kwargs` dict (as JSON). Missing keys take the class defaults
    /// of `Sg2ImModel.__init__` (not train.py's); deprecated keys of old checkpoints are ignored
    /// and returned as warnings, as the original prints them; any other key is an error.
    pub fn from_model_kwargs(kw: &Value) -> Result<(Self, Vec<String>)> {
        let obj = kw
            .as_object()
            .ok_or_else(|| Error::invalid("model_kwargs: expected a dict"))?;
        let mut warnings = Vec::new();
        for k in obj.keys() {
            if DEPRECATED_KWARGS.contains(&k.as_str()) {
                warnings.push(format!("ignoring deprecated model_kwargs key {k:?}"));
            } else if !MODEL_KWARGS.contains(&k.as_str()) {
                return Err(Error::invalid(format!(
                    "model_kwargs: unknown key {k:?} (Sg2ImModel takes {})",
                    MODEL_KWARGS.join(", ")
                )));
            }
        }
        let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let usize_of = |name: &str, default: usize| -> Result<usize> {
            match field(name) {
                None => Ok(default),
                Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    Error::invalid(format!(
                        "model_kwargs.{name}: expected a non-negative integer, got {v}"
                    ))
                }),
            }
        };
        let str_of = |name: &str, default: &str| -> Result<String> {
            match field(name) {
                None => Ok(default.to_string()),
                Some(v) => v.as_str().map(str::to_string).ok_or_else(|| {
                    Error::invalid(format!("model_kwargs.{name}: expected a string, got {v}"))
                }),
            }
        };
        let vocab = vocab_of(obj, "model_kwargs")?;
        let image_size = match field("image_size") {
            None => (64, 64),
            Some(Value::Number(n)) => {
                let s = n.as_u64().unwrap_or(0) as usize;
                (s, s)
            }
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(|x| x.as_u64().is_some()) => (
                a[0].as_u64().unwrap_or(0) as usize,
                a[1].as_u64().unwrap_or(0) as usize,
            ),
            Some(v) => {
                return Err(Error::invalid(format!(
                    "model_kwargs.image_size: expected [H, W], got {v}"
                )));
            }
        };
        let refinement_dims = match field("refinement_dims") {
            None => vec![1024, 512, 256, 128, 64],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_u64().map(|v| v as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::invalid("model_kwargs.refinement_dims: expected a list of integers")
                })?,
            Some(v) => {
                return Err(Error::invalid(format!(
                    "model_kwargs.refinement_dims: expected a list, got {v}"
                )));
            }
        };
        let parse_ctx = |name: &str, e: Error| Error::invalid(format!("model_kwargs.{name}: {e}"));
        let cfg = Self {
            vocab,
            image_size,
            embedding_dim: usize_of("embedding_dim", 64)?,
            gconv_dim: usize_of("gconv_dim", 128)?,
            gconv_hidden_dim: usize_of("gconv_hidden_dim", 512)?,
            gconv_pooling: str_of("gconv_pooling", "avg")?
                .parse()
                .map_err(|e| parse_ctx("gconv_pooling", e))?,
            gconv_num_layers: usize_of("gconv_num_layers", 5)?,
            mlp_normalization: str_of("mlp_normalization", "none")?
                .parse()
                .map_err(|e| parse_ctx("mlp_normalization", e))?,
            refinement_dims,
            normalization: str_of("normalization", "batch")?
                .parse()
                .map_err(|e| parse_ctx("normalization", e))?,
            activation: Activation::from_original(&str_of("activation", "leakyrelu-0.2")?)
                .map_err(|e| parse_ctx("activation", e))?,
            mask_size: usize_of("mask_size", 0)?,
            layout_noise_dim: usize_of("layout_noise_dim", 0)?,
        };
        cfg.validate()?;
        Ok((cfg, warnings))
    }

    /// The original's `model_kwargs` dict (tuples as lists), readable by [`Self::from_model_kwargs`].
    pub fn to_model_kwargs(&self) -> Value {
        json!({
            "vocab": serde_json::to_value(&self.vocab).expect("vocab serialises"),
            "image_size": [self.image_size.0, self.image_size.1],
            "embedding_dim": self.embedding_dim,
            "gconv_dim": self.gconv_dim,
            "gconv_hidden_dim": self.gconv_hidden_dim,
            "gconv_pooling": self.gconv_pooling.to_string(),
            "gconv_num_layers": self.gconv_num_layers,
            "mlp_normalization": self.mlp_normalization.to_string(),
            "refinement_dims": self.refinement_dims,
            "normalization": self.normalization.to_string(),
            "activation": self.activation.spelling(),
            "mask_size": if self.mask_size == 0 { Value::Null } else { json!(self.mask_size) },
            "layout_noise_dim": self.layout_noise_dim,
        })
    }
}

impl DiscriminatorConfig {
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

    /// The keys `train.py` writes (no `pooling`: it never passes one), architecture and
    /// activation spelled as they were given.
    fn to_kwargs(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("arch".into(), json!(self.arch.spelling()));
        m.insert(
            "normalization".into(),
            json!(self.normalization.to_string()),
        );
        m.insert("activation".into(), json!(self.activation.spelling()));
        m.insert("padding".into(), json!(self.padding.to_string()));
        m
    }
}

impl PatchDiscriminator {
    /// The original's `d_img_kwargs`.
    pub fn to_kwargs(&self) -> Value {
        Value::Object(self.config.to_kwargs())
    }

    /// Reads `d_img_kwargs` (class defaults: batch norm, leakyrelu-0.2, same padding).
    pub fn config_from_kwargs(kw: &Value) -> Result<DiscriminatorConfig> {
        DiscriminatorConfig::from_kwargs(kw, "d_img_kwargs", "batch", "leakyrelu-0.2")
    }

    /// Rebuilds from `d_img_kwargs` and `d_img_state`.
    pub fn from_net_state(net: &NetState, device: &Device, what: &str) -> Result<Self> {
        rebuild(net, device, what, Self::config_from_kwargs, Self::init)
    }

    pub fn to_net_state(&self) -> NetState {
        NetState {
            kwargs: self.to_kwargs(),
            state: state_map(self),
        }
    }
}

impl AcCropDiscriminator {
    /// The original's `d_obj_kwargs`, keys in `train.py`'s order.
    pub fn to_kwargs(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "vocab".into(),
            serde_json::to_value(&self.config.vocab).expect("vocab serialises"),
        );
        m.extend(self.config.cnn.to_kwargs());
        m.insert("object_size".into(), json!(self.config.object_size));
        Value::Object(m)
    }

    /// Reads `d_obj_kwargs` (class defaults: no norm, "relu" → LeakyReLU(0.01), same padding,
    /// crops of 64).
    pub fn config_from_kwargs(kw: &Value) -> Result<AcCropDiscriminatorConfig> {
        let cnn = DiscriminatorConfig::from_kwargs(kw, "d_obj_kwargs", "none", "relu")?;
        let obj = kw
            .as_object()
            .ok_or_else(|| Error::invalid("d_obj_kwargs: expected a dict"))?;
        let vocab = vocab_of(obj, "d_obj_kwargs")?;
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

    /// Rebuilds from `d_obj_kwargs` and `d_obj_state`.
    pub fn from_net_state(net: &NetState, device: &Device, what: &str) -> Result<Self> {
        rebuild(net, device, what, Self::config_from_kwargs, Self::init)
    }

    pub fn to_net_state(&self) -> NetState {
        NetState {
            kwargs: self.to_kwargs(),
            state: state_map(self),
        }
    }
}

impl Sg2Im {
    /// Rebuilds a generator from its kwargs and state dict (ours or an original checkpoint's),
    /// in eval mode. Returns the warnings the original would print for ignored kwargs.
    pub fn from_net_state(
        net: &NetState,
        device: &Device,
        what: &str,
    ) -> Result<(Self, Vec<String>)> {
        let mut warnings = Vec::new();
        let config = |kw: &Value| {
            let (cfg, w) = Sg2ImConfig::from_model_kwargs(kw)?;
            warnings = w;
            Ok(cfg)
        };
        let mut model = rebuild(net, device, what, config, Self::init)?;
        model.set_training(false);
        Ok((model, warnings))
    }

    /// Kwargs and state dict, for saving.
    pub fn to_net_state(&self) -> NetState {
        NetState {
            kwargs: self.config.to_model_kwargs(),
            state: state_map(self),
        }
    }
}
