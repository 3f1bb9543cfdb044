#!/usr/bin/env python3
"""What imbalance costs, measured on paired draws: every run of an imbalanced task in the
meta-dataset (a `task_spec` with imbalance > 1, e.g. the imbalance and imbalance-finetune
plans) beside the run of the same configuration (backbone, input size, recipe name, seed) on the
balanced draw it came from (the same family, index, classes, shots, shift and draw seed,
imbalance 1). Prints the mean accuracies and the paired difference (with its standard error)
by configuration kind and by imbalance.
Usage: PYTHONPATH=... python3 scripts/imbalance-pairs.py [META_DIR] (default meta_dataset);
needs pyarrow."""
import sys
from collections import defaultdict
from pairstats import IMBALANCED, draw_of, load_rows, pair_summary, ratio

meta = sys.argv[1] if len(sys.argv) > 1 else "meta_dataset"
cols = ["task_spec", "backbone", "r_input_size", "r_name", "seed", "status", "test_accuracy", "mf_shots_min", "mf_shots_max", "strategy"]
bal, imb = {}, []
for r in load_rows(meta, cols, ["task_spec"]):
    if r["status"] != "ok" or not r.get("task_spec"):
        continue
    drawn = draw_of(r["task_spec"])
    if drawn is None:
        continue
    draw, R = drawn
    cfg = (r["backbone"], r.get("r_input_size"), r["r_name"], r["seed"])
    if R == 1.0:
        bal[(draw, cfg)] = r["test_accuracy"]
    else:
        imb.append((draw, cfg, R, r))


def kind(cfg, strategy):
    b, size, name, _ = cfg
    small = not b.startswith("efficientnet")
    where = f"{b.replace('-imagenet', '')}@{size}" if not small else "28-32 px zoo"
    return f"{strategy} on {where}"


groups = defaultdict(list)
for draw, cfg, R, r in imb:
    b = bal.get((draw, cfg))
    if b is None:
        continue
    effective = "balanced in fact (1 shot)" if ratio(r) < IMBALANCED else f"imbalance {R:g}"
    groups[("all", "")].append((b, r["test_accuracy"]))
    groups[("by imbalance", effective)].append((b, r["test_accuracy"]))
    groups[("by recipe", kind(cfg, r["strategy"]))].append((b, r["test_accuracy"]))
print(f"{len(imb)} imbalanced runs, {sum(len(v) for k, v in groups.items() if k[0] == 'all')} paired with a balanced run\n")
print("| group | | pairs | balanced | imbalanced | paired difference (SE) |")
print("|---|---|---|---|---|---|")
for (g, k), v in sorted(groups.items()):
    n, a, c, m, se = pair_summary(v)
    print(f"| {g} | {k} | {n} | {a:.3f} | {c:.3f} | {m:+.3f} ({se:.3f}) |")
