//! The COCO-Stuff loader against the coco_loader fixtures (outputs of the original
//! `CocoSceneGraphDataset` on a synthetic COCO-format set, see the fixture README), plus its
//! error reporting and the `dump-dataset coco` library function.
//!
//! Tolerances (from the README): everything exact except `masks_resized_f64` (≤ 1e-9: the
//! original's SVD-estimated affine map perturbs sample positions by ~1e-15) and `obj_centers`
//! (≤ 1e-6: torch float32 `linspace`/`mean` versus our float64 mean cast to float32).
//! `image_u8`/`image` are exact because the JPEG decoder (mozjpeg) and the resize match
//! libjpeg-turbo and Pillow 13 bit for bit, which `decoded_rgb_sha256` checks separately.

mod common;

use common::{assert_close, f32s, f64s, i64s};
use safetensors::SafeTensors;
use serde_json::Value;
use sg2im::data::SceneGraphDataset;
use sg2im::data::coco::{
    CocoConfig, CocoFlags, CocoSceneGraphDataset, dump_coco, object_centers, predicate_for,
};
use sg2im::data::rle;
use sg2im::rng::PyRandom;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn root() -> PathBuf {
    common::fixture("coco_loader", "")
}

struct Fixture {
    meta: Value,
    vocab: Value,
    fullres: Value,
    tensors: Vec<u8>,
    ds: CocoSceneGraphDataset,
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn config_from_meta(meta: &Value) -> CocoConfig {
    let kw = &meta["constructor_kwargs"];
    let names = |v: &Value| -> Option<Vec<String>> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
    };
    let size = kw["image_size"].as_array().unwrap();
    CocoConfig {
        image_dir: root().join(kw["image_dir"].as_str().unwrap()),
        instances_json: root().join(kw["instances_json"].as_str().unwrap()),
        stuff_json: kw["stuff_json"].as_str().map(|p| root().join(p)),
        stuff_only: kw["stuff_only"].as_bool().unwrap(),
        image_size: (
            size[0].as_u64().unwrap() as usize,
            size[1].as_u64().unwrap() as usize,
        ),
        mask_size: kw["mask_size"].as_u64().unwrap() as usize,
        normalize_images: kw["normalize_images"].as_bool().unwrap(),
        max_samples: kw["max_samples"].as_u64().map(|v| v as usize),
        include_relationships: kw["include_relationships"].as_bool().unwrap(),
        min_object_size: kw["min_object_size"].as_f64().unwrap(),
        min_objects_per_image: kw["min_objects_per_image"].as_u64().unwrap() as usize,
        max_objects_per_image: kw["max_objects_per_image"].as_u64().unwrap() as usize,
        include_other: kw["include_other"].as_bool().unwrap(),
        instance_whitelist: names(&kw["instance_whitelist"]),
        stuff_whitelist: names(&kw["stuff_whitelist"]),
        image_cache_dir: None,
        flags: CocoConfig::default().flags,
    }
}

fn fixture(cfg: &str) -> &'static Fixture {
    static DEFAULT: OnceLock<Fixture> = OnceLock::new();
    static NONDEFAULT: OnceLock<Fixture> = OnceLock::new();
    let cell = if cfg == "default" {
        &DEFAULT
    } else {
        &NONDEFAULT
    };
    cell.get_or_init(|| {
        let exp = root().join("expected");
        let meta = read_json(&exp.join(format!("coco_{cfg}_meta.json")));
        let ds = CocoSceneGraphDataset::new(config_from_meta(&meta)).unwrap();
        Fixture {
            vocab: read_json(&exp.join(format!("coco_{cfg}_vocab.json"))),
            fullres: read_json(&exp.join(format!("coco_{cfg}_fullres_masks.json"))),
            tensors: std::fs::read(exp.join(format!("coco_{cfg}.safetensors"))).unwrap(),
            meta,
            ds,
        }
    })
}

fn st(f: &Fixture) -> SafeTensors<'_> {
    SafeTensors::deserialize(&f.tensors).unwrap()
}

fn items(f: &Fixture) -> &Vec<Value> {
    f.meta["items"].as_array().unwrap()
}

fn seed_of(item: &Value) -> u64 {
    item["python_random_seed"].as_u64().unwrap()
}

/// The RNG alone: CPython's `random.seed(s)`, `choice`, `random()` as the original draws them.
fn check_recorded_draws(cfg: &str) {
    let f = fixture(cfg);
    let st = st(f);
    let mut checked = 0;
    for (idx, item) in items(f).iter().enumerate() {
        let others = i64s(&st, &format!("{idx:04}/rel_draw_other"));
        let us = f64s(&st, &format!("{idx:04}/rel_draw_u"));
        assert_eq!(others.len(), us.len(), "{cfg} item {idx}");
        let k = item["O"].as_u64().unwrap() as usize - 1;
        let mut rng = PyRandom::seed(seed_of(item));
        for (cur, (&other, &u)) in others.iter().zip(&us).enumerate() {
            let choices: Vec<i64> = (0..k as i64).filter(|&j| j != cur as i64).collect();
            assert_eq!(*rng.choice(&choices).unwrap(), other, "{cfg} item {idx}");
            assert_eq!(rng.random(), u, "{cfg} item {idx}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn pyrandom_reproduces_recorded_draws_default() {
    check_recorded_draws("default");
}

#[test]
fn pyrandom_reproduces_recorded_draws_nondefault() {
    check_recorded_draws("nondefault");
}

fn check_index(cfg: &str) {
    let f = fixture(cfg);
    let ds = &f.ds;
    assert_eq!(ds.len() as u64, f.meta["len"].as_u64().unwrap());
    assert_eq!(
        ds.total_objects() as u64,
        f.meta["total_objects"].as_u64().unwrap()
    );
    let want_ids: Vec<i64> = f.meta["kept_image_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ds.image_ids(), want_ids.as_slice());
    let kept = f.meta["kept_annotation_ids"].as_object().unwrap();
    for (idx, id) in want_ids.iter().enumerate() {
        let want: Vec<i64> = kept[&id.to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got: Vec<i64> = ds.objects(idx).iter().map(|o| o.ann_id.unwrap()).collect();
        assert_eq!(got, want, "{cfg} image {id}");
    }
    // Vocabulary, including key order and the "NONE" holes.
    let v = ds.vocab();
    let want_o2i: Vec<(String, i64)> = f.vocab["object_name_to_idx"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect();
    let got_o2i: Vec<(String, i64)> = v
        .object_name_to_idx
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(got_o2i, want_o2i);
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(v.object_idx_to_name, strs(&f.vocab["object_idx_to_name"]));
    assert_eq!(v.pred_idx_to_name, strs(&f.vocab["pred_idx_to_name"]));
    let want_p2i: Vec<(String, i64)> = f.vocab["pred_name_to_idx"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect();
    let got_p2i: Vec<(String, i64)> = v
        .pred_name_to_idx
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(got_p2i, want_p2i);
    assert_eq!(v.object_idx_to_name.len(), 184);
}

#[test]
fn index_and_vocab_default() {
    check_index("default");
}

#[test]
fn index_and_vocab_nondefault() {
    check_index("nondefault");
}

/// Every tensor of every item.
fn check_items(cfg: &str) {
    let f = fixture(cfg);
    let st = st(f);
    let m = f.ds.config().mask_size;
    for (idx, item) in items(f).iter().enumerate() {
        let key = |field: &str| format!("{idx:04}/{field}");
        let got = f.ds.get_item(idx, seed_of(item)).unwrap();
        let s = &got.sample;
        let ctx = format!("{cfg} item {idx}");
        assert_eq!(got.image_id, item["image_id"].as_i64().unwrap(), "{ctx}");
        assert_eq!(s.objs, i64s(&st, &key("objs")), "{ctx}");
        let boxes: Vec<f32> = s.boxes.iter().flatten().copied().collect();
        assert_eq!(boxes, f32s(&st, &key("boxes")), "{ctx} boxes");
        let masks: Vec<i64> = s
            .masks
            .as_ref()
            .unwrap()
            .iter()
            .map(|&v| v as i64)
            .collect();
        assert_eq!(masks, i64s(&st, &key("masks")), "{ctx} masks");
        let bounds: Vec<i64> = got.crop_bounds.iter().flatten().copied().collect();
        assert_eq!(bounds, i64s(&st, &key("crop_bounds")), "{ctx} crop_bounds");
        let shapes: Vec<i64> = got
            .crop_shapes
            .iter()
            .flatten()
            .map(|&v| v as i64)
            .collect();
        assert_eq!(shapes, i64s(&st, &key("crop_shapes")), "{ctx} crop_shapes");
        assert_close(
            &format!("{ctx} masks_resized_f64"),
            &got.masks_resized,
            &f64s(&st, &key("masks_resized_f64")),
            1e-9,
            0.0,
        );
        let centers: Vec<f32> = got.centers.iter().flatten().copied().collect();
        assert_close(
            &format!("{ctx} obj_centers"),
            &centers,
            &f32s(&st, &key("obj_centers")),
            1e-6,
            0.0,
        );
        // The predicate of every ordered pair, not only the drawn ones.
        let k = s.objs.len() - 1;
        let preds = i64s(&st, &key("pair_predicates"));
        for a in 0..k {
            for b in 0..k {
                let want = preds[a * k + b];
                if a == b {
                    assert_eq!(want, -1);
                    continue;
                }
                let p = predicate_for(s.boxes[a], s.boxes[b], got.centers[a], got.centers[b]);
                assert_eq!(p, want, "{ctx} pair ({a}, {b})");
            }
        }
        let triples: Vec<i64> = s.triples.iter().flatten().copied().collect();
        assert_eq!(triples, i64s(&st, &key("triples")), "{ctx} triples");
        assert_eq!(
            got.image_u8,
            st.tensor(&key("image_u8")).unwrap().data(),
            "{ctx} image_u8"
        );
        assert_eq!(s.image, f32s(&st, &key("image")), "{ctx} image");
        assert_eq!(s.image_size, f.ds.config().image_size);
        assert_eq!(s.mask_size, m);
        let (ww, hh) = got.original_size;
        let size = item["file_size_WxH"].as_array().unwrap();
        assert_eq!(
            [ww as u64, hh as u64],
            [size[0].as_u64().unwrap(), size[1].as_u64().unwrap()]
        );
        // `get` is `get_item` without the extras.
        assert_eq!(&f.ds.get(idx, seed_of(item)).unwrap(), s, "{ctx}");
    }
}

#[test]
fn items_match_default() {
    check_items("default");
}

#[test]
fn items_match_nondefault() {
    check_items("nondefault");
}

/// Segmentation decoding alone (polygons, uncompressed and compressed RLE) at full resolution.
fn check_fullres(cfg: &str) {
    let f = fixture(cfg);
    let mut kinds = std::collections::HashSet::new();
    for (idx, item) in items(f).iter().enumerate() {
        let size = item["file_size_WxH"].as_array().unwrap();
        let (ww, hh) = (
            size[0].as_u64().unwrap() as usize,
            size[1].as_u64().unwrap() as usize,
        );
        for (k, obj) in f.ds.objects(idx).iter().enumerate() {
            let want = &f.fullres[format!("{idx:04}/{k}")];
            assert_eq!(obj.ann_id, want["ann_id"].as_i64());
            let counts: Vec<u32> = want["counts_colmajor"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let hw = want["size_hw"].as_array().unwrap();
            let want = rle::Rle {
                h: hw[0].as_u64().unwrap() as usize,
                w: hw[1].as_u64().unwrap() as usize,
                counts,
            };
            let got = obj.segmentation.to_rle(hh, ww).unwrap();
            assert_eq!((got.h, got.w), (want.h, want.w), "{cfg} {idx}/{k}");
            assert_eq!(rle::decode(&got), rle::decode(&want), "{cfg} {idx}/{k}");
            kinds.insert(std::mem::discriminant(&obj.segmentation));
        }
    }
    assert_eq!(
        kinds.len(),
        3,
        "polygons, uncompressed and compressed RLE all covered"
    );
}

#[test]
fn fullres_masks_default() {
    check_fullres("default");
}

#[test]
fn fullres_masks_nondefault() {
    check_fullres("nondefault");
}

#[test]
fn jpeg_decoding_matches_libjpeg_turbo() {
    let f = fixture("default");
    let g = fixture("nondefault");
    let mut n = 0;
    for item in items(f).iter().chain(items(g)) {
        let path = root()
            .join("data/images/train2017")
            .join(item["file_name"].as_str().unwrap());
        let (rgb, w, h) = sg2im::data::image::load_rgb(&path).unwrap();
        assert_eq!(rgb.len(), w * h * 3);
        let hex: String = Sha256::digest(&rgb)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            item["decoded_rgb_sha256"].as_str().unwrap(),
            "{path:?}"
        );
        n += 1;
    }
    assert_eq!(n, 55);
}

#[test]
fn centers_fall_back_to_box_centre_for_empty_masks() {
    // Default items 2 and 5 have empty masks (README).
    let f = fixture("default");
    let item = &items(f)[2];
    let got = f.ds.get_item(2, seed_of(item)).unwrap();
    let m = got.sample.mask_size;
    let masks = got.sample.masks.as_ref().unwrap();
    let empty: Vec<usize> = (0..got.sample.objs.len())
        .filter(|&k| masks[k * m * m..(k + 1) * m * m].iter().all(|&v| v == 0))
        .collect();
    assert!(!empty.is_empty());
    let c = object_centers(&got.sample.boxes, masks, m);
    for k in empty {
        let b = got.sample.boxes[k];
        assert_eq!(c[k], [0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3])]);
    }
}

// ---------------------------------------------------------------------------------------
// Bad data: a small dataset written to a temporary directory.

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = common::scratch(name);
        std::fs::create_dir_all(dir.join("images")).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One 300×200 image (a fixture JPEG) with three annotations; `first_seg` replaces the first
/// annotation's segmentation and `bbox1` its bbox.
fn write_small(dir: &Path, first_seg: &str, bbox1: &str) -> CocoConfig {
    std::fs::copy(
        root().join("data/images/train2017/000000440863.jpg"),
        dir.join("images/a.jpg"),
    )
    .unwrap();
    let instances = format!(
        r#"{{"images": [{{"id": 1, "file_name": "a.jpg", "width": 300, "height": 200}}],
        "categories": [{{"id": 1, "name": "person"}}, {{"id": 3, "name": "car"}}],
        "annotations": [
          {{"segmentation": {first_seg}, "bbox": {bbox1}, "image_id": 1, "category_id": 1, "id": 77}},
          {{"segmentation": [[150, 20, 250, 20, 250, 120, 150, 120]], "bbox": [150, 20, 100, 100], "image_id": 1, "category_id": 3, "id": 78}},
          {{"segmentation": [[20, 130, 120, 130, 120, 190, 20, 190]], "bbox": [20, 130, 100, 60], "image_id": 1, "category_id": 3, "id": 79}}
        ]}}"#
    );
    std::fs::write(dir.join("instances.json"), instances).unwrap();
    CocoConfig {
        image_dir: dir.join("images"),
        instances_json: dir.join("instances.json"),
        stuff_json: None,
        stuff_only: false,
        ..CocoConfig::default()
    }
}

const GOOD_SEG: &str = "[[10, 10, 100, 10, 100, 100, 10, 100]]";
const GOOD_BOX: &str = "[10, 10, 90, 90]";

fn err_of(cfg: CocoConfig) -> String {
    CocoSceneGraphDataset::new(cfg).unwrap_err().to_string()
}

#[test]
fn missing_files_name_the_path_and_the_flag() {
    let t = TempDir::new("missing");
    let cfg = write_small(&t.0, GOOD_SEG, GOOD_BOX);
    let e = err_of(CocoConfig {
        instances_json: t.0.join("nope.json"),
        ..cfg.clone()
    });
    assert!(
        e.contains("nope.json") && e.contains("--coco_train_instances_json"),
        "{e}"
    );
    let e = err_of(CocoConfig {
        stuff_json: Some(t.0.join("stuff.json")),
        ..cfg.clone()
    });
    assert!(
        e.contains("stuff.json") && e.contains("--coco_train_stuff_json"),
        "{e}"
    );
    let e = err_of(CocoConfig {
        image_dir: t.0.join("no_images"),
        flags: CocoFlags {
            image_dir: "--image_dir".into(),
            ..cfg.flags.clone()
        },
        ..cfg.clone()
    });
    assert!(e.contains("no_images") && e.contains("--image_dir"), "{e}");
    // A missing image is a per-item error, counted.
    std::fs::remove_file(t.0.join("images/a.jpg")).unwrap();
    let ds = CocoSceneGraphDataset::new(cfg).unwrap();
    let e = ds.get(0, 0).unwrap_err().to_string();
    assert!(
        e.contains("a.jpg") && e.contains("--coco_train_image_dir"),
        "{e}"
    );
    assert_eq!(ds.image_failures(), 1);
}

#[test]
fn malformed_annotations_name_the_id_and_field() {
    let t = TempDir::new("malformed");
    let e = err_of(write_small(&t.0, GOOD_SEG, r#"[10, 10, "90", 90]"#));
    assert!(
        e.contains("annotation id 77")
            && e.contains("field `bbox`")
            && e.contains("instances.json"),
        "{e}"
    );
    let e = err_of(write_small(
        &t.0,
        r#"{"counts": "PPYo1", "size": [200, 300]}"#,
        GOOD_BOX,
    ));
    assert!(
        e.contains("annotation id 77") && e.contains("field `segmentation`"),
        "{e}"
    );
    let e = err_of(write_small(
        &t.0,
        r#"{"counts": [5, 3], "size": [200, 300]}"#,
        GOOD_BOX,
    ));
    assert!(
        e.contains("annotation id 77") && e.contains("runs cover 8 pixels"),
        "{e}"
    );
    let e = err_of(write_small(&t.0, "[[1, 2, 3]]", GOOD_BOX));
    assert!(
        e.contains("annotation id 77") && e.contains("segmentation"),
        "{e}"
    );
    let e = err_of(write_small(&t.0, "\"oops\"", GOOD_BOX));
    assert!(
        e.contains("annotation id 77") && e.contains("segmentation"),
        "{e}"
    );
    // Plain JSON syntax errors give the position.
    std::fs::write(t.0.join("instances.json"), "{\"images\": [").unwrap();
    let cfg = CocoConfig {
        image_dir: t.0.join("images"),
        instances_json: t.0.join("instances.json"),
        stuff_json: None,
        ..CocoConfig::default()
    };
    let e = err_of(cfg);
    assert!(e.contains("instances.json:1:"), "{e}");
}

#[test]
fn first_polygon_of_four_numbers_is_rasterised_as_degenerate() {
    // pycocotools raises TypeError on this; we rasterise the 2-vertex polygon (zero area),
    // so the object's mask is the union with the second polygon only.
    let t = TempDir::new("poly4");
    let seg = "[[10, 10, 100, 100], [10, 10, 100, 10, 100, 100, 10, 100]]";
    let ds = CocoSceneGraphDataset::new(write_small(&t.0, seg, GOOD_BOX)).unwrap();
    let item = ds.get_item(0, 0).unwrap();
    let alone = rle::from_polygon(&[10., 10., 100., 10., 100., 100., 10., 100.], 200, 300);
    let line = rle::from_polygon(&[10., 10., 100., 100.], 200, 300);
    assert_eq!(line.area(), 0);
    let got = ds.objects(0)[0].segmentation.to_rle(200, 300).unwrap();
    assert_eq!(rle::decode(&got), rle::decode(&alone));
    // The sample itself is complete: 3 objects + __image__, a full mask for the square.
    assert_eq!(item.sample.objs, vec![1, 3, 3, 0]);
    assert!(
        item.sample.masks.as_ref().unwrap()[..16 * 16]
            .iter()
            .all(|&v| v == 1)
    );
}

#[test]
fn corrupt_and_truncated_images_are_counted_errors() {
    let t = TempDir::new("corrupt");
    let cfg = write_small(&t.0, GOOD_SEG, GOOD_BOX);
    let jpeg = std::fs::read(t.0.join("images/a.jpg")).unwrap();
    std::fs::write(t.0.join("images/a.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let ds = CocoSceneGraphDataset::new(cfg.clone()).unwrap();
    let e = ds.get(0, 0).unwrap_err().to_string();
    assert!(e.contains("a.jpg") && e.contains("truncated"), "{e}");
    std::fs::write(t.0.join("images/a.jpg"), b"\xff\xd8\xff\xe0garbage").unwrap();
    let e = ds.get(0, 0).unwrap_err().to_string();
    assert!(
        e.contains("a.jpg") && e.contains("cannot decode JPEG"),
        "{e}"
    );
    std::fs::write(t.0.join("images/a.jpg"), b"not an image").unwrap();
    assert!(ds.get(0, 0).is_err());
    assert_eq!(ds.image_failures(), 3);
}

#[test]
fn image_cache_gives_identical_samples() {
    let t = TempDir::new("cache");
    let cfg = CocoConfig {
        image_cache_dir: Some(t.0.join("cache")),
        ..write_small(&t.0, GOOD_SEG, GOOD_BOX)
    };
    let plain = CocoSceneGraphDataset::new(CocoConfig {
        image_cache_dir: None,
        ..cfg.clone()
    })
    .unwrap()
    .get(0, 3)
    .unwrap();
    let ds = CocoSceneGraphDataset::new(cfg).unwrap();
    let first = ds.get(0, 3).unwrap();
    assert!(t.0.join("cache/64x64/1.rgb").is_file());
    let second = ds.get(0, 3).unwrap();
    assert_eq!(first, plain);
    assert_eq!(second, plain);
}

#[test]
fn dump_writes_the_fixture_keys() {
    let f = fixture("nondefault");
    let t = TempDir::new("dump");
    let out = t.0.join("dump.safetensors");
    // The fixture's seeds are 6000 + idx for this configuration.
    let n = dump_coco(&f.ds, &out, 6000, 3, &sg2im::report::Quiet).unwrap();
    assert_eq!(n, f.ds.len());
    let bytes = std::fs::read(&out).unwrap();
    let got = SafeTensors::deserialize(&bytes).unwrap();
    let want = st(f);
    assert_eq!(i64s(&got, "image_ids"), f.ds.image_ids());
    for idx in 0..n {
        for field in ["image", "objs", "boxes", "masks", "triples"] {
            let key = format!("{idx:04}/{field}");
            let (a, b) = (got.tensor(&key).unwrap(), want.tensor(&key).unwrap());
            assert_eq!(a.dtype(), b.dtype(), "{key}");
            assert_eq!(a.shape(), b.shape(), "{key}");
            assert_eq!(a.data(), b.data(), "{key}");
        }
    }
    assert_eq!(got.len(), 1 + 5 * n);
}

#[test]
fn warnings_are_returned_to_the_caller_not_printed() {
    use sg2im::data::SceneGraphDataset;
    let t = TempDir::new("warnings");
    // The cache "directory" is a file: writing the cache fails, loading still works.
    std::fs::write(t.0.join("cache"), b"").unwrap();
    let cfg = CocoConfig {
        image_cache_dir: Some(t.0.join("cache")),
        stuff_only: true,
        ..write_small(&t.0, GOOD_SEG, GOOD_BOX)
    };
    let ds = CocoSceneGraphDataset::new(cfg).unwrap();
    assert_eq!(
        ds.warnings(),
        [
            "WARNING: Got stuff_only=True but stuff_json=None.",
            "Will ignore stuff_only."
        ]
    );
    assert!(ds.take_warnings().is_empty());
    ds.get(0, 0).unwrap();
    ds.get(0, 1).unwrap();
    let w = ds.take_warnings();
    assert_eq!(w.len(), 1, "once, not per item: {w:?}");
    assert!(
        w[0].starts_with("warning: image cache disabled for writing: "),
        "{w:?}"
    );
    assert!(ds.take_warnings().is_empty());
}
