"""Zhang, Zhu, Isola, Geng, Lin, Yu, Efros, "Real-Time User-Guided Image
Colorization with Learned Deep Priors" (SIGGRAPH 2017), official layout.

The user-guided network with the parameter names and shapes of the official
PyTorch release (``siggraph17-df00044c.pth`` of richzhang/colorization):

* input: normalised L ((L - 50) / 100), the hint ab (ab / 110, zero where
  there is no hint) and the hint mask (1 where a hint is given), 4 channels;
* encoder ``model1`` .. ``model7``: 3x3 convolutions with ReLU then BatchNorm,
  downsampled x2 by taking every other pixel before blocks 2, 3 and 4; blocks
  5 and 6 dilated by 2;
* decoder: three x2 transposed convolutions (``model8up``, ``model9up``,
  ``model10up``), each summed with a 3x3 shortcut from the encoder
  (``model3short8``, ``model2short9``, ``model1short10``), then ReLU and
  convolutions (``model8``, ``model9``, ``model10``, the last with a
  LeakyReLU of slope 0.2);
* ``model_out``: 1x1 convolution and tanh, scaled by 110: the regressed ab.
* ``model_class``: the 529-way classification head over block 8 that the
  official training used; it does not contribute to the output and official
  files may or may not hold it.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


AB_NORM = 110.0
L_CENT, L_NORM = 50.0, 100.0
MASK_CENT = 0.0


def _block(cin: int, cout: int, n: int, *, dilation: int = 1) -> nn.Sequential:
    """n x (3x3 conv, ReLU), then BatchNorm."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=dilation, dilation=dilation, bias=True),
                   nn.ReLU(inplace=True)]
    layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=True))


def _short(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=True))


class SIGGRAPH17(nn.Module):
    #: keys an official file may lack (the training-only classification head).
    optional_state_prefixes = ("model_class.",)

    def __init__(self, classes: int = 529):
        super().__init__()
        self.model1 = _block(4, 64, 2)
        self.model2 = _block(64, 128, 2)
        self.model3 = _block(128, 256, 3)
        self.model4 = _block(256, 512, 3)
        self.model5 = _block(512, 512, 3, dilation=2)
        self.model6 = _block(512, 512, 3, dilation=2)
        self.model7 = _block(512, 512, 3)

        self.model8up = _up(512, 256)
        self.model8 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=True), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=True), nn.ReLU(inplace=True),
            nn.BatchNorm2d(256),
        )
        self.model9up = _up(256, 128)
        self.model9 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, 3, padding=1, bias=True), nn.ReLU(inplace=True),
            nn.BatchNorm2d(128),
        )
        self.model10up = _up(128, 128)
        self.model10 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, 3, padding=1, bias=True), nn.LeakyReLU(0.2),
        )
        # Shortcuts from the encoder into the decoder (declared here for the official key order).
        self.model3short8 = _short(256, 256)
        self.model2short9 = _short(128, 128)
        self.model1short10 = _short(64, 128)
        # Training-only classification head of the official release: unused here.
        self.model_class = nn.Sequential(nn.Conv2d(256, classes, 1, bias=True))
        self.model_class.requires_grad_(False)
        self.model_out = nn.Sequential(nn.Conv2d(128, 2, 1, bias=True), nn.Tanh())

    #: the engine passes `--hints` as ``hint_ab`` and ``hint_mask``.
    takes_hints = True

    def forward(self, l: torch.Tensor, hint_ab: torch.Tensor | None = None,
                hint_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ab (N, 2, h, w) for L (N, 1, h, w) in 0..100; h, w multiples of 8.

        ``hint_ab`` (N, 2, h, w) in ab units and ``hint_mask`` (N, 1, h, w), 1
        where a hint is given, 0 elsewhere; none means no hints.
        """
        if hint_ab is None:
            hint_ab = l.new_zeros(l.shape[0], 2, *l.shape[2:])
        if hint_mask is None:
            hint_mask = l.new_zeros(l.shape[0], 1, *l.shape[2:])
        x = torch.cat(((l - L_CENT) / L_NORM, hint_ab.to(l) / AB_NORM, hint_mask.to(l) - MASK_CENT), dim=1)
        c1 = self.model1(x)
        c2 = self.model2(c1[:, :, ::2, ::2])
        c3 = self.model3(c2[:, :, ::2, ::2])
        x = self.model4(c3[:, :, ::2, ::2])
        x = self.model7(self.model6(self.model5(x)))
        c8 = self.model8(self.model8up(x) + self.model3short8(c3))
        c9 = self.model9(self.model9up(c8) + self.model2short9(c2))
        c10 = self.model10(self.model10up(c9) + self.model1short10(c1))
        return self.model_out(c10) * AB_NORM

    def decode(self, ab: torch.Tensor) -> torch.Tensor:
        """The output is ab already."""
        return ab.float()

    def loss(self, ab_pred: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 (Huber, delta 1 in ab units) regression, as the paper's training."""
        return F.smooth_l1_loss(ab_pred.float(), ab.float().to(ab_pred.device), beta=1.0)


def siggraph17(**kw) -> SIGGRAPH17:
    return SIGGRAPH17(**kw)
