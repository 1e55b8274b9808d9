//! Image loading as the original datasets do it: `PIL.Image.open` → `.convert("RGB")` →
//! `.resize((W, H), Image.BILINEAR)` → `ToTensor` → ImageNet normalisation (§14.3, §21.6).
//!
//! JPEG decoding uses the `mozjpeg` crate, which compiles mozjpeg's C sources (a fork of
//! libjpeg-turbo) with `cc`: with libjpeg's defaults (islow integer IDCT, fancy chroma
//! upsampling) it reproduces Pillow 13 / libjpeg-turbo 3.2 bit-exactly — all 37 JPEGs of the
//! coco_loader fixtures (baseline 4:2:0, 4:4:4 and grayscale) match `decoded_rgb_sha256`,
//! whereas `zune-jpeg` 0.5 and `jpeg-decoder` 0.3 matched none of them (up to ±16 and ±3
//! levels). PNG files are read with the `png` crate. The resize is a port of Pillow's
//! `Resample.c`, so `image_u8` of the fixtures is reproduced exactly.

use crate::{Error, Result};
use std::path::Path;

/// Why an image could not be used: the file is missing/unreadable, or its content is not a
/// decodable image. Loaders skip items with [`ImageError::Corrupt`] and count them.
#[derive(Debug)]
pub enum ImageError {
    Io(std::io::Error),
    Corrupt(String),
}

/// Loads an image file as 8-bit RGB, `(H, W, 3)` row-major, as Pillow's `.convert("RGB")` gives
/// it: grayscale replicated to three channels, alpha dropped, palettes expanded.
///
/// Returns `(rgb, width, height)`.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<(Vec<u8>, usize, usize)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes).map_err(|msg| Error::invalid(format!("{}: {msg}", path.display())))
}

/// Decodes JPEG or PNG bytes (detected by their signature) to 8-bit RGB; see [`load_rgb`].
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<(Vec<u8>, usize, usize), String> {
    if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else {
        Err("not a JPEG or PNG file (unknown signature)".into())
    }
}

thread_local! {
    /// Set by [`jpeg_warning`] when libjpeg ran out of data (truncated file).
    static JPEG_TRUNCATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// libjpeg's formatted text for the message in `cinfo.err`.
fn jpeg_message(cinfo: &mut mozjpeg_sys::jpeg_common_struct) -> String {
    // SAFETY: libjpeg installs `err` before any message; `format_message` writes at most
    // JMSG_LENGTH_MAX (80) bytes, NUL-terminated. The binding declares the buffer `&[u8; 80]`
    // although C writes into it, hence the pointer cast.
    unsafe {
        let Some(err) = cinfo.err.as_ref() else {
            return "libjpeg error".into();
        };
        let code = err.msg_code;
        let Some(fmt) = err.format_message else {
            return format!("libjpeg error code {code}");
        };
        let mut buffer = [0u8; 80];
        let fmt: unsafe extern "C-unwind" fn(&mut mozjpeg_sys::jpeg_common_struct, *mut u8) =
            std::mem::transmute(fmt);
        fmt(cinfo, buffer.as_mut_ptr());
        let text = buffer.split(|&c| c == 0).next().unwrap_or_default();
        String::from_utf8_lossy(text).into_owned()
    }
}

extern "C-unwind" fn jpeg_fatal(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let msg = jpeg_message(cinfo);
    // Unwinds through libjpeg back to `decode_jpeg`'s catch_unwind, as the mozjpeg crate's own
    // error manager does (without invoking the panic hook).
    std::panic::resume_unwind(Box::new(msg));
}

extern "C-unwind" fn jpeg_warning(cinfo: &mut mozjpeg_sys::jpeg_common_struct, level: i32) {
    // SAFETY: as in `jpeg_message`.
    let code = unsafe { cinfo.err.as_ref() }.map(|e| e.msg_code);
    if level < 0 && code == Some(mozjpeg_sys::JWRN_JPEG_EOF) {
        JPEG_TRUNCATED.with(|t| t.set(true));
    }
}

fn error_mgr() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: an all-zero jpeg_error_mgr is what jpeg_std_error expects to fill in.
    let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(jpeg_fatal);
    err.emit_message = Some(jpeg_warning);
    err
}

fn decode_jpeg(bytes: &[u8]) -> std::result::Result<(Vec<u8>, usize, usize), String> {
    // mozjpeg reports fatal libjpeg errors by unwinding (without the panic hook); turn them
    // back into an error so one corrupt file cannot take down a loader thread.
    JPEG_TRUNCATED.with(|t| t.set(false));
    let result = std::panic::catch_unwind(|| -> std::io::Result<_> {
        let d = mozjpeg::Decompress::with_err(error_mgr()).from_mem(bytes)?;
        let cmyk = matches!(
            d.color_space(),
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
        );
        if cmyk {
            let mut s = d.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?;
            let (w, h) = (s.width(), s.height());
            let px: Vec<u8> = s.read_scanlines()?;
            s.finish()?;
            Ok((cmyk_to_rgb(&px), w, h))
        } else {
            let mut s = d.rgb()?;
            let (w, h) = (s.width(), s.height());
            let px: Vec<u8> = s.read_scanlines()?;
            s.finish()?;
            Ok((px, w, h))
        }
    });
    match result {
        Ok(Ok(out)) => {
            if JPEG_TRUNCATED.with(|t| t.get()) {
                // Pillow refuses these ("image file is truncated") unless told otherwise.
                return Err("JPEG file is truncated".into());
            }
            Ok(out)
        }
        Ok(Err(e)) => Err(format!("cannot decode JPEG: {e}")),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".into());
            Err(format!("cannot decode JPEG: {msg}"))
        }
    }
}

/// Pillow's `cmyk2rgb` for the inverted CMYK that Adobe JPEGs store (Pillow reads them with
/// raw mode `CMYK;I`): `rgb = (255−k) − (c'·(255−k))/255` with its `MULDIV255` rounding, where
/// `c' = 255 − stored`.
fn cmyk_to_rgb(px: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(px.len() / 4 * 3);
    for p in px.chunks_exact(4) {
        let nk = p[3] as u32; // 255 − k with k = 255 − stored
        for &c in &p[..3] {
            let c = 255 - c as u32;
            out.push(nk.saturating_sub(muldiv255(c, nk)) as u8);
        }
    }
    out
}

fn decode_png(bytes: &[u8]) -> std::result::Result<(Vec<u8>, usize, usize), String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Palette → RGB(A), low bit depths → 8 bits; 16-bit samples keep their high byte (Pillow
    // would go through mode I;16 — such files do not occur in the datasets).
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("cannot decode PNG: {e}"))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "PNG image too large".to_string())?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("cannot decode PNG: {e}"))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let buf = &buf[..info.buffer_size()];
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf.to_vec(),
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&v| [v, v, v]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        png::ColorType::Indexed => return Err("PNG palette was not expanded".into()),
    };
    Ok((rgb, w, h))
}

/// Fixed-point precision of Pillow's 8-bit resampling (`PRECISION_BITS = 32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's `precompute_coeffs` for the bilinear (triangle, support 1) filter, followed by
/// `normalize_coeffs_8bpc`: for each output index, the first input index and the fixed-point
/// weights of the input pixels it reads.
fn bilinear_coeffs(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // BILINEAR support 1.0 × filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `(int)(center ± support + 0.5)`: both values are ≥ −0.5 here, so truncation = floor
        // for the max; the min is clamped at 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = (((center + support + 0.5) as i64) as usize).min(in_size);
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let w = (1.0 - t.abs()).max(0.0);
            *kx = w;
            ww += w;
        }
        for x in 0..n {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = w * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if w < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    (bounds, kk, ksize)
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's horizontal pass: resamples each of `rows` rows of `rgb` (row width `w`) to
/// `out_w` pixels.
fn horizontal_pass(rgb: &[u8], w: usize, rows: usize, out_w: usize) -> Vec<u8> {
    let (bounds, kk, ksize) = bilinear_coeffs(w, out_w);
    let mut out = vec![0u8; rows * out_w * 3];
    for y in 0..rows {
        let src = &rgb[y * w * 3..(y + 1) * w * 3];
        let dst = &mut out[y * out_w * 3..(y + 1) * out_w * 3];
        for (xx, &(xmin, n)) in bounds.iter().enumerate() {
            let k = &kk[xx * ksize..xx * ksize + n];
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = &src[(x + xmin) * 3..(x + xmin) * 3 + 3];
                ss[0] += p[0] as i32 * kx;
                ss[1] += p[1] as i32 * kx;
                ss[2] += p[2] as i32 * kx;
            }
            dst[xx * 3] = clip8(ss[0]);
            dst[xx * 3 + 1] = clip8(ss[1]);
            dst[xx * 3 + 2] = clip8(ss[2]);
        }
    }
    out
}

/// Pillow's vertical pass: resamples an image of `h` rows (row width `w`) to `out_h` rows,
/// where `rgb` holds only the source rows from `first` on (those the pass reads).
fn vertical_pass(rgb: &[u8], w: usize, first: usize, h: usize, out_h: usize) -> Vec<u8> {
    let (bounds, kk, ksize) = bilinear_coeffs(h, out_h);
    let row = w * 3;
    let mut out = vec![0u8; out_h * row];
    let mut acc = vec![0i32; row];
    for (yy, &(ymin, n)) in bounds.iter().enumerate() {
        let k = &kk[yy * ksize..yy * ksize + n];
        acc.fill(1 << (PRECISION_BITS - 1));
        for (y, &ky) in k.iter().enumerate() {
            let r = y + ymin - first;
            for (a, &p) in acc.iter_mut().zip(&rgb[r * row..(r + 1) * row]) {
                *a += p as i32 * ky;
            }
        }
        for (o, &a) in out[yy * row..(yy + 1) * row].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resizes 8-bit RGB `(h, w, 3)` to `(out_h, out_w, 3)` exactly as Pillow 13's
/// `Image.resize((out_w, out_h), Image.BILINEAR)`: a separable triangle filter whose support
/// grows with the down-scaling factor, 22-bit fixed-point weights, one pass per axis with an
/// 8-bit intermediate image. An axis whose size does not change is not resampled.
///
/// Pass order: horizontal first, except when the height shrinks and by more than twice as
/// many pixels as the width (`h − out_h > 2·(w − out_w)`), where Pillow 13 (python-pillow
/// PR #9549) runs the vertical pass first. Older Pillow (5.1, the original's) always went
/// horizontal first; the two orders differ by ±1 level on some pixels. The rule was fitted
/// to Pillow 13.0.0 on 1 780 random size pairs (no exception) and reproduces the coco_loader
/// fixtures' `image_u8` exactly.
pub fn resize_bilinear_pillow(
    rgb: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let vertical_first = out_h < h && (h as i64 - out_h as i64) > 2 * (w as i64 - out_w as i64);
    match (out_w != w, out_h != h) {
        (false, false) => rgb.to_vec(),
        (true, false) => horizontal_pass(rgb, w, h, out_w),
        (false, true) => vertical_pass(rgb, w, 0, h, out_h),
        (true, true) if vertical_first => {
            horizontal_pass(&vertical_pass(rgb, w, 0, h, out_h), w, out_h, out_w)
        }
        (true, true) => {
            // Only the rows the vertical pass reads go through the horizontal pass.
            let (vbounds, _, _) = bilinear_coeffs(h, out_h);
            let first = vbounds.first().map_or(0, |b| b.0);
            let last = vbounds.last().map_or(0, |b| b.0 + b.1);
            let tmp = horizontal_pass(&rgb[first * w * 3..last * w * 3], w, last - first, out_w);
            vertical_pass(&tmp, out_w, first, h, out_h)
        }
    }
}

/// Loads an image, resizes it to `size = (H, W)` with Pillow's bilinear filter and converts it
/// to a `(3, H, W)` float tensor, ImageNet-normalised when `normalize` (the datasets' image
/// pipeline). Returns the tensor and the file's original size `(WW, HH)`.
pub fn load_resized_normalized(
    path: impl AsRef<Path>,
    size: (usize, usize),
    normalize: bool,
) -> Result<(Vec<f32>, (usize, usize))> {
    let (rgb, ww, hh) = load_rgb(path)?;
    Ok((resized_normalized(&rgb, ww, hh, size, normalize), (ww, hh)))
}

/// The resize + `ToTensor` + normalisation half of [`load_resized_normalized`].
pub fn resized_normalized(
    rgb: &[u8],
    w: usize,
    h: usize,
    (out_h, out_w): (usize, usize),
    normalize: bool,
) -> Vec<f32> {
    let small = resize_bilinear_pillow(rgb, w, h, out_w, out_h);
    crate::imagenet::preprocess_u8_hwc(&small, out_h, out_w, normalize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|v| (v * 7) as u8).collect();
        assert_eq!(resize_bilinear_pillow(&rgb, 4, 3, 4, 3), rgb);
    }

    #[test]
    fn halving_averages_pairs_with_pillow_rounding() {
        // 4 → 2 horizontally: support 2, weights (1/8, 3/8, 3/8, 1/8) clipped to the image,
        // so output 0 = (3·a + 3·b + c)/7-ish in fixed point. Values checked by hand below.
        let row: Vec<u8> = [0u8, 100, 200, 255].iter().flat_map(|&v| [v; 3]).collect();
        let out = resize_bilinear_pillow(&row, 4, 1, 2, 1);
        // centre 1.0, support 2: x∈[0,3): w = (0.75, 0.75, 0.25)/1.75 → 0·.4286+100·.4286+200·.1429
        // = 71.43 → 71; centre 3.0: x∈[1,4): (0.25, 0.75, 0.75)/1.75 → 14.29+85.71+109.29 = 209.3
        assert_eq!(out, vec![71, 71, 71, 209, 209, 209]);
    }

    #[test]
    fn unknown_signature_is_an_error() {
        assert!(decode_rgb(b"GIF89a").is_err());
        assert!(decode_rgb(&[0xff, 0xd8, 0xff, 0xe0, 0, 16]).is_err());
    }
}
