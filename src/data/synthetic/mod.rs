//! The built-in synthetic `shapes` dataset: procedurally generated scenes with exact masks,
//! boxes and geometric relationships, so training runs with no download (issue 3).
//!
//! * [`scene`]: the generator. Stuff backgrounds (sky, clouds, grass, sea, sand, road, wall,
//!   floor: bands and blobs with a per-class colour and mild texture) and things (`<colour>
//!   <shape>`: 6 colours × square, circle, triangle, star, cross), painted in order with
//!   occlusion; deterministic from a seed at any `H × W`.
//! * [`ShapesDataset`]: a [`crate::data::SceneGraphDataset`] generating scene `i` on the fly
//!   and turning it into a [`crate::data::Sample`] exactly as the COCO loader turns annotations
//!   into one (§15.4).
//! * [`export_coco`], [`export_vg`]: the same scenes written in the real COCO-Stuff 2017 and raw
//!   Visual Genome formats (`sg2im make-synthetic`).
//!
//! Vocabulary: objects `__image__` (0), the 8 stuff classes (COCO-Stuff names), then the 30
//! things; predicates exactly COCO's (§15.3 step 8).

mod dataset;
pub mod export_coco;
pub mod export_vg;
mod json_stream;
pub mod raster;
pub mod scene;

use crate::vocab::{IMAGE_OBJECT, Vocab};
use crate::{Error, Result};
use indexmap::IndexMap;
use scene::{Category, Scene};

pub use dataset::{ShapesConfig, ShapesDataset};

/// COCO's predicates in COCO's order (§15.3 step 8).
pub const PREDICATES: [&str; 7] = crate::data::coco::geometry::PRED_NAMES;

/// The `shapes` vocabulary: `__image__`, stuff, things; COCO's predicates.
pub fn shapes_vocab() -> Vocab {
    let mut names = vec![IMAGE_OBJECT.to_string()];
    names.extend(Category::all().into_iter().map(Category::name));
    let object_name_to_idx: IndexMap<String, i64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as i64))
        .collect();
    let pred_idx_to_name: Vec<String> = PREDICATES.iter().map(|s| s.to_string()).collect();
    let pred_name_to_idx = pred_idx_to_name
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as i64))
        .collect();
    Vocab {
        object_name_to_idx,
        object_idx_to_name: names,
        attribute_name_to_idx: None,
        attribute_idx_to_name: None,
        pred_name_to_idx,
        pred_idx_to_name,
    }
}

/// Encodes `(H, W, 3)` RGB as a baseline JPEG; `grayscale` writes one luma channel.
pub fn encode_jpeg(
    rgb: &[u8],
    height: usize,
    width: usize,
    quality: u8,
    grayscale: bool,
) -> Result<Vec<u8>> {
    let (w16, h16) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(Error::invalid(format!(
                "JPEG images are at most 65535 pixels a side, got {height}x{width}"
            )));
        }
    };
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    let result = if grayscale {
        let luma: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| {
                // ITU-R 601-2 luma, as Pillow's convert("L").
                ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114 + 500)
                    / 1000) as u8
            })
            .collect();
        encoder.encode(&luma, w16, h16, jpeg_encoder::ColorType::Luma)
    } else {
        encoder.encode(rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
    };
    result.map_err(|e| Error::invalid(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

/// Runs `produce(i)` for `i in 0..n` on `threads` threads (0 = all cores) and hands the results
/// to `consume` in index order, holding at most a few chunks in memory.
pub(crate) fn parallel_ordered<T: Send>(
    n: usize,
    threads: usize,
    produce: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    if threads <= 1 {
        for i in 0..n {
            consume(produce(i))?;
        }
        return Ok(());
    }
    let chunk = 32 * threads;
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let mut results: Vec<Option<T>> = (start..end).map(|_| None).collect();
        std::thread::scope(|s| {
            let produce = &produce;
            let parts: Vec<_> = results
                .chunks_mut((end - start).div_ceil(threads))
                .enumerate()
                .map(|(t, part)| {
                    let first = start + t * (end - start).div_ceil(threads);
                    s.spawn(move || {
                        for (k, slot) in part.iter_mut().enumerate() {
                            *slot = Some(produce(first + k));
                        }
                    })
                })
                .collect();
            for p in parts {
                if let Err(panic) = p.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        for r in results {
            consume(r.expect("every slot filled"))?;
        }
        start = end;
    }
    Ok(())
}

/// The COCO predicate (§15.4 step 5) of `s` relative to `o`, from their normalised boxes and
/// their box centres. Used for VG relationships (VG has boxes only).
pub(crate) fn geometric_predicate(scene: &Scene, s: usize, o: usize) -> &'static str {
    let (w, h) = (scene.width as f64, scene.height as f64);
    let norm = |k: usize| {
        let [x0, y0, x1, y1] = scene.objects[k].pixel_box;
        [
            (x0 as f64 / w) as f32,
            (y0 as f64 / h) as f32,
            (x1 as f64 / w) as f32,
            (y1 as f64 / h) as f32,
        ]
    };
    let centre = |b: [f32; 4]| [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
    let (sb, ob) = (norm(s), norm(o));
    let p = crate::data::coco::geometry::predicate_for(sb, ob, centre(sb), centre(ob));
    PREDICATES[p as usize]
}
