//! Layout metrics of the sg2im paper's Table 2, from predicted and ground-truth boxes.
//!
//! Boxes are `[x0, y0, x1, y1]` in normalised image coordinates, as the model predicts them.
//! Objects of the `__image__` category are excluded everywhere: the model always places that
//! pseudo-object over the whole image, so counting it would inflate every figure.

use crate::model::metrics::jaccard_sum;

/// One object of the evaluated split: its category, its predicted box and its ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxPair {
    pub category: usize,
    pub pred: [f32; 4],
    pub gt: [f32; 4],
}

/// The figures of the paper's Table 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayoutMetrics {
    /// Mean IoU of predicted vs ground-truth box over all objects.
    pub box_iou_mean: f64,
    /// Fraction of objects whose predicted box has IoU ≥ 0.3 with the ground truth.
    pub recall_at_0_3: f64,
    /// Fraction of objects whose predicted box has IoU ≥ 0.5 with the ground truth.
    pub recall_at_0_5: f64,
    /// Std of predicted box x-centres per category, averaged over categories.
    pub sigma_x: f64,
    /// Std of predicted box areas per category, averaged over categories.
    pub sigma_area: f64,
    /// Number of objects counted (`__image__` excluded).
    pub num_objects: usize,
}

/// IoU of one predicted box with its ground truth, through the original `jaccard` (so a
/// degenerate box gives the same value as the training-time statistic).
pub fn box_iou(pred: &[f32; 4], gt: &[f32; 4]) -> f64 {
    jaccard_sum(std::slice::from_ref(pred), std::slice::from_ref(gt))
}

/// Population standard deviation (ddof = 0).
///
/// Why population and not sample std: the spread is a descriptive statistic of the predicted
/// boxes of this split, not an estimate of a larger population's variance, and with ddof = 0 a
/// category seen once has spread 0 instead of an undefined value (numpy's default, which the
/// scene_generation code this metric comes from uses via `np.std`).
fn population_std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Table 2's metrics over `pairs`, skipping objects whose category is `image_category`
/// (the `__image__` index of the vocabulary; `None` when it has none).
///
/// `sigma_x` and `sigma_area` are the population std (ddof = 0, see [`population_std`]) of the
/// predicted boxes' x-centre `(x0 + x1) / 2` and area `(x1 − x0)(y1 − y0)`, computed per
/// category over the whole split and averaged over the categories present (each category
/// weighs the same, however many objects it has). Returns `None` when no object is left.
pub fn layout_metrics(pairs: &[BoxPair], image_category: Option<usize>) -> Option<LayoutMetrics> {
    let kept: Vec<&BoxPair> = pairs
        .iter()
        .filter(|p| Some(p.category) != image_category)
        .collect();
    if kept.is_empty() {
        return None;
    }
    let n = kept.len() as f64;
    let ious: Vec<f64> = kept.iter().map(|p| box_iou(&p.pred, &p.gt)).collect();
    let recall = |t: f64| ious.iter().filter(|&&iou| iou >= t).count() as f64 / n;
    let mut per_cat: std::collections::BTreeMap<usize, (Vec<f64>, Vec<f64>)> = Default::default();
    for p in &kept {
        let b = p.pred;
        let e = per_cat.entry(p.category).or_default();
        e.0.push(f64::from(b[0] + b[2]) / 2.0);
        e.1.push(f64::from(b[2] - b[0]) * f64::from(b[3] - b[1]));
    }
    let cats = per_cat.len() as f64;
    let sigma_x = per_cat
        .values()
        .map(|(x, _)| population_std(x))
        .sum::<f64>()
        / cats;
    let sigma_area = per_cat
        .values()
        .map(|(_, a)| population_std(a))
        .sum::<f64>()
        / cats;
    Some(LayoutMetrics {
        box_iou_mean: ious.iter().sum::<f64>() / n,
        recall_at_0_3: recall(0.3),
        recall_at_0_5: recall(0.5),
        sigma_x,
        sigma_area,
        num_objects: kept.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(category: usize, pred: [f32; 4], gt: [f32; 4]) -> BoxPair {
        BoxPair { category, pred, gt }
    }

    /// Hand-computed IoUs 1, 1/3 and 1/4; R@t counts IoU ≥ t.
    #[test]
    fn iou_and_recalls_by_hand() {
        let unit = [0.0, 0.0, 1.0, 1.0];
        // Shifted by half a width: intersection 0.5, union 1.5 → IoU 1/3.
        let half = [0.5, 0.0, 1.5, 1.0];
        // [0, 0, 0.5, 0.5] inside the unit box: intersection 0.25, union 1 → IoU 1/4.
        let quarter = [0.0, 0.0, 0.5, 0.5];
        let pairs = [
            pair(1, unit, unit),
            pair(2, half, unit),
            pair(3, quarter, unit),
            // The whole-image pseudo-object is excluded: with it the mean would change.
            pair(0, [0.4, 0.4, 0.6, 0.6], unit),
        ];
        let m = layout_metrics(&pairs, Some(0)).unwrap();
        assert_eq!(m.num_objects, 3);
        // The IoU is divided in f32 (as the original): 1e-6 covers its rounding of 1/3.
        assert!((m.box_iou_mean - (1.0 + 1.0 / 3.0 + 0.25) / 3.0).abs() < 1e-6);
        // IoU ≥ 0.3: 1 and 1/3 → 2/3; IoU ≥ 0.5: only 1 → 1/3.
        assert!((m.recall_at_0_3 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall_at_0_5 - 1.0 / 3.0).abs() < 1e-12);
        // One object per category: every per-category population std is 0.
        assert_eq!(m.sigma_x, 0.0);
        assert_eq!(m.sigma_area, 0.0);
        // Without excluding __image__ the (IoU 0.04) object counts.
        let all = layout_metrics(&pairs, None).unwrap();
        assert_eq!(all.num_objects, 4);
        assert!((all.recall_at_0_3 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn recall_threshold_is_inclusive() {
        // IoU exactly 0.5: [0,0,1,1] vs [0,0,0.5,1] → 0.5 / 1.
        let m =
            layout_metrics(&[pair(1, [0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 1.0, 1.0])], None).unwrap();
        assert_eq!(m.box_iou_mean, 0.5);
        assert_eq!(m.recall_at_0_5, 1.0);
    }

    #[test]
    fn per_category_spreads_by_hand() {
        let gt = [0.0, 0.0, 1.0, 1.0];
        let pairs = [
            // Category 1: x-centres 0.25 and 0.75 → population std 0.25;
            // areas 0.25 (0.5×0.5) and 0.25 → std 0.
            pair(1, [0.0, 0.0, 0.5, 0.5], gt),
            pair(1, [0.5, 0.5, 1.0, 1.0], gt),
            // Category 2: same x-centre 0.5 → std 0; areas 1.0 and 0.5 (1×0.5) → std 0.25.
            pair(2, [0.0, 0.0, 1.0, 1.0], gt),
            pair(2, [0.0, 0.0, 1.0, 0.5], gt),
            // Category 3 alone: std 0 for both, and it weighs as much as the others.
            pair(3, [0.1, 0.1, 0.3, 0.3], gt),
        ];
        let m = layout_metrics(&pairs, Some(0)).unwrap();
        // Averages over 3 categories: (0.25 + 0 + 0) / 3 and (0 + 0.25 + 0) / 3. A sample std
        // (ddof = 1) would give 0.3536 / 3 instead, so this pins the population convention.
        assert!((m.sigma_x - 0.25 / 3.0).abs() < 1e-7, "{}", m.sigma_x);
        assert!((m.sigma_area - 0.25 / 3.0).abs() < 1e-7, "{}", m.sigma_area);
    }

    #[test]
    fn only_image_objects_give_none() {
        let b = [0.0, 0.0, 1.0, 1.0];
        assert!(layout_metrics(&[pair(0, b, b)], Some(0)).is_none());
        assert!(layout_metrics(&[], None).is_none());
    }
}
