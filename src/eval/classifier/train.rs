//! `sg2im train-classifier`: a ResNet trained on the object crops of a dataset's real training
//! images, scored on the real crops of its validation split.
//!
//! Crops are taken exactly as `sg2im evaluate` takes them from real images: the image as
//! `real/` holds it (`imagenet_deprocess` with its min–max stretch, 8-bit), resampled at the
//! ground-truth box with [`crate::eval::crops::crop_resized`]. The label is the object's index
//! in the dataset's vocabulary; `__image__` is left out. Adam (PyTorch 0.4 form) with a cosine
//! learning-rate decay, cross-entropy, BatchNorm in train mode; evaluation in eval mode.

use super::{Accuracy, Classifier, ClassifierArch, ClassifierMeta, ResNet, majority_rate};
use crate::data::SceneGraphDataset;
use crate::data::factory::DatasetKind;
use crate::data::loader::Loader;
use crate::device::DeviceChoice;
use crate::imagenet::deprocess_to_u8_hwc;
use crate::model::losses::cross_entropy;
use crate::model::params::{Params, load_state_dict, state_map, to_device};
use crate::report::Reporter;
use crate::train::TrainArgs;
use crate::train::adam::{Adam, AdamConfig};
use crate::train::args::{parse_bool, parse_image_size, parse_str_tuple};
use crate::train::data::build_datasets;
use crate::{Error, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indexmap::IndexMap;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

/// The dataset flags of `sg2im train` that select the data (same names, defaults and meaning).
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Data (as sg2im train)")]
pub struct ClassifierDataFlags {
    /// coco, vg or shapes (the built-in synthetic scenes, no download).
    #[arg(long = "dataset")]
    pub dataset: DatasetKind,
    /// H,W of the images the crops are taken from.
    #[arg(long = "image_size", default_value = "64,64", value_parser = parse_image_size)]
    pub image_size: (usize, usize),
    /// Cap on training images (default: all).
    #[arg(long = "num_train_samples")]
    pub num_train_samples: Option<usize>,
    /// COCO: cap on validation images.
    #[arg(long = "num_val_samples", default_value = "1024")]
    pub num_val_samples: usize,
    /// shapes: number of training scenes.
    #[arg(long = "shapes_num_train", default_value = "8192")]
    pub shapes_num_train: usize,
    /// shapes: number of validation scenes.
    #[arg(long = "shapes_num_val", default_value = "256")]
    pub shapes_num_val: usize,
    /// COCO and shapes: objects must cover more than this fraction of the image.
    #[arg(long = "min_object_size", default_value = "0.02")]
    pub min_object_size: f64,
    /// COCO and shapes.
    #[arg(long = "min_objects_per_image", default_value = "3")]
    pub min_objects_per_image: usize,
    /// Background threads preparing batches of scenes.
    #[arg(long = "loader_num_workers", default_value = "1")]
    pub loader_num_workers: usize,
    #[arg(long = "vg_image_dir", default_value = "datasets/vg/images")]
    pub vg_image_dir: PathBuf,
    #[arg(long = "train_h5", default_value = "datasets/vg/train.h5")]
    pub train_h5: PathBuf,
    #[arg(long = "val_h5", default_value = "datasets/vg/val.h5")]
    pub val_h5: PathBuf,
    #[arg(long = "vocab_json", default_value = "datasets/vg/vocab.json")]
    pub vocab_json: PathBuf,
    /// VG only.
    #[arg(long = "max_objects_per_image", default_value = "10")]
    pub max_objects_per_image: usize,
    #[arg(long = "vg_use_orphaned_objects", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub vg_use_orphaned_objects: bool,
    #[arg(
        long = "coco_train_image_dir",
        default_value = "datasets/coco/images/train2017"
    )]
    pub coco_train_image_dir: PathBuf,
    #[arg(
        long = "coco_val_image_dir",
        default_value = "datasets/coco/images/val2017"
    )]
    pub coco_val_image_dir: PathBuf,
    #[arg(
        long = "coco_train_instances_json",
        default_value = "datasets/coco/annotations/instances_train2017.json"
    )]
    pub coco_train_instances_json: PathBuf,
    #[arg(
        long = "coco_train_stuff_json",
        default_value = "datasets/coco/annotations/stuff_train2017.json"
    )]
    pub coco_train_stuff_json: PathBuf,
    #[arg(
        long = "coco_val_instances_json",
        default_value = "datasets/coco/annotations/instances_val2017.json"
    )]
    pub coco_val_instances_json: PathBuf,
    #[arg(
        long = "coco_val_stuff_json",
        default_value = "datasets/coco/annotations/stuff_val2017.json"
    )]
    pub coco_val_stuff_json: PathBuf,
    /// Comma-separated instance category names to keep (default: all).
    #[arg(long = "instance_whitelist", value_parser = parse_str_tuple)]
    pub instance_whitelist: Option<Vec<String>>,
    /// Comma-separated stuff category names to keep (default: all).
    #[arg(long = "stuff_whitelist", value_parser = parse_str_tuple)]
    pub stuff_whitelist: Option<Vec<String>>,
    #[arg(long = "coco_include_other", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub coco_include_other: bool,
    #[arg(long = "coco_stuff_only", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub coco_stuff_only: bool,
    /// COCO: cache resized images here so later epochs skip JPEG decoding.
    #[arg(long = "coco_image_cache_dir")]
    pub coco_image_cache_dir: Option<PathBuf>,
}

impl ClassifierDataFlags {
    /// `sg2im train`'s arguments with these flags, so the data is opened by the very code that
    /// opens a model's training data.
    fn train_args(&self) -> TrainArgs {
        TrainArgs {
            dataset: self.dataset,
            image_size: self.image_size,
            num_train_samples: self.num_train_samples,
            num_val_samples: self.num_val_samples,
            shapes_num_train: self.shapes_num_train,
            shapes_num_val: self.shapes_num_val,
            min_object_size: self.min_object_size,
            min_objects_per_image: self.min_objects_per_image,
            loader_num_workers: self.loader_num_workers,
            vg_image_dir: self.vg_image_dir.clone(),
            train_h5: self.train_h5.clone(),
            val_h5: self.val_h5.clone(),
            vocab_json: self.vocab_json.clone(),
            max_objects_per_image: self.max_objects_per_image,
            vg_use_orphaned_objects: self.vg_use_orphaned_objects,
            coco_train_image_dir: self.coco_train_image_dir.clone(),
            coco_val_image_dir: self.coco_val_image_dir.clone(),
            coco_train_instances_json: self.coco_train_instances_json.clone(),
            coco_train_stuff_json: self.coco_train_stuff_json.clone(),
            coco_val_instances_json: self.coco_val_instances_json.clone(),
            coco_val_stuff_json: self.coco_val_stuff_json.clone(),
            instance_whitelist: self.instance_whitelist.clone(),
            stuff_whitelist: self.stuff_whitelist.clone(),
            coco_include_other: self.coco_include_other,
            coco_stuff_only: self.coco_stuff_only,
            coco_image_cache_dir: self.coco_image_cache_dir.clone(),
            ..TrainArgs::defaults()
        }
    }
}

/// The options of `sg2im train-classifier`.
#[derive(Debug, Clone)]
pub struct TrainClassifierOptions {
    pub data: ClassifierDataFlags,
    pub output: PathBuf,
    pub arch: ClassifierArch,
    /// `S` of the `S × S` crops.
    pub crop_size: usize,
    pub num_iterations: u64,
    /// Crops per iteration.
    pub batch_size: usize,
    /// Peak learning rate of the cosine schedule.
    pub learning_rate: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// A PyTorch state dict (torchvision's `resnet18` weights, `.pth`) to start from; its
    /// `fc` is replaced by a fresh layer for the dataset's vocabulary.
    pub init_from: Option<PathBuf>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainClassifierSummary {
    pub meta: ClassifierMeta,
    /// Real crops of the validation split scored.
    pub num_val_crops: usize,
    pub final_loss: f32,
}

/// The learning rate of iteration `t` (0-based) of `total`: `lr · (1 + cos(π t / total)) / 2`,
/// from `lr` down towards 0 (SGDR without restarts).
pub fn cosine_lr(lr: f64, t: u64, total: u64) -> f64 {
    if total == 0 {
        return lr;
    }
    lr * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos())
}

/// Trains a classifier on the real training crops, scores it on the validation split's real
/// crops and saves it to `opts.output` (atomically).
pub fn train_classifier(
    opts: &TrainClassifierOptions,
    reporter: &dyn Reporter,
) -> Result<TrainClassifierSummary> {
    if opts.crop_size == 0 {
        return Err(Error::invalid("--crop_size 0: expected a positive integer"));
    }
    if opts.batch_size == 0 {
        return Err(Error::invalid(
            "--batch_size 0: expected a positive integer",
        ));
    }
    if !(opts.learning_rate.is_finite() && opts.learning_rate > 0.0) {
        return Err(Error::invalid(format!(
            "--learning_rate {}: expected a positive number",
            opts.learning_rate
        )));
    }
    let plain = opts.device.device()?;
    let train_device = plain.clone().autodiff();
    let datasets = build_datasets(&opts.data.train_args(), reporter)?;
    for line in &datasets.info {
        reporter.info(line);
    }
    let vocab = datasets.vocab.clone();
    let skip = vocab.image_object().ok().map(|i| i as usize);
    let num_classes = vocab.num_objects();
    if datasets.train.is_empty() {
        return Err(Error::invalid(format!(
            "--dataset {}: the training split has no images",
            opts.data.dataset
        )));
    }

    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(opts.seed);
    let mut net = ResNet::init(opts.arch, num_classes, &plain, &mut rng);
    if let Some(path) = &opts.init_from {
        load_pretrained(&mut net, path, &plain)?;
        reporter.info(&format!(
            "{}: weights loaded, fc replaced by a fresh {num_classes}-class layer",
            path.display()
        ));
    }
    to_device(&mut net, &train_device, true);
    net.set_training(true);
    let mut adam = Adam::new(AdamConfig::with_lr(opts.learning_rate));

    // Scenes are loaded in small groups and their crops queued, so that every iteration sees
    // exactly `batch_size` crops whatever the number of objects per scene.
    let scenes_per_load = opts.batch_size.div_ceil(4).max(1);
    let loader = Loader::new(
        datasets.train.clone(),
        scenes_per_load,
        true,
        opts.data.loader_num_workers,
        opts.seed,
        "classifier",
    );
    let s = opts.crop_size;
    let per = 3 * s * s;
    let mut queue: VecDeque<(Vec<f32>, usize)> = VecDeque::new();
    let mut t = 0u64;
    let mut final_loss = f32::NAN;
    let mut epoch = 0u64;
    'train: while t < opts.num_iterations {
        let mut produced = false;
        for loaded in loader.epoch(epoch, 0) {
            for e in &loaded.errors {
                reporter.warn(&format!("warning: batch {}: {e}", loaded.index));
            }
            for w in loader.dataset().take_warnings() {
                reporter.warn(&w);
            }
            let (crops, labels) = batch_crops(&loaded.batch, skip, s);
            produced |= !labels.is_empty();
            for (i, l) in labels.into_iter().enumerate() {
                queue.push_back((crops[i * per..(i + 1) * per].to_vec(), l));
            }
            while queue.len() >= opts.batch_size && t < opts.num_iterations {
                let items: Vec<(Vec<f32>, usize)> = queue.drain(..opts.batch_size).collect();
                adam.config.lr = cosine_lr(opts.learning_rate, t, opts.num_iterations);
                final_loss = train_step(&mut net, &mut adam, &items, s, &train_device);
                t += 1;
                reporter.progress(t, opts.num_iterations, &format!("loss {final_loss:.3}"));
                if !final_loss.is_finite() {
                    return Err(Error::invalid(format!(
                        "training diverged at iteration {t} (loss {final_loss}); lower \
                         --learning_rate"
                    )));
                }
                if t == opts.num_iterations {
                    break 'train;
                }
            }
        }
        if !produced {
            return Err(Error::invalid(format!(
                "--dataset {}: the training split has no object but __image__",
                opts.data.dataset
            )));
        }
        epoch += 1;
    }
    reporter.finish();

    to_device(&mut net, &plain, false);
    net.set_training(false);
    let mut classifier = Classifier {
        net,
        meta: ClassifierMeta {
            arch: opts.arch,
            crop_size: s,
            object_vocab: vocab.object_idx_to_name.clone(),
            dataset: opts.data.dataset.to_string(),
            image_size: opts.data.image_size,
            val_accuracy: 0.0,
            val_majority_rate: 0.0,
            num_iterations: opts.num_iterations,
        },
    };
    let (acc, majority) = score_split(&mut classifier, datasets.val, skip, &plain, reporter);
    let val_accuracy = acc.rate().ok_or_else(|| {
        Error::invalid(format!(
            "--dataset {}: the validation split has no object but __image__ to score the \
             classifier on",
            opts.data.dataset
        ))
    })?;
    classifier.meta.val_accuracy = val_accuracy;
    classifier.meta.val_majority_rate = majority;
    classifier.save(&opts.output)?;
    Ok(TrainClassifierSummary {
        meta: classifier.meta,
        num_val_crops: acc.total,
        final_loss,
    })
}

/// Loads every tensor but `fc.*` from a PyTorch state dict (zip or legacy `torch.save`
/// format, keys as torchvision names them, `module.` prefixes dropped) into `net`; `fc` keeps
/// its fresh initialisation, since the file's classes are not the dataset's. Strict otherwise:
/// a missing, extra or misshapen tensor is an error naming it.
fn load_pretrained(net: &mut ResNet, path: &std::path::Path, device: &Device) -> Result<()> {
    let what = format!("--init_from {}", path.display());
    if !path.is_file() {
        return Err(Error::invalid(format!("{what}: no such file")));
    }
    let root = crate::io::torch::load(path)?;
    // torchvision saves the bare state dict; training scripts often wrap it.
    let dict = root.get("state_dict").unwrap_or(&root);
    let mut state: IndexMap<String, TensorData> = crate::io::torch::state_dict(dict, &what)?
        .into_iter()
        .filter(|(k, _)| !k.starts_with("fc."))
        .map(|(k, t)| (k, TensorData::new(t.to_f32(), t.shape.clone())))
        .collect();
    for (k, v) in state_map(&net.fc) {
        state.insert(format!("fc.{k}"), v);
    }
    load_state_dict(net, &state, device, &what)
}

/// The crops of every image of a batch (the images ImageNet-normalised, as datasets give
/// them): `(O', 3, S, S)` flattened, and `(O',)` labels.
fn batch_crops(
    batch: &crate::data::Batch,
    skip: Option<usize>,
    size: usize,
) -> (Vec<f32>, Vec<usize>) {
    let (h, w) = batch.image_size;
    let mut crops = Vec::new();
    let mut labels = Vec::new();
    for i in 0..batch.num_images {
        let rgb = deprocess_to_u8_hwc(&batch.imgs[i * 3 * h * w..(i + 1) * 3 * h * w], h, w);
        let (objs, boxes) = super::objects_of_image(batch, i);
        let (c, l) = super::object_crops(&rgb, (h, w), &objs, &boxes, skip, size);
        crops.extend(c);
        labels.extend(l);
    }
    (crops, labels)
}

/// One Adam step on a batch of `(crop, label)` pairs; the batch's mean cross-entropy.
fn train_step(
    net: &mut ResNet,
    adam: &mut Adam,
    items: &[(Vec<f32>, usize)],
    s: usize,
    device: &Device,
) -> f32 {
    let n = items.len();
    let pixels: Vec<f32> = items.iter().flat_map(|(c, _)| c.iter().copied()).collect();
    let labels: Vec<i64> = items.iter().map(|(_, l)| *l as i64).collect();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, s, s]), device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    let loss = cross_entropy(net.forward(x), y);
    let value = loss
        .to_data()
        .try_into_vec_as::<f32>()
        .map(|v| v[0])
        .unwrap_or(f32::NAN);
    if value.is_finite() {
        let grads = loss.backward();
        adam.step(net, &grads);
    }
    value
}

/// Top-1 accuracy of the classifier on the real crops of `dataset` (in order, every scene
/// once) and the majority-class rate of those crops.
fn score_split(
    classifier: &mut Classifier,
    dataset: Arc<dyn SceneGraphDataset>,
    skip: Option<usize>,
    device: &Device,
    reporter: &dyn Reporter,
) -> (Accuracy, f64) {
    let loader = Loader::new(dataset, 32, false, 0, 0, "classifier-val");
    let mut acc = Accuracy::default();
    let mut all_labels = Vec::new();
    for loaded in loader.epoch(0, 0) {
        for e in &loaded.errors {
            reporter.warn(&format!("warning: validation batch {}: {e}", loaded.index));
        }
        let (crops, labels) = batch_crops(&loaded.batch, skip, classifier.meta.crop_size);
        let predicted = classifier.predict(&crops, device);
        acc.add(&predicted, &labels);
        all_labels.extend(labels);
    }
    (acc, majority_rate(&all_labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data flags repeat `train`'s: their defaults must not drift apart.
    #[test]
    fn data_flag_defaults_are_trains() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            data: ClassifierDataFlags,
        }
        for dataset in ["shapes", "coco", "vg"] {
            let flags = <Flags as clap::Parser>::parse_from(["x", "--dataset", dataset]).data;
            let mut want = TrainArgs::parse_from([format!("--dataset={dataset}")]).unwrap();
            // The one deliberate difference: crops of small images are cheap to prepare.
            want.loader_num_workers = 1;
            assert_eq!(flags.train_args(), want, "--dataset {dataset}");
        }
    }

    #[test]
    fn cosine_schedule_starts_at_the_rate_and_halves_midway() {
        assert_eq!(cosine_lr(0.1, 0, 100), 0.1);
        assert!((cosine_lr(0.1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(cosine_lr(0.1, 99, 100) < 0.1 * 3e-4);
        assert_eq!(cosine_lr(0.1, 0, 0), 0.1);
    }

    #[test]
    fn batch_crops_follow_each_image_s_objects() {
        // Two 2×2 images, the first all black, the second all white (normalised space).
        let (h, w) = (2, 2);
        let mut imgs = vec![0f32; 2 * 3 * h * w];
        for c in 0..3 {
            let v_black = -crate::imagenet::MEAN[c] / crate::imagenet::STD[c];
            let v_white = (1.0 - crate::imagenet::MEAN[c]) / crate::imagenet::STD[c];
            for p in 0..h * w {
                imgs[c * h * w + p] = v_black;
                imgs[3 * h * w + c * h * w + p] = v_white;
            }
        }
        // Add one grey pixel to each image so the min–max stretch keeps black and white.
        imgs[0] = 0.0;
        imgs[3 * h * w] = 0.0;
        let full = [0.5, 0.5, 1.0, 1.0];
        let batch = crate::data::Batch {
            imgs,
            num_images: 2,
            image_size: (h, w),
            objs: vec![3, 0, 5, 0],
            boxes: vec![full; 4],
            masks: None,
            mask_size: 0,
            triples: vec![],
            obj_to_img: vec![0, 0, 1, 1],
            triple_to_img: vec![],
        };
        let (crops, labels) = batch_crops(&batch, Some(0), 1);
        assert_eq!(labels, vec![3, 5]);
        // Bottom-right pixel: black in image 0, white in image 1.
        assert_eq!(crops.len(), 2 * 3);
        assert!(crops[..3].iter().all(|&v| v < 0.01), "{crops:?}");
        assert!(crops[3..].iter().all(|&v| v > 0.99), "{crops:?}");
    }
}
