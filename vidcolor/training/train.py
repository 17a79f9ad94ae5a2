"""`vidcolor train`: fit a registry model to a folder of colour photos or clips.

The set is small next to the papers' ImageNet, so every step draws fresh random
crops with scale jitter and flips from images held in memory (downscaled once),
which also keeps the two CPU cores busy with the model rather than decoding.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import pathlib

import cv2
import numpy as np
import torch

from vidcolor import color, weights
from vidcolor.errors import InvalidInput
from vidcolor.models import ModelSpec, get_model
from vidcolor.runtime import Runtime
from vidcolor.io.media import is_video
from vidcolor.training.common import (checkpoint_files, lr_schedule, read_state, run_steps, shrink, training_files,
                                      write_checkpoint)

#: the smallest training crop every network of the registry takes (larsson2016 and
#: temporal_unet fail at 16: their deepest feature maps would be empty).
MIN_CROP = 32


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str
    data: tuple[pathlib.Path, ...]
    out: pathlib.Path
    steps: int = 4000
    batch: int = 16
    crop: int = 96
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    save_every: int = 200
    #: frames taken from each colour video clip in the data folders.
    frames_per_video: int = 40
    resume: bool = False
    #: share of samples whose input luma gets old-film exposure and grain damage (`damage_luma`).
    input_damage: float = 0.0
    #: weights to start from instead of a random initialisation: a file, or "shipped" for the
    #: model's own (fine-tuning on the user's footage); a resumed run ignores it.
    init: str | None = None
    #: for a model on a pretrained encoder (`ModelSpec.backbone`): steps with the encoder frozen,
    #: then its learning rate as a share of ``lr`` (the decoder learns first, the features adapt later).
    freeze_encoder: int = 0
    encoder_lr: float = 0.1
    #: lambda of the rebalancing that weights a regression pixel by its true colour's rarity (Zhang et
    #: al.'s class weights applied to `lite_unet`'s ab regression): 1 leaves the loss unweighted.
    rebalance: float = 1.0

    def __post_init__(self) -> None:
        # Refused here rather than deep in torch (a zero division at --steps 0, an empty
        # feature map at a small crop), so every caller gets the same one-line error.
        rules = (
            ("steps", self.steps >= 1, "give at least 1"),
            ("batch", self.batch >= 1, "give at least 1"),
            ("crop", self.crop >= MIN_CROP, f"give at least {MIN_CROP} (the deepest layers of some networks need it)"),
            ("lr", self.lr > 0, "give a positive learning rate"),
            ("save_every", self.save_every >= 1, "give at least 1"),
            ("frames_per_video", self.frames_per_video >= 1, "give at least 1"),
            ("input_damage", 0.0 <= self.input_damage <= 1.0, "give a share between 0 and 1"),
            ("freeze_encoder", self.freeze_encoder >= 0, "give 0 or more steps"),
            ("encoder_lr", 0.0 <= self.encoder_lr <= 1.0, "give a share of --lr between 0 and 1"),
            ("rebalance", 0.0 < self.rebalance <= 1.0, "give a lambda in (0, 1]; 1 weights every pixel alike"),
        )
        for name, ok, fix in rules:
            if not ok:
                raise InvalidInput(f"--{name.replace('_', '-')} {getattr(self, name)}: {fix}")
        if self.rebalance < 1.0 and not get_model(self.model).rebalances:
            raise InvalidInput(f"--rebalance: {self.model} has no rebalanced regression; leave it out")

    def init_path(self) -> pathlib.Path | None:
        """The weights file ``init`` names (checked to exist), or None."""
        if self.init is None:
            return None
        path = weights.weights_path(get_model(self.model), None if self.init == "shipped" else self.init)
        if not path.is_file():
            raise InvalidInput(f"--init {self.init}: no such weights file; give a .safetensors file or 'shipped'")
        return path


def init_meta(cfg: TrainConfig) -> dict:
    """The run's starting point for the weights' metadata: the file and how it was trained (JSON)."""
    path = cfg.init_path()
    if path is None:
        return {}
    before = weights.read_metadata(path)
    return {"init": path.name, "init_steps": before.get("steps", "?"), "init_meta": json.dumps(before, sort_keys=True)}


def _video_frames(path: pathlib.Path, count: int):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = stream.frames or 0
        every = max(1, total // count) if total else 10
        # Frames 0, every, ... up to count of them; decoding stops at the last one taken,
        # also in a container that does not say its length.
        for frame in itertools.islice(container.decode(stream), 0, every * (count - 1) + 1, every):
            yield frame.to_ndarray(format="rgb24")


def load_images(dirs, short: int, frames_per_video: int) -> list[np.ndarray]:
    """RGB uint8 images, each downscaled so its short side is at most ``short``."""
    images = []
    for path in training_files(dirs):
        if is_video(path):
            images += [shrink(f, short) for f in _video_frames(path, frames_per_video)]
            continue
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None and min(bgr.shape[:2]) >= 32:
            images.append(shrink(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), short))
    if not images:
        raise InvalidInput(f"{', '.join(map(str, dirs))}: no readable colour photos or clips to train on")
    return images


def random_batch(images, batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """(N,3,crop,crop) float RGB in 0..1: random image, scale jitter, crop, flip."""
    out = np.empty((batch, crop, crop, 3), np.uint8)
    for i in range(batch):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        # Scale so the crop covers between all and a quarter of the short side.
        s = crop / min(h, w) * rng.uniform(1.0, 2.0)
        s = min(s, 1.0) if min(h, w) * s >= crop else crop / min(h, w)
        if abs(s - 1.0) > 1e-3:
            img = cv2.resize(img, (max(crop, math.ceil(w * s)), max(crop, math.ceil(h * s))),
                             interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            h, w = img.shape[:2]
        y, x = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        patch = img[y:y + crop, x:x + crop]
        out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def split_lab(rgb: torch.Tensor, damage=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input and target: L of the frame's luma, as at inference, and true ab.

    ``damage``: a function of the luma (N,1,H,W) applied to the input only (`damage_luma`).
    """
    y = color.luma(rgb)
    l_in = color.gray_to_l(damage(y) if damage is not None else y)
    ab = color.rgb_to_lab(rgb)[:, 1:]
    return l_in, ab


def damage_luma(y: torch.Tensor, rng: np.random.Generator, share: float) -> torch.Tensor:
    """Luma (N,1,H,W) in 0..1 with a share of its samples exposed and grained like old film.

    An image model trained on clean photos answers a 10% change of exposure
    with a different colour (measured: `benchmarks/results/training.md`), and
    reels are never evenly exposed. So the input of a damaged sample gets a
    gain (x0.74..1.35), an offset (+-0.08) and Gaussian grain (sigma up to
    0.05) while the target stays the clean colour: the colour must come from
    the content, not from the exposure. The draws are this function's own,
    wider than the evaluation's degrader, which it does not call.
    """
    n = y.shape[0]
    hit = rng.random(n) < share
    gain = np.where(hit, np.exp(rng.uniform(-0.3, 0.3, n)), 1.0)
    offset = np.where(hit, rng.uniform(-0.08, 0.08, n), 0.0)
    sigma = np.where(hit, rng.uniform(0.0, 0.05, n), 0.0)
    noise = torch.from_numpy(rng.standard_normal(y.shape, dtype=np.float32))

    def per_sample(v):
        return torch.as_tensor(v, dtype=y.dtype).view(n, 1, 1, 1)

    return (y * per_sample(gain) + per_sample(offset) + noise.to(y) * per_sample(sigma)).clamp_(0.0, 1.0)


def bin_counts(images, bins: torch.Tensor, size: int = 64) -> torch.Tensor:
    """How often each ab bin occurs in the training images (for class rebalancing)."""
    counts = torch.zeros(bins.shape[0], dtype=torch.float64)
    for img in images:
        small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        ab = color.rgb_to_lab(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255)[:, 1:]
        _, idx = color.nearest_bins(ab, bins, 1)
        counts += torch.bincount(idx.flatten(), minlength=bins.shape[0]).double()
    return counts


def train(cfg: TrainConfig, runtime: Runtime = Runtime(), progress: bool = True) -> pathlib.Path:
    """Fit a per-frame model (`vidcolor.training.fit.fit` sends temporal ones to their own trainer).

    Checkpoints every ``save_every`` steps to OUT/last.safetensors and OUT/train_state.pt (``resume``
    goes on from them), logs the loss to OUT/log.jsonl, returns the final weights' path.
    """
    cfg.init_path()  # a wrong --init fails before the data loads
    spec = get_model(cfg.model)
    device = runtime.torch_device
    runtime.configure_threads()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = spec.build()
    if spec.rebalances:  # other models refuse --rebalance (`TrainConfig`)
        model.regression_rebalance = cfg.rebalance
    cfg.out.mkdir(parents=True, exist_ok=True)
    last, state_file = checkpoint_files(cfg.out)
    images = load_images(cfg.data, short=2 * cfg.crop, frames_per_video=cfg.frames_per_video)
    state = start_model(model, spec, cfg, images, last, state_file)
    step, seconds = (int(state["step"]), float(state["seconds"])) if state is not None else (0, 0.0)
    if state is not None:
        rng = np.random.default_rng([cfg.seed, step])
    encoder = model.encoder if spec.backbone is not None else None
    set_mode(model, encoder)
    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, encoder, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg.steps))
    if step:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    meta = run_meta(cfg, spec, len(images), device)

    def checkpoint(step: int, seconds: float) -> None:
        write_checkpoint(model, cfg.out, meta, step, seconds,
                         {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})

    damage = functools.partial(damage_luma, rng=rng, share=cfg.input_damage) if cfg.input_damage else None

    def one_step(step: int) -> tuple[dict, dict]:
        if encoder is not None:
            encoder.requires_grad_(step >= cfg.freeze_encoder)
        l_in, ab = split_lab(random_batch(images, cfg.batch, cfg.crop, rng), damage)
        l_in, ab = l_in.to(device), ab.to(device)
        with runtime.autocast():
            raw = model(l_in)
        loss = model.loss(raw, ab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss.item(), "lr": sched.get_last_lr()[0]}, {"loss": f"{loss.item():.3f}"}

    step, seconds = run_steps(cfg, step, seconds, one_step, checkpoint, progress)
    model.eval()
    return save_final(model, cfg, meta, step, seconds, calibrate_chroma_gain(model, images, cfg.crop, device,
                                                                             seed=cfg.seed))


def start_model(model: torch.nn.Module, spec: ModelSpec, cfg: TrainConfig, images, last: pathlib.Path,
                state_file: pathlib.Path) -> dict | None:
    """Where ``model`` starts: a resumed run's weights (its saved state returned), else ``--init``'s
    weights, else ImageNet's encoder (if the model has one) and the images' colour prior (None returned)."""
    if cfg.resume and last.is_file() and state_file.is_file():
        weights.load_into(model, last, cfg.model)
        return read_state(state_file)
    if cfg.init is not None:
        weights.load_into(model, cfg.init_path(), cfg.model)  # zhang2016's bin prior comes with them
        return None
    if spec.backbone is not None:
        from vidcolor.training.pretrained import load_imagenet

        load_imagenet(model.encoder, spec.backbone)
    if hasattr(model, "set_prior"):
        model.set_prior(bin_counts(images, model.bins))
    return None


def run_meta(cfg: TrainConfig, spec: ModelSpec, images: int, device) -> dict:
    """The facts of the run the weights' metadata keeps."""
    meta = {"model": cfg.model, "data": ",".join(map(str, cfg.data)), "images": images,
            "crop": cfg.crop, "batch": cfg.batch, "lr": cfg.lr, "device": str(device),
            "torch_threads": torch.get_num_threads(), "input_damage": cfg.input_damage, **init_meta(cfg)}
    if spec.backbone is not None:
        meta.update(backbone=spec.backbone, freeze_encoder=cfg.freeze_encoder, encoder_lr=cfg.encoder_lr)
    if cfg.rebalance < 1.0:
        meta.update(rebalance=cfg.rebalance)
    return meta


def set_mode(model: torch.nn.Module, encoder: torch.nn.Module | None) -> None:
    """Training mode, except a pretrained encoder's batch norms: they keep ImageNet's statistics
    (a batch of 16 small crops would estimate them worse)."""
    model.train()
    if encoder is not None:
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()


def param_groups(model: torch.nn.Module, encoder: torch.nn.Module | None, cfg: TrainConfig) -> list[dict]:
    """One group, or the decoder at ``lr`` and a pretrained encoder at ``encoder_lr`` times it."""
    if encoder is None:
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in encoder.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]},
            {"params": list(encoder.parameters()), "lr": cfg.lr * cfg.encoder_lr}]


def save_final(model, cfg: TrainConfig, meta: dict, step: int, seconds: float, gain: float) -> pathlib.Path:
    """OUT/MODEL.safetensors with the run's facts and the chroma calibration in its metadata."""
    final = cfg.out / f"{cfg.model}.safetensors"
    weights.save(model, final, {**meta, "steps": step, "seconds": round(seconds), "chroma_gain": f"{gain:.4f}"})
    return final


@torch.no_grad()
def calibrate_chroma_gain(model, images, crop: int, device, *, batches: int = 8, batch: int = 32, seed: int = 0) -> float:
    """The least-squares scale of predicted ab against true ab, on training crops.

    A classifier trained with class rebalancing paints rare, saturated colours
    on purpose; where it is unsure of the hue, full saturation costs more than
    it shows. Scaling by E[ab_true . ab_pred] / E[|ab_pred|^2], measured on the
    training data only, keeps the hues and calibrates how far to trust them.
    """
    rng = np.random.default_rng([seed, 7])
    num = den = 0.0
    for _ in range(batches):
        l_in, ab = split_lab(random_batch(images, batch, crop, rng))
        pred = model.decode(model(l_in.to(device))).float()
        num += (ab.to(device) * pred).sum().item()
        den += (pred * pred).sum().item()
    # Below 0 the hues are worse than none: the weights then colorize nothing.
    return min(1.0, max(0.0, num / den)) if den > 0 else 1.0
