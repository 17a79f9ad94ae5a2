"""Multi-task U-Net colorizer with semantic guides.

After "Automatic Image Colorization Using Semantic Guides" (Chonnam National
University; IEEE Access, 2020): a U-Net over L whose encoder feeds a
scene-classification branch and whose decoder feeds three per-pixel heads:

* ab regression, trained with MSE;
* a distribution over the in-gamut ab bins of grid 10 (`color.ab_bins`, the
  paper's "313 bins"), trained with Zhang et al.'s rebalanced cross-entropy
  against soft-encoded targets (5 nearest bins, sigma 5, lambda 0.5, smoothed
  prior of the training set) and decoded by the annealed mean (T = 0.38):
  this is the colorized result;
* semantic segmentation, trained with the Dice loss.

The total loss is the weighted sum of the four terms (`LOSS_WEIGHTS`).

Faithful: the multi-task layout (encoder -> scene class, decoder -> regression,
ab-bin classification, segmentation), the losses of each head, the bins'
soft encoding and rebalancing, and the classification head as the result.

Differs:
* Widths are reduced (base width 16, where a standard U-Net starts at 64) to
  train within a CPU budget; the depth (4 poolings) and the loss weights are
  ours.
* No labelled scenes or segments: the targets are pseudo-labels computed in
  the loss from the target colours (and L), deterministic and documented in
  `pseudo_segments` and `pseudo_scene`: each pixel's segment is the nearest
  of `SEGMENTS` fixed ab cluster centres (a neutral centre and 8 hues on a
  ring of chroma 30: a fixed stand-in for k-means clusters of the ab plane,
  fixed so that the labels never drift during training), and the image's scene class is a
  bucket of a global colour/texture descriptor: its dominant colour cluster
  (neutral when fewer than 20% of its pixels are chromatic) times smooth or
  textured (mean |grad L| below or above 3 L units per pixel).
  The segmentation head thus learns "where is the sky-blue / foliage-green /
  skin-orange stuff", a colour-semantic prior, rather than object classes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .. import color

#: segment pseudo-classes: a neutral cluster and 8 hue clusters.
SEGMENTS = 9
#: scene pseudo-classes: dominant segment x (smooth, textured).
SCENE_CLASSES = 2 * SEGMENTS
#: chroma of the hue cluster centres (Lab units).
SEGMENT_CHROMA = 30.0
#: fraction of chromatic pixels below which an image's colour is "neutral".
NEUTRAL_SCENE = 0.8
#: mean |grad L| (L units per pixel) above which an image is "textured".
TEXTURE_THRESHOLD = 3.0

LOSS_WEIGHTS = {"regression": 1.0, "classification": 1.0, "segmentation": 1.0, "scene": 0.1}


def segment_centres() -> torch.Tensor:
    """(SEGMENTS, 2) ab centres of the colour clusters: neutral, then 8 hues every 45 degrees."""
    angles = torch.arange(SEGMENTS - 1, dtype=torch.float32) * (2 * math.pi / (SEGMENTS - 1))
    ring = SEGMENT_CHROMA * torch.stack((torch.cos(angles), torch.sin(angles)), dim=1)
    return torch.cat((torch.zeros(1, 2), ring))


def pseudo_segments(ab: torch.Tensor) -> torch.Tensor:
    """(N, H, W) segment index of each pixel of (N, 2, H, W) ``ab``: its nearest colour cluster."""
    centres = segment_centres().to(ab)
    d = ((ab.float().unsqueeze(1) - centres[None, :, :, None, None]) ** 2).sum(dim=2)
    return d.argmin(dim=1)


def pseudo_scene(ab: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """(N,) scene class of each image: dominant colour cluster x smooth/textured."""
    seg = pseudo_segments(ab)
    n = seg.shape[0]
    hist = F.one_hot(seg.reshape(n, -1), SEGMENTS).float().mean(dim=1)  # (N, SEGMENTS)
    dominant = hist[:, 1:].argmax(dim=1) + 1
    colour = torch.where(hist[:, 0] > NEUTRAL_SCENE, torch.zeros_like(dominant), dominant)
    l = l.float()
    grad = ((l[..., :, 1:] - l[..., :, :-1]).abs().mean(dim=(1, 2, 3))
            + (l[..., 1:, :] - l[..., :-1, :]).abs().mean(dim=(1, 2, 3)))
    textured = (grad > TEXTURE_THRESHOLD).long()
    return colour * 2 + textured


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of (N, K, H, W) logits against (N, H, W) class indices, averaged over classes."""
    p = torch.softmax(logits.float(), dim=1)
    t = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (p * t).sum(dim=(0, 2, 3))
    total = p.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3))
    return 1 - ((2 * inter + eps) / (total + eps)).mean()


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class SemanticUNet(nn.Module):
    def __init__(self, base: int = 16, depth: int = 4, temperature: float = 0.38, rebalance: float = 0.5,
                 scene_classes: int = SCENE_CLASSES, segments: int = SEGMENTS, loss_weights=None):
        super().__init__()
        self.temperature = temperature
        self.rebalance = rebalance
        self.loss_weights = dict(LOSS_WEIGHTS if loss_weights is None else loss_weights)
        self.register_buffer("bins", color.ab_bins(10))
        q = self.bins.shape[0]
        self.register_buffer("prior", torch.full((q,), 1.0 / q))
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(1, widths[0])] + [
            _double_conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.Conv2d(widths[i + 1], widths[i], 1) for i in reversed(range(depth))])
        self.merge = nn.ModuleList([_double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.scene = nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.ReLU(inplace=True),
                                   nn.Linear(widths[-1], scene_classes))
        self.regress = nn.Conv2d(widths[0], 2, 1)
        self.classify = nn.Conv2d(widths[0], q, 1)
        self.segment = nn.Conv2d(widths[0], segments, 1)

    def forward(self, l: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four heads' raw outputs for L (N, 1, h, w); any h, w of at least 2**depth."""
        x = (l - 50.0) / 50.0
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        scene = self.scene(x.mean(dim=(2, 3)))
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat((x, skip), dim=1))
        return {"ab": self.regress(x), "logits": self.classify(x), "seg": self.segment(x),
                "scene": scene, "l": l}

    def decode(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        """The classification head's annealed mean: the colorized result."""
        return color.annealed_mean(raw["logits"], self.bins, self.temperature)

    def decode_regression(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        return raw["ab"].float() * 100.0

    def segment_probabilities(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.softmax(raw["seg"].float(), dim=1)

    def losses(self, raw: dict[str, torch.Tensor], ab: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's loss, unweighted."""
        ab = ab.float()
        target = color.soft_encode(ab, self.bins)
        return {
            "regression": F.mse_loss(raw["ab"].float(), ab / 100.0),
            "classification": color.rebalanced_cross_entropy(raw["logits"], target, self.prior, self.rebalance),
            "segmentation": dice_loss(raw["seg"], pseudo_segments(ab)),
            "scene": F.cross_entropy(raw["scene"].float(), pseudo_scene(ab, raw["l"])),
        }

    def loss(self, raw: dict[str, torch.Tensor], ab: torch.Tensor) -> torch.Tensor:
        parts = self.losses(raw, ab)
        return sum(self.loss_weights[k] * v for k, v in parts.items())

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor) -> None:
        self.prior.copy_(color.smoothed_prior(counts, self.bins))


def semantic_unet(**kw) -> SemanticUNet:
    return SemanticUNet(**kw)
