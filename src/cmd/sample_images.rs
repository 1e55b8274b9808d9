//! `sg2im sample-images` — the original's `scripts/sample_images.py` (§19.2): generate images
//! for a dataset split with one or more trained models.

use anyhow::Context;
use sg2im::data::DatasetKind;
use sg2im::data::factory::DataPaths;
use sg2im::device::DeviceChoice;
use sg2im::sample_images::{CheckpointSource, ModelMode, SampleOptions, sample_images};
use sg2im::train::args::{parse_bool, parse_image_size};
use std::path::PathBuf;

const DEFAULT_CHECKPOINT: &str = "sg2im-models/vg64.pt";

/// Shown after the flags in `--help`.
const AFTER_HELP: &str = "\
Writes <output_dir>/images/%04d.png, optionally images_gt/%04d.png and graphs/%04d.png, and
data.pt: a torch.load-able dict {vocab, objs, masks_pred, boxes_pred, masks_gt, boxes_gt,
filenames} with one entry per image, rewritten after every batch. The dataset is built from
the training arguments stored in the checkpoint.

Fixed bugs of the original: --checkpoint_list works (the default --checkpoint made it always
fail), --save_graphs works (wrong argument order), and a model without mask network records
None for masks_pred instead of crashing.";

#[derive(clap::Args, Debug)]
#[command(args_override_self = true, after_help = AFTER_HELP)]
pub struct Args {
    /// Model file: an sg2im-rs model or checkpoint (.safetensors) or an original PyTorch
    /// checkpoint (.pt) [default: sg2im-models/vg64.pt, when --checkpoint_list is not given].
    #[arg(long, conflicts_with = "checkpoint_list")]
    checkpoint: Option<PathBuf>,
    /// Text file with one checkpoint file or directory per line. A file on line i (from 1)
    /// writes to <output_dir>/result%03d; every file of a directory whose name contains
    /// "snapshot" writes to <output_dir>/result%03d_<text after the first _ of its stem>
    /// (line number from 0, as the original).
    #[arg(long = "checkpoint_list")]
    checkpoint_list: Option<PathBuf>,
    /// eval (BatchNorm running statistics) or train (batch statistics).
    #[arg(long = "model_mode", default_value = "eval")]
    model_mode: ModelMode,
    /// coco, vg, or shapes (sg2im-rs: the built-in synthetic validation scenes, capped at the
    /// checkpoint's --shapes_num_val; no download).
    #[arg(long, default_value = "vg")]
    dataset: DatasetKind,
    /// H,W of the dataset images and the generated images (overrides the model's image size).
    #[arg(long = "image_size", default_value = "64,64", value_parser = parse_image_size)]
    image_size: (usize, usize),
    /// Images per forward pass.
    #[arg(long = "batch_size", default_value_t = 24)]
    batch_size: usize,
    /// 1: visit the dataset in a random order (from --seed).
    #[arg(long, default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "1")]
    shuffle: bool,
    /// Threads preparing batches ahead of the model (0: in the main thread).
    #[arg(long = "loader_num_workers", default_value_t = 4)]
    loader_num_workers: usize,
    /// At most this many images (the dataset's max_samples).
    #[arg(long = "num_samples", default_value_t = 10000)]
    num_samples: usize,
    /// 1: also write the dataset's images to images_gt/.
    #[arg(long = "save_gt_imgs", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "1")]
    save_gt_imgs: bool,
    /// 1: also draw each scene graph to graphs/%04d.png (GraphViz `dot`; %04d.dot without it).
    #[arg(long = "save_graphs", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "1")]
    save_graphs: bool,
    /// 1: lay out the dataset's boxes instead of the predicted ones (boxes_pred still records
    /// the predictions).
    #[arg(long = "use_gt_boxes", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "1")]
    use_gt_boxes: bool,
    /// 1: lay out the dataset's masks (COCO, shapes) instead of the predicted ones.
    #[arg(long = "use_gt_masks", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "1")]
    use_gt_masks: bool,
    /// Accepted and unused, as in the original.
    #[arg(long = "save_layout", default_value = "1", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "1")]
    save_layout: bool,
    #[arg(long = "output_dir", default_value = "output")]
    output_dir: PathBuf,
    /// Where the validation data lives (COCO/VG; shapes needs none).
    #[command(flatten)]
    paths: DataPaths,
    /// cpu, gpu (the first GPU backend built in), cuda or vulkan. The original ran on CUDA.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed of the layout noise, the dataset's random choices and --shuffle (runs are
    /// reproducible).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.parse::<DeviceChoice>()?.device()?;
    let checkpoints = match (args.checkpoint, args.checkpoint_list) {
        (_, Some(list)) => CheckpointSource::List(list),
        (one, None) => CheckpointSource::One(one.unwrap_or_else(|| DEFAULT_CHECKPOINT.into())),
    };
    let _ = args.save_layout;
    let opts = SampleOptions {
        checkpoints,
        model_mode: args.model_mode,
        dataset: args.dataset,
        image_size: args.image_size,
        batch_size: args.batch_size,
        shuffle: args.shuffle,
        loader_num_workers: args.loader_num_workers,
        num_samples: args.num_samples,
        save_gt_imgs: args.save_gt_imgs,
        save_graphs: args.save_graphs,
        use_gt_boxes: args.use_gt_boxes,
        use_gt_masks: args.use_gt_masks,
        output_dir: args.output_dir,
        paths: args.paths,
        seed: args.seed,
    };
    let summaries =
        sample_images(&opts, &device, &sg2im::report::Stdio).context("sg2im sample-images")?;
    for s in summaries {
        println!(
            "{}: wrote {} images to {}{}",
            s.checkpoint.display(),
            s.num_images,
            s.output_dir.display(),
            if s.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} dataset items could not be loaded)", s.skipped.len())
            }
        );
    }
    Ok(())
}
