//! Bounded fuzzing of every parser that reads user files: recipes, sweep plans, model cards and
//! safetensors checkpoints, IDX and `.npy` files, and the image decode path. Each property is
//! "never panics": a bad input gives `Err`, never a crash. `graft predict`'s saved classifier
//! (its card and probe file) is fuzzed the same way. Inputs are random bytes and random
//! mutations (byte edits, truncations) of a valid file, so the parsers get past their first
//! check. `GRAFT_FUZZ_CASES` sets the cases per target (default 64 here; `scripts/fuzz.sh`
//! runs many more), `GRAFT_FUZZ_SEED` the seed they are drawn from (default 0). Crashes found become regression tests at the end of this file.
mod common;
use graft::backbones::{card, Arch, Model};
use graft::data::{decode_items, InputSpec, Item, ItemSource};
use graft::recipe::Recipe;
use graft::sweep::plan::Plan;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn cases() -> u32 {
    std::env::var("GRAFT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// The test suite draws the same cases on every run (seed 0, or `GRAFT_FUZZ_SEED`), so a
/// change cannot fail it on inputs unrelated to the change; `scripts/fuzz.sh` draws a fresh seed
/// each time and prints it, to explore.
fn config() -> ProptestConfig {
    let seed = std::env::var("GRAFT_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

/// Byte edits at positions taken modulo the input's length, then an optional cut.
fn mutate(base: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut b = base.to_vec();
    if !b.is_empty() {
        for &(i, v) in edits {
            let n = b.len();
            b[i % n] = v;
        }
    }
    if let Some(c) = cut {
        let n = b.len();
        b.truncate(c % (n + 1));
    }
    b
}

fn edits() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), proptest::option::of(any::<usize>()))
}

fn no_panic<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::result::Result<T, String> {
    std::panic::catch_unwind(f)
        .map_err(|e| e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

struct Seeds {
    _dir: tempfile::TempDir,
    recipe: String,
    plan: String,
    weights: Vec<u8>,
    card: serde_json::Value,
    idx: Vec<u8>,
    npy_f: Vec<u8>,
    npy_l: Vec<u8>,
    png: Vec<u8>,
    jpg: Vec<u8>,
    bmp: Vec<u8>,
    tiff_f32: Vec<u8>,
}

fn seeds() -> &'static Seeds {
    static S: OnceLock<Seeds> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let recipe = graft::recipe::preset("finetune-all").unwrap().to_json();
        let plan = format!(
            "name = \"f\"\nseeds = [0, 1]\n[[family]]\nname = \"a\"\ndata = \"{}\"\ntasks = 2\n[tasks]\nn_classes = [2, 3]\nshots = [1, 5]\nshifts = [\"none\", \"rotate\"]\ntest_per_class = 3\n[[backbone]]\nname = \"resnet8-cifar10\"\n[recipes]\nsample = \"random:3\"\ninclude = [\"linear-probe\"]\n[recipes.space]\nstrategy = [\"finetune\", \"linear-probe\"]\nlr = [0.001, 0.01]\nepochs = [1, 2]\n",
            dir.path().display()
        );
        let input = InputSpec { channels: 1, height: 28, width: 28 };
        let m = Model::new(Arch::Convnet4, input, 3, 0, &candle_core::Device::Cpu).unwrap();
        let wp = dir.path().join("w.safetensors");
        m.save(&wp).unwrap();
        let weights = std::fs::read(&wp).unwrap();
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/convnet4-mnist.json")).unwrap())
                .unwrap();
        // IDX: 3 images of 2x2
        let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2];
        idx.extend(0..12u8);
        let fp = dir.path().join("f.npy");
        ndarray_npy::write_npy(&fp, &ndarray::Array2::<f32>::from_elem((4, 3), 0.5)).unwrap();
        let lp = dir.path().join("l.npy");
        ndarray_npy::write_npy(&lp, &ndarray::Array1::<i64>::from_vec(vec![0, 1, 0, 1])).unwrap();
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, 99])));
        let enc = |f| {
            let mut v = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut v), f).unwrap();
            v
        };
        Seeds {
            recipe,
            plan,
            weights,
            card,
            idx,
            npy_f: std::fs::read(&fp).unwrap(),
            npy_l: std::fs::read(&lp).unwrap(),
            png: enc(image::ImageFormat::Png),
            jpg: enc(image::ImageFormat::Jpeg),
            bmp: enc(image::ImageFormat::Bmp),
            tiff_f32: {
                let mut c = std::io::Cursor::new(Vec::new());
                let v: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
                tiff::encoder::TiffEncoder::new(&mut c).unwrap().write_image::<tiff::encoder::colortype::Gray32Float>(8, 8, &v).unwrap();
                c.into_inner()
            },
            _dir: dir,
        }
    })
}

fn tmp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

fn recipe_target(text: &str) {
    if let Ok(r) = Recipe::from_json(text, "fuzz") {
        let groups: Vec<String> = Arch::Resnet8.group_names();
        let _ = r.check(&groups, 10, 3);
    }
}

fn plan_target(text: &str) {
    let _ = Plan::parse(text, Path::new("fuzz.toml")).map(|p| p.templates());
}

fn checkpoint_target(weights: &[u8], card_text: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("m.safetensors");
    std::fs::write(&w, weights).unwrap();
    std::fs::write(w.with_extension("json"), card_text).unwrap();
    if let Ok(m) = card::resolve(w.to_str().unwrap()) {
        if let Ok(model) = Model::for_card(&m, m.card.n_classes, 0, &candle_core::Device::Cpu) {
            let _ = model.load_weights(&m.weights, &[]);
        }
    }
}

fn card_for(weights: &[u8], card: &serde_json::Value) -> Vec<u8> {
    let mut c = card.clone();
    c["sha256"] = graft::util::sha256_hex(weights).into();
    c["input"] = serde_json::json!({"channels": 1, "height": 28, "width": 28});
    c["n_classes"] = 3.into();
    c.to_string().into_bytes()
}

fn image_target(name: &str, bytes: &[u8]) {
    let (_d, p) = tmp_file(name, bytes);
    let items = [Item { source: ItemSource::File(p), label: Some(0) }];
    let _ = decode_items(&items, InputSpec { channels: 3, height: 8, width: 8 }, true);
}

/// A softmax-probe run's saved classifier (`graft run`, tiny backbone): its directory's files.
struct Saved {
    _task: common::TinyTask,
    _runs: tempfile::TempDir,
    model: Vec<u8>,
    probe: Vec<u8>,
    card: Vec<u8>,
}

fn saved() -> &'static Saved {
    static S: OnceLock<Saved> = OnceLock::new();
    S.get_or_init(|| {
        let task = common::TinyTask::new(4, 2);
        let runs = tempfile::tempdir().unwrap();
        let mut r = graft::recipe::preset("linear-probe").unwrap();
        r.strategy = graft::recipe::Strategy::SoftmaxProbe;
        let rp = runs.path().join("recipe.json");
        std::fs::write(&rp, r.to_json()).unwrap();
        let out = common::graft()
            .args(["run", "--no-meta", "--json", "--data"])
            .arg(&task.data)
            .arg("--backbone")
            .arg(&task.backbone)
            .arg("--runs")
            .arg(runs.path())
            .arg("--recipe")
            .arg(&rp)
            .output()
            .unwrap();
        let rec = common::json_of(&out);
        let dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        // the seed itself loads and classifies, so the mutations start from a working classifier
        let c = graft::executor::classifier::Classifier::load(&dir, &candle_core::Device::Cpu).unwrap();
        assert!(matches!(&c.card.head, graft::executor::classifier::SavedHead::Probe { probe, .. } if *probe == graft::executor::probe::ProbeKind::Softmax));
        Saved {
            model: read("model.safetensors"),
            probe: read("probe.safetensors"),
            card: read("classifier.json"),
            _task: task,
            _runs: runs,
        }
    })
}

/// Load a run directory made of these files (the card's probe digest set to the probe file's,
/// where the card parses, so a mutated probe file gets past the digest) and classify two images.
fn classifier_target(card: &[u8], probe: &[u8]) {
    use graft::executor::classifier::Classifier;
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("model.safetensors"), &saved().model).unwrap();
    std::fs::write(d.path().join("probe.safetensors"), probe).unwrap();
    let card = match serde_json::from_slice::<serde_json::Value>(card) {
        Ok(mut v) if v["head"].is_object() => {
            v["head"]["file_sha256"] = graft::util::sha256_hex(probe).into();
            serde_json::to_vec(&v).unwrap()
        }
        _ => card.to_vec(),
    };
    std::fs::write(d.path().join("classifier.json"), card).unwrap();
    if let Ok(c) = Classifier::load(d.path(), &candle_core::Device::Cpu) {
        let spec = c.card.input;
        let n = 2;
        let pixels: Vec<u8> = (0..n * spec.channels * spec.height * spec.width).map(|i| (i * 31 % 251) as u8).collect();
        let set = graft::data::ImageSet::in_memory(pixels, vec![-1; n], spec);
        let _ = c.scores_tta(&set, true);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn classifier_card_mutated((e, c) in edits()) {
        let s = saved();
        let card = mutate(&s.card, &e, c);
        let r = no_panic(|| classifier_target(&card, &s.probe));
        prop_assert!(r.is_ok(), "panic {:?} on {}", r, String::from_utf8_lossy(&card));
    }

    #[test]
    fn classifier_probe_file_mutated((e, c) in edits()) {
        let s = saved();
        let probe = mutate(&s.probe, &e, c);
        let r = no_panic(|| classifier_target(&s.card, &probe));
        prop_assert!(r.is_ok(), "panic {:?}", r);
    }

    #[test]
    fn recipe_parser_random(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let s = String::from_utf8_lossy(&bytes).to_string();
        prop_assert!(no_panic(|| recipe_target(&s)).is_ok());
    }

    #[test]
    fn recipe_parser_mutated((e, c) in edits()) {
        let s = String::from_utf8_lossy(&mutate(seeds().recipe.as_bytes(), &e, c)).to_string();
        let r = no_panic(|| recipe_target(&s));
        prop_assert!(r.is_ok(), "panic {:?} on {}", r, s);
    }

    #[test]
    fn plan_parser_mutated((e, c) in edits()) {
        let s = String::from_utf8_lossy(&mutate(seeds().plan.as_bytes(), &e, c)).to_string();
        let r = no_panic(|| plan_target(&s));
        prop_assert!(r.is_ok(), "panic {:?} on {}", r, s);
    }

    #[test]
    fn checkpoint_loader_mutated_weights((e, c) in edits()) {
        let s = seeds();
        let w = mutate(&s.weights, &e, c);
        let card = card_for(&w, &s.card);
        let r = no_panic(|| checkpoint_target(&w, &card));
        prop_assert!(r.is_ok(), "panic {:?}", r);
    }

    #[test]
    fn checkpoint_loader_mutated_card((e, c) in edits()) {
        let s = seeds();
        let card = mutate(&card_for(&s.weights, &s.card), &e, c);
        let r = no_panic(|| checkpoint_target(&s.weights, &card));
        prop_assert!(r.is_ok(), "panic {:?} on {}", r, String::from_utf8_lossy(&card));
    }

    #[test]
    fn idx_reader((e, c) in edits(), random in proptest::collection::vec(any::<u8>(), 0..64)) {
        for bytes in [mutate(&seeds().idx, &e, c), random.clone()] {
            let (_d, p) = tmp_file("train-images-idx3-ubyte", &bytes);
            let r = no_panic(|| { let _ = graft::data::idx::parse_idx(&p); });
            prop_assert!(r.is_ok(), "panic {:?} on {:?}", r, bytes);
        }
    }

    #[test]
    fn npy_readers((e, c) in edits()) {
        let s = seeds();
        for (bytes, labels) in [(mutate(&s.npy_f, &e, c), false), (mutate(&s.npy_l, &e, c), true)] {
            let (_d, p) = tmp_file("x.npy", &bytes);
            let r = no_panic(|| {
                if labels { let _ = graft::data::npy::read_labels(&p); } else { let _ = graft::data::npy::read_features(&p); }
            });
            prop_assert!(r.is_ok(), "panic {:?} on {:?}", r, bytes);
        }
    }

    #[test]
    fn image_decode((e, c) in edits()) {
        let s = seeds();
        for (name, base) in [("a.png", &s.png), ("a.jpg", &s.jpg), ("a.bmp", &s.bmp), ("a.tif", &s.tiff_f32)] {
            let bytes = mutate(base, &e, c);
            let r = no_panic(|| image_target(name, &bytes));
            prop_assert!(r.is_ok(), "panic {:?} on {} {:?}", r, name, bytes);
        }
    }
}
