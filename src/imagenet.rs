//! ImageNet normalisation of images (§14.3) and saving generated images as PNG.

use crate::Result;
use crate::io::atomic::write_atomic;
use std::path::Path;

/// Per-channel RGB mean used by the original's `imagenet_preprocess`.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel RGB standard deviation.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Converts 8-bit RGB `(H, W, 3)` to a normalised `(3, H, W)` tensor: `(u8/255 − mean)/std`
/// in float32 with true division, exactly as `ToTensor` + `Normalize` (bit-exact).
pub fn preprocess_u8_hwc(rgb: &[u8], height: usize, width: usize, normalize: bool) -> Vec<f32> {
    let mut out = vec![0f32; 3 * height * width];
    for c in 0..3 {
        let plane = &mut out[c * height * width..(c + 1) * height * width];
        for (i, v) in plane.iter_mut().enumerate() {
            let x = rgb[i * 3 + c] as f32 / 255.0;
            *v = if normalize { (x - MEAN[c]) / STD[c] } else { x };
        }
    }
    out
}

/// Converts one generated image `(3, H, W)` in normalised space to 8-bit RGB `(H, W, 3)` the way
/// `imagenet_deprocess_batch(rescale=True)` does: `x / (1/std) + mean`, min–max stretch of the
/// whole image, `×255`, clamp, truncate (§14.3, quirk 21).
pub fn deprocess_to_u8_hwc(chw: &[f32], height: usize, width: usize) -> Vec<u8> {
    let hw = height * width;
    let mut vals = vec![0f32; 3 * hw];
    for c in 0..3 {
        let inv_std = 1.0 / STD[c];
        for i in 0..hw {
            vals[c * hw + i] = chw[c * hw + i] / inv_std + MEAN[c];
        }
    }
    let (lo, hi) = vals
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let mut out = vec![0u8; 3 * hw];
    for c in 0..3 {
        for i in 0..hw {
            let x = (vals[c * hw + i] - lo) / (hi - lo);
            // `as u8` on a NaN gives 0, matching a 0/0 stretch of a constant image in torch's cast.
            out[i * 3 + c] = (x * 255.0).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Writes 8-bit RGB `(H, W, 3)` as a PNG file, atomically.
pub fn save_png_rgb(path: impl AsRef<Path>, rgb: &[u8], height: usize, width: usize) -> Result<()> {
    write_atomic(path, |w| {
        let mut encoder = png::Encoder::new(w, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deprocess_stretches_to_full_range() {
        // A 1x2 image: after deprocess the two pixels differ, so they map to 0 and 255.
        let chw = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let rgb = deprocess_to_u8_hwc(&chw, 1, 2);
        assert_eq!(rgb.iter().copied().min(), Some(0));
        assert_eq!(rgb.iter().copied().max(), Some(255));
    }

    /// Literal values of torchvision's `ToTensor` + `Normalize(MEAN, STD)` on a 1×2 image,
    /// computed independently in float32 with numpy (`(np.float32(u8) / 255 - mean) / std`);
    /// compared bit for bit, channel planes in order.
    #[test]
    fn preprocess_equals_torchvision_normalisation() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        // 4 and 3 are values where multiplying by 1/std instead of dividing changes the result.
        let rgb = [255u8, 3, 128, 4, 255, 4];
        let want = [
            2.2489083f32,
            -2.0494049,
            -1.9831933,
            2.4285715,
            0.42649257,
            -1.7347276,
        ];
        let got = preprocess_u8_hwc(&rgb, 1, 2, true);
        assert_eq!(bits(&got), bits(&want));
        let want = [
            1.0f32,
            0.015686275,
            0.011764706,
            1.0,
            0.5019608,
            0.015686275,
        ];
        let got = preprocess_u8_hwc(&rgb, 1, 2, false);
        assert_eq!(bits(&got), bits(&want));
    }
}
