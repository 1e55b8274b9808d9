//! `sg2im run` on the 7 graphs of figure_6_sheep.json with a 128×128 generator of the default
//! dimensions (train.py defaults, random weights), CPU (`flex`). Prints the median of 5 runs of
//! the whole command (load the model file, encode, forward, write 7 PNGs) and of the forward pass
//! alone. Comparison figure: the original takes 1.03 s on this machine class (PyTorch 2.15, 2
//! threads). Run: `cargo bench --bench inference`. `SG2IM_BENCH_DEVICE` picks the device (`cpu`
//! default; `cuda`, `vulkan`, `wgpu` in a build with that feature).

use burn::tensor::Device;
use rand::SeedableRng;
use sg2im::device::DeviceChoice;
use sg2im::inference::{RunOptions, generate, run_model};
use sg2im::io::model_file::{ModelBundle, save_model_file};
use sg2im::model::generator::{Sg2Im, Sg2ImConfig};
use sg2im::scene_graph::{encode, read_scene_graphs};
use sg2im::vocab::Vocab;
use std::path::PathBuf;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // As the `sg2im` binary does at start-up.
    sg2im::malloc::tune_for_large_tensors();
    let shared = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
    let graphs_path = shared.join("reference/data/scene_graphs/figure_6_sheep.json");
    let vocab =
        Vocab::from_json_file(shared.join("fixtures/torch_parity/vocab.json")).expect("vocab");
    let name = std::env::var("SG2IM_BENCH_DEVICE").unwrap_or_else(|_| "cpu".to_string());
    let device: Device = match name.parse::<DeviceChoice>().and_then(DeviceChoice::device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SG2IM_BENCH_DEVICE={name}: {e}");
            std::process::exit(2)
        }
    };
    println!("device: {name}");
    let mut cfg = Sg2ImConfig::train_defaults(vocab);
    cfg.image_size = (128, 128);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut model = Sg2Im::init(&cfg, &device, &mut rng).expect("model");
    model.set_training(false);

    let dir = std::env::temp_dir().join(format!("sg2im-bench-inference-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model_path = dir.join("model.safetensors");
    let bundle = ModelBundle {
        generator: model.to_net_state(),
        d_obj: None,
        d_img: None,
        args: None,
    };
    save_model_file(&model_path, &bundle).unwrap();

    let graphs = read_scene_graphs(&graphs_path).unwrap();
    let encoded = encode(&graphs, &model.config.vocab, "sheep").unwrap();
    let mut forward = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        let out = generate(&mut model, encoded.clone(), 0, &device).unwrap();
        assert_eq!(out.imgs.len(), 7 * 3 * 128 * 128);
        if i > 0 {
            forward.push(t.elapsed().as_secs_f64());
        }
    }
    let opts = RunOptions {
        checkpoint: model_path,
        scene_graphs_json: graphs_path,
        output_dir: dir.join("out"),
        draw_scene_graphs: false,
        save_tensors: None,
        seed: 0,
    };
    let mut whole = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        let written = run_model(&opts, &device, &sg2im::report::Quiet).unwrap();
        assert_eq!(written.len(), 7);
        if i > 0 {
            whole.push(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "inference/sheep-7-graphs-128px forward only: median {:.3} s over 5 runs",
        median(forward)
    );
    println!(
        "inference/sheep-7-graphs-128px whole run (load+forward+PNG): median {:.3} s over 5 runs",
        median(whole)
    );
    println!("reference: original run_model.py 1.03 s (PyTorch 2.15 CPU, 2 threads)");
    let _ = std::fs::remove_dir_all(&dir);
}
