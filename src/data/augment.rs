//! Augmentations on CHW float images in [0, 1]: random crop with padding, random resized crop,
//! horizontal flip, colour jitter, Gaussian noise, Gaussian blur. All draws come from the RNG
//! passed in, so a seed fixes them.
use super::images::InputSpec;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which augmentations to apply to training images. All off by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Pad by this many pixels (zeros) and crop back to the input size at a random offset; 0 = off.
    pub crop_padding: u32,
    /// Random resized crop: minimum area fraction in (0, 1]; aspect ratio in [3/4, 4/3]. None = off.
    pub random_resized_crop: Option<f32>,
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
    /// Colour jitter strength s (SimCLR): brightness, contrast, saturation factors in [1-0.8s, 1+0.8s]; 0 = off.
    pub color_jitter: f32,
    /// Standard deviation of additive Gaussian noise (pixels in [0, 1]); 0 = off.
    pub gaussian_noise: f32,
    /// Probability of a Gaussian blur (3x3, sigma in [0.1, 2.0]); 0 = off.
    pub gaussian_blur: f32,
}

impl Augment {
    pub fn is_off(&self) -> bool {
        self == &Augment::default()
    }

    /// The SimCLR augmentation family at strength `s`, for small images.
    pub fn simclr(s: f32) -> Self {
        Augment { crop_padding: 0, random_resized_crop: Some(0.2), hflip: true, color_jitter: s, gaussian_noise: 0.02, gaussian_blur: 0.5 }
    }

    /// Every strength in range; the error names the field (`augment.color_jitter`, ...).
    pub fn validate(&self) -> crate::error::Result<()> {
        if let Some(s) = self.random_resized_crop {
            if !(s > 0.0 && s <= 1.0) {
                return Err(crate::error::GraftError::recipe("augment.random_resized_crop", format!("must be in (0, 1], got {s}")));
            }
        }
        for (name, v, hi) in [
            ("augment.color_jitter", self.color_jitter, 1.0),
            ("augment.gaussian_noise", self.gaussian_noise, 1.0),
            ("augment.gaussian_blur", self.gaussian_blur, 1.0),
        ] {
            if !(v.is_finite() && (0.0..=hi).contains(&v)) {
                return Err(crate::error::GraftError::recipe(name, format!("must be in [0, {hi}], got {v}")));
            }
        }
        if self.crop_padding > 64 {
            return Err(crate::error::GraftError::recipe(
                "augment.crop_padding",
                format!("must be at most 64 pixels, got {}", self.crop_padding),
            ));
        }
        Ok(())
    }

    /// Apply to one CHW image in place.
    pub fn apply<R: Rng>(&self, img: &mut [f32], spec: InputSpec, rng: &mut R) {
        if let Some(smin) = self.random_resized_crop {
            random_resized_crop(img, spec, smin, rng);
        }
        if self.crop_padding > 0 {
            crop_with_padding(img, spec, self.crop_padding as usize, rng);
        }
        if self.hflip && rng.random_bool(0.5) {
            hflip(img, spec);
        }
        if self.color_jitter > 0.0 {
            color_jitter(img, spec, self.color_jitter, rng);
        }
        if self.gaussian_blur > 0.0 && rng.random::<f32>() < self.gaussian_blur {
            let sigma = rng.random_range(0.1f32..2.0);
            gaussian_blur(img, spec, sigma);
        }
        if self.gaussian_noise > 0.0 {
            let n = Normal::new(0.0f32, self.gaussian_noise).expect("validated std");
            for v in img.iter_mut() {
                *v = (*v + n.sample(rng)).clamp(0.0, 1.0);
            }
        }
    }
}

pub fn hflip(img: &mut [f32], spec: InputSpec) {
    let w = spec.width;
    for row in img.chunks_mut(w) {
        row.reverse();
    }
}

pub fn crop_with_padding<R: Rng>(img: &mut [f32], spec: InputSpec, pad: usize, rng: &mut R) {
    let (h, w) = (spec.height, spec.width);
    let dy = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let dx = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let src = img.to_vec();
    for c in 0..spec.channels {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as isize + dy, x as isize + dx);
                img[c * h * w + y * w + x] = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                    src[c * h * w + sy as usize * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Bilinear sample of channel plane `p` (h x w) at (y, x), edges clamped.
fn bilinear(p: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    let y = y.clamp(0.0, (h - 1) as f32);
    let x = x.clamp(0.0, (w - 1) as f32);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let a = p[y0 * w + x0] * (1.0 - fx) + p[y0 * w + x1] * fx;
    let b = p[y1 * w + x0] * (1.0 - fx) + p[y1 * w + x1] * fx;
    a * (1.0 - fy) + b * fy
}

pub fn random_resized_crop<R: Rng>(img: &mut [f32], spec: InputSpec, smin: f32, rng: &mut R) {
    let (h, w) = (spec.height as f32, spec.width as f32);
    let mut crop = (0.0, 0.0, h, w);
    for _ in 0..10 {
        let area = rng.random_range(smin..=1.0) * h * w;
        let logr = rng.random_range((3.0f32 / 4.0).ln()..=(4.0f32 / 3.0).ln());
        let r = logr.exp();
        let cw = (area * r).sqrt();
        let ch = (area / r).sqrt();
        if cw <= w && ch <= h {
            let y0 = rng.random_range(0.0..=(h - ch));
            let x0 = rng.random_range(0.0..=(w - cw));
            crop = (y0, x0, ch, cw);
            break;
        }
    }
    let (y0, x0, ch, cw) = crop;
    let src = img.to_vec();
    let (hh, ww) = (spec.height, spec.width);
    for c in 0..spec.channels {
        let plane = &src[c * hh * ww..(c + 1) * hh * ww];
        for y in 0..hh {
            for x in 0..ww {
                let sy = y0 + (y as f32 + 0.5) * ch / h - 0.5;
                let sx = x0 + (x as f32 + 0.5) * cw / w - 0.5;
                img[c * hh * ww + y * ww + x] = bilinear(plane, hh, ww, sy, sx);
            }
        }
    }
}

pub fn color_jitter<R: Rng>(img: &mut [f32], spec: InputSpec, s: f32, rng: &mut R) {
    let hw = spec.height * spec.width;
    let f = |rng: &mut R| rng.random_range((1.0 - 0.8 * s).max(0.0)..=(1.0 + 0.8 * s));
    let (b, c, sat) = (f(rng), f(rng), f(rng));
    for v in img.iter_mut() {
        *v = (*v * b).clamp(0.0, 1.0);
    }
    let mean = img.iter().sum::<f32>() / img.len() as f32;
    for v in img.iter_mut() {
        *v = ((*v - mean) * c + mean).clamp(0.0, 1.0);
    }
    if spec.channels == 3 {
        for p in 0..hw {
            let (r, g, bl) = (img[p], img[hw + p], img[2 * hw + p]);
            let grey = 0.299 * r + 0.587 * g + 0.114 * bl;
            for ch in 0..3 {
                let v = img[ch * hw + p];
                img[ch * hw + p] = ((v - grey) * sat + grey).clamp(0.0, 1.0);
            }
        }
    }
}

pub fn gaussian_blur(img: &mut [f32], spec: InputSpec, sigma: f32) {
    let k: Vec<f32> = {
        let raw: Vec<f32> = (-1..=1).map(|i: i32| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
        let s: f32 = raw.iter().sum();
        raw.iter().map(|v| v / s).collect()
    };
    let (h, w) = (spec.height, spec.width);
    for c in 0..spec.channels {
        let plane = &mut img[c * h * w..(c + 1) * h * w];
        let src = plane.to_vec();
        let mut tmp = vec![0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let xx = (x as isize + j as isize - 1).clamp(0, w as isize - 1) as usize;
                    acc += kv * src[y * w + xx];
                }
                tmp[y * w + x] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let yy = (y as isize + j as isize - 1).clamp(0, h as isize - 1) as usize;
                    acc += kv * tmp[yy * w + x];
                }
                plane[y * w + x] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec() -> InputSpec {
        InputSpec { channels: 3, height: 8, width: 8 }
    }

    #[test]
    fn hflip_twice_is_identity_and_flip_moves_pixels() {
        let img: Vec<f32> = (0..192).map(|i| i as f32 / 192.0).collect();
        let mut a = img.clone();
        hflip(&mut a, spec());
        assert_ne!(a, img);
        assert_eq!(a[0], img[7]);
        hflip(&mut a, spec());
        assert_eq!(a, img);
    }

    #[test]
    fn augment_is_seeded_and_stays_in_range() {
        let aug = Augment {
            crop_padding: 2,
            random_resized_crop: Some(0.3),
            hflip: true,
            color_jitter: 0.5,
            gaussian_noise: 0.1,
            gaussian_blur: 1.0,
        };
        let img: Vec<f32> = (0..192).map(|i| (i % 17) as f32 / 17.0).collect();
        let run = |seed| {
            let mut x = img.clone();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            aug.apply(&mut x, spec(), &mut rng);
            x
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(3).iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn blur_preserves_constant_image() {
        let mut x = vec![0.5f32; 192];
        gaussian_blur(&mut x, spec(), 1.0);
        assert!(x.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }
}
