#!/usr/bin/env bash
# Does the label curve foretell what twice the labels buy? For each family, shot count S and
# seed: a task of 5 classes with S training images a class (`graft task`), and one of the same
# classes with 2S. The curve (`graft inspect --json`'s label_curve under EfficientNet-Lite0 at
# 224 px, measured on the S-shot training images alone) predicts the nearest-centroid probe's
# gain from S to 2S; the truth is that probe's test accuracy on the 2S task less on the S task
# (40 test images a class). With FT_SHOTS set (e.g. "5"), the standard recipe (Lite0 fine-tuned
# at 224 px, 30 epochs) also runs on both tasks at those shot counts, for the fine-tune's gain.
# Rows in OUT/rows.jsonl; scripts/label-curve-summary.py OUT prints the table.
# Usage: scripts/label-curve-trial.sh [OUT] (default /tmp/graft-label-curve); GRAFT, FAMILIES,
# SHOTS (default "5 10"), SEEDS (default "1 2"), FT_SHOTS (default none). Needs
# scripts/fetch-data.sh. About 15 s a pair for the probe, 2 minutes a pair with the fine-tune.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/graft-label-curve}
GRAFT=${GRAFT:-target/release/graft}
FAMILIES=${FAMILIES:-"cifar10 fashion-mnist animal-mnist emoji mnist digits"}
SHOTS=${SHOTS:-"5 10"}
SEEDS=${SEEDS:-"1 2"}
FT_SHOTS=${FT_SHOTS:-}
mkdir -p "$OUT/tasks" "$OUT/out"
probe='{"backbone": "efficientnet-lite0-imagenet", "name": "centroid-top", "schema_version": 1, "strategy": "centroid-probe", "probe": {"group": "top"}}'
std='{"augment": {"crop_padding": 16, "hflip": true}, "backbone": "efficientnet-lite0-imagenet", "batch_size": 32, "default_action": "finetune", "epochs": 30, "input_size": 224, "lr": 0.0003, "name": "standard-lite0-224", "optimizer": {"kind": "adamw", "weight_decay": 0.01}, "schedule": {"kind": "cosine", "warmup_epochs": 1.0}, "schema_version": 1, "seed": 0, "strategy": "finetune"}'
echo "$probe" > "$OUT/probe.json"; echo "$std" > "$OUT/std.json"
acc() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['test_accuracy'])" "$1"; }
for f in $FAMILIES; do for s in $SHOTS; do for seed in $SEEDS; do
  key="$f-$s-$seed"
  grep -q "\"key\": \"$key\"" "$OUT/rows.jsonl" 2>/dev/null && continue
  A="$OUT/tasks/$key-a"; B="$OUT/tasks/$key-b"
  if [ ! -d "$A" ]; then
    "$GRAFT" task --data "data/$f" --n-classes 5 --shots "$s" --test-per-class 40 --seed "$seed" --out "$A.tmp" 2> "$OUT/out/$key.err" && mv "$A.tmp" "$A" \
      || { echo "$key: no task ($(tail -1 "$OUT/out/$key.err"))"; rm -rf "$A.tmp"; continue; }
  fi
  classes=$(ls "$A/train" | paste -sd,)
  if [ ! -d "$B" ]; then
    "$GRAFT" task --data "data/$f" --classes "$classes" --shots $((2 * s)) --test-per-class 40 --seed "$seed" --out "$B.tmp" 2>> "$OUT/out/$key.err" && mv "$B.tmp" "$B" \
      || { echo "$key: no 2x task ($(tail -1 "$OUT/out/$key.err"))"; rm -rf "$B.tmp"; continue; }
  fi
  "$GRAFT" inspect --data "$A" --backbone efficientnet-lite0-imagenet --json > "$OUT/out/$key-inspect.json" 2>> "$OUT/out/$key.err"
  for t in a b; do
    "$GRAFT" run --seed "$seed" --data "$OUT/tasks/$key-$t" --recipe "$OUT/probe.json" --no-meta --no-save-model --runs "$OUT/runs" --json > "$OUT/out/$key-probe-$t.json" 2>> "$OUT/out/$key.err"
  done
  ft_a=null; ft_b=null
  if [[ " $FT_SHOTS " == *" $s "* ]]; then
    for t in a b; do
      "$GRAFT" run --seed "$seed" --data "$OUT/tasks/$key-$t" --recipe "$OUT/std.json" --no-meta --no-save-model --runs "$OUT/runs" --json > "$OUT/out/$key-std-$t.json" 2>> "$OUT/out/$key.err"
    done
    ft_a=$(acc "$OUT/out/$key-std-a.json"); ft_b=$(acc "$OUT/out/$key-std-b.json")
  fi
  python3 - "$OUT/out/$key-inspect.json" "$key" "$f" "$s" "$seed" "$(acc "$OUT/out/$key-probe-a.json")" "$(acc "$OUT/out/$key-probe-b.json")" "$ft_a" "$ft_b" >> "$OUT/rows.jsonl" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["label_curve"]
k, f, s, seed, pa, pb, fa, fb = sys.argv[2:10]
num = lambda v: None if v == "null" else float(v)
print(json.dumps({"key": k, "family": f, "shots": int(s), "seed": int(seed), "predicted_gain": c["gain_from_twice"] if c else None,
                  "curve_at_shots": c["at_shots"] if c else None, "probe_a": num(pa), "probe_b": num(pb), "ft_a": num(fa), "ft_b": num(fb)}))
PY
  echo "$key done"
done; done; done
python3 scripts/label-curve-summary.py "$OUT"
