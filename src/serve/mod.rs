//! `sg2im serve`: an interactive scene-graph studio in the browser and its JSON API.
//!
//! One page (embedded, plain HTML/CSS/JS) and two endpoints:
//! - `GET /api/vocab` → `{"objects", "predicates", "image_size": [H, W], "has_masks", "mask_size"}`;
//! - `POST /api/generate` with one scene graph in `sg2im run`'s JSON format (plus an optional
//!   `"seed"`) → `{"image_png", "boxes", "masks", "width", "height", "seed"}`.
//!
//! Inference runs on one dedicated thread that owns the model ([`worker`]), fed by a bounded
//! queue: a full queue answers 503 with `Retry-After` instead of letting latency grow without
//! bound. The API never touches a file path: the checkpoint is the only file, chosen at start-up.

pub mod api;
pub mod worker;

use crate::{Error, Result};
use burn::tensor::Device;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Largest accepted request body (a 64-object graph with 64×64 masks is ~0.5 MiB of JSON).
pub const BODY_LIMIT: usize = 1 << 20;

/// Everything `sg2im serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Our model file or an original `.pt` (as `sg2im run --checkpoint`).
    pub checkpoint: PathBuf,
    pub host: IpAddr,
    /// 0 lets the OS choose (the bound address is reported by [`Studio::local_addr`]).
    pub port: u16,
    pub device: Device,
    /// Larger graphs are refused with 400 (they would hold the single worker for long).
    pub max_objects: usize,
    /// Requests that may wait for the worker; beyond that, 503 with `Retry-After`.
    pub queue_size: usize,
    /// Time limit of one request, waiting in the queue included.
    pub request_timeout: Duration,
}

impl ServeConfig {
    /// The defaults of `sg2im serve`: 127.0.0.1:8008, 64 objects, 64 waiting, 30 s.
    pub fn new(checkpoint: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8008,
            device,
            max_objects: 64,
            queue_size: 64,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the page and `/api/vocab` need to know about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Object categories in vocabulary order, without `__image__`.
    pub objects: Vec<String>,
    /// Predicates in vocabulary order, without `__in_image__`.
    pub predicates: Vec<String>,
    /// `(H, W)`.
    pub image_size: (usize, usize),
    /// `M`, 0 when the model predicts no masks.
    pub mask_size: usize,
    pub vocab: crate::vocab::Vocab,
}

/// A loaded model behind a bound (not yet serving) socket.
pub struct Studio {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    warnings: Vec<String>,
    info: ModelInfo,
}

impl Studio {
    /// Loads the checkpoint on the worker thread, then binds `host:port`. Must be called inside
    /// a tokio runtime.
    pub async fn bind(config: &ServeConfig) -> Result<Self> {
        if config.max_objects == 0 || config.queue_size == 0 {
            return Err(Error::invalid(
                "--max_objects and the queue size must be at least 1",
            ));
        }
        let (worker, info, warnings) =
            worker::Worker::spawn(&config.checkpoint, config.device.clone(), config.queue_size)?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::invalid(format!("cannot listen on {addr}: {e}")))?;
        let router = api::router(api::AppState::new(worker, info.clone(), config));
        Ok(Self {
            listener,
            router,
            warnings,
            info,
        })
    }

    /// The address actually bound (the OS-chosen port when the config asked for 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("bound socket has no address: {e}")))
    }

    /// Warnings of loading the checkpoint (deprecated keys of old checkpoints).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let addr = self.local_addr()?;
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::invalid(format!("serving on {addr}: {e}")))
    }
}

/// Completes on Ctrl-C (SIGINT), or never when the signal cannot be installed.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Whether binding `host` exposes the studio beyond this machine (the caller warns).
pub fn is_exposed(host: IpAddr) -> bool {
    !host.is_loopback()
}
