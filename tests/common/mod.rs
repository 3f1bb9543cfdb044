//! Shared test fixtures: small synthetic ImageFolder trees with learnable classes, and a tiny
//! pretrained backbone made by `graft pretrain`.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

pub mod cifar10;
pub mod probe;
use std::process::Command;

pub fn graft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_graft"));
    c.env("GRAFT_META", "/nonexistent-graft-meta-should-not-be-used");
    c
}

/// Class-dependent pattern + noise, so a small CNN can learn it.
pub fn synth_image(class: usize, idx: usize, size: u32) -> image::RgbImage {
    let mut state = (class as u64 * 7919 + idx as u64 * 104729 + 17) | 1;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 60) as i32 - 30
    };
    image::RgbImage::from_fn(size, size, |x, y| {
        let on = match class % 3 {
            0 => (y / 4) % 2 == 0,
            1 => (x / 4) % 2 == 0,
            _ => ((x / 4) + (y / 4)) % 2 == 0,
        };
        let base: [i32; 3] = match class {
            0 => [200, 60, 60],
            1 => [60, 200, 60],
            2 => [60, 60, 200],
            _ => [150, 150, 60],
        };
        let f = if on { 1.0 } else { 0.4 };
        let mut p = |c: i32| ((c as f32 * f) as i32 + noise()).clamp(0, 255) as u8;
        image::Rgb([p(base[0]), p(base[1]), p(base[2])])
    })
}

/// `dir/<split>/<class>/*.png` with `per_class` images per class for each split given.
pub fn make_folder(dir: &Path, splits: &[(&str, usize)], classes: usize, size: u32) {
    for (s, per) in splits {
        for c in 0..classes {
            let d = if s.is_empty() { dir.join(format!("class{c}")) } else { dir.join(s).join(format!("class{c}")) };
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..*per {
                let off = if *s == "test" { 10_000 } else { 0 };
                synth_image(c, i + off, size).save(d.join(format!("img{i:03}.png"))).unwrap();
            }
        }
    }
}

/// A tiny resnet8 "pretrained" for one epoch on a synthetic 4-class source, in `dir`.
pub fn tiny_backbone(dir: &Path) -> PathBuf {
    let src = dir.join("source");
    make_folder(&src, &[("train", 24), ("test", 6)], 4, 32);
    let out = dir.join("tiny-r8.safetensors");
    let o = graft()
        .args(["pretrain", "--data"])
        .arg(&src)
        .args(["--arch", "resnet8", "--epochs", "2", "--batch-size", "16", "--seed", "1", "--lr", "0.05", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "pretrain failed: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// A tiny backbone and a 3-class task (`train` and `test` images a class, 32 px) in a
/// temporary folder that lives as long as the value.
pub struct TinyTask {
    pub _dir: tempfile::TempDir,
    pub backbone: PathBuf,
    pub data: PathBuf,
}

impl TinyTask {
    pub fn new(train: usize, test: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backbone = tiny_backbone(dir.path());
        let data = dir.path().join("task");
        make_folder(&data, &[("train", train), ("test", test)], 3, 32);
        TinyTask { _dir: dir, backbone, data }
    }
}

pub fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "command failed ({:?}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A tiny plan over the example dataset (listed as two families so family-grouped code paths
/// have something to group); 4 tasks -> 4 (task, backbone) blocks.
pub fn tiny_plan(dir: &Path, name: &str, tasks: usize) -> PathBuf {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/cifar3");
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"name = "{name}"
seeds = [0, 1]
[[family]]
name = "fam-a"
data = "{d}"
tasks = {tasks}
[[family]]
name = "fam-b"
data = "{d}"
tasks = {tasks}
[tasks]
n_classes = [2, 3]
shots = [2, 5, 10]
shifts = ["none", "invert", "rotate"]
test_per_class = 10
val_per_class = 3
[[backbone]]
name = "resnet8-cifar10"
[recipes]
sample = "none"
include = ["linear-probe"]
[[recipes.arm]]
strategy = "finetune"
epochs = 1
lr = 0.003
[[recipes.arm]]
strategy = "softmax-probe"
probe_depth = "mid"
"#,
            d = data.display()
        ),
    )
    .unwrap();
    p
}
