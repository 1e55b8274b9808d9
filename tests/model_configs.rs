//! Configurations the parity fixtures do not cover (§21.2): every normalisation, pooling, no
//! masks, Linear graph conv, non-square images, layout noise. Checks state-dict keys and shapes
//! against the rules of §21.2, forward shapes, save/load round trips (our file and the legacy
//! `torch.save` format), and the layout / crop sampling against a naive per-pixel port of
//! PyTorch 0.4's `grid_sample` (§6.2) written independently here.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{Shaped, assert_close, torch_fixture};
use rand::{Rng, SeedableRng};
use sg2im::io::model_file::{ModelBundle, load_any, save_model_file};
use sg2im::model::bilinear::crop_bbox_batch;
use sg2im::model::generator::{GraphBatch, Sg2Im, Sg2ImConfig};
use sg2im::model::graph::GconvPooling;
use sg2im::model::layers::{Activation, Normalization};
use sg2im::model::layout::{boxes_to_layout, masks_to_layout};
use sg2im::model::params::shapes;
use sg2im::vocab::Vocab;
use std::collections::HashMap;

fn vocab() -> Vocab {
    Vocab::from_json_file(torch_fixture("vocab.json")).unwrap()
}

fn small(vocab: Vocab) -> Sg2ImConfig {
    Sg2ImConfig {
        vocab,
        image_size: (32, 32),
        embedding_dim: 8,
        gconv_dim: 12,
        gconv_hidden_dim: 16,
        gconv_pooling: GconvPooling::Avg,
        gconv_num_layers: 2,
        mlp_normalization: Normalization::None,
        refinement_dims: vec![16, 8, 4],
        normalization: Normalization::Batch,
        activation: Activation::from_original("leakyrelu-0.2").unwrap(),
        mask_size: 8,
        layout_noise_dim: 0,
    }
}

fn graphs(device: &Device, v: &Vocab) -> GraphBatch {
    // Two graphs: 3 objects + image, 1 object + image; a self-loop and a duplicate edge.
    let objs = [5, 9, 12, 0, 7, 0];
    let triples = [
        [0, 3, 1],
        [1, 2, 2],
        [2, 2, 2],
        [0, 3, 1],
        [0, 0, 3],
        [1, 0, 3],
        [2, 0, 3],
        [4, 0, 5],
    ];
    GraphBatch::new(&objs, &triples, &[0, 0, 0, 0, 1, 1], v, device).unwrap()
}

fn keys(m: &Sg2Im) -> HashMap<String, Vec<usize>> {
    shapes(m).into_iter().collect()
}

#[test]
fn state_dict_keys_follow_the_original_for_every_option() {
    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let v = vocab();

    let mut c = small(v.clone());
    c.mlp_normalization = Normalization::Batch;
    let k = keys(&Sg2Im::init(&c, &device, &mut rng).unwrap());
    assert_eq!(k["box_net.3.weight"], vec![4, 16]);
    assert_eq!(k["box_net.4.running_var"], vec![4]);
    assert_eq!(k["gconv.net1.1.weight"], vec![16]);
    assert_eq!(k["rel_aux_net.4.weight"], vec![25]);

    let mut c = small(v.clone());
    c.gconv_num_layers = 0;
    let k = keys(&Sg2Im::init(&c, &device, &mut rng).unwrap());
    assert_eq!(k["gconv.weight"], vec![12, 8]);
    assert!(!k.keys().any(|x| x.starts_with("gconv_net")));

    let mut c = small(v.clone());
    c.gconv_num_layers = 1;
    let k = keys(&Sg2Im::init(&c, &device, &mut rng).unwrap());
    assert_eq!(k["gconv.net1.0.weight"], vec![16, 24]); // (Hd, 3E)
    assert_eq!(k["gconv.net1.2.weight"], vec![2 * 16 + 12, 16]); // (2Hd + G, Hd)
    assert!(!k.keys().any(|x| x.starts_with("gconv_net")));

    let mut c = small(v.clone());
    c.gconv_num_layers = 4;
    let k = keys(&Sg2Im::init(&c, &device, &mut rng).unwrap());
    assert_eq!(k["gconv_net.gconvs.2.net1.0.weight"], vec![16, 36]); // (Hd, 3G)
    assert!(!k.contains_key("gconv_net.gconvs.3.net1.0.weight"));

    let mut c = small(v.clone());
    c.normalization = Normalization::None;
    c.mask_size = 0;
    let k = keys(&Sg2Im::init(&c, &device, &mut rng).unwrap());
    assert_eq!(
        k["refinement_net.refinement_modules.0.net.2.weight"],
        vec![16, 16, 3, 3]
    );
    assert!(!k.keys().any(|x| x.starts_with("mask_net")));
    assert_eq!(k["refinement_net.output_conv.2.weight"], vec![3, 4, 1, 1]);

    let mut c = small(v.clone());
    c.normalization = Normalization::Instance;
    c.layout_noise_dim = 5;
    c.mask_size = 16;
    let k = keys(&Sg2Im::init(&c, &device, &mut rng).unwrap());
    assert_eq!(
        k["refinement_net.refinement_modules.0.net.3.weight"],
        vec![16, 16, 3, 3]
    );
    assert_eq!(
        k["refinement_net.refinement_modules.0.net.0.weight"],
        vec![16, 12 + 5 + 1, 3, 3]
    );
    assert_eq!(
        k["refinement_net.refinement_modules.1.net.0.weight"],
        vec![8, 12 + 5 + 16, 3, 3]
    );
    assert!(
        !k.keys()
            .any(|x| x.contains("running_mean") && x.starts_with("refinement"))
    );
    assert_eq!(k["mask_net.16.weight"], vec![1, 12, 1, 1]);
    assert_eq!(k["mask_net.13.running_mean"], vec![12]);
}

#[test]
fn every_configuration_runs_and_round_trips_through_both_file_formats() {
    let device = Device::flex();
    let v = vocab();
    let dir = common::scratch("configs");
    let mut configs = Vec::new();
    for (norm, mlp, pool, layers, mask, noise, size) in [
        (
            Normalization::Batch,
            Normalization::None,
            GconvPooling::Avg,
            2,
            8,
            0,
            (32, 32),
        ),
        (
            Normalization::Instance,
            Normalization::Batch,
            GconvPooling::Sum,
            0,
            0,
            3,
            (32, 64),
        ),
        (
            Normalization::None,
            Normalization::None,
            GconvPooling::Sum,
            1,
            4,
            0,
            (64, 32),
        ),
        (
            Normalization::Batch,
            Normalization::Batch,
            GconvPooling::Avg,
            3,
            16,
            2,
            (16, 48),
        ),
    ] {
        let mut c = small(v.clone());
        c.normalization = norm;
        c.mlp_normalization = mlp;
        c.gconv_pooling = pool;
        c.gconv_num_layers = layers;
        c.mask_size = mask;
        c.layout_noise_dim = noise;
        c.image_size = size;
        c.refinement_dims = if size.0 == 16 {
            vec![8, 4]
        } else {
            vec![16, 8, 4]
        };
        configs.push(c);
    }
    for (i, c) in configs.iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
        let mut model = Sg2Im::init(c, &device, &mut rng).unwrap();
        model.set_training(false);
        let g = graphs(&device, &v);
        let noise = (c.layout_noise_dim > 0).then(|| model.sample_noise(2, &mut rng, &device));
        // Ground-truth boxes: random weights predict degenerate boxes, whose layout is NaN in
        // the original too (quirk §23.31).
        let boxes = [
            [0.1, 0.1, 0.6, 0.7],
            [0.3, 0.2, 0.9, 0.5],
            [0.0, 0.5, 0.4, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.2, 0.2, 0.8, 0.8],
            [0.0, 0.0, 1.0, 1.0],
        ];
        let out = model.forward(&g, Some(&boxes), None, noise.clone());
        assert_eq!(
            out.imgs.dims(),
            [2, 3, c.image_size.0, c.image_size.1],
            "config {i}"
        );
        assert_eq!(out.boxes_pred.dims(), [6, 4]);
        assert_eq!(out.rel_scores.dims(), [8, 25]);
        assert_eq!(out.masks_pred.is_some(), c.mask_size > 0);
        let want = out
            .imgs
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(want.iter().all(|x| x.is_finite()));

        // Our model file.
        let path = dir.join(format!("m{i}.safetensors"));
        let bundle = ModelBundle {
            generator: model.to_net_state(),
            d_obj: None,
            d_img: None,
            args: None,
        };
        save_model_file(&path, &bundle).unwrap();
        let (mut back, _) =
            Sg2Im::from_net_state(&load_any(&path).unwrap().generator, &device, "ours").unwrap();
        assert_eq!(back.config, *c);
        let got = back
            .forward(&g, Some(&boxes), None, noise.clone())
            .imgs
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want, "config {i}: our file round trip");

        // The original's legacy torch.save layout ({"model_kwargs", "model_state"}).
        let pt = dir.join(format!("m{i}.pt"));
        write_legacy_checkpoint(&pt, &model);
        let (mut back, _) =
            Sg2Im::from_net_state(&load_any(&pt).unwrap().generator, &device, "pt").unwrap();
        let got = back
            .forward(&g, Some(&boxes), None, noise)
            .imgs
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want, "config {i}: legacy .pt round trip");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_legacy_checkpoint(path: &std::path::Path, model: &Sg2Im) {
    use sg2im::io::torch::{PyValue, TorchTensor, save_legacy};
    fn json_to_py(v: &serde_json::Value) -> PyValue {
        match v {
            serde_json::Value::Null => PyValue::None,
            serde_json::Value::Bool(b) => PyValue::Bool(*b),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(PyValue::Int)
                .unwrap_or(PyValue::Float(n.as_f64().unwrap())),
            serde_json::Value::String(s) => PyValue::Str(s.clone()),
            serde_json::Value::Array(a) => PyValue::Tuple(a.iter().map(json_to_py).collect()),
            serde_json::Value::Object(o) => PyValue::Dict(
                o.iter()
                    .map(|(k, v)| (PyValue::Str(k.clone()), json_to_py(v)))
                    .collect(),
            ),
        }
    }
    let mut kwargs = json_to_py(&model.config.to_model_kwargs());
    // The vocabulary's lists are Python lists, not tuples.
    if let PyValue::Dict(items) = &mut kwargs {
        for (k, v) in items.iter_mut() {
            if matches!(k, PyValue::Str(s) if s == "vocab") {
                *v = json_to_py_lists(&model.config.to_model_kwargs()["vocab"]);
            }
        }
    }
    fn json_to_py_lists(v: &serde_json::Value) -> PyValue {
        match v {
            serde_json::Value::Array(a) => PyValue::List(a.iter().map(json_to_py_lists).collect()),
            serde_json::Value::Object(o) => PyValue::Dict(
                o.iter()
                    .map(|(k, v)| (PyValue::Str(k.clone()), json_to_py_lists(v)))
                    .collect(),
            ),
            other => json_to_py(other),
        }
    }
    let state = model
        .to_net_state()
        .state
        .into_iter()
        .map(|(k, d)| {
            let shape = d.shape().to_vec();
            let v = d.convert::<f32>().try_to_vec::<f32>().unwrap();
            (
                PyValue::Str(k),
                PyValue::Tensor(TorchTensor::from_f32(shape, &v)),
            )
        })
        .collect();
    let root = PyValue::Dict(vec![
        (PyValue::Str("model_kwargs".into()), kwargs),
        (PyValue::Str("model_state".into()), PyValue::Dict(state)),
    ]);
    save_legacy(path, &root).unwrap();
}

// ---- an independent, per-pixel port of grid_sample (bilinear, zeros, align_corners=True) ----

fn linspace(a: f32, b: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            if n == 1 {
                a
            } else {
                a + (b - a) * i as f32 / (n - 1) as f32
            }
        })
        .collect()
}

/// Samples `src (C, Hin, Win)` at normalised `(gx, gy)`.
fn sample(src: &[f32], c: usize, hin: usize, win: usize, gx: f32, gy: f32, out: &mut [f32]) {
    let ix = (gx + 1.0) / 2.0 * (win as f32 - 1.0);
    let iy = (gy + 1.0) / 2.0 * (hin as f32 - 1.0);
    let (x0, y0) = (ix.floor(), iy.floor());
    for (dx, dy, w) in [
        (0.0, 0.0, (x0 + 1.0 - ix) * (y0 + 1.0 - iy)),
        (1.0, 0.0, (ix - x0) * (y0 + 1.0 - iy)),
        (0.0, 1.0, (x0 + 1.0 - ix) * (iy - y0)),
        (1.0, 1.0, (ix - x0) * (iy - y0)),
    ] {
        let (x, y) = (x0 + dx, y0 + dy);
        if x >= 0.0 && y >= 0.0 && (x as usize) < win && (y as usize) < hin {
            for ch in 0..c {
                out[ch] += w * src[(ch * hin + y as usize) * win + x as usize];
            }
        }
    }
}

fn random_boxes(rng: &mut impl Rng, n: usize) -> Vec<[f32; 4]> {
    (0..n)
        .map(|_| {
            let x0: f32 = rng.random_range(-0.2..0.8);
            let y0: f32 = rng.random_range(-0.2..0.8);
            [
                x0,
                y0,
                x0 + rng.random_range(0.05..0.7),
                y0 + rng.random_range(0.05..0.7),
            ]
        })
        .collect()
}

/// `layout.py` by the letter: per object, grid `(2(X − x0)/ww − 1, 2(Y − y0)/hh − 1)`, sample, sum.
#[allow(clippy::too_many_arguments)] // mirrors the spec's argument list one to one
fn naive_layout(
    vecs: &[f32],
    d: usize,
    boxes: &[[f32; 4]],
    masks: Option<(&[f32], usize)>,
    o2i: &[i64],
    n: usize,
    h: usize,
    w: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; n * d * h * w];
    let (xs, ys) = (linspace(0.0, 1.0, w), linspace(0.0, 1.0, h));
    for (k, b) in boxes.iter().enumerate() {
        let (m, src): (usize, Vec<f32>) = match masks {
            Some((ms, m)) => (
                m,
                (0..d)
                    .flat_map(|c| (0..m * m).map(move |p| vecs[k * d + c] * ms[k * m * m + p]))
                    .collect(),
            ),
            None => (
                8,
                (0..d)
                    .flat_map(|c| std::iter::repeat_n(vecs[k * d + c], 64))
                    .collect(),
            ),
        };
        let mut px = vec![0f32; d];
        for i in 0..h {
            for j in 0..w {
                px.fill(0.0);
                let gx = (xs[j] - b[0]) / (b[2] - b[0]) * 2.0 - 1.0;
                let gy = (ys[i] - b[1]) / (b[3] - b[1]) * 2.0 - 1.0;
                sample(&src, d, m, m, gx, gy, &mut px);
                for c in 0..d {
                    out[((o2i[k] as usize * d + c) * h + i) * w + j] += px[c];
                }
            }
        }
    }
    out
}

/// Tolerance 2e-5: both sides are float32 with different summation orders, values ≤ ~3.
#[test]
fn layouts_equal_a_naive_grid_sample_port() {
    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (o, d, n, h, w, m) = (7, 3, 2, 20, 28, 6);
    let boxes = random_boxes(&mut rng, o);
    let vecs: Vec<f32> = (0..o * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let masks: Vec<f32> = (0..o * m * m).map(|_| rng.random_range(0.0..1.0)).collect();
    let o2i = [0, 0, 0, 1, 1, 1, 1];
    let vt: Tensor<2> = Tensor::from_data(TensorData::new(vecs.clone(), [o, d]), &device);
    let got = boxes_to_layout(vt.clone(), &boxes, &o2i, n, (h, w));
    assert_eq!(got.dims(), [n, d, h, w]);
    let want = naive_layout(&vecs, d, &boxes, None, &o2i, n, h, w);
    assert_close(
        "boxes_to_layout",
        &got,
        &Shaped(&[n, d, h, w], &want),
        2e-5,
        0.0,
    );
    let mt: Tensor<3> = Tensor::from_data(TensorData::new(masks.clone(), [o, m, m]), &device);
    let got = masks_to_layout(vt, &boxes, mt, &o2i, n, (h, w));
    let want = naive_layout(&vecs, d, &boxes, Some((&masks, m)), &o2i, n, h, w);
    assert_close(
        "masks_to_layout",
        &got,
        &Shaped(&[n, d, h, w], &want),
        2e-5,
        0.0,
    );
}

/// `crop_bbox` by the letter (§9.2): boxes to [−1, 1], per-box linspace, grid_sample.
#[test]
fn object_crops_equal_a_naive_grid_sample_port() {
    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (n, c, h, w, s) = (2, 3, 24, 30, 9);
    let imgs: Vec<f32> = (0..n * c * h * w)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let boxes = random_boxes(&mut rng, 5);
    let b2i = [0i64, 0, 1, 1, 1];
    let it: Tensor<4> = Tensor::from_data(TensorData::new(imgs.clone(), [n, c, h, w]), &device);
    let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(b2i.to_vec(), [5]), &device);
    let got = crop_bbox_batch(it, &boxes, idx, s, s);
    let mut want = vec![0f32; 5 * c * s * s];
    for (k, b) in boxes.iter().enumerate() {
        let img = &imgs[b2i[k] as usize * c * h * w..(b2i[k] as usize + 1) * c * h * w];
        let (x0, y0, x1, y1) = (
            2.0 * b[0] - 1.0,
            2.0 * b[1] - 1.0,
            2.0 * b[2] - 1.0,
            2.0 * b[3] - 1.0,
        );
        let (w1, w2) = (linspace(1.0, 0.0, s), linspace(0.0, 1.0, s));
        let mut px = vec![0f32; c];
        for r in 0..s {
            for col in 0..s {
                px.fill(0.0);
                sample(
                    img,
                    c,
                    h,
                    w,
                    x0 * w1[col] + x1 * w2[col],
                    y0 * w1[r] + y1 * w2[r],
                    &mut px,
                );
                for ch in 0..c {
                    want[((k * c + ch) * s + r) * s + col] = px[ch];
                }
            }
        }
    }
    assert_close(
        "crop_bbox_batch",
        &got,
        &Shaped(&[5, c, s, s], &want),
        2e-5,
        0.0,
    );
}

/// A renamed or unknown `model_kwargs` key in a model file is an error naming the file and the
/// key (the original only warned and built the model with the default); the four deprecated
/// keys old checkpoints carry are still ignored with a warning, and nothing else changes.
#[test]
fn an_unknown_model_kwargs_key_is_rejected_with_the_file_and_key_named() {
    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let model = Sg2Im::init(&small(vocab()), &device, &mut rng).unwrap();
    let dir = std::env::temp_dir().join(format!("sg2im-kwargs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let save_with = |name: &str, key: &str, value: serde_json::Value| {
        let mut generator = model.to_net_state();
        generator.kwargs[key] = value;
        let path = dir.join(name);
        let bundle = ModelBundle {
            generator,
            d_obj: None,
            d_img: None,
            args: None,
        };
        save_model_file(&path, &bundle).unwrap();
        path
    };
    // `gconv_dims` for `gconv_dim`: silently building a 128-wide model would be wrong.
    let path = save_with("renamed.safetensors", "gconv_dims", serde_json::json!(12));
    let what = path.display().to_string();
    let err = Sg2Im::from_net_state(&load_any(&path).unwrap().generator, &device, &what)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&what) && err.contains("unknown key \"gconv_dims\""),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");

    // A LeakyReLU slope that is not a finite number.
    let path = save_with("nan.safetensors", "activation", "leakyrelu-nan".into());
    let what = path.display().to_string();
    let err = Sg2Im::from_net_state(&load_any(&path).unwrap().generator, &device, &what)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&what)
            && err.contains("model_kwargs.activation")
            && err.contains("\"leakyrelu-nan\""),
        "{err}"
    );

    let path = save_with("old.safetensors", "vec_noise_dim", serde_json::json!(0));
    let (back, warnings) =
        Sg2Im::from_net_state(&load_any(&path).unwrap().generator, &device, "old").unwrap();
    assert_eq!(back.config, model.config);
    assert_eq!(
        warnings,
        ["ignoring deprecated model_kwargs key \"vec_noise_dim\""]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
