//! Per-object geometry of a COCO sample (§15.4, §15.7): mask crop and resize, mask-weighted
//! centres, the predicate of an ordered pair, and the random relationship draws.

use crate::data::rle::Rle;
use crate::rng::PyRandom;

/// Predicate indices of the fixed COCO predicate vocabulary (§15.3 step 8).
pub const PRED_IN_IMAGE: i64 = 0;
pub const PRED_LEFT_OF: i64 = 1;
pub const PRED_RIGHT_OF: i64 = 2;
pub const PRED_ABOVE: i64 = 3;
pub const PRED_BELOW: i64 = 4;
pub const PRED_INSIDE: i64 = 5;
pub const PRED_SURROUNDING: i64 = 6;

/// The predicate names in index order.
pub const PRED_NAMES: [&str; 7] = [
    "__in_image__",
    "left of",
    "right of",
    "above",
    "below",
    "inside",
    "surrounding",
];

/// Crop bounds `[mx0, mx1, my0, my1]` of an annotation's box `[x, y, w, h]`:
/// `int(round(·))` with Python 3's ties-to-even, and at least one pixel each way.
pub fn crop_bounds(bbox_xywh: [f64; 4]) -> [i64; 4] {
    let [x, y, w, h] = bbox_xywh;
    let mx0 = x.round_ties_even() as i64;
    let mx1 = ((x + w).round_ties_even() as i64).max(mx0 + 1);
    let my0 = y.round_ties_even() as i64;
    let my1 = ((y + h).round_ties_even() as i64).max(my0 + 1);
    [mx0, mx1, my0, my1]
}

/// Python slice `[start:stop]` of a sequence of length `len` (negative indices count from the
/// end, everything clamped), as `(begin, end)` with `begin ≤ end`.
pub fn py_slice(start: i64, stop: i64, len: usize) -> (usize, usize) {
    let norm = |i: i64| -> usize {
        let len = len as i64;
        let i = if i < 0 { i + len } else { i };
        i.clamp(0, len) as usize
    };
    let (b, e) = (norm(start), norm(stop));
    (b, e.max(b))
}

/// The crop `full[my0:my1, mx0:mx1]` of a row-major `hh×ww` 0/1 mask, row-major, with its
/// `(h, w)`.
fn crop(full: &[u8], hh: usize, ww: usize, b: [i64; 4]) -> (Vec<u8>, usize, usize) {
    let (x0, x1) = py_slice(b[0], b[1], ww);
    let (y0, y1) = py_slice(b[2], b[3], hh);
    let (h, w) = (y1 - y0, x1 - x0);
    let mut out = Vec::with_capacity(h * w);
    for y in y0..y1 {
        out.extend_from_slice(&full[y * ww + x0..y * ww + x1]);
    }
    (out, h, w)
}

/// The same crop taken straight from an RLE (column-major runs), without decoding the whole
/// mask: only the runs inside the crop's columns are visited.
pub fn crop_rle(rle: &Rle, b: [i64; 4]) -> (Vec<u8>, usize, usize) {
    let (hh, ww) = (rle.h, rle.w);
    let (x0, x1) = py_slice(b[0], b[1], ww);
    let (y0, y1) = py_slice(b[2], b[3], hh);
    let (h, w) = (y1 - y0, x1 - x0);
    let mut out = vec![0u8; h * w];
    if h == 0 || w == 0 {
        return (out, h, w);
    }
    let (lo, hi) = (x0 * hh, x1 * hh);
    let mut pos = 0usize;
    for (i, &c) in rle.counts.iter().enumerate() {
        let end = (pos + c as usize).min(hh * ww);
        if i % 2 == 1 && end > lo && pos < hi {
            for p in pos.max(lo)..end.min(hi) {
                let (x, y) = (p / hh, p % hh);
                if (y0..y1).contains(&y) {
                    out[(y - y0) * w + (x - x0)] = 1;
                }
            }
        }
        pos = end;
        if pos >= hi {
            break;
        }
    }
    (out, h, w)
}

/// scikit-image 0.14 `resize(255.0 * crop, (M, M), mode="constant")` (§15.7) in float64:
/// pixel-centre-aligned bilinear sampling, outside pixels read 0, output clipped to the
/// input's range except that exact zeros survive when 0 is outside it. Returns the `M×M`
/// pre-threshold values (0..255 scale).
///
/// An empty crop (the original raises there) gives all zeros.
pub fn resize_crop(crop: &[u8], h: usize, w: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * m];
    if h == 0 || w == 0 {
        return out;
    }
    let px = |r: i64, c: i64| -> f64 {
        if r < 0 || c < 0 || r >= h as i64 || c >= w as i64 {
            0.0
        } else {
            255.0 * crop[r as usize * w + c as usize] as f64
        }
    };
    let (row_scale, col_scale) = (h as f64 / m as f64, w as f64 / m as f64);
    for r in 0..m {
        let y = (r as f64 + 0.5) * row_scale - 0.5;
        let (minr, maxr) = (y.floor() as i64, y.ceil() as i64);
        let dr = y - minr as f64;
        for c in 0..m {
            let x = (c as f64 + 0.5) * col_scale - 0.5;
            let (minc, maxc) = (x.floor() as i64, x.ceil() as i64);
            let dc = x - minc as f64;
            let top = (1.0 - dc) * px(minr, minc) + dc * px(minr, maxc);
            let bottom = (1.0 - dc) * px(maxr, minc) + dc * px(maxr, maxc);
            out[r * m + c] = (1.0 - dr) * top + dr * bottom;
        }
    }
    let any_one = crop.contains(&1);
    let any_zero = crop.contains(&0);
    let (lo, hi) = (
        if any_zero { 0.0 } else { 255.0 },
        if any_one { 255.0 } else { 0.0 },
    );
    // 0 (the constant-mode fill value) is outside [lo, hi] only for an all-ones crop.
    let preserve_zero = lo > 0.0;
    for v in out.iter_mut() {
        if !(preserve_zero && *v == 0.0) {
            *v = v.clamp(lo, hi);
        }
    }
    out
}

/// Crops a full-resolution row-major `hh×ww` 0/1 mask to an annotation's box (Python
/// rounding and slicing) and resizes it to `m×m` as the original does. Returns the binarised
/// mask (`> 128`) and the pre-threshold values.
pub fn crop_and_resize_mask(
    full: &[u8],
    hh: usize,
    ww: usize,
    bbox_xywh: [f64; 4],
    m: usize,
) -> (Vec<u8>, Vec<f64>) {
    let (c, h, w) = crop(full, hh, ww, crop_bounds(bbox_xywh));
    let resized = resize_crop(&c, h, w, m);
    (threshold(&resized), resized)
}

/// `> 128` → 1.
pub fn threshold(resized: &[f64]) -> Vec<u8> {
    resized.iter().map(|&v| (v > 128.0) as u8).collect()
}

/// Mask-weighted object centres (§15.4 step 4): the mean `(x, y)` of the mask pixels set,
/// where column `c` lies at `x0 + (x1−x0)·c/(M−1)` and row `r` at `y0 + (y1−y0)·r/(M−1)`;
/// the box centre for an empty mask (or `M = 0`).
///
/// Computed in float64 and rounded to float32 (the original uses float32 `linspace` and
/// `mean`; the difference is below 1e-6, far from any predicate sector boundary).
///
/// # Shapes
/// `boxes` (O, 4), `masks` (O, M, M) → (O, 2).
pub fn object_centers(boxes: &[[f32; 4]], masks: &[u8], m: usize) -> Vec<[f32; 2]> {
    boxes
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let [x0, y0, x1, y1] = *b;
            let mask = &masks[k * m * m..(k + 1) * m * m];
            let lin = |a: f32, b: f32, i: usize| -> f64 {
                if m == 1 {
                    a as f64
                } else {
                    a as f64 + (b as f64 - a as f64) * i as f64 / (m - 1) as f64
                }
            };
            let (mut sx, mut sy, mut n) = (0f64, 0f64, 0usize);
            for r in 0..m {
                for c in 0..m {
                    if mask[r * m + c] == 1 {
                        sx += lin(x0, x1, c);
                        sy += lin(y0, y1, r);
                        n += 1;
                    }
                }
            }
            if n == 0 {
                [0.5 * (x0 + x1), 0.5 * (y0 + y1)]
            } else {
                [(sx / n as f64) as f32, (sy / n as f64) as f32]
            }
        })
        .collect()
}

/// The predicate the original assigns to the ordered pair (s, o) (§15.4 step 5): strict box
/// containment first, then the angle sector of the float32 centre difference.
pub fn predicate_for(
    s_box: [f32; 4],
    o_box: [f32; 4],
    s_center: [f32; 2],
    o_center: [f32; 2],
) -> i64 {
    let [sx0, sy0, sx1, sy1] = s_box;
    let [ox0, oy0, ox1, oy1] = o_box;
    if sx0 < ox0 && sx1 > ox1 && sy0 < oy0 && sy1 > oy1 {
        return PRED_SURROUNDING;
    }
    if sx0 > ox0 && sx1 < ox1 && sy0 > oy0 && sy1 < oy1 {
        return PRED_INSIDE;
    }
    let dx = s_center[0] - o_center[0];
    let dy = s_center[1] - o_center[1];
    let theta = (dy as f64).atan2(dx as f64);
    use std::f64::consts::PI;
    if theta >= 3.0 * PI / 4.0 || theta <= -3.0 * PI / 4.0 {
        PRED_LEFT_OF
    } else if theta < -PI / 4.0 {
        PRED_ABOVE
    } else if theta < PI / 4.0 {
        PRED_RIGHT_OF
    } else {
        PRED_BELOW
    }
}

/// The sample's triples (§15.4 steps 5–6): one random geometric triple per real object (when
/// there are at least two and relationships are on), drawn exactly as the original draws them
/// (`random.choice` of the partner, then `random.random() > 0.5` for the direction), then
/// `[k, __in_image__, O−1]` for every real object. The last object is `__image__`.
///
/// # Shapes
/// `boxes` (O, 4), `centers` (O, 2) → (T, 3).
pub fn draw_relationships(
    boxes: &[[f32; 4]],
    centers: &[[f32; 2]],
    include_relationships: bool,
    rng: &mut PyRandom,
) -> Vec<[i64; 3]> {
    let o = boxes.len();
    let mut triples = Vec::new();
    if o > 1 {
        let real = o - 1;
        let mut choices: Vec<usize> = Vec::with_capacity(real);
        for cur in 0..real {
            choices.clear();
            choices.extend((0..real).filter(|&k| k != cur));
            if choices.is_empty() || !include_relationships {
                break;
            }
            let other = *rng.choice(&choices).expect("choices is not empty");
            let (s, ob) = if rng.random() > 0.5 {
                (cur, other)
            } else {
                (other, cur)
            };
            let p = predicate_for(boxes[s], boxes[ob], centers[s], centers[ob]);
            triples.push([s as i64, p, ob as i64]);
        }
    }
    for k in 0..o.saturating_sub(1) {
        triples.push([k as i64, PRED_IN_IMAGE, o as i64 - 1]);
    }
    triples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_and_slicing() {
        assert_eq!(crop_bounds([12.5, 13.5, 0.0, 0.2]), [12, 13, 14, 15]);
        assert_eq!(py_slice(-1, 3, 10), (9, 9));
        assert_eq!(py_slice(2, 30, 10), (2, 10));
        assert_eq!(py_slice(-20, -8, 10), (0, 2));
    }

    #[test]
    fn all_ones_crop_resizes_to_255_except_exact_zeros() {
        // A 1×1 crop of ones upscaled to 4×4: samples at −0.375…0.375 mix in the zero border,
        // then everything non-zero is clipped up to 255.
        let r = resize_crop(&[1], 1, 1, 4);
        assert!(r.iter().all(|&v| v == 255.0), "{r:?}");
        let r = resize_crop(&[0, 1, 1, 1], 2, 2, 2);
        assert_eq!(r, vec![0.0, 255.0, 255.0, 255.0]);
    }

    #[test]
    fn crop_from_rle_equals_crop_of_decoded_mask() {
        let (h, w) = (7, 9);
        let col: Vec<u8> = (0..h * w)
            .map(|i| ((i * 7 + i / 5) % 3 == 0) as u8)
            .collect();
        let rle = crate::data::rle::encode(&col, h, w);
        let full = crate::data::rle::decode_row_major(&rle);
        for b in [
            [1, 5, 2, 6],
            [-2, 4, 0, 9],
            [3, 4, 6, 7],
            [8, 12, -1, 3],
            [9, 10, 0, 2],
        ] {
            assert_eq!(crop_rle(&rle, b), crop(&full, h, w, b), "{b:?}");
        }
    }

    #[test]
    fn predicate_sectors() {
        let b = [0.1, 0.1, 0.2, 0.2];
        let c = |x, y| predicate_for(b, b, [x, y], [0.0, 0.0]);
        assert_eq!(c(-1.0, 0.0), PRED_LEFT_OF);
        assert_eq!(c(1.0, 0.0), PRED_RIGHT_OF);
        assert_eq!(c(0.0, -1.0), PRED_ABOVE);
        assert_eq!(c(0.0, 1.0), PRED_BELOW);
        assert_eq!(c(0.0, 0.0), PRED_RIGHT_OF);
        let big = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(predicate_for(big, b, [0.0; 2], [0.0; 2]), PRED_SURROUNDING);
        assert_eq!(predicate_for(b, big, [0.0; 2], [0.0; 2]), PRED_INSIDE);
    }
}
