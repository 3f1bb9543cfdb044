//! EfficientNet-Lite0/1/2 (ImageNet) in graft against the PyTorch reference in
//! scripts/efficientnet_lite.py, on the same weights and inputs, at the native input size and at
//! 224, 128, 96 and 64 px: eval-mode logits to 1e-4 relative.
use candle_core::{Device, Tensor};
use graft::backbones::{card, Model};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lite_logits_match_pytorch(variant: &str, native: usize, params: usize) {
    let dev = Device::Cpu;
    let m = card::resolve(root().join(format!("models/efficientnet-{variant}-imagenet.safetensors")).to_str().unwrap()).unwrap();
    assert_eq!(m.card.groups.len(), 10);
    assert_eq!(m.card.input.height, native);
    assert_eq!(m.card.params, params);
    // the reported upstream top-1 is on the card, with a note saying it is reported
    assert!(m.card.source_accuracy.is_some_and(|a| a > 0.7 && a < 0.8));
    assert!(m.card.notes.contains("REPORTED"), "{}", m.card.notes);
    let g = candle_core::safetensors::load(root().join(format!("tests/golden/efficientnet_{variant}_logits.safetensors")), &dev).unwrap();
    let mut sizes = vec![native, 224, 128, 96, 64];
    sizes.dedup();
    assert_eq!(g.len(), sizes.len());
    for size in sizes {
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
        assert!(d / s < 1e-4, "{variant} at {size} px: relative error {}", d / s);
        // every group carries parameters, the head is the 1000-way classifier
        let f = model.features(&x, model.n_groups() - 2).unwrap();
        assert_eq!(f.dims(), &[2, 1280]);
    }
    let model = Model::for_card(&m, 1000, 0, &dev).unwrap();
    assert_eq!(model.param_count(), params);
    for grp in &model.group_names {
        assert!(!model.group_params(grp).is_empty(), "{variant}: group {grp} is empty");
    }
}

#[test]
fn lite0_logits_match_pytorch_at_every_checked_size() {
    lite_logits_match_pytorch("lite0", 224, 4_652_008);
}

#[test]
fn lite1_logits_match_pytorch_at_every_checked_size() {
    lite_logits_match_pytorch("lite1", 240, 5_416_680);
}

#[test]
fn lite2_logits_match_pytorch_at_every_checked_size() {
    lite_logits_match_pytorch("lite2", 260, 6_092_072);
}

/// Lite1's and Lite2's 21 blocks fall into the 7 stages by the scaled block counts
/// (1, 3, 3, 4, 4, 5, 1), and Lite2's widths are Lite0's times 1.1 rounded to multiples of 8.
#[test]
fn lite_stage_tables_follow_the_scaling_rules() {
    use graft::backbones::Arch;
    let l1 = Arch::EfficientnetLite1.lite_stages().unwrap();
    let l2 = Arch::EfficientnetLite2.lite_stages().unwrap();
    assert_eq!(l1.iter().map(|s| s.4).collect::<Vec<_>>(), [1, 3, 3, 4, 4, 5, 1]);
    assert_eq!(l1.iter().map(|s| s.3).collect::<Vec<_>>(), [16, 24, 40, 80, 112, 192, 320]);
    assert_eq!(l2.iter().map(|s| s.3).collect::<Vec<_>>(), [16, 24, 48, 88, 120, 208, 352]);
    assert_eq!(Model::group_of_arch(Arch::EfficientnetLite1, "_blocks.3._bn1.weight"), "stage2");
    assert_eq!(Model::group_of_arch(Arch::EfficientnetLite0, "_blocks.3._bn1.weight"), "stage3");
    assert_eq!(Model::group_of_arch(Arch::EfficientnetLite2, "_blocks.19._bn1.weight"), "stage6");
    assert_eq!(Model::group_of_arch(Arch::EfficientnetLite2, "_blocks.20._bn1.weight"), "stage7");
}

fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let s = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    d / s.max(1e-12)
}

/// Two Lite inverted-residual blocks in train mode (a 5x5 stride-1 block with its skip, then a
/// 3x3 stride-2 one, on a 15x15 input so the "same" padding is asymmetric) against PyTorch
/// (tests/golden/make_mbconv_golden.py): the output, the input gradient, every parameter
/// gradient (depthwise and 1x1 weights, BatchNorm scales and shifts) and the running
/// statistics, to 1e-4 relative. The BatchNorm scales are large enough that hundreds of
/// activations clamp at 6, so the ReLU6 gradient mask is exercised at both ends.
#[test]
fn mbconv_blocks_match_pytorch_in_train_mode() {
    use candle_nn::{VarBuilder, VarMap};
    use graft::backbones::layers::MbConv;
    let dev = Device::Cpu;
    let g = candle_core::safetensors::load(root().join("tests/golden/mbconv_golden.safetensors"), &dev).unwrap();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev);
    let blocks: Vec<MbConv> = [(8, 8, 6, 5, 1), (8, 12, 6, 3, 2)]
        .iter()
        .enumerate()
        .map(|(i, &(ci, co, e, k, s))| MbConv::new(ci, co, e, k, s, vb.pp(i.to_string())).unwrap())
        .collect();
    let vars: Vec<(String, candle_core::Var)> = vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(vars.len(), 30, "two blocks of 3 convolutions and 3 BatchNorms (4 tensors each)");
    for (name, var) in &vars {
        var.set(&g[&format!("w.{name}")]).unwrap();
    }
    let x = candle_core::Var::from_tensor(&g["x"]).unwrap();
    let mut y = x.as_tensor().clone();
    for b in &blocks {
        y = b.forward_t(&y, true).unwrap();
    }
    assert!(rel(&y, &g["y"]) < 1e-4, "output: {}", rel(&y, &g["y"]));
    let grads = (&y * &g["up"]).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(rel(grads.get(&x).unwrap(), &g["dx"]) < 1e-4, "dx: {}", rel(grads.get(&x).unwrap(), &g["dx"]));
    let mut checked = 0;
    for (name, var) in &vars {
        if name.contains("running") {
            let want = &g[&format!("after.{name}")];
            assert!(rel(var.as_tensor(), want) < 1e-4, "{name}: {}", rel(var.as_tensor(), want));
        } else {
            let got = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name}"));
            let want = &g[&format!("grad.{name}")];
            if name == "0._bn2.bias" {
                // Block 0's last BatchNorm shift reaches block 1's train-mode BatchNorm through
                // a 1x1 convolution, which cancels any constant: its gradient is 0 in exact
                // arithmetic, float noise (about 1e-6) in both.
                let amax = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(amax(got) < 1e-4 && amax(want) < 1e-4, "{name}: {} and {} should both be about 0", amax(got), amax(want));
            } else {
                assert!(rel(got, want) < 1e-4, "gradient of {name}: {}", rel(got, want));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}
