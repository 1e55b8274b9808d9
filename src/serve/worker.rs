//! Inference on one dedicated thread that owns the model.
//!
//! The generator is neither shared nor cloned: one thread loads it and runs the requests one at a
//! time, in arrival order, from a bounded queue. CPU inference already uses every core (rayon),
//! so running two graphs at once would not finish either sooner.

use super::ModelInfo;
use crate::imagenet::deprocess_to_u8_hwc;
use crate::inference::{generate, load_generator};
use crate::scene_graph::EncodedGraphs;
use crate::vocab::{IMAGE_OBJECT, IN_IMAGE_PREDICATE};
use crate::{Error, Result};
use burn::tensor::Device;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// One generated image and its predicted layout, for one graph.
#[derive(Debug, Clone)]
pub struct Generated {
    /// 8-bit RGB PNG, the pixels `sg2im run` writes for the same graph and seed.
    pub png: Vec<u8>,
    /// `(O, 4)` predicted boxes of the graph's objects (`__image__` left out).
    pub boxes: Vec<[f32; 4]>,
    /// `(O, M, M)` predicted masks, when the model has a mask network.
    pub masks: Option<Vec<Vec<Vec<f32>>>>,
    pub width: usize,
    pub height: usize,
}

struct Job {
    encoded: EncodedGraphs,
    seed: u64,
    reply: oneshot::Sender<Result<Generated>>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The queue is full: try again later.
    Busy,
    /// The worker thread has ended.
    Gone,
}

/// Handle to the inference thread; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread, loads the checkpoint on it and waits until the model is ready.
    /// `queue_size` requests may wait while one runs.
    pub fn spawn(
        checkpoint: &Path,
        device: Device,
        queue_size: usize,
    ) -> Result<(Self, ModelInfo, Vec<String>)> {
        let (tx, rx) = mpsc::channel::<Job>(queue_size);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shown = checkpoint.display().to_string();
        let checkpoint = checkpoint.to_path_buf();
        std::thread::Builder::new()
            .name("sg2im-serve-worker".into())
            .spawn(move || {
                let (mut model, _, warnings) = match load_generator(&checkpoint, &device) {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let c = &model.config;
                let info = ModelInfo {
                    objects: without(&c.vocab.object_idx_to_name, IMAGE_OBJECT),
                    predicates: without(&c.vocab.pred_idx_to_name, IN_IMAGE_PREDICATE),
                    image_size: c.image_size,
                    mask_size: c.mask_size,
                    vocab: c.vocab.clone(),
                };
                if ready_tx.send(Ok((info, warnings))).is_err() {
                    return;
                }
                run_jobs(&mut model, rx, &device);
            })
            .map_err(|e| Error::invalid(format!("cannot start the inference thread: {e}")))?;
        let (info, warnings) = ready_rx.recv().map_err(|_| {
            Error::invalid(format!(
                "{shown}: the inference thread ended while loading the model"
            ))
        })??;
        Ok((Self { tx }, info, warnings))
    }

    /// Queues one graph; the receiver yields its result. Never waits.
    pub fn submit(
        &self,
        encoded: EncodedGraphs,
        seed: u64,
    ) -> std::result::Result<oneshot::Receiver<Result<Generated>>, Rejected> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job {
            encoded,
            seed,
            reply,
        }) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Rejected::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Rejected::Gone),
        }
    }
}

fn without(names: &[String], skip: &str) -> Vec<String> {
    names.iter().filter(|n| *n != skip).cloned().collect()
}

fn run_jobs(
    model: &mut crate::model::generator::Sg2Im,
    mut rx: mpsc::Receiver<Job>,
    device: &Device,
) {
    while let Some(job) = rx.blocking_recv() {
        // The client gave up (time limit, closed connection): do not spend the worker on it.
        if job.reply.is_closed() {
            continue;
        }
        // A panic inside the model must not end the thread: the server keeps serving.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            generate_one(model, job.encoded, job.seed, device)
        }))
        .unwrap_or_else(|_| {
            Err(Error::invalid(
                "internal error: the generator panicked on this graph",
            ))
        });
        let _ = job.reply.send(result);
    }
}

/// `generate` on one graph, then the conversion `sg2im run` applies before writing its PNG.
pub fn generate_one(
    model: &mut crate::model::generator::Sg2Im,
    encoded: EncodedGraphs,
    seed: u64,
    device: &Device,
) -> Result<Generated> {
    let out = generate(model, encoded, seed, device)?;
    let (h, w) = out.image_size;
    let chw = out.imgs.get(..3 * h * w).ok_or_else(|| {
        Error::invalid("internal error: the generator returned no image for the graph")
    })?;
    let png = encode_png(&deprocess_to_u8_hwc(chw, h, w), h, w)?;
    // The last object of the graph is the `__image__` object `encode` appended.
    let o = out.boxes_pred.len().saturating_sub(1);
    let boxes = out.boxes_pred[..o].to_vec();
    let m = out.mask_size;
    let masks = out.masks_pred.as_ref().map(|flat| {
        flat.chunks_exact(m * m)
            .take(o)
            .map(|mask| mask.chunks_exact(m).map(<[f32]>::to_vec).collect())
            .collect()
    });
    Ok(Generated {
        png,
        boxes,
        masks,
        width: w,
        height: h,
    })
}

/// 8-bit RGB `(H, W, 3)` as PNG bytes, with the encoder settings of `save_png_rgb`.
fn encode_png(rgb: &[u8], height: usize, width: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let err = |e: png::EncodingError| Error::invalid(format!("encoding the PNG: {e}"));
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(bytes)
}
