//! EfficientNet-Lite0 (ImageNet) in graft against the PyTorch reference in
//! scripts/efficientnet_lite0.py, on the same weights and inputs, at every input size the card
//! records (224, 128, 96, 64): eval-mode logits to 1e-4 relative.
use candle_core::{Device, Tensor};
use graft::backbones::{card, Model};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn lite0_logits_match_pytorch_at_every_checked_size() {
    let dev = Device::Cpu;
    let m = card::resolve(root().join("models/efficientnet-lite0-imagenet.safetensors").to_str().unwrap()).unwrap();
    assert_eq!(m.card.groups.len(), 10);
    let g = candle_core::safetensors::load(root().join("tests/golden/efficientnet_lite0_logits.safetensors"), &dev).unwrap();
    for size in [224usize, 128, 96, 64] {
        let mut mref = m.clone();
        mref.card.input.height = size;
        mref.card.input.width = size;
        let model = Model::for_card(&mref, 1000, 0, &dev).unwrap();
        model.load_weights(&mref.weights, &[]).unwrap();
        let n = 2 * 3 * size * size;
        let x: Vec<f32> = (0..n).map(|i| (i as f64 * 0.37).sin() as f32).collect();
        let x = Tensor::from_vec(x, (2, 3, size, size), &dev).unwrap();
        let y = model.forward(&x, &[]).unwrap();
        let want = &g[&format!("logits_{size}")];
        let d = (&y - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let s = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d / s < 1e-4, "size {size}: relative error {}", d / s);
        // every group carries parameters, the head is the 1000-way classifier
        let f = model.features(&x, model.n_groups() - 2).unwrap();
        assert_eq!(f.dims(), &[2, 1280]);
    }
    let model = Model::for_card(&m, 1000, 0, &dev).unwrap();
    for grp in &model.group_names {
        assert!(!model.group_params(grp).is_empty(), "group {grp} is empty");
    }
}
