#!/usr/bin/env python3
"""The class-weights trial's table: scripts/imbalance-summary.py OUT [OUT...] pools the runs
that scripts/imbalance-trial.sh wrote under each OUT/out (one OUT per seed). Per task and arm:
the balanced test accuracy with class_weights none and balanced (the test split has as many
images in every class, so it is also the accuracy), and the accuracy on a test split with the
training split's class proportions (sum over classes of proportion x recall); then per arm the
means, the paired difference with its standard error, and how many tasks moved each way."""
import glob, json, os, sys


def scores(r):
    conf, tr = r["confusion"], r["dataset"]["train_per_class"]
    rec = [row[i] / sum(row) for i, row in enumerate(conf) if sum(row)]
    prior = sum(t / sum(tr) * row[i] / sum(row) for i, (row, t) in enumerate(zip(conf, tr)) if sum(row))
    return sum(rec) / len(rec), prior


rows = {}
for out in sys.argv[1:]:
    for p in sorted(glob.glob(os.path.join(out, "out", "*-none.json"))):
        q = p[: -len("none.json")] + "balanced.json"
        if not os.path.exists(q):
            continue
        task, kind = os.path.basename(p)[: -len("-none.json")].rsplit("-", 1)
        a, b = json.load(open(p)), json.load(open(q))
        rows.setdefault(kind, []).append((f"{task} (seed {a['seed']})", a["dataset"]["train_per_class"], scores(a), scores(b)))
print("| arm | task | training images a class | balanced acc, none | balanced | prior-weighted acc, none | balanced |")
print("|---|---|---|---|---|---|---|")
names = {"std": "standard recipe (Lite0 fine-tune, 224 px)", "soft": "softmax probe (Lite0, 224 px)", "svm": "SVM probe (Lite0, 224 px)"}
for kind in ["std", "soft", "svm"]:
    for t, tr, (ba, pa), (bb, pb) in rows.get(kind, []):
        print(f"| {kind} | {t} | {','.join(map(str, tr))} | {ba:.3f} | {bb:.3f} | {pa:.3f} | {pb:.3f} |")
print()
print("| arm | tasks | balanced acc, none -> balanced | paired (SE) | better / worse | prior-weighted, none -> balanced | paired (SE) | better / worse |")
print("|---|---|---|---|---|---|---|---|")
for kind in ["std", "soft", "svm"]:
    v = rows.get(kind, [])
    if not v:
        continue
    n = len(v)
    def summary(i):
        d = [x[3][i] - x[2][i] for x in v]
        m = sum(d) / n
        se = (sum((t - m) ** 2 for t in d) / max(n - 1, 1)) ** 0.5 / n ** 0.5
        before, after = sum(x[2][i] for x in v) / n, sum(x[3][i] for x in v) / n
        return f"{before:.3f} -> {after:.3f} | {m:+.3f} ({se:.3f}) | {sum(t > 0 for t in d)} / {sum(t < 0 for t in d)}"
    print(f"| {names[kind]} | {n} | {summary(0)} | {summary(1)} |")
