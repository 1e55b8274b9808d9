//! [`ShapesDataset`]: synthetic scenes generated on the fly, as training samples.

use super::export_coco::{TRAIN_SALT, scene_config, scene_seed};
use super::scene::Scene;
use super::shapes_vocab;
use crate::data::coco::geometry::{crop_and_resize_mask, draw_relationships, object_centers};
use crate::data::{Sample, SceneGraphDataset};
use crate::imagenet::preprocess_u8_hwc;
use crate::rng::PyRandom;
use crate::vocab::Vocab;
use crate::{Error, Result};

/// Options of the `shapes` dataset; the defaults are the COCO loader's as training uses it
/// (§15.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesConfig {
    /// `(H, W)` of the images (any size, square or not).
    pub image_size: (usize, usize),
    /// `M`, the side of the object masks.
    pub mask_size: usize,
    /// Number of samples (`len()`).
    pub num_images: usize,
    /// Objects per image (stuff and things, without `__image__`), inclusive.
    pub min_objects_per_image: usize,
    pub max_objects_per_image: usize,
    /// Objects whose box covers at most this fraction of the image are dropped (COCO's rule).
    pub min_object_size: f64,
    pub include_relationships: bool,
    pub normalize_images: bool,
    /// Scene `i` is a function of `(seed, i)`; use different seeds for train and val.
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig {
            image_size: (64, 64),
            mask_size: 16,
            num_images: 8192,
            min_objects_per_image: 3,
            max_objects_per_image: 8,
            min_object_size: 0.02,
            include_relationships: true,
            normalize_images: true,
            seed: 0,
        }
    }
}

/// Synthetic scene graphs with images, generated on the fly (nothing is stored).
///
/// A sample is built from the scene's annotations exactly as the COCO loader builds one from
/// a COCO file (§15.4), with the loader's own functions: objects = things then stuff passing
/// the size filter, boxes `[x/W, y/H, (x+w)/W, (y+h)/H]` from the COCO `bbox`, masks cropped
/// and resized from the full-resolution visible mask, mask-weighted centres, one random
/// geometric triple per object from `random.seed(seed)`, then `__image__` and its
/// `__in_image__` triples. `sg2im make-synthetic --format coco --image_size H,W --seed S`
/// writes the same scenes, so the COCO loader on those files gives the same objects, boxes,
/// masks and triples (the images differ only by JPEG compression).
pub struct ShapesDataset {
    cfg: ShapesConfig,
    vocab: Vocab,
}

impl ShapesDataset {
    pub fn new(cfg: ShapesConfig) -> Result<Self> {
        let (h, w) = cfg.image_size;
        if h == 0 || w == 0 {
            return Err(Error::invalid(format!(
                "shapes dataset: image_size {h}x{w}: height and width must be positive"
            )));
        }
        if cfg.min_objects_per_image > cfg.max_objects_per_image {
            return Err(Error::invalid(format!(
                "shapes dataset: min_objects_per_image {} is greater than max_objects_per_image {}",
                cfg.min_objects_per_image, cfg.max_objects_per_image
            )));
        }
        if cfg.max_objects_per_image == 0 {
            return Err(Error::invalid(
                "shapes dataset: max_objects_per_image must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&cfg.min_object_size) {
            return Err(Error::invalid(format!(
                "shapes dataset: min_object_size {} must be in [0, 1)",
                cfg.min_object_size
            )));
        }
        Ok(ShapesDataset {
            cfg,
            vocab: shapes_vocab(),
        })
    }

    pub fn config(&self) -> &ShapesConfig {
        &self.cfg
    }

    /// The scene of sample `index`.
    pub fn scene(&self, index: usize) -> Result<Scene> {
        let (h, w) = self.cfg.image_size;
        let mut cfg = scene_config(h, w);
        cfg.min_objects = self.cfg.min_objects_per_image;
        cfg.max_objects = self.cfg.max_objects_per_image;
        cfg.min_object_size = self.cfg.min_object_size;
        Scene::generate(scene_seed(self.cfg.seed, TRAIN_SALT, index), &cfg)
    }

    /// Turns a scene into a sample the way the COCO loader turns annotations into one;
    /// relationships are drawn from `random.seed(seed)`.
    pub fn sample_from_scene(&self, scene: &Scene, seed: u64) -> Sample {
        let (hh, ww) = (scene.height, scene.width);
        let m = self.cfg.mask_size;
        let kept = scene.kept(self.cfg.min_object_size);
        let mut objs = Vec::with_capacity(kept.len() + 1);
        let mut boxes = Vec::with_capacity(kept.len() + 1);
        let mut masks = Vec::with_capacity((kept.len() + 1) * m * m);
        let (wwf, hhf) = (ww as f64, hh as f64);
        for &k in &kept {
            let o = &scene.objects[k];
            objs.push(o.category.vocab_index());
            let [x, y, bw, bh] = o.bbox;
            boxes.push([
                (x / wwf) as f32,
                (y / hhf) as f32,
                ((x + bw) / wwf) as f32,
                ((y + bh) / hhf) as f32,
            ]);
            if m > 0 {
                let (mask, _) = crop_and_resize_mask(&scene.visible_mask(k), hh, ww, o.bbox, m);
                masks.extend(mask);
            }
        }
        objs.push(
            self.vocab
                .image_object()
                .expect("the shapes vocabulary starts with __image__"),
        );
        boxes.push([0.0, 0.0, 1.0, 1.0]);
        masks.extend(std::iter::repeat_n(1u8, m * m));
        let centers = object_centers(&boxes, &masks, m);
        let mut rng = PyRandom::seed(seed);
        let triples =
            draw_relationships(&boxes, &centers, self.cfg.include_relationships, &mut rng);
        let rgb = scene.render();
        Sample {
            image: preprocess_u8_hwc(&rgb, hh, ww, self.cfg.normalize_images),
            image_size: (hh, ww),
            objs,
            boxes,
            masks: Some(masks),
            mask_size: m,
            triples,
        }
    }
}

impl SceneGraphDataset for ShapesDataset {
    fn len(&self) -> usize {
        self.cfg.num_images
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn get(&self, index: usize, seed: u64) -> Result<Sample> {
        if index >= self.cfg.num_images {
            return Err(Error::invalid(format!(
                "shapes sample index {index} is out of range (dataset length {})",
                self.cfg.num_images
            )));
        }
        let scene = self.scene(index)?;
        Ok(self.sample_from_scene(&scene, seed))
    }
}
