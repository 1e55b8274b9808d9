//! A process-wide count of the arithmetic the networks' convolutions and linear layers do in
//! forward passes, for utilisation estimates (the benches' MFU figure on a GPU).
//!
//! Why counted rather than derived: the work per iteration depends on the scene graphs (objects
//! and triples per batch, object crops for D_obj), and every convolution and linear layer goes
//! through `Conv2d::forward` / `Linear::forward`, so counting there is exact for those layers and
//! costs one relaxed atomic add per layer call. Elementwise work (norms, activations, pooling,
//! interpolation) is left out: it is memory-bound and a few per cent of the FLOPs.

use std::sync::atomic::{AtomicU64, Ordering};

static MACS: AtomicU64 = AtomicU64::new(0);

/// Sets the count to zero.
pub fn reset() {
    MACS.store(0, Ordering::Relaxed);
}

/// Floating-point operations (2 per multiply-add) counted since the last [`reset`].
pub fn forward_flops() -> u64 {
    2 * MACS.load(Ordering::Relaxed)
}

/// A convolution of `x (N, Ci, H, W)` with `weight (Co, Ci, k, k)`, stride `s`, padding `p`.
pub(crate) fn conv2d(x: [usize; 4], weight: [usize; 4], stride: usize, padding: usize) {
    MACS.fetch_add(conv2d_macs(x, weight, stride, padding), Ordering::Relaxed);
}

/// A linear layer on `rows` rows, `d_in → d_out`.
pub(crate) fn linear(rows: usize, d_in: usize, d_out: usize) {
    MACS.fetch_add((rows * d_in * d_out) as u64, Ordering::Relaxed);
}

fn conv2d_macs(x: [usize; 4], weight: [usize; 4], stride: usize, padding: usize) -> u64 {
    let [n, ci, h, w] = x;
    let [co, _, kh, kw] = weight;
    let out = |len: usize, k: usize| (len + 2 * padding).saturating_sub(k) / stride.max(1) + 1;
    (n * co * out(h, kh) * out(w, kw) * ci * kh * kw) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolution_multiply_adds_follow_the_output_size() {
        // 3×3, stride 1, padding 1 on 8×8: 8·8 outputs × 4 out channels × 2·3·3 taps, 2 images.
        assert_eq!(
            conv2d_macs([2, 2, 8, 8], [4, 2, 3, 3], 1, 1),
            2 * 64 * 4 * 18
        );
        // 4×4, stride 2, padding 1 on 8×8: 4×4 outputs of 16 taps.
        assert_eq!(conv2d_macs([1, 1, 8, 8], [1, 1, 4, 4], 2, 1), 16 * 16);
        // 1×1 without padding keeps the size.
        assert_eq!(conv2d_macs([1, 8, 5, 7], [3, 8, 1, 1], 1, 0), 35 * 3 * 8);
        // Counting adds (other tests may add concurrently, never subtract).
        let before = forward_flops();
        linear(5, 3, 7);
        assert!(forward_flops() - before >= 2 * 105);
    }
}
