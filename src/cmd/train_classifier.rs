//! `sg2im train-classifier`: the object classifier behind `sg2im evaluate --classifier`.

use anyhow::Context;
use sg2im::device::DeviceChoice;
use sg2im::eval::classifier::{
    ClassifierArch, ClassifierDataFlags, TrainClassifierOptions, train::train_classifier,
};
use sg2im::train::logging::Console;
use std::path::PathBuf;

/// Shown after the flags in `--help`.
const AFTER_HELP: &str = "\
Crops every object but __image__ of the real training images at its ground-truth box, resampled
to crop_size x crop_size (as sg2im evaluate crops generated and real images), and trains the
network to name the object's category. Prints and stores the top-1 accuracy on the real crops
of the validation split (val_accuracy) next to the share of its most frequent class
(val_majority_rate, what always guessing that class scores).

The output is one safetensors file: the network's weights under torchvision's names and
metadata format, arch, crop_size, object_vocab, num_classes, dataset, image_size,
val_accuracy, val_majority_rate, num_iterations.

Examples:
  sg2im train-classifier --dataset shapes --output classifier_shapes.safetensors
      (no download, a few minutes on 2 CPU cores)
  sg2im train-classifier --dataset coco --arch resnet18 --init_from resnet18-f37072fd.pth \\
      --learning_rate 1e-4 --output classifier_coco.safetensors
      (torchvision's ImageNet weights, fine-tuned on COCO's object crops)";

#[derive(clap::Args, Debug)]
#[command(args_override_self = true, after_help = AFTER_HELP)]
pub struct Args {
    /// Where to write the classifier (.safetensors).
    #[arg(long)]
    output: PathBuf,
    /// resnet8 (CIFAR-style, ~80k parameters, trains on the CPU) or resnet18 (torchvision's).
    // Parsed in `run`, so a bad name is one line of the crate's error, not clap's usage block.
    #[arg(long, default_value = "resnet8")]
    arch: String,
    /// Start from these weights: a PyTorch state dict with torchvision's key names (e.g.
    /// torchvision's resnet18-f37072fd.pth with --arch resnet18). Its fc layer is replaced by a
    /// fresh one for the dataset's objects.
    #[arg(long = "init_from")]
    init_from: Option<PathBuf>,
    /// Side of the square crops the network sees.
    #[arg(long = "crop_size", default_value_t = 32)]
    crop_size: usize,
    #[arg(long = "num_iterations", default_value_t = 1500)]
    num_iterations: u64,
    /// Crops per iteration.
    #[arg(long = "batch_size", default_value_t = 64)]
    batch_size: usize,
    /// Adam's peak learning rate (decayed to 0 along a cosine over the iterations).
    #[arg(long = "learning_rate", default_value_t = 2e-3)]
    learning_rate: f64,
    /// Seed of the initialisation and of the order of the training scenes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, gpu, cuda or vulkan.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Show a progress bar (only drawn on a terminal).
    #[arg(long, default_value = "1", value_parser = sg2im::train::args::parse_bool, action = clap::ArgAction::Set)]
    progress: bool,
    #[command(flatten)]
    data: ClassifierDataFlags,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let arch: ClassifierArch = a.arch.parse()?;
    let device: DeviceChoice = a.device.parse()?;
    let opts = TrainClassifierOptions {
        data: a.data,
        output: a.output,
        arch,
        crop_size: a.crop_size,
        num_iterations: a.num_iterations,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        seed: a.seed,
        device,
        init_from: a.init_from,
    };
    let console = Console::new(a.progress);
    let start = std::time::Instant::now();
    let summary = train_classifier(&opts, &console).context("sg2im train-classifier")?;
    let m = &summary.meta;
    println!(
        "{} iterations in {:.1} s, final loss {:.4}",
        m.num_iterations,
        start.elapsed().as_secs_f64(),
        summary.final_loss
    );
    println!(
        "val_accuracy {:.4} on {} real crops of the validation split (majority class {:.4})",
        m.val_accuracy, summary.num_val_crops, m.val_majority_rate
    );
    println!("classifier: {}", opts.output.display());
    Ok(())
}
