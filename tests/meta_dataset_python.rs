//! The committed meta-dataset reads as one table in pyarrow and pandas (other tools than graft),
//! with the same rows graft reads. `.ci/run` installs pyarrow and pandas from PyPI.
use std::path::PathBuf;
use std::process::Command;

#[test]
fn pandas_and_pyarrow_read_the_committed_meta_dataset() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("meta_dataset");
    let df = graft::metadataset::read_all(&dir).expect("graft reads the committed meta-dataset");
    let script = r#"
import sys, json, pandas as pd, pyarrow.dataset as ds
d = sys.argv[1]
t = ds.dataset(d, format="parquet", partitioning="hive").to_table()
p = pd.read_parquet(d)
need = ["run_id", "task_id", "family", "backbone", "strategy", "test_accuracy", "seed", "train_seconds", "schema_version", "recipe"]
print(json.dumps({"pyarrow_rows": t.num_rows, "pandas_rows": len(p), "unique_run_ids": int(p.run_id.nunique()),
    "missing": [c for c in need if c not in p.columns], "mf": sum(c.startswith("mf_") for c in p.columns),
    "r": sum(c.startswith("r_") for c in p.columns), "families": int(p.family.nunique())}))
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&dir).output().expect("python3 is needed (see .ci/run)");
    assert!(out.status.success(), "python failed (pip install pyarrow pandas): {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pyarrow_rows"], df.height());
    assert_eq!(v["pandas_rows"], df.height());
    assert_eq!(v["unique_run_ids"], df.height(), "duplicate rows");
    assert_eq!(v["missing"], serde_json::json!([]));
    assert!(v["mf"].as_u64().unwrap() >= 10 && v["r"].as_u64().unwrap() >= 10);
    assert!(v["families"].as_u64().unwrap() >= 6);
}
