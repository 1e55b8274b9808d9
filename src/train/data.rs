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
        DatasetKind::Coco => Err(Error::invalid(
            "--dataset coco: the COCO-Stuff loader is not available in this build yet",
        )),
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

/// Dataset seeds of the `shapes` splits.
const SHAPES_TRAIN_SEED: u64 = 0;
const SHAPES_VAL_SEED: u64 = 1;

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
