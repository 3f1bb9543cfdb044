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
