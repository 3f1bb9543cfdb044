//! `graft meta score`: how well a fitted meta-learner predicts logged runs, as `recommend`
//! states them (the accuracy, and its 80% interval widened far from the past tasks).
//!
//! Its use is prospective: score the shipped model on the runs of a sweep logged after it was
//! fitted, before refitting on them. Those runs are out of sample for the model, and where their
//! recipe kind ([`super::recipe_kind`]) was never logged on their backbone, they test the
//! surrogate's extrapolation, which `meta eval` (it scores logged configurations only) cannot.
use super::features::Obs;
use super::MetaModel;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Errors of a set of runs' predictions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreStats {
    pub runs: usize,
    pub tasks: usize,
    pub mean_predicted: f64,
    pub mean_actual: f64,
    /// Mean of predicted − actual: positive, the model promised more than the runs gave.
    pub bias: f64,
    pub rmse: f64,
    /// Share of runs whose accuracy fell inside the stated 80% interval.
    pub coverage80: f64,
}

/// One configuration (backbone key and recipe name) of the scored runs.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRow {
    pub config: String,
    /// On how many past tasks the model saw a recipe of this kind on this backbone (0: the
    /// predictions are extrapolations).
    pub kind_logged_tasks: usize,
    /// Whether the model saw this very configuration.
    pub config_seen: bool,
    #[serde(flatten)]
    pub stats: ScoreStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub model_created_at: String,
    pub model_meta_hash: String,
    /// Runs scored, and left out for a backbone the model does not know.
    pub runs: usize,
    pub unknown_backbone: usize,
    /// By whether the run's recipe kind was logged on its backbone, whether its configuration
    /// was, and whether its task was among the model's past tasks; `all` first.
    pub groups: Vec<(String, ScoreStats)>,
    /// Per configuration, the most runs first.
    pub configs: Vec<ScoreRow>,
}

/// A scored run: (task id, predicted, actual, inside the 80% interval).
type Scored = (String, f64, f64, bool);

/// A scored run with what the model knew of it.
struct Known {
    /// The model's support of the run's kind on its backbone ([`MetaModel::support`]).
    kind_tasks: usize,
    config_seen: bool,
    task_seen: bool,
    config: String,
    run: Scored,
}

fn stats(v: &[&Scored]) -> Option<ScoreStats> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let tasks: BTreeSet<&str> = v.iter().map(|s| s.0.as_str()).collect();
    Some(ScoreStats {
        runs: v.len(),
        tasks: tasks.len(),
        mean_predicted: v.iter().map(|s| s.1).sum::<f64>() / n,
        mean_actual: v.iter().map(|s| s.2).sum::<f64>() / n,
        bias: v.iter().map(|s| s.1 - s.2).sum::<f64>() / n,
        rmse: (v.iter().map(|s| (s.1 - s.2).powi(2)).sum::<f64>() / n).sqrt(),
        coverage80: v.iter().filter(|s| s.3).count() as f64 / n,
    })
}

/// Scores `model` on `obs`: each run predicted from its own logged task features, as
/// `recommend` would state it. The task-level shift ([`MetaModel::task_shift`]) reads the task's
/// features under the backbones among the scored runs, where `recommend` has them under every
/// candidate backbone.
pub fn score(model: &MetaModel, obs: &[Obs]) -> ScoreReport {
    let known: BTreeSet<&str> = model.encoder.backbones.iter().map(String::as_str).collect();
    let seen_tasks: BTreeSet<&str> = model.tasks.iter().map(|t| t.task_id.as_str()).collect();
    let seen_configs: BTreeSet<String> = model.portfolio.iter().map(|p| format!("{}::{}", p.backbone, p.r_name)).collect();
    let usable: Vec<&Obs> = obs.iter().filter(|o| known.contains(o.backbone.as_str())).collect();
    let keys: Vec<String> = usable.iter().map(|o| o.config()).collect();
    // each task's level shift, from its features under the backbones among the scored runs
    let mut runs_of: BTreeMap<&str, Vec<&Obs>> = BTreeMap::new();
    for o in &usable {
        runs_of.entry(o.task_id.as_str()).or_default().push(o);
    }
    let shifts: BTreeMap<&str, Option<(f64, f64, usize)>> = runs_of
        .iter()
        .map(|(t, rs)| (*t, model.task_shift(&super::features_by_backbone(rs.iter().map(|o| (o.backbone.as_str(), o.task.as_slice()))))))
        .collect();
    let mut scored: Vec<Known> = Vec::with_capacity(usable.len());
    for (chunk, kchunk) in usable.chunks(512).zip(keys.chunks(512)) {
        let items: Vec<(&str, &[Option<f64>], &super::RecipeSummary, &str)> =
            chunk.iter().zip(kchunk).map(|(o, k)| (o.backbone.as_str(), o.task.as_slice(), &o.recipe, k.as_str())).collect();
        for ((o, k), p) in chunk.iter().zip(kchunk).zip(model.predict_each(&items)) {
            let (m, v) = model.stated_latent(p, shifts[o.task_id.as_str()].as_ref(), &super::scale_group(&o.backbone, &o.recipe));
            let widen = model.widening(model.nearest_distance(&o.backbone, &o.task));
            let (mean, [lo, hi], _) = super::stated(model.scale(), m, v, widen);
            let inside = lo <= o.acc && o.acc <= hi;
            scored.push(Known {
                kind_tasks: model.support(&o.backbone, &o.recipe),
                config_seen: seen_configs.contains(k),
                task_seen: seen_tasks.contains(o.task_id.as_str()),
                config: k.clone(),
                run: (o.task_id.clone(), mean, o.acc, inside),
            });
        }
    }
    let group = |name: &str, f: &dyn Fn(&Known) -> bool| {
        let v: Vec<&Scored> = scored.iter().filter(|s| f(s)).map(|s| &s.run).collect();
        stats(&v).map(|st| (name.to_string(), st))
    };
    let groups = [
        group("all", &|_| true),
        group("kind logged on its backbone", &|s| s.kind_tasks > 0),
        group("kind never logged on its backbone", &|s| s.kind_tasks == 0),
        group("configuration seen", &|s| s.config_seen),
        group("configuration new", &|s| !s.config_seen),
        group("task seen", &|s| s.task_seen),
        group("task new", &|s| !s.task_seen),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut by: BTreeMap<&str, Vec<&Known>> = BTreeMap::new();
    for s in &scored {
        by.entry(s.config.as_str()).or_default().push(s);
    }
    let mut configs: Vec<ScoreRow> = by
        .into_iter()
        .filter_map(|(k, v)| {
            let st = stats(&v.iter().map(|s| &s.run).collect::<Vec<_>>())?;
            Some(ScoreRow { config: k.to_string(), kind_logged_tasks: v[0].kind_tasks, config_seen: v[0].config_seen, stats: st })
        })
        .collect();
    configs.sort_by(|a, b| b.stats.runs.cmp(&a.stats.runs).then(a.config.cmp(&b.config)));
    ScoreReport {
        model_created_at: model.created_at.clone(),
        model_meta_hash: model.meta_hash.clone(),
        runs: usable.len(),
        unknown_backbone: obs.len() - usable.len(),
        groups,
        configs,
    }
}

/// The report as Markdown: the groups, then the configurations.
pub fn markdown(r: &ScoreReport) -> String {
    let mut s = format!(
        "Meta-learner fitted {} (meta hash {}), scored on {} runs ({} left out: backbone unknown to it).\n\n",
        r.model_created_at,
        &r.model_meta_hash[..r.model_meta_hash.len().min(12)],
        r.runs,
        r.unknown_backbone
    );
    let line = |name: &str, st: &ScoreStats| {
        format!(
            "| {name} | {} | {} | {:.3} | {:.3} | {:+.3} | {:.3} | {:.1}% |\n",
            st.runs,
            st.tasks,
            st.mean_predicted,
            st.mean_actual,
            st.bias,
            st.rmse,
            100.0 * st.coverage80
        )
    };
    let head = "| runs | tasks | mean predicted | mean actual | bias | RMSE | inside 80% interval |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    s += &format!("| group {head}");
    for (n, st) in &r.groups {
        s += &line(n, st);
    }
    s += &format!("\n| configuration (logged tasks of its kind; * seen) {head}");
    for c in &r.configs {
        s += &line(&format!("{} ({}{})", c.config, c.kind_logged_tasks, if c.config_seen { " *" } else { "" }), &c.stats);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_the_errors_of_the_runs() {
        let a: Scored = ("t1".into(), 0.8, 0.6, false);
        let b: Scored = ("t1".into(), 0.5, 0.5, true);
        let c: Scored = ("t2".into(), 0.4, 0.6, true);
        let st = stats(&[&a, &b, &c]).unwrap();
        assert_eq!((st.runs, st.tasks), (3, 2));
        assert!((st.bias - 0.0).abs() < 1e-12, "{}", st.bias);
        assert!((st.rmse - (0.08f64 / 3.0).sqrt()).abs() < 1e-12, "{}", st.rmse);
        assert!((st.coverage80 - 2.0 / 3.0).abs() < 1e-12);
        assert!((st.mean_predicted - 1.7 / 3.0).abs() < 1e-12);
        assert!(stats(&[]).is_none());
    }
}
