//! The train and val datasets `--dataset` selects (§18.2 step 2), opened through the data
//! layer's one factory ([`crate::data::factory`]) with options taken from the flags.

use crate::data::SceneGraphDataset;
use crate::data::coco::{CocoConfig, CocoFlags};
use crate::data::factory::{DatasetKind, DatasetOptions, Split, open_coco, open_dataset};
use crate::data::vg::VgConfig;
use crate::report::Reporter;
use crate::train::TrainArgs;
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

/// The options of split `split` as `train.py` builds its datasets from the flags: the training
/// set capped at `--num_train_samples`; the validation set capped at `--num_val_samples` for
/// COCO only (as the original), VG's and the synthetic scenes' uncapped. `vocab` is VG's
/// vocabulary, read once from `--vocab_json` for both splits.
pub fn dataset_options(args: &TrainArgs, split: Split, vocab: Option<&Vocab>) -> DatasetOptions {
    let train = split == Split::Train;
    let (image_dir, instances_json, stuff_json, prefix) = if train {
        (
            &args.coco_train_image_dir,
            &args.coco_train_instances_json,
            &args.coco_train_stuff_json,
            "--coco_train",
        )
    } else {
        (
            &args.coco_val_image_dir,
            &args.coco_val_instances_json,
            &args.coco_val_stuff_json,
            "--coco_val",
        )
    };
    let coco = CocoConfig {
        image_dir: image_dir.clone(),
        instances_json: instances_json.clone(),
        stuff_json: Some(stuff_json.clone()),
        stuff_only: args.coco_stuff_only,
        include_other: args.coco_include_other,
        instance_whitelist: args.instance_whitelist.clone(),
        stuff_whitelist: args.stuff_whitelist.clone(),
        image_cache_dir: args.coco_image_cache_dir.clone(),
        flags: CocoFlags {
            image_dir: format!("{prefix}_image_dir"),
            instances_json: format!("{prefix}_instances_json"),
            stuff_json: format!("{prefix}_stuff_json"),
        },
        ..CocoConfig::default()
    };
    let vg = VgConfig {
        h5_path: if train { &args.train_h5 } else { &args.val_h5 }.clone(),
        image_dir: args.vg_image_dir.clone(),
        vocab_json: args.vocab_json.clone(),
        max_objects: args.max_objects_per_image,
        use_orphaned_objects: args.vg_use_orphaned_objects,
        ..VgConfig::default()
    };
    let max_samples = match (split, args.dataset) {
        (Split::Train, _) => args.num_train_samples,
        (Split::Val, DatasetKind::Coco) => Some(args.num_val_samples),
        // train.py has no test split; the trainer never asks for one.
        (Split::Val | Split::Test, _) => None,
    };
    DatasetOptions {
        image_size: args.image_size,
        max_samples,
        include_relationships: args.include_relationships,
        mask_size: args.mask_size,
        min_object_size: args.min_object_size,
        min_objects_per_image: args.min_objects_per_image,
        coco,
        vg,
        vg_vocab: vocab.cloned(),
        shapes_num_images: if train {
            args.shapes_num_train
        } else {
            args.shapes_num_val
        },
    }
}

/// Builds the datasets as the original does for COCO and VG, or the synthetic `shapes` scenes
/// (`--shapes_num_train` / `--shapes_num_val` scenes at `--image_size`, filtered like COCO).
pub fn build_datasets(args: &TrainArgs, reporter: &dyn Reporter) -> Result<Datasets> {
    let opts = |split, vocab| dataset_options(args, split, vocab);
    match args.dataset {
        DatasetKind::Shapes => {
            let train = open_dataset(
                DatasetKind::Shapes,
                Split::Train,
                &opts(Split::Train, None),
                reporter,
            )?;
            let val = open_dataset(
                DatasetKind::Shapes,
                Split::Val,
                &opts(Split::Val, None),
                reporter,
            )?;
            let vocab = train.vocab().clone();
            let info = vec![format!(
                "shapes: {} training and {} validation scenes of {}x{}, {} object classes",
                train.len(),
                val.len(),
                args.image_size.0,
                args.image_size.1,
                vocab.num_objects()
            )];
            Ok(Datasets {
                train,
                val,
                vocab,
                info,
            })
        }
        DatasetKind::Vg => {
            let vocab = Vocab::from_json_file(&args.vocab_json)?;
            let train = open_dataset(
                DatasetKind::Vg,
                Split::Train,
                &opts(Split::Train, Some(&vocab)),
                reporter,
            )?;
            let val = open_dataset(
                DatasetKind::Vg,
                Split::Val,
                &opts(Split::Val, Some(&vocab)),
                reporter,
            )?;
            Ok(Datasets {
                train,
                val,
                vocab,
                info: Vec::new(),
            })
        }
        DatasetKind::Coco => {
            let train = open_coco(&opts(Split::Train, None))?;
            for w in train.warnings() {
                reporter.warn(w);
            }
            let val = open_coco(&opts(Split::Val, None))?;
            for w in val.warnings() {
                reporter.warn(w);
            }
            if train.vocab() != val.vocab() {
                return Err(Error::invalid(
                    "--dataset coco: the train and val annotation files give different \
                     vocabularies (the original asserts they are equal)",
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::factory::SHAPES_NUM_VAL_DEFAULT;

    #[test]
    fn stored_args_fall_back_to_the_flag_defaults() {
        assert_eq!(TrainArgs::defaults().shapes_num_val, SHAPES_NUM_VAL_DEFAULT);
    }

    #[test]
    fn only_coco_caps_its_validation_set() {
        for (dataset, cap) in [("coco", Some(1024)), ("vg", None), ("shapes", None)] {
            let args = TrainArgs::parse_from(["--dataset", dataset]).unwrap();
            assert_eq!(
                dataset_options(&args, Split::Val, None).max_samples,
                cap,
                "{dataset}"
            );
            let args =
                TrainArgs::parse_from(["--dataset", dataset, "--num_train_samples", "7"]).unwrap();
            assert_eq!(
                dataset_options(&args, Split::Train, None).max_samples,
                Some(7)
            );
        }
    }
}
