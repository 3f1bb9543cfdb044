#!/usr/bin/env bash
# Class weights on imbalanced tasks: one task from each of 8 meta-dataset families, 5 classes
# with 40 down to 4 training images (`graft task --imbalance 10`, long-tailed CIFAR's
# exponential profile, classes in a seeded order) and 20 test images a class, each run with
# `class_weights` none and balanced, for three recipes: the standard recipe (EfficientNet-Lite0
# fine-tuned at 224 px, 30 epochs, AdamW 3e-4), the linear-SVM probe and the softmax probe on
# Lite0's penultimate features at 224 px. Prints, per task and arm, the balanced test
# accuracy (the test split is balanced, so it is also the accuracy) and the accuracy the run
# would have on a test split with the training split's class proportions (sum over classes of
# proportion x recall), then the means and the paired differences.
# Usage: scripts/imbalance-trial.sh [OUT] (default /tmp/graft-imbalance); GRAFT names the binary
# (default target/release/graft); SEED (default 1) is the task draws' and the runs' seed;
# FAMILIES overrides the family list. About 40 minutes on 2 cores. Needs scripts/fetch-data.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/graft-imbalance}
GRAFT=${GRAFT:-target/release/graft}
SEED=${SEED:-1}
FAMILIES=${FAMILIES:-"cifar10 fashion-mnist animal-mnist digits emoji textures tuxpaint oxygen-icons"}
mkdir -p "$OUT/tasks" "$OUT/out" "$OUT/recipes"
std='{"augment": {"crop_padding": 16, "hflip": true}, "backbone": "efficientnet-lite0-imagenet", "batch_size": 32, "default_action": "finetune", "epochs": 30, "input_size": 224, "lr": 0.0003, "name": "standard-lite0-224", "optimizer": {"kind": "adamw", "weight_decay": 0.01}, "schedule": {"kind": "cosine", "warmup_epochs": 1.0}, "schema_version": 1, "seed": 0, "strategy": "finetune"}'
svm='{"backbone": "efficientnet-lite0-imagenet", "input_size": 224, "name": "svm-lite0-224", "schema_version": 1, "strategy": "linear-probe"}'
soft='{"backbone": "efficientnet-lite0-imagenet", "input_size": 224, "name": "softmax-lite0-224", "schema_version": 1, "strategy": "softmax-probe"}'
for kind in std svm soft; do
  body=${!kind}
  echo "$body" > "$OUT/recipes/$kind-none.json"
  echo "${body%\}}, \"class_weights\": \"balanced\"}" > "$OUT/recipes/$kind-balanced.json"
done
for f in $FAMILIES; do
  T="$OUT/tasks/$f"
  if [ ! -d "$T" ]; then
    "$GRAFT" task --data "data/$f" --n-classes 5 --shots 40 --imbalance 10 --test-per-class 20 --seed "$SEED" --out "$T.tmp" 2> "$OUT/out/task-$f.err" \
      && mv "$T.tmp" "$T" || { echo "$f: no task ($(tail -1 "$OUT/out/task-$f.err"))"; rm -rf "$T.tmp"; continue; }
  fi
  for kind in svm soft std; do
    for w in none balanced; do
      o="$OUT/out/$f-$kind-$w.json"
      [ -s "$o" ] || { "$GRAFT" run --seed "$SEED" --data "$T" --recipe "$OUT/recipes/$kind-$w.json" --no-meta --runs "$OUT/runs" --json > "$o.tmp" 2> "$OUT/out/$f-$kind-$w.err" && mv "$o.tmp" "$o"; }
    done
  done
done
python3 - "$OUT/out" $FAMILIES <<'PY'
import json, os, sys
d, fams = sys.argv[1], sys.argv[2:]
def scores(r):
    conf = r["confusion"]; tr = r["dataset"]["train_per_class"]
    rec = [row[i] / sum(row) for i, row in enumerate(conf) if sum(row)]
    prior = sum(t / sum(tr) * row[i] / sum(row) for i, (row, t) in enumerate(zip(conf, tr)) if sum(row))
    return sum(rec) / len(rec), prior
print(f"{'task':14s} {'arm':5s} {'train a class':18s} {'balanced acc none':>18s} {'balanced':>9s} {'prior-weighted none':>20s} {'balanced':>9s}")
diffs = {}
for kind in ["std", "svm", "soft"]:
    for f in fams:
        p = [f"{d}/{f}-{kind}-{w}.json" for w in ("none", "balanced")]
        if not all(os.path.exists(x) for x in p): continue
        a, b = (json.load(open(x)) for x in p)
        (ba, pa), (bb, pb) = scores(a), scores(b)
        diffs.setdefault(kind, []).append((ba, bb, pa, pb))
        tr = ",".join(str(x) for x in a["dataset"]["train_per_class"])
        print(f"{f:14s} {kind:5s} {tr:18s} {ba:18.3f} {bb:9.3f} {pa:20.3f} {pb:9.3f}")
print()
for kind, v in diffs.items():
    n = len(v); m = [sum(x[i] for x in v) / n for i in range(4)]
    db = [x[1] - x[0] for x in v]; dp = [x[3] - x[2] for x in v]
    sd = lambda z: (sum((t - sum(z) / n) ** 2 for t in z) / max(n - 1, 1)) ** 0.5 / n ** 0.5
    print(f"{kind:5s} n={n}: balanced acc {m[0]:.3f} -> {m[1]:.3f} (paired {sum(db)/n:+.3f} +- {sd(db):.3f}, better on {sum(x > 0 for x in db)}, worse on {sum(x < 0 for x in db)}); "
          f"prior-weighted {m[2]:.3f} -> {m[3]:.3f} (paired {sum(dp)/n:+.3f} +- {sd(dp):.3f})")
PY
