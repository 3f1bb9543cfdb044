//! Development harness, not a check: chooses a pretraining method's settings on CIFAR-10
//! classes that `tests/pretrain.rs` never sees (airplane/automobile/bird and deer/dog/horse,
//! the first 60 training images of each; cifar3 is cat/frog/ship) under the same protocol
//! (convnet4, pretraining seeds 0–2, linear probe on the penultimate pooled layer scored by
//! 5 × repeated 2-fold CV). Needs `data/cifar10` (`scripts/fetch-data.sh`); it fails without
//! it. Run: `DEV_METHOD=denoising-autoencoder DEV_VARIANTS="0.5,0.25;0.3,0" cargo test
//! --release --test dev_selection -- --ignored --nocapture` (each variant: noise, mask).
use graft::backbones::{Arch, Model};
use graft::data::{decode_items, InputSpec, Item, ItemSource};
use graft::pretrain::{pretrain, Method, PretrainSpec};
mod common;
use common::probe::probe_accuracy;

fn items(classes: &[&str]) -> Vec<Item> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10/train");
    let mut v = Vec::new();
    for (ci, c) in classes.iter().enumerate() {
        let dir = root.join(c);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-data.sh first", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.into_iter().take(60) {
            v.push(Item { source: ItemSource::File(f), label: Some(ci) });
        }
    }
    v
}

#[test]
#[ignore = "development harness: needs data/cifar10"]
fn settings_on_dev_classes() {
    let method = Method::parse(&std::env::var("DEV_METHOD").unwrap_or_else(|_| "denoising-autoencoder".into())).unwrap();
    let variants: Vec<(f64, f64)> = std::env::var("DEV_VARIANTS")
        .unwrap_or_else(|_| "0.5,0.25".into())
        .split(';')
        .map(|s| {
            let p: Vec<f64> = s.split(',').map(|x| x.trim().parse().unwrap()).collect();
            (p[0], p[1])
        })
        .collect();
    let input = InputSpec { channels: 3, height: 32, width: 32 };
    let dev = candle_core::Device::Cpu;
    for classes in [["airplane", "automobile", "bird"], ["deer", "dog", "horse"]] {
        let labelled_items = items(&classes);
        let unl_items: Vec<Item> = labelled_items.iter().map(|i| Item { source: i.source.clone(), label: None }).collect();
        let (unl, labelled) = (decode_items(&unl_items, input, false).unwrap(), decode_items(&labelled_items, input, false).unwrap());
        let norm = unl.channel_stats();
        let base = probe_accuracy(&Model::new(Arch::Convnet4, input, 3, 7, &dev).unwrap(), &labelled, &norm);
        for (noise, mask) in &variants {
            let mut diffs = Vec::new();
            for seed in 0..3u64 {
                let model = Model::new(Arch::Convnet4, input, 3, 7, &dev).unwrap();
                let mut spec = PretrainSpec::new(method);
                let batch = std::env::var("DEV_BATCH").map(|b| b.parse().unwrap()).unwrap_or(32);
                (spec.epochs, spec.batch_size, spec.lr, spec.noise, spec.mask) = (15, batch, 3e-3, *noise, *mask);
                pretrain(&model, &unl, &norm, &spec, seed, &|_| {}).unwrap();
                diffs.push(probe_accuracy(&model, &labelled, &norm) - base);
            }
            let mean = diffs.iter().sum::<f64>() / 3.0;
            eprintln!(
                "DEV {classes:?} {} noise {noise} mask {mask}: random {base:.4}, pretrained − random {diffs:+.4?}, mean {mean:+.4}",
                method.as_str()
            );
        }
    }
}

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.into())
}

/// Development harness at CIFAR-10 scale: pretrain on DEV_POOL unlabelled training images per
/// class (all 10 classes), probe (linear SVM at the penultimate pooled layer) trained on
/// DEV_LABELLED further training images per class and scored on DEV_TEST further training
/// images per class.
#[test]
#[ignore = "development harness: needs data/cifar10"]
fn scale_on_cifar10() {
    let pool: usize = env_or("DEV_POOL", "500").parse().unwrap();
    let nl: usize = env_or("DEV_LABELLED", "50").parse().unwrap();
    let nt: usize = env_or("DEV_TEST", "100").parse().unwrap();
    let epochs: usize = env_or("DEV_EPOCHS", "10").parse().unwrap();
    let seeds: u64 = env_or("DEV_SEEDS", "1").parse().unwrap();
    let arch = Arch::parse(&env_or("DEV_ARCH", "convnet4")).unwrap();
    let input = InputSpec { channels: 3, height: 32, width: 32 };
    let unl = decode_items(&common::cifar10::items("train", 0..pool, false), input, false).unwrap();
    let train = decode_items(&common::cifar10::items("train", pool..pool + nl, true), input, false).unwrap();
    // scored on further *training* images (a validation set), so that settings chosen here are
    // not chosen on the CIFAR-10 test images that tests/pretrain.rs scores on
    let test = decode_items(&common::cifar10::items("train", pool + nl..pool + nl + nt, true), input, false).unwrap();
    let norm = unl.channel_stats();
    let dev = candle_core::Device::Cpu;
    let base = common::probe::holdout_accuracy(&Model::new(arch, input, 10, 7, &dev).unwrap(), &train, &test, &norm);
    eprintln!("DEV10 random features {base:.4}");
    for m in env_or("DEV_METHODS", "autoencoder").split(',') {
        let method = Method::parse(m).unwrap();
        for seed in 0..seeds {
            let model = Model::new(arch, input, 10, 7, &dev).unwrap();
            let mut spec = PretrainSpec::new(method);
            spec.epochs = epochs;
            spec.batch_size = env_or("DEV_BATCH", if method == Method::Simclr { "128" } else { "64" }).parse().unwrap();
            spec.lr = env_or("DEV_LR", "3e-3").parse().unwrap();
            spec.code_dim = env_or("DEV_CODE", "32").parse().unwrap();
            if let Ok(s) = std::env::var("DEV_SETTINGS") {
                // extra PretrainSpec fields as JSON, e.g. {"noise": 0.3, "temperature": 0.2}
                let mut v = serde_json::to_value(&spec).unwrap();
                for (k, x) in serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&s).unwrap() {
                    v[k] = x;
                }
                spec = serde_json::from_value(v).unwrap();
            }
            let out = pretrain(&model, &unl, &norm, &spec, seed, &|_| {}).unwrap();
            let acc = common::probe::holdout_accuracy(&model, &train, &test, &norm);
            eprintln!(
                "DEV10 {m} seed {seed}: {:.1} s, loss {:.4} -> {:.4}; probe {acc:.4} ({:+.4} vs random)",
                out.seconds,
                out.losses[0],
                out.losses.last().unwrap(),
                acc - base
            );
        }
    }
}
