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
//! | [`params`] | `state_dict()` | parameters by state-dict key, loading, placeholder weights |
//!
//! The layers ask [`crate::kernels`] first on the CPU and otherwise compose Burn's operations;
//! the original's `model_kwargs` dicts are read and written in [`crate::io::kwargs`].

pub mod bilinear;
pub mod crn;
pub mod discriminators;
pub mod generator;
pub mod graph;
pub mod layers;
pub mod layout;
pub mod losses;
pub mod metrics;
pub mod params;
