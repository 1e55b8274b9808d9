//! Datasets of scene graphs with images: COCO-Stuff (§15), Visual Genome (§16, §17) and the
//! built-in synthetic `shapes` data, plus collation into packed batches (§2.3).

pub mod coco;
pub mod factory;
pub mod image;
pub mod loader;
pub mod preprocess_vg;
pub mod rle;
pub mod synthetic;
pub mod vg;

pub use factory::{DatasetKind, DatasetOptions, Split, open_dataset};

use crate::Result;
use crate::vocab::Vocab;

/// One scene graph with its image, as a dataset yields it (§2.1). Object `O−1` is `__image__`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `(3, H, W)` row-major, ImageNet-normalised unless the dataset was asked not to.
    pub image: Vec<f32>,
    /// `(H, W)` of `image`.
    pub image_size: (usize, usize),
    /// `(O,)` object category indices.
    pub objs: Vec<i64>,
    /// `(O, 4)` boxes `[x0, y0, x1, y1]`, normalised.
    pub boxes: Vec<[f32; 4]>,
    /// `(O, M, M)` 0/1 masks (COCO and synthetic); `None` for VG.
    pub masks: Option<Vec<u8>>,
    /// `M`; meaningful only when `masks` is `Some`.
    pub mask_size: usize,
    /// `(T, 3)` triples `[s, p, o]` with graph-local object indices.
    pub triples: Vec<[i64; 3]>,
}

/// A packed batch (§2.3): objects and triples of all graphs concatenated, triples shifted to
/// global object indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `(N, 3, H, W)`.
    pub imgs: Vec<f32>,
    pub num_images: usize,
    pub image_size: (usize, usize),
    /// `(O,)`.
    pub objs: Vec<i64>,
    /// `(O, 4)`.
    pub boxes: Vec<[f32; 4]>,
    /// `(O, M, M)` when every sample has masks.
    pub masks: Option<Vec<u8>>,
    pub mask_size: usize,
    /// `(T, 3)` with global object indices.
    pub triples: Vec<[i64; 3]>,
    /// `(O,)` image index of each object.
    pub obj_to_img: Vec<i64>,
    /// `(T,)` image index of each triple.
    pub triple_to_img: Vec<i64>,
}

/// Packs samples into one batch exactly as the original collate functions do (§2.3).
///
/// Masks are kept only if every sample has them (COCO) and dropped otherwise (VG).
pub fn collate(samples: &[Sample]) -> Batch {
    let image_size = samples.first().map(|s| s.image_size).unwrap_or((0, 0));
    let mask_size = samples.first().map(|s| s.mask_size).unwrap_or(0);
    let with_masks = !samples.is_empty() && samples.iter().all(|s| s.masks.is_some());
    let mut batch = Batch {
        imgs: Vec::new(),
        num_images: samples.len(),
        image_size,
        objs: Vec::new(),
        boxes: Vec::new(),
        masks: with_masks.then(Vec::new),
        mask_size,
        triples: Vec::new(),
        obj_to_img: Vec::new(),
        triple_to_img: Vec::new(),
    };
    let mut offset = 0i64;
    for (i, s) in samples.iter().enumerate() {
        batch.imgs.extend_from_slice(&s.image);
        batch.objs.extend_from_slice(&s.objs);
        batch.boxes.extend_from_slice(&s.boxes);
        if let (Some(dst), Some(src)) = (batch.masks.as_mut(), s.masks.as_ref()) {
            dst.extend_from_slice(src);
        }
        batch.triples.extend(
            s.triples
                .iter()
                .map(|&[a, p, b]| [a + offset, p, b + offset]),
        );
        batch
            .obj_to_img
            .extend(std::iter::repeat_n(i as i64, s.objs.len()));
        batch
            .triple_to_img
            .extend(std::iter::repeat_n(i as i64, s.triples.len()));
        offset += s.objs.len() as i64;
    }
    batch
}

/// A dataset of scene graphs with images.
pub trait SceneGraphDataset: Send + Sync {
    /// Number of samples (after every filter and `max_samples` cap).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vocabulary the indices of every sample refer to.
    fn vocab(&self) -> &Vocab;

    /// Sample `index`. `seed` fixes every random choice the sample makes (COCO's relationship
    /// draws, VG's object subsampling): the same `(index, seed)` always gives the same sample.
    fn get(&self, index: usize, seed: u64) -> Result<Sample>;

    /// Warnings raised while loading items since the last call (e.g. an image cache that
    /// cannot be written), for the caller to show: datasets do not print.
    fn take_warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n_objs: usize, triples: Vec<[i64; 3]>, masks: bool) -> Sample {
        Sample {
            image: vec![0.5; 3 * 2 * 2],
            image_size: (2, 2),
            objs: (0..n_objs as i64).collect(),
            boxes: vec![[0.0, 0.0, 1.0, 1.0]; n_objs],
            masks: masks.then(|| vec![1; n_objs * 4]),
            mask_size: 2,
            triples,
        }
    }

    #[test]
    fn collate_offsets_subject_and_object_but_not_predicate() {
        let a = sample(3, vec![[0, 5, 1], [0, 0, 2], [1, 0, 2]], true);
        let b = sample(2, vec![[1, 4, 0], [0, 0, 1]], true);
        let batch = collate(&[a, b]);
        assert_eq!(batch.num_images, 2);
        assert_eq!(batch.imgs.len(), 2 * 12);
        assert_eq!(batch.obj_to_img, vec![0, 0, 0, 1, 1]);
        assert_eq!(batch.triple_to_img, vec![0, 0, 0, 1, 1]);
        assert_eq!(
            batch.triples,
            vec![[0, 5, 1], [0, 0, 2], [1, 0, 2], [4, 4, 3], [3, 0, 4]]
        );
        assert_eq!(batch.masks.as_ref().map(Vec::len), Some(5 * 4));
    }

    #[test]
    fn collate_drops_masks_unless_every_sample_has_them() {
        let batch = collate(&[sample(2, vec![], true), sample(2, vec![], false)]);
        assert!(batch.masks.is_none());
    }
}
