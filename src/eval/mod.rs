//! The paper's evaluation protocol for a checkpoint (`sg2im evaluate`) and the object
//! classifier behind object accuracy (`sg2im train-classifier`).

pub mod classifier;
pub mod crops;
pub mod layout;

use crate::data::factory::{DataPaths, DatasetKind, DatasetOptions, Split, open_dataset};
use crate::data::loader::Loader;
use crate::eval::classifier::{CropSource, ObjectScorer};
use crate::imagenet::{deprocess_to_u8_hwc, save_png_rgb};
use crate::inference::load_generator;
use crate::metrics::{self, Input2, MetricsOptions, Progress};
use crate::report::Reporter;
use crate::sample_images::{SampleOptions, forward_batch, nth_image};
use crate::{Error, Result};
use burn::tensor::Device;
use indexmap::IndexMap;
use layout::{BoxPair, LayoutMetrics, layout_metrics};
use serde_json::Value;
use std::path::PathBuf;

/// `--layout`: what the generator lays the objects out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayoutSource {
    /// The model's own boxes and masks (the paper's main setting).
    #[default]
    Pred,
    /// Ground-truth boxes, predicted masks.
    GtBoxes,
    /// Ground-truth boxes and masks (COCO, shapes).
    GtBoxesMasks,
}

impl std::str::FromStr for LayoutSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pred" => Ok(Self::Pred),
            "gt_boxes" => Ok(Self::GtBoxes),
            "gt_boxes_masks" => Ok(Self::GtBoxesMasks),
            _ => Err(format!(
                "expected pred, gt_boxes or gt_boxes_masks, got {s:?}"
            )),
        }
    }
}

/// The options of `sg2im evaluate`.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub checkpoint: PathBuf,
    /// `None`: the dataset the checkpoint was trained on (its stored `dataset` argument).
    pub dataset: Option<DatasetKind>,
    pub paths: DataPaths,
    pub samples_per_graph: usize,
    pub layout: LayoutSource,
    pub inception_weights: Option<PathBuf>,
    /// Object classifier (`sg2im train-classifier`) for object accuracy.
    pub classifier: Option<PathBuf>,
    pub output_dir: PathBuf,
    pub seed: u64,
    /// At most this many scene graphs of the split.
    pub num_samples: usize,
    pub batch_size: usize,
}

/// What `evaluate` measured; [`EvalReport::to_json`] gives `report.json`.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Generated images written to `samples/`.
    pub num_samples: usize,
    /// Real images written to `real/` (one per scene graph).
    pub num_real: usize,
    /// `None` when the split has no object but `__image__`.
    pub layout: Option<LayoutMetrics>,
    /// IS / FID / KID under torch-fidelity's key names (empty without `--inception_weights`).
    pub fidelity: IndexMap<&'static str, f64>,
    /// KID's subset size actually used: min(1000, number of images).
    pub kid_subset_size: Option<usize>,
    /// With `--classifier`: top-1 accuracy on the generated images' and on the real images'
    /// object crops (`None` for a source without objects).
    pub object_accuracy: Option<(Option<f64>, Option<f64>)>,
}

impl EvalReport {
    /// `report.json`'s object: layout metrics, `num_samples`, then the fidelity metrics.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(l) = &self.layout {
            m.insert("box_iou_mean".into(), l.box_iou_mean.into());
            m.insert("recall_at_0.3".into(), l.recall_at_0_3.into());
            m.insert("recall_at_0.5".into(), l.recall_at_0_5.into());
            m.insert("sigma_x".into(), l.sigma_x.into());
            m.insert("sigma_area".into(), l.sigma_area.into());
            m.insert("num_objects".into(), l.num_objects.into());
        }
        if let Some((generated, real)) = self.object_accuracy {
            m.insert("object_accuracy".into(), generated.into());
            m.insert("object_accuracy_real".into(), real.into());
        }
        m.insert("num_samples".into(), self.num_samples.into());
        for (k, v) in &self.fidelity {
            m.insert((*k).into(), (*v).into());
        }
        if let Some(s) = self.kid_subset_size {
            m.insert("kid_subset_size".into(), s.into());
        }
        Value::Object(m)
    }
}

/// The paper's protocol for one checkpoint: `samples_per_graph` generated images per scene
/// graph of the validation split into `output_dir/samples/%04d_%d.png` (lossless PNG), the
/// real images at the model's resolution into `output_dir/real/%04d.png` (once per graph),
/// layout metrics from the model's predicted boxes (also when the layout uses the ground-truth
/// boxes: the figures then still describe the box regressor), and IS/FID/KID of the samples
/// against the real images when `inception_weights` is given. Writes `report.json` atomically.
pub fn evaluate(
    opts: &EvalOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<EvalReport> {
    if opts.batch_size == 0 || opts.samples_per_graph == 0 {
        return Err(Error::invalid(
            "--batch_size and --samples_per_graph must be positive",
        ));
    }
    if let Some(w) = &opts.inception_weights
        && !w.is_file()
    {
        return Err(Error::invalid(format!(
            "--inception_weights {}: no such file",
            w.display()
        )));
    }
    let (mut model, bundle, warnings) = load_generator(&opts.checkpoint, device)?;
    for w in warnings {
        reporter.warn(&format!("warning: {}: {w}", opts.checkpoint.display()));
    }
    model.set_training(false);
    let stored = bundle.args.as_ref().and_then(Value::as_object);
    let kind = match opts.dataset {
        Some(k) => k,
        None => {
            let name = stored
                .and_then(|a| a.get("dataset"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: no stored `dataset` argument; pass --dataset",
                        opts.checkpoint.display()
                    ))
                })?;
            name.parse::<DatasetKind>().map_err(|e| {
                Error::invalid(format!(
                    "{}: stored `dataset` {name:?}: {e}",
                    opts.checkpoint.display()
                ))
            })?
        }
    };
    let image_size = model.config.image_size;
    let data_opts = DatasetOptions::from_stored_args(
        kind,
        stored,
        &opts.checkpoint,
        &opts.paths,
        image_size,
        opts.num_samples,
        &model.config.vocab,
    )?;
    let dataset = open_dataset(kind, Split::Val, &data_opts, reporter)?;
    if dataset.vocab() != &model.config.vocab {
        return Err(Error::invalid(format!(
            "{}: the model's object/predicate vocabulary differs from the {kind} split's: it \
             was not trained on this dataset",
            opts.checkpoint.display()
        )));
    }
    let mut scorer = match &opts.classifier {
        Some(path) => {
            let scorer = ObjectScorer::open(path, &model.config.vocab, device)?;
            if scorer.meta().image_size != image_size {
                reporter.warn(&format!(
                    "warning: --classifier {}: trained on {}x{} images, the model draws {}x{}; \
                     object accuracies compare best at the same size",
                    path.display(),
                    scorer.meta().image_size.0,
                    scorer.meta().image_size.1,
                    image_size.0,
                    image_size.1
                ));
            }
            Some(scorer)
        }
        None => None,
    };
    let image_category = model.config.vocab.image_object().ok().map(|i| i as usize);
    let samples_dir = opts.output_dir.join("samples");
    let real_dir = opts.output_dir.join("real");
    for d in [&samples_dir, &real_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let sample_opts = SampleOptions {
        use_gt_boxes: opts.layout != LayoutSource::Pred,
        use_gt_masks: opts.layout == LayoutSource::GtBoxesMasks,
        seed: opts.seed,
        ..SampleOptions::default()
    };
    let k_per = opts.samples_per_graph as u64;
    let total = dataset.len() as u64;
    let loader = Loader::new(dataset, opts.batch_size, false, 0, opts.seed, "evaluate");
    let mut pairs = Vec::new();
    let (mut num_real, mut num_samples) = (0usize, 0usize);
    for loaded in loader.epoch(0, 0) {
        for e in &loaded.errors {
            reporter.warn(&format!("warning: batch {}: {e}", loaded.index));
        }
        for w in loader.dataset().take_warnings() {
            reporter.warn(&w);
        }
        let batch = loaded.batch;
        if batch.num_images == 0 {
            continue;
        }
        let (h, w) = batch.image_size;
        let first = num_real;
        for i in 0..batch.num_images {
            let rgb = deprocess_to_u8_hwc(nth_image(&batch.imgs, i, h, w), h, w);
            save_png_rgb(real_dir.join(format!("{:04}.png", first + i)), &rgb, h, w)?;
            if let Some(sc) = scorer.as_mut() {
                sc.add_image(CropSource::Real, &rgb, (h, w), &batch, i);
            }
        }
        num_real += batch.num_images;
        for k in 0..k_per {
            // Noise stream per (batch, sample): sample 0 sees exactly sample-images' noise.
            let out = forward_batch(
                &mut model,
                &batch,
                &sample_opts,
                loaded.index as u64 * k_per + k,
                device,
            )?;
            let (gh, gw) = model.config.image_size;
            for i in 0..batch.num_images {
                let rgb = deprocess_to_u8_hwc(nth_image(&out.imgs, i, gh, gw), gh, gw);
                let name = format!("{:04}_{k}.png", first + i);
                save_png_rgb(samples_dir.join(name), &rgb, gh, gw)?;
                if let Some(sc) = scorer.as_mut() {
                    sc.add_image(CropSource::Generated, &rgb, (gh, gw), &batch, i);
                }
            }
            num_samples += batch.num_images;
            pairs.extend(
                batch
                    .objs
                    .iter()
                    .zip(&out.boxes_pred)
                    .zip(&batch.boxes)
                    .map(|((&o, &pred), &gt)| BoxPair {
                        category: o as usize,
                        pred,
                        gt,
                    }),
            );
        }
        reporter.progress(num_real as u64, total, "generating");
    }
    reporter.finish();
    let mut report = EvalReport {
        num_samples,
        num_real,
        layout: layout_metrics(&pairs, image_category),
        fidelity: IndexMap::new(),
        kid_subset_size: None,
        object_accuracy: scorer.as_mut().map(|sc| {
            sc.flush();
            (sc.generated.rate(), sc.real.rate())
        }),
    };
    if let Some(weights) = &opts.inception_weights {
        if num_real < 2 {
            return Err(Error::invalid(
                "IS/FID/KID need at least 2 scene graphs; raise --num_samples",
            ));
        }
        // torch-fidelity's KID subset of 1000 exceeds small splits; fewer IS splits likewise.
        let kid_subset_size = 1000.min(num_real).min(num_samples);
        let mopts = MetricsOptions {
            isc: true,
            fid: true,
            kid: true,
            isc_splits: 10.min(num_samples),
            kid_subset_size,
            seed: 2020,
            batch_size: opts.batch_size,
            ..MetricsOptions::default()
        };
        let mut progress = |p: Progress| match p {
            Progress::Start { input, total } => reporter.info(&format!(
                "Inception features of {} ({total} images)",
                if input == 1 { "samples/" } else { "real/" }
            )),
            Progress::Done { .. } => {}
        };
        report.fidelity = metrics::calculate_metrics(
            &samples_dir,
            Some(&Input2::Folder(real_dir.clone())),
            weights,
            &mopts,
            &mut progress,
        )?;
        report.kid_subset_size = Some(kid_subset_size);
    }
    let json = serde_json::to_vec_pretty(&report.to_json())
        .map_err(|e| Error::invalid(format!("report.json: {e}")))?;
    crate::io::atomic::write_bytes_atomic(opts.output_dir.join("report.json"), &json)?;
    Ok(report)
}
