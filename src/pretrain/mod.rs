//! Unsupervised and self-supervised pretraining of any backbone's body (every group but the
//! head) on unlabelled images: autoencoders (undercomplete, sparse, denoising, contractive),
//! greedy layer-wise autoencoders, and SimCLR. The auxiliary parts (code layer, decoder,
//! projection head) live in their own variable map and are dropped afterwards; what remains is
//! an ordinary backbone checkpoint.
//!
//! Autoencoder shape: encoder (the body) → global average pool → dense code layer
//! h = sigmoid(W p + b) with `code_dim` units (fewer than the input's pixels: undercomplete) →
//! dense layer back to the last feature map → for each body group from the top, nearest
//! upsampling to that group's input size and a 3×3 convolution to its input channels (ReLU
//! between) — a decoder mirrored from the encoder's shapes. Loss: mean squared error to the
//! clean (normalised) input.
use crate::backbones::Model;
use crate::data::{Augment, Images, Normalisation};
use crate::error::{GraftError, Result};
use crate::optim::{Optimizer, Param};
use crate::recipe::OptimizerSpec;
use crate::util::rng_for;
use candle_core::{DType, Module, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

pub mod job;

pub use crate::recipe::pretrain::{Method, PretrainSpec};
pub use job::{run, Finished, Objective, PretrainJob};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainOutcome {
    pub method: String,
    /// Mean loss per epoch (for greedy layer-wise: per group, then per epoch).
    #[serde(deserialize_with = "crate::util::nan_as_null::vec")]
    pub losses: Vec<f64>,
    pub images: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// True when a run took these weights from an earlier run of the same task that pretrained
    /// identically (a sweep's shared pretraining); `seconds` are then that run's.
    #[serde(default)]
    pub replayed: bool,
}

/// Output shapes (C, H, W) of the input and of every body group.
fn shapes(model: &Model) -> Result<Vec<(usize, usize, usize)>> {
    let i = model.input;
    let x = Tensor::zeros((2, i.channels, i.height, i.width), DType::F32, &model.device)?;
    let nb = model.n_groups() - 1;
    let outs = model.forward_groups(&x, &[], nb - 1)?;
    let mut v = vec![(i.channels, i.height, i.width)];
    for o in outs {
        let (_, c, h, w) = o.dims4()?;
        v.push((c, h, w));
    }
    Ok(v)
}

/// Nearest upsampling by an integer factor `s` (`kernels::upsample_nearest`). Not candle's
/// `upsample_nearest2d`: its backward (candle-core 0.11.1) overwrites the input's accumulated
/// gradient instead of adding to it, so a tensor that feeds an upsample and anything else loses
/// the other consumers' gradients.
fn upsample_nearest(x: &Tensor, s: usize) -> candle_core::Result<Tensor> {
    crate::kernels::upsample_nearest(x, s)
}

/// Nearest upsampling to (h, w) by an integer factor, then a crop (both differentiable).
fn upsample_to(x: &Tensor, h: usize, w: usize) -> candle_core::Result<Tensor> {
    let (_, _, xh, xw) = x.dims4()?;
    if xh == h && xw == w {
        return Ok(x.clone());
    }
    let s = h.div_ceil(xh).max(w.div_ceil(xw)).max(1);
    let u = if s > 1 { upsample_nearest(x, s)? } else { x.clone() };
    u.narrow(2, 0, h.min(xh * s))?.narrow(3, 0, w.min(xw * s))
}

/// One decoder stage: upsample to (h, w), 3×3 conv to `cout` channels.
struct Stage {
    conv: crate::backbones::layers::Conv2d,
    bias: Tensor,
    h: usize,
    w: usize,
}

impl Stage {
    fn new(cin: usize, cout: usize, h: usize, w: usize, vb: VarBuilder) -> candle_core::Result<Stage> {
        // graft's im2col + GEMM convolution (the backbones' kernel), plus a bias
        let conv = crate::backbones::layers::conv(cin, cout, 3, 1, vb.clone())?;
        let bias = vb.get_with_hints(cout, "bias", candle_nn::init::ZERO)?;
        Ok(Stage { conv, bias, h, w })
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::kernels::add_channel_bias(&self.conv.forward_t(&upsample_to(x, self.h, self.w)?, true)?, &self.bias)
    }
}

struct Autoencoder {
    code: candle_nn::Linear,
    expand: candle_nn::Linear,
    top: (usize, usize, usize),
    stages: Vec<Stage>,
}

impl Autoencoder {
    fn new(sh: &[(usize, usize, usize)], code_dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let top = *sh.last().expect("shapes");
        let code = candle_nn::linear(top.0, code_dim, vb.pp("code"))?;
        let expand = candle_nn::linear(code_dim, top.0 * top.1 * top.2, vb.pp("expand"))?;
        let mut stages = Vec::new();
        for i in (0..sh.len() - 1).rev() {
            let (cin, cout) = (sh[i + 1].0, sh[i].0);
            stages.push(Stage::new(cin, cout, sh[i].1, sh[i].2, vb.pp(format!("dec{i}")))?);
        }
        Ok(Autoencoder { code, expand, top, stages })
    }
    /// (pooled features p, code h)
    fn encode(&self, feat: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let p = feat.mean(D::Minus1)?.mean(D::Minus1)?;
        let h = candle_nn::ops::sigmoid(&self.code.forward(&p)?)?;
        Ok((p, h))
    }
    fn decode(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        let n = h.dim(0)?;
        let (c, hh, ww) = self.top;
        let mut x = self.expand.forward(h)?.relu()?.reshape((n, c, hh, ww))?;
        let last = self.stages.len() - 1;
        for (i, s) in self.stages.iter().enumerate() {
            x = s.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

fn aux_params(vm: &VarMap, offset: usize) -> Vec<Param> {
    let mut v: Vec<(String, Var)> = vm.data().lock().expect("varmap").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(k, var)| Param::new(format!("aux.{k}"), var.clone(), offset, var.rank() > 1, None)).collect()
}

/// Seeded initial weights for the decoders and projection heads: PyTorch's default for
/// `Linear` and `Conv2d` layers, uniform ±1/√fan-in with fan-in = in-channels × kernel area
/// (no BatchNorm follows a decoder stage, so the fan-in scaling keeps the reconstruction's
/// scale near the input's at the start), biases zero. Each variable draws from its own stream.
fn seed_vars(vm: &VarMap, seed: u64, tag: &str) -> candle_core::Result<()> {
    let data = vm.data().lock().expect("varmap");
    for (name, var) in data.iter() {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let vals: Vec<f32> = if dims.len() < 2 {
            vec![0.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let b = 1.0 / (fan_in as f32).sqrt();
            let d = rand_distr::Uniform::new_inclusive(-b, b).expect("bound > 0");
            let mut rng = rng_for(seed, &format!("init-{tag}.{name}"));
            (0..n).map(|_| d.sample(&mut rng)).collect()
        };
        var.set(&Tensor::from_vec(vals, dims, var.device())?)?;
    }
    Ok(())
}

fn body_params(model: &Model, groups: &[usize]) -> Vec<Param> {
    let mut v = Vec::new();
    for &g in groups {
        for (name, var) in model.group_params(&model.group_names[g]) {
            let decay = var.rank() > 1;
            v.push(Param::new(name, var, 0, decay, None));
        }
    }
    v
}

fn mse(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
}

/// KL(ρ ‖ ρ̂) summed over code units, ρ̂ the batch mean activation.
fn kl_sparsity(h: &Tensor, rho: f64) -> candle_core::Result<Tensor> {
    let r = h.mean(0)?.clamp(1e-6, 1.0 - 1e-6)?;
    let t1 = (r.log()?.affine(-rho, rho * rho.ln()))?; // ρ log ρ − ρ log ρ̂
    let one_minus = r.affine(-1.0, 1.0)?;
    let t2 = one_minus.log()?.affine(-(1.0 - rho), (1.0 - rho) * (1.0 - rho).ln())?;
    (t1 + t2)?.sum_all()
}

/// ‖∂h/∂p‖²_F for h = sigmoid(W p + b): Σ_j (h_j(1−h_j))² Σ_i W_ji², averaged over the batch.
fn contractive(h: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let d = (h * h.affine(-1.0, 1.0)?)?.sqr()?; // (n, code)
    let wn = w.sqr()?.sum(1)?; // (code,)
    d.broadcast_mul(&wn)?.sum(1)?.mean_all()
}

/// NT-Xent over 2N projections z (first N and last N are the two views of the same images).
pub fn nt_xent(z: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let n2 = z.dim(0)?;
    let n = n2 / 2;
    // ‖z‖ as sqrt(Σz² + 1e-16): the floor of 1e-8 as before, but with a finite gradient at
    // z = 0 (clamping after the sqrt gave 0 × ∞ = NaN there when a projection was all zero);
    // for ‖z‖² above ~1e-9 the sum is unchanged in f32, so earlier runs replay bit for bit
    let norm = (z.sqr()?.sum_keepdim(1)? + 1e-16)?.sqrt()?;
    let zn = z.broadcast_div(&norm)?;
    let sim = (zn.matmul(&zn.t()?)? / temperature)?;
    let eye = Tensor::eye(n2, DType::F32, z.device())?;
    let sim = (sim - (eye * 1e9)?)?;
    let targets: Vec<u32> = (0..n2).map(|i| if i < n { (i + n) as u32 } else { (i - n) as u32 }).collect();
    let t = Tensor::new(targets.as_slice(), z.device())?;
    let ls = candle_nn::ops::log_softmax(&sim, D::Minus1)?;
    ls.gather(&t.unsqueeze(1)?, 1)?.neg()?.mean_all()
}

fn corrupt(x: &mut [f32], noise: f64, mask: f64, rng: &mut impl Rng) {
    let nd = Normal::new(0.0f32, noise.max(1e-12) as f32).expect("noise");
    for v in x.iter_mut() {
        if mask > 0.0 && rng.random::<f64>() < mask {
            *v = 0.0; // the normalised mean
        } else if noise > 0.0 {
            *v += nd.sample(rng);
        }
    }
}

/// What one stage trains on top of the body, in its own variable map: the autoencoders' code
/// layer and mirrored decoder, greedy layer-wise's one-stage decoder for group `group`, or
/// SimCLR's two-layer projection head.
enum Head {
    Autoencoder(Autoencoder),
    Greedy { group: usize, decoder: Stage },
    Projection(candle_nn::Linear, candle_nn::Linear),
}

/// The stages: for greedy layer-wise, each body group trained alone (with its own one-stage
/// decoder) on the codes of the groups below it, then the stack fine-tuned end to end as one
/// deep autoencoder (Hinton & Salakhutdinov 2006); for every other method one stage, the body.
fn stages(method: Method, n_body: usize) -> Vec<(Vec<usize>, bool)> {
    let body: Vec<usize> = (0..n_body).collect();
    let mut p: Vec<(Vec<usize>, bool)> = Vec::new();
    if method == Method::GreedyLayerwise {
        p.extend((0..n_body).map(|g| (vec![g], true)));
    }
    p.push((body, false));
    p
}

/// The fixed inputs of a pretraining run.
struct Job<'a> {
    model: &'a Model,
    images: &'a dyn Images,
    norm: &'a Normalisation,
    spec: &'a PretrainSpec,
    seed: u64,
    /// Body groups (every group but the head).
    nb: usize,
    aug: Augment,
}

impl Job<'_> {
    fn head(&self, sh: &[(usize, usize, usize)], top_g: usize, greedy: bool, vb: VarBuilder) -> Result<Head> {
        let spec = self.spec;
        Ok(match spec.method {
            Method::Simclr => {
                let c = sh[self.nb].0;
                let l1 = candle_nn::linear(c, c, vb.pp("proj1"))?;
                let l2 = candle_nn::linear(c, spec.projection_dim, vb.pp("proj2"))?;
                Head::Projection(l1, l2)
            }
            Method::GreedyLayerwise if greedy => {
                let g = top_g;
                Head::Greedy { group: g, decoder: Stage::new(sh[g + 1].0, sh[g].0, sh[g].1, sh[g].2, vb.pp(format!("greedy{g}")))? }
            }
            _ => Head::Autoencoder(Autoencoder::new(sh, spec.code_dim, vb)?),
        })
    }

    /// The loss of one batch (`chunk` of image indices; `at` = (stage, epoch, batch) names the
    /// random streams of its augmentations and corruption).
    fn loss(&self, head: &Head, chunk: &[usize], flags: &[bool], at: (usize, usize, usize)) -> Result<Tensor> {
        let (model, images, norm, spec, seed, nb) = (self.model, self.images, self.norm, self.spec, self.seed, self.nb);
        let (pi, epoch, bi) = at;
        let dev = &model.device;
        let n = chunk.len();
        let input = images.input();
        let shape = (n, input.channels, input.height, input.width);
        // the clean batch (not needed by SimCLR, which sees only augmented views)
        let clean_pixels = || images.float_batch(chunk, norm, None);
        let last_features = |x: &Tensor| -> Result<Tensor> {
            model.forward_groups(x, flags, nb - 1)?.pop().ok_or_else(|| GraftError::Model("the body has no groups".into()))
        };
        Ok(match head {
            Head::Projection(l1, l2) => {
                let s1: u64 = rng_for(seed, &format!("simclr-a-{pi}-{epoch}-{bi}")).random();
                let s2: u64 = rng_for(seed, &format!("simclr-b-{pi}-{epoch}-{bi}")).random();
                let mut v = images.float_batch(chunk, norm, Some((&self.aug, s1)))?;
                v.extend(images.float_batch(chunk, norm, Some((&self.aug, s2)))?);
                let x = Tensor::from_vec(v, (2 * n, shape.1, shape.2, shape.3), dev)?;
                let p = last_features(&x)?.mean(D::Minus1)?.mean(D::Minus1)?;
                let z = l2.forward(&l1.forward(&p)?.relu()?)?;
                nt_xent(&z, spec.temperature)?
            }
            Head::Greedy { group: g, decoder } => {
                let g = *g;
                let clean = Tensor::from_vec(clean_pixels()?, shape, dev)?;
                let below = if g == 0 {
                    clean.clone()
                } else {
                    model.forward_groups(&clean, &[], g - 1)?.pop().ok_or_else(|| GraftError::Model("no codes below".into()))?.detach()
                };
                // this group alone, as a denoising autoencoder (stacked denoising autoencoders,
                // Vincent et al. 2010): corrupted codes in, clean codes out
                let mut v = below.flatten_all()?.to_vec1::<f32>()?;
                corrupt(&mut v, spec.noise, spec.mask, &mut rng_for(seed, &format!("greedy-{g}-{epoch}-{bi}")));
                let noisy = Tensor::from_vec(v, below.shape(), dev)?;
                let out = model.forward_from(&noisy, g, g)?;
                mse(&decoder.forward(&out)?, &below)?
            }
            Head::Autoencoder(ae) => {
                let pixels = clean_pixels()?;
                let clean = Tensor::from_vec(pixels.clone(), shape, dev)?;
                let input = if spec.method == Method::DenoisingAutoencoder {
                    let mut v = pixels;
                    corrupt(&mut v, spec.noise, spec.mask, &mut rng_for(seed, &format!("corrupt-{epoch}-{bi}")));
                    Tensor::from_vec(v, shape, dev)?
                } else {
                    clean.clone()
                };
                let (_, h) = ae.encode(&last_features(&input)?)?;
                let mut l = mse(&ae.decode(&h)?, &clean)?;
                if spec.method == Method::SparseAutoencoder {
                    l = (l + (kl_sparsity(&h, spec.sparsity_target)? * spec.sparsity_weight)?)?;
                }
                if spec.method == Method::ContractiveAutoencoder {
                    l = (l + (contractive(&h, ae.code.weight())? * spec.contractive_weight)?)?;
                }
                l
            }
        })
    }
}

/// Pretrain `model`'s body on `images` (labels ignored) with `spec`; `log` gets one line per epoch.
pub fn pretrain(
    model: &Model,
    images: &dyn Images,
    norm: &Normalisation,
    spec: &PretrainSpec,
    seed: u64,
    log: &dyn Fn(&str),
) -> Result<PretrainOutcome> {
    pretrain_with(model, images, norm, spec, seed, log, &|_, _| {})
}

/// The optimisation steps a pretraining run of `n` images takes in all (every stage, every epoch).
pub fn total_steps(spec: &PretrainSpec, n_groups: usize, n: usize) -> usize {
    let bs = spec.batch_size.min(n).max(1);
    // batches of one image are skipped (see `pretrain_with`)
    let per_epoch = n.div_ceil(bs) - usize::from(n % bs == 1 && n > 1);
    stages(spec.method, n_groups.saturating_sub(1)).len() * per_epoch * spec.epochs
}

#[cfg(test)]
thread_local! {
    /// Tests read the losses once an epoch on the CPU too, as on a GPU.
    static DEFER_READS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn defer_reads_on_cpu() -> bool {
    #[cfg(test)]
    return DEFER_READS.with(|d| d.get());
    #[cfg(not(test))]
    false
}

/// [`pretrain`], calling `step(done, total)` after every optimisation step (for a progress bar).
pub fn pretrain_with(
    model: &Model,
    images: &dyn Images,
    norm: &Normalisation,
    spec: &PretrainSpec,
    seed: u64,
    log: &dyn Fn(&str),
    step_done: &dyn Fn(usize, usize),
) -> Result<PretrainOutcome> {
    spec.validate()?;
    if images.count() < 2 {
        return Err(GraftError::Data("pretraining needs at least two images".into()));
    }
    let t0 = std::time::Instant::now();
    let nb = model.n_groups() - 1;
    let job = Job { model, images, norm, spec, seed, nb, aug: Augment::simclr(spec.jitter) };
    let sh = shapes(model)?;
    let mut losses = Vec::new();
    let bs = spec.batch_size.min(images.count());
    let mut seen = 0usize;
    let all_steps = total_steps(spec, model.n_groups(), images.count());
    let mut steps_done = 0usize;
    for (pi, (train_groups, greedy)) in stages(spec.method, nb).into_iter().enumerate() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &model.device);
        let top_g = *train_groups.last().ok_or_else(|| GraftError::Model("a pretraining stage without groups".into()))?;
        let head = job.head(&sh, top_g, greedy, vb)?;
        // the decoders and projection heads draw their initial weights from the recorded seed
        // (candle-nn's initialisers use an unseeded generator)
        seed_vars(&vm, seed, &format!("pretrain-{pi}"))?;
        let mut params = body_params(model, &train_groups);
        params.extend(aux_params(&vm, 0));
        let ospec = OptimizerSpec { weight_decay: 1e-4, ..OptimizerSpec::default() };
        let mut opt = Optimizer::new(ospec, 0.0, params);
        let mut flags = vec![false; nb + 1];
        for &g in &train_groups {
            flags[g] = true;
        }
        let total = (images.count() / bs).max(1) * spec.epochs;
        let mut step = 0;
        for epoch in 0..spec.epochs {
            let mut order: Vec<usize> = (0..images.count()).collect();
            order.shuffle(&mut rng_for(seed, &format!("pretrain-{pi}-{epoch}")));
            let (mut sum, mut cnt) = (0.0, 0usize);
            // each step's loss with its batch size; on a GPU read back once an epoch, so the
            // host prepares the next batch while the device computes (as in `train`)
            let mut pending: Vec<(Tensor, usize)> = Vec::new();
            let mut read = |pending: &mut Vec<(Tensor, usize)>| -> Result<()> {
                if pending.is_empty() {
                    return Ok(());
                }
                let ls: Vec<Tensor> = pending.iter().map(|(l, _)| l.reshape(1)).collect::<candle_core::Result<_>>()?;
                let ls = Tensor::cat(&ls, 0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                for (lv, (_, n)) in ls.into_iter().zip(pending.drain(..)) {
                    let lv = lv as f64;
                    if !lv.is_finite() {
                        return Err(GraftError::Diverged(format!(
                            "{} pretraining: loss became {lv} at epoch {}",
                            spec.method.as_str(),
                            epoch + 1
                        )));
                    }
                    sum += lv * n as f64;
                    cnt += n;
                }
                Ok(())
            };
            for (bi, chunk) in order.chunks(bs).enumerate() {
                if chunk.len() < 2 {
                    continue;
                }
                let loss = job.loss(&head, chunk, &flags, (pi, epoch, bi))?;
                pending.push((loss.detach(), chunk.len()));
                if model.device.is_cpu() && !defer_reads_on_cpu() {
                    // a non-finite loss stops the run before its gradient is applied
                    read(&mut pending)?;
                }
                let grads = loss.backward()?;
                let f = crate::optim::schedule_factor(crate::recipe::ScheduleKind::Cosine, step, total, 0);
                opt.step(&grads, &[spec.lr * f])?;
                step += 1;
                steps_done += 1;
                step_done(steps_done, all_steps);
                seen += chunk.len();
            }
            read(&mut pending)?;
            let m = sum / cnt.max(1) as f64;
            losses.push(m);
            let what = match (spec.method, greedy) {
                (Method::GreedyLayerwise, true) => format!(" group {}", model.group_names[top_g]),
                (Method::GreedyLayerwise, false) => " (whole stack)".to_string(),
                _ => String::new(),
            };
            log(&format!("{}{what} epoch {}/{}: loss {m:.5}", spec.method.as_str(), epoch + 1, spec.epochs));
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(PretrainOutcome {
        method: spec.method.as_str().into(),
        losses,
        images: images.count(),
        seconds,
        images_per_second: seen as f64 / seconds.max(1e-9),
        replayed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upsample equals candle's forward, and its gradient adds to the gradients that other
    /// consumers of the same tensor contribute (candle's own overwrites them: with
    /// `upsample_nearest2d` here the `+ 1` from the second consumer is lost). Factors 2 and 3,
    /// graft's kernel (the CPU path); the broadcast path is the same check on other devices.
    #[test]
    fn upsample_forward_matches_and_gradients_accumulate() {
        let dev = candle_core::Device::Cpu;
        for s in [2usize, 3] {
            let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev).unwrap()).unwrap();
            let ours = upsample_nearest(x.as_tensor(), s).unwrap();
            let theirs = x.as_tensor().upsample_nearest2d(4 * s, 5 * s).unwrap();
            let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(d, 0.0);
            // loss = Σ up(x)² + Σ x: dL/dx = 2·x·s² (s² copies of each element) + 1
            let loss = (ours.sqr().unwrap().sum_all().unwrap() + x.as_tensor().sum_all().unwrap()).unwrap();
            let g = loss.backward().unwrap();
            let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let xv = x.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let k = 2.0 * (s * s) as f32;
            for (gi, xi) in g.iter().zip(&xv) {
                assert!((gi - (k * xi + 1.0)).abs() < 1e-4, "factor {s}: gradient {gi} != {k}·{xi} + 1");
            }
        }
    }

    /// Reading the losses once an epoch (as on a GPU) gives the same epoch losses and weights
    /// as reading them every step, and a diverging run fails with the same error.
    #[test]
    fn deferred_loss_reads_give_the_same_pretraining() {
        use crate::backbones::Arch;
        use crate::data::ImageSet;
        let dev = candle_core::Device::Cpu;
        let spec_in = Arch::Resnet8.default_input();
        let n = 20;
        let pixels: Vec<u8> =
            (0..n * spec_in.channels * spec_in.height * spec_in.width).map(|i| ((i * 7919 + i / 11) % 241) as u8).collect();
        let set = ImageSet::in_memory(pixels, vec![0; n], spec_in);
        let norm = set.channel_stats();
        let run = |method: Method, lr: f64, defer: bool| {
            DEFER_READS.with(|d| d.set(defer));
            let model = Model::new(Arch::Resnet8, spec_in, 10, 0, &dev).unwrap();
            let mut spec = PretrainSpec::new(method);
            spec.epochs = 2;
            spec.batch_size = 8;
            spec.lr = lr;
            let out = pretrain(&model, &set, &norm, &spec, 3, &|_| {});
            DEFER_READS.with(|d| d.set(false));
            let w: Vec<Vec<f32>> =
                model.named_vars().into_values().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
            (out.map(|o| o.losses).map_err(|e| e.to_string()), w)
        };
        for method in [Method::Simclr, Method::DenoisingAutoencoder] {
            let (each, w_each) = run(method, 1e-3, false);
            let (epoch, w_epoch) = run(method, 1e-3, true);
            let each = each.unwrap();
            assert_eq!(each.len(), 2);
            assert!(each.iter().all(|l| l.is_finite() && *l > 0.0), "{each:?}");
            assert_eq!(Ok(each), epoch, "{method:?}");
            assert_eq!(w_each, w_epoch, "{method:?}");
        }
        let (each, _) = run(Method::Autoencoder, 1e30, false);
        let (epoch, _) = run(Method::Autoencoder, 1e30, true);
        let e = each.expect_err("a 1e30 learning rate diverges");
        assert!(e.contains("loss became") && e.contains("at epoch 1"), "{e}");
        assert_eq!(epoch, Err(e));
    }

    /// NT-Xent's gradient stays finite when a projection is all zero (a dead ReLU head): the
    /// clamped norm gave NaN there and SimCLR on Lite0 diverged. Elsewhere the loss is the
    /// plain formula, checked against an independent f64 computation.
    #[test]
    fn nt_xent_is_finite_at_a_zero_projection_and_matches_the_formula() {
        let dev = candle_core::Device::Cpu;
        let mut v: Vec<f32> = (0..4 * 3).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        v[3..6].fill(0.0); // row 1 is zero
        let z = candle_core::Var::from_tensor(&Tensor::from_vec(v.clone(), (4, 3), &dev).unwrap()).unwrap();
        let loss = nt_xent(z.as_tensor(), 0.5).unwrap();
        let g = loss.backward().unwrap().get(z.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "gradient {g:?}");
        // reference: rows normalised (a zero row stays zero), cosine / t, self excluded
        let rows: Vec<Vec<f64>> = v
            .chunks(3)
            .map(|r| {
                let n = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt().max(1e-8);
                r.iter().map(|x| *x as f64 / n).collect()
            })
            .collect();
        let mut want = 0.0;
        for i in 0..4 {
            let pos = (i + 2) % 4;
            let s: Vec<f64> = (0..4).map(|j| rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum::<f64>() / 0.5).collect();
            let lse = (0..4).filter(|&j| j != i).map(|j| s[j].exp()).sum::<f64>().ln();
            want += (lse - s[pos]) / 4.0;
        }
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "nt_xent {got} vs {want}");
    }
}
