//! `sg2im run` (being built; see the issues).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`sg2im run` is not available in this build yet")
}
