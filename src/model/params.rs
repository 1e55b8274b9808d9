//! Named parameters: every tensor of a module under its PyTorch state-dict key.
//!
//! Modules store weights in PyTorch's layout (Linear `(out, in)`, Conv2d `(out, in, kh, kw)`)
//! and walk their tensors under the original's key names, so importing an original checkpoint,
//! saving our own model files and stepping the optimizer are all one loop over `(key, tensor)`.

use crate::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use indexmap::IndexMap;

/// Whether a tensor is learned (gets gradients) or a buffer (BatchNorm running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Trainable,
    Buffer,
}

/// A borrowed parameter of rank 1, 2 or 4.
pub enum ParamRef<'a> {
    R1(&'a Tensor<1>),
    R2(&'a Tensor<2>),
    R4(&'a Tensor<4>),
}

/// A mutably borrowed parameter of rank 1, 2 or 4.
pub enum ParamMut<'a> {
    R1(&'a mut Tensor<1>),
    R2(&'a mut Tensor<2>),
    R4(&'a mut Tensor<4>),
}

impl ParamRef<'_> {
    pub fn dims(&self) -> Vec<usize> {
        match self {
            ParamRef::R1(t) => t.dims().to_vec(),
            ParamRef::R2(t) => t.dims().to_vec(),
            ParamRef::R4(t) => t.dims().to_vec(),
        }
    }

    pub fn to_data(&self) -> TensorData {
        match self {
            ParamRef::R1(t) => t.to_data(),
            ParamRef::R2(t) => t.to_data(),
            ParamRef::R4(t) => t.to_data(),
        }
    }
}

impl ParamMut<'_> {
    pub fn dims(&self) -> Vec<usize> {
        match self {
            ParamMut::R1(t) => t.dims().to_vec(),
            ParamMut::R2(t) => t.dims().to_vec(),
            ParamMut::R4(t) => t.dims().to_vec(),
        }
    }

    /// Replaces the value with `data` (same shape) on `device`.
    pub fn set(&mut self, data: TensorData, device: &Device) {
        match self {
            ParamMut::R1(t) => **t = Tensor::from_data(data, device),
            ParamMut::R2(t) => **t = Tensor::from_data(data, device),
            ParamMut::R4(t) => **t = Tensor::from_data(data, device),
        }
    }

    /// Applies a rank-agnostic transformation to the tensor (device moves, `require_grad`).
    pub fn map(&mut self, f: &dyn Fn(TensorAny) -> TensorAny) {
        match self {
            ParamMut::R1(t) => **t = f(TensorAny::R1(t.clone())).r1(),
            ParamMut::R2(t) => **t = f(TensorAny::R2(t.clone())).r2(),
            ParamMut::R4(t) => **t = f(TensorAny::R4(t.clone())).r4(),
        }
    }
}

macro_rules! rank_conversions {
    ($($rank:literal => $variant:ident),*) => {$(
        impl<'a> From<&'a Tensor<$rank>> for ParamRef<'a> {
            fn from(t: &'a Tensor<$rank>) -> Self {
                ParamRef::$variant(t)
            }
        }
        impl<'a> From<&'a mut Tensor<$rank>> for ParamMut<'a> {
            fn from(t: &'a mut Tensor<$rank>) -> Self {
                ParamMut::$variant(t)
            }
        }
    )*};
}
rank_conversions!(1 => R1, 2 => R2, 4 => R4);

/// An owned tensor of rank 1, 2 or 4 (for rank-agnostic code such as the optimizer).
#[derive(Clone, Debug)]
pub enum TensorAny {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R4(Tensor<4>),
}

impl TensorAny {
    fn r1(self) -> Tensor<1> {
        match self {
            TensorAny::R1(t) => t,
            _ => unreachable!("rank-preserving map changed the rank"),
        }
    }
    fn r2(self) -> Tensor<2> {
        match self {
            TensorAny::R2(t) => t,
            _ => unreachable!("rank-preserving map changed the rank"),
        }
    }
    fn r4(self) -> Tensor<4> {
        match self {
            TensorAny::R4(t) => t,
            _ => unreachable!("rank-preserving map changed the rank"),
        }
    }
}

/// Applies the same expression to a [`TensorAny`] whatever its rank.
#[macro_export]
macro_rules! map_any {
    ($t:expr, |$x:ident| $body:expr) => {
        match $t {
            $crate::model::params::TensorAny::R1($x) => $crate::model::params::TensorAny::R1($body),
            $crate::model::params::TensorAny::R2($x) => $crate::model::params::TensorAny::R2($body),
            $crate::model::params::TensorAny::R4($x) => $crate::model::params::TensorAny::R4($body),
        }
    };
}

/// A module whose tensors can be walked by state-dict key.
pub trait Params {
    /// Calls `f(key, kind, tensor)` for every tensor, in the original's state-dict order.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>));
    /// Mutable version of [`Params::visit`], same keys and order.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>));
    /// Train mode (BatchNorm uses batch statistics and updates running ones) or eval mode.
    fn set_training(&mut self, training: bool);
}

/// `prefix.name`, or `name` at the top level.
pub fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl<T: Params> Params for Option<T> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
        if let Some(m) = self {
            m.visit(prefix, f);
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
        if let Some(m) = self {
            m.visit_mut(prefix, f);
        }
    }
    fn set_training(&mut self, training: bool) {
        if let Some(m) = self {
            m.set_training(training);
        }
    }
}

/// A list of modules named `prefix.0`, `prefix.1`, … (PyTorch `ModuleList`).
impl<T: Params> Params for Vec<T> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
        for (i, m) in self.iter().enumerate() {
            m.visit(&key(prefix, &i.to_string()), f);
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
        for (i, m) in self.iter_mut().enumerate() {
            m.visit_mut(&key(prefix, &i.to_string()), f);
        }
    }
    fn set_training(&mut self, training: bool) {
        for m in self {
            m.set_training(training);
        }
    }
}

/// Implements [`Params`] for a struct by visiting the listed fields under the given names.
#[macro_export]
macro_rules! impl_params {
    ($ty:ty { $($field:ident => $name:expr),* $(,)? }) => {
        impl $crate::model::params::Params for $ty {
            fn visit(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(&str, $crate::model::params::ParamKind, $crate::model::params::ParamRef<'_>),
            ) {
                $( $crate::model::params::Params::visit(&self.$field, &$crate::model::params::key(prefix, $name), f); )*
            }
            fn visit_mut(
                &mut self,
                prefix: &str,
                f: &mut dyn FnMut(&str, $crate::model::params::ParamKind, $crate::model::params::ParamMut<'_>),
            ) {
                $( $crate::model::params::Params::visit_mut(&mut self.$field, &$crate::model::params::key(prefix, $name), f); )*
            }
            fn set_training(&mut self, training: bool) {
                $( $crate::model::params::Params::set_training(&mut self.$field, training); )*
            }
        }
    };
}

/// Implements [`Params`] for a leaf layer whose tensor fields are named after their state-dict
/// keys: the listed fields are trainable, those after `buffers:` are not (BatchNorm's running
/// statistics), and `mode:` names the flag [`Params::set_training`] sets.
///
/// `impl_leaf_params!(BatchNorm { weight, bias; buffers: running_mean, running_var; mode: training })`
macro_rules! impl_leaf_params {
    ($ty:ty { $($field:ident),* $(; buffers: $($buffer:ident),*)? $(; mode: $flag:ident)? }) => {
        impl $crate::model::params::Params for $ty {
            fn visit(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(&str, $crate::model::params::ParamKind, $crate::model::params::ParamRef<'_>),
            ) {
                use $crate::model::params::{ParamKind, key};
                $( f(&key(prefix, stringify!($field)), ParamKind::Trainable, (&self.$field).into()); )*
                $($( f(&key(prefix, stringify!($buffer)), ParamKind::Buffer, (&self.$buffer).into()); )*)?
            }
            fn visit_mut(
                &mut self,
                prefix: &str,
                f: &mut dyn FnMut(&str, $crate::model::params::ParamKind, $crate::model::params::ParamMut<'_>),
            ) {
                use $crate::model::params::{ParamKind, key};
                $( f(&key(prefix, stringify!($field)), ParamKind::Trainable, (&mut self.$field).into()); )*
                $($( f(&key(prefix, stringify!($buffer)), ParamKind::Buffer, (&mut self.$buffer).into()); )*)?
            }
            fn set_training(&mut self, _training: bool) {
                $( self.$flag = _training; )?
            }
        }
    };
}
pub(crate) use impl_leaf_params;

/// Every tensor as `(key, kind, data)` in state-dict order.
pub fn state_dict(m: &impl Params) -> Vec<(String, ParamKind, TensorData)> {
    let mut out = Vec::new();
    m.visit("", &mut |k, kind, t| {
        out.push((k.to_string(), kind, t.to_data()))
    });
    out
}

/// Keys and shapes, in state-dict order.
pub fn shapes(m: &impl Params) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    m.visit("", &mut |k, _, t| out.push((k.to_string(), t.dims())));
    out
}

/// Number of trainable scalars.
pub fn num_trainable(m: &impl Params) -> usize {
    let mut n = 0;
    m.visit("", &mut |_, kind, t| {
        if kind == ParamKind::Trainable {
            n += t.dims().iter().product::<usize>();
        }
    });
    n
}

/// Builds a network with `build` and then replaces every tensor from `state` (strictly: a
/// missing, unexpected or misshapen key is an error). The layers get zero placeholder weights,
/// as drawing random ones only to overwrite them cost a tenth of `sg2im run` for the generator.
pub fn build_and_load<M: Params>(
    state: &IndexMap<String, TensorData>,
    device: &Device,
    what: &str,
    build: impl FnOnce(&mut dyn rand::RngCore) -> Result<M>,
) -> Result<M> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut m = with_placeholder_weights(|| build(&mut rng))?;
    load_state_dict(&mut m, state, device, what)?;
    Ok(m)
}

thread_local! {
    static PLACEHOLDER_WEIGHTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every layer built on this thread getting zero weights instead of random ones:
/// for models whose state dict is loaded right after (drawing 28 M random numbers only to
/// overwrite them was a tenth of `sg2im run`).
fn with_placeholder_weights<T>(f: impl FnOnce() -> T) -> T {
    let before = PLACEHOLDER_WEIGHTS.with(|p| p.replace(true));
    let out = f();
    PLACEHOLDER_WEIGHTS.with(|p| p.set(before));
    out
}

/// Zeros of `shape` inside [`with_placeholder_weights`], else `None` (the layer's initialiser
/// then draws its random weights).
pub(crate) fn placeholder(shape: &[usize]) -> Option<TensorData> {
    PLACEHOLDER_WEIGHTS
        .with(|p| p.get())
        .then(|| TensorData::new(vec![0f32; shape.iter().product()], shape.to_vec()))
}

/// [`state_dict`] as name → data, the form [`crate::io::model_file::NetState`] holds.
pub fn state_map(m: &impl Params) -> IndexMap<String, TensorData> {
    state_dict(m).into_iter().map(|(k, _, v)| (k, v)).collect()
}

/// Loads every tensor of `m` from `tensors` (strict, like PyTorch's `load_state_dict`): each of
/// the module's keys must be present with the same shape, and no other key may be present except
/// `*.num_batches_tracked` (absent in PyTorch 0.4.0 files, present in later ones; never used
/// because the momentum is fixed). `what` names the source in error messages.
pub fn load_state_dict(
    m: &mut impl Params,
    tensors: &IndexMap<String, TensorData>,
    device: &Device,
    what: &str,
) -> Result<()> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    m.visit_mut("", &mut |k, _, mut t| {
        seen.insert(k.to_string());
        match tensors.get(k) {
            None => problems.push(format!("missing key {k:?}")),
            Some(data) => {
                let want = t.dims();
                let got = data.shape().to_vec();
                if want != got {
                    problems.push(format!(
                        "{k:?} has shape {got:?}, the model expects {want:?}"
                    ));
                } else {
                    t.set(data.clone().convert::<f32>(), device);
                }
            }
        }
    });
    let unexpected: Vec<&String> = tensors
        .keys()
        .filter(|k| !seen.contains(*k) && !k.ends_with(".num_batches_tracked"))
        .collect();
    if !unexpected.is_empty() {
        let list: Vec<String> = unexpected
            .iter()
            .take(5)
            .map(|k| format!("{k:?}"))
            .collect();
        problems.push(format!(
            "unexpected key(s) {}{}",
            list.join(", "),
            if unexpected.len() > 5 { ", …" } else { "" }
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what}: weights do not match the model configuration: {}{}",
            problems[..problems.len().min(3)].join("; "),
            if problems.len() > 3 {
                format!(" (and {} more problems)", problems.len() - 3)
            } else {
                String::new()
            }
        )))
    }
}

/// Moves every tensor to `device`; trainable tensors get `require_grad` when `require_grad`.
pub fn to_device(m: &mut impl Params, device: &Device, require_grad: bool) {
    m.visit_mut("", &mut |_, kind, mut t| {
        let grad = require_grad && kind == ParamKind::Trainable;
        t.map(&|x| {
            map_any!(x, |v| {
                // `to_device` keeps the tensor's autodiff context; switch it explicitly.
                let v = v.to_device(device).detach();
                let v = if device.is_autodiff() {
                    v.autodiff()
                } else {
                    v.without_autodiff()
                };
                if grad { v.require_grad() } else { v }
            })
        });
    });
}
