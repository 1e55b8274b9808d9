//! Running a trained generator on JSON scene graphs (the original's `run_model.py`, §19.1).

use crate::imagenet::{deprocess_to_u8_hwc, save_png_rgb};
use crate::io::model_file::{ModelBundle, load_any};
use crate::io::safetensors_io::{RawTensor, write_safetensors};
use crate::model::generator::{GraphBatch, Sg2Im, host_boxes};
use crate::report::Reporter;
use crate::scene_graph::{EncodedGraphs, SceneGraph, encode, read_scene_graphs};
use crate::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use indexmap::IndexMap;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Loads a generator (our model file or an original `.pt`) in eval mode.
pub fn load_generator(path: &Path, device: &Device) -> Result<(Sg2Im, ModelBundle, Vec<String>)> {
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{}: checkpoint not found (download the pretrained models with `sg2im download models`, or train one with `sg2im train`)",
            path.display()
        )));
    }
    let bundle = load_any(path)?;
    let (model, warnings) =
        Sg2Im::from_net_state(&bundle.generator, device, &path.display().to_string())?;
    Ok((model, bundle, warnings))
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// `(N, 3, H, W)` in the model's (normalised) output space.
    pub imgs: Vec<f32>,
    pub image_size: (usize, usize),
    /// `(O, 4)`.
    pub boxes_pred: Vec<[f32; 4]>,
    /// `(O, M, M)` when the model has masks.
    pub masks_pred: Option<Vec<f32>>,
    pub mask_size: usize,
    pub encoded: EncodedGraphs,
}

/// Runs the generator on encoded graphs without ground truth, except for the boxes and masks
/// placed by hand in the JSON, which replace the predictions of those objects in the layout.
/// Noise is drawn from `seed`.
pub fn generate(
    model: &mut Sg2Im,
    encoded: EncodedGraphs,
    seed: u64,
    device: &Device,
) -> Result<RunOutput> {
    let g = GraphBatch::new(
        &encoded.objs,
        &encoded.triples,
        &encoded.obj_to_img,
        &model.config.vocab,
        device,
    )?;
    let graph = model.forward_graph(&g);
    let mut boxes = host_boxes(&graph.boxes_pred);
    let boxes_pred = boxes.clone();
    for (b, given) in boxes.iter_mut().zip(&encoded.boxes) {
        if let Some(given) = given {
            *b = *given;
        }
    }
    let m = model.config.mask_size;
    let masks_pred_host: Option<Vec<f32>> = graph.masks_pred.as_ref().map(|t| {
        t.to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    });
    let layout_masks = match &masks_pred_host {
        Some(pred) if encoded.masks.iter().any(Option::is_some) => {
            let mut merged = pred.clone();
            for (k, given) in encoded.masks.iter().enumerate() {
                if let Some(given) = given {
                    if given.len() != m * m {
                        return Err(Error::invalid(format!(
                            "\"masks\": object {k} has a {0}×{0} mask but the model's masks are {m}×{m}",
                            (given.len() as f64).sqrt() as usize
                        )));
                    }
                    merged[k * m * m..(k + 1) * m * m].copy_from_slice(given);
                }
            }
            Some(Tensor::<3>::from_data(
                TensorData::new(merged, [g.num_objs, m, m]),
                device,
            ))
        }
        _ => graph.masks_pred.clone(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise = (model.config.layout_noise_dim > 0)
        .then(|| model.sample_noise(g.num_images, &mut rng, device));
    let (imgs, _) = model.forward_image(&g, &graph.obj_vecs, &boxes, layout_masks, noise);
    Ok(RunOutput {
        imgs: imgs
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default(),
        image_size: model.config.image_size,
        boxes_pred,
        masks_pred: masks_pred_host,
        mask_size: m,
        encoded,
    })
}

/// Options of `sg2im run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub checkpoint: PathBuf,
    pub scene_graphs_json: PathBuf,
    pub output_dir: PathBuf,
    pub draw_scene_graphs: bool,
    pub save_tensors: Option<PathBuf>,
    pub seed: u64,
}

/// `run_model.py`: writes `img%06d.png` per graph (and `sg%06d.png`/`.dot` when drawing).
/// Returns the written image paths; warnings go to `reporter`.
pub fn run_model(
    opts: &RunOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Vec<PathBuf>> {
    let (mut model, _, warnings) = load_generator(&opts.checkpoint, device)?;
    for w in warnings {
        reporter.warn(&format!("warning: {}: {w}", opts.checkpoint.display()));
    }
    let graphs: Vec<SceneGraph> = read_scene_graphs(&opts.scene_graphs_json)?;
    let encoded = encode(
        &graphs,
        &model.config.vocab,
        &opts.scene_graphs_json.display().to_string(),
    )?;
    std::fs::create_dir_all(&opts.output_dir).map_err(|e| Error::io(&opts.output_dir, e))?;
    let out = generate(&mut model, encoded, opts.seed, device)?;
    let (h, w) = out.image_size;
    let mut written = Vec::new();
    for (i, chw) in out.imgs.chunks_exact(3 * h * w).enumerate() {
        let path = opts.output_dir.join(format!("img{i:06}.png"));
        save_png_rgb(&path, &deprocess_to_u8_hwc(chw, h, w), h, w)?;
        written.push(path);
    }
    if opts.draw_scene_graphs {
        let render = crate::vis::graphviz_available();
        if !render {
            reporter.warn(
                "warning: graphviz `dot` not found: writing sg*.dot files instead of pictures",
            );
        }
        for (i, g) in out.encoded.graphs.iter().enumerate() {
            crate::vis::draw_scene_graph(g, &opts.output_dir.join(format!("sg{i:06}")), render)?;
        }
    }
    if let Some(path) = &opts.save_tensors {
        save_run_tensors(path, &out)?;
    }
    Ok(written)
}

/// `--save_tensors`: `imgs_pred (N,3,H,W)`, `boxes_pred (O,4)`, `masks_pred (O,M,M)` when the
/// model has masks, `obj_to_img (O,)` int64.
pub fn save_run_tensors(path: &Path, out: &RunOutput) -> Result<()> {
    let (h, w) = out.image_size;
    let n = out.imgs.len() / (3 * h * w).max(1);
    let o = out.boxes_pred.len();
    let mut t = IndexMap::new();
    t.insert(
        "imgs_pred".to_string(),
        RawTensor::f32(vec![n, 3, h, w], &out.imgs),
    );
    let flat: Vec<f32> = out.boxes_pred.iter().flatten().copied().collect();
    t.insert("boxes_pred".to_string(), RawTensor::f32(vec![o, 4], &flat));
    if let Some(m) = &out.masks_pred {
        t.insert(
            "masks_pred".to_string(),
            RawTensor::f32(vec![o, out.mask_size, out.mask_size], m),
        );
    }
    t.insert(
        "obj_to_img".to_string(),
        RawTensor::i64(vec![o], &out.encoded.obj_to_img),
    );
    write_safetensors(path, &t, None)
}
