//! Backbones: groups, features at every group, frozen BatchNorm, seeded init, checkpoints.
use candle_core::{Device, Tensor};
use graft::backbones::{Arch, Model};
use graft::data::InputSpec;
use graft::GraftError;

fn x(b: usize, spec: InputSpec) -> Tensor {
    Tensor::randn(0f32, 1.0, (b, spec.channels, spec.height, spec.width), &Device::Cpu).unwrap()
}

#[test]
fn groups_features_and_logits() {
    for (arch, dims) in
        [(Arch::Convnet4, vec![64, 64, 64, 64, 7]), (Arch::Resnet8, vec![16, 16, 32, 64, 7]), (Arch::Resnet20, vec![16, 16, 32, 64, 7])]
    {
        let spec = arch.default_input();
        let m = Model::new(arch, spec, 7, 0, &Device::Cpu).unwrap();
        assert_eq!(m.group_names.last().unwrap(), "head");
        assert_eq!(m.n_groups(), 5);
        let input = x(3, spec);
        let outs = m.forward_groups(&input, &[], 4).unwrap();
        for (g, d) in dims.iter().enumerate() {
            let f = m.features(&input, g).unwrap();
            assert_eq!(f.dims(), &[3, *d], "{arch:?} group {g}");
        }
        assert_eq!(outs[4].dims(), &[3, 7]);
        assert_eq!(m.forward(&input, &[]).unwrap().dims(), &[3, 7]);
    }
    // resnet20 has 3 blocks per stage
    let m = Model::new(Arch::Resnet20, Arch::Resnet20.default_input(), 10, 0, &Device::Cpu).unwrap();
    assert!(m.named_vars().keys().any(|k| k.starts_with("stage3.2.conv2")));
    assert!(m.param_count() > 250_000 && m.param_count() < 300_000, "{}", m.param_count());
}

#[test]
fn seeded_init_is_deterministic_and_reinit_touches_only_its_group() {
    let spec = Arch::Resnet8.default_input();
    let a = Model::new(Arch::Resnet8, spec, 5, 3, &Device::Cpu).unwrap();
    let b = Model::new(Arch::Resnet8, spec, 5, 3, &Device::Cpu).unwrap();
    let c = Model::new(Arch::Resnet8, spec, 5, 4, &Device::Cpu).unwrap();
    assert_eq!(a.weights_sha256().unwrap(), b.weights_sha256().unwrap());
    assert_ne!(a.weights_sha256().unwrap(), c.weights_sha256().unwrap());
    let before = a.snapshot().unwrap();
    a.reinit_groups(&["stage2".to_string()], 99).unwrap();
    for g in &a.group_names {
        let wc = a.weight_change(g, &before).unwrap();
        if g == "stage2" {
            assert!(wc > 0.1, "{g} {wc}");
        } else {
            assert_eq!(wc, 0.0, "{g}");
        }
    }
}

#[test]
fn batchnorm_statistics_move_only_in_train_mode() {
    let spec = Arch::Resnet8.default_input();
    let m = Model::new(Arch::Resnet8, spec, 5, 0, &Device::Cpu).unwrap();
    let rm = |m: &Model| m.named_vars()["stem.bn.running_mean"].as_tensor().to_vec1::<f32>().unwrap();
    let r0 = rm(&m);
    let input = (x(4, spec) + 3.0).unwrap();
    m.forward(&input, &[false, true, true, true, true]).unwrap();
    assert_eq!(rm(&m), r0, "frozen stem's BatchNorm moved");
    m.forward(&input, &[true, true, true, true, true]).unwrap();
    assert_ne!(rm(&m), r0);
}

#[test]
fn checkpoint_round_trip_and_bad_files() {
    let t = tempfile::tempdir().unwrap();
    let spec = Arch::Resnet8.default_input();
    let a = Model::new(Arch::Resnet8, spec, 10, 1, &Device::Cpu).unwrap();
    let p = t.path().join("a.safetensors");
    a.save(&p).unwrap();
    let b = Model::new(Arch::Resnet8, spec, 10, 2, &Device::Cpu).unwrap();
    b.load_weights(&p, &[]).unwrap();
    assert_eq!(a.weights_sha256().unwrap(), b.weights_sha256().unwrap());
    // a head with another class count can be skipped, not loaded
    let c = Model::new(Arch::Resnet8, spec, 3, 2, &Device::Cpu).unwrap();
    match c.load_weights(&p, &[]) {
        Err(e @ GraftError::Model(_)) => assert!(e.to_string().contains("head.fc"), "{e}"),
        _ => panic!("expected a shape error"),
    }
    c.load_weights(&p, &["head".to_string()]).unwrap();
    // an arch mismatch names the first missing key
    let d = Model::new(Arch::Resnet20, spec, 10, 2, &Device::Cpu).unwrap();
    match d.load_weights(&p, &[]) {
        Err(e @ GraftError::Model(_)) => {
            assert!(e.to_string().contains("missing tensor `stage1.1."), "{e}")
        }
        _ => panic!("expected a missing-tensor error"),
    }
}
