//! Bring-your-own torchvision ResNets: narrow, randomly initialised torchvision-format files
//! (tests/golden/make_torchvision_golden.py, built from torchvision's own BasicBlock/Bottleneck)
//! load without a card as graft backbones with groups stem, layer1..4, head, and give
//! PyTorch's logits in eval and train mode (1e-4 relative).
mod common;
use candle_core::{Device, Tensor};
use graft::backbones::{card, Model};
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    d / b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-12)
}

#[test]
fn torchvision_files_load_and_match_pytorch() {
    let dev = Device::Cpu;
    let g = candle_core::safetensors::load(golden("tv_golden.safetensors"), &dev).unwrap();
    let n = 2 * 3 * 224 * 224;
    let x: Vec<f32> = (0..n).map(|i| (i as f64 * 0.37).sin() as f32).collect();
    let x = Tensor::from_vec(x, (2, 3, 224, 224), &dev).unwrap();
    for (name, classes, groups_len) in [("basic", 7, [2, 1, 1, 1]), ("bottleneck", 5, [1, 2, 1, 1])] {
        let m = card::resolve(golden(&format!("tv_{name}.safetensors")).to_str().unwrap()).unwrap();
        assert_eq!(m.card.arch, "torchvision-resnet");
        assert_eq!(m.card.groups, vec!["stem", "layer1", "layer2", "layer3", "layer4", "head"]);
        assert_eq!(m.card.n_classes, classes);
        let model = Model::for_card(&m, classes, 0, &dev).unwrap();
        model.load_weights(&m.weights, &[]).unwrap();
        let e = model.forward(&x, &[]).unwrap();
        assert!(rel(&e, &g[&format!("{name}.logits_eval")]) < 1e-4, "{name} eval {}", rel(&e, &g[&format!("{name}.logits_eval")]));
        let t = model.forward(&x, &[true; 6]).unwrap();
        assert!(rel(&t, &g[&format!("{name}.logits_train")]) < 1e-4, "{name} train {}", rel(&t, &g[&format!("{name}.logits_train")]));
        // every group holds variables, and blocks per layer were read from the file
        for grp in &model.group_names {
            assert!(!model.group_params(grp).is_empty(), "{name} group {grp} is empty");
        }
        let blocks: Vec<usize> = (1..=4)
            .map(|l| model.named_vars().keys().filter(|k| k.starts_with(&format!("layer{l}.")) && k.ends_with("conv1.weight")).count())
            .collect();
        assert_eq!(blocks, groups_len.to_vec());
    }
}

#[test]
fn misshapen_or_missing_tensors_are_named() {
    let t = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let mut ts = candle_core::safetensors::load(golden("tv_basic.safetensors"), &dev).unwrap();
    ts.remove("layer2.0.bn1.running_var");
    let p = t.path().join("missing.safetensors");
    candle_core::safetensors::save(&ts, &p).unwrap();
    let m = card::resolve(p.to_str().unwrap()).unwrap();
    let model = Model::for_card(&m, 7, 0, &dev).unwrap();
    let e = model.load_weights(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("missing tensor `layer2.0.bn1.running_var`"), "{e}");
    let mut ts = candle_core::safetensors::load(golden("tv_basic.safetensors"), &dev).unwrap();
    ts.insert("layer3.0.conv2.weight".into(), Tensor::zeros((32, 32, 1, 1), candle_core::DType::F32, &dev).unwrap());
    let p = t.path().join("bad.safetensors");
    candle_core::safetensors::save(&ts, &p).unwrap();
    let m = card::resolve(p.to_str().unwrap()).unwrap();
    let model = Model::for_card(&m, 7, 0, &dev).unwrap();
    let e = model.load_weights(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("layer3.0.conv2.weight") && e.contains("[32, 32, 3, 3]"), "{e}");
    let mut ts = candle_core::safetensors::load(golden("tv_basic.safetensors"), &dev).unwrap();
    ts.remove("fc.weight");
    let p = t.path().join("nofc.safetensors");
    candle_core::safetensors::save(&ts, &p).unwrap();
    let e = card::resolve(p.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("fc.weight"), "{e}");
}

#[test]
fn run_fine_tunes_a_torchvision_backbone() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("d");
    common::make_folder(&data, &[("train", 4), ("test", 2)], 2, 32);
    let j = common::json_of(&run_tv_basic(&data, t.path(), false));
    let names: Vec<&str> = j["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["stem", "layer1", "layer2", "layer3", "layer4", "head"]);
    assert!(j["groups"].as_array().unwrap().iter().all(|g| g["weight_change"].as_f64().unwrap() > 0.0));
    // the saved classifier rebuilds the ResNet from its own file and predicts what the run did
    let o = common::graft()
        .args(["predict", "--json", "--run", j["run_dir"].as_str().unwrap(), "--data"])
        .arg(data.join("test"))
        .output()
        .unwrap();
    let p = common::json_of(&o);
    assert_eq!(p["n_labelled"], j["n_test"]);
    assert!((p["accuracy"].as_f64().unwrap() - j["test_accuracy"].as_f64().unwrap()).abs() < 1e-12);
}

/// With `GRAFT_REFERENCE_KERNELS=1` (candle's ops where it has them) a torchvision stem's padded
/// max-pool still runs, on graft's CPU kernel (candle has no padded max-pool), and the first
/// step's loss agrees with graft's own kernels to float32 rounding.
#[test]
fn the_reference_kernels_run_a_torchvision_stem() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("d");
    common::make_folder(&data, &[("train", 4), ("test", 2)], 2, 32);
    let first_loss = |reference: bool| -> f64 {
        let out = run_tv_basic(&data, &t.path().join(if reference { "ref" } else { "own" }), reference);
        assert!(out.status.success(), "reference {reference}: {}", String::from_utf8_lossy(&out.stderr));
        common::json_of(&out)["first_step_loss"].as_f64().unwrap()
    };
    let (own, reference) = (first_loss(false), first_loss(true));
    assert!((own - reference).abs() / own.abs() < 1e-5, "graft's kernels {own}, reference kernels {reference}");
}

/// `graft run` (finetune-all, 1 epoch, seed 0) of tests/golden/tv_basic.safetensors on `data`,
/// runs logged under `runs`; `reference`: with GRAFT_REFERENCE_KERNELS=1.
fn run_tv_basic(data: &std::path::Path, runs: &std::path::Path, reference: bool) -> std::process::Output {
    let mut c = common::graft();
    if reference {
        c.env("GRAFT_REFERENCE_KERNELS", "1");
    }
    c.args(["run", "--preset", "finetune-all", "--epochs", "1", "--seed", "0", "--no-meta", "--json", "--runs"])
        .arg(runs)
        .arg("--data")
        .arg(data)
        .arg("--backbone")
        .arg(golden("tv_basic.safetensors"))
        .output()
        .unwrap()
}
