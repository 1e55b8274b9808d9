//! `sg2im dump-dataset coco`: every sample exactly as training sees it, in a safetensors file
//! with the keys of the coco_loader fixtures.

use super::CocoSceneGraphDataset;
use crate::data::SceneGraphDataset;
use crate::report::Reporter;
use crate::{Error, Result};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::path::Path;

/// Writes `image_ids` (int64: every kept image id in dataset order, before `max_samples`)
/// and, for every item `idx < len`, `"<idx:04>/image"` (3, H, W) float32, `objs` (O,) int64,
/// `boxes` (O, 4) float32, `masks` (O, M, M) int64 and `triples` (T, 3) int64. Item `idx`
/// draws its relationships from `random.seed(seed + idx)` (the fixtures' convention with
/// `seed = 5000` for their first configuration).
///
/// Images are decoded on `workers` threads. Items whose image cannot be used are left out and
/// reported to `reporter`, one warning each; the call fails if any was. The file is written
/// atomically.
pub fn dump_coco(
    ds: &CocoSceneGraphDataset,
    output: &Path,
    seed: u64,
    workers: usize,
    reporter: &dyn Reporter,
) -> Result<usize> {
    let n = ds.len();
    let workers = workers.clamp(1, n.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<crate::data::Sample>>> = (0..n).map(|_| None).collect();
    let chunks: Vec<Vec<(usize, Result<crate::data::Sample>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            break out;
                        }
                        out.push((i, ds.get(i, seed.wrapping_add(i as u64))));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for (i, r) in chunks.into_iter().flatten() {
        results[i] = Some(r);
    }

    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let le = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ids = ds.image_ids();
    tensors.push(("image_ids".into(), Dtype::I64, vec![ids.len()], le(ids)));
    let mut failed = Vec::new();
    for (idx, r) in results.into_iter().enumerate() {
        let sample = match r.expect("every index was processed") {
            Ok(s) => s,
            Err(e) => {
                reporter.warn(&format!("skipped item {idx}: {e}"));
                failed.push(idx);
                continue;
            }
        };
        let (h, w) = sample.image_size;
        let m = sample.mask_size;
        let o = sample.objs.len();
        let key = |f: &str| format!("{idx:04}/{f}");
        let f32s = |v: &mut dyn Iterator<Item = f32>| v.flat_map(f32::to_le_bytes).collect();
        tensors.push((
            key("image"),
            Dtype::F32,
            vec![3, h, w],
            f32s(&mut sample.image.iter().copied()),
        ));
        tensors.push((key("objs"), Dtype::I64, vec![o], le(&sample.objs)));
        tensors.push((
            key("boxes"),
            Dtype::F32,
            vec![o, 4],
            f32s(&mut sample.boxes.iter().flatten().copied()),
        ));
        let masks: Vec<i64> = sample
            .masks
            .unwrap_or_default()
            .iter()
            .map(|&v| v as i64)
            .collect();
        tensors.push((key("masks"), Dtype::I64, vec![o, m, m], le(&masks)));
        let triples: Vec<i64> = sample.triples.iter().flatten().copied().collect();
        tensors.push((
            key("triples"),
            Dtype::I64,
            vec![sample.triples.len(), 3],
            le(&triples),
        ));
    }
    if !failed.is_empty() {
        return Err(Error::invalid(format!(
            "{} of {n} items could not be loaded (indices {failed:?}); nothing written to {}",
            failed.len(),
            output.display()
        )));
    }
    let views = tensors
        .iter()
        .map(|(k, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::invalid(format!("{}: {e}", output.display())))?;
    crate::io::atomic::write_bytes_atomic(output, &bytes)?;
    Ok(n)
}
