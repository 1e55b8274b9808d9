//! `sg2im dump-dataset coco|vg`: write what the loader yields, item by item, to safetensors.

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand, Debug)]
enum Which {
    /// COCO-Stuff (keys `<idx>/{image,objs,boxes,masks,triples}` plus `image_ids`).
    Coco(super::dump_coco::Args),
    /// Visual Genome HDF5 (keys `<idx>/{image,objs,boxes,triples}`).
    Vg(super::dump_vg::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Which::Coco(a) => super::dump_coco::run(a),
        Which::Vg(a) => super::dump_vg::run(a),
    }
}
