"""Colour math on tensors, on whatever device the tensors live.

Conventions: RGB is gamma-encoded sRGB in 0..1 with channels on dim -3;
CIE Lab uses the D65 white, L in 0..100 and a, b in their usual units.
Video luma Y' and chroma Cb, Cr are normalised to 0..1 and -0.5..0.5.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# sRGB primaries, D65 white (IEC 61966-2-1).
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE = (0.950456, 1.0, 1.088754)
_EPS = 6.0 / 29.0

# Luma coefficients (Kr, Kb) of the matrices a video may be tagged with.
MATRICES = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    # The curve is the smaller of its two pieces (the power piece, held at the knee below it,
    # lies above the line there; above the knee the line is steeper), so one minimum replaces
    # torch.where; exp(log) vectorises where a fractional pow does not (this function was over a
    # third of chroma_for_luma's time, itself a fifth of the default model stage's on the CPU).
    x = x.clamp(0.0, 1.0)
    curve = x.clamp(min=0.0031308).log_().mul_(1 / 2.4).exp_().mul_(1.055).sub_(0.055)
    return torch.minimum(curve, x * 12.92)


def _f(t: torch.Tensor) -> torch.Tensor:
    # The line is the cube root's tangent at the knee, so the cube root (concave) lies under it
    # above the knee and, held at the knee's value, over it below: the minimum is the curve.
    return torch.minimum(t.clamp(min=_EPS**3).pow_(1 / 3), t / (3 * _EPS**2) + 4 / 29)


def _f_inv(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _EPS, t**3, 3 * _EPS**2 * (t - 4 / 29))


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    lin = srgb_to_linear(rgb)
    xyz = torch.einsum("ij,...jhw->...ihw", _matrix(_XYZ_FROM_RGB, rgb), lin)
    xyz = xyz / _matrix(_WHITE, rgb)[:, None, None]
    fx, fy, fz = _f(xyz).unbind(-3)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab to sRGB in 0..1; out-of-gamut colours are clipped."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    xyz = torch.stack((_f_inv(fy + a / 500), _f_inv(fy), _f_inv(fy - b / 200)), dim=-3)
    return linear_to_srgb(torch.einsum("ij,...jhw->...ihw", _rgb_from_white_xyz(lab), xyz))


def gray_to_l(y: torch.Tensor) -> torch.Tensor:
    """L of the neutral grey whose sRGB value is ``y`` (0..1).

    The rows of the sRGB matrix sum to the white point, so a grey's relative
    luminance is its linear value: a frame's luma read as a grey gives the L
    the model is trained on.
    """
    return 116 * _f(srgb_to_linear(y)) - 16


def luma(rgb: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    kr, kb = MATRICES[matrix]
    r, g, b = rgb.unbind(-3)
    return (kr * r + (1 - kr - kb) * g + kb * b).unsqueeze(-3)


def rgb_to_chroma(rgb: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """Cb, Cr (each -0.5..0.5) of gamma-encoded RGB."""
    kr, kb = MATRICES[matrix]
    y = luma(rgb, matrix)
    r, _, b = rgb.unbind(-3)
    return torch.cat(((b.unsqueeze(-3) - y) / (2 * (1 - kb)), (r.unsqueeze(-3) - y) / (2 * (1 - kr))), dim=-3)


def _chroma_offsets(cbcr: torch.Tensor, matrix: str) -> torch.Tensor:
    """R', G', B' minus luma for the given chroma."""
    kr, kb = MATRICES[matrix]
    cb, cr = cbcr.unbind(-3)
    dr, db = 2 * (1 - kr) * cr, 2 * (1 - kb) * cb
    return torch.stack((dr, -(kr * dr + kb * db) / (1 - kr - kb), db), dim=-3)


def fit_chroma(y: torch.Tensor, cbcr: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """Chroma scaled down, per pixel, until luma + chroma is a displayable RGB colour.

    Near black or white only faint colours exist; chroma beyond them is clipped
    by the player channel by channel, which shifts hue and brightness (the
    violet and red casts of dark areas). Scaling keeps the hue and the luma.
    """
    return cbcr * _headroom(y, _chroma_offsets(cbcr, matrix))


def _headroom(y: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The largest scale (at most 1) of channel offsets ``d`` from luma ``y`` that stays in 0..1."""
    room = torch.where(d > 0, 1 - y, y).div_(d.abs().clamp_(min=1e-12))
    return room.amin(dim=-3, keepdim=True).clamp_(0, 1)


def ycbcr_to_rgb(y: torch.Tensor, cbcr: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """RGB of luma and chroma; chroma out of gamut gives up saturation, never luma."""
    return (y + _chroma_offsets(fit_chroma(y, cbcr, matrix), matrix)).clamp(0.0, 1.0)


def chroma_for_luma(y: torch.Tensor, ab: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """Video chroma that, joined with luma ``y``, shows the predicted ``ab``.

    ``y`` and ``ab`` must have the same spatial size (the chroma plane's).
    The colour is built at the luma's own lightness, then only its chroma is
    kept: the luma plane of the output stays the input's, bit for bit.
    """
    # lab_to_rgb(gray_to_l(y), ab), rgb_to_chroma and fit_chroma, in fewer passes: the grey's
    # relative luminance (Y, white 1) is its linear value, so Y needs no round trip through L,
    # and the chroma offsets fit_chroma needs are the colour minus its own luma.
    kr, kb = MATRICES[matrix]
    lum = srgb_to_linear(y)
    fy = _f(lum)
    xyz = torch.cat((_f_inv(fy + ab[..., :1, :, :] / 500), lum, _f_inv(fy - ab[..., 1:, :, :] / 200)), dim=-3)
    rgb = linear_to_srgb(torch.einsum("ij,...jhw->...ihw", _rgb_from_white_xyz(y), xyz))
    d = rgb - luma(rgb, matrix)
    cbcr = torch.cat((d[..., 2:, :, :] / (2 * (1 - kb)), d[..., :1, :, :] / (2 * (1 - kr))), dim=-3)
    return cbcr.mul_(_headroom(y, d))


def _rgb_from_white_xyz(like: torch.Tensor) -> torch.Tensor:
    """Linear RGB from XYZ divided by the white point (the white folded into the inverse matrix)."""
    m = torch.linalg.inv(torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)) * torch.tensor(_WHITE, dtype=torch.float64)
    return m.to(like.device, like.dtype)


@functools.lru_cache(maxsize=None)
def _gamut_bins(grid: int) -> tuple[tuple[float, float], ...]:
    """Centres of the ab grid cells that hold a displayable sRGB colour.

    Zhang et al. keep the cells of a grid of size 10 that are in gamut; we
    derive them by sampling the sRGB cube densely rather than shipping a table.
    """
    steps = torch.linspace(0, 1, 128, dtype=torch.float64)
    r, g, b = torch.meshgrid(steps, steps, steps, indexing="ij")
    rgb = torch.stack((r, g, b)).reshape(3, -1, 1)
    ab = rgb_to_lab(rgb)[1:].reshape(2, -1)
    q = torch.round(ab / grid).to(torch.int64) + 1024
    # one sort of int64 keys (a major, b minor: the order of unique(dim=1)), 9x faster than unique over columns
    keys = torch.unique(q[0] * 2048 + q[1])
    return tuple((float((k // 2048 - 1024) * grid), float((k % 2048 - 1024) * grid)) for k in keys.tolist())


def ab_bins(grid: int = 10) -> torch.Tensor:
    """(Q, 2) tensor of in-gamut ab bin centres."""
    return torch.tensor(_gamut_bins(grid), dtype=torch.float32)


def nearest_bins(ab: torch.Tensor, bins: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices of the ``k`` bins nearest each pixel of (N,2,H,W) ``ab``."""
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d = torch.cdist(flat, bins.to(ab))
    dist, idx = d.topk(k, dim=1, largest=False)
    return dist, idx


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, k: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """Soft targets of Zhang et al.: Gaussian weights over the k nearest bins.

    Returns (N, Q, H, W) with rows summing to one.
    """
    n, _, h, w = ab.shape
    dist, idx = nearest_bins(ab, bins, k)
    weight = torch.softmax(-(dist**2) / (2 * sigma**2), dim=1)
    target = torch.zeros(dist.shape[0], bins.shape[0], dtype=ab.dtype, device=ab.device)
    target.scatter_(1, idx, weight)
    return target.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def smoothed_prior(counts: torch.Tensor, bins: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Empirical bin distribution smoothed by a Gaussian in ab space, as in the paper."""
    p = counts.double() / counts.sum().clamp(min=1)
    d2 = torch.cdist(bins.double(), bins.double()) ** 2
    kernel = torch.exp(-d2 / (2 * sigma**2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    return (kernel.T @ p).float()


def rebalance_weights(prior: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Class weights w ∝ ((1-λ)p + λ/Q)^-1, normalised so that E_p[w] = 1."""
    q = prior.numel()
    w = 1.0 / ((1 - lam) * prior + lam / q)
    return w / (prior * w).sum()


def rebalanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, prior: torch.Tensor,
                             lam: float = 0.5) -> torch.Tensor:
    """Zhang et al.'s class-rebalanced cross-entropy of (N,Q,H,W) bin logits against soft targets
    (`soft_encode`): each pixel weighted by `rebalance_weights` of its most likely true bin, so rare,
    saturated colours count as much as the common dull ones."""
    pixel_weight = rebalance_weights(prior, lam)[target.argmax(dim=1)]
    ce = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    return (pixel_weight * ce).mean()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Zhang et al.'s decoding of bin logits (N,Q,...) to ab (N,C,...) with ``bins`` (Q,C): the mean
    of the distribution sharpened by ``temperature`` (1 = plain mean, towards 0 = the mode)."""
    p = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nq...,qc->nc...", p, bins.to(p))


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=mode != "nearest")


def l_to_gray(l: torch.Tensor) -> torch.Tensor:
    """The sRGB value (0..1) of the neutral grey of lightness ``l``: the inverse of `gray_to_l`."""
    return linear_to_srgb(_f_inv((l + 16) / 116))


def rgb_to_hue_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """HSV hue (0..1, 0 for greys) and chroma max - min (0..1) of gamma-encoded RGB.

    The hue/chroma space of Larsson et al.'s colorizer (their "HCV" layer).
    """
    r, g, b = rgb.unbind(-3)
    hi = torch.maximum(torch.maximum(r, g), b)
    chroma = hi - torch.minimum(torch.minimum(r, g), b)
    safe = chroma.clamp(min=1e-12)
    sector = torch.where(hi == r, (g - b) / safe, torch.where(hi == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(chroma > 0, torch.remainder(sector / 6, 1.0), torch.zeros_like(sector))
    return torch.stack((hue, chroma), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Gamma-encoded RGB of HSV (hue 0..1, saturation, value) with channels on dim -3."""
    h, s, v = hsv.unbind(-3)
    out = []
    for n in (5, 3, 1):  # R, G, B
        k = torch.remainder(n + 6 * h, 6)
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(out, dim=-3)
