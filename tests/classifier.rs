//! `sg2im train-classifier` on the built-in shapes data and `sg2im evaluate --classifier`: a
//! short training beats the majority-class rate of the validation crops by a stated margin, the
//! saved file describes itself, evaluate reports object accuracy on generated and real crops,
//! and every bad input is one line with exit code 2.

use sg2im::data::factory::{DatasetKind, DatasetOptions, Split, open_dataset};
use sg2im::eval::classifier::{Classifier, ClassifierArch, FORMAT, ResNet, majority_rate};
use sg2im::io::safetensors_io::{read_safetensors, write_safetensors};
use sg2im::model::params::state_map;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

use common::{assert_one_line_error, ok, s, scratch as tmp, sg2im};

/// Images of 32×32 and 64 validation scenes (about 370 object crops), for both the classifier
/// and the tiny generator, so that evaluate's real images are exactly the classifier's
/// validation images.
const IMAGE_SIZE: &str = "32,32";
const NUM_VAL: usize = 64;

/// Margin by which the short training must beat always guessing the most frequent class. A
/// classifier that learned nothing scores at most the majority rate (plus noise: one standard
/// error of a rate on ~370 crops is at most 0.026, so 0.15 is about 6 of them); the run below
/// reached 0.59 against a majority rate of 0.107 (374 crops) when this was written.
const MARGIN: f64 = 0.15;

/// `train-classifier` on shapes: 512 training scenes, 150 iterations of 32 crops (about 10 s
/// on 2 cores).
fn classifier() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let out = tmp("classifier").join("classifier.safetensors");
        ok(sg2im(&[
            "train-classifier",
            "--dataset",
            "shapes",
            "--image_size",
            IMAGE_SIZE,
            "--shapes_num_train",
            "512",
            "--shapes_num_val",
            &NUM_VAL.to_string(),
            "--num_iterations",
            "150",
            "--batch_size",
            "32",
            "--progress",
            "0",
            "--output",
            s(&out),
        ]));
        out
    })
}

/// A tiny shapes generator at the classifier's image size (two iterations).
fn generator() -> &'static Path {
    static CKPT: OnceLock<PathBuf> = OnceLock::new();
    CKPT.get_or_init(|| {
        let num_val = format!("--shapes_num_val={NUM_VAL}");
        let image_size = format!("--image_size={IMAGE_SIZE}");
        common::train_tiny_shapes("generator", &[&num_val, &image_size])
    })
}

/// The labels of the validation crops, counted independently of the classifier's code.
fn val_labels() -> Vec<usize> {
    let opts = DatasetOptions {
        image_size: (32, 32),
        shapes_num_images: NUM_VAL,
        ..DatasetOptions::default()
    };
    let ds = open_dataset(
        DatasetKind::Shapes,
        Split::Val,
        &opts,
        &sg2im::report::Quiet,
    )
    .unwrap();
    let image = ds.vocab().image_object().unwrap();
    (0..ds.len())
        .flat_map(|i| ds.get(i, 0).unwrap().objs)
        .filter(|&o| o != image)
        .map(|o| o as usize)
        .collect()
}

#[test]
fn a_short_training_beats_the_majority_class_and_the_file_describes_itself() {
    let labels = val_labels();
    let majority = majority_rate(&labels);
    let c = Classifier::load(classifier(), &Default::default()).unwrap();
    let m = &c.meta;
    assert!(
        m.val_accuracy >= majority + MARGIN,
        "val accuracy {} vs majority rate {majority} + {MARGIN}",
        m.val_accuracy
    );
    assert!(m.val_accuracy <= 1.0);
    assert!((m.val_majority_rate - majority).abs() < 1e-12);
    assert_eq!(m.arch, ClassifierArch::Resnet8);
    assert_eq!((m.crop_size, m.image_size), (32, (32, 32)));
    assert_eq!(m.dataset, "shapes");
    assert_eq!(m.num_iterations, 150);
    let vocab = sg2im::data::synthetic::shapes_vocab();
    assert_eq!(m.object_vocab, vocab.object_idx_to_name);
    assert_eq!(c.net.num_classes(), 39);
    // The raw metadata, as other tools read it.
    let (tensors, meta) = read_safetensors(classifier()).unwrap();
    assert_eq!(meta["format"], FORMAT);
    assert_eq!(meta["num_classes"], "39");
    assert_eq!(meta["arch"], "resnet8");
    assert!(meta["object_vocab"].starts_with("[\"__image__\","));
    assert_eq!(tensors["fc.weight"].shape, vec![39, 64]);
    assert_eq!(tensors["conv1.weight"].shape, vec![16, 3, 3, 3]);
}

#[test]
fn evaluate_reports_object_accuracy_of_generated_and_real_crops() {
    let out = tmp("eval").join("eval");
    let stdout = ok(sg2im(&[
        "evaluate",
        "--checkpoint",
        s(generator()),
        "--classifier",
        s(classifier()),
        "--output_dir",
        s(&out),
    ]))
    .stdout;
    let stdout = String::from_utf8_lossy(&stdout);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for key in ["object_accuracy", "object_accuracy_real", "box_iou_mean"] {
        let v = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {report}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        assert!(stdout.contains(key), "{key} not printed: {stdout}");
    }
    assert_eq!(report["num_samples"], NUM_VAL);
    // Same scenes, same size, same crops as the classifier's own validation: the same score
    // (up to a crop or two whose scores differ in the last bits between batch sizes).
    let real = report["object_accuracy_real"].as_f64().unwrap();
    let c = Classifier::load(classifier(), &Default::default()).unwrap();
    let one_crop = 1.0 / val_labels().len() as f64;
    assert!(
        (real - c.meta.val_accuracy).abs() <= 2.0 * one_crop + 1e-12,
        "real-crop accuracy {real} vs the classifier's validation accuracy {}",
        c.meta.val_accuracy
    );
    assert!(real >= c.meta.val_majority_rate + MARGIN, "{real}");
}

#[test]
fn bad_inputs_get_one_line() {
    let dir = tmp("bad");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train-classifier",
            "--dataset",
            "shapes",
            "--output",
            "never.safetensors",
        ];
        args.extend(extra);
        sg2im(&args)
    };
    assert_one_line_error(&train(&["--arch", "vgg"]), &["--arch \"vgg\"", "resnet8"]);
    assert_one_line_error(&train(&["--crop_size", "0"]), &["--crop_size 0"]);
    assert!(!Path::new("never.safetensors").exists());

    let evaluate = |classifier: &Path| {
        sg2im(&[
            "evaluate",
            "--checkpoint",
            s(generator()),
            "--classifier",
            s(classifier),
            "--num_samples",
            "2",
            "--output_dir",
            s(&dir.join("out")),
        ])
    };
    assert_one_line_error(
        &evaluate(&dir.join("nope.safetensors")),
        &["nope.safetensors"],
    );
    // A model file is a safetensors file, but not a classifier.
    assert_one_line_error(
        &evaluate(generator()),
        &["not an sg2im-rs object classifier"],
    );
    // A classifier for another vocabulary: entry 5 renamed.
    let (tensors, mut meta) = read_safetensors(classifier()).unwrap();
    let mut names: Vec<String> = serde_json::from_str(&meta["object_vocab"]).unwrap();
    let was = names[5].clone();
    names[5] = "purple blob".into();
    meta.insert(
        "object_vocab".into(),
        serde_json::to_string(&names).unwrap(),
    );
    let other = dir.join("other_vocab.safetensors");
    write_safetensors(&other, &tensors, Some(meta)).unwrap();
    assert_one_line_error(
        &evaluate(&other),
        &[
            "other_vocab.safetensors",
            &format!("index 5 (\"purple blob\" vs {was:?})"),
        ],
    );
}

/// A torchvision-style ResNet-18 state dict (ImageNet's 1000 classes, `num_batches_tracked`
/// scalars as torchvision writes them) from a seeded initialisation, in `torch.save` format.
fn resnet18_pth(path: &Path) -> Vec<f32> {
    use rand::SeedableRng;
    use sg2im::io::torch::{PyValue, TorchTensor, save_legacy};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let net = ResNet::init(
        ClassifierArch::Resnet18,
        1000,
        &Default::default(),
        &mut rng,
    );
    let mut items = Vec::new();
    let mut conv1 = Vec::new();
    for (k, v) in state_map(&net) {
        let values = v.convert::<f32>().try_to_vec::<f32>().unwrap();
        if k == "conv1.weight" {
            conv1 = values.clone();
        }
        let shape = net_shape(&net, &k);
        items.push((
            PyValue::Str(k.clone()),
            PyValue::Tensor(TorchTensor::from_f32(shape, &values)),
        ));
        if let Some(bn) = k.strip_suffix(".running_var") {
            items.push((
                PyValue::Str(format!("{bn}.num_batches_tracked")),
                PyValue::Tensor(TorchTensor::from_i64(vec![], &[0])),
            ));
        }
    }
    save_legacy(path, &PyValue::Dict(items)).unwrap();
    conv1
}

fn net_shape(net: &ResNet, key: &str) -> Vec<usize> {
    sg2im::model::params::shapes(net)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap()
        .1
}

#[test]
fn resnet18_starts_from_torchvision_weights_with_a_fresh_fc() {
    let dir = tmp("resnet18");
    let pth = dir.join("resnet18.pth");
    let conv1 = resnet18_pth(&pth);
    let out = dir.join("c18.safetensors");
    let lr = 1e-3;
    let train = |arch: &str, out: &Path| {
        sg2im(&[
            "train-classifier",
            "--dataset",
            "shapes",
            "--arch",
            arch,
            "--init_from",
            s(&pth),
            "--image_size",
            "32,32",
            "--shapes_num_train",
            "8",
            "--shapes_num_val",
            "4",
            "--num_iterations",
            "2",
            "--batch_size",
            "8",
            "--learning_rate",
            &lr.to_string(),
            "--progress",
            "0",
            "--output",
            s(out),
        ])
    };
    ok(train("resnet18", &out));
    let c = Classifier::load(&out, &Default::default()).unwrap();
    assert_eq!(c.meta.arch, ClassifierArch::Resnet18);
    assert_eq!(c.net.num_classes(), 39);
    // Two Adam steps move a weight by about lr each (at most a few lr): the stem still holds
    // the file's weights, not a fresh draw (whose values are of order 0.1).
    let trained = c.net.conv1.weight.to_data().try_to_vec::<f32>().unwrap();
    let moved = conv1
        .iter()
        .zip(&trained)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved <= 4.0 * 2.0 * lr as f32, "conv1 moved by {moved}");
    // The same weights do not fit the small network: one line naming a tensor.
    assert_one_line_error(
        &train("resnet8", &dir.join("c8.safetensors")),
        &["--init_from", "resnet18.pth", "conv1.weight"],
    );
    let missing = sg2im(&[
        "train-classifier",
        "--dataset",
        "shapes",
        "--arch",
        "resnet18",
        "--init_from",
        s(&dir.join("missing.pth")),
        "--output",
        s(&dir.join("x.safetensors")),
    ]);
    assert_one_line_error(&missing, &["--init_from", "missing.pth", "no such file"]);
}
