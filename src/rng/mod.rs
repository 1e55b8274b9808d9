//! Every random-number generator of the crate, each fixed in code so that no dependency update
//! changes a stream:
//!
//! * [`python`]: CPython's `random` (MT19937), for the draws the original data loaders make;
//! * [`numpy`]: numpy's legacy `RandomState` (the same MT19937) for torch-fidelity's IS shuffle
//!   and KID subsets;
//! * [`stream`]: the training streams (xoshiro256++ seeded per purpose from `--seed`);
//! * [`splitmix`]: SplitMix64, the synthetic scenes' generator and the seed expander of the
//!   training streams.

pub mod numpy;
pub mod python;
pub mod splitmix;
pub mod stream;

pub use numpy::RandomState;
pub use python::PyRandom;
pub use splitmix::{SplitMix64, splitmix64};
pub use stream::{TrainRng, derive_seed, permutation};
