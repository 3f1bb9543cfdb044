#!/usr/bin/env bash
# Back-to-back throughput and peak memory of `graft bench` and benches/pytorch_reference.py on
# the same architecture, batch and thread count, alternating the two REPEATS times (default 2)
# so that machine drift hits both. Prints one JSON line per run, then the ratios of the means.
#   benches/vs_pytorch.sh efficientnet-lite0 32 5     # arch, batch, steps
# Needs a release build (target/release/graft) and PyTorch (PYTHONPATH may point at it).
set -euo pipefail
arch=${1:?arch}; batch=${2:-32}; steps=${3:-5}; repeats=${REPEATS:-2}; threads=${THREADS:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$here/target/release/graft" ] || { echo "benches/vs_pytorch.sh: no target/release/graft; run cargo build --release --locked first" >&2; exit 2; }
python3 -c "import torch" 2>/dev/null || { echo "benches/vs_pytorch.sh: PyTorch is not importable; pip install torch, or point PYTHONPATH at it" >&2; exit 2; }
out=$(mktemp)
for _ in $(seq "$repeats"); do
  "$here/target/release/graft" --threads "$threads" bench --arch "$arch" --batch "$batch" --steps "$steps" --json \
    | python3 -c 'import json, sys; print("graft", json.dumps(json.load(sys.stdin)))' | tee -a "$out"
  python3 "$here/benches/pytorch_reference.py" --arch "$arch" --batch "$batch" --steps "$steps" --threads "$threads" | sed 's/^/torch /' | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = {"graft": [], "torch": []}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    rows[who].append(json.loads(js))
mean = lambda who, k: sum(r[k] for r in rows[who]) / len(rows[who])
for k in ["train_images_per_second", "extract_images_per_second"]:
    g, t = mean("graft", k), mean("torch", k)
    print(f"{k}: graft {g:.2f}, pytorch {t:.2f}, graft/pytorch {g / t:.2f}x")
g, t = mean("graft", "peak_rss_bytes"), mean("torch", "peak_rss_bytes")
print(f"peak memory: graft {g / 1e9:.2f} GB, pytorch {t / 1e9:.2f} GB, graft/pytorch {g / t:.2f}x")
PY
rm -f "$out"
