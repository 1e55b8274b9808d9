//! `sg2im train --dataset coco` and `--dataset vg` end to end on files in the real on-disk
//! formats, written by `sg2im make-synthetic` (and, for VG, `sg2im preprocess-vg`).

mod common;

use common::{ok, scratch};
use std::path::Path;

/// Runs `sg2im ARGS…`, asserts success and returns stdout.
fn sg2im(args: &[&str]) -> String {
    String::from_utf8_lossy(&ok(common::sg2im(args)).stdout).into_owned()
}

/// Tiny networks; 4 iterations (part of an epoch), a checkpoint at t = 4.
fn tiny(out: &Path) -> Vec<String> {
    common::tiny_flags(
        out,
        &[
            "--num_val_samples=4",
            "--gconv_num_layers=1",
            "--layout_noise_dim=2",
            "--loader_num_workers=2",
            "--print_every=2",
            "--checkpoint_every=4",
            "--num_iterations=4",
            "--tensorboard=0",
        ],
    )
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn trains_on_coco_stuff_files() {
    let dir = scratch("coco");
    let data = dir.join("coco");
    sg2im(&[
        "make-synthetic",
        "--format",
        "coco",
        "--out",
        &p(&data),
        "--num_images",
        "24",
        "--num_val_images",
        "8",
        "--image_size",
        "48,64",
    ]);
    let ann = data.join("annotations");
    let out = dir.join("run");
    let mut args: Vec<String> = vec![
        "train".into(),
        "--dataset=coco".into(),
        "--mask_size=4".into(),
        "--mask_loss_weight=0.1".into(),
    ];
    for (flag, path) in [
        ("--coco_train_image_dir", data.join("images/train2017")),
        ("--coco_val_image_dir", data.join("images/val2017")),
        (
            "--coco_train_instances_json",
            ann.join("instances_train2017.json"),
        ),
        ("--coco_train_stuff_json", ann.join("stuff_train2017.json")),
        (
            "--coco_val_instances_json",
            ann.join("instances_val2017.json"),
        ),
        ("--coco_val_stuff_json", ann.join("stuff_val2017.json")),
        ("--coco_image_cache_dir", dir.join("cache")),
    ] {
        args.push(format!("{flag}={}", path.display()));
    }
    args.extend(tiny(&out));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = sg2im(&refs);
    assert!(stdout.contains("COCO train: "), "{stdout}");
    assert!(stdout.contains(" G [mask_loss]"), "{stdout}");
    assert!(stdout.contains("Training finished at t = 4"), "{stdout}");
    assert!(out.join("checkpoint_with_model.safetensors").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trains_on_preprocessed_visual_genome_files() {
    let dir = scratch("vg");
    let raw = dir.join("raw");
    sg2im(&[
        "make-synthetic",
        "--format",
        "vg",
        "--out",
        &p(&raw),
        "--num_images",
        "120",
        "--image_size",
        "48,64",
    ]);
    let h5 = dir.join("h5");
    std::fs::create_dir_all(&h5).unwrap();
    sg2im(&[
        "preprocess-vg",
        &format!("--splits_json={}", p(&raw.join("vg_splits.json"))),
        &format!("--images_json={}", p(&raw.join("image_data.json"))),
        &format!("--objects_json={}", p(&raw.join("objects.json"))),
        &format!("--attributes_json={}", p(&raw.join("attributes.json"))),
        &format!("--object_aliases={}", p(&raw.join("object_alias.txt"))),
        &format!(
            "--relationship_aliases={}",
            p(&raw.join("relationship_alias.txt"))
        ),
        &format!(
            "--relationships_json={}",
            p(&raw.join("relationships.json"))
        ),
        "--min_image_size=32",
        "--min_object_size=4",
        "--min_object_instances=5",
        "--min_attribute_instances=5",
        "--min_relationship_instances=5",
        &format!("--output_vocab_json={}", p(&h5.join("vocab.json"))),
        &format!("--output_h5_dir={}", p(&h5)),
    ]);
    let out = dir.join("run");
    let mut args: Vec<String> = vec![
        "train".into(),
        "--dataset=vg".into(),
        format!("--vg_image_dir={}", p(&raw.join("images"))),
        format!("--train_h5={}", p(&h5.join("train.h5"))),
        format!("--val_h5={}", p(&h5.join("val.h5"))),
        format!("--vocab_json={}", p(&h5.join("vocab.json"))),
    ];
    args.extend(tiny(&out));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = sg2im(&refs);
    // VG has no masks: no mask loss, and the layout uses predicted masks.
    assert!(!stdout.contains(" G [mask_loss]"), "{stdout}");
    assert!(stdout.contains("Training finished at t = 4"), "{stdout}");
    assert!(out.join("checkpoint_with_model.safetensors").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}
