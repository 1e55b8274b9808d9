//! Every flag of the original `scripts/train.py` (§18.1), with the same names and the same code
//! defaults, plus a few of ours (marked "sg2im-rs" in the help).
//!
//! Spelling: every `--foo_bar` flag also accepts `--foo-bar`. Booleans take `1`/`0`/`true`/`false`
//! (the original took only `1`/`0`). Tuples are comma-separated. Where the original's TRAINING.md
//! and its code disagree, the code's behaviour is what runs, and the help text says so.

use crate::data::DatasetKind;
use crate::device::DeviceChoice;
use crate::model::layers::{Activation, CnnArch, Normalization, Padding};
use crate::model::losses::GanLossType;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `bool_flag` of the original (§14.1), widened to also accept `true`/`false`.
pub fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("expected 1, 0, true or false, got {s:?}")),
    }
}

/// `int_tuple` (§14.1): comma-separated non-negative integers, at least one.
pub fn parse_int_tuple(s: &str) -> std::result::Result<Vec<usize>, String> {
    let values: std::result::Result<Vec<usize>, _> =
        s.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match values {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!(
            "expected comma-separated non-negative integers like 64,64, got {s:?}"
        )),
    }
}

/// `(H, W)` for `--image_size`: exactly two integers (the model unpacks two).
pub fn parse_image_size(s: &str) -> std::result::Result<(usize, usize), String> {
    match parse_int_tuple(s)?.as_slice() {
        &[h, w] if h > 0 && w > 0 => Ok((h, w)),
        _ => Err(format!(
            "expected two positive integers H,W like 64,64, got {s:?}"
        )),
    }
}

/// `str_tuple` (§14.1): split on commas, no stripping (as the original).
pub fn parse_str_tuple(s: &str) -> std::result::Result<Vec<String>, String> {
    Ok(s.split(',').map(str::to_string).collect())
}

fn parse_positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("expected a positive integer, got {s:?}")),
    }
}

fn parse_finite(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("expected a finite number, got {s:?}")),
    }
}

/// `--mlp_normalization`: a [`Normalization`] other than instance norm, which the original's
/// MLP builder does not have.
fn parse_mlp_norm(s: &str) -> Result<Normalization> {
    match s.parse()? {
        Normalization::Instance => Err(Error::invalid(format!(
            "invalid mlp normalization {s:?}: expected batch or none"
        ))),
        norm => Ok(norm),
    }
}

fn parse_device(s: &str) -> std::result::Result<DeviceChoice, String> {
    s.parse::<DeviceChoice>().map_err(|e| e.to_string())
}

fn default_output_dir() -> String {
    // The original's default is os.getcwd(); "." resolves to the same directory.
    ".".to_string()
}

/// The flags of `sg2im train`. Field names are the original's flag names (and the keys of the
/// `args` dictionary stored in checkpoints).
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[command(
    next_help_heading = "Training (the original's train.py flags)",
    args_override_self = true
)]
pub struct TrainArgs {
    /// Dataset: coco, vg, or shapes (sg2im-rs: built-in synthetic scenes, no download).
    #[arg(long = "dataset", default_value = "coco")]
    pub dataset: DatasetKind,
    #[arg(long = "batch_size", visible_alias = "batch-size", default_value = "32", value_parser = parse_positive)]
    pub batch_size: usize,
    /// Training stops after this many iterations (sg2im-rs; the original finishes the epoch in
    /// which t reaches it: --finish_epoch 1). The last iteration is always checkpointed.
    #[arg(
        long = "num_iterations",
        alias = "num-iterations",
        default_value = "1000000"
    )]
    pub num_iterations: u64,
    /// Used for all three Adam optimisers (betas 0.9, 0.999, eps 1e-8 added to sqrt(v) as in PyTorch 0.4).
    #[arg(long = "learning_rate", alias = "learning-rate", default_value = "1e-4", value_parser = parse_finite)]
    pub learning_rate: f64,
    /// Generator in eval mode (and a fresh Adam) after this many iterations; 0 = from the start,
    /// negative = never. (TRAINING.md gives no value; the code default is 100000.)
    #[arg(
        long = "eval_mode_after",
        alias = "eval-mode-after",
        default_value = "100000",
        allow_negative_numbers = true
    )]
    pub eval_mode_after: i64,
    /// H,W of the generated images.
    #[arg(long = "image_size", alias = "image-size", default_value = "64,64", value_parser = parse_image_size)]
    pub image_size: (usize, usize),
    /// Cap on training images (default: all).
    #[arg(long = "num_train_samples", alias = "num-train-samples")]
    pub num_train_samples: Option<usize>,
    /// COCO: caps the val dataset; all datasets: images evaluated by check_model.
    #[arg(
        long = "num_val_samples",
        alias = "num-val-samples",
        default_value = "1024"
    )]
    pub num_val_samples: usize,
    #[arg(long = "shuffle_val", alias = "shuffle-val", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub shuffle_val: bool,
    /// Background threads preparing batches (0 = load in the training thread).
    #[arg(
        long = "loader_num_workers",
        alias = "loader-num-workers",
        default_value = "4"
    )]
    pub loader_num_workers: usize,
    #[arg(long = "include_relationships", alias = "include-relationships", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub include_relationships: bool,

    // Visual Genome.
    #[arg(
        long = "vg_image_dir",
        alias = "vg-image-dir",
        default_value = "datasets/vg/images"
    )]
    pub vg_image_dir: PathBuf,
    #[arg(
        long = "train_h5",
        alias = "train-h5",
        default_value = "datasets/vg/train.h5"
    )]
    pub train_h5: PathBuf,
    #[arg(
        long = "val_h5",
        alias = "val-h5",
        default_value = "datasets/vg/val.h5"
    )]
    pub val_h5: PathBuf,
    #[arg(
        long = "vocab_json",
        alias = "vocab-json",
        default_value = "datasets/vg/vocab.json"
    )]
    pub vocab_json: PathBuf,
    /// VG only (see spec §16.2 for the exact semantics).
    #[arg(
        long = "max_objects_per_image",
        alias = "max-objects-per-image",
        default_value = "10"
    )]
    pub max_objects_per_image: usize,
    #[arg(long = "vg_use_orphaned_objects", alias = "vg-use-orphaned-objects", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub vg_use_orphaned_objects: bool,

    // COCO-Stuff.
    #[arg(
        long = "coco_train_image_dir",
        alias = "coco-train-image-dir",
        default_value = "datasets/coco/images/train2017"
    )]
    pub coco_train_image_dir: PathBuf,
    #[arg(
        long = "coco_val_image_dir",
        alias = "coco-val-image-dir",
        default_value = "datasets/coco/images/val2017"
    )]
    pub coco_val_image_dir: PathBuf,
    #[arg(
        long = "coco_train_instances_json",
        alias = "coco-train-instances-json",
        default_value = "datasets/coco/annotations/instances_train2017.json"
    )]
    pub coco_train_instances_json: PathBuf,
    #[arg(
        long = "coco_train_stuff_json",
        alias = "coco-train-stuff-json",
        default_value = "datasets/coco/annotations/stuff_train2017.json"
    )]
    pub coco_train_stuff_json: PathBuf,
    /// (TRAINING.md says datasets/coco/instances_val2017.json; the code default is this.)
    #[arg(
        long = "coco_val_instances_json",
        alias = "coco-val-instances-json",
        default_value = "datasets/coco/annotations/instances_val2017.json"
    )]
    pub coco_val_instances_json: PathBuf,
    /// (TRAINING.md mislabels this flag and says datasets/coco/stuff_val2017.json; the code default is this.)
    #[arg(
        long = "coco_val_stuff_json",
        alias = "coco-val-stuff-json",
        default_value = "datasets/coco/annotations/stuff_val2017.json"
    )]
    pub coco_val_stuff_json: PathBuf,
    /// Comma-separated instance category names to keep (default: all).
    #[arg(long = "instance_whitelist", alias = "instance-whitelist", value_parser = parse_str_tuple)]
    pub instance_whitelist: Option<::std::vec::Vec<String>>,
    /// Comma-separated stuff category names to keep (default: all).
    #[arg(long = "stuff_whitelist", alias = "stuff-whitelist", value_parser = parse_str_tuple)]
    pub stuff_whitelist: Option<::std::vec::Vec<String>>,
    #[arg(long = "coco_include_other", alias = "coco-include-other", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub coco_include_other: bool,
    /// COCO only; objects must cover strictly more than this fraction of the image. (Not in TRAINING.md.)
    #[arg(long = "min_object_size", alias = "min-object-size", default_value = "0.02", value_parser = parse_finite)]
    pub min_object_size: f64,
    /// COCO only. (Not in TRAINING.md.)
    #[arg(
        long = "min_objects_per_image",
        alias = "min-objects-per-image",
        default_value = "3"
    )]
    pub min_objects_per_image: usize,
    #[arg(long = "coco_stuff_only", alias = "coco-stuff-only", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub coco_stuff_only: bool,

    // Generator.
    /// M of the mask network; 0 = no mask network.
    #[arg(long = "mask_size", alias = "mask-size", default_value = "16")]
    pub mask_size: usize,
    /// (The model class default is 64; train.py passes 128.)
    #[arg(long = "embedding_dim", alias = "embedding-dim", default_value = "128", value_parser = parse_positive)]
    pub embedding_dim: usize,
    #[arg(long = "gconv_dim", alias = "gconv-dim", default_value = "128", value_parser = parse_positive)]
    pub gconv_dim: usize,
    #[arg(long = "gconv_hidden_dim", alias = "gconv-hidden-dim", default_value = "512", value_parser = parse_positive)]
    pub gconv_hidden_dim: usize,
    #[arg(
        long = "gconv_num_layers",
        alias = "gconv-num-layers",
        default_value = "5"
    )]
    pub gconv_num_layers: usize,
    /// batch or none; also applies to the relationship-auxiliary MLP.
    #[arg(long = "mlp_normalization", alias = "mlp-normalization", default_value = "none", value_parser = parse_mlp_norm)]
    #[serde(with = "as_text")]
    pub mlp_normalization: Normalization,
    #[arg(long = "refinement_network_dims", alias = "refinement-network-dims", default_value = "1024,512,256,128,64", value_parser = parse_int_tuple)]
    pub refinement_network_dims: ::std::vec::Vec<usize>,
    /// CRN normalisation: batch, instance or none.
    #[arg(long = "normalization", default_value = "batch")]
    #[serde(with = "as_text")]
    pub normalization: Normalization,
    /// As the original: every string gives a LeakyReLU; "leakyrelu-S" has slope S, anything
    /// else (including "relu") slope 0.01 (spec §3.2).
    #[arg(long = "activation", default_value = "leakyrelu-0.2")]
    #[serde(with = "as_text")]
    pub activation: Activation,
    #[arg(
        long = "layout_noise_dim",
        alias = "layout-noise-dim",
        default_value = "32"
    )]
    pub layout_noise_dim: usize,
    /// Parsed but never used, as in the original. (Not in TRAINING.md.)
    #[arg(
        long = "use_boxes_pred_after",
        alias = "use-boxes-pred-after",
        default_value = "-1",
        allow_negative_numbers = true
    )]
    pub use_boxes_pred_after: i64,

    // Generator losses.
    /// (TRAINING.md suggests 0.1 for COCO; the code default is 0.)
    #[arg(long = "mask_loss_weight", alias = "mask-loss-weight", default_value = "0", value_parser = parse_finite)]
    pub mask_loss_weight: f64,
    #[arg(long = "l1_pixel_loss_weight", alias = "l1-pixel-loss-weight", default_value = "1.0", value_parser = parse_finite)]
    pub l1_pixel_loss_weight: f64,
    #[arg(long = "bbox_pred_loss_weight", alias = "bbox-pred-loss-weight", default_value = "10", value_parser = parse_finite)]
    pub bbox_pred_loss_weight: f64,
    /// Deprecated in the original's code. (Not in TRAINING.md.)
    #[arg(long = "predicate_pred_loss_weight", alias = "predicate-pred-loss-weight", default_value = "0", value_parser = parse_finite)]
    pub predicate_pred_loss_weight: f64,

    // Discriminators.
    /// 0 removes both discriminators.
    #[arg(long = "discriminator_loss_weight", alias = "discriminator-loss-weight", default_value = "0.01", value_parser = parse_finite)]
    pub discriminator_loss_weight: f64,
    /// gan, wgan or lsgan (lsgan squashes scores with a sigmoid first, as the original).
    #[arg(long = "gan_loss_type", alias = "gan-loss-type", default_value = "gan")]
    #[serde(with = "as_text")]
    pub gan_loss_type: GanLossType,
    /// (TRAINING.md: clips D weights for WGAN. The original's code never uses it; neither do we.)
    #[arg(long = "d_clip", alias = "d-clip", value_parser = parse_finite)]
    pub d_clip: Option<f64>,
    #[arg(
        long = "d_normalization",
        alias = "d-normalization",
        default_value = "batch"
    )]
    #[serde(with = "as_text")]
    pub d_normalization: Normalization,
    /// same or valid ("same" fails with the default 4x4 kernels, as in the original).
    #[arg(long = "d_padding", alias = "d-padding", default_value = "valid")]
    #[serde(with = "as_text")]
    pub d_padding: Padding,
    #[arg(
        long = "d_activation",
        alias = "d-activation",
        default_value = "leakyrelu-0.2"
    )]
    #[serde(with = "as_text")]
    pub d_activation: Activation,
    /// (TRAINING.md gives no default.)
    #[arg(
        long = "d_obj_arch",
        alias = "d-obj-arch",
        default_value = "C4-64-2,C4-128-2,C4-256-2"
    )]
    #[serde(with = "arch_text")]
    pub d_obj_arch: CnnArch,
    #[arg(long = "crop_size", alias = "crop-size", default_value = "32", value_parser = parse_positive)]
    pub crop_size: usize,
    /// 0 removes the object discriminator.
    #[arg(long = "d_obj_weight", alias = "d-obj-weight", default_value = "1.0", value_parser = parse_finite)]
    pub d_obj_weight: f64,
    /// (TRAINING.md: effective weight discriminator_loss_weight x ac_loss_weight; the code uses
    /// ac_loss_weight alone, and so do we.)
    #[arg(long = "ac_loss_weight", alias = "ac-loss-weight", default_value = "0.1", value_parser = parse_finite)]
    pub ac_loss_weight: f64,
    /// (TRAINING.md gives no default.)
    #[arg(
        long = "d_img_arch",
        alias = "d-img-arch",
        default_value = "C4-64-2,C4-128-2,C4-256-2"
    )]
    #[serde(with = "arch_text")]
    pub d_img_arch: CnnArch,
    /// 0 removes the image discriminator.
    #[arg(long = "d_img_weight", alias = "d-img-weight", default_value = "1.0", value_parser = parse_finite)]
    pub d_img_weight: f64,

    // Output.
    #[arg(long = "print_every", alias = "print-every", default_value = "10", value_parser = parse_positive_u64)]
    pub print_every: u64,
    /// Print per-component times (forward, losses, backward, D_obj, D_img) in ms.
    #[arg(long = "timing", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub timing: bool,
    #[arg(long = "checkpoint_every", alias = "checkpoint-every", default_value = "10000", value_parser = parse_positive_u64)]
    pub checkpoint_every: u64,
    /// (The original's default is the current working directory.)
    #[arg(long = "output_dir", alias = "output-dir", default_value_t = default_output_dir())]
    pub output_dir: String,
    #[arg(
        long = "checkpoint_name",
        alias = "checkpoint-name",
        default_value = "checkpoint"
    )]
    pub checkpoint_name: String,
    /// Initialise the generator (weights and model kwargs) from this checkpoint or model file.
    /// (TRAINING.md says it takes precedence over --restore_from_checkpoint; in the code it does
    /// not: a restorable checkpoint in --output_dir still overrides it, spec §23.27.)
    #[arg(long = "checkpoint_start_from", alias = "checkpoint-start-from")]
    pub checkpoint_start_from: Option<PathBuf>,
    /// Resume from <output_dir>/<checkpoint_name>_with_model if it exists (else start fresh).
    #[arg(long = "restore_from_checkpoint", alias = "restore-from-checkpoint", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub restore_from_checkpoint: bool,

    // sg2im-rs additions.
    /// sg2im-rs: seed of every random draw (initialisation, noise, shuffling, data sampling).
    #[arg(
        long = "seed",
        default_value = "0",
        help_heading = "sg2im-rs additions"
    )]
    pub seed: u64,
    /// sg2im-rs: cpu, gpu, cuda or vulkan (GPU backends only if built with their feature).
    #[arg(long = "device", default_value = "cpu", value_parser = parse_device, help_heading = "sg2im-rs additions")]
    #[serde(with = "device_serde")]
    pub device: DeviceChoice,
    /// sg2im-rs: JSON-lines metrics file (default <output_dir>/metrics.jsonl).
    #[arg(
        long = "metrics_jsonl",
        alias = "metrics-jsonl",
        help_heading = "sg2im-rs additions"
    )]
    pub metrics_jsonl: Option<PathBuf>,
    /// sg2im-rs: write TensorBoard event files (scalars, sample images) to <output_dir>/tensorboard.
    #[arg(long = "tensorboard", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set, help_heading = "sg2im-rs additions")]
    pub tensorboard: bool,
    /// sg2im-rs: write the check_model samples of each checkpoint as PNG grids to <output_dir>/samples.
    #[arg(long = "save_sample_images", alias = "save-sample-images", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set, help_heading = "sg2im-rs additions")]
    pub save_sample_images: bool,
    /// sg2im-rs: show a progress bar (only drawn on a terminal).
    #[arg(long = "progress", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set, help_heading = "sg2im-rs additions")]
    pub progress: bool,
    /// sg2im-rs (--dataset shapes): number of training scenes.
    #[arg(long = "shapes_num_train", alias = "shapes-num-train", default_value = "8192", value_parser = parse_positive, help_heading = "sg2im-rs additions")]
    pub shapes_num_train: usize,
    /// sg2im-rs (--dataset shapes): number of validation scenes.
    #[arg(long = "shapes_num_val", alias = "shapes-num-val", default_value = "256", value_parser = parse_positive, help_heading = "sg2im-rs additions")]
    pub shapes_num_val: usize,
    /// sg2im-rs (--dataset coco): cache resized images here (`<H>x<W>/<image id>.rgb`) so later
    /// epochs skip JPEG decoding and resizing.
    #[arg(
        long = "coco_image_cache_dir",
        alias = "coco-image-cache-dir",
        help_heading = "sg2im-rs additions"
    )]
    pub coco_image_cache_dir: Option<PathBuf>,
    /// sg2im-rs: 1 = the original's stopping rule: --num_iterations is checked only when an
    /// epoch starts, so the run finishes the epoch in which it is reached (§18.4).
    #[arg(long = "finish_epoch", alias = "finish-epoch", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set, help_heading = "sg2im-rs additions")]
    #[serde(default)]
    pub finish_epoch: bool,
}

fn parse_positive_u64(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("expected a positive integer, got {s:?}")),
    }
}

/// The typed flags in checkpoints' `args`: the text they were given (so the stored args read as
/// the original's), parsed back with the type's `FromStr`.
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// As [`as_text`], with the architecture's spelling (its `Display` is the shortest form).
mod arch_text {
    use crate::model::layers::CnnArch;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &CnnArch, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.spelling())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CnnArch, D::Error> {
        super::as_text::deserialize(d)
    }
}

mod device_serde {
    use crate::device::DeviceChoice;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &DeviceChoice, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceChoice, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TrainArgs {
    /// The defaults, as `sg2im train` with no flags.
    pub fn defaults() -> Self {
        Self::parse_from(std::iter::empty::<&str>()).expect("the defaults parse")
    }

    /// Parses flags (without the program/subcommand name), e.g. for tests and `print-args`.
    pub fn parse_from<I, T>(flags: I) -> std::result::Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        #[command(name = "sg2im train", no_binary_name = true)]
        struct Wrapper {
            #[command(flatten)]
            args: TrainArgs,
        }
        use clap::Parser;
        Wrapper::try_parse_from(flags).map(|w| w.args)
    }

    /// The original's `check_args` (§18.1), including its quirk (§23.28): it halves the image
    /// height once per refinement dim *after the first* and fails only if that reaches 0, one
    /// halving fewer than the network needs. The model builder rejects the remaining bad cases.
    pub fn check_args(&self) -> Result<()> {
        let mut h = self.image_size.0;
        for _ in self.refinement_network_dims.iter().skip(1) {
            h /= 2;
            if h == 0 {
                return Err(Error::invalid(format!(
                    "--refinement_network_dims: too many layers ({}) for --image_size height {}",
                    self.refinement_network_dims.len(),
                    self.image_size.0
                )));
            }
        }
        Ok(())
    }

    /// Whether the object discriminator exists (§18.2 step 5).
    pub fn has_d_obj(&self) -> bool {
        self.discriminator_loss_weight != 0.0 && self.d_obj_weight != 0.0
    }

    /// Whether the image discriminator exists (§18.2 step 6).
    pub fn has_d_img(&self) -> bool {
        self.discriminator_loss_weight != 0.0 && self.d_img_weight != 0.0
    }

    /// `<output_dir>/<checkpoint_name>`; the checkpoint files append `_with_model` / `_no_model`.
    pub fn checkpoint_base(&self) -> PathBuf {
        PathBuf::from(&self.output_dir).join(&self.checkpoint_name)
    }

    /// The args as the JSON object stored in checkpoints (flag name → value).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("TrainArgs serialises")
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid(format!("checkpoint args: {e}")))
    }
}

/// Formats a stored argument the way Python prints it in `print_args.py` (`key value`):
/// `None`, `True`/`False`, tuples in parentheses, floats with a decimal point.
pub fn python_repr(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 1e16 {
                    format!("{f:.1}")
                } else if f != 0.0 && f.abs() < 1e-4 {
                    format!("{f:e}")
                } else {
                    format!("{f}")
                }
            } else {
                n.to_string()
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => format!("'{s}'"),
                    other => python_repr(other),
                })
                .collect();
            if inner.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
        Value::Object(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> std::result::Result<TrainArgs, String> {
        TrainArgs::parse_from(flags.iter().copied()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_equal_the_original_code_defaults() {
        let a = TrainArgs::defaults();
        assert_eq!(a.dataset, DatasetKind::Coco);
        assert_eq!(a.batch_size, 32);
        assert_eq!(a.num_iterations, 1_000_000);
        assert_eq!(a.learning_rate, 1e-4);
        assert_eq!(a.eval_mode_after, 100_000);
        assert_eq!(a.image_size, (64, 64));
        assert_eq!(a.num_train_samples, None);
        assert_eq!(a.num_val_samples, 1024);
        assert!(a.shuffle_val);
        assert_eq!(a.loader_num_workers, 4);
        assert!(a.include_relationships);
        assert_eq!(a.vg_image_dir, PathBuf::from("datasets/vg/images"));
        assert_eq!(a.max_objects_per_image, 10);
        assert!(a.vg_use_orphaned_objects);
        assert_eq!(
            a.coco_val_instances_json,
            PathBuf::from("datasets/coco/annotations/instances_val2017.json")
        );
        assert_eq!(a.instance_whitelist, None);
        assert!(!a.coco_include_other);
        assert_eq!(a.min_object_size, 0.02);
        assert_eq!(a.min_objects_per_image, 3);
        assert!(a.coco_stuff_only);
        assert_eq!(a.mask_size, 16);
        assert_eq!(a.embedding_dim, 128);
        assert_eq!(
            (a.gconv_dim, a.gconv_hidden_dim, a.gconv_num_layers),
            (128, 512, 5)
        );
        assert_eq!(a.mlp_normalization, Normalization::None);
        assert_eq!(a.refinement_network_dims, vec![1024, 512, 256, 128, 64]);
        assert_eq!(a.normalization, Normalization::Batch);
        assert_eq!(a.activation.spelling(), "leakyrelu-0.2");
        assert_eq!(a.activation.slope(), 0.2);
        assert_eq!(a.layout_noise_dim, 32);
        assert_eq!(a.use_boxes_pred_after, -1);
        assert_eq!(a.mask_loss_weight, 0.0);
        assert_eq!(a.l1_pixel_loss_weight, 1.0);
        assert_eq!(a.bbox_pred_loss_weight, 10.0);
        assert_eq!(a.predicate_pred_loss_weight, 0.0);
        assert_eq!(a.discriminator_loss_weight, 0.01);
        assert_eq!(a.gan_loss_type, GanLossType::Gan);
        assert_eq!(a.d_clip, None);
        assert_eq!(a.d_normalization, Normalization::Batch);
        assert_eq!(a.d_padding, Padding::Valid);
        assert_eq!(a.d_activation.spelling(), "leakyrelu-0.2");
        assert_eq!(a.d_obj_arch.spelling(), "C4-64-2,C4-128-2,C4-256-2");
        assert_eq!(a.crop_size, 32);
        assert_eq!(a.d_obj_weight, 1.0);
        assert_eq!(a.ac_loss_weight, 0.1);
        assert_eq!(a.d_img_arch.spelling(), "C4-64-2,C4-128-2,C4-256-2");
        assert_eq!(a.d_img_weight, 1.0);
        assert_eq!(a.print_every, 10);
        assert!(!a.timing);
        assert_eq!(a.checkpoint_every, 10_000);
        assert_eq!(a.output_dir, ".");
        assert_eq!(a.checkpoint_name, "checkpoint");
        assert_eq!(a.checkpoint_start_from, None);
        assert!(!a.restore_from_checkpoint);
        assert!(a.has_d_obj() && a.has_d_img());
    }

    #[test]
    fn underscore_and_dash_spellings_are_both_accepted() {
        assert_eq!(parse(&["--batch_size", "8"]).unwrap().batch_size, 8);
        assert_eq!(parse(&["--batch-size", "8"]).unwrap().batch_size, 8);
        assert_eq!(parse(&["--batch-size=9"]).unwrap().batch_size, 9);
        let a = parse(&["--refinement-network-dims", "64,32", "--d-obj-weight", "0"]).unwrap();
        assert_eq!(a.refinement_network_dims, vec![64, 32]);
        assert!(!a.has_d_obj() && a.has_d_img());
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value_as_argparse_does() {
        let a = parse(&["--batch_size", "8", "--batch-size", "16"]).unwrap();
        assert_eq!(a.batch_size, 16);
    }

    #[test]
    fn booleans_accept_digits_and_words() {
        for (s, v) in [("1", true), ("0", false), ("true", true), ("False", false)] {
            assert_eq!(parse(&["--timing", s]).unwrap().timing, v, "{s}");
        }
        let err = parse(&["--timing", "yes"]).unwrap_err();
        assert!(
            err.contains("--timing") && err.contains("expected 1, 0, true or false"),
            "{err}"
        );
    }

    #[test]
    fn tuples_and_optionals_parse() {
        let a = parse(&[
            "--image_size",
            "32,48",
            "--instance_whitelist",
            "person,dog",
            "--d_clip",
            "0.01",
            "--eval_mode_after",
            "-1",
            "--checkpoint_start_from",
            "x.safetensors",
        ])
        .unwrap();
        assert_eq!(a.image_size, (32, 48));
        assert_eq!(
            a.instance_whitelist,
            Some(vec!["person".into(), "dog".into()])
        );
        assert_eq!(a.d_clip, Some(0.01));
        assert_eq!(a.eval_mode_after, -1);
        assert_eq!(
            a.checkpoint_start_from,
            Some(PathBuf::from("x.safetensors"))
        );
    }

    #[test]
    fn bad_values_are_rejected_with_the_flag_named() {
        for (flags, needle) in [
            (vec!["--image_size", "64"], "--image_size"),
            (vec!["--image_size", "64,x"], "--image_size"),
            (vec!["--batch_size", "0"], "--batch_size"),
            (vec!["--dataset", "imagenet"], "expected coco, vg or shapes"),
            (
                vec!["--gan_loss_type", "hinge"],
                "expected gan, wgan or lsgan",
            ),
            (
                vec!["--normalization", "layer"],
                "expected batch, instance or none",
            ),
            (vec!["--learning_rate", "nan"], "--learning_rate"),
            (
                vec!["--mlp_normalization", "instance"],
                "expected batch or none",
            ),
            (vec!["--d_padding", "reflect"], "expected same or valid"),
            (
                vec!["--activation", "leakyrelu-nan"],
                "\"leakyrelu-nan\": the slope after '-' must be a finite number",
            ),
            (vec!["--d_activation", "leakyrelu-inf"], "--d_activation"),
            (vec!["--d_obj_arch", "C4-64,X"], "--d_obj_arch"),
            (vec!["--d_img_arch", "C4"], "invalid architecture \"C4\""),
            (vec!["--device", "tpu"], "--device"),
            (vec!["--no_such_flag", "1"], "--no_such_flag"),
        ] {
            let err = parse(&flags).unwrap_err();
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }

    #[test]
    fn check_args_halves_one_time_too_few_like_the_original() {
        // 5 dims halve 64 four times (64 → 4): fine.
        assert!(TrainArgs::defaults().check_args().is_ok());
        // 8 rows, 5 dims: 8 → 4 → 2 → 1 → 0: rejected.
        let a = parse(&["--image_size", "8,8"]).unwrap();
        let err = a.check_args().unwrap_err().to_string();
        assert!(err.contains("--refinement_network_dims"), "{err}");
        // 16 rows, 5 dims: 16 → 1 passes check_args although the network needs 32 (quirk §23.28).
        assert!(
            parse(&["--image_size", "16,16"])
                .unwrap()
                .check_args()
                .is_ok()
        );
    }

    #[test]
    fn args_round_trip_through_json_with_flag_names_as_keys() {
        let a = parse(&[
            "--dataset",
            "shapes",
            "--image_size",
            "32,32",
            "--device",
            "cpu",
        ])
        .unwrap();
        let j = a.to_json();
        assert_eq!(j["batch_size"], 32);
        assert_eq!(j["image_size"], serde_json::json!([32, 32]));
        assert_eq!(j["dataset"], "shapes");
        assert_eq!(TrainArgs::from_json(&j).unwrap(), a);
        assert_eq!(python_repr(&j["image_size"]), "(32, 32)");
        assert_eq!(python_repr(&j["d_clip"]), "None");
        assert_eq!(python_repr(&j["timing"]), "False");
        assert_eq!(python_repr(&j["bbox_pred_loss_weight"]), "10.0");
        assert_eq!(python_repr(&j["learning_rate"]), "0.0001");
    }

    /// The typed flags are stored as they were spelled (the original stored the strings), and
    /// read back to the same values.
    #[test]
    fn typed_flags_are_stored_as_spelled() {
        let a = parse(&[
            "--d_obj_arch",
            "I3,C4-64-1,C3-8",
            "--activation",
            "relu",
            "--d_activation",
            "leakyrelu-0.20",
            "--gan_loss_type",
            "wgan",
            "--mlp_normalization",
            "batch",
        ])
        .unwrap();
        let j = a.to_json();
        assert_eq!(j["d_obj_arch"], "I3,C4-64-1,C3-8");
        assert_eq!(j["d_img_arch"], "C4-64-2,C4-128-2,C4-256-2");
        assert_eq!(j["activation"], "relu");
        assert_eq!(j["d_activation"], "leakyrelu-0.20");
        assert_eq!(j["gan_loss_type"], "wgan");
        assert_eq!(j["mlp_normalization"], "batch");
        assert_eq!(j["d_padding"], "valid");
        assert_eq!(TrainArgs::from_json(&j).unwrap(), a);
        let mut bad = j.clone();
        bad["d_activation"] = "leakyrelu-nan".into();
        let err = TrainArgs::from_json(&bad).unwrap_err().to_string();
        assert!(err.contains("leakyrelu-nan"), "{err}");
    }
}
