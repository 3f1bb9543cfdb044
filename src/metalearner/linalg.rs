//! Blocked dense Cholesky factorisation and lower-triangular solves for the GP's kernel matrix.
//! nalgebra's own are unblocked loops; at the several thousand observations the GP is
//! conditioned on, both spend most of their time waiting on memory. Here each block step is a
//! small unblocked factorisation or solve plus one large matrix product, which nalgebra hands to
//! matrixmultiply's cache-blocked dgemm. Same arithmetic, reordered: results agree with the
//! unblocked factor to rounding.
use nalgebra::{Cholesky, DMatrix};

/// Block size: the unblocked work is O(n·NB²), the rest goes through dgemm.
const NB: usize = 96;

/// Lower Cholesky factor L (L Lᵀ = `a`) of a symmetric positive-definite matrix, upper triangle
/// zeroed; None when `a` is not positive definite. Reads only the lower triangle of `a`.
pub fn cholesky_lower(mut a: DMatrix<f64>) -> Option<DMatrix<f64>> {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "cholesky_lower: square matrix");
    let mut k = 0;
    while k < n {
        let b = NB.min(n - k);
        // the diagonal block has received every update from the columns to its left
        let mut d = a.view((k, k), (b, b)).into_owned();
        d.fill_upper_triangle_with_lower_triangle();
        let l11 = Cholesky::new(d)?.unpack();
        a.view_mut((k, k), (b, b)).copy_from(&l11);
        let r = n - k - b;
        if r > 0 {
            // L21 = A21 L11⁻ᵀ, i.e. L11 L21ᵀ = A21ᵀ
            let mut t = a.view((k + b, k), (r, b)).transpose();
            if !l11.solve_lower_triangular_mut(&mut t) {
                return None;
            }
            a.view_mut((k + b, k), (r, b)).copy_from(&t.transpose());
            // A22 −= L21 L21ᵀ on and below the diagonal, one column block at a time
            let l21 = t.transpose();
            let mut j = 0;
            while j < r {
                let w = NB.min(r - j);
                let lhs = l21.rows(j, r - j);
                let rhs = l21.rows(j, w).transpose();
                a.view_mut((k + b + j, k + b + j), (r - j, w)).gemm(-1.0, &lhs, &rhs, 1.0);
                j += w;
            }
        }
        k += b;
    }
    a.fill_upper_triangle(0.0, 1);
    Some(a)
}

/// X with L X = `b` for a lower-triangular `l` (its upper triangle is not read).
pub fn solve_lower(l: &DMatrix<f64>, mut b: DMatrix<f64>) -> DMatrix<f64> {
    let n = l.nrows();
    assert_eq!(n, b.nrows(), "solve_lower: L and B disagree in rows");
    let m = b.ncols();
    let mut k = 0;
    while k < n {
        let w = NB.min(n - k);
        let mut d = l.view((k, k), (w, w)).into_owned();
        d.fill_upper_triangle(0.0, 1);
        let mut xk = b.view((k, 0), (w, m)).into_owned();
        assert!(d.solve_lower_triangular_mut(&mut xk), "solve_lower: zero on the diagonal");
        b.view_mut((k, 0), (w, m)).copy_from(&xk);
        let r = n - k - w;
        if r > 0 {
            b.view_mut((k + w, 0), (r, m)).gemm(-1.0, &l.view((k + w, k), (r, w)), &xk, 1.0);
        }
        k += w;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn spd(n: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let g = DMatrix::from_fn(n, n + 3, |_, _| rng.random_range(-1.0..1.0));
        &g * g.transpose() + DMatrix::identity(n, n) * 1e-3
    }

    #[test]
    fn blocked_cholesky_and_solve_match_the_unblocked_ones() {
        // sizes below, at and across block boundaries
        for (n, seed) in [(1, 1), (7, 2), (NB, 3), (NB + 1, 4), (2 * NB + 37, 5)] {
            let a = spd(n, seed);
            let l = cholesky_lower(a.clone()).expect("positive definite");
            let reference = Cholesky::new(a.clone()).unwrap().unpack();
            let scale = a.amax();
            assert!((&l - &reference).amax() < 1e-9 * scale, "n = {n}: factors differ by {}", (&l - &reference).amax());
            assert!((&l * l.transpose() - &a).amax() < 1e-9 * scale, "n = {n}: L Lᵀ ≠ A");
            assert!(l.upper_triangle().iter().zip(l.lower_triangle().iter()).all(|(u, lo)| u == lo || *u == 0.0));
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 100);
            let b = DMatrix::from_fn(n, 13, |_, _| rng.random_range(-1.0..1.0));
            // garbage above the diagonal must not be read
            let mut dirty = l.clone();
            dirty.fill_upper_triangle(f64::NAN, 1);
            let x = solve_lower(&dirty, b.clone());
            let x_ref = reference.solve_lower_triangular(&b).unwrap();
            assert!((&x - &x_ref).amax() < 1e-8 * (1.0 + x_ref.amax()), "n = {n}: solves differ");
        }
    }

    #[test]
    fn a_matrix_that_is_not_positive_definite_has_no_factor() {
        let mut a = spd(2 * NB + 5, 9);
        // a negative pivot in the second block
        a[(NB + 3, NB + 3)] = -1.0;
        assert!(cholesky_lower(a).is_none());
        assert!(cholesky_lower(DMatrix::from_element(3, 3, 1.0)).is_none());
    }
}
