//! sg2im-rs: *Image Generation from Scene Graphs* (Johnson, Gupta, Fei-Fei, CVPR 2018) in Rust.
//!
//! The crate mirrors the original research code, one module per part of the paper's figure:
//!
//! | paper / original file | module |
//! |---|---|
//! | `layers.py` (MLP, CNN builder, norms, activations) | [`model::layers`] |
//! | `graph.py` (graph convolution) | [`model::graph`] |
//! | `layout.py` (boxes/masks → layout) | [`model::layout`] |
//! | `crn.py` (cascaded refinement network) | [`model::crn`] |
//! | `model.py` (the generator) | [`model::generator`] |
//! | `discriminators.py` | [`model::discriminators`] |
//! | `bilinear.py` (differentiable crops) | [`model::bilinear`] |
//! | `losses.py` | [`model::losses`] |
//! | – (CPU speed: GEMM convolutions, fused BatchNorm + activation, fused Adam) | [`kernels`] |
//! | `data/coco.py`, `data/vg.py`, `preprocess_vg.py` | [`data`] |
//! | `train.py` | [`train`] |
//! | `run_model.py`, `sample_images.py` | [`inference`], [`sample_images`] |
//! | checkpoints (`torch.save` files, our own format) | [`io`] |

pub mod data;
pub mod device;
pub mod download;
pub mod error;
pub mod eval;
pub mod flops;
pub mod imagenet;
pub mod inference;
pub mod io;
pub mod kernels;
pub mod malloc;
pub mod metrics;
pub mod model;
pub mod report;
pub mod rng;
pub mod sample_images;
pub mod scene_graph;
pub mod serve;
pub mod train;
pub mod vis;
pub mod vocab;

pub use error::{Error, Result};
