//! The Visual Genome scene-graph dataset (`sg2im/data/vg.py`, §16) over the HDF5 files of
//! `preprocess-vg` (ours or the original's).
//!
//! Object selection reproduces the original bit for bit given Python's RNG state: the related
//! objects are collected into a CPython `set` whose iteration order is emulated
//! ([`cpython_int_set_order`]), and subsampling uses `random.sample` of [`PyRandom`] seeded
//! with the `seed` of [`SceneGraphDataset::get`] (the original calls the global `random`, so
//! its draws depend on everything that ran before; seeding per item makes ours reproducible).

use super::{Sample, SceneGraphDataset};
use crate::io::hdf5::{Array, Dtype, H5Reader};
use crate::rng::PyRandom;
use crate::vocab::Vocab;
use crate::{Error, Result};
use std::path::PathBuf;

/// Constructor arguments of `VgSceneGraphDataset` with the values `train.py` passes by default
/// (§16.1, §18.1).
#[derive(Debug, Clone, PartialEq)]
pub struct VgConfig {
    /// `--train_h5` / `--val_h5`.
    pub h5_path: PathBuf,
    /// `--vocab_json`.
    pub vocab_json: PathBuf,
    /// `--vg_image_dir`; `image_paths` entries are relative to it.
    pub image_dir: PathBuf,
    /// `(H, W)`, `--image_size`.
    pub image_size: (usize, usize),
    pub normalize_images: bool,
    /// `--max_objects_per_image`.
    pub max_objects: usize,
    /// `--num_train_samples` (training split only; validation passes `None`).
    pub max_samples: Option<usize>,
    /// `--include_relationships`.
    pub include_relationships: bool,
    /// `--vg_use_orphaned_objects`.
    pub use_orphaned_objects: bool,
}

impl Default for VgConfig {
    fn default() -> Self {
        VgConfig {
            h5_path: "datasets/vg/train.h5".into(),
            vocab_json: "datasets/vg/vocab.json".into(),
            image_dir: "datasets/vg/images".into(),
            image_size: (64, 64),
            normalize_images: true,
            max_objects: 10,
            max_samples: None,
            include_relationships: true,
            use_orphaned_objects: true,
        }
    }
}

/// Visual Genome scene graphs with their images.
pub struct VgSceneGraphDataset {
    cfg: VgConfig,
    vocab: Vocab,
    image_object: i64,
    in_image: i64,
    len: usize,
    /// Width of the per-image object and relationship arrays (30 by default).
    p: usize,
    r: usize,
    image_paths: Vec<String>,
    object_names: Vec<i32>,
    object_boxes: Vec<i32>,
    objects_per_image: Vec<i32>,
    relationship_subjects: Vec<i32>,
    relationship_predicates: Vec<i32>,
    relationship_objects: Vec<i32>,
    relationships_per_image: Vec<i32>,
}

/// Iteration order of a CPython 3.11 `set` of non-negative `int`s built by `add`ing `keys` in
/// order (duplicates ignored), i.e. what `list(that_set)` returns.
///
/// `hash(k) == k`, so a key's home slot is `k & mask`; collisions probe up to 9 following
/// slots (when they fit) and then jump with `i = 5·i + 1 + perturb` (`perturb >>= 5` first);
/// the table starts at 8 slots and is rebuilt 4× the used count once 3/5 full, reinserting in
/// old slot order. Small sets of small keys therefore come out ascending only from 5 elements
/// up: `{8, 1}` (added in that order) iterates `[8, 1]`.
pub fn cpython_int_set_order(keys: impl IntoIterator<Item = u64>) -> Vec<u64> {
    const LINEAR_PROBES: usize = 9;
    fn insert_clean(table: &mut [Option<u64>], key: u64) {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = (key as usize) & mask;
        loop {
            if table[i].is_none() {
                table[i] = Some(key);
                return;
            }
            if i + LINEAR_PROBES <= mask {
                for j in 1..=LINEAR_PROBES {
                    if table[i + j].is_none() {
                        table[i + j] = Some(key);
                        return;
                    }
                }
            }
            perturb >>= 5;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }
    let mut table: Vec<Option<u64>> = vec![None; 8];
    let mut used = 0usize;
    'keys: for key in keys {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = (key as usize) & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in 0..=probes {
                match table[i + j] {
                    None => {
                        table[i + j] = Some(key);
                        used += 1;
                        // No deletions, so fill == used.
                        if used * 5 >= mask * 3 {
                            let min_used = if used > 50_000 { used * 2 } else { used * 4 };
                            let mut size = 8;
                            while size <= min_used {
                                size <<= 1;
                            }
                            let old = std::mem::replace(&mut table, vec![None; size]);
                            for k in old.into_iter().flatten() {
                                insert_clean(&mut table, k);
                            }
                        }
                        continue 'keys;
                    }
                    Some(k) if k == key => continue 'keys,
                    Some(_) => {}
                }
            }
            perturb >>= 5;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }
    table.into_iter().flatten().collect()
}

fn bad(cfg: &VgConfig, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: {msg}", cfg.h5_path.display()))
}

/// An int dataset with its shape; the float64 `(0,)` arrays the original writes for an empty
/// split count as empty.
fn read_ints(r: &H5Reader, name: &str) -> Result<Array<i32>> {
    let info = r.info(name)?;
    if matches!(info.dtype, Dtype::Float { .. }) && info.shape.iter().product::<usize>() == 0 {
        return Ok(Array {
            shape: info.shape,
            data: Vec::new(),
        });
    }
    r.read_i32(name)
}

impl VgSceneGraphDataset {
    /// Reads `cfg.vocab_json` and `cfg.h5_path` (every array the dataset uses, into memory).
    pub fn new(cfg: VgConfig) -> Result<Self> {
        let vocab = Vocab::from_json_file(&cfg.vocab_json)?;
        Self::with_vocab(cfg, vocab)
    }

    /// As [`new`](Self::new) with an already loaded vocabulary (`cfg.vocab_json` is not read).
    pub fn with_vocab(cfg: VgConfig, vocab: Vocab) -> Result<Self> {
        let in_file = |e: Error| Error::invalid(format!("{}: {e}", cfg.vocab_json.display()));
        let image_object = vocab.image_object().map_err(in_file)?;
        let in_image = vocab.in_image_predicate().map_err(in_file)?;
        let r = H5Reader::open(&cfg.h5_path)?;
        let names = read_ints(&r, "object_names")?;
        let n = names.shape.first().copied().unwrap_or(0);
        let p = if names.data.is_empty() {
            0
        } else {
            names.shape.get(1).copied().unwrap_or(0)
        };
        let rel_s = read_ints(&r, "relationship_subjects")?;
        let rr = if rel_s.data.is_empty() {
            0
        } else {
            rel_s.shape.get(1).copied().unwrap_or(0)
        };
        let expect = |a: &Array<i32>, name: &str, shape: &[usize]| -> Result<()> {
            if a.data.is_empty() && n == 0 {
                return Ok(());
            }
            if a.shape != shape {
                return Err(bad(
                    &cfg,
                    format!(
                        "dataset {name:?} has shape {:?}, expected {shape:?}",
                        a.shape
                    ),
                ));
            }
            Ok(())
        };
        expect(&names, "object_names", &[n, p])?;
        let boxes = read_ints(&r, "object_boxes")?;
        expect(&boxes, "object_boxes", &[n, p, 4])?;
        let opi = read_ints(&r, "objects_per_image")?;
        expect(&opi, "objects_per_image", &[n])?;
        expect(&rel_s, "relationship_subjects", &[n, rr])?;
        let rel_p = read_ints(&r, "relationship_predicates")?;
        expect(&rel_p, "relationship_predicates", &[n, rr])?;
        let rel_o = read_ints(&r, "relationship_objects")?;
        expect(&rel_o, "relationship_objects", &[n, rr])?;
        let rpi = read_ints(&r, "relationships_per_image")?;
        expect(&rpi, "relationships_per_image", &[n])?;
        let image_paths = r.read_strings("image_paths")?;
        if image_paths.len() != n {
            return Err(bad(
                &cfg,
                format!(
                    "dataset \"image_paths\" has {} entries, expected {n}",
                    image_paths.len()
                ),
            ));
        }
        // Check every index an item can use, so `get` cannot go out of bounds.
        for i in 0..n {
            let (no, nr) = (opi.data[i], rpi.data[i]);
            if no < 0 || no as usize > p {
                return Err(bad(
                    &cfg,
                    format!("objects_per_image[{i}] = {no} is outside 0..={p}"),
                ));
            }
            if nr < 0 || nr as usize > rr {
                return Err(bad(
                    &cfg,
                    format!("relationships_per_image[{i}] = {nr} is outside 0..={rr}"),
                ));
            }
            // Object and predicate indices go into the embedding tables: within the vocabulary.
            let num_objs = vocab.object_idx_to_name.len();
            for k in 0..no as usize {
                let v = names.data[i * p + k];
                if v < 0 || v as usize >= num_objs {
                    return Err(bad(
                        &cfg,
                        format!(
                            "object_names[{i}, {k}] = {v} is outside 0..{num_objs} (the vocabulary's objects)"
                        ),
                    ));
                }
            }
            let num_preds = vocab.pred_idx_to_name.len();
            for k in 0..nr as usize {
                for (name, a) in [
                    ("relationship_subjects", &rel_s),
                    ("relationship_objects", &rel_o),
                ] {
                    let v = a.data[i * rr + k];
                    if v < 0 || v as usize >= p {
                        return Err(bad(
                            &cfg,
                            format!("{name}[{i}, {k}] = {v} is outside 0..{p}"),
                        ));
                    }
                }
                let v = rel_p.data[i * rr + k];
                if v < 0 || v as usize >= num_preds {
                    return Err(bad(
                        &cfg,
                        format!(
                            "relationship_predicates[{i}, {k}] = {v} is outside 0..{num_preds} (the vocabulary's predicates)"
                        ),
                    ));
                }
            }
        }
        let len = cfg.max_samples.map_or(n, |m| m.min(n));
        Ok(VgSceneGraphDataset {
            cfg,
            vocab,
            image_object,
            in_image,
            len,
            p,
            r: rr,
            image_paths,
            object_names: names.data,
            object_boxes: boxes.data,
            objects_per_image: opi.data,
            relationship_subjects: rel_s.data,
            relationship_predicates: rel_p.data,
            relationship_objects: rel_o.data,
            relationships_per_image: rpi.data,
        })
    }

    pub fn config(&self) -> &VgConfig {
        &self.cfg
    }

    /// The image file of item `index` (`image_dir / image_paths[index]`).
    pub fn image_path(&self, index: usize) -> Option<PathBuf> {
        self.image_paths
            .get(index)
            .map(|p| self.cfg.image_dir.join(p))
    }

    /// The h5 local object indices item `index` uses, in output order (§16.2 step 3), with
    /// `random.sample` drawing from a `PyRandom` seeded with `seed`.
    pub fn select_objects(&self, index: usize, seed: u64) -> Vec<usize> {
        let n = self.objects_per_image[index] as usize;
        let nr = self.relationships_per_image[index] as usize;
        let row = index * self.r;
        let added = (0..nr).flat_map(|k| {
            [
                self.relationship_subjects[row + k] as u64,
                self.relationship_objects[row + k] as u64,
            ]
        });
        let mut obj_idxs: Vec<usize> = cpython_int_set_order(added)
            .into_iter()
            .map(|v| v as usize)
            .collect();
        // set(range(n)) minus discards iterates ascending: every key sits in its home slot.
        let orphans: Vec<usize> = (0..n).filter(|i| !obj_idxs.contains(i)).collect();
        let max = self.cfg.max_objects as i64;
        let mut rng = PyRandom::seed(seed);
        if obj_idxs.len() as i64 > max - 1 {
            // `max_objects`, not `max_objects - 1`: such images keep one more object.
            obj_idxs = rng.sample(&obj_idxs, self.cfg.max_objects);
        }
        if (obj_idxs.len() as i64) < max - 1 && self.cfg.use_orphaned_objects {
            let add = (max as usize - 1 - obj_idxs.len()).min(orphans.len());
            obj_idxs.extend(rng.sample(&orphans, add));
        }
        obj_idxs
    }

    /// Objects, boxes and triples of item `index` for an image file of size `(ww, hh)`.
    fn graph(
        &self,
        index: usize,
        obj_idxs: &[usize],
        (ww, hh): (usize, usize),
    ) -> (Vec<i64>, Vec<[f32; 4]>, Vec<[i64; 3]>) {
        let o = obj_idxs.len() + 1;
        let mut objs = vec![-1i64; o];
        let mut boxes = vec![[0f32, 0., 1., 1.]; o];
        let mut position = vec![usize::MAX; self.p];
        for (i, &k) in obj_idxs.iter().enumerate() {
            objs[i] = self.object_names[index * self.p + k] as i64;
            let b = &self.object_boxes[(index * self.p + k) * 4..][..4];
            let (x, y, w, h) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
            // Python: float(x) / WW in float64, then stored in a FloatTensor.
            boxes[i] = [
                (x as f64 / ww as f64) as f32,
                (y as f64 / hh as f64) as f32,
                ((x + w) as f64 / ww as f64) as f32,
                ((y + h) as f64 / hh as f64) as f32,
            ];
            position[k] = i;
        }
        objs[o - 1] = self.image_object;
        let mut triples = Vec::new();
        if self.cfg.include_relationships {
            let row = index * self.r;
            for k in 0..self.relationships_per_image[index] as usize {
                let s = position[self.relationship_subjects[row + k] as usize];
                let ob = position[self.relationship_objects[row + k] as usize];
                if s != usize::MAX && ob != usize::MAX {
                    let p = self.relationship_predicates[row + k] as i64;
                    triples.push([s as i64, p, ob as i64]);
                }
            }
        }
        for i in 0..o - 1 {
            triples.push([i as i64, self.in_image, o as i64 - 1]);
        }
        (objs, boxes, triples)
    }
}

impl SceneGraphDataset for VgSceneGraphDataset {
    fn len(&self) -> usize {
        self.len
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn get(&self, index: usize, seed: u64) -> Result<Sample> {
        if index >= self.len {
            return Err(Error::invalid(format!(
                "{}: item {index} requested, the dataset has {}",
                self.cfg.h5_path.display(),
                self.len
            )));
        }
        let path = self.cfg.image_dir.join(&self.image_paths[index]);
        let (image, file_size) = crate::data::image::load_resized_normalized(
            &path,
            self.cfg.image_size,
            self.cfg.normalize_images,
        )?;
        let obj_idxs = self.select_objects(index, seed);
        let (objs, boxes, triples) = self.graph(index, &obj_idxs, file_size);
        Ok(Sample {
            image,
            image_size: self.cfg.image_size,
            objs,
            boxes,
            masks: None,
            mask_size: 0,
            triples,
        })
    }
}

/// Every item of `ds` (item `i` drawn with seed `seed + i`) as a safetensors file with keys
/// `"<i, 4 digits>/image"` (float32 `(3, H, W)`), `objs` (int64 `(O,)`), `boxes` (float32
/// `(O, 4)`) and `triples` (int64 `(T, 3)`), the layout the COCO dump uses.
pub fn dump_safetensors(ds: &VgSceneGraphDataset, seed: u64) -> Result<Vec<u8>> {
    use safetensors::{Dtype as St, tensor::TensorView};
    let mut tensors: Vec<(String, St, Vec<usize>, Vec<u8>)> = Vec::new();
    for i in 0..ds.len() {
        let s = ds.get(i, seed.wrapping_add(i as u64))?;
        let (h, w) = s.image_size;
        let f32s = |v: &mut dyn Iterator<Item = f32>| -> Vec<u8> {
            v.flat_map(f32::to_le_bytes).collect()
        };
        let i64s = |v: &mut dyn Iterator<Item = i64>| -> Vec<u8> {
            v.flat_map(i64::to_le_bytes).collect()
        };
        let o = s.objs.len();
        let t = s.triples.len();
        tensors.push((
            format!("{i:04}/image"),
            St::F32,
            vec![3, h, w],
            f32s(&mut s.image.iter().copied()),
        ));
        tensors.push((
            format!("{i:04}/objs"),
            St::I64,
            vec![o],
            i64s(&mut s.objs.iter().copied()),
        ));
        tensors.push((
            format!("{i:04}/boxes"),
            St::F32,
            vec![o, 4],
            f32s(&mut s.boxes.iter().flatten().copied()),
        ));
        tensors.push((
            format!("{i:04}/triples"),
            St::I64,
            vec![t, 3],
            i64s(&mut s.triples.iter().flatten().copied()),
        ));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::invalid(format!("safetensors: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_order_matches_cpython() {
        // `list(s)` after `s.add(k)` for each k, printed by CPython 3.11.7.
        let cases: [(&[u64], &[u64]); 12] = [
            (&[3, 11, 3, 11], &[11, 3]),
            (&[8, 1], &[8, 1]),
            (&[1, 8], &[8, 1]),
            (&[0, 1, 8], &[0, 1, 8]),
            (&[9, 3, 17, 1, 25], &[1, 3, 9, 17, 25]),
            (&[29, 13, 5, 21], &[21, 13, 5, 29]),
            (
                &[16, 22, 33, 1, 29, 15, 3, 10, 7, 23],
                &[33, 1, 3, 7, 10, 15, 16, 22, 23, 29],
            ),
            (&[15, 24, 34, 6, 36, 15, 0, 13], &[0, 34, 36, 6, 13, 15, 24]),
            (&[17, 11, 24, 10, 4, 8, 39], &[4, 39, 8, 10, 11, 17, 24]),
            (
                &[28, 8, 8, 0, 0, 13, 13, 10, 10, 18],
                &[0, 8, 10, 13, 18, 28],
            ),
            (&[12, 34, 13, 11, 12, 24], &[34, 11, 12, 13, 24]),
            (&[1, 23, 26, 10, 9], &[1, 9, 10, 23, 26]),
        ];
        for (added, want) in cases {
            assert_eq!(
                cpython_int_set_order(added.iter().copied()),
                want,
                "{added:?}"
            );
        }
        // 30 keys below 200: resizes to 128 slots, keys ≥ 128 wrap around.
        let added = [
            67, 16, 84, 77, 154, 150, 0, 152, 173, 181, 86, 16, 79, 90, 78, 123, 178, 80, 47, 123,
            120, 180, 45, 14, 65, 5, 191, 91, 103, 4,
        ];
        let want = [
            0, 4, 5, 14, 16, 150, 152, 154, 173, 45, 47, 178, 180, 181, 191, 65, 67, 77, 78, 79,
            80, 84, 86, 90, 91, 103, 120, 123,
        ];
        assert_eq!(cpython_int_set_order(added), want);
    }
}
