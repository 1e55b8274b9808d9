//! `sg2im serve` latency for one 7-object graph (the last of figure_6_sheep.json), CPU (`flex`),
//! random weights: (a) server-side, the worker's `generate_one` (forward, uint8 conversion, PNG);
//! (b) one `POST /api/generate` over 127.0.0.1 (JSON parsing, queue, base64 answer included).
//! Median of 20 after 3 warm-ups, for a 64×64 generator of the default dimensions (train.py
//! defaults) and for a model of the README main job's dimensions (32×32). Goal: (a) under 150 ms
//! at 64×64. Run: `cargo bench --bench serve`.

use burn::tensor::Device;
use rand::SeedableRng;
use sg2im::io::model_file::{ModelBundle, save_model_file};
use sg2im::model::generator::{Sg2Im, Sg2ImConfig};
use sg2im::scene_graph::{encode, parse_scene_graphs};
use sg2im::serve::worker::generate_one;
use sg2im::serve::{ServeConfig, Studio};
use sg2im::vocab::Vocab;
use std::path::PathBuf;
use std::time::Instant;

const RUNS: usize = 20;
const WARMUP: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench(name: &str, cfg: Sg2ImConfig, graph: &serde_json::Value, dir: &std::path::Path) {
    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut model = Sg2Im::init(&cfg, &device, &mut rng).expect("model");
    model.set_training(false);
    let graphs = parse_scene_graphs(graph, "bench").unwrap();
    let encoded = encode(&graphs, &model.config.vocab, "bench").unwrap();
    let mut times = Vec::new();
    for i in 0..WARMUP + RUNS {
        let t = Instant::now();
        let g = generate_one(&mut model, encoded.clone(), i as u64, &device).unwrap();
        assert_eq!((g.width, g.height), (cfg.image_size.1, cfg.image_size.0));
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "serve/{name} generate_one (7 objects): median {:.1} ms over {RUNS}",
        1e3 * median(times)
    );

    let path = dir.join(format!("{name}.safetensors"));
    let bundle = ModelBundle {
        generator: model.to_net_state(),
        d_obj: None,
        d_img: None,
        args: None,
    };
    save_model_file(&path, &bundle).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let studio = rt
        .block_on(Studio::bind(&{
            let mut c = ServeConfig::new(&path, device.clone());
            c.port = 0;
            c
        }))
        .unwrap();
    let url = format!("http://{}/api/generate", studio.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(studio.run(async {
        let _ = stopped.await;
    }));
    let agent = ureq::Agent::new_with_defaults();
    let body = graph.to_string();
    let mut times = Vec::new();
    for i in 0..WARMUP + RUNS {
        let t = Instant::now();
        let mut r = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        assert!(text.contains("image_png"));
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
    println!(
        "serve/{name} POST /api/generate round trip (7 objects): median {:.1} ms over {RUNS}",
        1e3 * median(times)
    );
}

fn main() {
    sg2im::malloc::tune_for_large_tensors();
    let shared = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
    let vocab =
        Vocab::from_json_file(shared.join("fixtures/torch_parity/vocab.json")).expect("vocab");
    let text =
        std::fs::read_to_string(shared.join("fixtures/torch_parity/figure_6_sheep.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let graph = all[6].clone();
    assert_eq!(graph["objects"].as_array().unwrap().len(), 7);
    let dir = std::env::temp_dir().join(format!("sg2im-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let default64 = Sg2ImConfig::train_defaults(vocab.clone());
    assert_eq!(default64.image_size, (64, 64));
    bench("default-64x64", default64, &graph, &dir);

    // The README main job's flags: 32×32, refinement 64,32,16, embedding/gconv 32, hidden 64,
    // 2 graph-conv layers (mask size and layout noise at train.py's defaults).
    let mut small = Sg2ImConfig::train_defaults(vocab);
    small.image_size = (32, 32);
    small.refinement_dims = vec![64, 32, 16];
    small.embedding_dim = 32;
    small.gconv_dim = 32;
    small.gconv_hidden_dim = 64;
    small.gconv_num_layers = 2;
    bench("main-job-32x32", small, &graph, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
