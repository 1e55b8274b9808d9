//! `sg2im preprocess-vg`: the original's `scripts/preprocess_vg.py`, same flags and defaults.

use sg2im::data::preprocess_vg::{PreprocessVgConfig, preprocess_vg};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The split lists. When left at the default and that path does not exist, the original's
    /// vg_splits.json built into this binary is used.
    #[arg(long = "splits_json", default_value = sg2im::data::preprocess_vg::DEFAULT_SPLITS_JSON)]
    splits_json: PathBuf,
    #[arg(long = "images_json", default_value = "datasets/vg/image_data.json")]
    images_json: PathBuf,
    #[arg(long = "objects_json", default_value = "datasets/vg/objects.json")]
    objects_json: PathBuf,
    #[arg(
        long = "attributes_json",
        default_value = "datasets/vg/attributes.json"
    )]
    attributes_json: PathBuf,
    #[arg(
        long = "object_aliases",
        default_value = "datasets/vg/object_alias.txt"
    )]
    object_aliases: PathBuf,
    #[arg(
        long = "relationship_aliases",
        default_value = "datasets/vg/relationship_alias.txt"
    )]
    relationship_aliases: PathBuf,
    #[arg(
        long = "relationships_json",
        default_value = "datasets/vg/relationships.json"
    )]
    relationships_json: PathBuf,
    #[arg(
        long = "min_image_size",
        default_value_t = 200,
        allow_negative_numbers = true
    )]
    min_image_size: i64,
    #[arg(long = "train_split", default_value = "train")]
    train_split: String,
    #[arg(
        long = "min_object_instances",
        default_value_t = 2000,
        allow_negative_numbers = true
    )]
    min_object_instances: i64,
    #[arg(
        long = "min_attribute_instances",
        default_value_t = 2000,
        allow_negative_numbers = true
    )]
    min_attribute_instances: i64,
    #[arg(
        long = "min_object_size",
        default_value_t = 32,
        allow_negative_numbers = true
    )]
    min_object_size: i64,
    #[arg(
        long = "min_objects_per_image",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    min_objects_per_image: i64,
    #[arg(long = "max_objects_per_image", default_value_t = 30)]
    max_objects_per_image: i64,
    #[arg(long = "max_attributes_per_image", default_value_t = 30)]
    max_attributes_per_image: i64,
    #[arg(
        long = "min_relationship_instances",
        default_value_t = 500,
        allow_negative_numbers = true
    )]
    min_relationship_instances: i64,
    #[arg(
        long = "min_relationships_per_image",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    min_relationships_per_image: i64,
    #[arg(long = "max_relationships_per_image", default_value_t = 30)]
    max_relationships_per_image: i64,
    #[arg(long = "output_vocab_json", default_value = "datasets/vg/vocab.json")]
    output_vocab_json: PathBuf,
    #[arg(long = "output_h5_dir", default_value = "datasets/vg")]
    output_h5_dir: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = PreprocessVgConfig {
        splits_json: a.splits_json,
        images_json: a.images_json,
        objects_json: a.objects_json,
        attributes_json: a.attributes_json,
        object_aliases: a.object_aliases,
        relationship_aliases: a.relationship_aliases,
        relationships_json: a.relationships_json,
        min_image_size: a.min_image_size,
        train_split: a.train_split,
        min_object_instances: a.min_object_instances,
        min_attribute_instances: a.min_attribute_instances,
        min_object_size: a.min_object_size,
        min_objects_per_image: a.min_objects_per_image,
        max_objects_per_image: a.max_objects_per_image,
        max_attributes_per_image: a.max_attributes_per_image,
        min_relationship_instances: a.min_relationship_instances,
        min_relationships_per_image: a.min_relationships_per_image,
        max_relationships_per_image: a.max_relationships_per_image,
        output_vocab_json: a.output_vocab_json,
        output_h5_dir: a.output_h5_dir,
        progress: true,
    };
    let mut stdout = std::io::stdout().lock();
    let summary = preprocess_vg(&cfg, &mut stdout)?;
    for w in &summary.warnings {
        eprintln!("{w}");
    }
    Ok(())
}
