//! `sg2im run` and `sg2im import-torch` end to end: outputs against the torch_parity fixtures
//! (eval mode, no noise: the `ref_small` model has `layout_noise_dim = 0`) and the one-line
//! errors with exit code 2 for bad input.

mod common;

use common::{
    assert_close, assert_one_line_error, ok, s, scratch as tmp, sg2im, sg2im_cmd,
    torch_fixture as fixture,
};
use sg2im::io::safetensors_io::read_safetensors;
use std::path::Path;
use std::process::Output;

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
    ok(out);
    for i in 0..7 {
        let png = dir.join(format!("out/img{i:06}.png"));
        assert_eq!(png_size(&png), (32, 32));
        // GraphViz is installed (.ci/run installs it): real pictures, no .dot fallback.
        let sg = dir.join(format!("out/sg{i:06}"));
        let (w, h) = png_size(&sg.with_extension("png"));
        assert!(w > 0 && h > 0);
        assert!(!sg.with_extension("dot").exists());
    }
    assert!(!dir.join("out/img000007.png").exists());
    let (got, _) = read_safetensors(dir.join("t.safetensors")).unwrap();
    let (want, _) = read_safetensors(fixture("outputs.safetensors")).unwrap();
    let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["boxes_pred", "imgs_pred", "masks_pred", "obj_to_img"]
    );
    for k in ["imgs_pred", "boxes_pred", "masks_pred"] {
        assert_eq!(got[k].dtype, safetensors::Dtype::F32, "{k}");
    }
    // The sheep file: 7 graphs, 42 objects with the __image__ ones, 8×8 masks.
    assert_eq!(got["imgs_pred"].shape, [7, 3, 32, 32]);
    assert_eq!(got["boxes_pred"].shape, [42, 4]);
    assert_eq!(got["masks_pred"].shape, [42, 8, 8]);
    assert_close(
        "imgs_pred",
        &got["imgs_pred"],
        &want["sheep.pred.imgs_pred"],
        1e-4,
        0.0,
    );
    assert_close(
        "boxes_pred",
        &got["boxes_pred"],
        &want["sheep.pred.boxes_pred"],
        1e-5,
        0.0,
    );
    assert_close(
        "masks_pred",
        &got["masks_pred"],
        &want["sheep.pred.masks_pred"],
        1e-5,
        0.0,
    );
    assert_eq!(got["obj_to_img"].dtype, safetensors::Dtype::I64);
    assert_eq!(
        got["obj_to_img"].to_i64(),
        want["sheep.obj_to_img"].to_i64()
    );
}

/// Width and height of a PNG file, which must decode.
#[track_caller]
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scene-graph pictures need GraphViz: apt-get install graphviz)",
            path.display()
        )
    });
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
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
        g["masks"] = serde_json::json!(m);
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
        ok(out);
        read_safetensors(t)
            .unwrap()
            .0
            .swap_remove("imgs_pred")
            .unwrap()
    };
    assert_close(
        "boxes+masks",
        &run(&graphs, "boxmask"),
        &want["sheep.gtboxmask.imgs_pred"],
        1e-4,
        0.0,
    );
    for g in graphs.as_array_mut().unwrap() {
        g.as_object_mut().unwrap().remove("masks");
    }
    assert_close(
        "boxes only",
        &run(&graphs, "box"),
        &want["sheep.gtbox.imgs_pred"],
        1e-4,
        0.0,
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
    let out = ok(out);
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
        ok(out);
        read_safetensors(t)
            .unwrap()
            .0
            .swap_remove("imgs_pred")
            .unwrap()
    };
    // Same weights, same arithmetic: bit-identical (tolerance 0; NaN fails).
    assert_close(
        "imgs_pred",
        &run(&model, "ours"),
        &run(&fixture("ref_small_full_legacy.pt"), "pt"),
        0.0,
        0.0,
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
    ok(out);
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
    ok(out);
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

/// Without GraphViz on `PATH`, `--draw_scene_graphs 1` writes the DOT text instead (and says so).
#[test]
fn without_graphviz_scene_graphs_are_written_as_dot_files() {
    let dir = tmp("nodot");
    let empty_path = dir.join("bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let out = ok(sg2im_cmd()
        .env("PATH", &empty_path)
        .args([
            "run",
            "--checkpoint",
            s(&fixture("ref_small.pt")),
            "--scene_graphs_json",
            s(&fixture("figure_6_sheep.json")),
            "--output_dir",
            s(&dir.join("out")),
            "--draw_scene_graphs",
            "1",
        ])
        .output()
        .unwrap());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("graphviz `dot` not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..7 {
        assert!(
            dir.join(format!("out/sg{i:06}.dot")).exists(),
            "sg{i:06}.dot"
        );
        assert!(!dir.join(format!("out/sg{i:06}.png")).exists());
    }
    // Graph 0: sky, grass, zebra (+ __image__ as object 3, not drawn); "sky above grass",
    // "zebra standing on grass" as predicate nodes 4 and 5; the __in_image__ edges not drawn.
    let dot = std::fs::read_to_string(dir.join("out/sg000000.dot")).unwrap();
    let lines: Vec<&str> = dot.lines().collect();
    assert_eq!(lines.first(), Some(&"digraph{"));
    assert_eq!(lines.last(), Some(&"}"));
    let labels: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("[label="))
        .collect();
    assert_eq!(
        labels,
        [
            "0 [label=\"sky\"]",
            "1 [label=\"grass\"]",
            "2 [label=\"zebra\"]",
            "4 [label=\"above\"]",
            "5 [label=\"standing on\"]",
        ]
    );
    let edges: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(e, _)| e))
        .filter(|e| e.contains("->"))
        .collect();
    assert_eq!(edges, ["0->4", "4->1", "2->5", "5->1"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A randomly initialised model on the shapes vocabulary (16×16 images, tiny networks).
fn random_shapes_model(path: &Path, mask_size: usize, layout_noise_dim: usize) {
    use sg2im::io::model_file::{ModelBundle, save_model_file};
    use sg2im::model::generator::{Sg2Im, Sg2ImConfig};
    let mut cfg = Sg2ImConfig::train_defaults(sg2im::data::synthetic::shapes_vocab());
    cfg.image_size = (16, 16);
    cfg.embedding_dim = 8;
    cfg.gconv_dim = 8;
    cfg.gconv_hidden_dim = 16;
    cfg.gconv_num_layers = 2;
    cfg.refinement_dims = vec![16, 8];
    cfg.layout_noise_dim = layout_noise_dim;
    cfg.mask_size = mask_size;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let model = Sg2Im::init(&cfg, &burn::tensor::Device::flex(), &mut rng).unwrap();
    let bundle = ModelBundle {
        generator: model.to_net_state(),
        d_obj: None,
        d_img: None,
        args: None,
    };
    save_model_file(path, &bundle).unwrap();
}

/// `run --save_tensors` on the README's example graphs with boxes placed by hand (a random
/// model predicts degenerate, zero-width boxes, which make NaN layouts); returns the saved
/// tensors.
fn run_shapes_example(
    model: &Path,
    out: &Path,
    extra: &[&str],
) -> indexmap::IndexMap<String, sg2im::io::safetensors_io::RawTensor> {
    let mut graphs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/shapes_scene_graphs.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for g in graphs.as_array_mut().unwrap() {
        let n = g["objects"].as_array().unwrap().len();
        let boxes: Vec<[f32; 4]> = (0..n)
            .map(|k| {
                let x = k as f32 / n as f32 * 0.6;
                [x, 0.1 + 0.05 * k as f32, x + 0.4, 0.7]
            })
            .collect();
        g["boxes"] = serde_json::json!(boxes);
    }
    std::fs::create_dir_all(out).unwrap();
    let json = out.join("graphs.json");
    std::fs::write(&json, graphs.to_string()).unwrap();
    let t = out.join("t.safetensors");
    let mut args = vec![
        "run",
        "--checkpoint",
        s(model),
        "--scene_graphs_json",
        s(&json),
        "--output_dir",
        s(out),
        "--save_tensors",
        s(&t),
    ];
    args.extend_from_slice(extra);
    ok(sg2im(&args));
    read_safetensors(t).unwrap().0
}

#[test]
fn a_model_without_mask_network_saves_no_masks_pred() {
    let dir = tmp("nomask");
    let model = dir.join("nomask.safetensors");
    random_shapes_model(&model, 0, 0);
    let got = run_shapes_example(&model, &dir.join("out"), &[]);
    let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["boxes_pred", "imgs_pred", "obj_to_img"]);
    let n = got["imgs_pred"].shape[0];
    assert_eq!(got["imgs_pred"].shape, [n, 3, 16, 16]);
    for k in ["imgs_pred", "boxes_pred"] {
        let v = got[k].to_f32();
        assert!(v.iter().all(|x| x.is_finite()), "{k} has non-finite values");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--seed` seeds the layout noise: the same seed gives the same images, another seed others.
#[test]
fn run_seed_repeats_and_varies_the_layout_noise() {
    let dir = tmp("seed");
    let model = dir.join("noise.safetensors");
    random_shapes_model(&model, 4, 4);
    let imgs = |name: &str, seed: &str| {
        let t = run_shapes_example(&model, &dir.join(name), &["--seed", seed]);
        t["imgs_pred"].clone()
    };
    let (a, b, c) = (imgs("a", "1"), imgs("b", "1"), imgs("c", "2"));
    assert_close("same seed", &a, &b, 0.0, 0.0);
    let (va, vc) = (a.to_f32(), c.to_f32());
    assert_eq!(va.len(), vc.len());
    let differ = va.iter().zip(&vc).filter(|(x, y)| x != y).count();
    assert!(
        differ > va.len() / 2,
        "seeds 1 and 2 differ in only {differ} of {} values",
        va.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's example graphs use only words of the shapes vocabulary.
#[test]
fn the_readme_example_graphs_encode_with_the_shapes_vocabulary() {
    use sg2im::scene_graph::{encode, read_scene_graphs};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/shapes_scene_graphs.json"
    );
    let graphs = read_scene_graphs(path).unwrap();
    assert!(!graphs.is_empty());
    let vocab = sg2im::data::synthetic::shapes_vocab();
    let enc = encode(&graphs, &vocab, path).unwrap();
    let objects: usize = graphs.iter().map(|g| g.objects.len()).sum();
    // One __image__ object per graph is added.
    assert_eq!(enc.objs.len(), objects + graphs.len());
}

/// `sg2im … | head -1`: output into a pipe whose reader is gone ends the process quietly (killed
/// by SIGPIPE, as Unix tools are), never with a panic message.
#[test]
fn printing_into_a_closed_pipe_exits_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tmp("epipe");
    let model = dir.join("m.safetensors");
    let pt = fixture("ref_small_full_legacy.pt");
    let cases: [Vec<&str>; 3] = [
        vec!["print-args", s(&pt)],
        vec!["import-torch", "--input", s(&pt), "--output", s(&model)],
        vec!["--help"],
    ];
    for args in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = sg2im_cmd().args(&args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {}",
            out.status
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A safetensors file rebuilt from `header` (padded with spaces to a multiple of 8, as the
/// format allows) and `data`.
fn safetensors_bytes(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string().into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// The header and data of a safetensors file.
fn safetensors_parts(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

#[test]
fn a_tensor_whose_shape_does_not_fit_its_bytes_is_named() {
    let dir = tmp("badshape");
    let (mut header, data) = safetensors_parts(&fixture("ref_small.safetensors"));
    let name = header
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "__metadata__" && header[k.as_str()]["shape"].as_array().unwrap().len() > 1)
        .unwrap()
        .clone();
    let shape = header[&name]["shape"].as_array().unwrap().clone();
    // One more row than the bytes hold.
    let mut bigger = shape.clone();
    bigger[0] = serde_json::json!(shape[0].as_u64().unwrap() + 1);
    header[&name]["shape"] = serde_json::Value::Array(bigger);
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, safetensors_bytes(&header, &data)).unwrap();
    let e = read_safetensors(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
    assert!(e.contains(&format!("tensor {name:?}")), "{e}");
    assert!(e.contains("needs") && e.contains("data_offsets"), "{e}");
    let out = sg2im(&[
        "run",
        "--checkpoint",
        s(&path),
        "--scene_graphs_json",
        s(&fixture("figure_6_sheep.json")),
        "--output_dir",
        s(&dir.join("o")),
    ]);
    assert_one_line_error(&out, &["bad.safetensors", &format!("tensor {name:?}")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn print_args_on_a_truncated_safetensors_header_names_the_file_and_the_sizes() {
    let dir = tmp("trunc");
    let full = std::fs::read(fixture("ref_small.safetensors")).unwrap();
    let n = u64::from_le_bytes(full[..8].try_into().unwrap());
    let path = dir.join("cut.safetensors");
    std::fs::write(&path, &full[..8 + 100]).unwrap();
    let out = sg2im(&["print-args", s(&path)]);
    assert_one_line_error(
        &out,
        &[
            "cut.safetensors",
            "truncated safetensors file",
            &format!("the header should have {n} bytes"),
            "only 100",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
