//! `sg2im train`: the original's `scripts/train.py` (flags in `sg2im::train::args`).

use sg2im::train::logging::Console;
use sg2im::train::{StopSignal, TrainArgs, train_with};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(clap::Args, Debug)]
#[command(
    // A flag given twice takes its last value (argparse's behaviour), so scripts can append overrides.
    args_override_self = true,
    about = "Train a model (the original's scripts/train.py)",
    long_about = "Train a model (the original's scripts/train.py), with every flag of the original \
                  under the same name and default. Every --foo_bar flag also accepts --foo-bar; \
                  booleans take 1/0/true/false. Where the original's TRAINING.md and its code \
                  disagree, the code's behaviour is what runs and the flag's help says so.\n\n\
                  The run stops after --num_iterations iterations (--finish_epoch 1: at the end \
                  of that epoch, as the original) and always checkpoints its last iteration. \
                  Ctrl-C or SIGTERM: the current iteration is finished and checkpointed, then \
                  the run exits with code 130 (SIGINT) or 143 (SIGTERM); a second Ctrl-C \
                  quits at once.\n\n\
                  No-download quick start: sg2im train --dataset shapes (see README)."
)]
pub struct Args {
    #[command(flatten)]
    pub args: TrainArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let stop = StopSignal::new();
    let received = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Actions run in registration order: a second signal finds `received` set and ends the
        // process at once; the first one only sets it and asks the run to stop.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, received.clone())?;
        signal_hook::flag::register(sig, received.clone())?;
        signal_hook::flag::register_usize(sig, stop.cell().clone(), sig as usize)?;
    }
    let console = Console::new(a.args.progress);
    let summary = train_with(a.args, &console, &stop)?;
    if let Some(sig) = summary.stopped_by {
        let name = if sig == SIGINT as usize {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        if summary.t == 0 {
            eprintln!("Interrupted by {name} before the first iteration; nothing saved");
        } else {
            eprintln!(
                "Interrupted by {name}: stopped at t = {} (epoch {}), saved in {}",
                summary.t,
                summary.epoch,
                summary.checkpoint_path.display()
            );
        }
        let _ = std::io::stdout().flush();
        std::process::exit(128 + sig as i32);
    }
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
