//! The VG loader against `VgSceneGraphDataset.__getitem__` of the original, recorded in
//! `../shared/fixtures/vg_preprocess/loader` on the original's `train.h5`.
//!
//! Tolerances: `objs`, `triples`, `obj_idxs` exact (integer bookkeeping, CPython set order and
//! `random.sample` emulated); `boxes` exact (float64 division then float32, as the original);
//! `image_u8` and `image` exact as well, because the image module reproduces libjpeg-turbo's
//! decoder and Pillow's bilinear resize bit for bit, and `image` is computed from `image_u8`
//! with the same float32 operations as torchvision.

mod common;

use common::{f32s, i64s, vg_fixture as fixture};
use serde_json::Value;
use sg2im::data::SceneGraphDataset;
use sg2im::data::preprocess_vg::preprocess_vg;
use sg2im::data::vg::{VgConfig, VgSceneGraphDataset, cpython_int_set_order, dump_safetensors};
use std::path::PathBuf;

fn config(h5: PathBuf, use_orphans: bool) -> VgConfig {
    VgConfig {
        h5_path: h5,
        vocab_json: fixture("expected/vocab.json"),
        image_dir: fixture("loader/images"),
        image_size: (64, 64),
        normalize_images: true,
        max_objects: 10,
        max_samples: None,
        include_relationships: true,
        use_orphaned_objects: use_orphans,
    }
}

struct Expected {
    bytes: Vec<u8>,
    meta: Value,
}

impl Expected {
    fn load() -> Self {
        Expected {
            bytes: std::fs::read(fixture("loader/vg_loader.safetensors")).unwrap(),
            meta: serde_json::from_slice(
                &std::fs::read(fixture("loader/vg_loader_meta.json")).unwrap(),
            )
            .unwrap(),
        }
    }
}

/// Checks every recorded item of `config_name` (deterministic ones, and seeded random ones
/// with the recorded `random.seed`) against `ds`. Returns how many items were checked.
fn check_items(ds: &VgSceneGraphDataset, config_name: &str, exp: &Expected) -> usize {
    let st = safetensors::SafeTensors::deserialize(&exp.bytes).unwrap();
    let items = exp.meta["items"][config_name].as_array().unwrap();
    assert!(!items.is_empty());
    for item in items {
        let i = item["h5_index"].as_u64().unwrap() as usize;
        let seed = item["python_random_seed"].as_u64().unwrap();
        let key = |f: &str| format!("{config_name}/{i:04}/{f}");
        let obj_idxs: Vec<i64> = ds
            .select_objects(i, seed)
            .into_iter()
            .map(|v| v as i64)
            .collect();
        assert_eq!(obj_idxs, i64s(&st, &key("obj_idxs")), "{}", key("obj_idxs"));
        let s = ds.get(i, seed).unwrap();
        assert_eq!(s.objs, i64s(&st, &key("objs")), "{}", key("objs"));
        let triples: Vec<i64> = s.triples.iter().flatten().copied().collect();
        assert_eq!(triples, i64s(&st, &key("triples")), "{}", key("triples"));
        let boxes: Vec<f32> = s.boxes.iter().flatten().copied().collect();
        assert_eq!(boxes, f32s(&st, &key("boxes")), "{}", key("boxes"));
        assert_eq!(s.image_size, (64, 64));
        assert!(s.masks.is_none());

        // The resized 8-bit image, then the normalised tensor.
        let (rgb, w, h) = sg2im::data::image::load_rgb(ds.image_path(i).unwrap()).unwrap();
        assert_eq!(
            [w, h],
            [
                item["file_size_WxH"][0].as_u64().unwrap() as usize,
                item["file_size_WxH"][1].as_u64().unwrap() as usize
            ]
        );
        let small = sg2im::data::image::resize_bilinear_pillow(&rgb, w, h, 64, 64);
        assert_eq!(
            small,
            st.tensor(&key("image_u8")).unwrap().data(),
            "{}",
            key("image_u8")
        );
        assert_eq!(s.image, f32s(&st, &key("image")), "{}", key("image"));
    }
    items.len()
}

#[test]
fn items_match_the_original_on_its_own_h5() {
    let exp = Expected::load();
    let ds = VgSceneGraphDataset::new(config(fixture("expected/train.h5"), true)).unwrap();
    assert_eq!(ds.len(), 126);
    assert_eq!(check_items(&ds, "default", &exp), 24);
    let ds = VgSceneGraphDataset::new(config(fixture("expected/train.h5"), false)).unwrap();
    assert_eq!(check_items(&ds, "no_orphans", &exp), 12);
}

#[test]
fn items_match_the_original_on_our_preprocessed_h5() {
    // Files from our preprocess-vg feed the loader exactly as the original's do.
    let out = common::scratch("preprocessed");
    let cfg = common::vg_fixture_config(&out);
    preprocess_vg(&cfg, &mut Vec::new()).unwrap();
    let exp = Expected::load();
    let mut c = config(out.join("train.h5"), true);
    c.vocab_json = out.join("vocab.json");
    let ds = VgSceneGraphDataset::new(c.clone()).unwrap();
    check_items(&ds, "default", &exp);
    c.use_orphaned_objects = false;
    let ds = VgSceneGraphDataset::new(c).unwrap();
    check_items(&ds, "no_orphans", &exp);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn related_set_order_matches_cpython_for_every_recorded_item() {
    let exp = Expected::load();
    let h5 = sg2im::io::hdf5::H5Reader::open(fixture("expected/train.h5")).unwrap();
    let subj = h5.read_i32("relationship_subjects").unwrap();
    let obj = h5.read_i32("relationship_objects").unwrap();
    let rpi = h5.read_i32("relationships_per_image").unwrap();
    let r = subj.shape[1];
    let mut non_ascending = 0;
    for cfg in ["default", "no_orphans"] {
        for item in exp.meta["items"][cfg].as_array().unwrap() {
            let i = item["h5_index"].as_u64().unwrap() as usize;
            let added = (0..rpi.data[i] as usize)
                .flat_map(|k| [subj.data[i * r + k] as u64, obj.data[i * r + k] as u64]);
            let order = cpython_int_set_order(added);
            let want: Vec<u64> = item["related_objects_set_order"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(order, want, "{cfg} item {i}");
            non_ascending += usize::from(!order.is_sorted());
        }
    }
    assert_eq!(
        non_ascending, 4,
        "the README lists items 0, 71, 73, 89 of no_orphans"
    );
}

#[test]
fn max_samples_caps_len_and_excludes_relationships_only_drops_real_triples() {
    let mut c = config(fixture("expected/train.h5"), true);
    c.max_samples = Some(7);
    let ds = VgSceneGraphDataset::new(c.clone()).unwrap();
    assert_eq!(ds.len(), 7);
    let err = ds.get(7, 0).unwrap_err().to_string();
    assert!(err.contains("item 7 requested, the dataset has 7"), "{err}");

    c.max_samples = None;
    c.include_relationships = false;
    let ds = VgSceneGraphDataset::new(c).unwrap();
    // Item 5 of the default config: 3 objects with relations, 2 real triples.
    let s = ds.get(5, 1005).unwrap();
    assert_eq!(s.objs.len(), 4);
    assert_eq!(s.triples, vec![[0, 0, 3], [1, 0, 3], [2, 0, 3]]);
}

#[test]
fn missing_image_names_the_file() {
    let mut c = config(fixture("expected/train.h5"), true);
    c.image_dir = fixture("loader/no-such-dir");
    let ds = VgSceneGraphDataset::new(c).unwrap();
    let err = ds.get(5, 0).unwrap_err().to_string();
    assert!(err.contains("no-such-dir/VG_100K/285706.jpg"), "{err}");
}

#[test]
fn dump_writes_every_item_under_its_index() {
    // An image directory where every h5 path exists (all the same JPEG), so all items load.
    let dir = common::scratch("dump");
    let paths = sg2im::io::hdf5::H5Reader::open(fixture("expected/train.h5"))
        .unwrap()
        .read_strings("image_paths")
        .unwrap();
    for p in paths.iter().take(3) {
        let dst = dir.join("images").join(p);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(fixture("loader/images/VG_100K/285706.jpg"), dst).unwrap();
    }
    let out = dir.join("dump.safetensors");
    let status = common::sg2im_cmd()
        .args(["dump-dataset", "vg", "--h5"])
        .arg(fixture("expected/train.h5"))
        .arg("--vocab_json")
        .arg(fixture("expected/vocab.json"))
        .arg("--image_dir")
        .arg(dir.join("images"))
        .args([
            "--image_size",
            "32,48",
            "--max_samples",
            "3",
            "--seed",
            "1000",
        ])
        .args(["--vg_use_orphaned_objects", "0", "--output"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut want: Vec<String> = (0..3)
        .flat_map(|i| ["boxes", "image", "objs", "triples"].map(|f| format!("{i:04}/{f}")))
        .collect();
    want.sort();
    assert_eq!(names, want);

    let mut c = config(fixture("expected/train.h5"), false);
    c.image_dir = dir.join("images");
    c.image_size = (32, 48);
    c.max_samples = Some(3);
    let ds = VgSceneGraphDataset::new(c).unwrap();
    assert_eq!(bytes, dump_safetensors(&ds, 1000).unwrap());
    for i in 0..3 {
        let s = ds.get(i, 1000 + i as u64).unwrap();
        assert_eq!(
            st.tensor(&format!("{i:04}/image")).unwrap().shape(),
            [3, 32, 48]
        );
        assert_eq!(i64s(&st, &format!("{i:04}/objs")), s.objs);
        assert_eq!(
            st.tensor(&format!("{i:04}/triples")).unwrap().shape(),
            [s.triples.len(), 3]
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `sg2im dump-dataset vg` against the original's items (not only against the library): the
/// recorded items among the first rows, drawn with the recorded seeds (`seed + i`, as the dump
/// draws item `i`). Rows without a recorded image get a stand-in JPEG; they are not compared.
#[test]
fn dump_cli_items_equal_the_originals() {
    let exp = Expected::load();
    let st = safetensors::SafeTensors::deserialize(&exp.bytes).unwrap();
    let dir = common::scratch("dump-vs-original");
    let paths = sg2im::io::hdf5::H5Reader::open(fixture("expected/train.h5"))
        .unwrap()
        .read_strings("image_paths")
        .unwrap();
    for p in &paths {
        let real = fixture("loader/images").join(p);
        let src = if real.exists() {
            real
        } else {
            fixture("loader/images/VG_100K/285706.jpg")
        };
        let dst = dir.join("images").join(p);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(src, dst).unwrap();
    }
    let mut compared = 0;
    for (config, seed, orphans, rows) in [("default", 1000, "1", 24), ("no_orphans", 2000, "0", 19)]
    {
        let out = dir.join(format!("{config}.safetensors"));
        common::ok(common::sg2im(&[
            "dump-dataset",
            "vg",
            "--h5",
            common::s(&fixture("expected/train.h5")),
            "--vocab_json",
            common::s(&fixture("expected/vocab.json")),
            "--image_dir",
            common::s(&dir.join("images")),
            "--image_size",
            "64,64",
            "--max_samples",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
            "--vg_use_orphaned_objects",
            orphans,
            "--output",
            common::s(&out),
        ]));
        let bytes = std::fs::read(&out).unwrap();
        let dump = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for item in exp.meta["items"][config].as_array().unwrap() {
            let i = item["h5_index"].as_u64().unwrap();
            if i >= rows {
                continue;
            }
            assert_eq!(item["python_random_seed"].as_u64().unwrap(), seed + i);
            let (ours, theirs) = (format!("{i:04}"), format!("{config}/{i:04}"));
            for f in ["objs", "triples"] {
                let want = i64s(&st, &format!("{theirs}/{f}"));
                assert_eq!(i64s(&dump, &format!("{ours}/{f}")), want, "{theirs}/{f}");
            }
            for f in ["boxes", "image"] {
                let want = f32s(&st, &format!("{theirs}/{f}"));
                // Exact, as check_items: the same float32 operations as the original.
                assert_eq!(f32s(&dump, &format!("{ours}/{f}")), want, "{theirs}/{f}");
            }
            let o = item["O"].as_u64().unwrap() as usize;
            assert_eq!(
                dump.tensor(&format!("{ours}/boxes")).unwrap().shape(),
                [o, 4]
            );
            compared += 1;
        }
    }
    // default: rows 5, 8, 10, 19 (deterministic) and 15 (seeded); no_orphans: rows 0 and 18.
    assert_eq!(compared, 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `expected/train.h5`'s loader datasets rewritten to `path` with one value changed:
/// `dataset[row, col] = value`.
fn h5_with(path: &std::path::Path, dataset: &str, row: usize, col: usize, value: i32) {
    use sg2im::io::hdf5::{H5Reader, WriteData, write_file};
    let r = H5Reader::open(fixture("expected/train.h5")).unwrap();
    let names = [
        "object_names",
        "object_boxes",
        "objects_per_image",
        "relationship_subjects",
        "relationship_predicates",
        "relationship_objects",
        "relationships_per_image",
    ];
    let mut arrays: Vec<(Vec<u64>, Vec<i32>)> = names
        .iter()
        .map(|n| {
            let a = r.read_i32(n).unwrap();
            (a.shape.iter().map(|&d| d as u64).collect(), a.data)
        })
        .collect();
    let k = names.iter().position(|n| *n == dataset).unwrap();
    let cols = arrays[k].0[1] as usize;
    arrays[k].1[row * cols + col] = value;
    let paths = r.read_strings("image_paths").unwrap();
    let mut datasets: Vec<(&str, WriteData)> = names
        .iter()
        .zip(&arrays)
        .map(|(n, (shape, data))| (*n, WriteData::I32 { shape, data }))
        .collect();
    datasets.push(("image_paths", WriteData::VlenStr(&paths)));
    write_file(path, &datasets).unwrap();
}

/// Object and predicate indices outside the vocabulary are refused when the file is opened
/// (they would index the embedding tables), in the style of the other index checks.
#[test]
fn out_of_vocabulary_object_and_predicate_indices_are_refused() {
    let dir = common::scratch("oov");
    let h5 = dir.join("bad.h5");
    // Row 5 has objects and relationships (item 5 of the default config); expected/vocab.json
    // has 43 objects and 18 predicates.
    for (dataset, value, want) in [
        (
            "object_names",
            -1,
            "object_names[5, 0] = -1 is outside 0..43",
        ),
        (
            "object_names",
            i32::MAX,
            "object_names[5, 0] = 2147483647 is outside 0..43",
        ),
        (
            "relationship_predicates",
            -1,
            "relationship_predicates[5, 0] = -1 is outside 0..18",
        ),
        (
            "relationship_predicates",
            i32::MAX,
            "relationship_predicates[5, 0] = 2147483647 is outside 0..18",
        ),
    ] {
        h5_with(&h5, dataset, 5, 0, value);
        let e = VgSceneGraphDataset::new(config(h5.clone(), true))
            .err()
            .unwrap_or_else(|| panic!("{dataset} = {value} accepted"))
            .to_string();
        assert!(e.starts_with(&format!("{}: ", h5.display())), "{e}");
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    // Through the binary: one line, exit code 2.
    let out = common::sg2im(&[
        "dump-dataset",
        "vg",
        "--h5",
        common::s(&h5),
        "--vocab_json",
        common::s(&fixture("expected/vocab.json")),
        "--image_dir",
        common::s(&fixture("loader/images")),
        "--output",
        common::s(&dir.join("d.safetensors")),
    ]);
    common::assert_one_line_error(&out, &["bad.h5", "relationship_predicates[5, 0]"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
