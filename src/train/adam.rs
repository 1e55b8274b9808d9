//! Adam exactly as PyTorch 0.4.0 computed it (§21.5 item 9), over the [`Params`] walk.
//!
//! Per parameter with a gradient: `step += 1`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `θ ← θ − lr·√(1−β2^step)/(1−β1^step) · m / (√v + ε)`. Note ε is added to the *uncorrected*
//! `√v` (later PyTorch versions add it to `√v/√(1−β2^step)`). Parameters without a gradient
//! (e.g. the patch discriminator's never-applied classifier) are skipped: no state, no step.
//!
//! The state is keyed by the parameter's state-dict name, so it survives a save/load of the
//! module (Burn's own optimizers key it by tensor id, which does not survive, see
//! FRAMEWORK_NOTES pitfall 3), and it serialises to plain tensors for exact resume.

use crate::kernels::adam::adam_update;
use crate::model::params::{ParamKind, ParamMut, Params};
use crate::{Error, Result};
use burn::tensor::{Gradients, Tensor, TensorData};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Hyper-parameters; the original uses `lr` from the flags and PyTorch's defaults otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamConfig {
    /// `torch.optim.Adam(params, lr=lr)`: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn with_lr(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Moment estimates of one parameter, flattened to `(numel,)`.
#[derive(Debug, Clone)]
pub struct ParamState {
    pub step: u64,
    pub exp_avg: Tensor<1>,
    pub exp_avg_sq: Tensor<1>,
}

#[derive(Debug, Clone)]
pub struct Adam {
    pub config: AdamConfig,
    /// Parameter name → state, in the order parameters first received a gradient.
    pub state: IndexMap<String, ParamState>,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Self {
        Self {
            config,
            state: IndexMap::new(),
        }
    }

    /// One optimisation step on every trainable parameter of `module` that has a gradient in
    /// `grads`. Updated parameters are fresh autodiff leaves that require gradients.
    pub fn step(&mut self, module: &mut impl Params, grads: &Gradients) {
        let cfg = self.config;
        let state = &mut self.state;
        module.visit_mut("", &mut |name, kind, p| {
            if kind != ParamKind::Trainable {
                return;
            }
            match p {
                ParamMut::R1(t) => update(name, t, grads, state, cfg),
                ParamMut::R2(t) => update(name, t, grads, state, cfg),
                ParamMut::R4(t) => update(name, t, grads, state, cfg),
            }
        });
    }

    /// The state as named tensors (`<name>.exp_avg`, `<name>.exp_avg_sq`, each `(numel,)`) and
    /// a JSON object with the hyper-parameters and per-parameter step counts.
    pub fn state_dict(&self) -> (Vec<(String, TensorData)>, serde_json::Value) {
        let mut tensors = Vec::with_capacity(2 * self.state.len());
        let mut steps = serde_json::Map::new();
        for (name, st) in &self.state {
            tensors.push((format!("{name}.exp_avg"), st.exp_avg.to_data()));
            tensors.push((format!("{name}.exp_avg_sq"), st.exp_avg_sq.to_data()));
            steps.insert(name.clone(), serde_json::json!(st.step));
        }
        let meta = serde_json::json!({ "config": self.config, "steps": steps });
        (tensors, meta)
    }

    /// Rebuilds the optimizer from [`Adam::state_dict`] output; `tensors` may hold other keys
    /// too. `what` names the source in error messages.
    pub fn load_state_dict(
        meta: &serde_json::Value,
        tensors: &IndexMap<String, TensorData>,
        device: &burn::tensor::Device,
        what: &str,
    ) -> Result<Self> {
        let config: AdamConfig = serde_json::from_value(meta["config"].clone())
            .map_err(|e| Error::invalid(format!("{what}: optimizer config: {e}")))?;
        let steps = meta["steps"].as_object().ok_or_else(|| {
            Error::invalid(format!("{what}: optimizer steps: expected an object"))
        })?;
        let mut state = IndexMap::new();
        for (name, step) in steps {
            let step = step.as_u64().ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: optimizer step of {name:?}: expected an integer"
                ))
            })?;
            let get = |suffix: &str| -> Result<Tensor<1>> {
                let key = format!("{name}.{suffix}");
                let data = tensors.get(&key).ok_or_else(|| {
                    Error::invalid(format!("{what}: missing optimizer tensor {key:?}"))
                })?;
                let n: usize = data.shape().iter().product();
                Ok(Tensor::<1>::from_data(data.clone().convert::<f32>(), device).reshape([n]))
            };
            let (exp_avg, exp_avg_sq) = (get("exp_avg")?, get("exp_avg_sq")?);
            state.insert(
                name.clone(),
                ParamState {
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(Self { config, state })
    }

    /// Checks that every state entry names a trainable parameter of `module` of the same size.
    pub fn check_against(&self, module: &impl Params, what: &str) -> Result<()> {
        let mut sizes = std::collections::HashMap::new();
        module.visit("", &mut |name, kind, t| {
            if kind == ParamKind::Trainable {
                sizes.insert(name.to_string(), t.dims().iter().product::<usize>());
            }
        });
        for (name, st) in &self.state {
            match sizes.get(name) {
                None => {
                    return Err(Error::invalid(format!(
                        "{what}: optimizer state for {name:?}, which the model does not have"
                    )));
                }
                Some(&n) if n != st.exp_avg.dims()[0] => {
                    return Err(Error::invalid(format!(
                        "{what}: optimizer state for {name:?} has {} values, the parameter {n}",
                        st.exp_avg.dims()[0]
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn update<const D: usize>(
    name: &str,
    param: &mut Tensor<D>,
    grads: &Gradients,
    state: &mut IndexMap<String, ParamState>,
    cfg: AdamConfig,
) {
    let Some(grad) = param.grad(grads) else {
        return;
    };
    let dims = param.dims();
    let n: usize = dims.iter().product();
    let grad = grad.reshape([n]);
    let st = state.entry(name.to_string()).or_insert_with(|| ParamState {
        step: 0,
        exp_avg: grad.zeros_like(),
        exp_avg_sq: grad.zeros_like(),
    });
    st.step += 1;
    let bias_correction1 = 1.0 - cfg.beta1.powi(st.step as i32);
    let bias_correction2 = 1.0 - cfg.beta2.powi(st.step as i32);
    let step_size = (cfg.lr * bias_correction2.sqrt() / bias_correction1) as f32;
    let autodiff = param.is_autodiff();
    let value = param.clone().inner().reshape([n]);
    let (b1, b2) = (cfg.beta1, cfg.beta2);
    let (value, m, v) = adam_update(
        &value,
        &grad,
        &st.exp_avg,
        &st.exp_avg_sq,
        (b1, b2),
        cfg.eps,
        step_size,
    )
    .unwrap_or_else(|| {
        // Scalars enter the f32 kernels as f32, as PyTorch's CUDA kernels did.
        let m =
            st.exp_avg.clone().mul_scalar(b1 as f32) + grad.clone().mul_scalar((1.0 - b1) as f32);
        let v = st.exp_avg_sq.clone().mul_scalar(b2 as f32)
            + (grad.clone() * grad.clone()).mul_scalar((1.0 - b2) as f32);
        let denom = v.clone().sqrt().add_scalar(cfg.eps as f32);
        (value - (m.clone() / denom).mul_scalar(step_size), m, v)
    });
    st.exp_avg = m;
    st.exp_avg_sq = v;
    let updated = value.reshape(dims);
    *param = if autodiff {
        updated.autodiff().require_grad()
    } else {
        updated
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::ParamRef;
    use burn::tensor::Device;

    /// Two parameters; `unused` never receives a gradient.
    struct Toy {
        w: Tensor<2>,
        unused: Tensor<1>,
    }

    impl Params for Toy {
        fn visit(&self, _p: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
            f("w", ParamKind::Trainable, ParamRef::R2(&self.w));
            f("unused", ParamKind::Trainable, ParamRef::R1(&self.unused));
        }
        fn visit_mut(&mut self, _p: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
            f("w", ParamKind::Trainable, ParamMut::R2(&mut self.w));
            f(
                "unused",
                ParamKind::Trainable,
                ParamMut::R1(&mut self.unused),
            );
        }
        fn set_training(&mut self, _t: bool) {}
    }

    fn toy(dev: &Device) -> Toy {
        Toy {
            w: Tensor::<2>::from_data([[1.0f32, -2.0], [0.5, 3.0]], dev).require_grad(),
            unused: Tensor::<1>::from_data([7.0f32], dev).require_grad(),
        }
    }

    /// loss = sum(w² · c) so that dL/dw = 2·c·w.
    fn grads(m: &Toy, c: &[f32; 4]) -> Gradients {
        let dev = m.w.device();
        let c = Tensor::<2>::from_data([[c[0], c[1]], [c[2], c[3]]], &dev);
        (m.w.clone() * m.w.clone() * c).sum().backward()
    }

    /// The same update in f64 by hand.
    fn reference(w0: [f64; 4], cs: &[[f32; 4]], lr: f64) -> [f64; 4] {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let mut w = w0;
        let mut m = [0.0; 4];
        let mut v = [0.0; 4];
        for (t, c) in cs.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..4 {
                let g = 2.0 * c[i] as f64 * w[i];
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let step = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
                w[i] -= step * m[i] / (v[i].sqrt() + eps);
            }
        }
        w
    }

    #[test]
    fn matches_a_hand_computation_and_skips_params_without_grad() {
        let dev = Device::flex().autodiff();
        let mut m = toy(&dev);
        let mut opt = Adam::new(AdamConfig::with_lr(0.1));
        let cs = [
            [1.0, 0.5, -1.0, 2.0],
            [0.25, 1.0, 1.0, -0.5],
            [3.0, 0.1, 0.2, 1.0],
        ];
        for c in &cs {
            let g = grads(&m, c);
            opt.step(&mut m, &g);
        }
        let got: Vec<f32> = m.w.to_data().try_into_vec_as::<f32>().unwrap();
        let want = reference([1.0, -2.0, 0.5, 3.0], &cs, 0.1);
        for (g, w) in got.iter().zip(want) {
            // f32 arithmetic against f64: a few ulps of values of magnitude ~1.
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        assert_eq!(
            m.unused.to_data().try_into_vec_as::<f32>().unwrap(),
            vec![7.0]
        );
        assert_eq!(opt.state.len(), 1);
        assert_eq!(opt.state["w"].step, 3);
        assert!(m.w.is_require_grad());
    }

    #[test]
    fn eps_is_added_to_the_uncorrected_sqrt_v() {
        // First step with gradient g: m = 0.1 g, v = 0.001 g²; PyTorch 0.4 moves by
        // lr·√0.001/0.1 · 0.1 g / (√0.001 |g| + ε), which for a tiny g differs visibly from the
        // later form lr · m̂ / (√v̂ + ε).
        let dev = Device::flex().autodiff();
        let mut m = Toy {
            w: Tensor::<2>::from_data([[1e-6f32]], &dev).require_grad(),
            unused: Tensor::<1>::from_data([0.0f32], &dev).require_grad(),
        };
        let mut opt = Adam::new(AdamConfig::with_lr(1.0));
        let g = (m.w.clone() * m.w.clone()).sum().backward(); // dL/dw = 2e-6
        opt.step(&mut m, &g);
        let got = m.w.to_data().try_into_vec_as::<f32>().unwrap()[0] as f64;
        let gval = 2e-6f64;
        let old = 1e-6 - (0.001f64).sqrt() / 0.1 * (0.1 * gval) / ((0.001f64).sqrt() * gval + 1e-8);
        let new = 1e-6 - 1.0 * gval / (gval + 1e-8);
        assert!(
            (got - old).abs() < 1e-6 * old.abs().max(1e-3),
            "got {got}, 0.4 form {old}"
        );
        assert!(
            (got - new).abs() > 1e-3,
            "must not be the modern form {new}"
        );
    }

    #[test]
    fn state_round_trips_and_resumes_exactly() {
        let dev = Device::flex().autodiff();
        let cs = [
            [1.0, 0.5, -1.0, 2.0],
            [0.25, 1.0, 1.0, -0.5],
            [3.0, 0.1, 0.2, 1.0],
        ];
        let mut a = toy(&dev);
        let mut opt_a = Adam::new(AdamConfig::with_lr(0.05));
        for c in &cs {
            let g = grads(&a, c);
            opt_a.step(&mut a, &g);
        }
        let mut b = toy(&dev);
        let mut opt_b = Adam::new(AdamConfig::with_lr(0.05));
        let g = grads(&b, &cs[0]);
        opt_b.step(&mut b, &g);
        let (tensors, meta) = opt_b.state_dict();
        let map: IndexMap<String, TensorData> = tensors.into_iter().collect();
        let mut opt_b = Adam::load_state_dict(&meta, &map, &dev, "test").unwrap();
        opt_b.check_against(&b, "test").unwrap();
        for c in &cs[1..] {
            let g = grads(&b, c);
            opt_b.step(&mut b, &g);
        }
        assert_eq!(a.w.to_data(), b.w.to_data());
    }
}
