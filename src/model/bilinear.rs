//! Bilinear sampling with PyTorch 0.4 `grid_sample` semantics (bilinear, zero padding,
//! corner-aligned; §6.2, §9) expressed as interpolation matrices.
//!
//! Every grid sg2im builds is separable: the x coordinate of a sample depends only on the output
//! column and the y coordinate only on the output row. Sampling a source `S (Hin×Win)` is then
//! `Wy · S · Wxᵀ`, where `Wy (Hout×Hin)` and `Wx (Wout×Win)` hold the two 1-D bilinear weights of
//! each output row / column (at most two non-zeros, out-of-range taps dropped = zero padding).
//! That is the same arithmetic as `grid_sample` up to float rounding, runs as batched matrix
//! products (fast on every backend), and is differentiable with respect to the source. Box
//! coordinates are data here (ground-truth boxes during training), so no gradient flows to them.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// `torch.linspace(start, end, steps)` in float32 as PyTorch's CPU kernel computes it: the first
/// half counts up from `start`, the second half down from `end`.
pub fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - 1 - i) as f32
            }
        })
        .collect()
}

/// Writes the 1-D bilinear weights of one sample at normalised grid coordinate `g ∈ [−1, 1]`
/// (corner-aligned) into `row` (length `size` = source length). Taps outside `[0, size−1]` are
/// dropped, which is `grid_sample`'s zero padding.
pub fn push_weights(g: f32, size: usize, row: &mut [f32]) {
    // PyTorch's CPU kernel: ix = (g + 1) * ((size - 1) / 2).
    let ix = (g + 1.0) * ((size as f32 - 1.0) / 2.0);
    if !ix.is_finite() {
        // A degenerate box (zero width) divides by zero; the original then produces NaN
        // (quirk §23.31). Propagate it instead of silently sampling nothing.
        row.iter_mut().for_each(|w| *w = f32::NAN);
        return;
    }
    let a = ix.floor();
    let wb = ix - a;
    let wa = 1.0 - wb;
    let a = a as i64;
    if a >= 0 && (a as usize) < size {
        row[a as usize] += wa;
    }
    if a + 1 >= 0 && ((a + 1) as usize) < size {
        row[(a + 1) as usize] += wb;
    }
}

/// Interpolation matrices for placing each object's `src×src` source into its box on an `H×W`
/// canvas (`layout.py`, §6.1): returns `Wy (O, H, src)` and `Wxᵀ (O, src, W)` as flat vectors.
pub fn box_to_canvas_weights(
    boxes: &[[f32; 4]],
    h: usize,
    w: usize,
    src: usize,
) -> (Vec<f32>, Vec<f32>) {
    let xs = linspace(0.0, 1.0, w);
    let ys = linspace(0.0, 1.0, h);
    let o = boxes.len();
    let mut wy = vec![0f32; o * h * src];
    let mut wxt = vec![0f32; o * src * w];
    let mut row = vec![0f32; src];
    for (k, b) in boxes.iter().enumerate() {
        let (x0, y0, x1, y1) = (b[0], b[1], b[2], b[3]);
        let (ww, hh) = (x1 - x0, y1 - y0);
        for (i, &y) in ys.iter().enumerate() {
            row.fill(0.0);
            push_weights(((y - y0) / hh) * 2.0 - 1.0, src, &mut row);
            wy[(k * h + i) * src..(k * h + i + 1) * src].copy_from_slice(&row);
        }
        for (j, &x) in xs.iter().enumerate() {
            row.fill(0.0);
            push_weights(((x - x0) / ww) * 2.0 - 1.0, src, &mut row);
            for (c, &v) in row.iter().enumerate() {
                wxt[(k * src + c) * w + j] = v;
            }
        }
    }
    (wy, wxt)
}

/// Interpolation matrices for cropping each box out of an `H×W` image into `hh×ww`
/// (`bilinear.crop_bbox`, "cudnn" path, §9.2): returns `Wy (B, hh, H)` and `Wxᵀ (B, W, ww)`.
pub fn crop_weights(
    boxes: &[[f32; 4]],
    h: usize,
    w: usize,
    hh: usize,
    ww: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (x_start, x_end) = (linspace(1.0, 0.0, ww), linspace(0.0, 1.0, ww));
    let (y_start, y_end) = (linspace(1.0, 0.0, hh), linspace(0.0, 1.0, hh));
    let nb = boxes.len();
    let mut wy = vec![0f32; nb * hh * h];
    let mut wxt = vec![0f32; nb * w * ww];
    let mut row_y = vec![0f32; h];
    let mut row_x = vec![0f32; w];
    for (k, b) in boxes.iter().enumerate() {
        // Boxes go from [0, 1] to [-1, 1] first: b' = 2b - 1.
        let (x0, y0, x1, y1) = (
            2.0 * b[0] - 1.0,
            2.0 * b[1] - 1.0,
            2.0 * b[2] - 1.0,
            2.0 * b[3] - 1.0,
        );
        for r in 0..hh {
            row_y.fill(0.0);
            push_weights(y_start[r] * y0 + y_end[r] * y1, h, &mut row_y);
            wy[(k * hh + r) * h..(k * hh + r + 1) * h].copy_from_slice(&row_y);
        }
        for c in 0..ww {
            row_x.fill(0.0);
            push_weights(x_start[c] * x0 + x_end[c] * x1, w, &mut row_x);
            for (col, &v) in row_x.iter().enumerate() {
                wxt[(k * w + col) * ww + c] = v;
            }
        }
    }
    (wy, wxt)
}

/// `crop_bbox_batch(feats, bbox, bbox_to_feats, HH)` (§9.1): crops every box out of its image.
///
/// # Shapes
/// `feats (N, C, H, W)`, `boxes (B, 4)`, `box_to_img (B,)` → `(B, C, HH, WW)`.
pub fn crop_bbox_batch(
    feats: Tensor<4>,
    boxes: &[[f32; 4]],
    box_to_img: Tensor<1, Int>,
    hh: usize,
    ww: usize,
) -> Tensor<4> {
    let [_, c, h, w] = feats.dims();
    let b = boxes.len();
    let device = feats.device();
    let (wy, wxt) = crop_weights(boxes, h, w, hh, ww);
    let wy: Tensor<3> = Tensor::from_data(TensorData::new(wy, [b, hh, h]), &device);
    let wxt: Tensor<3> = Tensor::from_data(TensorData::new(wxt, [b, w, ww]), &device);
    let per_box = feats.select(0, box_to_img); // (B, C, H, W)
    let x = per_box.reshape([b, c * h, w]).matmul(wxt); // (B, C·H, WW)
    let x = x.reshape([b * c, h, ww]);
    let wy = wy
        .unsqueeze_dim::<4>(1)
        .repeat_dim(1, c)
        .reshape([b * c, hh, h]);
    wy.matmul(x).reshape([b, c, hh, ww])
}

/// Creates a device tensor from host data.
pub(crate) fn tensor3(data: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_of_spec_6_6() {
        // W = 64, box x0 = 0.25, x1 = 0.75, M = 16.
        let (_, wxt) = box_to_canvas_weights(&[[0.25, 0.0, 0.75, 1.0]], 64, 64, 16);
        let col = |j: usize| -> Vec<f32> { (0..16).map(|c| wxt[c * 64 + j]).collect() };
        // j = 15: ix ≈ −0.357 → weight 0.643 on column 0 only.
        let c15 = col(15);
        assert!((c15[0] - 0.643).abs() < 1e-3, "{c15:?}");
        assert!(c15[1..].iter().all(|&v| v == 0.0));
        // j = 48: ix ≈ 15.357 → weight 0.643 on column 15.
        let c48 = col(48);
        assert!((c48[15] - 0.643).abs() < 1e-3, "{c48:?}");
        // j = 16: ix ≈ 0.119.
        let c16 = col(16);
        assert!((c16[0] - 0.881).abs() < 1e-3 && (c16[1] - 0.119).abs() < 1e-3);
        assert!(col(0).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn full_box_reproduces_source_exactly() {
        // Box [0,0,1,1] with H = W = M samples the source pixel centres exactly.
        let (wy, _) = box_to_canvas_weights(&[[0.0, 0.0, 1.0, 1.0]], 8, 8, 8);
        for i in 0..8 {
            for r in 0..8 {
                let want = if i == r { 1.0 } else { 0.0 };
                assert!((wy[i * 8 + r] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn linspace_matches_endpoints() {
        let v = linspace(0.0, 1.0, 5);
        assert_eq!(v, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace(1.0, 0.0, 3), vec![1.0, 0.5, 0.0]);
    }
}
