#!/usr/bin/env bash
# Class weights on imbalanced tasks: one task from each of 8 meta-dataset families, 5 classes
# with 40 down to 4 training images (`graft task --imbalance 10`, long-tailed CIFAR's
# exponential profile, classes in a seeded order) and 20 test images a class, each run with
# `class_weights` none and balanced, for three recipes: the standard recipe (EfficientNet-Lite0
# fine-tuned at 224 px, 30 epochs, AdamW 3e-4), the linear-SVM probe and the softmax probe on
# Lite0's penultimate features at 224 px. Prints, per task and arm, the balanced test
# accuracy (the test split is balanced, so it is also the accuracy) and the accuracy the run
# would have on a test split with the training split's class proportions (sum over classes of
# proportion x recall), then the means and the paired differences (scripts/imbalance-summary.py,
# which pools several OUTs, e.g. one per seed). Families without 5 classes of 40 training
# images (textures, tuxpaint, oxygen-icons) are skipped, with the reason.
# Usage: scripts/imbalance-trial.sh [OUT] (default /tmp/graft-imbalance); GRAFT names the binary
# (default target/release/graft); SEED (default 1) is the task draws' and the runs' seed;
# FAMILIES overrides the family list. About 35 minutes on 2 cores (a standard-recipe run takes
# about 3 minutes, a probe seconds). Needs scripts/fetch-data.sh.
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
python3 scripts/imbalance-summary.py "$OUT"
