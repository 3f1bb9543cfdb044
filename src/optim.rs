//! Optimisers with per-parameter learning-rate groups, no weight decay on 1-D parameters by
//! default, and L2-SP towards the pretrained weights. candle-nn's optimisers have one rate and
//! private state; this one keeps per-group rates and explicit, inspectable state.
use crate::recipe::{OptimizerKind, OptimizerSpec};
use candle_core::{backprop::GradStore, Result, Tensor, Var};

pub struct Param {
    pub name: String,
    pub var: Var,
    /// Index into the per-group learning rates passed to `step`.
    pub group: usize,
    pub decay: bool,
    /// Pretrained value for L2-SP (transferred, trained groups only).
    pub anchor: Option<Tensor>,
    m: Option<Tensor>,
    v: Option<Tensor>,
    /// On CUDA: the last fused AdamW step's output [w, m, v], whose m and v the next step reads
    /// (`m` and `v` above are views of it).
    gpu_state: Option<Tensor>,
}

impl Param {
    pub fn new(name: String, var: Var, group: usize, decay: bool, anchor: Option<Tensor>) -> Self {
        Param { name, var, group, decay, anchor, m: None, v: None, gpu_state: None }
    }
}

pub struct Optimizer {
    spec: OptimizerSpec,
    l2sp: f64,
    params: Vec<Param>,
    t: i32,
    /// AdamW on CPU f32 parameters in one fused pass (off only to test it against the tensor ops).
    fused: bool,
}

impl Optimizer {
    pub fn new(spec: OptimizerSpec, l2sp: f64, params: Vec<Param>) -> Self {
        Optimizer { spec, l2sp, params, t: 0, fused: true }
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i32 {
        self.t
    }

    /// Moment buffers by name (`m.<param>`, `v.<param>`), for checkpoints.
    pub fn state(&self) -> std::collections::HashMap<String, Tensor> {
        let mut out = std::collections::HashMap::new();
        for p in &self.params {
            if let Some(m) = &p.m {
                out.insert(format!("m.{}", p.name), m.clone());
            }
            if let Some(v) = &p.v {
                out.insert(format!("v.{}", p.name), v.clone());
            }
        }
        out
    }

    /// Restore what [`Optimizer::state`] saved, and the step count.
    pub fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>, steps: i32) {
        for p in &mut self.params {
            p.m = state.get(&format!("m.{}", p.name)).cloned();
            p.v = state.get(&format!("v.{}", p.name)).cloned();
            p.gpu_state = None;
        }
        self.t = steps;
    }

    /// One step; `lrs[g]` is the current learning rate of group g (0 skips the group).
    pub fn step(&mut self, grads: &GradStore, lrs: &[f64]) -> Result<()> {
        self.t += 1;
        let s = &self.spec;
        // (GRAFT_REFERENCE_KERNELS=1 measures the "before" of docs/speed.md: candle's ops only)
        let fused = self.fused && !crate::kernels::use_reference_kernels();
        for p in &mut self.params {
            let lr = lrs[p.group];
            if lr == 0.0 {
                continue;
            }
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let w = p.var.as_tensor();
            let mut g = g.clone();
            if let (Some(a), true) = (&p.anchor, self.l2sp > 0.0) {
                g = (g + ((w - a)? * self.l2sp)?)?;
            }
            let wd = if p.decay { s.weight_decay } else { 0.0 };
            match s.kind {
                OptimizerKind::Adamw if fused && crate::kernels::gpu::applies(w) => {
                    // one kernel on the GPU: the same f32 arithmetic as the CPU arm below
                    let f = |x: f64| x as f32;
                    let (bc1, bc2) = (1.0 - s.beta1.powi(self.t), 1.0 - s.beta2.powi(self.t));
                    let op = crate::kernels::gpu::AdamW {
                        b1: f(s.beta1),
                        c1: f(1.0 - s.beta1),
                        b2: f(s.beta2),
                        c2: f(1.0 - s.beta2),
                        ibc1: f(1.0 / bc1),
                        ibc2: f(1.0 / bc2),
                        eps: f(s.eps),
                        decay: if wd > 0.0 { f(1.0 - lr * wd) } else { -1.0 },
                        lr: f(lr),
                    };
                    let n = w.elem_count();
                    let shape = w.shape().clone();
                    let state = match &p.gpu_state {
                        Some(st) => st.clone(),
                        None => {
                            let zeros = || Tensor::zeros(n, candle_core::DType::F32, w.device());
                            let m = match &p.m {
                                Some(m) => m.flatten_all()?,
                                None => zeros()?,
                            };
                            let v = match &p.v {
                                Some(v) => v.flatten_all()?,
                                None => zeros()?,
                            };
                            Tensor::cat(&[&w.flatten_all()?, &m, &v], 0)?
                        }
                    };
                    let out = w.flatten_all()?.apply_op3_no_bwd(&g.flatten_all()?, &state, &op)?;
                    p.var.set(&out.narrow(0, 0, n)?.reshape(shape.clone())?)?;
                    p.m = Some(out.narrow(0, n, n)?.reshape(shape.clone())?);
                    p.v = Some(out.narrow(0, 2 * n, n)?.reshape(shape)?);
                    p.gpu_state = Some(out);
                }
                OptimizerKind::Adamw if fused && w.device().is_cpu() && w.dtype() == candle_core::DType::F32 => {
                    // one fused pass instead of ~15 tensor ops (each a thread fork-join and an
                    // allocation); the f32 arithmetic is candle's, op for op (its scalar ops are
                    // x·a + b with a, b rounded to f32), so both paths give the same bits
                    let f = |x: f64| x as f32;
                    let (b1, c1, b2, c2) = (f(s.beta1), f(1.0 - s.beta1), f(s.beta2), f(1.0 - s.beta2));
                    let bc1 = 1.0 - s.beta1.powi(self.t);
                    let bc2 = 1.0 - s.beta2.powi(self.t);
                    let (ibc1, ibc2, eps) = (f(1.0 / bc1), f(1.0 / bc2), f(s.eps));
                    let decay = if wd > 0.0 { Some(f(1.0 - lr * wd)) } else { None };
                    let lr32 = f(lr);
                    let gv = g.flatten_all()?.to_vec1::<f32>()?;
                    let mut wv = w.flatten_all()?.to_vec1::<f32>()?;
                    let mut mv = match &p.m {
                        Some(m) => m.flatten_all()?.to_vec1::<f32>()?,
                        None => vec![0f32; gv.len()],
                    };
                    let mut vv = match &p.v {
                        Some(v) => v.flatten_all()?.to_vec1::<f32>()?,
                        None => vec![0f32; gv.len()],
                    };
                    let first = p.m.is_none();
                    for i in 0..gv.len() {
                        let gi = gv[i];
                        let m = if first { gi * c1 + 0.0 } else { (mv[i] * b1 + 0.0) + (gi * c1 + 0.0) };
                        let g2 = gi * gi;
                        let v = if p.v.is_none() { g2 * c2 + 0.0 } else { (vv[i] * b2 + 0.0) + (g2 * c2 + 0.0) };
                        let denom = (v * ibc2 + 0.0).sqrt() * 1.0 + eps;
                        let upd = (m * ibc1 + 0.0) / denom;
                        let mut nw = wv[i];
                        if let Some(d) = decay {
                            nw = nw * d + 0.0;
                        }
                        wv[i] = nw - (upd * lr32 + 0.0);
                        mv[i] = m;
                        vv[i] = v;
                    }
                    let shape = w.shape().clone();
                    p.var.set(&Tensor::from_vec(wv, shape.clone(), w.device())?)?;
                    p.m = Some(Tensor::from_vec(mv, shape.clone(), w.device())?);
                    p.v = Some(Tensor::from_vec(vv, shape, w.device())?);
                }
                OptimizerKind::Adamw => {
                    let m = match &p.m {
                        Some(m) => ((m * s.beta1)? + (&g * (1.0 - s.beta1))?)?,
                        None => (&g * (1.0 - s.beta1))?,
                    };
                    let g2 = g.sqr()?;
                    let v = match &p.v {
                        Some(v) => ((v * s.beta2)? + (g2 * (1.0 - s.beta2))?)?,
                        None => (g2 * (1.0 - s.beta2))?,
                    };
                    let bc1 = 1.0 - s.beta1.powi(self.t);
                    let bc2 = 1.0 - s.beta2.powi(self.t);
                    let denom = ((&v / bc2)?.sqrt()? + s.eps)?;
                    let upd = ((&m / bc1)? / denom)?;
                    let mut nw = w.clone();
                    if wd > 0.0 {
                        nw = (nw * (1.0 - lr * wd))?;
                    }
                    nw = (nw - (upd * lr)?)?;
                    p.var.set(&nw)?;
                    p.m = Some(m);
                    p.v = Some(v);
                }
                OptimizerKind::Sgd => {
                    if wd > 0.0 {
                        g = (g + (w * wd)?)?;
                    }
                    let buf = match &p.m {
                        Some(b) if s.momentum > 0.0 => ((b * s.momentum)? + &g)?,
                        _ => g.clone(),
                    };
                    let dir = if s.nesterov && s.momentum > 0.0 { (&g + (&buf * s.momentum)?)? } else { buf.clone() };
                    p.var.set(&(w - (dir * lr)?)?)?;
                    if s.momentum > 0.0 {
                        p.m = Some(buf);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Learning-rate multiplier at optimisation step `t` of `total`, with `warmup` steps of linear warm-up.
pub fn schedule_factor(kind: crate::recipe::ScheduleKind, t: usize, total: usize, warmup: usize) -> f64 {
    if warmup > 0 && t < warmup {
        return (t + 1) as f64 / warmup as f64;
    }
    match kind {
        crate::recipe::ScheduleKind::Constant => 1.0,
        crate::recipe::ScheduleKind::Cosine => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let p = (t.saturating_sub(warmup)) as f64 / span;
            0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_matches_hand_computed_step() {
        // One AdamW step from w=1, g=2 (loss = 2w): m=0.2, v=0.004, mhat=2, vhat=4 -> w = 1*(1-lr*wd) - lr*2/(2+eps)
        let dev = Device::Cpu;
        let w = Var::new(&[1.0f32], &dev).unwrap();
        let spec = OptimizerSpec { weight_decay: 0.1, ..OptimizerSpec::default() };
        let mut opt = Optimizer::new(spec, 0.0, vec![Param::new("w".into(), w.clone(), 0, true, None)]);
        let loss = (w.as_tensor() * 2.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, &[0.01]).unwrap();
        let got = w.as_tensor().to_vec1::<f32>().unwrap()[0];
        let want = 1.0 * (1.0 - 0.01 * 0.1) - 0.01 * 2.0 / (2.0 + 1e-8);
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }

    /// The fused CPU AdamW gives the tensor-op path's weights and moments bit for bit, over
    /// several steps, with and without weight decay and L2-SP.
    #[test]
    fn fused_adamw_matches_tensor_ops_bitwise() {
        let dev = Device::Cpu;
        let run = |fused: bool| {
            let w1 = Var::from_vec((0..15).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(), (3, 5), &dev).unwrap();
            let w2 = Var::new(&[0.5f32, -1.25, 2.0], &dev).unwrap();
            let anchor = Tensor::new(&[0.0f32, 0.0, 1.0], &dev).unwrap();
            let spec = OptimizerSpec { weight_decay: 0.05, ..OptimizerSpec::default() };
            let mut opt = Optimizer::new(
                spec,
                0.1,
                vec![Param::new("a".into(), w1.clone(), 0, true, None), Param::new("b".into(), w2.clone(), 1, false, Some(anchor))],
            );
            opt.fused = fused;
            for step in 0..4 {
                let loss = ((w1.as_tensor().sqr().unwrap().sum_all().unwrap() * (1.0 + step as f64)).unwrap()
                    + w2.as_tensor().powf(3.0).unwrap().sum_all().unwrap())
                .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads, &[1e-2, 3e-3]).unwrap();
            }
            let mut out: Vec<Vec<f32>> = vec![w1.as_tensor().flatten_all().unwrap().to_vec1().unwrap(), w2.as_tensor().to_vec1().unwrap()];
            let mut st: Vec<_> = opt.state().into_iter().collect();
            st.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(st.into_iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
            out
        };
        let (a, b) = (run(true), run(false));
        for (x, y) in a.iter().zip(&b) {
            let (xb, yb): (Vec<u32>, Vec<u32>) = (x.iter().map(|v| v.to_bits()).collect(), y.iter().map(|v| v.to_bits()).collect());
            assert_eq!(xb, yb, "fused {x:?} vs tensor ops {y:?}");
        }
    }

    #[test]
    fn zero_lr_group_is_untouched_and_l2sp_pulls_to_anchor() {
        let dev = Device::Cpu;
        let a = Var::new(&[1.0f32, 2.0], &dev).unwrap();
        let b = Var::new(&[3.0f32], &dev).unwrap();
        let anchor = Tensor::new(&[0.0f32], &dev).unwrap();
        let spec = OptimizerSpec { kind: OptimizerKind::Sgd, momentum: 0.0, weight_decay: 0.0, ..OptimizerSpec::default() };
        let mut opt = Optimizer::new(
            spec,
            0.5,
            vec![Param::new("a".into(), a.clone(), 0, true, None), Param::new("b".into(), b.clone(), 1, true, Some(anchor))],
        );
        let loss = (a.as_tensor().sum_all().unwrap() + b.as_tensor().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, &[0.0, 0.1]).unwrap();
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        // g = 1 + 0.5 * (3 - 0) = 2.5 -> 3 - 0.25
        assert!((b.as_tensor().to_vec1::<f32>().unwrap()[0] - 2.75).abs() < 1e-6);
    }

    #[test]
    fn cosine_schedule_warms_up_and_decays() {
        use crate::recipe::ScheduleKind::*;
        assert_eq!(schedule_factor(Cosine, 0, 100, 10), 0.1);
        assert_eq!(schedule_factor(Cosine, 10, 100, 10), 1.0);
        assert!(schedule_factor(Cosine, 99, 100, 10) < 0.01);
        assert_eq!(schedule_factor(Constant, 50, 100, 0), 1.0);
    }
}
