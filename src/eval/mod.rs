//! The paper's evaluation protocol for a checkpoint (`sg2im evaluate`) and the object
//! classifier behind object accuracy (`sg2im train-classifier`).

pub mod classifier;
pub mod crops;
pub mod layout;

use crate::data::factory::{DataPaths, DatasetKind, DatasetOptions, Split, open_dataset};
use crate::data::loader::Loader;
use crate::eval::classifier::{CropSource, ObjectScorer, objects_of_image};
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
use std::path::{Path, PathBuf};

/// `report.json`'s key of SceneFID.
pub const KEY_SCENE_FID: &str = "scene_fid";

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
    /// `Val` or `Test` (see [`open_dataset`] for what COCO's test split is).
    pub split: Split,
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
    pub dataset: DatasetKind,
    pub split: Split,
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
    /// Object crops per side of SceneFID (generated; the real side has one per real object).
    pub num_object_crops: Option<usize>,
    /// With `--classifier`: top-1 accuracy on the generated images' and on the real images'
    /// object crops (`None` for a source without objects).
    pub object_accuracy: Option<(Option<f64>, Option<f64>)>,
}

impl EvalReport {
    /// `report.json`'s object: what was evaluated (`dataset`, `split`), layout metrics,
    /// `num_samples`, then the fidelity metrics.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("dataset".into(), self.dataset.to_string().into());
        m.insert("split".into(), self.split.as_str().into());
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
        if let Some(n) = self.num_object_crops {
            m.insert("num_object_crops".into(), n.into());
        }
        Value::Object(m)
    }
}

/// The paper's protocol for one checkpoint: `samples_per_graph` generated images per scene
/// graph of the split (`opts.split`) into `output_dir/samples/%04d_%d.png` (lossless PNG; sample
/// `k` of every graph from epoch `k` of the loader, so per-item random choices such as COCO's
/// geometric relationships are drawn afresh for each sample), the real images at the model's
/// resolution into `output_dir/real/%04d.png` (once per graph), layout metrics from the model's
/// predicted boxes (also when the layout uses the ground-truth boxes: the figures then still
/// describe the box regressor), and, when `inception_weights` is given, IS/FID/KID of the
/// samples against the real images and SceneFID over the objects' crops at their ground-truth
/// boxes (`output_dir/crops/{samples,real}/…_%02d.png`).
///
/// Everything is written under a staging folder and moved into `output_dir` when the run has
/// succeeded (see [`Staging`]); `report.json` is written atomically last.
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
        opts.split,
        stored,
        &opts.checkpoint,
        &opts.paths,
        image_size,
        opts.num_samples,
        &model.config.vocab,
    )?;
    let dataset = open_dataset(kind, opts.split, &data_opts, reporter)?;
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
    let scene_fid = opts.inception_weights.is_some();
    let out = Staging::create(&opts.output_dir, scene_fid)?;
    let sample_opts = SampleOptions {
        use_gt_boxes: opts.layout != LayoutSource::Pred,
        use_gt_masks: opts.layout == LayoutSource::GtBoxesMasks,
        seed: opts.seed,
        ..SampleOptions::default()
    };
    let k_per = opts.samples_per_graph as u64;
    let total = dataset.len() as u64 * k_per;
    let loader = Loader::new(dataset, opts.batch_size, false, 0, opts.seed, "evaluate");
    let mut pairs = Vec::new();
    let (mut num_real, mut num_samples, mut num_crops) = (0usize, 0usize, 0usize);
    // Sample k of every graph comes from epoch k of the loader, so the relationships a dataset
    // draws per item (COCO's and shapes' geometric ones, VG's object subsampling) are drawn
    // afresh for every sample, as the paper's protocol asks; the images are the same each time.
    for k in 0..k_per {
        let mut first = 0usize;
        for loaded in loader.epoch(k, 0) {
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
            // The ground-truth boxes of image i's objects, __image__ left out.
            let objects = |i: usize| -> Vec<[f32; 4]> {
                let (objs, boxes) = objects_of_image(&batch, i);
                objs.iter()
                    .zip(boxes)
                    .filter(|(o, _)| Some(**o as usize) != image_category)
                    .map(|(_, b)| b)
                    .collect()
            };
            if k == 0 {
                for i in 0..batch.num_images {
                    let rgb = deprocess_to_u8_hwc(nth_image(&batch.imgs, i, h, w), h, w);
                    let name = format!("{:04}", first + i);
                    save_png_rgb(out.real.join(format!("{name}.png")), &rgb, h, w)?;
                    if scene_fid {
                        write_crops(&out.crops_real, &name, &rgb, (h, w), &objects(i))?;
                    }
                    if let Some(sc) = scorer.as_mut() {
                        sc.add_image(CropSource::Real, &rgb, (h, w), &batch, i);
                    }
                }
                num_real += batch.num_images;
            }
            // Noise stream per (batch, sample): sample 0 sees exactly sample-images' noise.
            let generated = forward_batch(
                &mut model,
                &batch,
                &sample_opts,
                loaded.index as u64 * k_per + k,
                device,
            )?;
            let (gh, gw) = model.config.image_size;
            for i in 0..batch.num_images {
                let rgb = deprocess_to_u8_hwc(nth_image(&generated.imgs, i, gh, gw), gh, gw);
                let name = format!("{:04}_{k}", first + i);
                save_png_rgb(out.samples.join(format!("{name}.png")), &rgb, gh, gw)?;
                if scene_fid {
                    let boxes = objects(i);
                    write_crops(&out.crops_samples, &name, &rgb, (gh, gw), &boxes)?;
                    num_crops += boxes.len();
                }
                if let Some(sc) = scorer.as_mut() {
                    sc.add_image(CropSource::Generated, &rgb, (gh, gw), &batch, i);
                }
            }
            num_samples += batch.num_images;
            pairs.extend(
                batch
                    .objs
                    .iter()
                    .zip(&generated.boxes_pred)
                    .zip(&batch.boxes)
                    .map(|((&o, &pred), &gt)| BoxPair {
                        category: o as usize,
                        pred,
                        gt,
                    }),
            );
            first += batch.num_images;
            reporter.progress(num_samples as u64, total, "generating");
        }
    }
    reporter.finish();
    let mut report = EvalReport {
        dataset: kind,
        split: opts.split,
        num_samples,
        num_real,
        layout: layout_metrics(&pairs, image_category),
        fidelity: IndexMap::new(),
        kid_subset_size: None,
        num_object_crops: None,
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
        report.fidelity = metrics::calculate_metrics(
            &out.samples,
            Some(&Input2::Folder(out.real.clone())),
            weights,
            &mopts,
            &mut inception_progress(reporter, "samples/", "real/"),
        )?;
        report.kid_subset_size = Some(kid_subset_size);
        // SceneFID (Sylvain et al. 2020): FID over the objects' crops at the ground-truth
        // boxes, generated vs real, each crop resized to the Inception's input like any image.
        if num_crops < 2 {
            return Err(Error::invalid(
                "SceneFID needs at least 2 objects besides __image__; raise --num_samples",
            ));
        }
        let fid_only = MetricsOptions {
            fid: true,
            batch_size: opts.batch_size,
            ..MetricsOptions::default()
        };
        let scene = metrics::calculate_metrics(
            &out.crops_samples,
            Some(&Input2::Folder(out.crops_real.clone())),
            weights,
            &fid_only,
            &mut inception_progress(reporter, "crops/samples/", "crops/real/"),
        )?;
        if let Some(v) = scene.get(metrics::KEY_FID) {
            report.fidelity.insert(KEY_SCENE_FID, *v);
        }
        report.num_object_crops = Some(num_crops);
    }
    out.publish()?;
    let json = serde_json::to_vec_pretty(&report.to_json())
        .map_err(|e| Error::invalid(format!("report.json: {e}")))?;
    crate::io::atomic::write_bytes_atomic(opts.output_dir.join("report.json"), &json)?;
    Ok(report)
}

/// The folders one evaluation writes, first under a hidden staging folder inside
/// `--output_dir`. [`Staging::publish`] moves them into place only once the whole evaluation
/// has succeeded, so a failed or interrupted run leaves an earlier evaluation's outputs as they
/// were, and a re-run never scores images left over from an earlier one (say, one with more
/// samples per graph).
struct Staging {
    root: PathBuf,
    dest: PathBuf,
    samples: PathBuf,
    real: PathBuf,
    crops_samples: PathBuf,
    crops_real: PathBuf,
    published: bool,
}

/// The output folders, as named under `--output_dir`.
const OUTPUT_FOLDERS: [&str; 3] = ["samples", "real", "crops"];

impl Staging {
    fn create(dest: &Path, with_crops: bool) -> Result<Self> {
        let root = dest.join(format!(".evaluate-staging-{}", std::process::id()));
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        }
        let s = Staging {
            samples: root.join("samples"),
            real: root.join("real"),
            crops_samples: root.join("crops").join("samples"),
            crops_real: root.join("crops").join("real"),
            root,
            dest: dest.to_path_buf(),
            published: false,
        };
        let mut dirs = vec![&s.samples, &s.real];
        if with_crops {
            dirs.extend([&s.crops_samples, &s.crops_real]);
        }
        for d in dirs {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        Ok(s)
    }

    /// Replaces `--output_dir`'s `samples/`, `real/` and `crops/` with this run's. The previous
    /// folder is renamed into the staging folder before the new one is renamed into place and
    /// deleted only after it, so at every moment one of the two is complete on disk.
    fn publish(mut self) -> Result<()> {
        // From here on the staging folder may hold the previous outputs: if a rename fails, it
        // stays on disk (the error names the path) rather than being dropped.
        self.published = true;
        for name in OUTPUT_FOLDERS {
            let (from, to) = (self.root.join(name), self.dest.join(name));
            if to.exists() {
                let aside = self.root.join(format!("previous-{name}"));
                std::fs::rename(&to, &aside).map_err(|e| Error::io(&to, e))?;
            }
            if from.exists() {
                std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
            }
        }
        std::fs::remove_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a failed run's partial images are of no use to anyone.
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Writes the crop of every box of one image as `<dir>/<name>_<j>.png` (`j` from 0, in the
/// image's object order, `__image__` left out by the caller).
fn write_crops(
    dir: &Path,
    name: &str,
    rgb: &[u8],
    (h, w): (usize, usize),
    boxes: &[[f32; 4]],
) -> Result<()> {
    for (j, b) in boxes.iter().enumerate() {
        let (px, ch, cw) = crops::crop_u8(rgb, h, w, b);
        save_png_rgb(dir.join(format!("{name}_{j:02}.png")), &px, ch, cw)?;
    }
    Ok(())
}

/// A progress callback naming the two folders whose features are being extracted.
fn inception_progress<'a>(
    reporter: &'a dyn Reporter,
    first: &'a str,
    second: &'a str,
) -> impl FnMut(Progress) + 'a {
    move |p: Progress| match p {
        Progress::Start { input, total } => reporter.info(&format!(
            "Inception features of {} ({total} images)",
            if input == 1 { first } else { second }
        )),
        Progress::Done { .. } => {}
    }
}
