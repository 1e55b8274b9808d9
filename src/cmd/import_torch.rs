//! `sg2im import-torch`: convert an original PyTorch checkpoint to an sg2im-rs model file.

use anyhow::Context;
use sg2im::io::model_file::{load_torch_checkpoint, save_model_file};
use sg2im::model::discriminators::{AcCropDiscriminator, PatchDiscriminator};
use sg2im::model::generator::Sg2Im;
use sg2im::model::params::num_trainable;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The original checkpoint (`torch.save` zip or legacy format, e.g. coco64.pt).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the model file (safetensors with the configuration and vocabulary).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = load_torch_checkpoint(&args.input)?;
    let what = args.input.display().to_string();
    // Building the networks checks that weights and configuration agree before anything is written.
    let device = burn::tensor::Device::flex();
    let (g, warnings) = Sg2Im::from_net_state(&bundle.generator, &device, &what)?;
    for w in warnings {
        eprintln!("warning: {what}: {w}");
    }
    let mut out = bundle.clone();
    out.generator = g.to_net_state();
    if let Some(d) = &bundle.d_obj {
        out.d_obj = Some(
            AcCropDiscriminator::from_net_state(d, &device, &format!("{what}: d_obj_state"))?
                .to_net_state(),
        );
    }
    if let Some(d) = &bundle.d_img {
        out.d_img = Some(
            PatchDiscriminator::from_net_state(d, &device, &format!("{what}: d_img_state"))?
                .to_net_state(),
        );
    }
    save_model_file(&args.output, &out).context("writing the model file")?;
    let c = &g.config;
    println!(
        "{} -> {}: generator {}x{}, {} objects, {} predicates, {} parameters{}{}",
        args.input.display(),
        args.output.display(),
        c.image_size.0,
        c.image_size.1,
        c.vocab.num_objects(),
        c.vocab.num_predicates(),
        num_trainable(&g),
        if out.d_obj.is_some() {
            ", object discriminator"
        } else {
            ""
        },
        if out.d_img.is_some() {
            ", image discriminator"
        } else {
            ""
        },
    );
    Ok(())
}
