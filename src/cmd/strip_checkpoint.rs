//! `sg2im strip-checkpoint`: the original's `scripts/strip_checkpoint.py` (§19.3).

use anyhow::bail;
use sg2im::train::args::parse_bool;
use sg2im::train::checkpoint::{strip_checkpoint, strip_checkpoint_dir};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint (ours, a model file, or an original .pt) to strip.
    #[arg(long = "input_checkpoint", alias = "input-checkpoint")]
    pub input_checkpoint: Option<PathBuf>,
    /// Where to write the stripped model file.
    #[arg(long = "output_checkpoint", alias = "output-checkpoint")]
    pub output_checkpoint: Option<PathBuf>,
    /// Strip every checkpoint (*.safetensors, *.pt; not *_no_model) of this directory…
    #[arg(long = "input_dir", alias = "input-dir")]
    pub input_dir: Option<PathBuf>,
    /// …into this directory, under the same names (extension .safetensors).
    #[arg(long = "output_dir", alias = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Keep the discriminators (1) or only the generator (0).
    #[arg(long = "keep_discriminators", alias = "keep-discriminators", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub keep_discriminators: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut did = false;
    match (&a.input_checkpoint, &a.output_checkpoint) {
        (Some(i), Some(o)) => {
            strip_checkpoint(i, o, a.keep_discriminators)?;
            println!("{} -> {}", i.display(), o.display());
            did = true;
        }
        (None, None) => {}
        _ => bail!("--input_checkpoint and --output_checkpoint go together"),
    }
    match (&a.input_dir, &a.output_dir) {
        (Some(i), Some(o)) => {
            for out in strip_checkpoint_dir(i, o, a.keep_discriminators)? {
                println!("wrote {}", out.display());
            }
            did = true;
        }
        (None, None) => {}
        _ => bail!("--input_dir and --output_dir go together"),
    }
    if !did {
        bail!(
            "nothing to do: give --input_checkpoint and --output_checkpoint, or --input_dir and --output_dir"
        );
    }
    Ok(())
}
