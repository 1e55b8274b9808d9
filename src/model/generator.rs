//! The generator `Sg2ImModel` (`model.py`, §5): embeddings → graph convolution → box / mask
//! regression → layout → cascaded refinement network.

use crate::model::crn::RefinementNetwork;
use crate::model::graph::{Edges, GconvPooling, GraphTripleConv};
use crate::model::layers::{
    Activation, BatchNorm, Conv2d, Embedding, Init, Layer, Linear, Normalization, Sequential,
    build_mlp,
};
use crate::model::layout::{boxes_to_layout, masks_to_layout};
use crate::model::params::{ParamKind, ParamMut, ParamRef, Params};
use crate::vocab::Vocab;
use crate::{Error, Result};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use rand_distr::{Distribution as _, StandardNormal};

/// Constructor arguments of `Sg2ImModel` (§5.1), typed. The original's `model_kwargs` dict is
/// read and written in [`crate::io::kwargs`] (`Sg2ImConfig::from_model_kwargs`), as are the
/// generator's `from_net_state` / `to_net_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sg2ImConfig {
    pub vocab: Vocab,
    /// `(H, W)` of the layout and the output image.
    pub image_size: (usize, usize),
    /// `E`.
    pub embedding_dim: usize,
    /// `G`.
    pub gconv_dim: usize,
    /// `Hd`.
    pub gconv_hidden_dim: usize,
    pub gconv_pooling: GconvPooling,
    /// 0 = a single Linear(E → G); 1 = one graph conv; n > 1 = one plus `gconv_net` of n − 1.
    pub gconv_num_layers: usize,
    /// BatchNorm1d inside every MLP (`"batch"`) or not (`"none"`).
    pub mlp_normalization: Normalization,
    pub refinement_dims: Vec<usize>,
    pub normalization: Normalization,
    pub activation: Activation,
    /// `M`; 0 = no mask network (the layout then uses boxes only).
    pub mask_size: usize,
    /// `Z` noise channels appended to the layout.
    pub layout_noise_dim: usize,
}

impl Sg2ImConfig {
    /// The configuration `scripts/train.py` builds with its default flags (§24.3).
    pub fn train_defaults(vocab: Vocab) -> Self {
        Self {
            vocab,
            image_size: (64, 64),
            embedding_dim: 128,
            gconv_dim: 128,
            gconv_hidden_dim: 512,
            gconv_pooling: GconvPooling::Avg,
            gconv_num_layers: 5,
            mlp_normalization: Normalization::None,
            refinement_dims: vec![1024, 512, 256, 128, 64],
            normalization: Normalization::Batch,
            activation: Activation::from_original("leakyrelu-0.2").expect("valid default"),
            mask_size: 16,
            layout_noise_dim: 32,
        }
    }

    /// Checks what the original would only find out by crashing mid-forward.
    pub fn validate(&self) -> Result<()> {
        if self.mask_size > 0 && !self.mask_size.is_power_of_two() {
            return Err(Error::invalid(format!(
                "mask_size {} must be a power of 2",
                self.mask_size
            )));
        }
        if self.refinement_dims.is_empty() {
            return Err(Error::invalid(
                "refinement_dims must list at least one width",
            ));
        }
        if self.vocab.num_objects() == 0 || self.vocab.num_predicates() == 0 {
            return Err(Error::invalid(
                "the vocabulary has no objects or no predicates",
            ));
        }
        if self.mlp_normalization == Normalization::Instance {
            return Err(Error::invalid("mlp_normalization must be none or batch"));
        }
        RefinementNetwork::check_size(self.refinement_dims.len(), self.image_size)
    }
}

/// A packed batch of scene graphs on a device (§2.3), validated.
#[derive(Debug, Clone)]
pub struct GraphBatch {
    /// `(O,)`.
    pub objs: Tensor<1, Int>,
    /// `(T,)` predicate indices.
    pub preds: Tensor<1, Int>,
    pub edges: Edges,
    /// `(O,)` on the host: layout pooling and crops are driven by it.
    pub obj_to_img: Vec<i64>,
    /// Host copies of the triples `(T, 3)`.
    pub triples: Vec<[i64; 3]>,
    pub num_objs: usize,
    /// `N = max(obj_to_img) + 1`.
    pub num_images: usize,
}

impl GraphBatch {
    /// Checks every index against the vocabulary and the object count, then uploads.
    pub fn new(
        objs: &[i64],
        triples: &[[i64; 3]],
        obj_to_img: &[i64],
        vocab: &Vocab,
        device: &Device,
    ) -> Result<Self> {
        let o = objs.len();
        if obj_to_img.len() != o {
            return Err(Error::invalid(format!(
                "obj_to_img has {} entries for {o} objects",
                obj_to_img.len()
            )));
        }
        if let Some(&bad) = objs
            .iter()
            .find(|&&x| x < 0 || x as usize >= vocab.num_objects())
        {
            return Err(Error::invalid(format!(
                "object index {bad} is outside the vocabulary ({} objects)",
                vocab.num_objects()
            )));
        }
        for (t, &[s, p, ob]) in triples.iter().enumerate() {
            if s < 0 || s as usize >= o || ob < 0 || ob as usize >= o {
                return Err(Error::invalid(format!(
                    "triple {t} [{s}, {p}, {ob}] refers to an object outside 0..{o}"
                )));
            }
            if p < 0 || p as usize >= vocab.num_predicates() {
                return Err(Error::invalid(format!(
                    "triple {t} has predicate index {p}, outside the vocabulary ({} predicates)",
                    vocab.num_predicates()
                )));
            }
        }
        if obj_to_img.iter().any(|&i| i < 0) {
            return Err(Error::invalid("obj_to_img has a negative image index"));
        }
        let num_images = obj_to_img.iter().max().map_or(0, |&m| m as usize + 1);
        let s: Vec<i64> = triples.iter().map(|t| t[0]).collect();
        let p: Vec<i64> = triples.iter().map(|t| t[1]).collect();
        let ob: Vec<i64> = triples.iter().map(|t| t[2]).collect();
        Ok(Self {
            objs: Tensor::from_data(TensorData::new(objs.to_vec(), [o]), device),
            preds: Tensor::from_data(TensorData::new(p, [triples.len()]), device),
            edges: Edges::new(&s, &ob, o, device),
            obj_to_img: obj_to_img.to_vec(),
            triples: triples.to_vec(),
            num_objs: o,
            num_images,
        })
    }

    /// Packs a collated dataset batch.
    pub fn from_batch(batch: &crate::data::Batch, vocab: &Vocab, device: &Device) -> Result<Self> {
        Self::new(
            &batch.objs,
            &batch.triples,
            &batch.obj_to_img,
            vocab,
            device,
        )
    }
}

/// Everything `forward` computes, including the intermediates the parity tests compare.
#[derive(Debug, Clone)]
pub struct GeneratorOutput {
    /// `(N, 3, H, W)` in ImageNet-normalised space (no output nonlinearity).
    pub imgs: Tensor<4>,
    /// `(O, 4)`, non-negative (final ReLU), not ordered.
    pub boxes_pred: Tensor<2>,
    /// `(O, M, M)` sigmoid probabilities, when the model has a mask network.
    pub masks_pred: Option<Tensor<3>>,
    /// `(O, M, M)` mask logits.
    pub mask_scores: Option<Tensor<3>>,
    /// `(T, num_preds)`, non-negative.
    pub rel_scores: Tensor<2>,
    /// `(O, G)` after the first graph conv layer (`gconv`).
    pub obj_vecs_gconv0: Tensor<2>,
    /// `(T, G)` after `gconv` (the raw embeddings when `gconv` is a Linear).
    pub pred_vecs_gconv0: Tensor<2>,
    /// `(O, G)`: input of box_net, mask_net and the layout.
    pub obj_vecs: Tensor<2>,
    /// `(T, G)`.
    pub pred_vecs: Tensor<2>,
    /// `(N, G, H, W)` before noise.
    pub layout: Tensor<4>,
}

/// The first graph layer: a Linear when `gconv_num_layers == 0`, else a `GraphTripleConv`.
#[derive(Debug, Clone)]
// A handful of these exist per model, built once: boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum Gconv {
    Linear(Linear),
    Triple(GraphTripleConv),
}

impl Params for Gconv {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamRef<'_>)) {
        match self {
            Gconv::Linear(l) => l.visit(prefix, f),
            Gconv::Triple(g) => g.visit(prefix, f),
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ParamKind, ParamMut<'_>)) {
        match self {
            Gconv::Linear(l) => l.visit_mut(prefix, f),
            Gconv::Triple(g) => g.visit_mut(prefix, f),
        }
    }
    fn set_training(&mut self, training: bool) {
        if let Gconv::Triple(g) = self {
            Params::set_training(g, training);
        }
    }
}

/// `GraphTripleConvNet`: layers held in `gconvs`.
#[derive(Debug, Clone)]
pub struct GraphTripleConvNet {
    pub gconvs: Vec<GraphTripleConv>,
}

crate::impl_params!(GraphTripleConvNet { gconvs => "gconvs" });

/// The generator.
#[derive(Debug, Clone)]
pub struct Sg2Im {
    pub config: Sg2ImConfig,
    pub obj_embeddings: Embedding,
    pub pred_embeddings: Embedding,
    pub gconv: Gconv,
    pub gconv_net: Option<GraphTripleConvNet>,
    pub box_net: Sequential,
    pub mask_net: Option<Sequential>,
    pub rel_aux_net: Sequential,
    pub refinement_net: RefinementNetwork,
}

// Registration order of the original = state-dict order.
crate::impl_params!(Sg2Im {
    obj_embeddings => "obj_embeddings",
    pred_embeddings => "pred_embeddings",
    gconv => "gconv",
    gconv_net => "gconv_net",
    box_net => "box_net",
    mask_net => "mask_net",
    rel_aux_net => "rel_aux_net",
    refinement_net => "refinement_net",
});

impl Sg2Im {
    /// Builds the generator with PyTorch 0.4's initialisation, deterministic from `rng`.
    pub fn init(
        config: &Sg2ImConfig,
        device: &Device,
        rng: &mut dyn rand::RngCore,
    ) -> Result<Self> {
        config.validate()?;
        let c = config;
        let (e, g, hd) = (c.embedding_dim, c.gconv_dim, c.gconv_hidden_dim);
        let bn = c.mlp_normalization == Normalization::Batch;
        let num_objs = c.vocab.num_objects();
        let num_preds = c.vocab.num_predicates();
        let obj_embeddings = Embedding::init(num_objs + 1, e, device, rng);
        let pred_embeddings = Embedding::init(num_preds, e, device, rng);
        let gconv = if c.gconv_num_layers == 0 {
            Gconv::Linear(Linear::init(e, g, Init::Default, device, rng))
        } else {
            Gconv::Triple(GraphTripleConv::init(
                e,
                g,
                hd,
                c.gconv_pooling,
                bn,
                device,
                rng,
            ))
        };
        let gconv_net = (c.gconv_num_layers > 1).then(|| GraphTripleConvNet {
            gconvs: (1..c.gconv_num_layers)
                .map(|_| GraphTripleConv::init(g, g, hd, c.gconv_pooling, bn, device, rng))
                .collect(),
        });
        let box_net = build_mlp(&[g, hd, 4], bn, Init::Default, device, rng);
        let mask_net = (c.mask_size > 0).then(|| build_mask_net(g, c.mask_size, device, rng));
        let rel_aux_net = build_mlp(&[2 * e + 8, hd, num_preds], bn, Init::Default, device, rng);
        let mut dims = vec![g + c.layout_noise_dim];
        dims.extend_from_slice(&c.refinement_dims);
        let refinement_net =
            RefinementNetwork::init(&dims, c.normalization, &c.activation, device, rng);
        Ok(Self {
            config: c.clone(),
            obj_embeddings,
            pred_embeddings,
            gconv,
            gconv_net,
            box_net,
            mask_net,
            rel_aux_net,
            refinement_net,
        })
    }

    /// Standard-normal layout noise `(N, Z, H, W)` drawn from `rng` (reproducible; §21.5.11).
    pub fn sample_noise(
        &self,
        num_images: usize,
        rng: &mut dyn rand::RngCore,
        device: &Device,
    ) -> Tensor<4> {
        let (h, w) = self.config.image_size;
        let z = self.config.layout_noise_dim;
        let n = num_images * z * h * w;
        let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        Tensor::from_data(TensorData::new(v, [num_images, z, h, w]), device)
    }

    /// The forward pass (§5.4): [`Self::forward_graph`] then [`Self::forward_image`].
    ///
    /// `boxes_gt` / `masks_gt` replace the predicted boxes / masks **in the layout only**.
    /// `noise`: `(N, Z, H, W)`; when `None` and `Z > 0` it is drawn from the device RNG.
    ///
    /// # Shapes
    /// `boxes_gt (O, 4)`, `masks_gt (O, M, M)` → see [`GeneratorOutput`].
    pub fn forward(
        &mut self,
        g: &GraphBatch,
        boxes_gt: Option<&[[f32; 4]]>,
        masks_gt: Option<Tensor<3>>,
        noise: Option<Tensor<4>>,
    ) -> GeneratorOutput {
        let graph = self.forward_graph(g);
        let pred_boxes_host;
        let layout_boxes: &[[f32; 4]] = match boxes_gt {
            Some(b) => b,
            None => {
                pred_boxes_host = host_boxes(&graph.boxes_pred);
                &pred_boxes_host
            }
        };
        let layout_masks = masks_gt.or_else(|| graph.masks_pred.clone());
        let (imgs, layout) =
            self.forward_image(g, &graph.obj_vecs, layout_boxes, layout_masks, noise);
        GeneratorOutput {
            imgs,
            boxes_pred: graph.boxes_pred,
            masks_pred: graph.masks_pred,
            mask_scores: graph.mask_scores,
            rel_scores: graph.rel_scores,
            obj_vecs_gconv0: graph.obj_vecs_gconv0,
            pred_vecs_gconv0: graph.pred_vecs_gconv0,
            obj_vecs: graph.obj_vecs,
            pred_vecs: graph.pred_vecs,
            layout,
        }
    }

    /// Steps 1–7 of §5.4: embeddings, graph convolution, boxes, masks, relationship scores.
    /// The returned [`GeneratorOutput`] has empty `imgs` and `layout` (`(0, …)` tensors).
    pub fn forward_graph(&mut self, g: &GraphBatch) -> GeneratorOutput {
        let device = self.obj_embeddings.weight.device();
        let o = g.num_objs;
        let num_t = g.triples.len();
        let e = self.config.embedding_dim;
        let obj_vecs_orig = self.obj_embeddings.forward(g.objs.clone()); // (O, E)
        let pred_vecs = if num_t > 0 {
            self.pred_embeddings.forward(g.preds.clone())
        } else {
            Tensor::zeros([0, e], &device)
        };
        let (mut obj_vecs, mut pred_vecs) = match &mut self.gconv {
            Gconv::Linear(l) => (l.forward(obj_vecs_orig.clone()), pred_vecs),
            Gconv::Triple(gc) => gc.forward(obj_vecs_orig.clone(), pred_vecs, &g.edges),
        };
        let (obj_vecs_gconv0, pred_vecs_gconv0) = (obj_vecs.clone(), pred_vecs.clone());
        if let Some(net) = &mut self.gconv_net {
            for gc in &mut net.gconvs {
                (obj_vecs, pred_vecs) = gc.forward(obj_vecs, pred_vecs, &g.edges);
            }
        }
        let boxes_pred = self.box_net.forward_vec(obj_vecs.clone()); // (O, 4)
        let (masks_pred, mask_scores) = match &mut self.mask_net {
            Some(net) => {
                let gdim = self.config.gconv_dim;
                let m = self.config.mask_size;
                let scores = net.forward_map(obj_vecs.clone().reshape([o, gdim, 1, 1]));
                let scores: Tensor<3> = scores.reshape([o, m, m]);
                (Some(sigmoid(scores.clone())), Some(scores))
            }
            None => (None, None),
        };
        let num_preds = self.config.vocab.num_predicates();
        let rel_scores = if num_t > 0 {
            // Predicted boxes with the *pre*-graph-conv embeddings (§5.4 step 7).
            let (s, ob) = (g.edges.s.clone(), g.edges.o.clone());
            let input = Tensor::cat(
                vec![
                    boxes_pred.clone().select(0, s.clone()),
                    boxes_pred.clone().select(0, ob.clone()),
                    obj_vecs_orig.clone().select(0, s),
                    obj_vecs_orig.select(0, ob),
                ],
                1,
            );
            self.rel_aux_net.forward_vec(input)
        } else {
            Tensor::zeros([0, num_preds], &device)
        };
        GeneratorOutput {
            imgs: Tensor::zeros([0, 3, 1, 1], &device),
            boxes_pred,
            masks_pred,
            mask_scores,
            rel_scores,
            obj_vecs_gconv0,
            pred_vecs_gconv0,
            obj_vecs,
            pred_vecs,
            layout: Tensor::zeros([0, 1, 1, 1], &device),
        }
    }

    /// Steps 8–11 of §5.4: layout from the given boxes (and masks, if the model has a mask
    /// network; ignored otherwise, as in the original), noise, refinement network.
    ///
    /// # Shapes
    /// `obj_vecs (O, G)`, `boxes (O, 4)`, `masks (O, M, M)`, `noise (N, Z, H, W)` →
    /// images `(N, 3, H, W)` and the layout `(N, G, H, W)`.
    pub fn forward_image(
        &mut self,
        g: &GraphBatch,
        obj_vecs: &Tensor<2>,
        boxes: &[[f32; 4]],
        masks: Option<Tensor<3>>,
        noise: Option<Tensor<4>>,
    ) -> (Tensor<4>, Tensor<4>) {
        let device = obj_vecs.device();
        let size = self.config.image_size;
        let layout = match (self.mask_net.is_some(), masks) {
            (true, Some(m)) => masks_to_layout(
                obj_vecs.clone(),
                boxes,
                m,
                &g.obj_to_img,
                g.num_images,
                size,
            ),
            _ => boxes_to_layout(obj_vecs.clone(), boxes, &g.obj_to_img, g.num_images, size),
        };
        let z = self.config.layout_noise_dim;
        let crn_input = if z > 0 {
            let noise = noise.unwrap_or_else(|| {
                Tensor::random(
                    [g.num_images, z, size.0, size.1],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
            });
            Tensor::cat(vec![layout.clone(), noise], 1)
        } else {
            layout.clone()
        };
        (self.refinement_net.forward(crn_input), layout)
    }

    /// Train mode (batch statistics) or eval mode (running statistics) for every BatchNorm.
    pub fn set_training(&mut self, training: bool) {
        Params::set_training(self, training);
    }
}

/// Reads `(O, 4)` boxes back to the host.
pub fn host_boxes(t: &Tensor<2>) -> Vec<[f32; 4]> {
    let v: Vec<f32> = t
        .to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    v.chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect()
}

/// `_build_mask_net` (§5.3): `[Upsample×2, BatchNorm2d, Conv3×3, ReLU]` until `M`, then a 1×1 conv.
fn build_mask_net(
    dim: usize,
    mask_size: usize,
    device: &Device,
    rng: &mut dyn rand::RngCore,
) -> Sequential {
    let mut seq = Sequential::default();
    let mut cur = 1;
    while cur < mask_size {
        seq.layers.push(Layer::Upsample(2));
        seq.layers
            .push(Layer::BatchNorm(BatchNorm::init(dim, device, rng)));
        seq.layers.push(Layer::Conv2d(Conv2d::init(
            dim,
            dim,
            3,
            1,
            1,
            Init::Default,
            device,
            rng,
        )));
        seq.layers.push(Layer::Act(Activation::Relu));
        cur *= 2;
    }
    seq.layers.push(Layer::Conv2d(Conv2d::init(
        dim,
        1,
        1,
        1,
        0,
        Init::Default,
        device,
        rng,
    )));
    seq
}
