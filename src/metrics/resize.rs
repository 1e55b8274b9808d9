//! torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x(x, size, align_corners=False)`
//! ("slow" method, bit-exact with TensorFlow 1.x on the CPU) followed by `(x − 128) / 128`.
//!
//! TensorFlow 1.x without `align_corners` maps output pixel `d` to source coordinate
//! `d · (in/out)` (no half-pixel offset); torch-fidelity computes it in float32 as
//! `arange(out) · float32(in/out)`, `lo = trunc`, `hi = min(lo + 1, in − 1)`, `frac = x − lo`,
//! then interpolates along x, then along y, all in float32 on the 0–255 values. Every step below
//! is the same float32 operation in the same order.

/// Output side of the Inception input.
pub const INCEPTION_SIZE: usize = 299;

/// Source indices and weights along one axis.
struct Axis {
    lo: Vec<usize>,
    hi: Vec<usize>,
    frac: Vec<f32>,
}

impl Axis {
    fn new(input: usize, output: usize) -> Self {
        // Python float `in / out`, then `torch.tensor(scale, dtype=float32)`.
        let scale = (input as f64 / output as f64) as f32;
        let mut axis = Axis {
            lo: Vec::with_capacity(output),
            hi: Vec::with_capacity(output),
            frac: Vec::with_capacity(output),
        };
        for d in 0..output {
            let x = d as f32 * scale;
            let lo = x as usize;
            axis.lo.push(lo);
            axis.hi.push((lo + 1).min(input - 1));
            axis.frac.push(x - lo as f32);
        }
        axis
    }
}

/// One uint8 RGB image `(H, W, 3)` (interleaved) resized to `out × out` and normalised, written
/// channel-major to `dst`: `dst[c][y][x]`, i.e. `(3, out, out)`; `dst.len() == 3·out²`.
/// `h, w ≥ 1`.
pub fn resize_normalize(rgb: &[u8], h: usize, w: usize, out: usize, dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), 3 * out * out);
    let (r, gb) = dst.split_at_mut(out * out);
    let (g, b) = gb.split_at_mut(out * out);
    resize_normalize_planes(rgb, h, w, out, [r, g, b]);
}

/// [`resize_normalize`] into three separate `out × out` planes (R, G, B), e.g. an image's
/// planes in a channel-major batch `(3, N, out, out)`.
pub fn resize_normalize_planes(rgb: &[u8], h: usize, w: usize, out: usize, dst: [&mut [f32]; 3]) {
    debug_assert_eq!(rgb.len(), h * w * 3);
    let ax = Axis::new(w, out);
    let ay = Axis::new(h, out);
    let px = |y: usize, x: usize, c: usize| f32::from(rgb[(y * w + x) * 3 + c]);
    for (c, plane) in dst.into_iter().enumerate() {
        debug_assert_eq!(plane.len(), out * out);
        for (oy, row) in plane.chunks_exact_mut(out).enumerate() {
            let (y0, y1, dy) = (ay.lo[oy], ay.hi[oy], ay.frac[oy]);
            for (ox, d) in row.iter_mut().enumerate() {
                let (x0, x1, dx) = (ax.lo[ox], ax.hi[ox], ax.frac[ox]);
                let (v00, v01) = (px(y0, x0, c), px(y0, x1, c));
                let (v10, v11) = (px(y1, x0, c), px(y1, x1, c));
                let top = v00 + (v01 - v00) * dx;
                let bottom = v10 + (v11 - v10) * dx;
                let v = top + (bottom - top) * dy;
                *d = (v - 128.0) / 128.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_keeps_pixels() {
        let sq: Vec<u8> = (0..4 * 4 * 3).map(|v| (v * 7 % 256) as u8).collect();
        let mut dst = vec![0.0; 3 * 4 * 4];
        resize_normalize(&sq, 4, 4, 4, &mut dst);
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    let want = (f32::from(sq[(y * 4 + x) * 3 + c]) - 128.0) / 128.0;
                    assert_eq!(dst[c * 16 + y * 4 + x], want);
                }
            }
        }
    }

    #[test]
    fn upsampling_interpolates_without_half_pixel_offset() {
        // 2×2 → 4×4: source coordinate d·0.5, the last column/row clamps to the edge.
        let v = [0u8, 100, 200, 40];
        let rgb: Vec<u8> = v.iter().flat_map(|&g| [g, g, g]).collect();
        let mut dst = vec![0.0; 3 * 16];
        resize_normalize(&rgb, 2, 2, 4, &mut dst);
        let got: Vec<f32> = dst[..16].iter().map(|x| x * 128.0 + 128.0).collect();
        let want = [
            0.0, 50.0, 100.0, 100.0, 100.0, 85.0, 70.0, 70.0, 200.0, 120.0, 40.0, 40.0, 200.0,
            120.0, 40.0, 40.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{got:?}");
        }
    }
}
