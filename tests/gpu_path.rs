//! The GPU code path end to end, on the device `SG2IM_TEST_DEVICE` names (`gpu` when unset: the
//! best one built and present). CI runs these in a `--features wgpu` build on Mesa's lavapipe, a
//! Vulkan driver that runs on the CPU (see `.ci/run`); on a GPU machine `scripts/gpu-check.sh`
//! runs them on `cuda` and `vulkan`.
//!
//! The same run on this file's GPU device also covers (with the same environment variable):
//! `tests/torch_parity.rs` (eval outputs of all four fixture checkpoints, train-mode losses,
//! gradients and running statistics) and `tests/run_cli.rs`'s `sg2im run` against the fixture.
//! Here: that the device really is a GPU one, a few training iterations with finite losses that
//! match the CPU's, an exact resume on the GPU, and the one-line error when no GPU is there.
//!
//! Only compiled with a GPU feature; without one the file is empty.
#![cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]

use burn::tensor::Device;
use serde_json::Value;
use sg2im::device::DeviceChoice;
use sg2im::train::{TrainArgs, train};
use std::path::Path;
use std::process::Command;

mod common;

use common::scratch;

fn device_name() -> String {
    std::env::var("SG2IM_TEST_DEVICE").unwrap_or_else(|_| "gpu".to_string())
}

#[test]
fn the_test_device_is_a_working_gpu() {
    let name = device_name();
    let choice: DeviceChoice = name.parse().unwrap();
    assert_ne!(
        choice,
        DeviceChoice::Cpu,
        "SG2IM_TEST_DEVICE={name} is the CPU"
    );
    let device = choice
        .device()
        .unwrap_or_else(|e| panic!("SG2IM_TEST_DEVICE={name}: {e}"));
    assert_ne!(device, Device::flex(), "{name} resolved to the CPU backend");
    // Selecting again gives the same (already initialised) device, not an error.
    assert_eq!(choice.device().unwrap(), device);
}

/// 16×16 shapes, networks of a few thousand parameters (lavapipe has one 2 GiB heap), 4 batches
/// of 4 per epoch, both discriminators and the mask loss on, checkpoints every 4 iterations.
fn tiny_args(out: &Path, device: &str, extra: &[&str]) -> TrainArgs {
    let device = format!("--device={device}");
    let flags: Vec<&str> = [
        "--dataset=shapes",
        "--shapes_num_train=16",
        "--shapes_num_val=4",
        "--num_val_samples=4",
        "--mask_size=4",
        "--mask_loss_weight=0.1",
        "--gconv_num_layers=2",
        "--layout_noise_dim=4",
        "--learning_rate=1e-3",
        "--loader_num_workers=0",
        "--print_every=1",
        "--checkpoint_every=4",
        "--num_iterations=8",
        "--seed=7",
        &device,
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    // `common::TINY_FLAGS` gives the network shape (16×16 images, batches of 4).
    TrainArgs::parse_from(common::tiny_flags(out, &flags)).unwrap()
}

/// The `(t, record)` pairs of a metrics file's `kind` records, timings dropped.
fn records(path: &Path, kind: &str) -> Vec<(u64, Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == kind)
        .map(|mut r| {
            let t = r["t"].as_u64().unwrap();
            r.as_object_mut().unwrap().remove("time_s");
            (t, r)
        })
        .collect()
}

/// Every loss of a `train` record (`G`, `D_obj`, `D_img` maps), as `("G/name", value)`.
fn losses(r: &Value) -> Vec<(String, f64)> {
    let mut v = Vec::new();
    for group in ["G", "D_obj", "D_img"] {
        for (k, x) in r[group].as_object().into_iter().flatten() {
            // A non-finite loss is not a JSON number; it becomes NaN and fails below.
            v.push((format!("{group}/{k}"), x.as_f64().unwrap_or(f64::NAN)));
        }
    }
    v
}

#[test]
fn training_iterations_have_finite_losses_match_the_cpu_and_resume_exactly() {
    let dev = device_name();
    // Uninterrupted: 2 epochs of 4 batches, checkpoints at 4 and 8.
    let a = scratch("train-a");
    let sa = train(tiny_args(&a, &dev, &[])).unwrap();
    assert_eq!((sa.t, sa.epoch, sa.nonfinite_skips), (8, 2, 0));
    assert_eq!(sa.checkpoints, vec![4, 8]);
    let full = records(&a.join("metrics.jsonl"), "train");
    assert_eq!(full.len(), 8);
    for (t, r) in &full {
        let l = losses(r);
        assert!(l.len() >= 4, "t = {t}: losses {l:?}");
        for (k, x) in l {
            assert!(x.is_finite(), "t = {t}: {k} = {x}");
        }
    }

    // The first iteration against the CPU's: same data, weights and noise (all drawn on the
    // host), so the losses differ only by float32 summation order. rtol 1e-3: the GAN losses are
    // sums over a few hundred terms of logits of order 1.
    let c = scratch("train-cpu");
    train(tiny_args(&c, "cpu", &[])).unwrap();
    let cpu = records(&c.join("metrics.jsonl"), "train");
    assert_eq!(cpu[0].0, 1);
    for ((k, g), (k2, w)) in losses(&full[0].1).into_iter().zip(losses(&cpu[0].1)) {
        assert_eq!(k, k2);
        assert!(
            (g - w).abs() <= 1e-5 + 1e-3 * w.abs(),
            "t = 1 {k}: {dev} {g} vs cpu {w}"
        );
    }

    // Stopped at the checkpoint t = 4 (`--num_iterations=4`), then resumed in the same directory:
    // bit-identical losses (the GPU kernels are deterministic for a given device and shapes).
    let b = scratch("train-b");
    let (m1, m2) = (b.join("m1.jsonl"), b.join("m2.jsonl"));
    let m1s = format!("--metrics_jsonl={}", m1.display());
    let sb = train(tiny_args(&b, &dev, &["--num_iterations=4", &m1s])).unwrap();
    assert_eq!(sb.t, 4);
    let m2s = format!("--metrics_jsonl={}", m2.display());
    let sc = train(tiny_args(&b, &dev, &["--restore_from_checkpoint=1", &m2s])).unwrap();
    assert_eq!((sc.t, sc.epoch), (8, 2));
    assert_eq!(sc.checkpoints, vec![8]);
    let mut pieces = records(&m1, "train");
    pieces.extend(records(&m2, "train"));
    assert_eq!(pieces.len(), 8);
    for ((ta, ra), (tb, rb)) in full.iter().zip(&pieces) {
        assert_eq!(ta, tb);
        assert_eq!(ra, rb, "losses differ at t = {ta}");
    }
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// With the GPU driver hidden, `sg2im run --device <gpu>` says so in one line and exits 2
/// (before: a panic inside cubecl/cudarc at the first tensor).
#[test]
fn without_a_gpu_the_device_flag_is_one_line_and_exit_2() {
    let dev = device_name();
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/torch_parity"
    );
    let out_dir = scratch("nogpu");
    let out = Command::new(env!("CARGO_BIN_EXE_sg2im"))
        .args([
            "run",
            "--checkpoint",
            &format!("{fixtures}/ref_small.pt"),
            "--scene_graphs_json",
            &format!("{fixtures}/figure_6_sheep.json"),
            "--output_dir",
            out_dir.to_str().unwrap(),
            "--device",
            &dev,
        ])
        // No Vulkan driver (the loader finds no ICD), no EGL/GL driver, no CUDA device.
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(
        err.contains("--device") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!out_dir.join("img000000.png").exists());
    std::fs::remove_dir_all(out_dir).unwrap();
}
