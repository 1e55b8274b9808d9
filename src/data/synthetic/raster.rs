//! Masks ↔ COCO segmentations: RLE runs of a mask, and exact polygon outlines of any mask.
//!
//! The generator rasterises each shape with the very routine the COCO loader decodes polygons
//! with ([`crate::data::rle::from_polygon`], pycocotools' `rleFrPoly`), so a mask the generator
//! paints and the mask a loader decodes from the written polygon are the same pixels. Partly
//! hidden shapes are written as staircase polygons traced along pixel edges, which `rleFrPoly`
//! maps back to exactly the visible pixels.

use crate::data::rle;

/// Calls `f(start, len)` for every run of ones of RLE `counts` (column-major linear indices).
pub fn for_each_one_run(counts: &[u32], mut f: impl FnMut(usize, usize)) {
    let mut pos = 0usize;
    for (i, &c) in counts.iter().enumerate() {
        let c = c as usize;
        if i % 2 == 1 && c > 0 {
            f(pos, c);
        }
        pos += c;
    }
}

/// COCO RLE counts (column-major, starting with zeros) of a row-major `h × w` 0/1 mask.
pub fn rle_counts_of_mask(mask: &[u8], h: usize, w: usize) -> Vec<u32> {
    let mut colmajor = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            colmajor[x * h + y] = mask[y * w + x];
        }
    }
    rle::encode(&colmajor, h, w).counts
}

/// Polygons (COCO `segmentation` lists, pixel `c` spanning `[c, c+1)`) whose pycocotools
/// rasterisation is exactly the set pixels of the `bw × bh` row-major window `mask` placed at
/// `(x0, y0)`.
///
/// Every polygon edge runs along pixel edges. `rleFrPoly` fills a polygon even–odd per column
/// and vertical edges cross no column, so any set of closed loops made of the mask's boundary
/// edges reproduces it. Without holes each loop is its own polygon (COCO unions the parts);
/// with holes all loops go into one polygon, joined by bridges walked there and back, whose
/// column crossings cancel in pairs.
pub fn trace_polygons(mask: &[u8], bw: usize, bh: usize, x0: usize, y0: usize) -> Vec<Vec<f64>> {
    const NONE: u32 = u32::MAX;
    let vw = bw + 1;
    let inside = |x: isize, y: isize| -> bool {
        x >= 0 && y >= 0 && (x as usize) < bw && (y as usize) < bh && {
            mask[y as usize * bw + x as usize] != 0
        }
    };
    // Directed boundary edges, region on the right (clockwise on screen, y down); a vertex
    // has at most two outgoing edges (where two pixels touch diagonally).
    let mut out = vec![[NONE; 2]; vw * (bh + 1)];
    let mut add = |from: (usize, usize), to: (usize, usize)| {
        let slot = &mut out[from.1 * vw + from.0];
        let i = usize::from(slot[0] != NONE);
        slot[i] = (to.1 * vw + to.0) as u32;
    };
    for y in 0..bh {
        for x in 0..bw {
            if mask[y * bw + x] == 0 {
                continue;
            }
            let (xi, yi) = (x as isize, y as isize);
            if !inside(xi, yi - 1) {
                add((x, y), (x + 1, y));
            }
            if !inside(xi + 1, yi) {
                add((x + 1, y), (x + 1, y + 1));
            }
            if !inside(xi, yi + 1) {
                add((x + 1, y + 1), (x, y + 1));
            }
            if !inside(xi - 1, yi) {
                add((x, y + 1), (x, y));
            }
        }
    }
    let mut loops: Vec<Vec<(i64, i64)>> = Vec::new();
    let mut holes = false;
    for start in 0..out.len() {
        while out[start][0] != NONE || out[start][1] != NONE {
            let mut path = vec![start];
            let mut cur = start;
            loop {
                let slot = &mut out[cur];
                let i = if slot[0] != NONE { 0 } else { 1 };
                let next = slot[i] as usize;
                slot[i] = NONE;
                if next == start {
                    break;
                }
                path.push(next);
                cur = next;
            }
            let pts: Vec<(i64, i64)> = path
                .iter()
                .map(|&v| ((v % vw) as i64, (v / vw) as i64))
                .collect();
            // Keep corners only: a vertex whose two edges have the same direction is redundant.
            let n = pts.len();
            let corners: Vec<(i64, i64)> = (0..n)
                .filter(|&i| {
                    let (p, c, q) = (pts[(i + n - 1) % n], pts[i], pts[(i + 1) % n]);
                    let d1 = ((c.0 - p.0).signum(), (c.1 - p.1).signum());
                    let d2 = ((q.0 - c.0).signum(), (q.1 - c.1).signum());
                    d1 != d2
                })
                .map(|i| pts[i])
                .collect();
            let twice_area: i64 = (0..corners.len())
                .map(|i| {
                    let (a, b) = (corners[i], corners[(i + 1) % corners.len()]);
                    a.0 * b.1 - b.0 * a.1
                })
                .sum();
            holes |= twice_area < 0;
            loops.push(corners);
        }
    }
    let to_xy = |pts: &[(i64, i64)]| -> Vec<f64> {
        pts.iter()
            .flat_map(|&(x, y)| [(x as usize + x0) as f64, (y as usize + y0) as f64])
            .collect()
    };
    if !holes {
        return loops.iter().map(|l| to_xy(l)).collect();
    }
    let first = loops[0][0];
    let mut joined: Vec<(i64, i64)> = loops[0].clone();
    joined.push(first);
    for l in &loops[1..] {
        joined.extend_from_slice(l);
        joined.push(l[0]);
        joined.push(first);
    }
    vec![to_xy(&joined)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(counts: &[u32], h: usize, w: usize) -> Vec<u8> {
        let mut m = vec![0u8; h * w];
        for_each_one_run(counts, |start, len| {
            for i in start..start + len {
                m[(i % h) * w + i / h] = 1;
            }
        });
        m
    }

    /// The loader's path: rasterise each polygon, merge by union.
    fn union(polys: &[Vec<f64>], h: usize, w: usize) -> Vec<u8> {
        let rles: Vec<rle::Rle> = polys.iter().map(|p| rle::from_polygon(p, h, w)).collect();
        decode(&rle::merge(&rles, false).counts, h, w)
    }

    #[test]
    fn traced_polygons_rasterise_back_exactly() {
        // Pseudo-random blobby masks with holes, diagonal touches and border contact.
        let (h, w) = (23, 31);
        let mut state = 12345u64;
        for trial in 0..200 {
            let mut mask = vec![0u8; h * w];
            for y in 0..h {
                for x in 0..w {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let dense = (trial % 3) as u64;
                    mask[y * w + x] = u8::from((state >> 60) < 4 + dense * 4);
                }
            }
            let polys = trace_polygons(&mask, w, h, 0, 0);
            assert_eq!(union(&polys, h, w), mask, "trial {trial}");
        }
    }

    #[test]
    fn a_ring_gives_one_bridged_polygon_and_an_offset_window_shifts_it() {
        let (bw, bh) = (5, 5);
        let mut mask = vec![1u8; 25];
        mask[12] = 0; // the centre pixel is a hole
        let polys = trace_polygons(&mask, bw, bh, 3, 2);
        assert_eq!(polys.len(), 1);
        let (h, w) = (9, 10);
        let m = union(&polys, h, w);
        for y in 0..h {
            for x in 0..w {
                let want = (3..8).contains(&x) && (2..7).contains(&y) && !(x == 5 && y == 4);
                assert_eq!(m[y * w + x], u8::from(want), "({x},{y})");
            }
        }
    }

    #[test]
    fn rle_counts_start_with_zeros_and_cover_the_mask() {
        let mask = [1u8, 0, 1, 1]; // 2×2 row-major; column-major it reads 1, 1, 0, 1
        let counts = rle_counts_of_mask(&mask, 2, 2);
        assert_eq!(counts, vec![0, 2, 1, 1]);
        assert_eq!(decode(&counts, 2, 2), mask);
    }
}
