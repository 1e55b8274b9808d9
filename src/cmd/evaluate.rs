//! `sg2im evaluate` — the sg2im paper's protocol for a checkpoint: layout metrics of Table 2
//! and IS/FID/KID/SceneFID of generated samples.

use anyhow::Context;
use sg2im::data::DatasetKind;
use sg2im::data::factory::{DataPaths, Split};
use sg2im::device::DeviceChoice;
use sg2im::eval::{EvalOptions, LayoutSource, evaluate};
use std::path::PathBuf;

/// Shown after the flags in `--help`.
const AFTER_HELP: &str = "\
Writes <output_dir>/samples/%04d_%d.png (sample k of scene graph i, lossless), real/%04d.png
(the split's images at the model's resolution, once per graph) and report.json: box_iou_mean,
recall_at_0.3, recall_at_0.5, sigma_x, sigma_area (population std, ddof=0, of the predicted
boxes' x-centre and area per object category, averaged over categories), num_objects,
num_samples and, with --inception_weights, torch-fidelity's inception_score_mean/_std,
frechet_inception_distance, kernel_inception_distance_mean/_std (samples vs real/) and
scene_fid: FID of the objects' crops at their ground-truth boxes, generated vs real
(crops/samples/, crops/real/; num_object_crops counts the generated ones).
With --classifier: object_accuracy and object_accuracy_real, the classifier's top-1 accuracy on
the crops of every object but __image__ at its ground-truth box in the samples and in the real
images (resampled to the classifier's crop size; the real crops give the ceiling).

Sample k of every graph is drawn with the dataset's random choices of pass k (COCO's and
shapes' geometric relationships are drawn afresh for every sample, as in the paper). Layout
metrics use the model's predicted boxes also when --layout uses the ground-truth ones;
__image__ is excluded. KID uses subsets of min(1000, number of images) (torch-fidelity's 1000
exceeds small splits; the size used is kid_subset_size in report.json) and IS min(10, n)
splits.
The folders are written in a staging folder and replace the output_dir's samples/, real/ and
crops/ only when the run succeeds.";

#[derive(clap::Args, Debug)]
#[command(args_override_self = true, after_help = AFTER_HELP)]
pub struct Args {
    /// Model file: an sg2im-rs model or checkpoint (.safetensors) or an original PyTorch
    /// checkpoint (.pt).
    #[arg(long)]
    checkpoint: PathBuf,
    /// coco, vg or shapes [default: the dataset stored in the checkpoint's arguments].
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// val or test. VG: --vg_h5 defaults to the split's file; COCO: test is the paper's 2048
    /// filtered val2017 images after the first 1024 (the original code has no COCO test
    /// split); shapes: the test scenes (their own seed, as many as --shapes_num_val).
    #[arg(long, default_value = "val")]
    split: Split,
    /// Generated images per scene graph (the paper: 5 per COCO image, 1 per VG image).
    #[arg(long = "samples_per_graph", default_value_t = 1)]
    samples_per_graph: usize,
    /// pred (predicted boxes and masks), gt_boxes, or gt_boxes_masks.
    #[arg(long, default_value = "pred")]
    layout: LayoutSource,
    /// Inception weights (pt_inception-2015-12-05 .pth) for IS/FID/KID; without it those are
    /// skipped.
    #[arg(long = "inception_weights")]
    inception_weights: Option<PathBuf>,
    /// Object classifier (made by sg2im train-classifier for the model's dataset) for
    /// object_accuracy and object_accuracy_real; without it those are skipped.
    #[arg(long)]
    classifier: Option<PathBuf>,
    #[arg(long = "output_dir", default_value = "evaluation")]
    output_dir: PathBuf,
    /// Seed of the layout noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// At most this many scene graphs of the split.
    #[arg(long = "num_samples", default_value_t = 10000)]
    num_samples: usize,
    #[arg(long = "batch_size", default_value_t = 24)]
    batch_size: usize,
    /// cpu, gpu, cuda or vulkan.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Where the validation data lives (COCO/VG; shapes needs none).
    #[command(flatten)]
    paths: DataPaths,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.parse::<DeviceChoice>()?.device()?;
    let opts = EvalOptions {
        checkpoint: args.checkpoint,
        dataset: args.dataset,
        split: args.split,
        paths: args.paths,
        samples_per_graph: args.samples_per_graph,
        layout: args.layout,
        inception_weights: args.inception_weights,
        classifier: args.classifier,
        output_dir: args.output_dir,
        seed: args.seed,
        num_samples: args.num_samples,
        batch_size: args.batch_size,
    };
    let report = evaluate(&opts, &device, &sg2im::report::Stdio).context("sg2im evaluate")?;
    for (k, v) in report.to_json().as_object().into_iter().flatten() {
        println!("{k:<36} {v}");
    }
    println!("report: {}", opts.output_dir.join("report.json").display());
    Ok(())
}
