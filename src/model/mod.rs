//! The networks of the paper: generator, discriminators and their building blocks.
//!
//! | file | original | paper figure |
//! |---|---|---|
//! | [`layers`] | `layers.py` | MLP / CNN builders |
//! | [`graph`] | `graph.py` | graph convolution |
//! | [`layout`], [`bilinear`] | `layout.py`, `bilinear.py` | scene layout, object crops |
//! | [`crn`] | `crn.py` | cascaded refinement network |
//! | [`generator`] | `model.py` | the whole generator |
//! | [`discriminators`] | `discriminators.py` | D_img, D_obj |
//! | [`losses`], [`metrics`] | `losses.py`, `metrics.py` | training objective, box IoU |
//! | [`conv_gemm`] | – | (CPU speed: stride-1 convolutions and their gradients as long GEMMs) |
//! | [`norm_act`] | – | (CPU speed: BatchNorm + activation as one pass each way) |
//! | [`cpu_ops`] | – | (what those two share: the on/off switch, host buffers) |

pub mod bilinear;
pub mod conv_gemm;
pub mod cpu_ops;
pub mod crn;
pub mod discriminators;
pub mod generator;
pub mod graph;
pub mod layers;
pub mod layout;
pub mod losses;
pub mod metrics;
pub mod norm_act;
pub mod params;
