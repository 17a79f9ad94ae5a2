"""Frames per second of the DDColor networks, at 256 and 512 input.

Synthetic weights in the official layout (tests/data/official), batch 1,
``torch.inference_mode``. On CPU float32; on CUDA, when present, float32 and
fp16/bf16 autocast, each low-precision output checked within 1e-2 relative of
float32 (synthetic weights give real activations, so the check means
something). Usage:

    python benchmarks/bench_ddcolor.py [--models ddcolor-tiny ddcolor-large] [--sizes 256 512]
                                       [--seconds 20] [--device auto]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
import time

import torch

from vidcolor.models import get_model

TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from test_official import layout, synthetic_state_dict  # noqa: E402

TOL = 1e-2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fps(model, l: torch.Tensor, seconds: float, dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
    """Frames per second over at least one timed frame (after one warm-up) and the last output."""
    device = l.device
    ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        out = model(l)  # warm-up: kernels, allocator, spectral-norm weights
        _sync(device)
        n, start = 0, time.perf_counter()
        while n < 1 or (time.perf_counter() - start < seconds and n < 200):
            out = model(l)
            n += 1
        _sync(device)
    return n / (time.perf_counter() - start), out.float()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["ddcolor-tiny", "ddcolor-large"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    p.add_argument("--seconds", type=float, default=20.0, help="time budget per measurement (default 20)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) or cpu")
    args = p.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cuda = args.device != "cpu" and torch.cuda.is_available()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}"
          + (f", GPU {torch.cuda.get_device_name()}" if cuda else ", no GPU"))
    failed = False
    for name in args.models:
        sd = synthetic_state_dict(layout(name.replace("-", "_")))
        for size in args.sizes:
            model = get_model(name).build(input_size=size)
            model.load_state_dict(sd)
            model.eval().requires_grad_(False)
            g = torch.Generator().manual_seed(size)
            l = torch.rand(1, 1, size, size, generator=g) * 100
            for device in devices:
                model.to(device)
                x = l.to(device)
                f32, ref = fps(model, x, args.seconds, None)
                print(f"{name:<14} {size:>4}  {device.type:<4} float32  {f32:8.2f} fps  ({1000 / f32:8.1f} ms/frame)")
                if device.type != "cuda":
                    continue
                for dtype in (torch.float16, torch.bfloat16):
                    f, out = fps(model, x, args.seconds, dtype)
                    err = rel(out, ref)
                    ok = bool(torch.isfinite(out).all()) and err < TOL
                    failed |= not ok
                    print(f"{name:<14} {size:>4}  cuda {str(dtype)[6:]:<8} {f:8.2f} fps  ({1000 / f:8.1f} ms/frame)"
                          f"  rel. error vs float32 {err:.1e} {'ok' if ok else 'FAIL'}")
            model.to("cpu")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
