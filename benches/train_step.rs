//! Median seconds per training iteration (generator step + both discriminator steps, §18.3),
//! with the per-component breakdown, for the configurations of issue 3:
//! (a) the default COCO configuration (64×64, default dims, 184 object classes) at batch 32 and
//! batch 8; (b) a small one (32×32, refinement dims 64,32,16, gconv 32/64 × 2 layers,
//! embedding 32) at batch 8. CPU (`flex`), 2 threads unless `RAYON_NUM_THREADS` says otherwise.
//!
//! The batches are COCO-like and fixed (3–8 objects plus `__image__` per image, 16×16 masks,
//! one relationship per object plus the `__in_image__` ones), so the numbers measure the
//! networks, not data loading. `cargo bench --bench train_step [-- FILTER]`; `SG2IM_BENCH_REPS`
//! overrides the number of timed iterations.
//!
//! `SG2IM_BENCH_DEVICE` picks the device (`cpu` default; `cuda`, `vulkan`, `wgpu` in a build with
//! that feature). Each case also prints the FLOPs of one iteration (3× the counted forward
//! FLOPs of every convolution and linear layer: a backward pass costs about twice its forward)
//! and, with `SG2IM_PEAK_TFLOPS` set to the device's peak, the model FLOP utilisation (MFU).

// The test helpers (the COCO-sized vocabulary); the rest of the module is unused here.
#[path = "../tests/common/mod.rs"]
mod common;

use burn::tensor::Device;
use rand::{Rng, RngCore, SeedableRng};
use sg2im::data::{Sample, collate};
use sg2im::device::DeviceChoice;
use sg2im::train::TrainArgs;
use sg2im::train::step::{DeviceBatch, LossConfig, StepTimes, train_iteration};
use sg2im::train::trainer::build_nets;
use std::time::Instant;

fn sample(rng: &mut impl RngCore, size: (usize, usize), mask_size: usize) -> Sample {
    let (h, w) = size;
    let k = rng.random_range(3..=8usize);
    let mut objs: Vec<i64> = (0..k).map(|_| rng.random_range(1..184i64)).collect();
    let mut boxes: Vec<[f32; 4]> = (0..k)
        .map(|_| {
            let (x0, y0) = (rng.random_range(0.0..0.7f32), rng.random_range(0.0..0.7f32));
            let (bw, bh) = (
                rng.random_range(0.15..0.3f32),
                rng.random_range(0.15..0.3f32),
            );
            [x0, y0, x0 + bw, y0 + bh]
        })
        .collect();
    objs.push(0);
    boxes.push([0.0, 0.0, 1.0, 1.0]);
    let o = objs.len();
    let masks: Vec<u8> = (0..o * mask_size * mask_size)
        .map(|_| rng.random_range(0..2u8))
        .collect();
    let mut triples = Vec::new();
    for s in 0..k {
        let mut t = rng.random_range(0..k);
        if t == s {
            t = (t + 1) % k;
        }
        triples.push([s as i64, rng.random_range(1..7i64), t as i64]);
    }
    for s in 0..k {
        triples.push([s as i64, 0, (o - 1) as i64]);
    }
    Sample {
        image: (0..3 * h * w)
            .map(|_| rng.random_range(-2.0..2.0f32))
            .collect(),
        image_size: size,
        objs,
        boxes,
        masks: Some(masks),
        mask_size,
        triples,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn bench(name: &str, flags: &[&str], batch_size: usize, reps: usize, original_s: f64) {
    let mut all: Vec<&str> = flags.to_vec();
    let bs = batch_size.to_string();
    all.extend(["--batch_size", &bs]);
    let args = TrainArgs::parse_from(all).expect("bench flags parse");
    // A COCO-Stuff-sized vocabulary: 184 object entries, COCO's 7 predicates.
    let vocab = common::coco_like_vocab(184);
    let device = bench_device().autodiff();
    let mut built = build_nets(&args, &vocab, &device).expect("nets build");
    let losses = LossConfig::from_args(&args).expect("loss config");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let samples: Vec<Sample> = (0..batch_size)
        .map(|_| sample(&mut rng, args.image_size, args.mask_size))
        .collect();
    let batch = collate(&samples);
    let num_objs = batch.objs.len();
    let z = built.nets.generator.config.layout_noise_dim;
    let mut times: Vec<StepTimes> = Vec::new();
    let mut totals = Vec::new();
    let mut flops = 0;
    // One warm-up iteration (allocator, caches, GPU kernel compilation), then the timed ones.
    for i in 0..=reps {
        sg2im::flops::reset();
        let start = Instant::now();
        let b = DeviceBatch::new(&batch, &vocab, &device).expect("batch uploads");
        let noise = (z > 0).then(|| {
            built.nets.generator.sample_noise(
                b.num_images,
                &mut rand::rngs::StdRng::seed_from_u64(i as u64),
                &device,
            )
        });
        let r = train_iteration(&mut built.nets, &b, noise, &losses);
        assert!(!r.skipped, "non-finite loss in the benchmark");
        // GPU work is queued: the iteration ends when the device is idle.
        device.sync().expect("device sync");
        flops = 3 * sg2im::flops::forward_flops();
        if i > 0 {
            totals.push(start.elapsed().as_secs_f64());
            times.push(r.times);
        }
    }
    let comp = |f: fn(&StepTimes) -> f64| median(times.iter().map(f).collect());
    let total = median(totals);
    println!(
        "{name}: median {total:.3} s/iteration over {reps} iterations ({num_objs} objects); original (PyTorch CPU, 2 threads): {original_s:.3} s; ratio {:.2}x",
        total / original_s
    );
    let achieved = flops as f64 / total / 1e12;
    let mfu = std::env::var("SG2IM_PEAK_TFLOPS")
        .ok()
        .and_then(|p| p.parse::<f64>().ok())
        .map(|peak| format!("; MFU {:.2}% of {peak} TFLOP/s", 100.0 * achieved / peak))
        .unwrap_or_default();
    let mem = device
        .memory_pool_usage()
        .map(|m| {
            format!(
                "; device memory reserved {:.2} GiB",
                m.bytes_reserved as f64 / (1u64 << 30) as f64
            )
        })
        .unwrap_or_default();
    println!(
        "    {:.1} iterations/s; {:.1} GFLOP/iteration (3x counted forward), {achieved:.3} TFLOP/s{mfu}{mem}",
        1.0 / total,
        flops as f64 / 1e9
    );
    println!(
        "    G forward {:.3} s | G losses incl. D forwards {:.3} s | G backward + Adam {:.3} s | D_obj step {:.3} s | D_img step {:.3} s",
        comp(|t| t.forward.as_secs_f64()),
        comp(|t| t.losses.as_secs_f64()),
        comp(|t| t.backward.as_secs_f64()),
        comp(|t| t.d_obj.as_secs_f64()),
        comp(|t| t.d_img.as_secs_f64()),
    );
}

/// `SG2IM_BENCH_DEVICE` (`cpu` when unset), probed; an unusable device ends the run with its
/// one-line reason.
fn bench_device() -> Device {
    let name = std::env::var("SG2IM_BENCH_DEVICE").unwrap_or_else(|_| "cpu".to_string());
    match name.parse::<DeviceChoice>().and_then(DeviceChoice::device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SG2IM_BENCH_DEVICE={name}: {e}");
            std::process::exit(2)
        }
    }
}

fn main() {
    // As the `sg2im` binary does at start-up.
    sg2im::malloc::tune_for_large_tensors();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: set before any thread (rayon's pool included) is started.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "2") };
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let reps_override = std::env::var("SG2IM_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    let small: &[&str] = &[
        "--image_size",
        "32,32",
        "--refinement_network_dims",
        "64,32,16",
        "--gconv_dim",
        "32",
        "--gconv_hidden_dim",
        "64",
        "--gconv_num_layers",
        "2",
        "--embedding_dim",
        "32",
    ];
    let cases: [(&str, &[&str], usize, usize, f64); 3] = [
        ("(a) COCO default 64x64, batch 32", &[], 32, 3, 4.67),
        ("(a) COCO default 64x64, batch 8", &[], 8, 5, 1.21),
        ("(b) small 32x32, batch 8", small, 8, 15, 0.178),
    ];
    for (name, flags, bs, reps, orig) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        bench(name, flags, bs, reps_override.unwrap_or(reps), orig);
    }
}
