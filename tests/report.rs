//! `graft report` renders a self-contained HTML report for a real small run: every section is
//! present and the numbers equal run.json.
mod common;
use common::{graft, json_of, make_folder, tiny_backbone};

#[test]
fn report_has_every_section_and_the_run_numbers() {
    let t = tempfile::tempdir().unwrap();
    let bb = tiny_backbone(t.path());
    let data = t.path().join("task");
    make_folder(&data, &[("train", 6), ("test", 5)], 3, 32);
    let run = |preset: &str| {
        json_of(
            &graft()
                .args(["run", "--preset", preset, "--epochs", "3", "--no-meta", "--json", "--runs"])
                .arg(t.path().join("runs"))
                .arg("--data")
                .arg(&data)
                .arg("--backbone")
                .arg(&bb)
                .output()
                .unwrap(),
        )
    };
    let a = run("finetune-all");
    let b = run("scratch");
    let out = t.path().join("rep");
    let o = graft()
        .arg("report")
        .arg(a["run_dir"].as_str().unwrap())
        .arg(b["run_dir"].as_str().unwrap())
        .arg("--out")
        .arg(&out)
        .arg("--inspect")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for id in ["summary", "compare", "curves", "groups", "transferability", "mistakes", "confusion"] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "section {id} missing");
    }
    assert_eq!(html.matches("http").count(), html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(), "no external resources");
    assert!(!html.contains("<script"), "no scripts needed");
    for j in [&a, &b] {
        assert!(html.contains(j["run_id"].as_str().unwrap()));
        assert!(html.contains(&format!("<td class=\"acc\">{:.4}</td>", j["test_accuracy"].as_f64().unwrap())));
        for g in j["groups"].as_array().unwrap() {
            assert!(html.contains(&format!("<td class=\"wc\">{:.6}</td>", g["weight_change"].as_f64().unwrap())), "{g}");
        }
    }
    // each run's misclassified test images as thumbnails, as many as predictions.csv has wrong
    // rows (up to 24), each captioned with its true and predicted class
    let mut shown = 0;
    for j in [&a, &b] {
        let csv = std::fs::read_to_string(std::path::Path::new(j["run_dir"].as_str().unwrap()).join("predictions.csv")).unwrap();
        let wrong: Vec<&str> = csv.lines().skip(1).filter(|l| l.ends_with(",0")).collect();
        shown += wrong.len().min(24);
        for l in wrong.iter().take(24) {
            let f: Vec<&str> = l.split(',').collect();
            assert!(html.contains(&format!("title=\"{}\"><figcaption>{} → <b>{}</b>", f[0], f[1], f[2])), "{l}");
        }
    }
    assert_eq!(html.matches("<img src=\"data:image/png;base64,").count(), shown);
    // two runs' curves overlaid, one polyline per run for train loss and accuracy
    assert!(html.matches("<polyline").count() >= 4);
    // confusion cells: 3x3 per run, counts summing to n_test
    let counts: Vec<usize> = html.split("data-count=\"").skip(1).map(|s| s.split('"').next().unwrap().parse().unwrap()).collect();
    assert_eq!(counts.len(), 18);
    assert_eq!(counts[..9].iter().sum::<usize>(), a["n_test"].as_u64().unwrap() as usize);
    // transferability for every group but the head
    assert!(html.contains("LogME by depth"));
    assert_eq!(html.matches("<tr><td class=\"l\">stage").count(), 3);
}

#[test]
fn report_of_a_missing_run_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let o = graft().arg("report").arg(t.path().join("nope")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("run.json"));
}

/// Every run writes each test image's true and predicted class (`predictions.csv`) and the 95%
/// interval of its accuracy; `graft compare` pairs runs on the same test images by McNemar's
/// test, and refuses to pair runs scored on different test sets.
#[test]
fn compare_pairs_runs_on_the_same_test_images() {
    let t = tempfile::tempdir().unwrap();
    let bb = tiny_backbone(t.path());
    let data = t.path().join("task");
    make_folder(&data, &[("train", 6), ("test", 7)], 3, 32);
    let other = t.path().join("other");
    make_folder(&other, &[("train", 6), ("test", 4)], 3, 32);
    let run = |preset: &str, data: &std::path::Path| {
        json_of(
            &graft()
                .args(["run", "--preset", preset, "--epochs", "3", "--no-meta", "--json", "--runs"])
                .arg(t.path().join("runs"))
                .arg("--data")
                .arg(data)
                .arg("--backbone")
                .arg(&bb)
                .output()
                .unwrap(),
        )
    };
    let runs = [run("linear-probe", &data), run("finetune-all", &data), run("scratch", &data), run("linear-probe", &other)];
    for j in &runs {
        let dir = std::path::Path::new(j["run_dir"].as_str().unwrap());
        let text = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("image,label,predicted,correct"));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let n = j["n_test"].as_u64().unwrap() as usize;
        assert_eq!(rows.len(), n);
        let classes: Vec<&str> = j["dataset"]["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let mut confusion = vec![vec![0u64; classes.len()]; classes.len()];
        for r in &rows {
            assert!(std::path::Path::new(r[0]).is_file(), "{} names the test image", r[0]);
            let (l, p) = (classes.iter().position(|c| *c == r[1]).unwrap(), classes.iter().position(|c| *c == r[2]).unwrap());
            assert_eq!(r[3], if l == p { "1" } else { "0" });
            confusion[l][p] += 1;
        }
        let want: Vec<Vec<u64>> = serde_json::from_value(j["confusion"].clone()).unwrap();
        assert_eq!(confusion, want, "the rows are the run's confusion matrix");
        let acc = j["test_accuracy"].as_f64().unwrap();
        let iv = j["test_accuracy_interval"].as_array().unwrap();
        let (lo, hi) = (iv[0].as_f64().unwrap(), iv[1].as_f64().unwrap());
        assert!(lo <= acc && acc <= hi && hi - lo > 0.1, "{lo} {acc} {hi} over {n} images");
    }
    let o = graft().arg("compare").args(runs.iter().map(|j| j["run_dir"].as_str().unwrap())).arg("--json").output().unwrap();
    let c = json_of(&o);
    let pairs = c["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6);
    let mut tested = 0;
    for p in pairs {
        let involves_other = p["a"] == runs[3]["run_id"] || p["b"] == runs[3]["run_id"];
        if involves_other {
            assert!(p["not_tested"].as_str().unwrap().contains("different test sets"), "{p}");
            assert!(p["p_value"].is_null());
            continue;
        }
        tested += 1;
        let n = p["n"].as_f64().unwrap();
        let d = p["accuracy_a"].as_f64().unwrap() - p["accuracy_b"].as_f64().unwrap();
        assert!((d - (p["only_a"].as_f64().unwrap() - p["only_b"].as_f64().unwrap()) / n).abs() < 1e-9, "{p}");
        let (pv, q) = (p["p_value"].as_f64().unwrap(), p["p_holm"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&pv) && q >= pv && q <= 1.0, "{p}");
        let a = runs.iter().find(|j| j["run_id"] == p["a"]).unwrap();
        assert_eq!(p["accuracy_a"].as_f64().unwrap(), a["test_accuracy"].as_f64().unwrap());
    }
    assert_eq!(tested, 3);
    // one run is not a comparison
    let o = graft().arg("compare").arg(runs[0]["run_dir"].as_str().unwrap()).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("RUNS"), "{}", String::from_utf8_lossy(&o.stderr));
}
