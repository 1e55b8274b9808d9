//! Graph convolution over scene-graph triples (`graph.py`, §4).

use crate::model::layers::{Init, Sequential, build_mlp};
use crate::model::params::Params;
use burn::tensor::ops::IndexingUpdateOp;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::fmt;
use std::str::FromStr;

/// How candidate vectors arriving at one object are combined (§4.1 step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GconvPooling {
    /// Divide the sum by the number of appearances as subject plus as object (a self-loop counts twice).
    Avg,
    Sum,
}

impl FromStr for GconvPooling {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "avg" => Ok(Self::Avg),
            "sum" => Ok(Self::Sum),
            _ => Err(crate::Error::invalid(format!(
                "invalid gconv_pooling {s:?}: expected avg or sum"
            ))),
        }
    }
}

impl fmt::Display for GconvPooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Avg => "avg",
            Self::Sum => "sum",
        })
    }
}

/// Triples of a batch with the per-object appearance counts the avg pooling needs.
///
/// The counts depend only on the edge list, so they are computed once on the host and shared by
/// every layer.
#[derive(Debug, Clone)]
pub struct Edges {
    /// `(T,)` subject indices.
    pub s: Tensor<1, Int>,
    /// `(T,)` object indices.
    pub o: Tensor<1, Int>,
    /// `(O, 1)`: appearances as subject + as object, clamped to ≥ 1.
    pub counts: Tensor<2>,
    pub num_triples: usize,
}

impl Edges {
    /// `s`, `o`: `(T,)` global object indices (already validated to be `< num_objs`).
    pub fn new(s: &[i64], o: &[i64], num_objs: usize, device: &Device) -> Self {
        let mut counts = vec![0f32; num_objs];
        for &i in s.iter().chain(o) {
            counts[i as usize] += 1.0;
        }
        for c in &mut counts {
            *c = c.max(1.0);
        }
        Self {
            s: Tensor::from_data(TensorData::new(s.to_vec(), [s.len()]), device),
            o: Tensor::from_data(TensorData::new(o.to_vec(), [o.len()]), device),
            counts: Tensor::from_data(TensorData::new(counts, [num_objs, 1]), device),
            num_triples: s.len(),
        }
    }
}

/// One `GraphTripleConv` layer (§4.1): `net1` on `[v_s, p, v_o]`, pooling of the subject and
/// object candidates per object, `net2` on the pooled vectors.
#[derive(Debug, Clone)]
pub struct GraphTripleConv {
    pub net1: Sequential,
    pub net2: Sequential,
    pub hidden_dim: usize,
    pub output_dim: usize,
    pub pooling: GconvPooling,
}

crate::impl_params!(GraphTripleConv { net1 => "net1", net2 => "net2" });

impl GraphTripleConv {
    pub fn init(
        input_dim: usize,
        output_dim: usize,
        hidden_dim: usize,
        pooling: GconvPooling,
        mlp_batch_norm: bool,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Self {
        let net1 = build_mlp(
            &[3 * input_dim, hidden_dim, 2 * hidden_dim + output_dim],
            mlp_batch_norm,
            Init::KaimingNormal,
            device,
            rng,
        );
        let net2 = build_mlp(
            &[hidden_dim, hidden_dim, output_dim],
            mlp_batch_norm,
            Init::KaimingNormal,
            device,
            rng,
        );
        Self {
            net1,
            net2,
            hidden_dim,
            output_dim,
            pooling,
        }
    }

    /// # Shapes
    /// `obj_vecs (O, Din)`, `pred_vecs (T, Din)` → `(O, Dout)`, `(T, Dout)`.
    pub fn forward(
        &mut self,
        obj_vecs: Tensor<2>,
        pred_vecs: Tensor<2>,
        edges: &Edges,
    ) -> (Tensor<2>, Tensor<2>) {
        let [num_objs, _] = obj_vecs.dims();
        let (h, dout) = (self.hidden_dim, self.output_dim);
        let device = obj_vecs.device();
        let pooled = Tensor::<2>::zeros([num_objs, h], &device);
        let (pooled, new_p) = if edges.num_triples == 0 {
            // No message to pass; an object in no triple gets net2(0), as in the original.
            (pooled, Tensor::<2>::zeros([0, dout], &device))
        } else {
            let cur_s = obj_vecs.clone().select(0, edges.s.clone());
            let cur_o = obj_vecs.select(0, edges.o.clone());
            let t = self
                .net1
                .forward_vec(Tensor::cat(vec![cur_s, pred_vecs, cur_o], 1)); // (T, 2H+Dout)
            let [nt, _] = t.dims();
            let new_s = t.clone().slice([0..nt, 0..h]);
            let new_p = t.clone().slice([0..nt, h..h + dout]);
            let new_o = t.slice([0..nt, h + dout..2 * h + dout]);
            let pooled = pooled
                .select_assign(0, edges.s.clone(), new_s, IndexingUpdateOp::Add)
                .select_assign(0, edges.o.clone(), new_o, IndexingUpdateOp::Add);
            (pooled, new_p)
        };
        let pooled = match self.pooling {
            GconvPooling::Avg => pooled / edges.counts.clone(),
            GconvPooling::Sum => pooled,
        };
        (self.net2.forward_vec(pooled), new_p)
    }

    pub fn set_training(&mut self, training: bool) {
        Params::set_training(self, training);
    }
}
