#!/usr/bin/env python3
"""How a task's meta-features move when it is drawn imbalanced: for every imbalanced task in the
meta-dataset (a `task_spec` with imbalance > 1 and, in fact, 1.5x or more between its largest and
smallest class), the centroid probe on EfficientNet-Lite0 at 224 px (one run per task: its
`mf_*` meta-features are the task's, measured on its training images before the run) beside the
same run on the balanced draw it came from. Prints, by imbalance, the mean difference
(imbalanced - balanced) of the test accuracy and of each meta-feature, its standard error, and
in how many pairs the imbalanced draw scored higher.
Usage: PYTHONPATH=... python3 scripts/imbalance-features.py [META_DIR] (default meta_dataset);
needs pyarrow."""
import sys
from pairstats import IMBALANCED, draw_of, load_rows, mean_se, ratio

meta = sys.argv[1] if len(sys.argv) > 1 else "meta_dataset"
FEATURES = ["test_accuracy", "mf_leep", "mf_nce", "mf_hscore_last", "mf_logme_last", "mf_ncprobe_last", "mf_pixel_separability"]
cols = ["task_spec", "backbone", "r_input_size", "r_name", "seed", "status", "mf_shots_min", "mf_shots_max"] + FEATURES
bal, imb = {}, []
for r in load_rows(meta, cols, ["task_spec"]):
    if r["status"] != "ok" or not r.get("task_spec") or r["r_name"] != "centroid-last":
        continue
    if not (r["backbone"].startswith("efficientnet-lite0") and r.get("r_input_size") == 224):
        continue
    drawn = draw_of(r["task_spec"])
    if drawn is None:
        continue
    draw, R = drawn
    key = (draw, r["backbone"], r["seed"])
    if R == 1.0:
        bal[key] = r
    elif ratio(r) >= IMBALANCED:
        imb.append((key, R, r))

print("| imbalance | feature | pairs | imbalanced - balanced (SE) | higher on the imbalanced draw |")
print("|---|---|---|---|---|")
for R0 in sorted({R for _, R, _ in imb}):
    for feat in FEATURES:
        d = []
        for key, R, r in imb:
            b = bal.get(key)
            if R == R0 and b is not None and r.get(feat) is not None and b.get(feat) is not None:
                d.append(r[feat] - b[feat])
        if not d:
            continue
        n = len(d)
        m, se = mean_se(d)
        print(f"| {R0:g}x | {feat} | {n} | {m:+.3f} ({se:.3f}) | {sum(x > 0 for x in d)} / {n} |")
