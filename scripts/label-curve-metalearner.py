#!/usr/bin/env python3
"""The meta-learner's view of the same task pairs as scripts/label-curve-trial.sh: `graft recommend
--json --top 400` on the S-shot and the 2S-shot task of each pair, the stated accuracy of the
standard recipe (Lite0 fine-tuned at 224 px) and of the centroid probe on Lite0's last group,
and their difference against the measured gains. The 2S task's own features are used, so this
asks whether the meta-learner tracks what more labels did, given them. The forecast made before
labelling is recommend's `more_labels` on the S-shot task alone (its shots doubled, its measured
transferability held); it is scored against the same measured gains.
Usage: label-curve-metalearner.py OUT [GRAFT] [--forecast-only] (only the S-shot tasks: the
forecast, not the stated gain given both tasks)"""
import json, math, subprocess, sys

args = [a for a in sys.argv[1:] if a != "--forecast-only"]
forecast_only = "--forecast-only" in sys.argv
out = args[0]
graft = args[1] if len(args) > 1 else "target/release/graft"
STD = ("efficientnet-lite0-imagenet", "ft-r0-f0-lr0.0003-ld1-sp0-e30-b32")
PROBE = ("efficientnet-lite0-imagenet", "centroid-last")

def stated(task):
    d = json.loads(subprocess.run([graft, "recommend", "--json", "--forecast-more-labels", "--top", "400", "--data", task], capture_output=True, text=True, check=True).stdout)
    found = {}
    for e in [d] + d["alternatives"]:
        key = (e["backbone"], e["recipe"].get("name"))
        if e.get("input_size") == 224 and key in (STD, PROBE):
            found.setdefault(key, e["predicted_accuracy"])
            if e.get("more_labels"):
                found.setdefault(key + ("forecast",), e["more_labels"]["gain"])
    return found

rows = [json.loads(l) for l in open(f"{out}/rows.jsonl") if l.strip()]
res = []
for r in rows:
    a = stated(f"{out}/tasks/{r['key']}-a")
    b = {} if forecast_only else stated(f"{out}/tasks/{r['key']}-b")
    res.append((r, a, b))
    print(r["key"], {k[1]: (round(a.get(k, float("nan")), 3), round(b.get(k, float("nan")), 3), round(a.get(k + ("forecast",), float("nan")), 3)) for k in (STD, PROBE)}, flush=True)

def summary(name, key, measured, forecast=False):
    if forecast:
        fk = key + ("forecast",)
        pairs = [(a[fk], measured(r)) for r, a, b in res if fk in a and measured(r) is not None]
    else:
        pairs = [(b[key] - a[key], measured(r)) for r, a, b in res if key in a and key in b and measured(r) is not None]
    if len(pairs) < 2:
        print(f"{name}: {len(pairs)} pairs"); return
    n = len(pairs); p = [x for x, _ in pairs]; t = [y for _, y in pairs]
    mp, mt = sum(p) / n, sum(t) / n
    sp = math.sqrt(sum((x - mp) ** 2 for x in p) / (n - 1)); st = math.sqrt(sum((y - mt) ** 2 for y in t) / (n - 1))
    r = sum((x - mp) * (y - mt) for x, y in pairs) / (n - 1) / (sp * st) if sp > 0 and st > 0 else float("nan")
    print(f"{name} over {n} pairs: stated gain {mp:+.3f}, measured {mt:+.3f}; mean absolute error {sum(abs(x - y) for x, y in pairs) / n:.3f}; correlation {r:.2f}")

summary("Standard recipe", STD, lambda r: None if r["ft_a"] is None else r["ft_b"] - r["ft_a"])
summary("Centroid probe (last group)", PROBE, lambda r: r["probe_b"] - r["probe_a"])
summary("Standard recipe, forecast from the S-shot task", STD, lambda r: None if r["ft_a"] is None else r["ft_b"] - r["ft_a"], True)
summary("Centroid probe (last group), forecast from the S-shot task", PROBE, lambda r: r["probe_b"] - r["probe_a"], True)
