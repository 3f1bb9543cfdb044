//! graft's backbones (with its own conv and BatchNorm kernels) against PyTorch golden values
//! made by tests/golden/make_golden.py: train-mode logits, loss, every parameter gradient, the
//! BatchNorm running statistics after the pass, and eval-mode logits; relative error < 1e-4.
use candle_core::{Device, Tensor};
use graft::backbones::{Arch, Model};
use graft::executor::train::cross_entropy;
use std::collections::HashMap;
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let s = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    d / s.max(1e-12)
}

fn check(arch: Arch) {
    let dev = Device::Cpu;
    let g: HashMap<String, Tensor> = candle_core::safetensors::load(golden(&format!("{}_golden.safetensors", arch.name())), &dev).unwrap();
    let weights = golden(&format!("{}_weights.safetensors", arch.name()));
    // eval mode from the original weights
    let m = Model::new(arch, arch.default_input(), 10, 0, &dev).unwrap();
    m.load_weights(&weights, &[]).unwrap();
    let e = m.forward(&g["x"], &[]).unwrap();
    assert!(rel(&e, &g["logits_eval"]) < 1e-4, "{arch:?} eval logits: {}", rel(&e, &g["logits_eval"]));
    // train mode: logits, loss, gradients, running statistics
    let m = Model::new(arch, arch.default_input(), 10, 0, &dev).unwrap();
    m.load_weights(&weights, &[]).unwrap();
    let flags = vec![true; m.n_groups()];
    let logits = m.forward(&g["x"], &flags).unwrap();
    assert!(rel(&logits, &g["logits_train"]) < 1e-4, "{arch:?} train logits: {}", rel(&logits, &g["logits_train"]));
    let loss = cross_entropy(&logits, &g["y"], 0.0).unwrap();
    assert!(rel(&loss.reshape(1).unwrap(), &g["loss"]) < 1e-5);
    let grads = loss.backward().unwrap();
    let mut checked = 0;
    for (name, var) in m.named_vars() {
        if Model::is_buffer(&name) {
            let want = &g[&format!("after.{name}")];
            assert!(rel(var.as_tensor(), want) < 1e-4, "{arch:?} {name} after the train pass: {}", rel(var.as_tensor(), want));
        } else {
            let got = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            let want = &g[&format!("grad.{name}")];
            let r = rel(got, want);
            assert!(r < 1e-4, "{arch:?} gradient of {name}: relative error {r}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn resnet8_matches_pytorch() {
    check(Arch::Resnet8);
}

#[test]
fn convnet4_matches_pytorch() {
    check(Arch::Convnet4);
}
