//! `sg2im dump-coco` (being built; see the issues).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`sg2im dump-coco` is not available in this build yet")
}
