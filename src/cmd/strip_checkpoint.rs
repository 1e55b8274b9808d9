//! `sg2im strip-checkpoint` (being built; see the issues).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`sg2im strip-checkpoint` is not available in this build yet")
}
