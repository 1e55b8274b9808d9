//! The object classifier behind object accuracy (the Layout2Im / scene_generation protocol):
//! a ResNet trained on object crops of a dataset's real training images
//! (`sg2im train-classifier`, [`train`]), applied by `sg2im evaluate --classifier` to the crops of
//! generated and real images at the ground-truth boxes.
//!
//! A classifier file is one safetensors file: the network's state dict under torchvision's key
//! names and string metadata `format` = [`FORMAT`], `arch`, `crop_size`, `object_vocab` (JSON
//! list of the object names in index order: class `i` is object index `i` of the dataset's
//! vocabulary), `num_classes`, `dataset`, `image_size` (`H,W` of the training images),
//! `val_accuracy` and `val_majority_rate` (on the real crops of the validation split) and
//! `num_iterations`.

pub mod model;
pub mod train;

pub use model::{ClassifierArch, ResNet};
pub use train::{ClassifierDataFlags, TrainClassifierOptions, TrainClassifierSummary};

use crate::eval::crops::crop_resized;
use crate::io::safetensors_io::{RawTensor, read_safetensors, write_safetensors};
use crate::model::params::{Params, load_state_dict, state_map};
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::path::Path;

/// Value of the `format` metadata key of a classifier file.
pub const FORMAT: &str = "sg2im-rs/classifier/1";

/// Crops classified per forward pass (bounds the memory of evaluation, not its result).
const PREDICT_CHUNK: usize = 256;

/// What a classifier file says about its network besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierMeta {
    pub arch: ClassifierArch,
    /// `S`: crops are resampled to `S × S`.
    pub crop_size: usize,
    /// Object names in index order; `num_classes` of them.
    pub object_vocab: Vec<String>,
    /// The dataset it was trained on (`shapes`, `coco`, `vg`).
    pub dataset: String,
    /// `(H, W)` of the training images.
    pub image_size: (usize, usize),
    /// Top-1 accuracy on the real crops of the validation split.
    pub val_accuracy: f64,
    /// Share of the most frequent class among those crops (what always guessing it scores).
    pub val_majority_rate: f64,
    pub num_iterations: u64,
}

impl ClassifierMeta {
    fn to_metadata(&self) -> HashMap<String, String> {
        let vocab = serde_json::to_string(&self.object_vocab).unwrap_or_default();
        HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("arch".to_string(), self.arch.to_string()),
            ("crop_size".to_string(), self.crop_size.to_string()),
            ("object_vocab".to_string(), vocab),
            (
                "num_classes".to_string(),
                self.object_vocab.len().to_string(),
            ),
            ("dataset".to_string(), self.dataset.clone()),
            (
                "image_size".to_string(),
                format!("{},{}", self.image_size.0, self.image_size.1),
            ),
            ("val_accuracy".to_string(), self.val_accuracy.to_string()),
            (
                "val_majority_rate".to_string(),
                self.val_majority_rate.to_string(),
            ),
            (
                "num_iterations".to_string(),
                self.num_iterations.to_string(),
            ),
        ])
    }

    fn from_metadata(meta: &HashMap<String, String>, what: &str) -> Result<Self> {
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::invalid(format!(
                "{what}: not an sg2im-rs object classifier (metadata \"format\" should be \
                 {FORMAT:?}; make one with sg2im train-classifier)"
            )));
        }
        let get = |k: &str| -> Result<&String> {
            meta.get(k)
                .ok_or_else(|| Error::invalid(format!("{what}: metadata {k:?} missing")))
        };
        let bad = |k: &str, expected: &str| {
            Error::invalid(format!(
                "{what}: metadata {k:?} is {:?}, expected {expected}",
                meta.get(k).map(String::as_str).unwrap_or("")
            ))
        };
        let num =
            |k: &str| -> Result<f64> { get(k)?.parse::<f64>().map_err(|_| bad(k, "a number")) };
        let object_vocab: Vec<String> = serde_json::from_str(get("object_vocab")?)
            .map_err(|_| bad("object_vocab", "a JSON list of names"))?;
        let num_classes: usize = get("num_classes")?
            .parse()
            .map_err(|_| bad("num_classes", "an integer"))?;
        if num_classes != object_vocab.len() {
            return Err(bad(
                "num_classes",
                &format!("the length of object_vocab ({})", object_vocab.len()),
            ));
        }
        let crop_size = get("crop_size")?
            .parse::<usize>()
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| bad("crop_size", "a positive integer"))?;
        let image_size = crate::train::args::parse_image_size(get("image_size")?)
            .map_err(|_| bad("image_size", "H,W"))?;
        Ok(Self {
            arch: get("arch")?
                .parse()
                .map_err(|_| bad("arch", "resnet8 or resnet18"))?,
            crop_size,
            object_vocab,
            dataset: get("dataset")?.clone(),
            image_size,
            val_accuracy: num("val_accuracy")?,
            val_majority_rate: num("val_majority_rate")?,
            num_iterations: get("num_iterations")?
                .parse()
                .map_err(|_| bad("num_iterations", "an integer"))?,
        })
    }
}

/// A trained classifier, ready to label crops.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub net: ResNet,
    pub meta: ClassifierMeta,
}

impl Classifier {
    /// Writes the classifier atomically (creating the parent directory).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tensors: IndexMap<String, RawTensor> = state_map(&self.net)
            .iter()
            .map(|(k, v)| (k.clone(), RawTensor::from_data(v)))
            .collect();
        write_safetensors(path, &tensors, Some(self.meta.to_metadata()))
    }

    /// Reads a classifier file written by [`Classifier::save`] onto `device`, in eval mode.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (tensors, meta) = read_safetensors(path)?;
        let what = path.display().to_string();
        let meta = ClassifierMeta::from_metadata(&meta, &what)?;
        let state: IndexMap<String, TensorData> = tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.to_data_f32()))
            .collect();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let mut net = ResNet::init(meta.arch, meta.object_vocab.len(), device, &mut rng);
        load_state_dict(&mut net, &state, device, &what)?;
        net.set_training(false);
        Ok(Self { net, meta })
    }

    /// Checks that the classifier's classes are the objects of `vocab`, in the same order;
    /// `file` names the classifier in the error, which names the first differing entry.
    pub fn check_vocab(&self, vocab: &Vocab, file: &Path) -> Result<()> {
        let ours = &self.meta.object_vocab;
        let theirs = &vocab.object_idx_to_name;
        if ours == theirs {
            return Ok(());
        }
        let i = ours
            .iter()
            .zip(theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        let entry = |v: &[String]| v.get(i).map_or("nothing".to_string(), |s| format!("{s:?}"));
        Err(Error::invalid(format!(
            "--classifier {}: its object vocabulary differs from the model's at index {i} \
             ({} vs {}): it was trained for other data ({}, {} classes vs {})",
            file.display(),
            entry(ours),
            entry(theirs),
            self.meta.dataset,
            ours.len(),
            theirs.len()
        )))
    }

    /// Top-1 classes of crops: `crops (O, 3, S, S)` in `[0, 1]`, flattened, `S` the crop size →
    /// `(O,)` class indices.
    pub fn predict(&mut self, crops: &[f32], device: &Device) -> Vec<usize> {
        let s = self.meta.crop_size;
        let per = 3 * s * s;
        let mut out = Vec::with_capacity(crops.len() / per);
        for chunk in crops.chunks(PREDICT_CHUNK * per) {
            let o = chunk.len() / per;
            let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [o, 3, s, s]), device);
            out.extend(argmax_rows(self.net.forward(x)));
        }
        out
    }
}

/// Whose image a crop comes from, for [`ObjectScorer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropSource {
    Generated,
    Real,
}

/// Object accuracy of `sg2im evaluate --classifier`: crops every object but `__image__` at its
/// ground-truth box in generated and real images, classifies them in chunks and counts the
/// hits separately for the two sources.
pub struct ObjectScorer {
    classifier: Classifier,
    device: Device,
    skip: Option<usize>,
    /// Crops waiting for a forward pass, `(O, 3, S, S)` flattened, with labels and sources.
    crops: Vec<f32>,
    pending: Vec<(usize, CropSource)>,
    pub generated: Accuracy,
    pub real: Accuracy,
}

impl ObjectScorer {
    /// Loads the classifier at `path` and checks that it names the objects of `vocab` (the
    /// model's vocabulary) in the same order.
    pub fn open(path: &Path, vocab: &Vocab, device: &Device) -> Result<Self> {
        let classifier = Classifier::load(path, device)?;
        classifier.check_vocab(vocab, path)?;
        Ok(Self {
            classifier,
            device: device.clone(),
            skip: vocab.image_object().ok().map(|i| i as usize),
            crops: Vec::new(),
            pending: Vec::new(),
            generated: Accuracy::default(),
            real: Accuracy::default(),
        })
    }

    pub fn meta(&self) -> &ClassifierMeta {
        &self.classifier.meta
    }

    /// Queues the objects of image `i` of `batch` cropped from `rgb` (`(H, W, 3)` uint8, the
    /// image as written to `samples/` or `real/`) at the batch's ground-truth boxes.
    pub fn add_image(
        &mut self,
        source: CropSource,
        rgb: &[u8],
        size: (usize, usize),
        batch: &crate::data::Batch,
        i: usize,
    ) {
        let (objs, boxes) = objects_of_image(batch, i);
        let s = self.classifier.meta.crop_size;
        let (crops, labels) = object_crops(rgb, size, &objs, &boxes, self.skip, s);
        self.crops.extend(crops);
        self.pending.extend(labels.into_iter().map(|l| (l, source)));
        if self.pending.len() >= PREDICT_CHUNK {
            self.flush();
        }
    }

    /// Classifies every queued crop.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let predicted = self.classifier.predict(&self.crops, &self.device);
        for (p, (label, source)) in predicted.iter().zip(&self.pending) {
            let acc = match source {
                CropSource::Generated => &mut self.generated,
                CropSource::Real => &mut self.real,
            };
            acc.add(&[*p], &[*label]);
        }
        self.crops.clear();
        self.pending.clear();
    }
}

/// Row-wise argmax of `(O, C)` scores on the host, as `(O,)` indices.
fn argmax_rows(scores: Tensor<2>) -> Vec<usize> {
    let idx: Tensor<2, Int> = scores.argmax(1);
    idx.to_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i as usize)
        .collect()
}

/// The objects of image `i` of a packed batch: `(O_i,)` categories and `(O_i, 4)` boxes.
pub fn objects_of_image(batch: &crate::data::Batch, i: usize) -> (Vec<i64>, Vec<[f32; 4]>) {
    batch
        .objs
        .iter()
        .zip(&batch.boxes)
        .zip(&batch.obj_to_img)
        .filter(|(_, img)| **img == i as i64)
        .map(|((o, b), _)| (*o, *b))
        .unzip()
}

/// The crops of one image's objects at their boxes, `__image__` (`skip`) left out.
///
/// # Shapes
/// `rgb (H, W, 3)` uint8, `objs (O,)`, `boxes (O, 4)` → crops `(O', 3, S, S)` flattened, labels
/// `(O',)`.
pub fn object_crops(
    rgb: &[u8],
    (h, w): (usize, usize),
    objs: &[i64],
    boxes: &[[f32; 4]],
    skip: Option<usize>,
    size: usize,
) -> (Vec<f32>, Vec<usize>) {
    let mut crops = Vec::new();
    let mut labels = Vec::new();
    for (&o, b) in objs.iter().zip(boxes) {
        let o = o as usize;
        if Some(o) == skip {
            continue;
        }
        crops.extend(crop_resized(rgb, h, w, b, size));
        labels.push(o);
    }
    (crops, labels)
}

/// Running top-1 accuracy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
}

impl Accuracy {
    /// Counts predictions against labels (pairwise).
    pub fn add(&mut self, predicted: &[usize], labels: &[usize]) {
        self.total += labels.len();
        self.correct += predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    }

    /// `correct / total`, `None` before anything was counted.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }
}

/// Share of the most frequent label among `labels` (0 for none): the accuracy of always
/// guessing that class.
pub fn majority_rate(labels: &[usize]) -> f64 {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for &l in labels {
        *counts.entry(l).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    if labels.is_empty() {
        0.0
    } else {
        top as f64 / labels.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn meta() -> ClassifierMeta {
        ClassifierMeta {
            arch: ClassifierArch::Resnet8,
            crop_size: 8,
            object_vocab: vec!["__image__".into(), "red circle".into(), "sky".into()],
            dataset: "shapes".into(),
            image_size: (32, 32),
            val_accuracy: 0.75,
            val_majority_rate: 0.25,
            num_iterations: 3,
        }
    }

    #[test]
    fn accuracy_and_majority_rate_count_as_stated() {
        let mut a = Accuracy::default();
        assert_eq!(a.rate(), None);
        a.add(&[1, 2, 3], &[1, 0, 3]);
        a.add(&[4], &[5]);
        assert_eq!((a.correct, a.total), (2, 4));
        assert_eq!(a.rate(), Some(0.5));
        assert_eq!(majority_rate(&[3, 1, 3, 2, 3]), 0.6);
        assert_eq!(majority_rate(&[]), 0.0);
    }

    #[test]
    fn object_crops_skip_the_image_object() {
        let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let full = [0.0, 0.0, 1.0, 1.0];
        let (crops, labels) = object_crops(&rgb, (4, 4), &[2, 0, 1], &[full; 3], Some(0), 4);
        assert_eq!(labels, vec![2, 1]);
        assert_eq!(crops.len(), 2 * 3 * 16);
        // A whole-image crop at the image's own size is the image, channel-first in [0, 1].
        assert_eq!(crops[1], 3.0 / 255.0);
        assert_eq!(crops[16], 1.0 / 255.0);
    }

    #[test]
    fn metadata_round_trips_and_checks_its_fields() {
        let m = meta();
        let mut md = m.to_metadata();
        assert_eq!(ClassifierMeta::from_metadata(&md, "f").unwrap(), m);
        md.insert("num_classes".into(), "4".into());
        let err = ClassifierMeta::from_metadata(&md, "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_classes") && err.contains("(3)"), "{err}");
        md.insert("format".into(), "sg2im-rs/model/1".into());
        let err = ClassifierMeta::from_metadata(&md, "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an sg2im-rs object classifier"), "{err}");
    }

    #[test]
    fn vocab_check_names_the_first_differing_entry() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let device = Device::default();
        let c = Classifier {
            net: ResNet::init(ClassifierArch::Resnet8, 3, &device, &mut rng),
            meta: meta(),
        };
        let mut vocab = crate::data::synthetic::shapes_vocab();
        vocab.object_idx_to_name = meta().object_vocab;
        c.check_vocab(&vocab, Path::new("c.safetensors")).unwrap();
        vocab.object_idx_to_name[2] = "grass".into();
        let err = c
            .check_vocab(&vocab, Path::new("c.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.safetensors") && err.contains("index 2 (\"sky\" vs \"grass\")"),
            "{err}"
        );
        vocab.object_idx_to_name.pop();
        let err = c
            .check_vocab(&vocab, Path::new("c.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("index 2 (\"sky\" vs nothing)"), "{err}");
    }
}
