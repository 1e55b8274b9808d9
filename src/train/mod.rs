//! Training (the original's `scripts/train.py`, spec §18): flags, the datasets they select
//! (through [`crate::data::factory`]), Adam in its PyTorch 0.4 form, checkpoints, the loop and
//! what a user watches while it runs (through a [`crate::report::Reporter`]).

pub mod adam;
pub mod args;
pub mod check;
pub mod checkpoint;
pub mod logging;
pub mod step;
pub mod tensorboard;

pub use args::TrainArgs;
pub mod data;
pub mod trainer;

pub use trainer::{StopSignal, TrainSummary, train, train_with};
