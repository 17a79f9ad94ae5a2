"""Histogram decoders: from per-pixel bin scores to one colour, in one place.

The classification colorizers predict a distribution over bins; the papers
differ in how they turn it into a colour: Zhang et al. take the annealed mean
(`vidcolor.color.annealed_mean`, beside the bins it decodes), Larsson et al. the
expectation over Lab bins, or the median chroma and the circular mean hue.
Every histogram model decodes through these functions.

Conventions: ``logits`` hold the bins on dim 1, as (N, Q) or (N, Q, H, W)
(unnormalised scores; the softmax is taken here, in float32). ``values`` are
what the bins stand for: (Q,) for a 1-D histogram (chroma, hue angle) or
(Q, C) for bin centres in C dimensions (the ab plane). Results have the
shape (N, C, ...), with C = 1 for 1-D values.
"""

from __future__ import annotations

import math

import torch


def _values(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    v = values.to(device=like.device, dtype=torch.float32)
    return v[:, None] if v.ndim == 1 else v


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(N, ..., C) to (N, C, ...)."""
    return x.movedim(-1, 1)


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over the bins of ``logits / temperature``."""
    return torch.softmax(logits.float() / temperature, dim=1)


def expectation(p: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` under the probabilities ``p`` (bins on dim 1)."""
    return torch.einsum("nq...,qc->nc...", p, _values(values, p))


def mode(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The value of the most probable bin."""
    return _channels_first(_values(values, logits)[logits.argmax(dim=1)])


def mean(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The expectation (Larsson et al.'s decoding of Lab histograms)."""
    return expectation(probabilities(logits), values)


def quantile(logits: torch.Tensor, values: torch.Tensor, q: float) -> torch.Tensor:
    """The first bin whose cumulative probability reaches ``q``; 1-D ``values`` in increasing order."""
    v = _values(values, logits)
    if v.shape[1] != 1:
        raise ValueError("quantiles need a 1-D histogram (values of shape (Q,))")
    cdf = probabilities(logits).cumsum(dim=1)
    idx = (cdf < q).sum(dim=1).clamp(max=v.shape[0] - 1)
    return _channels_first(v[idx])


def median(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The median bin (Larsson et al.'s decoding of chroma)."""
    return quantile(logits, values, 0.5)


def sample(logits: torch.Tensor, values: torch.Tensor, temperature: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One value drawn per pixel from the (tempered) distribution."""
    p = probabilities(logits, temperature)
    flat = p.movedim(1, -1).reshape(-1, p.shape[1])
    idx = torch.multinomial(flat, 1, generator=generator).reshape(p.movedim(1, -1).shape[:-1])
    return _channels_first(_values(values, logits)[idx])


def circular_mean(logits: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean direction of a histogram over ``angles`` (radians), and its resultant length.

    The angle is in (-pi, pi] and wraps around: bins at 350 and 10 degrees
    average to 0, not 180. The resultant length (0..1) is 1 for a single bin and
    near 0 for a spread-out histogram (Larsson et al. fade the chroma by it).
    """
    p = probabilities(logits)
    a = _values(angles, p)
    s = expectation(p, torch.sin(a))
    c = expectation(p, torch.cos(a))
    return torch.atan2(s, c), torch.hypot(s, c)


def bin_centres(count: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Centres of ``count`` equal bins over [low, high]."""
    return low + (torch.arange(count, dtype=torch.float32) + 0.5) * (high - low) / count


def hue_angles(count: int) -> torch.Tensor:
    """Centres of ``count`` equal hue bins over the circle, in radians."""
    return bin_centres(count, 0.0, 2 * math.pi)
