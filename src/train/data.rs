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
        DatasetKind::Vg => Err(Error::invalid(
            "--dataset vg: the Visual Genome loader is not available in this build yet",
        )),
    }
}

fn shapes(_args: &TrainArgs) -> Result<Datasets> {
    Err(Error::invalid(
        "--dataset shapes: the synthetic dataset is not available in this build yet",
    ))
}
