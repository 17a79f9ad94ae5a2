"""Frames as the temporal pieces see them: one 2-D luma plane, in 0..1."""

from __future__ import annotations

import numpy as np
import torch


def as_plane(frame) -> np.ndarray:
    """A 2-D numpy view of one luma frame given as numpy or torch, (H,W), (1,H,W) or (1,1,H,W)."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().to("cpu").numpy()
    a = np.asarray(frame)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected one luma plane shaped (H, W), got an array shaped {np.shape(frame)}")
    return a


def unit_float(a: np.ndarray, peak: float | None = None) -> np.ndarray:
    """float32 0..1 (integers divided by ``peak`` or their dtype's maximum; floats kept)."""
    if peak is None:
        peak = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    out = a.astype(np.float32, copy=False)
    if peak != 1.0:
        out = out * np.float32(1.0 / peak)
    return out


# --------------------------------------------------------------------------
# scene cuts
# --------------------------------------------------------------------------
