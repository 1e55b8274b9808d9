//! `sg2im download {coco,vg,models}`: the original's `scripts/download_*.sh`.

use anyhow::bail;
use sg2im::download::{self, BASE_URL_ENV, Bundle, Options};
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// COCO 2017 images + instance and stuff annotations (download_coco.sh, ~21 GB).
    Coco,
    /// Visual Genome 1.4 images, objects, attributes, relationships, aliases (download_vg.sh, ~15 GB).
    Vg,
    /// Pretrained models coco64, vg64, vg128 (download_models.sh, ~355 MB).
    Models,
    /// torch-fidelity's Inception-v3 weights for `sg2im metrics` (~92 MB, into sg2im-models/).
    Inception,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to download.
    #[arg(value_enum)]
    what: What,
    /// Where to put it [default: datasets/coco, datasets/vg or sg2im-models].
    #[arg(long = "output_dir")]
    output_dir: Option<PathBuf>,
    /// models: the 12 Table 1 ablation models instead of the main three
    /// (download_ablated_models.sh, ~1.25 GB).
    #[arg(long)]
    ablated: bool,
    /// models: all 15 models unstripped, with training history, into <output_dir>/full/
    /// (download_full_models.sh); with --ablated, both sets.
    #[arg(long)]
    full: bool,
    /// Fetch from this mirror instead: each URL's path is appended to it
    /// (also set by the environment variable SG2IM_DOWNLOAD_BASE_URL).
    #[arg(long = "base_url")]
    base_url: Option<String>,
    /// Print what would be fetched and where it would go, and stop.
    #[arg(long = "dry_run")]
    dry_run: bool,
    /// Attempts after a cut transfer, each resuming where the last one stopped.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Skip the MD5 check of the COCO archives (sizes and zip CRCs are still checked).
    #[arg(long = "no_checksum")]
    no_checksum: bool,
    /// Delete each zip once it is unpacked (the original keeps them).
    #[arg(long = "delete_archives")]
    delete_archives: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = match args.what {
        What::Coco => Bundle::Coco,
        What::Vg => Bundle::Vg,
        What::Models => Bundle::Models {
            main: !args.ablated && !args.full,
            ablated: args.ablated,
            full: args.full,
        },
        What::Inception => Bundle::Inception,
    };
    if args.what != What::Models && (args.ablated || args.full) {
        bail!("--ablated and --full select model sets; they only apply to `sg2im download models`");
    }
    let output_dir = args
        .output_dir
        .unwrap_or_else(|| PathBuf::from(bundle.default_dir()));
    let mut opts = Options::new(output_dir);
    opts.base_url = args
        .base_url
        .or_else(|| std::env::var(BASE_URL_ENV).ok().filter(|s| !s.is_empty()));
    opts.dry_run = args.dry_run;
    opts.retries = args.retries;
    opts.verify_checksums = !args.no_checksum;
    opts.delete_archives = args.delete_archives;
    opts.reporter = sg2im::report::SharedReporter::new(sg2im::report::Stdio);

    let report = download::download_bundle(bundle, &opts)?;
    if !opts.dry_run {
        let skipped = report
            .files
            .iter()
            .filter(|(_, o)| *o == download::Outcome::Skipped)
            .count();
        eprintln!(
            "{}: {} files complete ({skipped} already there), {} downloaded",
            opts.output_dir.display(),
            report.files.len(),
            download::human_bytes(report.bytes_downloaded())
        );
    }
    Ok(())
}
