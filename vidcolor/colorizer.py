"""The one inference routine every front end calls.

A `Colorizer` turns batches of luma planes into chroma planes. The CLI's video
engine, still images, `vidcolor eval` and the VapourSynth filter only convert
their inputs to luma tensors and the chroma back.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import color
from .errors import InvalidInput, OutOfMemory
from .models import ModelSpec, get_model
from .runtime import Runtime
from .temporal import Recurrence, Stabilizer
from .temporal.reference import FeatureExtractor, ReferenceTrack
from .weights import chroma_gain, load_model, weights_path


def working_shape(height: int, width: int, short: int) -> tuple[int, int]:
    """The frame's shape scaled so its short side is ``short``, rounded to multiples of 8."""
    s = short / min(height, width)
    return max(8, round(height * s / 8) * 8), max(8, round(width * s / 8) * 8)


@torch.no_grad()
def fuse_conv_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each BatchNorm that directly follows a convolution in a Sequential into it (eval mode only).

    An eval-mode BatchNorm is a fixed affine map per channel, so the pair is one convolution:
    the default model's forward pass took 18.7 ms instead of 22.5 per 640x480 frame on this
    project's 2-core CPU, with the same outputs up to float rounding (checked for every
    registered model by tests/test_models.py).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        return model
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            # a convolution whose weight a hook recomputes (spectral norm) keeps its BatchNorm
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d) \
                    and bn.running_mean is not None and not conv._forward_pre_hooks \
                    and not hasattr(conv, "parametrizations"):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = torch.nn.Identity()
    return model


#: beyond this every colour is clipped to the gamut's edge anyway.
MAX_SATURATION = 10.0
#: the largest frame colorized, in pixels (61 MP photos, 8K video); VIDCOLOR_MAX_PIXELS changes it.
MAX_PIXELS = 64_000_000
#: pixels of the full-resolution chroma step done at once: its memory stays bounded whatever the frame.
TILE_PIXELS = 1 << 20


def max_pixels() -> int:
    text = os.environ.get("VIDCOLOR_MAX_PIXELS")
    if text is None:
        return MAX_PIXELS
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        raise InvalidInput(f"VIDCOLOR_MAX_PIXELS={text}: give a number of pixels, e.g. 200000000") from None


def check_frame_size(width: int, height: int, what) -> None:
    """Refuse a frame whose size alone would exhaust memory (a tiny PNG or a y4m header can claim any)."""
    limit = max_pixels()
    if width * height > limit:
        raise InvalidInput(f"{what}: its frames are {width}x{height} = {width * height} pixels, more than the "
                           f"limit of {limit} (memory grows with the size); set VIDCOLOR_MAX_PIXELS="
                           f"{width * height} to allow it")


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A loaded model and what it was loaded with: shared by the colorizers of several videos."""

    spec: ModelSpec
    model: torch.nn.Module
    runtime: Runtime
    weights_file: pathlib.Path | None
    #: the trainer's calibration of the weights times the user's saturation.
    gain: float

    @classmethod
    def load(cls, model: str = "default", weights: str | os.PathLike | None = None,
             runtime: Runtime = Runtime(), saturation: float = 1.0) -> "Network":
        if not 0.0 <= saturation <= MAX_SATURATION:  # NaN fails too
            raise InvalidInput(f"--saturation {saturation}: give a number from 0 (gray) to {MAX_SATURATION:g} "
                               "(1 keeps the weights' own colour)")
        spec = get_model(model)
        runtime.configure_threads()
        net = fuse_conv_bn(load_model(model, weights, runtime))
        if runtime.torch_device.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        weights_file = weights_path(spec, weights)
        return cls(spec, net, runtime, weights_file, chroma_gain(weights_file) * saturation)


class Colorizer:
    """A `Network` and the state of one video: its stabilizer, a temporal model's history, hints, frame count.

    Loading a model is the slow part; `fresh` and `stabilized` give new colorizers for other videos
    (or other settings) that share the loaded network.
    """

    def __init__(self, model: str = "default", weights: str | os.PathLike | None = None,
                 runtime: Runtime = Runtime(), saturation: float = 1.0, hints=None, *,
                 network: Network | None = None, stabilizer: Stabilizer | None = None):
        self.network = network if network is not None else Network.load(model, weights, runtime, saturation)
        self.spec, self.name = self.network.spec, self.network.spec.name
        self.model, self.runtime, self.device = self.network.model, self.network.runtime, self.network.runtime.torch_device
        self.weights_file, self.gain = self.network.weights_file, self.network.gain
        #: the `Stabilizer` the predictions go through, frame after frame (`--stabilize`), or None.
        self.stabilizer: Stabilizer | None = stabilizer
        #: a temporal model's previous-frame state, or None.
        self.recurrence: Recurrence | None = Recurrence() if self.temporal else None
        if hints is not None and not self.spec.takes_hints:
            raise InvalidInput(f"model {self.name!r} takes no colour hints; use --model siggraph17 with --hints")
        #: user colour hints (`vidcolor.hints.Hints`) for a model that takes them, or None.
        self.hints = hints
        #: frames predicted since `reset`: the frame number hints refer to.
        self.frame = 0
        #: frames per network call since the device ran out of memory at more (None: the whole batch).
        self.chunk: int | None = None
        #: reference pictures' colour carried through the shots they match (`referenced`), or None.
        self.reference: ReferenceTrack | None = None

    @property
    def summary(self) -> str:
        """What runs, in one line: model, weights file, device and precision."""
        dtype = self.runtime.autocast_dtype
        precision = "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
        return f"vidcolor: model {self.name}, weights {self.weights_file}, device {self.device}, {precision}"

    @property
    def temporal(self) -> bool:
        """Whether the model takes the previous coloured frame: frames must come in display order."""
        return self.spec.temporal

    def fresh(self, hints=None) -> "Colorizer":
        """A colorizer of a new video sharing the loaded network, with this one's settings (stabilized or not,
        the hints, or ``hints`` given here)."""
        twin = Colorizer(network=self.network, hints=hints if hints is not None else self.hints,
                         stabilizer=Stabilizer() if self.stabilizer is not None else None)
        twin.chunk = self.chunk
        return twin

    def stabilized(self, stabilizer: Stabilizer | None = None) -> "Colorizer":
        """A colorizer sharing the loaded network whose colour is steadied over time (`--stabilize`).

        Its frames must come in display order, one video at a time; `reset` starts a new video.
        """
        twin = self.fresh()
        twin.stabilizer = stabilizer if stabilizer is not None else Stabilizer()
        return twin

    def referenced(self, references: list[np.ndarray], *, names: list[str] | None = None,
                   pinned: list[int | None] | None = None) -> "Colorizer":
        """A colorizer sharing the loaded network that carries the colour of ``references`` (RGB uint8 pictures)
        through the shots they match (``--reference``), the model's colour steadied elsewhere.

        Before its first frame, `plan_reference` must read the whole video's luma (twice at most); then
        frames come in display order, one video at a time.
        """
        if self.temporal:
            raise InvalidInput(f"--reference: model {self.name!r} colours from its own previous frame; "
                               "use an image model (the default) with a reference")
        twin = self.fresh()
        twin.stabilizer = None  # the reference track steadies the model's colour itself
        twin.reference = ReferenceTrack(references, FeatureExtractor(self.model, self.device), names=names,
                                        pinned=pinned, predict=twin.label_ab)
        return twin

    @torch.inference_mode()
    def label_ab(self, y: np.ndarray) -> np.ndarray:
        """The network's ab (N,2,h,w) of working-size luma ``y`` (N,h,w) in 0..1, no hints: the colour
        the reference track compares between a frame and a reference (`ReferenceGuide.transfer`)."""
        l = color.gray_to_l(torch.from_numpy(np.asarray(y, np.float32))[:, None].to(self.device))
        return self._colour(l, ()).to("cpu", torch.float32).numpy()

    def plan_reference(self, read, warn: bool = True) -> None:
        """Find the shots the references serve and carry their colour backward (`ReferenceTrack`).

        ``read``: a callable returning a new iterator over the video's luma in batches ((N,1,H,W), 0..1),
        the same frames that will be coloured; it is called once, or twice when a reference matches a
        frame after its shot's start (the second read stops at the last matched frame).
        """
        def small(batches):
            for y in batches:
                yield self.working_luma(y, working_shape(*y.shape[-2:], self.spec.working_size))

        self.reference.plan(small(read()), warn=warn)
        if self.reference.needs_lookahead:
            self.reference.prepare(small(read()))

    def reset(self) -> None:
        self.frame = 0
        for state in (self.stabilizer, self.recurrence, self.reference):
            if state is not None:
                state.reset()

    def prime(self, y: torch.Tensor) -> None:
        """Show the scene-cut detectors frames before a restart point (luma (N,1,H,W) in 0..1)."""
        if self.stabilizer is None and self.recurrence is None:
            return
        size = working_shape(*y.shape[-2:], self.spec.working_size)
        small = self.working_luma(y, size)
        for state in (self.stabilizer, self.recurrence):
            if state is not None:
                state.prime(small)

    @staticmethod
    def working_luma(y: torch.Tensor, size) -> np.ndarray:
        """Luma at the working size for the detectors and the flow: their cost does not grow with the video's."""
        return F.interpolate(y.float(), size=size, mode="area")[:, 0].to("cpu", torch.float32).numpy()

    @torch.inference_mode()
    def predict_ab(self, y: torch.Tensor, cuts: Sequence[bool] | None = None,
                   frames: Sequence[int] | None = None, exposure: np.ndarray | None = None) -> torch.Tensor:
        """ab at the working size for luma ``y`` (N,1,H,W) in 0..1.

        ``cuts`` flags frames known from outside to start a shot (VapourSynth's
        ``_SceneChangePrev``); only the temporal state uses them. ``frames``:
        the frames' numbers, for hints (default: counted since `reset`).
        ``exposure``: (N, 2) gain and offset for the model's input luma
        (`vidcolor.temporal.Deflicker`); a stabilized colorizer computes its own.
        """
        if frames is None:
            frames = range(self.frame, self.frame + y.shape[0])
        self.frame += y.shape[0]
        size = working_shape(*y.shape[-2:], self.spec.working_size)
        y_small = self.working_luma(y, size) if self.stabilizer is not None or self.recurrence is not None else None
        if self.stabilizer is not None:
            cuts, exposure = self.stabilizer.prepare(y_small, cuts)
        y_model = color.resize(y.float(), size)
        if exposure is not None:
            ga = torch.as_tensor(np.asarray(exposure, np.float32), device=y_model.device).view(-1, 2, 1, 1)
            y_model = (y_model * ga[:, :1] + ga[:, 1:]).clamp_(0.0, 1.0)
        l = color.gray_to_l(y_model)
        if self.device.type == "cpu":
            l = l.contiguous(memory_format=torch.channels_last)
        extra = self._hint_maps(frames, tuple(y.shape[-2:]), size) if self.hints is not None else ()
        track = self.reference
        if track is not None:
            y_small = self.working_luma(y, size)
            # the reference's features: the encoder's own maps of this very pass when it is the default model's
            with track.features.capture(self.model) as found:
                ab = self._colour(l, extra)
            feats = list(torch.cat(found)) if found else [None] * len(y_small)
            if not found and track.wants_features(frames):
                feats = list(track.features(torch.from_numpy(y_small)[:, None]))
            out = track.run(list(frames), y_small, ab.to("cpu", torch.float32).numpy(), feats)
            return torch.from_numpy(np.stack(out)).to(ab.device)
        if self.recurrence is None:
            ab = self._colour(l, extra)
        else:
            def step(i, prev):
                # One frame per call: each frame's history is the previous frame's output.
                if prev is not None and prev.shape[-2:] != l.shape[-2:]:
                    prev = None  # a new size is a new shot
                return self._network(l[i:i + 1], (), prev)

            # The history is the model's own ab, as in training; the calibration applies to the output only.
            # With a stabilizer, `cuts` already holds its detector's answers (prepare): no second detector.
            ab = torch.cat(self.recurrence.run(step, y_small, cuts, detect=self.stabilizer is None)) * self.gain
        if self.stabilizer is None:
            return ab
        out = self.stabilizer.run(y_small, ab.to("cpu", torch.float32).numpy(), cuts, detect=False)
        return torch.from_numpy(np.stack(out)).to(ab.device)

    def _colour(self, l: torch.Tensor, extra: tuple) -> torch.Tensor:
        """An image model's calibrated ab for working-size L (a temporal one's calibration is applied
        to its output only, after the recurrence)."""
        return self._network(l, extra) * self.gain

    def _network(self, l: torch.Tensor, extra: tuple, *state) -> torch.Tensor:
        """The network's ab for working-size L (and per-frame ``extra`` inputs), float32.

        When the device runs out of memory the same frames are run again in halves, and later
        calls keep the smaller size (`chunk`): a film at a batch the GPU cannot hold is slower,
        not lost, and never silently gray (DeOldify's failure). One frame that does not fit is
        an error that says what to do.
        """
        n, out, start = l.shape[0], [], 0
        step = min(n, self.chunk or n)
        while start < n:
            part = slice(start, start + step)
            try:
                with self.runtime.autocast():
                    raw = self.model(l[part], *(e[part] for e in extra), *state)
                out.append(self.model.decode(raw).float())
                start += step
                continue
            except torch.OutOfMemoryError:
                pass  # retried below, once the failed call's activations are released
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if step == 1:
                raise OutOfMemory(f"{self.device} ran out of memory for one {l.shape[-2]}x{l.shape[-1]} frame of "
                                  f"{self.name!r}; free the GPU (other processes hold its memory), "
                                  "or use --device cpu") from None
            step = self.chunk = step // 2
        return torch.cat(out)

    def _hint_maps(self, frames, frame_size, size) -> tuple:
        maps = [self.hints.maps(n, frame_size, size) for n in frames]
        if all(m is None for m in maps):
            return ()
        zero = (torch.zeros(2, *size), torch.zeros(1, *size))
        ab, mask = zip(*[m if m is not None else zero for m in maps])
        return torch.stack(ab).to(self.device), torch.stack(mask).to(self.device)

    @torch.inference_mode()
    def chroma(self, y: torch.Tensor, size: tuple[int, int], matrix: str,
               cuts: Sequence[bool] | None = None, frames: Sequence[int] | None = None) -> torch.Tensor:
        """Cb, Cr (N,2,h,w) in -0.5..0.5 at the chroma plane's ``size`` for luma ``y`` (N,1,H,W)."""
        check_frame_size(y.shape[-1], y.shape[-2], "the input")
        y = y.to(self.device, non_blocking=True).float()
        ab_small = self.predict_ab(y, cuts, frames)
        n = step = y.shape[0]
        while True:  # out of memory: fewer frames at a time, as in `_network`
            try:
                cbcr = torch.cat([self._chroma_rows(y[i:i + step], ab_small[i:i + step], size, matrix)
                                  for i in range(0, n, step)])
                break
            except torch.OutOfMemoryError:
                pass
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if step == 1:
                raise OutOfMemory(f"{self.device} ran out of memory for the {size[1]}x{size[0]} chroma of one "
                                  "frame; free the GPU (other processes hold its memory), or use --device cpu")
            step //= 2
        # A non-finite prediction (fp16 overflow...) is no colour: neutral there, never NaN codes.
        return torch.nan_to_num_(cbcr, nan=0.0, posinf=0.0, neginf=0.0)

    @staticmethod
    def _chroma_rows(y: torch.Tensor, ab_small: torch.Tensor, size, matrix: str) -> torch.Tensor:
        """`color.chroma_for_luma` at the chroma plane's size, in bands of rows: it works per pixel,
        and its temporaries (a dozen planes) would otherwise grow with the frame."""
        ab = color.resize(ab_small, size)
        y = color.resize(y, size, "area")
        cbcr = torch.empty(y.shape[0], 2, *size, device=y.device)
        rows = max(1, TILE_PIXELS // size[1])
        for r in range(0, size[0], rows):
            cbcr[..., r:r + rows, :] = color.chroma_for_luma(y[..., r:r + rows, :], ab[..., r:r + rows, :], matrix)
        return cbcr

    @torch.inference_mode()
    def colorize_rgb(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Colour versions of RGB uint8 (or uint16) images, from their BT.601 luma alone."""
        if not frames:
            return []
        peak = 65535.0 if frames[0].dtype == np.uint16 else 255.0
        rgb = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float() / peak
        y = color.luma(rgb)
        cbcr = self.chroma(y, tuple(y.shape[-2:]), "bt601")
        out = color.ycbcr_to_rgb(y, cbcr) * peak
        out = out.round().permute(0, 2, 3, 1).to("cpu", torch.int32).numpy().astype(frames[0].dtype)
        return list(out)


def colorize_clip(colorizer: Colorizer, frames: list[np.ndarray], references: list[np.ndarray], *,
                  names: list[str] | None = None, pinned: list[int | None] | None = None,
                  batch: int = 8) -> list[np.ndarray]:
    """RGB uint8 frames (a short clip held in memory) coloured from their BT.601 luma with the colour of
    ``references`` (RGB uint8) carried through the shots they match; see `Colorizer.referenced`."""
    twin = colorizer.referenced(references, names=names, pinned=pinned)
    peak = 65535.0 if frames and frames[0].dtype == np.uint16 else 255.0

    def read():
        for i in range(0, len(frames), batch):
            rgb = torch.from_numpy(np.stack(frames[i:i + batch])).permute(0, 3, 1, 2).float() / peak
            yield color.luma(rgb)

    twin.plan_reference(read)
    out: list[np.ndarray] = []
    for i in range(0, len(frames), batch):
        out += twin.colorize_rgb(frames[i:i + batch])
    return out
