#!/usr/bin/env python3
"""How close can any recipe chooser get? The replicate oracle on the meta-dataset.

For every task and configuration (backbone x recipe) logged with seeds 0 and 1, pick the top-k
configurations by one seed's test accuracy and score them on the other seed (both ways): the
accuracy gap to the best configuration on the scoring seed is what even perfect knowledge of a
replicate achieves, the floor under `graft meta eval`'s gap@k. Also prints the seed-to-seed
noise of one run's accuracy.  Needs pandas and pyarrow.

    python3 scripts/replicate-oracle.py [meta_dataset]
"""
import json
import sys

import numpy as np
import pandas as pd

d = pd.read_parquet(sys.argv[1] if len(sys.argv) > 1 else "meta_dataset")
d = d[d.status == "ok"]
# a configuration: backbone and recipe without its seed
d["cfg"] = d.backbone + "::" + d.recipe.map(lambda r: json.dumps({k: v for k, v in json.loads(r).items() if k != "seed"}, sort_keys=True))
p = d.pivot_table(index=["task_id", "cfg"], columns="seed", values="test_accuracy", aggfunc="mean").dropna(subset=[0, 1])
ks = [1, 2, 3, 5]
shots = d.groupby("task_id").mf_shots_median.first()


def stratum(s):
    return "1-2" if s <= 2 else "3-10" if s <= 10 else "11-50" if s <= 50 else "51-200"


gaps = {k: [] for k in ks}
by_shots = {}
for tid, g in p.groupby(level=0):
    a, b = g[0].values, g[1].values
    for x, y in [(a, b), (b, a)]:
        order = np.argsort(-x)
        for k in ks:
            gaps[k].append(100 * (y.max() - y[order[:k]].max()))
        by_shots.setdefault(stratum(shots[tid]), []).append(100 * (y.max() - y[order[:3]].max()))
print(f"{p.index.get_level_values(0).nunique()} tasks, {len(p)} configurations with seeds 0 and 1")
print(f"one run's seed-to-seed standard deviation: {100 * np.std(p[0] - p[1]) / np.sqrt(2):.2f} accuracy points")
for k in ks:
    print(f"replicate oracle gap@{k}: {np.mean(gaps[k]):.2f} points (top {k} by one seed, scored on the other)")
for st in ["1-2", "3-10", "11-50", "51-200"]:
    if st in by_shots:
        print(f"  gap@3 for tasks with {st} shots per class: {np.mean(by_shots[st]):.2f} points ({len(by_shots[st]) // 2} tasks)")
