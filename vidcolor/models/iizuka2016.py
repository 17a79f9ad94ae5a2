"""Iizuka, Simo-Serra, Ishikawa, "Let there be Color!" (SIGGRAPH 2016).

Four parts, as in the paper:
* low-level features: 6 convolutions (strides 2,1,2,1,2,1) shared by the
  local path, which runs on the input at any size, and the global path;
* mid-level features: 2 convolutions on the local path (H/8);
* global features: the *same* low-level network applied to the input resized
  to a fixed 224x224, then 4 convolutions (strides 2,1,2,1) and three fully
  connected layers to a global vector; an optional classification head on the
  second FC layer predicts the scene class;
* a fusion layer concatenating the global vector to every mid-level pixel,
  followed by a per-pixel fully connected layer (1x1 convolution), and the
  colorization network: convolutions with two nearest-neighbour upsamplings to
  H/2 and a sigmoid ab output, upsampled to the input size.
Loss: MSE on the sigmoid output against ab scaled to 0..1, plus 1/300 times
the classification cross-entropy.

Faithful: the four-part layout, the shared low-level weights, the fixed
224x224 global input, the fusion layer, nearest upsampling, sigmoid output,
MSE + alpha = 1/300 classification loss, batch normalisation on the
convolutions.

Differs:
* Widths are a quarter of the paper's (`FULL_WIDTHS`, ``scale``) for CPU
  training; the FC layers have no batch normalisation (so a batch of one trains).
* Scene labels: the paper used the 205 Places classes; without labelled data
  the classes are `semantic_unet.pseudo_scene` pseudo-labels (dominant colour
  cluster x smooth/textured, 18 classes) computed from the target colours.
  ``classes=0`` drops the head.
* The output is upsampled to the input size bilinearly.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .semantic_unet import SCENE_CLASSES, pseudo_scene

FULL_WIDTHS = {
    "low": (64, 128, 128, 256, 256, 512),
    "mid": (512, 256),
    "global_conv": (512, 512, 512, 512),
    "global_fc": (1024, 512, 256),
    "class_hidden": 256,
    "fusion": 256,
    "color": (128, 64, 64, 32),
}
GLOBAL_SIZE = 224
CLASS_WEIGHT = 1 / 300


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def scaled(widths: dict, scale: float) -> dict:
    def s(v):
        return tuple(max(1, round(x * scale)) for x in v) if isinstance(v, tuple) else max(1, round(v * scale))
    return {k: s(v) for k, v in widths.items()}


class LowLevel(nn.Sequential):
    """The low-level features network: L (normalised) to H/8."""

    def __init__(self, widths=FULL_WIDTHS["low"]):
        layers, cin = [], 1
        for i, w in enumerate(widths):
            layers.append(conv_bn_relu(cin, w, 2 if i % 2 == 0 else 1))
            cin = w
        super().__init__(*layers)
        self.out_channels = cin


class FixedResize(nn.Module):
    """Resizes whatever it gets to ``size`` x ``size`` (the global path's fixed input)."""

    def __init__(self, size: int = GLOBAL_SIZE):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)


class GlobalBranch(nn.Module):
    """Global image features from a fixed-size view of the whole image.

    ``low`` is the low-level network it runs first. Iizuka et al. share it with
    the local path (``shared=True``: the owner registers it, and its weights are
    saved once, under the owner's name); other models (Koalarization's
    embedding) give the branch its own.
    Returns the global vector (N, fc[-1]) and the class logits (or None).
    """

    def __init__(self, low: LowLevel, convs=FULL_WIDTHS["global_conv"], fc=FULL_WIDTHS["global_fc"],
                 classes: int = 0, class_hidden: int = FULL_WIDTHS["class_hidden"], size: int = GLOBAL_SIZE,
                 shared: bool = False):
        super().__init__()
        self.resize = FixedResize(size)
        if shared:
            self._shared_low = (low,)  # a plain attribute: not a submodule, not in the state dict
        else:
            self.own_low = low
        layers, cin = [], low.out_channels
        for i, w in enumerate(convs):
            layers.append(conv_bn_relu(cin, w, 2 if i % 2 == 0 else 1))
            cin = w
        self.convs = nn.Sequential(*layers)
        side = size // 32
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * side * side, fc[0]), nn.ReLU(inplace=True),
            nn.Linear(fc[0], fc[1]), nn.ReLU(inplace=True))
        self.out = nn.Sequential(nn.Linear(fc[1], fc[2]), nn.ReLU(inplace=True))
        self.out_features = fc[2]
        self.classify = (nn.Sequential(nn.Linear(fc[1], class_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(class_hidden, classes)) if classes else None)

    @property
    def low(self) -> LowLevel:
        return self._shared_low[0] if hasattr(self, "_shared_low") else self.own_low

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.fc(self.convs(self.low(self.resize(x))))
        return self.out(h), (self.classify(h) if self.classify is not None else None)


def fuse(local: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Concatenate a global vector (N, C) to every pixel of (N, D, h, w) features."""
    return torch.cat((local, vector[:, :, None, None].to(local.dtype).expand(-1, -1, *local.shape[-2:])), dim=1)


class Iizuka2016(nn.Module):
    def __init__(self, scale: float = 0.25, classes: int = SCENE_CLASSES, class_weight: float = CLASS_WEIGHT):
        super().__init__()
        w = scaled(FULL_WIDTHS, scale)
        self.class_weight = class_weight
        self.low = LowLevel(w["low"])
        m1, m2 = w["mid"]
        self.mid = nn.Sequential(conv_bn_relu(self.low.out_channels, m1), conv_bn_relu(m1, m2))
        self.global_branch = GlobalBranch(self.low, w["global_conv"], w["global_fc"], classes, w["class_hidden"],
                                          shared=True)
        self.fusion = nn.Sequential(nn.Conv2d(m2 + self.global_branch.out_features, w["fusion"], 1),
                                    nn.ReLU(inplace=True))
        c1, c2, c3, c4 = w["color"]
        self.colorize = nn.Sequential(
            conv_bn_relu(w["fusion"], c1), nn.Upsample(scale_factor=2, mode="nearest"),
            conv_bn_relu(c1, c2), conv_bn_relu(c2, c3), nn.Upsample(scale_factor=2, mode="nearest"),
            conv_bn_relu(c3, c4), nn.Conv2d(c4, 2, 3, padding=1), nn.Sigmoid())

    def forward(self, l: torch.Tensor) -> dict:
        """Sigmoid ab (N, 2, ~h/2, ~w/2) and class logits, for L (N, 1, h, w) of any size."""
        x = (l - 50.0) / 50.0
        vector, logits = self.global_branch(x)
        mid = self.mid(self.low(x))
        out = self.colorize(self.fusion(fuse(mid, vector)))
        return {"ab": out, "classes": logits, "l": l}

    def decode(self, raw: dict) -> torch.Tensor:
        ab = (raw["ab"].float() - 0.5) * 256.0
        return F.interpolate(ab, size=raw["l"].shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, raw: dict, ab: torch.Tensor) -> torch.Tensor:
        out = raw["ab"].float()
        target = F.interpolate(ab.float() / 256.0 + 0.5, size=out.shape[-2:], mode="area")
        loss = F.mse_loss(out, target)
        if raw["classes"] is not None:
            loss = loss + self.class_weight * F.cross_entropy(raw["classes"].float(), pseudo_scene(ab, raw["l"]))
        return loss


def iizuka2016(**kw) -> Iizuka2016:
    return Iizuka2016(**kw)
