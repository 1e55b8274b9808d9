//! `sg2im sample-images` end to end on the built-in `shapes` data: the files it writes, the
//! `data.pt` record against the dataset, `--use_gt_boxes`, `--model_mode`, `--checkpoint_list`
//! layouts, a model without mask network, and one-line errors with exit code 2.
//!
//! The model is trained for two iterations with tiny networks (a fraction of a second); one
//! model without mask network is built with random weights through the library.

use sg2im::data::SceneGraphDataset;
use sg2im::data::synthetic::{ShapesConfig, ShapesDataset, shapes_vocab};
use sg2im::io::model_file::{ModelBundle, save_model_file};
use sg2im::io::torch::{PyValue, TorchDType, TorchTensor};
use sg2im::model::generator::{Sg2Im, Sg2ImConfig};
use sg2im::train::TrainArgs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

mod common;

use common::{TINY_FLAGS, TINY_SHAPES, assert_one_line_error, ok, s, scratch as tmp, sg2im};

fn trained() -> &'static Path {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| common::train_tiny_shapes("train", &["--seed=3"]))
}

/// The validation scenes `sample-images --dataset shapes` reads for the tiny model.
fn val_scenes(image_size: (usize, usize)) -> ShapesDataset {
    ShapesDataset::new(ShapesConfig {
        image_size,
        mask_size: 4,
        num_images: 8,
        seed: sg2im::data::factory::SHAPES_VAL_SEED,
        ..ShapesConfig::default()
    })
    .unwrap()
}

fn sample(ckpt: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sample-images",
        "--checkpoint",
        s(ckpt),
        "--dataset",
        "shapes",
        "--image_size",
        "16,16",
        "--batch_size",
        "3",
        "--loader_num_workers",
        "1",
        "--output_dir",
        s(out),
    ];
    args.extend_from_slice(extra);
    ok(sg2im(&args))
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:04}.png")).collect()
}

/// `data.pt` as `key → list` (and the vocabulary dict).
fn record(dir: &Path) -> Vec<(String, PyValue)> {
    let v = sg2im::io::torch::load(&dir.join("data.pt")).unwrap();
    v.as_dict()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn field<'a>(rec: &'a [(String, PyValue)], key: &str) -> &'a [PyValue] {
    rec.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key:?} in data.pt"))
        .1
        .as_list()
        .unwrap()
}

fn tensor(v: &PyValue) -> &TorchTensor {
    v.as_tensor().unwrap()
}

#[test]
fn writes_images_gt_images_and_a_record_matching_the_dataset() {
    let out = tmp("full");
    // A non-square size unlike the model's 16×16: both the dataset and the model follow it.
    sample(
        trained(),
        &out,
        &[
            "--image_size",
            "32,24",
            "--num_samples",
            "7",
            "--save_gt_imgs",
            "1",
            "--save_graphs",
            "1",
        ],
    );
    assert_eq!(pngs(&out.join("images")), names(7));
    assert_eq!(pngs(&out.join("images_gt")), names(7));
    let graphs = pngs(&out.join("graphs"));
    assert_eq!(graphs.len(), 7);
    assert!(
        graphs[0] == "0000.png" || graphs[0] == "0000.dot",
        "{graphs:?}"
    );
    for dir in ["images", "images_gt"] {
        let (_, w, h) = sg2im::data::image::load_rgb(out.join(dir).join("0006.png")).unwrap();
        assert_eq!((h, w), (32, 24), "{dir}");
    }

    let rec = record(&out);
    let keys: Vec<&str> = rec.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "vocab",
            "objs",
            "masks_pred",
            "boxes_pred",
            "masks_gt",
            "boxes_gt",
            "filenames"
        ]
    );
    let vocab = &rec[0].1;
    let idx_to_name: Vec<&str> = vocab
        .get("object_idx_to_name")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(idx_to_name, shapes_vocab().object_idx_to_name);
    let filenames: Vec<&str> = field(&rec, "filenames")
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(filenames, names(7));

    let ds = val_scenes((32, 24));
    for i in 0..7 {
        let want = ds.get(i, 0).unwrap();
        let o = want.objs.len();
        let objs = tensor(&field(&rec, "objs")[i]);
        assert_eq!(
            (objs.dtype, objs.to_i64()),
            (TorchDType::I64, want.objs.clone())
        );
        let boxes_gt = tensor(&field(&rec, "boxes_gt")[i]);
        assert_eq!(boxes_gt.shape, [o, 4]);
        let flat: Vec<f32> = want.boxes.iter().flatten().copied().collect();
        assert_eq!(boxes_gt.to_f32(), flat, "image {i}");
        let masks_gt = tensor(&field(&rec, "masks_gt")[i]);
        assert_eq!(
            (masks_gt.dtype, masks_gt.shape.as_slice()),
            (TorchDType::I64, &[o, 4, 4][..])
        );
        let want_masks: Vec<i64> = want.masks.unwrap().iter().map(|&x| i64::from(x)).collect();
        assert_eq!(masks_gt.to_i64(), want_masks, "image {i}");
        assert_eq!(tensor(&field(&rec, "boxes_pred")[i]).shape, [o, 4]);
        let masks_pred = tensor(&field(&rec, "masks_pred")[i]);
        assert_eq!(masks_pred.shape, [o, 4, 4]);
        assert!(masks_pred.to_f32().iter().all(|p| (0.0..=1.0).contains(p)));
    }
    std::fs::remove_dir_all(&out).unwrap();
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    pngs(dir)
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

#[test]
fn gt_boxes_change_the_images_but_not_the_predictions_and_runs_repeat() {
    let dir = tmp("gt");
    let (a, a2, gt, train) = (
        dir.join("a"),
        dir.join("a2"),
        dir.join("gt"),
        dir.join("train"),
    );
    sample(trained(), &a, &[]);
    sample(trained(), &a2, &[]);
    sample(trained(), &gt, &["--use_gt_boxes", "1"]);
    sample(trained(), &train, &["--model_mode", "train"]);
    // The shapes validation split holds 8 scenes: num_samples (10000) is capped there.
    assert_eq!(pngs(&a.join("images")), names(8));
    assert!(!a.join("images_gt").exists() && !a.join("graphs").exists());

    // Same seed, same everything.
    assert_eq!(read_all(&a.join("images")), read_all(&a2.join("images")));
    assert_eq!(
        std::fs::read(a.join("data.pt")).unwrap(),
        std::fs::read(a2.join("data.pt")).unwrap()
    );

    // Ground-truth boxes go into the layout only: the recorded predictions are unchanged,
    // the images are not.
    let (ra, rgt) = (record(&a), record(&gt));
    assert_eq!(field(&ra, "boxes_pred"), field(&rgt, "boxes_pred"));
    let (ia, igt) = (read_all(&a.join("images")), read_all(&gt.join("images")));
    assert_eq!((ia.len(), igt.len()), (8, 8));
    assert!(
        ia.iter().zip(&igt).all(|(x, y)| x != y),
        "--use_gt_boxes left some images unchanged"
    );
    // Train mode normalises with batch statistics.
    assert_ne!(ia, read_all(&train.join("images")));
    // Another seed draws other layout noise (the model has layout_noise_dim 4).
    let other = dir.join("seed1");
    sample(trained(), &other, &["--seed", "1"]);
    let io = read_all(&other.join("images"));
    assert_eq!(io.len(), 8);
    // Image 0 of this two-iteration model is blank (every pixel 0) under either seed; the
    // other seven must change.
    let differ = ia.iter().zip(&io).filter(|(x, y)| x != y).count();
    assert!(differ >= 7, "--seed 1 changed only {differ} of 8 images");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_list_writes_one_result_dir_per_file_and_snapshot() {
    let dir = tmp("list");
    let snaps = dir.join("snaps");
    std::fs::create_dir_all(&snaps).unwrap();
    for name in [
        "snapshot_200.safetensors",
        "snapshot_100.safetensors",
        "other.safetensors",
    ] {
        std::fs::copy(trained(), snaps.join(name)).unwrap();
    }
    let list = dir.join("list.txt");
    std::fs::write(
        &list,
        format!("{}\n\n{}\n", trained().display(), snaps.display()),
    )
    .unwrap();
    let out = dir.join("out");
    // No --checkpoint: the original's default --checkpoint made this always fail.
    ok(sg2im(&[
        "sample-images",
        "--checkpoint_list",
        s(&list),
        "--dataset",
        "shapes",
        "--image_size",
        "16,16",
        "--num_samples",
        "5",
        "--output_dir",
        s(&out),
    ]));
    // A file on line 1 → result001; the directory on line 3 (index 2) → result002_<n>.
    assert_eq!(pngs(&out), ["result001", "result002_100", "result002_200"]);
    for r in pngs(&out) {
        assert_eq!(pngs(&out.join(&r).join("images")), names(5), "{r}");
        assert_eq!(field(&record(&out.join(&r)), "filenames").len(), 5, "{r}");
    }
    // Same weights, same seed: same images.
    assert_eq!(
        read_all(&out.join("result001/images")),
        read_all(&out.join("result002_200/images"))
    );

    let both = sg2im(&[
        "sample-images",
        "--checkpoint",
        s(trained()),
        "--checkpoint_list",
        s(&list),
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));

    std::fs::write(&list, "does/not/exist.pt\n").unwrap();
    let bad = sg2im(&["sample-images", "--checkpoint_list", s(&list)]);
    assert_one_line_error(&bad, &["--checkpoint_list", "line 1", "does/not/exist.pt"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_without_mask_network_records_none_masks() {
    let dir = tmp("nomask");
    let mut cfg = Sg2ImConfig::train_defaults(shapes_vocab());
    cfg.image_size = (16, 16);
    cfg.embedding_dim = 8;
    cfg.gconv_dim = 8;
    cfg.gconv_hidden_dim = 16;
    cfg.gconv_num_layers = 2;
    cfg.refinement_dims = vec![16, 8];
    cfg.layout_noise_dim = 0;
    cfg.mask_size = 0;
    let device = burn::tensor::Device::flex();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let model = Sg2Im::init(&cfg, &device, &mut rng).unwrap();
    let mut flags: Vec<&str> = TINY_FLAGS.iter().chain(&TINY_SHAPES).copied().collect();
    flags.push("--mask_size=4"); // the dataset still has masks
    let args = TrainArgs::parse_from(flags).unwrap().to_json();
    let ckpt = dir.join("nomask.safetensors");
    save_model_file(
        &ckpt,
        &ModelBundle {
            generator: model.to_net_state(),
            d_obj: None,
            d_img: None,
            args: Some(args),
        },
    )
    .unwrap();
    let out = dir.join("out");
    sample(&ckpt, &out, &["--use_gt_masks", "1", "--use_gt_boxes", "1"]);
    assert_eq!(pngs(&out.join("images")), names(8));
    let rec = record(&out);
    assert!(
        field(&rec, "masks_pred")
            .iter()
            .all(|m| matches!(m, PyValue::None))
    );
    assert!(
        field(&rec, "masks_gt")
            .iter()
            .all(|m| m.as_tensor().is_some())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_files_are_one_line_errors_naming_the_file_and_flag() {
    let dir = tmp("errors");
    let missing = dir.join("missing.pt");
    let out = sg2im(&[
        "sample-images",
        "--checkpoint",
        s(&missing),
        "--output_dir",
        s(&dir),
    ]);
    assert_one_line_error(&out, &["missing.pt", "checkpoint not found"]);

    let h5 = dir.join("val.h5");
    let out = sg2im(&[
        "sample-images",
        "--checkpoint",
        s(trained()),
        "--dataset",
        "vg",
        "--vg_h5",
        s(&h5),
        "--output_dir",
        s(&dir),
    ]);
    assert_one_line_error(&out, &["--vg_h5", "val.h5"]);

    let out = sg2im(&[
        "sample-images",
        "--checkpoint",
        s(trained()),
        "--dataset",
        "coco",
        "--instances_json",
        s(&dir.join("instances.json")),
        "--output_dir",
        s(&dir),
    ]);
    assert_one_line_error(&out, &["--instances_json", "instances.json"]);

    let help = ok(sg2im(&["sample-images", "--help"]));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Fixed bugs of the original") && help.contains("--save_graphs works"));

    let out = sg2im(&["sample-images", "--dataset", "imagenet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected coco, vg or shapes"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Tiny networks for the COCO and VG runs (two iterations).
fn tiny_real(out: &Path) -> Vec<String> {
    common::tiny_flags(
        out,
        &[
            "--num_val_samples=4",
            "--mask_size=4",
            "--gconv_num_layers=1",
            "--layout_noise_dim=2",
            "--checkpoint_every=2",
            "--num_iterations=2",
            "--tensorboard=0",
        ],
    )
}

#[test]
fn samples_coco_files_with_the_checkpoints_dataset_options() {
    use sg2im::data::coco::{CocoConfig, CocoSceneGraphDataset};
    let dir = tmp("coco");
    let data = dir.join("coco");
    ok(sg2im(&[
        "make-synthetic",
        "--format",
        "coco",
        "--out",
        s(&data),
        "--num_images",
        "8",
        "--num_val_images",
        "6",
        "--image_size",
        "32,32",
    ]));
    let ann = data.join("annotations");
    let (val_images, val_inst, val_stuff) = (
        data.join("images/val2017"),
        ann.join("instances_val2017.json"),
        ann.join("stuff_val2017.json"),
    );
    let run = dir.join("run");
    let mut train = vec!["train".to_string(), "--dataset=coco".into()];
    for (flag, path) in [
        ("--coco_train_image_dir", data.join("images/train2017")),
        (
            "--coco_train_instances_json",
            ann.join("instances_train2017.json"),
        ),
        ("--coco_train_stuff_json", ann.join("stuff_train2017.json")),
        ("--coco_val_image_dir", val_images.clone()),
        ("--coco_val_instances_json", val_inst.clone()),
        ("--coco_val_stuff_json", val_stuff.clone()),
    ] {
        train.push(format!("{flag}={}", path.display()));
    }
    train.extend(tiny_real(&run));
    ok(sg2im(&train));
    let ckpt = run.join("checkpoint_with_model.safetensors");
    let sample_flags = |ckpt: &Path, out: &Path| -> Vec<String> {
        [
            "sample-images",
            "--checkpoint",
            s(ckpt),
            "--dataset",
            "coco",
            "--coco_image_dir",
            s(&val_images),
            "--instances_json",
            s(&val_inst),
            "--stuff_json",
            s(&val_stuff),
            "--image_size",
            "16,16",
            "--batch_size",
            "4",
            "--use_gt_masks",
            "1",
            "--output_dir",
            s(out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let out = dir.join("out");
    ok(sg2im(&sample_flags(&ckpt, &out)));

    // What the loader gives for the checkpoint's options (mask 4, stuff only, no "other").
    let ds = CocoSceneGraphDataset::new(CocoConfig {
        image_dir: val_images.clone(),
        instances_json: val_inst.clone(),
        stuff_json: Some(val_stuff.clone()),
        image_size: (16, 16),
        mask_size: 4,
        ..CocoConfig::default()
    })
    .unwrap();
    assert!(!ds.is_empty());
    assert_eq!(pngs(&out.join("images")), names(ds.len()));
    let rec = record(&out);
    for i in 0..ds.len() {
        let want = ds.get(i, 0).unwrap();
        assert_eq!(
            tensor(&field(&rec, "objs")[i]).to_i64(),
            want.objs,
            "image {i}"
        );
        let want_masks: Vec<i64> = want.masks.unwrap().iter().map(|&x| i64::from(x)).collect();
        assert_eq!(tensor(&field(&rec, "masks_gt")[i]).to_i64(), want_masks);
    }

    // A shapes model on COCO data: the vocabularies do not fit.
    let bad = sg2im(&sample_flags(trained(), &dir.join("bad")));
    assert_one_line_error(
        &bad,
        &[
            "--dataset coco",
            "object classes",
            "trained on this dataset",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn samples_preprocessed_visual_genome_without_gt_masks() {
    let dir = tmp("vg");
    let raw = dir.join("raw");
    ok(sg2im(&[
        "make-synthetic",
        "--format",
        "vg",
        "--out",
        s(&raw),
        "--num_images",
        "120",
        "--image_size",
        "48,64",
    ]));
    let h5 = dir.join("h5");
    std::fs::create_dir_all(&h5).unwrap();
    let r = |name: &str| raw.join(name).display().to_string();
    ok(sg2im(&[
        "preprocess-vg".into(),
        format!("--splits_json={}", r("vg_splits.json")),
        format!("--images_json={}", r("image_data.json")),
        format!("--objects_json={}", r("objects.json")),
        format!("--attributes_json={}", r("attributes.json")),
        format!("--object_aliases={}", r("object_alias.txt")),
        format!("--relationship_aliases={}", r("relationship_alias.txt")),
        format!("--relationships_json={}", r("relationships.json")),
        "--min_image_size=32".into(),
        "--min_object_size=4".into(),
        "--min_object_instances=5".into(),
        "--min_attribute_instances=5".into(),
        "--min_relationship_instances=5".into(),
        format!("--output_vocab_json={}", h5.join("vocab.json").display()),
        format!("--output_h5_dir={}", h5.display()),
    ]));
    let run = dir.join("run");
    let mut train = vec![
        "train".to_string(),
        "--dataset=vg".into(),
        format!("--vg_image_dir={}", r("images")),
        format!("--train_h5={}", h5.join("train.h5").display()),
        format!("--val_h5={}", h5.join("val.h5").display()),
        format!("--vocab_json={}", h5.join("vocab.json").display()),
    ];
    train.extend(tiny_real(&run));
    ok(sg2im(&train));
    let out = dir.join("out");
    // --dataset vg is the default.
    ok(sg2im(&[
        "sample-images",
        "--checkpoint",
        s(&run.join("checkpoint_with_model.safetensors")),
        "--vg_h5",
        s(&h5.join("val.h5")),
        "--vg_image_dir",
        &r("images"),
        "--image_size",
        "16,16",
        "--num_samples",
        "5",
        "--batch_size",
        "2",
        "--use_gt_masks",
        "1",
        "--save_gt_imgs",
        "1",
        "--output_dir",
        s(&out),
    ]));
    assert_eq!(pngs(&out.join("images")), names(5));
    assert_eq!(pngs(&out.join("images_gt")), names(5));
    let rec = record(&out);
    assert_eq!(field(&rec, "masks_gt").len(), 5);
    assert!(
        field(&rec, "masks_gt")
            .iter()
            .all(|m| matches!(m, PyValue::None))
    );
    assert!(
        field(&rec, "masks_pred")
            .iter()
            .all(|m| tensor(m).shape[1..] == [4, 4])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
