//! `sg2im metrics`: Inception Score, FID and KID of image folders, as torch-fidelity 0.4.0's
//! `calculate_metrics` computes them (`inception-v3-compat` features).

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sg2im::metrics::{self, Input2, MetricsOptions, Progress};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder of generated images (png/jpg/jpeg, sorted by name, not recursive).
    #[arg(long)]
    input1: PathBuf,
    /// Folder of reference images, or FID statistics saved with --save_stats (.npz).
    #[arg(long)]
    input2: Option<PathBuf>,
    /// Inception Score of input1.
    #[arg(long)]
    isc: bool,
    /// Fréchet Inception Distance between input1 and input2.
    #[arg(long)]
    fid: bool,
    /// Kernel Inception Distance between input1 and input2 (folders).
    #[arg(long)]
    kid: bool,
    /// torch-fidelity's Inception weights: weights-inception-2015-12-05-6726825d.pth
    /// (`sg2im download inception`) or pytorch-fid's pt_inception-2015-12-05-6726825d.pth.
    #[arg(long = "inception_weights")]
    inception_weights: PathBuf,
    #[arg(long = "isc_splits", default_value_t = 10)]
    isc_splits: usize,
    #[arg(long = "kid_subsets", default_value_t = 100)]
    kid_subsets: usize,
    #[arg(long = "kid_subset_size", default_value_t = 1000)]
    kid_subset_size: usize,
    /// numpy RandomState seed of the IS shuffle and the KID subsets (torch-fidelity's rng_seed).
    #[arg(long, default_value_t = 2020)]
    seed: u32,
    #[arg(long = "batch_size", default_value_t = 32)]
    batch_size: usize,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write input1's FID statistics (mu, sigma; pytorch-fid's .npz layout) here.
    #[arg(long = "save_stats")]
    save_stats: Option<PathBuf>,
    /// Only the CPU is supported.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.device != "cpu" {
        bail!(
            "--device {}: sg2im metrics runs on the CPU only (--device cpu)",
            args.device
        );
    }
    if args.batch_size == 0 {
        bail!("--batch_size must be at least 1");
    }
    let opts = MetricsOptions {
        isc: args.isc,
        fid: args.fid,
        kid: args.kid,
        isc_splits: args.isc_splits,
        kid_subsets: args.kid_subsets,
        kid_subset_size: args.kid_subset_size,
        seed: args.seed,
        batch_size: args.batch_size,
        save_stats: args.save_stats,
    };
    let input2 = args.input2.as_deref().map(Input2::from_path);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |p: Progress| match p {
        Progress::Start { input, total } => {
            bar.reset();
            bar.set_length(total as u64);
            bar.set_message(format!("input{input}"));
        }
        Progress::Done { done } => bar.set_position(done as u64),
    };
    let results = metrics::calculate_metrics(
        &args.input1,
        input2.as_ref(),
        &args.inception_weights,
        &opts,
        &mut progress,
    )
    .context("sg2im metrics")?;
    bar.finish_and_clear();
    for (k, v) in &results {
        println!("{k}: {v}");
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&results)?;
        sg2im::io::atomic::write_bytes_atomic(path, format!("{json}\n").as_bytes())?;
    }
    Ok(())
}
