"""Thasarathan, Nazeri, Ebrahimi, "Automatic Temporally Coherent Video Colorization" (CRV 2019).

A conditional GAN whose generator sees the current frame's L and the previous
coloured frame, and whose PatchGAN discriminator judges the current colours
under the same two conditions. Trained with the previous frame either the true
one or blank (a fair coin per sample), the generator both starts a shot from
nothing and carries colours forward from its own last output, which is what
makes the video coherent.

Faithful: the extra temporal condition on both networks, the blank/real
previous frame drawn per sample, the spectral-normalised PatchGAN with the
authors' layer pattern (three stride-2 and two stride-1 4x4 convolutions,
leaky ReLU 0.2), tanh output. The training (losses, weights, learning rates,
discriminator schedule) is in `vidcolor.training.train_temporal`.

Differs: the authors' generator is EdgeConnect's (7x7 conv, two stride-2
convs, eight dilated residual blocks at 256 channels, instance norm). Here
it is a small U-Net: widths `WIDTHS` at full, 1/2, 1/4 and 1/8 resolution,
stride-2 convolutions down, bilinear upsampling and concatenated skips up,
one convolution per decoder level, batch norm; about 0.66 GMAC and 25 ms a
frame at 176x240 on one CPU core. Batch norm rather than instance norm
because instance norm would rescale the previous frame's ab away per image,
and a blank previous frame must stay blank. The colours are Lab ab (the L is
the input itself) rather than RGB, so the previous frame is its ab alone and
blank means ab = 0. The discriminator is narrower (`DISC_WIDTHS`).

At inference the previous frame is the model's own last output, ``decode``
of it, before any chroma gain (the calibration in `vidcolor.training.train_temporal`
is measured that way), and None at the first frame of a shot.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


#: ab units that map to +-1 at the generator's tanh output (sRGB's gamut stays within +-110).
AB_SCALE = 110.0
#: generator widths per level: full, 1/2, 1/4 and 1/8 resolution.
WIDTHS = (12, 24, 48, 96)
#: discriminator widths of its first four convolutions (the authors': 64, 128, 256, 512).
DISC_WIDTHS = (32, 64, 128, 128)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TemporalUNet(nn.Module):
    """The generator: (L, previous ab) -> current ab."""

    #: the engine feeds this model its own previous output.
    temporal = True

    def __init__(self, widths=WIDTHS):
        super().__init__()
        w0, w1, w2, w3 = widths
        # Strided convolutions rather than pooling: cheaper at inference than conv + pool.
        self.enc0 = _conv(3, w0)
        self.enc1 = nn.Sequential(_conv(w0, w1, 2), _conv(w1, w1))
        self.enc2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))
        self.enc3 = nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3), _conv(w3, w3))
        self.up2 = nn.Conv2d(w3, w2, 1)
        self.dec2 = _conv(2 * w2, w2)
        self.up1 = nn.Conv2d(w2, w1, 1)
        self.dec1 = _conv(2 * w1, w1)
        self.up0 = nn.Conv2d(w1, w0, 1)
        self.dec0 = _conv(2 * w0, w0)
        self.out = nn.Conv2d(w0, 2, 3, padding=1)

    @staticmethod
    def _up(x: torch.Tensor, proj: nn.Module, like: torch.Tensor) -> torch.Tensor:
        # Project first, then upsample: the 1x1 conv runs at the coarse size.
        return F.interpolate(proj(x), size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, l: torch.Tensor, prev_ab: torch.Tensor | None = None) -> torch.Tensor:
        """tanh output (N,2,h,w) in -1..1 for L (N,1,h,w) in 0..100 and the previous
        frame's ab (N,2,h,w) in Lab units, or None for a blank one; h, w multiples of 8."""
        if prev_ab is None:
            prev_ab = torch.zeros_like(l).expand(-1, 2, -1, -1)
        x = torch.cat(((l - 50.0) / 50.0, prev_ab.to(l.dtype) / AB_SCALE), dim=1)
        s0 = self.enc0(x)
        s1 = self.enc1(s0)
        s2 = self.enc2(s1)
        x = self.enc3(s2)
        x = self.dec2(torch.cat((self._up(x, self.up2, s2), s2), dim=1))
        x = self.dec1(torch.cat((self._up(x, self.up1, s1), s1), dim=1))
        x = self.dec0(torch.cat((self._up(x, self.up0, s0), s0), dim=1))
        return torch.tanh(self.out(x))

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.float() * AB_SCALE

    def loss(self, raw: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """The L1 term of the objective (unweighted), in the tanh output's units."""
        return F.l1_loss(raw.float(), ab.float() / AB_SCALE)


def _sn_conv(cin: int, cout: int, stride: int) -> nn.Module:
    # No bias under spectral norm, as in the authors' code.
    return nn.utils.parametrizations.spectral_norm(nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=False))


class PatchDiscriminator(nn.Module):
    """PatchGAN over (L, previous ab, current ab): one real/fake logit per patch.

    Returns logits; the authors' sigmoid lives in the loss (BCE with logits,
    the same function, numerically safer).
    """

    def __init__(self, widths=DISC_WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 5
        for i, w in enumerate(widths):
            layers += [_sn_conv(cin, w, 2 if i < 3 else 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = w
        layers.append(_sn_conv(cin, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, l: torch.Tensor, prev_ab: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Logits (N,1,h',w') about ``ab`` being true colours; ab in Lab units."""
        x = torch.cat(((l - 50.0) / 50.0, prev_ab / AB_SCALE, ab / AB_SCALE), dim=1)
        return self.net(x)


def temporal_unet(**kw) -> TemporalUNet:
    return TemporalUNet(**kw)
