//! `sg2im serve`'s JSON API over real sockets on 127.0.0.1 (OS-chosen ports): the vocabulary,
//! images equal to `sg2im run`'s for the same graph and seed, every kind of bad input with the
//! message `run` prints, the body limit, 32 concurrent clients, and the full-queue answer.

mod serve_support;

use serde_json::{Value, json};
use serve_support::*;
use sg2im::io::safetensors_io::read_safetensors;
use sg2im::serve::BODY_LIMIT;
use sg2im::vocab::Vocab;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

/// The first graph of the paper's figure 6 file (sky, grass, zebra).
fn sheep_graph() -> Value {
    let text =
        std::fs::read_to_string(shared("fixtures/torch_parity/figure_6_sheep.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[0].clone()
}

fn generate_url(s: &TestServer) -> String {
    s.url("/api/generate")
}

/// `sg2im run` on `json_text` (written as a file); returns (status ok, stderr, output dir, file).
fn sg2im_run(checkpoint: &Path, json_text: &str, seed: u64, dir: &Path) -> (bool, String, PathBuf) {
    let file = dir.join("graphs.json");
    std::fs::write(&file, json_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sg2im"))
        .args(["run", "--checkpoint"])
        .arg(checkpoint)
        .arg("--scene_graphs_json")
        .arg(&file)
        .arg("--output_dir")
        .arg(dir.join("out"))
        .arg("--save_tensors")
        .arg(dir.join("t.safetensors"))
        .args(["--seed", &seed.to_string(), "--device", "cpu"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file,
    )
}

fn read_png_file(path: &Path) -> (u32, u32, Vec<u8>) {
    decode_png(&std::fs::read(path).unwrap())
}

/// The API's answer for `graph` equals `sg2im run`'s outputs for the same graph and seed,
/// bit for bit: the PNG pixels, `boxes_pred` and `masks_pred` (the JSON carries f32 values in
/// their shortest round-trip form, so no tolerance is needed).
fn assert_same_as_run(
    server: &TestServer,
    checkpoint: &Path,
    graph: &Value,
    seed: u64,
    name: &str,
) {
    let mut body = graph.clone();
    body["seed"] = json!(seed);
    let a = post_json(&generate_url(server), body.to_string().as_bytes());
    assert_eq!(a.status, 200, "{}", a.json);
    let dir = tmp(name);
    // `run` reads a list of graphs; the extra "seed" key is ignored by it, as the page's
    // downloaded JSON relies on.
    let (ok, stderr, _) = sg2im_run(checkpoint, &json!([body]).to_string(), seed, &dir);
    assert!(ok, "sg2im run failed: {stderr}");
    let (w, h, api_rgb) = decode_png_b64(a.json["image_png"].as_str().unwrap());
    let (rw, rh, run_rgb) = read_png_file(&dir.join("out/img000000.png"));
    assert_eq!((w, h), (rw, rh));
    assert_eq!(
        (a.json["width"].as_u64(), a.json["height"].as_u64()),
        (Some(w as u64), Some(h as u64))
    );
    assert!(
        api_rgb == run_rgb,
        "{name}: the API's pixels differ from sg2im run's"
    );
    let (t, _) = read_safetensors(dir.join("t.safetensors")).unwrap();
    let n = graph["objects"].as_array().unwrap().len();
    let boxes: Vec<f32> = a.json["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    assert_eq!(boxes.len(), 4 * n, "one box per object, __image__ left out");
    assert_eq!(boxes, t["boxes_pred"].to_f32()[..4 * n]);
    let masks: Vec<f32> = a.json["masks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m.as_array().unwrap().iter())
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    let run_masks = t["masks_pred"].to_f32();
    assert_eq!(masks.len(), run_masks.len() / (n + 1) * n);
    assert_eq!(masks, run_masks[..masks.len()]);
    assert!(boxes.iter().chain(&masks).all(|x| x.is_finite()));
}

#[test]
fn vocab_and_page() {
    let server = TestServer::start(ref_small_pt(), |_| {});
    let a = get(&server.url("/api/vocab"));
    assert_eq!(a.status, 200);
    let vocab = Vocab::from_json_file(shared("fixtures/torch_parity/vocab.json")).unwrap();
    let objects: Vec<&str> = vocab
        .object_idx_to_name
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "__image__")
        .collect();
    let predicates: Vec<&str> = vocab
        .pred_idx_to_name
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "__in_image__")
        .collect();
    assert_eq!(a.json["objects"], json!(objects));
    assert_eq!(a.json["predicates"], json!(predicates));
    assert_eq!(objects.len() + 1, vocab.object_idx_to_name.len());
    assert_eq!(a.json["image_size"], json!([32, 32]));
    assert_eq!(a.json["has_masks"], json!(true));
    assert_eq!(a.json["mask_size"], json!(8));

    let page = get(&server.url("/"));
    assert_eq!(page.status, 200);
    assert!(page.content_type.unwrap().starts_with("text/html"));
    let html = page.json.as_str().unwrap();
    assert!(html.contains("sg2im studio") && html.contains("/app.js"));
    // Nothing from the internet: no absolute URLs in the page or its script.
    let js = get(&server.url("/app.js"));
    assert!(js.content_type.unwrap().starts_with("text/javascript"));
    for text in [html, js.json.as_str().unwrap()] {
        // The SVG namespace is a name, not something fetched.
        let text = text.replace("http://www.w3.org/2000/svg", "");
        assert!(!text.contains("http://") && !text.contains("https://"));
    }
    assert_eq!(get(&server.url("/api/nothing")).status, 404);
    // No CORS headers are ever sent.
    let r = ureq::get(&server.url("/api/vocab"))
        .header("Origin", "http://evil.example")
        .call()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn generate_equals_sg2im_run_on_an_original_checkpoint() {
    let server = TestServer::start(ref_small_pt(), |_| {});
    assert_same_as_run(&server, &ref_small_pt(), &sheep_graph(), 0, "ref-small");
}

#[test]
fn generate_equals_sg2im_run_with_seed_and_boxes() {
    let dir = tmp("noisy-model");
    let model = noisy_model(&dir);
    let server = TestServer::start(model.clone(), |_| {});
    let graph = sheep_graph();
    assert_same_as_run(&server, &model, &graph, 7, "seed7");
    // Boxes placed by hand for every object, as the page sends pinned boxes.
    let mut boxed = graph.clone();
    boxed["boxes"] = json!([
        [0.0, 0.0, 1.0, 0.4],
        [0.0, 0.5, 1.0, 1.0],
        [0.3, 0.35, 0.7, 0.8]
    ]);
    assert_same_as_run(&server, &model, &boxed, 7, "seed7-boxes");
    // The seed reaches the noise: another seed, another image; the same seed, the same image.
    // (With boxes given: this random model's box net predicts all-zero boxes, whose layout is
    // NaN, so without them every image is the same constant one.)
    let image = |seed: u64| {
        let mut b = boxed.clone();
        b["seed"] = json!(seed);
        let a = post_json(&generate_url(&server), b.to_string().as_bytes());
        assert_eq!(a.status, 200);
        decode_png_b64(a.json["image_png"].as_str().unwrap()).2
    };
    let distinct = image(7)
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        distinct > 1,
        "a constant image cannot show the seed's effect"
    );
    assert!(image(7) == image(7));
    assert!(image(7) != image(8));
    // Without "seed": seed 0, like `sg2im run` without --seed.
    let a = post_json(&generate_url(&server), boxed.to_string().as_bytes());
    assert_eq!(a.json["seed"], json!(0));
    assert!(decode_png_b64(a.json["image_png"].as_str().unwrap()).2 == image(0));
}

/// Bad input gets 400 with exactly the message `sg2im run` prints for the same JSON, the file
/// name replaced by "request body".
#[test]
fn bad_graphs_get_the_messages_of_sg2im_run() {
    let server = TestServer::start(ref_small_pt(), |c| c.max_objects = 3);
    let dir = tmp("bad");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown word",
            json!({"objects": ["sky", "grass", "sheeep"], "relationships": [[0, "above", 1]]})
                .to_string(),
            &[
                "object 2",
                "\"sheeep\" is not in the model's vocabulary",
                "closest: \"sheep\"",
            ],
        ),
        (
            "unknown predicate",
            json!({"objects": ["sky", "grass"], "relationships": [[0, "abve", 1]]}).to_string(),
            &["relationship 0", "predicate \"abve\"", "\"above\""],
        ),
        (
            "index out of range",
            json!({"objects": ["sky", "grass"], "relationships": [[0, "above", 5]]}).to_string(),
            &[
                "relationship 0",
                "object index 5 is out of range",
                "the graph has 2 objects",
            ],
        ),
        (
            "malformed JSON",
            "{\"objects\": [\"sky\",\n  \"grass\" \"tree\"]}".to_string(),
            &[":2:11: malformed JSON: expected"],
        ),
        (
            "zero-size box",
            json!({"objects": ["sky"], "relationships": [], "boxes": [[0.5, 0.5, 0.5, 0.9]]})
                .to_string(),
            &["box 0", "x0 < x1"],
        ),
    ];
    for (what, body, needles) in cases {
        let a = post_json(&generate_url(&server), body.as_bytes());
        assert_eq!(a.status, 400, "{what}: {}", a.json);
        let msg = a.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {}", a.json));
        assert!(msg.starts_with("request body"), "{what}: {msg}");
        for n in needles {
            assert!(msg.contains(n), "{what}: {n:?} not in {msg:?}");
        }
        // What `sg2im run` says about the same text as a file (a single graph is accepted
        // there too).
        let (ok, stderr, file) = sg2im_run(&ref_small_pt(), &body, 0, &dir);
        assert!(!ok, "{what}: sg2im run accepted it");
        let run_msg = stderr
            .trim_end()
            .replace(&file.display().to_string(), "request body");
        assert_eq!(run_msg, format!("error: sg2im run: {msg}"), "{what}");
    }

    let rejects: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "too many objects",
            json!({"objects": ["sky", "grass", "sheep", "tree"], "relationships": []})
                .to_string()
                .into_bytes(),
            "application/json",
            400,
            "more than this server's --max_objects 3",
        ),
        (
            "a list of graphs",
            b"[{\"objects\": [\"sky\"], \"relationships\": []}]".to_vec(),
            "application/json",
            400,
            "expected one scene graph",
        ),
        (
            "bad seed",
            b"{\"objects\": [\"sky\"], \"relationships\": [], \"seed\": -1}".to_vec(),
            "application/json",
            400,
            "\"seed\" must be an integer",
        ),
        (
            "not JSON content",
            b"{\"objects\": [\"sky\"], \"relationships\": []}".to_vec(),
            "text/plain",
            415,
            "application/json",
        ),
    ];
    for (what, body, content_type, status, needle) in rejects {
        let a = post_with_type(&generate_url(&server), content_type, &body);
        assert_eq!(a.status, status, "{what}: {}", a.json);
        let msg = a.json["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{what}: {needle:?} not in {msg:?}");
    }

    // The server keeps serving.
    let ok = json!({"objects": ["sky", "grass", "sheep"], "relationships": [[0, "above", 1]]});
    assert_eq!(
        post_json(&generate_url(&server), ok.to_string().as_bytes()).status,
        200
    );
}

/// Exactly 1 MiB (a valid graph padded with spaces) is accepted; one byte more is 413.
#[test]
fn body_limit_is_one_mebibyte() {
    let server = TestServer::start(ref_small_pt(), |_| {});
    let graph = sheep_graph().to_string();
    let padded = |len: usize| {
        let mut b = graph.clone().into_bytes();
        b.resize(len, b' ');
        b
    };
    let a = post_json(&generate_url(&server), &padded(BODY_LIMIT));
    assert_eq!(a.status, 200, "{}", a.json);
    let a = post_json(&generate_url(&server), &padded(BODY_LIMIT + 1));
    assert_eq!(a.status, 413, "{}", a.json);
    assert!(a.json["error"].as_str().unwrap().contains("1 MiB"));
    let a = post_json(&generate_url(&server), graph.as_bytes());
    assert_eq!(a.status, 200, "alive after the 413");
}

fn concurrent(server: &TestServer, clients: usize, graph: &Value) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(clients));
    let url = generate_url(server);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = barrier.clone();
            let url = url.clone();
            let mut body = graph.clone();
            body["seed"] = json!(i);
            std::thread::spawn(move || {
                barrier.wait();
                post_json(&url, body.to_string().as_bytes())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// 32 clients at once with the default queue (64): every one gets its image.
#[test]
fn thirty_two_concurrent_clients_are_all_answered() {
    let server = TestServer::start(ref_small_pt(), |_| {});
    let answers = concurrent(&server, 32, &sheep_graph());
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.json);
        let (w, h, _) = decode_png_b64(a.json["image_png"].as_str().unwrap());
        assert_eq!((w, h), (32, 32));
    }
    assert_eq!(get(&server.url("/api/vocab")).status, 200);
}

/// With room for one waiting request, a burst of 32 gets 503 + Retry-After for the overflow
/// and 200 for the rest; the server serves normally afterwards.
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let dir = tmp("queue1");
    // 64×64 with four refinement modules: slow enough (tens of ms) that a burst of 32 overflows.
    let model = model_file(&dir, "slow", (64, 64), vec![128, 64, 32, 16]);
    let server = TestServer::start(model, |c| c.queue_size = 1);
    let answers = concurrent(&server, 32, &sheep_graph());
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(ok + busy.len(), 32, "only 200 or 503 expected");
    assert!(ok >= 1, "the first request runs");
    assert!(
        !busy.is_empty(),
        "32 at once cannot fit one running + one waiting"
    );
    for a in busy {
        assert_eq!(a.retry_after.as_deref(), Some("1"));
        assert!(a.json["error"].as_str().unwrap().contains("queue is full"));
    }
    let a = post_json(&generate_url(&server), sheep_graph().to_string().as_bytes());
    assert_eq!(a.status, 200, "alive after the burst");
}
