#!/usr/bin/env bash
# Transfer from every backbone in the zoo to one task with finetune-all and linear-probe;
# prints a Markdown table (backbone x preset -> test accuracy, training s, wall s).
# Usage: scripts/zoo-transfer-table.sh TASK_DIR [SEED]
# ImageNet backbones run at --input-size ${GRAFT_IMAGENET_SIZE:-96}.
set -euo pipefail
cd "$(dirname "$0")/.."
G=${GRAFT:-./target/release/graft}
task=$1; seed=${2:-0}
echo "| backbone | source | preset | test accuracy | train s | wall s |"
echo "| --- | --- | --- | --- | --- | --- |"
"$G" models --json | python3 -c "import json,sys; [print(m['name'], m['source'], m['input']['height']) for m in json.load(sys.stdin)['models']]" |
while read -r name source h; do
  extra=()
  if [ "$source" = "imagenet-1k" ]; then extra=(--input-size "${GRAFT_IMAGENET_SIZE:-96}"); source="$source @${GRAFT_IMAGENET_SIZE:-96}px"; fi
  for p in finetune-all linear-probe; do
    t0=$(date +%s.%N)
    j=$("$G" run --data "$task" --preset "$p" --backbone "$name" --seed "$seed" --json --no-meta "${extra[@]}" 2>/dev/null)
    t1=$(date +%s.%N)
    python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"| $name | $source | $p | {j['test_accuracy']:.4f} | {j['train_seconds']:.1f} | {float(sys.argv[3])-float(sys.argv[2]):.1f} |\")" "$j" "$t0" "$t1"
  done
done
