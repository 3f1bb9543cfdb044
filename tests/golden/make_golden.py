#!/usr/bin/env python3
"""Golden values for graft's kernels and backbones, computed by PyTorch.

For convnet4 and resnet8 (batch 4, seeded weights): the weights (graft/PyTorch key names),
an input batch and labels, train-mode logits, the cross-entropy loss, the gradient of the loss
with respect to every parameter, BatchNorm running statistics after that train-mode pass, and
eval-mode logits of the original weights. tests/golden.rs checks graft against these to 1e-4
relative error in float32.

    python3 tests/golden/make_golden.py   # writes tests/golden/*.safetensors
"""
import copy
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benches"))
import pytorch_reference as ref  # noqa: E402

torch.manual_seed(1234)
for arch in ["convnet4", "resnet8"]:
    m = ref.build(arch, 10)
    ref.perturb_batchnorm(m)
    sd = {k: v.clone().contiguous() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, os.path.join(HERE, f"{arch}_weights.safetensors"))
    c, h, w = m.input
    x = torch.randn(4, c, h, w)
    y = torch.tensor([0, 3, 7, 9])
    m_eval = copy.deepcopy(m).eval()
    with torch.no_grad():
        logits_eval = m_eval(x)
    m.train()
    logits = m(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out = {"x": x, "y": y.to(torch.int64), "logits_train": logits.detach(), "loss": loss.detach().reshape(1), "logits_eval": logits_eval}
    for k, p in m.named_parameters():
        out["grad." + k] = p.grad.detach().clone()
    for k, b in m.named_buffers():
        if not k.endswith("num_batches_tracked"):
            out["after." + k] = b.detach().clone()
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, f"{arch}_golden.safetensors"))
    print(arch, "loss", float(loss))
