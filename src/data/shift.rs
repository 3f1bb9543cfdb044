//! Input shifts applied to a target task's images (train, validation, test and unlabelled
//! alike) to move it away from its source domain, as in ZAP and Surgical Fine-Tuning's
//! corruptions: rotation, Gaussian noise, blur, colour inversion, contrast and downscaling.
//! Deterministic: every image draws from its own stream of the task's seed.
use super::augment::gaussian_blur;
use super::ImageSet;
use crate::error::{GraftError, Result};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Shift {
    None,
    /// Rotation of every image by `degrees` about its centre (bilinear, border replicated).
    Rotate {
        degrees: f32,
    },
    /// Additive Gaussian noise with standard deviation `sigma` (pixels in [0, 1]).
    Noise {
        sigma: f32,
    },
    /// Gaussian blur, `passes` passes of a 3-tap kernel with standard deviation `sigma`.
    Blur {
        sigma: f32,
        passes: u32,
    },
    /// 1 − x.
    Invert,
    /// (x − mean) · factor + mean, per image.
    Contrast {
        factor: f32,
    },
    /// Down to size/factor (area average), then back up (nearest): loses detail.
    Downscale {
        factor: u32,
    },
}

pub const SHIFT_KINDS: &[&str] = &["none", "rotate", "noise", "blur", "invert", "contrast", "downscale"];

impl Shift {
    pub fn name(&self) -> String {
        match self {
            Shift::None => "none".into(),
            Shift::Rotate { degrees } => format!("rotate{degrees:.0}"),
            Shift::Noise { sigma } => format!("noise{sigma:.2}"),
            Shift::Blur { sigma, passes } => format!("blur{sigma:.1}x{passes}"),
            Shift::Invert => "invert".into(),
            Shift::Contrast { factor } => format!("contrast{factor:.2}"),
            Shift::Downscale { factor } => format!("downscale{factor}"),
        }
    }

    /// A shift of the named kind at a strength drawn from `u` in [0, 1).
    pub fn of_kind(kind: &str, u: f32) -> Result<Shift> {
        Ok(match kind {
            "none" => Shift::None,
            "rotate" => Shift::Rotate { degrees: 30.0 + 150.0 * u },
            "noise" => Shift::Noise { sigma: 0.08 + 0.25 * u },
            "blur" => Shift::Blur { sigma: 1.0, passes: 1 + (u * 4.0) as u32 },
            "invert" => Shift::Invert,
            "contrast" => Shift::Contrast { factor: 0.2 + 0.3 * u },
            "downscale" => Shift::Downscale { factor: 2 + (u * 3.0) as u32 },
            _ => return Err(GraftError::Usage(format!("unknown shift `{kind}`; known: {}", SHIFT_KINDS.join(", ")))),
        })
    }

    /// Apply to every image of `set` in place; `seed` and `purpose` name the random stream.
    pub fn apply(&self, set: &mut ImageSet, seed: u64, purpose: &str) {
        if *self == Shift::None {
            return;
        }
        let spec = set.spec;
        let l = set.image_len();
        let mut buf = vec![0f32; l];
        for i in 0..set.n {
            let img = &mut set.pixels[i * l..(i + 1) * l];
            for (d, s) in buf.iter_mut().zip(img.iter()) {
                *d = *s as f32 / 255.0;
            }
            let mut rng = crate::util::rng_for(seed, &format!("shift-{purpose}-{i}"));
            self.apply_f32(&mut buf, spec, &mut rng);
            for (d, s) in img.iter_mut().zip(&buf) {
                *d = (s.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }

    fn apply_f32<R: rand::Rng>(&self, img: &mut [f32], spec: super::InputSpec, rng: &mut R) {
        let (c, h, w) = (spec.channels, spec.height, spec.width);
        match *self {
            Shift::None => {}
            Shift::Invert => img.iter_mut().for_each(|v| *v = 1.0 - *v),
            Shift::Noise { sigma } => {
                let n = Normal::new(0.0f32, sigma).expect("sigma > 0");
                img.iter_mut().for_each(|v| *v += n.sample(rng));
            }
            Shift::Blur { sigma, passes } => {
                for _ in 0..passes {
                    gaussian_blur(img, spec, sigma);
                }
            }
            Shift::Contrast { factor } => {
                let m = img.iter().sum::<f32>() / img.len() as f32;
                img.iter_mut().for_each(|v| *v = (*v - m) * factor + m);
            }
            Shift::Rotate { degrees } => {
                let (s, co) = degrees.to_radians().sin_cos();
                let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
                let src = img.to_vec();
                for y in 0..h {
                    for x in 0..w {
                        // inverse map: where does output pixel (y, x) come from
                        let (dy, dx) = (y as f32 - cy, x as f32 - cx);
                        let sx = (co * dx + s * dy + cx).clamp(0.0, w as f32 - 1.0);
                        let sy = (-s * dx + co * dy + cy).clamp(0.0, h as f32 - 1.0);
                        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                        for ch in 0..c {
                            let p = &src[ch * h * w..(ch + 1) * h * w];
                            let v = p[y0 * w + x0] * (1.0 - fx) * (1.0 - fy)
                                + p[y0 * w + x1] * fx * (1.0 - fy)
                                + p[y1 * w + x0] * (1.0 - fx) * fy
                                + p[y1 * w + x1] * fx * fy;
                            img[ch * h * w + y * w + x] = v;
                        }
                    }
                }
            }
            Shift::Downscale { factor } => {
                let f = factor as usize;
                let (sh, sw) = (h.div_ceil(f), w.div_ceil(f));
                for ch in 0..c {
                    let p = &mut img[ch * h * w..(ch + 1) * h * w];
                    let mut small = vec![0f32; sh * sw];
                    for by in 0..sh {
                        for bx in 0..sw {
                            let (mut acc, mut n) = (0.0, 0.0);
                            for y in by * f..((by + 1) * f).min(h) {
                                for x in bx * f..((bx + 1) * f).min(w) {
                                    acc += p[y * w + x];
                                    n += 1.0;
                                }
                            }
                            small[by * sw + bx] = acc / n;
                        }
                    }
                    for y in 0..h {
                        for x in 0..w {
                            p[y * w + x] = small[(y / f) * sw + x / f];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InputSpec;

    fn set(px: Vec<u8>, spec: InputSpec) -> ImageSet {
        ImageSet::in_memory(px, vec![0], spec)
    }

    #[test]
    fn invert_rotate_downscale_do_what_they_say() {
        let spec = InputSpec { channels: 1, height: 4, width: 4 };
        let px: Vec<u8> = (0..16).map(|i| (i * 10) as u8).collect();
        let mut s = set(px.clone(), spec);
        Shift::Invert.apply(&mut s, 0, "t");
        assert_eq!(s.pixels, px.iter().map(|v| 255 - v).collect::<Vec<_>>());
        // 180 degrees reverses the image
        let mut s = set(px.clone(), spec);
        Shift::Rotate { degrees: 180.0 }.apply(&mut s, 0, "t");
        assert_eq!(s.pixels, px.iter().rev().copied().collect::<Vec<_>>());
        // 2x downscale: each 2x2 block becomes its mean
        let mut s = set(px.clone(), spec);
        Shift::Downscale { factor: 2 }.apply(&mut s, 0, "t");
        assert_eq!(&s.pixels[..4], &[25, 25, 45, 45]);
        // noise is seeded
        let (mut a, mut b) = (set(px.clone(), spec), set(px.clone(), spec));
        Shift::Noise { sigma: 0.1 }.apply(&mut a, 7, "t");
        Shift::Noise { sigma: 0.1 }.apply(&mut b, 7, "t");
        assert_eq!(a.pixels, b.pixels);
        assert_ne!(a.pixels, px);
    }
}
