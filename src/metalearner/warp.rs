//! The scale the GPs model accuracy on.
//!
//! A test accuracy is a binomial proportion: bounded to [0, 1], and its sampling variance
//! p(1 − p)/n shrinks towards either end. A GP on the raw accuracy ignores both: its means leave
//! [0, 1] when it extrapolates (the photos example's best candidates were predicted at 1.02),
//! its intervals are symmetric, and one noise variance serves a task at 0.5 and a task at 0.98.
//! The arcsine square-root transform, z = asin(√p), is the classical variance-stabilising
//! transform of a binomial proportion: z's sampling variance is ≈ 1/(4n) whatever p is, and it
//! maps [0, 1] onto the bounded interval [0, π/2] with no clipping of 0 or 1 (a logit would need
//! one, and would turn every perfect score into a tuning constant). The GP models z; predictions
//! come back through p = sin²(z), z kept in [0, π/2]: a monotone map, so intervals map
//! endpoint by endpoint, orders are unchanged, and P(a beats b) is the same on either scale.
use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warp {
    /// The raw accuracy (every meta-learner fitted before it existed: a model file without
    /// `warp` is read as this one).
    #[default]
    Identity,
    /// z = asin(√p).
    Arcsine,
}

impl Warp {
    pub fn as_str(&self) -> &'static str {
        match self {
            Warp::Identity => "identity",
            Warp::Arcsine => "arcsine",
        }
    }

    pub fn parse(s: &str) -> Option<Warp> {
        match s {
            "identity" | "none" => Some(Warp::Identity),
            "arcsine" => Some(Warp::Arcsine),
            _ => None,
        }
    }

    /// Accuracy → the GP's scale.
    pub fn fwd(&self, acc: f64) -> f64 {
        match self {
            Warp::Identity => acc,
            Warp::Arcsine => acc.clamp(0.0, 1.0).sqrt().asin(),
        }
    }

    /// The GP's scale → accuracy (the inverse of `fwd` on [0, π/2]; beyond it, the nearer end).
    pub fn inv(&self, z: f64) -> f64 {
        match self {
            Warp::Identity => z,
            Warp::Arcsine => z.clamp(0.0, FRAC_PI_2).sin().powi(2),
        }
    }

    /// The accuracy a latent N(mu, var) stands for, E[inv(z)]: under the arcsine warp the mass
    /// beyond π/2 counts as accuracy 1 and below 0 as 0 (as `inv` maps them), the rest is
    /// ∫ sin²(z) φ(z) dz over [0, π/2] by Simpson's rule. Always in [0, 1].
    pub fn mean(&self, mu: f64, var: f64) -> f64 {
        match self {
            Warp::Identity => mu,
            Warp::Arcsine => {
                let sd = var.max(0.0).sqrt();
                if sd < 1e-9 {
                    return self.inv(mu);
                }
                let above = 1.0 - super::normal_cdf((FRAC_PI_2 - mu) / sd);
                let (a, b) = ((mu - 8.0 * sd).max(0.0), (mu + 8.0 * sd).min(FRAC_PI_2));
                let mut inside = 0.0;
                if a < b {
                    const N: usize = 256;
                    let h = (b - a) / N as f64;
                    let f = |z: f64| {
                        let u = (z - mu) / sd;
                        z.sin().powi(2) * (-0.5 * u * u).exp()
                    };
                    let mut acc = f(a) + f(b);
                    for i in 1..N {
                        acc += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
                    }
                    inside = acc * h / 3.0 / (sd * (2.0 * std::f64::consts::PI).sqrt());
                }
                (above + inside).clamp(0.0, 1.0)
            }
        }
    }

    /// What the advisor states for a latent N(mu, sd²): the accuracy it stands for (`mean`),
    /// kept inside its 80%-style interval mu ± z·sd mapped end by end (they differ only where
    /// most of the mass lies past a bound: a latent mean above π/2 with a small sd has the
    /// interval [1, 1] and a mean a hair below 1), and that interval.
    pub fn state(&self, mu: f64, sd: f64, z: f64) -> (f64, (f64, f64)) {
        let (lo, hi) = self.interval(mu, sd, z);
        (self.mean(mu, sd * sd).clamp(lo.min(hi), hi.max(lo)), (lo, hi))
    }

    /// The interval mu ± z·sd on the latent scale, mapped to accuracy.
    pub fn interval(&self, mu: f64, sd: f64, z: f64) -> (f64, f64) {
        (self.inv(mu - z * sd), self.inv(mu + z * sd))
    }

    /// A latent-scale standard deviation read as accuracy points: half the width of the ±1 sd
    /// interval mapped to accuracy (the delta method at mu for a small sd).
    pub fn acc_sd(&self, mu: f64, sd: f64) -> f64 {
        match self {
            Warp::Identity => sd,
            Warp::Arcsine => {
                let (lo, hi) = self.interval(mu, sd, 1.0);
                0.5 * (hi - lo)
            }
        }
    }

    /// The sampling variance, on the latent scale, of an accuracy `acc` measured on `n` images
    /// (`raw`: the variance on the accuracy scale the caller would use without a warp). Under
    /// the arcsine warp it is 1/(4n) at every accuracy (the transform's purpose), which also
    /// keeps a perfect score on a few images from being taken as certain.
    pub fn obs_var(&self, raw: f64, n: usize) -> f64 {
        match self {
            Warp::Identity => raw,
            Warp::Arcsine if n == 0 => 0.0,
            Warp::Arcsine => 0.25 / n as f64,
        }
    }
}

/// Whether `x` lies in the interval (lo, hi), ends included up to rounding.
pub fn holds((lo, hi): (f64, f64), x: f64) -> bool {
    lo - 1e-12 <= x && x <= hi + 1e-12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcsine_round_trips_and_stays_in_bounds() {
        let w = Warp::Arcsine;
        for p in [0.0, 0.01, 0.2, 0.5, 0.77, 0.99, 1.0] {
            assert!((w.inv(w.fwd(p)) - p).abs() < 1e-12, "{p}");
        }
        // out-of-range latent values map to the nearer end, never fold back
        assert_eq!(w.inv(2.0), 1.0);
        assert_eq!(w.inv(-0.3), 0.0);
        assert_eq!(w.fwd(1.3), FRAC_PI_2);
        assert_eq!(Warp::Identity.fwd(1.3), 1.3);
    }

    #[test]
    fn arcsine_mean_matches_monte_carlo_and_is_bounded() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let w = Warp::Arcsine;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (mu, var) in [(0.3, 0.01), (1.0, 0.05), (1.4, 0.002), (1.5, 0.04), (0.05, 0.01), (1.8, 0.09)] {
            let d = Normal::new(mu, f64::sqrt(var)).unwrap();
            let mc = (0..200_000).map(|_| w.inv(d.sample(&mut rng))).sum::<f64>() / 200_000.0;
            assert!((w.mean(mu, var) - mc).abs() < 2e-3, "mu {mu} var {var}: {} vs {mc}", w.mean(mu, var));
        }
        // a latent mean past the ceiling gives an accuracy at most 1, never above
        assert_eq!(w.mean(1.9, 0.0), 1.0);
        assert!(w.mean(1.9, 0.3) < 1.0);
        // the stated accuracy stays inside its interval, also where the interval collapses to 1
        for (mu, sd) in [(1.9, 0.05), (1.65, 0.05), (0.7, 0.3), (-0.2, 0.1), (1.2, 1.5)] {
            let (m, (lo, hi)) = w.state(mu, sd, 1.2816);
            assert!(lo <= m && m <= hi && (0.0..=1.0).contains(&m), "mu {mu} sd {sd}: {m} [{lo}, {hi}]");
        }
        let (m, (lo, hi)) = Warp::Identity.state(1.02, 0.1, 1.0);
        assert!(m == 1.02 && (lo - 0.92).abs() < 1e-12 && (hi - 1.12).abs() < 1e-12);
        // the mean lies below the median near the ceiling (the interval is skewed downwards)
        assert!(w.mean(1.45, 0.02) < w.inv(1.45));
    }

    #[test]
    fn intervals_map_endpoint_by_endpoint_and_narrow_at_the_ceiling() {
        let w = Warp::Arcsine;
        let (lo, hi) = w.interval(w.fwd(0.95), 0.1, 1.2816);
        assert!(lo < 0.95 && hi > 0.95 && hi <= 1.0);
        // skewed: more room below a high accuracy than above it
        assert!(0.95 - lo > hi - 0.95);
        // the same latent sd reads as fewer accuracy points near 1 than at 0.5
        assert!(w.acc_sd(w.fwd(0.97), 0.1) < w.acc_sd(w.fwd(0.5), 0.1));
        assert_eq!(Warp::Identity.interval(0.5, 0.1, 1.0), (0.4, 0.6));
    }

    #[test]
    fn arcsine_observation_variance_is_one_over_4n() {
        assert_eq!(Warp::Arcsine.obs_var(0.01, 25), 0.01);
        assert_eq!(Warp::Arcsine.obs_var(0.0, 0), 0.0);
        assert_eq!(Warp::Identity.obs_var(0.0123, 25), 0.0123);
    }

    #[test]
    fn names_parse_back() {
        for w in [Warp::Identity, Warp::Arcsine] {
            assert_eq!(Warp::parse(w.as_str()), Some(w));
        }
        assert_eq!(Warp::parse("logit"), None);
    }
}
