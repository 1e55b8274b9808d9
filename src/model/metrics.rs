//! Box statistics of `metrics.py` (§12).

/// Intersection area of two boxes `[x0, y0, x1, y1]`.
pub fn intersection(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}

/// `jaccard(pred, gt)`: the **sum** over rows of per-row IoU (not the mean), with areas
/// `(x1 − x0)(y1 − y0)` not clamped, as the original.
pub fn jaccard_sum(pred: &[[f32; 4]], gt: &[[f32; 4]]) -> f64 {
    pred.iter()
        .zip(gt)
        .map(|(p, g)| {
            let inter = intersection(p, g);
            let area_p = (p[2] - p[0]) * (p[3] - p[1]);
            let area_g = (g[2] - g[0]) * (g[3] - g[1]);
            (inter / (area_p + area_g - inter)) as f64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_half_overlap() {
        let a = [0.0, 0.0, 1.0, 1.0];
        let b = [0.5, 0.0, 1.5, 1.0];
        assert!((jaccard_sum(&[a], &[b]) - 1.0 / 3.0).abs() < 1e-6);
        assert!((jaccard_sum(&[a, a], &[a, b]) - (1.0 + 1.0 / 3.0)).abs() < 1e-6);
    }
}
