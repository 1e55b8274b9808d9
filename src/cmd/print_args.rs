//! `sg2im print-args`: the original's `scripts/print_args.py` (§19.4).

use sg2im::train::args::python_repr;
use sg2im::train::checkpoint::stored_args;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint or model file (ours or an original .pt).
    pub checkpoint: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    for (k, v) in stored_args(&a.checkpoint)? {
        println!("{k} {}", python_repr(&v));
    }
    Ok(())
}
