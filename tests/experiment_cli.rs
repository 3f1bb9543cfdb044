//! `graft experiment`: both reproductions run end to end on a tiny synthetic 10-class
//! ImageFolder (the real runs are in docs/experiments), write one row per run, resume without
//! redoing runs, and refuse bad input with exit 2.
mod common;
use common::{graft, make_folder};

fn rows(path: &std::path::Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["rows"].as_array().unwrap().clone()
}

#[test]
fn paine_and_yosinski_run_resume_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c10");
    make_folder(&data, &[("train", 14), ("test", 3)], 10, 32);
    let out = dir.path().join("docs");
    let runs = dir.path().join("runs");
    let paine = |pool: &str, seeds: &str| {
        graft()
            .args(["experiment", "paine", "--data"])
            .arg(&data)
            .args(["--seeds", seeds, "--labels", "2,4", "--unlabelled", pool, "--pretrain-epochs", "1", "--epochs", "1"])
            .args(["--test-per-class", "3", "--out"])
            .arg(&out)
            .arg("--runs")
            .arg(&runs)
            .output()
            .unwrap()
    };
    let o = paine("20", "0");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = rows(&out.join("paine.json"));
    // scratch / denoising-ae / simclr, each fine-tuned and probed, at 2 label counts
    assert_eq!(r.len(), 12);
    for arm in ["scratch", "denoising-ae", "simclr", "probe-scratch", "probe-denoising-ae", "probe-simclr"] {
        assert_eq!(r.iter().filter(|x| x["arm"] == arm).count(), 2, "{arm}");
    }
    for x in &r {
        let a = x["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
        assert_eq!(x["n_test"], 30);
        assert_eq!(x["n_train"].as_u64().unwrap(), 10 * x["x"].as_u64().unwrap(), "L labels per class");
    }
    let md = std::fs::read_to_string(out.join("paine.md")).unwrap();
    assert!(md.contains("| simclr |") && md.contains("labels per class = 4"), "{md}");
    assert!(std::fs::read_to_string(out.join("paine.svg")).unwrap().starts_with("<svg"));
    // resumes: nothing rerun, same rows
    let o = paine("20", "0");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("12 runs already done"));
    assert_eq!(rows(&out.join("paine.json")).len(), 12);
    // other settings into the same file: refused, file untouched
    let o = paine("30", "0");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("paine.json holds results for other settings"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(rows(&out.join("paine.json")).len(), 12);
    // adding a seed keeps the 12 rows and runs only the new seed's 12
    let o = paine("20", "0,1");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = rows(&out.join("paine.json"));
    assert_eq!(r.len(), 24);
    assert_eq!(r.iter().filter(|x| x["seed"] == 1).count(), 12);
    let md = std::fs::read_to_string(out.join("paine.md")).unwrap();
    assert!(md.contains("(n=2)"), "{md}");

    let o = graft()
        .args(["experiment", "yosinski", "--data"])
        .arg(&data)
        .args(["--seeds", "0", "--shots", "4", "--epochs", "1", "--test-per-class", "3", "--out"])
        .arg(&out)
        .arg("--runs")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = rows(&out.join("yosinski.json"));
    assert_eq!(r.len(), 2 + 4 * 4, "two bases, four arms at cuts 1..4 of resnet20's five groups");
    for arm in ["BnB", "BnB+", "AnB", "AnB+"] {
        let mut ns: Vec<u64> = r.iter().filter(|x| x["arm"] == arm).map(|x| x["x"].as_u64().unwrap()).collect();
        ns.sort();
        assert_eq!(ns, vec![1, 2, 3, 4], "{arm}");
    }

    // bad input
    let o = graft().args(["experiment", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("known: paine, yosinski"));
    let small = dir.path().join("c3");
    make_folder(&small, &[("train", 4), ("test", 2)], 3, 32);
    let o = graft().args(["experiment", "paine", "--data"]).arg(&small).arg("--out").arg(dir.path().join("o2")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--data"), "{}", String::from_utf8_lossy(&o.stderr));
}
