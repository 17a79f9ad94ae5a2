"""Training of a temporal model that extends a per-frame one (`temporal_lite` on `lite_unet`).

`vidcolor.training.fit` sends here a temporal model on a pretrained encoder
(``ModelSpec.temporal`` and ``ModelSpec.backbone``). The run starts from the
shipped weights of the per-frame model the network names (``model.base``;
`TemporalLite.start_from`: the output is that model's until training moves
the zero-started temporal head), keeps the per-frame network frozen with its
batch norms' ImageNet and training statistics, and fits only the temporal
head: the colour of a shot's first frame, and the per-frame quality the head
starts from, stay the default's.

Shots of `SHOT` frames (`vidcolor.training.sequences`: photos filmed by a
virtual camera, or runs of colour clips) are coloured frame after frame, as
the engine colours a shot: the first frame from a blank history, every next
one from the model's own previous output (`decode` of it, at the working
size). Each step colours `STEP_FRAMES` frames of ``batch`` shots and carries
the last output (detached) to the next step until the shot ends; gradients
flow back through the step's frames (each history is part of the graph), so
the head learns what its output does to the frames after it: the first
`temporal_unet`, trained on true histories, drifted when fed its own.

The frozen network's decoder features of a shot do not depend on the head, so
they are computed once and kept in a pool (`FeaturePool`, float16) that each
new shot is drawn from, a `FRESH` share of draws being new shots: the encoder
and decoder, most of a step's cost on this CPU, run for about a quarter of the
frames the head sees (the issue's "features of fixed crops may be cached").

The objective per frame with a history is

    regression + TEMPORAL_WEIGHT * temporal

with lite_unet's regression term (smooth L1 on ab / 110 at stride 2) and the
short-term temporal loss of Lai et al. 2018: the L1 distance between the
output and the previous output warped onto it, at stride 2, over the pixels
where the warp can be trusted. The warp is measured as `vidcolor eval`
measures flicker (`motion`): OpenCV's DIS flow on the true frames' luma, both
directions, trusted where it lands inside, the two directions agree and L
survives the warp. A first run without flow, whose temporal term only asked
pixels whose L stayed the same to keep their colour, learnt to hold colours
in place while the picture moved under them: less change per pixel, more
flicker along the motion (warp error 2.19 to 3.69 ab on held-out photos
filmed by the virtual camera, at 100 steps).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidcolor import weights
from vidcolor.atomic import sha256_file
from vidcolor.models import get_model
from vidcolor.runtime import Runtime
from vidcolor.training.common import checkpoint_files, lr_schedule, read_state, run_steps, write_checkpoint
from vidcolor.training.sequences import Sources, load_sources, random_sequences
from vidcolor.training.train import TrainConfig, init_meta, save_final, split_lab
from vidcolor.training.train_temporal import calibrate_chroma_gain

#: frames of each shot, coloured from a blank history.
SHOT = 24
#: frames of each shot coloured (and back-propagated through) per step.
STEP_FRAMES = 4
#: weight of the temporal consistency term against the regression term.
TEMPORAL_WEIGHT = 3.0
#: the largest change of L (L units) along the flow at which a pixel's warp is trusted (`vidcolor eval`'s).
WARP_L = 5.0
#: shots kept in the feature pool, and the share of draws that are new shots once it is full.
POOL = 64
FRESH = 0.25


def motion(rgb: np.ndarray, l: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow (S, 2, H, W) of each frame to the one before (frame 0: none) and where it can be
    trusted (S, 1, H, W): as `vidcolor.eval.metrics.FlickerMeter`, DIS flow both ways on the luma, kept
    where it lands inside, round-trips within about 0.7 px and L changes by less than `WARP_L` along it."""
    s, h, w = rgb.shape[:3]
    flow, valid = np.zeros((s, 2, h, w), np.float32), np.zeros((s, 1, h, w), np.float32)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in rgb]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    lum = l[:, 0].numpy()
    for t in range(1, s):
        back, fwd = dis.calc(gray[t], gray[t - 1], None), dis.calc(gray[t - 1], gray[t], None)
        mx, my = xs + back[..., 0], ys + back[..., 1]

        def warp(img):
            return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        fwd_at = warp(fwd)
        trip = ((back + fwd_at) ** 2).sum(axis=2) <= 0.01 * ((back ** 2).sum(axis=2) + (fwd_at ** 2).sum(axis=2)) + 0.5
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        valid[t, 0] = inside & trip & (np.abs(lum[t] - warp(lum[t - 1])) < WARP_L)
        flow[t] = back.transpose(2, 0, 1)
    return flow, valid


def warp_back(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``img`` (N, C, h, w) of the previous frame brought onto the current one by backward ``flow``
    (N, 2, h, w, pixels of this size)."""
    n, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    return F.grid_sample(img, torch.stack((gx, gy), dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


class FeaturePool:
    """Shots with the frozen network's decoder features, drawn again and again by `Shots`."""

    def __init__(self, model, sources: Sources, crop: int, rng: np.random.Generator, device, runtime: Runtime,
                 size: int = POOL, fresh: float = FRESH) -> None:
        self.model, self.sources, self.crop, self.rng = model, sources, crop, rng
        self.device, self.runtime, self.size, self.fresh = device, runtime, size, fresh
        self.shots: list[dict[str, torch.Tensor]] = []
        self.made = 0

    @torch.no_grad()
    def make(self) -> dict[str, torch.Tensor]:
        """A new shot: L (S,1,C,C), and at stride 2 the decoder features, true ab and L."""
        rgb = random_sequences(self.sources, 1, SHOT, self.crop, self.rng)[0]
        l, ab = split_lab(torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255))
        flow, valid = (torch.from_numpy(a) for a in motion(rgb, l))
        l = l.to(self.device)
        with self.runtime.autocast():
            x = self.model.decoder_features(l)
        size = x.shape[-2:]
        scale = torch.tensor([size[1] / l.shape[-1], size[0] / l.shape[-2]]).view(1, 2, 1, 1)
        self.made += 1
        return {"l": l.half(), "x": x.half(),
                "ab2": F.interpolate(ab.to(self.device), size=size, mode="area").half(),
                # a stride-2 pixel is trusted where all four of its pixels are
                "valid2": (F.interpolate(valid, size=size, mode="area") > 0.99).half().to(self.device),
                "flow2": (F.interpolate(flow, size=size, mode="area") * scale).half().to(self.device)}

    def draw(self) -> dict[str, torch.Tensor]:
        if len(self.shots) < self.size:
            self.shots.append(self.make())
            return self.shots[-1]
        i = int(self.rng.integers(self.size))
        if self.rng.random() < self.fresh:
            self.shots[i] = self.make()
        return self.shots[i]


class Shots:
    """``slots`` shots coloured `STEP_FRAMES` frames per step, each history the model's own output."""

    def __init__(self, pool: FeaturePool, slots: int) -> None:
        self.pool, self.slots = pool, slots
        self._t = SHOT
        self.parts: dict[str, torch.Tensor] = {}
        #: the decoded output of the frame before (the next history), or None at a shot's start.
        self.prev: torch.Tensor | None = None
        #: that frame's output at stride 2, for the temporal term across steps.
        self.last: torch.Tensor | None = None

    def frames(self) -> dict[str, torch.Tensor]:
        """The next frames of every slot: l, x, ab2, valid2, flow2 as (slots, k, ...) float32."""
        if self._t >= SHOT:
            drawn = [self.pool.draw() for _ in range(self.slots)]
            self.parts = {k: torch.stack([d[k] for d in drawn]) for k in drawn[0]}
            self._t, self.prev, self.last = 0, None, None
        part = slice(self._t, min(self._t + STEP_FRAMES, SHOT))
        self._t = part.stop
        return {k: v[:, part].float() for k, v in self.parts.items()}


def temporal_term(out: torch.Tensor, out_prev: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean L1 (a and b summed) of the output against the previous output warped onto it, where trusted."""
    diff = (out - warp_back(out_prev, flow)).abs().sum(dim=1, keepdim=True)
    return (valid * diff).sum() / valid.sum().clamp(min=1.0)


def shot_losses(model, f: dict[str, torch.Tensor], prev: torch.Tensor | None,
                last: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Colour the frames ``f`` (`Shots.frames`) of each shot in order from history ``prev`` (decoded;
    ``last`` is the same output at stride 2).

    Returns the mean terms over the frames that had a history, the last frame's decoded
    output (the next history) and its output at stride 2 (the next ``last``).
    """
    from vidcolor.models.lite_unet import AB_SCALE

    x = f["x"]
    reg, tmp, count = x.new_zeros(()), x.new_zeros(()), 0
    out_prev = last
    for t in range(x.shape[1]):
        raw = model.temporal_step(x[:, t], f["l"][:, t], prev)
        out = raw["ab"].float()
        if prev is not None:
            reg = reg + F.smooth_l1_loss(out, f["ab2"][:, t] / AB_SCALE, beta=0.05)
            count += 1
        if out_prev is not None:
            tmp = tmp + temporal_term(out, out_prev, f["flow2"][:, t], f["valid2"][:, t])
        prev = model.decode(raw)
        out_prev = out
    count = max(count, 1)
    return {"regression": reg / count, "temporal": tmp / count}, prev, out_prev.detach()


def start(model, cfg: TrainConfig, last, state_file) -> tuple[int, float, dict | None]:
    """Load the run's starting weights: a checkpoint (--resume), --init, or the per-frame model's."""
    if cfg.resume and last.is_file() and state_file.is_file():
        weights.load_into(model, last, cfg.model)
        state = read_state(state_file)
        return int(state["step"]), float(state["seconds"]), state
    if cfg.init is not None:
        weights.load_into(model, cfg.init_path(), cfg.model)
    else:
        model.start_from(weights.read_state_dict(weights.weights_path(get_model(model.base), None)))
    return 0, 0.0, None


def run_meta(cfg: TrainConfig, model, sources: Sources, device) -> dict:
    base_path = weights.weights_path(get_model(model.base), None)
    return {"model": cfg.model, "data": ",".join(map(str, cfg.data)), "images": len(sources.stills),
            "clip_frames": sources.clip_frames, "crop": cfg.crop, "batch": cfg.batch, "lr": cfg.lr,
            "base": f"{model.base}, {base_path.name} sha256 {sha256_file(base_path)[:16]}, frozen",
            "shot": SHOT, "step_frames": STEP_FRAMES, "temporal_weight": TEMPORAL_WEIGHT, "warp_l": WARP_L,
            "pool": POOL, "fresh": FRESH, "device": str(device), "torch_threads": torch.get_num_threads(),
            **init_meta(cfg)}


def train(cfg: TrainConfig, runtime: Runtime = Runtime(), progress: bool = True):
    device = runtime.torch_device
    runtime.configure_threads()
    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    last, state_file = checkpoint_files(cfg.out)
    sources = load_sources(cfg.data, short=2 * cfg.crop, frames_per_video=cfg.frames_per_video)
    model = get_model(cfg.model).build()
    step, seconds, state = start(model, cfg, last, state_file)
    rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws new shots
    # The per-frame network stays as trained, batch norms included; only the temporal head learns.
    model.requires_grad_(False).eval().to(device)
    model.temporal_head.requires_grad_(True)
    opt = torch.optim.AdamW(model.temporal_head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg.steps))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    shots = Shots(FeaturePool(model, sources, cfg.crop, rng, device, runtime), cfg.batch)
    meta = run_meta(cfg, model, sources, device)

    def checkpoint(step: int, seconds: float) -> None:
        write_checkpoint(model, cfg.out, meta, step, seconds,
                         {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})

    def one_step(step: int) -> tuple[dict, dict]:
        frames = shots.frames()
        with runtime.autocast():
            parts, history, shots.last = shot_losses(model, frames, shots.prev, shots.last)
        shots.prev = history.detach()
        loss = parts["regression"] + TEMPORAL_WEIGHT * parts["temporal"]
        if loss.requires_grad:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        return ({"loss": loss.item(), **{k: v.item() for k, v in parts.items()}, "lr": sched.get_last_lr()[0],
                 "shots_made": shots.pool.made},
                {"loss": f"{loss.item():.4f}", "temporal": f"{parts['temporal'].item():.4f}"})

    step, seconds = run_steps(cfg, step, seconds, one_step, checkpoint, progress)
    return save_final(model, cfg, meta, step, seconds,
                      calibrate_chroma_gain(model, shots.pool.sources, cfg.crop, device, seed=cfg.seed))
