"""Larsson, Maire, Shakhnarovich, "Learning Representations for Automatic Colorization" (ECCV 2016).

A VGG-16 backbone over the grey image (here trained from scratch) with
batch normalisation; at a pixel, its *hypercolumn* concatenates the
activations of every layer there (the input, conv1_1 .. conv5_3, fc6 and fc7
as convolutions), bilinearly interpolated from each layer's resolution. A
per-pixel head (one fully connected layer, ReLU, dropout) predicts colour
histograms:

* ``variant="lab"`` (`larsson2016`): a distribution over the ab bins, decoded
  by its expectation;
* ``variant="hc"`` (`larsson2016-hc`, the paper's main model): 32-bin
  histograms of hue and of chroma in the HSV-derived hue/chroma space of the
  authors' code (hue = HSV hue, chroma = max - min of RGB); decoded with the
  median chroma and the circular expectation of hue, the chroma faded where
  the hue histogram is spread out ("expectation-cf" in the authors' code), and
  the colour re-formed at the input's grey level.

Training is sparse, as in the paper: the hypercolumns of 128 random pixels per
image are extracted and only those go through the head; the targets are the
histograms of the 7x7 patch around each sampled pixel; the loss is the KL
divergence, for hue/chroma weighted as in the authors' training net (hue by
the pixel's chroma, x5; chroma by 3 min(g, 1/3, 1 - g) of the grey level g).
Inference is dense: the head runs on a grid of stride ``dense_stride``
(4 by default), through the identity fc1(interp(f)) = interp(fc1 part * f)
that lets each layer be projected at its own resolution; the logits (hc) or
ab (lab) are upsampled to the input size bilinearly.

Faithful: VGG-16 layout with BN, the hypercolumn over all layers, the
sparse training with 7x7 patch-histogram targets and 128 samples, KL loss and
its weights, 32-bin hue/chroma histograms with the paper's decodings,
dropout 0.5 on fc6, fc7 and the head.

Differs:
* Widths are a quarter of VGG-16's for the convolutions and the head (256
  units instead of 1024), an eighth for fc6 and fc7 (512 instead of 4096);
  the backbone is trained from scratch on our data, not initialised from
  ImageNet.
* The Lab variant uses the in-gamut ab bins of grid 10 (`color.ab_bins`,
  shared with Zhang et al.), not the paper's own Lab binning.
* The grey input is the frame's luma (the paper: the mean of R, G, B);
  decoding returns Lab ab for the pipeline.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .. import color
from . import decoders

VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
FC = 4096
HIDDEN = 1024
SAMPLES = 128
PATCH = 7
HC_BINS = 32
HUE_WEIGHT, CHROMA_WEIGHT = 5.0, 1.0
#: the hue histogram's mean resultant length per bin below which chroma fades (authors' code).
FADE = 0.03
GREY_MEAN = 0.4488


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def kl_divergence(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) over the last dim."""
    return (torch.xlogy(target, target) - target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def patch_histograms(idx: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, bins: int, size: int = PATCH):
    """Histograms (N, P, bins) of the bin indices ``idx`` (N, H, W) over the ``size`` x ``size``
    patches centred on the pixels (ys, xs) (N, P); pixels outside the image are not counted."""
    n, h, w = idx.shape
    r = size // 2
    padded = F.pad(idx + 1, (r, r, r, r))  # 0 marks "outside"
    d = torch.arange(size, device=idx.device)
    yy = ys[..., None, None] + d[:, None]  # window rows in padded coordinates
    xx = xs[..., None, None] + d[None, :]
    flat = (yy * (w + 2 * r) + xx).reshape(n, -1)
    v = padded.reshape(n, -1).gather(1, flat).reshape(n, ys.shape[1], -1)
    hist = torch.zeros(n, ys.shape[1], bins, device=idx.device)
    hist.scatter_add_(2, (v - 1).clamp(min=0), (v > 0).float())
    return hist / hist.sum(dim=-1, keepdim=True).clamp(min=1)


class Larsson2016(nn.Module):
    def __init__(self, variant: str = "lab", scale: float = 0.25, fc_scale: float = 0.125, samples: int = SAMPLES,
                 patch: int = PATCH, dense_stride: int = 4, hc_bins: int = HC_BINS, dropout: float = 0.5):
        super().__init__()
        if variant not in ("lab", "hc"):
            raise ValueError(f"unknown Larsson variant {variant!r}; 'lab' or 'hc'")
        self.variant, self.samples, self.patch, self.dense_stride = variant, samples, patch, dense_stride
        self.hc_bins = hc_bins
        s = lambda c: max(1, round(c * scale))  # noqa: E731
        blocks, cin, channels, strides = [], 1, [1], [1]
        for b, widths in enumerate(VGG16):
            convs = []
            for width in widths:
                convs.append(_conv_bn_relu(cin, s(width)))
                cin = s(width)
                channels.append(cin)
                strides.append(2**b)
            blocks.append(nn.ModuleList(convs))
        self.blocks = nn.ModuleList(blocks)
        fc = max(1, round(FC * fc_scale))
        self.fc6 = _conv_bn_relu(cin, fc, 7)
        self.fc7 = _conv_bn_relu(fc, fc, 1)
        channels += [fc, fc]
        strides += [32, 32]
        self.channels, self.strides = channels, strides
        self.drop = nn.Dropout(dropout)
        hidden = s(HIDDEN)
        self.fc1 = nn.Linear(sum(channels), hidden)
        if variant == "lab":
            self.register_buffer("bins", color.ab_bins(10))
            self.out = nn.Linear(hidden, self.bins.shape[0])
        else:
            self.hue = nn.Linear(hidden, hc_bins)
            self.chroma = nn.Linear(hidden, hc_bins)

    # -- backbone --------------------------------------------------------------------------
    def forward(self, l: torch.Tensor) -> dict:
        """The hypercolumn layers (input, every conv, fc6, fc7) for L (N, 1, h, w), h, w >= 32."""
        x = color.l_to_gray(l) - GREY_MEAN
        layers = [x]
        for b, block in enumerate(self.blocks):
            if b:
                x = F.max_pool2d(x, 2)
            for conv in block:
                x = conv(x)
                layers.append(x)
        x = self.drop(self.fc6(F.max_pool2d(x, 2)))
        layers.append(x)
        x = self.drop(self.fc7(x))
        layers.append(x)
        return {"layers": layers, "l": l}

    # -- hypercolumn head -----------------------------------------------------------------
    def hidden_sparse(self, layers, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Head activations (N, P, hidden) at the input positions (ys, xs) (N, P), in pixels
        (integers are pixel centres; fractional positions interpolate)."""
        h, w = layers[0].shape[-2:]
        grid = torch.stack(((xs.float() + 0.5) / w * 2 - 1, (ys.float() + 0.5) / h * 2 - 1), dim=-1)[:, None]
        cols = [F.grid_sample(f.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]
                for f in layers]
        columns = torch.cat(cols, dim=1).transpose(1, 2)  # (N, P, D)
        return self.drop(F.relu(self.fc1(columns)))

    def hidden_dense(self, layers, size: tuple[int, int]) -> torch.Tensor:
        """Head activations (N, hidden, *size) on a ``size`` grid over the input."""
        weight = self.fc1.weight.float()
        acc, start = None, 0
        for f in layers:
            f = f.float()
            k = weight[:, start:start + f.shape[1], None, None]
            start += f.shape[1]
            if f.shape[-2] * f.shape[-1] > size[0] * size[1]:  # sample first: fewer pixels to project
                term = F.conv2d(F.interpolate(f, size=size, mode="bilinear", align_corners=False), k)
            else:
                term = F.interpolate(F.conv2d(f, k), size=size, mode="bilinear", align_corners=False)
            acc = term if acc is None else acc + term
        return self.drop(F.relu(acc + self.fc1.bias.float()[None, :, None, None]))

    def _dense_logits(self, raw: dict) -> list[torch.Tensor]:
        h, w = raw["l"].shape[-2:]
        s = self.dense_stride
        hidden = self.hidden_dense(raw["layers"], (math.ceil(h / s), math.ceil(w / s)))
        heads = [self.out] if self.variant == "lab" else [self.hue, self.chroma]
        return [F.conv2d(hidden, head.weight.float()[:, :, None, None], head.bias.float()) for head in heads]

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, raw: dict) -> torch.Tensor:
        size = raw["l"].shape[-2:]
        if self.variant == "lab":
            (logits,) = self._dense_logits(raw)
            ab = decoders.mean(logits, self.bins)
            return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)
        hue, chroma = (F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                       for x in self._dense_logits(raw))
        return self.hue_chroma_to_ab(hue, chroma, color.l_to_gray(raw["l"].float()))

    def hue_chroma(self, hue_logits: torch.Tensor, chroma_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hue (0..1) by circular expectation and chroma by median, faded where the hue
        histogram is spread out (the authors' "median" / "expectation-cf")."""
        q = self.hc_bins
        angle, resultant = decoders.circular_mean(hue_logits, decoders.hue_angles(q))
        hue = torch.remainder(angle / (2 * math.pi), 1.0)
        fade = (resultant / (FADE * q)).clamp(max=1.0)
        return hue, decoders.median(chroma_logits, decoders.bin_centres(q)) * fade

    def hue_chroma_to_ab(self, hue_logits: torch.Tensor, chroma_logits: torch.Tensor,
                         grey: torch.Tensor) -> torch.Tensor:
        """The authors' image formation: HSV of the decoded hue and chroma at the grey level
        ``grey`` (N, 1, H, W, 0..1), lightness matched to it; returned as Lab ab."""
        hue, chroma = self.hue_chroma(hue_logits, chroma_logits)
        value = grey + chroma / 2
        saturation = 2 * chroma / (2 * grey + chroma).clamp(min=1e-6)
        rgb = color.hsv_to_rgb(torch.cat((hue, saturation, value), dim=1).clamp(0, 1)).clamp(0, 1)
        rgb = (rgb - rgb.mean(dim=1, keepdim=True) + grey).clamp(0, 1)
        return color.rgb_to_lab(rgb)[:, 1:]

    # -- training ---------------------------------------------------------------------------
    def loss(self, raw: dict, ab: torch.Tensor) -> torch.Tensor:
        """KL divergence of the head at ``samples`` random pixels per image to 7x7 patch histograms."""
        l = raw["l"].float()
        ab = ab.float()
        n, _, h, w = l.shape
        ys = torch.randint(0, h, (n, self.samples), device=l.device)
        xs = torch.randint(0, w, (n, self.samples), device=l.device)
        hidden = self.hidden_sparse(raw["layers"], ys, xs)
        at = ys * w + xs
        if self.variant == "lab":
            _, idx = color.nearest_bins(ab, self.bins, 1)
            target = patch_histograms(idx.reshape(n, h, w), ys, xs, self.bins.shape[0], self.patch)
            return kl_divergence(target, self.out(hidden)).mean()
        rgb = color.lab_to_rgb(torch.cat((l, ab), dim=1))
        hue, chroma = color.rgb_to_hue_chroma(rgb).unbind(1)
        q = self.hc_bins
        hue_t = patch_histograms((hue * q).long().clamp(0, q - 1), ys, xs, q, self.patch)
        chroma_t = patch_histograms((chroma * q).long().clamp(0, q - 1), ys, xs, q, self.patch)
        grey = color.l_to_gray(l).reshape(n, -1).gather(1, at)
        hue_w = chroma.reshape(n, -1).gather(1, at)
        chroma_w = 3 * torch.minimum(torch.minimum(grey, torch.full_like(grey, 1 / 3)), 1 - grey)
        return (HUE_WEIGHT * (hue_w * kl_divergence(hue_t, self.hue(hidden))).mean()
                + CHROMA_WEIGHT * (chroma_w * kl_divergence(chroma_t, self.chroma(hidden))).mean())


def larsson2016(**kw) -> Larsson2016:
    return Larsson2016(variant="lab", **kw)


def larsson2016_hc(**kw) -> Larsson2016:
    return Larsson2016(variant="hc", **kw)
