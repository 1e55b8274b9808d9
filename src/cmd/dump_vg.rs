//! `sg2im dump-dataset vg`: what the VG loader yields, item by item, as safetensors
//! (`"<idx 4 digits>/{image,objs,boxes,triples}"`).

use anyhow::Context;
use sg2im::data::SceneGraphDataset;
use sg2im::data::vg::{VgConfig, VgSceneGraphDataset};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A `preprocess-vg` HDF5 file (ours or the original's).
    #[arg(long = "h5")]
    h5: PathBuf,
    #[arg(long = "vocab_json")]
    vocab_json: PathBuf,
    /// Directory the h5 `image_paths` are relative to.
    #[arg(long = "image_dir")]
    image_dir: PathBuf,
    /// `H,W`.
    #[arg(long = "image_size", default_value = "64,64", value_parser = parse_image_size)]
    image_size: (usize, usize),
    #[arg(long = "max_objects_per_image", default_value_t = 10)]
    max_objects_per_image: usize,
    #[arg(long = "vg_use_orphaned_objects", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    vg_use_orphaned_objects: bool,
    #[arg(long = "include_relationships", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    include_relationships: bool,
    #[arg(long = "max_samples")]
    max_samples: Option<usize>,
    #[arg(long = "normalize_images", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    normalize_images: bool,
    #[arg(long = "output")]
    output: PathBuf,
    /// Item `i` draws its random object sample with Python's `random.seed(seed + i)`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `bool_flag` of the original (§14.1), also accepting `true`/`false`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("expected 1, 0, true or false, got {s:?}")),
    }
}

fn parse_image_size(s: &str) -> Result<(usize, usize), String> {
    let v: Vec<Option<usize>> = s.split(',').map(|p| p.trim().parse().ok()).collect();
    match v.as_slice() {
        &[Some(h), Some(w)] if h > 0 && w > 0 => Ok((h, w)),
        _ => Err(format!(
            "expected two positive integers H,W like 64,64, got {s:?}"
        )),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = VgConfig {
        h5_path: a.h5,
        vocab_json: a.vocab_json,
        image_dir: a.image_dir,
        image_size: a.image_size,
        normalize_images: a.normalize_images,
        max_objects: a.max_objects_per_image,
        max_samples: a.max_samples,
        include_relationships: a.include_relationships,
        use_orphaned_objects: a.vg_use_orphaned_objects,
    };
    let ds = VgSceneGraphDataset::new(cfg)?;
    let bytes = sg2im::data::vg::dump_safetensors(&ds, a.seed)?;
    sg2im::io::atomic::write_bytes_atomic(&a.output, &bytes)
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!("wrote {} items to {}", ds.len(), a.output.display());
    Ok(())
}
