//! `sg2im run` — the original's `scripts/run_model.py`: run a trained model on JSON scene graphs.

use anyhow::Context;
use sg2im::device::DeviceChoice;
use sg2im::inference::{RunOptions, run_model};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file: an sg2im-rs model (.safetensors) or an original PyTorch checkpoint (.pt).
    #[arg(long, default_value = "sg2im-models/vg128.pt")]
    checkpoint: PathBuf,
    /// JSON list of scene graphs (`--scene_graphs` is accepted too, as argparse's prefix
    /// matching allowed in the original).
    #[arg(
        long = "scene_graphs_json",
        alias = "scene_graphs",
        default_value = "scene_graphs/figure_6_sheep.json"
    )]
    scene_graphs_json: PathBuf,
    #[arg(long = "output_dir", default_value = "outputs")]
    output_dir: PathBuf,
    /// 1: also draw each scene graph (sg%06d.png with GraphViz `dot`, else sg%06d.dot).
    #[arg(long = "draw_scene_graphs", default_value = "0", value_parser = parse_bool, action = clap::ArgAction::Set)]
    draw_scene_graphs: bool,
    /// cpu, gpu (the first GPU backend built in), cuda or vulkan. The original defaulted to gpu
    /// with a CPU fallback; we default to cpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also write the raw outputs (imgs_pred, boxes_pred, masks_pred, obj_to_img) here.
    #[arg(long = "save_tensors")]
    save_tensors: Option<PathBuf>,
    /// Seed of the layout noise (runs are reproducible).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `1`/`0`/`true`/`false`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("expected 1, 0, true or false, got {s:?}")),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.parse::<DeviceChoice>()?.device()?;
    let opts = RunOptions {
        checkpoint: args.checkpoint,
        scene_graphs_json: args.scene_graphs_json,
        output_dir: args.output_dir,
        draw_scene_graphs: args.draw_scene_graphs,
        save_tensors: args.save_tensors,
        seed: args.seed,
    };
    let written = run_model(&opts, &device, &sg2im::report::Stdio).context("sg2im run")?;
    println!(
        "wrote {} images to {}",
        written.len(),
        opts.output_dir.display()
    );
    Ok(())
}
