"""Zhang, Isola, Efros, "Colorful Image Colorization" (ECCV 2016), official layout.

The network of the paper at its full widths, with the parameter names and
shapes of the official PyTorch release (``colorization_release_v2-9b330a0b.pth``
of richzhang/colorization), so users' checkpoints load strictly by key:

* ``model1`` .. ``model7``: blocks of 3x3 convolutions with ReLU, then
  BatchNorm; the last convolution of blocks 1-3 has stride 2, blocks 5 and 6
  are dilated by 2. ``model8``: a 4x4 transposed convolution (x2), two 3x3
  convolutions and the 1x1 classifier over the 313 ab bins.
* ``model_out``: a 1x1 convolution without bias from the 313 bin
  probabilities to ab, whose weights are the bin centres divided by 110.

The input is L in 0..100, normalised as (L - 50) / 100. The official code
decodes with the plain expectation of the softmax (``model_out`` over the
softmax), upsampled x4 (bilinear) and scaled by 110; that is the default here.
``decoding="annealed"`` gives the paper's annealed mean (T = 0.38) instead,
over the same bin centres.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .. import color

AB_NORM = 110.0
L_CENT, L_NORM = 50.0, 100.0
Q = 313


def _block(cin: int, cout: int, n: int, *, last_stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """n x (3x3 conv, ReLU), then BatchNorm: indices 0, 2, ... conv; 2n BatchNorm."""
    layers: list[nn.Module] = []
    for i in range(n):
        stride = last_stride if i == n - 1 else 1
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride, padding=dilation,
                             dilation=dilation, bias=True),
                   nn.ReLU(inplace=True)]
    layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


def initial_bins(q: int = Q, grid: int = 10) -> torch.Tensor:
    """(q, 2) ab bin centres for a network trained from scratch.

    The official 313 bins come with the official weights (in ``model_out``).
    Without them we start from the in-gamut cells of ``color.ab_bins`` and, to
    keep the official count, add the grid cells nearest to them.
    """
    base = color.ab_bins(grid)
    if base.shape[0] >= q:
        return base[:q].clone()
    r = torch.arange(-120, 121, grid, dtype=torch.float32)
    cand = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)
    d = torch.cdist(cand, base).min(dim=1).values
    cand, d = cand[d > 0], d[d > 0]
    # nearest first; ties by distance from grey, then by a, then b: deterministic
    key = sorted(range(cand.shape[0]), key=lambda i: (round(float(d[i]), 3), round(float(cand[i].norm()), 3),
                                                      float(cand[i, 0]), float(cand[i, 1])))
    extra = cand[key[: q - base.shape[0]]]
    return torch.cat((base, extra))


class ECCV16(nn.Module):
    def __init__(self, decoding: str = "official", temperature: float = 0.38, rebalance: float = 0.5):
        super().__init__()
        if decoding not in ("official", "annealed"):
            raise ValueError(f"decoding must be 'official' or 'annealed', not {decoding!r}")
        self.decoding = decoding
        self.temperature = temperature
        self.rebalance = rebalance
        self.model1 = _block(1, 64, 2, last_stride=2)
        self.model2 = _block(64, 128, 2, last_stride=2)
        self.model3 = _block(128, 256, 3, last_stride=2)
        self.model4 = _block(256, 512, 3)
        self.model5 = _block(512, 512, 3, dilation=2)
        self.model6 = _block(512, 512, 3, dilation=2)
        self.model7 = _block(512, 512, 3)
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1, bias=True), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=True), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=True), nn.ReLU(inplace=True),
            nn.Conv2d(256, Q, 1, bias=True),
        )
        # Fixed: the bin centres (in units of AB_NORM); official weights replace them.
        self.model_out = nn.Conv2d(Q, 2, 1, bias=False)
        with torch.no_grad():
            self.model_out.weight.copy_((initial_bins() / AB_NORM).T.reshape(2, Q, 1, 1))
        self.model_out.weight.requires_grad_(False)
        # Training-only class prior: not part of the official state_dict.
        self.register_buffer("prior", torch.full((Q,), 1.0 / Q), persistent=False)

    @property
    def bins(self) -> torch.Tensor:
        """(313, 2) bin centres in ab units, read from ``model_out``."""
        return self.model_out.weight.detach().reshape(2, -1).T.float() * AB_NORM

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """Bin logits (N, 313, h/4, w/4) for L (N, 1, h, w) in 0..100; h, w multiples of 8."""
        x = (l - L_CENT) / L_NORM
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6,
                      self.model7, self.model8):
            x = block(x)
        return x

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """ab (N, 2, h, w) at the network's input size."""
        if self.decoding == "annealed":
            ab = color.annealed_mean(logits, self.bins, self.temperature)
        else:  # official: the softmax expectation through model_out
            p = torch.softmax(logits.float(), dim=1)
            ab = F.conv2d(p, self.model_out.weight.float()) * AB_NORM
        return F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Rebalanced cross-entropy against soft-encoded targets (as in the paper)."""
        bins = self.bins.to(ab.device)
        ab = F.interpolate(ab.float(), size=logits.shape[-2:], mode="area")
        return color.rebalanced_cross_entropy(logits, color.soft_encode(ab, bins), self.prior, self.rebalance)

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor) -> None:
        self.prior.copy_(color.smoothed_prior(counts, self.bins.cpu()).to(self.prior))


def eccv16(**kw) -> ECCV16:
    return ECCV16(**kw)


def eccv16_annealed(**kw) -> ECCV16:
    return ECCV16(**{"decoding": "annealed", **kw})
