#!/usr/bin/env python3
"""PyTorch golden values for graft's EfficientNet-Lite inverted-residual block in train mode:
two blocks of scripts/efficientnet_lite.py (TensorFlow "same" padding, BatchNorm eps 1e-3,
ReLU6) on an odd-sized input, so the padding is asymmetric. Stores the weights, the input, the
output, the loss sum(out * up), the input gradient and every parameter gradient, and the
BatchNorm running statistics after the pass. tests/efficientnet.rs checks graft against them.

    PYTHONPATH=<torch> python3 tests/golden/make_mbconv_golden.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "scripts"))
from efficientnet_lite import Block  # noqa: E402

torch.manual_seed(0)
# (cin, cout, expand, kernel, stride): a 5x5 stride-1 block with its skip, then a 3x3 stride-2 one
CFG = [(8, 8, 6, 5, 1), (8, 12, 6, 3, 2)]
blocks = torch.nn.ModuleList([Block(ci, co, e, k, s, "same") for ci, co, e, k, s in CFG])
with torch.no_grad():
    for name, p in blocks.named_parameters():
        if p.dim() == 1 and name.endswith("weight"):
            p.copy_(2.0 + 1.5 * torch.randn_like(p))  # large enough that many outputs pass 6
        elif p.dim() == 1 and name.endswith("bias"):
            p.copy_(0.5 * torch.randn_like(p))
        else:
            p.copy_(0.3 * torch.randn_like(p))
weights = {k: v.detach().clone().contiguous() for k, v in blocks.state_dict().items() if not k.endswith("num_batches_tracked")}
x = torch.randn(2, 8, 15, 15, requires_grad=True)
blocks.train()
y = x
for b in blocks:
    y = b(y)
up = torch.randn_like(y)
loss = (y * up).sum()
loss.backward()
out = {f"w.{k}": v for k, v in weights.items()}
out.update({"x": x.detach(), "up": up, "y": y.detach(), "dx": x.grad})
for k, p in blocks.named_parameters():
    out[f"grad.{k}"] = p.grad
for k, v in blocks.state_dict().items():
    if "running" in k:
        out[f"after.{k}"] = v.clone()
save_file({k: v.contiguous().float() for k, v in out.items()}, os.path.join(here, "mbconv_golden.safetensors"))
