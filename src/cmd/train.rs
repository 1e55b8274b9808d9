//! `sg2im train`: the original's `scripts/train.py` (flags in `sg2im::train::args`).

use sg2im::train::{TrainArgs, train};

#[derive(clap::Args, Debug)]
#[command(
    // A flag given twice takes its last value (argparse's behaviour), so scripts can append overrides.
    args_override_self = true,
    about = "Train a model (the original's scripts/train.py)",
    long_about = "Train a model (the original's scripts/train.py), with every flag of the original \
                  under the same name and default. Every --foo_bar flag also accepts --foo-bar; \
                  booleans take 1/0/true/false. Where the original's TRAINING.md and its code \
                  disagree, the code's behaviour is what runs and the flag's help says so.\n\n\
                  No-download quick start: sg2im train --dataset shapes (see README)."
)]
pub struct Args {
    #[command(flatten)]
    pub args: TrainArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let summary = train(a.args)?;
    println!(
        "Training finished at t = {} (epoch {}) in {:.1} s; checkpoints at {:?} in {}",
        summary.t,
        summary.epoch,
        summary.elapsed.as_secs_f64(),
        summary.checkpoints,
        summary.output_dir.display()
    );
    Ok(())
}
