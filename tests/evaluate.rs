//! `sg2im evaluate` end to end on a tiny trained `shapes` model (two iterations of the shared
//! tiny networks) with the fixtures' random-weight Inception: report keys and values, sample
//! counts, lossless PNGs, real images once per graph, and one-line errors with exit code 2.
//! The layout metrics themselves are checked on hand-computed boxes in `sg2im::eval::layout`'s
//! unit tests and once more here through the public API.

use sg2im::data::SceneGraphDataset;
use sg2im::data::synthetic::{ShapesConfig, ShapesDataset};
use sg2im::eval::layout::{BoxPair, layout_metrics};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

use common::{assert_one_line_error, ok, s, scratch as tmp, sg2im};

/// `common::train_tiny_shapes` (16×16 images, 8 validation scenes), trained once.
fn trained() -> &'static Path {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| common::train_tiny_shapes("train", &["--seed=3"]))
}

fn inception() -> PathBuf {
    common::fixture("metrics", "inception_random.pth")
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn layout_metrics_through_the_public_api() {
    let unit = [0.0, 0.0, 1.0, 1.0];
    let pairs = [
        BoxPair {
            category: 1,
            pred: unit,
            gt: unit,
        },
        // Half overlap: IoU 1/3, counted at 0.3 but not at 0.5.
        BoxPair {
            category: 1,
            pred: [0.5, 0.0, 1.5, 1.0],
            gt: unit,
        },
        // __image__ (index 0) is excluded.
        BoxPair {
            category: 0,
            pred: [0.0, 0.0, 0.1, 0.1],
            gt: unit,
        },
    ];
    let m = layout_metrics(&pairs, Some(0)).unwrap();
    // f32 IoU division: 1e-6.
    assert!((m.box_iou_mean - 2.0 / 3.0).abs() < 1e-6);
    assert_eq!((m.recall_at_0_3, m.recall_at_0_5), (1.0, 0.5));
    // Category 1: x-centres 0.5 and 1.0 → population std 0.25; areas both 1 → 0.
    assert!((m.sigma_x - 0.25).abs() < 1e-7);
    assert_eq!(m.sigma_area, 0.0);
}

#[test]
fn evaluates_a_tiny_shapes_model_with_the_random_inception() {
    let dir = tmp("e2e");
    let out = dir.join("eval");
    let stdout = ok(sg2im(&[
        "evaluate",
        "--checkpoint",
        s(trained()),
        "--samples_per_graph",
        "2",
        "--num_samples",
        "6",
        "--batch_size",
        "4",
        "--inception_weights",
        s(&inception()),
        "--output_dir",
        s(&out),
    ]))
    .stdout;
    let stdout = String::from_utf8_lossy(&stdout);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "box_iou_mean",
        "recall_at_0.3",
        "recall_at_0.5",
        "sigma_x",
        "sigma_area",
        "num_samples",
        "inception_score_mean",
        "inception_score_std",
        "frechet_inception_distance",
        "kernel_inception_distance_mean",
        "kernel_inception_distance_std",
        "scene_fid",
    ] {
        let v = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(v.is_finite(), "{key} = {v}");
        assert!(
            stdout.contains(key),
            "{key} not in the printed table: {stdout}"
        );
    }
    // 6 graphs × 2 samples; KID's subset shrinks to the 6 real images.
    assert_eq!(report["num_samples"], 12);
    assert_eq!(report["kid_subset_size"], 6);
    for key in ["box_iou_mean", "recall_at_0.3", "recall_at_0.5"] {
        let v = report[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let samples = pngs(&out.join("samples"));
    let want: Vec<String> = (0..6)
        .flat_map(|i| (0..2).map(move |k| format!("{i:04}_{k}.png")))
        .collect();
    assert_eq!(samples, want);
    // Real images once per graph, not once per sample.
    let real = pngs(&out.join("real"));
    assert_eq!(
        real,
        (0..6).map(|i| format!("{i:04}.png")).collect::<Vec<_>>()
    );
    // Lossless: the real PNGs decode to exactly the dataset's images as deprocessed in memory.
    let val = ShapesDataset::new(ShapesConfig {
        image_size: (16, 16),
        mask_size: 4,
        num_images: 8,
        seed: sg2im::data::factory::SHAPES_VAL_SEED,
        ..ShapesConfig::default()
    })
    .unwrap();
    for (i, name) in real.iter().enumerate() {
        let item = val.get(i, 0).unwrap();
        let want = sg2im::imagenet::deprocess_to_u8_hwc(&item.image, 16, 16);
        let (rgb, w, h) = sg2im::data::image::load_rgb(out.join("real").join(name)).unwrap();
        assert_eq!((w, h), (16, 16));
        assert_eq!(rgb, want, "real/{name} differs from the dataset image");
    }
    // SceneFID's crops: one per object but __image__, at the ground-truth box, for every real
    // image and every sample; shapes draws no objects at random, so each sample of a graph has
    // the real image's objects.
    let real_crops = pngs(&out.join("crops/real"));
    let sample_crops = pngs(&out.join("crops/samples"));
    assert_eq!(
        report["num_object_crops"].as_u64(),
        Some(sample_crops.len() as u64)
    );
    assert!(!real_crops.is_empty());
    assert_eq!(sample_crops.len(), 2 * real_crops.len());
    let image_idx = val.vocab().image_object().unwrap();
    for (i, real_name) in real.iter().enumerate() {
        let item = val.get(i, 0).unwrap();
        let boxes: Vec<[f32; 4]> = item
            .objs
            .iter()
            .zip(&item.boxes)
            .filter(|(o, _)| **o != image_idx)
            .map(|(_, b)| *b)
            .collect();
        let stem = real_name.trim_end_matches(".png");
        for (j, b) in boxes.iter().enumerate() {
            let want = sg2im::eval::crops::crop_u8(
                &sg2im::imagenet::deprocess_to_u8_hwc(&item.image, 16, 16),
                16,
                16,
                b,
            );
            let (rgb, w, h) =
                sg2im::data::image::load_rgb(out.join(format!("crops/real/{stem}_{j:02}.png")))
                    .unwrap();
            assert_eq!((rgb, h, w), want, "crop {j} of real image {i}");
            for k in 0..2 {
                let name = format!("crops/samples/{stem}_{k}_{j:02}.png");
                assert!(out.join(&name).is_file(), "{name} missing");
            }
        }
        let extra = format!("crops/real/{stem}_{:02}.png", boxes.len());
        assert!(
            !out.join(&extra).exists(),
            "{extra}: more crops than objects"
        );
    }
    // Nothing of the staging folder is left behind.
    let left: Vec<String> = pngs(&out)
        .into_iter()
        .filter(|n| n.starts_with(".evaluate-staging"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The samples go through the same PNG writer as the real images (checked lossless above);
    // the two samples of a graph come from different noise, so they differ.
    for i in 0..6 {
        let a = sg2im::data::image::load_rgb(out.join(format!("samples/{i:04}_0.png"))).unwrap();
        let b = sg2im::data::image::load_rgb(out.join(format!("samples/{i:04}_1.png"))).unwrap();
        assert_eq!((a.1, a.2), (16, 16));
        assert_ne!(a.0, b.0, "graph {i}: samples 0 and 1 are identical");
    }
}

#[test]
fn bad_inputs_get_one_line() {
    let dir = tmp("bad");
    let missing = dir.join("nope.safetensors");
    assert_one_line_error(
        &sg2im(&[
            "evaluate",
            "--checkpoint",
            s(&missing),
            "--output_dir",
            s(&dir),
        ]),
        &["nope.safetensors"],
    );
    assert_one_line_error(
        &sg2im(&[
            "evaluate",
            "--checkpoint",
            s(trained()),
            "--inception_weights",
            s(&dir.join("no_inception.pth")),
            "--output_dir",
            s(&dir),
        ]),
        &["--inception_weights", "no_inception.pth"],
    );
    // VG's test split reads datasets/vg/test.h5 unless --vg_h5 says otherwise.
    assert_one_line_error(
        &sg2im(&[
            "evaluate",
            "--checkpoint",
            s(trained()),
            "--dataset",
            "vg",
            "--split",
            "test",
            "--vg_image_dir",
            s(&dir),
            "--output_dir",
            s(&dir.join("out")),
        ]),
        &["--vg_h5", "datasets/vg/test.h5", "no such file"],
    );
    // A shapes model on a COCO split: the vocabularies differ.
    let data = dir.join("coco");
    ok(sg2im(&[
        "make-synthetic",
        "--format",
        "coco",
        "--out",
        s(&data),
        "--num_images",
        "4",
        "--num_val_images",
        "4",
        "--image_size",
        "16,16",
    ]));
    let ann = data.join("annotations");
    assert_one_line_error(
        &sg2im(&[
            "evaluate",
            "--checkpoint",
            s(trained()),
            "--dataset",
            "coco",
            "--coco_image_dir",
            s(&data.join("images/val2017")),
            "--instances_json",
            s(&ann.join("instances_val2017.json")),
            "--stuff_json",
            s(&ann.join("stuff_val2017.json")),
            "--output_dir",
            s(&dir.join("out")),
        ]),
        &["vocabulary", "not trained on this dataset"],
    );
}

/// `--split test` evaluates on the shapes test scenes (their own seed), and the report says so.
#[test]
fn the_test_split_is_its_own_scenes() {
    let out = tmp("split-test").join("eval");
    let stdout = ok(sg2im(&[
        "evaluate",
        "--checkpoint",
        s(trained()),
        "--split",
        "test",
        "--num_samples",
        "3",
        "--output_dir",
        s(&out),
    ]))
    .stdout;
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        (&report["dataset"], &report["split"]),
        (&"shapes".into(), &"test".into())
    );
    assert!(String::from_utf8_lossy(&stdout).contains("test"));
    let test = ShapesDataset::new(ShapesConfig {
        image_size: (16, 16),
        mask_size: 4,
        num_images: 8,
        seed: sg2im::data::factory::SHAPES_TEST_SEED,
        ..ShapesConfig::default()
    })
    .unwrap();
    let real = pngs(&out.join("real"));
    assert_eq!(real.len(), 3);
    for (i, name) in real.iter().enumerate() {
        let want = sg2im::imagenet::deprocess_to_u8_hwc(&test.get(i, 0).unwrap().image, 16, 16);
        let (rgb, _, _) = sg2im::data::image::load_rgb(out.join("real").join(name)).unwrap();
        assert_eq!(rgb, want, "real/{name} is not test scene {i}");
    }
}

/// Sample k of a graph uses pass k of the dataset: the same images and objects, relationships
/// drawn afresh (what `evaluate` relies on for the paper's "freshly drawn geometric
/// relationships per sample").
#[test]
fn each_pass_of_the_loader_redraws_the_relationships() {
    use sg2im::data::loader::Loader;
    let val: std::sync::Arc<dyn SceneGraphDataset> = std::sync::Arc::new(
        ShapesDataset::new(ShapesConfig {
            image_size: (16, 16),
            mask_size: 4,
            num_images: 8,
            seed: sg2im::data::factory::SHAPES_VAL_SEED,
            ..ShapesConfig::default()
        })
        .unwrap(),
    );
    let loader = Loader::new(val, 8, false, 0, 0, "evaluate");
    let pass = |k: u64| loader.epoch(k, 0).next().unwrap().batch;
    let (a, b) = (pass(0), pass(1));
    assert_eq!(a.imgs, b.imgs);
    assert_eq!(a.objs, b.objs);
    assert_eq!(a.boxes, b.boxes);
    assert_ne!(a.triples, b.triples, "pass 1 drew the same relationships");
}

/// A re-run into the same folder replaces the earlier run's outputs (no stale samples from a
/// run with more samples per graph are scored); a run that fails after generating leaves the
/// earlier outputs as they were and no staging folder.
#[test]
fn a_rerun_replaces_the_outputs_and_a_failed_run_keeps_them() {
    let dir = tmp("rerun");
    let out = dir.join("eval");
    let run = |k: &str, weights: Option<&Path>| {
        let mut args = vec![
            "evaluate",
            "--checkpoint",
            s(trained()),
            "--samples_per_graph",
            k,
            "--num_samples",
            "3",
            "--output_dir",
            s(&out),
        ];
        if let Some(w) = weights {
            args.extend(["--inception_weights", s(w)]);
        }
        sg2im(&args)
    };
    ok(run("2", None));
    assert_eq!(pngs(&out.join("samples")).len(), 6);
    ok(run("1", None));
    assert_eq!(
        pngs(&out.join("samples")),
        vec!["0000_0.png", "0001_0.png", "0002_0.png"]
    );
    let report_before = std::fs::read(out.join("report.json")).unwrap();
    // Weights that exist but are no Inception: the failure comes after generation.
    let bogus = dir.join("bogus.pth");
    std::fs::write(&bogus, b"not a checkpoint").unwrap();
    assert_one_line_error(&run("2", Some(&bogus)), &["bogus.pth"]);
    assert_eq!(pngs(&out.join("samples")).len(), 3);
    assert_eq!(
        std::fs::read(out.join("report.json")).unwrap(),
        report_before
    );
    assert_eq!(pngs(&out), vec!["real", "report.json", "samples"]);
}
