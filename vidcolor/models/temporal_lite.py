"""The default's network carrying colour from frame to frame (the previous frame's ab as input).

Thasarathan, Nazeri and Ebrahimi (CRV 2019) make video colour coherent by
giving the generator the previous coloured frame besides the current L; this
model does the same on `lite_unet`, the per-frame default with the
ImageNet-pretrained EfficientNet-Lite0 encoder, and is started from its
trained weights. The per-frame network is kept whole (encoder, decoder, both
heads, same tensor names) and so is its default colour (``head="adaptive"``:
the regression moved towards the bins' colour where they are confident); a
small temporal head at the decoder's finest scale (stride 2) sees

* the decoder's 32 feature maps and the per-frame ab there,
* the previous frame's ab (area-downsampled to stride 2) and its difference
  to the per-frame ab,
* a validity mask: 1 where a previous frame is given, 0 at the first frame of
  a shot (the engine drops the history at detected cuts and size changes),

and answers, per pixel, how much of the previous frame's colour to keep, g in 0..1:

    ab = ab_frame + valid * g * (ab_prev - ab_frame)

so the output is always between the frame's own colour and the history's
and cannot drift away from both (a free correction term besides g, in a
first 170-step run, let the chroma grow along a shot: mean |ab| from 1.7 to
3.2 over 12 frames of a held-out photo).

Its dilated convolutions (1, 2, 4, 1, then the 3x3 output layer) see 19
positions at stride 2 (38 working pixels) across, so a colour that moved a
few pixels can be told from one that flickered. The last convolution starts at zero, so before training
the model is `lite_unet` exactly, and without a previous frame it stays so
after training: the first frame of every shot is the default's colour.
Training (`vidcolor.training.train_recurrent`) fits the temporal head on
sequences coloured by the model itself, frame after frame, as the engine runs
it.

Differs from the paper: no GAN (the per-frame colour is the default's, trained
by regression); the history is the model's own output in training too (the
paper's true-or-blank previous frame let the first `temporal_unet` drift when
fed its own colours); Lab ab rather than RGB. The output is Lab ab at the
working size; the engine keeps the source's luma.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .lite_unet import AB_SCALE, DECODER, LiteUNet

#: width of the temporal head's convolutions and their dilations.
HEAD_WIDTH = 32
DILATIONS = (1, 2, 4, 1)


class TemporalLite(LiteUNet):
    """(L, previous ab or None) -> current ab; `lite_unet` plus a zero-started temporal head."""

    #: the engine feeds this model its own previous output.
    temporal = True
    #: the per-frame registry model whose weights training starts from (`start_from`).
    base = "lite_unet"

    def __init__(self, variant: str = "efficientnet-lite0", width: int = HEAD_WIDTH):
        # decode() reads the blended ab as a regression; the per-frame colour is lite_unet's adaptive one
        super().__init__(variant, head="regression")
        layers: list[nn.Module] = []
        cin = DECODER[-1] + 7
        for d in DILATIONS:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            cin = width
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.temporal_head = nn.Sequential(*layers)
        nn.init.zeros_(self.temporal_head[-1].weight)
        nn.init.zeros_(self.temporal_head[-1].bias)

    def forward(self, l: torch.Tensor, prev_ab: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Raw outputs at half the size of L (N, 1, h, w) in 0..100.

        ``prev_ab``: the previous frame's ab (N, 2, any size) in Lab units, or None at a
        shot's first frame; ``valid`` (N,): which samples have one (training mixes both).
        """
        return self.temporal_step(self.decoder_features(l), l, prev_ab, valid)  # LiteUNet's decoder

    def temporal_step(self, x: torch.Tensor, l: torch.Tensor, prev_ab: torch.Tensor | None,
                      valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """lite_unet's colour (`frame_ab`) and the temporal head on decoder features ``x`` (`decoder_features`)."""
        frame = self.frame_ab(x)
        n, _, h, w = frame.shape
        if prev_ab is None:
            prev = frame.new_zeros(n, 2, h, w)
            mask = frame.new_zeros(n, 1, 1, 1)
        else:
            prev = F.interpolate(prev_ab.to(frame.dtype), size=(h, w), mode="area") / AB_SCALE
            mask = (frame.new_ones(n) if valid is None else valid.to(frame.dtype)).view(n, 1, 1, 1)
            prev = prev * mask
        ref = frame.detach().clamp(-1.0, 1.0)  # the colour the engine shows, as the history is
        inputs = torch.cat((x, ref, prev, (prev - ref) * mask, mask.expand(n, 1, h, w)), dim=1)
        z = self.temporal_head(inputs)
        # g = z clipped to 0..1, its gradient z's (straight through): at z = 0, where training starts,
        # a clip's gradient would be zero and the head would never move.
        gate = z + (z.clamp(0.0, 1.0) - z).detach()
        ab = frame + mask * gate * (prev - ref)
        return {"ab": ab, "frame": frame, "l": l}

    def frame_ab(self, x: torch.Tensor) -> torch.Tensor:
        """lite_unet's default colour (``head="adaptive"``) on decoder features ``x``, in regression units."""
        ab = self.confident_mix(self.regression_ab(self.regress(x)), self.pooled_logits(x).float()) / AB_SCALE
        return ab.to(x.dtype)

    def loss(self, raw: dict[str, torch.Tensor], ab: torch.Tensor) -> torch.Tensor:
        """lite_unet's regression term (smooth L1 on ab / 110) on the output; the temporal
        term of training needs two frames and lives in the trainer."""
        ab = F.interpolate(ab.float(), size=raw["ab"].shape[-2:], mode="area")
        return F.smooth_l1_loss(raw["ab"].float(), ab / AB_SCALE, beta=0.05)

    def losses(self, raw: dict[str, torch.Tensor], ab: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"regression": self.loss(raw, ab)}

    @torch.no_grad()
    def start_from(self, frame_state: dict[str, torch.Tensor]) -> None:
        """Take a trained `lite_unet` state dict: every tensor of this model but the temporal head's,
        whose last layer stays at zero (the model then colours as lite_unet does)."""
        own = self.state_dict()
        missing = [k for k in own if not k.startswith("temporal_head.") and k not in frame_state]
        if missing:
            raise KeyError(f"not a lite_unet state: {len(missing)} tensors missing, e.g. {missing[0]}")
        for k, v in own.items():
            if not k.startswith("temporal_head."):
                if frame_state[k].shape != v.shape:
                    raise ValueError(f"{k}: shape {tuple(frame_state[k].shape)}, this model's {tuple(v.shape)}")
                v.copy_(frame_state[k])
        nn.init.zeros_(self.temporal_head[-1].weight)
        nn.init.zeros_(self.temporal_head[-1].bias)


def temporal_lite(**kw) -> TemporalLite:
    return TemporalLite(**kw)
