"""Reference-guided colour: one coloured picture carried through the shot it matches.

A restorer colours one keyframe (or picks a colour photo of the place) and
wants that colour through the shot. Three sources are blended per pixel:

* non-local transfer (Zhang et al., CVPR 2019, "Deep Exemplar-based Video
  Colorization"): cosine similarity between the frame's and the reference's
  features at stride 8 (the default model's own fine-tuned EfficientNet-Lite
  encoder, its stride-8 and stride-16 taps), a softmax over the reference's
  positions weighting the reference's ab, and a confidence from the best
  similarity. It finds colour for objects that moved far, or in a photo of
  the same scene. For a photo of another place (one that matches no frame
  of its shot closely, `Served.elsewhere`) features alone match by texture
  and layout (a striped shade to a portrait's background), so the model's
  own colour of both pictures serves as a label: positions the model
  colours far apart are less similar, and the photo lends its colours only
  to what the model takes for the same kind of thing (its grass to the
  film's grass), and only where they hold more colour than the model's
  (`ADD_ONLY`). A coloured frame of the shot is matched on features alone;
* propagation along optical flow (the `Stabilizer`'s DIS flows and
  confidence): from the matched frame forward and backward through the
  shot, and at the matched frame itself from the reference when it is a
  coloured copy of that frame (flow from the frame to the reference's luma,
  trusted where their lumas agree);
* the model's own prediction, steadied like ``--stabilize``, where neither
  is confident. The reference's confidence is blurred before the blend, so
  no seam shows where it ends.

Which frames a reference serves: the shot (between scene cuts) holding the
frame whose features match it best (`match_score`), unless pinned to a
frame. Only the chroma is made here: callers keep the source's luma.

Memory stays bounded however long the film (`ReferenceTrack`; the engine reads
the file up to three times): 1. a first read finds the cuts and each
reference's similarity to every frame on luma at a quarter of the working size
(a few numbers kept per frame); 2. only when a reference matches a frame after
its shot's start, a second read (stopping at the last matched frame) carries
its colour backward and keeps it, float16 at the working size, for at most
``MAX_LOOKAHEAD`` frames before each matched frame (earlier frames of a longer
shot get the transfer alone); 3. the colouring read carries it forward as
frames stream through the engine.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidcolor import color
from vidcolor.errors import InvalidInput
from vidcolor.temporal.scenecut import SceneCutDetector
from vidcolor.temporal.stabilizer import DEFAULT_ALPHA, Stabilizer

__all__ = ["MAX_LOOKAHEAD", "FeatureExtractor", "Reference", "ReferenceGuide", "ReferenceTrack", "ReferenceWarning", "Served",
           "match_score"]

#: the first read matches frames and references at the working size divided by this.
COARSE = 4
#: frames of a shot before its matched frame that are held for backward propagation (the engine's window).
MAX_LOOKAHEAD = 600
#: softmax temperature of the non-local transfer on cosine similarities (Zhang et al.'s 0.01).
TEMPERATURE = 0.01
#: the best cosine similarity below which the transfer is not trusted at all, and above which fully.
SIM_LOW, SIM_HIGH = 0.45, 0.8
#: the similarity lost by two positions whose model colours differ by much more than LABEL_SIGMA (Lab ab):
#: LABEL_WEIGHT * (1 - exp(-d² / 2σ²)) (benchmarks/results/reference.md, "the model's colour as a label").
LABEL_WEIGHT, LABEL_SIGMA = 0.3, 10.0
#: a photo of another place adds colour, never takes it: trusted fully where its |ab| is the model's, not at all
#: ADD_ONLY under it (a photo's white house cannot know the film's brick is red; benchmarks/results/reference.md).
ADD_ONLY = 3.0
#: the share of the carried field kept per frame of propagation (it fades to the transfer far away).
DECAY = 0.995
#: a reference whose best frame matches worse than this serves no shot (a warning says so); pictures of
#: unrelated scenes score 0.32-0.48 on the evaluation clips, frames of the same shot 0.74-1
#: (benchmarks/results/reference.md).
MIN_MATCH = 0.55
#: a reference whose mean chroma (|ab|) is below this has no colour to give (a gray picture saved as
#: JPEG stays under 1; the muted second shot of bikes.mp4 is 2.6 and is a real reference).
MIN_CHROMA = 1.0


class ReferenceWarning(UserWarning):
    """A reference that can be used, but probably not as meant (gray, another aspect, no match)."""


# --------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------


class FeatureExtractor:
    """Stride-8 features (strides 8 and 16 of an EfficientNet-Lite encoder) of luma frames.

    Uses the colorizer's own encoder when its model has one (the default, fine-tuned on
    colour), else the default model's. Only the encoder's blocks up to the stride-16 tap
    run (the deeper ones and the 1280-wide head are not needed): about half its cost.
    Each position's vector is centred and unit length per level, the two levels
    concatenated and scaled so a dot product is their mean cosine similarity.
    """

    def __init__(self, model: torch.nn.Module | None = None, device: torch.device | str = "cpu"):
        encoder = getattr(model, "encoder", None) if model is not None else None
        if encoder is None or not hasattr(encoder, "taps"):
            from vidcolor.models import DEFAULT_MODEL
            from vidcolor.runtime import Runtime
            from vidcolor.weights import load_model

            encoder = load_model(DEFAULT_MODEL, None, Runtime(device=str(device))).encoder
        self.encoder = encoder.eval()
        self.device = torch.device(device)
        self.taps = (encoder.taps[2], encoder.taps[3])

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """Features (N, C, ceil(h/8), ceil(w/8)) of luma ``y`` (N,1,h,w) in 0..1."""
        x = ((y.to(self.device, torch.float32) - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        x = self.encoder.stem(x)
        taps = []
        for i, block in enumerate(self.encoder.blocks[: self.taps[1] + 1]):
            x = block(x)
            if i in self.taps:
                taps.append(x)
        return self.normalise(*taps)

    @staticmethod
    def normalise(s8: torch.Tensor, s16: torch.Tensor) -> torch.Tensor:
        s8, s16 = s8.float(), s16.float()
        s16 = F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)
        parts = []
        for f in (s8, s16):
            f = f - f.mean(dim=1, keepdim=True)
            parts.append(F.normalize(f, dim=1) * (1.0 / math.sqrt(2.0)))
        return torch.cat(parts, dim=1).cpu().contiguous()

    @contextlib.contextmanager
    def capture(self, model: torch.nn.Module):
        """While inside, the features of what ``model`` runs are appended to the list yielded (a batch each).

        Free when ``model`` is the colorizer whose encoder this is: its own forward pass computes the
        stride-8 and stride-16 maps anyway (forward hooks take them). Yields None for another model.
        """
        if getattr(model, "encoder", None) is not self.encoder:
            yield None
            return
        found: list[torch.Tensor] = []
        held: dict[int, torch.Tensor] = {}

        def hook(index):
            def keep(module, args, output):
                held[index] = output
                if len(held) == 2:
                    found.append(self.normalise(held.pop(0), held.pop(1)))
            return keep

        handles = [self.encoder.blocks[t].register_forward_hook(hook(i)) for i, t in enumerate(self.taps)]
        try:
            yield found
        finally:
            for h in handles:
                h.remove()


def match_score(frame_feats: torch.Tensor, ref_feats: torch.Tensor) -> float:
    """How well a frame matches a reference: the mean over the frame's positions of the best similarity."""
    f = frame_feats.reshape(frame_feats.shape[0], -1)
    r = ref_feats.reshape(ref_feats.shape[0], -1)
    return float((f.T @ r).max(dim=1).values.mean())


# --------------------------------------------------------------------------
# reference images
# --------------------------------------------------------------------------


@dataclass
class Reference:
    """One reference picture, ready for frames of one working size.

    ``y`` and ``ab`` are at the frames' working size (h, w) when its aspect
    ratio is theirs (within 2%), else at its own aspect with the same short side:
    the flow to the matched frame is then not tried, the transfer still is.
    """

    name: str
    rgb: np.ndarray
    y: np.ndarray = field(repr=False)                 # (h, w) float32 0..1
    ab: np.ndarray = field(repr=False)                # (2, h, w) float32 Lab ab
    feats: torch.Tensor = field(repr=False)           # (C, h/8, w/8)
    ab_small: torch.Tensor = field(repr=False)        # (2, h/8, w/8)
    aligned: bool = True                              # same aspect as the frames
    frame: int | None = None                          # pinned frame (--reference-frame)
    label_small: torch.Tensor | None = field(default=None, repr=False)  # (2, h/8, w/8) the model's ab of its luma

    @classmethod
    def prepare(cls, rgb: np.ndarray, size: tuple[int, int], features: FeatureExtractor,
                name: str = "reference", frame: int | None = None, warn: bool = True) -> "Reference":
        """The reference ``rgb`` (H,W,3 uint8) for frames whose working size is ``size`` (h, w)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 8 or rgb.shape[1] < 8:
            raise InvalidInput(f"{name}: a reference must be an RGB picture of at least 8x8, got shape {rgb.shape}")
        h, w = size
        aspect, ref_aspect = w / h, rgb.shape[1] / rgb.shape[0]
        aligned = abs(math.log(ref_aspect / aspect)) < 0.02
        if not aligned:
            if warn:
                warnings.warn(f"{name}: its aspect ratio ({rgb.shape[1]}x{rgb.shape[0]}) is not the film's "
                              f"({aspect:.3f}); its colour is matched by content only, not laid over the frame",
                              ReferenceWarning, stacklevel=2)
            s = min(h, w) / min(rgb.shape[:2])
            h, w = max(8, round(rgb.shape[0] * s / 8) * 8), max(8, round(rgb.shape[1] * s / 8) * 8)
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        t = F.interpolate(t, size=(h, w), mode="area")
        lab = color.rgb_to_lab(t)
        ab = lab[0, 1:]
        if warn and float(ab.abs().mean()) < MIN_CHROMA:
            warnings.warn(f"{name}: the picture is gray (mean |ab| {float(ab.abs().mean()):.1f}); it has no colour "
                          "to carry, so the model's colour is used", ReferenceWarning, stacklevel=2)
        y = color.luma(t)
        feats = features(y)[0]
        ab_small = F.interpolate(ab[None], size=feats.shape[-2:], mode="area")[0]
        return cls(name, rgb, y[0, 0].numpy(), ab.numpy(), feats, ab_small, aligned, frame)

    @property
    def gray(self) -> bool:
        return float(np.abs(self.ab).mean()) < MIN_CHROMA


# --------------------------------------------------------------------------
# the guide
# --------------------------------------------------------------------------


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of each plane of ``src`` (C,h,w) by the gray ``guide`` (h,w): edges follow luma."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(a):
        return cv2.blur(a, k, borderType=cv2.BORDER_REFLECT)

    mi = box(guide)
    vi = box(guide * guide) - mi * mi
    out = np.empty_like(src)
    for c in range(src.shape[0]):
        p = src[c]
        mp = box(p)
        a = (box(guide * p) - mi * mp) / (vi + np.float32(eps))
        b = mp - a * mi
        out[c] = box(a) * guide + box(b)
    return out


class ReferenceGuide:
    """Carries references' colour through the shots they serve (see the module's docstring).

    ``stabilizer``: a `vidcolor.temporal.Stabilizer` whose flow and confidence are used (its
    scene-cut detector is not: shots are given); ``alpha`` weighs the carried output against
    the model's fresh prediction where no reference is confident, as the stabilizer's does.
    """

    def __init__(self, features: FeatureExtractor, stabilizer=None, *, alpha: float | None = None,
                 temperature: float = TEMPERATURE, sim_range: tuple[float, float] = (SIM_LOW, SIM_HIGH),
                 decay: float = DECAY, blur: float = 3.0, label_weight: float = LABEL_WEIGHT,
                 label_sigma: float = LABEL_SIGMA, add_only: float = ADD_ONLY):
        self.features = features
        self.stabilizer = stabilizer if stabilizer is not None else Stabilizer(detector=None, deflicker=False)
        self.alpha = DEFAULT_ALPHA if alpha is None else float(alpha)
        self.temperature = float(temperature)
        self.sim_range = tuple(float(v) for v in sim_range)
        self.decay = float(decay)
        self.blur = float(blur)
        self.label_weight, self.label_sigma = float(label_weight), float(label_sigma)
        self.add_only = float(add_only)

    # ---- the pieces, per frame -------------------------------------------------

    def motion(self, prev_y: np.ndarray, cur_y: np.ndarray):
        """(map_x, map_y, confidence) taking ``prev_y``'s pixels onto ``cur_y``'s (the stabilizer's geometry)."""
        return self.stabilizer.motion(prev_y, cur_y)

    @staticmethod
    def warp(planes: np.ndarray, geometry) -> np.ndarray:
        map_x, map_y, _ = geometry
        return np.stack([cv2.remap(np.ascontiguousarray(p), map_x, map_y, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE) for p in planes])

    def transfer(self, y: np.ndarray, feats: torch.Tensor, ref: Reference,
                 label: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Non-local transfer: (ab (2,h,w), confidence (h,w)) for a frame of luma ``y`` at the working size;
        ``label``: the model's ab (2,h,w) of the frame, for a photo of another place (`label_distance`, `ADD_ONLY`)."""
        c, fh, fw = feats.shape
        f = feats.reshape(c, -1).T                       # (P, C)
        r = ref.feats.reshape(ref.feats.shape[0], -1)     # (C, Q)
        sim = f @ r                                       # (P, Q) cosine similarities
        if label is not None and ref.label_small is not None and self.label_weight > 0:
            mine = F.interpolate(torch.from_numpy(np.ascontiguousarray(label, np.float32))[None], size=(fh, fw),
                                 mode="area")[0]
            sim = sim - self.label_weight * self.label_distance(mine, ref.label_small)
        best = sim.max(dim=1).values
        weights = torch.softmax(sim / self.temperature, dim=1)
        ab = (weights @ ref.ab_small.reshape(2, -1).T).T.reshape(2, fh, fw).numpy()
        lo, hi = self.sim_range
        conf = ((best - lo) / (hi - lo)).clamp(0.0, 1.0).reshape(fh, fw).numpy()
        h, w = y.shape
        ab = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in ab])
        conf = cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR)
        # the stride-8 colour follows the frame's own edges
        ab = guided_filter(y, ab, radius=6, eps=1e-3)
        if label is not None and self.add_only > 0:
            conf = conf * np.clip(1.0 + (np.hypot(*ab) - np.hypot(*label)) / self.add_only, 0.0, 1.0)
        return ab.astype(np.float32), np.clip(conf, 0.0, 1.0).astype(np.float32)

    def label_distance(self, mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
        """(P, Q): 1 - exp(-d² / 2σ²), d the distance between the model's ab at each of the frame's feature
        positions (``mine`` (2, fh, fw)) and at each of the reference's (``theirs`` (2, rh, rw))."""
        d2 = torch.cdist(mine.reshape(2, -1).T, theirs.reshape(2, -1).T) ** 2
        return 1.0 - torch.exp(-d2 / (2.0 * self.label_sigma ** 2))

    def anchor(self, y: np.ndarray, feats: torch.Tensor, ref: Reference,
               label: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The reference's colour at the frame it serves: laid over it along flow where it is a coloured
        copy of that frame (lumas agree after the flow), the non-local transfer elsewhere."""
        ab_nl, c_nl = self.transfer(y, feats, ref, label)
        if not ref.aligned:
            return ab_nl, c_nl
        ref_y = ref.y if ref.y.shape == y.shape else cv2.resize(ref.y, y.shape[::-1], interpolation=cv2.INTER_AREA)
        ref_ab = ref.ab if ref.ab.shape[1:] == y.shape else np.stack(
            [cv2.resize(p, y.shape[::-1], interpolation=cv2.INTER_AREA) for p in ref.ab])
        geometry = self.motion(ref_y, y)
        return self.combine(self.warp(ref_ab, geometry), geometry[2], ab_nl, c_nl)

    @staticmethod
    def combine(ab_w: np.ndarray, c_w: np.ndarray, ab_nl: np.ndarray, c_nl: np.ndarray):
        """The carried field where it is trusted, the transfer where it is not: (ab, confidence)."""
        c_nl = c_nl * (1.0 - c_w)
        total = c_w + c_nl
        ab = (ab_w * c_w + ab_nl * c_nl) / np.maximum(total, 1e-6)
        return ab.astype(np.float32), total.astype(np.float32)

    def carry(self, field_prev, geometry, y: np.ndarray, feats: torch.Tensor, ref: Reference,
              label: np.ndarray | None = None):
        """The reference's field (ab, confidence) at a frame from its neighbour's, along ``geometry``."""
        ab_prev, c_prev = field_prev
        ab_w = self.warp(ab_prev, geometry)
        c_w = self.warp(c_prev[None], geometry)[0] * geometry[2] * np.float32(self.decay)
        ab_nl, c_nl = self.transfer(y, feats, ref, label)
        return self.combine(ab_w, c_w, ab_nl, c_nl)

    def blend(self, y: np.ndarray, fresh: np.ndarray, field_, carried: np.ndarray | None, geometry) -> np.ndarray:
        """One output frame: the model's prediction steadied along the motion (as the stabilizer does),
        then the reference's field over it by its blurred confidence."""
        out = fresh
        if carried is not None and geometry is not None:
            weight = np.float32(self.alpha) * geometry[2]
            out = fresh + weight * (self.warp(carried, geometry) - fresh)
        if field_ is not None:
            ab, conf = field_
            if self.blur > 0:
                conf = cv2.GaussianBlur(conf, (0, 0), self.blur)
            out = out + conf * (ab - out)
        return np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)

    # ---- which shot each reference serves ----------------------------------------

    @staticmethod
    def plan(scores: np.ndarray, cuts: list[bool], pinned: list[int | None] | None = None,
             names: list[str] | None = None, warn: bool = True,
             usable: list[bool] | None = None) -> dict[int, tuple[int, int]]:
        """{shot start: (reference index, matched frame)} from each reference's per-frame match ``scores`` (R, N).

        A reference serves the shot holding its best-matching frame (or its pinned frame); one whose best
        score is under ``MIN_MATCH`` serves none (a warning). Two references in one shot: the better match.
        """
        n = len(cuts)
        scores = np.asarray(scores, np.float64).reshape(-1, n)
        starts = [0] + [i for i in range(1, n) if cuts[i]]
        shot_of = np.zeros(n, int)
        for k, s in enumerate(starts):
            shot_of[s:] = k
        chosen: dict[int, tuple[int, int, float]] = {}
        for r in range(len(scores)):
            if usable is not None and not usable[r]:
                continue  # a gray reference: its own warning said so
            name = names[r] if names else f"reference {r + 1}"
            pin = pinned[r] if pinned else None
            if pin is not None:
                if not 0 <= pin < n:
                    if warn:
                        warnings.warn(f"{name}: --reference-frame {pin} is not a frame of the film (0..{n - 1}); "
                                      "it is not used", ReferenceWarning, stacklevel=2)
                    continue
                m, score = pin, math.inf
            else:
                finite = np.where(np.isfinite(scores[r]), scores[r], -np.inf)
                m = int(np.argmax(finite)) if n else 0
                score = float(finite[m]) if n else -math.inf
                if score < MIN_MATCH:
                    if warn:
                        warnings.warn(f"{name}: matches no shot of the film (best similarity {score:.2f} at frame "
                                      f"{m}, needs {MIN_MATCH}); it is not used: pin it with --reference-frame N",
                                      ReferenceWarning, stacklevel=2)
                    continue
            start = starts[shot_of[m]]
            if start not in chosen or chosen[start][2] < score:
                chosen[start] = (r, m, score)
        return {s: (r, m) for s, (r, m, _) in chosen.items()}



@dataclass
class Served:
    """A shot a reference serves: frames ``start`` .. ``end`` - 1, from its matched frame ``frame``;
    ``score``: its best match with a frame of the shot."""

    ref: int
    start: int
    end: int
    frame: int
    score: float = 1.0

    @property
    def elsewhere(self) -> bool:
        """A picture of another place (it matches no frame of its shot well enough to be placed by content,
        it was pinned): features alone would match it by texture, so the model's colour labels match too."""
        return self.score < MIN_MATCH


class ReferenceTrack:
    """One video's reference colour: planned over the whole video first, then applied as frames come in order.

    1. `plan` (a first read of the video's luma at the working size): scene cuts, and each reference's
       match with every frame, on features at a quarter of the working size; which shot each reference serves.
    2. `prepare` (a second read, up to the last served frame): the fields carried backward from each
       matched frame to its shot's start (at most ``MAX_LOOKAHEAD`` frames before it), kept in float16.
    3. `run` (while colouring, in display order): the anchor at a matched frame, the fields carried
       forward after it, and the blend with the model's prediction, steadied along the motion.

    ``predict``: the model's ab (N,2,h,w) of working-size luma (N,h,w), for the references' labels and the
    backward read's frames (`ReferenceGuide.transfer`); without it features alone match.
    """

    def __init__(self, references: list[np.ndarray], features: FeatureExtractor, *, names: list[str] | None = None,
                 pinned: list[int | None] | None = None, guide: ReferenceGuide | None = None,
                 predict: Callable[[np.ndarray], np.ndarray] | None = None):
        self.sources = [np.asarray(r) for r in references]
        self.names = list(names) if names else [f"reference {i + 1}" for i in range(len(self.sources))]
        self.pinned = list(pinned) if pinned else [None] * len(self.sources)
        self.features = features
        self.guide = guide or ReferenceGuide(features)
        self.predict = predict
        self.refs: list[Reference] = []
        self.size: tuple[int, int] | None = None
        self.served: list[Served] = []
        self.starts: list[int] = [0]
        self.frames = 0
        self.backward: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the video's first frame (the plan and the backward fields are kept)."""
        self._prev: tuple[int, np.ndarray, np.ndarray, object] | None = None  # frame, luma, output, field

    def _prepare_refs(self, size: tuple[int, int], warn: bool) -> None:
        self.size = size
        self.refs = [Reference.prepare(rgb, size, self.features, name, pin, warn=warn)
                     for rgb, name, pin in zip(self.sources, self.names, self.pinned)]
        # matching on a quarter of the working size: a sixteenth of the encoder's cost there, enough to tell shots
        self._coarse = (max(16, size[0] // COARSE), max(16, size[1] // COARSE))
        self._coarse_feats = []
        for ref in self.refs:
            y = F.interpolate(torch.from_numpy(ref.y)[None, None], size=(max(16, ref.y.shape[0] // COARSE),
                              max(16, ref.y.shape[1] // COARSE)), mode="area")
            self._coarse_feats.append(self.features(y)[0])

    def plan(self, batches, warn: bool = True) -> list[Served]:
        """First read: ``batches`` of luma at the working size ((N,h,w) float 0..1), the whole video in order."""
        detector = SceneCutDetector()
        scores: list[list[float]] = [[] for _ in self.sources]
        starts, n = [0], 0
        for ys in batches:
            ys = np.asarray(ys, np.float32)
            if self.size is None:
                self._prepare_refs(ys.shape[-2:], warn)
            for y in ys:
                if detector.update(y) and n > 0:
                    starts.append(n)
                n += 1
            coarse = self.features(F.interpolate(torch.from_numpy(ys)[:, None], size=self._coarse, mode="area"))
            for r, ref_feats in enumerate(self._coarse_feats):
                scores[r] += [match_score(f, ref_feats) for f in coarse]
        self.frames, self.starts = n, starts
        cuts = [False] * n
        for s in starts[1:]:
            cuts[s] = True
        plan = ReferenceGuide.plan(np.array(scores).reshape(len(self.sources), n), cuts, self.pinned, self.names,
                                   warn=warn, usable=[not ref.gray for ref in self.refs])
        ends = starts[1:] + [n]
        self.served = []
        for s, (r, m) in sorted(plan.items()):
            e = ends[starts.index(s)]
            self.served.append(Served(r, s, e, m, max(scores[r][s:e])))
        if self.predict is not None:  # labels serve photos of another place only
            for ref in (self.refs[r] for r in sorted({sv.ref for sv in self.served if sv.elsewhere})):
                label = torch.from_numpy(np.asarray(self.predict(ref.y[None]), np.float32))
                ref.label_small = F.interpolate(label, size=ref.feats.shape[-2:], mode="area")[0]
        self.scores = scores
        return self.served

    @property
    def needs_lookahead(self) -> bool:
        """Whether `prepare` has anything to do (a served shot starts before its matched frame)."""
        return any(sv.frame > sv.start for sv in self.served)

    def prepare(self, batches) -> None:
        """Second read (only while `needs_lookahead`): the same lumas as `plan`, in order; stops once done."""
        windows = [(max(sv.start, sv.frame - MAX_LOOKAHEAD), sv) for sv in self.served if sv.frame > sv.start]
        if not windows:
            return
        last = max(sv.frame for _, sv in windows)
        held: dict[int, np.ndarray] = {}
        n = 0
        for ys in batches:
            for y in np.asarray(ys, np.float32):
                for lo, sv in windows:
                    if lo <= n <= sv.frame:
                        held[n] = y
                    if n == sv.frame:
                        self._carry_back([held[t] for t in range(lo, n + 1)], lo, sv)
                        for t in range(lo, n + 1):
                            if not any(lo2 <= t <= sv2.frame and sv2.frame > n for lo2, sv2 in windows):
                                held.pop(t, None)
                n += 1
            if n > last:
                break

    def _carry_back(self, ys: list[np.ndarray], lo: int, sv: Served) -> None:
        ref = self.refs[sv.ref]
        labelled = self.predict is not None and sv.elsewhere
        feats, labels = [], []
        for i in range(0, len(ys), 8):  # features (and labels) a batch at a time
            chunk = np.stack(ys[i:i + 8])
            feats += list(self.features(torch.from_numpy(chunk)[:, None]))
            labels += list(np.asarray(self.predict(chunk))) if labelled else [None] * len(chunk)
        m = len(ys) - 1
        field_ = self.guide.anchor(ys[m], feats[m], ref, labels[m])
        for t in range(m - 1, -1, -1):
            field_ = self.guide.carry(field_, self.guide.motion(ys[t + 1], ys[t]), ys[t], feats[t], ref, labels[t])
            self.backward[lo + t] = (field_[0].astype(np.float16), field_[1].astype(np.float16))

    def served_at(self, frame: int) -> Served | None:
        for sv in self.served:
            if sv.start <= frame < sv.end:
                return sv
        return None

    def is_start(self, frame: int) -> bool:
        return frame in self.starts

    def run(self, frames, ys, fresh, feats) -> list[np.ndarray]:
        """Third step, frames in display order: ab (2,h,w) for frame numbers ``frames`` given their lumas at the
        working size, the model's ab and the features (stride 8; None where no reference serves)."""
        out = []
        for t, y, ab, f in zip(frames, ys, fresh, feats):
            y = np.asarray(y, np.float32)
            ab = np.asarray(ab, np.float32)
            prev = self._prev
            if prev is not None and (prev[0] != t - 1 or self.is_start(t) or prev[1].shape != y.shape):
                prev = None
            g = self.guide.motion(prev[1], y) if prev is not None else None
            sv = self.served_at(t)
            field_ = None
            if sv is not None and self.refs:
                ref = self.refs[sv.ref]
                label = ab if sv.elsewhere else None
                if t == sv.frame:
                    field_ = self.guide.anchor(y, f, ref, label)
                elif t > sv.frame and prev is not None and prev[3] is not None:
                    field_ = self.guide.carry(prev[3], g, y, f, ref, label)
                elif t in self.backward:  # kept: a front end with random access colours a shot again
                    a, c = self.backward[t]
                    field_ = (a.astype(np.float32), c.astype(np.float32))
                else:  # beyond the lookahead window (or after a seek): the transfer alone
                    field_ = self.guide.transfer(y, f, ref, label)
            result = self.guide.blend(y, ab, field_, prev[2] if prev is not None else None, g)
            self._prev = (t, y, result, field_)
            out.append(result)
        return out

    def wants_features(self, frames) -> bool:
        return any(self.served_at(t) is not None for t in frames)
