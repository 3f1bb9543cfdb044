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
    for id in ["summary", "curves", "groups", "transferability", "confusion"] {
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
