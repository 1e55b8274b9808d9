//! Scene layout from boxes and masks (`layout.py`, §6): every object's vector, times its mask,
//! is warped into its box on an `H×W` canvas, and the canvases of one image are summed.

use crate::model::bilinear::{box_to_canvas_weights, tensor3};
use burn::tensor::{Tensor, TensorData};

/// `boxes_to_layout(vecs, boxes, obj_to_img, H, W)` (§6.3): the source of each object is its
/// vector on a constant **8×8** map, so edges ramp to zero over 1/7 of the box (quirk §23.6).
///
/// # Shapes
/// `vecs (O, D)`, `boxes (O, 4)`, `obj_to_img (O,)` → `(N, D, H, W)`.
pub fn boxes_to_layout(
    vecs: Tensor<2>,
    boxes: &[[f32; 4]],
    obj_to_img: &[i64],
    num_images: usize,
    (h, w): (usize, usize),
) -> Tensor<4> {
    let o = boxes.len();
    let device = vecs.device();
    let (wy, wxt) = box_to_canvas_weights(boxes, h, w, 8);
    // Sampling a constant map is the outer product of the two weight row sums.
    let ry: Vec<f32> = wy.chunks(8).map(|r| r.iter().sum()).collect(); // (O·H)
    let mut rx = vec![0f32; o * w];
    for k in 0..o {
        for c in 0..8 {
            for j in 0..w {
                rx[k * w + j] += wxt[(k * 8 + c) * w + j];
            }
        }
    }
    let ry = tensor3(ry, [o, h, 1], &device);
    let rx = tensor3(rx, [o, 1, w], &device);
    let sampled = ry.matmul(rx); // (O, H, W)
    pool_per_image(vecs, sampled, obj_to_img, num_images)
}

/// `masks_to_layout(vecs, boxes, masks, obj_to_img, H, W)` (§6.4): the source of each object is
/// `vec ⊗ mask`, sampled into its box. Differentiable with respect to `vecs` and `masks`.
///
/// # Shapes
/// `vecs (O, D)`, `boxes (O, 4)`, `masks (O, M, M)`, `obj_to_img (O,)` → `(N, D, H, W)`.
pub fn masks_to_layout(
    vecs: Tensor<2>,
    boxes: &[[f32; 4]],
    masks: Tensor<3>,
    obj_to_img: &[i64],
    num_images: usize,
    (h, w): (usize, usize),
) -> Tensor<4> {
    let [o, m, _] = masks.dims();
    let device = vecs.device();
    let (wy, wxt) = box_to_canvas_weights(boxes, h, w, m);
    let wy = tensor3(wy, [o, h, m], &device);
    let wxt = tensor3(wxt, [o, m, w], &device);
    let sampled = wy.matmul(masks).matmul(wxt); // (O, H, W)
    pool_per_image(vecs, sampled, obj_to_img, num_images)
}

/// Sum pooling of per-object canvases (§6.5): `layout[n] = Σ_{o ∈ n} vecs[o] ⊗ sampled[o]`,
/// computed per image as one `(D, O_n) × (O_n, H·W)` product (objects of an image are
/// contiguous in a packed batch, §2.3).
///
/// # Shapes
/// `vecs (O, D)`, `sampled (O, H, W)` → `(N, D, H, W)`.
fn pool_per_image(
    vecs: Tensor<2>,
    sampled: Tensor<3>,
    obj_to_img: &[i64],
    num_images: usize,
) -> Tensor<4> {
    let [o, d] = vecs.dims();
    let [_, h, w] = sampled.dims();
    let device = vecs.device();
    let sampled = sampled.reshape([o, h * w]);
    let contiguous = obj_to_img.windows(2).all(|p| p[0] <= p[1]);
    let mut per_image = Vec::with_capacity(num_images);
    if contiguous {
        let mut start = 0;
        for n in 0..num_images {
            let mut end = start;
            while end < o && obj_to_img[end] as usize == n {
                end += 1;
            }
            per_image.push(if end > start {
                let v = vecs.clone().slice([start..end, 0..d]).transpose();
                let s = sampled.clone().slice([start..end, 0..h * w]);
                v.matmul(s).reshape([1, d, h, w])
            } else {
                Tensor::zeros([1, d, h, w], &device)
            });
            start = end;
        }
    } else {
        // Unordered objects (only possible through the library API): weight by a one-hot mask.
        for n in 0..num_images {
            let sel: Vec<f32> = obj_to_img
                .iter()
                .map(|&i| if i as usize == n { 1.0 } else { 0.0 })
                .collect();
            let sel: Tensor<2> = Tensor::from_data(TensorData::new(sel, [o, 1]), &device);
            let v = (vecs.clone() * sel).transpose();
            per_image.push(v.matmul(sampled.clone()).reshape([1, d, h, w]));
        }
    }
    Tensor::cat(per_image, 0)
}
