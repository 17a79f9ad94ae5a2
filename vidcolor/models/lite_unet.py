"""A U-Net colorizer on an ImageNet-pretrained EfficientNet-Lite encoder.

The papers' colorizers get their semantics from ImageNet; so does this one.
The encoder (`efficientnet_lite`) sees the frame's grey as RGB and gives
features at strides 2, 4, 8, 16 and 32 (the last after its 1280-wide head,
the layer ImageNet's classifier reads). A global vector (the head's mean,
as Iizuka et al.'s global features) is added to the deepest map, then the
decoder upsamples it back to stride 2, each level concatenating the
encoder's skip of the same stride (Ronneberger et al.'s U-Net).

Two heads at stride 2, trained together:
* ab regression (smooth L1 on ab / 110): the conditional median tends to a
  plausible colour without the bins' speckle, but muted where unsure;
* a distribution over the in-gamut ab bins of grid 10 with Zhang et al.'s
  rebalanced cross-entropy (lambda 0.5), decoded by the annealed mean
  (T = 0.38): more vivid, and more often wrong where it is unsure.
The result by default (``head="adaptive"``) is the regression's ab, moved
towards the distribution's annealed mean where the distribution is
confident (its entropy low: a lawn, a sky), so colour is vivid where the
network knows it and muted where it does not. At inference the
distribution is read at stride 16 (the decoder's maps averaged over 8x8
before the 1x1 classifier, which is linear): its 262 maps at stride 2 would
cost more than the rest of the network. ``head="regression"`` or
``"classes"`` decodes one head alone.
The output is Lab ab at the working size; the engine keeps the source's luma.
The encoder's ImageNet weights are loaded for training by `vidcolor.training.pretrained`
(``backbone`` on the registry); the shipped weights hold the fine-tuned encoder.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .. import color
from .efficientnet_lite import EfficientNetLite

#: ab units that map to 1 at the regression head.
AB_SCALE = 110.0
#: decoder widths at strides 16, 8, 4 and 2.
DECODER = (128, 96, 64, 32)
CLASS_WEIGHT = 0.1
#: ``head="adaptive"``: the confidence (1 - entropy / log Q of the distribution over the Q = 262 bins) below
#: which the regression's ab is kept, and above which the annealed mean replaces it
#: (benchmarks/results/lite_unet_heads.md).
CONFIDENT = (0.22, 0.32)
#: ``head="adaptive"`` at inference: the decoder's maps are averaged over this many pixels a side
#: before the classifier.
CLASS_POOL = 8
HEADS = ("adaptive", "regression", "classes")


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LiteUNet(nn.Module):
    def __init__(self, variant: str = "efficientnet-lite0", head: str = "adaptive",
                 temperature: float = 0.38, rebalance: float = 0.5, regression_rebalance: float = 1.0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head {head!r}: one of {', '.join(HEADS)}")
        self.head, self.temperature, self.rebalance = head, temperature, rebalance
        #: lambda of the rebalancing that weights each pixel's regression loss by the rarity of its
        #: true colour (1: unweighted; lower: rare, saturated colours count more against the grey pull).
        self.regression_rebalance = regression_rebalance
        self.encoder = EfficientNetLite(variant)
        skips = self.encoder.widths[:-1]
        self.register_buffer("bins", color.ab_bins(10))
        q = self.bins.shape[0]
        self.register_buffer("prior", torch.full((q,), 1.0 / q))
        self.bottleneck = nn.Sequential(nn.Conv2d(self.encoder.widths[-1], 256, 1, bias=False),
                                        nn.BatchNorm2d(256), nn.ReLU(inplace=True))
        self.global_fc = nn.Linear(self.encoder.widths[-1], 256)
        widths = (256,) + DECODER
        self.merge = nn.ModuleList(nn.Sequential(_conv(widths[i] + skip, widths[i + 1]),
                                                 _conv(widths[i + 1], widths[i + 1]))
                                   for i, skip in enumerate(reversed(skips)))
        self.regress = nn.Conv2d(DECODER[-1], 2, 3, padding=1)
        self.classify = nn.Conv2d(DECODER[-1], q, 1)

    def decoder_features(self, l: torch.Tensor) -> torch.Tensor:
        """The decoder's last feature maps (N, 32, h/2, w/2) for L (N, 1, h, w), which the heads read."""
        grey = color.l_to_gray(l.float().clamp(0.0, 100.0)).to(l.dtype)
        x = ((grey - 0.5) / 0.5).expand(-1, 3, -1, -1)
        *skips, deep = self.encoder.features(x)
        x = self.bottleneck(deep) + self.global_fc(deep.mean(dim=(2, 3)))[:, :, None, None]
        for merge, skip in zip(self.merge, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat((x, skip), dim=1))
        return x

    def forward(self, l: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs at half the size of L (N, 1, h, w)."""
        x = self.decoder_features(l)
        raw = {"ab": self.regress(x), "l": l}
        if self.training or self.head == "classes":  # the 262 bins cost more than the rest of the decoder
            raw["logits"] = self.classify(x)
        elif self.head == "adaptive":
            raw["logits"] = self.pooled_logits(x)
        return raw

    def pooled_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The bins' logits as ``head="adaptive"`` reads them at inference: at stride 16 (`CLASS_POOL`)."""
        return self.classify(F.avg_pool2d(x, CLASS_POOL, ceil_mode=True))

    @staticmethod
    def regression_ab(raw_ab: torch.Tensor) -> torch.Tensor:
        """The regression head's output in Lab ab units, float32."""
        return raw_ab.float().clamp(-1.0, 1.0) * AB_SCALE  # sRGB's gamut lies within +-110

    def decode(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.head == "classes":
            ab = color.annealed_mean(raw["logits"], self.bins, self.temperature)
        else:
            ab = self.regression_ab(raw["ab"])
            if self.head == "adaptive":
                ab = self.confident_mix(ab, raw["logits"].float())
        return F.interpolate(ab, size=raw["l"].shape[-2:], mode="bilinear", align_corners=False)

    def confident_mix(self, ab: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The regression's ``ab`` moved towards the bins' annealed mean by the distribution's confidence."""
        p = torch.softmax(logits, dim=1)
        confidence = 1.0 + (p * torch.log(p.clamp_min(1e-12))).sum(dim=1, keepdim=True) / math.log(p.shape[1])
        lo, hi = CONFIDENT
        share = ((confidence - lo) / (hi - lo)).clamp(0.0, 1.0)
        mix = torch.cat((share, color.annealed_mean(logits, self.bins, self.temperature)), dim=1)
        mix = F.interpolate(mix, size=ab.shape[-2:], mode="bilinear", align_corners=False)
        return ab + mix[:, :1] * (mix[:, 1:] - ab)

    def losses(self, raw: dict[str, torch.Tensor], ab: torch.Tensor) -> dict[str, torch.Tensor]:
        ab = F.interpolate(ab.float(), size=raw["ab"].shape[-2:], mode="area")
        target = color.soft_encode(ab, self.bins)
        regression = F.smooth_l1_loss(raw["ab"].float(), ab / AB_SCALE, beta=0.05, reduction="none").sum(dim=1)
        if self.regression_rebalance < 1.0:
            regression = regression * color.rebalance_weights(self.prior, self.regression_rebalance)[target.argmax(dim=1)]
        return {"regression": regression.mean() / 2,
                "classification": color.rebalanced_cross_entropy(raw["logits"], target, self.prior, self.rebalance)}

    def loss(self, raw: dict[str, torch.Tensor], ab: torch.Tensor) -> torch.Tensor:
        parts = self.losses(raw, ab)
        return parts["regression"] + CLASS_WEIGHT * parts["classification"]

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor) -> None:
        self.prior.copy_(color.smoothed_prior(counts, self.bins))


def lite_unet(**kw) -> LiteUNet:
    return LiteUNet(**kw)
