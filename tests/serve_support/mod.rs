//! Shared by tests/serve_api.rs and tests/serve_browser.rs: an in-process `sg2im serve` on
//! 127.0.0.1 with an OS-chosen port, models to serve, and a small HTTP client (ureq).

#![allow(dead_code)]

use burn::tensor::Device;
use rand::SeedableRng;
use serde_json::Value;
use sg2im::io::model_file::{ModelBundle, save_model_file};
use sg2im::model::generator::{Sg2Im, Sg2ImConfig};
use sg2im::model::graph::GconvPooling;
use sg2im::model::layers::{Activation, Normalization};
use sg2im::serve::{ServeConfig, Studio};
use sg2im::vocab::Vocab;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(rel)
}

/// The original-format checkpoint of the parity fixtures (32×32, masks 8×8, no layout noise).
pub fn ref_small_pt() -> PathBuf {
    shared("fixtures/torch_parity/ref_small.pt")
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sg2im-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small random 32×32 model WITH layout noise (so the seed matters), saved as our model file.
pub fn noisy_model(dir: &std::path::Path) -> PathBuf {
    model_file(dir, "noisy", (32, 32), vec![16, 8, 4])
}

/// A random model with layout noise and masks, saved as our model file.
pub fn model_file(
    dir: &std::path::Path,
    name: &str,
    image_size: (usize, usize),
    refinement_dims: Vec<usize>,
) -> PathBuf {
    let vocab = Vocab::from_json_file(shared("fixtures/torch_parity/vocab.json")).unwrap();
    let cfg = Sg2ImConfig {
        vocab,
        image_size,
        embedding_dim: 8,
        gconv_dim: 12,
        gconv_hidden_dim: 16,
        gconv_pooling: GconvPooling::Avg,
        gconv_num_layers: 2,
        mlp_normalization: Normalization::None,
        refinement_dims,
        normalization: Normalization::Batch,
        activation: Activation::from_original("leakyrelu-0.2").unwrap(),
        mask_size: 8,
        layout_noise_dim: 4,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut model = Sg2Im::init(&cfg, &Device::flex(), &mut rng).unwrap();
    model.set_training(false);
    let path = dir.join(format!("{name}.safetensors"));
    let bundle = ModelBundle {
        generator: model.to_net_state(),
        d_obj: None,
        d_img: None,
        args: None,
    };
    save_model_file(&path, &bundle).unwrap();
    path
}

/// `sg2im serve` in this process, on its own runtime thread; stopped (gracefully) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(checkpoint: PathBuf, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut config = ServeConfig::new(checkpoint, Device::flex());
        config.port = 0;
        adjust(&mut config);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let studio = match Studio::bind(&config).await {
                    Ok(s) => s,
                    Err(e) => {
                        addr_tx.send(Err(e.to_string())).unwrap();
                        return;
                    }
                };
                addr_tx.send(Ok(studio.local_addr().unwrap())).unwrap();
                studio
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap().expect("server starts");
        assert!(addr.ip().is_loopback(), "bound {addr}");
        assert_ne!(addr.port(), 0);
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// One answer: status, `Retry-After` if any, body as JSON (or the raw text as a JSON string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub json: Value,
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.expect("the server answers");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type");
    let text = r.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status: r.status().as_u16(),
        retry_after,
        content_type,
        json,
    }
}

pub fn get(url: &str) -> Answer {
    answer(agent().get(url).call())
}

pub fn post_json(url: &str, body: &[u8]) -> Answer {
    answer(
        agent()
            .post(url)
            .header("Content-Type", "application/json")
            .send(body),
    )
}

pub fn post_with_type(url: &str, content_type: &str, body: &[u8]) -> Answer {
    answer(
        agent()
            .post(url)
            .header("Content-Type", content_type)
            .send(body),
    )
}

/// Decodes a base64 PNG into (width, height, RGB bytes).
pub fn decode_png_b64(b64: &str) -> (u32, u32, Vec<u8>) {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64");
    decode_png(&bytes)
}

pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}
