//! `check_model` (§18.8): validation losses, box IoU and the four kinds of samples.
//!
//! As the original, it does not change the generator's mode: while the generator trains in
//! train mode, these passes use batch statistics and update the BatchNorm running statistics.

use crate::data::loader::Loader;
use crate::imagenet::deprocess_to_u8_hwc;
use crate::model::generator::{Sg2Im, host_boxes};
use crate::model::metrics::jaccard_sum;
use crate::rng::TrainRng;
use crate::train::checkpoint::{BatchData, Images, SAMPLE_KINDS, Samples};
use crate::train::step::{DeviceBatch, LossConfig, model_losses};
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::{Device, Tensor};
use indexmap::IndexMap;

/// What `check_model` returns.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// Mean over batches of each weighted loss.
    pub mean_losses: IndexMap<String, f64>,
    pub samples: Samples,
    pub batch_data: BatchData,
    /// Total IoU / number of objects (including `__image__`).
    pub avg_iou: f64,
    pub num_images: usize,
    /// Items the loader could not produce.
    pub bad_items: Vec<String>,
}

/// `(N, 3, H, W)` generated images → uint8 `(N, 3, H, W)` with the deprocess-and-rescale of
/// §14.3 applied per image.
pub fn deprocess_batch(imgs: &Tensor<4>) -> Images {
    let [n, _, h, w] = imgs.dims();
    let v: Vec<f32> = imgs.to_data().try_into_vec_as::<f32>().unwrap_or_default();
    let mut data = Vec::with_capacity(n * 3 * h * w);
    for i in 0..n {
        let hwc = deprocess_to_u8_hwc(&v[i * 3 * h * w..(i + 1) * 3 * h * w], h, w);
        for c in 0..3 {
            data.extend((0..h * w).map(|p| hwc[p * 3 + c]));
        }
    }
    Images {
        n,
        height: h,
        width: w,
        data,
    }
}

fn to_vec_f32<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().try_into_vec_as::<f32>().unwrap_or_default()
}

/// Runs the generator over a fresh pass of `loader` until at least `num_samples` images were
/// seen. `noise_seed` makes the layout noise of every forward reproducible.
#[allow(clippy::too_many_arguments)]
pub fn check_model(
    generator: &mut Sg2Im,
    loader: &Loader,
    pass: u64,
    num_samples: usize,
    losses: &LossConfig,
    vocab: &Vocab,
    device: &Device,
    noise_seed: u64,
) -> Result<CheckResult> {
    let mut all_losses: IndexMap<String, Vec<f64>> = IndexMap::new();
    let mut total_iou = 0.0f64;
    let mut total_boxes = 0usize;
    let mut num_images = 0usize;
    let mut bad_items = Vec::new();
    let mut last: Option<(DeviceBatch, BatchData, usize)> = None;
    let noise = |g: &Sg2Im, n: usize, parts: &[u64]| -> Option<Tensor<4>> {
        (g.config.layout_noise_dim > 0).then(|| {
            let mut rng = TrainRng::derived(noise_seed, "check-noise", parts);
            g.sample_noise(n, &mut rng, device)
        })
    };
    for lb in loader.epoch(pass, 0) {
        bad_items.extend(lb.errors);
        if lb.batch.num_images == 0 {
            continue;
        }
        let b = DeviceBatch::new(&lb.batch, vocab, device)?;
        let z = noise(generator, b.num_images, &[lb.index as u64, 0]);
        let out = generator.forward(&b.graph, Some(&b.boxes), b.masks.clone(), z);
        for (name, t) in model_losses(&out, &b, losses) {
            let v = to_vec_f32(&t).first().copied().unwrap_or(f32::NAN) as f64;
            all_losses.entry(name.to_string()).or_default().push(v);
        }
        let boxes_pred = host_boxes(&out.boxes_pred);
        total_iou += jaccard_sum(&boxes_pred, &b.boxes);
        total_boxes += b.boxes.len();
        num_images += b.num_images;
        let batch_data = BatchData {
            objs: lb.batch.objs.clone(),
            boxes_gt: lb.batch.boxes.clone(),
            masks_gt: lb
                .batch
                .masks
                .as_ref()
                .map(|m| m.iter().map(|&x| x as f32).collect()),
            triples: lb.batch.triples.clone(),
            obj_to_img: lb.batch.obj_to_img.clone(),
            triple_to_img: lb.batch.triple_to_img.clone(),
            boxes_pred,
            masks_pred: out.masks_pred.as_ref().map(to_vec_f32),
            // Predicted masks have the model's M; ground truth (when present) the same M.
            mask_size: out
                .masks_pred
                .as_ref()
                .map_or(lb.batch.mask_size, |m| m.dims()[1]),
        };
        last = Some((b, batch_data, lb.index));
        if num_images >= num_samples {
            break;
        }
    }
    let Some((b, batch_data, index)) = last else {
        return Err(Error::invalid(format!(
            "check_model: the loader produced no images ({} bad items)",
            bad_items.len()
        )));
    };
    // The four kinds of samples from the last batch (§18.8 item 2).
    let mut samples = Samples::new();
    samples.insert(SAMPLE_KINDS[0].into(), deprocess_batch(&b.imgs));
    let kinds: [(bool, bool); 3] = [(true, true), (true, false), (false, false)];
    for (k, (gt_boxes, gt_masks)) in kinds.into_iter().enumerate() {
        let z = noise(generator, b.num_images, &[index as u64, k as u64 + 1]);
        let boxes = gt_boxes.then_some(b.boxes.as_slice());
        let masks = if gt_masks { b.masks.clone() } else { None };
        let out = generator.forward(&b.graph, boxes, masks, z);
        samples.insert(SAMPLE_KINDS[k + 1].into(), deprocess_batch(&out.imgs));
    }
    let mean_losses = all_losses
        .into_iter()
        .map(|(k, v)| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (k, m)
        })
        .collect();
    Ok(CheckResult {
        mean_losses,
        samples,
        batch_data,
        avg_iou: if total_boxes > 0 {
            total_iou / total_boxes as f64
        } else {
            0.0
        },
        num_images,
        bad_items,
    })
}

/// The samples as one RGB grid `(H·4, W·n, 3)`: one row per kind, one column per image (at
/// most `max_cols`). Returns `(rgb, height, width)`.
pub fn samples_grid(samples: &Samples, max_cols: usize) -> Option<(Vec<u8>, usize, usize)> {
    let first = samples.values().next()?;
    let (h, w) = (first.height, first.width);
    let cols = first.n.min(max_cols);
    if cols == 0 {
        return None;
    }
    let rows = samples.len();
    let (gh, gw) = (rows * h, cols * w);
    let mut rgb = vec![0u8; gh * gw * 3];
    for (r, im) in samples.values().enumerate() {
        for c in 0..cols.min(im.n) {
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..3 {
                        let src = im.data[((c * 3 + ch) * h + y) * w + x];
                        rgb[((r * h + y) * gw + c * w + x) * 3 + ch] = src;
                    }
                }
            }
        }
    }
    Some((rgb, gh, gw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_kinds_in_rows_and_images_in_columns() {
        let mut s = Samples::new();
        // Two 1×1 images per kind; image i of kind k has value 10k + i in every channel.
        for k in 0..2u8 {
            let data = [10 * k, 10 * k, 10 * k, 10 * k + 1, 10 * k + 1, 10 * k + 1].to_vec();
            s.insert(
                format!("k{k}"),
                Images {
                    n: 2,
                    height: 1,
                    width: 1,
                    data,
                },
            );
        }
        let (rgb, h, w) = samples_grid(&s, 8).unwrap();
        assert_eq!((h, w), (2, 2));
        assert_eq!(rgb, vec![0, 0, 0, 1, 1, 1, 10, 10, 10, 11, 11, 11]);
    }
}
