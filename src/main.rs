//! `sg2im`: one binary whose subcommands mirror the original's scripts. Each subcommand lives in
//! `src/cmd/<name>.rs`, parses its flags and calls the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

#[derive(Parser, Debug)]
#[command(
    name = "sg2im",
    version,
    about = "Image generation from scene graphs (Johnson et al., CVPR 2018)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of the largest subcommand's flags does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a trained model on JSON scene graphs (the original's scripts/run_model.py).
    Run(cmd::run::Args),
    /// Convert an original PyTorch checkpoint (.pt, zip or legacy format) to an sg2im-rs model file.
    ImportTorch(cmd::import_torch::Args),
    /// Train a model (the original's scripts/train.py).
    Train(cmd::train::Args),
    /// Keep only what is needed to run a checkpoint (the original's scripts/strip_checkpoint.py).
    StripCheckpoint(cmd::strip_checkpoint::Args),
    /// Print the training arguments stored in a checkpoint (the original's scripts/print_args.py).
    PrintArgs(cmd::print_args::Args),
    /// Generate images for a dataset split (the original's scripts/sample_images.py).
    SampleImages(cmd::sample_images::Args),
    /// Download datasets (COCO-Stuff 2017, Visual Genome 1.4).
    Download(cmd::download::Args),
    /// Preprocess Visual Genome into train/val/test HDF5 files and vocab.json (scripts/preprocess_vg.py).
    PreprocessVg(cmd::preprocess_vg::Args),
    /// Write exactly what a dataset yields, item by item, to a safetensors file.
    DumpDataset(cmd::dump_dataset::Args),
    /// Write synthetic data in the real COCO-Stuff or Visual Genome on-disk formats.
    MakeSynthetic(cmd::make_synthetic::Args),
    /// Inception Score, FID and KID of image folders, exactly as torch-fidelity computes them.
    Metrics(cmd::metrics::Args),
    /// Score a checkpoint with the paper's protocol: layout metrics, IS/FID/KID of its samples.
    Evaluate(cmd::evaluate::Args),
    /// Train the object classifier behind `evaluate --classifier` on real object crops.
    TrainClassifier(cmd::train_classifier::Args),
    /// Serve the scene-graph studio: an interactive page and a JSON API over one model.
    Serve(cmd::serve::Args),
}

fn main() -> ExitCode {
    // Output piped into `head` and the like: end quietly on the broken pipe, as Unix tools do.
    // Rust starts programs with SIGPIPE ignored, so a write to a closed pipe fails with EPIPE
    // and `println!` (here, in clap's help and in the library's progress lines) panics.
    // Restoring the default action covers every write at once. Sockets are unaffected: std
    // sends with MSG_NOSIGNAL, so a closed connection stays an error value.
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid disposition.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    sg2im::malloc::tune_for_large_tensors();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::ImportTorch(a) => cmd::import_torch::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::StripCheckpoint(a) => cmd::strip_checkpoint::run(a),
        Command::PrintArgs(a) => cmd::print_args::run(a),
        Command::SampleImages(a) => cmd::sample_images::run(a),
        Command::Download(a) => cmd::download::run(a),
        Command::PreprocessVg(a) => cmd::preprocess_vg::run(a),
        Command::DumpDataset(a) => cmd::dump_dataset::run(a),
        Command::MakeSynthetic(a) => cmd::make_synthetic::run(a),
        Command::Metrics(a) => cmd::metrics::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::TrainClassifier(a) => cmd::train_classifier::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the whole context chain, outermost first.
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
