//! `sg2im run` and `sg2im import-torch` end to end: outputs against the torch_parity fixtures
//! (eval mode, no noise: the `ref_small` model has `layout_noise_dim = 0`) and the one-line
//! errors with exit code 2 for bad input.

use sg2im::io::safetensors_io::read_safetensors;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/torch_parity"
    ))
    .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg2im-run-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sg2im(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sg2im"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[track_caller]
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= atol, "{what}: max abs diff {worst} > {atol}");
}

/// Images as the fixture computed them (atol 1e-4 on values up to ±20, see the README).
#[test]
fn run_writes_images_and_tensors_equal_to_the_original() {
    let dir = tmp("sheep");
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&fixture("ref_small_legacy.pt")),
        "--scene_graphs_json",
        s(&fixture("figure_6_sheep.json")),
        "--output_dir",
        s(&dir.join("out")),
        "--draw_scene_graphs",
        "1",
        "--device",
        // `tests/gpu_path.rs`: the GPU path runs this test with the same tolerances.
        &std::env::var("SG2IM_TEST_DEVICE").unwrap_or_else(|_| "cpu".to_string()),
        "--save_tensors",
        s(&dir.join("t.safetensors")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..7 {
        let png = dir.join(format!("out/img{i:06}.png"));
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), (32, 32));
        let sg = dir.join(format!("out/sg{i:06}"));
        assert!(sg.with_extension("png").exists() || sg.with_extension("dot").exists());
    }
    assert!(!dir.join("out/img000007.png").exists());
    let (got, _) = read_safetensors(dir.join("t.safetensors")).unwrap();
    let (want, _) = read_safetensors(fixture("outputs.safetensors")).unwrap();
    assert_eq!(got["imgs_pred"].shape, vec![7, 3, 32, 32]);
    assert_close(
        "imgs_pred",
        &got["imgs_pred"].to_f32(),
        &want["sheep.pred.imgs_pred"].to_f32(),
        1e-4,
    );
    assert_close(
        "boxes_pred",
        &got["boxes_pred"].to_f32(),
        &want["sheep.pred.boxes_pred"].to_f32(),
        1e-5,
    );
    assert_close(
        "masks_pred",
        &got["masks_pred"].to_f32(),
        &want["sheep.pred.masks_pred"].to_f32(),
        1e-5,
    );
    assert_eq!(got["obj_to_img"].dtype, safetensors::Dtype::I64);
    assert_eq!(
        got["obj_to_img"].to_i64(),
        want["sheep.obj_to_img"].to_i64()
    );
}

/// Hand-placed `"boxes"` and `"masks"` in the JSON act like the original's `boxes_gt` / `masks_gt`.
#[test]
fn boxes_and_masks_in_the_json_replace_the_predicted_layout() {
    let (want, _) = read_safetensors(fixture("outputs.safetensors")).unwrap();
    let mut graphs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("figure_6_sheep.json")).unwrap())
            .unwrap();
    let boxes = want["sheep.boxes_gt"].to_f32();
    let masks = want["sheep.masks_gt"].to_f32();
    let o2i = want["sheep.obj_to_img"].to_i64();
    let mut k = 0;
    for (i, g) in graphs.as_array_mut().unwrap().iter_mut().enumerate() {
        let n = g["objects"].as_array().unwrap().len();
        assert_eq!(o2i.iter().filter(|&&x| x == i as i64).count(), n + 1);
        let b: Vec<Vec<f32>> = (k..k + n)
            .map(|j| boxes[j * 4..j * 4 + 4].to_vec())
            .collect();
        let m: Vec<Vec<Vec<f32>>> = (k..k + n)
            .map(|j| {
                (0..8)
                    .map(|r| masks[j * 64 + r * 8..j * 64 + r * 8 + 8].to_vec())
                    .collect()
            })
            .collect();
        g["boxes"] = serde_json::json!(b);
        let with_masks = g.clone();
        g["masks"] = serde_json::json!(m);
        let _ = with_masks;
        k += n + 1; // skip the __image__ row, whose GT box/mask is the whole image
    }
    let dir = tmp("boxes");
    let run = |graphs: &serde_json::Value, name: &str| {
        let json = dir.join(format!("{name}.json"));
        std::fs::write(&json, graphs.to_string()).unwrap();
        let t = dir.join(format!("{name}.safetensors"));
        let out = sg2im(&[
            "run",
            "--checkpoint",
            s(&fixture("ref_small.pt")),
            "--scene_graphs_json",
            s(&json),
            "--output_dir",
            s(&dir.join(name)),
            "--save_tensors",
            s(&t),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_safetensors(t).unwrap().0["imgs_pred"].to_f32()
    };
    assert_close(
        "boxes+masks",
        &run(&graphs, "boxmask"),
        &want["sheep.gtboxmask.imgs_pred"].to_f32(),
        1e-4,
    );
    for g in graphs.as_array_mut().unwrap() {
        g.as_object_mut().unwrap().remove("masks");
    }
    assert_close(
        "boxes only",
        &run(&graphs, "box"),
        &want["sheep.gtbox.imgs_pred"].to_f32(),
        1e-4,
    );
}

#[test]
fn import_torch_then_run_gives_the_same_images_as_the_pt_file() {
    let dir = tmp("import");
    let model = dir.join("models/small.safetensors");
    let out = sg2im(&[
        "import-torch",
        "--input",
        s(&fixture("ref_small_full_legacy.pt")),
        "--output",
        s(&model),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("object discriminator") && stdout.contains("image discriminator"),
        "{stdout}"
    );
    let run = |ckpt: &Path, name: &str| {
        let t = dir.join(format!("{name}.safetensors"));
        let out = sg2im(&[
            "run",
            "--checkpoint",
            s(ckpt),
            "--scene_graphs",
            s(&fixture("figure_5_vg.json")),
            "--output_dir",
            s(&dir.join(name)),
            "--save_tensors",
            s(&t),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_safetensors(t).unwrap().0["imgs_pred"].to_f32()
    };
    // Same weights, same arithmetic: bit-identical.
    assert_eq!(
        run(&model, "ours"),
        run(&fixture("ref_small_full_legacy.pt"), "pt")
    );
}

#[test]
fn an_empty_graph_works() {
    let dir = tmp("empty");
    let json = dir.join("g.json");
    std::fs::write(
        &json,
        r#"[{"objects": [], "relationships": []}, {"objects": ["sky"], "relationships": []}]"#,
    )
    .unwrap();
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&fixture("ref_small.pt")),
        "--scene_graphs_json",
        s(&json),
        "--output_dir",
        s(&dir.join("o")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("o/img000000.png").exists() && dir.join("o/img000001.png").exists());
    // A file with only an empty graph has no triples at all.
    std::fs::write(&json, r#"[{"objects": [], "relationships": []}]"#).unwrap();
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&fixture("ref_small.pt")),
        "--scene_graphs_json",
        s(&json),
        "--output_dir",
        s(&dir.join("o2")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("o2/img000000.png").exists());
}

fn run_bad_json(name: &str, json: &str) -> Output {
    let dir = tmp(name);
    let path = dir.join("bad.json");
    std::fs::write(&path, json).unwrap();
    sg2im(&[
        "run",
        "--checkpoint",
        s(&fixture("ref_small.pt")),
        "--scene_graphs_json",
        s(&path),
        "--output_dir",
        s(&dir.join("o")),
    ])
}

#[test]
fn unknown_object_names_the_word_the_graph_and_the_closest_words() {
    let out = run_bad_json(
        "obj",
        r#"[{"objects": ["sky"], "relationships": []}, {"objects": ["grass", "zebraa"], "relationships": []}]"#,
    );
    assert_one_line_error(
        &out,
        &[
            "\"zebraa\"",
            "scene graph 1",
            "object 1",
            "closest",
            "\"zebra\"",
        ],
    );
}

#[test]
fn unknown_predicate_names_the_word_and_the_closest_words() {
    let out = run_bad_json(
        "pred",
        r#"[{"objects": ["sky", "grass"], "relationships": [[0, "abov", 1]]}]"#,
    );
    assert_one_line_error(
        &out,
        &["\"abov\"", "scene graph 0", "relationship 0", "\"above\""],
    );
}

#[test]
fn out_of_range_relationship_index_is_reported() {
    let out = run_bad_json(
        "range",
        r#"[{"objects": ["sky", "grass"], "relationships": [[0, "above", 5]]}]"#,
    );
    assert_one_line_error(
        &out,
        &["scene graph 0", "relationship 0", "index 5", "2 objects"],
    );
}

#[test]
fn malformed_json_gives_line_and_column() {
    let out = run_bad_json(
        "syntax",
        "[{\"objects\": [\"sky\"],\n  \"relationships\": [[0, \"above\" 1]]}]",
    );
    assert_one_line_error(&out, &["bad.json:2:", "malformed JSON"]);
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_rejected() {
    let dir = tmp("notckpt");
    let bogus = dir.join("model.pt");
    std::fs::write(&bogus, "this is not a checkpoint\n").unwrap();
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&bogus),
        "--scene_graphs_json",
        s(&fixture("figure_6_sheep.json")),
        "--output_dir",
        s(&dir.join("o")),
    ]);
    assert_one_line_error(&out, &["model.pt", "not a PyTorch checkpoint"]);
    let missing = dir.join("nope.pt");
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&missing),
        "--output_dir",
        s(&dir.join("o")),
    ]);
    assert_one_line_error(&out, &["nope.pt", "not found", "sg2im download models"]);
}

#[test]
fn weights_that_do_not_match_the_configuration_are_rejected() {
    use sg2im::io::model_file::{load_any, save_model_file};
    let dir = tmp("mismatch");
    let mut bundle = load_any(fixture("ref_small.pt")).unwrap();
    bundle.generator.kwargs["gconv_hidden_dim"] = serde_json::json!(64);
    let path = dir.join("bad.safetensors");
    save_model_file(&path, &bundle).unwrap();
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&path),
        "--scene_graphs_json",
        s(&fixture("figure_6_sheep.json")),
        "--output_dir",
        s(&dir.join("o")),
    ]);
    assert_one_line_error(
        &out,
        &[
            "bad.safetensors",
            "weights do not match",
            "gconv.net1.0.weight",
        ],
    );
    // A vocabulary that is smaller than the embedding table is the same kind of mismatch.
    let mut bundle = load_any(fixture("ref_small.pt")).unwrap();
    let vocab = &mut bundle.generator.kwargs["vocab"];
    vocab["object_idx_to_name"].as_array_mut().unwrap().pop();
    let last = vocab["object_idx_to_name"].as_array().unwrap().len();
    vocab["object_name_to_idx"]
        .as_object_mut()
        .unwrap()
        .retain(|_, v| v.as_u64().unwrap() < last as u64);
    save_model_file(&path, &bundle).unwrap();
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&path),
        "--scene_graphs_json",
        s(&fixture("figure_6_sheep.json")),
        "--output_dir",
        s(&dir.join("o")),
    ]);
    assert_one_line_error(&out, &["weights do not match", "obj_embeddings.weight"]);
}
