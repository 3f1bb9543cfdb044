//! Slow tier: `graft meta fit` on the committed meta-dataset (every part under
//! `meta_dataset/`) gives the shipped meta-learner `models/meta-learner.json` back, every field but `created_at` equal. The shipped
//! file was fitted before the renovation of issue 21, so this pins the meta-learner's whole fit
//! (features, GP, kNN, the cross-validated choice, the portfolio) to what it was. About 4 min on
//! 2 cores; run with `cargo test --release --locked --test meta_fit -- --ignored`.
mod common;
use common::graft;
use std::path::Path;

#[test]
#[ignore = "slow tier: refits the shipped meta-learner (about 4 min)"]
fn refitting_the_committed_meta_dataset_gives_the_shipped_meta_learner() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ml.json");
    let o = graft().args(["meta", "fit", "--meta"]).arg(root.join("meta_dataset")).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (mut fitted, mut shipped) = (read(&out), read(&root.join("models/meta-learner.json")));
    assert_ne!(fitted["created_at"], serde_json::Value::Null);
    for v in [&mut fitted, &mut shipped] {
        v.as_object_mut().unwrap().remove("created_at");
    }
    let differing: Vec<&String> =
        shipped.as_object().unwrap().iter().filter(|(k, v)| fitted.get(k.as_str()) != Some(v)).map(|(k, _)| k).collect();
    assert!(differing.is_empty(), "refitted meta-learner differs from the shipped one in {differing:?}");
    assert_eq!(fitted, shipped);
}
