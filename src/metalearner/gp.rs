//! Gaussian-process regression with an ARD squared-exponential kernel, hyperparameters fitted by
//! maximising the log marginal likelihood with argmin's L-BFGS (analytic gradient).
//!
//! k(a, b) = s² exp(−½ Σ_i (a_i − b_i)² / l_i²) + σ² δ_ab,  y ~ GP(m, k) with a constant mean m.
use crate::error::{GraftError, Result};
use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpParams {
    pub log_ls: Vec<f64>,
    pub log_sf2: f64,
    pub log_sn2: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gp {
    pub params: GpParams,
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
    #[serde(skip)]
    fitted: Option<(Cholesky<f64, Dyn>, DVector<f64>)>,
}

fn sqdist_scaled(a: &[f64], b: &[f64], inv_l2: &[f64]) -> f64 {
    a.iter().zip(b).zip(inv_l2).map(|((x, y), w)| (x - y) * (x - y) * w).sum()
}

fn kmatrix(x: &[Vec<f64>], p: &GpParams, noise: bool) -> DMatrix<f64> {
    let n = x.len();
    let inv: Vec<f64> = p.log_ls.iter().map(|l| (-2.0 * l).exp()).collect();
    let sf2 = p.log_sf2.exp();
    let mut k = DMatrix::zeros(n, n);
    for i in 0..n {
        for j in 0..=i {
            let v = sf2 * (-0.5 * sqdist_scaled(&x[i], &x[j], &inv)).exp();
            k[(i, j)] = v;
            k[(j, i)] = v;
        }
        if noise {
            k[(i, i)] += p.log_sn2.exp() + 1e-8;
        }
    }
    k
}

/// Weak log-normal priors on the hyperparameters keep L-BFGS away from degenerate optima.
const PRIOR_SD: f64 = 3.0;

struct Nll<'a> {
    x: &'a [Vec<f64>],
    y: &'a [f64],
    mean: f64,
    ls0: f64,
}

impl Nll<'_> {
    fn unpack(&self, t: &[f64]) -> GpParams {
        let d = self.x[0].len();
        GpParams { log_ls: t[..d].to_vec(), log_sf2: t[d], log_sn2: t[d + 1], mean: self.mean }
    }
    /// Negative log marginal likelihood (+ prior) and its gradient.
    fn eval(&self, t: &[f64]) -> (f64, Vec<f64>) {
        let d = self.x[0].len();
        let n = self.x.len();
        let p = self.unpack(t);
        let k = kmatrix(self.x, &p, true);
        let Some(ch) = Cholesky::new(k) else {
            return (1e10, vec![0.0; t.len()]);
        };
        let r = DVector::from_iterator(n, self.y.iter().map(|v| v - self.mean));
        let alpha = ch.solve(&r);
        let logdet: f64 = ch.l().diagonal().iter().map(|v| v.ln()).sum::<f64>() * 2.0;
        let mut nll = 0.5 * r.dot(&alpha) + 0.5 * logdet + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        // W = alpha alpha^T - K^-1; dNLL/dθ = -½ tr(W dK/dθ)
        let kinv = ch.inverse();
        let inv: Vec<f64> = p.log_ls.iter().map(|l| (-2.0 * l).exp()).collect();
        let sf2 = p.log_sf2.exp();
        let mut g = vec![0.0; t.len()];
        for i in 0..n {
            for j in 0..n {
                let w = alpha[i] * alpha[j] - kinv[(i, j)];
                if i == j {
                    g[d + 1] += -0.5 * w * p.log_sn2.exp();
                }
                let mut s = 0.0;
                let mut terms = [0.0f64; 64];
                for q in 0..d {
                    let dq = (self.x[i][q] - self.x[j][q]).powi(2) * inv[q];
                    s += dq;
                    if q < 64 {
                        terms[q] = dq;
                    }
                }
                let kse = sf2 * (-0.5 * s).exp();
                g[d] += -0.5 * w * kse;
                for q in 0..d.min(64) {
                    g[q] += -0.5 * w * kse * terms[q];
                }
            }
        }
        // priors
        for q in 0..d {
            let z = (t[q] - self.ls0) / PRIOR_SD;
            nll += 0.5 * z * z;
            g[q] += z / PRIOR_SD;
        }
        for q in [d, d + 1] {
            let z = t[q] / PRIOR_SD;
            nll += 0.5 * z * z;
            g[q] += z / PRIOR_SD;
        }
        (nll, g)
    }
}

impl CostFunction for Nll<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, t: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.eval(t).0)
    }
}
impl Gradient for Nll<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, t: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(t).1)
    }
}

impl Gp {
    /// Fit hyperparameters by maximum marginal likelihood (L-BFGS, `iters` iterations).
    pub fn fit(x: Vec<Vec<f64>>, y: Vec<f64>, iters: u64) -> Result<Gp> {
        if x.len() < 3 || x[0].is_empty() {
            return Err(GraftError::Data("meta-learner: too few observations to fit a Gaussian process".into()));
        }
        if x[0].len() > 64 {
            return Err(GraftError::Data("meta-learner: more than 64 input features".into()));
        }
        let d = x[0].len();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let var = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64).max(1e-4);
        let ls0 = (d as f64).sqrt().ln();
        let nll = Nll { x: &x, y: &y, mean, ls0 };
        let mut init = vec![ls0; d];
        init.push(var.ln());
        init.push((0.1 * var).ln());
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7);
        let res = Executor::new(nll, solver)
            .configure(|s| s.param(init.clone()).max_iters(iters))
            .run()
            .map_err(|e| GraftError::Other(format!("meta-learner: GP hyperparameter fit (L-BFGS) failed: {e}")))?;
        let best = res.state().best_param.clone().unwrap_or(init);
        let nll = Nll { x: &x, y: &y, mean, ls0 };
        let params = nll.unpack(&best);
        let mut gp = Gp { params, x, y, fitted: None };
        gp.refit()?;
        Ok(gp)
    }

    /// Condition on new observations (`x`, `y`) with the hyperparameters kept; the constant mean
    /// becomes the mean of `y`.
    pub fn condition(&mut self, x: Vec<Vec<f64>>, y: Vec<f64>) -> Result<()> {
        if x.is_empty() || x.len() != y.len() || x.iter().any(|r| r.len() != self.params.log_ls.len()) {
            return Err(GraftError::Other("meta-learner: GP conditioning data do not match the fitted inputs".into()));
        }
        self.params.mean = y.iter().sum::<f64>() / y.len() as f64;
        self.x = x;
        self.y = y;
        self.refit()
    }

    /// (Re)compute the Cholesky factor and weights for the stored data and hyperparameters.
    /// Shapes and ranges of a loaded GP: `x` is n rows of `dim` finite values, `y` n finite
    /// values of an accuracy's scale, and the hyper-parameters finite and of sane magnitude.
    pub fn validate(&self, name: &str, dim: usize) -> Result<()> {
        let p = &self.params;
        if self.x.is_empty() {
            return Err(GraftError::Other(format!("`{name}.x` is empty")));
        }
        if self.y.len() != self.x.len() {
            return Err(GraftError::Other(format!("`{name}.x` has {} rows but `{name}.y` has {} values", self.x.len(), self.y.len())));
        }
        if let Some(i) = self.x.iter().position(|r| r.len() != dim || r.iter().any(|v| !v.is_finite())) {
            return Err(GraftError::Other(format!("`{name}.x[{i}]` does not hold {dim} finite values")));
        }
        // accuracies (or their differences) live in [-1, 1]; leave room, refuse absurd values
        if let Some(i) = self.y.iter().position(|v| !v.is_finite() || v.abs() > 10.0) {
            return Err(GraftError::Other(format!("`{name}.y[{i}]` = {} is not an accuracy", self.y[i])));
        }
        if p.log_ls.len() != dim {
            return Err(GraftError::Other(format!("`{name}.params.log_ls` has {} values, expected {dim}", p.log_ls.len())));
        }
        let sane = |v: f64| v.is_finite() && v.abs() <= 50.0;
        if !(p.log_ls.iter().all(|v| sane(*v)) && sane(p.log_sf2) && sane(p.log_sn2) && sane(p.mean)) {
            return Err(GraftError::Other(format!("`{name}.params` holds a non-finite or out-of-range value")));
        }
        Ok(())
    }

    pub fn refit(&mut self) -> Result<()> {
        let k = kmatrix(&self.x, &self.params, true);
        let l = super::linalg::cholesky_lower(k)
            .ok_or_else(|| GraftError::Other("meta-learner: GP kernel matrix is not positive definite".into()))?;
        let ch = Cholesky::pack_dirty(l);
        let r = DVector::from_iterator(self.y.len(), self.y.iter().map(|v| v - self.params.mean));
        let alpha = ch.solve(&r);
        self.fitted = Some((ch, alpha));
        Ok(())
    }

    fn cross(&self, xs: &[Vec<f64>]) -> DMatrix<f64> {
        let inv: Vec<f64> = self.params.log_ls.iter().map(|l| (-2.0 * l).exp()).collect();
        let sf2 = self.params.log_sf2.exp();
        DMatrix::from_fn(self.x.len(), xs.len(), |i, j| sf2 * (-0.5 * sqdist_scaled(&self.x[i], &xs[j], &inv)).exp())
    }

    /// The posterior mean at `xs` and V = L⁻¹ K(X, xs), whose column norms are what the data
    /// explain of each prior variance.
    fn posterior_parts(&self, xs: &[Vec<f64>]) -> (Vec<f64>, DMatrix<f64>) {
        let (ch, alpha) = self.fitted.as_ref().expect("GP is fitted");
        let ks = self.cross(xs);
        let mean: Vec<f64> = (ks.transpose() * alpha).iter().map(|v| v + self.params.mean).collect();
        (mean, super::linalg::solve_lower(ch.l_dirty(), ks))
    }

    /// Predictive mean and covariance of the latent function at `xs`, plus the noise variance.
    pub fn predict_joint(&self, xs: &[Vec<f64>]) -> (Vec<f64>, DMatrix<f64>, f64) {
        let (mean, v) = self.posterior_parts(xs);
        let kss = kmatrix(xs, &self.params, false);
        let cov = kss - v.transpose() * v;
        (mean, cov, self.params.log_sn2.exp())
    }

    /// Predictive mean and variance of an observation (latent variance + noise) at each of `xs`.
    pub fn predict(&self, xs: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
        let (mean, v) = self.posterior_parts(xs);
        let sf2 = self.params.log_sf2.exp();
        let sn2 = self.params.log_sn2.exp();
        let var = (0..xs.len()).map(|j| (sf2 - v.column(j).norm_squared()).max(0.0) + sn2).collect();
        (mean, var)
    }

    pub fn lengthscales(&self) -> Vec<f64> {
        self.params.log_ls.iter().map(|l| l.exp()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let x: Vec<Vec<f64>> = (0..12).map(|i| vec![(i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()]).collect();
        let y: Vec<f64> = x.iter().map(|v| v[0] * 0.5 + 0.1 * v[1]).collect();
        let nll = Nll { x: &x, y: &y, mean: 0.1, ls0: 0.3 };
        let t = vec![0.1, -0.2, -1.0, -3.0];
        let (_, g) = nll.eval(&t);
        for q in 0..t.len() {
            let h = 1e-5;
            let (mut a, mut b) = (t.clone(), t.clone());
            a[q] += h;
            b[q] -= h;
            let fd = (nll.eval(&a).0 - nll.eval(&b).0) / (2.0 * h);
            assert!((fd - g[q]).abs() < 1e-4 * (1.0 + fd.abs()), "param {q}: fd {fd} vs analytic {}", g[q]);
        }
    }

    #[test]
    fn fits_and_interpolates_a_smooth_function() {
        let x: Vec<Vec<f64>> = (0..30).map(|i| vec![i as f64 / 10.0]).collect();
        let y: Vec<f64> = x.iter().map(|v| (v[0] * 1.5).sin()).collect();
        let gp = Gp::fit(x, y, 50).unwrap();
        let (m, v) = gp.predict(&[vec![1.05], vec![10.0]]);
        assert!((m[0] - (1.05f64 * 1.5).sin()).abs() < 0.05, "{m:?}");
        // far from the data the variance returns to the prior
        assert!(v[1] > 10.0 * v[0]);
    }

    #[test]
    fn conditioning_on_more_points_keeps_the_hyperparameters_and_uses_the_data() {
        let f = |v: f64| (v * 1.5).sin();
        let sparse: Vec<Vec<f64>> = (0..8).map(|i| vec![i as f64 * 0.8]).collect();
        let mut gp = Gp::fit(sparse.clone(), sparse.iter().map(|v| f(v[0])).collect(), 50).unwrap();
        let params = gp.params.log_ls.clone();
        let probe: Vec<Vec<f64>> = (0..20).map(|i| vec![0.15 + i as f64 * 0.27]).collect();
        let err = |gp: &Gp| {
            let (m, _) = gp.predict(&probe);
            m.iter().zip(&probe).map(|(m, x)| (m - f(x[0])).abs()).fold(0.0, f64::max)
        };
        let (before, (_, v0)) = (err(&gp), gp.predict(&probe));
        // conditioning on the same data changes nothing
        let mut same = gp.clone();
        same.condition(sparse.clone(), sparse.iter().map(|v| f(v[0])).collect()).unwrap();
        assert!((err(&same) - before).abs() < 1e-12);
        let dense: Vec<Vec<f64>> = (0..60).map(|i| vec![i as f64 * 0.1]).collect();
        gp.condition(dense.clone(), dense.iter().map(|v| f(v[0])).collect()).unwrap();
        assert_eq!(gp.params.log_ls, params);
        let (after, (_, v1)) = (err(&gp), gp.predict(&probe));
        assert!(after < before / 2.0, "max error {before} -> {after}");
        assert!(v1.iter().sum::<f64>() < v0.iter().sum::<f64>());
        // inputs of the wrong width are refused
        assert!(gp.condition(vec![vec![0.0, 1.0]], vec![0.5]).is_err());
    }
}
