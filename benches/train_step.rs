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

// The test helpers (the COCO-sized vocabulary); the rest of the module is unused here.
#[path = "../tests/common/mod.rs"]
mod common;

use burn::tensor::Device;
use rand::{Rng, RngCore, SeedableRng};
use sg2im::data::{Sample, collate};
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
    let device = Device::flex().autodiff();
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
    // One warm-up iteration (allocator, caches), then the timed ones.
    for i in 0..=reps {
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
    println!(
        "    G forward {:.3} s | G losses incl. D forwards {:.3} s | G backward + Adam {:.3} s | D_obj step {:.3} s | D_img step {:.3} s",
        comp(|t| t.forward.as_secs_f64()),
        comp(|t| t.losses.as_secs_f64()),
        comp(|t| t.backward.as_secs_f64()),
        comp(|t| t.d_obj.as_secs_f64()),
        comp(|t| t.d_img.as_secs_f64()),
    );
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
