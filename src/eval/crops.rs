//! Object crops of an image at a box: what SceneFID and the object classifier look at.
//!
//! Images are `(H, W, 3)` uint8 RGB (as written to `samples/` and `real/`); boxes are
//! `[x0, y0, x1, y1]` in normalised image coordinates, as the datasets give them.

/// The pixel rectangle `(x0, y0, x1, y1)` (exclusive ends) that box `b` covers in an `h × w`
/// image: the box's edges rounded down (start) and up (end), clamped to the image, and at
/// least one pixel wide and high, so every object has a crop however small its box.
pub fn pixel_box(b: &[f32; 4], h: usize, w: usize) -> (usize, usize, usize, usize) {
    let span = |lo: f32, hi: f32, n: usize| {
        let n_f = n as f32;
        let a = (lo.clamp(0.0, 1.0) * n_f).floor() as usize;
        let a = a.min(n - 1);
        let b = ((hi.clamp(0.0, 1.0) * n_f).ceil() as usize).clamp(a + 1, n);
        (a, b)
    };
    let (x0, x1) = span(b[0], b[2], w);
    let (y0, y1) = span(b[1], b[3], h);
    (x0, y0, x1, y1)
}

/// The crop of `rgb` (`(H, W, 3)` uint8) at box `b`, at the image's own resolution:
/// `(pixels (h', w', 3), h', w')`. SceneFID writes these as they are and lets the Inception
/// resize each (as torch-fidelity resizes every image of a folder).
pub fn crop_u8(rgb: &[u8], h: usize, w: usize, b: &[f32; 4]) -> (Vec<u8>, usize, usize) {
    let (x0, y0, x1, y1) = pixel_box(b, h, w);
    let mut out = Vec::with_capacity((y1 - y0) * (x1 - x0) * 3);
    for y in y0..y1 {
        out.extend_from_slice(&rgb[(y * w + x0) * 3..(y * w + x1) * 3]);
    }
    (out, y1 - y0, x1 - x0)
}

/// The region of `rgb` (`(H, W, 3)` uint8) under box `b` resampled to `size × size`, as
/// `(3, size, size)` floats in `[0, 1]`: bilinear sampling at the centres of the output pixels
/// mapped into the box's continuous extent (half-pixel centres, edge pixels clamped), the
/// same rule as `torchvision.ops.roi_align` with one sample per bin. Unlike [`crop_u8`] the box
/// is not rounded to whole pixels, so a crop does not jump as a box moves by a fraction of a
/// pixel. A degenerate box (zero width or height) samples a line or a point.
pub fn crop_resized(rgb: &[u8], h: usize, w: usize, b: &[f32; 4], size: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * size * size];
    let (bx0, by0) = (b[0].clamp(0.0, 1.0) * w as f32, b[1].clamp(0.0, 1.0) * h as f32);
    let (bx1, by1) = (b[2].clamp(0.0, 1.0) * w as f32, b[3].clamp(0.0, 1.0) * h as f32);
    let (bw, bh) = ((bx1 - bx0).max(0.0), (by1 - by0).max(0.0));
    // Source coordinate (in pixel-centre units) of output index i along one axis.
    let coord = |i: usize, start: f32, len: f32, n: usize| -> (usize, usize, f32) {
        let s = start + (i as f32 + 0.5) * len / size as f32 - 0.5;
        let s = s.clamp(0.0, (n - 1) as f32);
        let lo = s.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        (lo, hi, s - lo as f32)
    };
    let plane = size * size;
    for oy in 0..size {
        let (y0, y1, fy) = coord(oy, by0, bh, h);
        for ox in 0..size {
            let (x0, x1, fx) = coord(ox, bx0, bw, w);
            for c in 0..3 {
                let px = |y: usize, x: usize| f32::from(rgb[(y * w + x) * 3 + c]);
                let top = px(y0, x0) * (1.0 - fx) + px(y0, x1) * fx;
                let bottom = px(y1, x0) * (1.0 - fx) + px(y1, x1) * fx;
                out[c * plane + oy * size + ox] = (top * (1.0 - fy) + bottom * fy) / 255.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×6 image whose red channel is the pixel's index, green 2×, blue 0.
    fn image() -> Vec<u8> {
        (0..24u8).flat_map(|i| [i, 2 * i, 0]).collect()
    }

    #[test]
    fn pixel_box_rounds_outwards_and_keeps_one_pixel() {
        assert_eq!(pixel_box(&[0.0, 0.0, 1.0, 1.0], 4, 6), (0, 0, 6, 4));
        // x: 0.2·6 = 1.2 → 1, 0.5·6 = 3 → 3; y: 0.3·4 = 1.2 → 1, 0.6·4 = 2.4 → 3.
        assert_eq!(pixel_box(&[0.2, 0.3, 0.5, 0.6], 4, 6), (1, 1, 3, 3));
        // Degenerate and out-of-range boxes still give one pixel inside the image.
        assert_eq!(pixel_box(&[1.0, 1.0, 1.0, 1.0], 4, 6), (5, 3, 6, 4));
        assert_eq!(pixel_box(&[-0.5, 0.5, -0.2, 0.5], 4, 6), (0, 2, 1, 3));
    }

    #[test]
    fn crop_u8_copies_the_rows_of_the_box() {
        let (px, ch, cw) = crop_u8(&image(), 4, 6, &[0.2, 0.3, 0.5, 0.6]);
        assert_eq!((ch, cw), (2, 2));
        let red: Vec<u8> = px.chunks(3).map(|p| p[0]).collect();
        assert_eq!(red, vec![7, 8, 13, 14]);
    }

    #[test]
    fn crop_resized_of_the_whole_image_at_its_size_is_the_image() {
        let img = image();
        let out = crop_resized(&img, 4, 6, &[0.0, 0.0, 1.0, 1.0], 4);
        // Width 6 → 4 samples at x = 0.25, 1.75, 3.25, 4.75; row y = 0 exactly.
        let expect = [0.25f32, 1.75, 3.25, 4.75];
        for (ox, e) in expect.iter().enumerate() {
            assert!((out[ox] * 255.0 - e).abs() < 1e-4, "{ox}: {}", out[ox] * 255.0);
            // Green is twice red.
            assert!((out[16 + ox] * 255.0 - 2.0 * e).abs() < 1e-4);
        }
        // Last row: y = 3 → red = 18 + x.
        assert!((out[12] * 255.0 - 18.25).abs() < 1e-4);
        assert!(out[32..].iter().all(|&v| v == 0.0));
    }
}
