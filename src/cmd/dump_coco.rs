//! `sg2im dump-dataset coco`: writes what the COCO loader yields, item by item, to safetensors.
//! Flags are the original dataset constructor's own argument names.

use sg2im::data::coco::{CocoConfig, CocoFlags, CocoSceneGraphDataset, dump_coco};
use sg2im::report::Stdio;
use std::path::PathBuf;

/// `1`/`0`/`true`/`false` (the original's `bool_flag` takes `1`/`0`).
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("expected 1, 0, true or false, found {s:?}")),
    }
}

/// `H,W` (or a single `S` for a square image).
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let num = |p: &str| {
        p.parse::<usize>()
            .map_err(|_| format!("expected H,W (positive integers), found {s:?}"))
    };
    match parts.as_slice() {
        [a] => Ok((num(a)?, num(a)?)),
        [a, b] => Ok((num(a)?, num(b)?)),
        _ => Err(format!("expected H,W, found {s:?}")),
    }
}

/// A comma-separated list of category names.
#[derive(Clone, Debug)]
struct Names(Vec<String>);

fn parse_list(s: &str) -> Result<Names, String> {
    Ok(Names(s.split(',').map(|p| p.trim().to_string()).collect()))
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long = "image_dir")]
    image_dir: PathBuf,
    #[arg(long = "instances_json")]
    instances_json: PathBuf,
    /// Omit for no stuff annotations.
    #[arg(long = "stuff_json")]
    stuff_json: Option<PathBuf>,
    #[arg(long = "stuff_only", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    stuff_only: bool,
    /// `H,W`.
    #[arg(long = "image_size", default_value = "64,64", value_parser = parse_size)]
    image_size: (usize, usize),
    #[arg(long = "mask_size", default_value_t = 16)]
    mask_size: usize,
    #[arg(long = "normalize_images", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    normalize_images: bool,
    #[arg(long = "max_samples")]
    max_samples: Option<usize>,
    #[arg(long = "include_relationships", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    include_relationships: bool,
    #[arg(long = "min_object_size", default_value_t = 0.02)]
    min_object_size: f64,
    #[arg(long = "min_objects_per_image", default_value_t = 3)]
    min_objects_per_image: usize,
    #[arg(long = "max_objects_per_image", default_value_t = 8)]
    max_objects_per_image: usize,
    #[arg(long = "include_other", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set)]
    include_other: bool,
    /// Comma-separated category names (default: all).
    #[arg(long = "instance_whitelist", value_parser = parse_list)]
    instance_whitelist: Option<Names>,
    /// Comma-separated category names (default: all).
    #[arg(long = "stuff_whitelist", value_parser = parse_list)]
    stuff_whitelist: Option<Names>,
    /// Item `idx` draws its relationships from Python's `random.seed(seed + idx)`.
    #[arg(long = "seed", default_value_t = 0)]
    seed: u64,
    /// Threads decoding images.
    #[arg(long = "num_workers", default_value_t = 4)]
    num_workers: usize,
    #[arg(long = "output")]
    output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = CocoConfig {
        image_dir: a.image_dir,
        instances_json: a.instances_json,
        stuff_json: a.stuff_json,
        stuff_only: a.stuff_only,
        image_size: a.image_size,
        mask_size: a.mask_size,
        normalize_images: a.normalize_images,
        max_samples: a.max_samples,
        include_relationships: a.include_relationships,
        min_object_size: a.min_object_size,
        min_objects_per_image: a.min_objects_per_image,
        max_objects_per_image: a.max_objects_per_image,
        include_other: a.include_other,
        instance_whitelist: a.instance_whitelist.map(|n| n.0),
        stuff_whitelist: a.stuff_whitelist.map(|n| n.0),
        image_cache_dir: None,
        flags: CocoFlags {
            image_dir: "--image_dir".into(),
            instances_json: "--instances_json".into(),
            stuff_json: "--stuff_json".into(),
        },
    };
    let ds = CocoSceneGraphDataset::new(cfg)?;
    for w in ds.warnings() {
        eprintln!("{w}");
    }
    let n = dump_coco(&ds, &a.output, a.seed, a.num_workers, &Stdio)?;
    println!("wrote {n} items to {}", a.output.display());
    Ok(())
}
