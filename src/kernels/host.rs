//! Plumbing shared by the CPU kernels ([`conv`](super::conv), [`norm_act`](super::norm_act),
//! [`adam`](super::adam)): whether a tensor is theirs to take, access to a tensor's host buffer,
//! and the `Autodiff<Flex>` type their custom autodiff operations are written for (Burn's
//! backend-extension API).

use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_dispatch::backends::{Autodiff, Flex};
use burn_flex::FlexTensor;
use std::borrow::Cow;
use std::mem::MaybeUninit;
/// The training backend as Burn's dispatch layer holds it (no gradient checkpointing, which is
/// what `Device::flex().autodiff()` gives).
pub(crate) type AdFlex = Autodiff<Flex, NoCheckpointing>;

/// Whether the kernels may take `t`: an f32 tensor on the CPU (`flex`) device, with or without
/// autodiff (device equality ignores autodiff).
pub(crate) fn on_cpu<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && t.device() == Device::flex()
}

/// The tensor's values as one contiguous f32 slice (borrowed when already laid out so).
pub(crate) fn dense(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 after convert"),
        ),
    }
}

/// A tensor's values on the host, as f32.
pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after convert")
}

/// A contiguous f32 `flex` tensor owning `values` (no copy).
pub(crate) fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// A vector of `len` floats whose storage `fill` initialises, with no zeroing pass first
/// (at the refinement network's sizes the zeroing `vec![0.0; len]` does is a pass over tens of
/// megabytes that the kernels overwrite anyway).
///
/// # Safety
/// `fill` must write every one of the `len` elements (through the slice or a pointer into it).
pub(crate) unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's contract: all `len` elements are initialised.
    unsafe { v.set_len(len) };
    v
}

/// A raw pointer the threads may share: each writes only its own disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: used only for disjoint writes (each user documents its partition).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// A method, so closures capture the whole (Send) wrapper rather than its raw pointer field.
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
