//! Training checkpoints (§18.6, §18.7) in our own format, plus `strip-checkpoint` and
//! `print-args` (§19.3, §19.4).
//!
//! # Format
//! A checkpoint is one safetensors file. `<output_dir>/<checkpoint_name>_with_model.safetensors`
//! is a complete **model file** (`sg2im::io::model_file`: `format` = `sg2im-rs/model/1`, the
//! generator under `model.*`, the discriminators under `d_obj.*` / `d_img.*`, metadata
//! `model_kwargs`, `d_obj_kwargs`, `d_img_kwargs`, `args`), so `sg2im run` reads it directly, and
//! it adds the training state:
//! * tensors `optim_state.<param>.exp_avg|exp_avg_sq` (generator Adam), likewise
//!   `d_obj_optim_state.*`, `d_img_optim_state.*`;
//! * tensors `train_samples.<i>.<kind>` / `val_samples.<i>.<kind>` (uint8 `(n, 3, H, W)`, kinds
//!   `gt_img`, `gt_box_gt_mask`, `gt_box_pred_mask`, `pred_box_pred_mask`) and
//!   `train_batch_data.<i>.<field>` / `val_batch_data.<i>.<field>` (one entry per checkpoint);
//! * metadata `sg2im_checkpoint`: JSON with every other key of the original's checkpoint
//!   dictionary (`vocab`, `losses_ts`, `losses`, `d_losses`, `checkpoint_ts`, `train_iou`,
//!   `val_iou`, `val_losses`, `norm_d`, `norm_g`, `counters`, `best_t`, the `*_best_state`
//!   placeholders, the optimizers' step counts) and what exact resume needs beyond it: the seed
//!   and the loader position (`counters.epoch_batches_done`).
//!
//! `<checkpoint_name>_no_model.safetensors` holds the same minus the network and optimizer
//! tensors (`format` = [`NO_MODEL_FORMAT`]).
//!
//! Both files are written atomically (temporary file, fsync, rename): a crash or a kill while
//! writing leaves the previous checkpoint as it was.

use crate::io::atomic::write_atomic;
use crate::io::model_file::{self, FORMAT, ModelBundle, NetState};
use crate::io::safetensors_io::{RawTensor, parse_safetensors};
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::TensorData;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `format` of a `_no_model` file.
pub const NO_MODEL_FORMAT: &str = "sg2im-rs/checkpoint-no-model/1";
/// Metadata key holding the checkpoint dictionary.
pub const CHECKPOINT_KEY: &str = "sg2im_checkpoint";
/// File extension of our checkpoints.
pub const EXTENSION: &str = "safetensors";

/// Test hook: when this environment variable is set, the process aborts half-way through
/// writing the `_with_model` file, as a kill would (see `tests/train.rs`).
pub const ABORT_HOOK_ENV: &str = "SG2IM_TEST_ABORT_DURING_CHECKPOINT_WRITE";

/// The four sample kinds of `check_model` (§18.8), in the original's order.
pub const SAMPLE_KINDS: [&str; 4] = [
    "gt_img",
    "gt_box_gt_mask",
    "gt_box_pred_mask",
    "pred_box_pred_mask",
];

/// `(n, 3, H, W)` uint8 images.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub n: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

/// The samples of one `check_model` call: kind → images.
pub type Samples = IndexMap<String, Images>;

/// `batch_data` of `check_model` (§18.8 item 4): the last batch and its predictions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchData {
    pub objs: Vec<i64>,
    pub boxes_gt: Vec<[f32; 4]>,
    /// `(O, M, M)` as 0/1 floats, `None` without masks (VG).
    pub masks_gt: Option<Vec<f32>>,
    pub triples: Vec<[i64; 3]>,
    pub obj_to_img: Vec<i64>,
    pub triple_to_img: Vec<i64>,
    pub boxes_pred: Vec<[f32; 4]>,
    pub masks_pred: Option<Vec<f32>>,
    pub mask_size: usize,
}

/// Loss and IoU histories (the list-valued keys of the original's dictionary).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    pub losses_ts: Vec<u64>,
    pub losses: IndexMap<String, Vec<f64>>,
    pub d_losses: IndexMap<String, Vec<f64>>,
    pub checkpoint_ts: Vec<u64>,
    pub train_iou: Vec<f64>,
    pub val_iou: Vec<f64>,
    pub val_losses: IndexMap<String, Vec<f64>>,
    /// Never filled, as in the original.
    pub norm_d: Vec<f64>,
    pub norm_g: Vec<f64>,
    pub best_t: Vec<u64>,
}

/// `counters` plus our loader position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    pub t: u64,
    pub epoch: u64,
    /// Batches of epoch `epoch` already consumed (sg2im-rs: resume continues the epoch there;
    /// the original started a new epoch on resume).
    #[serde(default)]
    pub epoch_batches_done: usize,
}

/// An Adam state as saved: step counts and hyper-parameters (JSON) and moment tensors.
#[derive(Debug, Clone, Default)]
pub struct OptimState {
    pub meta: Value,
    pub tensors: IndexMap<String, TensorData>,
}

/// A network with its optimizer.
#[derive(Debug, Clone)]
pub struct NetWithOptim {
    pub net: NetState,
    pub optim: OptimState,
}

/// The weights part, absent from `_no_model` files.
#[derive(Debug, Clone)]
pub struct Weights {
    pub generator: NetWithOptim,
    pub d_obj: Option<NetWithOptim>,
    pub d_img: Option<NetWithOptim>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The arguments of the run that created the checkpoint (kept across resumes, as the original).
    pub args: Value,
    pub vocab: Vocab,
    pub model_kwargs: Value,
    /// `{}` when the discriminator does not exist.
    pub d_obj_kwargs: Value,
    pub d_img_kwargs: Value,
    pub history: History,
    pub counters: Counters,
    /// The seed every random stream of the run derives from.
    pub seed: u64,
    pub train_samples: Vec<Samples>,
    pub val_samples: Vec<Samples>,
    pub train_batch_data: Vec<BatchData>,
    pub val_batch_data: Vec<BatchData>,
    pub weights: Option<Weights>,
}

/// `<output_dir>/<name>_with_model.safetensors` and `..._no_model.safetensors`.
pub fn checkpoint_paths(output_dir: impl AsRef<Path>, name: &str) -> (PathBuf, PathBuf) {
    let dir = output_dir.as_ref();
    (
        dir.join(format!("{name}_with_model.{EXTENSION}")),
        dir.join(format!("{name}_no_model.{EXTENSION}")),
    )
}

fn is_empty_kwargs(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|o| o.is_empty())
}

impl Checkpoint {
    /// The JSON stored under [`CHECKPOINT_KEY`].
    fn meta_json(&self) -> Value {
        let optim = |f: fn(&Weights) -> Option<&NetWithOptim>| -> Value {
            self.weights
                .as_ref()
                .and_then(f)
                .map_or(Value::Null, |n| n.optim.meta.clone())
        };
        json!({
            "args": self.args,
            "vocab": self.vocab,
            "model_kwargs": self.model_kwargs,
            "d_obj_kwargs": self.d_obj_kwargs,
            "d_img_kwargs": self.d_img_kwargs,
            "losses_ts": self.history.losses_ts,
            "losses": self.history.losses,
            "d_losses": self.history.d_losses,
            "checkpoint_ts": self.history.checkpoint_ts,
            "train_iou": self.history.train_iou,
            "val_iou": self.history.val_iou,
            "val_losses": self.history.val_losses,
            "norm_d": self.history.norm_d,
            "norm_g": self.history.norm_g,
            "counters": self.counters,
            "model_best_state": Value::Null,
            "d_obj_best_state": Value::Null,
            "d_img_best_state": Value::Null,
            "best_t": self.history.best_t,
            "optim_state": optim(|w| Some(&w.generator)),
            "d_obj_optim_state": optim(|w| w.d_obj.as_ref()),
            "d_img_optim_state": optim(|w| w.d_img.as_ref()),
            "num_train_checks": self.train_samples.len(),
            "num_val_checks": self.val_samples.len(),
            "rng": { "seed": self.seed },
        })
    }

    fn sample_tensors(&self, out: &mut IndexMap<String, RawTensor>) {
        for (split, sets) in [("train", &self.train_samples), ("val", &self.val_samples)] {
            for (i, set) in sets.iter().enumerate() {
                for (kind, im) in set {
                    out.insert(
                        format!("{split}_samples.{i}.{kind}"),
                        RawTensor::u8(vec![im.n, 3, im.height, im.width], &im.data),
                    );
                }
            }
        }
        for (split, sets) in [
            ("train", &self.train_batch_data),
            ("val", &self.val_batch_data),
        ] {
            for (i, bd) in sets.iter().enumerate() {
                let p = format!("{split}_batch_data.{i}");
                let o = bd.objs.len();
                let flat = |b: &[[f32; 4]]| b.iter().flatten().copied().collect::<Vec<f32>>();
                out.insert(format!("{p}.objs"), RawTensor::i64(vec![o], &bd.objs));
                out.insert(
                    format!("{p}.boxes_gt"),
                    RawTensor::f32(vec![o, 4], &flat(&bd.boxes_gt)),
                );
                out.insert(
                    format!("{p}.boxes_pred"),
                    RawTensor::f32(vec![o, 4], &flat(&bd.boxes_pred)),
                );
                let tr: Vec<i64> = bd.triples.iter().flatten().copied().collect();
                out.insert(
                    format!("{p}.triples"),
                    RawTensor::i64(vec![bd.triples.len(), 3], &tr),
                );
                out.insert(
                    format!("{p}.obj_to_img"),
                    RawTensor::i64(vec![o], &bd.obj_to_img),
                );
                out.insert(
                    format!("{p}.triple_to_img"),
                    RawTensor::i64(vec![bd.triple_to_img.len()], &bd.triple_to_img),
                );
                let m = bd.mask_size;
                if let Some(mg) = &bd.masks_gt {
                    out.insert(format!("{p}.masks_gt"), RawTensor::f32(vec![o, m, m], mg));
                }
                if let Some(mp) = &bd.masks_pred {
                    out.insert(format!("{p}.masks_pred"), RawTensor::f32(vec![o, m, m], mp));
                }
            }
        }
    }

    /// Serialises the `_with_model` (`with_model = true`, needs `weights`) or `_no_model` file.
    pub fn to_bytes(&self, with_model: bool) -> Result<Vec<u8>> {
        let mut tensors: IndexMap<String, RawTensor> = IndexMap::new();
        let mut meta: HashMap<String, String> = HashMap::new();
        if with_model {
            let w = self.weights.as_ref().ok_or_else(|| {
                Error::invalid("checkpoint without weights cannot be saved _with_model")
            })?;
            meta.insert("format".into(), FORMAT.into());
            meta.insert("model_kwargs".into(), w.generator.net.kwargs.to_string());
            let mut add_net = |prefix: &str, optim_prefix: &str, n: &NetWithOptim| {
                for (k, v) in &n.net.state {
                    tensors.insert(format!("{prefix}.{k}"), RawTensor::from_data(v));
                }
                for (k, v) in &n.optim.tensors {
                    tensors.insert(format!("{optim_prefix}.{k}"), RawTensor::from_data(v));
                }
            };
            add_net("model", "optim_state", &w.generator);
            if let Some(d) = &w.d_obj {
                add_net("d_obj", "d_obj_optim_state", d);
                meta.insert("d_obj_kwargs".into(), d.net.kwargs.to_string());
            }
            if let Some(d) = &w.d_img {
                add_net("d_img", "d_img_optim_state", d);
                meta.insert("d_img_kwargs".into(), d.net.kwargs.to_string());
            }
        } else {
            meta.insert("format".into(), NO_MODEL_FORMAT.into());
            meta.insert("model_kwargs".into(), self.model_kwargs.to_string());
        }
        meta.insert("args".into(), self.args.to_string());
        meta.insert(CHECKPOINT_KEY.into(), self.meta_json().to_string());
        self.sample_tensors(&mut tensors);
        let views = tensors
            .iter()
            .map(|(k, t)| {
                safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| Error::invalid(format!("checkpoint tensor {k:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, Some(meta))
            .map_err(|e| Error::invalid(format!("checkpoint: {e}")))
    }

    /// Writes both files atomically, `_with_model` first. Returns their paths.
    pub fn save(&self, output_dir: impl AsRef<Path>, name: &str) -> Result<(PathBuf, PathBuf)> {
        let (with_path, no_path) = checkpoint_paths(&output_dir, name);
        let bytes = self.to_bytes(true)?;
        let abort = std::env::var_os(ABORT_HOOK_ENV).is_some();
        write_atomic(&with_path, |w| {
            let half = bytes.len() / 2;
            w.write_all(&bytes[..half])?;
            if abort {
                w.flush()?;
                eprintln!(
                    "{ABORT_HOOK_ENV}: aborting half-way through {}",
                    with_path.display()
                );
                std::process::abort();
            }
            w.write_all(&bytes[half..])
        })?;
        drop(bytes);
        let bytes = self.to_bytes(false)?;
        write_atomic(&no_path, |w| w.write_all(&bytes))?;
        Ok((with_path, no_path))
    }

    /// Reads a checkpoint file (either kind). `_no_model` files give `weights = None`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        let (tensors, meta) = parse_safetensors(bytes, what)?;
        let raw = meta.get(CHECKPOINT_KEY).ok_or_else(|| {
            Error::invalid(format!(
                "{what}: not an sg2im-rs training checkpoint (no {CHECKPOINT_KEY:?} metadata; a model file cannot be resumed from)"
            ))
        })?;
        let m: Value = serde_json::from_str(raw)
            .map_err(|e| Error::invalid(format!("{what}: metadata {CHECKPOINT_KEY:?}: {e}")))?;
        let field = |k: &str| -> Result<Value> {
            m.get(k)
                .cloned()
                .ok_or_else(|| Error::invalid(format!("{what}: checkpoint key {k:?} missing")))
        };
        let history = History {
            losses_ts: typed(field("losses_ts")?, what, "losses_ts")?,
            losses: typed(field("losses")?, what, "losses")?,
            d_losses: typed(field("d_losses")?, what, "d_losses")?,
            checkpoint_ts: typed(field("checkpoint_ts")?, what, "checkpoint_ts")?,
            train_iou: typed(field("train_iou")?, what, "train_iou")?,
            val_iou: typed(field("val_iou")?, what, "val_iou")?,
            val_losses: typed(field("val_losses")?, what, "val_losses")?,
            norm_d: typed(field("norm_d")?, what, "norm_d")?,
            norm_g: typed(field("norm_g")?, what, "norm_g")?,
            best_t: typed(field("best_t")?, what, "best_t")?,
        };
        let seed = m["rng"]["seed"].as_u64().ok_or_else(|| {
            Error::invalid(format!("{what}: checkpoint key \"rng.seed\" missing"))
        })?;
        let n_train = m["num_train_checks"].as_u64().unwrap_or(0) as usize;
        let n_val = m["num_val_checks"].as_u64().unwrap_or(0) as usize;
        let weights = if meta.get("format").map(String::as_str) == Some(FORMAT) {
            Some(read_weights(&tensors, &meta, &m, what)?)
        } else {
            None
        };
        Ok(Self {
            args: field("args")?,
            vocab: typed(field("vocab")?, what, "vocab")?,
            model_kwargs: field("model_kwargs")?,
            d_obj_kwargs: field("d_obj_kwargs")?,
            d_img_kwargs: field("d_img_kwargs")?,
            history,
            counters: typed(field("counters")?, what, "counters")?,
            seed,
            train_samples: read_samples(&tensors, "train", n_train, what)?,
            val_samples: read_samples(&tensors, "val", n_val, what)?,
            train_batch_data: read_batch_data(&tensors, "train", n_train),
            val_batch_data: read_batch_data(&tensors, "val", n_val),
            weights,
        })
    }
}

/// A checkpoint key's JSON as `T`, the key named in errors.
fn typed<T: serde::de::DeserializeOwned>(v: Value, what: &str, k: &str) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| Error::invalid(format!("{what}: checkpoint key {k:?}: {e}")))
}

/// `<split>_samples.<i>.<kind>` for the `n` checks of a split.
fn read_samples(
    tensors: &IndexMap<String, RawTensor>,
    split: &str,
    n: usize,
    what: &str,
) -> Result<Vec<Samples>> {
    (0..n)
        .map(|i| {
            let mut set = Samples::new();
            for kind in SAMPLE_KINDS {
                if let Some(t) = tensors.get(&format!("{split}_samples.{i}.{kind}")) {
                    let [n, _, h, w] = <[usize; 4]>::try_from(t.shape.clone()).map_err(|_| {
                        Error::invalid(format!(
                            "{what}: {split}_samples.{i}.{kind}: expected (n, 3, H, W)"
                        ))
                    })?;
                    set.insert(
                        kind.to_string(),
                        Images {
                            n,
                            height: h,
                            width: w,
                            data: t.bytes.clone(),
                        },
                    );
                }
            }
            Ok(set)
        })
        .collect()
}

/// `<split>_batch_data.<i>.<field>` for the `n` checks of a split (absent fields empty).
fn read_batch_data(tensors: &IndexMap<String, RawTensor>, split: &str, n: usize) -> Vec<BatchData> {
    let tensor = |k: &str| tensors.get(k);
    (0..n)
        .map(|i| {
            let p = format!("{split}_batch_data.{i}");
            let get_i64 = |f: &str| {
                tensor(&format!("{p}.{f}"))
                    .map(RawTensor::to_i64)
                    .unwrap_or_default()
            };
            let get_f32 = |f: &str| tensor(&format!("{p}.{f}")).map(RawTensor::to_f32);
            let boxes = |v: Option<Vec<f32>>| {
                v.unwrap_or_default()
                    .chunks_exact(4)
                    .map(|c| [c[0], c[1], c[2], c[3]])
                    .collect::<Vec<_>>()
            };
            let mask_size = tensor(&format!("{p}.masks_gt"))
                .or_else(|| tensor(&format!("{p}.masks_pred")))
                .and_then(|t| t.shape.get(1).copied())
                .unwrap_or(0);
            BatchData {
                objs: get_i64("objs"),
                boxes_gt: boxes(get_f32("boxes_gt")),
                masks_gt: get_f32("masks_gt"),
                triples: get_i64("triples")
                    .chunks_exact(3)
                    .map(|c| [c[0], c[1], c[2]])
                    .collect(),
                obj_to_img: get_i64("obj_to_img"),
                triple_to_img: get_i64("triple_to_img"),
                boxes_pred: boxes(get_f32("boxes_pred")),
                masks_pred: get_f32("masks_pred"),
                mask_size,
            }
        })
        .collect()
}

/// The networks and optimizers of a `_with_model` file: tensors under `model.` /
/// `optim_state.` (and the discriminators'), kwargs from the file metadata, optimizer step
/// counts from the checkpoint dictionary `m`.
fn read_weights(
    tensors: &IndexMap<String, RawTensor>,
    meta: &HashMap<String, String>,
    m: &Value,
    what: &str,
) -> Result<Weights> {
    let prefixed = |prefix: &str| -> IndexMap<String, TensorData> {
        let p = format!("{prefix}.");
        tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix(&p)
                    .map(|rest| (rest.to_string(), raw_to_data(t)))
            })
            .collect()
    };
    let net = |prefix: &str, optim_prefix: &str, kw_key: &str| -> Result<Option<NetWithOptim>> {
        let Some(kw) = meta.get(kw_key) else {
            return Ok(None);
        };
        let kwargs: Value = serde_json::from_str(kw)
            .map_err(|e| Error::invalid(format!("{what}: metadata {kw_key:?}: {e}")))?;
        Ok(Some(NetWithOptim {
            net: NetState {
                kwargs,
                state: prefixed(prefix),
            },
            optim: OptimState {
                meta: m.get(optim_prefix).cloned().unwrap_or(Value::Null),
                tensors: prefixed(optim_prefix),
            },
        }))
    };
    let generator = net("model", "optim_state", "model_kwargs")?
        .ok_or_else(|| Error::invalid(format!("{what}: metadata \"model_kwargs\" missing")))?;
    Ok(Weights {
        generator,
        d_obj: net("d_obj", "d_obj_optim_state", "d_obj_kwargs")?,
        d_img: net("d_img", "d_img_optim_state", "d_img_kwargs")?,
    })
}

fn raw_to_data(t: &RawTensor) -> TensorData {
    match t.dtype {
        safetensors::Dtype::I64 | safetensors::Dtype::I32 => {
            TensorData::new(t.to_i64(), t.shape.clone())
        }
        _ => t.to_data_f32(),
    }
}

/// Reads only the metadata of a safetensors file (the header), without the tensor bytes.
pub fn read_safetensors_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(Error::invalid(format!(
            "{}: not a safetensors file (header length {n})",
            path.display()
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            Error::invalid(format!(
                "{}: truncated safetensors file: the header should have {n} bytes after the \
                 8-byte length, the file has only {}",
                path.display(),
                len.saturating_sub(8)
            ))
        }
        _ => Error::io(path, e),
    })?;
    let v: Value = serde_json::from_slice(&header)
        .map_err(|e| Error::invalid(format!("{}: not a safetensors file: {e}", path.display())))?;
    let mut out = HashMap::new();
    if let Some(meta) = v.get("__metadata__").and_then(Value::as_object) {
        for (k, v) in meta {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

fn is_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(n == 9 && head[8] == b'{')
}

/// `print_args.py` (§19.4): the stored training arguments as `(key, value)` in stored order.
/// Reads our checkpoints and model files (header only) and original `.pt` checkpoints.
pub fn stored_args(path: impl AsRef<Path>) -> Result<Vec<(String, Value)>> {
    let path = path.as_ref();
    let args: Value = if is_safetensors(path)? {
        let meta = read_safetensors_metadata(path)?;
        let raw = meta.get("args").ok_or_else(|| {
            Error::invalid(format!(
                "{}: no training arguments stored (metadata \"args\" missing)",
                path.display()
            ))
        })?;
        serde_json::from_str(raw)
            .map_err(|e| Error::invalid(format!("{}: metadata \"args\": {e}", path.display())))?
    } else {
        model_file::load_torch_checkpoint(path)?
            .args
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}: no training arguments stored (key \"args\" missing)",
                    path.display()
                ))
            })?
    };
    let obj = args.as_object().ok_or_else(|| {
        Error::invalid(format!("{}: \"args\" is not a dictionary", path.display()))
    })?;
    Ok(obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// `strip_checkpoint.py` (§19.3) on one file: keeps the arguments, the generator and its
/// kwargs, and (with `keep_discriminators`) the discriminators; the result is a model file.
/// Reads our checkpoints, our model files and original `.pt` checkpoints.
pub fn strip_checkpoint(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    keep_discriminators: bool,
) -> Result<()> {
    let mut bundle: ModelBundle = model_file::load_any(input.as_ref())?;
    if !keep_discriminators {
        bundle.d_obj = None;
        bundle.d_img = None;
    }
    model_file::save_model_file(output, &bundle)
}

/// `strip_checkpoint.py --input_dir --output_dir`: every checkpoint (`*.safetensors`, `*.pt`)
/// of `input_dir` stripped into `output_dir` under the same name. Returns the files written.
pub fn strip_checkpoint_dir(
    input_dir: impl AsRef<Path>,
    output_dir: impl AsRef<Path>,
    keep_discriminators: bool,
) -> Result<Vec<PathBuf>> {
    let (input_dir, output_dir) = (input_dir.as_ref(), output_dir.as_ref());
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(input_dir)
        .map_err(|e| Error::io(input_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| x == EXTENSION || x == "pt")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("_no_model"))
        })
        .collect();
    inputs.sort();
    std::fs::create_dir_all(output_dir).map_err(|e| Error::io(output_dir, e))?;
    let mut written = Vec::new();
    for input in inputs {
        let name = input
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let mut out = output_dir.join(name);
        out.set_extension(EXTENSION);
        strip_checkpoint(&input, &out, keep_discriminators)?;
        written.push(out);
    }
    Ok(written)
}

/// Whether a kwargs value means "no such network" (`{}` in the original).
pub fn kwargs_absent(v: &Value) -> bool {
    is_empty_kwargs(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocab {
        let mut object_name_to_idx = IndexMap::new();
        object_name_to_idx.insert("__image__".to_string(), 0);
        object_name_to_idx.insert("cat".to_string(), 1);
        let mut pred_name_to_idx = IndexMap::new();
        pred_name_to_idx.insert("__in_image__".to_string(), 0);
        Vocab {
            object_name_to_idx,
            object_idx_to_name: vec!["__image__".into(), "cat".into()],
            attribute_name_to_idx: None,
            attribute_idx_to_name: None,
            pred_name_to_idx,
            pred_idx_to_name: vec!["__in_image__".into()],
        }
    }

    pub(crate) fn sample_checkpoint(t: u64) -> Checkpoint {
        let mut history = History::default();
        history.losses_ts.push(t);
        history.losses.insert("L1_pixel_loss".into(), vec![0.5]);
        history.d_losses.insert("d_img_gan_loss".into(), vec![1.25]);
        let mut set = Samples::new();
        set.insert(
            "gt_img".into(),
            Images {
                n: 1,
                height: 2,
                width: 2,
                data: (0..12).collect(),
            },
        );
        let net = NetState {
            kwargs: json!({"vocab": vocab(), "image_size": [8, 8]}),
            state: [("w".to_string(), TensorData::new(vec![1.0f32, 2.0], [2]))]
                .into_iter()
                .collect(),
        };
        let optim = OptimState {
            meta: json!({"config": {"lr": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, "steps": {"w": 3}}),
            tensors: [
                (
                    "w.exp_avg".to_string(),
                    TensorData::new(vec![0.1f32, 0.2], [2]),
                ),
                (
                    "w.exp_avg_sq".to_string(),
                    TensorData::new(vec![0.01f32, 0.02], [2]),
                ),
            ]
            .into_iter()
            .collect(),
        };
        Checkpoint {
            args: json!({"batch_size": 4, "image_size": [8, 8], "d_clip": null}),
            vocab: vocab(),
            model_kwargs: net.kwargs.clone(),
            d_obj_kwargs: json!({}),
            d_img_kwargs: json!({}),
            history,
            counters: Counters {
                t,
                epoch: 2,
                epoch_batches_done: 3,
            },
            seed: 42,
            train_samples: vec![set.clone()],
            val_samples: vec![set],
            train_batch_data: vec![BatchData {
                objs: vec![1, 0],
                boxes_gt: vec![[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]],
                masks_gt: Some(vec![1.0; 8]),
                triples: vec![[0, 0, 1]],
                obj_to_img: vec![0, 0],
                triple_to_img: vec![0],
                boxes_pred: vec![[0.1, 0.1, 0.4, 0.4], [0.0, 0.0, 0.9, 0.9]],
                masks_pred: Some(vec![0.5; 8]),
                mask_size: 2,
            }],
            val_batch_data: vec![BatchData::default()],
            weights: Some(Weights {
                generator: NetWithOptim { net, optim },
                d_obj: None,
                d_img: None,
            }),
        }
    }

    #[test]
    fn round_trip_both_files_and_the_model_view() {
        let dir = std::env::temp_dir().join(format!("sg2im-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = sample_checkpoint(10);
        let (with, no) = ck.save(&dir, "checkpoint").unwrap();
        assert!(with.ends_with("checkpoint_with_model.safetensors"));
        let back = Checkpoint::load(&with).unwrap();
        assert_eq!(back.history, ck.history);
        assert_eq!(back.counters, ck.counters);
        assert_eq!(back.seed, 42);
        assert_eq!(back.train_samples, ck.train_samples);
        assert_eq!(back.train_batch_data, ck.train_batch_data);
        assert_eq!(back.args, ck.args);
        let w = back.weights.unwrap();
        assert_eq!(
            w.generator.net.state["w"],
            TensorData::new(vec![1.0f32, 2.0], [2])
        );
        assert_eq!(
            w.generator.optim.tensors["w.exp_avg_sq"],
            TensorData::new(vec![0.01f32, 0.02], [2])
        );
        assert_eq!(w.generator.optim.meta["steps"]["w"], 3);
        assert!(w.d_obj.is_none());
        // The no_model file has the histories but no weights.
        let nm = Checkpoint::load(&no).unwrap();
        assert!(nm.weights.is_none());
        assert_eq!(nm.history, ck.history);
        // The with_model file is a model file.
        let bundle = model_file::load_model_file(&with).unwrap();
        assert_eq!(bundle.generator.state.len(), 1);
        assert_eq!(bundle.args.unwrap()["batch_size"], 4);
        // print-args reads the header only.
        let args = stored_args(&with).unwrap();
        assert_eq!(args[0].0, "batch_size");
        // strip → a model file without the training state.
        let stripped = dir.join("stripped.safetensors");
        strip_checkpoint(&with, &stripped, true).unwrap();
        assert!(model_file::load_model_file(&stripped).is_ok());
        let err = Checkpoint::load(&stripped).unwrap_err().to_string();
        assert!(err.contains("not an sg2im-rs training checkpoint"), "{err}");
        assert!(
            std::fs::metadata(&stripped).unwrap().len() < std::fs::metadata(&with).unwrap().len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
