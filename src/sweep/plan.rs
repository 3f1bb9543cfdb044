//! A sweep plan (TOML): data families, how tasks are drawn from them, backbones, and the recipe
//! space. Expanding a plan is deterministic: the same plan gives the same tasks, recipes and
//! run keys on every machine and in every shard.
use crate::data::task::TaskSpec;
use crate::data::Shift;
use crate::error::{GraftError, Result};
use crate::recipe::{self, Action, GroupSpec, Recipe, Strategy};
use crate::util::{rng_for, sha256_hex};
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Names the sweep's part files (`source=sweep-<name>/`).
    pub name: String,
    /// Recipe seeds: every (task, backbone, recipe) runs once per seed.
    pub seeds: Vec<u64>,
    /// Seed of the task draws and the recipe sample.
    #[serde(default)]
    pub plan_seed: u64,
    #[serde(rename = "family")]
    pub families: Vec<FamilySpec>,
    pub tasks: TaskSpace,
    #[serde(rename = "backbone")]
    pub backbones: Vec<BackboneSpec>,
    pub recipes: RecipeSpace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilySpec {
    pub name: String,
    /// ImageFolder tree with train/ and test/, or a folder of IDX files (relative paths are
    /// taken from the plan file's folder).
    pub data: PathBuf,
    /// Tasks drawn from this family.
    pub tasks: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpace {
    /// Inclusive range of the class count (capped at the family's).
    pub n_classes: [usize; 2],
    /// Shots per class to choose from (capped by the family's smallest class).
    pub shots: Vec<usize>,
    /// Unlabelled pool sizes to choose from.
    #[serde(default = "zero_vec")]
    pub unlabelled: Vec<usize>,
    /// Shift kinds to choose from (repeat a kind to weight it): none, rotate, noise, blur,
    /// invert, contrast, downscale.
    #[serde(default = "none_vec")]
    pub shifts: Vec<String>,
    pub test_per_class: usize,
    #[serde(default)]
    pub val_per_class: usize,
    /// Class imbalances to choose from (`graft task --imbalance`: the classes get from the
    /// drawn shots down to shots / imbalance training images); default [1], balanced tasks,
    /// which draws nothing, so plans without the field draw the tasks they always did.
    #[serde(default = "one_vec")]
    pub imbalance: Vec<f64>,
}

fn zero_vec() -> Vec<usize> {
    vec![0]
}
fn none_vec() -> Vec<String> {
    vec!["none".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    pub name: String,
    #[serde(default)]
    pub input_size: Option<usize>,
    /// Run only these recipe ids on this backbone (default: every recipe of the portfolio).
    #[serde(default)]
    pub only: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeSpace {
    /// `grid` (every combination of `space`), `random:N` (N distinct combinations, drawn once
    /// from the plan seed and used for every task), or `none` (only `include` and `arm`).
    pub sample: String,
    /// Presets always included (baselines), e.g. ["linear-probe", "finetune-all"].
    #[serde(default)]
    pub include: Vec<String>,
    /// Explicit recipes (one-factor arms around a baseline), each a [`Arm`].
    #[serde(default, rename = "arm")]
    pub arms: Vec<Arm>,
    #[serde(default)]
    pub space: Option<Space>,
    /// Class weighting of every recipe, chosen per task from its training images a class as
    /// `graft recommend --class-weights` does (`auto`: `balanced` from 1.5x imbalance, which is
    /// what the advisor recommends). Unset, recipes carry none (and keep the run ids they had).
    #[serde(default)]
    pub class_weights: Option<crate::recipe::ClassWeightPolicy>,
}

/// One explicit recipe of the portfolio; unset fields take the finetune-all preset's values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub strategy: Strategy,
    #[serde(default = "last")]
    pub probe_depth: String,
    #[serde(default)]
    pub reinit_top: usize,
    #[serde(default)]
    pub freeze_bottom: usize,
    #[serde(default = "lr_default")]
    pub lr: f64,
    #[serde(default = "one_f")]
    pub layer_decay: f64,
    #[serde(default)]
    pub l2sp: f64,
    #[serde(default = "epochs_default")]
    pub epochs: usize,
    #[serde(default = "batch_default")]
    pub batch_size: usize,
    /// Unsupervised pretraining first (a method of `graft pretrain`), on the task's unlabelled
    /// pool (its training images when the pool is empty).
    #[serde(default)]
    pub pretrain: Option<String>,
    #[serde(default = "pretrain_epochs_default")]
    pub pretrain_epochs: usize,
}

fn pretrain_epochs_default() -> usize {
    3
}

fn last() -> String {
    "last".into()
}
fn lr_default() -> f64 {
    1e-3
}
fn one_f() -> f64 {
    1.0
}
fn epochs_default() -> usize {
    10
}
fn batch_default() -> usize {
    32
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    /// finetune, linear-probe, softmax-probe
    pub strategy: Vec<Strategy>,
    /// Probed group for probes: first, mid or last (the penultimate group).
    #[serde(default = "last_vec")]
    pub probe_depth: Vec<String>,
    /// Top body groups re-initialised (capped at the backbone's body groups).
    #[serde(default = "zero_vec")]
    pub reinit_top: Vec<usize>,
    /// Bottom body groups frozen (capped so frozen and re-initialised groups do not overlap).
    #[serde(default = "zero_vec")]
    pub freeze_bottom: Vec<usize>,
    pub lr: Vec<f64>,
    #[serde(default = "one_vec")]
    pub layer_decay: Vec<f64>,
    #[serde(default = "zero_f_vec")]
    pub l2sp: Vec<f64>,
    pub epochs: Vec<usize>,
    #[serde(default = "batch_vec")]
    pub batch_size: Vec<usize>,
}

fn last_vec() -> Vec<String> {
    vec!["last".into()]
}
fn one_vec() -> Vec<f64> {
    vec![1.0]
}
fn zero_f_vec() -> Vec<f64> {
    vec![0.0]
}
fn batch_vec() -> Vec<usize> {
    vec![32]
}

/// A recipe independent of the backbone; instantiated per backbone by [`Template::recipe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// A short readable id, e.g. `ft-r1-f0-lr0.003-ld1-sp0-e10` or `preset-linear-probe`.
    pub id: String,
    pub preset: Option<String>,
    pub strategy: Strategy,
    pub probe_depth: String,
    pub reinit_top: usize,
    pub freeze_bottom: usize,
    pub lr: f64,
    pub layer_decay: f64,
    pub l2sp: f64,
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(default)]
    pub pretrain: Option<(String, usize)>,
}

/// How a probe's recipe id starts: `svm`, `softmax` or `centroid` (`finetune` has none).
fn probe_prefix(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::LinearProbe => "svm",
        Strategy::SoftmaxProbe => "softmax",
        Strategy::CentroidProbe => "centroid",
        Strategy::Finetune => "ft",
    }
}

impl Template {
    /// A probe (`linear-probe`, `softmax-probe` or `centroid-probe`) at depth `first`, `mid` or
    /// `last`.
    pub fn probe(strategy: Strategy, depth: &str) -> Template {
        Template {
            id: format!("{}-{depth}", probe_prefix(strategy)),
            preset: None,
            strategy,
            probe_depth: depth.into(),
            reinit_top: 0,
            freeze_bottom: 0,
            lr: 0.0,
            layer_decay: 1.0,
            l2sp: 0.0,
            epochs: 0,
            batch_size: 0,
            pretrain: None,
        }
    }

    /// Fine-tuning with the top `r` body groups re-initialised and the bottom `f` frozen.
    #[allow(clippy::too_many_arguments)]
    pub fn finetune(r: usize, f: usize, lr: f64, ld: f64, sp: f64, e: usize, b: usize) -> Template {
        Template {
            id: format!("ft-r{r}-f{f}-lr{lr}-ld{ld}-sp{sp}-e{e}-b{b}"),
            preset: None,
            strategy: Strategy::Finetune,
            probe_depth: String::new(),
            reinit_top: r,
            freeze_bottom: f,
            lr,
            layer_decay: ld,
            l2sp: sp,
            epochs: e,
            batch_size: b,
            pretrain: None,
        }
    }

    /// The recipe for a backbone whose groups are `groups` (the last is the head).
    pub fn recipe(&self, groups: &[String], seed: u64) -> Result<Recipe> {
        if let Some(p) = &self.preset {
            let mut r = recipe::preset(p)?;
            r.seed = seed;
            if r.strategy == Strategy::Finetune {
                r.epochs = self.epochs;
            }
            return Ok(r);
        }
        let body = groups.len() - 1;
        let strategy = self.strategy;
        let mut r = recipe::preset(if strategy == Strategy::Finetune { "finetune-all" } else { "linear-probe" })?;
        r.name = Some(self.id.clone());
        r.strategy = strategy;
        r.seed = seed;
        if strategy == Strategy::Finetune {
            r.lr = self.lr;
            r.layer_decay = self.layer_decay;
            r.l2sp = self.l2sp;
            r.epochs = self.epochs;
            r.batch_size = self.batch_size;
            let reinit = self.reinit_top.min(body);
            let freeze = self.freeze_bottom.min(body - reinit);
            for (i, g) in groups[..body].iter().enumerate() {
                let action = if i < freeze {
                    Action::Freeze
                } else if i >= body - reinit {
                    Action::Reinit
                } else {
                    continue;
                };
                r.groups.insert(g.clone(), GroupSpec { action: Some(action), lr: None });
            }
        } else {
            let g = match self.probe_depth.as_str() {
                "first" => 0,
                "mid" => (body - 1) / 2,
                "last" => body - 1,
                d => return Err(GraftError::Usage(format!("plan: unknown probe_depth `{d}`; known: first, mid, last"))),
            };
            r.probe.group = Some(groups[g].clone());
        }
        if let Some((m, e)) = &self.pretrain {
            let mut p = crate::pretrain::PretrainSpec::new(crate::pretrain::Method::parse(m)?);
            p.epochs = *e;
            r.pretrain = Some(p);
        }
        Ok(r)
    }
}

/// One task of the plan: where it comes from and how it was drawn.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskDraw {
    pub family: String,
    pub index: usize,
    pub spec: TaskSpec,
    pub shift: Shift,
    /// Seed of the class/shot draw and of the shift's noise.
    pub seed: u64,
}

impl TaskDraw {
    /// Stable id: hash of the draw (family, spec, shift, seed).
    pub fn task_id(&self) -> String {
        let j = serde_json::to_string(self).expect("serialises");
        format!("{}-{}", self.family, &sha256_hex(j.as_bytes())[..12])
    }
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GraftError::Usage(format!("--plan {}: cannot read the sweep plan: {e}", path.display())))?;
        Plan::parse(&text, path)
    }

    /// Parse and validate a plan's text; `path` names it in messages, and relative family
    /// folders are taken from its folder.
    pub fn parse(text: &str, path: &Path) -> Result<Plan> {
        let mut p: Plan =
            toml::from_str(text).map_err(|e| GraftError::Usage(format!("{}: not a valid sweep plan: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in &mut p.families {
            if f.data.is_relative() && !f.data.exists() {
                f.data = base.join(&f.data);
            }
        }
        p.validate(path)?;
        Ok(p)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, msg: String| Err(GraftError::Usage(format!("{}: `{field}` {msg}", path.display())));
        // names that end up in file and folder names must stay inside --out
        let named = |field: &str, v: &str| {
            crate::util::check_path_component(field, v).map_err(|e| GraftError::Usage(format!("{}: {e}", path.display())))
        };
        named("name", &self.name)?;
        for f in &self.families {
            named("family.name", &f.name)?;
        }
        if self.seeds.is_empty() {
            return bad("seeds", "must list at least one seed".into());
        }
        if self.families.is_empty() {
            return bad("family", "must list at least one [[family]]".into());
        }
        if self.backbones.is_empty() {
            return bad("backbone", "must list at least one [[backbone]]".into());
        }
        let t = &self.tasks;
        if t.n_classes[0] < 2 || t.n_classes[0] > t.n_classes[1] {
            return bad("tasks.n_classes", format!("must be [lo, hi] with 2 <= lo <= hi, got {:?}", t.n_classes));
        }
        if t.shots.is_empty() || t.shots.contains(&0) {
            return bad("tasks.shots", "must list shot counts >= 1".into());
        }
        for s in &t.shifts {
            Shift::of_kind(s, 0.0).map_err(|e| GraftError::Usage(format!("{}: `tasks.shifts`: {e}", path.display())))?;
        }
        if t.test_per_class == 0 {
            return bad("tasks.test_per_class", "must be at least 1".into());
        }
        if t.imbalance.is_empty() || t.imbalance.iter().any(|v| !(v.is_finite() && *v >= 1.0)) {
            return bad("tasks.imbalance", format!("must list imbalances >= 1 (most over fewest images a class), got {:?}", t.imbalance));
        }
        if let Some(s) = &self.recipes.space {
            if s.lr.is_empty() || s.epochs.is_empty() || s.strategy.is_empty() {
                return bad("recipes.space", "needs at least one strategy, lr and epochs value".into());
            }
        }
        self.templates().map(|_| ())
    }

    /// The recipe portfolio: the included presets, then the grid or a seeded sample of it.
    pub fn templates(&self) -> Result<Vec<Template>> {
        let empty = Space {
            strategy: vec![],
            probe_depth: vec![],
            reinit_top: vec![],
            freeze_bottom: vec![],
            lr: vec![],
            layer_decay: vec![],
            l2sp: vec![],
            epochs: vec![10],
            batch_size: vec![],
        };
        let s = self.recipes.space.as_ref().unwrap_or(&empty);
        let mut grid = Vec::new();
        for &strat in &s.strategy {
            if strat == Strategy::Finetune {
                for &r in &s.reinit_top {
                    for &f in &s.freeze_bottom {
                        for &lr in &s.lr {
                            for &ld in &s.layer_decay {
                                for &sp in &s.l2sp {
                                    for &e in &s.epochs {
                                        for &b in &s.batch_size {
                                            grid.push(Template::finetune(r, f, lr, ld, sp, e, b));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } else {
                for d in &s.probe_depth {
                    grid.push(Template::probe(strat, d));
                }
            }
        }
        let chosen: Vec<Template> = if self.recipes.sample == "none" {
            Vec::new()
        } else if self.recipes.space.is_none() {
            return Err(GraftError::Usage(format!("sweep plan: recipes.sample `{}` needs a [recipes.space] table", self.recipes.sample)));
        } else if self.recipes.sample == "grid" {
            grid
        } else if let Some(n) = self.recipes.sample.strip_prefix("random:") {
            let n: usize = n
                .parse()
                .map_err(|_| GraftError::Usage(format!("sweep plan: recipes.sample `{}`: N must be a number", self.recipes.sample)))?;
            let mut rng = rng_for(self.plan_seed, "recipe-sample");
            let mut g = grid;
            use rand::seq::SliceRandom;
            g.shuffle(&mut rng);
            g.truncate(n);
            g.sort_by(|a, b| a.id.cmp(&b.id));
            g
        } else {
            return Err(GraftError::Usage(format!(
                "sweep plan: recipes.sample must be `grid` or `random:N`, got `{}`",
                self.recipes.sample
            )));
        };
        let mut out = Vec::new();
        let e0 = s.epochs.first().copied().unwrap_or(10);
        for p in &self.recipes.include {
            let strategy = recipe::preset(p)?.strategy;
            out.push(Template {
                id: format!("preset-{p}"),
                preset: Some(p.clone()),
                strategy,
                probe_depth: String::new(),
                reinit_top: 0,
                freeze_bottom: 0,
                lr: 0.0,
                layer_decay: 1.0,
                l2sp: 0.0,
                epochs: e0,
                batch_size: 32,
                pretrain: None,
            });
        }
        for a in &self.recipes.arms {
            if let Some(m) = &a.pretrain {
                crate::pretrain::Method::parse(m).map_err(|e| GraftError::Usage(format!("sweep plan: recipes.arm.pretrain: {e}")))?;
            }
            let pt = a.pretrain.as_ref().map(|m| format!("-pt-{m}{}", a.pretrain_epochs)).unwrap_or_default();
            let id = match a.strategy {
                Strategy::Finetune => format!(
                    "ft-r{}-f{}-lr{}-ld{}-sp{}-e{}-b{}{pt}",
                    a.reinit_top, a.freeze_bottom, a.lr, a.layer_decay, a.l2sp, a.epochs, a.batch_size
                ),
                probe => format!("{}-{}{pt}", probe_prefix(probe), a.probe_depth),
            };
            out.push(Template {
                id,
                preset: None,
                strategy: a.strategy,
                probe_depth: a.probe_depth.clone(),
                reinit_top: a.reinit_top,
                freeze_bottom: a.freeze_bottom,
                lr: a.lr,
                layer_decay: a.layer_decay,
                l2sp: a.l2sp,
                epochs: a.epochs,
                batch_size: a.batch_size,
                pretrain: a.pretrain.clone().map(|m| (m, a.pretrain_epochs)),
            });
        }
        out.extend(chosen);
        let mut seen = std::collections::HashSet::new();
        if let Some(t) = out.iter().find(|t| !seen.insert(t.id.clone())) {
            return Err(GraftError::Usage(format!("sweep plan: recipe `{}` is listed twice", t.id)));
        }
        if out.is_empty() {
            return Err(GraftError::Usage("sweep plan: the recipe portfolio is empty (add include, arm or a sampled space)".into()));
        }
        for b in &self.backbones {
            for id in b.only.iter().flatten() {
                if !out.iter().any(|t| &t.id == id) {
                    return Err(GraftError::Usage(format!(
                        "sweep plan: backbone {}: `only` names recipe `{id}`, which is not in the portfolio ({})",
                        b.name,
                        out.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Template `tpl`'s recipe for a backbone of `groups` on task `draw`: with
    /// `recipes.class_weights` set, weighted as that policy chooses for the draw's training
    /// images a class (the draw's spec gives them exactly: its shots are already capped to what
    /// every class has).
    pub fn recipe_for(&self, tpl: &Template, groups: &[String], seed: u64, draw: &TaskDraw) -> Result<Recipe> {
        let mut r = tpl.recipe(groups, seed)?;
        if let Some(policy) = self.recipes.class_weights {
            r.class_weights = policy.choose(&draw.spec.shots_per_class(draw.spec.n_classes, draw.seed));
        }
        Ok(r)
    }

    /// Draw the `index`-th task of a family whose classes have `class_sizes` training images.
    pub fn draw_task(&self, fam: &FamilySpec, class_sizes: &[usize], index: usize) -> Result<TaskDraw> {
        let t = &self.tasks;
        let mut rng = rng_for(self.plan_seed, &format!("task-{}-{index}", fam.name));
        let k_max = t.n_classes[1].min(class_sizes.len());
        let k_min = t.n_classes[0].min(k_max);
        if k_max < 2 {
            return Err(GraftError::Data(format!("family {}: fewer than two classes in {}", fam.name, fam.data.display())));
        }
        let n_classes = rng.random_range(k_min..=k_max);
        let smallest = *class_sizes.iter().min().unwrap_or(&0);
        let room = smallest.saturating_sub(t.val_per_class);
        if room == 0 {
            return Err(GraftError::Data(format!("family {}: a class has no training images left after validation", fam.name)));
        }
        let shots = (*t.shots.choose(&mut rng).expect("non-empty")).min(room);
        let unlabelled = *t.unlabelled.choose(&mut rng).expect("non-empty");
        let kind = t.shifts.choose(&mut rng).expect("non-empty").clone();
        let u: f32 = rng.random();
        let shift = Shift::of_kind(&kind, u)?;
        let seed: u64 = rng.random::<u32>() as u64;
        // drawn last, and only from a list of several, so balanced plans draw what they did
        let imbalance = if t.imbalance.len() > 1 { *t.imbalance.choose(&mut rng).expect("non-empty") } else { t.imbalance[0] };
        let mut spec = TaskSpec {
            classes: None,
            n_classes,
            shots,
            unlabelled,
            test_per_class: Some(t.test_per_class),
            val_per_class: t.val_per_class,
            imbalance,
        };
        // an imbalance that leaves every class as many images (one shot: each class keeps at
        // least one) draws the balanced task itself, with its task id, so its runs are not
        // logged twice under two ids
        let counts = spec.shots_per_class(n_classes, seed);
        if counts.iter().min() == counts.iter().max() {
            spec.imbalance = 1.0;
        }
        Ok(TaskDraw { family: fam.name.clone(), index, spec, shift, seed })
    }
}

/// The run key of one (task, backbone, recipe): a hash of what determines the result, so a
/// resumed or re-sharded sweep recognises a finished run.
pub fn run_key(task: &TaskDraw, backbone: &BackboneSpec, recipe_json: &str) -> String {
    let k = format!("{}|{}|{:?}|{}", task.task_id(), backbone.name, backbone.input_size, recipe_json);
    format!("sw-{}", &sha256_hex(k.as_bytes())[..20])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::ClassWeights;

    fn plan_with(extra: &str) -> Result<Plan> {
        plan_with_recipes(extra, "")
    }

    /// A small plan with `extra` in its `[tasks]` and `recipes_extra` in its `[recipes]`.
    fn plan_with_recipes(extra: &str, recipes_extra: &str) -> Result<Plan> {
        let text = format!(
            "name = \"t\"\nseeds = [0]\nplan_seed = 5\n[[family]]\nname = \"f\"\ndata = \"d\"\ntasks = 4\n[tasks]\nn_classes = [2, 5]\nshots = [10, 20]\ntest_per_class = 5\n{extra}\n[[backbone]]\nname = \"resnet8-cifar10\"\n[recipes]\nsample = \"none\"\ninclude = [\"linear-probe\"]\n{recipes_extra}\n"
        );
        Plan::parse(&text, Path::new("plan.toml"))
    }

    /// A plan without `tasks.imbalance` draws the tasks (and task ids) it always did, as one
    /// with `imbalance = [1.0]`; a list of several draws among them, into the task's spec; a
    /// value under 1 is refused, naming the field.
    #[test]
    fn imbalanced_task_draws() {
        let sizes = [100; 6];
        let (a, b) = (plan_with("").unwrap(), plan_with("imbalance = [1.0]").unwrap());
        let fam = &a.families[0];
        for i in 0..4 {
            let (x, y) = (a.draw_task(fam, &sizes, i).unwrap(), b.draw_task(fam, &sizes, i).unwrap());
            assert_eq!(x.task_id(), y.task_id());
            assert_eq!(x.spec.imbalance, 1.0);
        }
        let c = plan_with("imbalance = [1.0, 10.0]").unwrap();
        let got: Vec<f64> = (0..16).map(|i| c.draw_task(fam, &sizes, i).unwrap().spec.imbalance).collect();
        assert!(got.contains(&1.0) && got.contains(&10.0), "{got:?}");
        let e = plan_with("imbalance = [0.5]").unwrap_err().to_string();
        assert!(e.contains("tasks.imbalance"), "{e}");
        // one shot a class leaves every class one image: the balanced draw itself, same id
        let one = |extra: &str| {
            let mut p = plan_with(extra).unwrap();
            p.tasks.shots = vec![1];
            p
        };
        let (o, p) = (one(""), one("imbalance = [10.0]"));
        for i in 0..4 {
            let (x, y) = (o.draw_task(fam, &sizes, i).unwrap(), p.draw_task(fam, &sizes, i).unwrap());
            assert_eq!((x.task_id(), y.spec.imbalance), (y.task_id(), 1.0));
        }
    }

    /// `recipes.class_weights = "auto"` weights the recipes of the imbalanced draws only, so a
    /// balanced draw's recipe (and run id) is the one a plan without it has; unset, nothing is
    /// weighted; an unknown policy is refused, naming the field.
    #[test]
    fn class_weights_follow_each_draws_imbalance() {
        let sizes = [100; 6];
        let groups: Vec<String> = ["g0", "g1", "head"].iter().map(|s| s.to_string()).collect();
        let plain = plan_with("imbalance = [1.0, 10.0]").unwrap();
        let auto = plan_with_recipes("imbalance = [1.0, 10.0]", "class_weights = \"auto\"").unwrap();
        let fam = &plain.families[0];
        let tpl = Template::probe(Strategy::LinearProbe, "last");
        let (mut balanced, mut weighted) = (0, 0);
        for i in 0..16 {
            let d = auto.draw_task(fam, &sizes, i).unwrap();
            assert_eq!(d, plain.draw_task(fam, &sizes, i).unwrap(), "the policy does not change the draws");
            let (a, p) = (auto.recipe_for(&tpl, &groups, 0, &d).unwrap(), plain.recipe_for(&tpl, &groups, 0, &d).unwrap());
            assert_eq!(p.class_weights, ClassWeights::None);
            if d.spec.imbalance == 1.0 {
                assert_eq!(a.to_json(), p.to_json());
                balanced += 1;
            } else {
                assert_eq!(a.class_weights, ClassWeights::Balanced, "{:?}", d.spec);
                weighted += 1;
            }
        }
        assert!(balanced > 0 && weighted > 0, "{balanced} {weighted}");
        let e = plan_with_recipes("", "class_weights = \"sometimes\"").unwrap_err().to_string();
        assert!(e.contains("class_weights") && e.contains("plan.toml"), "{e}");
    }

    #[test]
    fn probe_ids_name_the_classifier() {
        for (s, id) in
            [(Strategy::LinearProbe, "svm-last"), (Strategy::SoftmaxProbe, "softmax-last"), (Strategy::CentroidProbe, "centroid-last")]
        {
            let t = Template::probe(s, "last");
            assert_eq!((t.id.as_str(), t.strategy), (id, s));
        }
    }
}
