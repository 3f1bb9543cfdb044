#!/usr/bin/env bash
# Re-create graft's own backbones in models/ with the exact commands recorded in their cards.
# Needs the data from scripts/fetch-data.sh. Each model is skipped if its file exists.
set -euo pipefail
cd "$(dirname "$0")/.."
G=${GRAFT:-./target/release/graft}
mk() { local out=$1; shift; [ -f "$out" ] && { echo "skip $out"; return; }; echo "== $out"; "$G" pretrain "$@" --out "$out"; }
mk models/resnet8-cifar10.safetensors  --data data/cifar10 --arch resnet8 --epochs 15 --seed 0 --source cifar10
mk models/convnet4-mnist.safetensors   --data data/mnist --arch convnet4 --epochs 3 --seed 0 --lr 0.05 --source mnist
mk models/convnet4-fashion.safetensors --data data/fashion-mnist --arch convnet4 --epochs 4 --seed 0 --lr 0.05 --source fashion-mnist
mk models/convnet4-animal.safetensors  --data data/animal-mnist --arch convnet4 --epochs 12 --seed 0 --lr 0.05 --source animal-mnist
mk models/resnet20-cifar10.safetensors --data data/cifar10 --arch resnet20 --epochs 6 --seed 0 --source cifar10
