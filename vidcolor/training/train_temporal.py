"""Adversarial training of temporal models (`temporal_unet`), as Thasarathan et al.

`vidcolor.training.fit.fit` hands a model the registry calls temporal to `train`
here, with the same `TrainConfig`, checkpoints, ``--resume`` and log as
`vidcolor.training.train.train`.

Each sample is a pair of consecutive frames, cut by `vidcolor.training.sequences`
from a still photo filmed by a virtual camera or from a colour clip. The
previous frame's ab is the true one or blank (ab = 0), drawn per sample as in
the authors' code, so one network both starts a shot and carries its colours
on; and, unlike their code, a third of the batch is the generator's own
colouring of a shot (`OwnShots`): `SHOT` frames coloured one per training step,
each frame's history the generator's output for the frame before, from blank at
the shot's start, as the engine colours a shot. A model trained on true
histories only drifts when fed its own (the trials: `scripts/card_notes/temporal_unet.md`
and `benchmarks/results/training.md`). The generator's objective is

    10 L1 + 30 style + 1 content + 1 adversarial

with L1 on the tanh output (ab / 110; the authors' is on RGB in 0..1), the
non-saturating GAN loss against a PatchGAN that sees the current L and the
previous ab, and content (perceptual) and style (Gram matrix) losses on the
features of a frozen network. No ImageNet VGG is downloaded: the features
come from the first three blocks of the project's own shipped `zhang2016`
colorizer (`LabFeatures`). As in the authors' code: the weights of L1,
content and adversarial terms, Adam with beta1 = 0, the discriminator's
learning rate a tenth of the generator's, and the discriminator stepped on
the first step and every 12th only.

Unlike it:
* the style weight is 30, not 1000: their 1000 is tuned to VGG-19 features; on
  these the style term's gradient dwarfed the L1 term's and training stalled;
* both learning rates follow `vidcolor.training.common.lr_schedule`'s warm-up and
  cosine decay, because a CPU budget of a few thousand steps ends long before
  their 50 epochs would;
* the discriminator's loss is only computed on the steps it is stepped (the
  authors compute and discard it on the others: same updates, less work).
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor import weights
from vidcolor.atomic import sha256_file
from vidcolor.models import get_model
from vidcolor.models.temporal_unet import PatchDiscriminator
from vidcolor.runtime import Runtime
from vidcolor.training.common import checkpoint_files, lr_schedule, read_state, run_steps, write_checkpoint
from vidcolor.training.sequences import Sources, load_sources, random_sequences
from vidcolor.training.train import TrainConfig, init_meta, save_final, split_lab

#: the generator objective's weights: the authors' train.py's (whose adversarial
#: weight option is never applied: the term counts once), but style (see above).
LOSS_WEIGHTS = {"l1": 10.0, "style": 30.0, "content": 1.0, "adversarial": 1.0}
#: chance that a sample's previous frame is blank (the authors' coin).
BLANK_PROB = 1 / 3
#: share of the batch whose previous frame is the generator's own colouring of it (`OwnShots`).
OWN_PROB = 1 / 3
#: frames of each shot the generator colours with its own history, one frame per step.
SHOT = 32
#: the discriminator steps on step 1 and every D_EVERY-th step.
D_EVERY = 12
#: its learning rate relative to the generator's.
D_LR_RATIO = 0.1
ADAM_BETAS = (0.0, 0.999)


class LabFeatures(torch.nn.Module):
    """Frozen features of Lab images from the shipped `zhang2016` network's first three blocks.

    That network was trained on L alone (normalised as (L - 50) / 100), so
    each of L, a and b goes through it as a one-channel image in the same
    units (a / 100, b / 100: one unit of a is one unit of L to the filters),
    and the three feature maps are stacked along channels. L is the same in
    the generated and the true image, so its features only count through the
    Gram matrices, where they correlate luminance structure with colour.
    Taps per block: after its first ReLU (the content layers, as VGG's
    relu1_1 .. relu3_1) and after its second (the style layers, blocks 2-3,
    as relu2_2 and relu3_x). The fourth block (1/8 resolution, 128 wide)
    would nearly double the cost of a training step.
    """

    def __init__(self, zhang: torch.nn.Module, blocks: int = 3):
        super().__init__()
        self.blocks = torch.nn.ModuleList(zhang.features[:blocks])
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        # Always in eval: its batch norms keep the statistics they were trained with.
        return super().train(False)

    def planes(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Content and style taps of one-channel images (M, 1, h, w), already normalised."""
        content, style = [], []
        for i, block in enumerate(self.blocks):
            x = block[1](block[0](x))
            content.append(x)
            x = block[3](block[2](x))
            if i:
                style.append(x)
            x = block[4](x)
        return content, style

    def forward(self, l: torch.Tensor, ab: torch.Tensor, l_taps=None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Content and style taps (N, 3C, h, w) of the Lab image; ``l_taps`` are L's from `planes`, if known."""
        n, _, h, w = ab.shape
        if l_taps is None:
            l_taps = self.planes((l - 50.0) / 100.0)
        # (N, 2, h, w) -> (2N, 1, h, w) and back to (N, 2C, h, w): a and b of a sample side by side.
        ab_taps = self.planes(ab.reshape(2 * n, 1, h, w) / 100.0)
        out = [[torch.cat((fl, fab.reshape(n, -1, *fab.shape[-2:])), dim=1) for fl, fab in zip(tl, tab)]
               for tl, tab in zip(l_taps, ab_taps)]
        return out[0], out[1]


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the feature map's size, as the authors' style loss."""
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def perceptual_losses(features: LabFeatures, l: torch.Tensor, ab_fake: torch.Tensor,
                      ab_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Content (L1 of features) and style (L1 of Gram matrices) of generated vs true ab."""
    with torch.no_grad():
        # L is the same in both: its features are computed once, without a graph.
        l_taps = features.planes((l - 50.0) / 100.0)
        real_c, real_s = features(l, ab_real, l_taps)
    fake_c, fake_s = features(l, ab_fake, l_taps)
    content = sum(F.l1_loss(a, b) for a, b in zip(fake_c, real_c))
    style = sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(fake_s, real_s))
    return content, style


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def training_pairs(sources: Sources, batch: int, crop: int, rng: np.random.Generator, device):
    """(L, previous ab, ab) of ``batch`` consecutive frame pairs, the previous ab blank or true:
    of the whole batch `BLANK_PROB` is blank and `OWN_PROB` is `OwnShots`', so these are blank
    with chance ``BLANK_PROB / (1 - OWN_PROB)``."""
    seq = torch.from_numpy(random_sequences(sources, batch, 2, crop, rng))
    rgb = seq.permute(0, 1, 4, 2, 3).float().div_(255)
    _, prev_ab = split_lab(rgb[:, 0])
    l, ab = split_lab(rgb[:, 1])
    prev_ab[torch.from_numpy(rng.random(batch) < BLANK_PROB / (1 - OWN_PROB))] = 0.0
    return l.to(device), prev_ab.to(device), ab.to(device)


class OwnShots:
    """Shots the generator colours frame by frame across training steps, fed its own history.

    Each of ``slots`` shots is a `SHOT`-frame sequence; at every step it offers
    its next frame with, as the previous ab, the generator's output for the
    frame before (blank at the shot's first frame), just as the engine colours a
    shot. The step's output is the next step's history, so chains as long as a
    shot cost no extra forward pass; the history comes from weights one step
    older, and from the training-mode batch norms.
    """

    def __init__(self, sources: Sources, slots: int, crop: int, rng: np.random.Generator, device,
                 length: int = SHOT) -> None:
        self.sources, self.slots, self.crop, self.rng, self.device = sources, slots, crop, rng, device
        self.length = length
        # The slots start their shots together, so one frame counter serves them all.
        self._t = length
        self._l = self._ab = self._prev = None

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L, previous ab, ab) of each shot's next frame."""
        if not self.slots:
            empty = torch.empty(0, 1, self.crop, self.crop, device=self.device)
            return empty, empty.expand(0, 2, -1, -1), empty.expand(0, 2, -1, -1)
        if self._t == self.length:
            shots = [split_lab(torch.from_numpy(random_sequences(self.sources, 1, self.length, self.crop, self.rng)[0])
                               .permute(0, 3, 1, 2).float().div_(255)) for _ in range(self.slots)]
            self._l, self._ab = (torch.stack(parts).to(self.device) for parts in zip(*shots))
            self._prev, self._t = torch.zeros_like(self._ab[:, 0]), 0
        return self._l[:, self._t], self._prev, self._ab[:, self._t]

    def advance(self, ab: torch.Tensor) -> None:
        """The generator's ab (slots, 2, H, W) for the frames `batch` gave: the next frames' history."""
        self._prev = ab.detach().float()
        self._t += 1


def train(cfg: TrainConfig, runtime: Runtime = Runtime(), progress: bool = True):
    """Fit a temporal model as in the module's description; checkpoints, ``resume`` and log as
    `vidcolor.training.train.train`'s, plus OUT/last_discriminator.safetensors."""
    cfg.init_path()  # a wrong --init fails before the data loads
    spec = get_model(cfg.model)
    device = runtime.torch_device
    runtime.configure_threads()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (last, state_file), last_d = checkpoint_files(cfg.out), cfg.out / "last_discriminator.safetensors"

    sources = load_sources(cfg.data, short=2 * cfg.crop, frames_per_video=cfg.frames_per_video)
    gen, disc = spec.build(), PatchDiscriminator()
    features = LabFeatures(weights.load_model("zhang2016", None, Runtime(device="cpu"))).to(device)

    step, seconds, state = 0, 0.0, None
    if cfg.resume and last.is_file() and last_d.is_file() and state_file.is_file():
        weights.load_into(gen, last, cfg.model)
        weights.load_into(disc, last_d, f"{cfg.model} discriminator")
        state = read_state(state_file)
        step, seconds = int(state["step"]), float(state["seconds"])
        rng = np.random.default_rng([cfg.seed, step])
    elif cfg.init is not None:
        weights.load_into(gen, cfg.init_path(), cfg.model)  # the discriminator starts afresh
    gen.to(device).train()
    disc.to(device).train()
    # A third of the batch (one sample at least, none for a batch of one); a resumed run starts new shots.
    shots = OwnShots(sources, min(cfg.batch - 1, max(1, round(cfg.batch * OWN_PROB))), cfg.crop, rng, device)
    opt = Optimisers(gen, disc, cfg, state)
    meta = run_meta(cfg, sources, device)

    def checkpoint(step: int, seconds: float) -> None:
        weights.save(disc, last_d, {**meta, "steps": step})
        write_checkpoint(gen, cfg.out, meta, step, seconds, opt.state_dict())

    loss_d = torch.tensor(float("nan"))

    def one_step(step: int) -> tuple[dict, dict]:
        nonlocal loss_d
        # At inference the history is the model's own output, errors included: train on it too.
        pairs, own = training_pairs(sources, cfg.batch - shots.slots, cfg.crop, rng, device), shots.batch()
        l, prev_ab, ab = (torch.cat(parts) for parts in zip(pairs, own))
        with runtime.autocast():
            raw = gen(l, prev_ab)
        fake = gen.decode(raw)
        shots.advance(fake[cfg.batch - shots.slots:])
        if step == 0 or (step + 1) % D_EVERY == 0:
            loss_d = discriminator_step(disc, opt.d, runtime, l, prev_ab, fake, ab)
        loss_g, parts = generator_step(gen, disc, features, opt.g, runtime, raw, (l, prev_ab, fake, ab))
        opt.sched_g.step()
        opt.sched_d.step()
        return ({"loss": loss_g.item(), **{k: v.item() for k, v in parts.items()}, "loss_d": loss_d.item(),
                 "lr": opt.sched_g.get_last_lr()[0]},
                {"g": f"{loss_g.item():.3f}", "l1": f"{parts['l1'].item():.4f}", "d": f"{loss_d.item():.3f}"})

    step, seconds = run_steps(cfg, step, seconds, one_step, checkpoint, progress)
    gen.eval()
    return save_final(gen, cfg, meta, step, seconds, calibrate_chroma_gain(gen, sources, cfg.crop, device,
                                                                           seed=cfg.seed))


class Optimisers:
    """The generator's and the discriminator's Adam and schedules (`lr_schedule`), restored from ``state``."""

    def __init__(self, gen: torch.nn.Module, disc: torch.nn.Module, cfg: TrainConfig, state: dict | None):
        self.g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=ADAM_BETAS)
        self.d = torch.optim.Adam(disc.parameters(), lr=cfg.lr * D_LR_RATIO, betas=ADAM_BETAS)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.g, lr_schedule(cfg.steps))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.d, lr_schedule(cfg.steps))
        if state is not None:
            self.g.load_state_dict(state["optimizer"])
            self.d.load_state_dict(state["optimizer_d"])
            self.sched_g.load_state_dict(state["scheduler"])
            self.sched_d.load_state_dict(state["scheduler_d"])

    def state_dict(self) -> dict:
        return {"optimizer": self.g.state_dict(), "optimizer_d": self.d.state_dict(),
                "scheduler": self.sched_g.state_dict(), "scheduler_d": self.sched_d.state_dict()}


def discriminator_step(disc, opt_d, runtime: Runtime, l, prev_ab, fake, ab) -> torch.Tensor:
    """One step of the discriminator on the generated ab (detached) and the true ab; its loss."""
    disc.requires_grad_(True)
    with runtime.autocast():
        logits = disc(torch.cat((l, l)), torch.cat((prev_ab, prev_ab)), torch.cat((fake.detach(), ab)))
    fake_logits, real_logits = logits.chunk(2)
    loss_d = 0.5 * (_bce(fake_logits, False) + _bce(real_logits, True))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return loss_d


def generator_step(gen, disc, features: LabFeatures, opt_g, runtime: Runtime, raw,
                   batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step of the generator on `LOSS_WEIGHTS`' objective; its loss and the loss's parts.

    ``batch``: (L, previous ab, generated ab, true ab); ``raw`` the generator's output for them.
    """
    l, prev_ab, fake, ab = batch
    # The generator's step needs gradients through D, not of D's weights.
    disc.requires_grad_(False)
    with runtime.autocast():
        adv = _bce(disc(l, prev_ab, fake), True)
    l1 = gen.loss(raw, ab)
    content, style = perceptual_losses(features, l, fake, ab)
    parts = {"l1": l1, "style": style, "content": content, "adversarial": adv}
    loss_g = sum(LOSS_WEIGHTS[k] * v for k, v in parts.items())
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_g, parts


def run_meta(cfg: TrainConfig, sources: Sources, device) -> dict:
    """The facts of the run the weights' metadata keeps (the perceptual network's file by its hash)."""
    zhang_path = weights.weights_path(get_model("zhang2016"), None)
    return {"model": cfg.model, "data": ",".join(map(str, cfg.data)), "images": len(sources.stills),
            "clip_frames": sources.clip_frames, "crop": cfg.crop, "batch": cfg.batch, "lr": cfg.lr,
            "lr_discriminator": cfg.lr * D_LR_RATIO, "loss_weights": json.dumps(LOSS_WEIGHTS),
            "blank_prob": BLANK_PROB, "own_prob": OWN_PROB, "own_shot": SHOT, "d_every": D_EVERY,
            "perceptual": f"zhang2016 blocks 1-3, {zhang_path.name} sha256 {sha256_file(zhang_path)[:16]}",
            "device": str(device), "torch_threads": torch.get_num_threads(), **init_meta(cfg)}


@torch.no_grad()
def calibrate_chroma_gain(gen, sources: Sources, crop: int, device, *, batches: int = 4, batch: int = 16,
                          length: int = 16, seed: int = 0) -> float:
    """`vidcolor.training.train.calibrate_chroma_gain` for a temporal model, measured as it runs.

    Sequences are coloured as the engine colours a shot: the first frame from
    a blank previous frame, each next one from the model's own previous
    output (before any gain), so the gain fits what the model does on video
    rather than on true previous colours it never gets there.
    """
    rng = np.random.default_rng([seed, 7])
    num = den = 0.0
    for _ in range(batches):
        seq = torch.from_numpy(random_sequences(sources, batch, length, crop, rng))
        rgb = seq.permute(0, 1, 4, 2, 3).float().div_(255)
        prev = None
        for t in range(length):
            l, ab = split_lab(rgb[:, t])
            pred = gen.decode(gen(l.to(device), prev)).float()
            num += (ab.to(device) * pred).sum().item()
            den += (pred * pred).sum().item()
            prev = pred
    return min(1.0, max(0.0, num / den)) if den > 0 else 1.0


