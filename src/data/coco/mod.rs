//! The COCO-Stuff 2017 scene-graph dataset (§15): the original `CocoSceneGraphDataset`,
//! reproduced filter by filter, with masks decoded as pycocotools does and relationships
//! drawn with CPython's RNG.
//!
//! Construction reads the instances (and optional stuff) JSON, applies every filter of §15.3
//! and validates the segmentations of every object the dataset can yield, so malformed
//! annotations are reported before training starts, by annotation id and field.
//!
//! [`CocoSceneGraphDataset::get`] returns `Err` for a per-item problem — an image that is
//! missing, unreadable or not a decodable JPEG/PNG — after counting it
//! ([`CocoSceneGraphDataset::image_failures`]); training loaders skip such items and report
//! the count. Everything else that can go wrong was checked by the constructor.
//!
//! Deviations from the original, all where it would crash: a first polygon of exactly 4
//! numbers is rasterised as a degenerate 2-vertex polygon (pycocotools' wrapper raises
//! `TypeError`); a box whose crop is empty (the original's resize raises) yields an all-zero
//! mask, counted in [`CocoSceneGraphDataset::empty_crops`].

mod dump;
pub mod geometry;
mod json;

pub use dump::dump_coco;

pub use geometry::{
    PRED_NAMES, crop_and_resize_mask, crop_bounds, draw_relationships, object_centers,
    predicate_for,
};

use crate::data::image;
use crate::data::rle::Segmentation;
use crate::data::{Sample, SceneGraphDataset};
use crate::rng::PyRandom;
use crate::vocab::{IMAGE_OBJECT, Vocab};
use crate::{Error, Result};
use indexmap::IndexMap;
use json::{Counts, RawAnnotation, RawFile, RawSeg};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The command-line flags that set the dataset's paths, named in "file not found" errors.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoFlags {
    pub image_dir: String,
    pub instances_json: String,
    pub stuff_json: String,
}

/// Constructor options of the original `CocoSceneGraphDataset` (§15.2).
///
/// `Default` is the training split as `scripts/train.py` builds it with its default flags
/// (paths of §18.1, image 64×64, mask 16, stuff only, no `other`, 3–8 objects, no cap).
#[derive(Debug, Clone, PartialEq)]
pub struct CocoConfig {
    pub image_dir: PathBuf,
    pub instances_json: PathBuf,
    /// `None` (or an empty path, as the original treats `""`) = no stuff annotations.
    pub stuff_json: Option<PathBuf>,
    pub stuff_only: bool,
    /// `(H, W)`.
    pub image_size: (usize, usize),
    /// `M`; 0 gives samples with `(O, 0, 0)` masks and box-centre relationships.
    pub mask_size: usize,
    pub normalize_images: bool,
    pub max_samples: Option<usize>,
    pub include_relationships: bool,
    pub min_object_size: f64,
    pub min_objects_per_image: usize,
    pub max_objects_per_image: usize,
    pub include_other: bool,
    pub instance_whitelist: Option<Vec<String>>,
    pub stuff_whitelist: Option<Vec<String>>,
    /// Optional directory of pre-resized images (`<H>x<W>/<image id>.rgb`), filled on first
    /// use and checked against the source file's size and modification time.
    pub image_cache_dir: Option<PathBuf>,
    /// Flag names for error messages.
    pub flags: CocoFlags,
}

impl Default for CocoConfig {
    fn default() -> Self {
        CocoConfig {
            image_dir: "datasets/coco/images/train2017".into(),
            instances_json: "datasets/coco/annotations/instances_train2017.json".into(),
            stuff_json: Some("datasets/coco/annotations/stuff_train2017.json".into()),
            stuff_only: true,
            image_size: (64, 64),
            mask_size: 16,
            normalize_images: true,
            max_samples: None,
            include_relationships: true,
            min_object_size: 0.02,
            min_objects_per_image: 3,
            max_objects_per_image: 8,
            include_other: false,
            instance_whitelist: None,
            stuff_whitelist: None,
            image_cache_dir: None,
            flags: CocoFlags {
                image_dir: "--coco_train_image_dir".into(),
                instances_json: "--coco_train_instances_json".into(),
                stuff_json: "--coco_train_stuff_json".into(),
            },
        }
    }
}

impl CocoConfig {
    /// The validation split as `train.py` builds it: val2017 paths (§18.1 — the code's, not
    /// the documentation's) and `max_samples = --num_val_samples` (1024).
    pub fn default_val() -> Self {
        CocoConfig {
            image_dir: "datasets/coco/images/val2017".into(),
            instances_json: "datasets/coco/annotations/instances_val2017.json".into(),
            stuff_json: Some("datasets/coco/annotations/stuff_val2017.json".into()),
            max_samples: Some(1024),
            flags: CocoFlags {
                image_dir: "--coco_val_image_dir".into(),
                instances_json: "--coco_val_instances_json".into(),
                stuff_json: "--coco_val_stuff_json".into(),
            },
            ..CocoConfig::default()
        }
    }
}

/// One kept annotation, in the dataset's object order.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoObject {
    /// The annotation's `id` (only used to name it in messages; `None` if absent).
    pub ann_id: Option<i64>,
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels of the image file.
    pub bbox: [f64; 4],
    pub segmentation: Segmentation,
}

#[derive(Debug)]
struct Item {
    image_id: i64,
    file_name: String,
    objects: Vec<CocoObject>,
}

/// A sample with the intermediate values the fixtures record (for tests and `dump-dataset`).
#[derive(Debug, Clone)]
pub struct CocoItem {
    pub sample: Sample,
    pub image_id: i64,
    /// `(H, W, 3)`: the resized RGB image before `ToTensor`.
    pub image_u8: Vec<u8>,
    /// `(WW, HH)` of the image file.
    pub original_size: (usize, usize),
    /// `(K, 4)` `[mx0, mx1, my0, my1]` for each real object.
    pub crop_bounds: Vec<[i64; 4]>,
    /// `(K, 2)` `[h, w]` of each crop.
    pub crop_shapes: Vec<[usize; 2]>,
    /// `(K, M, M)` resized crops before `> 128`.
    pub masks_resized: Vec<f64>,
    /// `(O, 2)` centres used for the predicates.
    pub centers: Vec<[f32; 2]>,
}

/// The COCO-Stuff scene-graph dataset (§15). Thread-safe: `get` takes `&self`.
#[derive(Debug)]
pub struct CocoSceneGraphDataset {
    cfg: CocoConfig,
    vocab: Vocab,
    /// Every kept image id in dataset order (before `max_samples`).
    image_ids: Vec<i64>,
    /// The first `len` kept images with their objects.
    items: Vec<Item>,
    total_objects: usize,
    image_failures: AtomicUsize,
    empty_crops: AtomicUsize,
    cache_write_failed: std::sync::Once,
    /// Warnings raised while loading items, until [`SceneGraphDataset::take_warnings`].
    pending_warnings: std::sync::Mutex<Vec<String>>,
    /// What the constructor found worth telling the user (see [`Self::warnings`]).
    warnings: Vec<String>,
}

fn read_file(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(format!(
                "{}: {what} not found (set it with {flag})",
                path.display()
            ))
        } else {
            Error::invalid(format!(
                "{}: cannot read {what}: {e} (set with {flag})",
                path.display()
            ))
        }
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<RawFile<'a>> {
    serde_json::from_slice(bytes).map_err(|e| Error::json(path, &e))
}

/// Names an annotation in messages: by id, or by position when it has none.
fn ann_name(ann: &RawAnnotation, i: usize) -> String {
    match ann.id.0 {
        Ok(id) => format!("annotation id {id}"),
        Err(_) => format!("annotations[{i}] (no valid id)"),
    }
}

fn bad_ann(path: &Path, ann: &RawAnnotation, i: usize, field: &str, e: &str) -> Error {
    Error::invalid(format!(
        "{}: {}: field `{field}`: {e}",
        path.display(),
        ann_name(ann, i)
    ))
}

/// What the constructor needs to know about one image of the `images` table.
struct ImageInfo<'a> {
    file_name: std::borrow::Cow<'a, str>,
    width: i64,
    height: i64,
}

/// `(source file 0 = instances / 1 = stuff, index in its annotations)`.
type AnnRef = (usize, usize);

struct Filter<'x> {
    sizes: &'x HashMap<i64, ImageInfo<'x>>,
    cat_names: &'x HashMap<i64, String>,
    whitelist: HashSet<&'x str>,
    include_other: bool,
    min_object_size: f64,
    instances_path: &'x Path,
}

impl Filter<'_> {
    /// §15.3 steps 4–5 for one file: appends the kept annotations to their image's list and
    /// records which images have any annotation at all.
    fn run(
        &self,
        path: &Path,
        source: usize,
        anns: &[RawAnnotation],
        objects: &mut HashMap<i64, Vec<AnnRef>>,
        seen: &mut HashSet<i64>,
    ) -> Result<()> {
        for (i, ann) in anns.iter().enumerate() {
            let image_id = ann
                .image_id
                .0
                .clone()
                .map_err(|e| bad_ann(path, ann, i, "image_id", &e))?;
            seen.insert(image_id);
            let [_, _, w, h] = ann
                .bbox
                .0
                .clone()
                .map_err(|e| bad_ann(path, ann, i, "bbox", &e))?;
            let Some(info) = self.sizes.get(&image_id) else {
                return Err(bad_ann(
                    path,
                    ann,
                    i,
                    "image_id",
                    &format!(
                        "image {image_id} is not in the `images` list of {}",
                        self.instances_path.display()
                    ),
                ));
            };
            let image_area = info.width * info.height;
            if image_area == 0 {
                return Err(bad_ann(
                    path,
                    ann,
                    i,
                    "image_id",
                    &format!("image {image_id} has width·height = 0 in the `images` list"),
                ));
            }
            let category_id = ann
                .category_id
                .0
                .clone()
                .map_err(|e| bad_ann(path, ann, i, "category_id", &e))?;
            let Some(name) = self.cat_names.get(&category_id) else {
                return Err(bad_ann(
                    path,
                    ann,
                    i,
                    "category_id",
                    &format!("category {category_id} is not in any `categories` list"),
                ));
            };
            // Python: (w * h) / (W * H), the denominator an exact int product.
            let box_ok = (w * h) / (image_area as f64) > self.min_object_size;
            let category_ok = self.whitelist.contains(name.as_str());
            let other_ok = name != "other" || self.include_other;
            if box_ok && category_ok && other_ok {
                objects.entry(image_id).or_default().push((source, i));
            }
        }
        Ok(())
    }
}

impl CocoSceneGraphDataset {
    /// Reads the annotation files and applies every filter of §15.3.
    pub fn new(cfg: CocoConfig) -> Result<Self> {
        let stuff_path = cfg.stuff_json.clone().filter(|p| !p.as_os_str().is_empty());
        let mut warnings = Vec::new();
        if cfg.stuff_only && stuff_path.is_none() {
            warnings.push("WARNING: Got stuff_only=True but stuff_json=None.".to_string());
            warnings.push("Will ignore stuff_only.".to_string());
        }
        if !cfg.image_dir.is_dir() {
            return Err(Error::invalid(format!(
                "{}: image directory not found (set it with {})",
                cfg.image_dir.display(),
                cfg.flags.image_dir
            )));
        }
        let inst_bytes = read_file(
            &cfg.instances_json,
            "instances JSON",
            &cfg.flags.instances_json,
        )?;
        let stuff_bytes = match &stuff_path {
            Some(p) => Some(read_file(p, "stuff JSON", &cfg.flags.stuff_json)?),
            None => None,
        };
        // The two files are independent: parse them on two threads.
        let (inst, stuff) = std::thread::scope(|s| {
            let stuff = s.spawn(|| match (&stuff_path, &stuff_bytes) {
                (Some(p), Some(b)) => parse(p, b).map(Some),
                _ => Ok(None),
            });
            let inst = parse(&cfg.instances_json, &inst_bytes);
            let stuff = stuff
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (inst, stuff)
        });
        let mut inst = inst?;
        let mut stuff = stuff?;
        Self::build(
            cfg,
            stuff_path.as_deref(),
            &mut inst,
            stuff.as_mut(),
            warnings,
        )
    }

    fn build<'a>(
        cfg: CocoConfig,
        stuff_path: Option<&Path>,
        inst: &mut RawFile<'a>,
        stuff: Option<&mut RawFile<'a>>,
        mut warnings: Vec<String>,
    ) -> Result<Self> {
        let inst_path = cfg.instances_json.as_path();
        let missing = |path: &Path, key: &str| {
            Error::invalid(format!("{}: has no `{key}` list", path.display()))
        };

        // §15.3 step 1: the image table, in JSON order.
        let images = inst
            .images
            .as_ref()
            .ok_or_else(|| missing(inst_path, "images"))?;
        let mut image_ids = Vec::with_capacity(images.len());
        let mut sizes: HashMap<i64, ImageInfo> = HashMap::with_capacity(images.len());
        for (i, im) in images.iter().enumerate() {
            let bad = |field: &str, e: &str| {
                Error::invalid(format!(
                    "{}: images[{i}]{}: field `{field}`: {e}",
                    inst_path.display(),
                    im.id
                        .0
                        .as_ref()
                        .map_or(String::new(), |id| format!(" (id {id})"))
                ))
            };
            let id = im.id.0.clone().map_err(|e| bad("id", &e))?;
            let file_name = im.file_name.0.clone().map_err(|e| bad("file_name", &e))?;
            let width = im.width.0.clone().map_err(|e| bad("width", &e))?;
            let height = im.height.0.clone().map_err(|e| bad("height", &e))?;
            image_ids.push(id);
            sizes.insert(
                id,
                ImageInfo {
                    file_name,
                    width,
                    height,
                },
            );
        }

        // Step 2: vocabulary, instance categories then stuff categories.
        let mut name_to_idx: IndexMap<String, i64> = IndexMap::new();
        let mut cat_names: HashMap<i64, String> = HashMap::new();
        let mut instance_names = Vec::new();
        let mut stuff_names = Vec::new();
        let mut read_categories = |path: &Path, file: &RawFile, names: &mut Vec<String>| {
            let cats = file
                .categories
                .as_ref()
                .ok_or_else(|| missing(path, "categories"))?;
            for (i, c) in cats.iter().enumerate() {
                let bad = |field: &str, e: &str| {
                    Error::invalid(format!(
                        "{}: categories[{i}]: field `{field}`: {e}",
                        path.display()
                    ))
                };
                let id = c.id.0.clone().map_err(|e| bad("id", &e))?;
                if id < 0 {
                    return Err(bad(
                        "id",
                        &format!("expected a non-negative id, found {id}"),
                    ));
                }
                let name = c.name.0.clone().map_err(|e| bad("name", &e))?.into_owned();
                names.push(name.clone());
                cat_names.insert(id, name.clone());
                name_to_idx.insert(name, id);
            }
            Ok::<(), Error>(())
        };
        read_categories(inst_path, inst, &mut instance_names)?;
        if let (Some(p), Some(f)) = (stuff_path, stuff.as_deref()) {
            read_categories(p, f, &mut stuff_names)?;
        }

        // Step 3: whitelist.
        let known: HashSet<&str> = cat_names.values().map(String::as_str).collect();
        for name in cfg
            .instance_whitelist
            .iter()
            .chain(cfg.stuff_whitelist.iter())
            .flatten()
        {
            if !known.contains(name.as_str()) {
                warnings.push(format!(
                    "warning: whitelisted category {name:?} is not a category of the dataset"
                ));
            }
        }
        let mut whitelist: HashSet<&str> = HashSet::new();
        let inst_wl = cfg.instance_whitelist.as_ref().unwrap_or(&instance_names);
        let stuff_wl = cfg.stuff_whitelist.as_ref().unwrap_or(&stuff_names);
        whitelist.extend(inst_wl.iter().chain(stuff_wl).map(String::as_str));

        // Steps 4–5: filter the annotations of both files.
        let filter = Filter {
            sizes: &sizes,
            cat_names: &cat_names,
            whitelist,
            include_other: cfg.include_other,
            min_object_size: cfg.min_object_size,
            instances_path: inst_path,
        };
        let mut objects: HashMap<i64, Vec<AnnRef>> = HashMap::new();
        let mut seen = HashSet::new();
        let inst_anns = inst
            .annotations
            .as_ref()
            .ok_or_else(|| missing(inst_path, "annotations"))?;
        filter.run(inst_path, 0, inst_anns, &mut objects, &mut seen)?;
        if let (Some(p), Some(f)) = (stuff_path, stuff.as_deref()) {
            let anns = f
                .annotations
                .as_ref()
                .ok_or_else(|| missing(p, "annotations"))?;
            let mut with_stuff = HashSet::new();
            filter.run(p, 1, anns, &mut objects, &mut with_stuff)?;
            if cfg.stuff_only {
                image_ids.retain(|id| with_stuff.contains(id));
            }
        }

        // Step 6: `__image__` and the id → name list with "NONE" holes.
        name_to_idx.insert(IMAGE_OBJECT.to_string(), 0);
        let mut values: Vec<i64> = name_to_idx.values().copied().collect();
        values.sort_unstable();
        if let Some(w) = values.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(format!(
                "{}: two category names share the id {} (the vocabulary needs one name per id)",
                inst_path.display(),
                w[0]
            )));
        }
        let max_idx = values.last().copied().unwrap_or(0) as usize;
        let mut idx_to_name = vec!["NONE".to_string(); max_idx + 1];
        for (name, &idx) in &name_to_idx {
            idx_to_name[idx as usize] = name.clone();
        }
        let vocab = Vocab {
            object_name_to_idx: name_to_idx,
            object_idx_to_name: idx_to_name,
            attribute_name_to_idx: None,
            attribute_idx_to_name: None,
            pred_name_to_idx: PRED_NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i as i64))
                .collect(),
            pred_idx_to_name: PRED_NAMES.iter().map(|n| n.to_string()).collect(),
        };

        // Step 7: prune by object count.
        let count = |id: &i64| objects.get(id).map_or(0, Vec::len);
        image_ids.retain(|id| {
            (cfg.min_objects_per_image..=cfg.max_objects_per_image).contains(&count(id))
        });
        let len = cfg
            .max_samples
            .map_or(image_ids.len(), |m| m.min(image_ids.len()));
        // `if self.max_samples and i >= self.max_samples`: a cap of 0 counts everything.
        let total_objects = image_ids
            .iter()
            .take(cfg.max_samples.filter(|&m| m > 0).unwrap_or(usize::MAX))
            .map(count)
            .sum();

        // Materialise and validate the objects of the images the dataset can yield.
        let mut files: Vec<(&Path, &mut Vec<RawAnnotation<'a>>)> = Vec::new();
        files.push((inst_path, inst.annotations.as_mut().expect("checked above")));
        if let (Some(p), Some(f)) = (stuff_path, stuff) {
            files.push((p, f.annotations.as_mut().expect("checked above")));
        }
        let mut items = Vec::with_capacity(len);
        for &image_id in &image_ids[..len] {
            let mut objs = Vec::new();
            for &(source, i) in objects.get(&image_id).map_or(&[][..], Vec::as_slice) {
                let path = files[source].0;
                let ann = &mut files[source].1[i];
                let seg = std::mem::replace(&mut ann.segmentation.0, Err(String::new()));
                let seg = match seg {
                    Err(e) => return Err(bad_ann(path, ann, i, "segmentation", &e)),
                    Ok(RawSeg::Polygons(p)) => Segmentation::Polygons(p),
                    Ok(RawSeg::Rle {
                        counts: Counts::Runs(c),
                        size: [h, w],
                    }) => Segmentation::Uncompressed { h, w, counts: c },
                    Ok(RawSeg::Rle {
                        counts: Counts::Compressed(s),
                        size: [h, w],
                    }) => Segmentation::Compressed {
                        h,
                        w,
                        counts: s.into_owned(),
                    },
                };
                seg.validate()
                    .map_err(|e| bad_ann(path, ann, i, "segmentation", &e))?;
                objs.push(CocoObject {
                    ann_id: ann.id.0.clone().ok(),
                    category_id: ann.category_id.0.clone().expect("checked by the filter"),
                    bbox: ann.bbox.0.clone().expect("checked by the filter"),
                    segmentation: seg,
                });
            }
            items.push(Item {
                image_id,
                file_name: sizes[&image_id].file_name.to_string(),
                objects: objs,
            });
        }

        Ok(CocoSceneGraphDataset {
            cfg,
            vocab,
            image_ids,
            items,
            total_objects,
            image_failures: AtomicUsize::new(0),
            empty_crops: AtomicUsize::new(0),
            cache_write_failed: std::sync::Once::new(),
            pending_warnings: std::sync::Mutex::new(Vec::new()),
            warnings,
        })
    }

    /// Lines the original printed while reading the files (`stuff_only` without stuff
    /// annotations) and whitelisted names that are not categories; the caller shows them
    /// (the CLI on stderr).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn config(&self) -> &CocoConfig {
        &self.cfg
    }

    /// Every kept image id in dataset order (before the `max_samples` cap).
    pub fn image_ids(&self) -> &[i64] {
        &self.image_ids
    }

    /// Number of objects over the first `max_samples` images (`total_objects()`).
    pub fn total_objects(&self) -> usize {
        self.total_objects
    }

    /// The kept annotations of sample `index`, in object order.
    pub fn objects(&self, index: usize) -> &[CocoObject] {
        &self.items[index].objects
    }

    /// The image file of sample `index`.
    pub fn image_path(&self, index: usize) -> PathBuf {
        self.cfg.image_dir.join(&self.items[index].file_name)
    }

    /// How many `get` calls failed on an unreadable or corrupt image so far.
    pub fn image_failures(&self) -> usize {
        self.image_failures.load(Ordering::Relaxed)
    }

    /// How many object crops were empty (all-zero mask; the original would raise).
    pub fn empty_crops(&self) -> usize {
        self.empty_crops.load(Ordering::Relaxed)
    }

    /// Sample `index` with its intermediate values; relationships drawn from
    /// `random.seed(seed)`.
    pub fn get_item(&self, index: usize, seed: u64) -> Result<CocoItem> {
        let item = self.items.get(index).ok_or_else(|| {
            Error::invalid(format!(
                "COCO sample index {index} is out of range (dataset length {})",
                self.items.len()
            ))
        })?;
        let (h, w) = self.cfg.image_size;
        let path = self.cfg.image_dir.join(&item.file_name);
        let (image_u8, (ww, hh)) = self.load_image(item.image_id, &path).inspect_err(|_| {
            self.image_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        let image = crate::imagenet::preprocess_u8_hwc(&image_u8, h, w, self.cfg.normalize_images);

        let m = self.cfg.mask_size;
        let k = item.objects.len();
        let mut objs = Vec::with_capacity(k + 1);
        let mut boxes = Vec::with_capacity(k + 1);
        let mut masks = Vec::with_capacity((k + 1) * m * m);
        let mut masks_resized = Vec::with_capacity(k * m * m);
        let mut crop_bounds_v = Vec::with_capacity(k);
        let mut crop_shapes = Vec::with_capacity(k);
        let (wwf, hhf) = (ww as f64, hh as f64);
        for obj in &item.objects {
            objs.push(obj.category_id);
            let [x, y, bw, bh] = obj.bbox;
            boxes.push([
                (x / wwf) as f32,
                (y / hhf) as f32,
                ((x + bw) / wwf) as f32,
                ((y + bh) / hhf) as f32,
            ]);
            let b = crop_bounds(obj.bbox);
            crop_bounds_v.push(b);
            if m == 0 {
                continue;
            }
            let rle = obj.segmentation.to_rle(hh, ww).map_err(|e| {
                Error::invalid(format!(
                    "{}: annotation id {:?}: field `segmentation`: {e}",
                    path.display(),
                    obj.ann_id
                ))
            })?;
            let (crop, ch, cw) = geometry::crop_rle(&rle, b);
            if ch == 0 || cw == 0 {
                self.empty_crops.fetch_add(1, Ordering::Relaxed);
            }
            crop_shapes.push([ch, cw]);
            let resized = geometry::resize_crop(&crop, ch, cw, m);
            masks.extend(geometry::threshold(&resized));
            masks_resized.extend(resized);
        }
        objs.push(self.vocab.image_object()?);
        boxes.push([0.0, 0.0, 1.0, 1.0]);
        masks.extend(std::iter::repeat_n(1u8, m * m));

        let centers = object_centers(&boxes, &masks, m);
        let mut rng = PyRandom::seed(seed);
        let triples =
            draw_relationships(&boxes, &centers, self.cfg.include_relationships, &mut rng);
        Ok(CocoItem {
            sample: Sample {
                image,
                image_size: (h, w),
                objs,
                boxes,
                masks: Some(masks),
                mask_size: m,
                triples,
            },
            image_id: item.image_id,
            image_u8,
            original_size: (ww, hh),
            crop_bounds: crop_bounds_v,
            crop_shapes,
            masks_resized,
            centers,
        })
    }

    /// The resized `(H, W, 3)` image and the file's `(WW, HH)`, from the cache when enabled.
    fn load_image(&self, image_id: i64, path: &Path) -> Result<(Vec<u8>, (usize, usize))> {
        let (h, w) = self.cfg.image_size;
        let read_err = |e: std::io::Error| {
            Error::invalid(format!(
                "{}: cannot read image: {e} (image directory set by {})",
                path.display(),
                self.cfg.flags.image_dir
            ))
        };
        let Some(cache_dir) = &self.cfg.image_cache_dir else {
            let bytes = std::fs::read(path).map_err(read_err)?;
            return decode_and_resize(path, &bytes, w, h);
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let stamp = cache_stamp(&meta);
        let cache_path = cache_dir
            .join(format!("{h}x{w}"))
            .join(format!("{image_id}.rgb"));
        if let Ok(bytes) = std::fs::read(&cache_path)
            && let Some(hit) = read_cache(&bytes, stamp, h, w)
        {
            return Ok(hit);
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let (rgb, (ww, hh)) = decode_and_resize(path, &bytes, w, h)?;
        let mut out = Vec::with_capacity(CACHE_HEADER + rgb.len());
        out.extend_from_slice(CACHE_MAGIC);
        for v in [ww as u64, hh as u64, stamp.0, stamp.1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&rgb);
        let written = cache_path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| Error::io(&cache_path, e))
            .and_then(|_| crate::io::atomic::write_bytes_atomic(&cache_path, &out));
        if let Err(e) = written {
            self.cache_write_failed.call_once(|| {
                if let Ok(mut w) = self.pending_warnings.lock() {
                    w.push(format!("warning: image cache disabled for writing: {e}"));
                }
            });
        }
        Ok((rgb, (ww, hh)))
    }
}

const CACHE_MAGIC: &[u8; 8] = b"SG2IMRGB";
const CACHE_HEADER: usize = 8 + 4 * 8;

/// `(file length, modification time in ns)`: a cached image is reused only while both match.
fn cache_stamp(meta: &std::fs::Metadata) -> (u64, u64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    (meta.len(), mtime)
}

fn read_cache(
    bytes: &[u8],
    stamp: (u64, u64),
    h: usize,
    w: usize,
) -> Option<(Vec<u8>, (usize, usize))> {
    if bytes.len() != CACHE_HEADER + h * w * 3 || &bytes[..8] != CACHE_MAGIC {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    if (word(2), word(3)) != stamp {
        return None;
    }
    Some((
        bytes[CACHE_HEADER..].to_vec(),
        (word(0) as usize, word(1) as usize),
    ))
}

fn decode_and_resize(
    path: &Path,
    bytes: &[u8],
    w: usize,
    h: usize,
) -> Result<(Vec<u8>, (usize, usize))> {
    let (rgb, ww, hh) = image::decode_rgb(bytes)
        .map_err(|msg| Error::invalid(format!("{}: {msg}", path.display())))?;
    Ok((image::resize_bilinear_pillow(&rgb, ww, hh, w, h), (ww, hh)))
}

impl SceneGraphDataset for CocoSceneGraphDataset {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// See the module docs: `Err` means this item's image could not be used (counted).
    fn get(&self, index: usize, seed: u64) -> Result<Sample> {
        self.get_item(index, seed).map(|item| item.sample)
    }

    fn take_warnings(&self) -> Vec<String> {
        self.pending_warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}
