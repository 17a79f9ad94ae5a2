"""Cheng, Yang, Sheng, "Deep Colorization" (ICCV 2015).

Every pixel is described by a feature descriptor; a fully connected network
maps the descriptor to the pixel's chrominance (YUV's U and V), trained by
least squares; the predicted chrominance is then refined by a joint bilateral
filter guided by the luminance.

The descriptor, concatenated per pixel:
* low level: the 7x7 luminance patch around the pixel (49 values);
* mid level: a DAISY descriptor (Tola et al.) of the luminance, a small one:
  4 orientations at the centre and at 7 points of one ring of radius 8, 32
  values, each histogram normalised to unit length (Tola's default); the
  sizes are ours. `Daisy` is a torch re-implementation, so it runs wherever
  the network runs (GPU included), not skimage: with the same parameters it
  matches `skimage.feature.daisy` away from the image border (tested), but
  it is computed at every pixel, with the image mirrored at the border;
* high level: semantic probabilities, here the segmentation head of the
  project's own `semantic_unet` (the paper used a separately trained scene
  parser). ``semantic=False`` omits them.

Faithful: per-pixel fully connected regression from the three-level
descriptor (the network is applied as 1x1 convolutions, which is the same
per-pixel MLP computed densely), U, V outputs with a least-squares loss, and
the joint bilateral refinement guided by the luminance.

Differs:
* The semantic labeller is the project's `SemanticUNet` (reduced width,
  colour-cluster pseudo-label segments, see that module), trained jointly with
  its own multi-task loss; its probabilities enter the descriptor detached, so
  the colour regression does not shape them, as with the paper's separate
  labeller. `load_semantic` starts it from trained `semantic_unet` weights.
* U, V are BT.601 Cb, Cr (-0.5..0.5; U and V up to a constant factor), the
  luminance is the frame's luma; decoding converts to Lab ab for the pipeline.
* The hidden layers (3 of 64 ReLU units, cheap enough per pixel on a CPU) and the filter's sigmas (2 pixels,
  0.08 of the luma range) are ours.
* The adaptive image clustering with one network per cluster is not there:
  one network serves every image.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .. import color
from .semantic_unet import SEGMENTS, SemanticUNet


def _symmetric_index(n: int, pad: int, device) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` on each side, mirrored with the edge
    sample repeated (scipy.ndimage's "reflect"), periodic for pads longer than the axis."""
    i = torch.arange(-pad, n + pad, device=device)
    i = torch.remainder(i, 2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    x = x.index_select(-2, _symmetric_index(h, pad, x.device))
    return x.index_select(-1, _symmetric_index(w, pad, x.device))


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian of (N, C, H, W) ``x`` as scipy.ndimage.gaussian_filter(mode="reflect")."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = symmetric_pad(x, radius)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Daisy(nn.Module):
    """Dense DAISY descriptors of a (N, 1, H, W) image in 0..1: (N, dims, H, W).

    The algorithm of `skimage.feature.daisy` (gradient orientation maps
    weighted by a von Mises kernel and the gradient magnitude, Gaussian-smoothed
    per ring, read at the centre and at ``histograms`` points on each ring),
    computed at every pixel instead of on a grid away from the border.
    Normalisation "daisy" (each histogram to unit L2 norm, Tola's default),
    "l1", "l2" or "off".
    """

    def __init__(self, radius: int = 8, rings: int = 1, histograms: int = 7, orientations: int = 4,
                 normalization: str = "daisy"):
        super().__init__()
        if normalization not in ("daisy", "l1", "l2", "off"):
            raise ValueError(f"unknown DAISY normalisation {normalization!r}")
        self.radius, self.rings, self.histograms, self.orientations = radius, rings, histograms, orientations
        self.normalization = normalization
        self.sigmas = [radius * (i + 1) / (2 * rings) for i in range(rings)]
        self.ring_radii = [radius * (i + 1) / rings for i in range(rings)]
        self.offsets = [(0, 0)] + [
            (int(round(r * math.sin(2 * math.pi * j / histograms))),
             int(round(r * math.cos(2 * math.pi * j / histograms))))
            for r in self.ring_radii for j in range(histograms)]

    @property
    def dims(self) -> int:
        return (self.rings * self.histograms + 1) * self.orientations

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n, _, h, w = image.shape
        r = self.radius
        img = symmetric_pad(image.float(), r)
        dx = F.pad(img[..., :, 1:] - img[..., :, :-1], (0, 1))
        dy = F.pad(img[..., 1:, :] - img[..., :-1, :], (0, 0, 0, 1))
        mag = torch.sqrt(dx * dx + dy * dy)
        ori = torch.atan2(dy, dx)
        o = self.orientations
        angles = torch.tensor([2 * k * math.pi / o - math.pi for k in range(o)], device=img.device)
        hist = torch.exp((o / math.pi) * torch.cos(ori - angles.view(1, -1, 1, 1))) * mag  # (N, O, H+2r, W+2r)
        blurred: dict[float, torch.Tensor] = {}
        for s in self.sigmas:  # the centre shares the first ring's sigma
            blurred.setdefault(s, gaussian_blur(hist, s))
        smooth = [blurred[s] for s in [self.sigmas[0]] + self.sigmas]
        parts = [smooth[0][..., r:r + h, r:r + w]]
        ring_of = [i for i in range(self.rings) for _ in range(self.histograms)]
        for (dy_, dx_), ring in zip(self.offsets[1:], ring_of):
            parts.append(smooth[ring + 1][..., r + dy_:r + dy_ + h, r + dx_:r + dx_ + w])
        desc = torch.cat(parts, dim=1) + 1e-10
        if self.normalization == "l1":
            desc = desc / desc.sum(dim=1, keepdim=True)
        elif self.normalization == "l2":
            desc = desc * torch.rsqrt((desc * desc).sum(dim=1, keepdim=True))
        elif self.normalization == "daisy":
            g = desc.reshape(n, -1, o, h, w)
            desc = (g * torch.rsqrt((g * g).sum(dim=2, keepdim=True))).reshape(n, -1, h, w)
        return desc


def joint_bilateral(src: torch.Tensor, guide: torch.Tensor, sigma_s: float = 2.0, sigma_r: float = 0.08,
                    radius: int | None = None) -> torch.Tensor:
    """Joint (cross) bilateral filter of (N, C, H, W) ``src`` guided by (N, 1, H, W) ``guide``.

    Each output pixel is the average of its neighbours within ``radius``
    (2 sigma_s by default) weighted by a spatial Gaussian (sigma_s pixels) and
    a range Gaussian on the guide's difference (sigma_r, guide units): smooths
    the chrominance within regions of similar luminance, not across edges.
    """
    r = int(math.ceil(2 * sigma_s)) if radius is None else radius
    n, c, h, w = src.shape
    k = 2 * r + 1
    d = torch.arange(-r, r + 1, dtype=src.dtype, device=src.device)
    spatial = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma_s**2)).reshape(1, -1, 1)
    g = F.unfold(F.pad(guide, (r, r, r, r), mode="replicate"), k)  # (N, k*k, H*W)
    wgt = spatial * torch.exp(-((g - guide.reshape(n, 1, -1)) ** 2) / (2 * sigma_r**2))
    s = F.unfold(F.pad(src, (r, r, r, r), mode="replicate"), k).reshape(n, c, k * k, -1)
    out = (s * wgt[:, None]).sum(dim=2) / wgt.sum(dim=1, keepdim=True)
    return out.reshape(n, c, h, w)


class Cheng2015(nn.Module):
    def __init__(self, semantic: bool = True, hidden: int = 64, layers: int = 3, patch: int = 7,
                 daisy: Daisy | None = None, refine: bool = True, sigma_s: float = 2.0, sigma_r: float = 0.08,
                 semantic_weight: float = 1.0, semantic_base: int = 16):
        super().__init__()
        self.patch = patch
        self.daisy = daisy or Daisy()
        self.semantic = SemanticUNet(base=semantic_base) if semantic else None
        self.semantic_weight = semantic_weight
        self.refine, self.sigma_s, self.sigma_r = refine, sigma_s, sigma_r
        dims = [self.descriptor_dims] + [hidden] * layers
        mlp: list[nn.Module] = []
        for cin, cout in zip(dims[:-1], dims[1:]):
            mlp += [nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True)]
        mlp.append(nn.Conv2d(dims[-1], 2, 1))
        self.mlp = nn.Sequential(*mlp)

    @property
    def bins(self) -> torch.Tensor:
        """The semantic labeller's ab bins (the trainer measures their prior)."""
        return self.semantic.bins if self.semantic is not None else color.ab_bins(10)

    @property
    def descriptor_dims(self) -> int:
        return self.patch**2 + self.daisy.dims + (SEGMENTS if self.semantic is not None else 0)

    def descriptor(self, l: torch.Tensor, semantic_raw=None) -> torch.Tensor:
        """Per-pixel descriptor (N, D, H, W): luminance patch, DAISY, semantic probabilities."""
        with torch.autocast(l.device.type, enabled=False):
            y = color.l_to_gray(l.float())
            p = self.patch // 2
            patch = F.unfold(F.pad(y, (p, p, p, p), mode="replicate"), self.patch)
            parts = [patch.reshape(y.shape[0], -1, *y.shape[-2:]) - 0.5, self.daisy(y)]
            if semantic_raw is not None:
                parts.append(self.semantic.segment_probabilities(semantic_raw).detach())
            return torch.cat(parts, dim=1)

    def forward(self, l: torch.Tensor) -> dict:
        sem = self.semantic(l) if self.semantic is not None else None
        return {"uv": self.mlp(self.descriptor(l, sem)), "l": l, "semantic": sem}

    def chrominance(self, raw: dict) -> torch.Tensor:
        """Predicted U, V (Cb, Cr), refined by the joint bilateral filter when ``refine``."""
        uv = raw["uv"].float().clamp(-0.5, 0.5)
        if self.refine:
            uv = joint_bilateral(uv, color.l_to_gray(raw["l"].float()), self.sigma_s, self.sigma_r)
        return uv

    def decode(self, raw: dict) -> torch.Tensor:
        y = color.l_to_gray(raw["l"].float())
        return color.rgb_to_lab(color.ycbcr_to_rgb(y, self.chrominance(raw)))[:, 1:]

    def loss(self, raw: dict, ab: torch.Tensor) -> torch.Tensor:
        """Least squares on U, V (+ the semantic labeller's own loss, when present)."""
        y = color.l_to_gray(raw["l"].float())
        target = color.chroma_for_luma(y, ab.float())
        loss = F.mse_loss(raw["uv"].float(), target)
        if self.semantic is not None:
            loss = loss + self.semantic_weight * self.semantic.loss(raw["semantic"], ab)
        return loss

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor) -> None:
        if self.semantic is not None:
            self.semantic.set_prior(counts)

    def load_semantic(self, state: dict[str, torch.Tensor]) -> None:
        """Start the semantic labeller from a trained `semantic_unet` state dict."""
        self.semantic.load_state_dict(state, strict=True)


def cheng2015(**kw) -> Cheng2015:
    return Cheng2015(**kw)
