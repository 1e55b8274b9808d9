//! One training iteration (§18.3), split into the generator step and the two discriminator
//! steps, each returning its losses by name. The loop in `train/mod.rs` calls them in order.

use crate::Result;
use crate::data::Batch;
use crate::map_any;
use crate::model::discriminators::{AcCropDiscriminator, PatchDiscriminator};
use crate::model::generator::{GeneratorOutput, GraphBatch, Sg2Im};
use crate::model::losses::{GanLossType, cross_entropy, l1_loss, mask_bce_loss, mse_loss};
use crate::model::params::{ParamKind, Params};
use crate::train::TrainArgs;
use crate::train::adam::Adam;
use crate::vocab::Vocab;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::time::{Duration, Instant};

/// A collated batch on the training device.
pub struct DeviceBatch {
    pub graph: GraphBatch,
    /// `(N, 3, H, W)` real images.
    pub imgs: Tensor<4>,
    /// `(O, 4)` ground-truth boxes on the host (layouts and crops are driven by host boxes).
    pub boxes: Vec<[f32; 4]>,
    /// `(O, 4)` the same on the device, for the box loss.
    pub boxes_t: Tensor<2>,
    /// `(O, M, M)` 0/1 ground-truth masks as floats (COCO, shapes), `None` for VG.
    pub masks: Option<Tensor<3>>,
    /// `(O,)`.
    pub obj_to_img: Tensor<1, Int>,
    pub num_images: usize,
}

impl DeviceBatch {
    pub fn new(batch: &Batch, vocab: &Vocab, device: &Device) -> Result<Self> {
        let graph = GraphBatch::from_batch(batch, vocab, device)?;
        let (h, w) = batch.image_size;
        let n = batch.num_images;
        let o = batch.objs.len();
        let imgs = Tensor::from_data(TensorData::new(batch.imgs.clone(), [n, 3, h, w]), device);
        let flat: Vec<f32> = batch.boxes.iter().flatten().copied().collect();
        let boxes_t = Tensor::from_data(TensorData::new(flat, [o, 4]), device);
        let masks = batch.masks.as_ref().map(|m| {
            let ms = batch.mask_size;
            let v: Vec<f32> = m.iter().map(|&x| x as f32).collect();
            Tensor::from_data(TensorData::new(v, [o, ms, ms]), device)
        });
        let obj_to_img = Tensor::from_data(TensorData::new(batch.obj_to_img.clone(), [o]), device);
        Ok(Self {
            graph,
            imgs,
            boxes: batch.boxes.clone(),
            boxes_t,
            masks,
            obj_to_img,
            num_images: n,
        })
    }
}

/// Weighted generator losses of one iteration (§18.5 names; `None` = term not computed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneratorLosses {
    pub l1_pixel_loss: f32,
    pub bbox_pred: f32,
    pub predicate_pred: Option<f32>,
    pub mask_loss: Option<f32>,
    pub ac_loss: Option<f32>,
    pub g_gan_obj_loss: Option<f32>,
    pub g_gan_img_loss: Option<f32>,
    pub total_loss: f32,
}

impl GeneratorLosses {
    /// `(name, value)` in the original's insertion order.
    pub fn named(&self) -> Vec<(&'static str, f32)> {
        let mut v = vec![
            ("L1_pixel_loss", self.l1_pixel_loss),
            ("bbox_pred", self.bbox_pred),
        ];
        let opt = [
            ("predicate_pred", self.predicate_pred),
            ("mask_loss", self.mask_loss),
            ("ac_loss", self.ac_loss),
            ("g_gan_obj_loss", self.g_gan_obj_loss),
            ("g_gan_img_loss", self.g_gan_img_loss),
        ];
        v.extend(opt.into_iter().filter_map(|(k, x)| x.map(|x| (k, x))));
        v.push(("total_loss", self.total_loss));
        v
    }
}

/// Losses of the object-discriminator step (all weights 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DObjLosses {
    pub d_obj_gan_loss: f32,
    pub d_ac_loss_real: f32,
    pub d_ac_loss_fake: f32,
}

impl DObjLosses {
    pub fn named(&self) -> Vec<(&'static str, f32)> {
        vec![
            ("d_obj_gan_loss", self.d_obj_gan_loss),
            ("d_ac_loss_real", self.d_ac_loss_real),
            ("d_ac_loss_fake", self.d_ac_loss_fake),
        ]
    }
}

/// Loss of the image-discriminator step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DImgLosses {
    pub d_img_gan_loss: f32,
}

impl DImgLosses {
    pub fn named(&self) -> Vec<(&'static str, f32)> {
        vec![("d_img_gan_loss", self.d_img_gan_loss)]
    }
}

/// Wall time per component of one iteration (`--timing 1`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    /// Generator forward.
    pub forward: Duration,
    /// Generator losses, including the discriminator forwards on the fakes.
    pub losses: Duration,
    /// Backward of the generator loss and the Adam step.
    pub backward: Duration,
    pub d_obj: Duration,
    pub d_img: Duration,
}

impl StepTimes {
    pub fn total(&self) -> Duration {
        self.forward + self.losses + self.backward + self.d_obj + self.d_img
    }
}

/// The networks and their optimizers.
pub struct Nets {
    pub generator: Sg2Im,
    pub optim_g: Adam,
    pub d_obj: Option<(AcCropDiscriminator, Adam)>,
    pub d_img: Option<(PatchDiscriminator, Adam)>,
}

/// Loss weights and the GAN loss, from the flags.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    pub l1_pixel: f32,
    pub bbox_pred: f32,
    pub predicate_pred: f32,
    pub mask: f32,
    pub ac: f32,
    pub d_obj: f32,
    pub d_img: f32,
    pub gan: GanLossType,
}

impl LossConfig {
    pub fn from_args(args: &TrainArgs) -> Result<Self> {
        Ok(Self {
            l1_pixel: args.l1_pixel_loss_weight as f32,
            bbox_pred: args.bbox_pred_loss_weight as f32,
            predicate_pred: args.predicate_pred_loss_weight as f32,
            mask: args.mask_loss_weight as f32,
            ac: args.ac_loss_weight as f32,
            // The products are formed in Python floats (double) before entering the f32 graph.
            d_obj: (args.discriminator_loss_weight * args.d_obj_weight) as f32,
            d_img: (args.discriminator_loss_weight * args.d_img_weight) as f32,
            gan: args.gan_loss_type,
        })
    }
}

fn scalar(t: &Tensor<1>) -> f32 {
    t.to_data()
        .try_into_vec_as::<f32>()
        .map(|v| v[0])
        .unwrap_or(f32::NAN)
}

/// The generator's own loss terms (`calculate_model_losses`, §18.3 step 3): weighted tensors by
/// name, in order. Shared by the training step and `check_model`.
pub fn model_losses(
    out: &GeneratorOutput,
    batch: &DeviceBatch,
    w: &LossConfig,
) -> Vec<(&'static str, Tensor<1>)> {
    let mut terms = vec![
        (
            "L1_pixel_loss",
            l1_loss(out.imgs.clone(), batch.imgs.clone()).mul_scalar(w.l1_pixel),
        ),
        (
            "bbox_pred",
            mse_loss(out.boxes_pred.clone(), batch.boxes_t.clone()).mul_scalar(w.bbox_pred),
        ),
    ];
    if w.predicate_pred > 0.0 {
        let ce = cross_entropy(out.rel_scores.clone(), batch.graph.preds.clone());
        terms.push(("predicate_pred", ce.mul_scalar(w.predicate_pred)));
    }
    if w.mask > 0.0
        && let (Some(pred), Some(gt)) = (&out.masks_pred, &batch.masks)
    {
        terms.push((
            "mask_loss",
            mask_bce_loss(pred.clone(), gt.clone()).mul_scalar(w.mask),
        ));
    }
    terms
}

/// Turns gradient tracking of a network's trainable parameters on or off.
fn set_trainable<M: Params>(net: &mut Option<(M, Adam)>, on: bool) {
    if let Some((m, _)) = net.as_mut() {
        m.visit_mut("", &mut |_, kind, mut p| {
            if kind == ParamKind::Trainable {
                p.map(&|x| map_any!(x, |v| v.set_require_grad(on)));
            }
        });
    }
}

/// What the generator step hands to the discriminator steps.
pub struct GeneratorStep {
    pub losses: GeneratorLosses,
    /// The generated images (detached, produced before the update); `None` when the total loss
    /// was not finite: then nothing was updated and the iteration ends here (§18.3 step 6).
    pub fake: Option<Tensor<4>>,
}

/// §18.3 steps 2–7: generator forward with the ground-truth layout, weighted losses
/// (including the adversarial terms through both discriminators), backward, Adam step.
pub fn generator_step(
    nets: &mut Nets,
    batch: &DeviceBatch,
    noise: Option<Tensor<4>>,
    w: &LossConfig,
    times: &mut StepTimes,
) -> GeneratorStep {
    let start = Instant::now();
    let out = nets
        .generator
        .forward(&batch.graph, Some(&batch.boxes), batch.masks.clone(), noise);
    times.forward = start.elapsed();

    let start = Instant::now();
    // The original's generator backward also fills the discriminators' weight gradients, which
    // are zeroed before their own steps; not tracking them skips that work and changes nothing.
    set_trainable(&mut nets.d_obj, false);
    set_trainable(&mut nets.d_img, false);
    let mut terms = model_losses(&out, batch, w);
    if let Some((d_obj, _)) = nets.d_obj.as_mut() {
        let (scores_fake, ac_loss) = d_obj.forward(
            out.imgs.clone(),
            batch.graph.objs.clone(),
            &batch.boxes,
            batch.obj_to_img.clone(),
        );
        terms.push(("ac_loss", ac_loss.mul_scalar(w.ac)));
        terms.push((
            "g_gan_obj_loss",
            w.gan.g_loss(scores_fake).mul_scalar(w.d_obj),
        ));
    }
    if let Some((d_img, _)) = nets.d_img.as_mut() {
        let scores_fake = d_img.forward(out.imgs.clone());
        terms.push((
            "g_gan_img_loss",
            w.gan.g_loss(scores_fake).mul_scalar(w.d_img),
        ));
    }
    // Running total from a zero tensor, in the original's order of additions.
    let device = out.imgs.device();
    let mut total = Tensor::<1>::zeros([1], &device);
    let mut losses = GeneratorLosses::default();
    for (name, t) in &terms {
        total = total + t.clone();
        let v = scalar(t);
        match *name {
            "L1_pixel_loss" => losses.l1_pixel_loss = v,
            "bbox_pred" => losses.bbox_pred = v,
            "predicate_pred" => losses.predicate_pred = Some(v),
            "mask_loss" => losses.mask_loss = Some(v),
            "ac_loss" => losses.ac_loss = Some(v),
            "g_gan_obj_loss" => losses.g_gan_obj_loss = Some(v),
            "g_gan_img_loss" => losses.g_gan_img_loss = Some(v),
            _ => unreachable!("unknown loss term {name}"),
        }
    }
    losses.total_loss = scalar(&total);
    times.losses = start.elapsed();
    set_trainable(&mut nets.d_obj, true);
    set_trainable(&mut nets.d_img, true);
    if !losses.total_loss.is_finite() {
        return GeneratorStep { losses, fake: None };
    }

    let start = Instant::now();
    let fake = out.imgs.clone().detach();
    let grads = total.backward();
    nets.optim_g.step(&mut nets.generator, &grads);
    times.backward = start.elapsed();
    GeneratorStep {
        losses,
        fake: Some(fake),
    }
}

/// §18.3 step 8: the object discriminator on the fakes, then (a separate pass, separate
/// BatchNorm statistics) on the real images; GAN loss plus both classification losses.
pub fn d_obj_step(
    d_obj: &mut AcCropDiscriminator,
    optim: &mut Adam,
    fake: Tensor<4>,
    batch: &DeviceBatch,
    gan: GanLossType,
) -> DObjLosses {
    let objs = batch.graph.objs.clone();
    let (scores_fake, ac_loss_fake) =
        d_obj.forward(fake, objs.clone(), &batch.boxes, batch.obj_to_img.clone());
    let (scores_real, ac_loss_real) = d_obj.forward(
        batch.imgs.clone(),
        objs,
        &batch.boxes,
        batch.obj_to_img.clone(),
    );
    let gan_loss = gan.d_loss(scores_real, scores_fake);
    let device = gan_loss.device();
    let total = Tensor::<1>::zeros([1], &device)
        + gan_loss.clone()
        + ac_loss_real.clone()
        + ac_loss_fake.clone();
    let losses = DObjLosses {
        d_obj_gan_loss: scalar(&gan_loss),
        d_ac_loss_real: scalar(&ac_loss_real),
        d_ac_loss_fake: scalar(&ac_loss_fake),
    };
    let grads = total.backward();
    optim.step(d_obj, &grads);
    losses
}

/// §18.3 step 9: the image discriminator on the fakes, then on the real images.
pub fn d_img_step(
    d_img: &mut PatchDiscriminator,
    optim: &mut Adam,
    fake: Tensor<4>,
    batch: &DeviceBatch,
    gan: GanLossType,
) -> DImgLosses {
    let scores_fake = d_img.forward(fake);
    let scores_real = d_img.forward(batch.imgs.clone());
    let gan_loss = gan.d_loss(scores_real, scores_fake);
    let device = gan_loss.device();
    let total = Tensor::<1>::zeros([1], &device) + gan_loss.clone();
    let losses = DImgLosses {
        d_img_gan_loss: scalar(&gan_loss),
    };
    let grads = total.backward();
    optim.step(d_img, &grads);
    losses
}

/// Every step of one iteration, in order. Returns `None` for the losses of the discriminators
/// that do not exist; `Err`-free: a non-finite generator loss is reported in the result.
pub struct IterationResult {
    pub g: GeneratorLosses,
    pub d_obj: Option<DObjLosses>,
    pub d_img: Option<DImgLosses>,
    /// The generator loss was not finite and nothing was updated.
    pub skipped: bool,
    pub times: StepTimes,
}

pub fn train_iteration(
    nets: &mut Nets,
    batch: &DeviceBatch,
    noise: Option<Tensor<4>>,
    w: &LossConfig,
) -> IterationResult {
    let mut times = StepTimes::default();
    let GeneratorStep { losses: g, fake } = generator_step(nets, batch, noise, w, &mut times);
    let Some(fake) = fake else {
        return IterationResult {
            g,
            d_obj: None,
            d_img: None,
            skipped: true,
            times,
        };
    };
    let start = Instant::now();
    let d_obj = nets
        .d_obj
        .as_mut()
        .map(|(d, opt)| d_obj_step(d, opt, fake.clone(), batch, w.gan));
    times.d_obj = start.elapsed();
    let start = Instant::now();
    let d_img = nets
        .d_img
        .as_mut()
        .map(|(d, opt)| d_img_step(d, opt, fake, batch, w.gan));
    times.d_img = start.elapsed();
    IterationResult {
        g,
        d_obj,
        d_img,
        skipped: false,
        times,
    }
}
