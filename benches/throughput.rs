//! Criterion benches: one training step (forward, backward, AdamW) and feature extraction for
//! each architecture at batch 32 and 128, on random data of the arch's input shape.
//! `cargo bench --bench throughput`; `graft bench` reports the same as images/s.
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use graft::backbones::{Arch, Model};
use graft::executor::optim::{Optimizer, Param};
use graft::executor::train::cross_entropy;
use graft::recipe::OptimizerSpec;

fn setup(arch: Arch, batch: usize) -> (Model, Tensor, Tensor) {
    let s = arch.default_input();
    let m = Model::new(arch, s, 10, 0, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (batch, s.channels, s.height, s.width), &Device::Cpu).unwrap();
    let y = Tensor::new((0..batch as i64).map(|i| i % 10).collect::<Vec<_>>().as_slice(), &Device::Cpu).unwrap();
    (m, x, y)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    for arch in [Arch::Convnet4, Arch::Resnet8, Arch::Resnet20] {
        for batch in [32usize, 128] {
            let (m, x, y) = setup(arch, batch);
            let params = m
                .named_vars()
                .into_iter()
                .filter(|(k, _)| !Model::is_buffer(k))
                .map(|(k, v)| Param::new(k, v.clone(), 0, v.rank() > 1, None))
                .collect();
            let mut opt = Optimizer::new(OptimizerSpec::default(), 0.0, params);
            let flags = vec![true; m.n_groups()];
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(arch.name(), batch), &batch, |b, _| {
                b.iter(|| {
                    let loss = cross_entropy(&m.forward(&x, &flags).unwrap(), &y, 0.0).unwrap();
                    opt.step(&loss.backward().unwrap(), &[1e-3]).unwrap();
                })
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("extract");
    g.sample_size(10);
    for arch in [Arch::Convnet4, Arch::Resnet8, Arch::Resnet20] {
        for batch in [32usize, 128] {
            let (m, x, _) = setup(arch, batch);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(arch.name(), batch), &batch, |b, _| b.iter(|| m.features(&x, m.n_groups() - 2).unwrap()));
        }
    }
    g.finish();
}

/// `graft inspect` on 1 000 synthetic 32x32 images in 10 classes with resnet8-cifar10, all groups
/// (decode, profile, one pass through the backbone, every score).
fn bench_inspect(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for cls in 0..10u32 {
        let d = dir.path().join(format!("c{cls}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..100u32 {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([(x * 8 + cls * 20) as u8, (y * 8 + i) as u8, ((x + y) * 4 + cls * 10) as u8])
            });
            img.save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    let mut g = c.benchmark_group("inspect");
    g.sample_size(10);
    g.bench_function("resnet8-cifar10/1000x32x32", |b| {
        b.iter(|| {
            let mut data = graft::data::LoadOptions::new(dir.path());
            data.test_fraction = 0.01;
            graft::metafeatures::inspect(&graft::metafeatures::InspectOptions {
                data,
                backbone: "resnet8-cifar10".into(),
                skip_bad: false,
                dump_features: None,
                input_size: None,
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_inspect);
criterion_main!(benches);
