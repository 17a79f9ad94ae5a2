"""Sample codes <-> normalised planes, shared by the front ends that hold raw planes.

The CLI engine, the y4m pipe and the VapourSynth filter read luma codes,
hand the colorizer luma in 0..1 and write chroma codes back. Integer samples
follow BT.601/709/2020 quantisation: limited range puts Y on 16..235 and
Cb/Cr on 16..240 (scaled by 2^(bits-8)), full range on 0..2^bits-1 with
neutral chroma at 2^(bits-1).
"""

from __future__ import annotations

import numpy as np
import torch

# Coefficients the colour module knows, by H.273 MatrixCoefficients code.
MATRIX_CODES = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
MATRIX_OF_NAME = {"bt709": 1, "bt601": 6, "bt2020": 9}


def default_matrix(height: int) -> str:
    """The matrix of untagged video, as the CLI engine assumes it: BT.709 from 720 lines up."""
    return "bt709" if height >= 720 else "bt601"


def code_dtype(bits: int):
    return np.uint16 if bits > 8 else np.uint8


def luma_unit(codes: np.ndarray, bits: int, full: bool) -> torch.Tensor:
    """Luma (N,1,H,W) float32 in 0..1 from integer Y codes (N,H,W)."""
    y = torch.from_numpy(np.ascontiguousarray(codes).astype(np.float32))[:, None]
    if full:
        y = y / ((1 << bits) - 1)
    else:
        s = 1 << (bits - 8)
        y = (y - 16 * s) / (219 * s)
    return y.clamp_(0.0, 1.0)


def chroma_codes(cbcr: torch.Tensor, bits: int, full: bool) -> np.ndarray:
    """Integer Cb, Cr codes (N,2,h,w) from chroma in -0.5..0.5, rounded and clipped to the range."""
    peak = (1 << bits) - 1
    s = 1 << (bits - 8)
    if full:
        mid, scale, lo, hi = 1 << (bits - 1), peak, 0, peak
    else:
        mid, scale, lo, hi = 128 * s, 224 * s, 16 * s, 240 * s
    codes = (cbcr.float() * scale + mid).round_().clamp_(lo, hi)
    return codes.to("cpu", torch.int32).numpy().astype(code_dtype(bits))


def unit_codes(x: torch.Tensor, bits: int) -> np.ndarray:
    """Full-range integer codes of values in 0..1 (RGB planes)."""
    peak = (1 << bits) - 1
    return (x.float() * peak).round_().clamp_(0, peak).to("cpu", torch.int32).numpy().astype(code_dtype(bits))


def colorize_codes(colorizer, y_codes: np.ndarray, chroma_size: tuple[int, int], bits: int, full: bool,
                   matrix: str) -> np.ndarray:
    """New Cb, Cr codes (N,2,h,w) for integer luma codes (N,H,W): the whole round trip."""
    y = luma_unit(y_codes, bits, full)
    return chroma_codes(colorizer.chroma(y, chroma_size, matrix), bits, full)


#: mean distance of Cb and Cr from neutral, in 8-bit codes, above which a frame has colour of its own
#: (a grayscale encode stays within about 1; photographs are at 5 to 20).
COLOUR_CODES = 4.0


def has_colour(cb: np.ndarray, cr: np.ndarray, bits: int) -> bool:
    """Whether integer Cb, Cr planes are far from neutral: the picture already has colour."""
    mid, s = 1 << (bits - 1), 1 << (bits - 8)
    # every 4th sample each way: the mean is the same, at a 16th of the cost
    d = sum(np.abs(p[::4, ::4].astype(np.float32) - mid).mean() for p in (cb, cr)) / 2
    return bool(d / s > COLOUR_CODES)
