//! Sampling a trained generator over a dataset split: the original's `scripts/sample_images.py`
//! (§19.2).
//!
//! Per checkpoint: the generator in eval (or train) mode at `--image_size`; the dataset built
//! from the checkpoint's stored training arguments; for every batch, a forward pass (with the
//! ground-truth boxes / masks in the layout only when asked), `images/%04d.png` with a running
//! index, optionally `images_gt/%04d.png` and `graphs/%04d.png`, and the record `data.pt`
//! rewritten (atomically) after every batch.
//!
//! The record is a legacy `torch.save` file that `torch.load` reads: a dict
//! `{vocab, objs, masks_pred, boxes_pred, masks_gt, boxes_gt, filenames}`, every value but
//! `vocab` a list with one entry per image: `objs (O_i,)` int64, `masks_pred (O_i, M, M)`
//! float32 (`None` for a model without mask network), `boxes_pred (O_i, 4)` float32,
//! `masks_gt (O_i, M, M)` int64 (`None` for VG), `boxes_gt (O_i, 4)` float32 and the image's
//! file name (`"0000.png"`). `O_i` counts the image's `__image__` object.
//!
//! Deviations from the original (its bugs, §23 item 29): `--checkpoint_list` works (the
//! original's default `--checkpoint` made it always conflict), `--save_graphs` draws the graphs
//! (the original called the drawing function with its arguments in the wrong order), and a
//! model without mask network records `None` masks instead of crashing. Noise and the dataset's
//! random choices come from `--seed`, so a run is reproducible.

use crate::data::Batch;
use crate::data::factory::{DataPaths, DatasetKind, DatasetOptions, Split, open_dataset};
use crate::data::loader::Loader;
use crate::imagenet::{deprocess_to_u8_hwc, save_png_rgb};
use crate::inference::load_generator;
use crate::io::torch::{PyValue, TorchTensor, save_legacy};
use crate::model::generator::{GraphBatch, Sg2Im, host_boxes};
use crate::report::Reporter;
use crate::rng::TrainRng;
use crate::scene_graph::SceneGraph;
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which checkpoints to sample.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointSource {
    /// `--checkpoint`: outputs go straight into `--output_dir`.
    One(PathBuf),
    /// `--checkpoint_list`: a text file with one checkpoint file or directory per line.
    List(PathBuf),
}

/// `--model_mode`: BatchNorm with running statistics (`eval`) or batch statistics (`train`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelMode {
    #[default]
    Eval,
    Train,
}

impl std::str::FromStr for ModelMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "eval" => Ok(Self::Eval),
            "train" => Ok(Self::Train),
            _ => Err(format!("expected eval or train, got {s:?}")),
        }
    }
}

/// The options of `sg2im sample-images`, named after the original's flags.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub checkpoints: CheckpointSource,
    pub model_mode: ModelMode,
    pub dataset: DatasetKind,
    /// `(H, W)` of the dataset images and of the generated images (overrides the model's).
    pub image_size: (usize, usize),
    pub batch_size: usize,
    pub shuffle: bool,
    pub loader_num_workers: usize,
    /// The dataset's `max_samples`.
    pub num_samples: usize,
    pub save_gt_imgs: bool,
    pub save_graphs: bool,
    pub use_gt_boxes: bool,
    pub use_gt_masks: bool,
    pub output_dir: PathBuf,
    /// The validation data's files (`--vg_h5` … `--stuff_json`).
    pub paths: DataPaths,
    /// Seed of the layout noise, the dataset's random choices and the shuffle.
    pub seed: u64,
}

impl Default for SampleOptions {
    /// The original's defaults (with `~` standing for the home directory).
    fn default() -> Self {
        SampleOptions {
            checkpoints: CheckpointSource::One("sg2im-models/vg64.pt".into()),
            model_mode: ModelMode::Eval,
            dataset: DatasetKind::Vg,
            image_size: (64, 64),
            batch_size: 24,
            shuffle: false,
            loader_num_workers: 4,
            num_samples: 10_000,
            save_gt_imgs: false,
            save_graphs: false,
            use_gt_boxes: false,
            use_gt_masks: false,
            output_dir: "output".into(),
            paths: DataPaths::default(),
            seed: 0,
        }
    }
}

/// What sampling one checkpoint wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    pub checkpoint: PathBuf,
    pub output_dir: PathBuf,
    pub num_images: usize,
    /// Dataset items that could not be loaded (left out, as the training loader does).
    pub skipped: Vec<String>,
}

/// Samples every checkpoint `opts.checkpoints` names; progress and warnings go to `reporter`.
pub fn sample_images(
    opts: &SampleOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Vec<SampleSummary>> {
    checkpoint_jobs(&opts.checkpoints, &opts.output_dir)?
        .into_iter()
        .map(|(ckpt, out)| sample_checkpoint(opts, &ckpt, &out, device, reporter))
        .collect()
}

/// The `(checkpoint, output directory)` pairs, in order (§19.2): `<output_dir>` for one
/// checkpoint; for a list, `<output_dir>/result%03d` (line number from 1) for a listed file and
/// `<output_dir>/result%03d_<snapshot>` (line number from 0, as the original) for every file of
/// a listed directory whose name contains `snapshot`, in name order, `<snapshot>` being the text
/// after the first underscore of the file stem. Blank lines are skipped; a line that is neither
/// a file nor a directory is an error (the original skipped it silently).
pub fn checkpoint_jobs(
    source: &CheckpointSource,
    output_dir: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>> {
    let list = match source {
        CheckpointSource::One(path) => return Ok(vec![(path.clone(), output_dir.to_path_buf())]),
        CheckpointSource::List(list) => list,
    };
    let text = std::fs::read_to_string(list)
        .map_err(|e| Error::invalid(format!("--checkpoint_list {}: {e}", list.display())))?;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let path = PathBuf::from(line);
        if path.is_file() {
            jobs.push((path, output_dir.join(format!("result{:03}", i + 1))));
        } else if path.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(&path)
                .map_err(|e| Error::io(&path, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("snapshot"))
                .collect();
            names.sort();
            for name in names {
                let file = path.join(&name);
                let stem = Path::new(&name)
                    .file_stem()
                    .map_or(name.clone(), |s| s.to_string_lossy().into_owned());
                let snapshot = stem.split_once('_').map_or(stem.as_str(), |(_, r)| r);
                jobs.push((file, output_dir.join(format!("result{i:03}_{snapshot}"))));
            }
        } else {
            return Err(Error::invalid(format!(
                "--checkpoint_list {} line {}: {line}: no such checkpoint file or directory",
                list.display(),
                i + 1
            )));
        }
    }
    if jobs.is_empty() {
        return Err(Error::invalid(format!(
            "--checkpoint_list {}: lists no checkpoint",
            list.display()
        )));
    }
    Ok(jobs)
}

/// Samples one checkpoint into `output_dir`.
pub fn sample_checkpoint(
    opts: &SampleOptions,
    checkpoint: &Path,
    output_dir: &Path,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<SampleSummary> {
    if opts.batch_size == 0 {
        return Err(Error::invalid("--batch_size must be positive"));
    }
    let (mut model, bundle, warnings) = load_generator(checkpoint, device)?;
    for w in warnings {
        reporter.warn(&format!("warning: {}: {w}", checkpoint.display()));
    }
    model.set_training(opts.model_mode == ModelMode::Train);
    model.config.image_size = opts.image_size;
    model
        .config
        .validate()
        .map_err(|e| Error::invalid(format!("--image_size: {e}")))?;
    let data_opts = DatasetOptions::from_stored_args(
        opts.dataset,
        Split::Val,
        bundle.args.as_ref().and_then(Value::as_object),
        checkpoint,
        &opts.paths,
        opts.image_size,
        opts.num_samples,
        &model.config.vocab,
    )?;
    let dataset = open_dataset(opts.dataset, Split::Val, &data_opts, reporter)?;
    let (dv, mv) = (dataset.vocab(), &model.config.vocab);
    if dv.num_objects() > mv.num_objects() || dv.num_predicates() > mv.num_predicates() {
        return Err(Error::invalid(format!(
            "--dataset {}: the dataset has {} object classes and {} predicates, more than the \
             model in {} knows ({} and {}): was the model trained on this dataset?",
            opts.dataset,
            dv.num_objects(),
            dv.num_predicates(),
            checkpoint.display(),
            mv.num_objects(),
            mv.num_predicates()
        )));
    }
    if dv != mv {
        reporter.warn(&format!(
            "warning: the {} dataset's vocabulary differs from the one stored in {}",
            opts.dataset,
            checkpoint.display()
        ));
    }
    let img_dir = output_dir.join("images");
    let gt_dir = output_dir.join("images_gt");
    let graph_dir = output_dir.join("graphs");
    let mut dirs = vec![&img_dir];
    if opts.save_gt_imgs {
        dirs.push(&gt_dir);
    }
    if opts.save_graphs {
        dirs.push(&graph_dir);
    }
    for d in dirs {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let render = opts.save_graphs && crate::vis::graphviz_available();
    if opts.save_graphs && !render {
        reporter.warn(
            "warning: graphviz `dot` not found: writing graphs/*.dot files instead of pictures",
        );
    }
    let data_path = output_dir.join("data.pt");
    let mut record = Record::new(&model.config.vocab)?;
    let loader = Loader::new(
        dataset,
        opts.batch_size,
        opts.shuffle,
        opts.loader_num_workers,
        opts.seed,
        "sample_images",
    );
    let mut skipped = Vec::new();
    for loaded in loader.epoch(0, 0) {
        for e in &loaded.errors {
            reporter.warn(&format!("warning: batch {}: {e}", loaded.index));
        }
        skipped.extend(loaded.errors);
        for w in loader.dataset().take_warnings() {
            reporter.warn(&w);
        }
        let batch = loaded.batch;
        if batch.num_images == 0 {
            continue;
        }
        let out = forward_batch(&mut model, &batch, opts, loaded.index as u64, device)?;
        let (h, w) = batch.image_size;
        let (gh, gw) = opts.image_size;
        let mp = model.config.mask_size;
        let mut start = 0;
        for i in 0..batch.num_images {
            let end = start
                + batch.obj_to_img[start..]
                    .iter()
                    .take_while(|&&x| x == i as i64)
                    .count();
            let name = format!("{:04}.png", record.len());
            if opts.save_gt_imgs {
                let rgb = deprocess_to_u8_hwc(nth_image(&batch.imgs, i, h, w), h, w);
                save_png_rgb(gt_dir.join(&name), &rgb, h, w)?;
            }
            let rgb = deprocess_to_u8_hwc(nth_image(&out.imgs, i, gh, gw), gh, gw);
            save_png_rgb(img_dir.join(&name), &rgb, gh, gw)?;
            if opts.save_graphs {
                let g = scene_graph(&model.config.vocab, &batch, start, end);
                let stem = graph_dir.join(format!("{:04}", record.len()));
                crate::vis::draw_scene_graph(&g, &stem, render)?;
            }
            record.push(&batch, &out, start..end, mp, name);
            start = end;
        }
        record.save(&data_path)?;
        reporter.info(&format!("Saved {} images", record.len()));
    }
    if record.is_empty() {
        // Still leave a record, so that a consumer finds an empty one rather than none.
        record.save(&data_path)?;
    }
    Ok(SampleSummary {
        checkpoint: checkpoint.to_path_buf(),
        output_dir: output_dir.to_path_buf(),
        num_images: record.len(),
        skipped,
    })
}

/// Image `i` `(3, H, W)` of `(N, 3, H, W)`.
pub(crate) fn nth_image(imgs: &[f32], i: usize, h: usize, w: usize) -> &[f32] {
    &imgs[i * 3 * h * w..(i + 1) * 3 * h * w]
}

/// One batch through the generator, on the host.
pub(crate) struct BatchOutput {
    /// `(N, 3, H, W)`.
    pub(crate) imgs: Vec<f32>,
    /// `(O, 4)`.
    pub(crate) boxes_pred: Vec<[f32; 4]>,
    /// `(O, M, M)`.
    masks_pred: Option<Vec<f32>>,
}

/// The forward pass of §19.2: GT boxes / masks enter the layout only when asked for; noise for
/// batch `b` is drawn from `(seed, b)`.
pub(crate) fn forward_batch(
    model: &mut Sg2Im,
    batch: &Batch,
    opts: &SampleOptions,
    b: u64,
    device: &Device,
) -> Result<BatchOutput> {
    let g = GraphBatch::from_batch(batch, &model.config.vocab, device)?;
    let masks_gt = match (&batch.masks, opts.use_gt_masks && model.mask_net.is_some()) {
        (Some(mk), true) => {
            let m = batch.mask_size;
            if m != model.config.mask_size {
                return Err(Error::invalid(format!(
                    "--use_gt_masks: the dataset's masks are {m}×{m} but the model's are {0}×{0}",
                    model.config.mask_size
                )));
            }
            let v: Vec<f32> = mk.iter().map(|&x| f32::from(x)).collect();
            Some(Tensor::<3>::from_data(
                TensorData::new(v, [g.num_objs, m, m]),
                device,
            ))
        }
        _ => None,
    };
    let boxes_gt = opts.use_gt_boxes.then_some(batch.boxes.as_slice());
    let noise = (model.config.layout_noise_dim > 0).then(|| {
        let mut rng = TrainRng::derived(opts.seed, "sample_images/noise", &[b]);
        model.sample_noise(g.num_images, &mut rng, device)
    });
    let out = model.forward(&g, boxes_gt, masks_gt, noise);
    let host = |t: Tensor<3>| {
        t.to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    };
    Ok(BatchOutput {
        imgs: out
            .imgs
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default(),
        boxes_pred: host_boxes(&out.boxes_pred),
        masks_pred: out.masks_pred.map(host),
    })
}

/// Objects `start..end` of a batch (one image) with their triples, named by the vocabulary.
fn scene_graph(vocab: &Vocab, batch: &Batch, start: usize, end: usize) -> SceneGraph {
    let name = |names: &[String], i: i64| {
        names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    let objects = batch.objs[start..end]
        .iter()
        .map(|&o| name(&vocab.object_idx_to_name, o))
        .collect();
    let (lo, hi) = (start as i64, end as i64);
    let relationships = batch
        .triples
        .iter()
        .filter(|t| (lo..hi).contains(&t[0]))
        .map(|&[s, p, o]| {
            (
                (s - lo) as usize,
                name(&vocab.pred_idx_to_name, p),
                (o - lo) as usize,
            )
        })
        .collect();
    SceneGraph {
        objects,
        relationships,
        boxes: None,
        masks: None,
    }
}

/// The `data.pt` dictionary, built up image by image.
struct Record {
    vocab: PyValue,
    objs: Vec<PyValue>,
    masks_pred: Vec<PyValue>,
    boxes_pred: Vec<PyValue>,
    masks_gt: Vec<PyValue>,
    boxes_gt: Vec<PyValue>,
    filenames: Vec<PyValue>,
}

impl Record {
    fn new(vocab: &Vocab) -> Result<Self> {
        let v =
            serde_json::to_value(vocab).map_err(|e| Error::invalid(format!("vocabulary: {e}")))?;
        Ok(Record {
            vocab: json_to_py(&v),
            objs: Vec::new(),
            masks_pred: Vec::new(),
            boxes_pred: Vec::new(),
            masks_gt: Vec::new(),
            boxes_gt: Vec::new(),
            filenames: Vec::new(),
        })
    }

    fn len(&self) -> usize {
        self.filenames.len()
    }

    /// Appends image `objs` of `batch` (its objects' range); `mp` is the model's mask size.
    fn push(
        &mut self,
        batch: &Batch,
        out: &BatchOutput,
        objs: std::ops::Range<usize>,
        mp: usize,
        filename: String,
    ) {
        let (start, end) = (objs.start, objs.end);
        let o = end - start;
        let m = batch.mask_size;
        let boxes = |b: &[[f32; 4]]| {
            let flat: Vec<f32> = b[objs.clone()].iter().flatten().copied().collect();
            PyValue::Tensor(TorchTensor::from_f32(vec![o, 4], &flat))
        };
        self.objs.push(PyValue::Tensor(TorchTensor::from_i64(
            vec![o],
            &batch.objs[objs.clone()],
        )));
        self.boxes_pred.push(boxes(&out.boxes_pred));
        self.boxes_gt.push(boxes(&batch.boxes));
        self.masks_pred.push(match &out.masks_pred {
            Some(mk) => PyValue::Tensor(TorchTensor::from_f32(
                vec![o, mp, mp],
                &mk[start * mp * mp..end * mp * mp],
            )),
            None => PyValue::None,
        });
        self.masks_gt.push(match &batch.masks {
            Some(mk) => {
                let v: Vec<i64> = mk[start * m * m..end * m * m]
                    .iter()
                    .map(|&x| i64::from(x))
                    .collect();
                PyValue::Tensor(TorchTensor::from_i64(vec![o, m, m], &v))
            }
            None => PyValue::None,
        });
        self.filenames.push(PyValue::Str(filename));
    }

    fn is_empty(&self) -> bool {
        self.filenames.is_empty()
    }

    /// Writes the whole record (atomically: a reader never sees half a file).
    fn save(&self, path: &Path) -> Result<()> {
        let s = |k: &str| PyValue::Str(k.to_string());
        let l = |v: &[PyValue]| PyValue::List(v.to_vec());
        let dict = PyValue::Dict(vec![
            (s("vocab"), self.vocab.clone()),
            (s("objs"), l(&self.objs)),
            (s("masks_pred"), l(&self.masks_pred)),
            (s("boxes_pred"), l(&self.boxes_pred)),
            (s("masks_gt"), l(&self.masks_gt)),
            (s("boxes_gt"), l(&self.boxes_gt)),
            (s("filenames"), l(&self.filenames)),
        ]);
        save_legacy(path, &dict)
    }
}

/// JSON (the vocabulary) as Python values: objects become dicts, arrays lists.
fn json_to_py(v: &Value) -> PyValue {
    match v {
        Value::Null => PyValue::None,
        Value::Bool(b) => PyValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => PyValue::Int(i),
            None => PyValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => PyValue::Str(s.clone()),
        Value::Array(a) => PyValue::List(a.iter().map(json_to_py).collect()),
        Value::Object(o) => PyValue::Dict(
            o.iter()
                .map(|(k, v)| (PyValue::Str(k.clone()), json_to_py(v)))
                .collect(),
        ),
    }
}
