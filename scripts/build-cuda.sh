#!/usr/bin/env bash
# Build graft with candle's CUDA backend (`--features cuda`) on a machine that
# has neither a GPU nor a system-wide CUDA toolkit.
#
#   scripts/build-cuda.sh            # -> target/cuda/release/graft
#
# What it does (all offline-able after the first run; everything is cached in
# ${GRAFT_CUDA_HOME:-.cache/cuda-13.0}, which git ignores):
#  1. Downloads NVIDIA's compiler and headers from PyPI as wheels (CUDA 13.0.x:
#     PTX from a newer nvcc is refused by the CUDA 13.0 driver 580 of the target
#     GPU machines) and unpacks them into one toolkit-shaped folder.
#  2. Makes link-time stubs for the libraries the binary loads at run time but
#     that are not needed to compile: libcuda (the driver, never on PyPI),
#     libcublas, libcublasLt, libnvrtc and libcurand. Each stub exports the
#     symbol names cudarc declares and carries the real library's soname, so the
#     binary records the real names; the stubs are never on the run-time path.
#  3. Runs `cargo build --release --features cuda` with CUDA_COMPUTE_CAP=90
#     (H100/H200, sm_90) into target/cuda, so the CPU build in target/ is untouched.
#
# At run time the binary needs, on the GPU machine:
#   libcuda.so.1      the driver's (from the NVIDIA driver install)
#   libcudart.so.13   CUDA runtime  } PyTorch's CUDA 13 wheels ship all four in
#   libcublas.so.13, libcublasLt.so.13 } site-packages/nvidia/cu13/lib; point
#   libnvrtc.so.13    } LD_LIBRARY_PATH there (scripts/device-check.sh does)
#   libcurand.so.10   } (or at the nvidia-curand / -cublas wheels' lib folder).
#   libcudnn.so.9     with the `cudnn` feature (the default here): nvidia-cudnn-cu13's lib
#                     folder, which PyTorch's CUDA 13 wheels install.
# `ldd target/cuda/release/graft` lists them; the script prints that list last.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TK=${GRAFT_CUDA_HOME:-$ROOT/.cache/cuda-13.0}
TK=$(mkdir -p "$TK" && cd "$TK" && pwd)
WHEELS=$TK/_wheels
PY=${PYTHON:-python3}

say() { echo "build-cuda: $*" >&2; }

for tool in cargo gcc unzip xz strip "$PY"; do
    command -v "$tool" >/dev/null || { say "needs '$tool' on PATH"; exit 1; }
done

# 1. Toolkit from wheels --------------------------------------------------------
PKGS=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
if [ ! -x "$TK/bin/nvcc" ]; then
    mkdir -p "$WHEELS"
    say "downloading ${PKGS[*]} from PyPI"
    "$PY" -m pip download --no-deps --quiet --dest "$WHEELS" "${PKGS[@]}"
    rm -rf "$TK/_unpacked" && mkdir -p "$TK/_unpacked"
    for w in "$WHEELS"/*.whl; do unzip -q -o "$w" 'nvidia/*' -d "$TK/_unpacked"; done
    cp -a "$TK/_unpacked/nvidia/cu13/." "$TK/"
    rm -rf "$TK/_unpacked"
    # The cccl wheel puts thrust/cub/libcu++ under include/cccl; nvcc looks in include/.
    for d in "$TK"/include/cccl/*; do ln -sfn "cccl/$(basename "$d")" "$TK/include/$(basename "$d")"; done
    chmod +x "$TK"/bin/* "$TK"/nvvm/bin/* 2>/dev/null || true
fi
"$TK/bin/nvcc" --version | tail -n 2 >&2

# `cudnn` (the default) adds cuDNN convolutions; FEATURES=cuda builds candle's kernels alone.
FEATURES=${FEATURES:-cudnn}

# cudarc's sources name every symbol it links; fetch them first.
cd "$ROOT"
cargo fetch --locked --quiet
CUDARC=$(cargo metadata --format-version 1 --locked --features "$FEATURES" 2>/dev/null |
    "$PY" -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc"))')
CUDARC=$(dirname "$CUDARC")/src

# 2. Link-time stubs and the real cudart ----------------------------------------
STUBS=$TK/lib/stubs
mkdir -p "$STUBS"
stub() { # module soname linkname
    local src=$STUBS/$3.c
    grep -ohE 'load::<_F>\("[A-Za-z0-9_]+"\)' "$CUDARC/$1/sys/mod.rs" | sed -E 's/.*\("([^"]+)"\)/void \1(void) {}/' | sort -u > "$src"
    [ -s "$src" ] || { say "no symbols found for $1 in $CUDARC"; exit 1; }
    gcc -shared -fPIC -Wl,-soname,"$2" -o "$STUBS/lib$3.so" "$src"
}
stub driver libcuda.so.1 cuda
stub cublas libcublas.so.13 cublas
stub cublaslt libcublasLt.so.13 cublasLt
stub nvrtc libnvrtc.so.13 nvrtc
stub curand libcurand.so.10 curand
# cuDNN 9 (the `cudnn` feature): PyTorch's CUDA 13 wheels depend on nvidia-cudnn-cu13, whose
# lib folder (site-packages/nvidia/cudnn/lib) holds the real libcudnn.so.9 on the GPU machine.
case " $FEATURES " in *cudnn*) stub cudnn libcudnn.so.9 cudnn ;; esac
ln -sfn libcudart.so.13 "$TK/lib/libcudart.so"

# 3. Build ----------------------------------------------------------------------
export CUDA_HOME=$TK CUDA_PATH=$TK CUDA_ROOT=$TK
export PATH=$TK/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$TK/lib:$STUBS${LIBRARY_PATH:+:$LIBRARY_PATH}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/cuda}
say "cargo build --release --locked --features $FEATURES (sm_$CUDA_COMPUTE_CAP) into $CARGO_TARGET_DIR"
cargo build --release --locked --features "$FEATURES" --bin graft

BIN=$CARGO_TARGET_DIR/release/graft
say "built $BIN"
# a stripped, xz-compressed copy (~12 MB) small enough to carry to a GPU machine beside the
# working tree (scripts/device-check.sh takes it); gzip made 28 MB, which with the repo's ~40 MB
# of tracked files went over the device tool's 64 MiB.
strip -o "$CARGO_TARGET_DIR/graft.stripped" "$BIN" && xz -9 -T0 -c "$CARGO_TARGET_DIR/graft.stripped" > "$CARGO_TARGET_DIR/graft.xz.tmp" &&
    mv "$CARGO_TARGET_DIR/graft.xz.tmp" "$CARGO_TARGET_DIR/graft.xz" && rm -f "$CARGO_TARGET_DIR/graft.stripped"
say "portable copy: $CARGO_TARGET_DIR/graft.xz ($(du -h "$CARGO_TARGET_DIR/graft.xz" | cut -f1))"
say "shared libraries it loads at run time (the stubs above are link-time only):"
"$PY" - "$BIN" <<'EOF'
import subprocess, sys
out = subprocess.run(["readelf", "-d", sys.argv[1]], capture_output=True, text=True).stdout
for line in out.splitlines():
    if "(NEEDED)" in line:
        print("  " + line.split("[")[1].rstrip("]"), file=sys.stderr)
EOF
