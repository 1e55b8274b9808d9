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

fn shapes(_args: &TrainArgs) -> Result<Datasets> {
    Err(Error::invalid(
        "--dataset shapes: the synthetic dataset is not available in this build yet",
    ))
}

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
