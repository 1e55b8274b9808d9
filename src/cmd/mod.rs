//! One file per subcommand: flag parsing and a call into the library, nothing more.

pub mod download;
pub mod dump_coco;
pub mod dump_dataset;
pub mod dump_vg;
pub mod evaluate;
pub mod import_torch;
pub mod make_synthetic;
pub mod metrics;
pub mod preprocess_vg;
pub mod print_args;
pub mod run;
pub mod sample_images;
pub mod serve;
pub mod strip_checkpoint;
pub mod train;
pub mod train_classifier;
