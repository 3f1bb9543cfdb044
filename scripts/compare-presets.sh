#!/usr/bin/env bash
# Run the three presets on one task with one backbone and print a Markdown table
# (preset, test accuracy, training seconds, total wall seconds).
# Usage: scripts/compare-presets.sh TASK_DIR [BACKBONE] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
G=${GRAFT:-./target/release/graft}
task=$1; bb=${2:-resnet8-cifar10}; seed=${3:-0}
echo "| preset | backbone | test accuracy | n_test | train s | wall s |"
echo "| --- | --- | --- | --- | --- | --- |"
for p in linear-probe finetune-all scratch; do
  t0=$(date +%s.%N)
  j=$("$G" run --data "$task" --preset "$p" --backbone "$bb" --seed "$seed" --json ${GRAFT_META_ARGS:---no-meta})
  t1=$(date +%s.%N)
  python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"| $p | $bb | {j['test_accuracy']:.4f} | {j['n_test']} | {j['train_seconds']:.1f} | {float(sys.argv[3])-float(sys.argv[2]):.1f} |\")" "$j" "$t0" "$t1"
done
