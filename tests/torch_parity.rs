//! Numerical parity with the original PyTorch code, on the fixtures in
//! `../shared/fixtures/torch_parity` (made by running the original on CPU with torch 2.15, see
//! its README).
//!
//! Tolerances: the README measured float32 rounding differences across implementations of about
//! 1e-5 relative on intermediates and 1e-4 absolute on images (values up to ±20). Our layout
//! and crops use interpolation matrices instead of `grid_sample` (same arithmetic, different
//! summation order) and Burn's flex kernels instead of MKL/oneDNN, so we compare with
//! `|a − b| ≤ atol + rtol·|b|`: intermediates atol 1e-5, rtol 1e-4; images and layouts atol 1e-4,
//! rtol 1e-4; losses rtol 1e-5; gradients atol 1e-5, rtol 1e-3 (summed over many terms).
//!
//! The numeric tests run on the device named by `SG2IM_TEST_DEVICE` (`cpu` by default; `wgpu`,
//! `vulkan` or `cuda` in a build with that feature, see `tests/gpu_path.rs` and `.ci/run`), with
//! the same tolerances there: GPU kernels sum in other orders, within the same float32 rounding.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, coco_like_vocab, torch_fixture as fixture};
use indexmap::IndexMap;
use sg2im::device::DeviceChoice;
use sg2im::io::model_file::{NetState, load_any};
use sg2im::io::safetensors_io::{RawTensor, read_safetensors};
use sg2im::model::generator::{GraphBatch, Sg2Im, Sg2ImConfig};
use sg2im::model::params::{shapes, to_device};
use sg2im::scene_graph::{encode, read_scene_graphs};
use sg2im::vocab::Vocab;

/// The device of the numeric tests: `SG2IM_TEST_DEVICE` (`cpu` when unset). A device that is
/// asked for but unusable fails the test rather than quietly testing the CPU.
fn test_device() -> Device {
    let name = std::env::var("SG2IM_TEST_DEVICE").unwrap_or_else(|_| "cpu".to_string());
    name.parse::<DeviceChoice>()
        .and_then(DeviceChoice::device)
        .unwrap_or_else(|e| panic!("SG2IM_TEST_DEVICE={name}: {e}"))
}

fn load_fixture(name: &str) -> IndexMap<String, RawTensor> {
    read_safetensors(fixture(name)).expect("fixture readable").0
}

fn data_f32<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// With its shape, for [`assert_close`] against the fixture's tensors.
fn raw<const D: usize>(t: &Tensor<D>) -> RawTensor {
    RawTensor::from_data(&t.to_data())
}

fn vocab() -> Vocab {
    Vocab::from_json_file(fixture("vocab.json")).unwrap()
}

/// `ref_small.safetensors` is a bare state dict: configuration from `model_kwargs.json` + `vocab.json`.
fn load_safetensors_state(device: &Device) -> Sg2Im {
    let mut kwargs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("model_kwargs.json")).unwrap())
            .unwrap();
    kwargs["vocab"] = serde_json::to_value(vocab()).unwrap();
    let state = load_fixture("ref_small.safetensors")
        .into_iter()
        .map(|(k, t)| (k, t.to_data_f32()))
        .collect();
    Sg2Im::from_net_state(&NetState { kwargs, state }, device, "ref_small.safetensors")
        .unwrap()
        .0
}

fn load_model(file: &str, device: &Device) -> Sg2Im {
    if file.ends_with(".safetensors") {
        return load_safetensors_state(device);
    }
    let bundle = load_any(fixture(file)).unwrap();
    Sg2Im::from_net_state(&bundle.generator, device, file)
        .unwrap()
        .0
}

const SETS: [(&str, &str); 4] = [
    ("sheep", "figure_6_sheep.json"),
    ("vg", "figure_5_vg.json"),
    ("street", "figure_6_street.json"),
    ("coco", "figure_5_coco.json"),
];

#[test]
fn scene_graph_encoding_matches_encode_scene_graphs() {
    let out = load_fixture("outputs.safetensors");
    let v = vocab();
    for (set, file) in SETS {
        let graphs = read_scene_graphs(fixture(file)).unwrap();
        let enc = encode(&graphs, &v, file).unwrap();
        assert_eq!(enc.objs, out[&format!("{set}.objs")].to_i64(), "{set} objs");
        assert_eq!(
            enc.obj_to_img,
            out[&format!("{set}.obj_to_img")].to_i64(),
            "{set} obj_to_img"
        );
        let triples: Vec<i64> = enc.triples.iter().flatten().copied().collect();
        assert_eq!(
            triples,
            out[&format!("{set}.triples")].to_i64(),
            "{set} triples"
        );
    }
    // Spec §2.4 worked example: the sheep file has 42 objects and 63 triples.
    let sheep = encode(
        &read_scene_graphs(fixture("figure_6_sheep.json")).unwrap(),
        &v,
        "sheep",
    )
    .unwrap();
    assert_eq!((sheep.objs.len(), sheep.triples.len()), (42, 63));
}

#[test]
fn eval_outputs_match_for_every_checkpoint_format() {
    let device = test_device();
    let out = load_fixture("outputs.safetensors");
    let want = |k: &str| &out[k];
    for file in [
        "ref_small.pt",
        "ref_small_legacy.pt",
        "ref_small_full_legacy.pt",
        "ref_small.safetensors",
    ] {
        let mut model = load_model(file, &device);
        for (set, _) in SETS {
            let objs = out[&format!("{set}.objs")].to_i64();
            let tr = out[&format!("{set}.triples")].to_i64();
            let triples: Vec<[i64; 3]> = tr.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
            let o2i = out[&format!("{set}.obj_to_img")].to_i64();
            let g = GraphBatch::new(&objs, &triples, &o2i, &model.config.vocab, &device).unwrap();
            let ctx = |k: &str| format!("{file} {set}.{k}");

            let pred = model.forward(&g, None, None, None);
            for (k, t) in [
                ("pred.boxes_pred", raw(&pred.boxes_pred)),
                ("pred.masks_pred", raw(pred.masks_pred.as_ref().unwrap())),
                ("pred.mask_scores", raw(pred.mask_scores.as_ref().unwrap())),
                ("pred.rel_scores", raw(&pred.rel_scores)),
                ("pred.obj_vecs_gconv0", raw(&pred.obj_vecs_gconv0)),
                ("pred.pred_vecs_gconv0", raw(&pred.pred_vecs_gconv0)),
                ("pred.obj_vecs", raw(&pred.obj_vecs)),
                ("pred.pred_vecs", raw(&pred.pred_vecs)),
            ] {
                assert_close(&ctx(k), &t, &want(&format!("{set}.{k}")), 1e-5, 1e-4);
            }
            assert_close(
                &ctx("pred.layout"),
                &raw(&pred.layout),
                &want(&format!("{set}.pred.layout")),
                1e-4,
                1e-4,
            );
            assert_close(
                &ctx("pred.imgs_pred"),
                &raw(&pred.imgs),
                &want(&format!("{set}.pred.imgs_pred")),
                1e-4,
                1e-4,
            );

            let boxes_gt: Vec<[f32; 4]> = want(&format!("{set}.boxes_gt"))
                .to_f32()
                .chunks(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect();
            let gtbox = model.forward(&g, Some(&boxes_gt), None, None);
            assert_close(
                &ctx("gtbox.layout"),
                &raw(&gtbox.layout),
                &want(&format!("{set}.gtbox.layout")),
                1e-4,
                1e-4,
            );
            assert_close(
                &ctx("gtbox.imgs_pred"),
                &raw(&gtbox.imgs),
                &want(&format!("{set}.gtbox.imgs_pred")),
                1e-4,
                1e-4,
            );

            let m = &out[&format!("{set}.masks_gt")];
            let masks: Tensor<3> =
                Tensor::from_data(TensorData::new(m.to_f32(), m.shape.clone()), &device);
            let gtbm = model.forward(&g, Some(&boxes_gt), Some(masks), None);
            assert_close(
                &ctx("gtboxmask.layout"),
                &raw(&gtbm.layout),
                &want(&format!("{set}.gtboxmask.layout")),
                1e-4,
                1e-4,
            );
            assert_close(
                &ctx("gtboxmask.imgs_pred"),
                &raw(&gtbm.imgs),
                &want(&format!("{set}.gtboxmask.imgs_pred")),
                1e-4,
                1e-4,
            );
        }
    }
}

fn read_keys(file: &str, prefix: &str) -> Vec<(String, Vec<usize>)> {
    std::fs::read_to_string(fixture(file))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let key = parts.next()?.strip_prefix(prefix)?.to_string();
            let shape: Vec<usize> = serde_json::from_str(parts.next()?).ok()?;
            (!key.ends_with("num_batches_tracked")).then_some((key, shape))
        })
        .collect()
}

#[test]
fn state_dict_keys_and_shapes_match_the_original() {
    let device = Device::flex();
    let small = load_model("ref_small.pt", &device);
    assert_eq!(shapes(&small), read_keys("state_dict_keys_small.txt", ""));

    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let coco = Sg2Im::init(
        &Sg2ImConfig::train_defaults(coco_like_vocab(183)),
        &device,
        &mut rng,
    )
    .unwrap();
    assert_eq!(shapes(&coco), read_keys("state_dict_keys_coco64.txt", ""));
    // Spec §21.1 counts 28 158 223 trainable parameters for 184 objects (185 embedding rows);
    // the fixture's vocabulary has 183 objects, one 128-wide embedding row fewer.
    assert_eq!(sg2im::model::params::num_trainable(&coco), 28_158_223 - 128);
}

#[test]
fn discriminators_state_dicts_match_the_original() {
    use sg2im::model::discriminators::{
        AcCropDiscriminator, AcCropDiscriminatorConfig, DiscriminatorConfig, PatchDiscriminator,
    };
    let device = Device::flex();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let d_obj = AcCropDiscriminator::init(
        &AcCropDiscriminatorConfig {
            vocab: coco_like_vocab(183),
            cnn: DiscriminatorConfig::train_defaults(),
            object_size: 32,
        },
        &device,
        &mut rng,
    )
    .unwrap();
    let d_img = PatchDiscriminator::init(&DiscriminatorConfig::train_defaults(), &device, &mut rng)
        .unwrap();
    assert_eq!(
        shapes(&d_obj),
        read_keys("state_dict_keys_coco64_discriminators.txt", "d_obj.")
    );
    assert_eq!(
        shapes(&d_img),
        read_keys("state_dict_keys_coco64_discriminators.txt", "d_img.")
    );
    assert_eq!(sg2im::model::params::num_trainable(&d_img), 659_521);

    // The released-model layout: both discriminators load from the full legacy checkpoint.
    let bundle = load_any(fixture("ref_small_full_legacy.pt")).unwrap();
    let d_obj =
        AcCropDiscriminator::from_net_state(bundle.d_obj.as_ref().unwrap(), &device, "d_obj")
            .unwrap();
    let d_img =
        PatchDiscriminator::from_net_state(bundle.d_img.as_ref().unwrap(), &device, "d_img")
            .unwrap();
    assert_eq!(
        shapes(&d_obj),
        read_keys("state_dict_keys_small_discriminators.txt", "d_obj.")
    );
    assert_eq!(
        shapes(&d_img),
        read_keys("state_dict_keys_small_discriminators.txt", "d_img.")
    );
}

/// One train-mode forward + backward from the `ref_small` weights (README "train_parity").
fn train_case(case: &str, with_masks: bool) {
    let device = test_device().autodiff();
    let tp = load_fixture("train_parity.safetensors");
    let f = |k: &str| &tp[k];
    let objs = tp["batch.objs"].to_i64();
    let tr = tp["batch.triples"].to_i64();
    let triples: Vec<[i64; 3]> = tr.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
    let o2i = tp["batch.obj_to_img"].to_i64();
    let boxes: Vec<[f32; 4]> = f("batch.boxes")
        .to_f32()
        .chunks(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect();
    let imgs: Tensor<4> = Tensor::from_data(
        TensorData::new(f("batch.imgs").to_f32(), [3, 3, 32, 32]),
        &device,
    );
    let boxes_t: Tensor<2> =
        Tensor::from_data(TensorData::new(f("batch.boxes").to_f32(), [15, 4]), &device);
    let masks: Tensor<3> = Tensor::from_data(
        TensorData::new(f("batch.masks").to_f32(), [15, 8, 8]),
        &device,
    );

    // Three passes from the same weights: total loss, then L1 and box MSE alone (gradient norms).
    let run = |which: &str| {
        let mut model = load_model("ref_small.pt", &Device::flex());
        to_device(&mut model, &device, true);
        model.set_training(true);
        let g = GraphBatch::new(&objs, &triples, &o2i, &model.config.vocab, &device).unwrap();
        let out = model.forward(&g, Some(&boxes), with_masks.then(|| masks.clone()), None);
        let l1 = sg2im::model::losses::l1_loss(out.imgs.clone(), imgs.clone());
        let mse = sg2im::model::losses::mse_loss(out.boxes_pred.clone(), boxes_t.clone());
        let total = l1.clone() + mse.clone() * 10.0;
        let loss = match which {
            "total" => total.clone(),
            "L1_pixel_loss" => l1.clone(),
            _ => mse.clone(),
        };
        // The stride-1 convolutions here run as kernels::conv's custom autodiff operation, as in
        // training.
        let grads = loss.backward();
        (model, out, [l1, mse, total], grads)
    };

    let (model, out, [l1, mse, total], grads) = run("total");
    let c = |k: &str| format!("{case}.{k}");
    assert_close(
        &c("imgs_pred"),
        &raw(&out.imgs),
        &f(&c("imgs_pred")),
        1e-4,
        1e-4,
    );
    assert_close(
        &c("layout"),
        &raw(&out.layout),
        &f(&c("layout")),
        1e-4,
        1e-4,
    );
    assert_close(
        &c("boxes_pred"),
        &raw(&out.boxes_pred),
        &f(&c("boxes_pred")),
        1e-5,
        1e-4,
    );
    assert_close(
        &c("masks_pred"),
        &raw(out.masks_pred.as_ref().unwrap()),
        &f(&c("masks_pred")),
        1e-5,
        1e-4,
    );
    assert_close(
        &c("obj_vecs"),
        &raw(&out.obj_vecs),
        &f(&c("obj_vecs")),
        1e-5,
        1e-4,
    );
    assert_close(
        &c("loss.L1_pixel_loss"),
        &data_f32(&l1),
        &f(&c("loss.L1_pixel_loss")),
        0.0,
        1e-5,
    );
    assert_close(
        &c("loss.bbox_pred_mse"),
        &data_f32(&mse),
        &f(&c("loss.bbox_pred_mse")),
        0.0,
        1e-5,
    );
    assert_close(
        &c("loss.total"),
        &data_f32(&total),
        &f(&c("loss.total")),
        0.0,
        1e-5,
    );

    let grad_of = |model: &Sg2Im, grads: &burn::tensor::Gradients, name: &str| -> Vec<f32> {
        let mut found = None;
        sg2im::model::params::Params::visit(model, "", &mut |k, _, t| {
            if k == name {
                use sg2im::model::params::ParamRef;
                found = Some(
                    match t {
                        ParamRef::R1(t) => t.grad(grads).map(|g| data_f32(&g)),
                        ParamRef::R2(t) => t.grad(grads).map(|g| data_f32(&g)),
                        ParamRef::R4(t) => t.grad(grads).map(|g| data_f32(&g)),
                    }
                    .unwrap_or_else(|| vec![0.0; t.dims().iter().product()]),
                );
            }
        });
        found.unwrap_or_else(|| panic!("no parameter {name}"))
    };
    let names = [
        "obj_embeddings.weight",
        "gconv.net1.0.weight",
        "box_net.2.weight",
        "mask_net.2.weight",
        "refinement_net.refinement_modules.0.net.0.weight",
        "refinement_net.output_conv.2.weight",
    ];
    for n in names {
        assert_close(
            &c(&format!("grad.total.{n}")),
            &grad_of(&model, &grads, n),
            &f(&c(&format!("grad.total.{n}"))),
            1e-5,
            1e-3,
        );
    }
    for which in ["L1_pixel_loss", "bbox_pred_mse"] {
        let (model, _, _, grads) = run(which);
        for n in names {
            let g = grad_of(&model, &grads, n);
            let norm = g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt() as f32;
            let key = c(&format!("gradnorm.{which}.{n}"));
            assert_close(&key, &[norm], &f(&key), 1e-6, 1e-3);
        }
    }
    // Running statistics after one train-mode forward (momentum 0.1, unbiased variance).
    let mut checked = 0;
    sg2im::model::params::Params::visit(&model, "", &mut |k, _, t| {
        let key = c(&format!("bn_after.{k}"));
        if (k.ends_with("running_mean") || k.ends_with("running_var")) && tp.contains_key(&key) {
            assert_close(
                &key,
                &t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
                &f(&key),
                1e-6,
                1e-4,
            );
            checked += 1;
        }
    });
    assert_eq!(checked, 18, "every BatchNorm of ref_small compared");
}

#[test]
fn train_mode_forward_losses_gradients_and_running_stats_coco() {
    train_case("train_coco", true);
}

#[test]
fn train_mode_forward_losses_gradients_and_running_stats_vg() {
    train_case("train_vg", false);
}

/// The shared comparison itself: NaN, infinities, a shape or length mismatch and an element
/// outside `atol + rtol·|want|` each fail; values inside pass.
#[test]
fn the_comparison_helper_fails_on_nan_shape_and_tolerance() {
    use common::Shaped;
    let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    let want = [1.0f32, -2.0, 3.0, 4.0];
    assert!(!fails(&|| assert_close(
        "ok",
        &[1.0f32, -2.0, 3.00005, 4.0],
        &want,
        1e-4,
        0.0
    )));
    assert!(!fails(&|| assert_close(
        "rtol",
        &[1.0f32, -2.0, 3.0, 4.0002],
        &want,
        0.0,
        1e-4
    )));
    assert!(fails(&|| assert_close(
        "tol",
        &[1.0f32, -2.0, 3.001, 4.0],
        &want,
        1e-4,
        1e-4
    )));
    assert!(fails(&|| assert_close(
        "nan",
        &[1.0f32, f32::NAN, 3.0, 4.0],
        &want,
        1.0,
        1.0
    )));
    assert!(fails(&|| assert_close(
        "all nan",
        &[f32::NAN; 4],
        &want,
        1e9,
        1e9
    )));
    assert!(fails(&|| assert_close(
        "inf",
        &[1.0f32, -2.0, f32::INFINITY, 4.0],
        &want,
        1e9,
        0.0
    )));
    assert!(fails(&|| assert_close(
        "nan want",
        &want,
        &[1.0f32, -2.0, 3.0, f32::NAN],
        1e9,
        0.0
    )));
    assert!(fails(&|| assert_close(
        "empty",
        &[0.0f32; 0],
        &want,
        1e9,
        0.0
    )));
    assert!(fails(&|| {
        assert_close(
            "shape",
            &Shaped(&[2, 2], &want),
            &Shaped(&[4, 1], &want),
            0.0,
            0.0,
        )
    }));
    assert!(!fails(&|| {
        assert_close(
            "shape",
            &Shaped(&[2, 2], &want),
            &Shaped(&[2, 2], &want),
            0.0,
            0.0,
        )
    }));
}
