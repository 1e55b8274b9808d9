//! One way to open a dataset: a [`DatasetKind`], a [`Split`] and typed [`DatasetOptions`] give a
//! [`SceneGraphDataset`]. `train` fills the options from its flags (`train::data`); commands that
//! sample or evaluate a trained model fill them from the training arguments stored in its
//! checkpoint with [`DatasetOptions::from_stored_args`].

use crate::data::coco::{CocoConfig, CocoFlags, CocoSceneGraphDataset};
use crate::data::synthetic::{ShapesConfig, ShapesDataset};
use crate::data::vg::{VgConfig, VgSceneGraphDataset};
use crate::data::{Sample, SceneGraphDataset};
use crate::report::Reporter;
use crate::vocab::Vocab;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which data `--dataset` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Coco,
    Vg,
    /// The built-in synthetic scenes (`sg2im::data::synthetic`), generated on the fly.
    Shapes,
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "coco" => Ok(Self::Coco),
            "vg" => Ok(Self::Vg),
            "shapes" => Ok(Self::Shapes),
            _ => Err(format!("expected coco, vg or shapes, got {s:?}")),
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Coco => "coco",
            Self::Vg => "vg",
            Self::Shapes => "shapes",
        })
    }
}

/// Which part of a dataset. The paths of COCO and VG name the split's files (VG's `test.h5`;
/// COCO-Stuff's test images are the filtered val2017 images after the first
/// [`COCO_VAL_IMAGES`], see [`open_dataset`]); the built-in `shapes` scenes are generated from a
/// different dataset seed per split. A command line names only `val` and `test`: training
/// chooses its splits itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    #[value(skip)]
    Train,
    Val,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The paper's COCO-Stuff division of the filtered val2017 images: the first 1024 are the
/// validation set (`train.py`'s `--num_val_samples`), the next 2048 the test set.
pub const COCO_VAL_IMAGES: usize = 1024;
pub const COCO_TEST_IMAGES: usize = 2048;

/// Dataset seeds of the `shapes` splits. They do not depend on `--seed`, so runs with different
/// seeds see the same data.
pub const SHAPES_TRAIN_SEED: u64 = 0;
pub const SHAPES_VAL_SEED: u64 = 1;
pub const SHAPES_TEST_SEED: u64 = 2;

/// Everything that selects the samples of one split; each kind reads its own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetOptions {
    /// `(H, W)` of the images.
    pub image_size: (usize, usize),
    /// Cap on the number of samples (`None`: all).
    pub max_samples: Option<usize>,
    pub include_relationships: bool,
    /// COCO and shapes: `M` of the masks.
    pub mask_size: usize,
    /// COCO and shapes: objects must cover more than this fraction of the image.
    pub min_object_size: f64,
    /// COCO and shapes.
    pub min_objects_per_image: usize,
    /// COCO: files, flag names for errors, category filters and the image cache. Its image
    /// size, mask size, object filters, relationship switch and cap are ignored: the fields
    /// above set them for every kind.
    pub coco: CocoConfig,
    /// VG: files and object filters (shared fields ignored, as for `coco`).
    pub vg: VgConfig,
    /// VG: the vocabulary, when already loaded (else read from `vg.vocab_json`).
    pub vg_vocab: Option<Vocab>,
    /// shapes: number of scenes of the split (before `max_samples`).
    pub shapes_num_images: usize,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        let s = ShapesConfig::default();
        DatasetOptions {
            image_size: (64, 64),
            max_samples: None,
            include_relationships: true,
            mask_size: s.mask_size,
            min_object_size: s.min_object_size,
            min_objects_per_image: s.min_objects_per_image,
            coco: CocoConfig::default(),
            vg: VgConfig::default(),
            vg_vocab: None,
            shapes_num_images: s.num_images,
        }
    }
}

/// Opens split `split` of dataset `kind`. Images are ImageNet-normalised, as every consumer of
/// the original's datasets expects. What the original printed while reading the files goes to
/// `reporter`.
///
/// COCO's files are val2017's for both `Val` and `Test`: `Test` is the paper's test set, the
/// filtered images after the first [`COCO_VAL_IMAGES`] (at most [`COCO_TEST_IMAGES`], capped
/// further by `max_samples`). The original code has no COCO test split.
pub fn open_dataset(
    kind: DatasetKind,
    split: Split,
    opts: &DatasetOptions,
    reporter: &dyn Reporter,
) -> Result<Arc<dyn SceneGraphDataset>> {
    Ok(match kind {
        DatasetKind::Coco if split == Split::Test => {
            let n = opts
                .max_samples
                .map_or(COCO_TEST_IMAGES, |n| n.min(COCO_TEST_IMAGES));
            let ds = open_coco(&DatasetOptions {
                max_samples: Some(COCO_VAL_IMAGES + n),
                ..opts.clone()
            })?;
            for w in ds.warnings() {
                reporter.warn(w);
            }
            if ds.len() <= COCO_VAL_IMAGES && n > 0 {
                return Err(Error::invalid(format!(
                    "{} {}: the COCO-Stuff test split is the filtered images after the first \
                     {COCO_VAL_IMAGES} (the paper's {COCO_VAL_IMAGES} val / {COCO_TEST_IMAGES} test \
                     division of val2017), but this file leaves only {} images",
                    opts.coco.flags.instances_json,
                    opts.coco.instances_json.display(),
                    ds.len()
                )));
            }
            Arc::new(Skip::new(ds, COCO_VAL_IMAGES))
        }
        DatasetKind::Coco => {
            let ds = open_coco(opts)?;
            for w in ds.warnings() {
                reporter.warn(w);
            }
            Arc::new(ds)
        }
        DatasetKind::Vg => Arc::new(open_vg(opts)?),
        DatasetKind::Shapes => Arc::new(open_shapes(split, opts)?),
    })
}

/// COCO-Stuff (§15.2): at most 8 objects per image, as `train.py` builds it. The caller shows
/// its [`warnings`](CocoSceneGraphDataset::warnings).
pub fn open_coco(opts: &DatasetOptions) -> Result<CocoSceneGraphDataset> {
    CocoSceneGraphDataset::new(CocoConfig {
        image_size: opts.image_size,
        mask_size: opts.mask_size,
        normalize_images: true,
        max_samples: opts.max_samples,
        include_relationships: opts.include_relationships,
        min_object_size: opts.min_object_size,
        min_objects_per_image: opts.min_objects_per_image,
        max_objects_per_image: 8,
        ..opts.coco.clone()
    })
}

fn open_vg(opts: &DatasetOptions) -> Result<VgSceneGraphDataset> {
    let cfg = VgConfig {
        image_size: opts.image_size,
        normalize_images: true,
        max_samples: opts.max_samples,
        include_relationships: opts.include_relationships,
        ..opts.vg.clone()
    };
    match &opts.vg_vocab {
        Some(vocab) => VgSceneGraphDataset::with_vocab(cfg, vocab.clone()),
        None => VgSceneGraphDataset::new(cfg),
    }
}

/// The synthetic scenes, filtered like COCO (up to 8 objects, more if the minimum asks).
fn open_shapes(split: Split, opts: &DatasetOptions) -> Result<ShapesDataset> {
    let num_images = opts
        .max_samples
        .map_or(opts.shapes_num_images, |n| n.min(opts.shapes_num_images));
    ShapesDataset::new(ShapesConfig {
        image_size: opts.image_size,
        mask_size: opts.mask_size,
        num_images,
        min_objects_per_image: opts.min_objects_per_image,
        max_objects_per_image: 8.max(opts.min_objects_per_image),
        min_object_size: opts.min_object_size,
        include_relationships: opts.include_relationships,
        normalize_images: true,
        seed: match split {
            Split::Train => SHAPES_TRAIN_SEED,
            Split::Val => SHAPES_VAL_SEED,
            Split::Test => SHAPES_TEST_SEED,
        },
    })
    .map_err(|e| Error::invalid(format!("--dataset shapes: {e}")))
}

/// The files a command that reads a trained model's data names with its own flags (the
/// original's `sample_images.py` flags; the flag names appear in errors).
///
/// Also the `--vg_h5 … --stuff_json` flags of `sample-images` and `evaluate` (one definition,
/// flattened into both commands; defaults are `sample_images.py`'s).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DataPaths {
    /// [default: datasets/vg/val.h5; datasets/vg/test.h5 for evaluate --split test]
    #[arg(long = "vg_h5")]
    pub vg_h5: Option<PathBuf>,
    #[arg(long = "vg_image_dir", default_value = "datasets/vg/images")]
    pub vg_image_dir: PathBuf,
    #[arg(
        long = "coco_image_dir",
        default_value = "~/datasets/coco/2017/images/val2017"
    )]
    pub coco_image_dir: PathBuf,
    #[arg(
        long = "instances_json",
        default_value = "~/datasets/coco/2017/annotations/instances_val2017.json"
    )]
    pub instances_json: PathBuf,
    #[arg(
        long = "stuff_json",
        default_value = "~/datasets/coco/2017/annotations/stuff_val2017.json"
    )]
    pub stuff_json: PathBuf,
}

impl Default for DataPaths {
    /// The flags' defaults (one definition: the `#[arg]` attributes above).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            paths: DataPaths,
        }
        <Flags as clap::Parser>::parse_from(["sg2im"]).paths
    }
}

impl DataPaths {
    /// `--vg_h5`, or the split's file under `datasets/vg/` when the flag is not given.
    pub fn vg_h5(&self, split: Split) -> PathBuf {
        self.vg_h5
            .clone()
            .unwrap_or_else(|| format!("datasets/vg/{split}.h5").into())
    }
}

/// The samples of `inner` from `skip` on (COCO's test split within val2017).
struct Skip<D> {
    inner: D,
    skip: usize,
}

impl<D: SceneGraphDataset> Skip<D> {
    fn new(inner: D, skip: usize) -> Self {
        Skip { inner, skip }
    }
}

impl<D: SceneGraphDataset> SceneGraphDataset for Skip<D> {
    fn len(&self) -> usize {
        self.inner.len().saturating_sub(self.skip)
    }

    fn vocab(&self) -> &Vocab {
        self.inner.vocab()
    }

    fn get(&self, index: usize, seed: u64) -> Result<Sample> {
        self.inner.get(index + self.skip, seed)
    }

    fn take_warnings(&self) -> Vec<String> {
        self.inner.take_warnings()
    }
}

impl DatasetOptions {
    /// The validation (or test) data of §19.2 (`sample_images.py`) for a model trained with the
    /// stored arguments `stored` (the checkpoint's `args`, `None` if it has none): images at
    /// `image_size`, at most `num_samples` of them, relationships always included, the files
    /// from `paths` (checked to exist), filters from the stored arguments. VG uses the model's
    /// vocabulary `model_vocab`. `shapes` gives the validation scenes the model was checked on
    /// (sg2im-rs), with the defaults of a fresh run for a checkpoint without stored arguments.
    #[allow(clippy::too_many_arguments)] // the caller's flags, each a different kind of thing
    pub fn from_stored_args(
        kind: DatasetKind,
        split: Split,
        stored: Option<&serde_json::Map<String, Value>>,
        checkpoint: &Path,
        paths: &DataPaths,
        image_size: (usize, usize),
        num_samples: usize,
        model_vocab: &Vocab,
    ) -> Result<Self> {
        let args = StoredArgs {
            args: stored,
            checkpoint,
            dataset: kind,
        };
        let require = |flag: &str, path: &Path, what: &str| -> Result<()> {
            if path.exists() {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{flag} {}: no such {what} (set {flag}; --dataset {kind} needs it)",
                    path.display(),
                )))
            }
        };
        let base = DatasetOptions {
            image_size,
            max_samples: Some(num_samples),
            include_relationships: true,
            ..DatasetOptions::default()
        };
        Ok(match kind {
            DatasetKind::Coco => {
                let image_dir = expand_home(&paths.coco_image_dir);
                let instances = expand_home(&paths.instances_json);
                let stuff = expand_home(&paths.stuff_json);
                require("--instances_json", &instances, "file")?;
                require("--stuff_json", &stuff, "file")?;
                require("--coco_image_dir", &image_dir, "directory")?;
                // Read in the order the original's constructor call names them.
                let stuff_only = args.bool("coco_stuff_only")?;
                let mask_size = args.usize("mask_size")?;
                let min_object_size = args.f64("min_object_size")?;
                let min_objects_per_image = args.usize("min_objects_per_image")?;
                DatasetOptions {
                    mask_size,
                    min_object_size,
                    min_objects_per_image,
                    coco: CocoConfig {
                        image_dir,
                        instances_json: instances,
                        stuff_json: Some(stuff),
                        stuff_only,
                        // Absent from old checkpoints: True there (unlike training's default).
                        include_other: args.or("coco_include_other", true, StoredArgs::bool)?,
                        instance_whitelist: args.strings("instance_whitelist")?,
                        stuff_whitelist: args.strings("stuff_whitelist")?,
                        image_cache_dir: None,
                        flags: CocoFlags {
                            image_dir: "--coco_image_dir".into(),
                            instances_json: "--instances_json".into(),
                            stuff_json: "--stuff_json".into(),
                        },
                        ..CocoConfig::default()
                    },
                    ..base
                }
            }
            DatasetKind::Vg => {
                let vg_h5 = paths.vg_h5(split);
                require("--vg_h5", &vg_h5, "file")?;
                require("--vg_image_dir", &paths.vg_image_dir, "directory")?;
                DatasetOptions {
                    vg: VgConfig {
                        h5_path: vg_h5,
                        image_dir: paths.vg_image_dir.clone(),
                        // Not read: the vocabulary is the checkpoint's.
                        vocab_json: checkpoint.to_path_buf(),
                        max_objects: args.usize("max_objects_per_image")?,
                        use_orphaned_objects: args.bool("vg_use_orphaned_objects")?,
                        ..VgConfig::default()
                    },
                    vg_vocab: Some(model_vocab.clone()),
                    ..base
                }
            }
            DatasetKind::Shapes => {
                let d = ShapesConfig::default();
                let min_objects_per_image = args.or(
                    "min_objects_per_image",
                    d.min_objects_per_image,
                    StoredArgs::usize,
                )?;
                let shapes_num_images =
                    args.or("shapes_num_val", SHAPES_NUM_VAL_DEFAULT, StoredArgs::usize)?;
                DatasetOptions {
                    mask_size: args.or("mask_size", d.mask_size, StoredArgs::usize)?,
                    min_object_size: args.or(
                        "min_object_size",
                        d.min_object_size,
                        StoredArgs::f64,
                    )?,
                    min_objects_per_image,
                    shapes_num_images,
                    ..base
                }
            }
        })
    }
}

/// `--shapes_num_val`'s default, for checkpoints stored without it.
pub const SHAPES_NUM_VAL_DEFAULT: usize = 256;

/// A leading `~/` as the home directory (the original's defaults go through `expanduser`).
fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// A checkpoint's stored training arguments, read key by key with the name in errors.
struct StoredArgs<'a> {
    args: Option<&'a serde_json::Map<String, Value>>,
    checkpoint: &'a Path,
    dataset: DatasetKind,
}

impl StoredArgs<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        let Some(args) = self.args else {
            return Err(Error::invalid(format!(
                "{}: no training arguments stored (--dataset {} builds its dataset from them)",
                self.checkpoint.display(),
                self.dataset
            )));
        };
        args.get(key).ok_or_else(|| {
            Error::invalid(format!(
                "{}: the stored training arguments have no {key:?} (needed by --dataset {})",
                self.checkpoint.display(),
                self.dataset
            ))
        })
    }

    fn wrong(&self, key: &str, expected: &str, v: &Value) -> Error {
        Error::invalid(format!(
            "{}: stored training argument {key:?} is {v}, expected {expected}",
            self.checkpoint.display()
        ))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    fn f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    fn bool(&self, key: &str) -> Result<bool> {
        let v = self.get(key)?;
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64() != Some(0)),
            _ => Err(self.wrong(key, "a boolean", v)),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let v = self.get(key)?;
        match v {
            Value::Null => Ok(None),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.wrong(key, "a list of strings or None", v))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            _ => Err(self.wrong(key, "a list of strings or None", v)),
        }
    }

    /// `key`, or `default` when the arguments (or the key) are absent.
    fn or<T>(&self, key: &str, default: T, read: impl Fn(&Self, &str) -> Result<T>) -> Result<T> {
        match self.args {
            Some(a) if a.contains_key(key) => read(self, key),
            _ => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vocab() -> Vocab {
        crate::data::synthetic::shapes_vocab()
    }

    fn paths(dir: &Path) -> DataPaths {
        DataPaths {
            vg_h5: Some(dir.join("val.h5")),
            vg_image_dir: dir.to_path_buf(),
            coco_image_dir: dir.to_path_buf(),
            instances_json: dir.join("instances.json"),
            stuff_json: dir.join("stuff.json"),
        }
    }

    #[test]
    fn shapes_from_a_checkpoint_without_arguments_uses_the_training_defaults() {
        let dir = std::env::temp_dir();
        let o = DatasetOptions::from_stored_args(
            DatasetKind::Shapes,
            Split::Val,
            None,
            Path::new("x.safetensors"),
            &paths(&dir),
            (32, 32),
            1000,
            &vocab(),
        )
        .unwrap();
        assert_eq!((o.mask_size, o.min_objects_per_image), (16, 3));
        assert_eq!(o.min_object_size, 0.02);
        assert_eq!((o.shapes_num_images, o.max_samples), (256, Some(1000)));
        let ds = open_dataset(DatasetKind::Shapes, Split::Val, &o, &crate::report::Quiet).unwrap();
        assert_eq!(
            ds.len(),
            256,
            "capped by --shapes_num_val, not --num_samples"
        );
    }

    #[test]
    fn coco_test_split_is_val2017_after_the_first_1024_images() {
        use crate::data::synthetic::export_coco::{CocoExportOptions, write_coco};
        let dir = std::env::temp_dir().join(format!("sg2im-coco-test-{}", std::process::id()));
        let export = |num_val: usize| {
            let _ = std::fs::remove_dir_all(&dir);
            let mut e = CocoExportOptions::new(0);
            e.num_val = num_val;
            e.image_size = Some((16, 16));
            write_coco(&dir, &e).unwrap();
        };
        let opts = |max_samples: Option<usize>| DatasetOptions {
            image_size: (16, 16),
            max_samples,
            coco: CocoConfig {
                image_dir: dir.join("images/val2017"),
                instances_json: dir.join("annotations/instances_val2017.json"),
                stuff_json: Some(dir.join("annotations/stuff_val2017.json")),
                ..CocoConfig::default_val()
            },
            ..DatasetOptions::default()
        };
        let open =
            |split, max| open_dataset(DatasetKind::Coco, split, &opts(max), &crate::report::Quiet);
        export(COCO_VAL_IMAGES + 3);
        let val = open(Split::Val, None).unwrap();
        assert_eq!(
            val.len(),
            COCO_VAL_IMAGES + 3,
            "every synthetic image passes"
        );
        let test = open(Split::Test, None).unwrap();
        assert_eq!(test.len(), 3);
        for i in 0..3 {
            let (t, v) = (
                test.get(i, 7).unwrap(),
                val.get(COCO_VAL_IMAGES + i, 7).unwrap(),
            );
            assert_eq!((t.objs, t.boxes, t.image), (v.objs, v.boxes, v.image));
        }
        assert_eq!(
            open(Split::Test, Some(2)).unwrap().len(),
            2,
            "--num_samples caps it"
        );
        export(5);
        let err = open(Split::Test, None).err().unwrap().to_string();
        assert!(
            err.contains("--coco_val_instances_json")
                && err.contains("instances_val2017.json")
                && err.contains("leaves only 5 images"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn data_paths_default_to_the_flags_defaults() {
        let d = DataPaths::default();
        assert_eq!(d.vg_h5, None);
        assert_eq!(d.vg_image_dir, Path::new("datasets/vg/images"));
        assert_eq!(
            d.stuff_json,
            Path::new("~/datasets/coco/2017/annotations/stuff_val2017.json")
        );
    }

    #[test]
    fn vg_h5_defaults_to_the_splits_file() {
        let mut p = paths(Path::new("/d"));
        assert_eq!(
            p.vg_h5(Split::Test),
            Path::new("/d/val.h5"),
            "the flag wins"
        );
        p.vg_h5 = None;
        assert_eq!(p.vg_h5(Split::Val), Path::new("datasets/vg/val.h5"));
        assert_eq!(p.vg_h5(Split::Test), Path::new("datasets/vg/test.h5"));
    }

    #[test]
    fn coco_include_other_defaults_to_true_only_when_absent_from_the_stored_arguments() {
        let dir = std::env::temp_dir().join(format!("sg2im-factory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["instances.json", "stuff.json"] {
            std::fs::write(dir.join(f), "{}").unwrap();
        }
        let mut stored = json!({
            "coco_stuff_only": true,
            "mask_size": 8,
            "min_object_size": 0.05,
            "min_objects_per_image": 2,
            "instance_whitelist": null,
            "stuff_whitelist": ["grass"],
        });
        let read = |stored: &Value| {
            DatasetOptions::from_stored_args(
                DatasetKind::Coco,
                Split::Val,
                stored.as_object(),
                Path::new("x.safetensors"),
                &paths(&dir),
                (64, 64),
                10,
                &vocab(),
            )
        };
        let o = read(&stored).unwrap();
        assert!(o.coco.include_other);
        assert_eq!(o.coco.stuff_whitelist, Some(vec!["grass".to_string()]));
        assert_eq!((o.mask_size, o.min_objects_per_image), (8, 2));
        assert!(o.include_relationships);
        stored["coco_include_other"] = json!(false);
        assert!(!read(&stored).unwrap().coco.include_other);
        stored["mask_size"] = json!("big");
        let err = read(&stored).unwrap_err().to_string();
        assert!(
            err.contains("\"mask_size\" is \"big\", expected a non-negative integer"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
