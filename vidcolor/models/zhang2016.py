"""Zhang, Isola, Efros, "Colorful Image Colorization" (ECCV 2016).

A VGG-style network over L predicts, at a quarter of its input's size, a
distribution over the in-gamut ab bins of a grid of size 10. Training uses
soft-encoded targets (5 nearest bins, Gaussian sigma 5) and class rebalancing
(lambda 0.5, with the smoothed empirical bin prior of the training data);
decoding takes the annealed mean (T = 0.38).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .. import color

FULL_WIDTHS = (64, 128, 256, 512, 512, 512, 512, 256)


def _block(cin: int, cout: int, n: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        last = i == n - 1
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride if last else 1,
                      padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


class Zhang2016(nn.Module):
    def __init__(self, widths=FULL_WIDTHS, depth: int = 3, temperature: float = 0.38,
                 rebalance: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5, c6, c7, c8 = widths
        self.temperature = temperature
        self.rebalance = rebalance
        self.register_buffer("bins", color.ab_bins(10))
        q = self.bins.shape[0]
        # Uniform until the trainer measures the training set's prior.
        self.register_buffer("prior", torch.full((q,), 1.0 / q))
        self.features = nn.Sequential(
            _block(1, c1, 2, stride=2),
            _block(c1, c2, 2, stride=2),
            _block(c2, c3, depth, stride=2),
            _block(c3, c4, depth),
            _block(c4, c5, depth, dilation=2),
            _block(c5, c6, depth, dilation=2),
            _block(c6, c7, depth),
        )
        up = [nn.ConvTranspose2d(c7, c8, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 1):
            up += [nn.Conv2d(c8, c8, 3, padding=1), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*up)
        self.classify = nn.Conv2d(c8, q, 1)

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """Bin logits (N, Q, h/4, w/4) for L (N, 1, h, w); h, w multiples of 8."""
        return self.classify(self.upsample(self.features((l - 50.0) / 100.0)))

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Annealed-mean ab at the network's input size."""
        ab = color.annealed_mean(logits, self.bins, self.temperature)
        return F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Rebalanced cross-entropy against soft-encoded targets."""
        ab = F.interpolate(ab, size=logits.shape[-2:], mode="area")
        return color.rebalanced_cross_entropy(logits, color.soft_encode(ab, self.bins), self.prior, self.rebalance)

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor) -> None:
        self.prior.copy_(color.smoothed_prior(counts, self.bins))


def zhang2016(**kw) -> Zhang2016:
    widths = tuple(w // 4 for w in FULL_WIDTHS)
    return Zhang2016(widths=widths, depth=2, **kw)


def zhang2016_full(**kw) -> Zhang2016:
    return Zhang2016(**kw)
