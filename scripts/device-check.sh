#!/usr/bin/env bash
# GPU check of graft's CUDA build, for the GPU machine (no network needed). From the repo root:
#
#   scripts/device-check.sh [BIN]        # BIN defaults to target/cuda/release/graft
#
# BIN may be the stripped, xz-compressed copy scripts/build-cuda.sh writes (target/cuda/graft.xz,
# ~12 MB), which is small enough to carry to a GPU machine (a .gz copy works too).
#
# Build BIN elsewhere with scripts/build-cuda.sh and bring it along. Needs the NVIDIA driver
# (libcuda.so.1) and CUDA 13 user-space libraries (cuBLAS, cuBLASLt, NVRTC, cuRAND, cudart),
# which PyTorch's CUDA 13 wheels provide; the script finds them under python3's site-packages.
# Results go to ${OUT:-a temporary folder}: results.tar (every step's JSON and stderr.log, packed
# again after each section, so a run cut short still returns what it did) and table.md; the device
# tool returns at most 8 files. Rebuild the table from a results.tar elsewhere with
# `mkdir r && tar -xf results.tar -C r && TABLE_ONLY=r scripts/device-check.sh`.
# It prints a short table last. Each step has its own time limit; the whole check takes a few
# minutes on an H100.
#
# (a) parity: the same small recipe (finetune-all on resnet8-cifar10, examples/cifar3, seed 0,
#     3 epochs) on CPU and on CUDA: first-step loss must agree to 1e-4 relative (float32), final
#     accuracy within run-to-run noise (reported; 2 seeds on CUDA show that noise); then the
#     same with --precision bf16 on CUDA; and a torchvision-format ResNet
#     (tests/golden/tv_basic.safetensors: its stem's padded max-pool) on CPU and CUDA, first-step
#     loss to 1e-4 relative.
# (b) throughput: graft bench --device cuda for resnet8 and resnet20 at batch 128 and 512, f32
#     and bf16, and EfficientNet-Lite0 at 224 px at batch 64 and 256, beside
#     benches/pytorch_reference.py on the same GPU, and the ratio; resnet8 at 128 and Lite0 at 64
#     also with GRAFT_REFERENCE_KERNELS=1 (candle's ops: the "before"), and Lite0 at 64 with
#     GRAFT_TF32=1 (TF32 convolutions, as PyTorch's default), and resnet8 at 128 and Lite0 at 64
#     in bf16 with GRAFT_BF16_PER_OP=1 (each convolution's result cast back to float32: the
#     "before" of bf16 activations kept through a block), and Lite0 at 64 in f32 and bf16 with
#     GRAFT_DEPTHWISE=cudnn (depthwise convolutions by cuDNN instead of graft's kernels); and
#     float32 like for like: resnet20 at 512 and Lite0 at 64 beside PyTorch with TF32 off
#     (PyTorch's cuDNN convolutions use TF32 by default, graft's float32 does not), and resnet20
#     at 512 with GRAFT_TF32=1 beside PyTorch's default.
# (k) kernels: graft bench --check-kernels (each cuDNN / fused op, forward and backward, against
#     candle's ops on the CPU), first, so a broken kernel is named before anything is timed.
# (s) a sweep slice (benches/gpu-slice.toml: 6 Lite0 fine-tunes at 224 px on examples/cifar3) on
#     the GPU, for runs per hour.
#
# Carrying it there: the working tree must stay under the device tool's 64 MiB, so run
# `scripts/device-slim.sh on` here first (and `off` right after), and carry target/cuda/graft.xz.
set -uo pipefail
BIN=${1:-target/cuda/release/graft}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
W=${TABLE_ONLY:-$(mktemp -d)}
pack() {
    tar -C "$W" --exclude=./graft --exclude=./runs --exclude=./slice --exclude=./slice-runs -cf "$OUT/results.tar.tmp" . &&
        mv "$OUT/results.tar.tmp" "$OUT/results.tar"
}
PY=${PYTHON:-python3}
say() { echo "device-check: $*" >&2; }

if [ -z "${TABLE_ONLY:-}" ]; then
case "$BIN" in
*.gz | *.xz)
    [ -f "$BIN" ] || { say "no $BIN (build it with scripts/build-cuda.sh)"; exit 2; }
    "$PY" -c 'import gzip, lzma, shutil, sys; o = (gzip.open if sys.argv[1].endswith(".gz") else lzma.open)(sys.argv[1]); shutil.copyfileobj(o, open(sys.argv[2], "wb"))' \
        "$BIN" "$W/graft" && chmod +x "$W/graft" && BIN=$W/graft || { say "could not unpack $BIN"; exit 2; }
    ;;
esac
[ -x "$BIN" ] || { say "no graft binary at $BIN (build it with scripts/build-cuda.sh)"; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$W/gpu.txt" >&2

# CUDA user-space libraries from the Python environment's NVIDIA wheels.
LIBS=$("$PY" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
want = ["libcublas.so.13", "libcublasLt.so.13", "libnvrtc.so.13", "libcurand.so.10", "libcudart.so.13", "libcudnn.so.9"]
dirs = []
for r in roots:
    for w in want:
        for f in glob.glob(os.path.join(r, "nvidia", "**", w), recursive=True):
            d = os.path.dirname(f)
            if d not in dirs:
                dirs.append(d)
print(":".join(dirs))
EOF
)
export LD_LIBRARY_PATH=${LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if ldd "$BIN" | grep -q 'not found'; then
    ldd "$BIN" | grep 'not found' >&2
    say "missing run-time libraries above: install PyTorch's CUDA 13 wheels or the nvidia-* wheels named in scripts/build-cuda.sh"
    exit 2
fi

G() { timeout "${T:-120}" "$BIN" "$@"; }
RUNS=$W/runs

# (k) kernels ----------------------------------------------------------------------
G bench --check-kernels --device cuda --json > "$W/kernels.json" 2>>"$W/stderr.log" || say "kernel check FAILED or did not run (see kernels.json, stderr.log)"
# graft's depthwise kernels are the newest: if one of their rows fails, everything after this
# runs with cuDNN's grouped convolution instead (named in the table), so the rest still counts
if "$PY" -c 'import json, sys; k = json.load(open(sys.argv[1])); sys.exit(0 if any("depthwise" in r["op"] and not r["ok"] for r in k) else 1)' \
    "$W/kernels.json" 2>/dev/null; then
    say "graft's depthwise kernels failed their check: GRAFT_DEPTHWISE=cudnn for the rest of the run"
    export GRAFT_DEPTHWISE=cudnn
    echo '{"depthwise": "cudnn (graft kernels failed the check)"}' > "$W/fallback.json"
fi

pack
# (a) parity ---------------------------------------------------------------------
run() { # device precision seed -> json
    G run --data examples/cifar3 --preset finetune-all --backbone resnet8-cifar10 --epochs 3 --seed "$3" \
        --device "$1" --precision "$2" --no-meta --runs "$RUNS" --json 2>>"$W/stderr.log"
}
run cpu f32 0 > "$W/run-cpu-f32-s0.json" || say "CPU run failed (see $W/stderr.log)"
run cuda f32 0 > "$W/run-cuda-f32-s0.json" || say "CUDA run failed (see $W/stderr.log)"
run cuda f32 1 > "$W/run-cuda-f32-s1.json" || say "CUDA run (seed 1) failed"
run cpu f32 1 > "$W/run-cpu-f32-s1.json" || say "CPU run (seed 1) failed"
run cuda bf16 0 > "$W/run-cuda-bf16-s0.json" || say "CUDA bf16 run failed"
run cpu bf16 0 > "$W/run-cpu-bf16-s0.json" || say "CPU bf16 (emulated) run failed"
# a torchvision-format ResNet (its stem's padded max-pool runs on graft's kernels on the GPU)
for d in cpu cuda; do
    G run --data examples/cifar3 --preset finetune-all --backbone tests/golden/tv_basic.safetensors --epochs 2 --seed 0 \
        --device $d --no-meta --runs "$RUNS" --json > "$W/run-$d-tv-s0.json" 2>>"$W/stderr.log" || say "torchvision ResNet run on $d failed"
done

pack
# (b) throughput -----------------------------------------------------------------
# EfficientNet-Lite0 at 224 px first: the issue's target
for b in 64 256; do
    for p in f32 bf16; do
        G bench --arch efficientnet-lite0 --batch $b --steps 10 --device cuda --precision $p --json > "$W/bench-efficientnet-lite0-$b-$p.json" 2>>"$W/stderr.log" ||
            say "graft bench efficientnet-lite0 $b $p failed"
        timeout 180 "$PY" benches/pytorch_reference.py --arch efficientnet-lite0 --batch $b --steps 10 --device cuda --precision $p \
            > "$W/torch-efficientnet-lite0-$b-$p.json" 2>>"$W/stderr.log" || say "pytorch reference efficientnet-lite0 $b $p failed"
    done
done
for arch in resnet8 resnet20; do
    for b in 128 512; do
        for p in f32 bf16; do
            G bench --arch $arch --batch $b --steps 20 --device cuda --precision $p --json > "$W/bench-$arch-$b-$p.json" 2>>"$W/stderr.log" ||
                say "graft bench $arch $b $p failed"
            timeout 120 "$PY" benches/pytorch_reference.py --arch $arch --batch $b --steps 20 --device cuda --precision $p \
                > "$W/torch-$arch-$b-$p.json" 2>>"$W/stderr.log" || say "pytorch reference $arch $b $p failed"
        done
    done
done
GRAFT_REFERENCE_KERNELS=1 G bench --arch resnet8 --batch 128 --steps 20 --device cuda --json > "$W/ref-resnet8-128-f32.json" 2>>"$W/stderr.log" || true
GRAFT_REFERENCE_KERNELS=1 G bench --arch efficientnet-lite0 --batch 64 --steps 5 --device cuda --json > "$W/ref-efficientnet-lite0-64-f32.json" 2>>"$W/stderr.log" || true
GRAFT_TF32=1 G bench --arch efficientnet-lite0 --batch 64 --steps 10 --device cuda --json > "$W/tf32-efficientnet-lite0-64-f32.json" 2>>"$W/stderr.log" || true
GRAFT_CUDNN_NONDETERMINISTIC=1 G bench --arch efficientnet-lite0 --batch 64 --steps 10 --device cuda --json > "$W/nondet-efficientnet-lite0-64-f32.json" 2>>"$W/stderr.log" || true
# float32 like for like: PyTorch lets cuDNN use TF32 by default, graft does not (GRAFT_TF32=1)
for ab in "resnet20 512 20" "efficientnet-lite0 64 10"; do
    read -r arch b steps <<< "$ab"
    timeout 180 "$PY" benches/pytorch_reference.py --arch "$arch" --batch "$b" --steps "$steps" --device cuda --tf32 off \
        > "$W/torch-strict-$arch-$b-f32.json" 2>>"$W/stderr.log" || say "pytorch reference $arch $b (TF32 off) failed"
done
GRAFT_TF32=1 G bench --arch resnet20 --batch 512 --steps 20 --device cuda --json > "$W/tf32-resnet20-512-f32.json" 2>>"$W/stderr.log" || true
# depthwise convolutions by cuDNN's grouped convolution instead of graft's kernels
GRAFT_DEPTHWISE=cudnn G bench --arch efficientnet-lite0 --batch 64 --steps 10 --device cuda --json > "$W/cudnndw-efficientnet-lite0-64-f32.json" 2>>"$W/stderr.log" || true
GRAFT_DEPTHWISE=cudnn G bench --arch efficientnet-lite0 --batch 64 --steps 10 --device cuda --precision bf16 --json > "$W/cudnndw-efficientnet-lite0-64-bf16.json" 2>>"$W/stderr.log" || true
# bf16 before issue 24's third item: every convolution's result cast back to float32
GRAFT_BF16_PER_OP=1 G bench --arch resnet8 --batch 128 --steps 20 --device cuda --precision bf16 --json > "$W/perop-resnet8-128-bf16.json" 2>>"$W/stderr.log" || true
GRAFT_BF16_PER_OP=1 G bench --arch efficientnet-lite0 --batch 64 --steps 10 --device cuda --precision bf16 --json > "$W/perop-efficientnet-lite0-64-bf16.json" 2>>"$W/stderr.log" || true
G bench --arch resnet8 --batch 256 --steps 5 --device cuda --simclr --json > "$W/bench-simclr.json" 2>>"$W/stderr.log" || true

pack
# (s) sweep slice ------------------------------------------------------------------
start=$(date +%s)
T=${TS:-300} G sweep --plan benches/gpu-slice.toml --out "$W/slice" --runs "$W/slice-runs" --device cuda --json \
    > "$W/slice.json" 2>>"$W/stderr.log" || say "sweep slice failed"
echo "{\"seconds\": $(( $(date +%s) - start ))}" > "$W/slice-time.json"

pack
fi

# (c) table ------------------------------------------------------------------------
"$PY" - "$W" "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.loads(f.read())
    except Exception:
        return None
lines = ["## Parity (resnet8-cifar10, finetune-all, examples/cifar3, 3 epochs)", "",
         "| run | first-step loss | rel. diff vs CPU f32 | test accuracy |", "|---|---|---|---|"]
ok = True
ref = load("run-cpu-f32-s0.json")
for name in ["cpu-f32-s0", "cuda-f32-s0", "cpu-f32-s1", "cuda-f32-s1", "cpu-bf16-s0", "cuda-bf16-s0"]:
    r = load(f"run-{name}.json")
    if r is None:
        lines.append(f"| {name} | failed | | |"); ok = False; continue
    base = ref if name.endswith("s0") else load("run-cpu-f32-s1.json")
    l, a = r.get("first_step_loss"), r.get("test_accuracy")
    rel = abs(l - base["first_step_loss"]) / abs(base["first_step_loss"]) if base and l is not None else float("nan")
    if name == "cuda-f32-s0" and not rel <= 1e-4:
        ok = False
    lines.append(f"| {name} | {l:.6f} | {rel:.2e} | {a:.4f} |")
# the torchvision-format ResNet (tests/golden/tv_basic.safetensors, 224 px, 2 epochs)
tc, tg = load("run-cpu-tv-s0.json"), load("run-cuda-tv-s0.json")
if tc and tg:
    rel = abs(tg["first_step_loss"] - tc["first_step_loss"]) / abs(tc["first_step_loss"])
    ok = ok and rel <= 1e-4
    for name, r, e in [("cpu-tv-s0", tc, 0.0), ("cuda-tv-s0", tg, rel)]:
        lines.append(f"| {name} (torchvision ResNet) | {r['first_step_loss']:.6f} | {e:.2e} | {r['test_accuracy']:.4f} |")
else:
    lines.append("| torchvision ResNet | failed | | |"); ok = False
lines += ["", "## Throughput on the GPU (images/s)", "",
          "| arch | batch | precision | graft train | PyTorch train | ratio | graft extract | PyTorch extract | ratio |",
          "|---|---|---|---|---|---|---|---|---|"]
for arch, batches in [("resnet8", [128, 512]), ("resnet20", [128, 512]), ("efficientnet-lite0", [64, 256])]:
    for b in batches:
        for p in ["f32", "bf16"]:
            g, t = load(f"bench-{arch}-{b}-{p}.json"), load(f"torch-{arch}-{b}-{p}.json")
            f = lambda r, k: f"{r[k]:.0f}" if r else "failed"
            ratio = lambda k: f"{g[k] / t[k]:.2f}" if g and t else "-"
            lines.append(f"| {arch} | {b} | {p} | {f(g, 'train_images_per_second')} | {f(t, 'train_images_per_second')} | "
                         f"{ratio('train_images_per_second')} | {f(g, 'extract_images_per_second')} | "
                         f"{f(t, 'extract_images_per_second')} | {ratio('extract_images_per_second')} |")
for tag, p, what in [("ref", "f32", "GRAFT_REFERENCE_KERNELS=1 (candle's ops)"), ("tf32", "f32", "GRAFT_TF32=1"),
                     ("nondet", "f32", "GRAFT_CUDNN_NONDETERMINISTIC=1"),
                     ("perop", "bf16", "GRAFT_BF16_PER_OP=1 (casts around each op)"),
                     ("cudnndw", "f32", "GRAFT_DEPTHWISE=cudnn"), ("cudnndw", "bf16", "GRAFT_DEPTHWISE=cudnn")]:
    for arch, b in [("resnet8", 128), ("efficientnet-lite0", 64)]:
        g, t = load(f"{tag}-{arch}-{b}-{p}.json"), load(f"torch-{arch}-{b}-{p}.json")
        if g:
            tt = f"{t['train_images_per_second']:.0f}" if t else "failed"
            ratio = f"{g['train_images_per_second'] / t['train_images_per_second']:.2f}" if t else "-"
            lines.append(f"| {arch} | {b} | {p}, {what} | {g['train_images_per_second']:.0f} | {tt} | {ratio} | "
                         f"{g['extract_images_per_second']:.0f} | | |")
fb = load("fallback.json")
if fb:
    lines += ["", f"Depthwise convolutions in every row above: {fb['depthwise']}."]
lines += ["", "## float32 like for like (PyTorch's cuDNN convolutions use TF32 unless told not to)", "",
          "| arch | batch | graft | PyTorch | graft train | PyTorch train | ratio |", "|---|---|---|---|---|---|---|"]
for arch, b in [("resnet20", 512), ("efficientnet-lite0", 64)]:
    for gname, gfile, tname, tfile in [("float32 (FMA)", f"bench-{arch}-{b}-f32.json", "TF32 off", f"torch-strict-{arch}-{b}-f32.json"),
                                       ("GRAFT_TF32=1", f"tf32-{arch}-{b}-f32.json", "default (TF32 convolutions)", f"torch-{arch}-{b}-f32.json")]:
        g, t = load(gfile), load(tfile)
        gt = f"{g['train_images_per_second']:.0f}" if g else "failed"
        tt = f"{t['train_images_per_second']:.0f}" if t else "failed"
        ratio = f"{g['train_images_per_second'] / t['train_images_per_second']:.2f}" if g and t else "-"
        lines.append(f"| {arch} | {b} | {gname} | {tname} | {gt} | {tt} | {ratio} |")
k = load("kernels.json")
lines += ["", "## Kernel check (graft bench --check-kernels --device cuda)", ""]
if k is None:
    lines.append("kernel check: did not run"); ok = False
else:
    bad = [r for r in k if not r["ok"]]
    worst = max(k, key=lambda r: r["max_rel_error"] / max(r["tolerance"], 1e-12))
    lines.append(f"{len(k) - len(bad)} of {len(k)} within tolerance; worst relative to its tolerance: {worst['op']} "
                 f"({worst['max_rel_error']:.2e}, tolerance {worst['tolerance']:.0e})")
    for r in bad:
        lines.append(f"- FAIL {r['op']}: {r['max_rel_error']:.2e} (tolerance {r['tolerance']:.0e})")
    ok = ok and not bad
sl, st = load("slice.json"), load("slice-time.json")
if sl is not None and st:
    n = sl.get("ran", 0) if isinstance(sl, dict) else 0
    lines += ["", f"Sweep slice (benches/gpu-slice.toml) on CUDA: {n} runs in {st['seconds']:.0f} s = "
              f"{3600 * n / max(st['seconds'], 1e-9):.0f} runs/hour; {json.dumps(sl)[:300]}"]
s = load("bench-simclr.json")
if s and s.get("simclr_images_per_second"):
    lines += ["", f"SimCLR pretraining, resnet8, batch 256, CUDA: {s['simclr_images_per_second']:.0f} images/s"]
lines += ["", "parity and kernels: " + ("PASS (CUDA first-step loss within 1e-4 of CPU; every kernel within tolerance)" if ok else "FAIL (see above)")]
text = "\n".join(lines)
for d in sys.argv[1:]:
    open(os.path.join(d, "table.md"), "w").write(text + "\n")
print(text)
sys.exit(0 if ok else 1)
EOF
