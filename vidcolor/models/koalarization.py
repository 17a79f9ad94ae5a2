"""Baldassarre, Morín, Rodés-Guirao, "Deep Koalarization" (2017).

An encoder turns L into an H/8 x W/8 feature volume (8 convolutions, strides
2,1,2,1,2,1,1,1); a global embedding of the whole image is replicated over
every position and concatenated to it; 1x1 convolutions fuse the two; a
decoder of convolutions and three x2 upsamplings returns H x W x 2, through
tanh, to ab / 128. Loss: MSE.

Faithful: encoder (depth, strides, the paper's layer list), the replicated
global embedding fused by 1x1 convolutions, decoder (conv 128, up, conv 64,
conv 64, up, conv 32, conv 2 tanh, up), ReLU activations, MSE on ab scaled
to -1..1.

Differs:
* Widths are a quarter of the paper's (`FULL_WIDTHS`, ``scale``): the
  encoder ends at H/8 x W/8 x 64 rather than 256, fused to 64 rather than 256.
* The embedding: the paper fed the image (resized to 299x299) to an
  ImageNet-trained Inception-ResNet-v2 and took its 1001 class scores. Here the
  embedding network is trained by the project: Iizuka et al.'s global branch
  (`iizuka2016.GlobalBranch`, with its own low-level network, on a fixed
  224x224 resize), trained jointly with the colorization loss, plus an
  auxiliary scene classification on `semantic_unet.pseudo_scene`
  pseudo-labels (weight 1/300) so that it also carries scene information.
  Its embedding is 64-d (256 at full width) instead of 1001.
* The output is resized to the input size when H, W are not multiples of 8.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .iizuka2016 import FULL_WIDTHS as IIZUKA_WIDTHS
from .iizuka2016 import GlobalBranch, LowLevel, fuse, scaled
from .semantic_unet import SCENE_CLASSES, pseudo_scene

FULL_WIDTHS = {
    "encoder": (64, 128, 128, 256, 256, 512, 512, 256),
    "fusion": 256,
    "decoder": (128, 64, 64, 32),
}
ENCODER_STRIDES = (2, 1, 2, 1, 2, 1, 1, 1)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class Koalarization(nn.Module):
    def __init__(self, scale: float = 0.25, classes: int = SCENE_CLASSES, class_weight: float = 1 / 300):
        super().__init__()
        w = scaled(FULL_WIDTHS, scale)
        g = scaled(IIZUKA_WIDTHS, scale)
        self.class_weight = class_weight
        layers, cin = [], 1
        for width, stride in zip(w["encoder"], ENCODER_STRIDES):
            layers.append(_conv(cin, width, stride))
            cin = width
        self.encoder = nn.Sequential(*layers)
        self.embedding = GlobalBranch(LowLevel(g["low"]), g["global_conv"], g["global_fc"], classes,
                                      g["class_hidden"])
        self.fusion = nn.Sequential(nn.Conv2d(cin + self.embedding.out_features, w["fusion"], 1),
                                    nn.ReLU(inplace=True))
        d1, d2, d3, d4 = w["decoder"]
        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoder = nn.Sequential(
            _conv(w["fusion"], d1), up, _conv(d1, d2), _conv(d2, d3), up, _conv(d3, d4),
            nn.Conv2d(d4, 2, 3, padding=1), nn.Tanh(), up)

    def forward(self, l: torch.Tensor) -> dict:
        x = (l - 50.0) / 50.0
        vector, logits = self.embedding(x)
        out = self.decoder(self.fusion(fuse(self.encoder(x), vector)))
        return {"ab": out, "classes": logits, "l": l}

    def decode(self, raw: dict) -> torch.Tensor:
        ab = raw["ab"].float() * 128.0
        size = raw["l"].shape[-2:]
        if ab.shape[-2:] != size:
            ab = F.interpolate(ab, size=size, mode="bilinear", align_corners=False)
        return ab

    def loss(self, raw: dict, ab: torch.Tensor) -> torch.Tensor:
        out = raw["ab"].float()
        target = ab.float() / 128.0
        if target.shape[-2:] != out.shape[-2:]:
            target = F.interpolate(target, size=out.shape[-2:], mode="area")
        loss = F.mse_loss(out, target)
        if raw["classes"] is not None:
            loss = loss + self.class_weight * F.cross_entropy(raw["classes"].float(), pseudo_scene(ab, raw["l"]))
        return loss


def koalarization(**kw) -> Koalarization:
    return Koalarization(**kw)
