#!/usr/bin/env python3
"""How well the nearest-centroid probe's cross-validated accuracy on a task's training images
(the `mf_ncprobe_last` meta-feature, measured by `inspect` before any run) foretells the same
probe's accuracy on the task's test split (`centroid-last` runs), on balanced and on
imbalanced tasks. Both are at the last layer group, with the same backbone and input size. The
test splits are balanced, so the test accuracy is also a balanced accuracy.
Prints, by class balance and backbone: the tasks, the mean CV figure, the mean test accuracy,
the mean difference (CV - test, with its standard error) and the correlation.
Usage: PYTHONPATH=... python3 scripts/centroid-cv-check.py [META_DIR] (default meta_dataset);
needs pyarrow."""
import math, sys
from collections import defaultdict
from pairstats import IMBALANCED, load_rows, pair_summary, ratio

meta = sys.argv[1] if len(sys.argv) > 1 else "meta_dataset"
cols = ["task_id", "task_spec", "backbone", "r_input_size", "r_name", "status", "test_accuracy", "mf_ncprobe_last", "mf_shots_min", "mf_shots_max"]
groups = defaultdict(list)
seen = set()
for r in load_rows(meta, cols, cols):
    if r["status"] != "ok" or r["r_name"] != "centroid-last" or r["mf_ncprobe_last"] is None:
        continue
    key = (r["task_id"], r["backbone"], r["r_input_size"])
    if key in seen:  # one run per task and backbone (the CV figure is per task, not per seed)
        continue
    seen.add(key)
    q = ratio(r)
    balance = "balanced" if q < IMBALANCED else ("imbalanced 3x" if q < 5 else "imbalanced 10x")
    small = not r["backbone"].startswith("efficientnet")
    where = "28-32 px zoo" if small else f"{r['backbone'].replace('-imagenet', '')}@{r['r_input_size']}"
    for g in [(balance, "all"), (balance, where)]:
        groups[g].append((r["mf_ncprobe_last"], r["test_accuracy"]))

print("| class balance | backbone | tasks | CV (training images) | test | CV - test (SE) | r |")
print("|---|---|---|---|---|---|---|")
for (b, w), v in sorted(groups.items()):
    # pairs (test, CV): the difference is CV - test
    n, te, cv, m, se = pair_summary([(y, x) for x, y in v])
    sx = math.sqrt(sum((x - cv) ** 2 for x, _ in v))
    sy = math.sqrt(sum((y - te) ** 2 for _, y in v))
    r = sum((x - cv) * (y - te) for x, y in v) / (sx * sy) if sx > 0 and sy > 0 else float("nan")
    print(f"| {b} | {w} | {n} | {cv:.3f} | {te:.3f} | {m:+.3f} ({se:.3f}) | {r:.2f} |")
