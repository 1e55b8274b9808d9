//! `sg2im make-synthetic`: writes synthetic scenes in the real COCO-Stuff 2017 or raw Visual
//! Genome on-disk formats, so the real pipelines run end to end without a download.

use anyhow::{Context, bail};
use sg2im::data::synthetic::export_coco::{CocoExportOptions, write_coco};
use sg2im::data::synthetic::export_vg::{VgExportOptions, write_vg};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `coco`: annotations/{instances,stuff}_{train,val}2017.json + images/{train,val}2017/;
    /// `vg`: image_data.json, objects.json, attributes.json, relationships.json, the alias
    /// files, vg_splits.json + images/VG_100K{,_2}/ (what `preprocess-vg` reads).
    #[arg(long = "format", value_parser = ["coco", "vg"])]
    pub format: String,
    /// Output directory (created if missing).
    #[arg(long = "out")]
    pub out: PathBuf,
    /// Number of images (coco: of the train split; vg: in all, split 80/10/10).
    #[arg(long = "num_images")]
    pub num_images: usize,
    /// coco only: number of val2017 images [default: num_images/10, rounded up].
    #[arg(long = "num_val_images")]
    pub num_val_images: Option<usize>,
    /// Seed; the same seed gives the same files.
    #[arg(long = "seed", default_value_t = 0)]
    pub seed: u64,
    /// Size of every image, `H,W` or `S` (square) [default: realistic sizes that vary per
    /// image, e.g. 640x480 for coco, 500x375 for vg]. With `--image_size 64,64` the coco train
    /// split holds exactly the scenes of `--dataset shapes` with the same seed.
    #[arg(long = "image_size")]
    pub image_size: Option<String>,
    /// Write the annotations only, no JPEG files (fast, for benchmarks of the loaders).
    #[arg(long = "no_images")]
    pub no_images: bool,
    /// Generation threads (0 = all cores).
    #[arg(long = "threads", default_value_t = 0)]
    pub threads: usize,
}

fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let nums: Vec<usize> = parts
        .iter()
        .map(|p| p.parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--image_size {s:?}: expected H,W or S (positive integers)"))?;
    match nums.as_slice() {
        [s] if *s > 0 => Ok((*s, *s)),
        [h, w] if *h > 0 && *w > 0 => Ok((*h, *w)),
        _ => bail!("--image_size {s:?}: expected H,W or S (positive integers)"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let image_size = args.image_size.as_deref().map(parse_size).transpose()?;
    let start = Instant::now();
    match args.format.as_str() {
        "coco" => {
            let mut opts = CocoExportOptions::new(args.num_images);
            if let Some(v) = args.num_val_images {
                opts.num_val = v;
            }
            opts.seed = args.seed;
            opts.image_size = image_size;
            opts.write_images = !args.no_images;
            opts.threads = args.threads;
            let (train, val) = write_coco(&args.out, &opts)?;
            for (split, s) in [("train2017", train), ("val2017", val)] {
                println!(
                    "{split}: {} images, {} instance annotations ({} crowd), {} stuff annotations",
                    s.images, s.instance_annotations, s.crowd_annotations, s.stuff_annotations
                );
            }
        }
        _ => {
            let mut opts = VgExportOptions::new(args.num_images);
            opts.seed = args.seed;
            opts.image_size = image_size;
            opts.write_images = !args.no_images;
            opts.threads = args.threads;
            let s = write_vg(&args.out, &opts)?;
            println!(
                "{} images ({} train, {} val, {} test), {} objects, {} relationships",
                s.images, s.train, s.val, s.test, s.objects, s.relationships
            );
        }
    }
    println!(
        "wrote {} in {:.1} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_size_accepts_h_w_and_square_and_rejects_junk() {
        assert_eq!(parse_size("64,96").unwrap(), (64, 96));
        assert_eq!(parse_size("32").unwrap(), (32, 32));
        for bad in ["", "0", "64,0", "a,b", "1,2,3"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("expected H,W or S"), "{bad}: {err}");
        }
    }
}
