//! `preprocess_vg.py` (§17): raw Visual Genome JSON → `<split>.h5` + `vocab.json`, with the
//! same datasets, dtypes, shapes, values and vocabulary order as the original.
//!
//! The original loads each JSON file whole (tens of GB of Python objects for the real VG). Here
//! each file is streamed once, element by element, and only what later steps read is kept, in
//! compact form: per object its id, box and aliased names (interned), per relationship its id,
//! predicate and endpoints, per attribute record its object id and attribute strings
//! (interned). Relationships and attribute records whose object cannot be a kept object are
//! dropped as they stream by, since encoding would skip them anyway.
//!
//! Every quirk listed in the fixture README is reproduced (see the comments at each step):
//! Counter tie order, first-seen predicate order, predicates normalised only for the training
//! split, raw-name alias lookup, "last record wins" for repeated ids, attribute cap, padding and
//! int64 → int32 wrapping, and `np.asarray([])` giving float64 `(0,)` arrays.
//!
//! Deviations, all for input the original crashes on (KeyError/TypeError): split ids missing
//! from `image_data.json` are dropped and reported; split images missing from `objects.json`,
//! `relationships.json` or `attributes.json` are skipped and counted in the split's skip
//! statistics (`missing_from_objects_json`, …); non-integer boxes of kept objects are an error.

mod python;
mod stream;

pub use stream::Num;

use crate::io::hdf5::{WriteData, write_file};
use crate::{Error, Result};
use indexmap::IndexMap;
use python::{image_path_from_url, py_join, py_lower, py_strip, shape_repr};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The original's default `--splits_json`, a path inside its source tree.
pub const DEFAULT_SPLITS_JSON: &str = "sg2im/data/vg_splits.json";

/// The original's `sg2im/data/vg_splits.json` (86 463 train, 10 807 val, 10 807 test image ids),
/// built into the binary: users of a Rust binary have no `sg2im/` source tree, so the default
/// `--splits_json` falls back to this copy when that path does not exist.
pub const BUILTIN_VG_SPLITS: &str = include_str!("../../../data/vg_splits.json");

/// Every flag of `preprocess_vg.py`, same names and defaults (§17.1).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessVgConfig {
    pub splits_json: PathBuf,
    pub images_json: PathBuf,
    pub objects_json: PathBuf,
    pub attributes_json: PathBuf,
    pub object_aliases: PathBuf,
    pub relationship_aliases: PathBuf,
    pub relationships_json: PathBuf,
    pub min_image_size: i64,
    pub train_split: String,
    pub min_object_instances: i64,
    pub min_attribute_instances: i64,
    pub min_object_size: i64,
    pub min_objects_per_image: i64,
    pub max_objects_per_image: i64,
    pub max_attributes_per_image: i64,
    pub min_relationship_instances: i64,
    pub min_relationships_per_image: i64,
    pub max_relationships_per_image: i64,
    pub output_vocab_json: PathBuf,
    pub output_h5_dir: PathBuf,
    /// Report reading progress on stderr (not a flag of the original).
    pub progress: bool,
}

impl Default for PreprocessVgConfig {
    fn default() -> Self {
        PreprocessVgConfig {
            splits_json: DEFAULT_SPLITS_JSON.into(),
            images_json: "datasets/vg/image_data.json".into(),
            objects_json: "datasets/vg/objects.json".into(),
            attributes_json: "datasets/vg/attributes.json".into(),
            object_aliases: "datasets/vg/object_alias.txt".into(),
            relationship_aliases: "datasets/vg/relationship_alias.txt".into(),
            relationships_json: "datasets/vg/relationships.json".into(),
            min_image_size: 200,
            train_split: "train".into(),
            min_object_instances: 2000,
            min_attribute_instances: 2000,
            min_object_size: 32,
            min_objects_per_image: 3,
            max_objects_per_image: 30,
            max_attributes_per_image: 30,
            min_relationship_instances: 500,
            min_relationships_per_image: 1,
            max_relationships_per_image: 30,
            output_vocab_json: "datasets/vg/vocab.json".into(),
            output_h5_dir: "datasets/vg".into(),
            progress: false,
        }
    }
}

/// What one run produced, for callers and tests (the same numbers are printed).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessSummary {
    pub splits: Vec<SplitSummary>,
    pub num_object_categories: usize,
    pub num_attribute_categories: usize,
    pub num_predicates: usize,
    /// Objects of split images with `w` or `h` below `min_object_size`.
    pub objects_too_small: u64,
    /// Distinct kept object ids.
    pub object_instances: usize,
    pub h5_paths: Vec<PathBuf>,
    /// Notes and warnings for the user (the CLI prints them on stderr): the built-in split
    /// list was used, split image ids missing from the image data.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitSummary {
    pub name: String,
    /// Images written to the split's HDF5 file.
    pub num_images: usize,
    pub removed_too_small: u64,
    /// Split ids without an `image_data.json` entry (the original would crash on them).
    pub missing_from_image_data: u64,
    /// Skip statistics in first-occurrence order, as printed.
    pub skip_stats: Vec<(String, u64)>,
    pub num_objects: usize,
    pub num_relationships: usize,
}

// ---------------------------------------------------------------------------------------------
// Input records (only the fields the original reads; everything else is skipped unparsed).

#[derive(Deserialize)]
struct ImageRecord {
    image_id: i64,
    width: Num,
    height: Num,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct ObjectsEntry {
    image_id: i64,
    objects: Vec<ObjectRecord>,
}

#[derive(Deserialize)]
struct ObjectRecord {
    object_id: i64,
    names: Vec<String>,
    x: Num,
    y: Num,
    w: Num,
    h: Num,
}

#[derive(Deserialize)]
struct AttributesEntry {
    image_id: i64,
    attributes: Vec<AttributeRecord>,
}

#[derive(Deserialize)]
struct AttributeRecord {
    object_id: i64,
    #[serde(default)]
    attributes: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RelationshipsEntry {
    image_id: i64,
    relationships: Vec<RelationshipRecord>,
}

#[derive(Deserialize)]
struct RelationshipRecord {
    relationship_id: i64,
    predicate: String,
    subject: Endpoint,
    object: Endpoint,
}

#[derive(Deserialize)]
struct Endpoint {
    object_id: i64,
}

// ---------------------------------------------------------------------------------------------
// Compact in-memory state.

/// Strings seen in the input, numbered in order of first appearance.
#[derive(Default)]
struct Interner {
    ids: FastMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn get_or_insert(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
}

/// `collections.Counter` restricted to what `most_common` needs: counts plus the order in
/// which keys were first inserted (ties keep that order, `sorted` being stable).
#[derive(Default)]
struct Counter {
    counts: Vec<u64>,
    order: Vec<u32>,
}

impl Counter {
    fn add(&mut self, key: u32) {
        let k = key as usize;
        if self.counts.len() <= k {
            self.counts.resize(k + 1, 0);
        }
        if self.counts[k] == 0 {
            self.order.push(key);
        }
        self.counts[k] += 1;
    }

    /// Keys with count ≥ `min`, by count descending, ties in first-insertion order.
    fn most_common_at_least(&self, min: i64) -> Vec<u32> {
        let mut keys: Vec<u32> = self.order.clone();
        keys.sort_by(|a, b| self.counts[*b as usize].cmp(&self.counts[*a as usize]));
        keys.retain(|&k| self.counts[k as usize] as i128 >= min as i128);
        keys
    }

    /// Keys with count ≥ `min` in first-insertion order (a plain `dict`'s `items()`).
    fn first_seen_at_least(&self, min: i64) -> Vec<u32> {
        self.order
            .iter()
            .copied()
            .filter(|&k| self.counts[k as usize] as i128 >= min as i128)
            .collect()
    }
}

/// Hasher for the integer ids and short strings used as keys here: inputs are not
/// adversarial, and SipHash would cost more than everything else done per object.
#[derive(Default, Clone, Copy)]
struct FastHasher(u64);

impl FastHasher {
    fn mix(&mut self, v: u64) {
        // Folded 64×64→128 multiply: every input bit reaches the low and the high bits.
        let m = (self.0 ^ v) as u128 * 0x9e37_79b9_7f4a_7c15u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }
    fn write_u8(&mut self, v: u8) {
        self.mix(v as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.mix(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    fn write_i64(&mut self, v: i64) {
        self.mix(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

const TOO_SMALL: u8 = 1;
const NON_INTEGER_BOX: u8 = 2;

/// One object of `objects.json` (32 bytes; there are millions).
struct StoredObject {
    object_id: i64,
    /// `[x, y, w, h]` as int32 (`astype(np.int32)` wraps out-of-range values the same way);
    /// non-integer values are flagged with `NON_INTEGER_BOX`.
    bbox: [i32; 4],
    /// Range of the object's aliased names in `ObjectStore::names`.
    names_start: u32,
    names_len: u16,
    /// `TOO_SMALL` and `NON_INTEGER_BOX` bits.
    flags: u8,
}

#[derive(Default)]
struct ObjectStore {
    objects: Vec<StoredObject>,
    names: Vec<u32>,
    /// image id → range in `objects` of its last `objects.json` entry.
    by_image: FastMap<i64, (usize, usize)>,
    /// Vocabulary index of each object's final name (−1: none), filled by the filter.
    final_name: Vec<i32>,
}

/// A relationship between two kept objects; endpoints are kept-object numbers (the values of
/// the kept map), which identify object ids one to one.
#[derive(Clone, Copy)]
struct StoredRelationship {
    relationship_id: i64,
    predicate: u32,
    subject: u32,
    object: u32,
}

/// An attribute record of a kept object: its strings are `arena[start..start + len]`;
/// `len == NO_ATTRIBUTES_KEY` for a record without an `attributes` key.
#[derive(Clone, Copy)]
struct StoredAttributes {
    object_id: i64,
    start: u32,
    len: u32,
}

const NO_ATTRIBUTES_KEY: u32 = u32::MAX;

/// A vocabulary: names in index order and the name → index map (later duplicates overwrite
/// the index but keep the first position, as a Python `dict` does).
struct VocabPart {
    idx_to_name: Vec<String>,
    name_to_idx: IndexMap<String, i64>,
}

impl VocabPart {
    fn new(names: Vec<String>) -> Self {
        let mut name_to_idx = IndexMap::new();
        for (i, n) in names.iter().enumerate() {
            name_to_idx.insert(n.clone(), i as i64);
        }
        VocabPart {
            idx_to_name: names,
            name_to_idx,
        }
    }

    /// Index of each interned string in this vocabulary, −1 when absent.
    fn index_of_symbols(&self, interner: &Interner) -> Vec<i64> {
        interner
            .names
            .iter()
            .map(|n| self.name_to_idx.get(n).copied().unwrap_or(-1))
            .collect()
    }
}

/// The arrays of one split's HDF5 file, already int32 (`astype(np.int32)` wraps like `as`).
struct SplitArrays {
    name: String,
    image_ids: Vec<i32>,
    object_ids: Vec<i32>,
    object_names: Vec<i32>,
    object_boxes: Vec<i32>,
    objects_per_image: Vec<i32>,
    relationship_ids: Vec<i32>,
    relationship_subjects: Vec<i32>,
    relationship_predicates: Vec<i32>,
    relationship_objects: Vec<i32>,
    relationships_per_image: Vec<i32>,
    attributes_per_object: Vec<i32>,
    object_attributes: Vec<i32>,
    image_paths: Vec<String>,
}

fn load_aliases(path: &Path, log: &mut dyn Write) -> Result<FastMap<String, String>> {
    say(log, format!("Loading aliases from \"{}\"", path.display()))?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    // Text mode: universal newlines, every line (the last one too) split on commas.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut aliases = FastMap::default();
    for line in text.split_inclusive('\n') {
        let tokens: Vec<&str> = line.split(',').map(py_strip).collect();
        for t in &tokens {
            aliases.insert(t.to_string(), tokens[0].to_string());
        }
    }
    Ok(aliases)
}

fn say(log: &mut dyn Write, line: impl AsRef<str>) -> Result<()> {
    writeln!(log, "{}", line.as_ref())
        .and_then(|_| log.flush())
        .map_err(|e| Error::io("<stdout>", e))
}

fn check_config(cfg: &PreprocessVgConfig) -> Result<()> {
    for (flag, v) in [
        ("--max_objects_per_image", cfg.max_objects_per_image),
        (
            "--max_relationships_per_image",
            cfg.max_relationships_per_image,
        ),
        ("--max_attributes_per_image", cfg.max_attributes_per_image),
    ] {
        if !(1..=1_000_000).contains(&v) {
            return Err(Error::invalid(format!(
                "{flag} must be between 1 and 1000000 (it is the padding width), got {v}"
            )));
        }
    }
    if !uses_builtin_splits(cfg) && !cfg.splits_json.is_file() {
        return Err(Error::invalid(format!(
            "{}: no such file (given by --splits_json)",
            cfg.splits_json.display()
        )));
    }
    for (flag, p) in [
        ("--images_json", &cfg.images_json),
        ("--objects_json", &cfg.objects_json),
        ("--attributes_json", &cfg.attributes_json),
        ("--object_aliases", &cfg.object_aliases),
        ("--relationship_aliases", &cfg.relationship_aliases),
        ("--relationships_json", &cfg.relationships_json),
    ] {
        if !p.is_file() {
            return Err(Error::invalid(format!(
                "{}: no such file (given by {flag})",
                p.display()
            )));
        }
    }
    Ok(())
}

/// True when `--splits_json` was left at the original's default and that file does not exist.
fn uses_builtin_splits(cfg: &PreprocessVgConfig) -> bool {
    cfg.splits_json == Path::new(DEFAULT_SPLITS_JSON) && !cfg.splits_json.exists()
}

/// Runs the whole pipeline, printing the original's messages to `log` (stdout in the CLI) and
/// progress to stderr when `cfg.progress`. Outputs are written only when everything succeeded,
/// each atomically.
pub fn preprocess_vg(cfg: &PreprocessVgConfig, log: &mut dyn Write) -> Result<PreprocessSummary> {
    check_config(cfg)?;
    let mut warnings = Vec::new();
    let Splits {
        images,
        mut summaries,
        kept: kept_splits,
    } = load_splits(cfg, log, &mut warnings)?;
    let train_ids: FastSet<i64> = kept_splits
        .get(&cfg.train_split)
        .ok_or_else(|| {
            Error::invalid(format!(
                "--train_split \"{}\" is not a split of {} (it has: {})",
                cfg.train_split,
                cfg.splits_json.display(),
                kept_splits.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?
        .iter()
        .copied()
        .collect();
    let split_ids: FastSet<i64> = kept_splits.values().flatten().copied().collect();
    let sets = SplitSets {
        train: &train_ids,
        any: &split_ids,
    };

    let obj_aliases = load_aliases(&cfg.object_aliases, log)?;
    let rel_aliases = load_aliases(&cfg.relationship_aliases, log)?;
    let (mut store, object_names, object_vocab) = read_objects(cfg, log, sets, &obj_aliases)?;
    // Object filter (printed after the attribute vocabulary, as in the original).
    let (kept, too_small) = filter_objects(&mut store, &object_vocab, &object_names);
    drop(object_names);

    // Attributes and relationships only depend on the kept objects: stream both files at once
    // (two threads), print the original's messages in its order afterwards.
    say(
        log,
        format!(
            "Loading attributes from \"{}\"",
            cfg.attributes_json.display()
        ),
    )?;
    let (attributes, relationships) = std::thread::scope(|scope| {
        let rels = scope.spawn(|| read_relationships(cfg, sets, &kept, &rel_aliases));
        let attrs = read_attributes(cfg, sets, &kept);
        let rels = rels
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("relationship reader thread panicked")));
        (attrs, rels)
    });
    let attributes = attributes?;
    let relationships = relationships?;
    let attribute_vocab = attribute_vocab(cfg, log, &attributes, train_ids.len())?;
    let attribute_index = attribute_vocab.index_of_symbols(&attributes.names);
    say(
        log,
        format!(
            "Skipped {too_small} objects with size < {}",
            cfg.min_object_size
        ),
    )?;
    say(
        log,
        format!("After filtering there are {} object instances", kept.len()),
    )?;
    let pred_vocab = predicate_vocab(cfg, log, &relationships)?;
    let pred_index = pred_vocab.index_of_symbols(&relationships.predicates);

    // Encoding.
    say(log, "Encoding objects and relationships ...")?;
    let encoder = Encoder {
        cfg,
        store: &store,
        kept: &kept,
        relationships: &relationships.records,
        relationships_by_image: &relationships.by_image,
        pred_index: &pred_index,
        attribute_records: &attributes.records,
        attributes_by_image: &attributes.by_image,
        attribute_arena: &attributes.arena,
        attribute_index: &attribute_index,
    };
    let mut arrays = Vec::new();
    for (k, (name, ids)) in kept_splits.iter().enumerate() {
        let (a, stats) = encoder.encode_split(name, ids, &images)?;
        say(log, format!("Skip stats for split \"{name}\""))?;
        for (stat, count) in &stats {
            say(log, format!("{stat} {count}"))?;
        }
        say(log, "")?;
        let s = &mut summaries[k];
        s.num_images = a.image_ids.len();
        s.num_objects = a.object_attributes.len() / cfg.max_attributes_per_image as usize;
        s.num_relationships = a.relationships_per_image.iter().map(|&r| r as usize).sum();
        s.skip_stats = stats;
        arrays.push(a);
    }
    drop(store);
    drop(relationships);
    drop(attributes);

    let vocab_json = vocab_json(&object_vocab, &attribute_vocab, &pred_vocab);
    write_outputs(cfg, log, &arrays, &vocab_json)?;
    Ok(PreprocessSummary {
        h5_paths: arrays
            .iter()
            .map(|a| cfg.output_h5_dir.join(format!("{}.h5", a.name)))
            .collect(),
        splits: summaries,
        warnings,
        num_object_categories: object_vocab.idx_to_name.len(),
        num_attribute_categories: attribute_vocab.idx_to_name.len(),
        num_predicates: pred_vocab.idx_to_name.len(),
        objects_too_small: too_small,
        object_instances: kept.len(),
    })
}

/// The splits (file key order) with the image records of their ids, small and unknown images
/// removed.
struct Splits {
    images: FastMap<i64, ImageRecord>,
    summaries: Vec<SplitSummary>,
    /// Split name → kept image ids.
    kept: IndexMap<String, Vec<i64>>,
}

fn load_splits(
    cfg: &PreprocessVgConfig,
    log: &mut dyn Write,
    warnings: &mut Vec<String>,
) -> Result<Splits> {
    let splits_text = if uses_builtin_splits(cfg) {
        warnings.push(format!(
            "{DEFAULT_SPLITS_JSON} not found: using the built-in copy of the original's vg_splits.json"
        ));
        BUILTIN_VG_SPLITS.to_string()
    } else {
        std::fs::read_to_string(&cfg.splits_json).map_err(|e| Error::io(&cfg.splits_json, e))?
    };
    let splits: IndexMap<String, Vec<i64>> =
        serde_json::from_str(&splits_text).map_err(|e| Error::json(&cfg.splits_json, &e))?;
    drop(splits_text);
    let all_split_ids: FastSet<i64> = splits.values().flatten().copied().collect();

    say(
        log,
        format!("Loading image info from \"{}\"", cfg.images_json.display()),
    )?;
    let mut images: FastMap<i64, ImageRecord> = FastMap::default();
    stream::for_each_element(&cfg.images_json, cfg.progress, |im: ImageRecord| {
        if all_split_ids.contains(&im.image_id) {
            images.insert(im.image_id, im);
        }
        Ok(())
    })?;

    let mut summaries = Vec::new();
    let mut kept_splits: IndexMap<String, Vec<i64>> = IndexMap::new();
    for (name, ids) in &splits {
        let mut kept = Vec::with_capacity(ids.len());
        let (mut too_small, mut missing) = (0u64, 0u64);
        for &id in ids {
            let Some(im) = images.get(&id) else {
                missing += 1;
                continue;
            };
            if im.height.as_f64().min(im.width.as_f64()) < cfg.min_image_size as f64 {
                too_small += 1;
                continue;
            }
            kept.push(id);
        }
        say(
            log,
            format!("Removed {too_small} images from split \"{name}\" for being too small"),
        )?;
        if missing > 0 {
            warnings.push(format!(
                "warning: {missing} image ids of split \"{name}\" in {} are not in {}; they are skipped",
                cfg.splits_json.display(),
                cfg.images_json.display()
            ));
        }
        summaries.push(SplitSummary {
            name: name.clone(),
            num_images: 0,
            removed_too_small: too_small,
            missing_from_image_data: missing,
            skip_stats: Vec::new(),
            num_objects: 0,
            num_relationships: 0,
        });
        kept_splits.insert(name.clone(), kept);
    }
    Ok(Splits {
        images,
        summaries,
        kept: kept_splits,
    })
}

/// Reads the objects of every split image (names aliased) and builds the object vocabulary
/// from the names of training objects: `__image__`, then names with at least
/// `--min_object_instances` instances, most common first.
fn read_objects(
    cfg: &PreprocessVgConfig,
    log: &mut dyn Write,
    sets: SplitSets,
    obj_aliases: &FastMap<String, String>,
) -> Result<(ObjectStore, Interner, VocabPart)> {
    let (train_ids, split_ids) = (sets.train, sets.any);
    // Objects: count names of training objects, keep every split image's objects.
    say(
        log,
        format!("Loading objects from \"{}\"", cfg.objects_json.display()),
    )?;
    let mut object_names = Interner::default();
    let mut name_counter = Counter::default();
    let mut store = ObjectStore::default();
    let mut name_set: Vec<u32> = Vec::new();
    stream::for_each_element(&cfg.objects_json, cfg.progress, |entry: ObjectsEntry| {
        let in_train = train_ids.contains(&entry.image_id);
        if !in_train && !split_ids.contains(&entry.image_id) {
            return Ok(());
        }
        let start = store.objects.len();
        let min_size = cfg.min_object_size as f64;
        for obj in entry.objects {
            let names_start = store.names.len() as u32;
            let names_len = u16::try_from(obj.names.len()).map_err(|_| {
                Error::invalid(format!(
                    "{}: object {} of image {} has {} names (at most 65535 are supported)",
                    cfg.objects_json.display(),
                    obj.object_id,
                    entry.image_id,
                    obj.names.len()
                ))
            })?;
            name_set.clear();
            for raw in &obj.names {
                // The alias lookup uses the raw name: no stripping, no lower-casing.
                let aliased = obj_aliases.get(raw).unwrap_or(raw);
                let sym = object_names.get_or_insert(aliased);
                store.names.push(sym);
                if !name_set.contains(&sym) {
                    name_set.push(sym);
                }
            }
            if in_train {
                // `Counter.update(set)`: each distinct name once per object.
                name_set.iter().for_each(|&s| name_counter.add(s));
            }
            let mut flags = 0;
            if obj.w.as_f64() < min_size || obj.h.as_f64() < min_size {
                flags |= TOO_SMALL;
            }
            let mut bbox = [0i32; 4];
            for (b, v) in bbox.iter_mut().zip([obj.x, obj.y, obj.w, obj.h]) {
                match v {
                    Num::Int(i) => *b = i as i32,
                    Num::Float(_) => flags |= NON_INTEGER_BOX,
                }
            }
            store.objects.push(StoredObject {
                object_id: obj.object_id,
                bbox,
                names_start,
                names_len,
                flags,
            });
        }
        store
            .by_image
            .insert(entry.image_id, (start, store.objects.len()));
        Ok(())
    })?;
    say(
        log,
        format!(
            "Making object vocab from {} training images",
            train_ids.len()
        ),
    )?;
    let mut object_vocab_names = vec![crate::vocab::IMAGE_OBJECT.to_string()];
    object_vocab_names.extend(
        name_counter
            .most_common_at_least(cfg.min_object_instances)
            .into_iter()
            .map(|s| object_names.names[s as usize].clone()),
    );
    drop(name_counter);
    let object_vocab = VocabPart::new(object_vocab_names);
    say(
        log,
        format!(
            "Found {} object categories with >= {} training instances",
            object_vocab.idx_to_name.len(),
            cfg.min_object_instances
        ),
    )?;

    Ok((store, object_names, object_vocab))
}

/// Keeps objects with a vocabulary name that are not too small. Returns object id → index in
/// `store.objects` of its last kept occurrence (its data is what the original's
/// `object_id_to_obj` holds at the end) and the number of too-small objects; records each
/// object's final name in `store.final_name` and frees the name lists.
fn filter_objects(
    store: &mut ObjectStore,
    object_vocab: &VocabPart,
    object_names: &Interner,
) -> (FastMap<i64, u32>, u64) {
    let name_index = object_vocab.index_of_symbols(object_names);
    let mut too_small = 0u64;
    let mut kept: FastMap<i64, u32> =
        FastMap::with_capacity_and_hasher(store.objects.len(), Default::default());
    let mut final_name = Vec::with_capacity(store.objects.len());
    for (i, obj) in store.objects.iter().enumerate() {
        let start = obj.names_start as usize;
        let final_idx = store.names[start..start + obj.names_len as usize]
            .iter()
            .map(|&sym| name_index[sym as usize])
            .find(|&idx| idx >= 0);
        final_name.push(final_idx.map_or(-1, |v| v as i32));
        let small = obj.flags & TOO_SMALL != 0;
        if small {
            too_small += 1;
        }
        if final_idx.is_some() && !small {
            kept.insert(obj.object_id, i as u32);
        }
    }
    store.final_name = final_name;
    store.names = Vec::new();
    (kept, too_small)
}

/// The attribute vocabulary: names with at least `--min_attribute_instances` training
/// instances, most common first.
fn attribute_vocab(
    cfg: &PreprocessVgConfig,
    log: &mut dyn Write,
    attributes: &AttributesPass,
    num_train_images: usize,
) -> Result<VocabPart> {
    say(
        log,
        format!("Making attribute vocab from {num_train_images} training images"),
    )?;
    let attribute_vocab = VocabPart::new(
        attributes
            .counter
            .most_common_at_least(cfg.min_attribute_instances)
            .into_iter()
            .map(|s| attributes.names.names[s as usize].clone())
            .collect(),
    );
    say(
        log,
        format!(
            "Found {} attribute categories with >= {} training instances",
            attribute_vocab.idx_to_name.len(),
            cfg.min_attribute_instances
        ),
    )?;
    Ok(attribute_vocab)
}

/// The predicate vocabulary: `__in_image__`, then predicates with at least
/// `--min_relationship_instances` training instances, in order of first appearance.
fn predicate_vocab(
    cfg: &PreprocessVgConfig,
    log: &mut dyn Write,
    relationships: &RelationshipsPass,
) -> Result<VocabPart> {
    say(
        log,
        format!(
            "Loading relationshps from \"{}\"",
            cfg.relationships_json.display()
        ),
    )?;
    let mut pred_names = vec![crate::vocab::IN_IMAGE_PREDICATE.to_string()];
    pred_names.extend(
        relationships
            .counter
            .first_seen_at_least(cfg.min_relationship_instances)
            .into_iter()
            .map(|s| relationships.predicates.names[s as usize].clone()),
    );
    let pred_vocab = VocabPart::new(pred_names);
    say(
        log,
        format!(
            "Found {} relationship types with >= {} training instances",
            pred_vocab.idx_to_name.len(),
            cfg.min_relationship_instances
        ),
    )?;
    Ok(pred_vocab)
}

/// Every split's HDF5 file and the vocabulary: all written to temporary paths first, published
/// only once all were written.
fn write_outputs(
    cfg: &PreprocessVgConfig,
    log: &mut dyn Write,
    arrays: &[SplitArrays],
    vocab_json: &str,
) -> Result<()> {
    say(log, "Writing HDF5 output files")?;
    std::fs::create_dir_all(&cfg.output_h5_dir).map_err(|e| Error::io(&cfg.output_h5_dir, e))?;
    let out_dir = cfg.output_h5_dir.to_string_lossy().into_owned();
    let mut pending: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        for a in arrays {
            let printed = py_join(&out_dir, &format!("{}.h5", a.name));
            let path = cfg.output_h5_dir.join(format!("{}.h5", a.name));
            say(log, format!("Writing file \"{printed}\""))?;
            let tmp = crate::io::atomic::temp_path_for(&path);
            pending.push((tmp.clone(), path));
            write_split(&tmp, a, cfg, log)?;
            say(log, "Writing image paths")?;
            say(log, "")?;
        }
        say(
            log,
            format!("Writing vocab to \"{}\"", cfg.output_vocab_json.display()),
        )?;
        if let Some(dir) = cfg.output_vocab_json.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        for (tmp, path) in &pending {
            crate::io::atomic::publish(tmp, path)?;
        }
        pending.clear();
        crate::io::atomic::write_bytes_atomic(&cfg.output_vocab_json, vocab_json.as_bytes())
    })();
    for (tmp, _) in &pending {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Image ids of the training split and of any split (after small-image removal).
#[derive(Clone, Copy)]
struct SplitSets<'a> {
    train: &'a FastSet<i64>,
    any: &'a FastSet<i64>,
}

/// What the attribute pass keeps.
struct AttributesPass {
    names: Interner,
    /// Over training records: each record's distinct strings once.
    counter: Counter,
    arena: Vec<u32>,
    /// Records of kept objects only: encoding never looks up others, and dropping them does
    /// not change which record is the last one for an id.
    records: Vec<StoredAttributes>,
    /// image id → range in `records` of its last `attributes.json` entry.
    by_image: FastMap<i64, (usize, usize)>,
}

fn read_attributes(
    cfg: &PreprocessVgConfig,
    sets: SplitSets<'_>,
    kept: &FastMap<i64, u32>,
) -> Result<AttributesPass> {
    let mut pass = AttributesPass {
        names: Interner::default(),
        counter: Counter::default(),
        arena: Vec::new(),
        records: Vec::new(),
        by_image: FastMap::default(),
    };
    let mut set: Vec<u32> = Vec::new();
    stream::for_each_element(
        &cfg.attributes_json,
        cfg.progress,
        |entry: AttributesEntry| {
            let in_train = sets.train.contains(&entry.image_id);
            if !in_train && !sets.any.contains(&entry.image_id) {
                return Ok(());
            }
            let first = pass.records.len();
            for rec in entry.attributes {
                let keep = kept.contains_key(&rec.object_id);
                let (start, len) = match &rec.attributes {
                    None => (0, NO_ATTRIBUTES_KEY),
                    Some(list) => {
                        set.clear();
                        let s = pass.arena.len() as u32;
                        for a in list {
                            let sym = pass.names.get_or_insert(a);
                            if keep {
                                pass.arena.push(sym);
                            }
                            if !set.contains(&sym) {
                                set.push(sym);
                            }
                        }
                        if in_train {
                            // `Counter.update(set)` per record with an `attributes` key.
                            set.iter().for_each(|&x| pass.counter.add(x));
                        }
                        (s, pass.arena.len() as u32 - s)
                    }
                };
                if keep {
                    pass.records.push(StoredAttributes {
                        object_id: rec.object_id,
                        start,
                        len,
                    });
                }
            }
            pass.by_image
                .insert(entry.image_id, (first, pass.records.len()));
            Ok(())
        },
    )?;
    Ok(pass)
}

/// What the relationship pass keeps.
struct RelationshipsPass {
    predicates: Interner,
    /// Normalised predicates of training relationships between kept objects.
    counter: Counter,
    /// Relationships between kept objects (no other can be encoded).
    records: Vec<StoredRelationship>,
    /// image id → range in `records` of its last `relationships.json` entry.
    by_image: FastMap<i64, (usize, usize)>,
}

/// Predicates of training relationships between kept objects are normalised (lower-case,
/// strip, alias) and counted in first-seen order; every other predicate keeps its raw string,
/// so val/test predicates only match the vocabulary verbatim (the original's quirk).
fn read_relationships(
    cfg: &PreprocessVgConfig,
    sets: SplitSets<'_>,
    kept: &FastMap<i64, u32>,
    aliases: &FastMap<String, String>,
) -> Result<RelationshipsPass> {
    let mut pass = RelationshipsPass {
        predicates: Interner::default(),
        counter: Counter::default(),
        records: Vec::new(),
        by_image: FastMap::default(),
    };
    stream::for_each_element(
        &cfg.relationships_json,
        cfg.progress,
        |entry: RelationshipsEntry| {
            let in_train = sets.train.contains(&entry.image_id);
            if !in_train && !sets.any.contains(&entry.image_id) {
                return Ok(());
            }
            let first = pass.records.len();
            for rel in entry.relationships {
                let (Some(&s), Some(&o)) = (
                    kept.get(&rel.subject.object_id),
                    kept.get(&rel.object.object_id),
                ) else {
                    continue;
                };
                let predicate = if in_train {
                    let p = py_lower(&rel.predicate);
                    let p = py_strip(&p);
                    let p = aliases.get(p).map(String::as_str).unwrap_or(p);
                    let sym = pass.predicates.get_or_insert(p);
                    pass.counter.add(sym);
                    sym
                } else {
                    pass.predicates.get_or_insert(&rel.predicate)
                };
                pass.records.push(StoredRelationship {
                    relationship_id: rel.relationship_id,
                    predicate,
                    subject: s,
                    object: o,
                });
            }
            pass.by_image
                .insert(entry.image_id, (first, pass.records.len()));
            Ok(())
        },
    )?;
    Ok(pass)
}

struct Encoder<'a> {
    cfg: &'a PreprocessVgConfig,
    store: &'a ObjectStore,
    kept: &'a FastMap<i64, u32>,
    relationships: &'a [StoredRelationship],
    relationships_by_image: &'a FastMap<i64, (usize, usize)>,
    pred_index: &'a [i64],
    attribute_records: &'a [StoredAttributes],
    attributes_by_image: &'a FastMap<i64, (usize, usize)>,
    attribute_arena: &'a [u32],
    attribute_index: &'a [i64],
}

/// Adds 1 to `stat`, inserting it at the end the first time (a `defaultdict(int)`).
fn bump(stats: &mut Vec<(String, u64)>, stat: &str) {
    match stats.iter_mut().find(|(s, _)| s == stat) {
        Some((_, c)) => *c += 1,
        None => stats.push((stat.to_string(), 1)),
    }
}

impl Encoder<'_> {
    fn encode_split(
        &self,
        name: &str,
        ids: &[i64],
        images: &FastMap<i64, ImageRecord>,
    ) -> Result<(SplitArrays, Vec<(String, u64)>)> {
        let cfg = self.cfg;
        let (p, r, a) = (
            cfg.max_objects_per_image as usize,
            cfg.max_relationships_per_image as usize,
            cfg.max_attributes_per_image as usize,
        );
        let mut out = SplitArrays {
            name: name.to_string(),
            image_ids: Vec::new(),
            object_ids: Vec::new(),
            object_names: Vec::new(),
            object_boxes: Vec::new(),
            objects_per_image: Vec::new(),
            relationship_ids: Vec::new(),
            relationship_subjects: Vec::new(),
            relationship_predicates: Vec::new(),
            relationship_objects: Vec::new(),
            relationships_per_image: Vec::new(),
            attributes_per_object: Vec::new(),
            object_attributes: Vec::new(),
            image_paths: Vec::new(),
        };
        let mut stats = Vec::new();
        // Kept objects of the image: (object id, kept-object number).
        let mut obj_ids: Vec<(i64, u32)> = Vec::new();
        // Kept-object number → local index.
        let mut obj_idx: FastMap<u32, usize> = FastMap::default();
        for &image_id in ids {
            let Some(&(start, end)) = self.store.by_image.get(&image_id) else {
                bump(&mut stats, "missing_from_objects_json");
                continue;
            };
            obj_ids.clear();
            obj_idx.clear();
            for obj in &self.store.objects[start..end] {
                if let Some(&k) = self.kept.get(&obj.object_id) {
                    // A repeated id maps to its last position.
                    obj_idx.insert(k, obj_ids.len());
                    obj_ids.push((obj.object_id, k));
                }
            }
            let n = obj_ids.len();
            if (n as i64) < cfg.min_objects_per_image {
                bump(&mut stats, "too_few_objects");
                continue;
            }
            if (n as i64) > cfg.max_objects_per_image {
                bump(&mut stats, "too_many_objects");
                continue;
            }
            let Some(&(rs, re)) = self.relationships_by_image.get(&image_id) else {
                bump(&mut stats, "missing_from_relationships_json");
                continue;
            };
            let rels: Vec<(i64, usize, i64, usize)> = self.relationships[rs..re]
                .iter()
                .filter_map(|rel| {
                    let pred = self.pred_index[rel.predicate as usize];
                    let s = *obj_idx.get(&rel.subject)?;
                    let o = *obj_idx.get(&rel.object)?;
                    (pred >= 0).then_some((rel.relationship_id, s, pred, o))
                })
                .collect();
            if (rels.len() as i64) < cfg.min_relationships_per_image {
                bump(&mut stats, "too_few_relationships");
                continue;
            }
            if (rels.len() as i64) > cfg.max_relationships_per_image {
                bump(&mut stats, "too_many_relationships");
                continue;
            }
            let Some(&(as_, ae)) = self.attributes_by_image.get(&image_id) else {
                bump(&mut stats, "missing_from_attributes_json");
                continue;
            };
            let Some(im) = images.get(&image_id) else {
                return Err(Error::invalid(format!(
                    "image {image_id} vanished from the image records"
                )));
            };
            let url = im.url.as_deref().ok_or_else(|| {
                Error::invalid(format!(
                    "{}: image {image_id} has no \"url\" (needed for image_paths)",
                    cfg.images_json.display()
                ))
            })?;
            let records = &self.attribute_records[as_..ae];
            for &(id, k) in &obj_ids {
                // The data of the object id's last kept occurrence, wherever that was.
                let obj = &self.store.objects[k as usize];
                if obj.flags & NON_INTEGER_BOX != 0 {
                    return Err(Error::invalid(format!(
                        "{}: object {id} (used by image {image_id}) has a non-integer box \
                         coordinate; boxes must be integer pixels (the original would write a \
                         float64 object_boxes dataset)",
                        cfg.objects_json.display(),
                    )));
                }
                out.object_ids.push(id as i32);
                out.object_names.push(self.store.final_name[k as usize]);
                out.object_boxes.extend_from_slice(&obj.bbox);
                // The last record for this object id wins.
                let attrs = records.iter().rev().find(|rec| rec.object_id == id);
                match attrs.filter(|rec| rec.len != NO_ATTRIBUTES_KEY) {
                    None => {
                        out.object_attributes.extend(std::iter::repeat_n(-1, a));
                        out.attributes_per_object.push(0);
                    }
                    Some(rec) => {
                        let mut row = Vec::with_capacity(a);
                        let (s, len) = (rec.start as usize, rec.len as usize);
                        for &sym in &self.attribute_arena[s..s + len] {
                            let idx = self.attribute_index[sym as usize];
                            if idx >= 0 {
                                row.push(idx as i32);
                            }
                            if row.len() >= a {
                                break;
                            }
                        }
                        out.attributes_per_object.push(row.len() as i32);
                        row.resize(a, -1);
                        out.object_attributes.extend_from_slice(&row);
                    }
                }
            }
            out.object_ids.extend(std::iter::repeat_n(-1, p - n));
            out.object_names.extend(std::iter::repeat_n(-1, p - n));
            out.object_boxes
                .extend(std::iter::repeat_n(-1, 4 * (p - n)));
            out.attributes_per_object
                .extend(std::iter::repeat_n(-1, p - n));
            out.objects_per_image.push(n as i32);
            for &(rid, s, pred, o) in &rels {
                out.relationship_ids.push(rid as i32);
                out.relationship_subjects.push(s as i32);
                out.relationship_predicates.push(pred as i32);
                out.relationship_objects.push(o as i32);
            }
            let pad = r - rels.len();
            out.relationship_ids.extend(std::iter::repeat_n(-1, pad));
            out.relationship_subjects
                .extend(std::iter::repeat_n(-1, pad));
            out.relationship_predicates
                .extend(std::iter::repeat_n(-1, pad));
            out.relationship_objects
                .extend(std::iter::repeat_n(-1, pad));
            out.relationships_per_image.push(rels.len() as i32);
            out.image_ids.push(image_id as i32);
            out.image_paths.push(image_path_from_url(url));
        }
        Ok((out, stats))
    }
}

/// Writes one split's file with the datasets in the original's order, printing each.
fn write_split(
    path: &Path,
    s: &SplitArrays,
    cfg: &PreprocessVgConfig,
    log: &mut dyn Write,
) -> Result<()> {
    let n = s.image_ids.len();
    let (p, r, a) = (
        cfg.max_objects_per_image as usize,
        cfg.max_relationships_per_image as usize,
        cfg.max_attributes_per_image as usize,
    );
    let n_obj = s.object_attributes.len() / a;
    let table: [(&str, &[i32], Vec<usize>); 12] = [
        ("image_ids", &s.image_ids, vec![n]),
        ("object_ids", &s.object_ids, vec![n, p]),
        ("object_names", &s.object_names, vec![n, p]),
        ("object_boxes", &s.object_boxes, vec![n, p, 4]),
        ("objects_per_image", &s.objects_per_image, vec![n]),
        ("relationship_ids", &s.relationship_ids, vec![n, r]),
        (
            "relationship_subjects",
            &s.relationship_subjects,
            vec![n, r],
        ),
        (
            "relationship_predicates",
            &s.relationship_predicates,
            vec![n, r],
        ),
        ("relationship_objects", &s.relationship_objects, vec![n, r]),
        (
            "relationships_per_image",
            &s.relationships_per_image,
            vec![n],
        ),
        (
            "attributes_per_object",
            &s.attributes_per_object,
            vec![n, p],
        ),
        ("object_attributes", &s.object_attributes, vec![n_obj, a]),
    ];
    let empty: [f64; 0] = [];
    let shapes: Vec<Vec<u64>> = table
        .iter()
        .map(|(_, d, shape)| {
            // `np.asarray([])` is float64 of shape (0,).
            if d.is_empty() {
                vec![0]
            } else {
                shape.iter().map(|&x| x as u64).collect()
            }
        })
        .collect();
    let mut datasets = Vec::with_capacity(13);
    for ((name, data, _), shape) in table.iter().zip(&shapes) {
        let (w, dtype) = if data.is_empty() {
            (
                WriteData::F64 {
                    shape,
                    data: &empty,
                },
                "float64",
            )
        } else {
            (WriteData::I32 { shape, data }, "int32")
        };
        let dims: Vec<usize> = shape.iter().map(|&x| x as usize).collect();
        say(
            log,
            format!("Creating datset:  {name} {} {dtype}", shape_repr(&dims)),
        )?;
        datasets.push((*name, w));
    }
    datasets.push(("image_paths", WriteData::VlenStr(&s.image_paths)));
    write_file(path, &datasets)
}

/// `json.dump(vocab, f)` byte for byte.
fn vocab_json(objects: &VocabPart, attributes: &VocabPart, predicates: &VocabPart) -> String {
    let mut out = String::new();
    let part = |out: &mut String, v: &VocabPart, first: bool, prefix: &str| {
        if !first {
            out.push_str(", ");
        }
        python::json_string(out, &format!("{prefix}_name_to_idx"));
        out.push_str(": ");
        let entries: Vec<(&str, i64)> = v
            .name_to_idx
            .iter()
            .map(|(k, &i)| (k.as_str(), i))
            .collect();
        python::json_name_to_idx(out, &entries);
        out.push_str(", ");
        python::json_string(out, &format!("{prefix}_idx_to_name"));
        out.push_str(": ");
        let names: Vec<&str> = v.idx_to_name.iter().map(String::as_str).collect();
        python::json_str_list(out, &names);
    };
    out.push('{');
    part(&mut out, objects, true, "object");
    part(&mut out, attributes, false, "attribute");
    part(&mut out, predicates, false, "pred");
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_common_breaks_ties_by_first_insertion() {
        let mut c = Counter::default();
        for k in [3, 1, 2, 1, 3, 4, 2] {
            c.add(k);
        }
        // counts: 3→2, 1→2, 2→2, 4→1; insertion order 3, 1, 2, 4.
        assert_eq!(c.most_common_at_least(1), vec![3, 1, 2, 4]);
        assert_eq!(c.most_common_at_least(2), vec![3, 1, 2]);
        assert_eq!(c.first_seen_at_least(2), vec![3, 1, 2]);
    }

    #[test]
    fn aliases_map_every_token_to_the_first_and_later_lines_win() {
        let dir = std::env::temp_dir().join(format!("sg2im-alias-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        std::fs::write(&p, "man, guy ,men\r\nt shirt,tshirt \nguy,dude").unwrap();
        let mut log = Vec::new();
        let a = load_aliases(&p, &mut log).unwrap();
        assert_eq!(a["man"], "man");
        assert_eq!(a["men"], "man");
        assert_eq!(a["tshirt"], "t shirt");
        assert_eq!(a["guy"], "guy");
        assert_eq!(a["dude"], "guy");
        assert_eq!(
            String::from_utf8(log).unwrap(),
            format!("Loading aliases from \"{}\"\n", p.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
