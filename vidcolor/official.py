"""DDColor's own image pipeline, step for step, for results identical to the official demo.

The engine colours frames its own way (luma planes, its working size, its
resampling). Users comparing against the official DDColor inference want its
exact steps instead, OpenCV's included:

1. BGR uint8 / 255 as float32; OpenCV's Lab of it gives the full-size L.
2. The image resized to ``input_size`` x ``input_size`` (OpenCV's default,
   bilinear); its L with zero ab back to RGB: the gray input of the network.
3. The network's ab resized to the image's size by nearest neighbour, joined
   with the full-size L, OpenCV's Lab to BGR, x255 rounded.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInput


def colorize_bgr(model: torch.nn.Module, bgr: np.ndarray, input_size: int | None = None) -> np.ndarray:
    """The official DDColor result (h, w, 3 uint8 BGR) for an 8-bit BGR or gray image.

    ``model`` is a DDColor network in eval mode (as `vidcolor.weights.load_model`
    gives); ``input_size`` defaults to the model's own.
    """
    if model.training:
        raise ValueError("colorize_bgr needs the model in eval mode (call model.eval())")
    if bgr.dtype != np.uint8 or bgr.ndim not in (2, 3) or (bgr.ndim == 3 and bgr.shape[2] not in (1, 3)):
        raise InvalidInput(f"expected an 8-bit BGR or gray image, got {bgr.dtype} of shape {bgr.shape}")
    if bgr.ndim == 2 or bgr.shape[2] == 1:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    size = int(input_size or model.input_size)
    h, w = bgr.shape[:2]
    img = (bgr / 255.0).astype(np.float32)
    full_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]

    small_l = cv2.cvtColor(cv2.resize(img, (size, size)), cv2.COLOR_BGR2Lab)[:, :, :1]
    gray = cv2.cvtColor(np.concatenate((small_l, np.zeros_like(small_l), np.zeros_like(small_l)), axis=-1),
                        cv2.COLOR_LAB2RGB)
    param = next(model.parameters())
    x = torch.from_numpy(gray.transpose(2, 0, 1).copy())[None].to(param.device, param.dtype)
    with torch.inference_mode():
        ab = model.forward_rgb(x).float().cpu()

    ab = F.interpolate(ab, size=(h, w))[0].numpy().transpose(1, 2, 0)
    out = cv2.cvtColor(np.concatenate((full_l, ab), axis=-1), cv2.COLOR_LAB2BGR)
    return (out * 255.0).round().astype(np.uint8)
