//! COCO run-length-encoded masks: a port of pycocotools' `maskApi.c` (BSD-2-Clause, Piotr
//! Dollár and Tsung-Yi Lin) as used by the original COCO loader (§15.6).
//!
//! Masks are `h×w` 0/1 bytes in **column-major** (Fortran) order; `counts` alternate runs of 0s
//! and 1s, starting with 0s (the first run may be empty). The functions keep the C code's
//! arithmetic (C `int` truncation, `+0.5` rounding, unsigned wrap-around) so polygon
//! rasterisation is pixel-identical to pycocotools.

use crate::{Error, Result};

/// A run-length-encoded `h×w` mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub h: usize,
    pub w: usize,
    pub counts: Vec<u32>,
}

impl Rle {
    /// Number of pixels the runs cover (`h·w` for a well-formed RLE).
    pub fn covered(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }

    /// Number of pixels set to 1.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }
}

/// `rleEncode`: run-length-encodes a column-major `h×w` mask (any non-zero byte counts as 1).
pub fn encode(mask_colmajor: &[u8], h: usize, w: usize) -> Rle {
    let a = h * w;
    let mut counts = Vec::new();
    let (mut p, mut c) = (false, 0u32);
    for &v in &mask_colmajor[..a] {
        if (v != 0) != p {
            counts.push(c);
            c = 0;
            p = !p;
        }
        c += 1;
    }
    counts.push(c);
    Rle { h, w, counts }
}

/// `rleDecode` into a column-major `h×w` mask. Runs past `h·w` are cut (pycocotools 2.0.11
/// added the same bound); pixels the runs do not reach stay 0.
pub fn decode(rle: &Rle) -> Vec<u8> {
    let a = rle.h * rle.w;
    let mut out = vec![0u8; a];
    let mut pos = 0usize;
    let mut v = 0u8;
    for &c in &rle.counts {
        let end = (pos + c as usize).min(a);
        if v == 1 {
            out[pos..end].fill(1);
        }
        pos = end;
        v ^= 1;
    }
    out
}

/// [`decode`] followed by a transpose: a row-major `h×w` mask, the layout `mask[y][x]` numpy
/// gives after `pycocotools.mask.decode`.
pub fn decode_row_major(rle: &Rle) -> Vec<u8> {
    let (h, w) = (rle.h, rle.w);
    let mut out = vec![0u8; h * w];
    let mut pos = 0usize;
    let mut v = 0u8;
    for &c in &rle.counts {
        let end = (pos + c as usize).min(h * w);
        if v == 1 {
            for i in pos..end {
                // Column-major index i = x·h + y.
                out[(i % h) * w + i / h] = 1;
            }
        }
        pos = end;
        v ^= 1;
    }
    out
}

/// `rleToString`: the compressed COCO string (LEB128-like, 5 bits per character, offsets from
/// ASCII 48, counts after the second stored as differences to the count two before).
pub fn to_compressed_string(rle: &Rle) -> String {
    let mut s = Vec::with_capacity(rle.counts.len() * 2);
    for (i, &c) in rle.counts.iter().enumerate() {
        let mut x = c as i64;
        if i > 2 {
            x -= rle.counts[i - 2] as i64;
        }
        loop {
            let mut ch = (x & 0x1f) as u8;
            x >>= 5;
            let more = if ch & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                ch |= 0x20;
            }
            s.push(ch + 48);
            if !more {
                break;
            }
        }
    }
    // Every byte is in 48..=111, i.e. ASCII.
    String::from_utf8(s).expect("RLE strings are ASCII")
}

/// `rleFrString`: parses a compressed COCO string. Fails (with a message naming nothing but
/// the problem; callers add the annotation) on a character outside the alphabet or a string
/// that ends in the middle of a number, where the C code would read past the end.
pub fn from_compressed_string(s: &[u8], h: usize, w: usize) -> std::result::Result<Rle, String> {
    let mut counts: Vec<u32> = Vec::with_capacity(s.len());
    let mut p = 0usize;
    while p < s.len() {
        let mut x: i64 = 0;
        let mut k = 0u32;
        loop {
            let Some(&byte) = s.get(p) else {
                return Err("compressed RLE string ends in the middle of a count".into());
            };
            if !(48..48 + 64).contains(&byte) {
                return Err(format!(
                    "compressed RLE string has character {:?} at {p}, expected one of '0'..'o'",
                    byte as char
                ));
            }
            if k >= 12 {
                return Err("compressed RLE string has a count longer than 12 characters".into());
            }
            let c = (byte - 48) as i64;
            x |= (c & 0x1f) << (5 * k);
            let more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more {
                if c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
                break;
            }
        }
        let m = counts.len();
        if m > 2 {
            x += counts[m - 2] as i64;
        }
        // `cnts[m++] = (uint) x` in C.
        counts.push(x as u32);
    }
    Ok(Rle { h, w, counts })
}

/// `rleMerge` of several RLEs of one size: union (`intersect == false`) or intersection.
/// RLEs of different sizes give an empty `0×0` RLE, as in the C code.
pub fn merge(rles: &[Rle], intersect: bool) -> Rle {
    let Some(first) = rles.first() else {
        return Rle {
            h: 0,
            w: 0,
            counts: Vec::new(),
        };
    };
    let (h, w) = (first.h, first.w);
    if rles.len() == 1 {
        return first.clone();
    }
    let mut cnts: Vec<u32> = first.counts.clone();
    for b in &rles[1..] {
        if b.h != h || b.w != w {
            return Rle {
                h: 0,
                w: 0,
                counts: Vec::new(),
            };
        }
        let a = std::mem::take(&mut cnts);
        // Missing first counts read as 0 (the C code would read uninitialised memory).
        let mut ca = a.first().copied().unwrap_or(0);
        let mut cb = b.counts.first().copied().unwrap_or(0);
        let (mut v, mut va, mut vb) = (false, false, false);
        let (mut ia, mut ib) = (1usize, 1usize);
        let mut cc: u32 = 0;
        let mut ct: u32 = 1;
        while ct > 0 {
            let c = ca.min(cb);
            cc = cc.wrapping_add(c);
            ct = 0;
            ca -= c;
            if ca == 0 && ia < a.len() {
                ca = a[ia];
                ia += 1;
                va = !va;
            }
            ct = ct.wrapping_add(ca);
            cb -= c;
            if cb == 0 && ib < b.counts.len() {
                cb = b.counts[ib];
                ib += 1;
                vb = !vb;
            }
            ct = ct.wrapping_add(cb);
            let vp = v;
            v = if intersect { va && vb } else { va || vb };
            if v != vp || ct == 0 {
                cnts.push(cc);
                cc = 0;
            }
        }
    }
    Rle { h, w, counts: cnts }
}

/// `rleFrPoly`: rasterises one polygon `[x1, y1, x2, y2, …]` (pixel coordinates) at `h×w`.
///
/// Any number of vertices `k ≥ 1` is accepted: pycocotools only refuses a *first* polygon of
/// exactly 4 numbers because its Python wrapper mistakes it for a box list; the C routine
/// itself rasterises such a 2-vertex polygon as a degenerate (zero-area) shape, which is what
/// this port does. A trailing odd number is ignored, as `int(len(p)/2)` does.
pub fn from_polygon(xy: &[f64], h: usize, w: usize) -> Rle {
    let k = xy.len() / 2;
    if k == 0 {
        // The C code reads x[0] of an empty array here; an empty polygon covers nothing.
        return Rle {
            h,
            w,
            counts: vec![(h * w) as u32],
        };
    }
    const SCALE: f64 = 5.0;
    // `(int)(scale*v + .5)`: truncation toward zero; `as i32` also saturates absurd values.
    let mut x: Vec<i32> = (0..k).map(|j| (SCALE * xy[2 * j] + 0.5) as i32).collect();
    let mut y: Vec<i32> = (0..k)
        .map(|j| (SCALE * xy[2 * j + 1] + 0.5) as i32)
        .collect();
    x.push(x[0]);
    y.push(y[0]);
    let mut m = 0usize;
    for j in 0..k {
        let dx = (x[j] as i64 - x[j + 1] as i64).unsigned_abs();
        let dy = (y[j] as i64 - y[j + 1] as i64).unsigned_abs();
        m += dx.max(dy) as usize + 1;
    }
    let mut u: Vec<i32> = Vec::with_capacity(m);
    let mut v: Vec<i32> = Vec::with_capacity(m);
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        let s = if dx >= dy {
            (ye - ys) as f64 / dx as f64
        } else {
            (xe - xs) as f64 / dy as f64
        };
        if dx >= dy {
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i32);
            }
        } else {
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i32);
            }
        }
    }
    // Points along the y-boundary, downsampled back to pixel coordinates.
    let mut a: Vec<u32> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = if u[j] < u[j - 1] { u[j] } else { u[j] - 1 } as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > w as f64 - 1.0 {
            continue;
        }
        let yd = if v[j] < v[j - 1] { v[j] } else { v[j - 1] } as f64;
        let mut yd = (yd + 0.5) / SCALE - 0.5;
        if yd < 0.0 {
            yd = 0.0;
        } else if yd > h as f64 {
            yd = h as f64;
        }
        let yd = yd.ceil();
        // `(uint)(x[j]*(int)(h)+y[j])` in C int arithmetic.
        a.push((xd as i32).wrapping_mul(h as i32).wrapping_add(yd as i32) as u32);
    }
    a.push((h * w) as u32);
    a.sort_unstable();
    let mut prev = 0u32;
    for e in a.iter_mut() {
        let t = *e;
        *e = e.wrapping_sub(prev);
        prev = t;
    }
    // Drop empty runs after the first by merging the run that follows into the previous one.
    let mut b: Vec<u32> = Vec::with_capacity(a.len());
    let mut j = 0usize;
    b.push(a[j]);
    j += 1;
    while j < a.len() {
        if a[j] > 0 {
            b.push(a[j]);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                *b.last_mut().expect("b starts non-empty") += a[j];
                j += 1;
            }
        }
    }
    Rle { h, w, counts: b }
}

/// An annotation's `segmentation`, in the three forms COCO uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// A list of polygons `[x1, y1, x2, y2, …]` (pixel coordinates), merged by union.
    Polygons(Vec<Vec<f64>>),
    /// `{"counts": [ints], "size": [h, w]}` (crowd instances).
    Uncompressed {
        h: usize,
        w: usize,
        counts: Vec<u32>,
    },
    /// `{"counts": "<string>", "size": [h, w]}` (all COCO-Stuff annotations).
    Compressed { h: usize, w: usize, counts: String },
}

impl Segmentation {
    /// `seg_to_mask(seg, WW, HH)` of the original loader as an RLE: polygons are rasterised at
    /// the image file's `hh×ww` (`frPyObjects` → `merge`); RLE dicts keep their own `size`.
    ///
    /// Errors (a malformed compressed string) are plain text for the caller to prefix with
    /// the annotation id.
    pub fn to_rle(&self, hh: usize, ww: usize) -> std::result::Result<Rle, String> {
        match self {
            Segmentation::Polygons(polys) => {
                let rles: Vec<Rle> = polys.iter().map(|p| from_polygon(p, hh, ww)).collect();
                Ok(merge(&rles, false))
            }
            // pycocotools round-trips these through the compressed string; the counts survive
            // unchanged, so decoding them directly is equivalent.
            Segmentation::Uncompressed { h, w, counts } => Ok(Rle {
                h: *h,
                w: *w,
                counts: counts.clone(),
            }),
            Segmentation::Compressed { h, w, counts } => {
                from_compressed_string(counts.as_bytes(), *h, *w)
            }
        }
    }

    /// Checks what the C code would otherwise silently misread: an RLE whose runs do not
    /// cover exactly `h·w` pixels, a non-finite polygon coordinate, an odd-length or too short
    /// polygon. Returns the offending field and what was expected.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Segmentation::Polygons(polys) => {
                if polys.is_empty() {
                    return Err("empty polygon list".into());
                }
                for (i, p) in polys.iter().enumerate() {
                    if p.len() < 2 || p.len() % 2 != 0 {
                        return Err(format!(
                            "polygon {i} has {} numbers, expected an even count ≥ 2",
                            p.len()
                        ));
                    }
                    if let Some(v) = p.iter().find(|v| !v.is_finite() || v.abs() > 1e7) {
                        return Err(format!(
                            "polygon {i}: coordinate {v} is not a finite pixel position"
                        ));
                    }
                }
                Ok(())
            }
            Segmentation::Uncompressed { h, w, counts } => {
                let sum: u64 = counts.iter().map(|&c| c as u64).sum();
                check_cover(sum, *h, *w, "counts")
            }
            Segmentation::Compressed { h, w, counts } => {
                let rle = from_compressed_string(counts.as_bytes(), *h, *w)
                    .map_err(|e| format!("counts: {e}"))?;
                check_cover(rle.covered(), *h, *w, "counts")
            }
        }
    }
}

fn check_cover(sum: u64, h: usize, w: usize, field: &str) -> std::result::Result<(), String> {
    if sum != (h * w) as u64 {
        return Err(format!(
            "{field}: runs cover {sum} pixels, expected size h·w = {h}·{w} = {}",
            h * w
        ));
    }
    Ok(())
}

/// Parses a compressed RLE string, with the annotation named in the error.
pub fn parse_compressed(s: &str, h: usize, w: usize, what: &str) -> Result<Rle> {
    from_compressed_string(s.as_bytes(), h, w).map_err(|e| Error::invalid(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colmajor(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        let mut m = vec![0u8; h * w];
        for (y, r) in rows.iter().enumerate() {
            for (x, c) in r.bytes().enumerate() {
                m[x * h + y] = (c == b'#') as u8;
            }
        }
        (m, h, w)
    }

    #[test]
    fn encode_decode_string_round_trip() {
        let (m, h, w) = colmajor(&["#..#", "##..", "...#"]);
        let rle = encode(&m, h, w);
        assert_eq!(rle.counts.iter().sum::<u32>(), 12);
        assert_eq!(decode(&rle), m);
        let s = to_compressed_string(&rle);
        assert_eq!(from_compressed_string(s.as_bytes(), h, w).unwrap(), rle);
        // Large counts and negative deltas exercise the multi-character and sign paths.
        let rle = Rle {
            h: 1000,
            w: 1000,
            counts: vec![0, 5, 999_000, 3, 900, 92],
        };
        let s = to_compressed_string(&rle);
        assert_eq!(
            from_compressed_string(s.as_bytes(), 1000, 1000).unwrap(),
            rle
        );
    }

    #[test]
    fn small_counts_are_single_characters() {
        // Counts below 16 fit one 5-bit group without the sign bit: '0' + count.
        let rle = Rle {
            h: 3,
            w: 3,
            counts: vec![4, 1, 4],
        };
        assert_eq!(to_compressed_string(&rle), "414");
    }

    #[test]
    fn union_of_two_boxes() {
        let (a, h, w) = colmajor(&["##..", "##..", "...."]);
        let (b, _, _) = colmajor(&[".##.", "....", "...."]);
        let (u, _, _) = colmajor(&["###.", "##..", "...."]);
        let m = merge(&[encode(&a, h, w), encode(&b, h, w)], false);
        assert_eq!(decode(&m), u);
        let (i, _, _) = colmajor(&[".#..", "....", "...."]);
        let m = merge(&[encode(&a, h, w), encode(&b, h, w)], true);
        assert_eq!(decode(&m), i);
    }

    #[test]
    fn square_polygon_covers_its_pixels() {
        // The square with corners (1,1) and (3,3) covers pixels x, y ∈ {1, 2} in pycocotools
        // (pixel centres inside the outline; the right/bottom edges are exclusive).
        let rle = from_polygon(&[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0], 5, 5);
        let (want, _, _) = colmajor(&[".....", ".##..", ".##..", ".....", "....."]);
        assert_eq!(decode(&rle), want);
    }

    #[test]
    fn degenerate_polygons_do_not_panic() {
        // 4 numbers (the case pycocotools' wrapper rejects) and a single point.
        for p in [&[1.0, 1.0, 3.0, 3.0][..], &[2.0, 2.0][..], &[][..]] {
            let rle = from_polygon(p, 4, 4);
            assert_eq!(rle.covered(), 16, "{p:?}");
        }
    }

    #[test]
    fn row_major_decode_is_the_transpose() {
        let (m, h, w) = colmajor(&["#..#", "##..", "...#"]);
        let rm = decode_row_major(&encode(&m, h, w));
        assert_eq!(rm, b"\x01\x00\x00\x01\x01\x01\x00\x00\x00\x00\x00\x01");
    }

    #[test]
    fn bad_strings_are_errors() {
        assert!(from_compressed_string(b"4 1", 3, 3).is_err());
        assert!(from_compressed_string(b"4Q", 3, 3).is_err()); // 'Q'-48 = 33: "more" but nothing
    }
}
