//! The train and val datasets `--dataset` selects (§18.2 step 2).

use crate::data::SceneGraphDataset;
use crate::train::{DatasetKind, TrainArgs};
use crate::vocab::Vocab;
use crate::{Error, Result};
use std::sync::Arc;

/// Train and val datasets over one vocabulary.
pub struct Datasets {
    pub train: Arc<dyn SceneGraphDataset>,
    pub val: Arc<dyn SceneGraphDataset>,
    pub vocab: Vocab,
    /// Lines the original prints while building (image and object counts).
    pub info: Vec<String>,
}

/// Builds the datasets as the original does for COCO and VG, or the synthetic `shapes` scenes.
pub fn build_datasets(args: &TrainArgs) -> Result<Datasets> {
    match args.dataset {
        DatasetKind::Shapes => shapes(args),
        DatasetKind::Coco => coco(args),
        DatasetKind::Vg => vg(args),
    }
}

/// The synthetic scenes: `--shapes_num_train` training scenes (capped by
/// `--num_train_samples`) and `--shapes_num_val` validation scenes, at `--image_size` with
/// `--mask_size` masks, filtered like COCO (`--min_object_size`, `--min_objects_per_image` to
/// 8 objects). The scenes depend on fixed dataset seeds, not on `--seed`, so runs with
/// different seeds see the same data.
fn shapes(args: &TrainArgs) -> Result<Datasets> {
    use crate::data::synthetic::{ShapesConfig, ShapesDataset};
    let cfg = |num_images: usize, seed: u64| ShapesConfig {
        image_size: args.image_size,
        mask_size: args.mask_size,
        num_images,
        min_objects_per_image: args.min_objects_per_image,
        max_objects_per_image: 8.max(args.min_objects_per_image),
        min_object_size: args.min_object_size,
        include_relationships: args.include_relationships,
        normalize_images: true,
        seed,
    };
    let num_train = args
        .num_train_samples
        .map_or(args.shapes_num_train, |n| n.min(args.shapes_num_train));
    let train = ShapesDataset::new(cfg(num_train, SHAPES_TRAIN_SEED))
        .map_err(|e| Error::invalid(format!("--dataset shapes: {e}")))?;
    let val = ShapesDataset::new(cfg(args.shapes_num_val, SHAPES_VAL_SEED))
        .map_err(|e| Error::invalid(format!("--dataset shapes: {e}")))?;
    let vocab = train.vocab().clone();
    Ok(Datasets {
        info: vec![format!(
            "shapes: {} training and {} validation scenes of {}x{}, {} object classes",
            num_train,
            args.shapes_num_val,
            args.image_size.0,
            args.image_size.1,
            vocab.num_objects()
        )],
        train: Arc::new(train),
        val: Arc::new(val),
        vocab,
    })
}

/// Dataset seeds of the `shapes` splits (`sample-images --dataset shapes` samples the val one).
pub const SHAPES_TRAIN_SEED: u64 = 0;
pub const SHAPES_VAL_SEED: u64 = 1;

/// VG (§18.2 step 2): the vocabulary from `--vocab_json`; the training set capped at
/// `--num_train_samples`, the validation set uncapped.
fn vg(args: &TrainArgs) -> Result<Datasets> {
    use crate::data::vg::{VgConfig, VgSceneGraphDataset};
    let vocab = Vocab::from_json_file(&args.vocab_json)?;
    let cfg = |h5: &std::path::Path, max_samples: Option<usize>| VgConfig {
        h5_path: h5.to_path_buf(),
        vocab_json: args.vocab_json.clone(),
        image_dir: args.vg_image_dir.clone(),
        image_size: args.image_size,
        normalize_images: true,
        max_objects: args.max_objects_per_image,
        max_samples,
        include_relationships: args.include_relationships,
        use_orphaned_objects: args.vg_use_orphaned_objects,
    };
    let train = VgSceneGraphDataset::with_vocab(
        cfg(&args.train_h5, args.num_train_samples),
        vocab.clone(),
    )?;
    let val = VgSceneGraphDataset::with_vocab(cfg(&args.val_h5, None), vocab.clone())?;
    Ok(Datasets {
        train: Arc::new(train),
        val: Arc::new(val),
        vocab,
        info: Vec::new(),
    })
}

/// COCO-Stuff (§18.2 step 2): train capped at `--num_train_samples`, val at
/// `--num_val_samples`; both must have the same vocabulary (the original asserts it).
fn coco(args: &TrainArgs) -> Result<Datasets> {
    use crate::data::coco::{CocoConfig, CocoSceneGraphDataset};
    let with_flags = |mut c: CocoConfig| {
        c.stuff_only = args.coco_stuff_only;
        c.image_size = args.image_size;
        c.mask_size = args.mask_size;
        c.normalize_images = true;
        c.include_relationships = args.include_relationships;
        c.min_object_size = args.min_object_size;
        c.min_objects_per_image = args.min_objects_per_image;
        c.include_other = args.coco_include_other;
        c.instance_whitelist = args.instance_whitelist.clone();
        c.stuff_whitelist = args.stuff_whitelist.clone();
        c.image_cache_dir = args.coco_image_cache_dir.clone();
        c
    };
    let train_cfg = with_flags(CocoConfig {
        image_dir: args.coco_train_image_dir.clone(),
        instances_json: args.coco_train_instances_json.clone(),
        stuff_json: Some(args.coco_train_stuff_json.clone()),
        max_samples: args.num_train_samples,
        ..CocoConfig::default()
    });
    let val_cfg = with_flags(CocoConfig {
        image_dir: args.coco_val_image_dir.clone(),
        instances_json: args.coco_val_instances_json.clone(),
        stuff_json: Some(args.coco_val_stuff_json.clone()),
        max_samples: Some(args.num_val_samples),
        ..CocoConfig::default_val()
    });
    let train = CocoSceneGraphDataset::new(train_cfg)?;
    let val = CocoSceneGraphDataset::new(val_cfg)?;
    if train.vocab() != val.vocab() {
        return Err(Error::invalid(
            "--dataset coco: the train and val annotation files give different vocabularies \
             (the original asserts they are equal)",
        ));
    }
    let info = vec![
        format!(
            "COCO train: {} images, {} objects",
            train.len(),
            train.total_objects()
        ),
        format!(
            "COCO val: {} images, {} objects",
            val.len(),
            val.total_objects()
        ),
    ];
    let vocab = train.vocab().clone();
    Ok(Datasets {
        train: Arc::new(train),
        val: Arc::new(val),
        vocab,
        info,
    })
}
