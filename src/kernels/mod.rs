//! CPU kernels that stand in for Burn's operations on the `flex` device: no part of the paper,
//! only speed. The networks in [`crate::model`] are written with Burn's operations and ask these
//! kernels first.
//!
//! Why custom operations at all: Burn 0.22's autodiff records every elementary tensor operation
//! and `flex` runs each as its own pass over memory, so a BatchNorm + LeakyReLU costs about
//! twenty passes over the activations in training where the arithmetic needs four, and its
//! convolutions run image by image. These kernels keep the same results (up to float summation
//! order; Adam bit for bit) with fewer passes and longer GEMMs.
//!
//! | file | what |
//! |---|---|
//! | [`conv`] | stride-1 and strided convolutions and their gradients as long GEMMs |
//! | [`norm_act`] | BatchNorm + (leaky) ReLU as one pass each way; the activation alone |
//! | [`adam`] | Adam's update in one pass (used by `train::adam`) |
//! | [`host`] | what they share: which tensors they take, host buffers, `Autodiff<Flex>` |
//!
//! # Dispatch: one rule
//! Every kernel entry point takes its inputs by reference and returns `Option<…>`: `Some` when
//! it took the operation (f32 tensors on the `flex` device, a shape and autodiff configuration it
//! handles), `None` otherwise. A kernel never falls back to Burn by itself and a caller never
//! checks beforehand whether a kernel applies; the caller writes the fallback once, as
//! `kernel(…).unwrap_or_else(|| burn_composition(…))`. So the Burn path the GPU backends take
//! is always visible at the call site.
//!
//! Nothing here knows the model or the training loop (neither module is imported).

pub mod adam;
pub mod conv;
pub mod host;
pub mod norm_act;
