//! Dense f64 linear algebra for FID: GEMMs through the `gemm` crate and a symmetric
//! eigendecomposition (Householder tridiagonalisation + implicit QL, EISPACK's `tred2`/`tql2`
//! as in JAMA), which is backward stable and needs no positive definiteness, so the
//! rank-deficient covariances of fewer samples than dimensions are fine.

/// `C (m×n) = A (m×k) · B (k×n)`, all row-major; `bt` = B given transposed, `(n×k)`.
pub fn matmul(a: &[f64], b: &[f64], (m, k, n): (usize, usize, usize), bt: bool) -> Vec<f64> {
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    let mut c = vec![0.0f64; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    // B's element (r, j) at r·rs + j·cs.
    let (b_rs, b_cs) = if bt { (1, k as isize) } else { (n as isize, 1) };
    let threads = rayon::current_num_threads().max(1);
    let par = if threads > 1 && m * n * k > 1 << 20 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three buffers have the asserted sizes and the strides address inside them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0f64,
            1.0f64,
            false,
            false,
            false,
            par,
        );
    }
    c
}

/// Eigenvalues (ascending) and, if `vectors`, eigenvectors of a symmetric `n×n` matrix
/// (row-major; only its values matter, the lower triangle is used). The vectors are returned
/// as the columns of a row-major `n×n` matrix.
pub fn symmetric_eigen(a: &[f64], n: usize, vectors: bool) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n);
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut v = a.to_vec();
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tred2(&mut v, &mut d, &mut e, n);
    tql2(&mut v, &mut d, &mut e, n, vectors);
    // Ascending order, vectors permuted alongside.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
    let vals = order.iter().map(|&i| d[i]).collect();
    if !vectors {
        return (vals, Vec::new());
    }
    let mut vs = vec![0.0; n * n];
    for r in 0..n {
        for (c, &o) in order.iter().enumerate() {
            vs[r * n + c] = v[r * n + o];
        }
    }
    (vals, vs)
}

/// The symmetric positive semi-definite square root `V·diag(√max(λ, 0))·Vᵀ`.
pub fn sqrtm_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (vals, vecs) = symmetric_eigen(a, n, true);
    // V·diag(√λ), then times Vᵀ.
    let mut vs = vecs.clone();
    for r in 0..n {
        for c in 0..n {
            vs[r * n + c] *= vals[c].max(0.0).sqrt();
        }
    }
    let mut s = matmul(&vs, &vecs, (n, n, n), true);
    symmetrize(&mut s, n);
    s
}

/// `(A + Aᵀ)/2` in place: removes the rounding asymmetry of products like `S·Σ·S`.
pub fn symmetrize(a: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = m;
            a[j * n + i] = m;
        }
    }
}

/// Householder reduction to tridiagonal form (EISPACK `tred2`, JAMA's version): on return
/// `v` holds the orthogonal transformation, `d` the diagonal, `e[1..]` the sub-diagonal.
// Index loops kept as in EISPACK/JAMA, so the port can be checked line by line.
#[allow(clippy::needless_range_loop)]
fn tred2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let ix = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v[ix(n - 1, j)];
    }
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for k in 0..i {
            scale += d[k].abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[ix(i - 1, j)];
                v[ix(i, j)] = 0.0;
                v[ix(j, i)] = 0.0;
            }
        } else {
            for k in 0..i {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for ej in e.iter_mut().take(i) {
                *ej = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[ix(j, i)] = f;
                g = e[j] + v[ix(j, j)] * f;
                for k in j + 1..i {
                    g += v[ix(k, j)] * d[k];
                    e[k] += v[ix(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[ix(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[ix(i - 1, j)];
                v[ix(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[ix(n - 1, i)] = v[ix(i, i)];
        v[ix(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[ix(k, i + 1)] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[ix(k, i + 1)] * v[ix(k, j)];
                }
                for k in 0..=i {
                    v[ix(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[ix(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[ix(n - 1, j)];
        v[ix(n - 1, j)] = 0.0;
    }
    v[ix(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL on the tridiagonal matrix (EISPACK `tql2`, JAMA's version): eigenvalues in `d`,
/// and with `vectors` the eigenvectors as the columns of `v`.
#[allow(clippy::needless_range_loop)]
fn tql2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize, vectors: bool) {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0f64;
    let mut tst1 = 0.0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n {
            if e[m].abs() <= eps * tst1 {
                break;
            }
            m += 1;
        }
        let m = m.min(n - 1);
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d.iter_mut().take(n).skip(l + 2) {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if vectors {
                        for k in 0..n {
                            let h = v[k * n + i + 1];
                            v[k * n + i + 1] = s * v[k * n + i] + c * h;
                            v[k * n + i] = c * v[k * n + i] - s * h;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                // 30·n iterations never happen for symmetric input; the bound only guards
                // against NaN input looping forever.
                if e[l].abs() <= eps * tst1 || iter > 30 * n.max(10) || !e[l].is_finite() {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize) -> f64 {
        ((i * 2_654_435_761) % 10_007) as f64 / 5003.5 - 1.0
    }

    #[test]
    fn eigen_reconstructs_and_is_orthonormal() {
        for n in [1, 2, 3, 7, 40] {
            let x: Vec<f64> = (0..n * n).map(pseudo).collect();
            let mut a = matmul(&x, &x, (n, n, n), true); // X·Xᵀ, symmetric PSD
            // Make it rank-deficient for n > 3: zero the last row/column.
            if n > 3 {
                for i in 0..n {
                    a[(n - 1) * n + i] = 0.0;
                    a[i * n + n - 1] = 0.0;
                }
            }
            let (vals, v) = symmetric_eigen(&a, n, true);
            assert!(vals.windows(2).all(|w| w[0] <= w[1]));
            // V·diag(λ)·Vᵀ == A and Vᵀ·V == I to 1e-10 (f64, entries O(n)).
            let mut vl = v.clone();
            for r in 0..n {
                for c in 0..n {
                    vl[r * n + c] *= vals[c];
                }
            }
            let back = matmul(&vl, &v, (n, n, n), true);
            let vtv = {
                let mut vt = vec![0.0; n * n];
                for r in 0..n {
                    for c in 0..n {
                        vt[c * n + r] = v[r * n + c];
                    }
                }
                matmul(&vt, &v, (n, n, n), false)
            };
            for i in 0..n * n {
                assert!((back[i] - a[i]).abs() < 1e-10 * n as f64, "n={n}");
                let id = if i / n == i % n { 1.0 } else { 0.0 };
                assert!((vtv[i] - id).abs() < 1e-12 * n as f64, "n={n}");
            }
            let (vals_only, _) = symmetric_eigen(&a, n, false);
            for (p, q) in vals.iter().zip(&vals_only) {
                assert!((p - q).abs() < 1e-10 * n as f64);
            }
        }
    }

    #[test]
    fn known_eigenvalues_and_sqrtm() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3.
        let (vals, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2, false);
        assert!((vals[0] - 1.0).abs() < 1e-14 && (vals[1] - 3.0).abs() < 1e-14);
        let a = [4.0, 0.0, 0.0, 9.0];
        let s = sqrtm_psd(&a, 2);
        assert!((s[0] - 2.0).abs() < 1e-14 && (s[3] - 3.0).abs() < 1e-14 && s[1].abs() < 1e-14);
        // Product of non-square operands, B transposed or not.
        let c = matmul(
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            &[1.0, 0.0, 1.0],
            (2, 3, 1),
            false,
        );
        assert_eq!(c, [4.0, 10.0]);
        let c = matmul(&[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0], (1, 2, 2), true);
        assert_eq!(c, [5.0, 11.0]);
    }
}
