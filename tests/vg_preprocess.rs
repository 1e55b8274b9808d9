//! `preprocess-vg` against the original's outputs on the synthetic VG fixture
//! (`../shared/fixtures/vg_preprocess`, made by running the unmodified preprocess_vg.py with the
//! README's flags). Everything is compared exactly: the pipeline is integer bookkeeping, so any
//! difference is a bug, not a rounding effect.

mod common;

use common::{scratch as temp_dir, vg_fixture as fixture, vg_fixture_config as fixture_config};
use serde_json::Value;
use sg2im::data::preprocess_vg::{PreprocessVgConfig, preprocess_vg};
use sg2im::io::hdf5::{Dtype, H5Reader};
use std::path::{Path, PathBuf};

const SPLITS: [&str; 3] = ["train", "test", "val"];
const NUMERIC: [&str; 12] = [
    "image_ids",
    "object_ids",
    "object_names",
    "object_boxes",
    "objects_per_image",
    "relationship_ids",
    "relationship_subjects",
    "relationship_predicates",
    "relationship_objects",
    "relationships_per_image",
    "attributes_per_object",
    "object_attributes",
];

/// (shape, values) of every tensor of an `expected/<split>_h5.safetensors` file.
fn expected_arrays(split: &str) -> Vec<(String, Vec<usize>, Vec<i32>)> {
    let bytes = std::fs::read(fixture(&format!("expected/{split}_h5.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    NUMERIC
        .iter()
        .map(|&name| {
            let t = st.tensor(name).unwrap();
            assert_eq!(t.dtype(), safetensors::Dtype::I32, "{split}/{name}");
            let values = t
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name.to_string(), t.shape().to_vec(), values)
        })
        .collect()
}

fn expected_paths(split: &str) -> Vec<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixture("expected/image_paths.json")).unwrap())
            .unwrap();
    v[split]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Every dataset of `h5` equals the original's, name, dtype, shape and value.
fn assert_h5_matches_expected(h5: &Path, split: &str) {
    let r = H5Reader::open(h5).unwrap();
    let mut names: Vec<&str> = NUMERIC.to_vec();
    names.push("image_paths");
    names.sort();
    assert_eq!(r.dataset_names(), names, "{}", h5.display());
    for (name, shape, values) in expected_arrays(split) {
        let info = r.info(&name).unwrap();
        assert_eq!(
            info.dtype,
            Dtype::Int {
                bytes: 4,
                signed: true,
                big_endian: false
            },
            "{split}/{name}"
        );
        let got = r.read_i32(&name).unwrap();
        assert_eq!(got.shape, shape, "{split}/{name} shape");
        assert_eq!(got.data, values, "{split}/{name} values");
    }
    assert_eq!(
        r.info("image_paths").unwrap().dtype,
        Dtype::VlenString { utf8: true }
    );
    assert_eq!(
        r.info("image_paths").unwrap().shape,
        vec![expected_paths(split).len()]
    );
    assert_eq!(
        r.read_strings("image_paths").unwrap(),
        expected_paths(split)
    );
}

#[test]
fn outputs_match_the_original_on_the_fixture() {
    let out = temp_dir("fixture");
    let mut log = Vec::new();
    let summary = preprocess_vg(&fixture_config(&out), &mut log).unwrap();

    // stdout: the original's lines, with our paths in place of the fixture's relative ones.
    let ours = String::from_utf8(log)
        .unwrap()
        .replace(&fixture("").display().to_string(), "")
        .replace(&out.display().to_string(), "expected");
    let expected = std::fs::read_to_string(fixture("expected/preprocess_stdout.txt")).unwrap();
    assert_eq!(ours, expected);

    // vocab.json byte for byte (json.dump's separators and escapes), hence also parsed.
    assert_eq!(
        std::fs::read_to_string(out.join("vocab.json")).unwrap(),
        std::fs::read_to_string(fixture("expected/vocab.json")).unwrap()
    );

    for split in SPLITS {
        assert_h5_matches_expected(&out.join(format!("{split}.h5")), split);
    }

    let s: Value =
        serde_json::from_slice(&std::fs::read(fixture("expected/summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary.object_instances as u64,
        s["object_instances_after_filtering"]
    );
    assert_eq!(summary.objects_too_small, s["objects_too_small_all_splits"]);
    assert_eq!(
        summary.num_object_categories as u64,
        s["vocab_sizes"]["object_idx_to_name"]
    );
    assert_eq!(
        summary.num_attribute_categories as u64,
        s["vocab_sizes"]["attribute_idx_to_name"]
    );
    assert_eq!(
        summary.num_predicates as u64,
        s["vocab_sizes"]["pred_idx_to_name"]
    );
    assert_eq!(summary.splits.len(), SPLITS.len());
    for (got, name) in summary.splits.iter().zip(SPLITS) {
        let e = &s["splits"][name];
        assert_eq!(got.name, name);
        assert_eq!(got.num_images as u64, e["num_images"]);
        assert_eq!(got.num_objects as u64, e["num_objects_total"]);
        assert_eq!(got.num_relationships as u64, e["num_relationships_total"]);
        assert_eq!(got.removed_too_small, e["removed_small_images"]);
        let stats: Vec<(String, u64)> = e["skip_stats"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(got.skip_stats, stats, "{name}");
    }
    // Nothing but the outputs is left in the directory (temporary files were renamed).
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["test.h5", "train.h5", "val.h5", "vocab.json"]);
    std::fs::remove_dir_all(&out).unwrap();
}

/// Copies the raw inputs into a temp dir so a test can damage one of them.
fn copy_raw(dir: &Path) -> PreprocessVgConfig {
    for f in std::fs::read_dir(fixture("raw")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let mut cfg = fixture_config(&dir.join("out"));
    cfg.splits_json = dir.join("vg_splits_subset.json");
    cfg.images_json = dir.join("image_data.json");
    cfg.objects_json = dir.join("objects.json");
    cfg.attributes_json = dir.join("attributes.json");
    cfg.object_aliases = dir.join("object_alias.txt");
    cfg.relationship_aliases = dir.join("relationship_alias.txt");
    cfg.relationships_json = dir.join("relationships.json");
    cfg
}

#[test]
fn truncated_json_names_file_and_position_and_writes_nothing() {
    let dir = temp_dir("trunc");
    let cfg = copy_raw(&dir);
    let text = std::fs::read(&cfg.relationships_json).unwrap();
    std::fs::write(&cfg.relationships_json, &text[..text.len() / 2]).unwrap();
    let err = preprocess_vg(&cfg, &mut Vec::new())
        .unwrap_err()
        .to_string();
    let path = cfg.relationships_json.display().to_string();
    assert!(
        err.starts_with(&format!("{path}:1:")) && err.contains("EOF while parsing"),
        "{err}"
    );
    assert!(
        !cfg.output_h5_dir.exists() || std::fs::read_dir(&cfg.output_h5_dir).unwrap().count() == 0
    );

    // A syntax error on a later line reports that line.
    std::fs::write(
        &cfg.relationships_json,
        "[\n{\"image_id\": 1,\n \"relationships\": [}]",
    )
    .unwrap();
    let err = preprocess_vg(&cfg, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("{path}:3:")), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_field_type_names_file_and_position() {
    let dir = temp_dir("field");
    let cfg = copy_raw(&dir);
    std::fs::write(
        &cfg.objects_json,
        r#"[{"image_id": 1, "objects": [{"object_id": "seven", "names": [], "x": 0, "y": 0, "w": 1, "h": 1}]}]"#,
    )
    .unwrap();
    let err = preprocess_vg(&cfg, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}:1:", cfg.objects_json.display()))
            && err.contains("invalid type: string \"seven\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_input_file_names_path_and_flag() {
    let out = temp_dir("missing-flag");
    let mut cfg = fixture_config(&out);
    cfg.attributes_json = out.join("nope.json");
    let err = preprocess_vg(&cfg, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: no such file (given by --attributes_json)",
            cfg.attributes_json.display()
        )
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn images_missing_from_the_inputs_are_counted_and_skipped() {
    let dir = temp_dir("missing-images");
    let cfg = copy_raw(&dir);
    // Two train ids the image data does not know, and a val image that has image data but no
    // objects (val, so the vocabularies stay those of the fixture).
    let mut splits: Value =
        serde_json::from_slice(&std::fs::read(&cfg.splits_json).unwrap()).unwrap();
    let train = splits["train"].as_array_mut().unwrap();
    train.push(Value::from(99_999_991));
    train.push(Value::from(99_999_992));
    splits["val"]
        .as_array_mut()
        .unwrap()
        .push(Value::from(99_999_993));
    std::fs::write(&cfg.splits_json, serde_json::to_vec(&splits).unwrap()).unwrap();
    let mut images: Value =
        serde_json::from_slice(&std::fs::read(&cfg.images_json).unwrap()).unwrap();
    images.as_array_mut().unwrap().push(serde_json::json!({
        "image_id": 99_999_993, "width": 500, "height": 500,
        "url": "https://example.org/VG_100K/99999993.jpg"
    }));
    std::fs::write(&cfg.images_json, serde_json::to_vec(&images).unwrap()).unwrap();

    let mut log = Vec::new();
    let s = preprocess_vg(&cfg, &mut log).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert_eq!(s.splits[0].missing_from_image_data, 2);
    assert_eq!(s.splits[0].num_images, 126);
    assert_eq!(s.splits[2].name, "val");
    assert_eq!(
        s.splits[2].skip_stats.last(),
        Some(&("missing_from_objects_json".to_string(), 1))
    );
    assert!(log.contains("missing_from_objects_json 1\n"), "{log}");
    assert_eq!(s.splits[2].num_images, 22);
    assert_h5_matches_expected(&cfg.output_h5_dir.join("train.h5"), "train");
    assert_h5_matches_expected(&cfg.output_h5_dir.join("val.h5"), "val");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_split_gives_float64_empty_arrays_like_numpy() {
    let dir = temp_dir("empty");
    let mut cfg = copy_raw(&dir);
    // No image can have 1000 objects: every split ends up empty.
    cfg.min_objects_per_image = 1000;
    cfg.max_objects_per_image = 1000;
    let mut log = Vec::new();
    preprocess_vg(&cfg, &mut log).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.contains("Creating datset:  object_boxes (0,) float64\n"),
        "{log}"
    );
    let r = H5Reader::open(cfg.output_h5_dir.join("val.h5")).unwrap();
    let info = r.info("object_attributes").unwrap();
    assert_eq!(info.shape, vec![0]);
    assert_eq!(
        info.dtype,
        Dtype::Float {
            bytes: 8,
            big_endian: false
        }
    );
    assert!(r.read_strings("image_paths").unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn builtin_splits_are_the_originals_file() {
    use sg2im::data::preprocess_vg::BUILTIN_VG_SPLITS;
    let builtin: indexmap::IndexMap<String, Vec<i64>> =
        serde_json::from_str(BUILTIN_VG_SPLITS).unwrap();
    let reference: indexmap::IndexMap<String, Vec<i64>> = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/data/sg2im/data/vg_splits.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(builtin, reference);
    let sizes: Vec<(&str, usize)> = builtin.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        sizes,
        [("train", 86_463), ("test", 10_807), ("val", 10_807)]
    );
}

#[test]
fn default_splits_path_falls_back_to_the_builtin_copy() {
    // The fixture's subset lists real VG ids, so the full built-in splits keep the same images
    // (split ids without image records are dropped with a warning). Vocabulary ties are broken by
    // first-seen order, which follows the split lists, so the reference is a run with the same
    // file passed explicitly, not the fixture.
    let run = |tag: &str, splits: PathBuf| {
        let out = temp_dir(tag);
        let mut cfg = fixture_config(&out);
        cfg.splits_json = splits;
        let summary = preprocess_vg(&cfg, &mut Vec::new()).unwrap();
        (out, summary)
    };
    let default = PathBuf::from(sg2im::data::preprocess_vg::DEFAULT_SPLITS_JSON);
    assert!(
        !default.exists(),
        "test assumes no sg2im/ tree in the crate root"
    );
    let (a, sa) = run("builtin-default", default);
    let (b, sb) = run(
        "builtin-explicit",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/vg_splits.json"),
    );
    for f in ["vocab.json", "train.h5", "val.h5", "test.h5"] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let counts = |s: &sg2im::data::preprocess_vg::PreprocessSummary| -> Vec<usize> {
        s.splits.iter().map(|x| x.num_images).collect()
    };
    assert_eq!(counts(&sa), counts(&sb));
    assert!(counts(&sa).iter().all(|&n| n > 0), "{:?}", counts(&sa));
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}
