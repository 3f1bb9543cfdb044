#!/usr/bin/env python3
"""PyTorch reference for `graft bench`: the same architectures (convnet4, resnet8, resnet20, with
identical layer shapes and parameter names; EfficientNet-Lite0 from scripts/efficientnet_lite.py), timed the same way (2 warm-up steps, then STEPS
timed steps of forward + backward + AdamW on random data; feature extraction = eval-mode forward
to the pooled output of the last group before the head), printing the same JSON fields.

    python3 benches/pytorch_reference.py --arch resnet8 --batch 128 --steps 10 --threads 2

Also importable: `build(arch, n_classes)` is used by tests/golden/make_golden.py.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBn(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = ConvBn(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.down(x) if self.down is not None else x))


class Head(nn.Module):
    def __init__(self, cin, n, pool):
        super().__init__()
        self.fc = nn.Linear(cin, n)
        self.pool = pool

    def forward(self, x):
        x = x.mean((2, 3)) if self.pool else x.flatten(1)
        return self.fc(x)


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)


class Net(nn.Module):
    """Groups in order, named as graft names them (state_dict keys match graft's)."""

    def __init__(self, arch, n_classes=10):
        super().__init__()
        if arch == "convnet4":
            self.groups = ["block1", "block2", "block3", "block4", "head"]
            self.input = (1, 28, 28)
            for i in range(4):
                setattr(self, f"block{i+1}", ConvBlock(1 if i == 0 else 64, 64))
            self.head = Head(64, n_classes, pool=False)
        else:
            n = {"resnet8": 1, "resnet20": 3}[arch]
            self.groups = ["stem", "stage1", "stage2", "stage3", "head"]
            self.input = (3, 32, 32)
            self.stem = StemRelu(3, 16)
            cin = 16
            for s, cout in enumerate([16, 32, 64]):
                blocks = []
                for b in range(n):
                    blocks.append(Block(cin, cout, 2 if (b == 0 and s > 0) else 1))
                    cin = cout
                setattr(self, f"stage{s+1}", nn.Sequential(*blocks))
            self.head = Head(64, n_classes, pool=True)

    def forward(self, x, upto=None):
        for i, g in enumerate(self.groups):
            x = getattr(self, g)(x)
            if upto is not None and i == upto:
                return x.mean((2, 3)) if x.dim() == 4 else x
        return x


class StemRelu(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def perturb_batchnorm(m):
    """Non-trivial BatchNorm parameters and running statistics (golden tests), from torch's RNG."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1 and name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(1.0 + 0.3 * torch.rand_like(b))


class Lite0Net(nn.Module):
    """EfficientNet-Lite0 (scripts/efficientnet_lite.py: TensorFlow "same" padding, ReLU6) at
    224 px, with graft's groups: extraction stops after `top` (1x1 conv to 1280, BN, ReLU6)."""

    def __init__(self, n_classes=10):
        super().__init__()
        import os
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
        from efficientnet_lite import Lite
        self.net = Lite("lite0", n_classes=n_classes)
        self.input = (3, 224, 224)
        self.groups = ["stem", "blocks", "top", "head"]

    def forward(self, x, upto=None):
        n = self.net
        x = F.relu6(n._bn0(n._conv_stem(x)))
        for b in n._blocks:
            x = b(x)
        x = F.relu6(n._bn1(n._conv_head(x)))
        x = x.mean((2, 3))
        return x if upto is not None else n._fc(x)


def build(arch, n_classes=10):
    if arch == "efficientnet-lite0":
        return Lite0Net(n_classes)
    return Net(arch, n_classes)


def bench(arch, batch, steps, threads, device="cpu", precision="f32", tf32="default"):
    torch.set_num_threads(threads)
    # PyTorch lets cuDNN convolutions use TF32 tensor cores by default (matmuls not); "off" is
    # true float32 throughout, as graft's default; "on" allows TF32 for both
    if tf32 != "default":
        torch.backends.cudnn.allow_tf32 = tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = tf32 == "on"
    torch.manual_seed(0)
    dev = torch.device(device)
    m = build(arch).to(dev)
    c, h, w = m.input
    x = torch.randn(batch, c, h, w, device=dev)
    y = torch.arange(batch, device=dev) % 10
    # bf16: autocast (bfloat16 convolutions and matmuls, float32 weights), as graft's --precision bf16
    amp = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    decay = [p for p in m.parameters() if p.dim() > 1]
    no_decay = [p for p in m.parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    m.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with amp():
            out = m(x)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_ips = steps * batch / (time.perf_counter() - t0)
    m.eval()
    upto = len(m.groups) - 2
    with torch.no_grad(), amp():
        for _ in range(2):
            m(x, upto)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            m(x, upto).float().cpu()  # graft copies the features back to the host too
        extract_ips = steps * batch / (time.perf_counter() - t0)
    return {
        "arch": arch,
        "batch": batch,
        "threads": threads,
        "steps": steps,
        "device": "cpu" if dev.type == "cpu" else f"cuda:0 ({torch.cuda.get_device_name(0)})",
        "precision": precision,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "framework": f"pytorch {torch.__version__}",
        "train_images_per_second": train_ips,
        "extract_images_per_second": extract_ips,
        # the process's peak resident memory (Linux reports KiB), as `graft bench` reports its own
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet8", choices=["convnet4", "resnet8", "resnet20", "efficientnet-lite0"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--tf32", default="default", choices=["default", "on", "off"],
                    help="TF32 tensor cores for float32 on CUDA: PyTorch's defaults (cuDNN convolutions yes, matmuls no), on, or off")
    a = ap.parse_args()
    print(json.dumps(bench(a.arch, a.batch, a.steps, a.threads, a.device, a.precision, a.tf32)))
