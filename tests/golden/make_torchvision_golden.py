#!/usr/bin/env python3
"""Golden logits for graft's torchvision-format ResNet loader (tests/torchvision.rs).

Narrow, randomly initialised ResNets built from torchvision's own BasicBlock / Bottleneck and
ResNet code paths (conv1 7x7/2, bn1, 3x3/2 max-pool, layer1..4, global pool, fc) with the same
key names as torchvision.models.resnet18/50; widths are shrunk so the files stay small. Writes
tv_basic.safetensors / tv_bottleneck.safetensors (state dicts without num_batches_tracked) and
tv_golden.safetensors (eval-mode and train-mode logits for x[i] = sin(0.37 i)).

    python3 tests/golden/make_torchvision_golden.py
"""
import os
import sys

import torch
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benches"))
import pytorch_reference as ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class Narrow(ResNet):
    """torchvision's ResNet with the stem and layer widths scaled down by 8."""

    def __init__(self, block, layers, n):
        super().__init__(block, layers, num_classes=n)
        # rebuild with narrow widths through torchvision's own _make_layer
        self.inplanes = 8
        self.conv1 = torch.nn.Conv2d(3, 8, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.layer1 = self._make_layer(block, 8, layers[0])
        self.layer2 = self._make_layer(block, 16, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 32, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 64, layers[3], stride=2)
        self.fc = torch.nn.Linear(64 * block.expansion, n)


torch.manual_seed(99)
out = {}
for name, block, layers, n in [("basic", BasicBlock, [2, 1, 1, 1], 7), ("bottleneck", Bottleneck, [1, 2, 1, 1], 5)]:
    m = Narrow(block, layers, n)
    ref.perturb_batchnorm(m)
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, os.path.join(HERE, f"tv_{name}.safetensors"))
    # a deterministic input both sides can make: x[i] = sin(0.37 i) over the flat index
    x = torch.sin(torch.arange(2 * 3 * 224 * 224, dtype=torch.float64) * 0.37).float().reshape(2, 3, 224, 224)
    m.eval()
    with torch.no_grad():
        out[f"{name}.logits_eval"] = m(x)
    m.train()
    with torch.no_grad():
        out[f"{name}.logits_train"] = m(x)
    print(name, sum(v.numel() for v in sd.values()), "values")
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, "tv_golden.safetensors"))
