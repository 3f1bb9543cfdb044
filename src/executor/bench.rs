//! `graft bench`: training and feature-extraction throughput on random data of an arch's input
//! shape, timed the same way as `benches/pytorch_reference.py`.
use super::optim::{Optimizer, Param};
use super::train::cross_entropy;
use crate::backbones::{Arch, Model};
use crate::error::Result;
use crate::recipe::OptimizerSpec;
use crate::util::rng_for;
use candle_core::{Device, Tensor};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    pub arch: String,
    pub batch: usize,
    pub threads: usize,
    pub steps: usize,
    pub device: String,
    /// f32 or bf16 (mixed precision).
    #[serde(default)]
    pub precision: crate::kernels::Precision,
    pub train_images_per_second: f64,
    pub extract_images_per_second: f64,
    /// Multiply-adds x 2 of one forward pass per image (convolutions and linear layers).
    pub forward_gflop_per_image: f64,
    /// Training FLOPs taken as 3x forward (forward, input gradient, weight gradient).
    pub train_gflops_achieved: f64,
    pub extract_gflops_achieved: f64,
    pub machine_peak_gflops: Option<f64>,
    pub peak_note: String,
    /// SimCLR pretraining throughput (images/s; two augmented views per image, projection
    /// head, NT-Xent, optimiser step), with `--simclr`.
    #[serde(default)]
    pub simclr_images_per_second: Option<f64>,
    /// The process's peak resident memory in bytes at the end of the benchmark (getrusage;
    /// `benches/pytorch_reference.py` reports its own the same way). `None` where the OS does
    /// not say.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// This process's peak resident set size so far (Linux reports KiB).
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid, writable rusage; getrusage only writes into it.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        if rc == 0 {
            return Some(u.ru_maxrss as u64 * 1024);
        }
    }
    None
}

/// SimCLR pretraining images/s on `steps` batches of random 8-bit images (augmentation included).
pub fn bench_simclr(arch: Arch, batch: usize, steps: usize, dev: &Device) -> Result<f64> {
    let spec = arch.default_input();
    let model = Model::new(arch, spec, 10, 0, dev)?;
    let n = batch * steps;
    let mut rng = rng_for(0, "bench-simclr");
    use rand::Rng;
    let pixels: Vec<u8> = (0..n * spec.channels * spec.height * spec.width).map(|_| rng.random()).collect();
    let set = crate::data::ImageSet::in_memory(pixels, vec![-1; n], spec);
    let norm = crate::data::Normalisation { mean: vec![0.5; spec.channels], std: vec![0.25; spec.channels] };
    let mut ps = crate::pretrain::PretrainSpec::new(crate::pretrain::Method::Simclr);
    ps.epochs = 1;
    ps.batch_size = batch;
    // one warm-up batch, then the timed epoch
    let warm = set.subset(&(0..batch.min(n)).collect::<Vec<_>>());
    crate::pretrain::pretrain(&model, &warm, &norm, &ps, 0, &|_| {})?;
    let out = crate::pretrain::pretrain(&model, &set, &norm, &ps, 0, &|_| {})?;
    Ok(out.images_per_second)
}

fn random_batch(arch: Arch, batch: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let s = arch.default_input();
    let mut rng = rng_for(0, "bench-data");
    let nd = Normal::new(0f32, 1.0).expect("std");
    let x: Vec<f32> = (0..batch * s.channels * s.height * s.width).map(|_| nd.sample(&mut rng)).collect();
    let y: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    Ok((Tensor::from_vec(x, (batch, s.channels, s.height, s.width), dev)?, Tensor::new(y.as_slice(), dev)?))
}

/// Peak f32 GFLOP/s = cores x flops per cycle x clock (GHz), from /proc/cpuinfo; AVX-512 with
/// two FMA units is 2 x 16 lanes x 2 = 64 flops per cycle.
pub fn machine_peak(threads: usize) -> (Option<f64>, String) {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return (None, "no /proc/cpuinfo".into());
    };
    let mhz = info.lines().find(|l| l.starts_with("cpu MHz")).and_then(|l| l.split(':').nth(1)).and_then(|v| v.trim().parse::<f64>().ok());
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let fpc = if flags.contains("avx512f") {
        64.0
    } else if flags.contains("fma") {
        32.0
    } else {
        8.0
    };
    match mhz {
        Some(m) => (
            Some(threads as f64 * fpc * m / 1000.0),
            format!("{threads} cores x {fpc} f32 flops/cycle (assumes 2 FMA units) x {:.2} GHz (cpu MHz in /proc/cpuinfo)", m / 1000.0),
        ),
        None => (None, "clock not found in /proc/cpuinfo".into()),
    }
}

pub fn bench(arch: Arch, batch: usize, steps: usize, dev: &Device, device_name: &str) -> Result<BenchResult> {
    let spec = arch.default_input();
    let model = Model::new(arch, spec, 10, 0, dev)?;
    let (x, y) = random_batch(arch, batch, dev)?;
    let params: Vec<Param> = model
        .named_vars()
        .into_iter()
        .filter(|(k, _)| !Model::is_buffer(k))
        .map(|(k, v)| {
            let decay = v.rank() > 1;
            Param::new(k, v, 0, decay, None)
        })
        .collect();
    let mut opt = Optimizer::new(OptimizerSpec::default(), 0.0, params);
    let flags = vec![true; model.n_groups()];
    let step = |opt: &mut Optimizer| -> Result<()> {
        let logits = model.forward(&x, &flags)?;
        let loss = cross_entropy(&logits, &y, 0.0)?;
        let grads = loss.backward()?;
        opt.step(&grads, &[1e-3])?;
        Ok(())
    };
    for _ in 0..2 {
        step(&mut opt)?;
    }
    dev.synchronize()?;
    let t0 = Instant::now();
    for _ in 0..steps {
        step(&mut opt)?;
    }
    dev.synchronize()?;
    let train_ips = (steps * batch) as f64 / t0.elapsed().as_secs_f64();
    let upto = model.n_groups() - 2;
    for _ in 0..2 {
        model.features(&x, upto)?;
    }
    dev.synchronize()?;
    let t0 = Instant::now();
    for _ in 0..steps {
        let f = model.features(&x, upto)?;
        f.to_device(&Device::Cpu)?;
    }
    let extract_ips = (steps * batch) as f64 / t0.elapsed().as_secs_f64();
    let gf = model.forward_flops() as f64 / 1e9;
    let threads = if dev.is_cpu() { candle_core::utils::get_num_threads() } else { 0 };
    let (peak, note) = if dev.is_cpu() { machine_peak(rayon::current_num_threads()) } else { (None, "GPU".into()) };
    Ok(BenchResult {
        arch: arch.name().into(),
        batch,
        threads: if dev.is_cpu() { rayon::current_num_threads() } else { threads },
        steps,
        device: device_name.into(),
        precision: crate::kernels::precision(),
        train_images_per_second: train_ips,
        extract_images_per_second: extract_ips,
        forward_gflop_per_image: gf,
        train_gflops_achieved: train_ips * gf * 3.0,
        extract_gflops_achieved: extract_ips * gf,
        machine_peak_gflops: peak,
        peak_note: note,
        simclr_images_per_second: None,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
