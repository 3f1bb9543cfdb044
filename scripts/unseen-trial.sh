#!/usr/bin/env bash
# graft tried as a new user would: six small tasks from sources the meta-dataset never saw, each
# run with `graft auto` (budget 1) and with the standard ImageNet recipe (EfficientNet-Lite0,
# every layer fine-tuned at 224 px, 30 epochs, AdamW at 3e-4, random crop + flip). Prints one
# line a task and the means. The tasks (built once, seeded, into OUT/tasks):
#   emoji-twitter  npm emoji-datasource-twitter@16.0.0 (CC-BY 4.0): 5 categories, 8 train / 12 test
#   emoji-apple    npm emoji-datasource-apple@16.0.0: 6 categories, 5 / 12 (research use only)
#   icons-faenza   Debian faenza-icon-theme (GPL-3): 96 px icons, 6 contexts, 10 / 12
#   letters        9 capital letters rendered in 8 font families to train, 12 others to test
#   digits         10 digits, 6 font families to train, 10 others to test (fonts: Debian
#                  fonts-dejavu-core, -liberation, -freefont-ttf, -urw-base35, -crosextra-*,
#                  -linuxlibertine, -cantarell, -ebgaramond, -comic-neue, -roboto-unhinted, -lato)
#   photos         examples/photos (in the repository)
# None of these sources is a family of meta_dataset/; do not add their runs to it (the runs go
# to OUT/meta). Usage: scripts/unseen-trial.sh [OUT] (default /tmp/graft-unseen); GRAFT names the
# binary (default target/release/graft); AUTO_ARGS adds flags to `graft auto` (e.g.
# AUTO_ARGS="--budget 3", or "--model M" for another meta-learner; use a fresh OUT for each, as
# results already in OUT/out are kept); SEED (default 0) is both runs' seed, `auto --seed` and
# `run --seed`. About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/graft-unseen}
GRAFT=${GRAFT:-target/release/graft}
SEED=${SEED:-0}
mkdir -p "$OUT/src" "$OUT/out"
if ! python3 -c "import PIL" 2>/dev/null; then
  pip install --quiet --target "$OUT/pylib" pillow >/dev/null
  export PYTHONPATH="$OUT/pylib${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ ! -d "$OUT/tasks" ]; then
  (cd "$OUT/src" && apt-get download faenza-icon-theme fonts-dejavu-core fonts-liberation fonts-freefont-ttf \
     fonts-urw-base35 fonts-crosextra-caladea fonts-crosextra-carlito fonts-linuxlibertine fonts-cantarell \
     fonts-ebgaramond fonts-comic-neue fonts-roboto-unhinted fonts-lato >/dev/null 2>&1 \
   && for d in *.deb; do dpkg -x "$d" x; done \
   && npm pack emoji-datasource-twitter@16.0.0 emoji-datasource-apple@16.0.0 >/dev/null 2>&1 \
   && for n in emoji-datasource-twitter emoji-datasource-apple; do mkdir -p $n && tar xzf $n-16.0.0.tgz -C $n; done)
  python3 - "$OUT/src" "$OUT/tasks.tmp" <<'PY'
import glob, json, os, random, sys
from PIL import Image, ImageDraw, ImageFont
S, OUT = sys.argv[1], sys.argv[2]
rng = random.Random(20261206)
def save(task, split, cls, i, im):
    d = os.path.join(OUT, task, split, cls); os.makedirs(d, exist_ok=True)
    im.save(os.path.join(d, f"{i:03d}.png"))
def on_white(p):
    im = Image.open(p).convert("RGBA"); bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, im).convert("RGB")
def emoji(task, pkg, set_, ncls, ntr, nte):
    src = f"{S}/{pkg}/package"; by = {}
    for e in json.load(open(f"{src}/emoji.json")):
        p = f"{src}/img/{set_}/64/{e['image']}"
        if not e.get(f"has_img_{set_}", True) or not os.path.exists(p) or e["category"] == "Component": continue
        by.setdefault(e["category"].replace(" & ", "-and-").replace(" ", "-").lower(), []).append(p)
    for c in rng.sample(sorted(by), ncls):
        for i, p in enumerate(rng.sample(sorted(by[c]), ntr + nte)): save(task, "train" if i < ntr else "test", c, i, on_white(p))
def icons(task, ncls, ntr, nte):
    base = f"{S}/x/usr/share/icons/Faenza"; seen = set(); by = {}
    for ctx in sorted(os.listdir(base)):
        d = f"{base}/{ctx}/96"
        if not os.path.isdir(d): continue
        for f in sorted(os.listdir(d)):
            p = os.path.realpath(f"{d}/{f}")
            if not p.endswith(".png") or p in seen or not os.path.exists(p): continue
            seen.add(p); by.setdefault(ctx, []).append(p)
    for c in rng.sample(sorted(c for c in by if len(by[c]) >= ntr + nte), ncls):
        for i, p in enumerate(rng.sample(by[c], ntr + nte)): save(task, "train" if i < ntr else "test", c, i, on_white(p))
def glyphs(task, chars, ntr_fonts, nte_fonts):
    fonts = sorted(glob.glob(f"{S}/x/**/*.ttf", recursive=True) + glob.glob(f"{S}/x/**/*.otf", recursive=True))
    fams = {}
    for f in fonts: fams.setdefault(os.path.basename(os.path.dirname(f)) + "/" + os.path.basename(f).split("-")[0].split("_")[0], []).append(f)
    keys = sorted(fams); rng.shuffle(keys)
    pick = lambda ks: [rng.choice(fams[k]) for k in ks]
    for split, fs in (("train", pick(keys[:ntr_fonts])), ("test", pick(keys[ntr_fonts:ntr_fonts + nte_fonts]))):
        for i, f in enumerate(fs):
            for ch in chars:
                im = Image.new("L", (64, 64), 255); dr = ImageDraw.Draw(im)
                try: font = ImageFont.truetype(f, rng.randint(36, 48))
                except OSError: continue
                if font.getmask(ch).getbbox() is None: continue
                dr.text((32 + rng.randint(-4, 4), 32 + rng.randint(-4, 4)), ch, font=font, fill=0, anchor="mm")
                save(task, split, f"char-{ch}", i, im)
emoji("emoji-twitter", "emoji-datasource-twitter", "twitter", 5, 8, 12)
emoji("emoji-apple", "emoji-datasource-apple", "apple", 6, 5, 12)
icons("icons-faenza", 6, 10, 12)
glyphs("letters", "ABDEGKMRS", 8, 12)
glyphs("digits", "0123456789", 6, 10)
PY
  mv "$OUT/tasks.tmp" "$OUT/tasks"
fi
# the standard recipe: EfficientNet-Lite0 at 224 px, every group fine-tuned, AdamW 3e-4, 30 epochs
cat > "$OUT/standard.json" <<'JSON'
{"augment": {"color_jitter": 0.0, "crop_padding": 16, "gaussian_blur": 0.0, "gaussian_noise": 0.0, "hflip": true, "random_resized_crop": null}, "backbone": "efficientnet-lite0-imagenet", "batch_size": 32, "default_action": "finetune", "early_stopping": null, "epochs": 30, "groups": {}, "input_size": 224, "l2sp": 0.0, "label_smoothing": 0.0, "layer_decay": 1.0, "lr": 0.0003, "name": "standard-lite0-224", "optimizer": {"beta1": 0.9, "beta2": 0.999, "decay_1d": false, "eps": 1e-08, "kind": "adamw", "momentum": 0.9, "nesterov": false, "weight_decay": 0.01}, "schedule": {"kind": "cosine", "warmup_epochs": 1.0}, "schema_version": 1, "seed": 0, "strategy": "finetune", "val_fraction": 0.0}
JSON
for t in emoji-twitter emoji-apple icons-faenza letters digits photos; do
  D="$OUT/tasks/$t"; [ "$t" = photos ] && D=examples/photos
  [ -s "$OUT/out/auto-$t.json" ] || "$GRAFT" auto ${AUTO_ARGS:-} --seed "$SEED" --data "$D" --meta "$OUT/meta" --runs "$OUT/runs" --json > "$OUT/out/auto-$t.json" 2> "$OUT/out/auto-$t.err"
  [ -s "$OUT/out/std-$t.json" ] || "$GRAFT" run --seed "$SEED" --data "$D" --recipe "$OUT/standard.json" --no-meta --runs "$OUT/runs" --json > "$OUT/out/std-$t.json" 2> "$OUT/out/std-$t.err"
done
python3 - "$OUT/out" <<'PY'
import json, sys
d = sys.argv[1]; rows = []
for t in ["emoji-twitter", "emoji-apple", "icons-faenza", "letters", "digits", "photos"]:
    a, s = json.load(open(f"{d}/auto-{t}.json")), json.load(open(f"{d}/std-{t}.json"))
    # the answer: the run auto names best (with --budget K > 1, the refit of the winner)
    r = next((x for x in a["runs"] if x["run_id"] == a.get("best_run_id")), a["runs"][-1])
    pick = f"{r['backbone_ref']} {r['recipe']['strategy']}"  # "predicted" is the first pick's
    rows.append((r["test_accuracy"], s["test_accuracy"]))
    print(f"{t:14s} train {r['n_train']:3d} test {r['n_test']:3d}  auto: {pick:48s} predicted {a['predicted_accuracy']:.3f} "
          f"[{a['interval'][0]:.2f}, {a['interval'][1]:.2f}] scored {r['test_accuracy']:.3f} ({r['train_seconds']:.0f} s)  "
          f"standard: {s['test_accuracy']:.3f} ({s['train_seconds']:.0f} s)"
          + (f"  [P(pick beats the standard default) {a['standard_default']['p_challenger_beats_it']:.2f}]" if a.get("standard_default") else ""))
print(f"mean test accuracy: auto {sum(x for x, _ in rows) / len(rows):.3f}, standard {sum(y for _, y in rows) / len(rows):.3f}")
PY
